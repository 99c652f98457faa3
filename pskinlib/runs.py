"""Run records: the one definition of what a run folder holds, and the one class that reads and writes it.

A training run writes its folder through a :class:`RunRecord`::

    <run>/config.json            every parameter, the data (by name, layout and metadata checksum), the split's
                                 hash and counts, the class weights, library versions, the machine
    <run>/split.csv              image_id, lesion_id, dx, split (one row per drawn image)
    <run>/history.csv            one row per epoch: loss, scores, learning rate, speed
    <run>/best.pt, last.pt       checkpoints (tensors and plain values only: they load with weights_only=True)
    <run>/metrics.json           after training: the final scores on validation and test, with bootstrap intervals
    <run>/predictions_val.csv    one row per image: image_id, lesion_id, true, predicted, p_<class>
    <run>/predictions_test.csv
    <run>/fusion-metadata/       the head refitted with age, sex and body site (fusion-image/: the control)
    <run>/eval-<name>/           an evaluation on another labelled folder (metrics.json, predictions.csv)

Everything else in pskin asks a record (``RunRecord.open(path).metrics``, ``.config.model``,
``.predictions("test")``, ``.checkpoint("best")``, ``.fusion(True)``) instead of spelling file names, so the format
lives here alone. A record reads each of its files once and keeps what it read (a file written through the record is
read again when next asked); a new record object reads the folder afresh. Every file is written atomically
(:mod:`pskinlib.io`): a run killed at any moment leaves the previous complete version.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import re
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import CheckpointError, DataError, OutputExistsError, ParameterError, WriteError
from .io import make_folder, read_csv, read_json, write_bytes_atomic, write_csv, write_json

RUNS_ENV = "PSKIN_RUNS"
PARTS = ("val", "test")
CONFIG, SPLIT, HISTORY, METRICS = "config.json", "split.csv", "history.csv", "metrics.json"
CHECKPOINTS = {"best": "best.pt", "last": "last.pt"}
FUSION_FOLDERS = {True: "fusion-metadata", False: "fusion-image"}
FUSION_HEAD = "fusion.json"
EVALUATION_PREFIX = "eval-"
ENSEMBLE_SUMMARY = "ensemble.json"
# Summaries that the experiment scripts write beside their run records.
QUALITY_BAR_SUMMARY = "quality_bar.json"
GPU_RUN_SUMMARY = "gpu_paper_run.json"
PAPER_CPU_SUMMARY = "paper_cpu.json"  # the manifest of the study's runs on a CPU (experiments/paper_cpu.py)
RECORD_FILES = (CONFIG, SPLIT, HISTORY, METRICS, *(f"predictions_{p}.csv" for p in PARTS))


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_ENV) or "runs")


def predictions_table(image_ids, labels, probs, classes, lesion_ids=None) -> pd.DataFrame:
    """The predictions file's rows: ``image_id`` (``lesion_id``), ``true``, ``predicted`` and ``p_<class>`` per
    class, from integer ``labels`` and probabilities ``(N, K)``; runs, fusions and evaluations share it."""
    table = pd.DataFrame({"image_id": list(image_ids)})
    if lesion_ids is not None:
        table["lesion_id"] = list(lesion_ids)
    table["true"] = [classes[i] for i in labels]
    table["predicted"] = [classes[i] for i in probs.argmax(1)]
    for i, code in enumerate(classes):
        table[f"p_{code}"] = probs[:, i]
    return table


def scores_of(table: pd.DataFrame, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A predictions table as the true classes' indices into ``classes`` and an ``(N, K)`` array of probabilities
    in that column order: the inverse of :func:`predictions_table`."""
    return (table["true"].map({c: i for i, c in enumerate(classes)}).to_numpy(),
            table[[f"p_{c}" for c in classes]].to_numpy())


