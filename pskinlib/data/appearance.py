"""What an image shows besides the lesion: the skin tone around it, and the artifacts of how it was taken.

A model's errors may follow the skin it sees or the marks on the picture rather than the lesion. This module
estimates, for one RGB uint8 image (an ``(H, W, 3)`` numpy array):

- :func:`skin_tone`: the Individual Typology Angle of the skin around the lesion, ITA = arctan((L* - 50) / b*)
  in degrees, from CIELAB (sRGB, D65), with its band after Chardon et al. (1991): very light > 55, light 41-55,
  intermediate 28-41, tan 10-28, brown -30-10, dark < -30 (:data:`ITA_BANDS`). The skin is what is left after
  taking out the dermatoscope's dark border, hair, ink, and the lesion (pixels darker than Otsu's threshold on L*,
  widened a little, and a central ellipse, where a dermoscopy picture's lesion sits). ITA of the median L* and
  median b* of those pixels is reported.
- :func:`dark_border`: the dark round frame of a contact dermatoscope (vignette): dark, dull pixels connected to
  the image's corners (two at least), and the share of the image they cover.
- :func:`hair_coverage`: the share of pixels that are dark hair, found as DullRazor does (Lee et al. 1997): a
  grey-level closing of L* with short lines in four directions fills thin dark lines, and where the closing
  brightens L* by more than :data:`HAIR_CONTRAST` there is a dark thin line; only long, thin pieces that touch skin
  are kept.
- :func:`ink_marks`: the share of pixels with the saturated violet-blue of a surgical skin marker that stands out
  from the image's usual colour, outside the lesion's central ellipse.
- :func:`estimate_appearance`: all four; :func:`appearance_table`: all four for every image of a data folder,
  cached like the prepared images (:mod:`pskinlib.data.cache`); :func:`band_counts` and :func:`not_estimable`
  summarise such a table.

**An ITA is not always there to be had.** ITA was defined for skin measured with a colorimeter under a standard
light. A dermatoscope lights the skin with its own LEDs, and many HAM10000 images are tinted pink or violet: their
b* (yellow-blue) is near zero or negative, where the angle swings wildly or means nothing, or their hue is
pink-red, and ITA then reads exposure, not pigment. Such an image is *not estimable*, with the reason: b* at most
:data:`MIN_B_STAR` (``no yellow``), a hue angle below :data:`MIN_SKIN_HUE` (``pink-violet tint``), too few skin
pixels, too dark, too small, or a file that does not decode. No value is made up. On HAM10000 most images are not
estimable for these reasons: that is a finding about the pictures, not a failure to hide. An ITA measured through
a dermatoscope is also not a colorimeter's ITA: compare bands *within* a collection, and treat them as a rough
description of the pictures, not of the patients' skin types. (Kinyanjui et al., MICCAI 2020, estimated the ITA of
ISIC dermoscopy images from the skin outside the lesion.)

``colour_constancy=p`` in :func:`skin_tone` first applies Shades of Gray (:func:`pskinlib.data.cache.shades_of_gray`)
to the image. Be careful with it: Shades of Gray assumes the picture averages to grey, but a dermoscopy picture is
mostly skin, so it pulls the skin itself towards grey and b* towards 0; what is left is how the skin differs from
the image's average, not its tone. It is offered only so that this effect can be seen, and it is never the default.

Rulers are **not** detected: their ticks look like hair and their colours vary, and nothing simple here finds them
reliably.

Sizes in pixels (hair length, the lines of the closing) are given for images whose longer side is
:data:`REFERENCE_SIDE` pixels (HAM10000's 200 x 150) and scaled to other sizes; :func:`appearance_table` measures
each image resized to that side.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from ..errors import DataError, ParameterError, check_int
from ..io import make_folder, read_csv, write_csv
from .cache import cache_key, default_cache_dir, shades_of_gray
from .ham10000 import open_image

# ---------- Settings (changing any of them rebuilds the cached tables: they are part of the key)

REFERENCE_SIDE = 200  # pixel sizes below are for an image this long; others are scaled
MIN_SIDE = 32  # an image shorter than this on a side is too small to say anything about
# ITA bands (Chardon et al. 1991), lowest angle first: (name, lower bound exclusive, upper bound inclusive).
ITA_BANDS = (("dark", -math.inf, -30.0), ("brown", -30.0, 10.0), ("tan", 10.0, 28.0),
             ("intermediate", 28.0, 41.0), ("light", 41.0, 55.0), ("very light", 55.0, math.inf))
NOT_ESTIMABLE = "not estimable"
# At or below this b* the skin's yellow is lost in the light's tint: ITA = arctan((L*-50)/b*) is then decided by
# noise and exposure (at b* 7, L* 45 vs 55 gives -36 vs +36 degrees), or undefined (b* <= 0).
MIN_B_STAR = 8.0
# Skin under a white light has a hue angle h_ab = atan2(b*, a*) of roughly 40-70 degrees. Below this the colour is
# pink-red or violet: the dermatoscope's light (and the blood that cross-polarised light shows), not the skin's
# pigment. HAM10000 pictures of hue 30-35 looked salmon-red, yet their ITA came out "tan" or "brown" from exposure
# alone: a tint must not pass for a skin tone.
MIN_SKIN_HUE = 35.0
MIN_SKIN_FRACTION = 0.05  # of the image, and at least MIN_SKIN_PIXELS at the reference size
MIN_SKIN_PIXELS = 300
DARK_IMAGE_L = 25.0  # an image whose brightest hundredth (99th percentile of L*) is darker is too dark to measure
CENTRE_ELLIPSE = 0.25  # half-axes of the central ellipse left out as lesion, as a share of width and height
LESION_MARGIN = 3  # pixels the Otsu lesion mask is widened by, so its rim does not count as skin
# A pixel connected to a corner belongs to the dark border when its L* is below this share of the image's bright
# level (the 90th percentile of L*): the frame fades from black into the field, and a share follows the fade the
# same way in bright and in dull images.
BORDER_RATIO = 0.5
BORDER_CHROMA = 20.0  # C*ab: the frame is a dull grey-violet, a brown lesion reaching a corner is more colourful
BORDER_OPENING = 5  # a square opening of this side removes hairs before the border is traced
CORNER_PATCH = 0.04  # share of each side a corner seed takes; a corner is dark when half its seed is
MIN_DARK_CORNERS = 2  # a round frame darkens several corners; a lesion or shadow reaching the edge, one
MIN_BORDER_FRACTION = 0.01  # a dark border is reported present when it covers at least this share of the image
HAIR_LINE = 11  # length of the lines of the DullRazor closing
HAIR_CONTRAST = 12.0  # L* units the closing must brighten a pixel by for it to be a hair candidate
MIN_HAIR_LENGTH = 20  # pixels: the bounding-box diagonal a hair piece must reach
MAX_HAIR_WIDTH = 4  # pixels: an erosion this wide must remove nearly all of a hair piece ...
MAX_SOLID_SHARE = 0.1  # ... leaving at most this share of it (a line, not a blob)
HAIR_ON_SKIN = 0.3  # share of the pixels around a hair piece that must be skin (lighter than Otsu's threshold)
MIN_HAIR_FRACTION = 0.005  # hair is reported present from this share of the image on
INK_HUE = (240.0, 330.0)  # h_ab of violet-blue marker ink, degrees
INK_CHROMA = 25.0  # C*ab a pixel needs to be ink: the dermatoscope's pale violet tint stays below
INK_MAX_L = 75.0
INK_CONTRAST = 15.0  # distance in (a*, b*) from the image's median colour: ink stands out from a violet tint
MIN_INK_FRACTION = 0.005  # ink is reported present from this share of the image on

APPEARANCE_FORMAT = 1  # bump when the measurements change in a way the settings above do not show
MEASURE_SIDE = REFERENCE_SIDE


# ---------- Results


@dataclass(frozen=True)
class SkinTone:
    """The ITA of the skin around the lesion. ``category`` is an :data:`ITA_BANDS` name, or ``"not estimable"``
    with ``reason`` saying why (``ita`` is then NaN). ``lightness`` (L*), ``a_star`` and ``b_star`` are the
    medians of the skin pixels (NaN when there are none); ``skin_fraction`` is the share of the image used."""

    ita: float
    category: str
    reason: str
    lightness: float
    a_star: float
    b_star: float
    skin_fraction: float

    @property
    def estimable(self) -> bool:
        return self.category != NOT_ESTIMABLE


@dataclass(frozen=True)
class Artifact:
    """One kind of mark on the picture: ``present`` when ``fraction`` (of the image's pixels) reaches the
    threshold of its kind."""

    present: bool
    fraction: float


@dataclass(frozen=True)
class Appearance:
    """All the estimates of one image."""

    skin_tone: SkinTone
    dark_border: Artifact
    hair: Artifact
    ink: Artifact

    def as_row(self) -> dict:
        """One flat row for a table: ``ita, ita_category, ita_reason, lightness, a_star, b_star, skin_fraction,
        dark_border, dark_border_fraction, hair, hair_fraction, ink, ink_fraction``."""
        tone = asdict(self.skin_tone)
        row = {"ita": tone.pop("ita"), "ita_category": tone.pop("category"), "ita_reason": tone.pop("reason"),
               **tone}
        for name in ("dark_border", "hair", "ink"):
            artifact = getattr(self, name)
            row[name], row[f"{name}_fraction"] = artifact.present, artifact.fraction
        return row


# ---------- Checking the input, colour


def check_image(pixels) -> np.ndarray:
    """``pixels`` if it is an RGB uint8 image ``(H, W, 3)`` at least :data:`MIN_SIDE` pixels on each side, else a
    :class:`~pskinlib.errors.ParameterError` naming what is wrong."""
    if not isinstance(pixels, np.ndarray):
        raise ParameterError(f"pixels: expected a numpy array (H, W, 3) of uint8, got {type(pixels).__name__}.")
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ParameterError(f"pixels: expected an RGB image of shape (H, W, 3), got shape {pixels.shape}.")
    if pixels.dtype != np.uint8:
        raise ParameterError(f"pixels: expected dtype uint8 (0-255), got {pixels.dtype}; convert with "
                             "np.clip(x, 0, 255).astype(np.uint8) if the values are 0-255.")
    if min(pixels.shape[:2]) < MIN_SIDE:
        raise ParameterError(f"pixels: image of {pixels.shape[1]} x {pixels.shape[0]} px is too small; at least "
                             f"{MIN_SIDE} px on each side is needed.")
    return pixels


# sRGB decoding of each of the 256 byte values (IEC 61966-2-1): a table is much cheaper than the power per pixel.
_LINEAR = np.where((v := np.arange(256) / 255.0) <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])


def rgb_to_lab(pixels: np.ndarray) -> np.ndarray:
    """CIELAB (L* 0-100, a*, b*) of an sRGB uint8 image, D65 white: float ``(H, W, 3)``."""
    linear = _LINEAR[pixels]
    xyz = (linear.reshape(-1, 3) @ (_RGB_TO_XYZ.T / _D65_WHITE)).reshape(linear.shape)  # one product, not one a row
    delta = 6 / 29
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def ita_band(ita: float) -> str:
    """The :data:`ITA_BANDS` name of an angle in degrees (each band includes its upper bound)."""
    if not math.isfinite(ita):
        raise ParameterError(f"ita: expected a finite angle in degrees, got {ita!r}.")
    return next(name for name, low, high in ITA_BANDS if low < ita <= high)


def _scale(pixels: np.ndarray) -> float:
    """This image's size relative to :data:`REFERENCE_SIDE`."""
    return max(pixels.shape[:2]) / REFERENCE_SIDE


def _scaled(pixels: np.ndarray, length: float) -> int:
    """A length given at :data:`REFERENCE_SIDE`, in whole pixels of this image (at least 1)."""
    return max(1, round(length * _scale(pixels)))


def otsu_threshold(values: np.ndarray, bins: int = 128) -> float:
    """Otsu's (1979) threshold of a 1-D array: the value that best splits it into a darker and a lighter group
    (largest between-group variance)."""
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts)
    mean = np.cumsum(counts * centres)
    total, total_mean = weight[-1], mean[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mean * weight - mean * total) ** 2 / (weight * (total - weight))
    return float(edges[1:][np.nanargmax(between[:-1])]) if bins > 1 and np.isfinite(between[:-1]).any() \
        else float(np.median(values))


