"""The book's use of the skin-tone and artifact estimates: the data chapter's tables and sentences add up and name
what is not estimable, the clinical chapter's subgroups by ITA band and artifact keep the library's intervals and
minimums, and the checklist answers skin tone and artifacts from the estimates when there are any."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import ham_rows, write_ham_folder
from PIL import Image

from book import appearance, checklist, clinical
from pskinlib.data.appearance import NOT_ESTIMABLE
from pskinlib.data.ham10000 import load_ham10000
from pskinlib.errors import ParameterError
from pskinlib.evaluate.subgroups import MIN_LESIONS_FOR_INTERVAL, subgroup_table
from pskinlib.info import ALL_CLASSES


def looks(rows: list[tuple[str, str, str, object, object, object]]) -> pd.DataFrame:
    """An appearance table from ``(image_id, dx, band or reason, dark_border, hair, ink)`` rows; a band not among
    the ITA bands is the reason of a not-estimable image."""
    table = []
    for image_id, dx, tone, border, hair, ink in rows:
        estimable = tone in appearance.BANDS
        table.append({"image_id": image_id, "dx": dx, "ita": 40.0 if estimable else math.nan,
                      "ita_category": tone if estimable else NOT_ESTIMABLE, "ita_reason": "" if estimable else tone,
                      "lightness": 60.0, "a_star": 15.0, "b_star": 15.0 if estimable else -2.0, "skin_fraction": 0.5,
                      "dark_border": border, "dark_border_fraction": 0.1 if border is True else 0.0,
                      "hair": hair, "hair_fraction": 0.02 if hair is True else 0.0, "ink": ink, "ink_fraction": 0.0})
    out = pd.DataFrame(table)
    for column in appearance.ARTIFACTS:
        out[column] = out[column].astype("boolean")
    return out


@pytest.fixture
def ham():
    return looks([
        ("a", "mel", "very light", True, False, False),
        ("b", "mel", "no yellow: b* 2.0 <= 8", True, True, False),
        ("c", "nv", "light", False, False, False),
        ("d", "nv", "pink-violet tint: hue angle 20 < 35 degrees", False, True, True),
        ("e", "nv", "no yellow: b* -3.0 <= 8", False, False, False),
        ("f", "bkl", "too small: f.png is 20 x 20 px", pd.NA, pd.NA, pd.NA),
    ])


# ---------- The data chapter


def test_band_counts_add_up_per_class_and_count_the_images_without_an_estimate(ham):
    table = appearance.band_table({"HAM10000": ham, "other": ham.iloc[:3]})
    columns = [*appearance.BANDS, NOT_ESTIMABLE]
    assert (table[columns].sum(axis=1) == table["images"]).all()
    mine = table[table["collection"] == "HAM10000"].set_index("class")
    assert mine.loc[appearance.ALL_CLASSES_ROW, "images"] == len(ham)
    assert mine.loc[appearance.ALL_CLASSES_ROW, NOT_ESTIMABLE] == 4
    assert mine.loc["melanoma", "very light"] == 1 and mine.loc["melanoma", NOT_ESTIMABLE] == 1
    assert mine.loc[appearance.ALL_CLASSES_ROW, "share not estimable"] == "66.7%"
    assert table[table["collection"] == "other"]["images"].iloc[-1] == 3


def test_every_image_without_an_estimate_is_counted_under_its_reason_and_named(ham):
    reasons = appearance.reason_table({"HAM10000": ham}).set_index("reason")
    assert reasons["images"].to_dict() == {"no yellow": 2, "pink-violet tint": 1, "too small": 1}
    assert reasons["images"].sum() == (ham["ita_category"] == NOT_ESTIMABLE).sum()
    assert reasons.loc["no yellow", "for example"] == "b, e"
    assert reasons.loc["no yellow", "melanoma"] == 1 and reasons.loc["no yellow", "melanocytic nevus"] == 1


def test_artifact_shares_are_of_the_images_measured(ham):
    table = appearance.artifact_table({"HAM10000": ham}).set_index("class")
    everything = table.loc[appearance.ALL_CLASSES_ROW]
    assert everything["not measured"] == 1 and everything["images"] == 6
    assert everything["dark border"] == "2 (40.0%)" and everything["ink"] == "1 (20.0%)"
    assert table.loc["melanoma", "dark border"] == "2 (100.0%)"
    assert appearance.prevalence(ham, "hair", "bkl") != appearance.prevalence(ham, "hair", "bkl")  # NaN: unmeasured


def test_the_sentences_say_how_many_are_not_estimable_and_whether_darker_skin_is_absent(ham):
    found = appearance.tone_finding({"HAM10000": ham})
    text = found["tone_finding"].data
    assert "4 of 6 images (67%) are not estimable (no yellow 2," in text
    assert "none is brown or dark: darker skin is absent" in text
    assert found["ham_estimable"] == 2 and found["ham_not_estimable_share"] == pytest.approx(4 / 6)
    darker = looks([(f"i{k}", "nv", "brown" if k < 3 else "very light", False, False, False) for k in range(10)])
    text = appearance.tone_finding({"other": darker})["tone_finding"].data
    assert "3 brown or dark (30.0% of the estimable)" in text and "absent" not in text
    artifacts = appearance.artifact_finding({"HAM10000": ham})["artifact_finding"].data
    assert "dark border in 40.0% of the images, from 0.0% of the melanocytic nevus images to 100.0% of the " \
           "melanoma images" in artifacts


def test_a_table_without_the_estimates_is_refused():
    with pytest.raises(ParameterError, match="appearance table"):
        appearance.band_table({"HAM10000": pd.DataFrame({"image_id": ["a"], "dx": ["nv"]})})


def skin(colour) -> np.ndarray:
    """A skin-coloured picture with a dark lesion in the middle."""
    pixels = np.full((150, 200, 3), colour, np.uint8)
    pixels[50:100, 70:130] = (60, 35, 25)
    return pixels


def test_the_galleries_have_a_row_per_band_and_reason_and_say_when_a_band_is_empty(tmp_path, ham):
    paths = {}
    for image_id in ham["image_id"]:
        paths[image_id] = tmp_path / f"{image_id}.png"
        Image.fromarray(skin((236, 200, 180))).save(paths[image_id])
    table = ham.assign(path=ham["image_id"].map(lambda i: str(paths[i])))
    figure = appearance.tone_gallery(table, per_row=3)
    titles = [ax.get_title(loc="left") for ax in figure.axes if ax.get_title(loc="left")]
    assert titles == [*(f"ITA band: {band}" for band in appearance.BANDS), "not estimable: no yellow",
                      "not estimable: pink-violet tint", "not estimable: too small"]
    empty = [ax for ax in figure.axes if ax.get_title(loc="left") == "ITA band: dark"][0]
    assert [t.get_text() for t in empty.texts] == ["no image"]
    figure = appearance.artifact_gallery(table, per_row=3)
    assert len(figure.axes) == 3 * len(appearance.ARTIFACTS)


def test_ham10000_s_estimates_are_measured_over_all_classes_and_kept_for_the_study_s(tiny_ham, tmp_path, monkeypatch):
    monkeypatch.setenv("PSKIN_CACHE", str(tmp_path / "cache"))
    table = appearance.ham10000_appearance(tiny_ham)
    assert len(table) == len(load_ham10000(tiny_ham)) and {"path", "ita_category"} <= set(table.columns)
    assert set(table["dx"]) == {"mel", "nv", "bkl"}


# ---------- The clinical chapter


class Predicted:
    """What appearance_subgroups reads of a run: its test predictions and classes."""

    classes = ("mel", "nv", "bkl")

    def __init__(self, predictions: pd.DataFrame):
        self._predictions = predictions

    def predictions(self, part: str) -> pd.DataFrame:
        assert part == "test"
        return self._predictions.copy()


@pytest.fixture
def predicted():
    """200 test images of 200 lesions: 150 very light, 20 tan, 30 not estimable; the 50 with hair are all
    misclassified, the rest right."""
    rng = np.random.default_rng(0)
    n = 200
    true = np.array(["mel", "nv", "bkl"])[np.arange(n) % 3]
    hair = np.arange(n) % 4 == 0
    tone = np.where(np.arange(n) < 150, "very light", np.where(np.arange(n) < 170, "tan", "no yellow: b* 1 <= 8"))
    predicted_class = np.where(hair, np.roll(true, 1), true)
    probs = np.zeros((n, 3)) + rng.uniform(0, 0.1, (n, 3))
    probs[np.arange(n), [Predicted.classes.index(c) for c in predicted_class]] = 1.0
    predictions = pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "lesion_id": [f"l{k}" for k in range(n)],
                                "true": true, "predicted": predicted_class,
                                **{f"p_{c}": probs[:, i] for i, c in enumerate(Predicted.classes)}})
    table = looks([(f"i{k}", true[k], tone[k], bool(k % 2), bool(hair[k]), False) for k in range(n)])
    return {"run a": Predicted(predictions)}, table


def test_subgroups_by_band_and_artifact_keep_the_library_s_intervals_and_minimums(predicted):
    runs, table = predicted
    groups = clinical.appearance_subgroups(runs, table, n_boot=200).set_index(["grouping", "group"])
    tone = groups.loc[clinical.SKIN_TONE]
    assert list(tone.index) == ["very light", "tan", NOT_ESTIMABLE]  # bands without a test image have no row
    assert tone.loc["tan", "lesions"] < MIN_LESIONS_FOR_INTERVAL
    assert math.isnan(tone.loc["tan", "balanced_accuracy_low"]) and tone.loc["tan", "note"].startswith("too few")
    assert tone.loc["tan", "balanced_accuracy_below_overall"] is None
    for band in ("very light", NOT_ESTIMABLE):
        assert tone.loc[band, "lesions"] >= MIN_LESIONS_FOR_INTERVAL and not math.isnan(
            tone.loc[band, "balanced_accuracy_low"])
    assert groups.loc[("hair", "present"), "balanced_accuracy_below_overall"] is True
    assert groups.loc[("hair", "absent"), "balanced_accuracy"] == 1.0
    assert list(groups.loc["dark border"].index) == ["present", "absent"]
    assert list(groups.loc["ink"].index) == ["absent"]
    # The all-images row is subgroup_table's, as the age, sex and site subgroups have it.
    predictions = runs["run a"].predictions("test")
    alone = subgroup_table(predictions["true"].map({"mel": 0, "nv": 1, "bkl": 2}).to_numpy(),
                           predictions[["p_mel", "p_nv", "p_bkl"]].to_numpy(), Predicted.classes,
                           ["x"] * len(predictions), lesion_ids=predictions["lesion_id"].to_numpy(), n_boot=200)
    assert groups.loc[("all", "all images"), "balanced_accuracy_low"] == alone.loc[0, "balanced_accuracy_low"]
    found = clinical.appearance_finding(groups.reset_index())
    assert "hair present (balanced accuracy)" in found["appearance_finding"].data
    assert "1 of its 8 subgroups were too small" in found["appearance_finding"].data
    assert "no test image was estimated light or intermediate or brown or dark" in found["appearance_finding"].data
    view = clinical.subgroup_view(groups.reset_index(), "run a")
    assert "estimated skin tone (ITA): tan" in view["subgroup"].tolist()


class Evaluated:
    """A run evaluated on other folders: predictions of its ``external`` evaluation (no lesion ids there)."""

    classes = Predicted.classes

    def __init__(self, predictions: pd.DataFrame, evaluated: bool = True):
        self._predictions, self._evaluated = predictions.drop(columns="lesion_id"), evaluated

    def evaluations(self) -> dict:
        return {"external": self} if self._evaluated else {}

    def evaluation(self, name: str):
        return self.evaluations()[name]

    def predictions(self, part: str | None = None) -> pd.DataFrame:
        assert part is None, "an external grouping reads no test split"
        return self._predictions.copy()


def test_an_external_evaluation_is_grouped_the_same_way_and_a_run_without_one_is_left_out(predicted):
    runs, table = predicted
    evaluated = Evaluated(runs["run a"].predictions("test"))
    unevaluated = Evaluated(runs["run a"].predictions("test"), evaluated=False)
    groups = clinical.appearance_subgroups({"run b": evaluated, "run c": unevaluated}, table, n_boot=200,
                                           evaluation="external")
    assert set(groups["run"]) == {"run b"}
    tone = groups[groups["grouping"] == clinical.SKIN_TONE].set_index("group")
    assert list(tone.index) == ["very light", "tan", NOT_ESTIMABLE]
    assert (tone["lesions"] == tone["n"]).all()  # no lesion ids: each image its own lesion
    found = clinical.appearance_finding(groups, prefix="external_appearance", images="ISIC 2017 image")
    assert set(found) == {"external_appearance_finding", "external_appearance_subgroups_analysed",
                          "external_appearance_subgroups_below"}
    assert "no ISIC 2017 image was estimated light" in found["external_appearance_finding"].data
    assert clinical.subgroup_view(groups, "run b", "all ISIC 2017 images")["subgroup"].iloc[0] == "all ISIC 2017 images"
    with pytest.raises(ParameterError, match="no estimate for 1 of run b's image.s. of its external evaluation"):
        clinical.appearance_subgroups({"run b": evaluated}, table.iloc[1:], n_boot=50, evaluation="external")


def test_a_test_image_without_an_estimate_is_an_error_naming_it(predicted):
    runs, table = predicted
    with pytest.raises(ParameterError, match="no estimate for 1 .*i0"):
        clinical.appearance_subgroups(runs, table.iloc[1:], n_boot=50)


# ---------- The checklist


def test_the_checklist_answers_skin_tone_and_artifacts_from_the_estimates(tmp_path, ham):
    folder = write_ham_folder(tmp_path / "ham", ham_rows({c: 2 for c in ALL_CLASSES}))
    all_images, study = load_ham10000(folder, classes="all").table, load_ham10000(folder).table
    without = checklist.model_card(all_images, study, {}).set_index("recommendation")["answer"]
    with_estimates = checklist.model_card(all_images, study, {}, ham).set_index("recommendation")["answer"]
    artifacts = "image artifacts (pen marks, hair, rulers, dark corners)"
    for row in ("skin tone", artifacts):
        assert without[row].startswith(checklist.NOT_AVAILABLE)
        assert checklist.NOT_AVAILABLE not in with_estimates[row]
    assert "4 of 6 images (67%) not estimable, 3 of them because the dermatoscope's light" in with_estimates[
        "skin tone"]
    assert "not a Fitzpatrick type" in with_estimates["skin tone"]
    assert "dark border 40.0%; hair 40.0%; ink 20.0%" in with_estimates[artifacts]
    assert checklist.unanswered(checklist.model_card(all_images, study, {}, ham)) == \
        "patients: age, sex, body site, ancestry"
    with pytest.raises(ParameterError, match="appearance"):
        checklist.model_card(all_images, study, {}, ham.drop(columns="hair"))
