"""Dermoscopy images from other collections, in one labelled-folder format, for external validation.

A model trained on HAM10000 matters only if it works on images from elsewhere. Every external set here has one
format: a folder with ``labels.csv`` (``image_id,dx,source_dataset`` and optionally ``age,sex,localization``) and an
``images/`` folder of ``<image_id>.<jpg|jpeg|png|bmp>`` files of any size. ``dx`` uses HAM10000's codes;
``source_dataset`` names the collection (``ISIC2017_test``, ``PH2``, ...), so one folder may hold several.

- :func:`read_labelled_folder` reads and checks such a folder (``pskin evaluate --external DIR``).
- :func:`import_ph2` and :func:`import_derm7pt` turn the official distributions of PH2 and derm7pt, which their
  authors hand out after a form, into that format; :func:`isic2017_from_archives` does the same for the ISIC 2017
  Part 3 archives that ``pskin data download isic2017`` fetches. Each writes into a temporary folder beside the
  target and renames it at the end, so a failure (a wrong layout, an unknown diagnosis, an image that will not
  decode) leaves nothing half-done; each counts what it left out.

The ISIC 2017 copy in the project's shared data is found through ``$PSKIN_ISIC2017``. ``ISIC2017_val`` may guide
choices; ``ISIC2017_test`` is only ever reported.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import DataError, OutputExistsError, ParameterError
from ..info import ALL_CLASSES
from ..io import make_folder, read_csv, write_csv
from .ham10000 import open_image

LABELS_FILE = "labels.csv"
IMAGES_FOLDER = "images"
EXTERNAL_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
ISIC2017_ENV = "PSKIN_ISIC2017"
ISIC2017_DEFAULT_DIR = Path("data") / "isic2017"  # where `pskin data download isic2017` puts it
ISIC2017_SETS = {"test": "ISIC2017_test", "val": "ISIC2017_val", "train": "ISIC2017_train"}
# Other collections' training images a run may add to HAM10000's training split (TrainConfig.extra_sources): name ->
# the environment variable of its labelled folder and the source_dataset it takes. Only training sets belong here.
EXTRA_SOURCES = {"ISIC2017_train": (ISIC2017_ENV, "ISIC2017_train")}
# What `pskin data download isic2017` unpacks: each part's image folder and its ground-truth file.
ISIC2017_OFFICIAL = (("val", "ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part3_GroundTruth.csv"),
                     ("test", "ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part3_GroundTruth.csv"))


@dataclass(frozen=True)
class LabelledFolder:
    """An external set: ``table`` has ``image_id, dx, source_dataset, path`` (and the patient columns it had)."""

    root: Path
    table: pd.DataFrame

    @property
    def sources(self) -> list[str]:
        return list(dict.fromkeys(self.table["source_dataset"]))

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        counts = self.table.groupby(["source_dataset", "dx"]).size().unstack(fill_value=0)
        return f"LabelledFolder: {len(self)} images at {self.root.name}\n{counts.to_string()}"


def read_labelled_folder(root: str | os.PathLike, *, sources: tuple[str, ...] | None = None) -> LabelledFolder:
    """Read and check a labelled folder; ``sources`` keeps only those ``source_dataset`` values.

    Errors (:class:`DataError`, naming the file): a missing ``labels.csv`` or column, a blank or repeated
    ``image_id``, a ``dx`` that is not a HAM10000 code, an image that is not in ``images/``.
    """
    root = Path(root)
    if not (root / LABELS_FILE).is_file():
        raise DataError(f"{root}: no {LABELS_FILE}; an external set is a folder with {LABELS_FILE} "
                        f"(image_id,dx,source_dataset) and {IMAGES_FOLDER}/. Make one with `pskin data import` or "
                        "`pskin data download isic2017`.")
    table = read_csv(root / LABELS_FILE, required=("image_id", "dx", "source_dataset"), what="labels file")
    for column in ("image_id", "dx", "source_dataset"):
        table[column] = table[column].str.strip()
        if (table[column] == "").any():
            raise DataError(f"{root / LABELS_FILE}: blank {column} in line(s) "
                            f"{[i + 2 for i in table.index[table[column] == ''][:10]]}.")
    if table["image_id"].duplicated().any():
        raise DataError(f"{root / LABELS_FILE}: image_id listed more than once: "
                        f"{table.loc[table['image_id'].duplicated(), 'image_id'].tolist()[:10]}.")
    if unknown := sorted(set(table["dx"]) - set(ALL_CLASSES)):
        raise DataError(f"{root / LABELS_FILE}: dx value(s) {unknown} are not HAM10000 codes {list(ALL_CLASSES)}.")
    if sources is not None:
        if absent := sorted(set(sources) - set(table["source_dataset"])):
            raise ParameterError(f"sources: {absent} are not in {root / LABELS_FILE} (it holds "
                                 f"{sorted(set(table['source_dataset']))}).")
        table = table[table["source_dataset"].isin(sources)].reset_index(drop=True)
    folder = root / IMAGES_FOLDER
    files = {Path(n).stem: folder / n for n in (os.listdir(folder) if folder.is_dir() else ())
             if Path(n).suffix.lower() in EXTERNAL_SUFFIXES}
    if missing := [i for i in table["image_id"] if i not in files]:
        raise DataError(f"{len(missing)} image(s) of {root / LABELS_FILE} are not in {folder}: {missing[:10]}.")
    if "age" in table.columns:
        table["age"] = pd.to_numeric(table["age"], errors="coerce")
    return LabelledFolder(root, table.assign(path=[str(files[i]) for i in table["image_id"]]))


def read_labelled_folders(folders) -> pd.DataFrame:
    """The tables of one or more labelled folders (a path, or several), one after the other."""
    folders = [folders] if isinstance(folders, (str, os.PathLike)) else folders
    return pd.concat([read_labelled_folder(f).table for f in folders], ignore_index=True)


def extra_training_images(names: tuple[str, ...], classes: tuple[str, ...]) -> pd.DataFrame:
    """The training images of the other collections ``names`` (keys of :data:`EXTRA_SOURCES`) of the given classes,
    as rows of a HAM10000 table: each image is its own lesion (these copies record no lesions), with no metadata."""
    frames = []
    for name in names:
        if name not in EXTRA_SOURCES:
            raise ParameterError(f"extra_sources: unknown {name!r}; choose from {list(EXTRA_SOURCES)}.")
        env, source = EXTRA_SOURCES[name]
        if not os.environ.get(env):
            raise DataError(f"extra source {name}: set {env} to its labelled folder (`pskin data download` names "
                            "where it is).")
        table = read_labelled_folder(os.environ[env], sources=(source,)).table
        table = table[table["dx"].isin(classes)]
        frames.append(pd.DataFrame({"lesion_id": table["image_id"], "image_id": table["image_id"], "dx": table["dx"],
                                    "dx_type": "", "age": float("nan"), "sex": "", "localization": "",
                                    "path": table["path"], "source_dataset": table["source_dataset"]}))
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------------------------
# Writing a labelled folder: all at once, or not at all


def write_labelled_folder(target: str | os.PathLike, rows: list[dict], *, overwrite: bool = False) -> Path:
    """Copy each row's ``source`` image to ``target/images/<image_id><suffix>`` (checking that it decodes) and write
    ``target/labels.csv`` with the rows' other keys. Everything is built in a temporary folder beside ``target``
    first, so a failure leaves ``target`` as it was; other files in ``target`` are kept."""
    target = Path(target)
    if ((target / LABELS_FILE).exists() or (target / IMAGES_FOLDER).exists()) and not overwrite:
        raise OutputExistsError(f"{target} holds a labelled folder already; choose another folder or pass "
                                "--overwrite.")
    if not rows:
        raise DataError(f"nothing to write to {target}: no image of the classes pskin knows was found.")
    make_folder(target, "target")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target))
    try:
        (staging / IMAGES_FOLDER).mkdir()
        for row in rows:
            source = Path(row["source"])
            with open_image(source) as image:  # a file that is not an image fails here, naming it
                image.verify()
            shutil.copyfile(source, staging / IMAGES_FOLDER / f"{row['image_id']}{source.suffix.lower()}")
        write_csv(staging / LABELS_FILE, pd.DataFrame([{k: v for k, v in r.items() if k != "source"} for r in rows]))
        shutil.rmtree(target / IMAGES_FOLDER, ignore_errors=True)
        (staging / IMAGES_FOLDER).rename(target / IMAGES_FOLDER)
        os.replace(staging / LABELS_FILE, target / LABELS_FILE)  # last: a labels file always lists its images
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _missing(root: Path, expected: str) -> DataError:
    return DataError(f"{root}: {expected} is missing; expected the official distribution as unpacked.")


# ---------------------------------------------------------------------------------------------------------------
# PH2 (Mendonça et al. 2013): 200 images, common and atypical nevi and melanomas


PH2_DIAGNOSES = {"0": "nv", "1": "nv", "2": "mel"}  # PH2's clinical diagnosis: common nevus, atypical nevus, melanoma


def import_ph2(folder: str | os.PathLike, target: str | os.PathLike, *, overwrite: bool = False) -> dict:
    """PH2 as a labelled folder: ``PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp`` plus
    ``PH2_dataset.xlsx`` or ``PH2_dataset.txt``. Common and atypical nevi become ``nv``, melanomas ``mel``.
    Returns the counts written."""
    root = Path(folder)
    images = root / "PH2 Dataset images"
    if not images.is_dir():
        raise _missing(root, "the folder 'PH2 Dataset images'")
    rows = []
    for name, code in sorted(_ph2_diagnoses(root).items()):
        path = images / name / f"{name}_Dermoscopic_Image" / f"{name}.bmp"
        if not path.is_file():
            raise _missing(root, f"'PH2 Dataset images/{name}/{name}_Dermoscopic_Image/{name}.bmp'")
        rows.append({"image_id": f"PH2_{name}", "dx": code, "source_dataset": "PH2", "source": path})
    write_labelled_folder(target, rows, overwrite=overwrite)
    return pd.Series([r["dx"] for r in rows]).value_counts().to_dict()


def _ph2_diagnoses(root: Path) -> dict[str, str]:
    """Image name -> dx code, from the spreadsheet or its text export."""
    if (root / "PH2_dataset.txt").is_file():
        found = {}
        for number, line in enumerate((root / "PH2_dataset.txt").read_text(errors="replace").splitlines(), 1):
            cells = [c.strip() for c in line.strip().strip("|").split("||")]
            if not cells or not re.fullmatch(r"IMD\d+", cells[0]):
                continue
            if len(cells) < 3 or cells[2] not in PH2_DIAGNOSES:
                raise DataError(f"{root / 'PH2_dataset.txt'} line {number}: clinical diagnosis {cells[2:3]} is not "
                                "0 (common nevus), 1 (atypical nevus) or 2 (melanoma).")
            found[cells[0]] = PH2_DIAGNOSES[cells[2]]
        if not found:
            raise DataError(f"{root / 'PH2_dataset.txt'}: no line describes an image (|| IMDxxx || ...).")
        return found
    if (root / "PH2_dataset.xlsx").is_file():
        try:
            sheet = pd.read_excel(root / "PH2_dataset.xlsx", header=None, dtype=str)
        except ImportError:
            raise DataError("reading PH2_dataset.xlsx needs openpyxl (`pip install openpyxl`), or give the "
                            "folder with PH2_dataset.txt.") from None
        header = next((i for i, row in sheet.iterrows() if "Image Name" in row.fillna("").str.strip().tolist()), None)
        if header is None:
            raise DataError(f"{root / 'PH2_dataset.xlsx'}: no header row with 'Image Name'.")
        sheet.columns = [str(c).strip() for c in sheet.iloc[header].fillna("")]
        names = {"Common Nevus": "nv", "Atypical Nevus": "nv", "Melanoma": "mel"}
        if not set(names) <= set(sheet.columns):
            raise DataError(f"{root / 'PH2_dataset.xlsx'}: expected the columns {list(names)} beside 'Image Name'.")
        found = {}
        for _, row in sheet.iloc[header + 1:].iterrows():
            name = str(row["Image Name"]).strip()
            if re.fullmatch(r"IMD\d+", name):
                marked = [code for column, code in names.items() if str(row[column]).strip().upper() == "X"]
                if len(marked) != 1:
                    raise DataError(f"{root / 'PH2_dataset.xlsx'}: {name} needs exactly one X among {list(names)}.")
                found[name] = marked[0]
        return found
    raise _missing(root, "PH2_dataset.xlsx (or PH2_dataset.txt)")


# ---------------------------------------------------------------------------------------------------------------
# derm7pt (Kawahara et al. 2019): the seven-point checklist set, clinical and dermoscopic images per case


DERM7PT_NEVI = ("blue nevus", "clark nevus", "combined nevus", "congenital nevus", "dermal nevus",
                "recurrent nevus", "reed or spitz nevus")
DERM7PT_LEFT_OUT = ("basal cell carcinoma", "dermatofibroma", "lentigo", "melanosis", "miscellaneous",
                    "vascular lesion")


def derm7pt_code(diagnosis: str) -> str | None:
    """HAM10000's code for a derm7pt diagnosis (``None``: left out); an unknown diagnosis is a :class:`DataError`."""
    name = " ".join(diagnosis.lower().split())
    if name.startswith("melanoma"):  # in situ, by thickness, metastasis: every melanoma diagnosis
        return "mel"
    if name in DERM7PT_NEVI:
        return "nv"
    if name == "seborrheic keratosis":
        return "bkl"
    if name in DERM7PT_LEFT_OUT:
        return None
    raise DataError(f"derm7pt: unknown diagnosis {diagnosis!r}; known are melanoma (any), {list(DERM7PT_NEVI)}, "
                    f"seborrheic keratosis and {list(DERM7PT_LEFT_OUT)}.")


