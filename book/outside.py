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
from pskinlib.info import CLASSES, TRACK_SHORT_NAMES
from pskinlib.runs import RunRecord, find_runs

from . import in_checkout
from .format import interval, intervals
from .runs import EXTERNAL_EVALUATION

SETS = (INTERNAL, "ISIC2017_val", "ISIC2017_test", POOLED)
# The reference folders of book/results: the adopted recipe, its two-source variant, the methods comparison.
ADOPTED, TWO_SOURCE, METHODS = "external", "external-two-source", "external-methods"
# The bar a from-scratch HAM10000 model is held to on ISIC 2017's test set: balanced accuracy, and melanoma
# sensitivity at the threshold chosen on HAM10000 validation for 80 %; and the internal floor it must keep.
EXTERNAL_BAR = {"balanced_accuracy": 0.65, "melanoma_sensitivity": 0.60, "internal_balanced_accuracy": 0.70}


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
                                      f"of {len(counts)} set(s).")}


def reference_runs(reference_dir: str | os.PathLike) -> list[Path]:
    """The reference runs with external evaluations (``external*`` folders); a record in two folders counts once."""
    return list({r.path.name: r.path for folder in sorted(in_checkout(reference_dir).glob("external*"))
                 for r in find_runs(folder)}.values())


def external_table(runs, evaluation: str = EXTERNAL_EVALUATION) -> pd.DataFrame:
    """One row per (run, group) of each run's external evaluation (``pskin evaluate RUN --external``): balanced
    accuracy with its interval, melanoma recall and AUC, the melanoma sensitivity and specificity at the
    HAM10000-validation threshold for 80 % sensitivity, and the calibration error before and after temperature
    scaling. Runs without that evaluation are left out."""
    rows = []
    for run, result in _evaluated(runs, evaluation):
        config = run.recorded["config"]
        for group, report in result.metrics["groups"].items():
            ci = report["bootstrap"]["balanced_accuracy"]
            point = report.get("melanoma_operating_points", {}).get("80%", {})
            rows.append({
                "run": run.name, "path": str(run.path), "model": config["model"], "method": _method(config),
                "group": group, "images": report["n"], "pretrained": config.get("pretrained", False),
                "class_weights": config.get("class_weights"), "split_seed": config.get("split_seed", 0),
                "extra_sources": ",".join(config.get("extra_sources", ())),
                "balanced_accuracy": report["balanced_accuracy"], "balanced_accuracy_low": ci["low"],
                "balanced_accuracy_high": ci["high"],
                "recall_mel": report["per_class"]["mel"]["recall"] if "mel" in report["per_class"] else None,
                "auc_mel": report["roc_auc_ovr"]["per_class"].get("mel"), "macro_auc": report["roc_auc_ovr"]["macro"],
                "sensitivity_at_80": (point.get("sensitivity") or {}).get("estimate"),
                "specificity_at_80": (point.get("specificity") or {}).get("estimate"),
                "ece": report["calibration"]["ece"], "ece_calibrated": report["calibration"]["ece_calibrated"],
                **{f"recall_{code}": v["recall"] for code, v in report["per_class"].items()},
            })
    return pd.DataFrame(rows)


def _method(config: dict) -> str:
    """A reference run's method (from its recorded config): its notes up to their first colon, as
    ``experiments/external_methods.py`` writes them; empty for a run without such notes."""
    return config.get("notes", "").partition(":")[0].strip()


def inside_outside(built, reference_dir: str | os.PathLike) -> pd.DataFrame:
    """:func:`external_table` of this build's runs (``origin`` "this build") and of the reference runs
    ("reference"), each row named in ``who``: a reference run by its method and split seed, a run of this build by
    its model, track and class weights."""
    side = pd.concat([external_table([r.path for r in built]).assign(origin="this build"),
                      external_table(reference_runs(reference_dir)).assign(origin="reference")], ignore_index=True)
    if not len(side):
        return side

    def who(row) -> str:
        if row.origin == "reference" and row.method:
            return f"reference: {row.method}, split {row.split_seed}"
        return f"{row.origin}: {row.model} ({TRACK_SHORT_NAMES[bool(row.pretrained)]}), {row.class_weights}"

    return side.assign(who=[who(row) for row in side.itertuples()])


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
    adopted = {p.name for f in (ADOPTED, TWO_SOURCE) for p in (in_checkout(reference_dir) / f).glob("*/")}
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


def _label(run: RunRecord) -> str:
    """A reference run by its method, a run of this build by its model."""
    config = run.recorded["config"]
    return _method(config) or config["model"]


def _evaluated(runs, evaluation: str = EXTERNAL_EVALUATION):
    """(run, its ``evaluation``) for the runs that have one."""
    for run in map(RunRecord, runs):
        result = run.evaluations().get(evaluation)
        if result is not None:
            yield run, result


def melanoma_fates(runs) -> pd.DataFrame:
    """What each run called each collection's melanomas: one row per (run, group), the share of its melanomas
    given each class."""
    rows = []
    for run, result in _evaluated(runs):
        label = _label(run)
        for group, report in result.metrics["groups"].items():
            classes = report["classes"]
            if "mel" not in classes:
                continue
            row = report["confusion_matrix"][classes.index("mel")]
            total = max(sum(row), 1)
            rows.append({"run": label, "images": group, "melanomas": sum(row),
                         **{f"called {CLASSES[c].name}": row[i] / total for i, c in enumerate(classes)}})
    return pd.DataFrame(rows)


