"""The errors pskin raises for things a user can fix: one base class, a few kinds.

Every failure a user can cause or repair — bad data, a bad parameter, a failed or unverifiable download, missing
pretrained weights, a loss that turned NaN, a damaged checkpoint, an image that is huge or not an image, an empty or
malformed CSV, an output folder that cannot be made, a file that cannot be written (a full disk, a read-only
folder) — raises a :class:`PskinError` whose message names the file, parameter or value at fault and what to do.
The command line catches ``PskinError`` once and prints ``pskin: error: <message>`` (exit code 2); anything else is
a bug and keeps its traceback. ``PSKIN_DEBUG=1`` shows the traceback of a ``PskinError`` too.

``ParameterError`` and ``DataError`` are also ``ValueError``\\ s, so code written against plain ``ValueError`` still
catches them.
"""

from __future__ import annotations

import numbers


class PskinError(Exception):
    """A failure the user can act on; the message says what, where, and what to do."""


class ParameterError(PskinError, ValueError):
    """A parameter has a value pskin cannot use (named in the message with what was expected)."""


class DataError(PskinError, ValueError):
    """Data on disk is not what pskin can use: a folder, CSV or image (named in the message)."""


class OutputExistsError(PskinError, FileExistsError):
    """pskin would overwrite something it must not (an earlier result, a folder of real data)."""


class OutputFolderError(PskinError, OSError):
    """A folder pskin must write into cannot be made: a file is in the way, or the permission is missing."""


class WriteError(PskinError, OSError):
    """A file cannot be written: the disk is full, the folder read-only, or the permission is missing."""


class DownloadError(PskinError):
    """A download failed, or what arrived could not be verified."""


class UnsafeArchiveError(DownloadError):
    """An archive entry would be written outside its target folder (or is a link or device file)."""


class WeightsError(PskinError):
    """Pretrained weights were asked for but can be neither found nor downloaded."""


class TrainingError(PskinError):
    """Training cannot go on (for example, the loss became NaN)."""


class CheckpointError(PskinError):
    """A checkpoint file is missing, damaged, or not a pskin checkpoint."""


def check_int(name: str, value, minimum: int, types: type | tuple[type, ...] = numbers.Integral) -> int:
    """``value`` as an ``int`` when it is an integer of ``types`` (numpy's too; never a bool) of at least ``minimum``;
    else a :class:`ParameterError` naming ``name``: the one check of the integer parameters checked up front."""
    if isinstance(value, bool) or not isinstance(value, types) or value < minimum:
        raise ParameterError(f"{name}: expected an integer >= {minimum}, got {value!r}.")
    return int(value)
