"""What a chapter opened in JupyterLab reads when its parameters keep their defaults: the newest book build's runs
and the data they were trained on; the user's variables first; the build itself never depends on an earlier one."""

from __future__ import annotations

import os

import pytest
from conftest import ham_rows, write_ham_folder

from book.chapter import resolve_book_data, resolve_book_runs
from pskinlib.train.config import make_config
from pskinlib.train.trainer import train


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A checkout after a book build: a run under runs/book/smoke/, trained on a data folder outside it."""
    monkeypatch.delenv("PSKIN_RUNS", raising=False)
    monkeypatch.delenv("PSKIN_DATA", raising=False)
    data = write_ham_folder(tmp_path / "ham", ham_rows({"mel": 8, "nv": 16, "bkl": 8}))
    root = tmp_path / "checkout"
    train(make_config("smoke", data_dir=str(data), image_size=16, epochs=1, batch_size=8, quiet=True, tta=False,
                      threads=1, max_train_batches=1), runs_dir=root / "runs" / "book" / "smoke")
    return root, data


def test_a_chapter_with_its_defaults_reads_the_newest_book_build_s_runs_and_data(checkout):
    root, data = checkout
    assert resolve_book_runs(None, root=root) == root / "runs" / "book" / "smoke"
    assert resolve_book_data(None, root=root) == data


def test_the_user_s_variables_and_arguments_come_before_the_book_build(checkout, tmp_path, monkeypatch):
    root, _ = checkout
    assert resolve_book_runs("elsewhere", root=root) == root / "elsewhere"  # relative to the checkout
    monkeypatch.setenv("PSKIN_RUNS", str(tmp_path / "mine"))
    assert resolve_book_runs(None, root=root) == tmp_path / "mine"
    other = write_ham_folder(tmp_path / "other", ham_rows({"mel": 8, "nv": 8, "bkl": 8}))
    monkeypatch.setenv("PSKIN_DATA", str(other))
    assert resolve_book_data(None, root=root) == other


def test_without_a_book_build_the_runs_are_pskin_train_s_and_the_build_never_reads_an_earlier_one(checkout,
                                                                                                    tmp_path):
    root, data = checkout
    bare = tmp_path / "bare"
    assert resolve_book_runs(None, root=bare) == bare / "runs"
    built_on = resolve_book_data(None, root=root, from_book_build=False)  # what `python -m book` does
    assert built_on != data and built_on == root / "data" / "demo"
    assert os.path.isfile(built_on / "HAM10000_metadata.csv")
