"""The synthetic demo set: deterministic, HAM10000-shaped, safe to write, and with learnable class cues."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pskinlib.data.demo import ham10000_fractions, is_synthetic, make_demo_dataset, render_lesion
from pskinlib.info import ALL_CLASSES, HAM10000, PAPER_CLASSES, SYNTHETIC_MARKER, SYNTHETIC_WARNING

# Small images keep the tests that only check bookkeeping fast.
SMALL = {"height": 48, "width": 64}
EQUAL_THIRDS = {"mel": 1 / 3, "nv": 1 / 3, "bkl": 1 / 3}


def read_metadata(root: Path) -> list[dict]:
    with open(root / HAM10000["metadata_file"], newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A small demo set at the default image size, three classes, HAM10000's imbalance."""
    return make_demo_dataset(tmp_path_factory.mktemp("syn") / "demo", n_lesions=60, seed=3)


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = make_demo_dataset(tmp_path / "a", n_lesions=12, seed=5, **SMALL)
    b = make_demo_dataset(tmp_path / "b", n_lesions=12, seed=5, workers=1, **SMALL)
    files = folder_bytes(a)
    assert files == folder_bytes(b)
    assert any(name.startswith("images") for name in files)


def test_different_seed_gives_different_files(tmp_path):
    a = folder_bytes(make_demo_dataset(tmp_path / "a", n_lesions=12, seed=5, **SMALL))
    b = folder_bytes(make_demo_dataset(tmp_path / "b", n_lesions=12, seed=6, **SMALL))
    images_a = [v for k, v in a.items() if k.startswith("images")]
    images_b = [v for k, v in b.items() if k.startswith("images")]
    assert a[HAM10000["metadata_file"]] != b[HAM10000["metadata_file"]]
    assert not set(images_a) & set(images_b)


