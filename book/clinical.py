"""The chapter "For whom it fails, and how many it refers": the book's headline runs by subgroup of patients and
lesions, and as a referral rule for biopsy, beside the figures dermatology reports.

The headline runs are this build's best run of each track (from scratch, ImageNet-pretrained), each chosen on its
validation balanced accuracy. Subgroups and referral come from the library (:mod:`pskinlib.evaluate.subgroups`,
:mod:`pskinlib.evaluate.referral`), so a researcher can ask the same of any run; here they are laid out and put
into sentences.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
from IPython.display import Markdown

from pskinlib.data.appearance import NOT_ESTIMABLE
from pskinlib.errors import ParameterError
from pskinlib.evaluate.referral import run_referral
from pskinlib.evaluate.subgroups import GROUPINGS, run_subgroups, subgroup_table
from pskinlib.info import TRACK_NAMES
from pskinlib.runs import RunRecord, scores_of

from .appearance import ARTIFACTS, BANDS
from .format import interval, intervals
from .runs import latest_runs, runs_table

# What dermatology reports for the same decisions, from published sources (``source``: the key in references.bib,
# ``cited``: how the table names it). Not comparable one to one: other images, another prevalence of melanoma, real
# clinics instead of a test split.
REFERENCE_POINTS = (
    {"who": "dermatologists", "sensitivity": 0.875, "specificity": 0.814, "number_needed_to_biopsy": None,
     "source": "phillips2020derm", "cited": "Phillips et al. 2020",
     "what": "meta-analysis of 92 studies: examination with or without dermoscopy, against histopathology"},
    {"who": "primary care physicians", "sensitivity": 0.799, "specificity": 0.709, "number_needed_to_biopsy": None,
     "source": "phillips2020derm", "cited": "Phillips et al. 2020", "what": "the same meta-analysis, 10 studies"},
    {"who": "dermatology clinics", "sensitivity": None, "specificity": None, "number_needed_to_biopsy": 9.60,
     "source": "petty2020nnt", "cited": "Petty et al. 2020",
     "what": "biopsies or excisions per melanoma (95 % CI 6.97–13.41), meta-analysis of 29 studies"},
    {"who": "primary care clinics", "sensitivity": None, "specificity": None, "number_needed_to_biopsy": 22.62,
     "source": "petty2020nnt", "cited": "Petty et al. 2020",
     "what": "biopsies or excisions per melanoma (95 % CI 12.95–40.10)"},
    {"who": "pigmented lesion specialists", "sensitivity": None, "specificity": None,
     "number_needed_to_biopsy": 5.85, "source": "petty2020nnt", "cited": "Petty et al. 2020",
     "what": "biopsies or excisions per melanoma (95 % CI 4.24–8.27)"},
)


def headline_runs(runs_dir: str | os.PathLike) -> dict[str, RunRecord]:
    """This build's best run of each track, chosen on validation balanced accuracy (never on test), by label
    ``model (track)``; a track without a run is left out."""
    table = latest_runs(runs_table(runs_dir))
    chosen = {}
    for pretrained, track in TRACK_NAMES.items():
        part = table[table["pretrained"] == pretrained] if len(table) else table
        if len(part):
            best = part.loc[part["val_balanced_accuracy"].idxmax()]
            chosen[f"{best['model']} ({track})"] = RunRecord(best["path"])
    return chosen


def headline_view(runs: dict[str, RunRecord]) -> pd.DataFrame:
    """The headline runs: network, track, weights, size and epochs, validation and test balanced accuracy."""
    rows = []
    for label, run in runs.items():
        config, metrics = run.config, run.metrics
        ci = metrics["test"]["bootstrap"]["balanced_accuracy"]
        rows.append({"run": label, "class weights": config.class_weights,
                     "px x epochs": f"{config.image_size} x {config.epochs}",
                     "validation balanced accuracy (chooses)": metrics["val"]["balanced_accuracy"],
                     "test balanced accuracy (95 % CI)": interval(metrics["test"]["balanced_accuracy"], ci["low"],
                                                                  ci["high"])})
    return pd.DataFrame(rows)


def subgroups(runs: dict[str, RunRecord], images_table: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    """:func:`~pskinlib.evaluate.subgroups.run_subgroups` of each headline run's test split by age band, sex and body
    site, with a ``run`` column; the same six body sites for every run (the most common in the first run's test
    split)."""
    parts = [run_subgroups(run, images_table, tuple(GROUPINGS), n_boot=n_boot).assign(run=label)
             for label, run in runs.items()]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


# The groupings of the estimates of pskinlib.data.appearance: the ITA band, and each artifact found or not.
SKIN_TONE = "estimated skin tone (ITA)"
NOT_MEASURED = "not measured"  # an image that could not be measured (too small, or not decodable)


def appearance_labels(appearance: pd.DataFrame) -> pd.DataFrame:
    """``image_id`` and one column per appearance grouping: :data:`SKIN_TONE` (the ITA band, or "not estimable"),
    and ``present`` / ``absent`` (or :data:`NOT_MEASURED`) for each artifact, by its name in the book. ``appearance``:
    :func:`pskinlib.data.appearance.appearance_table` (or :func:`book.appearance.ham10000_appearance`)."""
    needed = {"image_id", "ita_category", *ARTIFACTS}
    if not isinstance(appearance, pd.DataFrame) or not needed <= set(appearance.columns):
        raise ParameterError(f"appearance: need an appearance table with the columns {sorted(needed)} "
                             "(pskinlib.data.appearance.appearance_table).")
    labels = pd.DataFrame({"image_id": appearance["image_id"].to_numpy(),
                           SKIN_TONE: appearance["ita_category"].to_numpy()})
    for column, (shown, _, _) in ARTIFACTS.items():
        found = appearance[column]
        labels[shown] = np.where(found.isna(), NOT_MEASURED, np.where(found.fillna(False).astype(bool), "present",
                                                                      "absent"))
    return labels


def _ordered(values: pd.Series, order: list[str]) -> pd.Categorical:
    """``values`` as a categorical of the labels in ``order`` that occur (an absent band gets no empty row)."""
    present = set(values)
    return pd.Categorical(values, categories=[label for label in order if label in present])


def appearance_subgroups(runs: dict[str, RunRecord], appearance: pd.DataFrame, n_boot: int = 1000,
                         evaluation: str | None = None) -> pd.DataFrame:
    """Each headline run's test results by :func:`appearance_labels`' groupings: ITA band (lightest first, then not
    estimable) and each artifact present / absent, with :func:`~pskinlib.evaluate.subgroups.subgroup_table`'s
    intervals, "below" marks and minimum lesions, as :func:`subgroups` has them by age, sex and site (the same
    seed, so the all-images row is the same). Columns as :func:`subgroups`' (``run``, ``grouping``, ...); a band
    no test image falls in has no row.

    ``evaluation``: the name of the runs' evaluation on other labelled folders (``"external"``,
    :meth:`~pskinlib.runs.RunRecord.evaluation`) whose images to group instead of the test split, every folder of it
    together; a run without that evaluation is left out. Its images have no lesion ids, so each counts as a lesion.
    """
    labels = appearance_labels(appearance)
    if labels["image_id"].duplicated().any():
        raise ParameterError("appearance: an image_id is listed more than once.")
    orders = {SKIN_TONE: [*BANDS, NOT_ESTIMABLE]}
    orders.update({shown: ["present", "absent", NOT_MEASURED] for shown, _, _ in ARTIFACTS.values()})
    parts = []
    for label, run in runs.items():
        if evaluation is None:
            predictions, images = run.predictions("test"), "test image(s)"
        elif evaluation in run.evaluations():
            predictions, images = run.evaluation(evaluation).predictions(), f"image(s) of its {evaluation} evaluation"
        else:
            continue
        if missing := sorted(set(predictions["image_id"]) - set(labels["image_id"])):
            raise ParameterError(f"appearance: has no estimate for {len(missing)} of {label}'s {images}, such "
                                 f"as {missing[:5]}; measure the images the run predicted.")
        table = predictions.merge(labels, on="image_id", how="left", validate="one_to_one")
        y_true, y_prob = scores_of(table, run.classes)
        lesion_ids = table["lesion_id"].to_numpy() if "lesion_id" in table else None
        for i, (grouping, order) in enumerate(orders.items()):
            part = subgroup_table(y_true, y_prob, run.classes, _ordered(table[grouping], order),
                                  lesion_ids=lesion_ids, n_boot=n_boot)
            part.insert(0, "grouping", ["all", *[grouping] * (len(part) - 1)])
            parts.append((part if i == 0 else part.iloc[1:]).assign(run=label))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _below_overall(part: pd.DataFrame, name) -> tuple[list[str], int]:
    """A run's subgroups whose interval lies wholly below its overall estimate (of balanced accuracy or melanoma
    recall), each as ``name(row)`` with the measure, and how many subgroups were too small for an interval."""
    below = [f"{name(row)} ({what})" for row in part.itertuples()
             for what, flag in (("balanced accuracy", row.balanced_accuracy_below_overall),
                                ("melanoma recall", row.melanoma_recall_below_overall)) if flag is True]
    return below, int(part["note"].str.startswith("too few").sum())


def _counts_below(table: pd.DataFrame) -> tuple[int, int]:
    """Over all runs: the subgroups analysed, and those with an interval wholly below their run's estimate."""
    subgroups = table[table["grouping"] != "all"]
    any_below = (subgroups["balanced_accuracy_below_overall"].eq(True)
                 | subgroups["melanoma_recall_below_overall"].eq(True))
    return len(subgroups), int(any_below.sum())


