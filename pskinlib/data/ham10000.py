"""HAM10000 on disk: find the data folder, understand its layout, read and check the metadata.

The result is a :class:`LesionImages`: one row per image with its lesion, diagnosis, metadata and file path.
Three layouts are understood (folder names in :data:`pskinlib.info.LAYOUT_FOLDERS`):

- ``images``: ``HAM10000_metadata.csv`` beside an ``images/`` folder (the copy in ``../shared``, the demo set);
- ``official``: ``HAM10000_metadata.csv`` beside ``HAM10000_images_part_1/`` and ``HAM10000_images_part_2/``
  (the Harvard Dataverse download);
- ``isic2018``: ``ISIC2018_Task3_Training_Input/`` with the one-hot ground-truth CSV and the lesion-groupings CSV
  (what ``pskin data download`` fetches).

Images may have any resolution; they are decoded and resized once by :mod:`pskinlib.cache`.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..errors import DataError, ParameterError
from ..info import (
    ALL_CLASSES,
    CLASSES,
    HAM10000,
    ISIC2018_GROUND_TRUTH,
    ISIC2018_LESION_GROUPINGS,
    LAYOUT_FOLDERS,
    PAPER_CLASSES,
    SYNTHETIC_MARKER,
)
from ..io import read_csv

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
REQUIRED_COLUMNS = ("lesion_id", "image_id", "dx")
# Where the data is looked for when no folder is named: the variable, then the git-ignored data/ham10000 of the
# checkout pskin runs in (the current folder), which is where `pskin data download` puts it.
DATA_ENV = "PSKIN_DATA"
DEFAULT_DATA_DIR = Path("data") / "ham10000"
# Pillow refuses images of more than twice this many pixels (a decompression bomb) and warns above it; pskin refuses
# both: no dermoscopy image comes near 89 million pixels.
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS


@dataclass(frozen=True, repr=False)
class LesionImages:
    """Labelled dermoscopy images: one row of ``table`` per image.

    ``table`` columns: ``image_id, lesion_id, dx, dx_type, age, sex, localization, path``. ``classes`` are the
    diagnosis codes kept, in label order (label ``i`` is ``classes[i]``).
    """

    root: Path
    table: pd.DataFrame
    classes: tuple[str, ...]
    layout: str
    synthetic: bool = False
    skipped: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.table)

    @property
    def labels(self) -> np.ndarray:
        """Integer label per row: the index of its ``dx`` in ``classes``."""
        return self.table["dx"].map({c: i for i, c in enumerate(self.classes)}).to_numpy(np.int64)

    @property
    def source(self) -> str:
        kind = "synthetic demo set" if self.synthetic else "HAM10000"
        return f"{kind} at {self.root} ({self.layout} layout)"

    def describe(self) -> dict:
        """What a run record says about its data: the dataset by name, its layout and the sha256 of its metadata
        file(s), and the folder on this machine (``root``, which ``pskin export`` leaves out of a record)."""
        digest = hashlib.sha256()
        for path in sorted(self.root.glob("*.csv")) + sorted(self.root.glob("*/*GroundTruth*.csv")):
            digest.update(path.read_bytes())
        return {"dataset": "synthetic demo set" if self.synthetic else HAM10000["name"], "layout": self.layout,
                "metadata_sha256": digest.hexdigest(), "synthetic": self.synthetic, "root": str(self.root)}

    def class_counts(self) -> pd.Series:
        """Images per class, in label order."""
        return self.table["dx"].value_counts().reindex(list(self.classes), fill_value=0)

    def without(self, image_ids: list[str] | tuple[str, ...]) -> LesionImages:
        """The same collection less the given images (used to skip unreadable ones)."""
        drop = set(image_ids)
        table = self.table[~self.table["image_id"].isin(drop)].reset_index(drop=True)
        _check_no_empty_class(table, self.classes, self.root)
        return replace(self, table=table, skipped=self.skipped + tuple(sorted(drop)))

    def with_rows(self, rows: pd.DataFrame) -> LesionImages:
        """The same collection plus ``rows`` (images of other collections, with this table's columns; each its own
        lesion)."""
        clash = sorted(set(rows["image_id"]) & set(self.table["image_id"]))
        if clash:
            raise DataError(f"images of other collections reuse HAM10000 image ids: {clash[:10]}.")
        table = pd.concat([self.table, rows.reindex(columns=self.table.columns)], ignore_index=True)
        return replace(self, table=table)

    def __repr__(self) -> str:
        counts = ", ".join(f"{c} {n}" for c, n in self.class_counts().items())
        lines = [
            f"LesionImages: {len(self)} images of {self.table['lesion_id'].nunique()} lesions",
            f"  source:  {self.source}",
            f"  classes: {counts}",
        ]
        if self.skipped:
            lines.append(f"  skipped: {len(self.skipped)} images")
        if self.synthetic:
            lines.append("  SYNTHETIC: not real dermoscopy; results say nothing about skin lesions")
        else:
            lines.append(f"  licence: {HAM10000['licence']}; cite {HAM10000['doi']}")
        return "\n".join(lines)


def find_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: ``data_dir`` if given, else ``$PSKIN_DATA``, else ``data/ham10000`` in the current folder.

    Raises :class:`DataError` saying how to get the data when none of them holds a dataset.
    """
    if data_dir is not None:
        origin, path = "the data_dir argument", Path(data_dir)
    elif os.environ.get(DATA_ENV):
        origin, path = f"${DATA_ENV}", Path(os.environ[DATA_ENV])
    else:
        origin, path = "the default data folder", DEFAULT_DATA_DIR
    if not path.is_dir():
        raise DataError(
            f"No HAM10000 folder at {path} (from {origin}). Download it with `pskin data download "
            f"--data-dir {path}`, or point {DATA_ENV} at a folder holding HAM10000_metadata.csv and the images."
        )
    return path.resolve()