def central_ellipse(shape: tuple[int, int]) -> np.ndarray:
    """Boolean ``shape``: the ellipse at the image's centre whose half-axes are :data:`CENTRE_ELLIPSE` of its height
    and width, where a dermoscopy picture's lesion is."""
    h, w = shape
    y, x = np.ogrid[:h, :w]
    return ((y - (h - 1) / 2) / (CENTRE_ELLIPSE * h)) ** 2 + ((x - (w - 1) / 2) / (CENTRE_ELLIPSE * w)) ** 2 <= 1


# ---------- Dark border, hair, ink, skin: masks of one image's CIELAB (each public function takes the RGB image)


def _border(lab: np.ndarray) -> np.ndarray:
    lightness = lab[..., 0]
    side = _scaled(lab, BORDER_OPENING)
    dull = np.hypot(lab[..., 1], lab[..., 2]) < BORDER_CHROMA
    dark = (lightness < BORDER_RATIO * np.percentile(lightness, 90)) & dull
    dark = ndimage.binary_opening(dark, structure=np.ones((side, side), bool))
    labels, _ = ndimage.label(dark)
    h, w = dark.shape
    ch, cw = max(1, round(h * CORNER_PATCH)), max(1, round(w * CORNER_PATCH))
    patches = [labels[:ch, :cw], labels[:ch, -cw:], labels[-ch:, :cw], labels[-ch:, -cw:]]
    dark_corners = [patch for patch in patches if (patch > 0).mean() >= 0.5]
    if len(dark_corners) < MIN_DARK_CORNERS:  # one dark corner is a lesion or a shadow there, not a round frame
        return np.zeros_like(dark)
    seeds = np.unique(np.concatenate([patch.ravel() for patch in dark_corners]))
    return np.isin(labels, seeds[seeds > 0])


