"""The sentences of a chapter's findings, computed from its run records, so that none outlives the build it
describes.

Each function returns ``{name: value}`` for myst-nb's ``glue``: numbers (shown with ``{glue:text}`name:.3f```) and
short Markdown phrases whose words depend on the result (``{glue:md}`name```), such as whether a difference is more
than chance or whether one of the paper's claims holds in this build.
"""

from __future__ import annotations

from typing import Any

from IPython.display import Markdown

from ..info import CLASSES, PAPER_REPORTED
from ..runs import RunRecord
from .format import interval

SIGNIFICANCE = 0.05


def _name(code: str) -> str:
    return CLASSES[code].name


def run_numbers(run, prefix: str = "") -> dict[str, Any]:
    """A run's headline numbers: test balanced accuracy and its interval, accuracy, the majority baseline, the
    hardest class, per-class recall, the epoch kept, and what training cost (minutes, device)."""
    record = RunRecord.open(run, finished=True)
    metrics, recorded = record.metrics, record.recorded
    test = metrics["test"]
    ci = test["bootstrap"]["balanced_accuracy"]
    recalls = {code: values["recall"] for code, values in test["per_class"].items()}
    hardest = min(recalls, key=recalls.get)
    values = {
        "balanced_accuracy": test["balanced_accuracy"], "low": ci["low"], "high": ci["high"],
        "balanced_accuracy_ci": Markdown(interval(test["balanced_accuracy"], ci["low"], ci["high"])),
        "accuracy": test["accuracy"], "baseline_accuracy": metrics["majority_baseline"]["accuracy"],
        "baseline_balanced_accuracy": metrics["majority_baseline"]["balanced_accuracy"],
        "margin": test["balanced_accuracy"] - metrics["majority_baseline"]["balanced_accuracy"],
        "hardest": Markdown(f"{_name(hardest)} (recall {recalls[hardest]:.3f})"),
        "best_epoch": metrics["best_epoch"], "epochs": len(record.history),
        "minutes": float(record.history["seconds"].sum() / 60),
        "device": Markdown(recorded["environment"]["device_name"]), "test_images": test["n"],
        **{f"recall_{code}": value for code, value in recalls.items()},
    }
    return {f"{prefix}{key}": value for key, value in values.items()}


def comparison(mcnemar: dict, a: str, b: str, prefix: str = "") -> dict[str, Any]:
    """McNemar's result as numbers and as a verdict phrase: which of ``a`` and ``b`` was right on more of the test
    images that only one of them got right, and whether that is more than chance at the 5 % level."""
    more = a if mcnemar["b"] > mcnemar["c"] else b if mcnemar["c"] > mcnemar["b"] else None
    significant = mcnemar["p_value"] < SIGNIFICANCE
    verdict = (f"more than chance (p = {mcnemar['p_value']:.3g})" if significant
               else f"within what chance gives (p = {mcnemar['p_value']:.2g})")
    lead = f"{more} was right on more of them" if more else "they were tied"
    return {f"{prefix}only_a": mcnemar["b"], f"{prefix}only_b": mcnemar["c"], f"{prefix}p_value": mcnemar["p_value"],
            f"{prefix}verdict": Markdown(f"{lead}, a difference {verdict}")}


def paper_claims(table) -> dict[str, Any]:
    """Whether the paper's three findings hold in a table of runs (``report.tables.runs_table``): about 65 % average
    accuracy (our balanced accuracy), about 80 % for nevus against seborrheic keratosis, melanoma the hardest
    class. Phrases say *holds* or *does not hold* with the numbers behind them."""
    if not len(table):
        return {"claim_average": Markdown("cannot be checked: no run"), "claim_nv_bkl": Markdown("cannot be checked"),
                "claim_hardest": Markdown("cannot be checked")}
    best = table.loc[table["balanced_accuracy"].idxmax()]
    reported = PAPER_REPORTED["average_accuracy"]
    average = (f"holds: the best run reached {best['balanced_accuracy']:.3f}"
               if best["balanced_accuracy"] >= reported - 0.05 else
               f"does not hold here: the best run reached {best['balanced_accuracy']:.3f}")
    nv_bkl = table["nv_vs_bkl"].dropna()
    pair = (f"{nv_bkl.median():.3f} is the median over {len(nv_bkl)} runs" if len(nv_bkl) else "no run has both")
    hardest = (table["hardest_class"] == "mel").mean()
    hardest_phrase = (f"holds in {hardest:.0%} of the runs" if hardest >= 0.5 else
                      f"holds in only {hardest:.0%} of the runs; the hardest class was most often "
                      f"{_name(table['hardest_class'].mode()[0])}")
    return {"claim_average": Markdown(average), "claim_nv_bkl": Markdown(pair),
            "claim_hardest": Markdown(hardest_phrase), "best_model": Markdown(best["model"]),
            "best_balanced_accuracy": best["balanced_accuracy"], "runs": len(table)}


