"""Benchmarks: how fast pskin runs, against the usual pipeline and against the machine's own limit.

``pskin bench`` runs them in order and writes ``book/results/benchmarks.json``; the book's Performance appendix
renders it. Every section compares two things measured side by side in one run, on the same machine, so the
ratios mean something even on a busy machine where the absolute figures move:

1. ``input_pipeline``: images per second delivered by pskin's prepared cache (:class:`BatchLoader` with
   :class:`Augmentation`) vs the pipeline most HAM10000 projects use (an ImageFolder-style dataset decoding each
   JPEG with PIL, torchvision transforms, a ``DataLoader`` with worker processes), same size and augmentation.
2. ``training_efficiency``: the trainer's own epoch loop (:func:`~pskinlib.trainer.train_one_epoch`) vs the raw
   model's forward + backward + step on a batch already in memory (same model, size, batch, precision, layout),
   and the same training step fed by the usual pipeline. trainer / raw says how close the trainer runs to the
   machine's limit (target >= 0.90); trainer / usual how much faster an epoch is (target >= 1.5). Same precision
   and layout on both sides isolates the input pipeline; a third column, the typical script (usual pipeline in
   PyTorch's default fp32 and contiguous layout), shows what a user gains with pskin's defaults as a whole.
3. ``precision``: fp32 vs bf16 autocast, contiguous vs channels_last, per model and size; which one the trainer's
   ``precision='auto'`` picks; and a small accuracy check (fp32 vs bf16 training of the same run).
4. ``scaling``: epoch time against the number of images and the image size; cache preparation time for all
   10,015 images; an estimate of the default profile's whole training run.
5. ``inference``: images per second of ``pskin evaluate`` and the latency of one prediction.

Benchmarks are commands, not timed tests: the tests only check that each function returns sane figures. The GPU
paper run lives in ``experiments/gpu_paper_run.py`` and uses :func:`raw_training_speed` and
:func:`training_step_profile` for its own probe.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from pskinlib.data.batches import Augmentation, BatchLoader, SplitTensors, normalise, split_tensors
from pskinlib.data.cache import prepare_images
from pskinlib.data.ham10000 import LesionImages, load_ham10000
from pskinlib.data.splits import make_split
from pskinlib.errors import DataError, ParameterError, check_int
from pskinlib.evaluate.image_folder import evaluate_folder
from pskinlib.evaluate.predict import load_trained
from pskinlib.info import ALL_CLASSES, NORMALISATIONS, PAPER_CLASSES
from pskinlib.io import make_folder, read_json, write_json
from pskinlib.metrics import bootstrap_ci
from pskinlib.runs import RunRecord
from pskinlib.train.config import TrainConfig, make_config
from pskinlib.train.device import autocast, autocast_dtype, machine_description, use_channels_last
from pskinlib.train.models import build_model
from pskinlib.train.trainer import make_criterion, make_optimizer, predict_proba, train, train_one_epoch

SECTIONS = ("input_pipeline", "training_efficiency", "precision", "scaling", "inference")
DEFAULT_OUT = Path("book") / "results" / "benchmarks.json"
TARGETS = {"trainer_vs_raw": 0.90, "trainer_vs_usual": 1.5, "gpu_seconds_per_model": 300.0}

# Sized so the full run takes about 15 minutes on a 2-core CPU with AVX512-BF16 and ``quick`` about 2-3.
PLANS: dict[str, dict[str, Any]] = {
    "full": dict(
        input_sizes=(64, 128, 224), input_batches=20, batch_size=64,
        efficiency_cases=(("resnet18", 64), ("resnet18", 128), ("efficientnet_b0", 64), ("efficientnet_b0", 128)),
        efficiency_steps=16, efficiency_rounds=3,
        precision_models=("resnet18", "resnet50", "efficientnet_b0"), precision_sizes=(64, 128),
        precision_batch=32, precision_steps=4,
        accuracy_epochs=3, accuracy_batches=30,
        scaling_images=(640, 1280, 2560), scaling_sizes=(32, 64, 96, 128), scaling_size_images=640,
        cache_sizes=(64, 128, 224),
        inference_images=500, inference_single=20,
    ),
    "quick": dict(
        input_sizes=(64,), input_batches=6, batch_size=64,
        efficiency_cases=(("resnet18", 64), ("efficientnet_b0", 64)),
        efficiency_steps=4, efficiency_rounds=2,
        precision_models=("resnet18", "efficientnet_b0"), precision_sizes=(64,),
        precision_batch=32, precision_steps=3,
        accuracy_epochs=1, accuracy_batches=8,
        scaling_images=(320, 640), scaling_sizes=(32, 64), scaling_size_images=320,
        cache_sizes=(64,),
        inference_images=100, inference_single=5,
    ),
}


# ---------------------------------------------------------------------------------------------------------------
# The machine


def _describe(description: dict[str, Any]) -> str:
    gpu = f"; GPU {description['gpu']['name']}" if description.get("gpu") else ""
    bf16 = "AVX512-BF16" if description["avx512_bf16"] else "no AVX512-BF16"
    return (f"{description['cpu_model']}, {description['usable_cpus']} usable CPU(s), {description['torch_threads']} "
            f"torch thread(s), {description['memory_gib']} GiB RAM, {bf16}{gpu}; torch {description['torch']}")


# ---------------------------------------------------------------------------------------------------------------
# Small helpers


def _sync(device: torch.device) -> None:
    # CUDA work is queued: without a synchronise the clock would stop before the GPU has finished.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _bench_config(model: str, size: int, batch_size: int, precision: str = "auto",
                  channels_last: bool | None = None, **extra: Any) -> TrainConfig:
    return make_config("default", model=model, image_size=size, batch_size=batch_size, precision=precision,
                       channels_last=channels_last, quiet=True, **extra)


def _settings(config: TrainConfig, device: torch.device) -> dict[str, Any]:
    amp_dtype = autocast_dtype(config, device)
    return {"model": config.model, "size": config.image_size, "batch_size": config.batch_size,
            "precision": "bf16" if amp_dtype is not None else "fp32",
            "channels_last": use_channels_last(config, device), "device": str(device)}


def _training_parts(config: TrainConfig, device: torch.device, n_classes: int):
    """Model, criterion and optimiser exactly as the trainer makes them (weights do not change the cost)."""
    torch.manual_seed(config.seed)
    model = build_model(config.model, n_classes).to(device)
    if use_channels_last(config, device):
        model = model.to(memory_format=torch.channels_last)
    criterion = make_criterion(config, torch.ones(n_classes, device=device))
    return model, criterion, make_optimizer(config, model)


def _train_step(model: nn.Module, criterion, optimizer, images: torch.Tensor, labels: torch.Tensor,
                device: torch.device, amp_dtype: torch.dtype | None) -> None:
    with autocast(device, amp_dtype):
        logits = model(images)
    loss = criterion(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _train_rows(images: LesionImages, seed: int = 0) -> pd.DataFrame:
    """The grouped split's training rows, as every benchmark here trains on them."""
    split = make_split(images, "grouped", seed=seed)
    return split[split["split"] == "train"].reset_index(drop=True)