def appearance_finding(table: pd.DataFrame, prefix: str = "appearance", images: str = "test image") -> dict[str, Any]:
    """``<prefix>_finding``: for each run, the appearance subgroups (named with their grouping) whose interval
    lies wholly below its overall estimate, how many were too small for an interval, and the ITA bands no image
    (``images``: what the table's images are, in the singular) fell in; ``<prefix>_subgroups_analysed`` and
    ``<prefix>_subgroups_below``: the counts over all runs."""
    if not len(table):
        return {f"{prefix}_finding": Markdown("no run of this build could be analysed by skin tone or artifact"),
                f"{prefix}_subgroups_analysed": 0, f"{prefix}_subgroups_below": 0}
    analysed, below_count = _counts_below(table)
    phrases = []
    for run, part in table.groupby("run", sort=False):
        below, small = _below_overall(part, lambda row: f"{row.grouping} {row.group}")
        bands = set(part.loc[part["grouping"] == SKIN_TONE, "group"])
        absent = [band for band in BANDS if band not in bands]
        phrases.append(f"for {run}, {', '.join(below) if below else 'no subgroup'} lay wholly below the overall "
                       f"estimate; {small} of its {len(part) - 1} subgroups were too small for an interval"
                       + (f", and no {images} was estimated {' or '.join(absent)}" if absent else ""))
    return {f"{prefix}_finding": Markdown("; ".join(phrases)), f"{prefix}_subgroups_analysed": analysed,
            f"{prefix}_subgroups_below": below_count}