def detect_layout(root: Path) -> str:
    """Which of the known layouts ``root`` holds: ``images``, ``official`` or ``isic2018``."""
    for layout, folders in LAYOUT_FOLDERS.items():
        if any((root / f).is_dir() for f in folders):
            return layout
    expected = "; ".join(f"{k}: {', '.join(v)}/" for k, v in LAYOUT_FOLDERS.items())
    raise DataError(f"{root} holds none of the known image folders ({expected}).")


def read_metadata(path: Path) -> pd.DataFrame:
    """Read and check a HAM10000-style metadata CSV.

    Handling: a byte-order mark is ignored; extra columns are kept; surrounding spaces are stripped; ages that are
    blank or not numbers become NaN. Errors (:class:`DataError`, naming the file): a missing required column
    (``lesion_id, image_id, dx``), a blank required value, a duplicated ``image_id``, an unknown ``dx`` code, a
    lesion recorded with two diagnoses.
    """
    table = read_csv(path, required=REQUIRED_COLUMNS, what="metadata file")
    for column in table.columns:
        table[column] = table[column].str.strip()
    for column in REQUIRED_COLUMNS:
        blank = table.index[table[column] == ""]
        if len(blank):
            rows = ", ".join(str(i + 2) for i in blank[:10])
            raise DataError(f"{path}: {len(blank)} row(s) with a blank {column} (file lines {rows}).")
    duplicated = table.loc[table["image_id"].duplicated(), "image_id"].unique()
    if len(duplicated):
        raise DataError(f"{path}: image_id listed more than once: {', '.join(duplicated[:10])}"
                        f"{' ...' if len(duplicated) > 10 else ''}.")
    unknown = sorted(set(table["dx"]) - set(ALL_CLASSES))
    if unknown:
        raise DataError(f"{path}: unknown dx code(s) {unknown}; known codes are {list(ALL_CLASSES)}.")
    two_dx = table.groupby("lesion_id")["dx"].nunique()
    two_dx = two_dx[two_dx > 1]
    if len(two_dx):
        raise DataError(f"{path}: lesion(s) with more than one dx: {', '.join(two_dx.index[:10])}.")
    table = _with_metadata_columns(table)
    table["age"] = pd.to_numeric(table["age"], errors="coerce").astype(float)  # NaN-able, whatever the values
    return table


