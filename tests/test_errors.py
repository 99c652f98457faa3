"""Every failure a user can cause ends, through the CLI, in one line ``pskin: error: ...`` and exit code 2 — no
traceback unless PSKIN_DEBUG=1 — and the line says what is wrong and where."""

from __future__ import annotations

import errno
import io
import os
import socket
import struct
import urllib.error
import zlib
from pathlib import Path

import pandas as pd
import pytest
from conftest import image_bytes_for, serving, zip_bytes
from PIL import Image

from pskinlib.cli import main
from pskinlib.errors import DataError, PskinError


def _error(capsys) -> str:
    """The one line the CLI printed to stderr (and nothing on stdout that looks like a traceback)."""
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("pskin: error: "), captured.err
    assert "Traceback" not in captured.out + captured.err
    return lines[0]


@pytest.fixture
def tiny_run(small_run):
    """A finished run of a few 16-px images, for the commands that read one (conftest's, trained once)."""
    return small_run


def test_bad_data_names_the_file(tiny_ham, capsys):
    table = pd.read_csv(tiny_ham / "HAM10000_metadata.csv").drop(columns="dx")
    table.to_csv(tiny_ham / "HAM10000_metadata.csv", index=False)
    assert main(["data", "summary", "--data-dir", str(tiny_ham)]) == 2
    line = _error(capsys)
    assert "HAM10000_metadata.csv" in line and "lacks the column" in line and "dx" in line


def test_a_bad_parameter_is_named_with_what_was_expected(tiny_ham, capsys):
    assert main(["train", "--data-dir", str(tiny_ham), "--epochs", "0"]) == 2
    assert "epochs: expected an integer >= 1, got 0" in _error(capsys)


def test_an_empty_or_malformed_csv_is_named(tiny_run, tmp_path, capsys):
    run, data = tiny_run
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert main(["evaluate", str(run), "--images", str(data / "images"), "--labels", str(empty)]) == 2
    assert "empty.csv" in (line := _error(capsys)) and "empty" in line
    malformed = tmp_path / "malformed.csv"
    malformed.write_text('image_id,dx\n"ISIC_0000001,nv\n')  # a quote that never closes
    assert main(["evaluate", str(run), "--images", str(data / "images"), "--labels", str(malformed)]) == 2
    assert "malformed.csv" in (line := _error(capsys)) and "cannot be read as CSV" in line


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels and whose data is a few bytes: a decompression bomb
    shape that Pillow must refuse before allocating anything."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) \
        + chunk(b"IEND", b"")


def test_huge_and_malicious_images_are_refused_by_name(tiny_run, tmp_path, capsys):
    run, _ = tiny_run
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_claiming(30_000, 30_000))
    assert main(["predict", str(run), str(huge)]) == 2
    assert "huge.png" in (line := _error(capsys)) and "pixels" in line
    fake = tmp_path / "not_an_image.jpg"
    fake.write_bytes(b"<script>alert(1)</script>" * 10)
    assert main(["predict", str(run), str(fake)]) == 2
    assert "not_an_image.jpg" in (line := _error(capsys)) and "Cannot decode" in line


def test_a_damaged_checkpoint_is_named(tiny_run, tmp_path, capsys):
    import shutil

    run, data = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "best.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    image = next((data / "images").iterdir())
    assert main(["predict", str(copy), str(image)]) == 2
    assert "best.pt" in (line := _error(capsys)) and "damaged" in line


def test_a_nan_loss_says_what_to_change(tiny_ham, tmp_path, capsys):
    assert main(["train", "--profile", "smoke", "--data-dir", str(tiny_ham), "--image-size", "16", "--epochs", "1",
                 "--lr", "1e30", "--optimizer", "sgd", "--precision", "fp32", "--no-tta", "--quiet",
                 "--runs-dir", str(tmp_path)]) == 2
    line = _error(capsys)
    assert "loss became" in line and "Lower lr" in line


def test_missing_pretrained_weights_say_how_to_get_them(tiny_ham, tmp_path, capsys, monkeypatch):
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert main(["train", "--profile", "smoke", "--data-dir", str(tiny_ham), "--image-size", "16", "--pretrained",
                 "--quiet", "--runs-dir", str(tmp_path / "runs")]) == 2
    line = _error(capsys)
    assert "ImageNet weights for resnet18" in line and "TORCH_HOME" in line
    assert "efficientnet_lite0" in line  # the offline alternative


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_failed_download_names_the_address(tmp_path, capsys):
    base = f"http://127.0.0.1:{_closed_port()}/mirror"
    assert main(["data", "download", "--data-dir", str(tmp_path / "ham"), "--base-url", base, "--quiet"]) == 2
    line = _error(capsys)
    assert "could not reach" in line and "127.0.0.1" in line


