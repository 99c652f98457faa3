"""pskinlib: the library behind the pskin book.

Deep-learning recognition of pigmented skin lesions (melanoma, melanocytic nevus, seborrheic keratosis) on
HAM10000. One concept per module; each layer imports only the layers before it (``tests/test_layering.py`` checks):

1. ``info`` (facts), ``errors`` (the one error type and its kinds), ``io`` (atomic writes, checked reads);
2. ``data``: the dataset on disk, splits by lesion, the image cache, batches, downloads, the demo set;
3. ``metrics``: the only place that scores predictions (the trainer selects epochs with it);
4. ``train`` and ``runs``: models, losses, config, device, the trainer, and the run record it writes;
5. ``evaluate``: predicting, evaluating other folders, ensembles, metadata fusion;
6. ``explain``: Grad-CAM and the prediction inspector;
7. ``cli``: the ``pskin`` command.

The book that documents the library lives beside it, in the checkout's ``book/`` package: its chapters' tables,
findings, figures and build import pskinlib; pskinlib never imports them.
"""

__version__ = "0.1.0"
