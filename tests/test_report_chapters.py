"""The chapters' tables and findings, on the committed reference records: what the book states follows its rules
(best runs chosen on validation, two-source runs never counted as external) and its numbers come from the records."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.bench import ratio_ranges, ratio_table
from book import dataset, findings, tables
from book import outside as external
from pskinlib.data.ham10000 import load_ham10000
from pskinlib.data.splits import make_split, split_summary
from pskinlib.info import PAPER_TABLE1
from pskinlib.runs import find_runs

REFERENCES = Path(__file__).resolve().parents[1] / "book" / "results"


@pytest.fixture(scope="module")
def side():
    return external.inside_outside(external.judged_runs([], REFERENCES))


def test_the_front_page_picks_each_track_s_best_run_on_validation_and_reports_its_test_score(tmp_path):
    headline = tables.headline(tmp_path / "no-runs", REFERENCES)
    folders = {p.parent.parent for p in REFERENCES.rglob("*/metrics.json")} - {REFERENCES}
    runs = pd.concat([tables.runs_table(f) for f in folders], ignore_index=True)
    for pretrained, what in ((False, "from scratch"), (True, "ImageNet-pretrained")):
        track = runs[runs["pretrained"] == pretrained]
        chosen = track.loc[track["val_balanced_accuracy"].idxmax()]
        row = headline[headline["what"].str.contains(what)].iloc[0]
        assert row["value"] == chosen["balanced_accuracy"] and row["low"] == chosen["balanced_accuracy_low"]
    outside = headline[headline["chapter"] == "05_external"].iloc[0]
    table = external.external_table(external.reference_runs(REFERENCES))
    alone = table[table["extra_sources"] == ""]
    val = alone[alone["group"] == "ISIC2017_val"]
    chosen = val.loc[val["balanced_accuracy"].idxmax(), "run"]
    expected = alone[(alone["run"] == chosen) & (alone["group"] == "ISIC2017_test")]["balanced_accuracy"].iloc[0]
    assert outside["value"] == expected
    view = tables.headline_view(headline)
    assert view["chapter"].str.startswith("<a href=").all() and len(view) == len(headline)


def test_the_external_gap_counts_only_runs_trained_on_ham10000_alone(side):
    alone = side[side["extra_sources"] == ""]
    outside = alone[alone["group"] == "ISIC2017_test"]
    assert len(outside) < len(side[side["group"] == "ISIC2017_test"])  # the two-source runs are left out
    gap = external.gap_finding(side)
    assert f"over the {len(outside)} HAM10000-only runs" in gap["gap"].data
    assert f"{outside['balanced_accuracy'].median():.3f}" in gap["gap"].data
    assert "reference runs" in gap["build_gap"].data  # no run of this build here
    shown = external.sets_table(side)
    assert len(shown) == side["who"].nunique() and shown["ISIC2017_test"].str.contains(r"\(0\.\d{3}–0\.\d{3}\)").all()
    dots = external.gap_dots(side, REFERENCES)
    assert set(dots["group"]) == {"HAM10000 test", "ISIC2017_test"}
    assert not set(dots["run"]) & {r.name for r in find_runs(REFERENCES / external.METHODS)} - {
        r.name for r in find_runs(REFERENCES / external.ADOPTED)}


def test_melanoma_fates_are_shares_of_each_set_s_melanomas(side):
    judged = external.judged_runs([], REFERENCES)
    assert len(judged) == len(external.reference_runs(REFERENCES))  # one label per run, never shared
    fates = external.melanoma_fates(judged)
    assert not fates.duplicated(["run", "images"]).any()  # every row names its run
    shares = fates.filter(like="called ")
    assert np.allclose(shares.sum(axis=1), 1.0) and (fates["melanomas"] > 0).all()
    found = fates[fates["images"] != "HAM10000 test"]["called melanoma"].mean()
    assert f"on average {found:.0%} of the melanomas" in external.melanoma_fate_finding(fates)["melanoma_fate"].data
    assert "no run" in external.melanoma_fate_finding(pd.DataFrame())["melanoma_fate"].data
    points = external.operating_points(judged)
    assert not points.duplicated(["run", "images", "target on validation"]).any()
    assert set(points["target on validation"]) == {"80%", "90%"}


def test_the_methods_views_keep_every_method_and_the_views_finding_compares_both_evaluations():
    methods = external.reference_methods(REFERENCES, external.METHODS)
    shown = external.methods_view(methods)
    assert len(shown) == len(methods) and "ISIC2017_val (chooses)" in shown.columns
    views = methods.pivot_table(index="method", columns="evaluation", values="ISIC2017_val balanced_accuracy")
    gain = (views["external-dihedral"] - views["external"]).mean()
    assert f"{gain:+.3f}" in external.views_finding(methods)["tta_finding"].data
    two = external.reference_methods(REFERENCES, external.TWO_SOURCE, evaluations=("external",))
    assert "only ISIC 2017" in external.unseen_finding(two, REFERENCES)["two_source_note"].data
    assert external.views_finding(pd.DataFrame())["tta_finding"].data.startswith("Test-time views were not")


def test_the_results_tables_label_every_reference_run_and_compare_the_tracks_on_the_same_images(tmp_path):
    sets = tables.book_runs(tmp_path / "no-runs", REFERENCES)
    assert not len(sets["this build"]) and not any(name.startswith("reference external") for name in sets)
    everything = pd.concat([t for t in sets.values() if len(t)], ignore_index=True)
    assert everything["label"].is_unique
    comparisons = tables.track_comparisons(sets)
    assert len(comparisons)
    for _, row in comparisons.iterrows():  # each set's best of each track, chosen on validation
        table = sets[row["origin"]]
        pretrained = table[table["pretrained"]]
        chosen = pretrained.loc[pretrained["val_balanced_accuracy"].idxmax()]
        assert row["pretrained balanced_accuracy"] == chosen["balanced_accuracy"]
    phrase = findings.pretraining(comparisons)["pretraining"].data
    assert phrase.count("pretraining moved") == len(comparisons)
    transfer, walls = tables.split_seed_runs(REFERENCES / "transfer")
    assert len(walls) == len(transfer) == len(tables.split_seeds_view(transfer, walls))


def test_time_to_accuracy_says_when_a_run_never_got_there():
    times = pd.DataFrame([{"run": "a", "minutes to 0.70": 4.6, "minutes to 0.75": None,
                           "best validation balanced accuracy": 0.722}])
    text = findings.time_to_accuracy(times)["time_to_accuracy"].data
    assert text == "a: 4.6 min to 0.70, never 0.75 (best 0.722)"
    tracks, loops = tables.reference_tracks(REFERENCES)
    assert len(tracks) == 2 and len(loops) == 1
    assert len(tables.precision_check(REFERENCES)) == 2


def test_benchmark_ratios_are_listed_and_ranged():
    summary = {"trainer_vs_raw": {"a": 0.8, "b": 0.9}}
    assert [r["case"] for r in ratio_table(summary)] == ["a", "b"]
    ranges = ratio_ranges(summary)
    assert ranges["trainer_vs_raw_low"] == 0.8 and ranges["trainer_vs_raw_high"] == 0.9
    assert np.isnan(ranges["input_speedup_low"])


def test_the_data_chapter_tables_add_up(tiny_ham):
    images = load_ham10000(tiny_ham)
    classes = dataset.class_table(images)
    assert classes["images"].sum() == len(images)
    sizes = dataset.lesion_sizes(images)
    assert (sizes["images of the lesion"] * sizes["lesions"]).sum() == len(images)
    split = make_split(images, "grouped", seed=0)
    baseline = dataset.split_baseline(split, images.classes)
    assert baseline["class"] == "nv" and abs(baseline["balanced_accuracy"] - 1 / 3) < 1e-9


def test_table1_is_set_beside_the_paper_protocol_s_draw(real_data_dir):
    images = load_ham10000(real_data_dir)
    split = make_split(images, "paper", seed=0)
    table = dataset.table1_comparison(split, images.classes)
    assert len(table) == 9
    assert table["Table 1 (paper)"].sum() == sum(sum(v.values()) for v in PAPER_TABLE1.values())
    assert table["drawn here"].sum() == split_summary(split, images.classes)["images"].sum()


def test_no_sentence_picks_a_run_by_its_test_score(tmp_path):
    """The results chapter's claims judge the run best on validation and quote its test figure, on the committed
    records; the quality bar's sentence gives the range of its settings instead of picking one."""
    sets = tables.book_runs(tmp_path / "no-runs", REFERENCES)
    everything = pd.concat([t for t in sets.values() if len(t)], ignore_index=True)
    claims = findings.paper_claims(everything)
    by_validation = everything.loc[everything["val_balanced_accuracy"].idxmax()]
    by_test = everything.loc[everything["balanced_accuracy"].idxmax()]
    assert by_validation["run"] != by_test["run"]  # the records tell the two rules apart
    assert f"reached {by_validation['balanced_accuracy']:.3f} on its test images" in claims["claim_average"].data
    assert claims["best_model"].data == by_validation["model"]
    quality_bar = tables.quality_bar_table(REFERENCES / "quality-bar")
    headline = quality_bar[quality_bar["headline"]]
    text = findings.quality_bar_range(quality_bar).data
    assert f"from {headline['balanced_accuracy'].min():.3f} to {headline['balanced_accuracy'].max():.3f}" in text


