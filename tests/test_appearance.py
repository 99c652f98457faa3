"""Skin tone (ITA) and image artifacts on images made to have, or lack, each feature; the cached table of a folder."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pskinlib.data import appearance
from pskinlib.data.appearance import (
    NOT_ESTIMABLE,
    appearance_cache,
    appearance_table,
    band_counts,
    dark_border,
    estimate_appearance,
    hair_coverage,
    ink_marks,
    ita_band,
    not_estimable,
    rgb_to_lab,
    skin_tone,
)
from pskinlib.data.labelled_folders import read_labelled_folder
from pskinlib.errors import ParameterError

HEIGHT, WIDTH = 150, 200  # HAM10000's size
VERY_LIGHT = (236, 200, 180)  # L* 83, b* 15: ITA 66
INTERMEDIATE = (200, 150, 115)  # L* 66, b* 26: ITA 32
BROWN = (140, 95, 60)  # L* 44, b* 27: ITA -12
DARK = (100, 65, 45)  # L* 31, b* 18: ITA -46
VIOLET_TINT = (220, 170, 200)  # b* -8: a dermatoscope's violet light
DEEP_VIOLET_TINT = (200, 150, 215)  # a stronger tint, with marker ink's hue and chroma (h_ab 319, C* 40)
SALMON_TINT = (240, 160, 150)  # b* 17 but hue angle 31: pink, not a skin colour
MARKER = (110, 40, 160)  # gentian violet


def skin_picture(skin=VERY_LIGHT, lesion=(60, 35, 25), seed=0) -> np.ndarray:
    """A skin-coloured picture with a little noise and an elliptic lesion in the middle."""
    rng = np.random.default_rng(seed)
    pixels = np.empty((HEIGHT, WIDTH, 3), np.float64)
    pixels[:] = skin
    y, x = np.ogrid[:HEIGHT, :WIDTH]
    pixels[((y - 75) / 30) ** 2 + ((x - 100) / 40) ** 2 <= 1] = lesion
    return np.clip(pixels + rng.normal(0, 2, pixels.shape), 0, 255).astype(np.uint8)


def with_vignette(pixels: np.ndarray, radius: float) -> tuple[np.ndarray, float]:
    """The picture seen through a round field of ``radius`` pixels: black outside. Also the black share."""
    y, x = np.ogrid[:HEIGHT, :WIDTH]
    outside = (y - (HEIGHT - 1) / 2) ** 2 + (x - (WIDTH - 1) / 2) ** 2 > radius**2
    out = pixels.copy()
    out[outside] = (20, 16, 18)  # L* 5: a frame is dark grey rather than black
    return out, float(outside.mean())


def with_hairs(pixels: np.ndarray, n: int = 6, seed: int = 1) -> tuple[np.ndarray, float]:
    """Dark lines 2 px wide across the picture, as hairs. Also the share of pixels they cover."""
    rng = np.random.default_rng(seed)
    drawn = np.zeros((HEIGHT, WIDTH), bool)
    for _ in range(n):
        x0, x1 = rng.uniform(0, WIDTH, 2)
        t = np.linspace(0, 1, 400)
        xs, ys = x0 + (x1 - x0) * t, HEIGHT * t
        for dx in (0, 1):
            drawn[np.clip(ys.astype(int), 0, HEIGHT - 1), np.clip((xs + dx).astype(int), 0, WIDTH - 1)] = True
    out = pixels.copy()
    out[drawn] = (45, 30, 25)
    return out, float(drawn.mean())


def with_marker(pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """A violet marker stroke 4 px wide, an arc around the lesion. Also the share it covers."""
    y, x = np.ogrid[:HEIGHT, :WIDTH]
    distance = np.hypot((y - 75) / 1.0, (x - 100) / 1.0)
    stroke = (np.abs(distance - 62) < 2) & (x < 100)
    out = pixels.copy()
    out[stroke] = MARKER
    return out, float(stroke.mean())


# ---------- Colour and bands


def test_lab_matches_the_published_values_of_white_and_red():
    lab = rgb_to_lab(np.array([[[255, 255, 255], [255, 0, 0], [0, 0, 0]]], np.uint8))[0]
    assert lab[0] == pytest.approx([100, 0, 0], abs=0.05)
    assert lab[1] == pytest.approx([53.24, 80.09, 67.20], abs=0.05)
    assert lab[2] == pytest.approx([0, 0, 0], abs=0.05)


@pytest.mark.parametrize("angle, band", [(70, "very light"), (55.01, "very light"), (55, "light"), (41.5, "light"),
                                         (30, "intermediate"), (10.5, "tan"), (0, "brown"), (-30, "dark"),
                                         (-60, "dark")])
def test_ita_bands_follow_chardon(angle, band):
    assert ita_band(angle) == band


def test_ita_band_refuses_a_missing_angle():
    with pytest.raises(ParameterError, match="ita"):
        ita_band(math.nan)


# ---------- Skin tone


@pytest.mark.parametrize("skin, band, expected_ita", [(VERY_LIGHT, "very light", 66.0),
                                                      (INTERMEDIATE, "intermediate", 31.9),
                                                      (BROWN, "brown", -11.7), (DARK, "dark", -45.9)])
def test_skin_tone_of_the_skin_around_a_lesion(skin, band, expected_ita):
    tone = skin_tone(skin_picture(skin, lesion=(45, 25, 20)))
    assert tone.category == band
    assert tone.ita == pytest.approx(expected_ita, abs=2.5)
    assert tone.reason == ""
    assert 0.2 < tone.skin_fraction < 0.9


def test_the_lesion_does_not_darken_the_skin_tone():
    # A dark lesion covering half the picture: were it counted as skin, ITA would fall far below 66.
    small, large = skin_picture(lesion=(60, 35, 25)), skin_picture(lesion=(60, 35, 25))
    y, x = np.ogrid[:HEIGHT, :WIDTH]
    large[((y - 75) / 60) ** 2 + ((x - 100) / 80) ** 2 <= 1] = (60, 35, 25)
    assert skin_tone(small).ita == pytest.approx(66, abs=2.5)
    assert skin_tone(large).ita == pytest.approx(66, abs=2.5)


def test_a_violet_tint_is_not_a_skin_tone():
    tone = skin_tone(skin_picture(VIOLET_TINT))
    assert tone.category == NOT_ESTIMABLE and not tone.estimable
    assert math.isnan(tone.ita)
    assert tone.reason.startswith("no yellow") and tone.b_star < 0


def test_a_salmon_tint_with_some_yellow_is_still_not_a_skin_tone():
    tone = skin_tone(skin_picture(SALMON_TINT))
    assert tone.category == NOT_ESTIMABLE
    assert tone.reason.startswith("pink-violet tint") and tone.b_star > appearance.MIN_B_STAR


def test_a_lesion_filling_the_picture_leaves_too_few_skin_pixels():
    pixels = skin_picture()
    pixels[4:-4, 4:-4] = (60, 35, 25)
    tone = skin_tone(pixels)
    assert tone.category == NOT_ESTIMABLE and tone.reason.startswith("too few skin pixels")


def test_an_all_black_picture_is_too_dark():
    tone = skin_tone(np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    assert tone.category == NOT_ESTIMABLE and tone.reason.startswith("too dark")


def test_shades_of_gray_is_an_explicit_option_and_pulls_skin_towards_grey():
    pixels = skin_picture(INTERMEDIATE)
    plain, corrected = skin_tone(pixels), skin_tone(pixels, colour_constancy=6)
    assert plain.estimable and plain.b_star > 20
    assert corrected.b_star < plain.b_star / 2  # the skin's own yellow is divided out with the light's
    with pytest.raises(ParameterError, match="colour_constancy"):
        skin_tone(pixels, colour_constancy=0)


# ---------- Dark border


@pytest.mark.parametrize("radius", [95, 110])
def test_a_dark_round_frame_is_found_with_its_extent(radius):
    pixels, black = with_vignette(skin_picture(), radius)
    border = dark_border(pixels)
    assert border.present
    assert border.fraction == pytest.approx(black, abs=0.03)


def test_a_picture_without_a_frame_has_no_dark_border():
    border = dark_border(skin_picture())
    assert not border.present and border.fraction == 0


def test_a_dark_lesion_reaching_one_corner_is_not_a_frame():
    pixels = skin_picture()
    pixels[:50, :60] = (40, 35, 35)
    assert not dark_border(pixels).present


def test_the_skin_tone_ignores_the_frame():
    framed, _ = with_vignette(skin_picture(INTERMEDIATE), 95)
    tone = skin_tone(framed)
    assert tone.category == "intermediate" and tone.ita == pytest.approx(31.9, abs=2.5)


# ---------- Hair


def test_drawn_hairs_are_found():
    pixels, drawn = with_hairs(skin_picture())
    hair = hair_coverage(pixels)
    assert hair.present
    assert 0.4 * drawn < hair.fraction < 1.6 * drawn


def test_a_clean_picture_has_no_hair():
    hair = hair_coverage(skin_picture())
    assert not hair.present and hair.fraction < 0.001


def test_round_dark_dots_are_not_hair():
    pixels = skin_picture()
    for cy, cx in ((20, 30), (120, 170), (30, 170), (125, 25)):
        pixels[cy - 3:cy + 3, cx - 3:cx + 3] = (45, 30, 25)
    assert hair_coverage(pixels).fraction == 0


def test_hair_does_not_change_the_skin_tone():
    pixels, _ = with_hairs(skin_picture(INTERMEDIATE), n=10)
    assert skin_tone(pixels).ita == pytest.approx(31.9, abs=2.5)


# ---------- Ink


def test_a_violet_marker_stroke_is_ink():
    pixels, drawn = with_marker(skin_picture())
    ink = ink_marks(pixels)
    assert ink.present
    assert ink.fraction == pytest.approx(drawn, rel=0.3)


def test_a_clean_picture_and_violet_tinted_ones_have_no_ink():
    assert ink_marks(skin_picture()).fraction == 0
    assert not ink_marks(skin_picture(VIOLET_TINT)).present
    assert ink_marks(skin_picture(DEEP_VIOLET_TINT)).fraction < 0.001  # the image's usual colour is not ink


def test_marker_ink_on_a_violet_tinted_picture_is_still_found():
    pixels, drawn = with_marker(skin_picture(DEEP_VIOLET_TINT))
    assert ink_marks(pixels).fraction == pytest.approx(drawn, rel=0.3)


# ---------- Input


@pytest.mark.parametrize("pixels, message", [
    ([[1, 2, 3]], "numpy array"),
    (np.zeros((HEIGHT, WIDTH), np.uint8), "shape"),
    (np.zeros((HEIGHT, WIDTH, 4), np.uint8), "shape"),
    (np.zeros((HEIGHT, WIDTH, 3), np.float32), "uint8"),
    (np.zeros((20, 200, 3), np.uint8), "too small"),
])
@pytest.mark.parametrize("measure", [skin_tone, dark_border, hair_coverage, ink_marks, estimate_appearance])
def test_bad_input_is_a_parameter_error(pixels, message, measure):
    with pytest.raises(ParameterError, match=message):
        measure(pixels)


def test_one_row_holds_every_estimate():
    framed, _ = with_vignette(skin_picture(), 95)
    row = estimate_appearance(with_hairs(framed)[0]).as_row()
    assert list(row) == list(appearance.COLUMNS[1:])
    assert row["dark_border"] and row["hair"] and not row["ink"] and row["ita_category"] == "very light"


# ---------- Every image of a folder, cached


def write_folder(root, pictures: dict[str, np.ndarray]):
    (root / "images").mkdir(parents=True)
    for image_id, pixels in pictures.items():
        Image.fromarray(pixels).save(root / "images" / f"{image_id}.png")
    pd.DataFrame({"image_id": list(pictures), "dx": "nv", "source_dataset": "synthetic"}).to_csv(
        root / "labels.csv", index=False)
    return read_labelled_folder(root)


def test_the_table_of_a_folder_is_cached_and_rebuilt_when_a_file_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("PSKIN_CACHE", str(tmp_path / "cache"))
    folder = write_folder(tmp_path / "set", {
        "light": skin_picture(), "violet": skin_picture(VIOLET_TINT),
        "framed": with_vignette(skin_picture(BROWN), 95)[0], "tiny": np.full((20, 20, 3), 200, np.uint8)})
    assert not appearance_cache(folder).is_file()
    reports = []
    table = appearance_table(folder, workers=1, progress=False, on_progress=lambda *done: reports.append(done))
    assert reports == [(4, 4)]  # one chunk of four images, measured
    assert appearance_cache(folder).is_file()
    assert table["image_id"].tolist() == ["light", "violet", "framed", "tiny"]
    by_id = table.set_index("image_id")
    assert by_id.loc["light", "ita_category"] == "very light"
    assert by_id.loc["framed", "ita_category"] == "brown" and by_id.loc["framed", "dark_border"]
    assert not by_id.loc["light", "dark_border"]
    assert not_estimable(table) == {"no yellow": ["violet"], "too small": ["tiny"]}
    assert pd.isna(by_id.loc["tiny", "dark_border"]) and math.isnan(by_id.loc["tiny", "hair_fraction"])
    cached = list((tmp_path / "cache").glob("appearance-*.csv"))
    assert len(cached) == 1

    def no_measuring(*args):
        raise AssertionError("the cached table should have been read")

    monkeypatch.setattr(appearance, "_measure", no_measuring)
    pd.testing.assert_frame_equal(appearance_table(folder, workers=1, progress=False), table)

    monkeypatch.undo()
    monkeypatch.setenv("PSKIN_CACHE", str(tmp_path / "cache"))
    Image.fromarray(skin_picture(VIOLET_TINT)).save(folder.root / "images" / "light.png")
    os.utime(folder.root / "images" / "light.png", ns=(1, 1))
    rebuilt = appearance_table(read_labelled_folder(folder.root), workers=1, progress=False)
    assert rebuilt.set_index("image_id").loc["light", "ita_category"] == NOT_ESTIMABLE
    assert len(list((tmp_path / "cache").glob("appearance-*.csv"))) == 2


def test_band_counts_per_class(tmp_path, monkeypatch):
    monkeypatch.setenv("PSKIN_CACHE", str(tmp_path / "cache"))
    table = appearance_table(write_folder(tmp_path / "set", {"a": skin_picture(), "b": skin_picture(VIOLET_TINT)}),
                             workers=1, progress=False)
    counts = band_counts(table)
    assert counts.loc["nv", "very light"] == 1 and counts.loc["nv", NOT_ESTIMABLE] == 1
    assert counts.loc["total"].sum() == 2
    with pytest.raises(ParameterError, match="localization"):
        band_counts(table, by="localization")


def test_a_table_needs_images_with_paths():
    with pytest.raises(ParameterError, match="images"):
        appearance_table(pd.DataFrame({"image_id": ["a"]}))


def test_real_ham10000_images_get_estimates_or_reasons(real_data_dir):
    from pskinlib.data.ham10000 import load_ham10000

    paths = load_ham10000(real_data_dir).table["path"].head(3)
    for path in paths:
        result = estimate_appearance(appearance.measured_pixels(path))
        tone = result.skin_tone
        assert tone.estimable == math.isfinite(tone.ita)
        assert tone.estimable or tone.reason
        for artifact in (result.dark_border, result.hair, result.ink):
            assert 0 <= artifact.fraction <= 1