def _hair(lab: np.ndarray, border: np.ndarray) -> np.ndarray:
    lightness = lab[..., 0]
    n = _scaled(lab, HAIR_LINE) | 1  # odd, so the line is centred
    lines = [np.ones((1, n), bool), np.ones((n, 1), bool), np.eye(n, dtype=bool), np.fliplr(np.eye(n, dtype=bool))]
    closed = functools.reduce(np.maximum, (ndimage.grey_closing(lightness, footprint=line) for line in lines))
    candidates = (closed - lightness) > HAIR_CONTRAST
    away = ndimage.binary_dilation(border, iterations=_scaled(lab, LESION_MARGIN))
    edge = _scaled(lab, 2)  # many images have a dark seam in their outermost pixels
    away[:edge], away[-edge:], away[:, :edge], away[:, -edge:] = True, True, True, True
    candidates &= ~away
    labels, count = ndimage.label(candidates, structure=np.ones((3, 3), bool))
    if count == 0:
        return candidates
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    lengths = np.array([math.hypot(s[0].stop - s[0].start, s[1].stop - s[1].start)
                        for s in ndimage.find_objects(labels)])
    # Thin: an erosion by a square as wide as a hair may be leaves little of it. (Not area / length: crossing
    # hairs make one large net whose area is big for its extent, yet every strand of it is thin.)
    solid = ndimage.binary_erosion(candidates, structure=np.ones((3, 3), bool),
                                   iterations=max(1, round(MAX_HAIR_WIDTH * _scale(lab) / 2)))
    solid_share = np.bincount(labels.ravel(), weights=solid.ravel(), minlength=count + 1)[1:] / areas
    # The pixels just around each piece (its label spread by one pixel onto non-candidates): skin, or lesion?
    ring = np.where(candidates, 0, ndimage.grey_dilation(labels, size=(3, 3)))
    field = lightness[~away]
    lighter = lightness >= (otsu_threshold(field) if field.size else 0.0)
    around = np.bincount(ring.ravel(), minlength=count + 1)[1:]
    on_skin = np.bincount(ring.ravel(), weights=lighter.ravel(), minlength=count + 1)[1:] / np.maximum(around, 1)
    keep = (lengths >= _scaled(lab, MIN_HAIR_LENGTH)) & (solid_share < MAX_SOLID_SHARE) & (on_skin >= HAIR_ON_SKIN)
    return np.concatenate([[False], keep])[labels]


