"""Faults and hostile input: killed runs resume exactly, crafted checkpoints are refused, run folders are never
shared, and the CSV reader and parameter checks hold up under generated input."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pskinlib.data.ham10000 import read_metadata
from pskinlib.errors import CheckpointError, DataError
from pskinlib.info import ALL_CLASSES
from pskinlib.runs import RunRecord, load_checkpoint, save_checkpoint
from pskinlib.train.config import make_config
from pskinlib.train.trainer import resume

ROOT = Path(__file__).resolve().parents[1]

TRAIN_SCRIPT = """
import sys
from pskinlib.train.config import make_config
from pskinlib.train.trainer import train
config = make_config("smoke", data_dir=sys.argv[1], image_size=16, epochs=4, batch_size=8, warmup_epochs=0.5,
                     quiet=True, deterministic=True, tta=False, threads=1, max_train_batches=None)
print(train(config, runs_dir=sys.argv[2]), flush=True)
"""


def _run_training(data_dir, runs_dir, env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, str(data_dir), str(runs_dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_state(tiny_ham, tmp_path):
    env = {**os.environ, "PSKIN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    straight = _run_training(tiny_ham, tmp_path / "straight", env)
    out, err = straight.communicate(timeout=600)
    assert straight.returncode == 0, err[-2000:]
    straight_run = Path(out.strip().splitlines()[-1])

    victim = _run_training(tiny_ham, tmp_path / "killed", env)
    deadline = time.time() + 600
    history = None
    while time.time() < deadline:  # wait until two epochs are recorded, then kill during the third
        runs = list((tmp_path / "killed").glob("*/history.csv"))
        if runs and len(pd.read_csv(runs[0])) >= 2:
            history = runs[0]
            break
        time.sleep(0.05)
    assert history is not None, "the run never finished two epochs"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_run = history.parent
    assert not (killed_run / "metrics.json").exists(), "the run finished before it could be killed"
    load_checkpoint(killed_run / "last.pt")  # the checkpoint on disk is whole

    resumed = resume(killed_run)
    a, b = load_checkpoint(straight_run / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


# The hand-made raw pickle uses Python's default protocol, which torch's safe unpickler warns about before refusing it.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_a_crafted_checkpoint_is_refused_without_running_its_code(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        torch.save({"model": {}, "payload": Exploit()}, handle)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not marker.exists()


def test_a_corrupted_checkpoint_gives_a_clear_error(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(1000)}, "epoch": 1})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="No checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_a_checkpoint_write_that_fails_leaves_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "epoch": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, {"model": {"w": torch.ones(3)}, "epoch": 2})
    assert load_checkpoint(path)["epoch"] == 1


def test_runs_started_at_once_never_share_a_folder(tmp_path):
    folders, barrier = [], threading.Barrier(8)

    def start():
        barrier.wait()
        folders.append(RunRecord.create(tmp_path, "same-name").path)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(folders)) == 8


# ---------------------------------------------------------------------------------------------------------------
# Property-based: the metadata reader either returns a clean table or raises DataError, never anything else.

ids = st.text(alphabet="ABCDEFGHIJ0123456789_", min_size=1, max_size=8)
rows = st.lists(st.tuples(ids, ids, st.sampled_from(list(ALL_CLASSES) + ["xyz", ""]),
                          st.one_of(st.none(), st.floats(allow_nan=True), st.text(max_size=4))),
                min_size=1, max_size=20)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows, bom=st.booleans(), extra=st.booleans())
def test_metadata_reader_returns_clean_tables_or_a_clear_error(tmp_path, rows, bom, extra):
    table = pd.DataFrame(rows, columns=["lesion_id", "image_id", "dx", "age"])
    if extra:
        table["notes"] = "x"
    path = tmp_path / "HAM10000_metadata.csv"
    table.to_csv(path, index=False, encoding="utf-8-sig" if bom else "utf-8")
    try:
        result = read_metadata(path)
    except DataError as error:
        assert "HAM10000_metadata.csv" in str(error)
        return
    assert result["image_id"].is_unique
    assert set(result["dx"]) <= set(ALL_CLASSES)
    assert (result.groupby("lesion_id")["dx"].nunique() == 1).all()
    assert result["age"].dtype.kind == "f"


@settings(max_examples=80, deadline=None, derandomize=True)
@given(epochs=st.one_of(st.integers(-5, 500), st.floats(allow_nan=True), st.text(max_size=3), st.none()),
       image_size=st.one_of(st.integers(-10, 2000), st.booleans()),
       lr=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-1, 1)))
def test_config_validation_accepts_only_valid_values(epochs, image_size, lr):
    try:
        config = make_config("quick", epochs=epochs, image_size=image_size, lr=lr)
    except ValueError as error:
        assert any(name in str(error) for name in ("epochs", "image_size", "lr", "warmup_epochs"))
        return
    assert isinstance(config.epochs, int) and config.epochs >= 1 and not isinstance(config.image_size, bool)
    assert 16 <= config.image_size <= 1024 and config.lr > 0