def test_a_download_that_cannot_be_verified_is_refused(tmp_path, capsys):
    """The archives arrive and unpack, but the labels list an image no archive holds: nothing vouches for them."""
    jpeg = io.BytesIO()
    Image.fromarray(image_bytes_for("nv", "ISIC_0000001")).save(jpeg, format="JPEG")
    files = {
        "ISIC2018_Task3_Training_Input.zip": zip_bytes(
            {"ISIC2018_Task3_Training_Input/ISIC_0000001.jpg": jpeg.getvalue()}),
        "ISIC2018_Task3_Training_GroundTruth.zip": zip_bytes({
            "ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv":
                b"image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\nISIC_0000001,0,1,0,0,0,0,0\nISIC_0000002,1,0,0,0,0,0,0\n"}),
        "ISIC2018_Task3_Training_LesionGroupings.csv":
            b"image,lesion_id,diagnosis_confirm_type\nISIC_0000001,HAM_1,histo\nISIC_0000002,HAM_2,histo\n",
    }
    with serving(files) as server:
        base = f"http://127.0.0.1:{server.server_address[1]}/mirror"
        assert main(["data", "download", "--data-dir", str(tmp_path / "ham"), "--base-url", base, "--quiet"]) == 2
    line = _error(capsys)
    assert "could not be verified" in line and "ISIC_0000002" in line


def test_pskin_debug_shows_the_traceback(tiny_ham, monkeypatch):
    monkeypatch.setenv("PSKIN_DEBUG", "1")
    with pytest.raises(PskinError, match="epochs"):
        main(["train", "--data-dir", str(tiny_ham), "--epochs", "0"])


def test_every_error_kind_is_a_pskin_error():
    from pskinlib import errors

    kinds = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert all(issubclass(kind, PskinError) for kind in kinds)
    assert issubclass(DataError, ValueError)  # code written against ValueError still catches data errors
    assert Path(errors.__file__).name == "errors.py"


# ---------------------------------------------------------------------------------------------------------------
# Output folders that cannot be made: every command that writes says so in one line, before it starts the work.


def _ph2_distribution(root: Path) -> Path:
    """The smallest PH2 distribution `pskin data import ph2` reads: one common nevus."""
    image = root / "PH2 Dataset images" / "IMD002" / "IMD002_Dermoscopic_Image" / "IMD002.bmp"
    image.parent.mkdir(parents=True)
    Image.fromarray(image_bytes_for("nv", "ISIC_0000002")).save(image, format="BMP")
    (root / "PH2_dataset.txt").write_text("|| IMD002 ||     ||   0  ||  0  ||\n")
    return root


def _labels_csv(data: Path, path: Path) -> Path:
    pd.read_csv(data / "HAM10000_metadata.csv")[["image_id", "dx"]].to_csv(path, index=False)
    return path


# Each command's arguments, given a finished run, its data, an output path under a regular file, and a scratch folder.
WRITING_COMMANDS = {
    "train --runs-dir": lambda run, data, out, tmp: [
        "train", "--profile", "smoke", "--data-dir", data, "--image-size", "16", "--quiet", "--runs-dir", out],
    "data split --out": lambda run, data, out, tmp: ["data", "split", "--data-dir", data, "--out", out / "split.csv"],
    "data prepare --cache-dir": lambda run, data, out, tmp: [
        "data", "prepare", "--data-dir", data, "--size", "16", "--cache-dir", out, "--quiet"],
    "data demo --out": lambda run, data, out, tmp: ["data", "demo", "--out", out, "--lesions", "6"],
    "data import --out": lambda run, data, out, tmp: [
        "data", "import", "ph2", _ph2_distribution(tmp / "PH2Dataset"), "--out", out],
    "data download --data-dir": lambda run, data, out, tmp: [
        "data", "download", "--data-dir", out, "--base-url", f"http://127.0.0.1:{_closed_port()}/mirror", "--quiet"],
    "evaluate --out": lambda run, data, out, tmp: [
        "evaluate", run, "--images", data / "images", "--labels", _labels_csv(data, tmp / "labels.csv"), "--out", out],
    "export": lambda run, data, out, tmp: ["export", run, out],
    "ensemble --out": lambda run, data, out, tmp: ["ensemble", run, run, "--out", out],
}


@pytest.mark.parametrize("command", list(WRITING_COMMANDS))
def test_an_output_folder_under_a_file_is_one_error_line(command, tiny_run, tmp_path, capsys):
    run, data = tiny_run
    in_the_way = tmp_path / "afile"
    in_the_way.write_text("a regular file, where a folder would have to be")
    argv = [str(a) for a in WRITING_COMMANDS[command](run, data, in_the_way / "out", tmp_path)]
    assert main(argv) == 2
    line = _error(capsys)
    assert str(in_the_way) in line and "not a folder" in line and "choose" in line


