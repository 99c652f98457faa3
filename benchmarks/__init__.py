"""pskin's benchmarks: how fast it runs, against the usual pipeline and the machine's own limit (``pskin bench``).

They live beside the package, not in it: ``pip install`` ships the library, a checkout also has these. The CLI
loads :mod:`benchmarks.bench` from the checkout when ``pskin bench`` runs.
"""