def _train_tensors(images: LesionImages, size: int, cache_dir, rows: pd.DataFrame) -> SplitTensors:
    prepared = prepare_images(images, size, cache_dir=cache_dir, progress=False)
    return split_tensors(prepared, rows, images.classes)["train"]


# ---------------------------------------------------------------------------------------------------------------
# The usual pipeline: one JPEG decoded per image per epoch, torchvision transforms, DataLoader workers


class JpegFolderDataset(torch.utils.data.Dataset):
    """ImageFolder-style dataset: item ``i`` opens ``paths[i]`` with PIL and applies ``transform``."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int], transform: Callable):
        self.paths, self.labels, self.transform = list(paths), list(labels), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with Image.open(self.paths[i]) as image:
            return self.transform(image.convert("RGB")), self.labels[i]


def usual_transform(size: int, augmentation: Augmentation | None = None):
    """The torchvision transforms a typical HAM10000 project trains with, matched to pskin's augmentation."""
    from torchvision import transforms

    steps = [transforms.Resize((size, size))]
    if augmentation is not None:
        steps += [
            transforms.RandomResizedCrop(size, scale=augmentation.crop_scale, ratio=augmentation.aspect),
            transforms.RandomHorizontalFlip(),
            transforms.RandomVerticalFlip(),
            transforms.RandomRotation(augmentation.rotation_degrees),
            transforms.ColorJitter(augmentation.brightness, augmentation.contrast, augmentation.saturation),
        ]
    return transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize(*NORMALISATIONS["imagenet"])])


def usual_loader(paths: Sequence[str], labels: Sequence[int], size: int, batch_size: int, workers: int,
                 seed: int = 0) -> torch.utils.data.DataLoader:
    """Shuffled, augmented batches from JPEG files, decoded in ``workers`` processes (0: in this one)."""
    dataset = JpegFolderDataset(paths, labels, usual_transform(size, Augmentation()))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                       num_workers=workers, generator=torch.Generator().manual_seed(seed))


def _paths_and_labels(images: LesionImages, rows: pd.DataFrame) -> tuple[list[str], list[int]]:
    path_of = images.table.set_index("image_id")["path"]
    label_of = {c: i for i, c in enumerate(images.classes)}
    return path_of.loc[rows["image_id"]].tolist(), [label_of[d] for d in rows["dx"]]


# ---------------------------------------------------------------------------------------------------------------
# 1. Input pipeline


def bench_input_pipeline(images: LesionImages, size: int, batch_size: int = 64, n_batches: int = 20,
                         workers: int = 2, *, cache_dir: str | os.PathLike | None = None,
                         seed: int = 0) -> dict[str, Any]:
    """Augmented batches per second from pskin's prepared cache vs JPEG + torchvision in DataLoader workers.

    Both deliver normalised float batches ``(B, 3, size, size)`` of the grouped split's training images with the
    same augmentation (rotation, flips, random resized crop, colour jitter). ``usual.images_per_second`` counts the
    workers' start-up; ``usual.steady_images_per_second`` and ``speedup`` leave it out.
    """
    check_int("size", size, 8)
    check_int("batch_size", batch_size, 1)
    check_int("n_batches", n_batches, 1)
    check_int("workers", workers, 0)
    rows = _train_rows(images, seed)
    if len(rows) < batch_size * (n_batches + 1):
        raise ParameterError(f"n_batches: {n_batches} batches of {batch_size} (+1 to warm up) need "
                         f"{batch_size * (n_batches + 1)} training images; the split has {len(rows)}.")
    start = time.perf_counter()
    tensors = _train_tensors(images, size, cache_dir, rows)
    load_seconds = time.perf_counter() - start

    loader = BatchLoader(tensors.pixels, tensors.labels, batch_size=batch_size, augmentation=Augmentation(),
                         shuffle=True, drop_last=True, seed=seed)
    batches = iter(loader)
    next(batches)  # the first batch allocates buffers; an epoch pays it once
    start = time.perf_counter()
    for _ in range(n_batches):
        next(batches)
    pskin_seconds = time.perf_counter() - start

    paths, labels = _paths_and_labels(images, rows)
    usual = _time_usual_batches(usual_loader(paths, labels, size, batch_size, workers, seed), n_batches)
    pskin_ips = n_batches * batch_size / pskin_seconds
    return {
        "size": size, "batch_size": batch_size, "n_batches": n_batches, "workers": workers,
        "pskin": {"images_per_second": pskin_ips, "seconds": pskin_seconds,
                  "load_seconds": load_seconds,
                  "note": "load_seconds: the split's images from the cache into memory (building the cache first "
                          "when absent), once per run"},
        "usual": usual,
        # Against the usual pipeline's steady speed: its start-up weighs less in a whole epoch than in a few batches.
        "speedup": pskin_ips / usual["steady_images_per_second"],
        "speedup_with_startup": pskin_ips / usual["images_per_second"],
    }


