"""The shortcut test: the artifact makers draw what the appearance estimates detect and change little else; the
counts and intervals of a run's changed predictions add up; bad parameters are refused before any work."""

from __future__ import annotations

import glob

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pskinlib.data.appearance import central_ellipse, dark_border, estimate_appearance, hair_coverage, ink_marks
from pskinlib.errors import ParameterError
from pskinlib.evaluate.shortcuts import (
    ARTIFACTS,
    add_dark_border,
    add_hairs,
    add_ink,
    shortcut_predictions,
    shortcut_summary,
    shortcut_test,
)
from pskinlib.runs import RunRecord

HEIGHT, WIDTH = 150, 200  # HAM10000's size
SKIN, LESION = (224, 178, 158), (90, 55, 40)


def skin_picture(seed: int = 0, size: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    """Skin with a little noise and an elliptic brown lesion in the middle."""
    h, w = size
    rng = np.random.default_rng(seed)
    pixels = np.empty((h, w, 3), np.float64)
    pixels[:] = SKIN
    y, x = np.ogrid[:h, :w]
    pixels[((y - h / 2) / (0.2 * h)) ** 2 + ((x - w / 2) / (0.2 * w)) ** 2 <= 1] = LESION
    return np.clip(pixels + rng.normal(0, 3, pixels.shape), 0, 255).astype(np.uint8)


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a != b).any(axis=2)


# ---------- The makers


def test_the_clean_picture_shows_no_artifact():
    found = estimate_appearance(skin_picture())
    assert not found.dark_border.present and not found.hair.present and not found.ink.present


@pytest.mark.parametrize("size", [(HEIGHT, WIDTH), (450, 600)])
def test_an_added_dark_border_is_detected_and_leaves_the_field_unchanged(size):
    pixels = skin_picture(size=size)
    framed = add_dark_border(pixels)
    border = dark_border(framed)
    assert border.present and 0.04 < border.fraction < 0.25
    h, w = size
    y, x = np.ogrid[:h, :w]
    inside = np.hypot(y - (h - 1) / 2, x - (w - 1) / 2) / np.hypot(h / 2, w / 2) < 0.85 - 0.04
    assert not changed(pixels, framed)[inside].any()
    assert (framed[0, 0] < 20).all() and (framed[-1, -1] < 20).all()  # the corners are the frame's near black


@pytest.mark.parametrize("seed", range(4))
def test_added_hairs_are_detected_and_cover_little_of_the_picture(seed):
    pixels = skin_picture(seed)
    hairy = add_hairs(pixels, n=6, seed=seed)
    assert hair_coverage(hairy).present
    share = changed(pixels, hairy).mean()
    assert 0.01 < share < 0.15
    assert not dark_border(hairy).present and not ink_marks(hairy).present


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("style", ["arc", "dots"])
def test_added_ink_is_detected_around_but_never_on_the_lesion(seed, style):
    pixels = skin_picture(seed)
    marked = add_ink(pixels, seed=seed, style=style)
    assert ink_marks(marked).present
    difference = changed(pixels, marked)
    assert 0.003 < difference.mean() < 0.05
    assert not difference[central_ellipse(pixels.shape[:2])].any()
    assert not dark_border(marked).present  # (a dark stroke may also read as hair: DullRazor sees any thin line)


def test_makers_are_deterministic_and_leave_their_input_alone():
    pixels = skin_picture()
    copy = pixels.copy()
    for make in (lambda s: add_hairs(pixels, seed=s), lambda s: add_ink(pixels, seed=s)):
        np.testing.assert_array_equal(make(3), make(3))
        assert (make(3) != make(4)).any()
    np.testing.assert_array_equal(add_dark_border(pixels), add_dark_border(pixels))
    np.testing.assert_array_equal(pixels, copy)


@pytest.mark.parametrize("call, message", [
    (lambda p: add_dark_border(p, radius=0.1), "radius"),
    (lambda p: add_dark_border(p, edge=-0.1), "edge"),
    (lambda p: add_dark_border(p, colour=(0, 0)), "colour"),
    (lambda p: add_dark_border(p.astype(np.float32)), "uint8"),
    (lambda p: add_hairs(p, n=0), "n"),
    (lambda p: add_hairs(p, seed=-1), "seed"),
    (lambda p: add_hairs(p, width=20), "width"),
    (lambda p: add_hairs(p[..., 0]), "shape"),
    (lambda p: add_ink(p, style="cross"), "style"),
    (lambda p: add_ink(p, seed=1.5), "seed"),
    (lambda p: add_ink(p, colour=(300, 0, 0)), "colour"),
])
def test_makers_refuse_bad_parameters_by_name(call, message):
    with pytest.raises(ParameterError, match=message):
        call(skin_picture())


