"""The clinical chapter's shortcut test: does a headline run change a correct prediction when a dark dermatoscope
frame, hairs or violet marker ink is added to the picture?

The test itself is the library's (:func:`pskinlib.evaluate.shortcuts.shortcut_test`); here it is run for each
headline run (:func:`book.clinical.headline_runs`), laid out as a table per run and put into a sentence. A run needs
its best checkpoint to predict changed pictures: a run folder the build trained has it, an exported record (the
book's committed reference results) does not, and is left out with the reason.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
from IPython.display import Markdown

from pskinlib.evaluate.shortcuts import ALL_CLASSES_ROW, shortcut_test
from pskinlib.info import CLASSES, MELANOMA
from pskinlib.runs import RunRecord

from .format import DASH, intervals

# The chapter's correct test images per true class (at most): a few hundred pictures in all, each measured once and
# changed three times, about 0.3-0.5 s of CPU per picture with a 32-48 px ResNet18 (measured on a 2-core AMD EPYC).
MAX_PER_CLASS = 100
ARTIFACT_NAMES = {"dark_border": "dark border", "hairs": "hairs", "ink": "ink"}
# How the finding names each artifact added.
ARTIFACT_ADDED = {"dark_border": "adding a dark border", "hairs": "drawing hairs", "ink": "adding violet ink"}


def shortcut_table(runs: dict[str, RunRecord], data_dir: str | os.PathLike | None, n_boot: int = 1000, *,
                   max_per_class: int | None = MAX_PER_CLASS, seed: int = 0) -> pd.DataFrame:
    """:func:`~pskinlib.evaluate.shortcuts.shortcut_test` of each run's test split (at most ``max_per_class``
    correct images of each class, on the CPU), with a ``run`` column. A run without its best checkpoint is left
    out; ``attrs["left_out"]`` names it with the reason."""
    parts, left_out = [], {}
    for label, run in runs.items():
        if not run.checkpoint("best").is_file():
            left_out[label] = "no checkpoint (an exported record)"
            continue
        parts.append(shortcut_test(run, data_dir, n_boot=n_boot, seed=seed, max_per_class=max_per_class,
                                   device="cpu").assign(run=label))
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    table.attrs["left_out"] = left_out
    return table


def _class_name(code: str) -> str:
    return "all classes" if code == ALL_CLASSES_ROW else CLASSES[code].name if code in CLASSES else code


def _directions(row: pd.Series, classes: list[str]) -> str:
    """``nv→mel 9, nv→bkl 2`` (for all classes, ``→mel 9``), or a dash when nothing changed."""
    source = "" if row["true"] == ALL_CLASSES_ROW else row["true"]
    moves = [f"{source}→{code} {int(row[f'to_{code}'])}" for code in classes if row[f"to_{code}"] > 0]
    return ", ".join(moves) if moves else DASH


def shortcut_view(table: pd.DataFrame, run: str) -> pd.DataFrame:
    """One run's shortcut test as the chapter shows it: per artifact and true class, the correct images tested
    (those that showed the artifact already are left out), how many of the changed pictures the appearance
    estimate finds the artifact in, how many predictions changed and to which class, the share changed and the
    share turned into melanoma with their 95 % intervals over lesions, the mean change of the melanoma
    probability, and why an interval is missing."""
    part = table[table["run"] == run]
    classes = [c[3:] for c in part.columns if c.startswith("to_")]
    return pd.DataFrame({
        "artifact": [ARTIFACT_NAMES.get(a, a) for a in part["artifact"]],
        "true class": [_class_name(c) for c in part["true"]],
        "images tested": part["images"].to_numpy(),
        "artifact detected": part["detected"].to_numpy(),
        "changed": part["changed"].to_numpy(),
        "changed to": [_directions(row, classes) for _, row in part.iterrows()],
        "share changed (95 % CI)": intervals(part, "share_changed", "share_changed_low", "share_changed_high"),
        "share turned melanoma (95 % CI)": intervals(part, "share_to_melanoma", "share_to_melanoma_low",
                                                     "share_to_melanoma_high"),
        "mean change of P(melanoma) (95 % CI)": intervals(part, "mean_change_p_mel", "mean_change_p_mel_low",
                                                          "mean_change_p_mel_high"),
        "note": part["note"].to_numpy()})


def _percent(value: float | None) -> str:
    return DASH if value is None or not np.isfinite(value) else f"{100 * value:.0f} %"


def _share(row: pd.Series, name: str) -> str:
    """``37 % (95 % CI 26–49 %)``, or the share alone without an interval."""
    value, low, high = row[name], row[f"{name}_low"], row[f"{name}_high"]
    if pd.isna(low) or pd.isna(high):
        return _percent(value)
    return f"{_percent(value)}, 95 % CI {100 * low:.0f}–{100 * high:.0f} %"


def _artifact_phrase(row: pd.Series, nevi: pd.Series | None) -> str:
    """What adding one artifact did to one run's correct predictions, all classes together."""
    added = ARTIFACT_ADDED.get(row["artifact"], row["artifact"])
    if row["images"] == 0:
        return f"{added} could not be tried (no correct image lacked it)"
    phrase = (f"{added} changed {int(row['changed'])} of {int(row['images'])} correct predictions "
              f"({_share(row, 'share_changed')})")
    if f"to_{MELANOMA}" in row.index:
        phrase += f", {int(row[f'to_{MELANOMA}'])} of them to melanoma"
        if nevi is not None and nevi["images"] > 0:
            phrase += (f" ({int(nevi[f'to_{MELANOMA}'])} of {int(nevi['images'])} nevi)")
    if row["detected"] < row["images"]:
        phrase += f"; the appearance estimate found the artifact in {int(row['detected'])} of them"
    return phrase


def shortcut_finding(table: pd.DataFrame) -> dict[str, Any]:
    """``shortcut_finding``: for each run, what adding each artifact did to its correct test predictions: how many
    changed (share and 95 % CI), how many of them to melanoma, and how many nevi turned melanoma."""
    sentences = []
    for run, part in (table.groupby("run", sort=False) if len(table) else []):
        found = []
        for _, rows in part.groupby("artifact", sort=False):
            every = rows[rows["true"] == ALL_CLASSES_ROW].iloc[0]
            nevi = rows[rows["true"] == "nv"]
            found.append(_artifact_phrase(every, nevi.iloc[0] if len(nevi) else None))
        sentences.append(f"for {run}, " + "; ".join(found))
    if not sentences:
        sentences.append("no headline run of this build could be tested for shortcuts")
    sentences += [f"{label} was left out: {reason}" for label, reason in table.attrs.get("left_out", {}).items()]
    # The first sentence follows the chapter's bold lead-in; the others start with a capital.
    text = ". ".join([sentences[0], *(s[0].upper() + s[1:] for s in sentences[1:])])
    return {"shortcut_finding": Markdown(text)}