def _time_usual_batches(loader: torch.utils.data.DataLoader, n_batches: int) -> dict[str, float]:
    start = time.perf_counter()
    batches = iter(loader)
    next(batches)
    startup = time.perf_counter() - start
    steady_start = time.perf_counter()
    for _ in range(n_batches):
        next(batches)
    steady = time.perf_counter() - steady_start
    del batches  # stops the workers
    n = n_batches * loader.batch_size
    return {"images_per_second": (n + loader.batch_size) / (startup + steady),
            "steady_images_per_second": n / steady, "startup_seconds": startup, "seconds": startup + steady}


# ---------------------------------------------------------------------------------------------------------------
# 2. Training efficiency


def raw_training_speed(config: TrainConfig, n_steps: int = 10, *, device: str | torch.device = "cpu",
                       n_classes: int = 3, warmup_steps: int = 2) -> dict[str, Any]:
    """The machine's limit for ``config``: forward + backward + optimiser step on one batch already in memory,
    with the trainer's model, loss, optimiser, precision and memory layout. Returns images per second."""
    check_int("n_steps", n_steps, 1)
    check_int("warmup_steps", warmup_steps, 0)
    device = torch.device(device)
    amp_dtype = autocast_dtype(config, device)
    model, criterion, optimizer = _training_parts(config, device, n_classes)
    model.train()
    generator = torch.Generator().manual_seed(config.seed)
    size, batch = config.image_size, config.batch_size
    images = normalise(torch.rand(batch, 3, size, size, generator=generator)).to(device)
    if use_channels_last(config, device):
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, n_classes, (batch,), generator=generator).to(device)
    for _ in range(warmup_steps):
        _train_step(model, criterion, optimizer, images, labels, device, amp_dtype)
    _sync(device)
    steps = []
    start = time.perf_counter()
    for _ in range(n_steps):
        step_start = time.perf_counter()
        _train_step(model, criterion, optimizer, images, labels, device, amp_dtype)
        steps.append(time.perf_counter() - step_start)
    _sync(device)
    seconds = time.perf_counter() - start
    # On the CPU each step ends when its work does, so the median step shrugs off a neighbour's burst; on a GPU the
    # steps are queued and only the total means anything.
    median = batch / statistics.median(steps) if device.type == "cpu" else None
    return {**_settings(config, device), "n_steps": n_steps, "seconds": seconds,
            "images_per_second": n_steps * batch / seconds, "median_images_per_second": median}


