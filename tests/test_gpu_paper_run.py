"""The GPU paper run, rehearsed on the CPU: the device's one command (experiments/gpu_run.sh) with a tiny budget,
what it leaves under a fake $OUT checked against the device tool's limits and unpacked as after a real run, a kill
in the middle, and a model that fails while the other finishes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ham_rows, write_ham_folder

from book.tables import gpu_run_table
from experiments import gpu_pack as pack_gpu_data
from experiments import gpu_paper_run
from pskinlib.data.ham10000 import load_ham10000
from pskinlib.data.splits import make_split, split_hash
from pskinlib.info import PAPER_TABLE1
from pskinlib.io import read_json
from pskinlib.runs import GPU_RUN_SUMMARY, RunRecord

ROOT = Path(__file__).resolve().parents[1]
# What the device tool brings back from $OUT (/work/.library/device/README.md, Limits).
MAX_FILES, MAX_FILE_BYTES, MAX_DEPTH, NAME = 8, 16 * 2**20, 2, re.compile(r"[A-Za-z0-9._-]+")
TINY = ("--device cpu --models resnet18 --weights none,inverse --size 32 --epochs 2 --max-train-batches 2 "
        "--probe-steps 2 --max-minutes 6 --snapshot-seconds 1")


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


def _device_command(pack: Path, out: Path, arguments: str = TINY, timeout: int = 585) -> tuple[list, dict]:
    """The device's command, as the README gives it, pointed at a fake $OUT and shrunk by PSKIN_GPU_ARGS."""
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "PSKIN_GPU_PACK": str(pack),
           "PSKIN_GPU_ARGS": arguments, "PSKIN_GPU_TIMEOUT": str(timeout), "OMP_NUM_THREADS": "1"}
    return ["bash", str(ROOT / "experiments" / "gpu_run.sh")], env


def _check_device_limits(out: Path) -> None:
    files = [p for p in out.rglob("*") if p.is_file()]
    assert 0 < len(files) <= MAX_FILES, files
    for path in files:
        relative = path.relative_to(out)
        assert len(relative.parts) - 1 <= MAX_DEPTH and all(NAME.fullmatch(part) for part in relative.parts), path
        assert path.stat().st_size <= MAX_FILE_BYTES and not path.is_symlink(), path


def _summary_in(archive: Path) -> dict:
    with tarfile.open(archive) as tar:  # a complete archive: every member reads
        names = tar.getnames()
        member = tar.extractfile(f"gpu/{GPU_RUN_SUMMARY}")
        import json

        return {"names": names, **json.loads(member.read())}


@pytest.mark.slow
def test_the_device_command_rehearsed_on_the_cpu_returns_every_record_within_the_limits(pack, tmp_path):
    out = tmp_path / "OUT"
    out.mkdir()
    command, env = _device_command(pack, out)
    finished = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    _check_device_limits(out)
    assert sorted(p.name for p in out.iterdir()) == ["gpu_paper_run.log", "gpu_paper_run.tar.gz"]
    assert "complete" in (out / "gpu_paper_run.log").read_text()

    # Back here: the archive goes where the book reads it, exactly as after a real run.
    results = tmp_path / "book-results"
    unpacked = subprocess.run([sys.executable, "-m", "experiments.gpu_paper_run", "unpack",
                               str(out / "gpu_paper_run.tar.gz"), "--into", str(results)], cwd=ROOT,
                              capture_output=True, text=True)
    assert unpacked.returncode == 0, unpacked.stderr
    summary = read_json(results / "gpu" / GPU_RUN_SUMMARY)
    assert summary["status"] == "complete" and summary["gpu_result"] is False
    assert summary["schedule"] == "in turn" and "not a GPU result" in summary["note"]
    assert summary["pack"]["split_hash"] == pack_gpu_data.read_pack(pack)["info"]["split_hash"]
    for entry in summary["models"]:
        run = RunRecord.open(results / "gpu" / entry["records"], finished=True)
        assert entry["status"] == "complete" and entry["epochs_run"] == 2 and entry["raw_images_per_second"] > 0
        assert not list(run.path.rglob("*.pt"))  # checkpoints stay on the device
        recorded = run.recorded
        assert recorded["config"]["protocol"] == "paper" and recorded["config"]["checkpoints"] == "best_in_memory"
        assert recorded["data"]["split_hash"] == summary["pack"]["split_hash"]  # the packed split, not a new one
        assert run.metrics["test"]["n"] == sum(PAPER_TABLE1["test"].values())
        assert entry["test"]["balanced_accuracy"] == run.metrics["test"]["balanced_accuracy"]
        assert entry["fusion"]["status"] == "complete"
        assert entry["fusion"]["test"]["balanced_accuracy"] == run.fusion(True).metrics["test"]["balanced_accuracy"]
    assert [(e["model"], e["class_weights"]) for e in summary["models"]] == [("resnet18", "none"),
                                                                            ("resnet18", "inverse")]
    table = gpu_run_table(results / "gpu")  # what the performance appendix shows
    assert set(table["class_weights"]) == {"none", "inverse"} and (table["epochs"] == 2).all()


