"""Combining recorded predictions: several runs into one ensemble, and a lesion's images into one decision.

Both work on the ``predictions_val.csv`` / ``predictions_test.csv`` files every run writes; nothing is retrained.

* :func:`average_runs`: the mean class probabilities of runs trained on the same split. Averaging a few runs with
  different seeds usually beats each of them; on a CPU, runs trained side by side with one thread each make good
  use of the cores (``experiments/quality_bar.py``).
* :func:`average_by_lesion`: each image's probabilities replaced by the mean over all images of its lesion in the
  same table. HAM10000 photographs many lesions more than once, and whoever takes the pictures knows which show one
  lesion; the book reports it beside the image-level result, never instead of it.

:func:`write_ensemble` (``pskin ensemble RUN... --out DIR``) writes an ensemble's predictions and an
``ensemble.json`` with its members and the same metrics a run's ``metrics.json`` holds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.splits import split_hash
from ..errors import ParameterError
from ..io import make_folder
from ..metrics import report_with_intervals
from ..runs import PARTS, EnsembleRecord, RunRecord, scores_of


def _finished(run_dir) -> RunRecord:
    """A finished run's record: an ensemble reads only its split, predictions and metrics."""
    record = RunRecord(run_dir)
    if not record.finished:
        raise ParameterError(f"run_dirs: {record.path} is not a finished run (no metrics.json).")
    return record


def probability_columns(predictions: pd.DataFrame) -> list[str]:
    return [c for c in predictions.columns if c.startswith("p_")]


def _with_decisions(table: pd.DataFrame) -> pd.DataFrame:
    columns = probability_columns(table)
    table["predicted"] = [columns[i][2:] for i in table[columns].to_numpy().argmax(1)]
    return table


def average_runs(run_dirs, part: str = "test") -> pd.DataFrame:
    """The mean probabilities of ``run_dirs`` on ``part``, one row per image, with the new decisions.

    The runs must share their split (same split hash) and classes; otherwise the average would mix different test
    images or class orders, and a clear error says which run differs.
    """
    runs = [_finished(r) for r in run_dirs]
    if len(runs) < 2:
        raise ParameterError(f"run_dirs: an ensemble needs at least two runs, got {len(runs)}.")
    reference = runs[0]
    reference_hash = split_hash(reference.split())
    tables = []
    for run in runs:
        if split_hash(run.split()) != reference_hash:
            raise ParameterError(f"{run.path}: trained on another split than {reference.path}; an ensemble needs "
                                 "one split.")
        table = run.predictions(part)
        if tables and (list(table["image_id"]) != list(tables[0]["image_id"])
                       or probability_columns(table) != probability_columns(tables[0])):
            raise ParameterError(f"{run.path}: its {part} images or classes differ from {reference.path}'s.")
        tables.append(table)
    columns = probability_columns(tables[0])
    out = tables[0].drop(columns=columns + ["predicted"]).copy()
    out[columns] = np.mean([t[columns].to_numpy() for t in tables], axis=0)
    return _with_decisions(out)


def average_by_lesion(predictions: pd.DataFrame) -> pd.DataFrame:
    """``predictions`` with every image's probabilities replaced by its lesion's mean, and the new decisions."""
    if "lesion_id" not in predictions:
        raise ValueError("predictions: no lesion_id column to group images by.")
    columns = probability_columns(predictions)
    out = predictions.copy()
    out[columns] = predictions.groupby("lesion_id")[columns].transform("mean")
    return _with_decisions(out)


def evaluate_predictions(predictions: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """The metrics of a predictions table (as a run's ``metrics.json`` has them), with bootstrap intervals."""
    columns = probability_columns(predictions)
    classes = tuple(c[2:] for c in columns)
    unknown = sorted(set(predictions["true"]) - set(classes))
    if unknown:
        raise ParameterError(f"predictions: true labels {unknown} have no probability column.")
    return report_with_intervals(*scores_of(predictions, classes), classes, n_boot=n_boot, seed=seed)


def write_ensemble(run_dirs, out_dir: str | os.PathLike, n_boot: int = 1000) -> Path:
    """Average ``run_dirs`` on validation and test and write predictions and ``ensemble.json`` into ``out_dir``.

    ``ensemble.json`` holds the members (paths relative to ``out_dir``, so the folder can move with its members),
    each member's test balanced accuracy, and for each part the ensemble's metrics at image level and with lesion
    averaging (``<part>_by_lesion``).
    """
    runs = [_finished(r) for r in run_dirs]
    ensemble = EnsembleRecord(make_folder(out_dir, "out_dir"))  # before any work: a bad folder fails at once
    summary: dict = {"members": [], "classes": None}
    for run in runs:
        metrics = run.metrics
        summary["members"].append({"run": os.path.relpath(run.path, ensemble.path), "best_epoch": metrics["best_epoch"],
                                   "test_balanced_accuracy": metrics["test"]["balanced_accuracy"]})
    for part in PARTS:
        table = average_runs(runs, part)
        ensemble.write_predictions(table, part)
        summary[part] = evaluate_predictions(table, n_boot=n_boot)
        summary[f"{part}_by_lesion"] = evaluate_predictions(average_by_lesion(table), n_boot=n_boot)
        summary["classes"] = [c[2:] for c in probability_columns(table)]
    ensemble.write_summary(summary)
    return ensemble.path