class ResultRecord(os.PathLike):
    """A folder of results: ``metrics.json`` and predictions, one file per part (``predictions_<part>.csv``) or a
    single ``predictions.csv``. Runs, fusions and evaluations are all result records.

    A record is path-like: ``Path(record)``, ``open(record / name)`` and any function taking a folder accept it.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    __str__ = __fspath__

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def name(self) -> str:
        return self.path.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:  # the same folder, whether given as a record or a path
        return isinstance(other, (str, os.PathLike)) and Path(other) == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def finished(self) -> bool:
        """Whether the results are written (``metrics.json`` is the last file a run writes)."""
        return (self.path / METRICS).is_file()

    @functools.cached_property
    def metrics(self) -> dict:
        """``metrics.json``, read once (an unfinished record is an error, and is read again when asked again)."""
        if not self.finished:
            raise ParameterError(f"{self.path} is not finished: it holds no {METRICS}.")
        return read_json(self.path / METRICS)

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.path / METRICS, metrics)
        self.__dict__.pop("metrics", None)  # read again, as written, when next asked

    def predictions_path(self, part: str | None = None) -> Path:
        if part is not None and part not in PARTS:
            raise ParameterError(f"part: expected one of {list(PARTS)}, got {part!r}.")
        return self.path / (f"predictions_{part}.csv" if part else "predictions.csv")

    def predictions(self, part: str | None = None) -> pd.DataFrame:
        """The recorded predictions: image_id (lesion_id), true, predicted, p_<class>; probabilities as floats.
        Each file is read once; every call returns a copy, so a caller's changes stay its own."""
        read = self.__dict__.setdefault("_predictions", {})
        if part not in read:
            path = self.predictions_path(part)
            if not path.is_file():
                raise ParameterError(f"{self.path} holds no {path.name}; is it a finished pskin record?")
            table = read_csv(path, required=("image_id", "true", "predicted"), what="predictions file")
            columns = [c for c in table.columns if c.startswith("p_")]
            try:
                read[part] = table.astype(dict.fromkeys(columns, float))
            except ValueError:
                raise DataError(f"{path}: its probability columns {columns} must hold numbers.") from None
        return read[part].copy()

    def scores(self, part: str | None, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """:func:`scores_of` the recorded predictions of ``part``."""
        return scores_of(self.predictions(part), classes)

    def write_predictions(self, table: pd.DataFrame, part: str | None = None) -> None:
        write_csv(self.predictions_path(part), table)
        self.__dict__.get("_predictions", {}).pop(part, None)  # read again, as written, when next asked


class FusionRecord(ResultRecord):
    """A run's head refitted on its image features (and the patient's metadata): ``fusion.json`` holds the head."""

    @functools.cached_property
    def head(self) -> dict:
        if not (self.path / FUSION_HEAD).is_file():
            raise ParameterError(f"{self.path.parent} has no {self.name}/{FUSION_HEAD}; fit one first with "
                                 f"`pskin fuse {self.path.parent}"
                                 f"{'' if self.name == FUSION_FOLDERS[True] else ' --image-only'}`.")
        return read_json(self.path / FUSION_HEAD)

    def write_head(self, head: dict) -> None:
        write_json(self.path / FUSION_HEAD, head)
        self.__dict__.pop("head", None)  # read again, as written, when next asked


class EnsembleRecord(ResultRecord):
    """Several runs' averaged predictions: ``ensemble.json`` (members and metrics per part) instead of metrics."""

    @property
    def finished(self) -> bool:
        return (self.path / ENSEMBLE_SUMMARY).is_file()

    @functools.cached_property
    def summary(self) -> dict:
        return read_json(self.path / ENSEMBLE_SUMMARY)

    def write_summary(self, summary: dict) -> None:
        write_json(self.path / ENSEMBLE_SUMMARY, summary)
        self.__dict__.pop("summary", None)  # read again, as written, when next asked


class RunRecord(ResultRecord):
    """One training run's folder (see the module's docstring for what it holds)."""

    @classmethod
    def open(cls, path: str | os.PathLike, *, finished: bool = False) -> RunRecord:
        """The record at ``path``; a folder that is not a pskin run (or, with ``finished``, whose training has not
        ended) is a :class:`ParameterError` saying so."""
        record = cls(path)
        if not (record.path / CONFIG).is_file():
            raise ParameterError(f"run_dir: {record.path} holds no {CONFIG}; it is not a pskin run folder.")
        if finished and not record.finished:
            raise ParameterError(f"run_dir: {record.path} is not a finished run (no {METRICS}).")
        return record

    @classmethod
    def create(cls, root: str | os.PathLike, name: str) -> RunRecord:
        """A fresh folder ``root/<date-time>-<name>[-N]``; never an existing one (``mkdir`` without ``exist_ok``
        is atomic, so two runs started in the same second get different folders)."""
        root = Path(root)
        make_folder(root, "runs_dir")
        base = f"{time.strftime('%Y%m%d-%H%M%S')}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}"
        for n in range(1000):
            path = root / (base if n == 0 else f"{base}-{n}")
            with contextlib.suppress(FileExistsError):
                path.mkdir()
                return cls(path)
        raise OutputExistsError(f"Could not create a new run folder under {root}.")

    # -- what the run was ------------------------------------------------------------------------------------------

    @functools.cached_property
    def recorded(self) -> dict:
        """``config.json`` as written: ``config``, ``data``, ``class_weights``, ``environment``, ..."""
        return read_json(self.path / CONFIG)

    @functools.cached_property
    def config(self):
        """The run's :class:`~pskinlib.train.config.TrainConfig`, as it trained."""
        return self.config_with()

    def config_with(self, **overrides: Any):
        """The run's :class:`~pskinlib.train.config.TrainConfig` with ``overrides`` (e.g. another device)."""
        from .train.config import make_config

        values = dict(self.recorded["config"])
        return make_config(values.pop("profile"), **{**values, **overrides})

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.recorded["data"]["classes"])

    @functools.cached_property
    def history(self) -> pd.DataFrame:
        """``history.csv``, one row per epoch (empty before the first epoch ends)."""
        path = self.path / HISTORY
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()

    def split(self) -> pd.DataFrame:
        """``split.csv``: each image's split; read once, every call returns a copy."""
        from .data.splits import read_split

        if "_split" not in self.__dict__:
            self.__dict__["_split"] = read_split(self.path / SPLIT)
        return self.__dict__["_split"].copy()

    def write_config(self, record: dict) -> None:
        write_json(self.path / CONFIG, record)
        for name in ("recorded", "config"):  # read again, as written, when next asked
            self.__dict__.pop(name, None)

    def write_split(self, split: pd.DataFrame) -> None:
        from .data.splits import write_split

        write_split(split, self.path / SPLIT)
        self.__dict__.pop("_split", None)  # read again, as written, when next asked

    def write_history(self, history: pd.DataFrame) -> None:
        write_csv(self.path / HISTORY, history)
        self.__dict__.pop("history", None)  # read again, as written, when next asked

    # -- checkpoints -----------------------------------------------------------------------------------------------

    def checkpoint(self, kind: str = "best") -> Path:
        if kind not in CHECKPOINTS:
            raise ParameterError(f"checkpoint: expected one of {list(CHECKPOINTS)}, got {kind!r}.")
        return self.path / CHECKPOINTS[kind]

    def save_checkpoint(self, kind: str, state: dict[str, Any]) -> None:
        try:
            save_checkpoint(self.checkpoint(kind), state)
        except WriteError as exc:
            if not self.checkpoint("last").is_file():
                raise
            raise WriteError(f"{exc} Its last complete checkpoint is kept: once the disk takes it, `pskin train "
                             f"--resume {self.path}` goes on from there.") from exc

    def load_checkpoint(self, kind: str = "best", map_location: Any = "cpu") -> dict[str, Any]:
        return load_checkpoint(self.checkpoint(kind), map_location)

    # -- what was made from it -------------------------------------------------------------------------------------

    def fusion(self, use_metadata: bool = True) -> FusionRecord:
        """The head refitted with (``use_metadata``) or without the patient's metadata."""
        return FusionRecord(self.path / FUSION_FOLDERS[bool(use_metadata)])

    def evaluation(self, name: str) -> ResultRecord:
        """The evaluation on the labelled folder called ``name`` (``eval-<name>/``)."""
        if not name or "/" in name or name.startswith("."):
            raise ParameterError(f"evaluation name: expected a plain folder name, got {name!r}.")
        return ResultRecord(self.path / f"{EVALUATION_PREFIX}{name}")

    def evaluations(self) -> dict[str, ResultRecord]:
        """Every finished evaluation of the run, by name."""
        found = (ResultRecord(p) for p in sorted(self.path.glob(f"{EVALUATION_PREFIX}*")) if p.is_dir())
        return {r.name[len(EVALUATION_PREFIX):]: r for r in found if r.finished}

    # -- copies ----------------------------------------------------------------------------------------------------

    def copy_to(self, target: str | os.PathLike) -> None:
        """Copy the record files and the fusion and evaluation folders, without checkpoints, into the existing
        folder ``target``."""
        target = Path(target)
        for name in RECORD_FILES:
            if (self.path / name).is_file():
                shutil.copy2(self.path / name, target / name)
        for folder in sorted(self.path.iterdir()):
            if folder.is_dir() and (folder.name in FUSION_FOLDERS.values()
                                    or folder.name.startswith(EVALUATION_PREFIX)):
                shutil.copytree(folder, target / folder.name, ignore=shutil.ignore_patterns("*.pt"))

    def export(self, destination: str | os.PathLike) -> RunRecord:
        """Copy the record (with its fusion and evaluation folders, without checkpoints) into
        ``destination/<run name>`` (e.g. ``book/results/quick``): the book's reference results are run records,
        never weights or images. The copy names the data by dataset, layout and checksum, not by a path of this
        machine."""
        if not self.finished:
            raise ParameterError(f"run_dir: {self.path} is not a finished run (no {METRICS}).")
        target = Path(destination) / self.name
        try:
            make_folder(Path(destination), "destination")
            target.mkdir(exist_ok=False)
        except FileExistsError:
            raise OutputExistsError(f"{target} exists already; remove it or export elsewhere.") from None
        self.copy_to(target)
        exported = RunRecord(target)
        recorded = exported.recorded
        recorded["config"]["data_dir"] = None
        recorded["data"].pop("root", None)
        exported.write_config(recorded)
        return exported


def find_runs(root: str | os.PathLike) -> list[RunRecord]:
    """Finished runs directly under ``root``, oldest first."""
    root = Path(root)
    return sorted((RunRecord(p.parent) for p in root.glob(f"*/{METRICS}") if (p.parent / CONFIG).is_file()),
                  key=lambda r: r.name) if root.is_dir() else []


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically: a crash mid-write leaves the previous file intact. A disk that refuses it is a
    :class:`~pskinlib.errors.WriteError` saying why: torch's writer reports a full disk as a ``RuntimeError``
    (``[enforce fail at inline_container.cc] unexpected pos``), so that counts as a failed write too."""
    import torch

    write_bytes_atomic(path, lambda handle: torch.save(state, handle), writer_errors=(RuntimeError,))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a damaged or foreign file raises :class:`CheckpointError`."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path} was refused: it holds objects other than tensors and plain values, "
                              f"which could run code when loaded ({str(exc).splitlines()[0]}).") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is damaged or not a PyTorch checkpoint ({exc}). Delete it and resume "
                              "from another checkpoint, or start the run again.") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a pskin checkpoint (no 'model' entry).")
    return state