def training_step_profile(config: TrainConfig, *, device: str | torch.device = "cpu", n_classes: int = 3,
                          warmup_steps: int = 2) -> dict[str, Any]:
    """What one training step of ``config`` asks of the machine: the operations the host dispatches (the leaf
    ``aten::`` calls, about one GPU kernel each) and, on CUDA, the kernels the GPU ran and their summed time. At
    small batches a step whose kernels are short is bound by dispatching them: ``ops`` times the host's cost per
    operation is the floor of the step's time however fast the GPU is."""
    from torch.profiler import ProfilerActivity, profile

    device = torch.device(device)
    amp_dtype = autocast_dtype(config, device)
    model, criterion, optimizer = _training_parts(config, device, n_classes)
    model.train()
    images = normalise(torch.rand(config.batch_size, 3, config.image_size, config.image_size)).to(device)
    if use_channels_last(config, device):
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, n_classes, (config.batch_size,)).to(device)
    for _ in range(warmup_steps):
        _train_step(model, criterion, optimizer, images, labels, device, amp_dtype)
    _sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        _train_step(model, criterion, optimizer, images, labels, device, amp_dtype)
        _sync(device)
    events = prof.events()
    leaves = [e for e in events if e.name.startswith("aten::") and not e.cpu_children]
    kernels = [e for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
    return {**_settings(config, device), "ops": len(leaves),
            "kernels": len(kernels) if device.type == "cuda" else None,
            "kernel_seconds": sum(e.device_time_total for e in kernels) / 1e6 if kernels else None}


def trainer_epoch_speed(config: TrainConfig, tensors: SplitTensors, n_steps: int, *,
                        device: str | torch.device = "cpu", n_classes: int = 3,
                        warmup_steps: int = 2) -> dict[str, Any]:
    """The trainer's own epoch loop over the first ``n_steps`` batches of an epoch (augmentation included)."""
    check_int("n_steps", n_steps, 1)
    check_int("warmup_steps", warmup_steps, 0)
    device = torch.device(device)
    amp_dtype = autocast_dtype(config, device)
    loader = BatchLoader(tensors.pixels, tensors.labels, batch_size=config.batch_size,
                         augmentation=Augmentation() if config.augment else None, shuffle=True, drop_last=True,
                         seed=config.seed, device=device, channels_last=use_channels_last(config, device))
    if n_steps > len(loader):
        raise ParameterError(f"n_steps: {n_steps} batches of {config.batch_size} need {n_steps * config.batch_size} "
                         f"training images; {len(tensors.labels)} are given.")
    model, criterion, optimizer = _training_parts(config, device, n_classes)
    if warmup_steps:
        train_one_epoch(model, criterion, optimizer, loader, device, 0,
                        dataclasses.replace(config, max_train_batches=warmup_steps), ALL_CLASSES[:n_classes],
                        amp_dtype)
    stats = train_one_epoch(model, criterion, optimizer, loader, device, 1,
                            dataclasses.replace(config, max_train_batches=n_steps), ALL_CLASSES[:n_classes],
                            amp_dtype)
    return {**_settings(config, device), "n_steps": n_steps, "seconds": stats["seconds"],
            "images_per_second": stats["images_per_second"]}


def usual_epoch_speed(config: TrainConfig, paths: Sequence[str], labels: Sequence[int], n_steps: int, *,
                      workers: int = 2, n_classes: int = 3, warmup_steps: int = 2) -> dict[str, Any]:
    """The same training step fed by the usual pipeline (JPEG + torchvision transforms in DataLoader workers), on
    the CPU. ``startup_seconds``: until the first batch arrives; the steady speed leaves it out."""
    check_int("n_steps", n_steps, 1)
    check_int("workers", workers, 0)
    device = torch.device("cpu")
    amp_dtype = autocast_dtype(config, device)
    channels_last = use_channels_last(config, device)
    loader = usual_loader(paths, labels, config.image_size, config.batch_size, workers, config.seed)
    if n_steps + warmup_steps > len(loader):
        raise ParameterError(f"n_steps: {n_steps} (+{warmup_steps} to warm up) batches need more than the "
                         f"{len(paths)} images given.")
    model, criterion, optimizer = _training_parts(config, device, n_classes)
    model.train()
    start = time.perf_counter()
    batches = iter(loader)
    images, target = next(batches)
    startup = time.perf_counter() - start
    # The warm-up steps let the workers fill their queue as they would mid-epoch (which, if anything, flatters the
    # usual pipeline).
    for step in range(warmup_steps + n_steps):
        if step == warmup_steps:
            start = time.perf_counter()
        if step > 0:
            images, target = next(batches)
        _train_step(model, criterion, optimizer, _layout(images, channels_last), target, device, amp_dtype)
    seconds = time.perf_counter() - start
    del batches
    return {**_settings(config, device), "n_steps": n_steps, "workers": workers, "seconds": seconds,
            "startup_seconds": startup, "images_per_second": n_steps * config.batch_size / seconds}


def _layout(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def bench_training_efficiency(images: LesionImages, model: str, size: int, batch_size: int = 64,
                              n_steps: int = 10, *, precision: str = "auto", channels_last: bool | None = None,
                              rounds: int = 2, workers: int = 2, cache_dir: str | os.PathLike | None = None,
                              seed: int = 0) -> dict[str, Any]:
    """Trainer vs raw step vs the usual pipeline for one model and size, on the CPU.

    Raw, trainer and usual are measured in alternating ``rounds`` and the best round of each is compared (every
    round is recorded). ``epoch_seconds`` projects a full epoch of the grouped split's training images: the trainer at
    its speed, the usual pipeline at its steady speed plus its start-up.
    """
    check_int("rounds", rounds, 1)
    config = _bench_config(model, size, batch_size, precision, channels_last, seed=seed)
    rows = _train_rows(images, seed)
    tensors = _train_tensors(images, size, cache_dir, rows)
    n_classes = len(images.classes)
    paths, labels = _paths_and_labels(images, rows)
    # The typical script: the usual pipeline with PyTorch's defaults (fp32, contiguous), as a HAM10000 project
    # written without pskin would run; the gap to it is what a user gains, precision choice included.
    typical_config = dataclasses.replace(config, precision="fp32", channels_last=False)
    raw, trainer, usual_rounds, typical_rounds = [], [], [], []
    for _ in range(rounds):
        raw.append(raw_training_speed(config, n_steps, n_classes=n_classes))
        trainer.append(trainer_epoch_speed(config, tensors, n_steps, n_classes=n_classes))
        usual_rounds.append(usual_epoch_speed(config, paths, labels, n_steps, workers=workers, n_classes=n_classes))
        typical_rounds.append(usual_epoch_speed(typical_config, paths, labels, n_steps, workers=workers,
                                                n_classes=n_classes))
    # The best round of each: on a shared machine a neighbour's burst slows one round, never speeds one up.
    raw_ips = max(r["images_per_second"] for r in raw)
    trainer_ips = max(r["images_per_second"] for r in trainer)
    usual = max(usual_rounds, key=lambda r: r["images_per_second"])
    typical = max(typical_rounds, key=lambda r: r["images_per_second"])
    n_train = len(rows) // batch_size * batch_size
    trainer_epoch = n_train / trainer_ips
    usual_epoch = usual["startup_seconds"] + n_train / usual["images_per_second"]
    typical_epoch = typical["startup_seconds"] + n_train / typical["images_per_second"]
    return {
        **_settings(config, torch.device("cpu")), "n_steps": n_steps, "rounds": rounds,
        "raw_images_per_second": raw_ips,
        "trainer_images_per_second": trainer_ips,
        "usual_images_per_second": usual["images_per_second"],
        "usual_startup_seconds": usual["startup_seconds"],
        "trainer_vs_raw": trainer_ips / raw_ips,
        "training_images": n_train,
        "typical_images_per_second": typical["images_per_second"],
        "epoch_seconds": {"trainer": trainer_epoch, "usual": usual_epoch, "typical": typical_epoch},
        "trainer_vs_usual": usual_epoch / trainer_epoch,
        "trainer_vs_typical": typical_epoch / trainer_epoch,
        "rounds_images_per_second": {"raw": [r["images_per_second"] for r in raw],
                                     "trainer": [r["images_per_second"] for r in trainer],
                                     "usual": [r["images_per_second"] for r in usual_rounds],
                                     "typical": [r["images_per_second"] for r in typical_rounds]},
    }


# ---------------------------------------------------------------------------------------------------------------
# 3. Precision and memory layout


def _variants() -> list[tuple[str, bool]]:
    precisions = ["fp32", "bf16"] if torch.cpu._is_avx512_bf16_supported() else ["fp32"]
    return [(p, layout) for p in precisions for layout in (False, True)]


def bench_precision_layouts(models: Sequence[str], sizes: Sequence[int], *, batch_size: int = 32,
                            n_steps: int = 4, warmup_steps: int = 2) -> dict[str, Any]:
    """Raw training speed (from the median step) of fp32 / bf16 autocast x contiguous / channels_last per model
    and size (CPU), and whether the trainer's automatic choice is the fastest. bf16 is left out on CPUs without
    AVX512-BF16, where it is emulated and slow."""
    if not models or not sizes:
        raise ParameterError("models and sizes: need at least one of each.")
    device = torch.device("cpu")
    rows, choices = [], []
    for model in models:
        for size in sizes:
            speeds = {}
            for precision, channels_last in _variants():
                config = _bench_config(model, size, batch_size, precision, channels_last)
                result = raw_training_speed(config, n_steps, warmup_steps=warmup_steps)
                rows.append(result)
                speeds[(precision, channels_last)] = result["median_images_per_second"]
            auto = _settings(_bench_config(model, size, batch_size), device)
            fastest = max(speeds, key=speeds.get)
            auto_speed = speeds[(auto["precision"], auto["channels_last"])]
            choices.append({"model": model, "size": size,
                            "auto": {"precision": auto["precision"], "channels_last": auto["channels_last"],
                                     "images_per_second": auto_speed},
                            "fastest": {"precision": fastest[0], "channels_last": fastest[1],
                                        "images_per_second": speeds[fastest]},
                            "auto_vs_fastest": auto_speed / speeds[fastest],
                            "bf16_vs_fp32": (max(v for k, v in speeds.items() if k[0] == "bf16")
                                             / max(v for k, v in speeds.items() if k[0] == "fp32"))
                            if any(k[0] == "bf16" for k in speeds) else None})
    return {"batch_size": batch_size, "n_steps": n_steps, "rows": rows, "choices": choices}


def bench_precision_accuracy(images: LesionImages, *, model: str = "resnet18", size: int = 64, epochs: int = 3,
                             max_train_batches: int = 30, runs_dir: str | os.PathLike,
                             tolerance: float = 0.05) -> dict[str, Any]:
    """Train the same short run in fp32 and in bf16 autocast and compare validation balanced accuracy.

    A small check, not a study: a few epochs of a few batches each, one seed. ``holds`` means the bf16 run's
    validation balanced accuracy is within ``tolerance`` of the fp32 run's or above it.
    """
    check_int("epochs", epochs, 1)
    check_int("max_train_batches", max_train_batches, 1)
    if not torch.cpu._is_avx512_bf16_supported():
        return {"skipped": "this CPU has no AVX512-BF16: the trainer stays in fp32 here"}
    results = {}
    for precision in ("fp32", "bf16"):
        config = make_config("default", data_dir=str(images.root), classes=images.classes, model=model,
                             image_size=size, epochs=epochs, max_train_batches=max_train_batches,
                             warmup_epochs=min(1.0, epochs / 2), precision=precision, quiet=True,
                             device="cpu", notes=f"pskin bench: {precision} accuracy check")
        start = time.perf_counter()
        run = RunRecord.open(train(config, runs_dir=runs_dir))
        seconds = time.perf_counter() - start
        metrics = run.metrics
        history = run.history
        results[precision] = {"run_dir": str(run), "seconds": seconds, "best_epoch": metrics["best_epoch"],
                              "val_balanced_accuracy": metrics["val"]["balanced_accuracy"],
                              "test_balanced_accuracy": metrics["test"]["balanced_accuracy"],
                              "train_images_per_second": float(history["images_per_second"].median())}
    difference = results["bf16"]["val_balanced_accuracy"] - results["fp32"]["val_balanced_accuracy"]
    return {"model": model, "size": size, "epochs": epochs, "max_train_batches": max_train_batches,
            "note": f"small check: {epochs} epoch(s) of {max_train_batches} batches, one seed; differences of a "
                    "few points are noise at this size",
            **results, "val_difference_bf16_minus_fp32": difference, "tolerance": tolerance,
            "holds": difference >= -tolerance}


# ---------------------------------------------------------------------------------------------------------------
# 4. Scaling


def bench_scaling(images: LesionImages, *, model: str = "resnet18", size: int = 64, batch_size: int = 64,
                  n_images: Sequence[int] = (640, 1280, 2560), sizes: Sequence[int] = (32, 64, 96, 128),
                  size_images: int = 640, cache_sizes: Sequence[int] = (64, 128, 224),
                  all_images: LesionImages | None = None, cache_workers: int | None = None,
                  cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """How cost grows: trainer epoch time against the number of images (at ``size``) and against the image size
    (on the first ``size_images`` training images, projected to a full epoch), the time to prepare the cache
    for ``all_images`` (all 10,015 by default) at ``cache_sizes`` in a fresh temporary folder, and an estimate of
    the default profile's whole training run."""
    check_int("size_images", size_images, batch_size)
    for n in n_images:
        check_int("n_images", n, batch_size)
    rows = _train_rows(images)
    n_train = len(rows) // batch_size * batch_size
    n_val = int((make_split(images, "grouped")["split"] == "val").sum())
    tensors = _train_tensors(images, size, cache_dir, rows)
    config = _bench_config(model, size, batch_size)
    by_images = []
    for n in n_images:
        result = trainer_epoch_speed(config, tensors, n // batch_size, n_classes=len(images.classes))
        by_images.append({"images": n // batch_size * batch_size, "seconds": result["seconds"],
                          "images_per_second": result["images_per_second"]})

    subset_rows = rows.iloc[:size_images]
    subset = images.table[images.table["image_id"].isin(set(subset_rows["image_id"]))]
    subset_images = dataclasses.replace(images, table=subset.reset_index(drop=True))
    by_size = []
    with tempfile.TemporaryDirectory(prefix="pskin-bench-") as scratch:
        for s in sizes:
            result = trainer_epoch_speed(_bench_config(model, s, batch_size),
                                         _train_tensors(subset_images, s, scratch, subset_rows),
                                         size_images // batch_size, n_classes=len(images.classes))
            by_size.append({"size": s, "precision": result["precision"], "channels_last": result["channels_last"],
                            "images_per_second": result["images_per_second"],
                            "projected_epoch_seconds": n_train / result["images_per_second"]})

    cache = []
    if cache_sizes:
        all_images = all_images if all_images is not None else _all_classes(images)
        for s in cache_sizes:
            with tempfile.TemporaryDirectory(prefix="pskin-bench-cache-") as scratch:
                start = time.perf_counter()
                prepare_images(all_images, s, cache_dir=scratch, workers=cache_workers, progress=False)
                seconds = time.perf_counter() - start
            cache.append({"size": s, "images": len(all_images), "seconds": seconds,
                          "images_per_second": len(all_images) / seconds,
                          "megabytes": len(all_images) * s * s * 3 / 1e6})

    default = make_config("default")
    train_ips = statistics.median(r["images_per_second"] for r in by_images)
    eval_ips = _eval_speed(config, tensors, n_classes=len(images.classes))
    epoch = n_train / train_ips + n_val / eval_ips
    return {"model": model, "size": size, "batch_size": batch_size, "training_images": n_train,
            "epoch_vs_images": by_images, "epoch_vs_size": by_size, "size_images": size_images,
            "cache_preparation": cache,
            "default_profile_estimate": {
                "epochs": default.epochs, "epoch_seconds": epoch, "eval_images_per_second": eval_ips,
                "training_seconds": default.epochs * epoch,
                "note": f"{default.epochs} epochs x (training + validation) of {model} at {size} px on the grouped "
                        "split, from the speeds above (the default profile when these are resnet18 and 64 px); the "
                        "book adds cache preparation, final evaluation and running the notebooks"}}


def _default_estimate(scaling: dict[str, Any]) -> dict[str, Any]:
    """The scaling section's estimate of a default-profile run; results written before the profiles were YAML files
    call that profile (64 px, 20 epochs) "quick"."""
    return scaling.get("default_profile_estimate") or scaling["quick_profile_estimate"]


def _all_classes(images: LesionImages) -> LesionImages:
    """All seven classes of the same folder (HAM10000's 10,015 images), or ``images`` itself where the folder
    lacks a class (a small test folder)."""
    try:
        return load_ham10000(images.root, classes=ALL_CLASSES)
    except DataError:
        return images


def _eval_speed(config: TrainConfig, tensors: SplitTensors, n_classes: int, n_images: int = 512) -> float:
    """Forward-only images per second as the trainer evaluates (batches of 128, no TTA)."""
    device = torch.device("cpu")
    model, _, _ = _training_parts(config, device, n_classes)
    n = min(n_images, len(tensors.labels))
    loader = BatchLoader(tensors.pixels[:n], tensors.labels[:n], batch_size=max(config.batch_size, 128),
                         channels_last=use_channels_last(config, device))
    amp_dtype = autocast_dtype(config, device)
    predict_proba(model, loader, device, amp_dtype)  # warm-up
    start = time.perf_counter()
    predict_proba(model, loader, device, amp_dtype)
    return n / (time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------------------------
# 5. Inference


def bench_inference(run_dir: str | os.PathLike, images: LesionImages, *, n_images: int = 500,
                    n_single: int = 20, device: str = "cpu") -> dict[str, Any]:
    """``pskin evaluate`` on ``n_images`` labelled images (decode, resize, predict with the run's TTA setting,
    bootstrap, write files) and the latency of one prediction on one image file, as the inspector makes it."""
    check_int("n_images", n_images, 1)
    check_int("n_single", n_single, 1)
    # A random sample rather than the first rows: the metadata lists images class by class.
    chosen = images.table.sample(n=min(n_images, len(images)), random_state=0).sort_index()
    with tempfile.TemporaryDirectory(prefix="pskin-bench-eval-") as scratch:
        folder = Path(scratch) / "images"
        folder.mkdir()
        for image_id, path in zip(chosen["image_id"], chosen["path"]):
            os.symlink(os.path.abspath(path), folder / f"{image_id}{Path(path).suffix}")
        labels_csv = Path(scratch) / "labels.csv"
        chosen[["image_id", "dx"]].to_csv(labels_csv, index=False)
        start = time.perf_counter()
        evaluate_folder(run_dir, folder, labels_csv, out_dir=Path(scratch) / "out", device=device)
        evaluate_seconds = time.perf_counter() - start

    start = time.perf_counter()
    trained = load_trained(run_dir, device=device)
    load_seconds = time.perf_counter() - start
    paths = chosen["path"].tolist()
    start = time.perf_counter()
    trained.predict(paths)
    predict_seconds = time.perf_counter() - start
    latencies = []
    for i in range(n_single + 2):
        start = time.perf_counter()
        trained.predict([paths[i % len(paths)]])
        if i >= 2:  # the first calls create oneDNN primitives for batch size 1
            latencies.append(time.perf_counter() - start)
    # The bootstrap every record's intervals come from: 1,000 resamples of 1,000 images over 7 classes.
    rng = np.random.default_rng(9)
    y_prob = rng.dirichlet(np.ones(7), size=1000)
    start = time.perf_counter()
    bootstrap_ci(rng.integers(0, 7, 1000), y_prob, "macro_f1", n_boot=1000)
    bootstrap_seconds = time.perf_counter() - start
    return {
        "model": trained.config.model, "size": trained.config.image_size, "tta": trained.config.tta,
        "n_images": len(chosen), "device": device,
        "evaluate_seconds": evaluate_seconds, "evaluate_images_per_second": len(chosen) / evaluate_seconds,
        "predict_images_per_second": len(chosen) / predict_seconds,
        "load_seconds": load_seconds, "bootstrap_1000x1000_seconds": bootstrap_seconds,
        "single_latency_ms": {"median": 1000 * statistics.median(latencies),
                              "p90": 1000 * float(np.percentile(latencies, 90)), "n": len(latencies)},
    }


def _inference_run(images: LesionImages, runs_dir: Path, plan: dict[str, Any]) -> Path:
    """A small trained run to time inference with, when the precision check has not left one."""
    config = make_config("default", data_dir=str(images.root), classes=images.classes, epochs=1,
                         warmup_epochs=0.5, max_train_batches=plan["accuracy_batches"], quiet=True, device="cpu",
                         notes="pskin bench: model for the inference benchmark")
    return train(config, runs_dir=runs_dir)


# ---------------------------------------------------------------------------------------------------------------
# All of them


def run_benchmarks(data_dir: str | os.PathLike | None = None, out_path: str | os.PathLike = DEFAULT_OUT,
                   quick: bool = False, *, sections: Sequence[str] | None = None, threads: int | None = None,
                   workers: int | None = None, classes: Sequence[str] = PAPER_CLASSES,
                   log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Run the CPU benchmarks in order and write their figures to ``out_path`` (JSON, written atomically).

    ``quick``: smaller settings (about 2-3 minutes instead of about 15 on a 2-core CPU). ``sections``: a subset
    of :data:`SECTIONS`; the other sections of an existing results file are kept. ``threads``: torch threads
    (default: torch's choice, one per core). ``workers``: DataLoader workers of the usual pipeline (default: one
    per usable CPU, the usual advice).
    """
    if not isinstance(quick, bool):
        raise ParameterError(f"quick: expected true or false, got {quick!r}.")
    sections = tuple(SECTIONS if sections is None else sections)
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        raise ParameterError(f"sections: unknown or empty {list(sections)}; choose from {list(SECTIONS)}.")
    if threads is not None:
        check_int("threads", threads, 1)
        torch.set_num_threads(threads)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = usable if workers is None else workers
    check_int("workers", workers, 0)
    out_path = Path(out_path)
    if out_path.suffix != ".json":
        raise ParameterError(f"out_path: expected a .json file, got {out_path}.")
    make_folder(out_path.parent, "out_path")  # now, not after a quarter of an hour of measuring
    log = log or (lambda message: None)
    plan = PLANS["quick" if quick else "full"]
    images = load_ham10000(data_dir, classes=classes)

    previous = read_json(out_path) if out_path.is_file() and set(sections) != set(SECTIONS) else {}
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "mode": "quick" if quick else "full",
        "machine": machine_description(), "data": {"source": images.source, "images": len(images),
                                                   "classes": list(images.classes), "synthetic": images.synthetic},
        "targets": TARGETS, "sections": dict(previous.get("sections", {})),
    }
    log(f"pskin bench ({results['mode']}) on {_describe(results['machine'])}")
    total_start = time.perf_counter()
    # Caches at 128 and 224 px are large (1.3 GB at 224): they are built in a scratch folder that goes at the end.
    with tempfile.TemporaryDirectory(prefix="pskin-bench-") as scratch:
        runs_dir, cache_dir = Path(scratch) / "runs", Path(scratch) / "cache"
        accuracy_run = None
        for name in sections:
            log(f"[{name}] ...")
            start = time.perf_counter()
            if name == "input_pipeline":
                section = {"cases": [bench_input_pipeline(images, s, plan["batch_size"], plan["input_batches"],
                                                          workers, cache_dir=cache_dir)
                                     for s in plan["input_sizes"]]}
            elif name == "training_efficiency":
                section = {"cases": [bench_training_efficiency(images, m, s, plan["batch_size"],
                                                               plan["efficiency_steps"],
                                                               rounds=plan["efficiency_rounds"], workers=workers,
                                                               cache_dir=cache_dir)
                                     for m, s in plan["efficiency_cases"]]}
            elif name == "precision":
                section = bench_precision_layouts(plan["precision_models"], plan["precision_sizes"],
                                                  batch_size=plan["precision_batch"],
                                                  n_steps=plan["precision_steps"])
                section["accuracy_check"] = bench_precision_accuracy(
                    images, epochs=plan["accuracy_epochs"], max_train_batches=plan["accuracy_batches"],
                    runs_dir=runs_dir)
                accuracy_run = section["accuracy_check"].get("bf16", {}).get("run_dir")
            elif name == "scaling":
                section = bench_scaling(images, batch_size=plan["batch_size"], n_images=plan["scaling_images"],
                                        sizes=plan["scaling_sizes"], size_images=plan["scaling_size_images"],
                                        cache_sizes=plan["cache_sizes"], cache_dir=cache_dir)
            else:
                run = Path(accuracy_run) if accuracy_run else _inference_run(images, runs_dir, plan)
                section = bench_inference(run, images, n_images=plan["inference_images"],
                                          n_single=plan["inference_single"])
            section.update(seconds=time.perf_counter() - start, mode=results["mode"],
                           finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
            results["sections"][name] = section
            log(f"[{name}] {section['seconds']:.0f} s")
    results["seconds"] = time.perf_counter() - total_start
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    results["machine"]["load_average_end"] = machine_description()["load_average"]
    results["summary"] = summarize(results)
    _drop_paths(results)
    write_json(out_path, results)
    log(format_summary(results))
    log(f"wrote {out_path}")
    return results


def _drop_paths(results: dict[str, Any]) -> None:
    # Temporary run folders are gone once the benchmark ends; their paths would only confuse a reader.
    check = results["sections"].get("precision", {}).get("accuracy_check", {})
    for precision in ("fp32", "bf16"):
        if isinstance(check.get(precision), dict):
            check[precision].pop("run_dir", None)


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a results dictionary: the ratios the appendix and the notes quote."""
    sections, summary = results.get("sections", {}), {}
    if "input_pipeline" in sections:
        summary["input_speedup"] = {f"{c['size']}px": round(c["speedup"], 2)
                                    for c in sections["input_pipeline"]["cases"]}
    if "training_efficiency" in sections:
        cases = sections["training_efficiency"]["cases"]
        summary["trainer_vs_raw"] = {f"{c['model']} {c['size']}px": round(c["trainer_vs_raw"], 3) for c in cases}
        summary["trainer_vs_usual"] = {f"{c['model']} {c['size']}px": round(c["trainer_vs_usual"], 2)
                                       for c in cases}
        summary["trainer_vs_typical"] = {f"{c['model']} {c['size']}px": round(c["trainer_vs_typical"], 2)
                                         for c in cases if "trainer_vs_typical" in c}
        summary["meets_targets"] = all(c["trainer_vs_raw"] >= TARGETS["trainer_vs_raw"]
                                       and c["trainer_vs_usual"] >= TARGETS["trainer_vs_usual"] for c in cases)
    if "precision" in sections:
        precision = sections["precision"]
        summary["auto_vs_fastest"] = {f"{c['model']} {c['size']}px": round(c["auto_vs_fastest"], 2)
                                      for c in precision["choices"]}
        check = precision.get("accuracy_check", {})
        if "holds" in check:
            summary["bf16_accuracy_holds"] = check["holds"]
    if "scaling" in sections:
        scaling = sections["scaling"]
        summary["cache_seconds"] = {f"{c['size']}px": round(c["seconds"], 1) for c in scaling["cache_preparation"]}
        summary["default_profile_training_minutes"] = round(_default_estimate(scaling)["training_seconds"] / 60, 1)
    if "inference" in sections:
        inference = sections["inference"]
        summary["evaluate_images_per_second"] = round(inference["evaluate_images_per_second"], 1)
        summary["single_prediction_ms"] = round(inference["single_latency_ms"]["median"], 1)
    return summary


def format_summary(results: dict[str, Any]) -> str:
    """A few lines a person can read in a terminal or paste into a note."""
    sections = results.get("sections", {})
    lines = [f"machine: {_describe(results['machine'])}"]
    for c in sections.get("input_pipeline", {}).get("cases", []):
        lines.append(f"input {c['size']}px: pskin {c['pskin']['images_per_second']:.0f} img/s vs usual "
                     f"{c['usual']['steady_images_per_second']:.0f} img/s ({c['workers']} workers, start-up "
                     f"{c['usual']['startup_seconds']:.1f} s): x{c['speedup']:.1f}")
    for c in sections.get("training_efficiency", {}).get("cases", []):
        lines.append(f"train {c['model']} {c['size']}px {c['precision']}{' CL' if c['channels_last'] else ''}: "
                     f"raw {c['raw_images_per_second']:.0f}, trainer {c['trainer_images_per_second']:.0f}, usual "
                     f"{c['usual_images_per_second']:.0f} img/s; trainer/raw {c['trainer_vs_raw']:.2f}, epoch "
                     f"x{c['trainer_vs_usual']:.2f} faster than usual"
                     + (f", x{c['trainer_vs_typical']:.2f} than the typical fp32 script"
                        if "trainer_vs_typical" in c else ""))
    for c in sections.get("precision", {}).get("choices", []):
        lines.append(f"precision {c['model']} {c['size']}px: auto {c['auto']['precision']}"
                     f"{' CL' if c['auto']['channels_last'] else ''} {c['auto']['images_per_second']:.0f} img/s, "
                     f"fastest {c['fastest']['precision']}{' CL' if c['fastest']['channels_last'] else ''} "
                     f"{c['fastest']['images_per_second']:.0f} img/s")
    check = sections.get("precision", {}).get("accuracy_check", {})
    if "holds" in check:
        lines.append(f"accuracy check ({check['note']}): val balanced accuracy fp32 "
                     f"{check['fp32']['val_balanced_accuracy']:.3f}, bf16 {check['bf16']['val_balanced_accuracy']:.3f}")
    scaling = sections.get("scaling")
    if scaling:
        lines.append("epoch vs images: " + ", ".join(f"{r['images']}: {r['seconds']:.1f} s"
                                                     for r in scaling["epoch_vs_images"]))
        lines.append("full epoch vs size: " + ", ".join(f"{r['size']}px: {r['projected_epoch_seconds']:.0f} s"
                                                        for r in scaling["epoch_vs_size"]))
        lines.append("cache preparation: " + ", ".join(f"{r['images']} images at {r['size']}px {r['seconds']:.0f} s"
                                                       for r in scaling["cache_preparation"]))
        lines.append(f"default profile training (estimate): "
                     f"{_default_estimate(scaling)['training_seconds'] / 60:.1f} min")
    inference = sections.get("inference")
    if inference:
        lines.append(f"evaluate: {inference['evaluate_images_per_second']:.0f} img/s; one prediction: "
                     f"{inference['single_latency_ms']['median']:.0f} ms")
    if "seconds" in results:
        lines.append(f"benchmarks took {results['seconds'] / 60:.1f} min")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Command line


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``pskin bench`` to the CLI's subcommands."""
    parser = subparsers.add_parser("bench", help="run the CPU benchmarks and write book/results/benchmarks.json")
    parser.add_argument("--data-dir", default=None,
                        help="folder holding HAM10000 (default: $PSKIN_DATA, else data/ham10000)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"results file (default: {DEFAULT_OUT})")
    parser.add_argument("--quick", action="store_true", help="smaller settings: about 2-3 minutes instead of 15")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=None, metavar="SECTION",
                        help=f"run only these sections ({', '.join(SECTIONS)}); the file keeps the others")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: one per core)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers of the usual pipeline (default: one per usable CPU)")
    parser.set_defaults(func=cmd_bench)
    return parser


def cmd_bench(args: argparse.Namespace) -> int:
    run_benchmarks(args.data_dir, args.out, quick=args.quick, sections=args.only, threads=args.threads,
                   workers=args.workers)
    return 0


RATIOS = {"trainer_vs_raw": "trainer / raw model", "trainer_vs_usual": "trainer / usual pipeline",
          "trainer_vs_typical": "trainer / typical fp32 script", "input_speedup": "cache / JPEG decoding (input only)"}


def ratio_table(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The side-by-side ratios of :func:`summarize`, one row per (figure, case); empty without results."""
    return [{"figure": label, "case": case, "value": value}
            for name, label in RATIOS.items() for case, value in summary.get(name, {}).items()]


def ratio_ranges(summary: dict[str, Any]) -> dict[str, float]:
    """``<ratio>_low`` and ``<ratio>_high`` of each ratio over its cases (NaN without results)."""
    ranges = {}
    for name in RATIOS:
        values = list(summary.get(name, {}).values()) or [float("nan")]
        ranges.update({f"{name}_low": min(values), f"{name}_high": max(values)})
    return ranges


def plot_efficiency(results: dict[str, Any]):
    """Training images per second of each case: the raw model, pskin's trainer, the usual pipeline and the
    typical fp32 script, as horizontal bars."""
    import matplotlib.pyplot as plt
    import pandas as pd

    cases = pd.DataFrame(results["sections"]["training_efficiency"]["cases"])
    cases["case"] = cases["model"] + " " + cases["size"].astype(str) + " px"
    columns = [c for c in ("raw_images_per_second", "trainer_images_per_second", "usual_images_per_second",
                           "typical_images_per_second") if c in cases]
    ax = cases.set_index("case")[columns].rename(columns=lambda c: c.replace("_images_per_second", "")).plot.barh(
        figsize=(8, 3.4))
    ax.set_xlabel("training images per second")
    ax.set_ylabel("")
    ax.set_title("raw model, pskin's trainer, the usual pipeline, the typical fp32 script", fontsize=10)
    ax.figure.tight_layout()
    plt.close(ax.figure)
    return ax.figure


def load_results(path: str | os.PathLike = DEFAULT_OUT) -> dict[str, Any]:
    """Read a results file written by :func:`run_benchmarks` (for the book's appendix)."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"{path}: no benchmark results yet; run `pskin bench` to write them.")
    return json.loads(path.read_text())

