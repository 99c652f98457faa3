"""The sentences of a chapter's findings, computed from its run records, so that none outlives the build it
describes.

Each function returns ``{name: value}`` for myst-nb's ``glue``: numbers (shown with ``{glue:text}`name:.3f```) and
short Markdown phrases whose words depend on the result (``{glue:md}`name```), such as whether a difference is more
than chance or whether one of the paper's claims holds in this build.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from IPython.display import Markdown

from pskinlib.info import CLASSES, MELANOMA, PAPER_REPORTED
from pskinlib.runs import RunRecord

from .format import counted, interval

SIGNIFICANCE = 0.05


def run_numbers(run, prefix: str = "") -> dict[str, Any]:
    """A run's headline numbers: test balanced accuracy and its interval, accuracy, the majority baseline, the
    hardest class, per-class recall, the epoch kept, and what training cost (minutes, device)."""
    record = RunRecord.open(run, finished=True)
    metrics, recorded = record.metrics, record.recorded
    test = metrics["test"]
    ci = test["bootstrap"]["balanced_accuracy"]
    recalls = {code: values["recall"] for code, values in test["per_class"].items()}
    hardest = min((code for code, recall in recalls.items() if recall is not None), key=recalls.get)
    values = {
        "balanced_accuracy": test["balanced_accuracy"], "low": ci["low"], "high": ci["high"],
        "balanced_accuracy_ci": Markdown(interval(test["balanced_accuracy"], ci["low"], ci["high"])),
        "accuracy": test["accuracy"], "baseline_accuracy": metrics["majority_baseline"]["accuracy"],
        "baseline_balanced_accuracy": metrics["majority_baseline"]["balanced_accuracy"],
        "margin": test["balanced_accuracy"] - metrics["majority_baseline"]["balanced_accuracy"],
        "hardest": Markdown(f"{CLASSES[hardest].name} (recall {recalls[hardest]:.3f})"),
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


def paper_claims(table, prefix: str = "") -> dict[str, Any]:
    """Whether the paper's three findings hold in a table of runs (``book.runs.runs_table``): about 65 % average
    accuracy (our balanced accuracy), about 80 % for nevus against seborrheic keratosis, melanoma the hardest
    class. Phrases say *holds* or *does not hold* with the numbers behind them. The run the first claim is judged
    by is the one best on its validation images; its test figure is then reported (choosing the best of many runs by
    their test score would flatter it). ``prefix`` goes before every name (a chapter judging two sets of runs)."""
    if not len(table):
        return {f"{prefix}claim_average": Markdown("cannot be checked: no run"),
                f"{prefix}claim_nv_bkl": Markdown("cannot be checked"),
                f"{prefix}claim_hardest": Markdown("cannot be checked"), f"{prefix}best_model": Markdown("no run"),
                f"{prefix}runs": 0}
    best = table.loc[table["val_balanced_accuracy"].idxmax()]
    reported = PAPER_REPORTED["average_accuracy"]
    reached = (f"the run best on validation (validation balanced accuracy {best['val_balanced_accuracy']:.3f}) "
               f"reached {best['balanced_accuracy']:.3f} on its test images")
    average = (f"holds: {reached}" if best["balanced_accuracy"] >= reported - 0.05 else
               f"does not hold here: {reached}")
    nv_bkl = table["nv_vs_bkl"].dropna()
    pair = (f"{nv_bkl.median():.3f} is the median over {counted(len(nv_bkl), 'run')}" if len(nv_bkl)
            else "no run has both")
    hardest = (table["hardest_class"] == MELANOMA).mean()
    hardest_phrase = (f"holds in {hardest:.0%} of the runs" if hardest >= 0.5 else
                      f"holds in only {hardest:.0%} of the runs; the hardest class was most often "
                      f"{CLASSES[table['hardest_class'].mode()[0]].name}")
    values = {"claim_average": Markdown(average), "claim_nv_bkl": Markdown(pair),
              "claim_hardest": Markdown(hardest_phrase), "best_model": Markdown(best["model"]),
              "best_balanced_accuracy": best["balanced_accuracy"], "runs": len(table)}
    return {f"{prefix}{key}": value for key, value in values.items()}


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


def ablation_verdicts(runs: dict, tests, scheme: str) -> dict[str, Any]:
    """``verdicts``: for each network, what ``scheme`` changed and McNemar's verdict (``report.tables
    .ablation_tests``); in the unweighted chapter (``scheme`` "none"), each run's balanced accuracy and melanoma
    recall."""
    if scheme != "none":
        phrases = [f"for {row['network']} the {scheme} weights changed test balanced accuracy by {row['gain']:+.3f}; "
                   f"on the images only one of the two runs got right, {row['verdict']}" for _, row in tests.iterrows()]
    else:
        phrases = []
        for (model, track, _), run in runs.items():
            numbers = run_numbers(run)
            phrases.append(f"{model} ({track}) without weights reached a test balanced accuracy of "
                           f"{numbers['balanced_accuracy_ci'].data}, with recall {numbers['recall_mel']:.3f} for "
                           "melanoma")
    return {"verdicts": Markdown("; ".join(phrases) + ".")}


def time_to_accuracy(times) -> dict[str, Any]:
    """``time_to_accuracy``: per run of ``report.tables.time_to_accuracy``, its minutes to 0.70 and to 0.75
    validation balanced accuracy, or that it never got there (with its best)."""
    if not len(times):
        return {"time_to_accuracy": Markdown("not measured: no reference records")}

    def reached(row, threshold: float) -> str:
        minutes = row[f"minutes to {threshold:.2f}"]
        return (f"{minutes:.1f} min to {threshold:.2f}" if pd.notna(minutes)
                else f"never {threshold:.2f} (best {row['best validation balanced accuracy']:.3f})")

    return {"time_to_accuracy": Markdown("; ".join(f"{row['run']}: {reached(row, 0.70)}, {reached(row, 0.75)}"
                                                   for _, row in times.iterrows()))}


def pretraining(comparisons) -> dict[str, Any]:
    """``pretraining``: what pretraining changed in each set of ``report.tables.track_comparisons``: test balanced
    accuracy, melanoma recall and training minutes, with McNemar's verdict."""
    phrases = [f"in {row['origin']}, pretraining moved test balanced accuracy from "
               f"{row['scratch balanced_accuracy']:.3f} to {row['pretrained balanced_accuracy']:.3f} and melanoma "
               f"recall from {row['scratch recall_mel']:.3f} to {row['pretrained recall_mel']:.3f}, for "
               f"{row['pretrained train_minutes']:.1f} instead of {row['scratch train_minutes']:.1f} training "
               f"minutes; {row['verdict']}"
               for _, row in comparisons.iterrows()]
    return {"pretraining": Markdown("; ".join(phrases) + "." if phrases else
                                    "no set of runs here holds both tracks on the same test images.")}


