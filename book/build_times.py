"""Where a build's time went: each step of ``make book`` with its seconds, kept in ``<build>/times.json`` and laid
out as one table, which the build prints when it ends and the Performance appendix shows.

A step is a dict: ``stage`` (``runs``, ``appearance``, ``chapters`` or ``rendering``), ``step`` (what was done:
``training``, ``head refit``, ``metadata fusion``, ``external evaluation``, ``measured``, ``read``, ``executed``,
``reused``, ``HTML``), ``what`` (the run, the collection or the chapter) and ``seconds``. Steps done side by side
(the chapters, two at a time) also have ``began``, the seconds from their stage's start to theirs: a row of the table
then counts the time during which at least one of its steps ran, not the sum of their times.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from pskinlib.errors import ParameterError

from .format import minutes

TIMES_FILE = "times.json"
STAGES = ("runs", "appearance", "chapters", "rendering")
STEP_KEYS = ("stage", "step", "what", "seconds")


def took(steps: list[dict] | None, stage: str, step: str, what: str, began: float, *,
         origin: float | None = None) -> None:
    """Append to ``steps`` (when it is a list) the step that began at ``began`` (``time.perf_counter()``) and ends
    now; with ``origin`` (the perf_counter its stage began at), one that ran beside others, with its ``began``."""
    if stage not in STAGES:
        raise ParameterError(f"stage: expected one of {STAGES}, got {stage!r}.")
    if steps is not None:
        steps.append({"stage": stage, "step": step, "what": what, "seconds": time.perf_counter() - began,
                      **({"began": began - origin} if origin is not None else {})})


def elapsed_seconds(part: pd.DataFrame) -> float:
    """The seconds during which at least one of ``part``'s steps ran: their sum, unless every one has ``began`` (they
    ran side by side), then the length of the union of their intervals."""
    if "began" not in part or part["began"].isna().any():
        return float(part["seconds"].sum())
    total, reach = 0.0, -float("inf")
    for start, end in sorted(zip(part["began"], part["began"] + part["seconds"])):
        total += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return total


def write_build_times(path: str | os.PathLike, profile: str, machine: dict[str, Any], steps: list[dict]) -> Path:
    """Write ``steps`` of the build of ``profile`` on ``machine`` (:func:`pskinlib.train.device.machine_description`)
    to ``path``, replacing what was there (the build writes it again after each stage, so a page made before the
    build ends reads the steps so far)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"profile": profile, "machine": machine, "steps": steps}, indent=1))
    return path


def read_build_times(path: str | os.PathLike) -> dict[str, Any]:
    """What :func:`write_build_times` wrote; a clear error where ``path`` holds something else."""
    try:
        times = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ParameterError(f"build times: cannot read {path}: {exc}") from exc
    steps = times.get("steps") if isinstance(times, dict) else None
    if not isinstance(steps, list) or any(not isinstance(s, dict) or set(STEP_KEYS) - set(s) for s in steps):
        raise ParameterError(f"build times: {path} is not a build's time table (a list of steps, each with "
                             f"{', '.join(STEP_KEYS)}).")
    return times


def time_table(steps: list[dict]) -> pd.DataFrame:
    """One row per stage and step, in the build's order: how many items, their minutes (:func:`elapsed_seconds`),
    their share of the whole, and the slowest item; then a total row."""
    columns = ["stage", "step", "items", "minutes", "share", "slowest"]
    if not steps:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(steps)
    groups = [(stage, step, part, elapsed_seconds(part))
              for (stage, step), part in frame.groupby(["stage", "step"], sort=False)]
    total = sum(seconds for *_, seconds in groups)
    rows = []
    for stage, step, part, seconds in groups:
        slowest = part.loc[part["seconds"].idxmax()]
        rows.append({"stage": stage, "step": step, "items": len(part), "minutes": seconds / 60,
                     "share": seconds / total if total else 0.0,
                     "slowest": f"{slowest['what']} ({slowest['seconds'] / 60:.1f} min)" if len(part) > 1 else ""})
    rows.append({"stage": "total", "step": "", "items": len(frame), "minutes": total / 60, "share": 1.0,
                 "slowest": ""})
    return pd.DataFrame(rows, columns=columns)


def time_lines(steps: list[dict]) -> list[str]:
    """:func:`time_table` as the lines the build prints at its end."""
    table = time_table(steps)
    lines = ["Where the time went:"]
    for row in table.itertuples():
        name = f"{row.stage}: {row.step}" if row.step else row.stage
        slowest = f"  slowest: {row.slowest}" if row.slowest else ""
        lines.append(f"  {name:<32} {row.items:>3}  {row.minutes:6.1f} min  {row.share:4.0%}{slowest}")
    return lines


def time_view(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`time_table` as a page shows it: minutes to a tenth, shares in whole percent."""
    return pd.DataFrame({"stage": table["stage"], "step": table["step"], "items": table["items"],
                         "minutes": minutes(table["minutes"]),
                         "share": [f"{s:.0%}" for s in table["share"]], "slowest": table["slowest"]})


def time_finding(steps: list[dict]) -> str:
    """The time table in a sentence: minutes in all, in the runs (training among them), measuring the images'
    appearance and in the chapters, and the slowest single step."""
    if not steps:
        return "no step of a build is recorded"
    frame, table = pd.DataFrame(steps), time_table(steps)
    spent = table[table["stage"] != "total"].groupby("stage", sort=False)["minutes"].sum()
    training = frame.loc[frame["step"] == "training", "seconds"].sum() / 60
    slowest = frame.loc[frame["seconds"].idxmax()]
    parts = [f"{spent.sum():.1f} min in all"]
    if "runs" in spent:
        parts.append(f"{spent['runs']:.1f} making the runs ({training:.1f} of them training)")
    if "appearance" in spent:
        parts.append(f"{spent['appearance']:.1f} measuring the images' appearance")
    if "chapters" in spent:
        side_by_side = "began" in frame and frame.loc[frame["stage"] == "chapters", "began"].notna().any()
        parts.append(f"{spent['chapters']:.1f} running the chapters" + (" (two at a time)" if side_by_side else ""))
    if "rendering" in spent:
        parts.append(f"{spent['rendering']:.1f} rendering")
    return (", ".join(parts) + f"; the slowest step was {slowest['what']} ({slowest['step']}, "
            f"{slowest['seconds'] / 60:.1f} min)")
