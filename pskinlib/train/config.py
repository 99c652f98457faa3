"""Every training parameter in one validated dataclass, and the named profiles.

:class:`TrainConfig` is checked as a whole before any data is read or any epoch starts (scikit-learn's habit): a
bad value fails at once with a message naming the parameter, the value and what was expected. The CLI flags, YAML
files and papermill parameters all go through :func:`make_config`, so they share those checks.

Profiles are YAML files in ``pskinlib/configs/`` (a profile is a config file, read by :func:`load_yaml_config`):
``default`` (these defaults), ``smoke`` (seconds, for CI), ``quick`` (the quick book: a minute on a laptop CPU),
``transfer`` (ImageNet-pretrained Lite0 in CPU minutes), ``paper`` (the study's protocol: ResNet101 /
EfficientNet-B0 at 224 px for 100 epochs on Table 1's split, meant for a GPU), and the pretrained variants the book
profiles name (``smoke_pretrained``, ``quick_pretrained``, ``paper_pretrained``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.cache import Preprocessing
from ..data.ham10000 import validate_classes
from ..data.labelled_folders import EXTRA_SOURCES
from ..data.splits import DEFAULT_FRACTIONS, PROTOCOLS, validate_fractions
from ..errors import ParameterError
from ..info import PAPER_CLASSES
from .losses import WEIGHT_SCHEMES
from .models import validate_model_name

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")
LOSSES = ("cross_entropy", "focal")
SAMPLERS = ("shuffle", "balanced", "balanced_sources")
SELECT_METRICS = ("accuracy", "balanced_accuracy")
PRECISIONS = ("auto", "fp32", "bf16")
TTA_VIEWS = ("flips", "dihedral", "dihedral_zoom")
# every_epoch: best.pt when validation improves and last.pt after every epoch (a run can resume); best_in_memory: the
# best weights are kept on the device and written once at the end (no disk writes in the loop, no resume).
CHECKPOINTS = ("every_epoch", "best_in_memory")
# train: batch norm learns its statistics from the batches; frozen: it keeps the pretrained ones (eval mode), the
# usual choice when fine-tuning with small batches.
BATCHNORM_MODES = ("train", "frozen")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. The defaults are the ``default`` profile: ResNet18 from scratch at 64 px for 20 epochs."""

    # data
    data_dir: str | None = None
    classes: tuple[str, ...] = PAPER_CLASSES
    protocol: str = "grouped"
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    split_seed: int = 0
    image_size: int = 64
    resize: str = "squash"  # squash the 4:3 frame to a square, or crop its centre square (keeps the aspect)
    colour_constancy: float | None = None  # Shades of Gray's Minkowski p (6 in the ISIC winners' recipes); None: off
    extra_sources: tuple[str, ...] = ()  # other collections' training images added to the training split
    augment: bool = True
    crop_scale: tuple[float, float] = (0.6, 1.0)
    colour_jitter: float = 0.1
    # stronger photometric augmentation, each 0 (off) by default: largest hue rotation (radians), largest
    # |log gamma|, largest relative per-channel gain, largest blur blend, largest vignette darkening at the corners
    hue: float = 0.0
    gamma: float = 0.0
    channel_gain: float = 0.0
    blur: float = 0.0
    vignette: float = 0.0
    skip_missing: bool = False
    skip_unreadable: bool = False
    # model
    model: str = "resnet18"
    pretrained: bool = False
    # fine-tuning a pretrained network (each 1 / off by default: a from-scratch run trains everything alike)
    backbone_lr_scale: float = 1.0  # the learning rate of everything but the head, as a fraction of lr
    freeze_backbone_epochs: float = 0.0  # the first epochs train the head alone (the backbone's weights frozen)
    batchnorm: str = "train"
    progressive_start_size: int | None = None  # first epoch's image side, growing to image_size by the last
    # optimisation
    epochs: int = 20
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 3e-3
    momentum: float = 0.9
    weight_decay: float = 0.05
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    step_size: int = 30
    step_gamma: float = 0.1
    label_smoothing: float = 0.0
    decay_norms_and_biases: bool = False  # weight decay on batch-norm scales and biases too (usually not)
    ema_decay: float | None = 0.995
    # imbalance
    class_weights: str = "inverse"
    manual_weights: tuple[float, ...] | None = None
    effective_beta: float = 0.999
    sampler: str = "shuffle"  # a balancing sampler evens the classes itself: class weights on top count them twice
    loss: str = "cross_entropy"
    focal_gamma: float = 2.0
    # model selection and evaluation
    select_metric: str = "accuracy"
    tta: bool = True
    tta_views: str = "flips"  # with tta: flips (4 views), dihedral (8: flips and quarter turns), dihedral_zoom (16)
    # machine
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool | None = None
    threads: int | None = None
    seed: int = 0
    deterministic: bool = False
    quiet: bool = False
    max_train_batches: int | None = None
    max_minutes: float | None = None
    checkpoints: str = "every_epoch"
    notes: str = ""
    profile: str = field(default="default")

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check(condition: bool, name: str, value: Any, expected: str) -> None:
    if not condition:
        raise ParameterError(f"{name}: expected {expected}, got {value!r}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    _check(value in choices, name, value, f"one of {list(choices)}")


# The parameters that name one of a few choices.
_CHOICES = {"protocol": PROTOCOLS, "batchnorm": BATCHNORM_MODES, "optimizer": OPTIMIZERS, "schedule": SCHEDULES,
            "class_weights": WEIGHT_SCHEMES, "sampler": SAMPLERS, "loss": LOSSES, "select_metric": SELECT_METRICS,
            "tta_views": TTA_VIEWS, "precision": PRECISIONS, "checkpoints": CHECKPOINTS}


def validate(config: TrainConfig) -> None:
    """Check every parameter; raise :class:`~pskinlib.errors.ParameterError` naming the first bad one."""
    c = config
    object.__setattr__(c, "classes", validate_classes(c.classes))
    object.__setattr__(c, "fractions", validate_fractions(c.fractions))
    for f in dataclasses.fields(c):  # the choices and the plain true-or-false flags, in the fields' order
        value = getattr(c, f.name)
        if f.name in _CHOICES:
            _choice(f.name, value, _CHOICES[f.name])
        elif f.type == "bool":
            _check(isinstance(value, bool), f.name, value, "true or false")
    for name in ("split_seed", "seed"):
        value = getattr(c, name)
        _check(_is_int(value) and value >= 0, name, value, "a non-negative integer")
    _check(len(c.crop_scale) == 2 and all(_is_number(v) for v in c.crop_scale)
           and 0 < c.crop_scale[0] <= c.crop_scale[1] <= 1, "crop_scale", c.crop_scale,
           "two numbers 0 < low <= high <= 1 (area fraction kept by the random resized crop)")
    object.__setattr__(c, "crop_scale", tuple(float(v) for v in c.crop_scale))
    _check(_is_number(c.colour_jitter) and 0 <= c.colour_jitter < 1, "colour_jitter", c.colour_jitter,
           "a number in [0, 1) (largest relative change of brightness, contrast and saturation)")
    _check(_is_int(c.image_size) and 16 <= c.image_size <= 1024, "image_size", c.image_size,
           "an integer number of pixels from 16 to 1024")
    Preprocessing(c.resize, c.colour_constancy)  # checks both
    object.__setattr__(c, "extra_sources", tuple(c.extra_sources))
    for source in c.extra_sources:
        _check(source in EXTRA_SOURCES, "extra_sources", c.extra_sources,
               f"names among {list(EXTRA_SOURCES)} (another collection's training images only; its validation and "
               "test images are never trained on)")
    for name, high in (("hue", math.pi), ("gamma", 1.0), ("channel_gain", 1.0), ("blur", 1.0), ("vignette", 1.0)):
        value = getattr(c, name)
        _check(_is_number(value) and 0 <= value <= high, name, value, f"a number from 0 (off) to {high:.3g}")
    validate_model_name(c.model)
    _check(_is_int(c.epochs) and c.epochs >= 1, "epochs", c.epochs, "an integer >= 1")
    _check(_is_int(c.batch_size) and c.batch_size >= 2, "batch_size", c.batch_size, "an integer >= 2")
    _check(_is_number(c.lr) and c.lr > 0, "lr", c.lr, "a positive number")
    for name in ("momentum", "label_smoothing", "effective_beta"):
        value = getattr(c, name)
        _check(_is_number(value) and 0 <= value < 1, name, value, "a number in [0, 1)")
    _check(_is_number(c.weight_decay) and c.weight_decay >= 0, "weight_decay", c.weight_decay, "a number >= 0")
    for name in ("warmup_epochs", "freeze_backbone_epochs"):
        value = getattr(c, name)
        _check(_is_number(value) and 0 <= value < c.epochs, name, value, f"a number in [0, epochs={c.epochs})")
    _check(_is_int(c.step_size) and c.step_size >= 1, "step_size", c.step_size, "an integer >= 1")
    _check(_is_number(c.step_gamma) and 0 < c.step_gamma <= 1, "step_gamma", c.step_gamma, "a number in (0, 1]")
    _check(c.ema_decay is None or (_is_number(c.ema_decay) and 0 < c.ema_decay < 1), "ema_decay", c.ema_decay,
           "None (no averaging) or a number in (0, 1)")
    if c.class_weights == "manual":
        weights = c.manual_weights
        _check(weights is not None and len(weights) == len(c.classes)
               and all(_is_number(w) and w > 0 for w in weights), "manual_weights", weights,
               f"{len(c.classes)} positive numbers, one per class {list(c.classes)}")
        object.__setattr__(c, "manual_weights", tuple(float(w) for w in weights))
    _check(_is_number(c.focal_gamma) and c.focal_gamma >= 0, "focal_gamma", c.focal_gamma, "a number >= 0")
    _check(c.device == "auto" or c.device == "cpu" or str(c.device).startswith("cuda"), "device", c.device,
           "'auto', 'cpu' or 'cuda[:N]'")
    for name in ("threads", "max_train_batches"):
        value = getattr(c, name)
        _check(value is None or (_is_int(value) and value >= 1), name, value, "None or an integer >= 1")
    _check(_is_number(c.backbone_lr_scale) and 0 < c.backbone_lr_scale <= 1, "backbone_lr_scale",
           c.backbone_lr_scale, "a number in (0, 1] (the backbone's learning rate as a fraction of lr)")
    _check(c.progressive_start_size is None or (_is_int(c.progressive_start_size)
                                                and 16 <= c.progressive_start_size <= c.image_size),
           "progressive_start_size", c.progressive_start_size, f"None or an integer from 16 to image_size="
           f"{c.image_size}")
    if (c.freeze_backbone_epochs or c.backbone_lr_scale < 1 or c.batchnorm == "frozen") and not c.pretrained:
        raise ParameterError("freeze_backbone_epochs, backbone_lr_scale and batchnorm='frozen' fine-tune pretrained "
                             "weights; set pretrained=True (a network from scratch has no backbone worth keeping).")
    _check(c.max_minutes is None or (_is_number(c.max_minutes) and c.max_minutes > 0), "max_minutes", c.max_minutes,
           "None (no time limit) or a positive number of minutes for the whole run")
    _check(c.channels_last is None or isinstance(c.channels_last, bool), "channels_last", c.channels_last,
           "None (automatic), true or false")
    _check(c.data_dir is None or isinstance(c.data_dir, (str, Path)), "data_dir", c.data_dir, "a folder path")
    if c.data_dir is not None:
        object.__setattr__(c, "data_dir", str(c.data_dir))


# The named profiles: one YAML file each in pskinlib/configs/, the one place a profile's name gets its meaning (the
# book's profiles name these). A file is a config file like any other: ``profile: NAME`` in it starts from NAME.
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ParameterError(f"config file {path}: cannot be read as YAML ({exc}).") from exc
    if not isinstance(values, dict):
        raise ParameterError(f"config file {path}: expected name: value pairs, got {type(values).__name__}.")
    return values


def _profile_values(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A profile's values with those of the profile it starts from (``profile:``) underneath."""
    if name in seen:
        raise ParameterError(f"profile {name}: its files start from each other in a circle ({' -> '.join(seen)}).")
    values = _read_yaml(CONFIGS / f"{name}.yaml")
    base = values.pop("profile", None)
    return {**(_profile_values(base, (*seen, name)) if base else {}), **values}


PROFILES: dict[str, dict[str, Any]] = {path.stem: _profile_values(path.stem) for path in sorted(CONFIGS.glob("*.yaml"))}


def make_config(profile: str = "default", **overrides: Any) -> TrainConfig:
    """A validated config: the named profile's values, then ``overrides`` (unknown names are an error)."""
    _choice("profile", profile, tuple(PROFILES))
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown}; known parameters are {sorted(known)}.")
    values = {**PROFILES[profile], **overrides, "profile": profile}
    for name in ("classes", "fractions", "manual_weights", "crop_scale", "extra_sources"):
        if isinstance(values.get(name), list):
            values[name] = tuple(values[name])
    return TrainConfig(**values)


def load_yaml_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """A config from a YAML file of ``name: value`` pairs (``profile:`` picks the base), then ``overrides``."""
    values = {**_read_yaml(Path(path)), **overrides}
    return make_config(values.pop("profile", "default"), **values)
