"""The book: the code its chapters call, beside the chapters it renders.

pskinlib is the library a researcher imports; this package is what makes the library's book out of it, the way
torchvision keeps its reference scripts beside the package. It imports pskinlib, and pskinlib never imports it
(``tests/test_layering.py`` checks both).

- :mod:`book.runs`: the runs a build needs, planned from its profile (``book/profiles.yaml``), produced in one stage
  (trained, fused with the patient's metadata, evaluated on other collections), and looked up by the chapters.
- :mod:`book.tables`, :mod:`book.dataset`, :mod:`book.outside`: the tables the chapters show, read from
  run records only (a table never trains).
- :mod:`book.findings`: the sentences of "What we found", computed from the records.
- :mod:`book.figures`, :mod:`book.format`: how figures and tables are laid out on the page.
- :mod:`book.build`: papermill executes the notebooks, Jupyter Book 1.x renders them (``python -m book``).

Paths a chapter is given relative (``runs/book``, ``book/results``) are read from the checkout's root, wherever
the chapter's kernel runs: papermill starts it there, JupyterLab in ``notebooks/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pskinlib.errors import PskinError

ROOT = Path(__file__).resolve().parent.parent  # the checkout this book belongs to


class BookBuildError(PskinError):
    """A chapter of the book failed, or a chapter needs a run the build has not produced; the message says which."""


def in_checkout(path: str | os.PathLike | None) -> Path | None:
    """``path`` as the chapters mean it: relative paths from the checkout's root."""
    if path is None:
        return None
    path = Path(path)
    return path if path.is_absolute() else ROOT / path
