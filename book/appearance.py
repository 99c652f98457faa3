"""The data chapter's section "Who is in the data, and what else is in the frame": the estimated skin tone (ITA
band) and the artifacts (dark border, hair, ink) of every image, per collection and class, a gallery per category,
and the sentences that say what they show.

The estimates are the library's (:mod:`pskinlib.data.appearance`); this module lays them out. A collection is
HAM10000 (the study's three classes) or a labelled folder (ISIC 2017 and the like), each with its
:func:`~pskinlib.data.appearance.appearance_table`. The clinical chapter and the checklist read the same tables
(:func:`ham10000_appearance`), so the three chapters agree on every count.
"""

from __future__ import annotations

import math
import os
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown

from pskinlib.data.appearance import (
    ITA_BANDS,
    NOT_ESTIMABLE,
    appearance_table,
    band_counts,
    dark_border_mask,
    hair_mask,
    ink_mask,
    measured_pixels,
    not_estimable,
)
from pskinlib.data.ham10000 import load_ham10000, load_image
from pskinlib.data.labelled_folders import read_labelled_folder
from pskinlib.errors import DataError, ParameterError
from pskinlib.info import CLASSES, PAPER_CLASSES

from . import figures

HAM10000 = "HAM10000"
# Lightest first, as the tables show them, then the images without an estimate.
BANDS = tuple(name for name, _, _ in reversed(ITA_BANDS))
DARKER_BANDS = ("brown", "dark")  # ITA at most 10 degrees: what "darker skin" means in the sentences
# Each artifact column of an appearance table, its name in the book, the mask that finds it, and the colour the
# gallery paints the mask in.
ARTIFACTS = {"dark_border": ("dark border", dark_border_mask, (0, 120, 255)),
             "hair": ("hair", hair_mask, (255, 40, 40)),
             "ink": ("ink", ink_mask, (255, 230, 0))}
ALL_CLASSES_ROW = "all three classes"


# ---------- The tables of each collection


def ham10000_measured(data_dir: str | os.PathLike | None = None, classes=PAPER_CLASSES):
    """The HAM10000 images whose appearance :func:`ham10000_appearance` measures: all seven classes, so that every
    chapter reads one cached table whatever classes it shows; ``classes`` in a folder without some of the seven (a
    test's, say)."""
    try:
        return load_ham10000(data_dir, classes="all")
    except DataError:
        return load_ham10000(data_dir, classes=classes)


def ham10000_appearance(data_dir: str | os.PathLike | None = None, classes=PAPER_CLASSES) -> pd.DataFrame:
    """The appearance table of HAM10000's images of ``classes``, with each image's ``path`` (measured over
    :func:`ham10000_measured`, and cached)."""
    images = ham10000_measured(data_dir, classes)
    table = appearance_table(images, progress=False).merge(images.table[["image_id", "path"]], on="image_id")
    return table[table["dx"].isin(classes)].reset_index(drop=True)


def measured_collections(data_dir: str | os.PathLike | None = None, folders=()) -> dict[str, Any]:
    """``{name: images}``: what :func:`ham10000_appearance` and :func:`collections` measure, HAM10000's images and
    each labelled folder's, so that a build can measure them all before its chapters read them."""
    images = {HAM10000: ham10000_measured(data_dir)}
    for path in folders:
        folder = read_labelled_folder(path)
        images[collection_name(folder)] = folder
    return images


def collection_name(folder) -> str:
    """A labelled folder's name in the tables: its collections (``ISIC2017_test`` and ``ISIC2017_val`` are
    ``ISIC2017``), joined by " + "."""
    return " + ".join(dict.fromkeys(source.split("_")[0] for source in folder.sources))


def collections(ham10000: pd.DataFrame, folders=()) -> dict[str, pd.DataFrame]:
    """``{name: appearance table with path}``: HAM10000's (``ham10000``, :func:`ham10000_appearance`) and each
    labelled folder's (paths of folders, e.g. :func:`book.runs.external_folders`), restricted to the study's
    classes."""
    tables = {HAM10000: ham10000}
    for path in folders:
        folder = read_labelled_folder(path)
        table = appearance_table(folder, progress=False).merge(folder.table[["image_id", "path"]], on="image_id")
        tables[collection_name(folder)] = table[table["dx"].isin(PAPER_CLASSES)].reset_index(drop=True)
    return tables


def _check(table: pd.DataFrame, name: str) -> None:
    needed = {"image_id", "dx", "ita_category", "ita_reason", *ARTIFACTS}
    if not isinstance(table, pd.DataFrame) or not needed <= set(table.columns):
        raise ParameterError(f"{name}: need an appearance table (pskinlib.data.appearance.appearance_table) with "
                             f"the columns {sorted(needed)}.")


def _classes(table: pd.DataFrame) -> list[str]:
    return [c for c in PAPER_CLASSES if c in set(table["dx"])]


def _share(count: int, total: int) -> str:
    return f"{count:,} ({count / total:.1%})" if total else "0"