def _ink(lab: np.ndarray) -> np.ndarray:
    a_star, b_star = lab[..., 1], lab[..., 2]
    found = (np.hypot(a_star, b_star) > INK_CHROMA) & (lab[..., 0] < INK_MAX_L) & ~central_ellipse(lab.shape[:2])
    if not found.any():  # most images: no dark saturated pixel outside the centre, so no hue to measure
        return found
    a, b = a_star[found], b_star[found]
    hue = np.degrees(np.arctan2(b, a)) % 360
    usual_a, usual_b = np.median(a_star), np.median(b_star)
    found[found] = ((hue >= INK_HUE[0]) & (hue <= INK_HUE[1])
                    & (np.hypot(a - usual_a, b - usual_b) > INK_CONTRAST))
    return found


def _skin(lab: np.ndarray, border: np.ndarray, hair: np.ndarray, ink: np.ndarray) -> np.ndarray:
    margin = _scaled(lab, LESION_MARGIN)
    out = ndimage.binary_dilation(border, iterations=2 * margin)
    out |= ndimage.binary_dilation(hair | ink, iterations=1)
    field = lab[..., 0][~out]
    if field.size:
        lesion = lab[..., 0] < otsu_threshold(field)
        out |= ndimage.binary_dilation(lesion & ~out, iterations=margin)
    return ~(out | central_ellipse(lab.shape[:2]))


