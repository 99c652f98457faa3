"""The weighted trainer: a loop you can read top to bottom.

``train(config)`` does what the paper describes — softmax cross-entropy with class weights, a fixed number of
epochs, keep the epoch with the best validation accuracy — and records everything in a run folder
(:class:`pskinlib.runs.RunRecord`). ``resume(run_dir)`` continues an interrupted run and ends in the same state an
uninterrupted run would have reached: batches and augmentation depend only on ``(seed, epoch)``, the learning rate
is a function of the step, and the global RNG is reseeded every epoch.

``_run`` calls a run's stages in order, each a function of its own below it: the runtime (processes, device,
threads, precision), the data's loaders, the network (model, optimiser, loss, moving average), the record (new, or
resumed from its ``last`` checkpoint), the epochs, and the end (the best weights evaluated on validation and test).

Options act where you can see them: bf16 autocast (on CUDA, and on CPUs with AVX512-BF16, where it about doubles a
ResNet's speed), channels_last, deterministic algorithms, a class-balanced sampler, focal loss, a time budget
(``max_minutes``: the loop stops after the last epoch that fits and still evaluates the best one), checkpoints
every epoch or the best weights kept in memory and written once, and distributed data parallel training when
started by ``torchrun`` (gloo on CPU, NCCL on GPUs). The training step never waits for the GPU: scores are counted
on the device and read once per epoch.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..data.batches import Augmentation, BatchLoader, SplitTensors, split_tensors
from ..data.cache import Preprocessing, prepare_images
from ..data.ham10000 import LesionImages, load_ham10000
from ..data.labelled_folders import extra_training_images
from ..data.splits import make_split, split_hash, split_summary
from ..errors import ParameterError, TrainingError
from ..info import SYNTHETIC_WARNING
from ..metrics import confusion_scores, majority_baseline, report_with_intervals
from ..runs import RunRecord, default_runs_dir, predictions_table
from .config import TrainConfig, make_config
from .device import autocast, autocast_dtype, distributed, run_environment, select_device, use_channels_last
from .losses import balanced_sampler_weights, class_weights, focal_loss
from .models import build_model, head_layer, model_spec

EpochCallback = Callable[[dict], "bool | None"]

# ---------------------------------------------------------------------------------------------------------------
# Data for a run


@dataclass
class RunData:
    """What a run trains and evaluates on."""

    images: LesionImages
    split: pd.DataFrame
    tensors: dict[str, SplitTensors]


def preprocessing_of(config: TrainConfig) -> Preprocessing:
    """How a run's images go from their files to the cache (resizing, colour constancy)."""
    return Preprocessing(config.resize, config.colour_constancy)


def prepare_run_data(config: TrainConfig, split: pd.DataFrame | None = None) -> RunData:
    """Load the data, split it (or reuse a recorded split), add the other collections' training images the config
    names (to the training split only), and prepare the cache at the run's image size and preprocessing."""
    images = load_ham10000(config.data_dir, classes=config.classes, skip_missing=config.skip_missing)
    if split is None:
        split = make_split(images, config.protocol, seed=config.split_seed, fractions=config.fractions)
    if config.extra_sources:
        extra = extra_training_images(config.extra_sources, images.classes)
        images = images.with_rows(extra)
        added = extra.assign(split="train")[list(split.columns)]
        split = pd.concat([split, added[~added["image_id"].isin(split["image_id"])]], ignore_index=True)
    prepared = prepare_images(images, config.image_size, skip_unreadable=config.skip_unreadable,
                              progress=not config.quiet, preprocessing=preprocessing_of(config))
    if prepared.unreadable:
        images = images.without(prepared.unreadable)
        split = split[~split["image_id"].isin(prepared.unreadable)].reset_index(drop=True)
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