def cost(runs) -> Markdown:
    """What a chapter's runs cost: their training minutes and the device they ran on."""
    records = [RunRecord.open(r) for r in runs]
    if not records:
        return Markdown("This chapter trains nothing.")
    seconds = sum(float(r.history["seconds"].sum()) for r in records)
    spent = f"{seconds / 60:.1f} minutes" if seconds >= 60 else f"{seconds:.0f} seconds"
    devices = sorted({r.recorded["environment"]["device_name"] for r in records})
    runs = "The run of this chapter" if len(records) == 1 else f"The {len(records)} runs of this chapter"
    return Markdown(f"{runs} trained for {spent}{' in all' if len(records) > 1 else ''}, on {', '.join(devices)} "
                    "(a run already made with the same configuration is reused, not trained again).")


# The bar a from-scratch HAM10000 model is held to on ISIC 2017's test set: balanced accuracy, and melanoma
# sensitivity at the threshold chosen on HAM10000 validation for 80 %; and the internal floor it must keep.
EXTERNAL_BAR = {"balanced_accuracy": 0.65, "melanoma_sensitivity": 0.60, "internal_balanced_accuracy": 0.70}


def method_choice(methods, baseline: str = "baseline", choose_on: str = "ISIC2017_val",
                  internal: str = "HAM10000 test", evaluation: str = "external") -> dict[str, Any]:
    """The rule that adopts a method (``report.tables.methods_table``'s rows of one evaluation): it *helps* when
    its balanced accuracy on ``choose_on`` beats the baseline's, and it *costs* when its internal balanced accuracy
    falls below the lower end of the baseline's interval. The choice is the best on ``choose_on`` among those that
    help and cost nothing, else the baseline. Nothing is chosen on ISIC2017_test."""
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
    """The mean over split seeds of a recipe's rows (``methods_table``, one evaluation, HAM10000-only training)
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


# What a pretrained run of at most 15 CPU minutes is held to: mean over split seeds of the lesion-grouped test
# balanced accuracy and macro AUC.
TRANSFER_BAR = {"balanced_accuracy": 0.80, "macro_auc": 0.93, "minutes": 15.0}


def seeds_finding(table, wall_minutes: list[float] | None = None, bar: dict | None = None,
                  prefix: str = "seeds_") -> dict[str, Any]:
    """A recipe over split seeds (``report.tables.runs_table`` rows, one per seed) against ``bar`` (default
    :data:`TRANSFER_BAR`): the means, the range, and a phrase that says which parts are met. ``wall_minutes``: each
    run's recorded wall time, start to written record (training minutes alone are used where it is missing)."""
    bar = bar or TRANSFER_BAR
    if not len(table):
        return {f"{prefix}finding": Markdown("not measured: no reference record")}
    minutes = list(wall_minutes) if wall_minutes else list(table["train_minutes"])
    values = {"balanced_accuracy": float(table["balanced_accuracy"].mean()),
              "macro_auc": float(table["macro_auc"].mean()), "minutes": float(max(minutes))}
    parts = [f"test balanced accuracy {values['balanced_accuracy']:.3f} (from {table['balanced_accuracy'].min():.3f} "
             f"to {table['balanced_accuracy'].max():.3f}; bar {bar['balanced_accuracy']:.2f}, "
             f"{'met' if values['balanced_accuracy'] >= bar['balanced_accuracy'] else 'not met'})",
             f"macro AUC {values['macro_auc']:.3f} (bar {bar['macro_auc']:.2f}, "
             f"{'met' if values['macro_auc'] >= bar['macro_auc'] else 'not met'})",
             f"at most {values['minutes']:.1f} minutes a run (limit {bar['minutes']:.0f}, "
             f"{'kept' if values['minutes'] <= bar['minutes'] else 'exceeded'})"]
    return {f"{prefix}count": len(table), **{f"{prefix}{k}": v for k, v in values.items()},
            f"{prefix}finding": Markdown(f"mean over {len(table)} split seed(s): " + "; ".join(parts))}
