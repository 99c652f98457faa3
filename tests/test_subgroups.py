"""Results by subgroup (age band, sex, body site), checked against hand computations on small tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pskinlib.errors import ParameterError
from pskinlib.evaluate.subgroups import common_sites, run_subgroups, subgroup_labels, subgroup_table
from pskinlib.metrics import bootstrap_ci
from pskinlib.runs import RunRecord, predictions_table

CLASSES = ("mel", "nv", "bkl")


def _one_hot(predicted: list[int]) -> np.ndarray:
    """Probabilities whose argmax is ``predicted``."""
    probs = np.full((len(predicted), 3), 0.2)
    probs[np.arange(len(predicted)), predicted] = 0.6
    return probs


def _images(correct: dict[int, tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Labels and predictions: for each class, (images, of which predicted right); wrong ones go to the next class."""
    truth, predicted = [], []
    for k, (n, right) in correct.items():
        truth += [k] * n
        predicted += [k] * right + [(k + 1) % 3] * (n - right)
    return truth, predicted


def test_a_small_table_gives_the_hand_computed_counts_and_scores_and_says_why_intervals_are_missing():
    # Group A: mel 1/2, nv 2/2, bkl 1/2 right -> balanced accuracy 2/3, melanoma recall 1/2.
    # Group B: no melanoma; nv 1/2, bkl 2/2 right -> balanced accuracy 3/4 over its two classes, no melanoma recall.
    # All ten: mel 1/2, nv 3/4, bkl 3/4 -> 2/3.
    y_true = [0, 0, 1, 1, 2, 2, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0, 1, 2, 2, 2]
    groups = ["A"] * 6 + ["B"] * 4
    table = subgroup_table(y_true, _one_hot(y_pred), CLASSES, groups, n_boot=200)
    assert list(table["group"]) == ["all images", "A", "B"]
    assert list(table["n"]) == [10, 6, 4] and list(table["lesions"]) == [10, 6, 4]
    assert list(table["melanomas"]) == [2, 2, 0]
    np.testing.assert_allclose(table["balanced_accuracy"], [2 / 3, 2 / 3, 3 / 4])
    assert table.loc[1, "melanoma_recall"] == 0.5
    assert np.isnan(table.loc[2, "melanoma_recall"])  # no melanoma: undefined (missing), not 0
    # Fewer than 30 images: the estimate stays, the interval and the mark do not, and the note says why.
    assert table["balanced_accuracy_low"].isna().all() and table["balanced_accuracy_below_overall"].isna().all()
    assert table.loc[1, "note"] == "too few images for an interval (n=6)"
    assert table.loc[2, "note"] == "too few images for an interval (n=4); no melanoma: no melanoma recall"
    assert table.attrs["resampled"] == "images"


def test_a_subgroup_whose_interval_lies_below_the_overall_estimate_is_marked():
    good_truth, good_pred = _images({0: (20, 20), 1: (20, 20)})  # all right: 1.0
    poor_truth, poor_pred = _images({0: (20, 10), 1: (20, 10)})  # half right: 0.5
    y_true, y_pred = good_truth + poor_truth, good_pred + poor_pred
    table = subgroup_table(y_true, _one_hot(y_pred), CLASSES, ["good"] * 40 + ["poor"] * 40, n_boot=300)
    overall, good, poor = (table.iloc[i] for i in range(3))
    assert overall["balanced_accuracy"] == 0.75 and overall["melanoma_recall"] == 0.75  # 30/40 each
    assert good["balanced_accuracy"] == 1.0 and poor["balanced_accuracy"] == 0.5
    assert poor["balanced_accuracy_high"] < 0.75 and poor["balanced_accuracy_below_overall"] is True
    assert poor["melanoma_recall_high"] < 0.75 and poor["melanoma_recall_below_overall"] is True
    assert good["balanced_accuracy_below_overall"] is False and good["melanoma_recall_below_overall"] is False
    assert overall["balanced_accuracy_below_overall"] is None and table["note"].eq("").all()


def test_the_all_images_interval_is_the_metrics_bootstrap_with_the_same_seed():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 3, 120)
    y_prob = rng.dirichlet([1, 1, 1], 120)
    table = subgroup_table(y_true, y_prob, CLASSES, ["x"] * 120, n_boot=250, seed=7)
    for column, metric in (("balanced_accuracy", "balanced_accuracy"), ("melanoma_recall", "recall:mel")):
        expected = bootstrap_ci(y_true, y_prob, metric, n_boot=250, seed=7, classes=CLASSES)
        assert table.loc[0, [column, f"{column}_low", f"{column}_high"]].tolist() == pytest.approx(
            [expected["estimate"], expected["low"], expected["high"]])


