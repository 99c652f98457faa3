"""How images differ between collections: the shift a model meets, measured image by image.

For each image (the file as it is, before any resizing): its size and aspect ratio; its mean colour (R, G, B in
0-255); the colour of the light, as Shades of Gray estimates it (the Minkowski p = 6 mean of each channel, as
chromaticity r, g, b summing to 1: a neutral light is 1/3 each); and the dark vignetting of the dermatoscope's
round field, as the mean brightness of the four corners over that of the centre (1: even; near 0: black corners).
:func:`shift_table` summarises them per ``source_dataset``; :func:`collection_statistics` does both for HAM10000
and labelled folders.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from .cache import illuminant
from .ham10000 import open_image
from .labelled_folders import read_labelled_folders

# Each image is measured at this size (its longer side): enough for means, cheap for thousands of images.
MEASURE_SIDE = 128
CORNER = 0.15  # the share of each side a corner patch takes


def image_statistics(paths: Iterable[str], sources: Iterable[str]) -> pd.DataFrame:
    """One row per image: ``source_dataset, width, height, aspect, mean_r/g/b, light_r/g/b, corner_ratio``."""
    rows = []
    for path, source in zip(paths, sources):
        with open_image(path) as image:
            width, height = image.size
            image.draft("RGB", (MEASURE_SIDE, MEASURE_SIDE))
            image = image.convert("RGB")
            image.thumbnail((MEASURE_SIDE, MEASURE_SIDE))
            pixels = np.asarray(image, dtype=np.float64)
        light = illuminant(pixels, 6.0)
        grey = pixels.mean(axis=2)
        h, w = grey.shape
        ch, cw = max(1, int(h * CORNER)), max(1, int(w * CORNER))
        corners = np.mean([grey[:ch, :cw].mean(), grey[:ch, -cw:].mean(), grey[-ch:, :cw].mean(),
                           grey[-ch:, -cw:].mean()])
        centre = grey[h // 2 - ch:h // 2 + ch, w // 2 - cw:w // 2 + cw].mean()
        rows.append({"source_dataset": source, "width": width, "height": height, "aspect": width / height,
                     **dict(zip(("mean_r", "mean_g", "mean_b"), pixels.mean(axis=(0, 1)))),
                     **dict(zip(("light_r", "light_g", "light_b"), light / max(light.sum(), 1e-9))),
                     "corner_ratio": corners / max(centre, 1e-9)})
    return pd.DataFrame(rows)


def shift_table(statistics: pd.DataFrame) -> pd.DataFrame:
    """Per ``source_dataset``: images, the median size and aspect, the mean of each colour and light column, and
    the share of images whose corners are dark (corner ratio below 0.5: the round field of a contact dermatoscope
    seen inside a rectangular frame)."""
    means = ("mean_r", "mean_g", "mean_b", "light_r", "light_g", "light_b", "corner_ratio")
    table = statistics.groupby("source_dataset", sort=False).agg(
        images=("width", "size"), median_width=("width", "median"), median_height=("height", "median"),
        aspect=("aspect", "median"), **{c: (c, "mean") for c in means},
        dark_corners=("corner_ratio", lambda r: float((r < 0.5).mean())))
    return table.reset_index()


def collection_statistics(table: pd.DataFrame, folders=()) -> pd.DataFrame:
    """:func:`shift_table` of the images of a HAM10000 table (``path``, ``source_dataset``) and of each labelled
    folder in ``folders``."""
    tables = [table, read_labelled_folders(folders)] if folders else [table]
    return shift_table(pd.concat([image_statistics(t["path"], t["source_dataset"]) for t in tables],
                                 ignore_index=True))
