"""Referral and biopsy at melanoma thresholds chosen on validation, checked against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from pskinlib.errors import ParameterError
from pskinlib.evaluate.referral import INTERNAL, referral_table, run_referral, validation_thresholds
from pskinlib.metrics import operating_point
from pskinlib.runs import RunRecord, predictions_table

CLASSES = ("mel", "nv", "bkl")
# Ten cases: four melanomas scoring 0.9, 0.8, 0.4, 0.1; six others scoring 0.7, 0.6, 0.3, 0.2, 0.1, 0.05.
POSITIVE = [True, True, True, True, False, False, False, False, False, False]
SCORES = [0.9, 0.8, 0.4, 0.1, 0.7, 0.6, 0.3, 0.2, 0.1, 0.05]


def test_ten_cases_give_the_hand_computed_referrals():
    table = referral_table(POSITIVE, SCORES, {"a": 0.5, "b": 0.35, "none": 0.95}, n_boot=200)
    assert list(table["target"]) == ["a", "b", "none"] and table.attrs["unit"] == "images"
    a, b, none = (table.iloc[i] for i in range(3))
    # >= 0.5: 0.9, 0.8 (melanomas) and 0.7, 0.6 referred: 4 of 10, 2 of 4 melanomas found, 4 of 6 others spared.
    assert (a["n"], a["melanomas"], a["referred"], a["melanomas_found"]) == (10, 4, 4, 2)
    assert a["sensitivity"] == 0.5 and a["specificity"] == pytest.approx(4 / 6) and a["share_referred"] == 0.4
    assert a["number_needed_to_biopsy"] == 2.0  # 4 referred / 2 melanomas found
    # >= 0.35 adds the melanoma at 0.4: 5 referred, 3 found.
    assert (b["referred"], b["melanomas_found"], b["sensitivity"], b["share_referred"]) == (5, 3, 0.75, 0.5)
    assert b["number_needed_to_biopsy"] == pytest.approx(5 / 3)
    # Nothing referred: no melanoma found, so no number needed to biopsy (missing, not 0 or infinite).
    assert (none["referred"], none["sensitivity"], none["specificity"]) == (0, 0.0, 1.0)
    assert np.isnan(none["number_needed_to_biopsy"]) and np.isnan(none["number_needed_to_biopsy_low"])
    for name in ("sensitivity", "specificity", "share_referred", "number_needed_to_biopsy"):
        assert a[f"{name}_low"] <= a[name] <= a[f"{name}_high"]


def test_sensitivity_and_specificity_intervals_are_the_operating_points_with_the_same_seed():
    rng = np.random.default_rng(5)
    positive = rng.random(150) < 0.3
    scores = np.clip(rng.normal(0.3 + 0.4 * positive, 0.2), 0, 1)
    table = referral_table(positive, scores, {"90%": 0.3}, n_boot=300, seed=4)
    point = operating_point(positive, scores, 0.3, n_boot=300, seed=4)
    for name in ("sensitivity", "specificity"):
        assert table.loc[0, [name, f"{name}_low", f"{name}_high"]].tolist() == pytest.approx(
            [point[name]["estimate"], point[name]["low"], point[name]["high"]])


def test_a_lesion_is_one_case_scored_by_the_mean_of_its_images():
    # Lesion m: images 0.9 and 0.3 -> 0.6; lesion n: 0.2 and 0.6 -> 0.4; lesion o: 0.1. Threshold 0.5: only m.
    table = referral_table([1, 1, 0, 0, 0], [0.9, 0.3, 0.2, 0.6, 0.1], {"t": 0.5},
                           lesion_ids=["m", "m", "n", "n", "o"], n_boot=50)
    row = table.iloc[0]
    assert (row["n"], row["melanomas"], row["referred"], row["melanomas_found"]) == (3, 1, 1, 1)
    assert row["share_referred"] == pytest.approx(1 / 3) and row["number_needed_to_biopsy"] == 1.0
    assert table.attrs["unit"] == "lesions"
    by_image = referral_table([1, 1, 0, 0, 0], [0.9, 0.3, 0.2, 0.6, 0.1], {"t": 0.5}, n_boot=50).iloc[0]
    assert (by_image["referred"], by_image["melanomas_found"]) == (2, 1)  # 0.9 and 0.6: NNB 2 by image


def _run(root, val_mel_scores: list[float]) -> RunRecord:
    """A finished run whose validation melanomas score ``val_mel_scores`` (and two nevi 0.5, 0.05)."""
    run = RunRecord(root / "run")
    run.path.mkdir()
    run.write_config({"config": {}, "data": {"classes": list(CLASSES)}})
    run.write_metrics({"test": {}})
    scores = [*val_mel_scores, 0.5, 0.05]
    probs = np.array([[s, (1 - s) / 2, (1 - s) / 2] for s in scores])
    labels = [0] * len(val_mel_scores) + [1, 1]
    run.write_predictions(predictions_table([f"V{i}" for i in range(len(scores))], labels, probs, CLASSES), "val")
    test_probs = np.array([[s, (1 - s) / 2, (1 - s) / 2] for s in SCORES])
    test_labels = [0 if p else 2 for p in POSITIVE]
    run.write_predictions(predictions_table([f"T{i}" for i in range(10)], test_labels, test_probs, CLASSES,
                                            lesion_ids=[f"L{i}" for i in range(10)]), "test")
    return run


def test_thresholds_come_from_validation_and_are_applied_unchanged_to_test_and_external_sets(tmp_path):
    # Ten validation melanomas 0.95, 0.85, ..., 0.05: 90 % = the 9th highest (0.15), 95 % = the 10th (0.05).
    run = _run(tmp_path, [0.95 - 0.1 * i for i in range(10)])
    thresholds = validation_thresholds(run.path)
    assert list(thresholds) == ["90%", "95%"] and thresholds["90%"] == pytest.approx(0.15)
    assert thresholds["95%"] == pytest.approx(0.05)
    evaluation = run.evaluation("external")
    external = predictions_table(["E0", "E1", "E2", "E3"], [0, 1, 0, 2],
                                 np.array([[0.2, 0.4, 0.4], [0.3, 0.6, 0.1], [0.04, 0.5, 0.46], [0.6, 0.2, 0.2]]),
                                 CLASSES)
    external.insert(1, "source_dataset", ["S1", "S1", "S2", "S2"])
    evaluation.write_predictions(external)
    evaluation.write_metrics({})
    table = run_referral(run.path, n_boot=50)
    assert list(table["set"]) == [INTERNAL, INTERNAL, "S1", "S1", "S2", "S2"]
    assert table["threshold"].tolist() == pytest.approx([thresholds["90%"], thresholds["95%"]] * 3)
    s1_90 = table.iloc[2]  # 0.2 (melanoma) and 0.3 both >= 0.15: 2 referred, 1 found
    assert (s1_90["n"], s1_90["referred"], s1_90["melanomas_found"], s1_90["number_needed_to_biopsy"]) == (2, 2, 1, 2)
    s2_95 = table.iloc[5]  # the melanoma at 0.04 is missed even at 0.05; the bkl at 0.6 is referred
    assert (s2_95["sensitivity"], s2_95["specificity"], s2_95["share_referred"]) == (0.0, 0.0, 0.5)
    assert np.isnan(s2_95["number_needed_to_biopsy"])
    test_90 = table.iloc[0]  # test scores >= 0.15: melanomas 0.9, 0.8, 0.4; others 0.7, 0.6, 0.3, 0.2
    assert (test_90["referred"], test_90["melanomas_found"], test_90["unit"]) == (7, 3, "images")
    # Sets given by hand replace the recorded ones; the test split can be counted by lesion.
    given = run_referral(run.path, {"mine": ([0, 1], np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1]]))},
                         sensitivities=(0.9,), by_lesion=True, n_boot=20)
    assert list(given["set"]) == [INTERNAL, "mine"] and list(given["unit"]) == ["lesions", "images"]
    assert given.loc[1, "number_needed_to_biopsy"] == 1.0


@pytest.mark.parametrize(("call", "message"), [
    (lambda: referral_table(POSITIVE, SCORES, {}), "thresholds: need a non-empty dict"),
    (lambda: referral_table(POSITIVE, SCORES, {"90%": float("nan")}), "thresholds: need text targets"),
    (lambda: referral_table(POSITIVE, SCORES[:9], {"t": 0.5}), "scores: need one melanoma score per case \\(10\\)"),
    (lambda: referral_table([2] * 10, SCORES, {"t": 0.5}), "positive: need True/False"),
    (lambda: referral_table(POSITIVE, SCORES, {"t": 0.5}, lesion_ids=["a"] * 10), "lesion_ids: lesion\\(s\\)"),
    (lambda: referral_table(POSITIVE, SCORES, {"t": 0.5}, confidence=1.5), "confidence"),
])
def test_bad_parameters_are_named(call, message):
    with pytest.raises(ParameterError, match=message):
        call()


def test_bad_run_parameters_are_named(tmp_path):
    run = _run(tmp_path, [0.9, 0.8])
    with pytest.raises(ParameterError, match="sensitivities: each target must lie in \\(0, 1\\]"):
        validation_thresholds(run.path, (0.9, 1.5))
    with pytest.raises(ParameterError, match="name the same target twice"):
        validation_thresholds(run.path, (0.95, 0.951))
    with pytest.raises(ParameterError, match="sets: 'x' needs y_prob of shape \\(1, 3\\)"):
        run_referral(run.path, {"x": ([0], np.array([[0.5, 0.5]]))})
    with pytest.raises(ParameterError, match="run_dir: .* holds no config.json"):
        validation_thresholds(tmp_path)
