"""The findings' rules: which method is adopted, and whether a recipe meets its bar, computed from records' rows."""

import pandas as pd

from book.findings import seeds_finding
from book.outside import external_bar, method_choice


def method_row(method, val, internal, low, *, evaluation="external", extra="", test=0.5, sensitivity=0.5):
    return {"method": method, "evaluation": evaluation, "extra_sources": extra,
            "ISIC2017_val balanced_accuracy": val, "HAM10000 test balanced_accuracy": internal,
            "HAM10000 test low": low, "ISIC2017_test balanced_accuracy": test,
            "ISIC2017_test sensitivity_at_80": sensitivity}


def test_the_best_method_on_validation_that_keeps_the_internal_score_is_adopted():
    table = pd.DataFrame([method_row("baseline", 0.55, 0.70, 0.67),
                          method_row("sog", 0.60, 0.69, 0.66),
                          method_row("greedy", 0.70, 0.60, 0.57),  # best outside, but costs inside
                          method_row("sog", 0.99, 0.70, 0.67, evaluation="external-dihedral"),  # other evaluation
                          method_row("two", 0.99, 0.70, 0.67, extra="ISIC2017_train")])  # not external
    choice = method_choice(table)
    assert choice["chosen_method"].data == "sog"
    verdicts = {v["method"]: v for v in choice["method_verdicts"]}
    assert verdicts["greedy"]["helps"] and verdicts["greedy"]["costs"]
    assert "two" not in verdicts
    assert "0.550" in choice["methods_finding"].data and "sog is adopted" in choice["methods_finding"].data


def test_the_baseline_stays_when_nothing_helps():
    table = pd.DataFrame([method_row("baseline", 0.55, 0.70, 0.67), method_row("crop", 0.50, 0.71, 0.68)])
    choice = method_choice(table)
    assert choice["chosen_method"].data == "baseline"
    assert "no method scored higher" in choice["methods_finding"].data
    assert method_choice(pd.DataFrame())["method_verdicts"] == []


def test_the_external_bar_says_which_parts_are_met():
    rows = pd.DataFrame([method_row("sog", 0.6, 0.72, 0.7, test=0.66, sensitivity=0.55),
                         method_row("sog", 0.6, 0.70, 0.7, test=0.68, sensitivity=0.59)])
    bar = external_bar(rows)
    assert abs(bar["bar_balanced_accuracy"] - 0.67) < 1e-9 and bar["bar_seeds"] == 2
    text = bar["bar_finding"].data
    assert "0.670 (bar 0.65, met)" in text and "(bar 0.60, not met)" in text and "kept" in text
    assert "not measured" in external_bar(pd.DataFrame())["bar_finding"].data


def test_the_seeds_finding_uses_the_wall_minutes_and_the_means():
    table = pd.DataFrame({"balanced_accuracy": [0.74, 0.78, 0.76], "macro_auc": [0.90, 0.92, 0.91],
                          "train_minutes": [7.0, 7.5, 8.0]})
    found = seeds_finding(table, wall_minutes=[9.0, 16.0, 9.5])
    assert abs(found["seeds_balanced_accuracy"] - 0.76) < 1e-9 and found["seeds_minutes"] == 16.0
    text = found["seeds_finding"].data
    assert "3 split seed(s)" in text and "not met" in text and "exceeded" in text
    assert seeds_finding(table)["seeds_minutes"] == 8.0
