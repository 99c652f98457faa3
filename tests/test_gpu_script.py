"""The GPU paper run's scripts, tried on the CPU: the pack round-trips and remakes the paper split, and one tiny
epoch writes genuine run records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ham_rows, write_ham_folder

from pskinlib.data.ham10000 import load_ham10000
from pskinlib.data.splits import make_split, split_hash
from pskinlib.info import PAPER_TABLE1
from pskinlib.io import read_json
from pskinlib.report.tables import gpu_run_table
from pskinlib.train.config import make_config

ROOT = Path(__file__).resolve().parents[1]


from experiments import gpu_pack as pack_gpu_data  # noqa: E402
from experiments import gpu_paper_run  # noqa: E402


@pytest.fixture(scope="module")
def paper_sized_ham(tmp_path_factory) -> Path:
    """A fake HAM10000 with enough lesions for Table 1's distinct test images (small 40x30 JPEGs)."""
    rows = ham_rows({"mel": 220, "nv": 300, "bkl": 220}, images_per_lesion=1)
    return write_ham_folder(tmp_path_factory.mktemp("paper-ham"), rows, size=(40, 30))


@pytest.fixture(scope="module")
def pack(paper_sized_ham, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pack") / "pack.npz"
    pack_gpu_data.pack(paper_sized_ham, path)
    return path


def test_pack_unpacks_to_a_folder_that_remakes_the_same_paper_split(paper_sized_ham, pack, tmp_path):
    contents = pack_gpu_data.unpack(pack, tmp_path / "ham")
    original = load_ham10000(paper_sized_ham)
    unpacked = load_ham10000(tmp_path / "ham")
    assert len(unpacked) == len(original) == contents["info"]["images"]
    first = original.table["path"].iloc[0]
    assert (tmp_path / "ham" / "images" / Path(first).name).read_bytes() == Path(first).read_bytes()
    split = make_split(unpacked, "paper", seed=0)
    assert split_hash(split) == split_hash(make_split(original, "paper", seed=0)) == contents["info"]["split_hash"]
    assert split.groupby("split").size().to_dict() == {s: sum(c.values()) for s, c in PAPER_TABLE1.items()}


def test_pack_refuses_to_exceed_its_size_limit(paper_sized_ham, tmp_path):
    with pytest.raises(ValueError, match="max_megabytes"):
        pack_gpu_data.pack(paper_sized_ham, tmp_path / "pack.npz", max_megabytes=0.01)
    assert not list(tmp_path.iterdir())


def test_a_damaged_pack_is_refused(pack, tmp_path):
    with np.load(pack) as arrays:
        damaged = {name: arrays[name].copy() for name in arrays.files}
    damaged["jpeg"][100] ^= 0xFF
    np.savez(tmp_path / "damaged.npz", **damaged)
    with pytest.raises(ValueError, match="damaged"):
        pack_gpu_data.read_pack(tmp_path / "damaged.npz")


def test_plan_keeps_all_epochs_when_they_fit_and_cuts_them_alike_when_not():
    estimates = {"a": {"epoch": 2.0, "final": 5.0, "setup": 5.0}, "b": {"epoch": 1.0, "final": 5.0, "setup": 5.0}}
    assert gpu_paper_run.plan_epochs(100, estimates, seconds_left=1000) == {"a": 100, "b": 100}
    assert gpu_paper_run.plan_epochs(100, estimates, seconds_left=20 + 3 * 30) == {"a": 30, "b": 30}
    assert gpu_paper_run.plan_epochs(100, estimates, seconds_left=1) == {"a": 1, "b": 1}
    for name in estimates:  # the metadata fusion after each run is planned in like the final evaluation
        estimates[name]["fusion"] = 15.0
    assert gpu_paper_run.plan_epochs(100, estimates, seconds_left=20 + 30 + 3 * 30) == {"a": 30, "b": 30}


@pytest.mark.slow
def test_one_tiny_epoch_on_the_cpu_writes_run_records_and_a_summary(pack, tmp_path):
    out = tmp_path / "gpu"
    command = [sys.executable, "-m", "experiments.gpu_paper_run", "--pack", str(pack), "--out", str(out),
               "--device", "cpu", "--models", "resnet18", "--size", "32", "--epochs", "1",
               "--max-train-batches", "2", "--probe-steps", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert finished.returncode == 0, finished.stderr[-3000:]

    run = out / "resnet18-32px"
    names = {p.name for p in run.iterdir()}
    assert {"config.json", "split.csv", "history.csv", "metrics.json", "predictions_val.csv",
            "predictions_test.csv"} <= names
    assert not any(name.endswith(".pt") for name in names)  # checkpoints stay in the scratch folder
    config = read_json(run / "config.json")
    assert config["config"]["profile"] == "paper" and config["config"]["protocol"] == "paper"
    assert config["config"]["image_size"] == 32 and config["config"]["epochs"] == 1
    assert config["data"]["split_hash"] == pack_gpu_data.read_pack(pack)["info"]["split_hash"]
    history = pd.read_csv(run / "history.csv")
    assert len(history) == 1 and history["images_per_second"].iloc[0] > 0
    assert read_json(run / "metrics.json")["test"]["n"] == sum(PAPER_TABLE1["test"].values())

    summary = json.loads((out / "gpu_paper_run.json").read_text())
    assert summary["gpu_result"] is False and "not a GPU result" in summary["note"]
    (model,) = summary["models"]
    assert model["status"] == "complete" and model["epochs_run"] == 1 and model["records"] == "resnet18-32px"
    assert model["raw_images_per_second"] > 0 and model["images_per_second_median"] > 0
    assert len(model["epoch_seconds"]) == len(model["epoch_wall_seconds"]) == 1
    # The run's head refitted with age, sex and body site travels with the record, and the summary quotes it.
    fused = read_json(run / "fusion-metadata" / "metrics.json")
    head_files = {p.name for p in (run / "fusion-metadata").iterdir()}
    assert {"fusion.json", "metrics.json", "predictions_test.csv"} <= head_files
    assert model["fusion"]["status"] == "complete"
    assert model["fusion"]["test"]["balanced_accuracy"] == fused["test"]["balanced_accuracy"]
    assert fused["image_only_test_balanced_accuracy"] == read_json(run / "metrics.json")["test"]["balanced_accuracy"]

    (row,) = gpu_run_table(out / "gpu_paper_run.json").to_dict("records")  # what the performance appendix shows
    assert row["model"] == "resnet18" and row["status"] == "complete" and row["gpu_result"] is False
    assert row["epochs"] == 1 and row["device"] == "cpu" and row["under_target"] is False
    assert row["test_balanced_accuracy"] == read_json(run / "metrics.json")["test"]["balanced_accuracy"]
    assert row["+ metadata"] == fused["test"]["balanced_accuracy"]
    assert row["minutes"] == pytest.approx(model["seconds_total"] / 60)
    assert gpu_run_table(tmp_path / "no-such.json").empty


def test_a_run_that_would_overrun_the_budget_stops_after_an_epoch(tiny_ham, tmp_path):
    config = make_config("smoke", data_dir=str(tiny_ham), image_size=16, epochs=3, batch_size=16, quiet=True,
                         tta=False)
    result = gpu_paper_run.run_model(config, tmp_path / "runs", deadline=time.perf_counter(), final_seconds=1.0)
    assert result["status"] == "stopped" and "epoch 1 of 3" in result["reason"]
    assert len(pd.read_csv(result["run_dir"] / "history.csv")) == 1


def test_bad_arguments_are_refused_with_a_message(pack, tmp_path, capsys):
    assert gpu_paper_run.main(["--pack", str(pack), "--models", "resnet7"]) == 2
    assert "--models" in capsys.readouterr().err
    assert gpu_paper_run.main(["--pack", str(pack), "--device", "cpu"]) == 2
    assert "reference GPU results" in capsys.readouterr().err
    assert gpu_paper_run.main(["--pack", "no-such-pack.npz", "--device", "cpu", "--out", str(tmp_path)]) == 2
    assert "pack" in capsys.readouterr().err
