"""Reading and writing files so that nothing is ever half-written, and bad files get a clear error.

:func:`atomic_path` is the one way pskin writes a file: to a temporary name beside it, then renamed over it in one
step, so a process killed at any moment leaves the previous complete version (or nothing). The JSON, CSV and text
writers below, the image cache, the checkpoints and the data packs all go through it; a write the disk refuses (full,
read-only, no permission) is a :class:`~pskinlib.errors.WriteError` naming the folder and the cause, and leaves no
half-written file. :func:`make_folder` is the one
way pskin makes an output folder: a path it cannot make one at (under a file, without permission) is an
:class:`~pskinlib.errors.OutputFolderError` naming the folder and what to do. :func:`read_csv` and :func:`read_json`
turn an empty, malformed or missing file into a :class:`~pskinlib.errors.DataError` naming it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import DataError, OutputExistsError, OutputFolderError, PskinError, WriteError


def make_folder(path: str | os.PathLike, what: str) -> Path:
    """The folder ``path``, made with its parents if it does not exist. ``what`` names it for the user (a parameter
    such as ``out_dir``, or what goes there); a folder that cannot be made there (a file in the way, no permission,
    a read-only disk) is an :class:`OutputFolderError` saying so, instead of a traceback."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputFolderError(f"{what}: {path} exists and is not a folder; choose another path, or move that file "
                                "away.") from None
    except NotADirectoryError:
        in_the_way = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        where = f"{in_the_way} is a file, not a folder" if in_the_way else "a part of the path is not a folder"
        raise OutputFolderError(f"{what}: cannot make the folder {path}: {where}; choose a path that is not under a "
                                "file.") from None
    except PermissionError:
        raise OutputFolderError(f"{what}: no permission to make the folder {path}; choose a folder you may write "
                                "to.") from None
    except OSError as exc:
        raise OutputFolderError(f"{what}: cannot make the folder {path} ({exc.strerror or exc}); choose another "
                                "folder.") from None
    if not os.access(path, os.W_OK | os.X_OK):  # an existing folder may still refuse new files
        why = "is on a read-only file system" if _read_only(path) else "refuses new files (no permission)"
        raise OutputFolderError(f"{what}: the folder {path} {why}; choose a folder you may write to.")
    return path


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows), or the folder is gone
        return False


# Why a write failed, by the OSError's errno, and what the user can do about it.
_WRITE_FAILURES = {
    errno.ENOSPC: ("no space left on device", "free some space there, or write to another disk"),
    errno.EDQUOT: ("disk quota exceeded", "free some space there, or write to another disk"),
    errno.EFBIG: ("the file is too large for that file system", "write to another disk"),
    errno.EROFS: ("read-only file system", "choose a folder you may write to"),
    errno.EACCES: ("permission denied", "choose a folder you may write to"),
    errno.EPERM: ("operation not permitted", "choose a folder you may write to"),
    errno.EIO: ("input/output error (a failing disk or a lost network drive)", "check the disk, or write elsewhere"),
}
LOW_SPACE_BYTES = 16 * 2**20  # a writer that fails with less free than this ran out of space


def _write_failure(folder: Path, exc: BaseException) -> tuple[str, str]:
    """(cause, what to do) of a failed write in ``folder``: from the OSError's errno, else (a writer that reports in
    its own words, such as torch's RuntimeError) from the state of the disk while the partial file is still there."""
    code = getattr(exc, "errno", None)
    if code in _WRITE_FAILURES:
        return _WRITE_FAILURES[code]
    if _read_only(folder):
        return _WRITE_FAILURES[errno.EROFS]
    if not os.access(folder, os.W_OK):
        return _WRITE_FAILURES[errno.EACCES]
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if free is not None and free < LOW_SPACE_BYTES:
        return (f"no space left on device ({free / 2**20:.1f} MiB free)", _WRITE_FAILURES[errno.ENOSPC][1])
    message = getattr(exc, "strerror", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return message, "check the disk, or write elsewhere"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` when the block ends without an error, and
    removed when it fails. The folder is created if needed (:func:`make_folder`)."""
    path = Path(path)
    if path.is_dir():
        raise OutputExistsError(f"{path} is a folder, and pskin writes a file there; give a file's path instead.")
    make_folder(path.parent, f"writing {path}")
    # Keep the suffix last: numpy and torch look at it.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, write, *, binary: bool = True,
                       writer_errors: tuple[type[Exception], ...] = ()) -> Path:
    """Call ``write(handle)`` on a file opened at a temporary path, flush it to disk, then rename it to ``path``.

    A write that fails (an ``OSError``, or one of ``writer_errors``: what ``write`` raises when the disk refuses in
    its own words, such as torch's ``RuntimeError``) is a :class:`~pskinlib.errors.WriteError` naming the folder and
    the cause (no space left, read-only, no permission); the partial file is removed and ``path`` keeps its previous
    version, if any."""
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb" if binary else "w", encoding=None if binary else "utf-8") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
        except PskinError:
            raise
        except (OSError, *writer_errors) as exc:
            cause, advice = _write_failure(path.parent, exc)  # while the partial file still takes its space
            kept = " (its previous version is kept)" if path.exists() else ""
            raise WriteError(f"cannot write {path.name} in the folder {path.parent}: {cause}. Nothing was left "
                             f"half-written{kept}; {advice}.") from exc
    return path


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