# ---------- Skin tone


def band_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Images per ITA band (lightest first) and not estimable, per collection and class, with a row for all the
    classes of each collection and the share not estimable."""
    rows = []
    for name, table in tables.items():
        _check(table, name)
        counts = band_counts(table)
        order = _classes(table)
        for dx, label in [*((c, CLASSES[c].name) for c in order), ("total", ALL_CLASSES_ROW)]:
            row = counts.loc[dx] if dx in counts.index else pd.Series(0, index=counts.columns)
            total = int(row.sum())
            rows.append({"collection": name, "class": label, "images": total,
                         **{band: int(row[band]) for band in (*BANDS, NOT_ESTIMABLE)},
                         "share not estimable": f"{row[NOT_ESTIMABLE] / total:.1%}" if total else "—"})
    return pd.DataFrame(rows)


def _reason_kinds(table: pd.DataFrame) -> pd.Series:
    """Each not-estimable image's kind of reason (the reason's text before its colon), by row."""
    rows = table[table["ita_category"] == NOT_ESTIMABLE]
    return rows["ita_reason"].fillna("").str.split(":").str[0]


def reason_table(tables: dict[str, pd.DataFrame], examples: int = 3) -> pd.DataFrame:
    """Why an image's skin tone is not estimable: per collection and kind of reason, the images of each class, all
    of them, and the first ``examples`` image ids (so that they can be looked at)."""
    rows = []
    for name, table in tables.items():
        _check(table, name)
        named = not_estimable(table)
        kinds = _reason_kinds(table)
        by_class = pd.crosstab(kinds, table.loc[kinds.index, "dx"]) if len(kinds) else pd.DataFrame()
        for kind in sorted(named, key=lambda k: -len(named[k])):
            rows.append({"collection": name, "reason": kind,
                         **{CLASSES[c].name: int(by_class.loc[kind].get(c, 0)) for c in _classes(table)},
                         "images": len(named[kind]), "for example": ", ".join(named[kind][:examples])})
    table = pd.DataFrame(rows)
    counts = [c for c in table.columns if c not in ("collection", "reason", "for example")]
    return table.fillna(dict.fromkeys(counts, 0)).astype(dict.fromkeys(counts, int))


# ---------- Artifacts


def artifact_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Images with each artifact present, count and share of the images measured, per collection and class (and
    all classes); ``not measured``: images that could not be measured (too small, or not decodable)."""
    rows = []
    for name, table in tables.items():
        _check(table, name)
        for dx, label in [*((c, CLASSES[c].name) for c in _classes(table)), (None, ALL_CLASSES_ROW)]:
            part = table if dx is None else table[table["dx"] == dx]
            measured = part["dark_border"].notna()
            row = {"collection": name, "class": label, "images": len(part)}
            for column, (shown, _, _) in ARTIFACTS.items():
                row[shown] = _share(int(part[column].eq(True).sum()), int(measured.sum()))
            row["not measured"] = int((~measured).sum())
            rows.append(row)
    return pd.DataFrame(rows)


def prevalence(table: pd.DataFrame, column: str, dx: str | None = None) -> float:
    """The share of the measured images (of class ``dx``, or all) with the artifact ``column``; NaN without one."""
    part = table if dx is None else table[table["dx"] == dx]
    measured = part[column].dropna()
    return float(measured.astype(bool).mean()) if len(measured) else math.nan


# ---------- Galleries


def _pick(table: pd.DataFrame, keep, per_row: int, rng: np.random.Generator) -> pd.DataFrame:
    part = table[keep]
    return part.iloc[np.sort(rng.choice(len(part), size=min(per_row, len(part)), replace=False))]


def _tone_caption(row) -> str:
    if row.ita_category != NOT_ESTIMABLE:
        return f"{row.image_id}\nITA {row.ita:.0f}°"
    kind = str(row.ita_reason).split(":")[0]
    if kind == "no yellow":
        return f"{row.image_id}\nb* {row.b_star:.1f}"
    if kind == "pink-violet tint":
        return f"{row.image_id}\nhue {math.degrees(math.atan2(row.b_star, row.a_star)):.0f}°"
    if kind == "too few skin pixels":
        return f"{row.image_id}\nskin {row.skin_fraction:.0%}"
    return str(row.image_id)


def _pixels(path) -> np.ndarray | None:
    """The image as it was measured, else as it is, else None (it does not decode)."""
    try:
        return measured_pixels(path)
    except DataError:
        try:
            return load_image(path)
        except DataError:
            return None