def melanoma_fate_finding(fates: pd.DataFrame) -> dict[str, Any]:
    """``melanoma_fate``: outside HAM10000, the mean share of melanomas found and where the others went."""
    if not len(fates):
        return {"melanoma_fate": Markdown("no run here has an external evaluation")}
    outside = fates[fates["images"] != INTERNAL]
    found = "called " + CLASSES["mel"].name
    wrong = outside.drop(columns=["run", "images", "melanomas", found]).mean()
    return {"melanoma_fate": Markdown(
        f"outside HAM10000, a run found on average {outside[found].mean():.0%} of the melanomas and called most of "
        f"the rest {wrong.idxmax().removeprefix('called ')} ({wrong.max():.0%} of all melanomas, against "
        f"{wrong.min():.0%} {wrong.idxmin().removeprefix('called ')})")}


def operating_points(runs) -> pd.DataFrame:
    """Melanoma sensitivity and specificity with their intervals at the HAM10000-validation thresholds, one row
    per (run, group, target)."""
    rows = []
    for run, result in _evaluated(runs):
        label = _label(run)
        for group, report in result.metrics["groups"].items():
            for target, point in report.get("melanoma_operating_points", {}).items():
                rows.append({"run": label, "images": group, "target on validation": target,
                             **{kind: interval(point[kind]["estimate"], point[kind]["low"], point[kind]["high"])
                                for kind in ("sensitivity", "specificity")}})
    return pd.DataFrame(rows)


def calibration_table(side: pd.DataFrame) -> pd.DataFrame:
    """Expected calibration error before and after temperature scaling, one row per (run, group)."""
    return side[["origin", "model", "group", "ece", "ece_calibrated"]].rename(
        columns={"group": "images", "ece": "ECE", "ece_calibrated": "ECE after temperature scaling"})


def reliability_curves(runs) -> tuple[dict[str, list[dict]], str] | None:
    """The reliability diagram's inputs for the first of ``runs`` with an external evaluation: each group's
    reliability bins and the title; None when no run has one."""
    run, result = next(_evaluated(runs), (None, None))
    if run is None:
        return None
    groups = {group: report["calibration"]["reliability"] for group, report in result.metrics["groups"].items()}
    return groups, f"{run.recorded['config']['model']}: reliability"


def errors_note(run: RunRecord | None, predictions: pd.DataFrame | None) -> dict[str, Any]:
    """``errors_note``: whose most confident errors the external gallery shows, and on how many images."""
    if run is None or predictions is None:
        return {"errors_note": Markdown("No external images in this build, so no gallery.")}
    return {"errors_note": Markdown(f"The gallery shows {run.recorded['config']['model']}'s most confident errors "
                                    f"on {len(predictions)} external images.")}


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
                   "description": record.recorded["config"].get("notes", "").partition(":")[2].strip(),
                   "evaluation": name, "views": record.evaluation(name).metrics["tta"] or "none",
                   "split_seed": first["split_seed"], "extra_sources": first["extra_sources"]}
            row.update({f"{part} {key}": by_set.loc[part, column] for part in sets if part in by_set.index
                        for key, column in _SET_COLUMNS.items()})
            last = sets[-1]
            if last in by_set.index:
                row.update({"ece": by_set.loc[last, "ece"], "ece_calibrated": by_set.loc[last, "ece_calibrated"]})
            rows.append(row)
    return pd.DataFrame(rows)


def reference_methods(reference_dir: str | os.PathLike, folder: str, **kwargs) -> pd.DataFrame:
    """:func:`methods_table` of the reference runs in ``reference_dir/folder``."""
    return methods_table([r.path for r in find_runs(in_checkout(reference_dir) / folder)], **kwargs)


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
    groups = {g for run in two["run"] for g in RunRecord(in_checkout(reference_dir) / TWO_SOURCE / run)
              .evaluation(EXTERNAL_EVALUATION).metrics["groups"]}
    unseen = sorted(groups - {*SETS[:3], POOLED})
    return {"two_source_note": Markdown("collections seen by neither source in these records: "
                                        + (", ".join(unseen) if unseen else "none (only ISIC 2017 was at hand)"))}


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


def external_bar(methods, test_set: str = "ISIC2017_test", internal: str = "HAM10000 test",
                 bar: dict | None = None) -> dict[str, Any]:
    """The mean over split seeds of a recipe's rows (:func:`methods_table`, one evaluation, HAM10000-only training)
    against :data:`EXTERNAL_BAR`, as numbers and a phrase that says which parts are met."""
    bar = bar or EXTERNAL_BAR
    if not len(methods):
        return {"bar_finding": Markdown("not measured: no reference record of the adopted recipe")}
    seeds = len(methods)
    values = {"balanced_accuracy": float(methods[f"{test_set} balanced_accuracy"].mean()),
              "melanoma_sensitivity": float(methods[f"{test_set} sensitivity_at_80"].mean()),
              "internal_balanced_accuracy": float(methods[f"{internal} balanced_accuracy"].mean())}
    parts = [f"{test_set} balanced accuracy {values['balanced_accuracy']:.3f} (bar {bar['balanced_accuracy']:.2f}"
             f", {'met' if values['balanced_accuracy'] >= bar['balanced_accuracy'] else 'not met'})",
             f"melanoma sensitivity {values['melanoma_sensitivity']:.3f} at the HAM10000-validation threshold (bar "
             f"{bar['melanoma_sensitivity']:.2f}, "
             f"{'met' if values['melanoma_sensitivity'] >= bar['melanoma_sensitivity'] else 'not met'})",
             f"{internal} balanced accuracy {values['internal_balanced_accuracy']:.3f} (floor "
             f"{bar['internal_balanced_accuracy']:.2f}, "
             f"{'kept' if values['internal_balanced_accuracy'] >= bar['internal_balanced_accuracy'] else 'lost'})"]
    return {"bar_seeds": seeds, **{f"bar_{k}": v for k, v in values.items()},
            "bar_finding": Markdown(f"over {seeds} split seed(s): " + "; ".join(parts))}


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
