"""How the book shows a table: integers as integers, metrics with three decimals, intervals as
``0.702 (0.667–0.737)``, no index, no machine paths, narrow enough for the page.

Chapters pass every table they display through :func:`present`; :func:`parameters_table` is the small table each
chapter opens with (the parameters this build used, paths relative to the repository or named by their dataset).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

DASH = "—"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def interval(value: float | None, low: float | None, high: float | None, digits: int = 3) -> str:
    """``0.702 (0.667–0.737)``; the value alone when the interval is missing, a dash when the value is."""
    if _missing(value):
        return DASH
    if _missing(low) or high is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` with its noun, singular or plural: ``counted(1, "split seed")`` is "1 split seed", 3 gives "3 split
    seeds", 1200 gives "1,200 ..."."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def minutes(values) -> list[str]:
    """Durations in minutes as a table shows them: one decimal (a run's minutes are not known to the second), a
    dash where one is missing."""
    return [DASH if _missing(v) else f"{float(v):.1f}" for v in values]


def describe_machine(machine: dict[str, Any]) -> str:
    """A machine (:func:`pskinlib.train.device.machine_description`) in words: its CPU, usable cores, memory, and
    whether it trains in bf16 (AVX-512 BF16) or in fp32 only, the difference that decides a CPU's training speed."""
    cpus = machine.get("usable_cpus") or machine.get("logical_cpus")
    words = [str(machine.get("cpu_model") or "an unknown CPU")]
    if cpus:
        words.append(counted(int(cpus), "usable CPU"))
    if machine.get("memory_gib"):
        words.append(f"{machine['memory_gib']} GiB")
    if "avx512_bf16" in machine:
        words.append("AVX-512 BF16 (bf16 training)" if machine["avx512_bf16"] else "no BF16 (fp32 training)")
    if machine.get("gpu"):
        words.append(f"GPU {machine['gpu'].get('name', '')}".strip())
    if machine.get("torch"):
        words.append(f"torch {machine['torch']}")
    return ", ".join(words)


def intervals(table: pd.DataFrame, value: str, low: str, high: str, digits: int = 3) -> list[str]:
    """:func:`interval` of each row of ``table``, from its columns ``value``, ``low`` and ``high``."""
    return [interval(v, lo, hi, digits) for v, lo, hi in table[[value, low, high]].itertuples(index=False)]


def _integral(values) -> bool:
    """A column of counts, sizes or epochs: integers, or whole floats beyond 0 and 1 (a column of recalls that are
    all 0 or 1 is still a metric)."""
    numbers = [v for v in values if not _missing(v) and not isinstance(v, bool) and isinstance(v, (int, float))]
    return bool(numbers) and all(float(v).is_integer() for v in numbers) and (
        all(isinstance(v, int) for v in numbers) or max(abs(v) for v in numbers) >= 2)


def _cell(value: Any, digits: int, integral: bool | None = None) -> str:
    if _missing(value):
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) and (integral if integral is not None else _integral([value])):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def present(table: pd.DataFrame, caption: str | None = None, *, digits: int = 3, labels: dict | None = None):
    """A table as the book shows it: every column formatted by its values (counts, sizes and epochs as integers,
    other numbers with ``digits`` decimals, booleans as yes/no, missing values as a dash), column names with
    spaces (or ``labels``), no index, an optional caption. Returns a pandas Styler."""
    shown = table.copy()
    for column in shown.columns:
        values = [v.item() if hasattr(v, "item") else v for v in shown[column]]  # numpy scalars as Python's
        integral = _integral(values)
        shown[column] = [_cell(v, digits, integral) for v in values]
    shown.columns = [(labels or {}).get(c, str(c).replace("_", " ")) for c in shown.columns]
    styler = shown.style.hide(axis="index").set_table_attributes('class="pskin-table"')
    return styler.set_caption(caption) if caption else styler


def describe_path(value: str | os.PathLike | None, root: str | os.PathLike | None = None,
                  data_dir: str | os.PathLike | None = None) -> str:
    """A path as a page may show it: the data folder by its dataset's name, a folder inside ``root`` relative to
    it, anything else by its last part only (never a folder of the machine that built the book)."""
    if value is None:
        return DASH
    path = Path(value)
    if data_dir is not None and path.resolve() == Path(data_dir).resolve():
        from pskinlib.data.demo import is_synthetic

        return "the synthetic demo set" if is_synthetic(path) else "HAM10000 (from $PSKIN_DATA)"
    if root is not None and path.resolve().is_relative_to(Path(root).resolve()):
        return str(path.resolve().relative_to(Path(root).resolve()))
    return f"…/{path.name}" if path.is_absolute() else str(path)


def parameters_table(parameters: dict[str, Any], *, root: str | os.PathLike | None = None,
                     data_dir: str | os.PathLike | None = None):
    """The parameters this build gave the chapter, paths shown by :func:`describe_path`."""
    rows = []
    for name, value in parameters.items():
        if isinstance(value, (str, os.PathLike)) and (name.endswith("_dir") or os.sep in str(value)):
            value = describe_path(value, root, data_dir)
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or DASH
        elif isinstance(value, (list, tuple)):
            value = ", ".join(map(str, value))
        elif isinstance(value, float):
            value = f"{value:g}"
        rows.append({"parameter": name, "value": value if isinstance(value, str) else _cell(value, 3)})
    return present(pd.DataFrame(rows), "The parameters of this chapter in this build")
