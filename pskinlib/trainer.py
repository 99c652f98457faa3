"""The weighted trainer: a loop you can read top to bottom.

``train(config)`` does what the paper describes — softmax cross-entropy with class weights, a fixed number of
epochs, keep the epoch with the best validation accuracy — and records everything in a run folder
(:mod:`pskinlib.runs`). ``resume(run_dir)`` continues an interrupted run and ends in the same state an
uninterrupted run would have reached: batches and augmentation depend only on ``(seed, epoch)``, the learning rate
is a function of the step, and the global RNG is reseeded every epoch.

Options act where you can see them: bf16 autocast (on CUDA, and on CPUs with AVX512-BF16, where it about doubles a
ResNet's speed), channels_last, deterministic algorithms, a class-balanced sampler, focal loss, and distributed
data parallel training when started by ``torchrun`` (gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from . import __version__
from .cache import prepare_images
from .config import TrainConfig, make_config
from .data import LesionImages, load_ham10000
from .datasets import Augmentation, BatchLoader, SplitTensors, split_tensors
from .info import SYNTHETIC_WARNING
from .metrics import majority_baseline, report_with_intervals
from .models import RESNETS, build_model
from .runs import (
    default_runs_dir,
    load_checkpoint,
    new_run_dir,
    predictions_table,
    read_json,
    save_checkpoint,
    write_csv,
    write_json,
)
from .splits import make_split, read_split, split_hash, split_summary, write_split
from .weights import balanced_sampler_weights, class_weights, focal_loss


class TrainingError(RuntimeError):
    """Training cannot go on (for example, the loss became NaN)."""


# ---------------------------------------------------------------------------------------------------------------
# The machine


def select_device(name: str = "auto") -> torch.device:
    """``auto``: the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} was asked for but no CUDA GPU is available; use 'cpu' or 'auto'.")
    return device


# Every model here halves its maps five times; the fifth halving takes a map at 1/16 of the image, so at 16 px or
# less that stride-2 convolution sees a 1x1 map. On the CPU (torch 2.14, oneDNN) the bf16 weight gradient of a
# stride-2 convolution on a 1x1 map is garbage, different on every call and NaN about one call in ten (dense 3x3 and
# depthwise 5x5 alike); on a 2x2 map it matches fp32 to 0.4 % (measured on this project's 2-core Xeon with
# AVX512-BF16).
SMALLEST_CPU_BF16_SIZE = 17


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 where it pays: always on CUDA; on CPUs with AVX512-BF16 for ResNets (EfficientNet's depthwise
    convolutions gain nothing there). ``precision='fp32'`` or ``'bf16'`` overrides. ``deterministic`` runs on the
    CPU stay in fp32: oneDNN's bf16 kernels differ from run to run in the last bits (measured: two identical bf16
    runs ended with different weights, fp32 runs with equal ones). Images of 16 px or less stay in fp32 on the CPU,
    and an explicit ``'bf16'`` is refused there (see ``SMALLEST_CPU_BF16_SIZE``)."""
    if config.precision == "fp32":
        return None
    if device.type == "cpu" and config.image_size < SMALLEST_CPU_BF16_SIZE:
        if config.precision == "bf16":
            raise ValueError(f"precision='bf16' on the CPU needs image_size >= {SMALLEST_CPU_BF16_SIZE} (got "
                             f"{config.image_size}): at that size the last stride-2 convolution sees a 1x1 map, and "
                             f"oneDNN's bf16 weight gradient for it is garbage (NaN at times). Use precision='fp32' "
                             f"or 'auto'.")
        return None
    if config.precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16
    if config.deterministic:
        return None
    return torch.bfloat16 if torch.cpu._is_avx512_bf16_supported() and config.model in RESNETS else None


def use_channels_last(config: TrainConfig, device: torch.device) -> bool:
    """channels_last unless the config says otherwise: `pskin bench` measured it fastest here for every case it
    tried (resnet18/50 bf16 and efficientnet_b0 fp32 at 64 and 128 px on the 2-core CPU; on CUDA it is the usual
    choice with bf16)."""
    return True if config.channels_last is None else config.channels_last


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def _distributed() -> tuple[int, int]:
    """(rank, world size) when started by torchrun, else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world) if world > 1 else (0, 1)


