"""The data layer: from files on disk to batches of tensors. Nothing here knows about models or training.

- :mod:`~pskinlib.data.ham10000`: find the data folder, read its layout and metadata -> ``LesionImages``.
- :mod:`~pskinlib.data.splits`: train / validation / test splits by lesion (``grouped``, ``paper``).
- :mod:`~pskinlib.data.cache`: every image decoded and resized once into a memory-mapped uint8 array.
- :mod:`~pskinlib.data.batches`: batches gathered and augmented on the training device.
- :mod:`~pskinlib.data.download`: the official files, resumable, verified, safely unpacked.
- :mod:`~pskinlib.data.demo`: the synthetic demo set (not real data) for trying things out.
- :mod:`~pskinlib.data.labelled_folders`: other collections' images (ISIC 2017, PH2, derm7pt) in one format.
- :mod:`~pskinlib.data.statistics`: how collections' images differ (size, colour of the light, dark corners).
- :mod:`~pskinlib.data.appearance`: per image, the skin tone around the lesion (ITA, or why it cannot be read) and
  the artifacts on the picture (dark border, hair, marker ink), cached per data folder.
"""
