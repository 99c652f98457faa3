"""The trainer: it learns, it records, it resumes to the same state, it trains with DDP, and trained runs evaluate
any labelled folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pskinlib.data.ham10000 import load_ham10000
from pskinlib.errors import TrainingError
from pskinlib.evaluate.image_folder import evaluate_folder
from pskinlib.evaluate.predict import load_trained
from pskinlib.io import read_json
from pskinlib.runs import RunRecord, find_runs, load_checkpoint
from pskinlib.train.config import make_config
from pskinlib.train.device import SMALLEST_CPU_BF16_SIZE, autocast_dtype
from pskinlib.train.models import MODELS, build_model, packaged_weights
from pskinlib.train.trainer import learning_rate, make_optimizer, resume, train, training_size, tta_views

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(data_dir, **overrides):
    values = dict(data_dir=str(data_dir), image_size=16, epochs=3, batch_size=16, warmup_epochs=0.5, quiet=True,
                  deterministic=True, tta=False, threads=1)
    values.update(overrides)
    return make_config("smoke", **values)


@pytest.mark.slow
def test_a_small_model_overfits_a_small_batch():
    torch.manual_seed(0)
    model = build_model("resnet18", 3)
    images, labels = torch.randn(12, 3, 32, 32), torch.arange(12) % 3
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert (model(images).argmax(1) == labels).all() and loss.item() < 0.05


def test_learning_rate_warms_up_then_follows_the_cosine():
    config = make_config(epochs=10, lr=1.0, warmup_epochs=1.0)
    rates = [learning_rate(step, 10, config) for step in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:])) and rates[-1] < 0.01


def test_tiny_images_train_in_fp32_on_the_cpu_and_an_explicit_bf16_is_refused():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU
    tiny = SMALLEST_CPU_BF16_SIZE - 1
    assert autocast_dtype(make_config(image_size=tiny, model="resnet18"), cpu) is None
    with pytest.raises(ValueError, match="image_size >= 17"):
        autocast_dtype(make_config(image_size=tiny, precision="bf16"), cpu)
    assert autocast_dtype(make_config(image_size=tiny, precision="bf16"), cuda) == torch.bfloat16
    assert autocast_dtype(make_config(image_size=SMALLEST_CPU_BF16_SIZE, precision="bf16"), cpu) == torch.bfloat16


@pytest.mark.skipif(not torch.cpu._is_avx512_bf16_supported(), reason="this CPU has no AVX512-BF16")
def test_at_the_smallest_bf16_size_the_last_stride_2_gradient_matches_fp32():
    # The premise of SMALLEST_CPU_BF16_SIZE: the last stride-2 convolution (ResNet's layer4 entry) sees a map of
    # ceil(size / 16) pixels, 2x2 at 17 px, where the bf16 weight gradient is sound and the same on every call.
    side = -(-SMALLEST_CPU_BF16_SIZE // 16)
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(256, 512, 3, stride=2, padding=1, bias=False)
    maps = torch.randn(8, 256, side, side)

    def weight_gradient(bf16: bool) -> torch.Tensor:
        conv.weight.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = conv(maps)
        out.float().pow(2).sum().backward()
        return conv.weight.grad.clone()

    reference, first = weight_gradient(False), weight_gradient(True)
    assert side == 2 and (first - reference).norm() / reference.norm() < 0.02
    assert all(torch.equal(weight_gradient(True), first) for _ in range(20))


@pytest.mark.slow
def test_a_run_writes_a_complete_record(tiny_ham, tmp_path):
    run = train(tiny_config(tiny_ham), runs_dir=tmp_path)
    names = {p.name for p in run.iterdir()}
    assert {"config.json", "split.csv", "history.csv", "best.pt", "last.pt", "metrics.json",
            "predictions_val.csv", "predictions_test.csv"} <= names
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    assert set(best) == {"model", "epoch", "best", "classes"}  # a finished run's kept epoch: its weights only
    assert "optimizer" in last and best["epoch"] == last["best"]["epoch"]
    config = read_json(run / "config.json")
    assert config["config"]["epochs"] == 3 and config["data"]["split_hash"] and config["environment"]["torch"]
    assert set(config["class_weights"]) == {"mel", "nv", "bkl"}
    history = pd.read_csv(run / "history.csv")
    assert len(history) == 3 and {"train_loss", "val_balanced_accuracy", "val_recall_mel", "lr"} <= set(history)
    metrics = read_json(run / "metrics.json")
    best = history["val_accuracy"].idxmax() + 1
    assert metrics["best_epoch"] == best
    predictions = pd.read_csv(run / "predictions_test.csv")
    assert list(predictions.columns) == ["image_id", "lesion_id", "true", "predicted", "p_mel", "p_nv", "p_bkl"]
    np.testing.assert_allclose(predictions[["p_mel", "p_nv", "p_bkl"]].sum(axis=1), 1, atol=1e-5)
    accuracy = (predictions["true"] == predictions["predicted"]).mean()
    assert metrics["test"]["accuracy"] == pytest.approx(accuracy)
    assert {"low", "high"} <= set(metrics["test"]["bootstrap"]["balanced_accuracy"])


@pytest.mark.slow
def test_two_runs_never_share_a_folder(tiny_ham, tmp_path):
    first = train(tiny_config(tiny_ham, epochs=1), runs_dir=tmp_path)
    second = train(tiny_config(tiny_ham, epochs=1), runs_dir=tmp_path)
    assert first != second and len(find_runs(tmp_path)) == 2


@pytest.mark.slow
def test_interrupted_and_resumed_run_ends_like_an_uninterrupted_one(tiny_ham, tmp_path):
    straight = train(tiny_config(tiny_ham), runs_dir=tmp_path / "a")

    def stop_after_second_epoch(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tiny_ham), runs_dir=tmp_path / "b", on_epoch_end=stop_after_second_epoch)
    interrupted = find_runs(tmp_path / "b") or list((tmp_path / "b").iterdir())
    resumed = resume(interrupted[0])
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(resumed / "last.pt")
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    columns = [c for c in pd.read_csv(straight / "history.csv").columns if c not in ("seconds", "images_per_second")]
    pd.testing.assert_frame_equal(pd.read_csv(straight / "history.csv")[columns],
                                  pd.read_csv(resumed / "history.csv")[columns])
    assert read_json(straight / "metrics.json")["test"] == read_json(resumed / "metrics.json")["test"]


def test_a_run_stopped_before_its_first_epoch_ended_resumes_from_the_start(tiny_ham, tmp_path):
    straight = train(tiny_config(tiny_ham, epochs=2), runs_dir=tmp_path / "a")

    def stop_at_once(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tiny_ham, epochs=2), runs_dir=tmp_path / "b", on_epoch_end=stop_at_once)
    stopped = next((tmp_path / "b").iterdir())
    for path in stopped.iterdir():  # as a kill in the first epoch leaves it: the config and the split only
        if path.name not in ("config.json", "split.csv"):
            path.unlink()
    resumed = resume(stopped)
    assert resumed == stopped
    assert read_json(straight / "metrics.json")["test"] == read_json(resumed / "metrics.json")["test"]


def test_nan_loss_stops_with_a_clear_error(tiny_ham, tmp_path):
    with pytest.raises(TrainingError, match="loss became"):
        train(tiny_config(tiny_ham, lr=1e30, optimizer="sgd", precision="fp32"), runs_dir=tmp_path)


@pytest.mark.parametrize("options", [dict(class_weights="effective", sampler="balanced"),
                                     dict(loss="focal", class_weights="sqrt_inverse", optimizer="sgd",
                                          schedule="step", step_size=1),
                                     dict(model="efficientnet_b0", select_metric="balanced_accuracy")])
def test_other_options_train_end_to_end(tiny_ham, tmp_path, options):
    run = train(tiny_config(tiny_ham, epochs=1, **options), runs_dir=tmp_path)
    assert read_json(run / "config.json")["config"][next(iter(options))] == next(iter(options.values()))
    assert (run / "metrics.json").is_file()


def test_evaluate_works_on_a_folder_of_pngs_of_other_sizes(tiny_ham, tmp_path):
    run = train(tiny_config(tiny_ham, epochs=1), runs_dir=tmp_path / "runs")
    folder = tmp_path / "other"
    folder.mkdir()
    rows = []
    for i, (dx, size) in enumerate([("mel", (320, 240)), ("nv", (64, 64)), ("bkl", (90, 120)), ("nv", (50, 40))]):
        image = Image.new("RGBA" if i % 2 else "RGB", size, (120 + 30 * i, 80, 60))
        image.save(folder / f"IMG_{i}.png")
        rows.append({"image_id": f"IMG_{i}", "dx": dx})
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)
    metrics = evaluate_folder(run, folder, tmp_path / "labels.csv", out_dir=tmp_path / "eval")
    assert metrics["n"] == 4 and 0 <= metrics["accuracy"] <= 1
    predictions = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    assert len(predictions) == 4 and (tmp_path / "eval" / "metrics.json").is_file()
    probs = load_trained(run).predict([folder / "IMG_0.png"])
    assert probs.shape == (1, 3) and abs(probs.sum() - 1) < 1e-5


def test_cli_train_and_predict(tiny_ham, tmp_path, capsys):
    from pskinlib.cli import main

    assert main(["train", "--profile", "smoke", "--data-dir", str(tiny_ham), "--image-size", "16", "--epochs",
                 "1", "--batch-size", "16", "--quiet", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "balanced accuracy" in out and "95% CI" in out
    run = find_runs(tmp_path)[0]
    image = next((tiny_ham / "images").iterdir())
    assert main(["predict", str(run), str(image)]) == 0
    assert "mel\tnv\tbkl" in capsys.readouterr().out


@pytest.mark.slow
def test_ddp_with_two_gloo_processes_writes_one_run_record(tiny_ham, tmp_path):
    env = {**os.environ, "PSKIN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    # --standalone rendezvouses on a free port: a fixed --master_port clashes with any other run on the machine.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "pskinlib.cli", "train", "--profile", "smoke", "--data-dir", str(tiny_ham), "--image-size",
               "16", "--epochs", "2", "--batch-size", "8", "--quiet", "--runs-dir", str(tmp_path / "runs"),
               "--threads", "1"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    config = read_json(runs[0] / "config.json")
    assert config["environment"]["world_size"] == 2
    assert len(pd.read_csv(runs[0] / "history.csv")) == 2 and (runs[0] / "metrics.json").is_file()


def test_a_time_budget_stops_after_an_epoch_and_still_evaluates_the_best(tiny_ham, tmp_path):
    run = RunRecord.open(train(tiny_config(tiny_ham, epochs=5, max_minutes=1e-4), runs_dir=tmp_path))
    metrics = run.metrics
    assert len(run.history) == 1 and metrics["epochs_run"] == 1
    assert "stopped after epoch 1 of 5" in metrics["stopped"] and "max_minutes" in metrics["stopped"]
    assert metrics["test"]["n"] > 0 and run.predictions("test")["true"].notna().all()


def test_best_weights_kept_in_memory_are_written_once_and_predict_as_recorded(tiny_ham, tmp_path):
    run = RunRecord.open(train(tiny_config(tiny_ham, checkpoints="best_in_memory"), runs_dir=tmp_path))
    assert run.checkpoint("best").is_file() and not run.checkpoint("last").exists()
    trained = load_trained(run, device="cpu")
    test = run.predictions("test")
    images = load_ham10000(tiny_ham).table.set_index("image_id").loc[test["image_id"], "path"]
    probs = trained.predict(list(images))
    np.testing.assert_allclose(probs, test[[f"p_{c}" for c in trained.classes]].to_numpy(), atol=1e-4)


def test_a_caller_can_end_training_early_and_keep_the_evaluation(tiny_ham, tmp_path):
    run = RunRecord.open(train(tiny_config(tiny_ham, epochs=4), runs_dir=tmp_path,
                               on_epoch_end=lambda row: row["epoch"] == 2))
    assert len(run.history) == 2 and "by the caller" in run.metrics["stopped"]


def test_test_time_views_are_the_flips_the_dihedral_group_and_its_zoom():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    assert len(tta_views(images, False)) == 1 and len(tta_views(images, True)) == 4
    dihedral = tta_views(images, "dihedral")
    assert len(dihedral) == 8 and len({tuple(v.flatten().tolist()) for v in dihedral}) == 8  # eight distinct views
    assert len(tta_views(images, "dihedral_zoom")) == 16


def test_fine_tuning_groups_the_head_apart_and_a_frozen_backbone_keeps_its_weights(tiny_ham, tmp_path):
    config = tiny_config(tiny_ham, model="efficientnet_lite0", pretrained=True, backbone_lr_scale=0.1, epochs=3,
                         freeze_backbone_epochs=1, batchnorm="frozen", image_size=32)
    model = build_model("efficientnet_lite0", 3)
    optimizer = make_optimizer(config, model)
    head = {id(p) for p in model.classifier.parameters()}
    assert sorted({group["lr_scale"] for group in optimizer.param_groups}) == [0.1, 1.0]
    assert all((id(p) in head) == (group["lr_scale"] == 1.0) for group in optimizer.param_groups
               for p in group["params"])
    # One epoch with the backbone frozen and batch norm kept: the backbone is still ImageNet's, the head learnt.
    run = train(config, runs_dir=tmp_path, on_epoch_end=lambda row: True)
    state = load_checkpoint(run / "best.pt")["model"]
    packaged = packaged_weights(MODELS["efficientnet_lite0"])
    backbone = {name: value for name, value in state.items() if not name.startswith("classifier")}
    assert all(torch.equal(value, packaged_value) for value, packaged_value
               in zip(backbone.values(), list(packaged.values())[:len(backbone)]))
    assert not torch.equal(state["classifier.weight"], build_model("efficientnet_lite0", 3).classifier.weight)
    with pytest.raises(ValueError, match="pretrained"):
        tiny_config(tiny_ham, backbone_lr_scale=0.5)  # nothing to fine-tune from scratch
    assert [training_size(e, tiny_config(tiny_ham, epochs=3, image_size=32, progressive_start_size=16))
            for e in range(3)] == [16, 24, 32]