def test_makers_draw_detectable_artifacts_on_real_pictures(real_data_dir):
    from pskinlib.data.ham10000 import load_image

    paths = sorted(glob.glob(str(real_data_dir / "images" / "*.jpg")))[::211][:30]
    clean = []
    for pixels in map(load_image, paths):
        found = estimate_appearance(pixels)
        if not (found.dark_border.present or found.hair.present or found.ink.present):
            clean.append(pixels)
    assert len(clean) >= 10
    for i, pixels in enumerate(clean):
        assert dark_border(add_dark_border(pixels)).present
        assert hair_coverage(add_hairs(pixels, seed=i)).present
        assert ink_marks(add_ink(pixels, seed=i)).present


# ---------- Counting changed predictions


def rows_of(n: int, true: str, after: list[str], delta: float = 0.0, artifact: str = "hairs") -> pd.DataFrame:
    """``n`` tested images of ``true``, one lesion each, predicted ``after`` (the first ones) or ``true``."""
    predicted = after + [true] * (n - len(after))
    return pd.DataFrame({"artifact": artifact, "image_id": [f"{true}{i}" for i in range(n)],
                         "lesion_id": [f"L{true}{i}" for i in range(n)], "true": true, "status": "tested",
                         "predicted_before": true, "predicted_after": predicted, "p_mel_before": 0.2,
                         "p_mel_after": 0.2 + delta, "detected": True})


def test_a_summary_counts_changes_and_their_direction():
    rows = pd.concat([rows_of(40, "nv", ["mel"] * 10 + ["bkl"] * 2, delta=0.1),
                      rows_of(40, "mel", ["nv"] * 4, delta=-0.05)], ignore_index=True)
    rows.loc[0, "status"] = "already present"  # one nevus cannot be tested: it had the artifact (and changed)
    rows.attrs["classes"] = ("mel", "nv", "bkl")
    table = shortcut_summary(rows, n_boot=300).set_index("true")
    nv, mel, every = table.loc["nv"], table.loc["mel"], table.loc["all"]
    assert (nv["correct"], nv["with_artifact"], nv["images"], nv["changed"]) == (40, 1, 39, 11)
    assert (nv["to_mel"], nv["to_bkl"], nv["to_nv"]) == (9, 2, 0)
    assert nv["share_changed"] == pytest.approx(11 / 39)
    assert nv["share_to_melanoma"] == pytest.approx(9 / 39)
    assert nv["mean_change_p_mel"] == pytest.approx(0.1)
    assert np.isnan(mel["share_to_melanoma"])  # a melanoma cannot turn into one
    assert every["images"] == 79 and every["changed"] == 15 and every["to_mel"] == 9
    for _, row in table.iterrows():
        assert row["changed"] <= row["images"]
        assert row["to_mel"] + row["to_nv"] + row["to_bkl"] == row["changed"]
        assert row["share_changed_low"] <= row["share_changed"] <= row["share_changed_high"]
        assert row["share_changed_low"] < row["share_changed_high"]  # 40 lesions, some changed: a real interval


def test_a_summary_without_change_says_what_the_bootstrap_cannot():
    rows = rows_of(40, "bkl", [], artifact="ink")
    rows.attrs["classes"] = ("mel", "nv", "bkl")
    row = shortcut_summary(rows, n_boot=100).set_index("true").loc["bkl"]
    assert row["share_changed"] == 0 and row["share_changed_high"] == 0
    assert "rule of three" in row["note"] and "0.075" in row["note"]


def test_a_summary_gives_no_interval_for_a_few_lesions():
    rows = rows_of(5, "nv", ["mel"])
    rows.attrs["classes"] = ("mel", "nv", "bkl")
    row = shortcut_summary(rows, n_boot=100).set_index("true").loc["nv"]
    assert row["share_changed"] == pytest.approx(0.2)
    assert pd.isna(row["share_changed_low"]) and "too few lesions" in row["note"]


def test_a_lesions_images_are_resampled_together():
    """Two lesions of 20 images each, one all changed: resampling lesions gives shares 0, 0.5 or 1 only."""
    rows = rows_of(40, "nv", ["mel"] * 20)
    rows["lesion_id"] = ["A"] * 20 + ["B"] * 20
    rows.attrs["classes"] = ("mel", "nv", "bkl")
    row = shortcut_summary(rows, n_boot=200, min_lesions=2).set_index("true").loc["nv"]
    assert row["lesions"] == 2
    assert (row["share_changed_low"], row["share_changed_high"]) == (0.0, 1.0)