def dark_border_mask(pixels: np.ndarray) -> np.ndarray:
    """Boolean ``(H, W)``: the dermatoscope's dark frame, i.e. pixels darker than :data:`BORDER_RATIO` of the
    image's bright level (its 90th percentile of L*) and dull (chroma below :data:`BORDER_CHROMA`), connected to a
    dark corner, after an opening that removes hairs crossing a corner; nothing unless at least
    :data:`MIN_DARK_CORNERS` corners are dark. A dark background seen past the skin in two corners is taken for a
    border too, and so is a dull dark lesion joined to the frame."""
    return _border(rgb_to_lab(check_image(pixels)))


def hair_mask(pixels: np.ndarray) -> np.ndarray:
    """Boolean ``(H, W)``: dark hairs, as DullRazor finds them (Lee et al. 1997). A grey-level closing of L* with a
    line in each of four directions fills a dark line thinner than the line is long; the largest of the four
    closings minus L* (a black-hat) above :data:`HAIR_CONTRAST` marks candidates, away from the dark border and the
    image's outermost pixels. Of these, pieces are kept that are long (:data:`MIN_HAIR_LENGTH`), thin (an erosion
    :data:`MAX_HAIR_WIDTH` wide leaves at most :data:`MAX_SOLID_SHARE` of them) and lie at least partly on skin
    (:data:`HAIR_ON_SKIN` of the pixels around them lighter than Otsu's threshold), so that dots, the pigment
    network and streaks inside a lesion are not taken for hair. Missed: light (white or grey) hair, faint thin
    hair, and a hair lying wholly on a lesion."""
    lab = rgb_to_lab(check_image(pixels))
    return _hair(lab, _border(lab))


def ink_mask(pixels: np.ndarray) -> np.ndarray:
    """Boolean ``(H, W)``: the saturated violet-blue of surgical skin-marker ink (gentian violet, blue markers): hue
    angle h_ab in :data:`INK_HUE`, chroma C*ab above :data:`INK_CHROMA`, L* below :data:`INK_MAX_L`, and at least
    :data:`INK_CONTRAST` away in (a*, b*) from the image's median colour. The last test matters: many dermatoscopes
    tint the whole picture violet, and the tinted skin then has an ink's hue and chroma, but it *is* the image's
    usual colour; ink stands out from it. The central ellipse (:data:`CENTRE_ELLIPSE`) is left out: marks are drawn
    around a lesion, and a blue nevus or a blue-white veil in it has the colour of ink."""
    return _ink(rgb_to_lab(check_image(pixels)))


def skin_mask(pixels: np.ndarray) -> np.ndarray:
    """Boolean ``(H, W)``: the skin around the lesion. Left out: the dark border (widened by a few pixels, where it
    fades), hair and ink (widened by one pixel), the lesion as the pixels of the field darker than Otsu's threshold
    on L* (widened by :data:`LESION_MARGIN`), and a central ellipse (:data:`CENTRE_ELLIPSE`), where the lesion of a
    dermoscopy picture is, so that a pale or pink lesion is not taken for skin."""
    lab = rgb_to_lab(check_image(pixels))
    border = _border(lab)
    return _skin(lab, border, _hair(lab, border), _ink(lab))