def test_the_clinical_finding_counts_the_subgroups_below_their_run_s_estimate():
    from book import clinical

    table = pd.DataFrame([
        {"run": "a", "grouping": "all", "group": "all images", "balanced_accuracy_below_overall": None,
         "melanoma_recall_below_overall": None, "note": ""},
        {"run": "a", "grouping": "sex", "group": "male", "balanced_accuracy_below_overall": True,
         "melanoma_recall_below_overall": False, "note": ""},
        {"run": "a", "grouping": "sex", "group": "female", "balanced_accuracy_below_overall": None,
         "melanoma_recall_below_overall": None, "note": "too few images for an interval (n=12)"}])
    found = clinical.subgroup_finding(table)
    assert (found["subgroups_analysed"], found["subgroups_below"]) == (2, 1)
    assert "male (balanced accuracy)" in found["subgroup_finding"].data and "1 of its 2 subgroups" in \
        found["subgroup_finding"].data


def test_the_subgroup_view_names_each_subgroup_with_its_grouping_and_marks_intervals_below_the_overall_estimate():
    from book import clinical

    table = pd.DataFrame([
        {"run": "a", "grouping": "all", "group": "all images", "n": 100, "melanomas": 20,
         "balanced_accuracy": 0.7, "balanced_accuracy_low": 0.6, "balanced_accuracy_high": 0.8,
         "balanced_accuracy_below_overall": None, "melanoma_recall": 0.5, "melanoma_recall_low": 0.3,
         "melanoma_recall_high": 0.7, "melanoma_recall_below_overall": None, "note": ""},
        {"run": "a", "grouping": "body site", "group": "face", "n": 40, "melanomas": 12,
         "balanced_accuracy": 0.4, "balanced_accuracy_low": 0.3, "balanced_accuracy_high": 0.5,
         "balanced_accuracy_below_overall": True, "melanoma_recall": 0.45, "melanoma_recall_low": 0.2,
         "melanoma_recall_high": 0.7, "melanoma_recall_below_overall": False, "note": ""},
        {"run": "b", "grouping": "sex", "group": "male", "n": 3, "melanomas": 0,
         "balanced_accuracy": 1.0, "balanced_accuracy_low": float("nan"), "balanced_accuracy_high": float("nan"),
         "balanced_accuracy_below_overall": None, "melanoma_recall": float("nan"), "melanoma_recall_low": float("nan"),
         "melanoma_recall_high": float("nan"), "melanoma_recall_below_overall": None, "note": "too few"}])
    view = clinical.subgroup_view(table, "a")
    assert view["subgroup"].tolist() == ["all test images", "body site: face"]
    assert view["images"].tolist() == [100, 40] and view["note"].tolist() == ["", ""]
    balanced = view["balanced accuracy (95 % CI)"].tolist()
    assert balanced[1].endswith(", below") and not balanced[0].endswith("below")
    assert not view["melanoma recall (95 % CI)"].str.endswith("below").any()