def _marked(estimates: list[str], below) -> list[str]:
    """Each formatted estimate, followed by ", below" where its interval lies wholly below the overall estimate."""
    return [f"{text}, below" if flag is True else text for text, flag in zip(estimates, below)]


def subgroup_view(table: pd.DataFrame, run: str, everything: str = "all test images") -> pd.DataFrame:
    """One run's subgroups as the chapter shows them: each subgroup named with its grouping ("age band: 30–49"), the
    all-images row as ``everything``, n, melanomas, balanced accuracy and melanoma recall with their intervals
    (", below" where the interval lies wholly below the overall estimate), and why an interval is missing."""
    part = table[table["run"] == run]
    names = [everything if grouping == "all" else f"{grouping}: {group}"
             for grouping, group in zip(part["grouping"], part["group"])]
    balanced = intervals(part, "balanced_accuracy", "balanced_accuracy_low", "balanced_accuracy_high")
    melanoma = intervals(part, "melanoma_recall", "melanoma_recall_low", "melanoma_recall_high")
    return pd.DataFrame({
        "subgroup": names, "images": part["n"].to_numpy(), "melanomas": part["melanomas"].to_numpy(),
        "balanced accuracy (95 % CI)": _marked(balanced, part["balanced_accuracy_below_overall"]),
        "melanoma recall (95 % CI)": _marked(melanoma, part["melanoma_recall_below_overall"]),
        "note": part["note"].to_numpy()})


