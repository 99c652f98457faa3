"""A run record reads each of its files once, gives its config typed, and reads a file again after writing it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import pskinlib.runs as runs
from pskinlib.runs import RunRecord
from pskinlib.train.config import TrainConfig

RECORD = next(p.parent for p in sorted((Path(__file__).resolve().parents[1] / "book" / "results").rglob("config.json")))


def test_a_record_reads_each_file_once(monkeypatch):
    reads = []
    real_json, real_csv = runs.read_json, pd.read_csv
    monkeypatch.setattr(runs, "read_json", lambda path: reads.append(Path(path).name) or real_json(path))
    monkeypatch.setattr(runs.pd, "read_csv", lambda path, *a, **k: reads.append(Path(path).name) or real_csv(path))
    run = RunRecord.open(RECORD)
    for _ in range(3):
        seen = (run.metrics, run.recorded, run.classes, run.history, run.config)
    assert seen[4].model == seen[1]["config"]["model"]
    assert sorted(reads) == ["config.json", "history.csv", "metrics.json"]


def test_the_config_is_typed_and_equals_what_the_run_recorded():
    run = RunRecord.open(RECORD)
    assert isinstance(run.config, TrainConfig)
    recorded = run.recorded["config"]
    assert run.config.model == recorded["model"] and run.config.image_size == recorded["image_size"]
    assert run.config_with(device="cpu").device == "cpu" and run.config.profile == recorded["profile"]


def test_a_file_written_through_the_record_is_read_again(tmp_path):
    run = RunRecord(tmp_path)
    run.write_metrics({"n": 1})
    assert run.metrics == {"n": 1}
    run.write_metrics({"n": 2})
    assert run.metrics == {"n": 2}
    run.write_history(pd.DataFrame({"epoch": [1]}))
    assert len(run.history) == 1
    run.write_history(pd.DataFrame({"epoch": [1, 2]}))
    assert len(run.history) == 2


def test_predictions_and_the_split_are_read_once_and_each_caller_gets_its_own_copy(small_run, monkeypatch):
    from pskinlib import runs as runs_module
    from pskinlib.runs import RunRecord

    run_dir, _ = small_run
    record = RunRecord.open(run_dir)
    reads = []
    original = runs_module.read_csv
    monkeypatch.setattr(runs_module, "read_csv", lambda *a, **k: reads.append(a[0]) or original(*a, **k))
    first = record.predictions("test")
    first["predicted"] = "changed"  # a caller's change stays its own
    second = record.predictions("test")
    assert len(reads) == 1 and (second["predicted"] != "changed").all()
    split = record.split()
    split.iloc[0, 0] = "changed"
    assert record.split().iloc[0, 0] != "changed"
    record.write_predictions(second, "test")  # a write is read again when next asked
    record.predictions("test")
    assert len(reads) == 2