def test_metadata_has_exactly_the_ham10000_columns(demo):
    with open(demo / HAM10000["metadata_file"], encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    assert tuple(header) == HAM10000["metadata_columns"]


def test_metadata_values_look_like_ham10000(demo):
    rows = read_metadata(demo)
    assert len({r["image_id"] for r in rows}) == len(rows)
    assert all(r["image_id"].startswith("SYN_") and r["lesion_id"].startswith("SYNL_") for r in rows)
    assert {r["dx"] for r in rows} == set(PAPER_CLASSES)
    assert {r["dx_type"] for r in rows} <= {"histo", "follow_up", "consensus", "confocal"}
    assert {r["sex"] for r in rows} <= {"male", "female", "unknown"}
    assert all(r["localization"] for r in rows)
    ages = [float(r["age"]) for r in rows if r["age"]]
    assert ages and all(5 <= a <= 85 and a % 5 == 0 for a in ages)


def test_one_diagnosis_per_lesion_and_some_lesions_with_several_images(demo):
    by_lesion: dict[str, list[dict]] = {}
    for r in read_metadata(demo):
        by_lesion.setdefault(r["lesion_id"], []).append(r)
    assert len(by_lesion) == 60
    for images in by_lesion.values():
        # dx and the patient fields belong to the lesion, so all its images agree.
        assert len({(r["dx"], r["dx_type"], r["age"], r["sex"], r["localization"]) for r in images}) == 1
    sizes = [len(images) for images in by_lesion.values()]
    assert max(sizes) > 1 and min(sizes) == 1 and max(sizes) <= 3


def test_every_image_exists_and_decodes_at_200x150_rgb(demo):
    rows = read_metadata(demo)
    assert {p.name for p in (demo / "images").iterdir()} == {f"{r['image_id']}.jpg" for r in rows}
    for r in rows:
        with Image.open(demo / "images" / f"{r['image_id']}.jpg") as img:
            img.load()
            assert img.format == "JPEG" and img.mode == "RGB" and img.size == (200, 150)


def test_images_of_one_lesion_are_different_views_of_the_same_lesion(demo):
    rows = read_metadata(demo)
    by_lesion: dict[str, list[str]] = {}
    for r in rows:
        by_lesion.setdefault(r["lesion_id"], []).append(r["image_id"])

    def pixels(image_id):
        return np.asarray(Image.open(demo / "images" / f"{image_id}.jpg"), np.float32)

    same, other = [], []
    groups = [ids for ids in by_lesion.values() if len(ids) > 1]
    for ids, next_ids in zip(groups, groups[1:] + groups[:1]):
        a, b = pixels(ids[0]), pixels(ids[1])
        assert not np.array_equal(a, b)
        same.append(np.abs(a - b).mean())
        other.append(np.abs(a - pixels(next_ids[0])).mean())
    assert np.median(same) < np.median(other)


def test_class_counts_follow_the_fractions(tmp_path):
    fractions = {"mel": 0.2, "nv": 0.5, "bkl": 0.3}
    root = make_demo_dataset(
        tmp_path / "d", n_lesions=100, class_fractions=fractions, images_per_lesion=1, **SMALL
    )
    rows = read_metadata(root)
    assert len(rows) == 100  # one image per lesion
    counts = {c: sum(r["dx"] == c for r in rows) for c in fractions}
    assert counts == {"mel": 20, "nv": 50, "bkl": 30}


def test_default_fractions_follow_ham10000_imbalance(demo):
    lesions = {(r["lesion_id"], r["dx"]) for r in read_metadata(demo)}
    expected = ham10000_fractions(PAPER_CLASSES)
    assert expected["nv"] == pytest.approx(0.75, abs=0.01)
    for c in PAPER_CLASSES:
        assert sum(dx == c for _, dx in lesions) == pytest.approx(60 * expected[c], abs=1)


def test_all_seven_classes(tmp_path):
    root = make_demo_dataset(tmp_path / "d", n_lesions=28, classes=ALL_CLASSES, **SMALL)
    counts = {c: len({r["lesion_id"] for r in read_metadata(root) if r["dx"] == c}) for c in ALL_CLASSES}
    assert sum(counts.values()) == 28 and min(counts.values()) >= 2  # every class at least twice


@pytest.mark.parametrize("dx", ALL_CLASSES)
def test_render_lesion_is_an_rgb_uint8_image_fixed_by_the_generator(dx):
    image = render_lesion(dx, np.random.default_rng(1))
    assert image.dtype == np.uint8 and image.shape == (150, 200, 3)
    assert np.array_equal(image, render_lesion(dx, np.random.default_rng(1)))
    assert not np.array_equal(image, render_lesion(dx, np.random.default_rng(2)))
    assert render_lesion(dx, np.random.default_rng(1), height=60, width=90).shape == (60, 90, 3)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"n_lesions": 5}, "n_lesions"),
        ({"n_lesions": 10.0}, "n_lesions"),
        ({"classes": ("mel", "melanoma")}, "classes"),
        ({"classes": ()}, "classes"),
        ({"classes": "mel"}, "classes"),
        ({"classes": ("mel", "mel")}, "classes"),
        ({"class_fractions": {"mel": 0.5, "nv": 0.5}}, "class_fractions"),
        ({"class_fractions": {"mel": 0.3, "nv": 0.3, "bkl": 0.3}}, "class_fractions"),
        ({"class_fractions": {"mel": -0.1, "nv": 0.6, "bkl": 0.5}}, "class_fractions"),
        ({"class_fractions": {"mel": 0.0, "nv": 0.5, "bkl": 0.5}}, "class_fractions"),
        ({"images_per_lesion": 0}, "images_per_lesion"),
        ({"images_per_lesion": 4}, "images_per_lesion"),
        ({"images_per_lesion": 2.0}, "images_per_lesion"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"height": 10}, "height"),
        ({"width": "200"}, "width"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_parameters_raise_value_error_naming_the_parameter(tmp_path, kwargs, parameter):
    with pytest.raises(ValueError, match=parameter):
        make_demo_dataset(tmp_path / "d", **kwargs)
    assert list(tmp_path.iterdir()) == []  # checked before anything is written


def test_render_lesion_rejects_bad_arguments():
    with pytest.raises(ValueError, match="dx"):
        render_lesion("MEL", np.random.default_rng(0))
    with pytest.raises(ValueError, match="height"):
        render_lesion("nv", np.random.default_rng(0), height=8)
    with pytest.raises(TypeError, match="rng"):
        render_lesion("nv", 0)


def test_is_synthetic_true_for_the_demo_and_false_for_an_empty_folder(demo, tmp_path):
    assert is_synthetic(demo)
    assert not is_synthetic(tmp_path)
    assert not is_synthetic(tmp_path / "missing")


def test_marker_holds_the_warning_and_the_parameters(demo):
    text = (demo / SYNTHETIC_MARKER).read_text(encoding="utf-8")
    assert text.startswith(SYNTHETIC_WARNING)
    params = json.loads(text[text.index("{") :])
    assert params["seed"] == 3 and params["n_lesions"] == 60
    assert params["n_images"] == len(read_metadata(demo))
    assert sum(params["lesions_per_class"].values()) == 60


def test_existing_data_is_never_overwritten(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "HAM10000_metadata.csv").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="real"):
            make_demo_dataset(real, n_lesions=6, overwrite=overwrite, **SMALL)
    assert (real / "HAM10000_metadata.csv").read_text() == "keep me"


