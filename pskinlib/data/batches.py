"""Batches for training and evaluation, made from the prepared image cache.

The prepared uint8 images of a split are held as one tensor (on the training device when it is a GPU), and each
batch is gathered, converted and augmented there as a whole: one affine resampling per batch does the random
rotation, flips and random resized crop, then a small colour jitter, then the normalisation the model's weights expect
(:data:`pskinlib.info.NORMALISATIONS`). There is no
per-image Python work and no JPEG decoding in an epoch, which is what keeps the trainer close to the model's own
speed. The order of batches and every random draw follow from ``(seed, epoch)`` alone, so an interrupted run that
resumes at epoch ``e`` sees exactly the batches an uninterrupted run would.

:class:`PreparedDataset` offers the same images as an ordinary map-style ``torch.utils.data.Dataset`` for code
that wants a ``DataLoader``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..errors import ParameterError
from ..info import NORMALISATIONS
from .cache import PreparedImages

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 weights of R, G, B in the grey level that saturation moves towards


@dataclass(frozen=True)
class BatchConstants:
    """The constant tensors a batch needs, made once per device: copying a Python list to a GPU waits for it, and a
    training step should never wait (``mean``/``std`` ``(1, 3, 1, 1)``, ``luma`` ``(1, 1, 3)``, ``eye`` ``(3, 3)``)."""

    mean: torch.Tensor
    std: torch.Tensor
    luma: torch.Tensor
    eye: torch.Tensor
    grey_cross: torch.Tensor  # the cross-product matrix of the grey axis (1, 1, 1) / sqrt(3), for hue rotations

    @classmethod
    def on(cls, device: str | torch.device = "cpu", normalisation: str = "imagenet") -> BatchConstants:
        if normalisation not in NORMALISATIONS:
            raise ParameterError(f"normalisation: expected one of {list(NORMALISATIONS)}, got {normalisation!r}.")
        mean, std = NORMALISATIONS[normalisation]
        return cls(torch.tensor(mean, device=device).view(1, 3, 1, 1),
                   torch.tensor(std, device=device).view(1, 3, 1, 1),
                   torch.tensor(LUMA, device=device).view(1, 1, 3), torch.eye(3, device=device),
                   torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]], device=device) * 3 ** -0.5)


@dataclass(frozen=True)
class Augmentation:
    """Train-time augmentation, applied per image inside a batch.

    Dermoscopy has no "up": any rotation and flip of a lesion is another valid picture of it.
    ``crop_scale``: range of the area fraction kept by the random resized crop; ``aspect``: its aspect-ratio
    range; ``brightness``, ``contrast``, ``saturation``: maximum relative change of each.

    The stronger photometric changes that images from other dermatoscopes call for are off (0) by default: ``hue``,
    the largest rotation of the colours about the grey axis (radians); ``gamma``, the largest ``|log gamma|``;
    ``channel_gain``, the largest relative gain of one colour channel (another light's colour); ``blur``, the
    largest blend towards a 3x3 box blur (another focus); ``vignette``, the largest darkening of the corners
    (another lens' fall-off).
    """

    rotation_degrees: float = 180.0
    flips: bool = True
    crop_scale: tuple[float, float] = (0.6, 1.0)
    aspect: tuple[float, float] = (3 / 4, 4 / 3)
    brightness: float = 0.1  # the three are one knob of TrainConfig (colour_jitter)
    contrast: float = brightness
    saturation: float = brightness
    hue: float = 0.0
    gamma: float = 0.0
    channel_gain: float = 0.0
    blur: float = 0.0
    vignette: float = 0.0

    def __post_init__(self) -> None:
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ParameterError(f"crop_scale: need 0 < low <= high <= 1, got {self.crop_scale}.")
        if not 0 < self.aspect[0] <= self.aspect[1]:
            raise ParameterError(f"aspect: need 0 < low <= high, got {self.aspect}.")
        for name in ("rotation_degrees", "brightness", "contrast", "saturation", "hue", "gamma", "channel_gain",
                     "blur", "vignette"):
            if getattr(self, name) < 0:
                raise ParameterError(f"{name}: must be >= 0, got {getattr(self, name)}.")


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def _affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, ..., align_corners=False)`` by broadcasting: same grid, several times faster on the
    CPU, where affine_grid's batched matrix product with an inner size of 3 is slow."""
    device = theta.device
    xs = ((torch.arange(width, device=device, dtype=theta.dtype) * 2 + 1) / width - 1).view(1, 1, width)
    ys = ((torch.arange(height, device=device, dtype=theta.dtype) * 2 + 1) / height - 1).view(1, height, 1)
    t = theta.view(-1, 2, 3, 1, 1)
    gx = torch.addcmul(t[:, 0, 1] * ys + t[:, 0, 2], t[:, 0, 0], xs)
    gy = torch.addcmul(t[:, 1, 1] * ys + t[:, 1, 2], t[:, 1, 0], xs)
    return torch.stack((gx, gy), dim=-1)


def augment_batch(images: torch.Tensor, augmentation: Augmentation, generator: torch.Generator, *,
                  normalised: bool = False, constants: BatchConstants | None = None) -> torch.Tensor:
    """Augment a float batch ``(B, 3, H, W)`` in [0, 1]; every image gets its own random draw.

    Returns images in [0, 1], or with ``normalised`` normalised ones (as :func:`normalise` would give, in one pass
    fewer). ``constants``: made once by the caller (:class:`BatchLoader` does); ImageNet's on the batch's device by
    default.
    """
    n, device = images.shape[0], images.device
    constants = constants or BatchConstants.on(device)
    height, width = images.shape[2], images.shape[3]
    angle = _uniform(n, -1, 1, generator, device) * math.radians(augmentation.rotation_degrees)
    area = _uniform(n, *augmentation.crop_scale, generator, device)
    ratio = torch.exp(_uniform(n, *map(math.log, augmentation.aspect), generator, device))
    # Half-widths of the crop in normalised coordinates (the full image spans [-1, 1]).
    sx, sy = torch.sqrt(area * ratio).clamp(max=1), torch.sqrt(area / ratio).clamp(max=1)
    tx = _uniform(n, -1, 1, generator, device) * (1 - sx)
    ty = _uniform(n, -1, 1, generator, device) * (1 - sy)
    flip = torch.where(torch.rand(n, generator=generator, device=device) < 0.5, -1.0, 1.0) \
        if augmentation.flips else torch.ones(n, device=device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([
        torch.stack([cos * sx * flip, -sin * sy, tx], dim=1),
        torch.stack([sin * sx * flip, cos * sy, ty], dim=1),
    ], dim=1)
    # Reflection keeps the corners that a rotation exposes filled with skin rather than black.
    out = F.grid_sample(images, _affine_grid(theta, height, width), mode="bilinear", padding_mode="reflection",
                        align_corners=False)
    # The stronger photometric changes draw their numbers only when on, so the default stream stays as it was.
    if augmentation.gamma:
        gamma = torch.exp(_uniform(n, -augmentation.gamma, augmentation.gamma, generator, device))
        out = out.clamp(min=1e-6).pow(gamma.view(n, 1, 1, 1))
    if augmentation.blur:
        blurred = F.avg_pool2d(out, 3, stride=1, padding=1, count_include_pad=False)
        out = torch.lerp(out, blurred, _uniform(n, 0, augmentation.blur, generator, device).view(n, 1, 1, 1))
    if augmentation.vignette:
        ys = torch.linspace(-1, 1, height, device=device).view(1, 1, height, 1)
        xs = torch.linspace(-1, 1, width, device=device).view(1, 1, 1, width)
        depth = _uniform(n, 0, augmentation.vignette, generator, device).view(n, 1, 1, 1)
        out = out * (1 - depth * (ys ** 2 + xs ** 2) / 2)  # 1 at the centre, 1 - depth in the corners

    # Brightness (x*b), contrast ((x - mean)*c + mean) and saturation ((x - gray)*s + gray) are all linear in
    # the pixels, so together they are one 3x3 matrix and one offset per image: a single pass over the batch.
    brightness = _uniform(n, 1 - augmentation.brightness, 1 + augmentation.brightness, generator, device)
    contrast = _uniform(n, 1 - augmentation.contrast, 1 + augmentation.contrast, generator, device)
    saturation = _uniform(n, 1 - augmentation.saturation, 1 + augmentation.saturation, generator, device)
    s = saturation.view(n, 1, 1)
    matrix = (contrast * brightness).view(n, 1, 1) * (s * constants.eye + (1 - s) * constants.luma)
    if augmentation.hue or augmentation.channel_gain:  # also linear: they join the same matrix, applied first
        matrix = matrix @ _hue_and_gains(n, augmentation, generator, constants)
    offset = ((1 - contrast) * brightness * out.mean(dim=(1, 2, 3))).view(n, 1, 1).expand(n, 3, 1)
    low, high = 0.0, 1.0
    if normalised:
        mean, std = constants.mean.view(1, 3, 1), constants.std.view(1, 3, 1)
        matrix, offset = matrix / std, (offset - mean) / std
        low, high = -constants.mean / constants.std, (1 - constants.mean) / constants.std
    out = torch.baddbmm(offset, matrix, out.reshape(n, 3, height * width)).view(n, 3, height, width)
    return torch.clamp(out, low, high)


def _hue_and_gains(n: int, augmentation: Augmentation, generator: torch.Generator,
                   constants: BatchConstants) -> torch.Tensor:
    """Per-image ``(n, 3, 3)``: a rotation of the colours about the grey axis (Rodrigues' formula) after a gain per
    channel."""
    device, eye = constants.eye.device, constants.eye
    angle = _uniform(n, -augmentation.hue, augmentation.hue, generator, device).view(n, 1, 1)
    # With k the unit grey axis, k k^T is the matrix of 1/3s: (eye + cross @ cross) by Rodrigues' identity.
    rotation = (torch.cos(angle) * eye + torch.sin(angle) * constants.grey_cross
                + (1 - torch.cos(angle)) * (eye + constants.grey_cross @ constants.grey_cross))
    gains = 1 + _uniform(3 * n, -augmentation.channel_gain, augmentation.channel_gain, generator, device)
    return rotation @ torch.diag_embed(gains.view(n, 3))


def to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` to float ``(B, 3, H, W)`` in [0, 1]."""
    return pixels.permute(0, 3, 1, 2).float().div_(255)


def normalise(images: torch.Tensor, constants: BatchConstants | None = None) -> torch.Tensor:
    """Images in [0, 1] scaled as the model's weights expect (ImageNet's mean and std unless ``constants`` say
    otherwise)."""
    constants = constants or BatchConstants.on(images.device)
    return (images - constants.mean).div_(constants.std)


class BatchLoader:
    """Shuffled (train) or ordered (evaluation) batches of one split, from a uint8 tensor of its images.

    ``pixels``: ``(N, S, S, 3)`` uint8; ``labels``: ``(N,)`` int64. With ``augmentation`` the batches are
    augmented; ``shuffle`` draws a new order each epoch from ``(seed, epoch)``. ``rank``/``world_size`` give each
    process of a distributed run its own share of every epoch. ``sampler_weights`` (one per image) draws each
    epoch with replacement in proportion to them instead of shuffling: the class-balanced sampler.
    ``normalisation``: the model's input scaling, a name of :data:`pskinlib.info.NORMALISATIONS`.
    """

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor, *, batch_size: int,
                 augmentation: Augmentation | None = None, shuffle: bool = False, drop_last: bool = False,
                 seed: int = 0, device: str | torch.device = "cpu", channels_last: bool = False,
                 rank: int = 0, world_size: int = 1, sampler_weights: torch.Tensor | None = None,
                 normalisation: str = "imagenet"):
        if batch_size < 1:
            raise ParameterError(f"batch_size: must be >= 1, got {batch_size}.")
        if len(pixels) != len(labels):
            raise ParameterError(f"pixels and labels differ in length: {len(pixels)} vs {len(labels)}.")
        self.device = torch.device(device)
        self.constants = BatchConstants.on(self.device, normalisation)
        self.pixels = pixels.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size, self.augmentation, self.shuffle, self.drop_last = batch_size, augmentation, shuffle, drop_last
        self.seed, self.channels_last = seed, channels_last
        self.rank, self.world_size = rank, world_size
        self.sampler_weights = sampler_weights
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and augmentation the next iteration uses."""
        self.epoch = epoch

    def _order(self) -> torch.Tensor:
        n = len(self.labels)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.sampler_weights is not None:
            order = torch.multinomial(self.sampler_weights, n, replacement=True, generator=generator)
        elif self.shuffle:
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        # Each process takes every world_size-th image, and all get the same number of batches, or a collective would
        # wait forever.
        return order[self.rank::self.world_size][:n // self.world_size]

    def __len__(self) -> int:
        n = len(self.labels) // self.world_size
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        order = self._order().to(self.device)
        generator = torch.Generator(device=self.device).manual_seed(self.seed * 7_919 + self.epoch + 1)
        for b in range(len(self)):
            index = order[b * self.batch_size:(b + 1) * self.batch_size]
            images = to_float(self.pixels[index])
            if self.augmentation is not None:
                images = augment_batch(images, self.augmentation, generator, normalised=True,
                                       constants=self.constants)
            else:
                images = normalise(images, self.constants)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, self.labels[index]


@dataclass(frozen=True)
class SplitTensors:
    """One split's images as tensors: ``pixels`` uint8 ``(N, S, S, 3)``, ``labels`` int64, and the ids."""

    pixels: torch.Tensor
    labels: torch.Tensor
    image_ids: tuple[str, ...]


def split_tensors(prepared: PreparedImages, split: pd.DataFrame, classes: tuple[str, ...]) -> dict[str, SplitTensors]:
    """Gather each split's images (repeats included) from the cache into memory."""
    label_of = {c: i for i, c in enumerate(classes)}
    out = {}
    for name, rows in split.groupby("split", sort=False):
        ids = rows["image_id"].tolist()
        pixels = torch.from_numpy(np.ascontiguousarray(prepared.pixels[prepared.rows(ids)]))
        labels = torch.tensor([label_of[d] for d in rows["dx"]], dtype=torch.int64)
        out[name] = SplitTensors(pixels, labels, tuple(ids))
    return out


class PreparedDataset(torch.utils.data.Dataset):
    """Map-style dataset over prepared images: item ``i`` is ``(image (3, S, S) float normalised, label)``."""

    def __init__(self, tensors: SplitTensors, augmentation: Augmentation | None = None, seed: int = 0):
        self.tensors, self.augmentation = tensors, augmentation
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.tensors.labels)

    def __getitem__(self, i: int):
        image = to_float(self.tensors.pixels[i:i + 1])
        if self.augmentation is not None:
            return augment_batch(image, self.augmentation, self.generator, normalised=True)[0], self.tensors.labels[i]
        return normalise(image)[0], self.tensors.labels[i]