def test_too_few_melanomas_give_no_recall_interval_but_keep_the_balanced_accuracy_interval():
    y_true, y_pred = _images({0: (3, 2), 1: (20, 15), 2: (20, 15)})
    table = subgroup_table(y_true, _one_hot(y_pred), CLASSES, ["x"] * 43, n_boot=100)
    row = table.iloc[1]
    assert row["melanoma_recall"] == pytest.approx(2 / 3) and np.isnan(row["melanoma_recall_low"])
    assert row["balanced_accuracy_low"] > 0 and row["melanoma_recall_below_overall"] is None
    assert row["note"] == "too few melanomas for a recall interval (3)"
    # The minimums are parameters: with min_melanomas=3 the interval is there.
    relaxed = subgroup_table(y_true, _one_hot(y_pred), CLASSES, ["x"] * 43, n_boot=100, min_melanomas=3)
    assert relaxed.loc[1, "melanoma_recall_low"] >= 0 and relaxed.loc[1, "note"] == ""


def test_lesions_are_resampled_whole_when_lesion_ids_are_given():
    # Every lesion has two images with the same truth and prediction: resampling the 40 lesions gives exactly the
    # intervals of resampling their 40 first images (same draws, every count doubled).
    truth, predicted = _images({0: (15, 10), 1: (15, 12), 2: (10, 6)})
    lesions = [f"L{i}" for i in range(40)]
    doubled = subgroup_table(truth * 2, _one_hot(predicted * 2), CLASSES, ["x"] * 80, lesion_ids=lesions * 2,
                             n_boot=200)
    single = subgroup_table(truth, _one_hot(predicted), CLASSES, ["x"] * 40, n_boot=200)
    assert doubled.loc[1, "n"] == 80 and doubled.loc[1, "lesions"] == 40 and doubled.attrs["resampled"] == "lesions"
    columns = ["balanced_accuracy", "balanced_accuracy_low", "balanced_accuracy_high", "melanoma_recall_low"]
    assert doubled.loc[1, columns].tolist() == pytest.approx(single.loc[1, columns].tolist())
    small = subgroup_table(truth * 2, _one_hot(predicted * 2), CLASSES, ["x"] * 80, lesion_ids=lesions * 2,
                           n_boot=50, min_lesions=41)
    assert small.loc[1, "note"].startswith("too few lesions for an interval (40 lesions, n=80 images)")


METADATA = pd.DataFrame({
    "image_id": [f"I{i}" for i in range(12)],
    "age": [0, 29, 30, 49.9, 50, 65, 69, 70, 85, np.nan, 45, 55],
    "sex": ["male", " Female", "", None, "unknown", "MALE", "female", "male", "female", "male", "male", "female"],
    "localization": ["back", "back", "back", "face", "face", "trunk", "trunk", "scalp", "ear", "neck", "hand",
                     "unknown"],
})


def test_age_sex_and_body_site_labels_follow_the_documented_bands_and_unknowns():
    age = subgroup_labels(METADATA, "age band")
    assert list(age) == ["under 30", "under 30", "30–49", "30–49", "50–69", "50–69", "50–69", "70 and over",
                         "70 and over", "unknown", "30–49", "50–69"]
    assert list(age.cat.categories) == ["under 30", "30–49", "50–69", "70 and over", "unknown"]
    sex = subgroup_labels(METADATA, "sex")
    assert list(sex[:6]) == ["male", "female", "unknown", "unknown", "unknown", "male"]
    # Sites: back 3, face 2, trunk 2, then ear, hand, neck, scalp once each (ties by name); unknown is no site.
    assert common_sites(METADATA) == ("back", "face", "trunk", "ear", "hand", "neck")
    site = subgroup_labels(METADATA, "body site")
    assert site[7] == "other sites" and site[11] == "unknown"
    assert list(site.cat.categories) == ["back", "face", "trunk", "ear", "hand", "neck", "other sites", "unknown"]
    # Sites passed in (e.g. the same six for every run) keep their order; an absent one is an empty subgroup.
    fixed = subgroup_labels(METADATA, "body site", sites=["Trunk", "lower extremity"])
    assert list(fixed.cat.categories) == ["trunk", "lower extremity", "other sites", "unknown"]
    table = subgroup_table([0] * 12, _one_hot([0] * 12), CLASSES, fixed, n_boot=10)
    assert list(table["group"]) == ["all images", "trunk", "lower extremity", "other sites", "unknown"]
    assert table.loc[2, "n"] == 0 and table.loc[2, "note"] == "no images"
    assert np.isnan(table.loc[2, "balanced_accuracy"])


