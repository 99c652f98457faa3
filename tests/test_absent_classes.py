"""A set that lacks a class (PH2 has no seborrheic keratosis) gets no figure for it, and its macro figures average
over the classes it has: by hand, and through an external evaluation of real ISIC 2017 images without bkl."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ham_rows, write_ham_folder
from sklearn import metrics as skm

from pskinlib.data.labelled_folders import ISIC2017_ENV
from pskinlib.evaluate.external_validation import INTERNAL, evaluate_external
from pskinlib.metrics import (
    absent_classes_note,
    bootstrap_ci,
    classification_report,
    confusion_scores,
    majority_baseline,
    report_table,
    report_with_intervals,
    summary_row,
)
from pskinlib.runs import RunRecord
from pskinlib.train.config import make_config
from pskinlib.train.trainer import train

THREE = ("mel", "nv", "bkl")
# mel, nv and no bkl; the model calls one melanoma bkl (bkl's only prediction, so its precision is 0). No two
# images share a probability of a class, so every AUC is the same whichever way rounding breaks a tie.
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
Y_PROB = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.22, 0.18, 0.6], [0.32, 0.58, 0.1], [0.12, 0.78, 0.1],
                   [0.19, 0.71, 0.1], [0.55, 0.4, 0.05], [0.29, 0.66, 0.05], [0.08, 0.87, 0.05], [0.26, 0.69, 0.05]])


def test_a_class_without_images_gets_no_recall_f1_or_auc_and_is_named():
    report = classification_report(Y_TRUE, Y_PROB, THREE)
    bkl = report["per_class"]["bkl"]
    assert (bkl["recall"], bkl["f1"], bkl["support"]) == (None, None, 0)
    assert report["roc_auc_ovr"]["per_class"]["bkl"] is None
    assert report["absent_classes"] == ["bkl"]
    assert report["macro"]["classes"] == ["mel", "nv"]
    # Still defined: it was predicted once, wrongly (precision 0), and 9 of the 10 images were not called bkl.
    assert bkl["precision"] == 0.0 and bkl["specificity"] == pytest.approx(9 / 10)
    assert json.loads(json.dumps(report, allow_nan=False)) == report


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # scikit-learn's, about bkl
def test_macro_figures_average_over_the_classes_present_and_balanced_accuracy_is_unchanged():
    y_pred = Y_PROB.argmax(axis=1)
    report = classification_report(Y_TRUE, Y_PROB, THREE)
    mel, nv = report["per_class"]["mel"], report["per_class"]["nv"]
    # mel: 2 of 4 found (one called nv, one bkl); nv: 5 of 6 (one called mel).
    assert (mel["recall"], nv["recall"]) == pytest.approx((2 / 4, 5 / 6))
    assert report["macro"]["recall"] == pytest.approx((2 / 4 + 5 / 6) / 2)
    assert report["macro"]["f1"] == pytest.approx((mel["f1"] + nv["f1"]) / 2)
    assert report["macro"]["precision"] == pytest.approx((mel["precision"] + nv["precision"]) / 2)
    assert report["macro"]["specificity"] == pytest.approx((mel["specificity"] + nv["specificity"]) / 2)
    assert report["roc_auc_ovr"]["macro"] == pytest.approx(np.mean(
        [skm.roc_auc_score(Y_TRUE == k, Y_PROB[:, k]) for k in (0, 1)]))
    assert report["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(Y_TRUE, y_pred))
    assert report["macro"]["recall"] == pytest.approx(report["balanced_accuracy"])
    assert report["macro"]["f1"] == pytest.approx(skm.f1_score(Y_TRUE, y_pred, labels=[0, 1], average="macro"))
    # Weighted averages were already by support: the absent class weighs nothing.
    assert report["weighted"]["recall"] == pytest.approx(skm.recall_score(Y_TRUE, y_pred, average="weighted",
                                                                          labels=[0, 1, 2], zero_division=0))


def test_a_set_with_every_class_names_none_absent_and_averages_over_all():
    y_true = np.r_[Y_TRUE, 2, 2]
    y_prob = np.r_[Y_PROB, [[0.1, 0.2, 0.7], [0.5, 0.2, 0.3]]]
    report = classification_report(y_true, y_prob, THREE)
    assert report["absent_classes"] == [] and report["macro"]["classes"] == list(THREE)
    assert report["macro"]["recall"] == pytest.approx(skm.recall_score(y_true, y_prob.argmax(axis=1),
                                                                       average="macro"))
    assert absent_classes_note(report) is None


def test_bootstrap_gives_the_absent_class_no_interval_and_macro_f1_over_the_classes_present():
    report = report_with_intervals(Y_TRUE, Y_PROB, THREE, n_boot=200, seed=1)
    boot = report["bootstrap"]
    assert boot["recall"]["bkl"] is None and boot["roc_auc"]["bkl"] is None
    assert boot["macro_f1"]["estimate"] == pytest.approx(report["macro"]["f1"])
    assert boot["macro_auc"]["estimate"] == pytest.approx(report["roc_auc_ovr"]["macro"])
    assert boot["balanced_accuracy"]["estimate"] == pytest.approx(report["balanced_accuracy"])
    # The same resamples scored by scikit-learn over mel and nv: a resample that happens to hold no melanoma
    # still counts mel's F1 (0), as before.
    slow = bootstrap_ci(Y_TRUE, Y_PROB.argmax(axis=1), lambda t, p: skm.f1_score(
        t, p, labels=[0, 1], average="macro", zero_division=0), n_boot=200, seed=1)
    assert (boot["macro_f1"]["low"], boot["macro_f1"]["high"]) == pytest.approx((slow["low"], slow["high"]))
    assert json.dumps(report, allow_nan=False)


def test_tables_rows_and_notes_show_the_absent_class_as_missing():
    report = report_with_intervals(Y_TRUE, Y_PROB, THREE, n_boot=50)
    table = report_table(report, THREE)
    assert table["recall"].dtype == float and table["f1"].dtype == float
    assert table.loc[table["code"] == "bkl", ["recall", "f1"]].isna().all(axis=None)
    assert table.loc[table["code"] == "mel", ["recall", "f1"]].notna().all(axis=None)
    assert summary_row("PH2-like", report)["recall_bkl"] is None
    assert absent_classes_note(report) == ("no bkl image in this set: bkl has no recall, F1 or AUC; macro figures "
                                           "average over mel, nv")
    # A report written before absent_classes existed is read by its supports.
    old = {k: v for k, v in report.items() if k != "absent_classes"}
    assert absent_classes_note(old) == absent_classes_note(report)


def test_confusion_scores_and_the_majority_baseline_leave_the_absent_class_out():
    confusion = np.array(classification_report(Y_TRUE, Y_PROB, THREE)["confusion_matrix"])
    scores = confusion_scores(confusion, THREE)
    assert np.isnan(scores["recall_bkl"])
    assert scores["balanced_accuracy"] == pytest.approx((2 / 4 + 5 / 6) / 2)
    baseline = majority_baseline(np.array([1, 1, 0, 2]), Y_TRUE, 3, THREE)  # always nv
    assert baseline["balanced_accuracy"] == pytest.approx(0.5)
    assert baseline["macro_f1"] == pytest.approx(skm.f1_score(Y_TRUE, np.ones_like(Y_TRUE), labels=[0, 1],
                                                              average="macro", zero_division=0))


# ----------------------------------------------------------------------------------------------------------------
# The real thing: ISIC 2017 validation and test images of melanoma and nevus only, through an external evaluation.

IMAGES_PER_SET_AND_CLASS = 12


@pytest.fixture(scope="module")
def isic2017_dir() -> Path:
    """The real ISIC 2017 labelled folder, or a skip saying why it is not used."""
    value = os.environ.get(ISIC2017_ENV)
    if not value:
        pytest.skip(f"real ISIC 2017 not available: set {ISIC2017_ENV} to its labelled folder "
                    "(CI uses ../shared/data/isic2017)")
    path = Path(value)
    if not (path / "labels.csv").is_file():
        pytest.skip(f"{ISIC2017_ENV}={value} holds no labels.csv")
    return path


def _isic2017_without_bkl(isic2017: Path, root: Path) -> pd.DataFrame:
    """A labelled folder at ``root`` holding the first few mel and nv images (by id) of ISIC2017_val and _test."""
    labels = pd.read_csv(isic2017 / "labels.csv", dtype=str)
    wanted = labels["source_dataset"].isin(["ISIC2017_val", "ISIC2017_test"]) & labels["dx"].isin(["mel", "nv"])
    chosen = (labels[wanted].sort_values("image_id").groupby(["source_dataset", "dx"]).head(IMAGES_PER_SET_AND_CLASS))
    (root / "images").mkdir(parents=True)
    for image_id in chosen["image_id"]:
        source = next((isic2017 / "images").glob(f"{image_id}.*"))
        shutil.copy(source, root / "images" / source.name)
    chosen[["image_id", "dx", "source_dataset"]].to_csv(root / "labels.csv", index=False)
    return chosen


@pytest.mark.slow
def test_an_external_evaluation_without_bkl_reports_no_bkl_figure_and_macro_over_mel_and_nv(isic2017_dir, tmp_path):
    ham = write_ham_folder(tmp_path / "ham", ham_rows({"mel": 12, "nv": 30, "bkl": 12}))
    run = train(make_config("smoke", data_dir=str(ham), image_size=16, epochs=1, batch_size=16, quiet=True,
                            tta=False, threads=1), runs_dir=tmp_path / "runs")
    chosen = _isic2017_without_bkl(isic2017_dir, tmp_path / "isic2017_no_bkl")
    assert set(chosen["dx"]) == {"mel", "nv"} and len(chosen) == 4 * IMAGES_PER_SET_AND_CLASS

    metrics = evaluate_external(run, [tmp_path / "isic2017_no_bkl"], n_boot=200)
    predictions = RunRecord.open(run).evaluations()["external"].predictions()
    external = [group for group in metrics["groups"] if group != INTERNAL]
    assert set(external) == {"ISIC2017_val", "ISIC2017_test", "all external"}
    for group in external:
        report = metrics["groups"][group]
        bkl = report["per_class"]["bkl"]
        assert report["absent_classes"] == ["bkl"] and bkl["support"] == 0, group
        assert bkl["recall"] is None and bkl["f1"] is None, group
        assert report["roc_auc_ovr"]["per_class"]["bkl"] is None, group
        assert report["bootstrap"]["recall"]["bkl"] is None and report["bootstrap"]["roc_auc"]["bkl"] is None, group
        assert report["macro"]["classes"] == ["mel", "nv"], group
        # The macro figures are those of mel and nv alone, recomputed from the recorded predictions.
        rows = predictions if group == "all external" else predictions[predictions["source_dataset"] == group]
        y_true = rows["true"].map(THREE.index).to_numpy()
        y_pred = rows["predicted"].map(THREE.index).to_numpy()
        assert report["macro"]["recall"] == pytest.approx(skm.recall_score(y_true, y_pred, labels=[0, 1],
                                                                           average="macro", zero_division=0))
        assert report["macro"]["recall"] == pytest.approx(report["balanced_accuracy"]), group
        assert report["macro"]["f1"] == pytest.approx(skm.f1_score(y_true, y_pred, labels=[0, 1], average="macro",
                                                                   zero_division=0)), group
        assert report["bootstrap"]["macro_f1"]["estimate"] == pytest.approx(report["macro"]["f1"]), group
        aucs = [report["roc_auc_ovr"]["per_class"][c] for c in ("mel", "nv")]
        assert report["roc_auc_ovr"]["macro"] == pytest.approx(np.mean(aucs)), group
        assert "no bkl image in this set" in absent_classes_note(report)
    # HAM10000's own test images do have bkl: nothing absent there, macro over all three.
    internal = metrics["groups"][INTERNAL]
    assert internal["macro"]["classes"] == [c for c in THREE if c not in internal["absent_classes"]]
    assert json.loads(json.dumps(metrics, allow_nan=False)) == RunRecord.open(run).evaluations()["external"].metrics