def training_size(epoch: int, config: TrainConfig) -> int:
    """The image side an epoch trains at: ``image_size``, or with progressive resizing a size growing linearly from
    ``progressive_start_size`` at the first epoch to ``image_size`` at the last (in steps of 8 pixels). Validation
    and test always see ``image_size``."""
    start = config.progressive_start_size
    if start is None or config.epochs == 1:
        return config.image_size
    size = start + (config.image_size - start) * epoch / (config.epochs - 1)
    return min(config.image_size, int(round(size / 8) * 8))


def count_confusion(labels: torch.Tensor, predictions: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Counts per (true, predicted) pair, ``(K, K)`` int64 on the tensors' device. ``index_add_`` rather than
    ``bincount``: bincount reads the largest value back to size its output, which makes a GPU wait."""
    counts = torch.zeros(n_classes * n_classes, dtype=torch.int64, device=labels.device)
    counts.index_add_(0, labels * n_classes + predictions, torch.ones_like(labels))
    return counts.view(n_classes, n_classes)


def train_one_epoch(model: nn.Module, criterion: Callable, optimizer: torch.optim.Optimizer, loader: BatchLoader,
                    device: torch.device, epoch: int, config: TrainConfig, classes: tuple[str, ...],
                    amp_dtype: torch.dtype | None, ema: nn.Module | None = None) -> dict[str, float]:
    """One pass over the training batches; returns the epoch's loss, scores, learning rate and speed."""
    model.train()
    if config.batchnorm == "frozen":  # the pretrained statistics stay: batch norm layers predict as in eval mode
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    size = training_size(epoch, config)
    loader.set_epoch(epoch)
    steps = len(loader) if config.max_train_batches is None else min(len(loader), config.max_train_batches)
    confusion = torch.zeros(len(classes), len(classes), dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    start, lr = time.perf_counter(), config.lr
    for step, (images, labels) in enumerate(itertools.islice(loader, steps)):
        lr = learning_rate(epoch * steps + step, steps, config)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        if size != images.shape[-1]:
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        with autocast(device, amp_dtype):
            logits = model(images)
        loss = criterion(logits.float(), labels)
        # On the CPU the check costs nothing (work is synchronous); on a GPU it would make every step wait, so
        # there the epoch's summed loss is checked once at its end instead.
        if device.type == "cpu" and not torch.isfinite(loss):
            raise TrainingError(f"The loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} "
                                f"(lr {lr:.3g}). Lower lr, or use precision='fp32'.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        loss_sum += loss.detach() * len(labels)
        confusion += count_confusion(labels, logits.detach().argmax(1), len(classes))
    if dist.is_initialized():
        dist.all_reduce(confusion)
        dist.all_reduce(loss_sum)
    seen = int(confusion.sum())  # every image counted once
    if not torch.isfinite(loss_sum):
        raise TrainingError(f"The loss became NaN during epoch {epoch + 1}. Lower lr, or use precision='fp32'.")
    seconds = time.perf_counter() - start
    return {"loss": float(loss_sum) / max(seen, 1), **confusion_scores(confusion.cpu().numpy(), classes), "lr": lr,
            "seconds": seconds, "images_per_second": seen / seconds}


def tta_views(images: torch.Tensor, tta: bool | str | None) -> list[torch.Tensor]:
    """The views a prediction averages (dermoscopy has no "up"): the image alone when ``tta`` is off; its four
    flips with ``True`` or ``"flips"``; with ``"dihedral"`` the eight flips and quarter turns; with
    ``"dihedral_zoom"`` those of the image and of its centre 87.5 % zoomed back to full size (16 views)."""
    if not tta:
        return [images]
    flips = [images, images.flip(3), images.flip(2), images.flip(2, 3)]
    if tta is True or tta == "flips":
        return flips
    dihedral = flips + [v.transpose(2, 3) for v in flips]  # a transpose is a quarter turn and a flip
    if tta == "dihedral":
        return dihedral
    size = images.shape[-1]
    margin = round(size / 16)
    zoomed = F.interpolate(images[..., margin:size - margin, margin:size - margin], size=(size, size),
                           mode="bilinear", align_corners=False, antialias=True)
    return dihedral + tta_views(zoomed, "dihedral")


def tta_of(config: TrainConfig) -> str | None:
    """The test-time views a config asks for (None: the image alone)."""
    return config.tta_views if config.tta else None


@torch.no_grad()
def predict_proba(model: nn.Module, loader: BatchLoader, device: torch.device, amp_dtype: torch.dtype | None,
                  tta: bool | str | None = False) -> np.ndarray:
    """Class probabilities ``(N, K)`` for every image of an (unshuffled) loader, averaged over the views of ``tta``
    (:func:`tta_views`)."""
    model.eval()
    outputs = []
    for images, _ in loader:
        views = tta_views(images, tta)
        with autocast(device, amp_dtype):
            outputs.append(sum(F.softmax(model(v).float(), dim=1) for v in views) / len(views))
    return torch.cat(outputs).cpu().numpy().astype(np.float64)  # one copy back, not one per batch


def evaluate(model: nn.Module, loader: BatchLoader, device: torch.device, amp_dtype: torch.dtype | None,
             classes: tuple[str, ...]) -> dict[str, float]:
    """Validation loss and scores (unweighted loss, so epochs compare on one scale)."""
    probs = predict_proba(model, loader, device, amp_dtype)
    labels = loader.labels.cpu().numpy()
    loss = float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())
    if not np.isfinite(probs).all():
        loss = float("nan")
    confusion = count_confusion(torch.from_numpy(labels), torch.from_numpy(probs.argmax(1)), len(classes))
    return {"loss": loss, **confusion_scores(confusion.numpy(), classes)}


# ---------------------------------------------------------------------------------------------------------------
# A whole run


def make_criterion(config: TrainConfig, weights: torch.Tensor) -> Callable:
    if config.loss == "focal":
        return lambda logits, target: focal_loss(logits, target, weights, config.focal_gamma)
    return nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD or AdamW over four groups: head and backbone (the backbone at ``backbone_lr_scale`` of the rate, read by
    the loop as ``lr_scale``), each with and without weight decay. Biases and normalisation parameters get none
    unless ``decay_norms_and_biases``: the usual recipe (torchvision's references too)."""
    head = {id(p) for p in head_layer(model).parameters()}
    groups = []
    for in_head in (True, False):
        scale = 1.0 if in_head else config.backbone_lr_scale
        params = [p for p in model.parameters() if (id(p) in head) == in_head]
        decay = [p for p in params if p.ndim > 1 or config.decay_norms_and_biases]
        no_decay = [p for p in params if not (p.ndim > 1 or config.decay_norms_and_biases)]
        groups += [{"params": ps, "weight_decay": wd, "lr_scale": scale}
                   for ps, wd in ((decay, config.weight_decay), (no_decay, 0.0)) if ps]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr)


def train(config: TrainConfig | None = None, *, runs_dir: str | os.PathLike | None = None,
          on_epoch_end: EpochCallback | None = None, split: pd.DataFrame | None = None, **overrides) -> Path:
    """Train one run and record it; returns the run folder (``RunRecord.open(folder)`` reads it).

    ``config`` (or ``make_config(**overrides)``) is validated before anything else happens. ``on_epoch_end``
    receives each epoch's history row: returning True ends training there (the best epoch is still evaluated and
    recorded); raising from it stops the run where it is (``resume`` continues it). ``split``: a split to train on
    as given (a table like ``RunRecord.split()``), instead of drawing the config's protocol.
    """
    config = config if config is not None else make_config(**overrides)
    return _run(config, record=None, runs_dir=runs_dir, on_epoch_end=on_epoch_end, split=split).path


def resume(run_dir: str | os.PathLike, *, on_epoch_end: EpochCallback | None = None) -> Path:
    """Continue an interrupted run from its ``last`` checkpoint with its recorded config and split (from its first
    epoch when it was stopped before one ended)."""
    record = RunRecord.open(run_dir)
    return _run(record.config, record=record, runs_dir=None, on_epoch_end=on_epoch_end).path


def _run(config: TrainConfig, *, record: RunRecord | None, runs_dir, on_epoch_end,
         split: pd.DataFrame | None = None) -> RunRecord:
    started = time.perf_counter()
    runtime = _set_up_runtime(config)
    data = prepare_run_data(config, record.split() if record is not None else split)
    loaders = _make_loaders(config, data, runtime)
    network = _build_network(config, len(data.images.classes), loaders.class_weights, runtime)
    record, progress = _open_record(config, record, runs_dir, data, loaders, network, runtime)
    _train_epochs(config, runtime, data, loaders, network, record, progress, on_epoch_end, started)
    _finish(config, runtime, data, loaders, network, record, progress)
    return record


@dataclass
class Runtime:
    """Where this process computes and how: its rank among ``world`` processes, its device, autocast and layout."""

    rank: int
    world: int
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool


def _set_up_runtime(config: TrainConfig) -> Runtime:
    """Join the process group (under torchrun), pick the device, and set threads, determinism and precision."""
    rank, world = distributed()
    if world > 1 and config.freeze_backbone_epochs:  # checked before any data loads
        raise ParameterError("freeze_backbone_epochs: not with several processes (data parallel needs every "
                             "parameter's gradient in every step); train on one process, or set it to 0.")
    device = select_device(config.device)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":  # one GPU per process
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS is deterministic only with it
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False  # benchmarking may pick other kernels on every run
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return Runtime(rank, world, device, autocast_dtype(config, device), use_channels_last(config, device))


@dataclass
class RunLoaders:
    """A run's batches, with the training split's class counts, loss weights and collections (the record shows
    them)."""

    train: BatchLoader
    evaluation: dict[str, BatchLoader]  # the other parts of the split: val and test, in order, unaugmented
    train_counts: torch.Tensor
    class_weights: np.ndarray
    train_sources: pd.Series


def _make_loaders(config: TrainConfig, data: RunData, runtime: Runtime) -> RunLoaders:
    """The training batches (this process's share, class-balanced when the sampler says so) and the evaluation
    batches."""
    classes = data.images.classes
    train_tensors = data.tensors["train"]
    counts = torch.bincount(train_tensors.labels, minlength=len(classes))
    weights = class_weights(counts.numpy(), config.class_weights, beta=config.effective_beta,
                            manual=config.manual_weights)
    # The collection each training image comes from: HAM10000, or a second source (extra_sources).
    train_sources = data.images.table.set_index("image_id").loc[list(train_tensors.image_ids), "source_dataset"]
    sampler_weights = None
    if config.sampler == "balanced":
        sampler_weights = balanced_sampler_weights(train_tensors.labels, len(classes))
    elif config.sampler == "balanced_sources":  # every (collection, class) pair drawn equally often
        groups = pd.factorize(train_sources.to_numpy() + "|" + train_tensors.labels.numpy().astype(str))[0]
        sampler_weights = balanced_sampler_weights(torch.from_numpy(groups), int(groups.max()) + 1)
    loader_options = dict(device=runtime.device, channels_last=runtime.channels_last, seed=config.seed,
                          normalisation=model_spec(config.model).normalisation)
    augmentation = Augmentation(crop_scale=config.crop_scale, brightness=config.colour_jitter,
                                contrast=config.colour_jitter, saturation=config.colour_jitter, hue=config.hue,
                                gamma=config.gamma, channel_gain=config.channel_gain, blur=config.blur,
                                vignette=config.vignette) if config.augment else None
    train_loader = BatchLoader(train_tensors.pixels, train_tensors.labels, batch_size=config.batch_size,
                               augmentation=augmentation, shuffle=True, drop_last=True, rank=runtime.rank,
                               world_size=runtime.world, sampler_weights=sampler_weights, **loader_options)
    eval_loaders = {name: BatchLoader(t.pixels, t.labels, batch_size=max(config.batch_size, 128), **loader_options)
                    for name, t in data.tensors.items() if name != "train"}
    return RunLoaders(train_loader, eval_loaders, counts, weights, train_sources)


@dataclass
class Network:
    """The model the steps train (wrapped for data parallel training with several processes), its optimiser, loss
    and moving average."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: Callable
    ema: torch.optim.swa_utils.AveragedModel | None

    @property
    def bare(self) -> nn.Module:
        """The model without its data parallel wrapper: what checkpoints hold."""
        return getattr(self.model, "module", self.model)

    @property
    def evaluated(self) -> nn.Module:
        """What validation, model selection and the saved best model use: the moving average when it is on."""
        return self.ema.module if self.ema is not None else self.bare


def _build_network(config: TrainConfig, n_classes: int, weights: np.ndarray, runtime: Runtime) -> Network:
    """The model, its optimiser and weighted loss, the moving average when on, and the data parallel wrapper."""
    torch.manual_seed(config.seed)  # every process, and every rerun, starts from the same weights
    model = build_model(config.model, n_classes, pretrained=config.pretrained).to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(config, model)
    criterion = make_criterion(config, torch.tensor(weights, dtype=torch.float32, device=runtime.device))
    # An exponential moving average of the weights: smoother than the last step's weights, and usually better
    # on short schedules. Evaluation, model selection and the saved best model use it when it is on.
    ema = None
    if config.ema_decay is not None:
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    if runtime.world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    return Network(model, optimizer, criterion, ema)


@dataclass
class Progress:
    """Where training stands: the history rows, the best epoch so far (0-based) and the next epoch to train."""

    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"epoch": -1, "score": -math.inf})
    next_epoch: int = 0
    best_weights: dict | None = None  # checkpoints="best_in_memory": the best epoch's weights, on the device
    stopped: str | None = None  # why training ended before config.epochs, when it did


def _open_record(config: TrainConfig, record: RunRecord | None, runs_dir, data: RunData, loaders: RunLoaders,
                 network: Network, runtime: Runtime) -> tuple[RunRecord, Progress]:
    """A resumed run: its ``last`` checkpoint loaded into the network; one stopped before its first epoch ended has
    none and starts over, with its recorded config and split. A new one: its record created and its split and config
    written (by rank 0; every process gets that record)."""
    progress = Progress()
    if record is not None and record.checkpoint("last").is_file():
        state = record.load_checkpoint("last", map_location=runtime.device)
        network.bare.load_state_dict(state["model"])
        network.optimizer.load_state_dict(state["optimizer"])
        if network.ema is not None:
            network.ema.load_state_dict(state["ema"])
        progress = Progress(state["history"], state["best"], state["epoch"] + 1)
    elif record is None and runtime.rank == 0:
        record = RunRecord.create(runs_dir or default_runs_dir(), f"{config.model}-{config.image_size}px")
        record.write_split(data.split)
        record.write_config(_recorded_config(config, data, loaders, runtime))
    if runtime.world > 1:
        shared = [str(record.path) if record else None]
        dist.broadcast_object_list(shared, src=0)
        record = RunRecord(shared[0])
    return record, progress


def _recorded_config(config: TrainConfig, data: RunData, loaders: RunLoaders, runtime: Runtime) -> dict:
    """A new run's ``config.json``: its config, the data it found, the class weights it drew, and the machine."""
    classes = data.images.classes
    return {
        "config": config.to_dict(),
        "data": {**data.images.describe(), "classes": list(classes), "images": len(data.images),
                 "train_sources": loaders.train_sources.value_counts().to_dict(),
                 "skipped_images": list(data.images.skipped), "split_hash": split_hash(data.split),
                 "split_counts": split_summary(data.split, classes).reset_index().to_dict("records")},
        "class_weights": dict(zip(classes, loaders.class_weights.tolist())),
        "train_counts": dict(zip(classes, loaders.train_counts.tolist())),
        "environment": run_environment(runtime.device, runtime.amp_dtype, runtime.channels_last, runtime.world),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _train_epochs(config: TrainConfig, runtime: Runtime, data: RunData, loaders: RunLoaders, network: Network,
                  record: RunRecord, progress: Progress, on_epoch_end: EpochCallback | None, started: float) -> None:
    """Train from ``progress.next_epoch`` to the last epoch, or until the caller or the time budget ends training
    (rank 0 decides; every process stops after the same epoch)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=config.epochs, initial=progress.next_epoch, desc=f"{config.model} {config.image_size}px",
               unit="epoch", disable=config.quiet or runtime.rank != 0)
    epoch_walls: list[float] = []
    head = {id(p) for p in head_layer(network.bare).parameters()}
    backbone = [p for p in network.bare.parameters() if id(p) not in head]
    for epoch in range(progress.next_epoch, config.epochs):
        epoch_start = time.perf_counter()
        torch.manual_seed(config.seed * 1_000 + epoch)  # dropout / stochastic depth: same draws when resumed
        for parameter in backbone:  # a frozen backbone costs no backward pass of its own
            parameter.requires_grad_(epoch >= config.freeze_backbone_epochs)
        train_stats = train_one_epoch(network.model, network.criterion, network.optimizer, loaders.train,
                                      runtime.device, epoch, config, data.images.classes, runtime.amp_dtype,
                                      network.ema)
        if runtime.rank == 0:
            row, val_seconds = _end_epoch(epoch, train_stats, config, runtime, data, loaders, network, record,
                                          progress)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{row[f'val_{config.select_metric}']:.3f}",
                            ips=f"{row['images_per_second']:.0f}")
            bar.update(1)
            epoch_walls.append(time.perf_counter() - epoch_start)
            if on_epoch_end is not None and on_epoch_end(row):
                progress.stopped = f"stopped after epoch {epoch + 1} of {config.epochs} by the caller"
            elif epoch + 1 < config.epochs and _out_of_time(config, started, epoch_walls, val_seconds, data):
                progress.stopped = (f"stopped after epoch {epoch + 1} of {config.epochs}: the next epoch and the "
                                    f"final evaluation would overrun max_minutes={config.max_minutes}")
        if runtime.world > 1:
            flag = [progress.stopped]
            dist.broadcast_object_list(flag, src=0)
            progress.stopped = flag[0]
        if progress.stopped:
            break
    bar.close()


def _end_epoch(epoch: int, train_stats: dict[str, float], config: TrainConfig, runtime: Runtime, data: RunData,
               loaders: RunLoaders, network: Network, record: RunRecord, progress: Progress) -> tuple[dict, float]:
    """Validate, add the epoch's history row, keep the best weights (in checkpoints, or a copy in memory) and write
    the history; returns the row and the seconds validation took (the time budget's yardstick)."""
    classes = data.images.classes
    val_start = time.perf_counter()
    val_stats = evaluate(network.evaluated, loaders.evaluation["val"], runtime.device, runtime.amp_dtype, classes)
    val_seconds = time.perf_counter() - val_start
    if not math.isfinite(val_stats["loss"]):  # the last step's update diverged: the weights are NaN
        raise TrainingError(f"The loss became {val_stats['loss']} on validation after epoch {epoch + 1}: the "
                            "weights diverged. Lower lr, or use precision='fp32'.")
    row = {"epoch": epoch + 1, **{k: train_stats.pop(k) for k in ("lr", "seconds", "images_per_second")},
           **{f"train_{k}": v for k, v in train_stats.items()},
           **{f"val_{k}": v for k, v in val_stats.items()}}
    progress.history.append(row)
    improved = val_stats[config.select_metric] > progress.best["score"]
    if improved:
        progress.best = {"epoch": epoch, "score": val_stats[config.select_metric]}
    if config.checkpoints == "every_epoch":
        state = {"model": network.bare.state_dict(), "optimizer": network.optimizer.state_dict(), "epoch": epoch,
                 "history": progress.history, "best": progress.best, "classes": list(classes)}
        if network.ema is not None:
            state["ema"] = network.ema.state_dict()
        if improved:
            record.save_checkpoint("best", state)
        record.save_checkpoint("last", state)
    elif improved:  # a copy on the device: no transfer, no disk, no wait
        progress.best_weights = {k: v.detach().clone() for k, v in network.evaluated.state_dict().items()}
    record.write_history(pd.DataFrame(progress.history))
    return row, val_seconds


def _finish(config: TrainConfig, runtime: Runtime, data: RunData, loaders: RunLoaders, network: Network,
            record: RunRecord, progress: Progress) -> None:
    """Evaluate the best epoch's weights on validation and test and record the results (rank 0), then leave the
    process group."""
    if runtime.rank == 0:
        model = network.evaluated
        if progress.best_weights is not None:
            model.load_state_dict(progress.best_weights)
            record.save_checkpoint("best", {"model": model.state_dict(), "epoch": progress.best["epoch"],
                                            "best": progress.best, "classes": list(data.images.classes)})
        else:
            weights = evaluation_weights(record.load_checkpoint("best", map_location=runtime.device))
            model.load_state_dict(weights)
            # Training is over: the kept epoch needs its weights only, not the optimiser's state and the moving
            # average beside them (a ResNet18's best.pt: about a quarter of the size); last.pt keeps everything.
            record.save_checkpoint("best", {"model": weights, "epoch": progress.best["epoch"],
                                            "best": progress.best, "classes": list(data.images.classes)})
        _final_evaluation(record, model, loaders.evaluation, data, config, runtime.device, runtime.amp_dtype,
                          progress.best, progress.stopped)
    if runtime.world > 1:
        dist.barrier()
        dist.destroy_process_group()


def _out_of_time(config: TrainConfig, started: float, epoch_walls: list[float], val_seconds: float,
                 data: RunData) -> bool:
    """Whether another epoch plus the final evaluation would end after ``max_minutes`` from the start.

    The next epoch is taken as long as the slowest of the last three; the final evaluation predicts validation and
    test (with the flips of TTA) at the speed validation was predicted this epoch.
    """
    if config.max_minutes is None:
        return False
    n_val, n_test = len(data.tensors["val"].labels), len(data.tensors["test"].labels)
    views = len(tta_views(torch.zeros(1, 3, 8, 8), tta_of(config)))
    final = val_seconds * (n_val + n_test) / max(n_val, 1) * views + 2.0
    return time.perf_counter() - started + max(epoch_walls[-3:]) + final > config.max_minutes * 60


def evaluation_weights(state: dict) -> dict:
    """The weights a checkpoint is evaluated with: the moving average when the run kept one."""
    if "ema" not in state:
        return state["model"]
    # AveragedModel keeps the network under "module." plus a step counter.
    return {k[len("module."):]: v for k, v in state["ema"].items() if k.startswith("module.")}


def _final_evaluation(record: RunRecord, model: nn.Module, loaders: dict[str, BatchLoader], data: RunData,
                      config: TrainConfig, device: torch.device, amp_dtype, best: dict, stopped: str | None) -> None:
    """Predict validation and test with the best epoch's weights (already in ``model``) and write predictions and
    metrics."""
    classes = data.images.classes
    metadata = data.images.table.set_index("image_id")
    metrics = {"best_epoch": best["epoch"] + 1, "select_metric": config.select_metric,
               "tta": config.tta, "classes": list(classes), "synthetic": data.images.synthetic,
               "epochs_run": len(record.history), "stopped": stopped}
    for name, loader in loaders.items():
        probs = predict_proba(model, loader, device, amp_dtype, tta=tta_of(config))
        labels = loader.labels.cpu().numpy()
        ids = list(data.tensors[name].image_ids)
        record.write_predictions(predictions_table(ids, labels, probs, classes,
                                                   lesion_ids=metadata.loc[ids, "lesion_id"]), name)
        metrics[name] = report_with_intervals(labels, probs, classes, seed=config.seed)
    metrics["majority_baseline"] = majority_baseline(data.tensors["train"].labels.numpy(),
                                                     data.tensors["test"].labels.numpy(), len(classes))
    if data.images.synthetic:
        metrics["warning"] = SYNTHETIC_WARNING
    record.write_metrics(metrics)
