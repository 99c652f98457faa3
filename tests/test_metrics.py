"""Metrics agree with scikit-learn / scipy or a hand computation, and bad inputs fail naming the parameter."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as skm

from pskinlib.info import CLASSES
from pskinlib.metrics import (
    bootstrap_ci,
    bootstrap_report,
    bootstrap_scores,
    classification_report,
    expected_calibration_error,
    majority_baseline,
    mcnemar_test,
    report_table,
    specificity_per_class,
)

THREE = ("mel", "nv", "bkl")


def toy_predictions(n: int, n_classes: int = 3, seed: int = 0, skill: float = 2.0):
    """Labels and softmax probabilities of a middling classifier: the true class gets a logit bonus of ``skill``."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes))
    logits[np.arange(n), y_true] += skill
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    return y_true, prob / prob.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------------------------------------------
# classification_report


def test_report_matches_sklearn_on_fixed_inputs():
    y_true, y_prob = toy_predictions(120)
    y_pred = y_prob.argmax(axis=1)
    report = classification_report(y_true, y_prob, THREE)

    assert report["n"] == 120
    assert report["classes"] == list(THREE)
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert report["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    precision, recall, f1, support = skm.precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    for k, code in enumerate(THREE):
        row = report["per_class"][code]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((precision[k], recall[k], f1[k]))
        assert row["support"] == support[k]
        assert report["roc_auc_ovr"]["per_class"][code] == pytest.approx(
            skm.roc_auc_score(y_true == k, y_prob[:, k]))
    for average in ("macro", "weighted"):
        expected = skm.precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)[:3]
        got = report[average]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx(expected)
    # Balanced accuracy is the mean per-class recall (the paper's "average accuracy").
    assert report["balanced_accuracy"] == pytest.approx(report["macro"]["recall"])
    assert report["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred).tolist()
    assert report["roc_auc_ovr"]["macro"] == pytest.approx(
        skm.roc_auc_score(y_true, y_prob, multi_class="ovr", average="macro"))
    assert report["log_loss"] == pytest.approx(skm.log_loss(y_true, y_prob))
    assert report["ece"] == pytest.approx(expected_calibration_error(y_true, y_prob))


def test_report_specificity_is_one_vs_rest_true_negative_rate():
    y_true, y_prob = toy_predictions(90, seed=3)
    y_pred = y_prob.argmax(axis=1)
    report = classification_report(y_true, y_prob, THREE)
    for k, code in enumerate(THREE):
        negatives = y_true != k
        expected = np.mean(y_pred[negatives] != k)
        assert report["per_class"][code]["specificity"] == pytest.approx(expected)
    assert report["macro"]["specificity"] == pytest.approx(
        np.mean([report["per_class"][c]["specificity"] for c in THREE]))


def test_report_gives_zero_precision_without_warning_to_a_class_never_predicted():
    y_true = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    # Class 2 (bkl) is never the argmax.
    y_prob = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1],
                       [0.5, 0.2, 0.3], [0.1, 0.6, 0.3], [0.4, 0.35, 0.25], [0.3, 0.6, 0.1]])
    y_pred = y_prob.argmax(axis=1)
    assert 2 not in y_pred
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = classification_report(y_true, y_prob, THREE)
    bkl = report["per_class"]["bkl"]
    assert (bkl["precision"], bkl["recall"], bkl["f1"], bkl["support"]) == (0.0, 0.0, 0.0, 3)
    assert bkl["specificity"] == 1.0  # never predicted, so never a false positive
    assert report["confusion_matrix"][2] == [2, 1, 0]
    assert [row[2] for row in report["confusion_matrix"]] == [0, 0, 0]
    assert report["macro"]["f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro",
                                                              labels=[0, 1, 2], zero_division=0))
    assert report["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert report["roc_auc_ovr"]["per_class"]["bkl"] == pytest.approx(skm.roc_auc_score(y_true == 2, y_prob[:, 2]))


def test_report_keeps_a_row_for_a_class_absent_from_y_true():
    y_true = np.array([0, 0, 1, 1, 1, 0])  # no bkl (2) image, but the model predicts bkl once
    y_prob = np.array([[0.7, 0.2, 0.1], [0.2, 0.2, 0.6], [0.1, 0.8, 0.1],
                       [0.3, 0.6, 0.1], [0.5, 0.4, 0.1], [0.9, 0.05, 0.05]])
    y_pred = y_prob.argmax(axis=1)
    report = classification_report(y_true, y_prob, THREE)

    assert report["per_class"]["bkl"]["support"] == 0
    assert report["per_class"]["bkl"]["precision"] == 0.0  # its one prediction is wrong
    assert report["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred, labels=[0, 1, 2]).tolist()
    assert report["confusion_matrix"][2] == [0, 0, 0]
    assert report["roc_auc_ovr"]["per_class"]["bkl"] is None
    present_aucs = [skm.roc_auc_score(y_true == k, y_prob[:, k]) for k in (0, 1)]
    assert report["roc_auc_ovr"]["macro"] == pytest.approx(np.mean(present_aucs))
    # Balanced accuracy and macro recall both average only the classes present (the absent one has no recall).
    # mel recall 2/3 (one predicted bkl), nv recall 2/3.
    assert report["per_class"]["bkl"]["recall"] is None and report["per_class"]["bkl"]["f1"] is None
    assert report["balanced_accuracy"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert report["macro"]["recall"] == pytest.approx(report["balanced_accuracy"])
    assert report["balanced_accuracy"] == pytest.approx(
        skm.recall_score(y_true, y_pred, labels=[0, 1], average="macro"))
    assert report["absent_classes"] == ["bkl"] and report["macro"]["classes"] == ["mel", "nv"]
    assert report["log_loss"] == pytest.approx(skm.log_loss(y_true, y_prob, labels=[0, 1, 2]))


def test_report_is_valid_json_even_with_undefined_aucs():
    y_true = np.array([0, 0, 1])
    y_prob = np.array([[0.6, 0.3, 0.1], [0.4, 0.5, 0.1], [0.2, 0.7, 0.1]])
    report = classification_report(y_true, y_prob, THREE)
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_report_renormalises_float32_softmax_rounding():
    y_true, y_prob = toy_predictions(50, seed=5)
    y_prob32 = y_prob.astype(np.float32) * np.float32(1.0002)  # rows sum to 1.0002
    report = classification_report(y_true, y_prob32, THREE)
    assert report["log_loss"] == pytest.approx(skm.log_loss(y_true, y_prob), rel=1e-4)


def test_report_table_has_display_names_and_report_values():
    y_true, y_prob = toy_predictions(60)
    report = classification_report(y_true, y_prob, THREE)
    table = report_table(report, THREE)
    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == [CLASSES[c].name for c in THREE]
    assert list(table.columns) == ["code", "precision", "recall", "specificity", "f1", "support"]
    assert table.loc["melanoma", "recall"] == report["per_class"]["mel"]["recall"]
    assert table["support"].sum() == 60


# ----------------------------------------------------------------------------------------------------------------
# specificity and calibration


def test_specificity_matches_hand_computation():
    confusion = np.array([[5, 1, 0],
                          [2, 6, 2],
                          [0, 1, 3]])
    # Class 0: 14 negatives, 2 of them predicted 0 -> 12/14; class 1: 10 negatives, 2 FP; class 2: 16 negatives, 2 FP.
    np.testing.assert_allclose(specificity_per_class(confusion), [12 / 14, 8 / 10, 14 / 16])


def test_specificity_is_zero_for_a_class_without_negatives():
    np.testing.assert_allclose(specificity_per_class([[4, 0], [0, 0]]), [0.0, 1.0])


def test_ece_is_zero_for_perfectly_calibrated_predictions():
    # Ten images at 80 % confidence, eight of them right; and ten at 100 %, all right.
    y_true = np.array([0] * 8 + [1] * 2 + [1] * 10)
    y_prob = np.array([[0.8, 0.2]] * 10 + [[0.0, 1.0]] * 10)
    assert expected_calibration_error(y_true, y_prob) == pytest.approx(0.0, abs=1e-12)


def test_ece_matches_hand_computation_on_tiny_example():
    y_true = np.array([0, 1, 0, 1])
    y_prob = np.array([[0.9, 0.1], [0.9, 0.1], [0.65, 0.35], [0.3, 0.7]])
    # Bins: {0.9, 0.9} accuracy 1/2 -> gap 0.4, weight 2/4; {0.65} right -> 0.35, 1/4; {0.7} right -> 0.3, 1/4.
    expected = 2 / 4 * 0.4 + 1 / 4 * 0.35 + 1 / 4 * 0.3
    assert expected_calibration_error(y_true, y_prob) == pytest.approx(expected)
    # With one bin, everything is pooled: accuracy 3/4 against mean confidence 0.7875.
    assert expected_calibration_error(y_true, y_prob, n_bins=1) == pytest.approx(abs(0.75 - 0.7875))


# ----------------------------------------------------------------------------------------------------------------
# bootstrap


def test_bootstrap_ci_contains_the_estimate_and_is_reproducible_with_a_seed():
    y_true, y_prob = toy_predictions(300, seed=1)
    first = bootstrap_ci(y_true, y_prob, "accuracy", n_boot=500, seed=7)
    assert first["estimate"] == pytest.approx(skm.accuracy_score(y_true, y_prob.argmax(axis=1)))
    assert first["low"] < first["estimate"] < first["high"]
    assert first["n_boot"] == 500 and first["confidence"] == 0.95
    assert bootstrap_ci(y_true, y_prob, "accuracy", n_boot=500, seed=7) == first
    assert bootstrap_ci(y_true, y_prob, "accuracy", n_boot=500, seed=8) != first


def test_bootstrap_ci_narrows_with_more_data():
    small = bootstrap_ci(*toy_predictions(100, seed=2), "balanced_accuracy", n_boot=400)
    large = bootstrap_ci(*toy_predictions(2000, seed=2), "balanced_accuracy", n_boot=400)
    assert (large["high"] - large["low"]) < 0.5 * (small["high"] - small["low"])


def test_bootstrap_ci_narrows_with_lower_confidence():
    y_true, y_prob = toy_predictions(200, seed=4)
    wide = bootstrap_ci(y_true, y_prob, "macro_f1", n_boot=400, confidence=0.95)
    narrow = bootstrap_ci(y_true, y_prob, "macro_f1", n_boot=400, confidence=0.5)
    assert wide["low"] < narrow["low"] < narrow["high"] < wide["high"]


@pytest.mark.parametrize("name, sklearn_metric", [
    ("accuracy", skm.accuracy_score),
    ("balanced_accuracy", skm.balanced_accuracy_score),
    ("macro_f1", lambda t, p: skm.f1_score(t, p, labels=[0, 1, 2], average="macro", zero_division=0)),
    ("recall:bkl", lambda t, p: skm.recall_score(t, p, labels=[2], average="macro", zero_division=0)),
])
def test_named_bootstrap_metrics_match_sklearn_on_the_same_resamples(name, sklearn_metric):
    y_true, y_prob = toy_predictions(80, seed=6, skill=1.0)
    y_pred = y_prob.argmax(axis=1)
    fast = bootstrap_ci(y_true, y_prob, name, n_boot=100, seed=3, classes=THREE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # balanced accuracy warns on resamples missing a predicted class
        slow = bootstrap_ci(y_true, y_pred, sklearn_metric, n_boot=100, seed=3)
    assert fast["estimate"] == pytest.approx(slow["estimate"])
    assert (fast["low"], fast["high"]) == pytest.approx((slow["low"], slow["high"]))


def test_bootstrap_accepts_predicted_labels_as_well_as_probabilities():
    y_true, y_prob = toy_predictions(100, seed=8)
    from_prob = bootstrap_ci(y_true, y_prob, "recall:mel", n_boot=200, classes=THREE)
    from_pred = bootstrap_ci(y_true, y_prob.argmax(axis=1), "recall:mel", n_boot=200, classes=THREE)
    assert from_prob == from_pred


def test_bootstrap_report_gives_headline_metrics_and_each_recall():
    y_true, y_prob = toy_predictions(150, seed=10)
    report = bootstrap_report(y_true, y_prob, THREE, n_boot=300, seed=1)
    assert set(report) == {"accuracy", "balanced_accuracy", "macro_f1", "recall"}
    assert set(report["recall"]) == set(THREE)
    assert report["accuracy"] == bootstrap_ci(y_true, y_prob, "accuracy", n_boot=300, seed=1)
    assert report["recall"]["nv"] == bootstrap_ci(y_true, y_prob, "recall:nv", n_boot=300, seed=1, classes=THREE)
    full = classification_report(y_true, y_prob, THREE)
    assert report["macro_f1"]["estimate"] == pytest.approx(full["macro"]["f1"])
    assert report["recall"]["mel"]["estimate"] == pytest.approx(full["per_class"]["mel"]["recall"])
    assert json.dumps(report, allow_nan=False)


def test_bootstrap_report_gives_none_for_a_class_absent_from_y_true():
    y_true, y_prob = toy_predictions(60, seed=11)
    keep = y_true != 2
    report = bootstrap_report(y_true[keep], y_prob[keep], THREE, n_boot=50)
    assert report["recall"]["bkl"] is None
    assert report["recall"]["mel"]["low"] is not None


# ----------------------------------------------------------------------------------------------------------------
# McNemar and the majority baseline


def mcnemar_inputs(b: int, c: int, both_right: int = 5, both_wrong: int = 3):
    """Labels and two classifiers' predictions with b (A right, B wrong) and c (A wrong, B right) images."""
    y_true = np.zeros(b + c + both_right + both_wrong, dtype=int)
    right_a = np.r_[np.ones(b), np.zeros(c), np.ones(both_right), np.zeros(both_wrong)].astype(bool)
    right_b = np.r_[np.zeros(b), np.ones(c), np.ones(both_right), np.zeros(both_wrong)].astype(bool)
    return y_true, np.where(right_a, 0, 1), np.where(right_b, 0, 2)


def test_mcnemar_exact_matches_hand_computed_binomial_p_value():
    result = mcnemar_test(*mcnemar_inputs(8, 2))
    # Two-sided: 2 * P(X <= 2), X ~ Binomial(10, 1/2) = 2 * (1 + 10 + 45) / 1024.
    assert result == {"b": 8, "c": 2, "statistic": 2.0, "p_value": pytest.approx(112 / 1024), "method": "exact"}


def test_mcnemar_uses_chi_square_with_continuity_correction_for_many_discordant_pairs():
    result = mcnemar_test(*mcnemar_inputs(30, 12))
    statistic = (abs(30 - 12) - 1) ** 2 / 42
    assert result["method"] == "chi2_continuity"
    assert result["statistic"] == pytest.approx(statistic)
    assert result["p_value"] == pytest.approx(stats.chi2.sf(statistic, df=1))


def test_mcnemar_gives_p_one_when_the_classifiers_never_disagree_on_correctness():
    result = mcnemar_test(*mcnemar_inputs(0, 0))
    assert (result["b"], result["c"], result["p_value"]) == (0, 0, 1.0)


def test_majority_baseline_on_a_75_percent_nevus_test_set():
    # mel=0, nv=1, bkl=2: 75 / 12.5 / 12.5 % in both training and test sets.
    y_train = np.array([1] * 30 + [0] * 5 + [2] * 5)
    y_test = np.array([1] * 6 + [0] + [2])
    result = majority_baseline(y_train, y_test, 3, classes=THREE)
    assert result["class_index"] == 1 and result["class"] == "nv"
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["balanced_accuracy"] == pytest.approx(1 / 3)
    assert result["n"] == 8
    assert majority_baseline(y_train, y_test, 3)["class"] is None


# ----------------------------------------------------------------------------------------------------------------
# bad inputs


GOOD_TRUE = np.array([0, 1, 2, 1])
GOOD_PROB = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.3, 0.4, 0.3]])


@pytest.mark.parametrize("y_true, y_prob, classes, parameter", [
    (GOOD_TRUE, GOOD_PROB[:3], THREE, "y_prob"),  # fewer rows than labels
    (GOOD_TRUE, GOOD_PROB[:, 0], THREE, "y_prob"),  # 1-D probabilities
    (GOOD_TRUE, np.where(np.eye(4, 3) == 1, np.nan, GOOD_PROB), THREE, "y_prob"),  # NaN
    (GOOD_TRUE, GOOD_PROB * 2, THREE, "y_prob"),  # rows sum to 2
    (GOOD_TRUE, GOOD_PROB - 0.5, THREE, "y_prob"),  # negative "probabilities" (logits?)
    (np.array([0, 1, 3, 1]), GOOD_PROB, THREE, "y_true"),  # label out of range
    (np.array([0, -1, 2, 1]), GOOD_PROB, THREE, "y_true"),  # negative label
    (np.array([0, 1.5, 2, 1]), GOOD_PROB, THREE, "y_true"),  # not an integer
    (GOOD_TRUE.reshape(2, 2), GOOD_PROB, THREE, "y_true"),  # 2-D labels
    (GOOD_TRUE, GOOD_PROB, ("mel", "nv"), "classes"),  # fewer codes than columns
    (GOOD_TRUE, GOOD_PROB, ("mel", "nv", "xyz"), "classes"),  # unknown code
])
def test_classification_report_rejects_bad_inputs_naming_the_parameter(y_true, y_prob, classes, parameter):
    with pytest.raises(ValueError, match=f"^{parameter}:"):
        classification_report(y_true, y_prob, classes)


def test_calibration_and_bootstrap_reject_nan_probabilities():
    bad = GOOD_PROB.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="^y_prob:"):
        expected_calibration_error(GOOD_TRUE, bad)
    with pytest.raises(ValueError, match="^y_prob_or_pred:"):
        bootstrap_ci(GOOD_TRUE, bad, "accuracy")
    with pytest.raises(ValueError, match="^y_prob:"):
        bootstrap_report(GOOD_TRUE, bad, THREE)