def _artifact(mask: np.ndarray, threshold: float) -> Artifact:
    fraction = float(mask.mean())
    return Artifact(fraction >= threshold, fraction)


def dark_border(pixels: np.ndarray) -> Artifact:
    """Whether the dark round frame of a contact dermatoscope is in the picture (:func:`dark_border_mask` covering at
    least :data:`MIN_BORDER_FRACTION` of it), and the share of the image it covers."""
    return _artifact(dark_border_mask(pixels), MIN_BORDER_FRACTION)


def hair_coverage(pixels: np.ndarray) -> Artifact:
    """The share of the image that :func:`hair_mask` finds to be dark hair; present from :data:`MIN_HAIR_FRACTION`
    on."""
    return _artifact(hair_mask(pixels), MIN_HAIR_FRACTION)


def ink_marks(pixels: np.ndarray) -> Artifact:
    """The share of the image that :func:`ink_mask` finds to be marker ink; present from :data:`MIN_INK_FRACTION`
    on."""
    return _artifact(ink_mask(pixels), MIN_INK_FRACTION)


# ---------- Skin tone


def _not_estimable(reason: str, skin: np.ndarray | None = None, lab: np.ndarray | None = None) -> SkinTone:
    medians = np.median(lab[skin], axis=0) if skin is not None and skin.any() else np.full(3, np.nan)
    fraction = float(skin.mean()) if skin is not None else 0.0
    return SkinTone(math.nan, NOT_ESTIMABLE, reason, *map(float, medians), fraction)


def _tone(lab: np.ndarray, skin: np.ndarray) -> SkinTone:
    bright = float(np.percentile(lab[..., 0], 99))
    if bright < DARK_IMAGE_L:
        return _not_estimable(f"too dark: 99th percentile of L* {bright:.1f} < {DARK_IMAGE_L:g}")
    needed = max(MIN_SKIN_FRACTION * skin.size, MIN_SKIN_PIXELS * _scale(lab) ** 2)
    if skin.sum() < needed:
        return _not_estimable(f"too few skin pixels: {skin.mean():.1%} of the image, {MIN_SKIN_FRACTION:.0%} "
                              "needed", skin, lab)
    lightness, a_star, b_star = (float(v) for v in np.median(lab[skin], axis=0))
    if b_star <= MIN_B_STAR:
        return _not_estimable(f"no yellow: b* {b_star:.1f} <= {MIN_B_STAR:g}, the skin's colour is lost in the "
                              "light's tint", skin, lab)
    hue = math.degrees(math.atan2(b_star, a_star))
    if hue < MIN_SKIN_HUE:
        return _not_estimable(f"pink-violet tint: hue angle {hue:.0f} < {MIN_SKIN_HUE:g} degrees, not a skin "
                              "colour", skin, lab)
    ita = math.degrees(math.atan((lightness - 50) / b_star))
    return SkinTone(ita, ita_band(ita), "", lightness, a_star, b_star, float(skin.mean()))


def skin_tone(pixels: np.ndarray, *, colour_constancy: float | None = None) -> SkinTone:
    """The ITA of the skin around the lesion (:func:`skin_mask`): arctan((L* - 50) / b*) in degrees of the median
    L* and median b* of the skin pixels, with its :data:`ITA_BANDS` name.

    Not estimable (``category="not estimable"``, ``ita`` NaN, ``reason`` saying why) when even the brightest
    hundredth of the image is darker than L* :data:`DARK_IMAGE_L` (too dark), when fewer than
    :data:`MIN_SKIN_FRACTION` of the pixels (or :data:`MIN_SKIN_PIXELS` at the reference size) are skin, when the
    skin's median b* is at most :data:`MIN_B_STAR`, or when its hue angle h_ab is below :data:`MIN_SKIN_HUE` (a pink
    or violet tint, not a skin colour). ``colour_constancy=p`` applies Shades of Gray first: see the module's
    warning before using it.
    """
    check_image(pixels)
    if colour_constancy is not None:
        if isinstance(colour_constancy, bool) or not isinstance(colour_constancy, (int, float)) \
                or not 1 <= colour_constancy <= 20:
            raise ParameterError(f"colour_constancy: expected None or a Minkowski p from 1 to 20, got "
                                 f"{colour_constancy!r}.")
        pixels = shades_of_gray(pixels, colour_constancy)
    lab = rgb_to_lab(pixels)
    border = _border(lab)
    return _tone(lab, _skin(lab, border, _hair(lab, border), _ink(lab)))