def subgroup_finding(table: pd.DataFrame) -> dict[str, Any]:
    """``subgroup_finding``: for each run, the subgroups whose interval lies wholly below its overall estimate (of
    balanced accuracy or of melanoma recall), and how many subgroups were too small for an interval;
    ``subgroups_analysed`` and ``subgroups_below``: the counts over all runs."""
    if not len(table):
        return {"subgroup_finding": Markdown("no run of this build could be analysed by subgroup"),
                "subgroups_analysed": 0, "subgroups_below": 0}
    analysed, below_count = _counts_below(table)
    phrases = []
    for run, part in table.groupby("run", sort=False):
        below, small = _below_overall(part, lambda row: row.group)
        listed = ", ".join(below) if below else "no subgroup"
        phrases.append(f"for {run}, {listed} lay wholly below the overall estimate; {small} of its "
                       f"{len(part) - 1} subgroups were too small for an interval")
    return {"subgroup_finding": Markdown("; ".join(phrases)), "subgroups_analysed": analysed,
            "subgroups_below": below_count}


def referral(runs: dict[str, RunRecord], n_boot: int = 1000) -> pd.DataFrame:
    """:func:`~pskinlib.evaluate.referral.run_referral` of each headline run (its test split and every external set
    it was evaluated on), with a ``run`` column."""
    parts = [run_referral(run, n_boot=n_boot).assign(run=label) for label, run in runs.items()]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def referral_view(table: pd.DataFrame, run: str) -> pd.DataFrame:
    """One run's referral rules as the chapter shows them, a row per (set, target)."""
    part = table[table["run"] == run]

    def ci(name: str, digits: int = 3) -> list[str]:
        return intervals(part, name, f"{name}_low", f"{name}_high", digits)

    return pd.DataFrame({
        "images": part["set"].to_numpy(), "sensitivity on validation": part["target"].to_numpy(),
        "melanomas": part["melanomas"].to_numpy(), "sensitivity (95 % CI)": ci("sensitivity"),
        "specificity (95 % CI)": ci("specificity"), "share referred (95 % CI)": ci("share_referred"),
        "biopsies per melanoma found (95 % CI)": ci("number_needed_to_biopsy", 1)})


def reference_view() -> pd.DataFrame:
    """:data:`REFERENCE_POINTS` as a table, with the citation of each row."""
    return pd.DataFrame([{"who": r["who"], "sensitivity": r["sensitivity"], "specificity": r["specificity"],
                          "biopsies per melanoma": (f"{r['number_needed_to_biopsy']:.2f}"
                                                    if r["number_needed_to_biopsy"] else None),
                          "what": r["what"],
                          "source": r["cited"]} for r in REFERENCE_POINTS])


def referral_finding(table: pd.DataFrame, internal: str = "HAM10000 test") -> dict[str, Any]:
    """``referral_finding``: at the threshold for 90 % sensitivity on validation, what each run referred on
    HAM10000 test and the sensitivity it kept on each other set."""
    if not len(table):
        return {"referral_finding": Markdown("no run of this build has a referral rule")}
    phrases = []
    for run, part in table[table["target"] == "90%"].groupby("run", sort=False):
        inside = part[part["set"] == internal].iloc[0]
        outside = [f"{row.set} {row.sensitivity:.2f}" for row in part.itertuples() if row.set != internal]
        phrases.append(f"{run} referred {inside['share_referred']:.0%} of the {internal} images, found "
                       f"{inside['sensitivity']:.0%} of their melanomas and needed "
                       f"{inside['number_needed_to_biopsy']:.1f} biopsies per melanoma found"
                       + (f"; elsewhere its sensitivity was {', '.join(outside)}" if outside else ""))
    return {"referral_finding": Markdown("; ".join(phrases))}
