"""Train / validation / test splits that never put one lesion in two splits.

HAM10000 holds 10,015 images of 7,470 lesions: many lesions were photographed more than once. Splitting by image
would let the model see a lesion in training and be "tested" on another photograph of it, so every protocol here
assigns whole lesions to a split.

- ``grouped`` (default): each class's lesions are shuffled and dealt to train / validation / test until each split
  holds its fraction of that class's images (0.70 / 0.15 / 0.15 by default).
- ``paper``: the paper's Table 1 (train 1800 mel / 2400 nv / 1800 bkl, validation 540 / 720 / 540, test
  145 / 180 / 135). HAM10000 has only 1,113 mel and 1,099 bkl images, so Table 1 cannot be met without repeats:
  lesions are first dealt into three disjoint pools, then each split draws its counts from its own pool, repeating
  images only when the pool is too small, never across splits, and never in test.

A split is a table with one row per drawn image (``image_id, lesion_id, dx, split``); a repeated image appears on
several rows. :func:`split_summary` counts images, unique images, lesions and repeats per split and class.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, ParameterError, check_int
from ..info import PAPER_CLASSES, PAPER_TABLE1, SPLITS
from ..io import read_csv, write_csv
from .ham10000 import LesionImages

PROTOCOLS = ("grouped", "paper")
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)
SPLIT_COLUMNS = ["image_id", "lesion_id", "dx", "split"]


def validate_fractions(fractions: tuple[float, float, float] | list[float]) -> tuple[float, float, float]:
    """Three positive fractions (train, validation, test) that sum to 1."""
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(not np.isfinite(f) or f <= 0 for f in fractions):
        raise ParameterError(f"fractions: need three positive numbers (train, val, test), got {list(fractions)}.")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ParameterError(f"fractions: must sum to 1, got {list(fractions)} (sum {sum(fractions):.6g}).")
    return fractions  # type: ignore[return-value]


def make_split(
    images: LesionImages,
    protocol: str = "grouped",
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    counts: dict[str, dict[str, int]] | None = None,
) -> pd.DataFrame:
    """Split ``images`` by lesion with the named ``protocol`` (``grouped`` or ``paper``), seeded.

    ``fractions`` apply to ``grouped``; ``counts`` (split -> class -> images) to ``paper``, Table 1 by default.
    """
    if protocol not in PROTOCOLS:
        raise ParameterError(f"protocol: unknown value {protocol!r}; choose from {list(PROTOCOLS)}.")
    rng = np.random.default_rng(check_int("seed", seed, 0))
    if protocol == "grouped":
        return grouped_split(images, validate_fractions(fractions), rng)
    return paper_split(images, counts if counts is not None else PAPER_TABLE1, rng)


def _shuffled_lesions(table: pd.DataFrame, dx: str, rng: np.random.Generator) -> pd.Series:
    """Images per lesion of one class, lesions in a seeded random order."""
    sizes = table.loc[table["dx"] == dx].groupby("lesion_id").size().sort_index()
    return sizes.iloc[rng.permutation(len(sizes))]


def _deal_lesions(sizes: pd.Series, targets: list[float]) -> list[list[str]]:
    """Deal lesions in order to consecutive splits; move on once a split holds its target number of images."""
    cumulative = sizes.cumsum().to_numpy()
    bounds = np.cumsum(targets)[:-1]
    # A lesion goes to the first split whose upper bound its cumulative count has not yet passed.
    which = np.searchsorted(bounds, cumulative - sizes.to_numpy() / 2)
    return [sizes.index[which == k].tolist() for k in range(len(targets))]


def grouped_split(images: LesionImages, fractions: tuple[float, float, float],
                  rng: np.random.Generator) -> pd.DataFrame:
    """Stratified by class, grouped by lesion: each split gets about its fraction of every class's images."""
    table = images.table
    split_of: dict[str, str] = {}
    for dx in images.classes:
        sizes = _shuffled_lesions(table, dx, rng)
        n_images = sizes.sum()
        for name, lesions in zip(SPLITS, _deal_lesions(sizes, [f * n_images for f in fractions])):
            if not lesions:
                raise ParameterError(f"fractions: {list(fractions)} leave the {name} split without any {dx} lesion "
                                 f"({len(sizes)} lesions); use larger fractions or more data.")
            split_of.update(dict.fromkeys(lesions, name))
    split = table[["image_id", "lesion_id", "dx"]].copy()
    split["split"] = split["lesion_id"].map(split_of)
    return _ordered(split)