@pytest.mark.parametrize("kwargs, message", [({"n_boot": 0}, "n_boot"), ({"seed": -1}, "seed"),
                                             ({"confidence": 1.5}, "confidence"), ({"min_lesions": 1}, "min_lesions")])
def test_a_summary_refuses_bad_parameters(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        shortcut_summary(rows_of(5, "nv", []), **kwargs)


def test_a_summary_needs_the_predictions_table():
    with pytest.raises(ParameterError, match="predictions"):
        shortcut_summary(pd.DataFrame({"image_id": ["a"]}))


# ---------- On a trained run


def test_predicting_pixels_matches_predicting_their_file(trained, tmp_path):
    pixels = skin_picture()
    Image.fromarray(pixels).save(tmp_path / "picture.png")  # a PNG decodes to the same pixels, unlike a JPEG
    np.testing.assert_allclose(trained.predict_pixels([pixels]), trained.predict([tmp_path / "picture.png"]),
                               atol=1e-5)


@pytest.fixture(scope="module")
def run_shortcuts(grad_cam_run, imbalanced_ham):
    return shortcut_predictions(grad_cam_run, imbalanced_ham, part="test", device="cpu")


def test_only_the_runs_correct_predictions_are_tested(grad_cam_run, run_shortcuts):
    recorded = RunRecord(grad_cam_run).predictions("test")
    correct = set(recorded.loc[recorded["true"] == recorded["predicted"], "image_id"])
    assert correct, "the tiny run should classify some test images correctly"
    assert set(run_shortcuts["image_id"]) == correct
    assert list(run_shortcuts["artifact"].unique()) == list(ARTIFACTS)
    tested = run_shortcuts[run_shortcuts["status"] == "tested"]
    assert (tested["predicted_before"] == tested["true"]).all()
    assert tested["predicted_after"].notna().all() and tested["detected"].notna().all()
    assert run_shortcuts.loc[run_shortcuts["status"] != "tested", "predicted_after"].isna().all()


def test_a_runs_summary_adds_up(run_shortcuts):
    table = shortcut_summary(run_shortcuts, n_boot=200, min_lesions=2)
    classes = run_shortcuts.attrs["classes"]
    for _, part in table.groupby("artifact"):
        every = part[part["true"] == "all"].iloc[0]
        by_class = part[part["true"] != "all"]
        for column in ("correct", "images", "changed", "with_artifact", "not_reproduced", "detected"):
            assert every[column] == by_class[column].sum()
    assert (table["changed"] <= table["images"]).all()
    assert (table["correct"] == table["with_artifact"] + table["not_reproduced"] + table["images"]).all()
    assert (table[[f"to_{c}" for c in classes]].sum(axis=1) == table["changed"]).all()
    with_interval = table.dropna(subset=["share_changed_low"])
    assert len(with_interval)
    assert (with_interval["share_changed_low"] <= with_interval["share_changed"] + 1e-12).all()
    assert (with_interval["share_changed"] <= with_interval["share_changed_high"] + 1e-12).all()


def test_the_shortcut_test_of_a_run_is_the_summary_of_its_predictions(grad_cam_run, imbalanced_ham,
                                                                      run_shortcuts):
    table = shortcut_test(grad_cam_run, imbalanced_ham, artifacts=("ink",), n_boot=50, device="cpu")
    ink = run_shortcuts[run_shortcuts["artifact"] == "ink"].reset_index(drop=True)
    ink.attrs["classes"] = run_shortcuts.attrs["classes"]
    expected = shortcut_summary(ink, n_boot=50)
    pd.testing.assert_frame_equal(table, expected)


@pytest.mark.parametrize("kwargs, message", [({"part": "train"}, "part"), ({"artifacts": ("ruler",)}, "artifacts"),
                                             ({"artifacts": "ink"}, "artifacts"),
                                             ({"artifacts": ("ink", "ink")}, "artifacts"),
                                             ({"n_boot": 0}, "n_boot"), ({"max_per_class": 0}, "max_per_class")])
def test_the_shortcut_test_refuses_bad_parameters_before_reading(kwargs, message, tmp_path):
    with pytest.raises(ParameterError, match=message):
        shortcut_test(tmp_path / "no-run", **kwargs)  # the folder is never opened


def test_an_exported_record_cannot_be_tested(grad_cam_run, imbalanced_ham, tmp_path):
    exported = RunRecord(grad_cam_run).export(tmp_path)
    with pytest.raises(ParameterError, match="checkpoint"):
        shortcut_test(exported, imbalanced_ham)