def test_a_run_and_a_labelled_folder_get_the_same_analysis(tmp_path):
    run = RunRecord(tmp_path / "run")
    run.path.mkdir()
    run.write_config({"config": {}, "data": {"classes": list(CLASSES)}})
    run.write_metrics({"test": {}})
    truth, predicted = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2], [0, 1, 2, 1, 1, 2, 0, 0, 2, 0, 1, 1]
    ids = METADATA["image_id"]
    run.write_predictions(predictions_table(ids, truth, _one_hot(predicted), CLASSES,
                                            lesion_ids=[f"L{i // 2}" for i in range(12)]), "test")
    table = run_subgroups(run.path, METADATA, ("sex", "age band"), n_boot=20)
    assert list(table["grouping"]) == ["all"] + ["sex"] * 3 + ["age band"] * 5
    assert table.attrs["resampled"] == "lesions" and table.loc[0, "lesions"] == 6
    expected = subgroup_table(truth, _one_hot(predicted), CLASSES, subgroup_labels(METADATA, "sex"), n_boot=20)
    assert table.loc[1:3, "balanced_accuracy"].tolist() == expected.loc[1:3, "balanced_accuracy"].tolist()
    # An external evaluation: a labelled folder's table with age, sex and localization, one source kept.
    evaluation = run.evaluation("external")
    external = predictions_table(ids, truth, _one_hot(predicted), CLASSES)
    external.insert(1, "source_dataset", ["S1"] * 6 + ["S2"] * 6)
    evaluation.write_predictions(external)
    evaluation.write_metrics({})
    folder = METADATA.assign(dx="mel", source_dataset="S1")
    by_site = run_subgroups(run.path, folder, "body site", evaluation="external", source="S1", n_boot=20)
    assert by_site.loc[0, "n"] == 6 and by_site.attrs["resampled"] == "images"
    assert list(by_site["group"]) == ["all images", "back", "face", "trunk", "other sites", "unknown"]
    with pytest.raises(ParameterError, match="images_table: has no row for 2"):
        run_subgroups(run.path, METADATA.iloc[:10], "sex", n_boot=20)
    with pytest.raises(ParameterError, match="images_table: has no \\['localization'\\] column"):
        run_subgroups(run.path, METADATA.drop(columns="localization"), "body site", evaluation="external")
    with pytest.raises(ParameterError, match="source: 'S3'"):
        run_subgroups(run.path, folder, "sex", evaluation="external", source="S3")


@pytest.mark.parametrize(("call", "message"), [
    (lambda: subgroup_labels(METADATA, "country"), "by: unknown grouping 'country'"),
    (lambda: subgroup_labels(METADATA.drop(columns="age"), "age band"), "needs a 'age' column"),
    (lambda: subgroup_labels(METADATA.assign(sex="M"), "sex"), "column 'sex' holds \\['m'\\]"),
    (lambda: subgroup_labels(METADATA.assign(age=-5), "age band"), "negative ages"),
    (lambda: subgroup_labels(METADATA, "body site", sites=["back", "unknown"]), "sites: \\['unknown'\\]"),
    (lambda: subgroup_labels(METADATA, "sex", sites=["back"]), "sites: only used with by='body site'"),
    (lambda: subgroup_table([0, 1], _one_hot([0, 1]), CLASSES, ["a"]), "groups: need one value per image \\(2\\)"),
    (lambda: subgroup_table([0, 1], _one_hot([0, 1, 2]), CLASSES, ["a", "a"]), "y_prob: need shape"),
    (lambda: subgroup_table([0, 3], _one_hot([0, 1]), CLASSES, ["a", "a"]), "y_true: labels must be 0..2"),
    (lambda: subgroup_table([0, 1], _one_hot([0, 1]), CLASSES, ["a", None]), "groups: has missing values"),
    (lambda: subgroup_table([0, 1], _one_hot([0, 1]), CLASSES, ["a", "a"], n_boot=0), "n_boot"),
    (lambda: subgroup_table([0, 1], _one_hot([0, 1]), CLASSES, ["a", "a"], lesion_ids=["x"]), "lesion_ids"),
])
def test_bad_parameters_are_named(call, message):
    with pytest.raises(ParameterError, match=message):
        call()