def test_fuse_that_cannot_make_its_folder_in_the_run_is_one_error_line(tiny_run, tmp_path, capsys):
    import shutil

    run, _ = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "fusion-metadata").write_text("a regular file, where the fusion's folder goes")
    assert main(["fuse", str(copy), "--device", "cpu"]) == 2
    line = _error(capsys)
    assert str(copy / "fusion-metadata") in line and "not a folder" in line


def test_an_output_file_that_is_a_folder_is_one_error_line(tiny_ham, tmp_path, capsys):
    assert main(["data", "split", "--data-dir", str(tiny_ham), "--out", str(tmp_path)]) == 2
    line = _error(capsys)
    assert str(tmp_path) in line and "is a folder" in line


def test_an_output_folder_error_is_a_pskin_error_and_an_os_error(tmp_path):
    from pskinlib.errors import OutputFolderError
    from pskinlib.io import make_folder

    (tmp_path / "afile").write_text("")
    with pytest.raises(OutputFolderError, match="out_dir: cannot make the folder") as raised:
        make_folder(tmp_path / "afile" / "a" / "b", "out_dir")
    assert isinstance(raised.value, OSError)  # code that catches OSError around a write still catches it
    assert make_folder(tmp_path / "new" / "deeper", "out_dir").is_dir()


# ---------------------------------------------------------------------------------------------------------------
# Files the disk refuses (full, read-only, no permission): one line naming the folder and the cause, no half-written
# file, the previous version kept.

DISK_FAILURES = {
    "no space left on device": OSError(errno.ENOSPC, "No space left on device"),
    "read-only file system": OSError(errno.EROFS, "Read-only file system"),
    "permission denied": PermissionError(errno.EACCES, "Permission denied"),
}


@pytest.mark.parametrize("cause", list(DISK_FAILURES))
def test_a_write_the_disk_refuses_names_the_folder_and_the_cause_and_keeps_the_previous_file(cause, tmp_path):
    from pskinlib.errors import WriteError
    from pskinlib.io import write_bytes_atomic, write_json

    path = write_json(tmp_path / "out" / "metrics.json", {"n": 1})

    def write(handle):
        handle.write(b"half of a file")
        raise DISK_FAILURES[cause]

    with pytest.raises(WriteError) as raised:
        write_bytes_atomic(path, write)
    message = str(raised.value)
    assert f"metrics.json in the folder {path.parent}: {cause}" in message and "previous version is kept" in message
    assert isinstance(raised.value, PskinError) and isinstance(raised.value, OSError)
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"] and path.read_text() == '{\n  "n": 1\n}\n'


def _full_disk(monkeypatch, error: BaseException) -> None:
    """torch.save writes part of a checkpoint, then fails as it does on a full disk; the disk reports no free space."""
    import shutil
    from collections import namedtuple

    import torch

    def save(state, handle):
        handle.write(b"PK\x03\x04 part of a checkpoint")
        raise error

    monkeypatch.setattr(torch, "save", save)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30, 0))


@pytest.mark.parametrize("error", [
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 768 vs 662"),  # torch's own words
    OSError(errno.ENOSPC, "No space left on device"),
], ids=["torch's RuntimeError", "OSError ENOSPC"])
def test_a_full_disk_during_training_is_one_error_line_naming_the_run_folder(error, tiny_ham, tmp_path, capsys,
                                                                             monkeypatch):
    _full_disk(monkeypatch, error)
    runs = tmp_path / "runs"
    assert main(["train", "--profile", "smoke", "--data-dir", str(tiny_ham), "--image-size", "16", "--epochs", "1",
                 "--max-train-batches", "1", "--quiet", "--runs-dir", str(runs)]) == 2
    line = _error(capsys)
    (run,) = runs.iterdir()
    assert f"cannot write best.pt in the folder {run}: no space left on device" in line
    assert "inline_container" not in line and "free some space" in line
    assert not [p.name for p in run.iterdir() if p.suffix == ".pt" or ".tmp" in p.name]  # nothing half-written


def test_a_failed_checkpoint_says_how_to_resume_from_the_last_complete_one(tmp_path, monkeypatch):
    from pskinlib.errors import WriteError
    from pskinlib.runs import RunRecord

    run = RunRecord(tmp_path)
    run.save_checkpoint("last", {"model": {}, "epoch": 3})
    _full_disk(monkeypatch, RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 768 vs 662"))
    with pytest.raises(WriteError, match=rf"last\.pt in the folder {tmp_path}: no space left.*--resume {tmp_path}"):
        run.save_checkpoint("last", {"model": {}, "epoch": 4})
    monkeypatch.undo()
    assert run.load_checkpoint("last")["epoch"] == 3


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_one_error_line(tmp_path):
    from pskinlib.errors import OutputFolderError
    from pskinlib.io import write_json

    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputFolderError, match=f"{folder}.*choose a folder you may write to"):
            write_json(folder / "metrics.json", {})
    finally:
        folder.chmod(0o755)
    assert not list(folder.iterdir())
