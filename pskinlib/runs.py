"""Run records: one folder per training run, written so that nothing is ever half-written or overwritten.

A run folder holds ``config.json`` (every parameter, the data source, the split's hash, library versions, the
device), ``split.csv``, ``history.csv``, ``best.pt`` and ``last.pt`` checkpoints, and after training
``metrics.json`` and ``predictions_{val,test}.csv``. Files are written to a temporary name and renamed, so a run
killed at any moment leaves the previous complete version. Checkpoints hold only tensors and plain values, so they
load with ``torch.load(weights_only=True)``: a crafted checkpoint cannot run code.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch

RUNS_ENV = "PSKIN_RUNS"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, damaged, or not a pskin checkpoint."""


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_ENV) or "runs")


def new_run_dir(root: str | os.PathLike, name: str) -> Path:
    """Create a fresh run folder ``root/<date-time>-<name>[-N]``; never reuses an existing one.

    ``mkdir`` without ``exist_ok`` is atomic: two runs started at the same moment get different folders.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}"
    for n in range(1000):
        path = root / (base if n == 0 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"Could not create a new run folder under {root}.")


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def predictions_table(image_ids, labels, probs, classes, lesion_ids=None) -> pd.DataFrame:
    """The predictions file's rows: ``image_id`` (``lesion_id``), ``true``, ``predicted`` and ``p_<class>`` per
    class, from integer ``labels`` and probabilities ``(N, K)``; the format runs, fusions and evaluations share."""
    table = pd.DataFrame({"image_id": list(image_ids)})
    if lesion_ids is not None:
        table["lesion_id"] = list(lesion_ids)
    table["true"] = [classes[i] for i in labels]
    table["predicted"] = [classes[i] for i in probs.argmax(1)]
    for i, code in enumerate(classes):
        table[f"p_{code}"] = probs[:, i]
    return table


def write_csv(path: Path, table: pd.DataFrame) -> None:
    atomic_write_text(path, table.to_csv(index=False))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically: a crash mid-write leaves the previous file intact."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a damaged or foreign file raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path} was refused: it holds objects other than tensors and plain values, "
                              f"which could run code when loaded ({str(exc).splitlines()[0]}).") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is damaged or not a PyTorch checkpoint ({exc}). Delete it and resume "
                              "from another checkpoint, or start the run again.") from exc
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a pskin checkpoint (no 'model' entry).")
    return state


def find_runs(root: str | os.PathLike) -> list[Path]:
    """Finished run folders (those with ``metrics.json``) under ``root``, oldest first."""
    root = Path(root)
    return sorted(p.parent for p in root.glob("*/metrics.json")) if root.is_dir() else []


RECORD_FILES = ("config.json", "split.csv", "history.csv", "metrics.json", "predictions_val.csv",
                "predictions_test.csv")


def copy_record(run_dir: str | os.PathLike, target: str | os.PathLike) -> None:
    """Copy a run's record files and its ``fusion-*`` folders, without checkpoints, into the existing folder
    ``target``."""
    import shutil

    run_dir, target = Path(run_dir), Path(target)
    for name in RECORD_FILES:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, target / name)
    for fusion in sorted(run_dir.glob("fusion-*")):  # fitted heads and their predictions: records, not weights
        if fusion.is_dir():
            shutil.copytree(fusion, target / fusion.name)


def export_run(run_dir: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Copy a run's record (with its ``fusion-*`` folders, without checkpoints) into ``destination/<run name>``
    (e.g. ``book/results/quick``): the book's reference results are run records, never weights or images."""
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.json").is_file():
        raise ValueError(f"run_dir: {run_dir} is not a finished run (no metrics.json).")
    target = Path(destination) / run_dir.name
    target.mkdir(parents=True, exist_ok=False)
    copy_record(run_dir, target)
    return target
