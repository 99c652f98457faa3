"""External validation: a HAM10000-trained run on images from other collections, per collection and pooled.

:func:`evaluate_external` (``pskin evaluate RUN --external DIR [DIR ...]``) predicts every image of one or more
labelled folders (:mod:`pskinlib.data.labelled_folders`) with the run's own preprocessing and test-time
augmentation, and reports, for each ``source_dataset``, for all of them pooled, and for the run's own HAM10000 test
images beside them (from its recorded predictions):

- balanced accuracy, per-class recall and precision, melanoma AUC and macro AUC, each with a bootstrap interval;
- the confusion matrix;
- calibration: the expected calibration error and the reliability diagram's bins, as predicted and after
  temperature scaling fitted on the run's HAM10000 validation predictions;
- the operating point that matters clinically: the melanoma thresholds that reach 80 % and 90 % sensitivity on
  HAM10000 validation, carried unchanged to the other images, with the sensitivity and specificity they give there.

Nothing is chosen on the external images: the temperature and the thresholds come from HAM10000 validation. The
result goes into the run's record, one evaluation per call (``RunRecord.evaluation(name)``: ``metrics.json`` and
``predictions.csv`` with each image's ``source_dataset``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from ..data.labelled_folders import EXTRA_SOURCES, read_labelled_folders
from ..errors import DataError, ParameterError
from ..info import MELANOMA
from ..metrics import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    operating_point,
    reliability_bins,
    report_with_intervals,
    threshold_for_sensitivity,
)
from ..runs import RunRecord, predictions_table
from .image_folder import leave_out, left_out_lines
from .predict import load_trained

SENSITIVITIES = (0.80, 0.90)
INTERNAL = "HAM10000 test"
POOLED = "all external"


def evaluate_external(run_dir: str | os.PathLike, folders, *, name: str = "external", device: str = "auto",
                      sensitivities: tuple[float, ...] = SENSITIVITIES, n_boot: int = 1000,
                      tta_views: str | None = None) -> dict:
    """Evaluate a finished run on the labelled folders ``folders``; record and return the metrics (see the
    module's docstring). Images of classes the run does not know are left out and counted, and so are images of a
    collection the run trained on (``extra_sources``) and files that do not decode: ``metrics["left_out"]`` holds
    the counts by reason and ``metrics["left_out_images"]`` their ids
    (:func:`~pskinlib.evaluate.image_folder.leave_out`). ``tta_views`` predicts with other
    test-time views than the run's own (one of :data:`~pskinlib.train.config.TTA_VIEWS`); the HAM10000 rows then
    stay the run's recorded ones."""
    record = RunRecord.open(run_dir, finished=True)
    folders = [Path(f) for f in ([folders] if isinstance(folders, (str, os.PathLike)) else folders)]
    if not folders:
        raise ParameterError("folders: give at least one labelled folder (labels.csv and images/).")
    trained = load_trained(record, device=device)
    if tta_views is not None:
        trained.config = dataclasses.replace(trained.config, tta=True, tta_views=tta_views)
    classes = trained.classes
    table = read_labelled_folders(folders)
    if table["image_id"].duplicated().any():
        raise DataError(f"the folders {[f.name for f in folders]} share image ids: "
                        f"{table.loc[table['image_id'].duplicated(), 'image_id'].tolist()[:10]}.")
    seen = tuple(EXTRA_SOURCES[n][1] for n in trained.config.extra_sources)  # its own training images are not external
    table, left_out, left_out_images = leave_out(table, classes, trained_on=seen)
    if table.empty:
        raise DataError(f"the folders {[f.name for f in folders]} hold no image the run can be evaluated on (of its "
                        f"classes {list(classes)}); "
                        + "; ".join(left_out_lines({"left_out": left_out, "left_out_images": left_out_images})) + ".")
    probs = trained.predict(table["path"].tolist())
    labels = table["dx"].map({c: i for i, c in enumerate(classes)}).to_numpy()

    calibration = _calibration(record, classes, sensitivities)
    groups = {INTERNAL: record.scores("test", classes)}
    for source in dict.fromkeys(table["source_dataset"]):
        keep = (table["source_dataset"] == source).to_numpy()
        groups[source] = (labels[keep], probs[keep])
    if len(groups) > 2:
        groups[POOLED] = (labels, probs)
    metrics = {
        "run": record.name, "folders": [f.name for f in folders], "classes": list(classes),
        "images": int(len(table)), "left_out": left_out, "left_out_images": left_out_images,
        "tta": trained.config.tta and trained.config.tta_views, "temperature": calibration["temperature"],
        "melanoma_thresholds": calibration["thresholds"],
        "note": "Temperature and melanoma thresholds were fitted on the run's HAM10000 validation predictions and "
                "carried unchanged; nothing was chosen on these images.",
        "groups": {group: _group_report(y, p, classes, calibration, n_boot) for group, (y, p) in groups.items()},
    }
    result = record.evaluation(name)
    predictions = predictions_table(table["image_id"], labels, probs, classes)
    predictions.insert(1, "source_dataset", table["source_dataset"].to_numpy())
    result.write_predictions(predictions)
    result.write_metrics(metrics)
    return metrics


def _calibration(record: RunRecord, classes: tuple[str, ...], sensitivities) -> dict:
    """The temperature and the melanoma thresholds, from the run's HAM10000 validation predictions."""
    y, p = record.scores("val", classes)
    thresholds = {}
    if MELANOMA in classes:
        mel = classes.index(MELANOMA)
        thresholds = {f"{s:.0%}": threshold_for_sensitivity(y == mel, p[:, mel], s) for s in sensitivities}
    return {"temperature": fit_temperature(y, p), "thresholds": thresholds}


def _group_report(y: np.ndarray, p: np.ndarray, classes: tuple[str, ...], calibration: dict, n_boot: int) -> dict:
    report = report_with_intervals(y, p, classes, n_boot=n_boot)
    calibrated = apply_temperature(p, calibration["temperature"])
    report["calibration"] = {"ece": report["ece"], "ece_calibrated": expected_calibration_error(y, calibrated),
                             "reliability": reliability_bins(y, p),
                             "reliability_calibrated": reliability_bins(y, calibrated)}
    if MELANOMA in classes and np.any(y == classes.index(MELANOMA)):
        mel = classes.index(MELANOMA)
        report["melanoma_operating_points"] = {
            target: operating_point(y == mel, p[:, mel], threshold, n_boot=n_boot)
            for target, threshold in calibration["thresholds"].items()}
    return report