@pytest.mark.parametrize("kwargs, parameter", [
    ({"metric": "auc"}, "metric"),
    ({"metric": "recall:mel"}, "classes"),  # which label is mel?
    ({"metric": "recall:df", "classes": THREE}, "metric"),  # df is not one of the classes
    ({"metric": "accuracy", "n_boot": 0}, "n_boot"),
    ({"metric": "accuracy", "confidence": 1.5}, "confidence"),
    ({"metric": "accuracy", "seed": -1}, "seed"),
    ({"metric": "accuracy", "y_prob_or_pred": np.array([0, 1])}, "y_prob_or_pred"),  # unequal lengths
])
def test_bootstrap_ci_rejects_bad_arguments_naming_the_parameter(kwargs, parameter):
    arguments = {"y_true": GOOD_TRUE, "y_prob_or_pred": GOOD_PROB, **kwargs}
    with pytest.raises(ValueError, match=f"^{parameter}:"):
        bootstrap_ci(**arguments)


def test_bootstrap_recall_of_a_class_absent_from_y_true_is_an_error():
    with pytest.raises(ValueError, match="^metric:.*no image of class 'bkl'"):
        bootstrap_ci(np.array([0, 1, 1, 0]), GOOD_PROB, "recall:bkl", classes=THREE)