# ---------------------------------------------------------------------------------------------------------------
# Data for a run


@dataclass
class RunData:
    """What a run trains and evaluates on."""

    images: LesionImages
    split: pd.DataFrame
    tensors: dict[str, SplitTensors]


def prepare_run_data(config: TrainConfig, split: pd.DataFrame | None = None) -> RunData:
    """Load the data, prepare the cache at the run's image size, and split it (or reuse a recorded split)."""
    images = load_ham10000(config.data_dir, classes=config.classes, skip_missing=config.skip_missing)
    prepared = prepare_images(images, config.image_size, skip_unreadable=config.skip_unreadable,
                              progress=not config.quiet)
    if prepared.unreadable:
        images = images.without(prepared.unreadable)
    if split is None:
        split = make_split(images, config.protocol, seed=config.split_seed, fractions=config.fractions)
    return RunData(images, split, split_tensors(prepared, split, images.classes))


# ---------------------------------------------------------------------------------------------------------------
# One epoch


def learning_rate(step: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """The learning rate at optimiser step ``step``: linear warm-up, then cosine, step or constant."""
    warmup = config.warmup_epochs * steps_per_epoch
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.schedule == "cosine":
        total = config.epochs * steps_per_epoch
        progress = (step - warmup) / max(1.0, total - warmup)
        return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if config.schedule == "step":
        return config.lr * config.step_gamma ** (step // (config.step_size * steps_per_epoch))
    return config.lr


def count_confusion(labels: torch.Tensor, predictions: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Counts per (true, predicted) pair, on the tensors' device, without a sync."""
    return torch.bincount(labels * n_classes + predictions, minlength=n_classes ** 2).view(n_classes, n_classes)


def scores(confusion: torch.Tensor) -> dict[str, float]:
    """Accuracy, balanced accuracy and per-class recall from a confusion matrix (rows true, columns predicted)."""
    confusion = confusion.double()
    support = confusion.sum(1)
    recall = torch.where(support > 0, confusion.diag() / support.clamp(min=1), torch.nan)
    return {"accuracy": float(confusion.diag().sum() / confusion.sum().clamp(min=1)),
            "balanced_accuracy": float(recall[support > 0].mean()),
            **{f"recall_{i}": float(r) for i, r in enumerate(recall)}}


def train_one_epoch(model: nn.Module, criterion: Callable, optimizer: torch.optim.Optimizer, loader: BatchLoader,
                    device: torch.device, epoch: int, config: TrainConfig, n_classes: int,
                    amp_dtype: torch.dtype | None, ema: nn.Module | None = None) -> dict[str, float]:
    """One pass over the training batches; returns the epoch's loss, scores, learning rate and speed."""
    model.train()
    loader.set_epoch(epoch)
    steps_per_epoch = len(loader) if config.max_train_batches is None else min(len(loader),
                                                                               config.max_train_batches)
    confusion = torch.zeros(n_classes, n_classes, dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    seen, start = 0, time.perf_counter()
    for step, (images, labels) in enumerate(loader):
        if step >= steps_per_epoch:
            break
        lr = learning_rate(epoch * steps_per_epoch + step, steps_per_epoch, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast(device, amp_dtype):
            logits = model(images)
        loss = criterion(logits.float(), labels)
        # On the CPU the check costs nothing (work is synchronous); on a GPU it would stall the queue every step.
        if (device.type == "cpu" or step % 50 == 0) and not torch.isfinite(loss):
            raise TrainingError(f"The loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} "
                                f"(lr {lr:.3g}). Lower lr, or use precision='fp32'.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        loss_sum += loss.detach() * len(labels)
        confusion += count_confusion(labels, logits.argmax(1), n_classes)
        seen += len(labels)
    if dist.is_initialized():
        totals = torch.cat([confusion.flatten().double(), loss_sum.view(1), torch.tensor([seen], device=device)])
        dist.all_reduce(totals)
        confusion = totals[:-2].long().view(n_classes, n_classes)
        loss_sum, seen = totals[-2], int(totals[-1])
    if not torch.isfinite(loss_sum):
        raise TrainingError(f"The loss became NaN during epoch {epoch + 1}. Lower lr, or use precision='fp32'.")
    seconds = time.perf_counter() - start
    return {"loss": float(loss_sum) / max(seen, 1), **scores(confusion.cpu()), "lr": lr,
            "seconds": seconds, "images_per_second": seen / seconds}


def tta_views(images: torch.Tensor, tta: bool) -> list[torch.Tensor]:
    """The views a prediction averages: the image, and with ``tta`` its three flips (dermoscopy has no "up")."""
    return [images, images.flip(3), images.flip(2), images.flip(2, 3)] if tta else [images]


@torch.no_grad()
def predict_proba(model: nn.Module, loader: BatchLoader, device: torch.device, amp_dtype: torch.dtype | None,
                  tta: bool = False) -> np.ndarray:
    """Class probabilities for every image of an (unshuffled) loader; ``tta`` averages the four flips."""
    model.eval()
    outputs = []
    for images, _ in loader:
        views = tta_views(images, tta)
        with autocast(device, amp_dtype):
            probs = sum(F.softmax(model(v).float(), dim=1) for v in views) / len(views)
        outputs.append(probs.cpu())
    return torch.cat(outputs).numpy().astype(np.float64)


def evaluate(model: nn.Module, loader: BatchLoader, device: torch.device, amp_dtype: torch.dtype | None,
             n_classes: int) -> dict[str, float]:
    """Validation loss and scores (unweighted loss, so epochs compare on one scale)."""
    probs = predict_proba(model, loader, device, amp_dtype)
    labels = loader.labels.cpu()
    loss = F.nll_loss(torch.log(torch.from_numpy(probs).clamp(min=1e-12)), labels).item()
    predictions = torch.from_numpy(probs.argmax(1))
    return {"loss": loss, **scores(count_confusion(labels, predictions, n_classes))}


# ---------------------------------------------------------------------------------------------------------------
# A whole run


def make_criterion(config: TrainConfig, weights: torch.Tensor) -> Callable:
    if config.loss == "focal":
        return lambda logits, target: focal_loss(logits, target, weights, config.focal_gamma)
    return nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    # No weight decay on biases and normalisation parameters: the usual recipe (torchvision's references too).
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr)


def cpu_name() -> str:
    """The processor's model name (``platform.processor()`` is empty on Linux)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _environment(device: torch.device, amp_dtype: torch.dtype | None, channels_last: bool) -> dict:
    import torchvision

    return {
        "python": sys.version.split()[0], "torch": torch.__version__, "torchvision": torchvision.__version__,
        "numpy": np.__version__, "pandas": pd.__version__, "pskinlib": __version__,
        "platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "precision": "bf16 autocast" if amp_dtype is not None else "fp32",
        "channels_last": channels_last,
    }


def train(config: TrainConfig | None = None, *, runs_dir: str | os.PathLike | None = None,
          on_epoch_end: Callable[[dict], None] | None = None, **overrides) -> Path:
    """Train one run and record it; returns the run folder.

    ``config`` (or ``make_config(**overrides)``) is validated before anything else happens. ``on_epoch_end``
    receives each epoch's history row (for live plots; raising from it stops the run, which can be resumed).
    """
    config = config if config is not None else make_config(**overrides)
    return _run(config, run_dir=None, runs_dir=runs_dir, on_epoch_end=on_epoch_end)


def resume(run_dir: str | os.PathLike, *, on_epoch_end: Callable[[dict], None] | None = None) -> Path:
    """Continue an interrupted run from its ``last.pt`` with its recorded config and split."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ValueError(f"run_dir: {run_dir} holds no config.json; it is not a pskin run folder.")
    recorded = read_json(run_dir / "config.json")
    config = make_config(recorded["config"].pop("profile"), **recorded["config"])
    return _run(config, run_dir=run_dir, runs_dir=None, on_epoch_end=on_epoch_end)


def _run(config: TrainConfig, *, run_dir: Path | None, runs_dir, on_epoch_end) -> Path:
    rank, world = _distributed()
    device = select_device(config.device)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    amp_dtype = autocast_dtype(config, device)

    resuming = run_dir is not None
    data = prepare_run_data(config, read_split(run_dir / "split.csv") if resuming else None)
    classes = data.images.classes
    n_classes = len(classes)
    train_tensors = data.tensors["train"]
    counts = torch.bincount(train_tensors.labels, minlength=n_classes)
    weights = class_weights(counts.numpy(), config.class_weights, beta=config.effective_beta,
                            manual=config.manual_weights)
    weights_t = torch.tensor(weights, dtype=torch.float32, device=device)
    sampler_weights = balanced_sampler_weights(train_tensors.labels, n_classes) if config.sampler == "balanced" \
        else None
    channels_last = use_channels_last(config, device)
    loader_options = dict(device=device, channels_last=channels_last, seed=config.seed)
    augmentation = Augmentation(crop_scale=config.crop_scale, brightness=config.colour_jitter,
                                contrast=config.colour_jitter, saturation=config.colour_jitter) \
        if config.augment else None
    train_loader = BatchLoader(train_tensors.pixels, train_tensors.labels, batch_size=config.batch_size,
                               augmentation=augmentation, shuffle=True,
                               drop_last=True, rank=rank, world_size=world, sampler_weights=sampler_weights,
                               **loader_options)
    eval_loaders = {name: BatchLoader(t.pixels, t.labels, batch_size=max(config.batch_size, 128),
                                      **loader_options)
                    for name, t in data.tensors.items() if name != "train"}

    torch.manual_seed(config.seed)
    model = build_model(config.model, n_classes, pretrained=config.pretrained).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(config, model)
    criterion = make_criterion(config, weights_t)

    history: list[dict] = []
    best = {"epoch": -1, "score": -math.inf}
    start_epoch = 0
    if resuming:
        state = load_checkpoint(run_dir / "last.pt", map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, best, start_epoch = state["history"], state["best"], state["epoch"] + 1
    elif rank == 0:
        run_dir = new_run_dir(runs_dir or default_runs_dir(), f"{config.model}-{config.image_size}px")
        write_split(data.split, run_dir / "split.csv")
        write_json(run_dir / "config.json", {
            "config": config.to_dict(),
            "data": {"source": data.images.source, "root": str(data.images.root),
                     "synthetic": data.images.synthetic, "classes": list(classes),
                     "images": len(data.images), "skipped_images": list(data.images.skipped),
                     "split_hash": split_hash(data.split),
                     "split_counts": split_summary(data.split, classes).reset_index().to_dict("records")},
            "class_weights": dict(zip(classes, weights.tolist())),
            "train_counts": dict(zip(classes, counts.tolist())),
            "environment": {**_environment(device, amp_dtype, channels_last), "world_size": world},
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        })
    # An exponential moving average of the weights: smoother than the last step's weights, and usually better
    # on short schedules. Evaluation, model selection and the saved best model use it when it is on.
    ema = None
    if config.ema_decay is not None:
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        if resuming:
            ema.load_state_dict(state["ema"])
    if world > 1:
        shared = [str(run_dir) if run_dir else None]
        dist.broadcast_object_list(shared, src=0)
        run_dir = Path(shared[0])
        model = nn.parallel.DistributedDataParallel(model)
    bare_model = getattr(model, "module", model)
    eval_model = ema.module if ema is not None else bare_model

    progress = _epoch_bar(config, start_epoch, rank)
    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(config.seed * 1_000 + epoch)  # dropout / stochastic depth: same draws when resumed
        train_stats = train_one_epoch(model, criterion, optimizer, train_loader, device, epoch, config, n_classes,
                                      amp_dtype, ema)
        if rank == 0:
            val_stats = evaluate(eval_model, eval_loaders["val"], device, amp_dtype, n_classes)
            row = {"epoch": epoch + 1, "lr": train_stats.pop("lr"), "seconds": train_stats.pop("seconds"),
                   "images_per_second": train_stats.pop("images_per_second"),
                   **_named(train_stats, "train", classes), **_named(val_stats, "val", classes)}
            history.append(row)
            score = val_stats[config.select_metric]
            state = {"model": bare_model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                     "history": history, "best": best, "classes": list(classes)}
            if ema is not None:
                state["ema"] = ema.state_dict()
            if score > best["score"]:
                best = {"epoch": epoch, "score": score}
                state["best"] = best
                save_checkpoint(run_dir / "best.pt", state)
            save_checkpoint(run_dir / "last.pt", state)
            write_csv(run_dir / "history.csv", pd.DataFrame(history))
            progress(row, config.select_metric)
            if on_epoch_end is not None:
                on_epoch_end(row)
    if rank == 0:
        _final_evaluation(run_dir, eval_model, eval_loaders, data, config, device, amp_dtype, best)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return run_dir


def _named(stats: dict, prefix: str, classes: tuple[str, ...]) -> dict:
    out = {}
    for key, value in stats.items():
        if key.startswith("recall_"):
            key = f"recall_{classes[int(key.split('_')[1])]}"
        out[f"{prefix}_{key}"] = value
    return out


def _epoch_bar(config: TrainConfig, start_epoch: int, rank: int) -> Callable[[dict, str], None]:
    if config.quiet or rank != 0:
        return lambda row, metric: None
    from tqdm.auto import tqdm

    bar = tqdm(total=config.epochs, initial=start_epoch, desc=f"{config.model} {config.image_size}px",
               unit="epoch")

    def update(row: dict, metric: str) -> None:
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{row[f'val_{metric}']:.3f}",
                        ips=f"{row['images_per_second']:.0f}")
        bar.update(1)
        if row["epoch"] == config.epochs:
            bar.close()

    return update


def evaluation_weights(state: dict) -> dict:
    """The weights a checkpoint is evaluated with: the moving average when the run kept one."""
    if "ema" not in state:
        return state["model"]
    # AveragedModel keeps the network under "module." plus a step counter.
    return {k[len("module."):]: v for k, v in state["ema"].items() if k.startswith("module.")}


def _final_evaluation(run_dir: Path, model: nn.Module, loaders: dict[str, BatchLoader], data: RunData,
                      config: TrainConfig, device: torch.device, amp_dtype, best: dict) -> None:
    """Reload the best epoch, predict validation and test, and write predictions and metrics."""
    model.load_state_dict(evaluation_weights(load_checkpoint(run_dir / "best.pt", map_location=device)))
    classes = data.images.classes
    metadata = data.images.table.set_index("image_id")
    metrics = {"best_epoch": best["epoch"] + 1, "select_metric": config.select_metric,
               "tta": config.tta, "classes": list(classes), "synthetic": data.images.synthetic}
    for name, loader in loaders.items():
        probs = predict_proba(model, loader, device, amp_dtype, tta=config.tta)
        labels = loader.labels.cpu().numpy()
        ids = list(data.tensors[name].image_ids)
        table = predictions_table(ids, labels, probs, classes, lesion_ids=metadata.loc[ids, "lesion_id"])
        write_csv(run_dir / f"predictions_{name}.csv", table)
        metrics[name] = report_with_intervals(labels, probs, classes, seed=config.seed)
    metrics["majority_baseline"] = majority_baseline(data.tensors["train"].labels.numpy(),
                                                     data.tensors["test"].labels.numpy(), len(classes))
    if data.images.synthetic:
        metrics["warning"] = SYNTHETIC_WARNING
    write_json(run_dir / "metrics.json", metrics)
