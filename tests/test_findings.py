"""The findings' rules: which method is adopted, and what a recipe reached over its split seeds, from records' rows."""

import pandas as pd

from book.findings import seeds_finding
from book.outside import adopted_finding, method_choice


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


def test_the_adopted_recipe_is_stated_by_its_means_and_range_over_seeds():
    rows = pd.DataFrame([method_row("sog", 0.6, 0.72, 0.7, test=0.66, sensitivity=0.55),
                         method_row("sog", 0.6, 0.70, 0.7, test=0.68, sensitivity=0.59)])
    found = adopted_finding(rows)
    assert abs(found["adopted_balanced_accuracy"] - 0.67) < 1e-9 and found["adopted_seeds"] == 2
    text = found["adopted_finding"].data
    assert "ISIC2017_test balanced accuracy of 0.670 (from 0.660 to 0.680)" in text and "sensitivity of 0.570" in text
    assert "bar" not in text and "met" not in text  # what was measured, not a pass mark
    assert "not measured" in adopted_finding(pd.DataFrame())["adopted_finding"].data


def test_the_seeds_finding_uses_the_wall_minutes_and_the_means():
    table = pd.DataFrame({"balanced_accuracy": [0.74, 0.78, 0.76], "macro_auc": [0.90, 0.92, 0.91],
                          "train_minutes": [7.0, 7.5, 8.0]})
    found = seeds_finding(table, wall_minutes=[9.0, 16.0, 9.5])
    assert abs(found["seeds_balanced_accuracy"] - 0.76) < 1e-9 and found["seeds_minutes"] == 16.0
    text = found["seeds_finding"].data
    assert "3 split seeds" in text and "(from 0.740 to 0.780)" in text and "at most 16.0 minutes" in text
    assert "bar" not in text and "met" not in text
    assert seeds_finding(table)["seeds_minutes"] == 8.0


def test_counts_in_sentences_take_the_singular_or_the_plural():
    from book.format import counted

    assert (counted(1, "split seed"), counted(3, "split seed"), counted(0, "run")) == ("1 split seed", "3 split seeds",
                                                                                      "0 runs")
    assert counted(1200, "image") == "1,200 images" and counted(2, "child", "children") == "2 children"


def test_minutes_show_one_decimal_and_a_dash_where_missing():
    import numpy as np

    from book.format import DASH, minutes

    assert minutes([7.686, np.float64(10.04), 3, None, float("nan")]) == ["7.7", "10.0", "3.0", DASH, DASH]