def paper_split(images: LesionImages, counts: dict[str, dict[str, int]],
                rng: np.random.Generator) -> pd.DataFrame:
    """The paper's Table 1 counts, drawn from disjoint lesion pools; repeats only within a pool, never in test."""
    _validate_counts(counts, images.classes)
    table = images.table
    rows = []
    for dx in images.classes:
        need = {s: counts[s][dx] for s in SPLITS}
        sizes = _shuffled_lesions(table, dx, rng)
        total = int(sizes.sum())
        if total < need["test"] + 2:
            raise ParameterError(f"counts: the test split needs {need['test']} distinct {dx} images but only "
                             f"{total} exist.")
        # Test is drawn without repeats, so its pool is dealt enough distinct images; the rest is shared between
        # train and validation in proportion to what they must draw, which spreads the unavoidable repeats evenly.
        test_lesions = sizes.index[: int(np.searchsorted(sizes.cumsum().to_numpy(), need["test"])) + 1]
        rest = sizes.drop(test_lesions)
        share = need["train"] / (need["train"] + need["val"])
        train_lesions, val_lesions = _deal_lesions(rest, [share * rest.sum(), (1 - share) * rest.sum()])
        pools = {"train": train_lesions, "val": val_lesions, "test": list(test_lesions)}
        for name in SPLITS:
            pool = table[(table["dx"] == dx) & table["lesion_id"].isin(pools[name])]
            if pool.empty:
                raise ParameterError(f"Too few {dx} lesions ({len(sizes)}) for three disjoint pools.")
            picked = _draw(len(pool), need[name], rng)
            drawn = pool.iloc[picked][["image_id", "lesion_id", "dx"]].copy()
            drawn["split"] = name
            rows.append(drawn)
    return _ordered(pd.concat(rows, ignore_index=True))


def _draw(pool_size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` images from a pool: without repeats when it is large enough, else every image
    ``n // pool_size`` times plus a random remainder, so no image is repeated more than once beyond the others."""
    if n <= pool_size:
        return rng.choice(pool_size, size=n, replace=False)
    whole, remainder = divmod(n, pool_size)
    picked = np.concatenate([np.tile(np.arange(pool_size), whole), rng.choice(pool_size, remainder, replace=False)])
    return np.sort(picked)


def _validate_counts(counts: dict[str, dict[str, int]], classes: tuple[str, ...]) -> None:
    if set(counts) != set(SPLITS):
        raise ParameterError(f"counts: need the splits {list(SPLITS)}, got {list(counts)}.")
    for name in SPLITS:
        absent = [c for c in classes if c not in counts[name]]
        if absent:
            hint = (" The paper protocol's Table 1 covers only the paper's classes "
                    f"{list(PAPER_CLASSES)}." if counts is PAPER_TABLE1 else "")
            raise ParameterError(f"counts: no {name} count for class(es) {absent}.{hint}")
        for c in classes:
            check_int(f"counts[{name!r}][{c!r}]", counts[name][c], 1)


def _ordered(split: pd.DataFrame) -> pd.DataFrame:
    order = {name: i for i, name in enumerate(SPLITS)}
    split = split.sort_values(["split", "dx", "image_id"], key=lambda s: s.map(order) if s.name == "split" else s,
                              kind="stable")
    return split[SPLIT_COLUMNS].reset_index(drop=True)


def image_split_leakage(images: LesionImages, test_fraction: float = 0.15, seed: int = 0) -> dict:
    """What a split *by image* would do: the share of test images whose lesion also has an image in training.

    This is the leak that :func:`make_split` avoids; the book measures it on the real data.
    """
    if not 0 < test_fraction < 1:
        raise ParameterError(f"test_fraction: need a number in (0, 1), got {test_fraction!r}.")
    rng = np.random.default_rng(seed)
    table = images.table
    is_test = np.zeros(len(table), dtype=bool)
    is_test[rng.choice(len(table), size=int(round(test_fraction * len(table))), replace=False)] = True
    train_lesions = set(table.loc[~is_test, "lesion_id"])
    leaked = table.loc[is_test, "lesion_id"].isin(train_lesions)
    return {"test_images": int(is_test.sum()), "leaked_test_images": int(leaked.sum()),
            "leaked_share": float(leaked.mean())}


def split_summary(split: pd.DataFrame, classes: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Images, distinct images, lesions and repeats (images drawn beyond the distinct ones) per split and class."""
    classes = classes or tuple(dict.fromkeys(split["dx"]))
    grouped = split.groupby(["split", "dx"])
    summary = pd.DataFrame({
        "images": grouped.size(),
        "distinct_images": grouped["image_id"].nunique(),
        "lesions": grouped["lesion_id"].nunique(),
    })
    summary["repeats"] = summary["images"] - summary["distinct_images"]
    index = pd.MultiIndex.from_product([SPLITS, classes], names=["split", "dx"])
    return summary.reindex(index, fill_value=0)


def check_no_leakage(split: pd.DataFrame) -> None:
    """Raise :class:`~pskinlib.errors.DataError` if any lesion appears in two splits."""
    splits_per_lesion = split.groupby("lesion_id")["split"].nunique()
    leaked = splits_per_lesion[splits_per_lesion > 1]
    if len(leaked):
        raise DataError(f"{len(leaked)} lesion(s) appear in more than one split, e.g. {list(leaked.index[:5])}.")


def write_split(split: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a split as CSV (``image_id,lesion_id,dx,split``), atomically."""
    return write_csv(path, split[SPLIT_COLUMNS])


def read_split(path: str | os.PathLike) -> pd.DataFrame:
    """Read a split CSV written by :func:`write_split` and check it."""
    split = read_csv(path, required=SPLIT_COLUMNS, what="split file")
    unknown = sorted(set(split["split"]) - set(SPLITS))
    if unknown:
        raise DataError(f"{path}: unknown split name(s) {unknown}; expected {list(SPLITS)}.")
    check_no_leakage(split)
    return split[SPLIT_COLUMNS]


def split_hash(split: pd.DataFrame) -> str:
    """A short content hash of a split, recorded with every run."""
    return hashlib.sha256(split[SPLIT_COLUMNS].to_csv(index=False).encode()).hexdigest()[:16]