def import_derm7pt(folder: str | os.PathLike, target: str | os.PathLike, *, overwrite: bool = False) -> dict:
    """derm7pt as a labelled folder, from ``release_v0/meta/meta.csv`` and ``release_v0/images/``: each case's
    dermoscopic image (``derm``), never the clinical one. Returns the counts written and those left out."""
    root = Path(folder) / "release_v0"
    meta = root / "meta" / "meta.csv"
    if not meta.is_file():
        raise _missing(Path(folder), "release_v0/meta/meta.csv")
    table = read_csv(meta, required=("case_num", "diagnosis", "derm"), what="derm7pt meta file")
    rows, left_out = [], {}
    for record in table.itertuples():
        code = derm7pt_code(record.diagnosis)
        if code is None:
            left_out[record.diagnosis] = left_out.get(record.diagnosis, 0) + 1
            continue
        path = root / "images" / record.derm
        if not path.is_file():
            raise _missing(Path(folder), f"release_v0/images/{record.derm} (case {record.case_num})")
        rows.append({"image_id": f"derm7pt_{record.case_num}", "dx": code, "source_dataset": "derm7pt",
                     "source": path})
    write_labelled_folder(target, rows, overwrite=overwrite)
    return {**pd.Series([r["dx"] for r in rows]).value_counts().to_dict(), "left_out": left_out}


