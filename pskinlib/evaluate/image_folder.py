"""A trained run on a labelled folder of images from anywhere: the same metrics and predictions as training.

A model trained on HAM10000 can be tested on another dermoscopy collection: :func:`evaluate_folder` reads a CSV with
``image_id,dx`` and ``<image_id>.jpg``/``.jpeg``/``.png`` files of any size, resizes them exactly as the training
cache did, and records the result in the run (``RunRecord.evaluation(name)``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..data.ham10000 import IMAGE_SUFFIXES
from ..errors import DataError
from ..io import read_csv
from ..metrics import report_with_intervals
from ..runs import ResultRecord, RunRecord, predictions_table
from .fusion import PATIENT_COLUMNS, load_fused
from .predict import load_trained


def read_labels(labels_csv: str | os.PathLike, images_dir: str | os.PathLike,
                classes: tuple[str, ...]) -> pd.DataFrame:
    """An ``image_id,dx`` CSV joined to its files in ``images_dir`` (``<image_id>.jpg``/``.jpeg``/``.png``)."""
    labels = read_csv(labels_csv, required=("image_id", "dx"), what="labels file")
    if labels.empty:
        raise DataError(f"{labels_csv}: the labels file lists no image.")
    unknown = sorted(set(labels["dx"]) - set(classes))
    if unknown:
        raise DataError(f"{labels_csv}: dx value(s) {unknown} are not among the model's classes {list(classes)}.")
    if not Path(images_dir).is_dir():
        raise DataError(f"{images_dir}: no such folder of images.")
    files = {Path(name).stem: Path(images_dir) / name for name in os.listdir(images_dir)
             if Path(name).suffix.lower() in IMAGE_SUFFIXES}
    missing = [i for i in labels["image_id"] if i not in files]
    if missing:
        raise DataError(f"{len(missing)} image(s) of {labels_csv} are not in {images_dir}: {missing[:10]}.")
    return labels.assign(path=[str(files[i]) for i in labels["image_id"]])


def evaluate_folder(run_dir: str | os.PathLike, images_dir: str | os.PathLike, labels_csv: str | os.PathLike,
                    *, out_dir: str | os.PathLike | None = None, device: str = "auto",
                    metadata: bool = False) -> dict:
    """Evaluate a run on a labelled folder; record ``metrics.json`` and ``predictions.csv`` in the run's
    ``eval-<folder name>/`` (``...-metadata`` with ``metadata``), or in ``out_dir``, and return the metrics.

    ``metadata``: predict through the run's fusion head (fitted by ``pskin fuse``) with the CSV's ``age``, ``sex``
    and ``localization`` columns.
    """
    record = RunRecord.open(run_dir)
    model = load_fused(record, device=device) if metadata else load_trained(record, device=device)
    classes = model.head.classes if metadata else model.classes
    labels = read_labels(labels_csv, images_dir, classes)
    if metadata:
        missing = [c for c in PATIENT_COLUMNS if c not in labels.columns]
        if missing:
            raise DataError(f"{labels_csv}: metadata=True needs the column(s) {missing} beside image_id,dx.")
        probs = model.predict(labels["path"].tolist(), labels[list(PATIENT_COLUMNS)])
    else:
        probs = model.predict(labels["path"].tolist())
    y_true = labels["dx"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    name = f"{Path(images_dir).name}{'-metadata' if metadata else ''}"
    result = ResultRecord(out_dir) if out_dir else record.evaluation(name)
    result.write_predictions(predictions_table(labels["image_id"], y_true, probs, classes))
    metrics = {**report_with_intervals(y_true, probs, classes), "images_dir": Path(images_dir).name,
               "metadata": metadata}
    result.write_metrics(metrics)
    return metrics
