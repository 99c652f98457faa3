"""The data layer: folders, layouts, metadata checks, and every bad input's error."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import ham_rows, write_ham_folder
from PIL import Image

from pskinlib.data.ham10000 import (
    find_data_dir,
    image_decodes,
    load_ham10000,
    load_image,
    read_metadata,
    validate_classes,
)
from pskinlib.errors import DataError, ParameterError
from pskinlib.info import ALL_CLASSES, HAM10000, PAPER_CLASSES


@pytest.mark.parametrize("layout", ["images", "official", "isic2018"])
def test_each_layout_loads_the_same_table(tmp_path, layout):
    rows = ham_rows({"mel": 5, "nv": 8, "bkl": 5})
    images = load_ham10000(write_ham_folder(tmp_path / layout, rows, layout))
    assert images.layout == layout
    assert sorted(images.table["image_id"]) == sorted(rows["image_id"])
    merged = images.table.merge(rows, on="image_id", suffixes=("", "_expected"))
    assert (merged["dx"] == merged["dx_expected"]).all()
    assert (merged["lesion_id"] == merged["lesion_id_expected"]).all()
    assert all(p.endswith(f"{i}.jpg") for p, i in zip(images.table["path"], images.table["image_id"]))


def test_any_image_resolution_loads(tmp_path):
    root = write_ham_folder(tmp_path / "big", ham_rows({"mel": 2, "nv": 2, "bkl": 2}), size=(600, 450))
    images = load_ham10000(root)
    assert load_image(images.table["path"][0]).shape == (450, 600, 3)


def test_paper_classes_by_default_and_all_seven_as_option(tmp_path):
    root = write_ham_folder(tmp_path / "ham", ham_rows({"mel": 3, "nv": 3, "bkl": 3, "bcc": 3}))
    assert load_ham10000(root).classes == PAPER_CLASSES
    assert set(load_ham10000(root).table["dx"]) == {"mel", "nv", "bkl"}
    with pytest.raises(DataError, match="no images left for class"):
        load_ham10000(root, classes=ALL_CLASSES)
    assert set(load_ham10000(root, classes="mel,nv,bkl,bcc").table["dx"]) == {"mel", "nv", "bkl", "bcc"}


def test_labels_follow_the_order_of_classes(tiny_ham):
    images = load_ham10000(tiny_ham, classes=("nv", "mel", "bkl"))
    assert (images.labels == images.table["dx"].map({"nv": 0, "mel": 1, "bkl": 2}).to_numpy()).all()


def test_data_folder_comes_from_argument_then_environment(tiny_ham, tmp_path, monkeypatch):
    monkeypatch.setenv("PSKIN_DATA", str(tiny_ham))
    assert find_data_dir() == tiny_ham.resolve()
    assert find_data_dir(tmp_path) == tmp_path.resolve()
    monkeypatch.setenv("PSKIN_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="pskin data download"):
        find_data_dir()


def test_repr_tells_a_student_what_the_collection_holds(tiny_ham):
    text = repr(load_ham10000(tiny_ham))
    assert "images of" in text and "lesions" in text and "CC BY-NC 4.0" in text and "mel" in text


def _write_csv(tiny_ham, table: pd.DataFrame, **kwargs):
    table.to_csv(tiny_ham / "HAM10000_metadata.csv", index=False, **kwargs)


def test_metadata_with_bom_extra_columns_and_blank_ages_is_read(tiny_ham):
    table = pd.read_csv(tiny_ham / "HAM10000_metadata.csv")
    table["dataset"] = "vidir_modern"
    table.loc[0, "age"] = np.nan
    _write_csv(tiny_ham, table, encoding="utf-8-sig")
    images = load_ham10000(tiny_ham)
    assert "dataset" in images.table.columns
    assert images.table["age"].isna().sum() == 1


@pytest.mark.parametrize("mutation, message", [
    (lambda t: t.drop(columns="lesion_id"), "lacks the column"),
    (lambda t: t.assign(dx=t["dx"].where(t.index != 3, "xyz")), "unknown dx code"),
    (lambda t: pd.concat([t, t.iloc[[0]]]), "more than once"),
    (lambda t: t.assign(image_id=t["image_id"].where(t.index != 2, "")), "blank image_id"),
    (lambda t: t.assign(dx=t["dx"].where(t.index != 0, "nv" if t.loc[0, "dx"] != "nv" else "mel")),
     "more than one dx"),
])
def test_bad_metadata_gets_an_error_naming_the_file(tiny_ham, mutation, message):
    table = pd.read_csv(tiny_ham / "HAM10000_metadata.csv")
    # Give lesion 0 a second image so that changing one image's dx makes the lesion disagree with itself.
    table.loc[1, "lesion_id"] = table.loc[0, "lesion_id"]
    table.loc[1, "dx"] = table.loc[0, "dx"]
    _write_csv(tiny_ham, mutation(table))
    with pytest.raises(DataError, match=message) as error:
        read_metadata(tiny_ham / "HAM10000_metadata.csv")
    assert "HAM10000_metadata.csv" in str(error.value)


def test_missing_images_are_listed_or_skipped_with_a_warning(tiny_ham):
    table = pd.read_csv(tiny_ham / "HAM10000_metadata.csv")
    gone = table["image_id"][:2].tolist()
    for image_id in gone:
        (tiny_ham / "images" / f"{image_id}.jpg").unlink()
    with pytest.raises(DataError) as error:
        load_ham10000(tiny_ham)
    assert all(i in str(error.value) for i in gone) and "skip_missing" in str(error.value)
    with pytest.warns(UserWarning, match="left out"):
        images = load_ham10000(tiny_ham, skip_missing=True)
    assert len(images) == len(table) - 2 and set(images.skipped) == set(gone)


def test_folder_without_images_or_metadata_is_explained(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="none of the known image folders"):
        load_ham10000(tmp_path / "empty")
    (tmp_path / "empty" / "images").mkdir()
    with pytest.raises(DataError, match="no HAM10000_metadata.csv"):
        load_ham10000(tmp_path / "empty")


def test_rgba_grayscale_and_palette_pngs_decode_to_rgb(tmp_path):
    for mode in ("RGBA", "L", "P", "LA"):
        path = tmp_path / f"{mode}.png"
        Image.new(mode, (20, 10)).save(path)
        pixels = load_image(path)
        assert pixels.shape == (10, 20, 3) and pixels.dtype == np.uint8


def test_text_file_named_jpg_gives_an_error_naming_it(tmp_path):
    path = tmp_path / "ISIC_0000001.jpg"
    path.write_text("not an image")
    with pytest.raises(DataError, match="ISIC_0000001.jpg"):
        load_image(path)


def test_a_file_that_does_not_decode_is_told_apart_without_an_error(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(np.full((300, 400, 3), 120, dtype=np.uint8)).save(good, quality=90)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    text = tmp_path / "text.png"
    text.write_text("not an image")
    assert image_decodes(good) and not image_decodes(truncated) and not image_decodes(text)
    assert not image_decodes(tmp_path / "absent.jpg")


def _integer_checks(tiny_ham, tmp_path):
    """Integer parameters of the data layer, each with a value that is not an integer >= its minimum."""
    from pskinlib.data.cache import prepare_images
    from pskinlib.data.demo import make_demo_dataset
    from pskinlib.data.download import download_file
    from pskinlib.data.splits import make_split

    images = load_ham10000(tiny_ham)
    return {
        "seed": lambda: make_split(images, "grouped", seed=-1),
        "size": lambda: prepare_images(images, True, cache_dir=tmp_path),
        "images_per_lesion": lambda: make_demo_dataset(tmp_path / "demo", images_per_lesion=np.float64(2.0)),
        "chunk_size": lambda: download_file("http://127.0.0.1:9/x.zip", tmp_path / "x.zip", chunk_size=0),
        "counts['train']['mel']": lambda: make_split(images, "paper", counts={
            split: {"mel": 0 if split == "train" else 1, "nv": 1, "bkl": 1} for split in ("train", "val", "test")}),
    }


def test_integer_parameters_are_checked_by_the_one_check_with_one_message(tiny_ham, tmp_path):
    for name, call in _integer_checks(tiny_ham, tmp_path).items():
        with pytest.raises(ParameterError) as raised:
            call()
        assert str(raised.value).startswith(f"{name}: expected an integer >= "), str(raised.value)


@pytest.mark.parametrize("bad", [["mel"], ["mel", "mel"], ["mel", "cat"], "mel,dog"])
def test_bad_class_lists_are_rejected(bad):
    with pytest.raises(ValueError, match="classes"):
        validate_classes(bad)


def test_real_ham10000_has_the_documented_counts(real_data_dir):
    images = load_ham10000(real_data_dir, classes=ALL_CLASSES)
    assert len(images) == HAM10000["images"]
    assert images.table["lesion_id"].nunique() == HAM10000["lesions"]
    assert images.table["dx"].value_counts().to_dict() == HAM10000["images_per_class"]
    assert not images.synthetic
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        three = load_ham10000(real_data_dir)
    assert len(three) == 1113 + 6705 + 1099
