"""The book finds its reference results by what they are (book/results/references.yaml), never by a folder name
spelled in a chapter: a reference a chapter needs and the checkout lacks is a build error naming it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from book import BookBuildError, tables
from book.references import MANIFEST, reference_folder, references

REFERENCES = Path(__file__).resolve().parents[1] / "book" / "results"


def test_every_reference_the_book_needs_is_recorded_in_the_checkout():
    named = references(REFERENCES)
    assert {"quick", "transfer", "quality_bar", "paper_cpu"} <= set(named)
    for reference in named.values():
        assert reference.recorded or not reference.needed, reference.name
        assert reference.folder.resolve().is_relative_to(REFERENCES.resolve())


def test_a_renamed_reference_folder_breaks_the_build_with_a_message_naming_it(tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(REFERENCES, copy)
    assert len(tables.book_runs(tmp_path / "no-runs", copy)["reference transfer"])
    (copy / "transfer").rename(copy / "transfer-renamed")
    with pytest.raises(BookBuildError, match="'transfer'.*remake it \\(python -m experiments.transfer\\)"):
        tables.book_runs(tmp_path / "no-runs", copy)
    with pytest.raises(BookBuildError, match="'transfer'"):
        tables.split_seed_runs(reference_folder("transfer", copy))


def test_a_reference_the_book_can_do_without_is_shown_as_not_recorded_and_an_unknown_name_is_an_error(tmp_path):
    (tmp_path / MANIFEST).write_text("gpu: {folder: gpu, made_by: bash experiments/gpu_run.sh, needed: false}\n")
    assert reference_folder("gpu", tmp_path) == tmp_path / "gpu"
    assert tables.gpu_run_table(reference_folder("gpu", tmp_path)).empty
    with pytest.raises(BookBuildError, match="no reference experiment 'quick'.*it names gpu"):
        reference_folder("quick", tmp_path)
    with pytest.raises(BookBuildError, match="is missing"):
        references(tmp_path / "nowhere")
