"""Reading and writing files so that nothing is ever half-written, and bad files get a clear error.

:func:`atomic_path` is the one way pskin writes a file: to a temporary name beside it, then renamed over it in one
step, so a process killed at any moment leaves the previous complete version (or nothing). The JSON, CSV and text
writers below, the image cache, the checkpoints and the data packs all go through it. :func:`read_csv` and
:func:`read_json` turn an empty, malformed or missing file into a :class:`~pskinlib.errors.DataError` naming it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import DataError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` when the block ends without an error, and
    removed when it fails. The folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the suffix last: numpy and torch look at it.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, write, *, binary: bool = True) -> Path:
    """Call ``write(handle)`` on a file opened at a temporary path, flush it to disk, then rename it to ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb" if binary else "w", encoding=None if binary else "utf-8") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, lambda f: f.write(text), binary=False)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def write_csv(path: str | os.PathLike, table: pd.DataFrame) -> Path:
    return write_text(path, table.to_csv(index=False))


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file's content; a missing or malformed file raises :class:`DataError` naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON file ({exc}).") from None


def read_csv(path, *, required: Sequence[str] = (), dtype: Any = str, what: str = "CSV file") -> pd.DataFrame:
    """A CSV file as a table of strings (``dtype``), header names stripped, a byte-order mark ignored.

    A missing, empty or malformed file, or one without the ``required`` columns, raises :class:`DataError` naming
    the file and what was expected. ``path`` may also be an open text stream (a CSV held in memory).
    """
    name = getattr(path, "name", None) or (path if isinstance(path, (str, os.PathLike)) else "the CSV text")
    try:
        table = pd.read_csv(path, dtype=dtype, encoding="utf-8-sig", keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"{name}: no such {what}.") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{name}: the {what} is empty; expected a header line with {list(required)}.") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        message = " ".join(str(exc).split())
        raise DataError(f"{name}: the {what} cannot be read as CSV ({message}).") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(f"{name}: the {what} lacks the column(s) {missing}; it has {list(table.columns)}.")
    return table
