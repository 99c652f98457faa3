"""What every chapter opens with: the data and the runs it reads, and a warning when the data is the synthetic demo set.

A chapter executed by the build gets both as parameters. Opened in JupyterLab with its defaults, it finds what the
newest book build of this checkout used: the runs under ``runs/book/<profile>`` and the data those runs were trained
on, so the notebook a reader opens after ``make book`` shows the build's results, not an error.
"""

from __future__ import annotations

import os
from pathlib import Path

from pskinlib.data.demo import is_synthetic, make_demo_dataset
from pskinlib.data.ham10000 import DATA_ENV, find_data_dir
from pskinlib.errors import DataError
from pskinlib.info import ALL_CLASSES, SYNTHETIC_WARNING
from pskinlib.runs import RUNS_ENV, RunRecord, default_runs_dir, find_runs

from . import ROOT


def newest_book_runs(root: str | os.PathLike | None = None) -> RunRecord | None:
    """The newest finished run of any book build in the checkout ``root`` (``runs/book/<profile>/``), or None."""
    finished = [run for folder in sorted((Path(root or ROOT) / "runs" / "book").glob("*"))
                for run in find_runs(folder)]
    return max(finished, key=lambda run: run.path.stat().st_mtime, default=None)


def resolve_book_runs(runs_dir: str | os.PathLike | None = None, *, root: str | os.PathLike | None = None) -> Path:
    """The runs a chapter reads: ``runs_dir`` (relative to the checkout) when given; else ``$PSKIN_RUNS``; else
    the runs folder of the newest book build (``runs/book/<profile>``); else ``runs/``, where ``pskin train``
    writes."""
    root = Path(root or ROOT)
    if runs_dir is None and not os.environ.get(RUNS_ENV):
        newest = newest_book_runs(root)
        if newest is not None:
            return newest.path.parent
    path = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    return path if path.is_absolute() else root / path


def resolve_book_data(data_dir: str | os.PathLike | None = None, *, root: str | os.PathLike | None = None,
                      from_book_build: bool = True) -> Path:
    """The real data when it can be found (argument, ``$PSKIN_DATA``, ``data/ham10000``, then, with
    ``from_book_build``, the data the newest book build's runs were trained on), else the demo set, generated once
    into the checkout's ``data/demo``. The build itself passes ``from_book_build=False``: what it builds on never
    depends on an earlier build."""
    try:
        return find_data_dir(data_dir)
    except DataError:
        if data_dir is not None:
            raise
    newest = newest_book_runs(root) if from_book_build and not os.environ.get(DATA_ENV) else None
    trained_on = newest.recorded["data"].get("root") if newest is not None else None
    if trained_on and Path(trained_on).is_dir():
        return Path(trained_on)
    demo = Path(root or ROOT) / "data" / "demo"
    if not is_synthetic(demo):
        # All seven classes, so the data chapter can show the whole dataset's structure too.
        make_demo_dataset(demo, classes=ALL_CLASSES, overwrite=True)
    return demo


def data_notice(data_dir: str | os.PathLike):
    """A warning box for the top of a chapter when its data is the synthetic demo set; None (nothing shown) for
    real data."""
    from IPython.display import Markdown

    if not is_synthetic(Path(data_dir)):
        return None
    return Markdown(f":::{{warning}}\n{SYNTHETIC_WARNING}\n:::\n")