def estimate_appearance(pixels: np.ndarray) -> Appearance:
    """:func:`skin_tone`, :func:`dark_border`, :func:`hair_coverage` and :func:`ink_marks` of one image (each mask
    computed once)."""
    lab = rgb_to_lab(check_image(pixels))
    border = _border(lab)
    hair, ink = _hair(lab, border), _ink(lab)
    return Appearance(_tone(lab, _skin(lab, border, hair, ink)), _artifact(border, MIN_BORDER_FRACTION),
                      _artifact(hair, MIN_HAIR_FRACTION), _artifact(ink, MIN_INK_FRACTION))


# ---------- Every image of a data folder, cached


COLUMNS = ("image_id", "ita", "ita_category", "ita_reason", "lightness", "a_star", "b_star", "skin_fraction",
           "dark_border", "dark_border_fraction", "hair", "hair_fraction", "ink", "ink_fraction")
_FLAGS = ("dark_border", "hair", "ink")


def _settings_digest() -> str:
    """A hash of every setting above, so that changing a threshold rebuilds the cached tables."""
    settings = {k: v for k, v in globals().items() if k.isupper() and isinstance(v, (int, float, str, tuple))}
    return hashlib.sha256(repr(sorted(settings.items())).encode()).hexdigest()[:8]


def measured_pixels(path: str | os.PathLike) -> np.ndarray:
    """Decode an image and resize it (keeping its aspect) so its longer side is :data:`MEASURE_SIDE` pixels. An
    image shorter than :data:`MIN_SIDE` on a side, before or after resizing, is a
    :class:`~pskinlib.errors.DataError` (``too small``)."""
    with open_image(path) as image:
        width, height = image.size
        image.draft("RGB", (MEASURE_SIDE, MEASURE_SIDE))
        image = image.convert("RGB")
        scale = MEASURE_SIDE / max(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        if min(width, height, *size) < MIN_SIDE:
            raise DataError(f"too small: {path} is {width} x {height} px; at least {MIN_SIDE} px on each side, "
                            f"and {MIN_SIDE} px at {MEASURE_SIDE} px long, are needed")
        return resized_for_measuring(np.asarray(image))


def resized_for_measuring(pixels: np.ndarray) -> np.ndarray:
    """An RGB image resized (keeping its aspect) so its longer side is :data:`MEASURE_SIDE` pixels, the size every
    estimate here is measured at; an image already that long is returned as it is."""
    scale = MEASURE_SIDE / max(pixels.shape[:2])
    size = (round(pixels.shape[1] * scale), round(pixels.shape[0] * scale))
    if size == (pixels.shape[1], pixels.shape[0]):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))


def _measure_paths(paths: list[str]) -> list[dict]:
    """Worker: one row per path. An image that does not decode, or is too small, gets a row that says so."""
    rows = []
    for path in paths:
        try:
            rows.append(estimate_appearance(measured_pixels(path)).as_row())
        except DataError as exc:
            reason = str(exc) if str(exc).startswith("too small") else f"does not decode: {exc}"
            rows.append({"ita": math.nan, "ita_category": NOT_ESTIMABLE, "ita_reason": reason})
    return rows