@pytest.mark.slow
def test_a_kill_in_the_middle_still_leaves_a_readable_archive(pack, tmp_path):
    # The shell's timeout: SIGTERM to the whole command, which stops its models and writes the archive.
    out = tmp_path / "timed-out"
    command, env = _device_command(pack, out, TINY.replace("--epochs 2", "--epochs 50"), timeout=25)
    finished = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 124, finished.stdout[-2000:]
    _check_device_limits(out)
    summary = _summary_in(out / "gpu_paper_run.tar.gz")
    assert summary["status"].startswith("stopped by signal")
    # A harder kill (SIGKILL: nothing can clean up) as soon as epochs are being recorded: the last snapshot reads.
    out = tmp_path / "killed"
    command, env = _device_command(pack, out, TINY.replace("--epochs 2", "--epochs 50"))
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and "epoch 1/" not in _text(out / "gpu_paper_run.log"):
            time.sleep(0.5)
        time.sleep(2)  # a snapshot or two of the running model
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    summary = _summary_in(out / "gpu_paper_run.tar.gz")
    assert summary["status"] == "running" and summary["models"][0]["status"] == "running"
    assert any(name.endswith("history.csv") for name in summary["names"])


def _text(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


@pytest.mark.slow
def test_a_model_that_fails_is_recorded_and_the_next_still_runs(pack, tmp_path, monkeypatch):
    start_model = gpu_paper_run._start_model

    def one_crashes(entry, budget, args, scratch, device, log):
        if entry["model"] == "efficientnet_b0":  # a crash with no result at all, as an out-of-memory kill would leave
            return subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"], stdout=subprocess.PIPE,
                                    text=True)
        return start_model(entry, budget, args, scratch, device, log)

    monkeypatch.setattr(gpu_paper_run, "_start_model", one_crashes)
    monkeypatch.chdir(ROOT)
    archive = tmp_path / "gpu_paper_run.tar.gz"
    # The crash first, then the cheaper network (the rehearsal's cost is the one that trains).
    arguments = TINY.replace("--models resnet18 --weights none,inverse", "--models efficientnet_b0,resnet18 "
                             "--weights inverse")
    assert gpu_paper_run.main(["run", "--pack", str(pack), "--archive", str(archive), *arguments.split(),
                               "--no-fusion"]) == 1
    summary = _summary_in(archive)
    failed, finished = summary["models"]
    assert failed["model"] == "efficientnet_b0" and failed["status"] == "failed" and "exit code 3" in failed["error"]
    assert finished["model"] == "resnet18" and finished["status"] == "complete"
    assert summary["status"] == "finished; not complete: efficientnet_b0-inverse"


def test_bad_arguments_and_a_missing_pack_are_reported(pack, tmp_path, capsys, monkeypatch):
    archive = ["--archive", str(tmp_path / "a.tar.gz")]
    assert gpu_paper_run.main(["run", "--pack", str(pack), "--models", "resnet7", *archive]) == 2
    assert "--models" in capsys.readouterr().err
    monkeypatch.delenv("OUT", raising=False)
    assert gpu_paper_run.main(["run", "--pack", str(pack)]) == 2
    assert "$OUT" in capsys.readouterr().err
    # A pack that is not there: the archive still comes back and says so.
    assert gpu_paper_run.main(["run", "--pack", str(tmp_path / "none.npz"), "--device", "cpu", *archive]) == 1
    summary = _summary_in(tmp_path / "a.tar.gz")
    assert summary["status"] == "failed" and "make gpu-pack" in summary["error"]