def test_overwrite_replaces_a_synthetic_set(tmp_path):
    root = make_demo_dataset(tmp_path / "d", n_lesions=6, seed=1, **SMALL)
    with pytest.raises(FileExistsError):
        make_demo_dataset(root, n_lesions=6, seed=2, **SMALL)
    make_demo_dataset(root, n_lesions=9, seed=2, overwrite=True, **SMALL)
    assert len({r["lesion_id"] for r in read_metadata(root)}) == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_an_empty_target_folder_is_used(tmp_path):
    (tmp_path / "d").mkdir()
    assert is_synthetic(make_demo_dataset(tmp_path / "d", n_lesions=6, **SMALL))


def test_a_failed_run_leaves_no_half_written_folder(tmp_path, monkeypatch):
    from pskinlib.data import demo as synthetic

    calls = []

    def fail_on_fourth(*args):
        calls.append(args)
        if len(calls) == 4:
            raise RuntimeError("disk full")
        return original(*args)

    original = synthetic._write_lesion_images
    monkeypatch.setattr(synthetic, "_write_lesion_images", fail_on_fourth)
    with pytest.raises(RuntimeError, match="disk full"):
        make_demo_dataset(tmp_path / "d", n_lesions=8, workers=1, **SMALL)
    assert list(tmp_path.iterdir()) == []


def colour_features(path: Path) -> np.ndarray:
    """Mean and spread of each colour in the image centre, and how much of it is dark."""
    a = np.asarray(Image.open(path), np.float32)[40:110, 50:150] / 255
    pixels, lum = a.reshape(-1, 3), a.mean(2)
    return np.concatenate([pixels.mean(0), pixels.std(0), [(lum < 0.3).mean(), (lum < 0.45).mean()]])


def test_class_cues_are_learnable_from_simple_colour_features(tmp_path):
    root = make_demo_dataset(
        tmp_path / "d", n_lesions=120, class_fractions=EQUAL_THIRDS, images_per_lesion=1, seed=0
    )
    rows = read_metadata(root)
    x = np.stack([colour_features(root / "images" / f"{r['image_id']}.jpg") for r in rows])
    y = np.array([r["dx"] for r in rows])
    train = np.arange(len(rows)) % 2 == 0  # one image per lesion, so held-out images are held-out lesions
    z = (x - x[train].mean(0)) / (x[train].std(0) + 1e-6)
    centroids = np.stack([z[train & (y == c)].mean(0) for c in PAPER_CLASSES])
    predicted = np.array(PAPER_CLASSES)[np.argmin(((z[:, None] - centroids[None]) ** 2).sum(-1), axis=1)]
    accuracy = (predicted[~train] == y[~train]).mean()
    assert accuracy > 0.5  # chance is 1/3; a nearest-centroid rule on 8 colour numbers is far from a CNN