def tone_gallery(table: pd.DataFrame, per_row: int = 6, seed: int = 0) -> plt.Figure:
    """A row of images (drawn at random, ``seed``) per ITA band, lightest first, and per kind of reason an image
    is not estimable, each captioned with its ITA (or the value that made it not estimable); a band without images
    says so. ``table``: an appearance table with ``path``."""
    _check(table, "table")
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {}
    for band in BANDS:
        chosen = _pick(table, table["ita_category"] == band, per_row, rng)
        rows[f"ITA band: {band}"] = [(_pixels(r.path), _tone_caption(r)) for r in chosen.itertuples()]
    kinds = _reason_kinds(table)
    for kind in kinds.value_counts().index:
        chosen = _pick(table.loc[kinds.index], (kinds == kind).to_numpy(), per_row, rng)
        rows[f"not estimable: {kind}"] = [(_pixels(r.path), _tone_caption(r)) for r in chosen.itertuples()]
    return figures.thumbnail_rows(rows, per_row)


def _painted(pixels: np.ndarray, mask: np.ndarray, colour) -> np.ndarray:
    out = pixels.astype(float)
    out[mask] = 0.35 * out[mask] + 0.65 * np.asarray(colour, float)
    return out.clip(0, 255).astype(np.uint8)


def artifact_gallery(table: pd.DataFrame, per_row: int = 6, seed: int = 0) -> plt.Figure:
    """A row per artifact of images where it was found (drawn at random, ``seed``), the pixels found painted over
    (dark border blue, hair red, ink yellow) and the share of the image they cover."""
    _check(table, "table")
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {}
    for column, (shown, mask_of, colour) in ARTIFACTS.items():
        cells = []
        found = table[column].fillna(False).astype(bool).to_numpy()  # not measured: not found
        for row in _pick(table, found, per_row, rng).itertuples():
            pixels = measured_pixels(row.path)
            cells.append((_painted(pixels, mask_of(pixels), colour),
                          f"{row.image_id}\n{getattr(row, f'{column}_fraction'):.1%} of the image"))
        rows[f"{shown} found"] = cells
    return figures.thumbnail_rows(rows, per_row)


# ---------- Sentences


def _counted_bands(counts: pd.Series) -> str:
    return ", ".join(f"{band} {int(counts[band]):,}" for band in BANDS)


def tone_finding(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """``tone_finding``: per collection, how many images are not estimable and why, and how the estimable ones
    fall into the bands, said plainly when darker skin (brown or dark, ITA at most 10 degrees) is (nearly)
    absent; ``ham_not_estimable_share`` and ``ham_estimable``: HAM10000's share not estimable and the number
    estimable."""
    phrases, glued = [], {}
    for name, table in tables.items():
        _check(table, name)
        counts = band_counts(table).loc["total"]
        total, missing = int(counts.sum()), int(counts[NOT_ESTIMABLE])
        estimable = total - missing
        if name == HAM10000:
            glued = {"ham_not_estimable_share": missing / total if total else math.nan, "ham_estimable": estimable}
        if not total:
            phrases.append(f"**{name}**: no image of the study's classes")
            continue
        why = ", ".join(f"{kind} {len(ids):,}" for kind, ids in
                        sorted(not_estimable(table).items(), key=lambda item: -len(item[1])))
        text = (f"**{name}**: {missing:,} of {total:,} images ({missing / total:.0%}) are not estimable"
                + (f" ({why})" if why else ""))
        if estimable:
            darker = int(sum(counts[band] for band in DARKER_BANDS))
            light = int(counts["very light"] + counts["light"])
            text += (f"; of the {estimable:,} estimable, {light:,} ({light / estimable:.0%}) are very light or "
                     f"light ({_counted_bands(counts)})")
            if darker == 0:
                text += ", and none is brown or dark: darker skin is absent from the estimates"
            elif darker / estimable < 0.05:
                text += (f"; {darker:,} brown or dark ({darker / estimable:.1%} of the estimable): darker skin is "
                         "nearly absent")
            else:
                text += f"; {darker:,} brown or dark ({darker / estimable:.1%} of the estimable)"
        else:
            text += "; none is estimable"
        phrases.append(text)
    return {"tone_finding": Markdown("; ".join(phrases) + "."), **glued}


def artifact_finding(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """``artifact_finding``: per collection, the share of images with each artifact, and the classes where it is
    most and least common (a class that carries an artifact more often is a shortcut a network may learn)."""
    phrases = []
    for name, table in tables.items():
        _check(table, name)
        parts = []
        for column, (shown, _, _) in ARTIFACTS.items():
            overall = prevalence(table, column)
            if math.isnan(overall):
                continue
            by_class = {c: prevalence(table, column, c) for c in _classes(table)}
            by_class = {c: v for c, v in by_class.items() if not math.isnan(v)}
            high, low = max(by_class, key=by_class.get), min(by_class, key=by_class.get)
            text = f"{shown} in {overall:.1%} of the images"
            if high != low:
                text += (f", from {by_class[low]:.1%} of the {CLASSES[low].name} images to "
                         f"{by_class[high]:.1%} of the {CLASSES[high].name} images")
            parts.append(text)
        phrases.append(f"**{name}**: " + ("; ".join(parts) if parts else "no image could be measured"))
    return {"artifact_finding": Markdown("; ".join(phrases) + ".")}
