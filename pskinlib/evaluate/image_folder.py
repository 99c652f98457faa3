"""A trained run on a labelled folder of images from anywhere: the same metrics and predictions as training.

A model trained on HAM10000 can be tested on another dermoscopy collection: :func:`evaluate_folder` reads a CSV with
``image_id,dx`` and ``<image_id>.jpg``/``.jpeg``/``.png`` files of any size, resizes them exactly as the training
cache did, and records the result in the run (``RunRecord.evaluation(name)``).

Images a run cannot be scored on are left out, counted and named, never dropped silently: :func:`leave_out` sorts
them by reason (a class the run does not know, a collection the run trained on, a file that does not decode), and
the evaluation's ``metrics.json`` records the counts as ``left_out``: reason -> ``<source_dataset>/<dx>`` (or
``<dx>``) -> images, and their ids as ``left_out_images``: reason -> image ids. :func:`left_out_by_reason` reads the
counts back, from older records too, and :func:`left_out_lines` says them in one line per reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..data.ham10000 import IMAGE_SUFFIXES, image_decodes
from ..errors import DataError
from ..info import PATIENT_COLUMNS
from ..io import make_folder, read_csv
from ..metrics import report_with_intervals
from ..runs import ResultRecord, RunRecord, predictions_table
from .fusion import load_fused
from .predict import load_trained

# Why an evaluation leaves an image out, in the order they are checked (the first that applies counts).
TRAINED_ON = "trained on this collection"
UNKNOWN_CLASS = "class the run does not know"
UNREADABLE = "unreadable image"
LEFT_OUT_REASONS = (TRAINED_ON, UNKNOWN_CLASS, UNREADABLE)
# Records written before the reasons were kept hold one flat count per <source_dataset>/<dx>.
REASON_NOT_RECORDED = "left out (reason not recorded)"
NAMED_LEFT_OUT = 10  # image ids a line names per reason; the rest are counted ("and N more")


def leave_out(table: pd.DataFrame, classes: tuple[str, ...], *, trained_on: tuple[str, ...] = ()
              ) -> tuple[pd.DataFrame, dict[str, dict[str, int]], dict[str, list[str]]]:
    """The rows of ``table`` (``image_id, dx, path``, and ``source_dataset`` where known) a run with ``classes`` can
    be scored on; the counts of the others by reason (:data:`LEFT_OUT_REASONS`) and by ``<source_dataset>/<dx>``
    (``<dx>`` without a source column); and their image ids by reason. Left out are images of a collection in
    ``trained_on``, of a class not in ``classes``, and files that do not decode. Only the images still kept are
    decoded (cheaply, :func:`image_decodes`)."""
    reasons = pd.Series("", index=table.index, dtype=object)
    if "source_dataset" in table:
        reasons[table["source_dataset"].isin(trained_on)] = TRAINED_ON
    reasons[(reasons == "") & ~table["dx"].isin(classes)] = UNKNOWN_CLASS
    kept = reasons.index[reasons == ""]
    reasons.loc[[i for i in kept if not image_decodes(table.at[i, "path"])]] = UNREADABLE
    groups = table["source_dataset"] + "/" + table["dx"] if "source_dataset" in table else table["dx"]
    counts, names = {}, {}
    for reason in LEFT_OUT_REASONS:
        if (reasons == reason).any():
            left = groups[reasons == reason]
            counts[reason] = {group: int(n) for group, n in left.groupby(left, sort=False).size().items()}
            names[reason] = [str(i) for i in table.loc[reasons == reason, "image_id"]]
    return table[reasons == ""].reset_index(drop=True), counts, names


def left_out_by_reason(metrics: dict) -> dict[str, dict[str, int]]:
    """An evaluation's ``left_out`` counts by reason; a record written before the reasons were kept (one flat count
    per ``<source_dataset>/<dx>``) gives them under :data:`REASON_NOT_RECORDED`."""
    left_out = metrics.get("left_out") or {}
    if all(isinstance(counts, dict) for counts in left_out.values()):
        return left_out
    return {REASON_NOT_RECORDED: left_out}


def left_out_lines(metrics: dict) -> list[str]:
    """One line per reason an evaluation left images out: the count per ``<source_dataset>/<dx>``, then the image
    ids (the first :data:`NAMED_LEFT_OUT`, and how many more; records written before the ids were kept give none)."""
    lines = []
    for reason, counts in left_out_by_reason(metrics).items():
        if not counts:
            continue
        groups = ", ".join(f"{group} {n}" for group, n in counts.items())
        line = f"left out {sum(counts.values())} image(s), {reason}: {groups}"
        ids = (metrics.get("left_out_images") or {}).get(reason) or []
        if ids:
            more = len(ids) - NAMED_LEFT_OUT
            line += "; image ids " + ", ".join(ids[:NAMED_LEFT_OUT]) + (f" and {more} more" if more > 0 else "")
        lines.append(line)
    return lines


def read_labels(labels_csv: str | os.PathLike, images_dir: str | os.PathLike) -> pd.DataFrame:
    """An ``image_id,dx`` CSV joined to its files in ``images_dir`` (``<image_id>.jpg``/``.jpeg``/``.png``); a
    listed image without its file is an error (the wrong folder, most likely)."""
    labels = read_csv(labels_csv, required=("image_id", "dx"), what="labels file")
    if labels.empty:
        raise DataError(f"{labels_csv}: the labels file lists no image.")
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
    and ``localization`` columns. Images of classes the run does not know, and files that do not decode, are left
    out, counted and named (``metrics["left_out"]`` and ``["left_out_images"]``, see :func:`leave_out`).
    """
    record = RunRecord.open(run_dir)
    out_dir = make_folder(out_dir, "out_dir") if out_dir else None  # before any work: a bad folder fails at once
    model = load_fused(record, device=device) if metadata else load_trained(record, device=device)
    classes = model.head.classes if metadata else model.classes
    labels = read_labels(labels_csv, images_dir)
    if metadata and (missing := [c for c in PATIENT_COLUMNS if c not in labels.columns]):
        raise DataError(f"{labels_csv}: metadata=True needs the column(s) {missing} beside image_id,dx.")
    labels, left_out, left_out_images = leave_out(labels, classes)
    if labels.empty:
        raise DataError(f"{labels_csv}: no image of the run's classes {list(classes)} could be evaluated; "
                        + "; ".join(left_out_lines({"left_out": left_out, "left_out_images": left_out_images})) + ".")
    if metadata:
        probs = model.predict(labels["path"].tolist(), labels[list(PATIENT_COLUMNS)])
    else:
        probs = model.predict(labels["path"].tolist())
    y_true = labels["dx"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    name = f"{Path(images_dir).name}{'-metadata' if metadata else ''}"
    result = ResultRecord(out_dir) if out_dir else record.evaluation(name)
    result.write_predictions(predictions_table(labels["image_id"], y_true, probs, classes))
    metrics = {**report_with_intervals(y_true, probs, classes), "images_dir": Path(images_dir).name,
               "metadata": metadata, "left_out": left_out, "left_out_images": left_out_images}
    result.write_metrics(metrics)
    return metrics