def _with_metadata_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` given the HAM10000 metadata columns it lacks: blank, or NaN for ``age``."""
    for column in HAM10000["metadata_columns"]:
        if column not in table.columns:
            table[column] = np.nan if column == "age" else ""
    return table


def read_isic2018_labels(root: Path) -> pd.DataFrame:
    """Metadata for the ISIC 2018 Task 3 layout from its ground-truth and lesion-groupings CSVs."""
    truth_path = _first_existing(root, [ISIC2018_GROUND_TRUTH,
                                        f"ISIC2018_Task3_Training_GroundTruth/{ISIC2018_GROUND_TRUTH}"])
    groups_path = _first_existing(root, [ISIC2018_LESION_GROUPINGS])
    truth = read_csv(truth_path, required=("image",), what="ground-truth file")
    codes = [c for c in truth.columns if c != "image"]
    if sorted(c.lower() for c in codes) != sorted(ALL_CLASSES):
        raise DataError(f"{truth_path}: expected columns image,{','.join(c.upper() for c in ALL_CLASSES)}; "
                        f"found {list(truth.columns)}.")
    try:
        one_hot = truth[codes].to_numpy(float)
    except ValueError:
        raise DataError(f"{truth_path}: the class columns must hold numbers (0.0 or 1.0).") from None
    if not np.allclose(one_hot.sum(axis=1), 1.0):
        raise DataError(f"{truth_path}: every row must hold exactly one 1.0 among the class columns.")
    labels = pd.DataFrame({"image_id": truth["image"].astype(str),
                           "dx": [codes[i].lower() for i in one_hot.argmax(axis=1)]})
    groups = read_csv(groups_path, required=("image", "lesion_id"), what="lesion-groupings file")
    groups = groups.rename(columns={"image": "image_id", "diagnosis_confirm_type": "dx_type"})
    table = labels.merge(groups, on="image_id", how="left")
    table["lesion_id"] = table["lesion_id"].fillna("")
    return table


def _first_existing(root: Path, names: list[str]) -> Path:
    for name in names:
        if (root / name).is_file():
            return root / name
    raise DataError(f"{root}: none of {names} found (ISIC 2018 Task 3 layout). "
                    "Run `pskin data download` to fetch them.")


def find_image_files(root: Path, layout: str) -> dict[str, Path]:
    """Map image_id (file stem) to its path, over the layout's image folders."""
    files: dict[str, Path] = {}
    for folder in LAYOUT_FOLDERS[layout]:
        if not (root / folder).is_dir():
            continue
        with os.scandir(root / folder) as entries:
            for entry in entries:
                stem, suffix = os.path.splitext(entry.name)
                if suffix.lower() in IMAGE_SUFFIXES and entry.is_file():
                    files.setdefault(stem, Path(entry.path))
    return files


def load_ham10000(
    data_dir: str | os.PathLike | None = None,
    *,
    classes: tuple[str, ...] | list[str] = PAPER_CLASSES,
    skip_missing: bool = False,
) -> LesionImages:
    """Load HAM10000 (or the demo set) from ``data_dir`` / ``$PSKIN_DATA`` / ``data/ham10000``.

    ``classes``: the diagnosis codes to keep, in label order; the paper's three (``mel, nv, bkl``) by default,
    :data:`pskinlib.info.ALL_CLASSES` for all seven. Images listed in the metadata but absent on disk are an error
    that lists them, or with ``skip_missing=True`` a warning, and they are dropped.
    """
    classes = validate_classes(classes)
    root = find_data_dir(data_dir)
    layout = detect_layout(root)
    metadata_path = root / HAM10000["metadata_file"]
    if metadata_path.is_file():
        table = read_metadata(metadata_path)
    elif layout == "isic2018":
        table = read_isic2018_labels(root)
        absent = table.loc[table["lesion_id"] == "", "image_id"].head(10).tolist()
        if absent:
            raise DataError(f"{root}: images without a lesion_id in {ISIC2018_LESION_GROUPINGS}: {absent}.")
        table = _with_metadata_columns(table)  # it has no age, sex or localisation
    else:
        raise DataError(f"{root} has image folders but no {HAM10000['metadata_file']}.")
    table = table[table["dx"].isin(classes)].reset_index(drop=True)

    files = find_image_files(root, layout)
    table["path"] = table["image_id"].map(lambda i: str(files[i]) if i in files else "")
    missing = table.loc[table["path"] == "", "image_id"].tolist()
    if missing:
        listing = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        message = f"{len(missing)} image(s) listed in the metadata are missing under {root}: {listing}"
        if not skip_missing:
            raise DataError(message + ". Pass skip_missing=True (--skip-missing) to leave them out.")
        warnings.warn(message + "; they are left out.", stacklevel=2)
        table = table[table["path"] != ""].reset_index(drop=True)
    _check_no_empty_class(table, classes, root)
    synthetic = (root / SYNTHETIC_MARKER).is_file()
    table["source_dataset"] = "synthetic demo set" if synthetic else HAM10000["name"]
    columns = list(HAM10000["metadata_columns"]) + ["path", "source_dataset"]
    table = table[columns + [c for c in table.columns if c not in columns]]
    return LesionImages(root, table, classes, layout, synthetic, skipped=tuple(missing))


def validate_classes(classes: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    """Check a list of class codes: known, unique, at least two. ``"all"``/``"paper"`` name the usual sets."""
    if isinstance(classes, str):
        named = {"all": ALL_CLASSES, "paper": PAPER_CLASSES}
        classes = named.get(classes, tuple(c.strip() for c in classes.split(",")))
    classes = tuple(classes)
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise ParameterError(f"classes: unknown class code(s) {unknown}; choose from {list(ALL_CLASSES)}.")
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise ParameterError(f"classes: need at least two distinct codes, got {list(classes)}.")
    return classes


def _check_no_empty_class(table: pd.DataFrame, classes: tuple[str, ...], root: Path) -> None:
    empty = [c for c in classes if not (table["dx"] == c).any()]
    if empty:
        raise DataError(f"{root}: no images left for class(es) {empty}; choose other classes or fix the data.")


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Decode one image file to an RGB uint8 array (H, W, 3).

    Grayscale, palette and RGBA images are converted to RGB (alpha dropped). A file that does not decode, or one of
    more than :data:`MAX_IMAGE_PIXELS` pixels (a decompression bomb), raises :class:`DataError` naming it.
    """
    with open_image(path) as image:
        try:
            image.load()
            return np.asarray(image.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"Cannot decode image {path}: {exc}") from None


def open_image(path: str | os.PathLike) -> Image.Image:
    """``PIL.Image.open`` with every way a file can fail to be an image, or be a huge one, as a :class:`DataError`
    naming the file. Use it as a context manager."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"Refusing image {path}: it claims more than {MAX_IMAGE_PIXELS:,} pixels, which no "
                        f"dermoscopy image has (a decompression bomb?): {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"Cannot decode image {path}: {exc}") from None


def image_decodes(path: str | os.PathLike) -> bool:
    """Whether the file at ``path`` decodes as an image (a JPEG is decoded at 1/8 scale: the check is cheap), so
    that a caller can leave out and count the files that do not, instead of stopping at the first."""
    try:
        with open_image(path) as image:
            image.draft("RGB", (1, 1))  # the smallest scale the JPEG decoder offers
            image.load()
        return True
    except (OSError, SyntaxError, ValueError):  # DataError is a ValueError: a refused or undecodable file
        return False