def test_mcnemar_rejects_unequal_lengths():
    with pytest.raises(ValueError, match="^pred_b:"):
        mcnemar_test(GOOD_TRUE, GOOD_TRUE, GOOD_TRUE[:3])
    with pytest.raises(ValueError, match="^pred_a:"):
        mcnemar_test(GOOD_TRUE, GOOD_TRUE[:2], GOOD_TRUE)


def test_majority_baseline_and_specificity_reject_bad_inputs():
    with pytest.raises(ValueError, match="^y_test:"):
        majority_baseline(GOOD_TRUE, np.array([0, 5]), 3)
    with pytest.raises(ValueError, match="^n_classes:"):
        majority_baseline(GOOD_TRUE, GOOD_TRUE, 1)
    with pytest.raises(ValueError, match="^confusion:"):
        specificity_per_class(np.ones((2, 3)))


def test_report_table_rejects_something_that_is_not_a_report():
    with pytest.raises(ValueError, match="^report:"):
        report_table({"accuracy": 0.5}, THREE)


def test_the_bootstrap_estimate_equals_the_report_s_when_probabilities_tie():
    """Tied probabilities, unnormalised as a model's may be: the interval's estimate is the report's AUC."""
    y_true = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    y_prob = np.array([[0.3, 0.3, 0.4], [0.3, 0.3, 0.4], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.2, 0.6, 0.2],
                       [0.3, 0.3, 0.4], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]]) * 1.0000001
    report = classification_report(y_true, y_prob, ("mel", "nv", "bkl"))
    scores = bootstrap_scores(y_true, y_prob, ("mel", "nv", "bkl"), n_boot=50)
    for code in ("mel", "nv", "bkl"):
        assert scores["roc_auc"][code]["estimate"] == report["roc_auc_ovr"]["per_class"][code]
