"""The prepared image cache: equal to a direct decode, reused, rebuilt when files change, never half-written."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from pskinlib.data.cache import prepare_images, resize_image
from pskinlib.data.ham10000 import load_ham10000
from pskinlib.errors import DataError


def test_cache_matches_a_direct_decode(tiny_ham, tmp_path):
    images = load_ham10000(tiny_ham)
    prepared = prepare_images(images, 32, cache_dir=tmp_path, progress=False, workers=2)
    assert prepared.pixels.shape == (len(images), 32, 32, 3) and prepared.pixels.dtype == np.uint8
    for i in (0, 5, len(images) - 1):
        np.testing.assert_array_equal(prepared.pixels[i], resize_image(images.table["path"][i], 32))
    rows = prepared.rows(images.table["image_id"][[3, 3, 1]])
    assert rows.tolist() == [3, 3, 1]


def test_second_call_reuses_the_cache_and_a_changed_file_rebuilds_it(tiny_ham, tmp_path):
    images = load_ham10000(tiny_ham)
    first = prepare_images(images, 24, cache_dir=tmp_path, progress=False, workers=1)
    stamp = first.path.stat().st_mtime_ns
    again = prepare_images(images, 24, cache_dir=tmp_path, progress=False)
    assert again.path == first.path and again.path.stat().st_mtime_ns == stamp
    changed = images.table["path"][0]
    os.utime(changed, ns=(stamp + 10**9, stamp + 10**9))
    rebuilt = prepare_images(load_ham10000(tiny_ham), 24, cache_dir=tmp_path, progress=False)
    assert rebuilt.path != first.path
    assert prepare_images(images, 28, cache_dir=tmp_path, progress=False).path not in (first.path, rebuilt.path)


def test_unreadable_images_are_listed_or_skipped(tiny_ham, tmp_path):
    images = load_ham10000(tiny_ham)
    broken, text = images.table["path"][0], images.table["path"][1]
    data = open(broken, "rb").read()
    open(broken, "wb").write(data[: len(data) // 3])  # a truncated JPEG
    open(text, "w").write("this is not a JPEG")
    with pytest.raises(DataError) as error:
        prepare_images(images, 16, cache_dir=tmp_path, progress=False, workers=1)
    assert os.path.basename(broken) in str(error.value) and os.path.basename(text) in str(error.value)
    with pytest.warns(UserWarning, match="unreadable"):
        prepared = prepare_images(images, 16, cache_dir=tmp_path, progress=False, skip_unreadable=True)
    assert set(prepared.unreadable) == set(images.table["image_id"][:2])
    assert len(images.without(prepared.unreadable)) == len(images) - 2


def test_a_failed_build_leaves_no_cache_file(tiny_ham, tmp_path, monkeypatch):
    import pskinlib.data.cache as cache

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache, "_fill_rows", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_images(load_ham10000(tiny_ham), 16, cache_dir=tmp_path / "cache", progress=False, workers=1)
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.parametrize("size", [0, 4, 5000, 32.5, "64"])
def test_impossible_sizes_are_rejected_before_any_work(tiny_ham, tmp_path, size):
    with pytest.raises(ValueError, match="size"):
        prepare_images(load_ham10000(tiny_ham), size, cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists()


def test_real_cache_matches_a_direct_decode(real_data_dir, tmp_path):
    images = load_ham10000(real_data_dir)
    prepared = prepare_images(images, 32, cache_dir=tmp_path, progress=False)
    assert len(prepared) == len(images) and not prepared.unreadable
    for i in np.random.default_rng(0).choice(len(images), 5, replace=False):
        np.testing.assert_array_equal(prepared.pixels[i], resize_image(images.table["path"][i], 32))


def test_shades_of_gray_makes_the_estimated_light_neutral_and_crop_keeps_the_aspect(tiny_ham, tmp_path):
    from pskinlib.data.cache import Preprocessing, shades_of_gray

    tinted = np.dstack([np.full((30, 40), v, np.uint8) for v in (200, 120, 90)])
    corrected = shades_of_gray(tinted, 6).astype(float)
    assert np.ptp(corrected.mean(axis=(0, 1))) < 2  # the colour cast is gone: the channels agree
    wide = tmp_path / "wide.png"
    stripes = np.zeros((40, 80, 3), np.uint8)
    stripes[:, :20] = 255  # white on the left quarter only
    Image.fromarray(stripes).save(wide)
    squashed = resize_image(str(wide), 16)
    cropped = resize_image(str(wide), 16, Preprocessing(resize="crop"))
    assert squashed[:, :2].mean() > 200 and cropped.mean() < 10  # the centre square never sees the white edge
    images = load_ham10000(tiny_ham)
    a = prepare_images(images, 16, cache_dir=tmp_path / "c", progress=False)
    b = prepare_images(images, 16, cache_dir=tmp_path / "c", progress=False, preprocessing=Preprocessing(
        colour_constancy=6))
    assert a.path != b.path and not np.array_equal(a.pixels, b.pixels)  # its own cache, other pixels
    with pytest.raises(ValueError, match="colour_constancy"):
        Preprocessing(colour_constancy=0)
