"""The CPU quality-bar script, tried on a tiny folder: members train side by side, the ensemble and the summary are
written, and bad arguments are refused before any training. The same for the plain-loop baseline it is compared
with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from book.tables import quality_bar_table

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "experiments.quality_bar"
PLAIN_LOOP = "experiments.plain_loop"


def run_script(*args: str, script: str = SCRIPT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", script, *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)


@pytest.mark.slow
@pytest.mark.parametrize("members, split_seed", [(1, 0), (2, 1)])
def test_runs_train_and_the_results_and_summary_are_written(members, split_seed, tiny_ham, tmp_path):
    # --precision fp32 also checks that a non-default precision names its own folder
    finished = run_script("--data-dir", str(tiny_ham), "--members", str(members), "--epochs", "2",
                          "--image-size", "16", "--precision", "fp32", "--split-seed", str(split_seed),
                          "--out", str(tmp_path))
    assert finished.returncode == 0, finished.stderr[-3000:]
    out = tmp_path / (f"{members}x2-16px-fp32" if split_seed == 0 else f"{members}x2-16px-split{split_seed}-fp32")

    summary = json.loads((out / "quality_bar.json").read_text())
    assert summary["members"] == members and summary["epochs"] == 2 and summary["wall_minutes"] > 0
    assert len(summary["commands"]) == members
    assert all(f"--seed {seed}" in c for seed, c in enumerate(summary["commands"]))
    assert all(("--threads 1" in c) == (members > 1) and "--precision fp32" in c for c in summary["commands"])
    assert summary["precision"] == "fp32" and summary["split_seed"] == split_seed
    assert all(f"--split-seed {split_seed}" in c for c in summary["commands"])
    for record in out.glob("member-*/*/config.json"):
        assert json.loads(record.read_text())["config"]["split_seed"] == split_seed
    names = [r["result"] for r in summary["results"]]
    members_names = [f"member-{seed}" for seed in range(members)]
    fused = [f"{m} + metadata{how}" for m in members_names for how in ("", ", lesion-averaged")]
    if members == 1:
        assert names == ["member-0", "member-0, lesion-averaged", *fused] and summary["headline"] == "member-0"
    else:
        assert names == [*members_names, "ensemble", "ensemble, lesion-averaged", *fused]
        assert summary["headline"] == "ensemble"
        ensemble = json.loads((out / "ensemble.json").read_text())
        row = next(r for r in summary["results"] if r["result"] == "ensemble")
        assert row["balanced_accuracy"] == ensemble["test"]["balanced_accuracy"]
        assert [m["run"].split("/")[0] for m in ensemble["members"]] == members_names
    for row in summary["results"]:
        assert row["balanced_accuracy_low"] <= row["balanced_accuracy"] <= row["balanced_accuracy_high"]
        assert {"recall_mel", "recall_nv", "recall_bkl"} <= set(row)
    assert sorted(p.parent.parent.name for p in out.glob("member-*/*/metrics.json")) == members_names
    for name in members_names:  # each member's fused head travels with its record
        fused_metrics = json.loads(next(out.glob(f"{name}/*/fusion-metadata/metrics.json")).read_text())
        row = next(r for r in summary["results"] if r["result"] == f"{name} + metadata")
        assert row["balanced_accuracy"] == fused_metrics["test"]["balanced_accuracy"]
    assert summary["metadata_fusion"] is True
    assert not list(out.rglob("*.pt"))  # checkpoints are not results
    assert "balanced accuracy" in finished.stdout

    table = quality_bar_table(tmp_path)  # what the results chapter shows
    assert list(table["result"]) == names and table["headline"].sum() == 1
    other_split = f", split seed {split_seed}" if split_seed else ""
    assert (table["setting"] == f"{members} x 2 epochs, 16 px, fp32{other_split}").all()
    assert (table["split_seed"] == split_seed).all()
    assert (table["wall_minutes"] == summary["wall_minutes"]).all()


def test_the_quality_bar_table_is_empty_without_a_result(tmp_path):
    assert quality_bar_table(tmp_path).empty


@pytest.mark.parametrize("args, message", [
    (["--members", "0"], "at least 1"),
    (["--epochs", "1"], "at least 2"),
    (["--image-size", "8"], "at least 16"),
    (["--precision", "fp16"], "--precision"),
    (["--split-seed", "-1"], "--split-seed"),
])
def test_bad_arguments_are_refused_up_front(args, message, tmp_path):
    finished = run_script(*args, "--out", str(tmp_path / "qb"))
    assert finished.returncode == 2 and message in finished.stderr


def test_an_earlier_result_is_not_replaced_without_overwrite(tmp_path):
    (tmp_path / "1x3-64px").mkdir()
    finished = run_script("--epochs", "3", "--out", str(tmp_path))
    assert finished.returncode == 2 and "--overwrite" in finished.stderr


@pytest.mark.slow
def test_the_plain_loop_baseline_scores_its_epochs_and_joins_the_table(tiny_ham, tmp_path):
    finished = run_script("--data-dir", str(tiny_ham), "--epochs", "3", "--image-size", "16", "--precision", "fp32",
                          "--split-seed", "1", "--out", str(tmp_path), script=PLAIN_LOOP)
    assert finished.returncode == 0, finished.stderr[-3000:]
    summary = json.loads((tmp_path / "plain-loop-3x16px-split1-fp32" / "quality_bar.json").read_text())
    assert summary["split_seed"] == 1
    history = summary["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    rows = {r["result"]: r for r in summary["results"]}
    by_balanced = rows["plain loop, epoch by val balanced accuracy"]
    by_accuracy = rows["plain loop, epoch by val accuracy (the paper's rule)"]
    assert summary["headline"] == by_balanced["result"] and rows["plain loop, last epoch"]["epoch"] == 3
    # Epochs are chosen on validation (first best on ties), and each row scores that epoch's test predictions.
    val_balanced = [h["val_balanced_accuracy"] for h in history]
    val_accuracy = [h["val_accuracy"] for h in history]
    assert by_balanced["epoch"] == 1 + val_balanced.index(max(val_balanced))
    assert by_accuracy["epoch"] == 1 + val_accuracy.index(max(val_accuracy))
    for row in summary["results"]:
        epoch = history[row["epoch"] - 1]
        assert row["balanced_accuracy"] == pytest.approx(epoch["test_balanced_accuracy"])
        assert row["accuracy"] == pytest.approx(epoch["test_accuracy"])
        assert row["balanced_accuracy_low"] <= row["balanced_accuracy"] <= row["balanced_accuracy_high"]
    table = quality_bar_table(tmp_path)
    assert set(table["setting"]) == {"plain loop (the yardstick), 3 epochs, 16 px, fp32, split seed 1"}
    assert (table["split_seed"] == 1).all()
    assert table["headline"].sum() == 1


@pytest.mark.parametrize("args, message", [(["--epochs", "0"], "at least 1"), (["--image-size", "8"], "at least 16"),
                                           (["--split-seed", "-2"], "--split-seed"),
                                           (["--image-size", "16", "--precision", "bf16"], "--image-size 17")])
def test_the_plain_loop_refuses_bad_arguments(args, message, tmp_path):
    finished = run_script(*args, "--out", str(tmp_path), script=PLAIN_LOOP)
    assert finished.returncode == 2 and message in finished.stderr


def test_the_committed_quality_bars_have_one_headline_each():
    table = quality_bar_table(ROOT / "book" / "results" / "quality-bar")
    assert {"1 x 18 epochs, 64 px", "2 x 8 epochs, 64 px",
            "plain loop (the yardstick), 8 epochs, 64 px"} <= set(table["setting"])
    assert table.groupby("setting")["headline"].sum().eq(1).all()
    # The grouped protocol's test split of the three classes (split seed 0: the book's split).
    assert (table.loc[table["split_seed"] == 0, "test_images"] == 1338).all()