# The distributions `pskin data import NAME` turns into labelled folders, by name.
IMPORTERS = {"ph2": import_ph2, "derm7pt": import_derm7pt}


# ---------------------------------------------------------------------------------------------------------------
# ISIC 2017 Part 3 (Codella et al. 2018): the official validation and test archives


def isic2017_from_archives(downloads: str | os.PathLike, target: str | os.PathLike, *,
                           overwrite: bool = False) -> dict:
    """The labelled folder of the ISIC 2017 Part 3 validation and test sets, from their unpacked official archives
    and ground-truth CSVs in ``downloads``. The challenge has three classes: an image flagged neither melanoma nor
    seborrheic keratosis is a nevus."""
    downloads = Path(downloads)
    rows = []
    for part, folder_name, truth_name in ISIC2017_OFFICIAL:
        truth = read_csv(downloads / truth_name, required=("image_id", "melanoma", "seborrheic_keratosis"),
                         what="ground-truth file")
        for row in truth.itertuples():
            try:
                melanoma, keratosis = float(row.melanoma), float(row.seborrheic_keratosis)
            except ValueError:
                raise DataError(f"{downloads / truth_name}: {row.image_id} has flags that are not numbers.") from None
            if melanoma and keratosis:
                raise DataError(f"{downloads / truth_name}: {row.image_id} is flagged melanoma and keratosis.")
            path = downloads / folder_name / f"{row.image_id}.jpg"
            if not path.is_file():
                raise _missing(downloads, f"{folder_name}/{row.image_id}.jpg")
            rows.append({"image_id": row.image_id, "dx": "mel" if melanoma else "bkl" if keratosis else "nv",
                         "source_dataset": ISIC2017_SETS[part], "source": path})
    write_labelled_folder(target, rows, overwrite=overwrite)
    return pd.DataFrame(rows).groupby(["source_dataset", "dx"]).size().to_dict()
