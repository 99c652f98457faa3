"""Training: what a run is and how it is trained. Builds on :mod:`pskinlib.data`; knows nothing of evaluation.

- :mod:`~pskinlib.train.models`: the model registry (how to build each network, its head, its Grad-CAM layer, the
  normalisation its weights expect).
- :mod:`~pskinlib.train.losses`: class-weight schemes, the class-balanced sampler and focal loss.
- :mod:`~pskinlib.train.config`: every training parameter in one validated dataclass, and the named profiles.
- :mod:`~pskinlib.train.device`: the machine: device, precision, memory layout, what a record says about it.
- :mod:`~pskinlib.train.trainer`: the loop, from a config to a finished run record (:mod:`pskinlib.runs`).
"""
