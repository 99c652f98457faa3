"""The study's experiment on a CPU (``experiments/paper_cpu.py``) and the results chapter's view of it: the queue,
the manifest the chapter finds its records by, the McNemar comparison of the two procedures, and the two figures."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from conftest import ham_rows, write_ham_folder  # noqa: E402

from book import BookBuildError, figures, findings, tables  # noqa: E402
from experiments import paper_cpu  # noqa: E402
from pskinlib.io import read_json, write_json  # noqa: E402
from pskinlib.runs import PAPER_CPU_SUMMARY, RunRecord  # noqa: E402
from pskinlib.train.config import PROFILES, make_config  # noqa: E402


def test_the_cpu_profile_is_the_paper_profile_but_for_the_image_size():
    paper, cpu = PROFILES["paper"], PROFILES["paper_cpu"]
    assert {k for k in paper if paper[k] != cpu.get(k)} == {"image_size"}
    assert cpu["image_size"] < paper["image_size"] and cpu["epochs"] == 100 and cpu["protocol"] == "paper"


def test_the_queue_runs_the_study_s_four_runs_first_and_then_the_repeats_of_the_cheaper_network():
    queue = paper_cpu.queue()
    names = [slot.name for slot in queue]
    assert len(set(names)) == len(names)
    study = {(s.model, s.class_weights) for s in queue[:4]}
    assert study == {(m, w) for m in ("resnet101", "efficientnet_b0") for w in ("none", "inverse")}
    assert all(s.split_seed == 0 for s in queue[:4])
    assert {(s.model, s.split_seed) for s in queue[4:]} == {("efficientnet_b0", 1), ("efficientnet_b0", 2)}


@pytest.fixture(scope="module")
def study_runs_folder(tmp_path_factory):
    """Two tiny runs standing for one network's two procedures, trained in the queue's folders (same data, same
    split seed, so the same test images), then exported with the manifest as the experiment does."""
    from pskinlib.train.trainer import train

    root = tmp_path_factory.mktemp("study")
    data = write_ham_folder(root / "ham", ham_rows({"mel": 8, "nv": 16, "bkl": 8}))
    slots = [paper_cpu.Slot("resnet18", weights, 0) for weights in ("none", "inverse")]
    for slot in slots:
        folder = root / "runs" / slot.name
        train(make_config("smoke", data_dir=str(data), image_size=16, epochs=2, batch_size=8, quiet=True, tta=False,
                          threads=1, class_weights=slot.class_weights), runs_dir=folder)
        write_json(folder / paper_cpu.WALL, {"seconds": 90.0})
    out = root / "paper-cpu"
    rows = paper_cpu.export_finished(root / "runs", out, slots)
    return out, rows, root


def test_finished_runs_are_exported_once_and_listed_with_their_wall_time_and_machine(study_runs_folder):
    out, rows, root = study_runs_folder
    assert [row["slot"] for row in rows] == ["resnet18-none-split0", "resnet18-inverse-split0"]
    assert all(row["wall_minutes"] == 1.5 and row["machine"]["cpu_model"] for row in rows)
    assert not list(out.rglob("*.pt"))  # records, never weights
    slots = [paper_cpu.Slot("resnet18", w, 0) for w in ("none", "inverse")]
    again = paper_cpu.export_finished(root / "runs", out, slots)  # a second call exports nothing new
    assert again == rows and len(read_json(out / PAPER_CPU_SUMMARY)["runs"]) == 2


def test_the_chapter_finds_the_study_s_runs_by_its_manifest(study_runs_folder, tmp_path):
    out, rows, _ = study_runs_folder
    study = tables.study_runs(out)
    assert list(study["slot"]) == [row["slot"] for row in rows]
    assert list(study["label"]) == ["resnet18, no class weights", "resnet18, inverse class weights"]
    assert len(tables.study_view(study)) == 2
    assert tables.study_runs(tmp_path).empty  # no manifest: nothing recorded, not an error


def test_a_run_the_manifest_lists_but_the_checkout_lacks_is_a_build_error_naming_it(study_runs_folder, tmp_path):
    out, rows, _ = study_runs_folder
    write_json(tmp_path / PAPER_CPU_SUMMARY, {"runs": rows})  # the manifest without its records
    with pytest.raises(BookBuildError, match=rows[0]["run"]):
        tables.study_runs(tmp_path)


def test_the_procedures_are_compared_on_the_test_images_only_one_of_them_got_right(study_runs_folder):
    out, _, _ = study_runs_folder
    study = tables.study_runs(out)
    tests = tables.procedure_tests(study)
    assert len(tests) == 1
    none, inverse = (RunRecord(study.set_index("class_weights").loc[w, "path"]) for w in ("none", "inverse"))
    a, b = none.predictions("test"), inverse.predictions("test")
    right_a, right_b = (a["predicted"] == a["true"]).to_numpy(), (b["predicted"] == b["true"]).to_numpy()
    assert tests.loc[0, "only none"] == int(np.sum(right_a & ~right_b))
    assert tests.loc[0, "only inverse"] == int(np.sum(right_b & ~right_a))
    assert tests.loc[0, "balanced_accuracy none"] == none.metrics["test"]["balanced_accuracy"]
    verdict = findings.class_weight_verdicts(tests)["weights_verdict"].data
    assert verdict.startswith("for resnet18, inverse class weights moved test accuracy from")
    assert "not measured yet" in findings.split_repeats(tests)["repeats"].data  # one split seed only
    view = tables.procedure_tests_view(tests)
    assert view.loc[0, "balanced accuracy"].count("→") == 1


def test_the_class_weights_effect_over_split_seeds_is_a_range_with_its_significant_count():
    tests = pd.DataFrame({"network": ["efficientnet_b0"] * 3, "split_seed": [0, 1, 2],
                          "balanced_accuracy none": [0.60, 0.62, 0.58], "balanced_accuracy inverse": [0.65, 0.60, 0.66],
                          "p_value": [0.01, 0.5, 0.2]})
    phrase = findings.split_repeats(tests)["repeats"].data
    assert "over 3 split seeds" in phrase and "-0.020 to +0.080" in phrase and "on 1 of them" in phrase


def test_the_study_s_figures_draw_both_measures_and_a_panel_per_network(study_runs_folder):
    out, _, _ = study_runs_folder
    pairs = tables.study_pairs(tables.study_runs(out))
    histories = {f"{m}, {p}": run.history for m, runs in pairs.items() for p, run in runs.items()}
    fig3 = figures.epoch_panels(histories, {"val_accuracy": "validation accuracy",
                                            "val_balanced_accuracy": "validation balanced accuracy"},
                                marks={"paper": 0.65})
    assert [ax.get_title() for ax in fig3.axes] == ["validation accuracy", "validation balanced accuracy"]
    assert all(len(ax.get_lines()) == len(histories) + 1 for ax in fig3.axes)  # a curve per run and the mark
    recalls = pd.concat([tables.study_recalls(pairs), tables.study_recalls(pairs).assign(network="other")])
    fig4 = figures.per_class_panels(recalls, "network", paper_average=0.65)
    assert [ax.get_title() for ax in fig4.axes] == ["resnet18", "other"]
    assert all(len(ax.patches) == 2 * 3 for ax in fig4.axes)  # two procedures by three classes
