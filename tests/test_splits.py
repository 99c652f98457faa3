"""Split protocols: no lesion in two splits, the paper's Table 1 met with repeats only where unavoidable."""

from __future__ import annotations

import pytest
from conftest import ham_rows, write_ham_folder

from pskinlib.data.ham10000 import load_ham10000
from pskinlib.data.splits import (
    check_no_leakage,
    make_split,
    read_split,
    split_hash,
    split_summary,
    write_split,
)
from pskinlib.info import PAPER_TABLE1, SPLITS


@pytest.fixture
def small(tmp_path):
    return load_ham10000(write_ham_folder(tmp_path / "ham", ham_rows({"mel": 30, "nv": 90, "bkl": 30}, 3)))


def _lesions_per_split(split):
    return {name: set(split.loc[split["split"] == name, "lesion_id"]) for name in SPLITS}


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_grouped_split_puts_each_lesion_in_one_split(small, seed):
    split = make_split(small, "grouped", seed=seed)
    lesions = _lesions_per_split(split)
    assert not (lesions["train"] & lesions["val"] or lesions["train"] & lesions["test"]
                or lesions["val"] & lesions["test"])
    assert sorted(split["image_id"]) == sorted(small.table["image_id"])  # every image once


def test_grouped_split_follows_the_fractions_per_class(small):
    split = make_split(small, "grouped", seed=3, fractions=(0.6, 0.2, 0.2))
    counts = split.groupby(["dx", "split"]).size()
    for dx in small.classes:
        total = counts[dx].sum()
        assert abs(counts[dx]["train"] / total - 0.6) < 0.12
        assert counts[dx]["val"] > 0 and counts[dx]["test"] > 0


def test_splits_are_reproducible_from_the_seed(small):
    assert split_hash(make_split(small, seed=5)) == split_hash(make_split(small, seed=5))
    assert split_hash(make_split(small, seed=5)) != split_hash(make_split(small, seed=6))


@pytest.mark.parametrize("fractions", [(0.7, 0.2, 0.2), (0.5, 0.5), (1.0, 0.0, 0.0), (0.8, -0.1, 0.3)])
def test_bad_fractions_are_rejected(small, fractions):
    with pytest.raises(ValueError, match="fractions"):
        make_split(small, "grouped", fractions=fractions)


def test_unknown_protocol_is_rejected(small):
    with pytest.raises(ValueError, match="protocol"):
        make_split(small, "random")


def test_paper_protocol_on_small_data_repeats_within_pools_never_in_test(small):
    counts = {"train": {"mel": 60, "nv": 80, "bkl": 60}, "val": {"mel": 18, "nv": 24, "bkl": 18},
              "test": {"mel": 5, "nv": 6, "bkl": 5}}
    split = make_split(small, "paper", seed=2, counts=counts)
    summary = split_summary(split, small.classes)
    for name in SPLITS:
        for dx in small.classes:
            assert summary.loc[(name, dx), "images"] == counts[name][dx]
    assert summary.loc["test", "repeats"].sum() == 0
    check_no_leakage(split)


def test_paper_protocol_needs_the_papers_classes(tmp_path):
    images = load_ham10000(write_ham_folder(tmp_path / "h", ham_rows({"mel": 5, "nv": 5, "bcc": 5})),
                           classes=("mel", "nv", "bcc"))
    with pytest.raises(ValueError, match="only the paper's classes"):
        make_split(images, "paper")


def test_split_csv_round_trips_and_refuses_leaks(small, tmp_path):
    split = make_split(small, seed=1)
    path = write_split(split, tmp_path / "split.csv")
    assert split_hash(read_split(path)) == split_hash(split)
    leaked = split.copy()
    leaked.loc[leaked.index[0], "split"] = "test" if leaked.loc[leaked.index[0], "split"] != "test" else "train"
    # Move a single image of a multi-image lesion: its lesion now sits in two splits.
    write_split(leaked, tmp_path / "leaked.csv")
    if leaked.groupby("lesion_id")["split"].nunique().max() > 1:
        with pytest.raises(ValueError, match="more than one split"):
            read_split(tmp_path / "leaked.csv")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_real_paper_split_meets_table_1_without_leaks_or_test_repeats(real_data_dir, seed):
    images = load_ham10000(real_data_dir)
    split = make_split(images, "paper", seed=seed)
    check_no_leakage(split)
    summary = split_summary(split, images.classes)
    for name in SPLITS:
        for dx in images.classes:
            assert summary.loc[(name, dx), "images"] == PAPER_TABLE1[name][dx]
    assert summary.loc["test", "repeats"].sum() == 0
    # HAM10000 has only 1,113 mel and 1,099 bkl images: train + val need 2,340 of each, so repeats must appear.
    assert summary.loc[("train", "mel"), "repeats"] > 0 and summary.loc[("train", "nv"), "repeats"] == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_real_grouped_split_has_no_leaks(real_data_dir, seed):
    images = load_ham10000(real_data_dir)
    split = make_split(images, "grouped", seed=seed)
    check_no_leakage(split)
    assert len(split) == len(images)
