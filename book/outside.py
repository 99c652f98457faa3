"""The chapter "Beyond HAM10000" as tables and findings: runs judged on images of other collections.

Each function reads the external evaluations of run records (``pskin evaluate RUN --external``,
:mod:`pskinlib.evaluate.external_validation`) and returns a table the chapter shows or the ``{name: value}`` it
glues, so the notebook only calls and plots. Two rules hold throughout: nothing is chosen on ISIC2017_test (it is
reported only), and a run trained on a second collection (``extra_sources``) is never counted as judged outside.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
from IPython.display import Markdown

from pskinlib.data.labelled_folders import read_labelled_folders
from pskinlib.evaluate.external_validation import INTERNAL, POOLED
from pskinlib.info import CLASSES, MELANOMA, TRACK_SHORT_NAMES
from pskinlib.runs import RunRecord, find_runs

from .format import counted, interval, intervals
from .references import reference_folder
from .runs import EXTERNAL_EVALUATION

SETS = (INTERNAL, "ISIC2017_val", "ISIC2017_test", POOLED)
# The reference experiments (book/results/references.yaml): the adopted recipe, its two-source variant, the methods
# comparison.
ADOPTED, TWO_SOURCE, METHODS = "external_adopted", "external_two_source", "external_methods"


def image_counts(folders) -> pd.DataFrame:
    """Images per collection (rows) and class (columns) of labelled folders."""
    return read_labelled_folders(folders).groupby(["source_dataset", "dx"]).size().unstack(fill_value=0).reset_index()


def images_note(evaluated, counts: pd.DataFrame | None) -> dict[str, Any]:
    """``external_note``: how many of this build's runs were evaluated on how many external images of how many
    sets (:func:`image_counts`), or that the build had none and the reference results stand alone."""
    if counts is None:
        return {"external_note": Markdown("This build had no external images; the reference results below were made "
                                          "on ISIC 2017 with the committed runs.")}
    images = int(counts.drop(columns="source_dataset").to_numpy().sum())
    return {"external_note": Markdown(f"This build evaluated its {len(evaluated)} runs on {images} external images "
                                      f"of {counted(len(counts), 'set')}.")}


def reference_runs(reference_dir: str | os.PathLike) -> list[Path]:
    """The reference runs with external evaluations (the three external reference experiments); a record in two of
    them counts once."""
    return list({r.path.name: r.path for name in (ADOPTED, METHODS, TWO_SOURCE)
                 for r in find_runs(reference_folder(name, reference_dir))}.values())


def external_table(runs, evaluation: str = EXTERNAL_EVALUATION) -> pd.DataFrame:
    """One row per (run, group) of each run's external evaluation (``pskin evaluate RUN --external``): balanced
    accuracy with its interval, melanoma recall and AUC, the melanoma sensitivity and specificity at the
    HAM10000-validation threshold for 80 % sensitivity, and the calibration error before and after temperature
    scaling. Runs without that evaluation are left out."""
    rows = []
    for _, run, result in _evaluated({str(run): RunRecord(run) for run in runs}, evaluation):
        config = run.config
        for group, report in result.metrics["groups"].items():
            ci = report["bootstrap"]["balanced_accuracy"]
            point = report.get("melanoma_operating_points", {}).get("80%", {})
            rows.append({
                "run": run.name, "path": str(run.path), "model": config.model, "method": _method(config),
                "group": group, "images": report["n"], "pretrained": config.pretrained,
                "class_weights": config.class_weights, "split_seed": config.split_seed,
                "extra_sources": ",".join(config.extra_sources),
                "balanced_accuracy": report["balanced_accuracy"], "balanced_accuracy_low": ci["low"],
                "balanced_accuracy_high": ci["high"],
                "recall_mel": report["per_class"][MELANOMA]["recall"] if MELANOMA in report["per_class"] else None,
                "auc_mel": report["roc_auc_ovr"]["per_class"].get(MELANOMA),
                "macro_auc": report["roc_auc_ovr"]["macro"],
                "sensitivity_at_80": (point.get("sensitivity") or {}).get("estimate"),
                "specificity_at_80": (point.get("specificity") or {}).get("estimate"),
                "ece": report["calibration"]["ece"], "ece_calibrated": report["calibration"]["ece_calibrated"],
                "absent_classes": ", ".join(report.get("absent_classes", [])),
                **{f"recall_{code}": v["recall"] for code, v in report["per_class"].items()},
            })
    return pd.DataFrame(rows)


def _method(config) -> str:
    """A reference run's method (from its config): its notes up to their first colon, as
    ``experiments/external_methods.py`` writes them; empty for a run without such notes."""
    return config.notes.partition(":")[0].strip()


def run_label(run: RunRecord, origin: str) -> str:
    """A run as every table of the chapter names it: a reference run of the methods comparison by its method and
    split seed, any other by its origin, network, track, class weights and split seed."""
    config = run.config
    method = _method(config)
    if origin == "reference" and method:
        return f"reference: {method}, split {config.split_seed}"
    return (f"{origin}: {config.model} ({TRACK_SHORT_NAMES[config.pretrained]}), {config.class_weights}, "
            f"split {config.split_seed}")


def judged_runs(built, reference_dir: str | os.PathLike) -> dict[str, RunRecord]:
    """This build's evaluated runs and the reference runs, by :func:`run_label` (the run's folder name is added
    where two runs would share a label)."""
    pairs = [(run_label(RunRecord(r), "this build"), RunRecord(r)) for r in built]
    pairs += [(run_label(RunRecord(r), "reference"), RunRecord(r)) for r in reference_runs(reference_dir)]
    labels = [label for label, _ in pairs]
    return {(f"{label} ({run.name})" if labels.count(label) > 1 else label): run for label, run in pairs}


def inside_outside(judged: dict[str, RunRecord]) -> pd.DataFrame:
    """:func:`external_table` of the runs of :func:`judged_runs`, each row named in ``who`` (its label) and
    ``origin`` ("this build" or "reference")."""
    parts = [external_table([run]).assign(who=label, origin=label.partition(":")[0]) for label, run in judged.items()]
    parts = [part for part in parts if len(part)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def sets_table(side: pd.DataFrame) -> pd.DataFrame:
    """One row per run of :func:`inside_outside`, a column per set with balanced accuracy and its interval, and
    the pooled melanoma recall."""
    columns = ["balanced_accuracy", "balanced_accuracy_low", "balanced_accuracy_high"]
    wide = side.pivot_table(index="who", columns="group", values=columns, sort=False)
    pooled = side[side["group"] == POOLED].set_index("who")
    shown = pd.DataFrame({"run": wide.index})
    for group in (g for g in SETS if g in set(wide.columns.get_level_values("group"))):
        shown[group] = intervals(wide.xs(group, axis=1, level="group"), *columns)
    shown[f"melanoma recall ({POOLED})"] = [pooled["recall_mel"].get(w) for w in wide.index]
    return shown


def gap_dots(side: pd.DataFrame, reference_dir: str | os.PathLike) -> pd.DataFrame:
    """The rows of the inside-outside figure: HAM10000 test and ISIC2017_test of this build's runs and of the
    adopted and two-source reference runs, each with its ``label``, last row first (the figure's top)."""
    adopted = {p.name for name in (ADOPTED, TWO_SOURCE) for p in reference_folder(name, reference_dir).glob("*/")}
    dots = side[side["group"].isin([INTERNAL, "ISIC2017_test"])
                & ((side["origin"] == "this build") | side["run"].isin(adopted))].copy()
    dots["label"] = dots["who"] + " · " + dots["group"]
    return dots.iloc[::-1]


def _median_gap(rows: pd.DataFrame) -> tuple[float, pd.Series]:
    inside = rows[rows["group"] == INTERNAL]["balanced_accuracy"]
    return inside.median(), rows[rows["group"] == "ISIC2017_test"]["balanced_accuracy"]


def gap_finding(side: pd.DataFrame) -> dict[str, Any]:
    """``gap``: the median balanced accuracy inside HAM10000 and on ISIC 2017's test set over the HAM10000-only
    runs (ISIC 2017 is not external for a two-source run); ``build_gap``: the same for this build's runs."""
    build = ", so the figures above are those of the committed reference runs"
    if not len(side):
        return {"gap": Markdown("not measured in this build"), "build_gap": Markdown(build)}
    inside, outside = _median_gap(side[side["extra_sources"] == ""])
    gap = (f"from a median of {inside:.3f} on HAM10000 test lesions to {outside.median():.3f} on ISIC 2017's test "
           f"set, over the {len(outside)} HAM10000-only runs evaluated there" if len(outside)
           else "no run was evaluated on ISIC 2017's test set")
    mine = side[side["origin"] == "this build"]
    if len(mine):
        inside, outside = _median_gap(mine)
        build = (f"; their median went from {inside:.3f} on HAM10000 test lesions to {outside.median():.3f} on ISIC "
                 "2017's test set" if len(outside) else "; none of them on ISIC 2017's test set")
    return {"gap": Markdown(gap), "build_gap": Markdown(build)}


def _evaluated(judged: dict[str, RunRecord], evaluation: str = EXTERNAL_EVALUATION):
    """(label, run, its ``evaluation``) for the runs of ``judged`` that have one."""
    for label, run in judged.items():
        result = run.evaluations().get(evaluation)
        if result is not None:
            yield label, run, result


def melanoma_fates(judged: dict[str, RunRecord]) -> pd.DataFrame:
    """What each run (``{label: run}``) called each collection's melanomas: one row per (run, group), the share of
    its melanomas given each class."""
    rows = []
    for label, _, result in _evaluated(judged):
        for group, report in result.metrics["groups"].items():
            classes = report["classes"]
            if MELANOMA not in classes:
                continue
            row = report["confusion_matrix"][classes.index(MELANOMA)]
            total = max(sum(row), 1)
            rows.append({"run": label, "images": group, "melanomas": sum(row),
                         **{f"called {CLASSES[c].name}": row[i] / total for i, c in enumerate(classes)}})
    return pd.DataFrame(rows)


def melanoma_fate_finding(fates: pd.DataFrame) -> dict[str, Any]:
    """``melanoma_fate``: outside HAM10000, the mean share of melanomas found and where the others went."""
    if not len(fates):
        return {"melanoma_fate": Markdown("no run here has an external evaluation")}
    outside = fates[fates["images"] != INTERNAL]
    found = "called " + CLASSES[MELANOMA].name
    wrong = outside.drop(columns=["run", "images", "melanomas", found]).mean()
    return {"melanoma_fate": Markdown(
        f"outside HAM10000, a run found on average {outside[found].mean():.0%} of the melanomas and called most of "
        f"the rest {wrong.idxmax().removeprefix('called ')} ({wrong.max():.0%} of all melanomas, against "
        f"{wrong.min():.0%} {wrong.idxmin().removeprefix('called ')})")}


def operating_points(judged: dict[str, RunRecord]) -> pd.DataFrame:
    """Melanoma sensitivity and specificity with their intervals at the HAM10000-validation thresholds, one row
    per (run, group, target) of the runs ``{label: run}``."""
    rows = []
    for label, _, result in _evaluated(judged):
        for group, report in result.metrics["groups"].items():
            for target, point in report.get("melanoma_operating_points", {}).items():
                rows.append({"run": label, "images": group, "target on validation": target,
                             **{kind: interval(point[kind]["estimate"], point[kind]["low"], point[kind]["high"])
                                for kind in ("sensitivity", "specificity")}})
    return pd.DataFrame(rows)


def calibration_table(side: pd.DataFrame) -> pd.DataFrame:
    """Expected calibration error before and after temperature scaling, one row per (run, group)."""
    return side[["who", "group", "ece", "ece_calibrated"]].rename(
        columns={"who": "run", "group": "images", "ece": "ECE", "ece_calibrated": "ECE after temperature scaling"})


def reliability_curves(judged: dict[str, RunRecord]) -> tuple[dict[str, list[dict]], str] | None:
    """The reliability diagram's inputs for the first run of ``judged`` with an external evaluation: each group's
    reliability bins and the title (the run's label); None when no run has one."""
    label, _, result = next(_evaluated(judged), (None, None, None))
    if label is None:
        return None
    groups = {group: report["calibration"]["reliability"] for group, report in result.metrics["groups"].items()}
    return groups, f"{label}: reliability"


def errors_note(run: RunRecord | None, predictions: pd.DataFrame | None) -> dict[str, Any]:
    """``errors_note``: whose most confident errors the external gallery shows, and on how many images."""
    if run is None or predictions is None:
        return {"errors_note": Markdown("No external images in this build, so no gallery.")}
    return {"errors_note": Markdown(f"The gallery shows the most confident errors of "
                                    f"{run_label(run, 'this build').partition(': ')[2]} on {len(predictions)} "
                                    "external images.")}


def absent_note(side: pd.DataFrame) -> str:
    """A note for the tables when a set lacks a class: which set, which class, and that macro figures leave it
    out; empty when every set has every class."""
    lacking = side[side["absent_classes"].fillna("") != ""][["group", "absent_classes"]].drop_duplicates()
    return "; ".join(f"{row.group} has no {row.absent_classes} image, so it has no recall or AUC for it and its "
                     "macro figures average over the classes it has" for row in lacking.itertuples())


# What methods_table keeps of each set: its column "<set> <key>" holds external_table's column of that name.
_SET_COLUMNS = {"balanced_accuracy": "balanced_accuracy", "low": "balanced_accuracy_low",
                "high": "balanced_accuracy_high", "recall_mel": "recall_mel", "sensitivity_at_80": "sensitivity_at_80"}


def methods_table(runs, evaluations: tuple[str, ...] = ("external", "external-dihedral"),
                  sets: tuple[str, ...] = ("HAM10000 test", "ISIC2017_val", "ISIC2017_test")) -> pd.DataFrame:
    """The methods against another collection's images, one row per (run, evaluation): the method and its description (a
    run's notes before and after their first colon), the test-time views, the split seed, and for each set of ``sets``:
    balanced accuracy with its interval, melanoma recall and the melanoma sensitivity at the HAM10000-validation
    threshold for 80 %; the last set's calibration error before and after temperature scaling."""
    rows = []
    for name in evaluations:
        table = external_table(runs, evaluation=name)
        if not len(table):
            continue
        for run, group in table.groupby("run", sort=False):
            first, by_set = group.iloc[0], group.set_index("group")
            record = RunRecord(first["path"])
            row = {"run": run, "method": first["method"] or run,
                   "description": record.config.notes.partition(":")[2].strip(),
                   "evaluation": name, "views": record.evaluation(name).metrics["tta"] or "none",
                   "split_seed": first["split_seed"], "extra_sources": first["extra_sources"]}
            row.update({f"{part} {key}": by_set.loc[part, column] for part in sets if part in by_set.index
                        for key, column in _SET_COLUMNS.items()})
            last = sets[-1]
            if last in by_set.index:
                row.update({"ece": by_set.loc[last, "ece"], "ece_calibrated": by_set.loc[last, "ece_calibrated"]})
            rows.append(row)
    return pd.DataFrame(rows)


def reference_methods(reference_dir: str | os.PathLike, name: str, **kwargs) -> pd.DataFrame:
    """:func:`methods_table` of the runs of the reference experiment ``name`` (:data:`ADOPTED`, :data:`TWO_SOURCE`,
    :data:`METHODS`)."""
    return methods_table([r.path for r in find_runs(reference_folder(name, reference_dir))], **kwargs)


def _set_intervals(methods: pd.DataFrame, part: str) -> list[str]:
    return intervals(methods, f"{part} balanced_accuracy", f"{part} low", f"{part} high")


def methods_view(methods: pd.DataFrame) -> pd.DataFrame:
    """The methods comparison as the chapter shows it (calibration has its own section)."""
    return pd.DataFrame({
        "method": methods["method"], "what it adds": methods["description"], "test-time views": methods["views"],
        "HAM10000 test": _set_intervals(methods, "HAM10000 test"),
        "ISIC2017_val (chooses)": _set_intervals(methods, "ISIC2017_val"),
        "ISIC2017_test (reported only)": _set_intervals(methods, "ISIC2017_test"),
        "ISIC2017_test melanoma recall": methods["ISIC2017_test recall_mel"],
        "ISIC2017_test melanoma sensitivity at the 80 % threshold": methods["ISIC2017_test sensitivity_at_80"]})


def seeds_view(adopted: pd.DataFrame) -> pd.DataFrame:
    """The adopted recipe, one row per split seed."""
    return pd.DataFrame({
        "split seed": adopted["split_seed"], "method": adopted["method"],
        "HAM10000 test": _set_intervals(adopted, "HAM10000 test"),
        "ISIC2017_val": adopted["ISIC2017_val balanced_accuracy"],
        "ISIC2017_test": _set_intervals(adopted, "ISIC2017_test"),
        "ISIC2017_test melanoma sensitivity at the 80 % threshold": adopted["ISIC2017_test sensitivity_at_80"]})


def two_source_view(two: pd.DataFrame) -> pd.DataFrame:
    """Runs trained on two collections: balanced accuracy on each set, melanoma recall on ISIC2017_test."""
    return pd.DataFrame({"method": two["method"], "what it adds": two["description"],
                         **{part: _set_intervals(two, part) for part in ("HAM10000 test", "ISIC2017_val",
                                                                          "ISIC2017_test")},
                         "ISIC2017_test melanoma recall": two["ISIC2017_test recall_mel"]})


def views_finding(methods: pd.DataFrame) -> dict[str, Any]:
    """``tta_finding``: what eight dihedral test-time views changed on ISIC2017_val against the four flips."""
    if not len(methods):
        return {"tta_finding": Markdown("Test-time views were not compared: no method record")}
    views = methods.pivot_table(index="method", columns="evaluation", values="ISIC2017_val balanced_accuracy")
    gain = (views["external-dihedral"] - views["external"]).mean() if views.shape[1] == 2 else float("nan")
    return {"tta_finding": Markdown(f"Eight dihedral test-time views instead of the four flips changed ISIC2017_val "
                                    f"balanced accuracy by {gain:+.3f} on average over the methods")}


def unseen_finding(two: pd.DataFrame, reference_dir: str | os.PathLike) -> dict[str, Any]:
    """``two_source_note``: the collections that neither source of the two-source runs trained on."""
    if not len(two):
        return {"two_source_note": Markdown("not measured")}
    groups = {g for run in two["run"] for g in RunRecord(reference_folder(TWO_SOURCE, reference_dir) / run)
              .evaluation(EXTERNAL_EVALUATION).metrics["groups"]}
    unseen = sorted(groups - {*SETS[:3], POOLED})
    return {"two_source_note": Markdown(", ".join(unseen) if unseen else "none (only ISIC 2017 was at hand)")}


def method_choice(methods, baseline: str = "baseline", choose_on: str = "ISIC2017_val",
                  internal: str = "HAM10000 test", evaluation: str = EXTERNAL_EVALUATION) -> dict[str, Any]:
    """The rule that adopts a method (:func:`methods_table`'s rows of one evaluation): it *helps* when its balanced
    accuracy on ``choose_on`` beats the baseline's, and it *costs* when its internal balanced accuracy falls below
    the lower end of the baseline's interval. The choice is the best on ``choose_on`` among those that help and
    cost nothing, else the baseline. Nothing is chosen on ISIC2017_test."""
    rows = (methods[(methods["evaluation"] == evaluation) & (methods["extra_sources"] == "")]
            if len(methods) else methods)
    if not len(rows) or baseline not in set(rows["method"]):
        return {"method_verdicts": [], "chosen_method": Markdown("not measured (no baseline record)"),
                "methods_finding": Markdown("No method record with a baseline is in this checkout.")}
    base = rows[rows["method"] == baseline].iloc[0]
    verdicts = []
    for _, row in rows.iterrows():
        helps = row[f"{choose_on} balanced_accuracy"] > base[f"{choose_on} balanced_accuracy"]
        costs = row[f"{internal} balanced_accuracy"] < base[f"{internal} low"]
        verdicts.append({"method": row["method"], "helps": bool(helps) and row["method"] != baseline,
                         "costs": bool(costs), choose_on: row[f"{choose_on} balanced_accuracy"],
                         internal: row[f"{internal} balanced_accuracy"]})
    eligible = [v for v in verdicts if v["helps"] and not v["costs"]]
    chosen = max(eligible, key=lambda v: v[choose_on]) if eligible else next(v for v in verdicts
                                                                               if v["method"] == baseline)
    helping = [v["method"] for v in verdicts if v["helps"]]
    sentence = (f"On {choose_on}, the baseline scored {base[f'{choose_on} balanced_accuracy']:.3f}; "
                + (f"{', '.join(helping)} scored higher" if helping else "no method scored higher")
                + (f", and {chosen['method']} is adopted ({chosen[choose_on]:.3f} there, {chosen[internal]:.3f} on "
                   f"{internal} against the baseline's {base[f'{internal} balanced_accuracy']:.3f})"
                   if chosen["method"] != baseline else ", so the baseline stays")
                + ".")
    return {"method_verdicts": verdicts, "chosen_method": Markdown(chosen["method"]),
            "methods_finding": Markdown(sentence)}


def adopted_finding(methods, test_set: str = "ISIC2017_test", internal: str = "HAM10000 test") -> dict[str, Any]:
    """The mean over split seeds of a recipe's rows (:func:`methods_table`, one evaluation, HAM10000-only training):
    balanced accuracy on ``test_set`` with its range, melanoma sensitivity there at the HAM10000-validation threshold
    for 80 %, and balanced accuracy on ``internal``, as numbers and a phrase."""
    if not len(methods):
        return {"adopted_finding": Markdown("not measured: no reference record of the adopted recipe")}
    seeds = len(methods)
    outside = methods[f"{test_set} balanced_accuracy"]
    values = {"balanced_accuracy": float(outside.mean()),
              "melanoma_sensitivity": float(methods[f"{test_set} sensitivity_at_80"].mean()),
              "internal_balanced_accuracy": float(methods[f"{internal} balanced_accuracy"].mean())}
    return {"adopted_seeds": seeds, **{f"adopted_{k}": v for k, v in values.items()},
            "adopted_finding": Markdown(
                f"over {counted(seeds, 'split seed')} it reached a mean {test_set} balanced accuracy of "
                f"{values['balanced_accuracy']:.3f} (from {outside.min():.3f} to {outside.max():.3f}), a melanoma "
                f"sensitivity of {values['melanoma_sensitivity']:.3f} there at the HAM10000-validation threshold for "
                f"80 %, and a {internal} balanced accuracy of {values['internal_balanced_accuracy']:.3f}")}


def best_outside(external: pd.DataFrame) -> pd.Series | None:
    """The HAM10000-only run best on ISIC2017_val, as its ISIC2017_test row: the external figure a front page may
    quote, chosen without looking at the test set; None without both rows."""
    if not len(external):
        return None
    alone = external[external["extra_sources"] == ""]
    chooser = alone[alone["group"] == "ISIC2017_val"]
    if not len(chooser):
        return None
    chosen = chooser.loc[chooser["balanced_accuracy"].idxmax(), "run"]
    rows = alone[(alone["group"] == "ISIC2017_test") & (alone["run"] == chosen)]
    return rows.iloc[0] if len(rows) else None
