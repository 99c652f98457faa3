"""What every chapter opens with: the data it was built on, and a warning when that is the synthetic demo set."""

from __future__ import annotations

import os
from pathlib import Path

from pskinlib.data.demo import is_synthetic, make_demo_dataset
from pskinlib.data.ham10000 import find_data_dir
from pskinlib.errors import DataError
from pskinlib.info import ALL_CLASSES, SYNTHETIC_WARNING

from . import ROOT


def resolve_book_data(data_dir: str | os.PathLike | None = None, *, root: str | os.PathLike | None = None) -> Path:
    """The real data when it can be found (argument, ``$PSKIN_DATA``, ``data/ham10000``), else the demo set,
    generated once into the checkout's ``data/demo``."""
    try:
        return find_data_dir(data_dir)
    except DataError:
        if data_dir is not None:
            raise
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
