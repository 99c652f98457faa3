"""Every training parameter in one validated dataclass, and the named profiles.

:class:`TrainConfig` is checked as a whole before any data is read or any epoch starts (scikit-learn's habit): a
bad value fails at once with a message naming the parameter, the value and what was expected. The CLI flags, YAML
files and papermill parameters all go through :func:`make_config`, so they share those checks.

Each field is documented once, where it is declared (:func:`param`): what it means, in which unit, what ``None``
means, its group (:data:`GROUPS`) and, for a field that names one of a few choices, those choices. ``pskin train
--help`` reads every flag's help and group from there, and :func:`validate` reads the choices.

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

from ..data.batches import Augmentation
from ..data.cache import RESIZE_MODES, Preprocessing
from ..data.ham10000 import DATA_ENV, DEFAULT_DATA_DIR, validate_classes
from ..data.labelled_folders import EXTRA_SOURCES
from ..data.splits import DEFAULT_FRACTIONS, PROTOCOLS, validate_fractions
from ..errors import ParameterError
from ..info import ALL_CLASSES, PAPER_CLASSES
from .losses import WEIGHT_SCHEMES
from .models import MODELS, validate_model_name

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")
LOSSES = ("cross_entropy", "focal")
SAMPLERS = ("shuffle", "balanced", "balanced_sources")
SELECT_METRICS = ("accuracy", "balanced_accuracy")
PRECISIONS = ("auto", "fp32", "bf16")
TTA_VIEWS = ("flips", "dihedral", "dihedral_zoom")
CHECKPOINTS = ("every_epoch", "best_in_memory")
BATCHNORM_MODES = ("train", "frozen")

# The groups the parameters fall in, in the order `pskin train --help` shows them, each with what its flags decide.
GROUPS: dict[str, str] = {
    "run": "where the values come from, and what is kept with the run",
    "data": "which images, how they are split (always by lesion) and how they are prepared",
    "augmentation": "random changes to the training images (validation and test images are never changed)",
    "model": "the network, and how a pretrained one is fine-tuned",
    "optimisation": "epochs, batches, the optimiser and the learning rate's schedule",
    "class imbalance": "how training counters HAM10000's imbalance (nevus is 75 % of the paper's three classes)",
    "evaluation": "which epoch is kept, and how images are predicted",
    "runtime": "the machine: device, precision, threads, seeds, time budget and checkpoints",
}


def param(default: Any, group: str, help: str, *, choices: tuple[str, ...] | None = None) -> Any:
    """A :class:`TrainConfig` field with its documentation: ``help`` says what it means, in which unit, and what
    ``None`` means where it is allowed (``pskin train --help`` shows it with the default); ``group`` is one of
    :data:`GROUPS`; ``choices`` the values it may take (checked by :func:`validate`, listed by the flag)."""
    if group not in GROUPS:
        raise KeyError(f"group: {group!r} is not one of {list(GROUPS)}")
    return field(default=default, metadata={"help": help, "group": group, "choices": choices})


@dataclass(frozen=True)
class TrainConfig:
    """One training run. The defaults are the ``default`` profile: ResNet18 from scratch at 64 px for 20 epochs.

    Each field documents itself (``dataclasses.fields(TrainConfig)[i].metadata``: ``help``, ``group`` and
    ``choices``); the ``pskin train`` flag of the same name reads its help from there.
    """

    data_dir: str | None = param(
        None, "data", f"folder holding HAM10000; none: ${DATA_ENV}, else {DEFAULT_DATA_DIR}")
    classes: tuple[str, ...] = param(
        PAPER_CLASSES, "data", f"HAM10000 diagnosis (dx) codes to tell apart, comma-separated, among "
        f"{','.join(ALL_CLASSES)}")
    protocol: str = param(
        "grouped", "data", "how images are split into train / validation / test, always by lesion: grouped (each "
        "class's lesions dealt by fractions) or paper (the paper's Table 1 counts, with repeats where HAM10000 has "
        "too few images)", choices=PROTOCOLS)
    fractions: tuple[float, float, float] = param(
        DEFAULT_FRACTIONS, "data", "train,validation,test fractions of each class's images (protocol grouped); "
        "they sum to 1")
    split_seed: int = param(0, "data", "seed of the split's draw: the same seed draws the same split")
    image_size: int = param(64, "data", "side of the square images the network sees, in pixels (16 to 1024)")
    resize: str = param(
        "squash", "data", "squash the 4:3 frame to a square, or crop its centre square (keeps the aspect)",
        choices=RESIZE_MODES)
    colour_constancy: float | None = param(
        None, "data", "Shades of Gray colour constancy's Minkowski p, 1 to 20 (6 in the ISIC winners' recipes); "
        "none: off")
    extra_sources: tuple[str, ...] = param(
        (), "data", f"other collections' training images added to the training split, comma-separated, among "
        f"{','.join(EXTRA_SOURCES)} (their validation and test images are never trained on)")
    skip_missing: bool = param(
        False, "data", "leave out images the metadata lists but the folder lacks (else an error names them)")
    skip_unreadable: bool = param(
        False, "data", "leave out images that do not decode (else an error names them)")

    augment: bool = param(
        True, "augmentation", "random flips, rotations, resized crops and colour jitter of the training images")
    # The augmentation's defaults are the data layer's (pskinlib.data.batches.Augmentation), spelled there once.
    crop_scale: tuple[float, float] = param(
        Augmentation.crop_scale, "augmentation",
        "low,high: the area fraction the random resized crop keeps (0 < low <= high <= 1)")
    colour_jitter: float = param(
        Augmentation.brightness, "augmentation",
        "largest relative change of brightness, contrast and saturation, in [0, 1)")
    # Stronger photometric augmentation, for images from other dermatoscopes: each 0 (off) by default.
    hue: float = param(
        Augmentation.hue, "augmentation", "largest rotation of the colours about the grey axis, in radians (0: off, "
        "up to pi)")
    gamma: float = param(
        Augmentation.gamma, "augmentation", "largest |log gamma| of a random gamma change (0: off, up to 1)")
    channel_gain: float = param(
        Augmentation.channel_gain, "augmentation",
        "largest relative gain of one colour channel, as under another light (0: off, up to 1)")
    blur: float = param(
        Augmentation.blur, "augmentation",
        "largest blend towards a 3x3 box blur, as at another focus (0: off, up to 1)")
    vignette: float = param(
        Augmentation.vignette, "augmentation",
        "largest darkening at the corners, as through another lens (0: off, up to 1)")

    model: str = param("resnet18", "model", f"the network, one of {', '.join(MODELS)}")
    pretrained: bool = param(
        False, "model", "start from ImageNet weights (fetched once into torch's cache); else from random weights")
    # Fine-tuning a pretrained network: each 1 / off by default, as a from-scratch run trains everything alike.
    backbone_lr_scale: float = param(
        1.0, "model", "learning rate of everything but the head, as a fraction of lr, in (0, 1] (pretrained only)")
    freeze_backbone_epochs: float = param(
        0.0, "model", "epochs at the start that train the head alone, the backbone's weights frozen (pretrained "
        "only; 0: none)")
    batchnorm: str = param(
        "train", "model", "train: batch norm learns its statistics from the batches; frozen: it keeps the "
        "pretrained ones (eval mode), the usual choice when fine-tuning with small batches", choices=BATCHNORM_MODES)
    progressive_start_size: int | None = param(
        None, "model", "first epoch's image side in pixels, growing to image_size by the last epoch (validation "
        "and test always at image_size); none: every epoch at image_size")

    epochs: int = param(20, "optimisation", "passes over the training split")
    batch_size: int = param(
        64, "optimisation", "training images per step and process (evaluation batches hold at least 128)")
    optimizer: str = param(
        "adamw", "optimisation", "sgd (with Nesterov momentum) or adamw", choices=OPTIMIZERS)
    lr: float = param(3e-3, "optimisation", "peak learning rate, reached at the end of the warm-up")
    momentum: float = param(0.9, "optimisation", "SGD's momentum, in [0, 1) (optimizer sgd only)")
    weight_decay: float = param(
        0.05, "optimisation", "weight decay, >= 0 (decoupled with adamw); biases and normalisation scales get none "
        "unless decay_norms_and_biases")
    schedule: str = param(
        "cosine", "optimisation", "the learning rate after the warm-up: cosine (down to 0 at the last epoch), step "
        "(times step_gamma every step_size epochs) or constant", choices=SCHEDULES)
    warmup_epochs: float = param(
        1.0, "optimisation", "epochs of linear warm-up from 0 to lr (fractions allowed; 0: none)")
    step_size: int = param(30, "optimisation", "epochs between two decays of the learning rate (schedule step)")
    step_gamma: float = param(
        0.1, "optimisation", "factor each decay multiplies the learning rate by, in (0, 1] (schedule step)")
    label_smoothing: float = param(
        0.0, "optimisation", "share of each target spread evenly over the classes, in [0, 1) (loss cross_entropy)")
    decay_norms_and_biases: bool = param(
        False, "optimisation", "weight decay on batch-norm scales and biases too (usually not)")
    ema_decay: float | None = param(
        0.995, "optimisation", "decay per step of an exponential moving average of the weights, in (0, 1): the "
        "average is validated, selected and saved instead of the last step's weights; none: no average")

    class_weights: str = param(
        "inverse", "class imbalance", "the loss's weight per class: none (every class 1), inverse (n / (K n_c): "
        "every class's images weigh as much in all; the paper's), sqrt_inverse (its square root), effective (Cui "
        "et al. 2019, see effective_beta) or manual (manual_weights)", choices=WEIGHT_SCHEMES)
    manual_weights: tuple[float, ...] | None = param(
        None, "class imbalance", "one positive weight per class, comma-separated in the order of classes "
        "(class_weights manual)")
    effective_beta: float = param(
        0.999, "class imbalance", "beta of the effective number of samples, in [0, 1): towards 0 like none, towards "
        "1 like inverse (class_weights effective)")
    sampler: str = param(
        "shuffle", "class imbalance", "shuffle (every image once per epoch), balanced (every class drawn equally "
        "often, with replacement) or balanced_sources (every collection and class equally often); a balancing "
        "sampler evens the classes itself: class weights on top count them twice", choices=SAMPLERS)
    loss: str = param(
        "cross_entropy", "class imbalance", "cross_entropy, or focal (Lin et al. 2017: easy images count less)",
        choices=LOSSES)
    focal_gamma: float = param(
        2.0, "class imbalance", "focal loss's focusing exponent, >= 0 (0: cross-entropy) (loss focal)")

    select_metric: str = param(
        "accuracy", "evaluation", "the validation score that picks the best epoch, whose weights are tested",
        choices=SELECT_METRICS)
    tta: bool = param(
        True, "evaluation", "test-time augmentation: validation and test predictions average several views of "
        "each image (tta_views)")
    tta_views: str = param(
        "flips", "evaluation", "with tta: flips (4 views), dihedral (8: flips and quarter turns) or dihedral_zoom "
        "(16: those of the image and of its zoomed centre)", choices=TTA_VIEWS)

    device: str = param("auto", "runtime", "auto (the GPU when there is one, else the CPU), cpu, or cuda[:N]")
    precision: str = param(
        "auto", "runtime", "auto (bf16 on CUDA and on CPUs where it pays, else fp32), fp32 or bf16",
        choices=PRECISIONS)
    channels_last: bool | None = param(
        None, "runtime", "channels-last memory layout of images and weights; none (neither flag): automatic, "
        "which is on (measured fastest)")
    threads: int | None = param(None, "runtime", "CPU threads torch computes with; none: torch's default")
    seed: int = param(
        0, "runtime", "seed of the initial weights, the batches' order, the augmentation and the bootstrap "
        "intervals (the split has split_seed)")
    deterministic: bool = param(
        False, "runtime", "deterministic algorithms only (slower): the same seed gives the same weights")
    quiet: bool = param(False, "runtime", "no progress bars")
    max_train_batches: int | None = param(
        None, "runtime", "at most this many training batches per epoch (quick checks); none: all")
    max_minutes: float | None = param(
        None, "runtime", "time budget of the whole run, in minutes: no epoch starts that would end, with the final "
        "evaluation, after it; none: no limit")
    checkpoints: str = param(
        "every_epoch", "runtime", "every_epoch: best.pt when validation improves and last.pt after every epoch (a "
        "run can resume); best_in_memory: the best weights are kept on the device and written once at the end (no "
        "disk writes in the loop, no resume)", choices=CHECKPOINTS)

    notes: str = param("", "run", "free text kept with the run (in its config.json)")
    profile: str = param(
        "default", "run", "named defaults, pskinlib/configs/NAME.yaml, that flags and --config override: default "
        "(TrainConfig's), smoke (seconds), quick (a CPU minute), transfer (pretrained, CPU minutes), paper (the "
        "study, GPU)")

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """Every parameter as ``name: value`` lines in the fields' order: a config file :func:`load_yaml_config`
        reads back to this config."""
        import yaml

        values = {name: list(v) if isinstance(v, tuple) else v for name, v in self.to_dict().items()}
        return yaml.safe_dump(values, sort_keys=False, default_flow_style=None, allow_unicode=True, width=1000)


def _check(condition: bool, name: str, value: Any, expected: str) -> None:
    if not condition:
        raise ParameterError(f"{name}: expected {expected}, got {value!r}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    _check(value in choices, name, value, f"one of {list(choices)}")


def validate(config: TrainConfig) -> None:
    """Check every parameter; raise :class:`~pskinlib.errors.ParameterError` naming the first bad one."""
    c = config
    object.__setattr__(c, "classes", validate_classes(c.classes))
    object.__setattr__(c, "fractions", validate_fractions(c.fractions))
    for f in dataclasses.fields(c):  # the choices and the plain true-or-false flags, in the fields' order
        value = getattr(c, f.name)
        if f.metadata.get("choices"):
            _choice(f.name, value, f.metadata["choices"])
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