def fusion_gain(fused) -> dict[str, Any]:
    """``fusion``: the range of what age, sex and body site added over the refitted image-only head
    (``report.tables.fusion_table``)."""
    if not len(fused):
        return {"fusion": Markdown("no run of this build was fused")}
    gain = fused["+ metadata"] - fused["head refitted, images"]
    return {"fusion": Markdown(f"the metadata moved test balanced accuracy by {gain.min():+.3f} to {gain.max():+.3f} "
                               f"over the refitted image-only head ({counted(len(fused), 'run')})")}


def seeds_finding(table, wall_minutes: list[float] | None = None, prefix: str = "seeds_") -> dict[str, Any]:
    """A recipe over split seeds (``book.runs.runs_table`` rows, one per seed): the means and the range of its test
    balanced accuracy, its mean macro AUC and its longest run. ``wall_minutes``: each run's recorded wall time, start
    to written record (training minutes alone are used where it is missing)."""
    if not len(table):
        return {f"{prefix}finding": Markdown("not measured: no reference record")}
    minutes = list(wall_minutes) if wall_minutes else list(table["train_minutes"])
    values = {"balanced_accuracy": float(table["balanced_accuracy"].mean()),
              "macro_auc": float(table["macro_auc"].mean()), "minutes": float(max(minutes))}
    parts = [f"test balanced accuracy {values['balanced_accuracy']:.3f} (from {table['balanced_accuracy'].min():.3f} "
             f"to {table['balanced_accuracy'].max():.3f})", f"macro AUC {values['macro_auc']:.3f}",
             f"at most {values['minutes']:.1f} minutes a run"]
    return {f"{prefix}count": len(table), **{f"{prefix}{k}": v for k, v in values.items()},
            f"{prefix}finding": Markdown(f"mean over {counted(len(table), 'split seed')}: " + "; ".join(parts))}


def quality_bar_range(quality_bar) -> Markdown:
    """What the quality bar's settings reached (``book.tables.quality_bar_table``): the range of their headline test
    balanced accuracies. No setting is singled out: choosing one by its test score would flatter it."""
    headline = quality_bar[quality_bar["headline"]]
    return Markdown(f"the headline results of its {len(headline)} settings ranged from "
                    f"{headline['balanced_accuracy'].min():.3f} to {headline['balanced_accuracy'].max():.3f} test "
                    "balanced accuracy")


def class_weight_verdicts(tests, split_seed: int = 0) -> dict[str, Any]:
    """``weights_verdict``: for each network of ``book.tables.procedure_tests`` on ``split_seed``, what the inverse
    class weights changed (test accuracy, balanced accuracy, melanoma recall) and McNemar's verdict."""
    rows = tests[tests["split_seed"].eq(split_seed)] if len(tests) else tests
    phrases = [f"for {row['network']}, inverse class weights moved test accuracy from {row['accuracy none']:.3f} to "
               f"{row['accuracy inverse']:.3f}, balanced accuracy from {row['balanced_accuracy none']:.3f} to "
               f"{row['balanced_accuracy inverse']:.3f} and melanoma recall from {row['recall_mel none']:.3f} to "
               f"{row['recall_mel inverse']:.3f}; on the images only one of the two runs got right, {row['verdict']}"
               for _, row in rows.iterrows()]
    return {"weights_verdict": Markdown("; ".join(phrases) + "." if phrases else
                                        "cannot be judged yet: no network has both procedures recorded.")}


def split_repeats(tests) -> dict[str, Any]:
    """``repeats``: how far the class weights' effect on test balanced accuracy moves with the split alone, for each
    network of ``book.tables.procedure_tests`` recorded on more than one split seed."""
    phrases = []
    for network, part in tests.groupby("network", sort=False) if len(tests) else ():
        if len(part) < 2:
            continue
        gain = part["balanced_accuracy inverse"] - part["balanced_accuracy none"]
        significant = int((part["p_value"] < SIGNIFICANCE).sum())
        phrases.append(f"for {network}, over {counted(len(part), 'split seed')}, the inverse weights changed test "
                       f"balanced accuracy by {gain.min():+.3f} to {gain.max():+.3f}, a difference more than chance "
                       f"(McNemar, p < {SIGNIFICANCE}) on {significant} of them")
    return {"repeats": Markdown("; ".join(phrases) + "." if phrases else
                                "not measured yet: no network has both procedures on more than one split seed.")}
