"""The reference experiments the book reads, found by what they are.

``book/results/references.yaml`` names each reference experiment (the quick book's runs, the quality bars, the
pretrained track, the study's runs on a CPU, ...) with the folder that holds its records and the command that makes
them. Chapters and tables ask for a reference by its name (:func:`reference_folder`); only this module knows the
folders. A reference a chapter needs whose folder holds no record is a build error naming it, the folder and the
command, so a renamed or missing folder is never a silent gap in a table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import BookBuildError, in_checkout

MANIFEST = "references.yaml"


@dataclass(frozen=True)
class Reference:
    """One reference experiment: its ``name``, its ``folder``, the command that makes it (``made_by``), whether a
    chapter needs it, and whether its runs stand in the results chapter's table of every run (``every_run``)."""

    name: str
    folder: Path
    made_by: str
    needed: bool
    every_run: bool = False

    @property
    def recorded(self) -> bool:
        """Whether the folder holds a record: a finished run or an experiment's summary, at any depth."""
        return self.folder.is_dir() and any(self.folder.rglob("*.json"))


def references(reference_dir: str | os.PathLike) -> dict[str, Reference]:
    """Every reference experiment the manifest in ``reference_dir`` names, by name."""
    root = in_checkout(reference_dir)
    path = root / MANIFEST
    if not path.is_file():
        raise BookBuildError(f"{path} is missing: it names the reference experiments the book reads.")
    entries = yaml.safe_load(path.read_text()) or {}
    return {name: Reference(name, root / entry["folder"], entry["made_by"], bool(entry["needed"]),
                            bool(entry.get("every_run", False))) for name, entry in entries.items()}


def reference_folder(name: str, reference_dir: str | os.PathLike) -> Path:
    """The folder of the reference experiment ``name``. A reference a chapter needs that holds no record is an
    error naming it; one it does not need is returned as it is, and the chapter says it is not recorded."""
    known = references(reference_dir)
    if name not in known:
        raise BookBuildError(f"no reference experiment {name!r} in {in_checkout(reference_dir) / MANIFEST}; it names "
                             f"{', '.join(sorted(known))}.")
    reference = known[name]
    if reference.needed and not reference.recorded:
        raise BookBuildError(f"the reference experiment {name!r} has no record in {reference.folder}: restore the "
                             f"folder {MANIFEST} names, correct the folder there, or remake it ({reference.made_by}).")
    return reference.folder