def appearance_table(images, *, cache_dir: str | os.PathLike | None = None, workers: int | None = None,
                     progress: bool = True, on_progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """:func:`estimate_appearance` of every image of ``images`` (a :class:`~pskinlib.data.ham10000.LesionImages`
    or a :class:`~pskinlib.data.labelled_folders.LabelledFolder`), one row per image in their order, with its
    ``dx`` (columns: ``image_id, dx`` and :meth:`Appearance.as_row`'s).

    The table is cached as a CSV in the image cache's folder (``cache_dir``, else ``$PSKIN_CACHE`` or
    ``~/.cache/pskin``), keyed like the prepared images by the folder and each file's name, size and modification
    time, and by the settings of this module, so a second call reads it and any change rebuilds it. An image that
    does not decode or is too small is kept, ``not estimable`` with the reason, its artifact columns empty.
    ``progress``: a progress bar while measuring; ``on_progress(done, total)``, if given, is called after each chunk
    of images measured (a build logs it).
    """
    table = getattr(images, "table", None)
    if not isinstance(table, pd.DataFrame) or not {"image_id", "dx", "path"} <= set(table.columns):
        raise ParameterError("images: expected a LesionImages or LabelledFolder (a .table with image_id, dx and "
                             f"path), got {type(images).__name__}.")
    workers = check_int("workers", workers, 1) if workers is not None else min(os.cpu_count() or 1, 8)
    path = appearance_cache(images, cache_dir=cache_dir)
    if not path.is_file():
        make_folder(path.parent, "cache_dir")
        write_csv(path, _measure(table["path"].tolist(), table["image_id"].tolist(), workers, progress,
                                 on_progress))
    return table[["image_id", "dx"]].merge(read_appearance(path), on="image_id", how="left", validate="1:1")


def appearance_cache(images, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """The CSV :func:`appearance_table` keeps the table of ``images`` in (there once it has been measured)."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / f"appearance-{APPEARANCE_FORMAT}-{_settings_digest()}-{cache_key(images, MEASURE_SIDE)}.csv"


def _measure(paths: list[str], image_ids: list[str], workers: int, progress: bool,
             on_progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    from tqdm.auto import tqdm

    chunk = max(16, len(paths) // (workers * 8) + 1)
    chunks = [paths[s:s + chunk] for s in range(0, len(paths), chunk)]
    rows: list[dict] = []
    with tqdm(total=len(paths), desc=f"measuring {len(paths)} images", unit="img", disable=not progress) as bar:
        if workers == 1:
            results = map(_measure_paths, chunks)
        else:
            pool = ProcessPoolExecutor(workers)
            results = pool.map(_measure_paths, chunks)
        try:
            for found in results:
                rows += found
                bar.update(len(found))
                if on_progress is not None:
                    on_progress(len(rows), len(paths))
        finally:
            if workers > 1:
                pool.shutdown()
    table = pd.DataFrame(rows).reindex(columns=COLUMNS[1:])
    table.insert(0, "image_id", image_ids)
    return table


def read_appearance(path: str | os.PathLike) -> pd.DataFrame:
    """A table written by :func:`appearance_table`, with its numbers as floats and its flags as nullable booleans
    (empty where the image could not be measured)."""
    table = read_csv(path, required=COLUMNS, what="appearance table")
    for column in COLUMNS:
        if column in _FLAGS:
            table[column] = table[column].map({"True": True, "False": False, "": pd.NA}).astype("boolean")
        elif column not in ("image_id", "ita_category", "ita_reason"):
            table[column] = pd.to_numeric(table[column].replace("", None), errors="raise").astype(float)
    return table


def band_counts(table: pd.DataFrame, by: str = "dx") -> pd.DataFrame:
    """Images per ITA band (columns, lightest first, then ``not estimable``) for each value of ``by`` (rows), with
    a ``total`` row."""
    if by not in table.columns or "ita_category" not in table.columns:
        raise ParameterError(f"table: need the columns {by!r} and 'ita_category' (from appearance_table), got "
                             f"{list(table.columns)}.")
    order = [name for name, _, _ in reversed(ITA_BANDS)] + [NOT_ESTIMABLE]
    counts = pd.crosstab(table[by], table["ita_category"]).reindex(columns=order, fill_value=0)
    counts.loc["total"] = counts.sum()
    return counts


def not_estimable(table: pd.DataFrame) -> dict[str, list[str]]:
    """The image ids whose skin tone is not estimable, by the kind of reason (the reason's text before its colon:
    ``too dark``, ``too few skin pixels``, ``no yellow``, ``pink-violet tint``, ``too small``, ``does not
    decode``), so that they can be counted and looked at."""
    rows = table[table["ita_category"] == NOT_ESTIMABLE]
    kinds = rows["ita_reason"].str.split(":").str[0]
    return {kind: group["image_id"].tolist() for kind, group in rows.groupby(kinds, sort=True)}
