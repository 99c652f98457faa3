"""The data chapter as tables: HAM10000's classes, lesions, patients and splits, from a loaded dataset.

Each function takes a :class:`~pskinlib.data.LesionImages` (or a split of it) and returns the table the chapter
shows, or the numbers it states, so that the notebook only calls and plots.
"""

from __future__ import annotations

import pandas as pd

from pskinlib.data.ham10000 import LesionImages
from pskinlib.data.splits import split_summary
from pskinlib.info import CLASSES, PAPER_TABLE1, class_names
from pskinlib.metrics import majority_baseline


def class_table(images: LesionImages) -> pd.DataFrame:
    """Images per class, by name, with each class's share."""
    counts = images.class_counts()
    return pd.DataFrame({"class": class_names(counts.index), "images": counts.to_numpy(),
                         "share": [f"{v:.1%}" for v in counts / counts.sum()]})


def lesion_sizes(images: LesionImages) -> pd.DataFrame:
    """How many lesions have one image, two, three and so on."""
    distribution = images.table.groupby("lesion_id").size().value_counts().sort_index()
    return pd.DataFrame({"images of the lesion": distribution.index, "lesions": distribution.to_numpy()})


def body_sites(images: LesionImages, top: int = 8) -> pd.DataFrame:
    """Images per class at the ``top`` body sites with the most nevi."""
    sites = pd.crosstab(images.table["localization"], images.table["dx"])
    return sites.sort_values("nv", ascending=False).head(top).reset_index().rename(
        columns={"localization": "body site"})


def confirmations(images: LesionImages) -> pd.DataFrame:
    """Images per class by how the diagnosis was confirmed (HAM10000's ``dx_type``)."""
    return pd.crosstab(images.table["dx_type"], images.table["dx"]).reset_index().rename(
        columns={"dx_type": "confirmed by"})


def table1_comparison(split: pd.DataFrame, classes: tuple[str, ...]) -> pd.DataFrame:
    """The paper's Table 1 beside what the ``paper`` protocol drew: images, distinct images, lesions and repeats
    per split and class."""
    drawn = split_summary(split, classes).reset_index()
    return pd.DataFrame([{"split": row.split, "class": CLASSES[row.dx].name,
                          "Table 1 (paper)": PAPER_TABLE1[row.split][row.dx], "drawn here": row.images,
                          "distinct images": row.distinct_images, "lesions": row.lesions, "repeats": row.repeats}
                         for row in drawn.itertuples()])


def split_baseline(split: pd.DataFrame, classes: tuple[str, ...]) -> dict:
    """:func:`~pskinlib.metrics.majority_baseline` of a split: the most common training class, scored on test."""
    label = {c: i for i, c in enumerate(classes)}

    def labels(part: str):
        return split.loc[split["split"] == part, "dx"].map(label).to_numpy()

    return majority_baseline(labels("train"), labels("test"), len(classes), classes)
