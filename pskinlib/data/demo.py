"""Synthetic demo data: procedural dermoscopy-like images with class-dependent cues, made from a seed.

Fast tests, and the book when no real data is present, use these images in place of HAM10000: they show that the
code runs end to end, not how well a model recognises real lesions (``SYNTHETIC_WARNING``). Each lesion is painted
on a "scene" (skin, lesion, hair) a little larger than the image; an image is a view of it (rotation, shift,
brightness, vignetting, an optional dark dermatoscope field, noise), so a lesion's several images are near-duplicates
and splits must keep them together. The class cues loosely follow dermoscopy textbooks (see each ``_paint_<dx>``);
every parameter varies and the classes' ranges overlap, so a small CNN gets roughly 80-90%, not 100%.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..errors import OutputExistsError, ParameterError, check_int
from ..info import ALL_CLASSES, HAM10000, PAPER_CLASSES, SEXES, SYNTHETIC_MARKER, SYNTHETIC_WARNING
from ..io import make_folder, write_csv
from .ham10000 import validate_classes

# Colours are RGB in 0..255 floats while painting.
_SKIN_TONES = np.array([[236, 200, 186], [224, 178, 158], [214, 160, 138], [228, 172, 168], [196, 140, 112]],
                       dtype=np.float32)  # fmt: skip
_HAIR = np.array([38, 28, 22], dtype=np.float32)
# Views of one lesion differ by at most this rotation (degrees) and shift (fraction of the image size).
_MAX_ANGLE, _MAX_SHIFT = 12.0, 0.04
# Share of lesions with 1, 2, 3 images: about HAM10000's 1.34 images per lesion.
_IMAGES_PER_LESION_P = (0.75, 0.18, 0.07)
# Metadata vocabularies of HAM10000 (values as spelled in HAM10000_metadata.csv) with rough shares.
_DX_TYPES = ("histo", "follow_up", "consensus", "confocal")
# In HAM10000 only nevi are confirmed by follow-up.
_DX_TYPE_P = {"nv": (0.40, 0.50, 0.08, 0.02), "mel": (0.95, 0.0, 0.04, 0.01), "other": (0.70, 0.0, 0.26, 0.04)}
_SEXES, _SEX_P = (*SEXES, "unknown"), (0.54, 0.45, 0.01)
_LOCALIZATION_P = {
    "back": 0.22, "lower extremity": 0.21, "trunk": 0.14, "upper extremity": 0.11, "abdomen": 0.10, "face": 0.07,
    "chest": 0.04, "foot": 0.03, "scalp": 0.03, "neck": 0.02, "hand": 0.01, "ear": 0.005, "genital": 0.005,
    "acral": 0.005, "unknown": 0.005,
}  # fmt: skip
_MEAN_AGE = {"nv": 45, "mel": 62, "bkl": 62, "bcc": 66, "akiec": 67, "vasc": 50, "df": 52}
_AGE_MISSING_P = 0.01
_MIN_SIZE = 32


# ------------------------------------------------------------------------------------------------------------
# Painting helpers. Images are float32 arrays of shape (3, H, W) while painting: channel-first keeps every
# operation on whole contiguous planes, so one image takes a few milliseconds.


def _rgb(colour) -> np.ndarray:
    return np.asarray(colour, dtype=np.float32).reshape(3, 1, 1)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Smooth random field with features about ``cell`` pixels wide, mean 0 and standard deviation about 1."""
    gh, gw = max(2, round(shape[0] / cell) + 1), max(2, round(shape[1] / cell) + 1)
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    field = np.asarray(Image.fromarray(grid).resize((shape[1], shape[0]), Image.Resampling.BICUBIC))
    return field * np.float32(1 / 0.82)  # bicubic interpolation of unit noise has a standard deviation of ~0.82


def _blend(img: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Paint ``colour`` (an RGB triple or a (3, H, W) field) over ``img`` with opacity ``alpha`` (0..1)."""
    out = np.asarray(colour, dtype=np.float32) - img
    out *= alpha
    out += img
    return out


def _jitter(rng: np.random.Generator, colour, amount: float) -> np.ndarray:
    """``colour`` lighter or darker by up to ``amount``, each channel by a third of that (not more: browns go olive)."""
    colour = np.asarray(colour, np.float32).ravel()
    shifted = colour + rng.uniform(-amount, amount) + rng.uniform(-amount / 3, amount / 3, 3)
    return _rgb(np.clip(shifted, 0, 255))


def _mix(rng: np.random.Generator, a, b) -> np.ndarray:
    """A random colour on the segment between ``a`` and ``b``."""
    t = rng.uniform()
    return _rgb(a) * (1 - t) + _rgb(b) * t


def _dots(shape: tuple[int, int], ys, xs, rs, soft: float = 1.0) -> np.ndarray:
    """Opacity of round dots at (ys, xs) with radii rs; each dot is drawn in its own small window."""
    out = np.zeros(shape, dtype=np.float32)
    for y, x, r in zip(ys, xs, rs):
        y0, y1 = max(0, int(y - r - soft - 1)), min(shape[0], int(y + r + soft + 2))
        x0, x1 = max(0, int(x - r - soft - 1)), min(shape[1], int(x + r + soft + 2))
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        d = np.sqrt((yy - y) ** 2 + (xx - x) ** 2)
        np.maximum(out[y0:y1, x0:x1], _smoothstep((r - d) / soft + 0.5), out=out[y0:y1, x0:x1])
    return out


def _bezier(p0, p2, bend: float, t):
    """Points (y, x) at ``t`` on a quadratic Bezier curve from p0 to p2, bowed sideways by ``bend``."""
    p0, p2 = np.asarray(p0, np.float32), np.asarray(p2, np.float32)
    p1 = (p0 + p2) / 2 + bend * np.array([p0[1] - p2[1], p2[0] - p0[0]], np.float32)
    t = np.asarray(t, np.float32)[..., None]
    return ((1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2).squeeze()


def _curves(shape: tuple[int, int], starts, ends, bends, thick) -> np.ndarray:
    """Opacity of thin curved strokes (quadratic Bezier curves), drawn by dense sampling, then softened."""
    mask = np.zeros(shape, dtype=np.float32)
    t = np.linspace(0.0, 1.0, 3 * sum(shape))
    for p0, p2, bend, th in zip(starts, ends, bends, thick):
        pts = _bezier(p0, p2, bend, t)
        for dy in range(int(th)):
            iy = np.round(pts[:, 0]).astype(int) + dy
            ix = np.round(pts[:, 1]).astype(int)
            ok = (iy >= 0) & (iy < shape[0]) & (ix >= 0) & (ix < shape[1])
            mask[iy[ok], ix[ok]] = 1.0
    p = np.pad(mask, 1, mode="edge")  # a 3x3 box blur softens the strokes
    blurred = sum(p[i : i + shape[0], j : j + shape[1]] for i in range(3) for j in range(3)) / 9.0
    return np.clip(blurred * 1.8, 0.0, 1.0)


def _network(u: np.ndarray, v: np.ndarray, period: float, width: float) -> np.ndarray:
    """Honeycomb-like pigment network: 1 on the lines, 0 in the holes (three plane waves 60 degrees apart)."""
    k = 2 * np.pi / period
    s = sum(np.cos(k * (u * math.cos(a) + v * math.sin(a))) for a in (0.0, np.pi / 3, 2 * np.pi / 3))
    return _smoothstep((1.0 - s) / (3.0 * width))  # s is 3 at the hole centres and about -1.5 between them


class _Lesion:
    """Geometry of one lesion on the scene grid: lesion-frame coordinates and the normalised radius ``t``."""

    def __init__(self, rng, yy, xx, cy, cx, radius, aspect, angle, amps, edge):
        c, s = math.cos(angle), math.sin(angle)
        dy, dx = yy - cy, xx - cx
        self.u, self.v = c * dx + s * dy, -s * dx + c * dy
        self.cy, self.cx, self.radius = cy, cx, radius
        rho = np.sqrt(self.u**2 + (self.v / aspect) ** 2)
        phi = np.arctan2(self.v / aspect, self.u)
        border = np.ones_like(rho)
        for k, a in enumerate(amps, start=1):
            if a:
                border += a * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
        self.t = rho / (radius * np.maximum(border, 0.3))  # 0 at the centre, 1 on the border
        self.alpha = _smoothstep((1.0 - self.t) / edge)

    def points_inside(self, rng, n: int, t_max: float = 0.85):
        """Random points inside the lesion (roughly; the border harmonics are ignored)."""
        r = self.radius * t_max * np.sqrt(rng.uniform(0, 1, n))
        a = rng.uniform(0, 2 * np.pi, n)
        return self.cy + r * np.sin(a), self.cx + r * np.cos(a)


def _harmonics(rng, k_max: int, low: float, high: float, start: int = 2) -> list[float]:
    # Amplitudes for border harmonics 1..k_max; those below ``start`` are zero (k=1 makes the shape egg-like).
    return [0.0 if k < start else rng.uniform(low, high) / math.sqrt(k) for k in range(1, k_max + 1)]


def _place(rng, yy, xx, cy, cx, size, radius, aspect, harmonics, edge, scale: float = 1.0) -> _Lesion:
    """A lesion whose radius (share of ``size``, times ``scale``), aspect, border harmonics (k_max, low, high) and
    edge softness are drawn from the given ranges."""
    r = size * rng.uniform(*radius) * scale
    return _Lesion(rng, yy, xx, cy, cx, r, rng.uniform(*aspect), rng.uniform(0, np.pi), _harmonics(rng, *harmonics),
                   rng.uniform(*edge))  # fmt: skip


def _paint_nv(rng, img, yy, xx, cy, cx, size):
    """Nevus: round or oval, symmetric, even medium brown, faint regular network, sometimes globules."""
    dysplastic = rng.uniform() < 0.15  # atypical nevi look a little like melanoma
    les = _place(rng, yy, xx, cy, cx, size, (0.22, 0.4), (0.72, 1.0), (4, 0.0, 0.08) if dysplastic else (3, 0.0, 0.04),
                 (0.1, 0.25), 1.15 if dysplastic else 1.0)  # fmt: skip
    colour = _jitter(rng, _mix(rng, [168, 112, 80], [98, 60, 42]), 10)
    centre = rng.uniform(-0.12, 0.2)  # darker (or lighter) centre, symmetric
    field = colour * (1.0 - centre * (1.0 - np.clip(les.t, 0, 1)) + 0.04 * _noise(rng, yy.shape, 12))
    if dysplastic:
        spot = _noise(rng, yy.shape, les.radius * 0.8)
        field = _blend(field, colour * 0.65, 0.5 * _smoothstep(spot - 0.5))
    img = _blend(img, field, les.alpha * rng.uniform(0.85, 1.0))
    if rng.uniform() < 0.75:  # regular network, fading towards the border
        period = rng.uniform(5, 8)
        warp = 0.3 * period  # slightly wavy lines, not a perfect honeycomb
        u, v = les.u + warp * _noise(rng, yy.shape, 12), les.v + warp * _noise(rng, yy.shape, 12)
        strength = rng.uniform(0.1, 0.28) * _smoothstep((1.05 - les.t) / 0.5)
        img = _blend(img, colour * 0.6, _network(u, v, period, 0.5) * strength)
    if rng.uniform() < 0.3:  # globular (cobblestone) nevus: regular brown globules
        n = int(rng.integers(10, 30))
        ys, xs = les.points_inside(rng, n)
        img = _blend(img, colour * 0.7, 0.6 * _dots(yy.shape, ys, xs, rng.uniform(1.5, 3.0, n)))
    return img


def _paint_mel(rng, img, yy, xx, cy, cx, size):
    """Melanoma: larger, asymmetric, several colours (black blotches, blue-grey veil, regression), irregular network."""
    featureless = rng.uniform() < 0.2  # some melanomas show few of the classic cues
    radius = size * rng.uniform(0.28, 0.5)
    amps = _harmonics(rng, 6, 0.02, 0.05 if featureless else 0.12, start=1)
    amps += [rng.uniform(0.0, 0.015) for _ in range(4)]  # fine notches along the border
    les = _Lesion(rng, yy, xx, cy, cx, radius, rng.uniform(0.6, 0.95), rng.uniform(0, np.pi), amps, 0.12)
    # Border sharpness varies around the lesion: abrupt in places, fading in others.
    edge = 0.04 + 0.2 * _smoothstep(0.5 + 0.5 * _noise(rng, yy.shape, radius * 0.6))
    alpha = _smoothstep((1.0 - les.t) / edge)
    colour = _jitter(rng, _mix(rng, [140, 90, 62], [80, 50, 36]), 10)
    # Asymmetric pigment: an off-centre dark zone, light-brown zones elsewhere.
    oy, ox = les.points_inside(rng, 1, 0.6)
    off = np.exp(-((yy - oy[0]) ** 2 + (xx - ox[0]) ** 2) / (2 * (0.45 * radius) ** 2))
    tan = _smoothstep((_noise(rng, yy.shape, radius * 0.5) - 0.6 * off) / 2.2 + 0.3)  # soft-edged zones
    field = _blend(colour * (1.0 - 0.3 * off), _jitter(rng, [172, 122, 90], 10), 0.75 * tan)
    img = _blend(img, field, alpha)
    inside = _smoothstep((1.0 - les.t) / 0.2)
    if rng.uniform() < (0.3 if featureless else 0.85):  # black-brown blotches, mostly in the dark zone
        blot = _smoothstep((0.5 * _noise(rng, yy.shape, radius * 0.5) + off - 0.55) / 0.8)
        img = _blend(img, _jitter(rng, [48, 34, 32], 8), 0.85 * blot * inside)
    if rng.uniform() < (0.2 if featureless else 0.65):  # blue-grey veil, a diffuse haze
        veil = _smoothstep((_noise(rng, yy.shape, radius * 0.6) - 0.2) / 1.4)
        img = _blend(img, _jitter(rng, [112, 120, 140], 10), rng.uniform(0.5, 0.85) * veil * inside)
    if rng.uniform() < (0.1 if featureless else 0.35):  # whitish regression areas
        reg = _smoothstep((_noise(rng, yy.shape, radius * 0.35) - 0.8) / 1.0)
        img = _blend(img, _jitter(rng, [214, 198, 198], 10), rng.uniform(0.4, 0.7) * reg * inside)
    if rng.uniform() < 0.7:  # atypical network: distorted, thick, patchy
        warp = radius * 0.12
        net = _network(les.u + warp * _noise(rng, yy.shape, 10), les.v + warp * _noise(rng, yy.shape, 10),
                       rng.uniform(6, 10), 0.9)  # fmt: skip
        patchy = _smoothstep(_noise(rng, yy.shape, radius * 0.4) + 0.3)
        img = _blend(img, colour * 0.45, net * patchy * rng.uniform(0.3, 0.6) * inside)
    if not featureless:  # irregular dots and globules, crowded towards the periphery
        n = int(rng.integers(5, 30))
        ys, xs = les.points_inside(rng, n, 0.95)
        dots = _dots(yy.shape, ys, xs, rng.uniform(0.8, 3.0, n)) * _smoothstep((1.05 - les.t) / 0.15)
        img = _blend(img, _jitter(rng, [50, 35, 30], 10), 0.8 * dots)
    return img


def _paint_bkl(rng, img, yy, xx, cy, cx, size):
    """Benign keratosis: tan to light brown, sharp border, waxy fissured surface, milia-like cysts, comedo openings."""
    les = _place(rng, yy, xx, cy, cx, size, (0.22, 0.42), (0.6, 0.95), (4, 0.0, 0.07), (0.02, 0.06))
    colour = _jitter(rng, _mix(rng, [192, 150, 112], [138, 96, 66]), 10)
    # Waxy, fissured surface: ridges and narrow darker furrows where a fine noise field crosses zero.
    fine = _noise(rng, yy.shape, rng.uniform(4, 7))
    furrows = np.exp(-((fine / 0.25) ** 2))
    shade = 1.0 + 0.05 * fine + 0.06 * _noise(rng, yy.shape, les.radius * 0.5) - rng.uniform(0.08, 0.2) * furrows
    img = _blend(img, colour * shade, les.alpha)
    # Milia-like cysts (small white dots), then comedo-like openings (dark brown plugs).
    for dot, amount, opacity, r_max in (([240, 234, 220], 8, 0.85, 2.8), ([72, 52, 40], 10, 0.8, 3.0)):
        n = int(rng.integers(2, 12))
        ys, xs = les.points_inside(rng, n)
        img = _blend(img, _jitter(rng, dot, amount), opacity * _dots(yy.shape, ys, xs, rng.uniform(1.2, r_max, n)))
    return img


def _paint_bcc(rng, img, yy, xx, cy, cx, size):
    """Basal cell carcinoma: pink translucent, arborising vessels, blue-grey ovoid nests, sometimes ulceration."""
    les = _place(rng, yy, xx, cy, cx, size, (0.22, 0.4), (0.6, 0.95), (5, 0.02, 0.08), (0.1, 0.25))
    radius = les.radius
    img = _blend(img, _jitter(rng, [228, 160, 164], 10), les.alpha * rng.uniform(0.6, 0.85))
    # Arborising vessels: a few thick curved trunks, each with thinner branches leaving it.
    n = int(rng.integers(2, 5))
    ys, xs = les.points_inside(rng, 2 * n, 1.0)
    starts, ends = list(zip(ys[:n], xs[:n])), list(zip(ys[n:], xs[n:]))
    bends = list(rng.uniform(-0.4, 0.4, n))
    for p0, p2, bend in zip(starts[:n], ends[:n], bends[:n]):
        for t in rng.uniform(0.2, 0.8, int(rng.integers(1, 4))):
            fork = _bezier(p0, p2, bend, t)
            angle, length = rng.uniform(0, 2 * np.pi), radius * rng.uniform(0.2, 0.5)
            starts.append(fork)
            ends.append(fork + length * np.array([math.sin(angle), math.cos(angle)], np.float32))
            bends.append(rng.uniform(-0.3, 0.3))
    vessels = _curves(yy.shape, starts, ends, bends, [2] * n + [1] * (len(starts) - n))
    img = _blend(img, _jitter(rng, [168, 36, 50], 15), 0.75 * vessels * les.alpha)
    if rng.uniform() < 0.6:  # blue-grey ovoid nests
        n = int(rng.integers(1, 5))
        ys, xs = les.points_inside(rng, n, 0.7)
        nests = _dots(yy.shape, ys, xs, radius * rng.uniform(0.08, 0.2, n), soft=3.0)
        img = _blend(img, _jitter(rng, [95, 102, 122], 10), 0.75 * nests)
    if rng.uniform() < 0.3:  # ulceration
        ys, xs = les.points_inside(rng, 1, 0.5)
        img = _blend(img, _jitter(rng, [115, 45, 38], 10), 0.8 * _dots(yy.shape, ys, xs, [radius * 0.2], soft=2.0))
    return img


def _paint_akiec(rng, img, yy, xx, cy, cx, size):
    """Actinic keratosis: reddish, ill-defined border, white-yellow scale, dotted vessels."""
    les = _place(rng, yy, xx, cy, cx, size, (0.24, 0.42), (0.6, 0.95), (5, 0.03, 0.1), (0.25, 0.45))
    colour = _jitter(rng, [205, 118, 108], 12)
    if rng.uniform() < 0.3:  # pigmented actinic keratosis
        colour = colour * 0.6 + _rgb([140, 95, 70]) * 0.4
    img = _blend(img, colour * (1.0 + 0.06 * _noise(rng, yy.shape, 8)), les.alpha * rng.uniform(0.6, 0.85))
    # Scale: white-yellow flakes where a fine noise field is high.
    scale = _smoothstep((_noise(rng, yy.shape, rng.uniform(3, 7)) - rng.uniform(0.3, 0.9)) / 0.5)
    img = _blend(img, _jitter(rng, [236, 226, 204], 8), rng.uniform(0.5, 0.85) * scale * les.alpha)
    n = int(rng.integers(10, 40))  # dotted vessels
    ys, xs = les.points_inside(rng, n)
    return _blend(img, _jitter(rng, [170, 50, 55], 12), 0.6 * _dots(yy.shape, ys, xs, rng.uniform(0.6, 1.3, n)))


def _paint_vasc(rng, img, yy, xx, cy, cx, size):
    """Vascular lesion: small, red to purple lagoons (lacunae) separated by pale septa."""
    les = _place(rng, yy, xx, cy, cx, size, (0.15, 0.3), (0.7, 1.0), (4, 0.0, 0.06), (0.03, 0.08))
    img = _blend(img, _jitter(rng, [200, 128, 138], 12), les.alpha)  # pale septa between the lagoons
    # Lagoons: red to purple round areas packed inside the lesion.
    n = int(rng.integers(6, 18))
    ys, xs = les.points_inside(rng, n, 0.85)
    lagoons = _dots(yy.shape, ys, xs, les.radius * rng.uniform(0.18, 0.34, n), soft=1.5)
    red = _jitter(rng, _mix(rng, [185, 38, 58], [105, 30, 72]), 12)
    return _blend(img, red * (1.0 + 0.1 * _noise(rng, yy.shape, 5)), lagoons * les.alpha)


def _paint_df(rng, img, yy, xx, cy, cx, size):
    """Dermatofibroma: small, pale scar-like centre with a delicate brown rim and network."""
    les = _place(rng, yy, xx, cy, cx, size, (0.14, 0.26), (0.75, 1.0), (3, 0.0, 0.06), (0.15, 0.3))
    rim = _jitter(rng, _mix(rng, [165, 112, 82], [120, 80, 58]), 10)
    img = _blend(img, rim, les.alpha * rng.uniform(0.65, 0.9))
    img = _blend(img, rim * 0.7, 0.3 * _network(les.u, les.v, rng.uniform(4, 6), 0.6) * les.alpha)
    # Central white scar-like patch with an irregular outline.
    patch = _smoothstep((rng.uniform(0.45, 0.65) - les.t) / 0.25 + 0.25 * _noise(rng, yy.shape, les.radius * 0.3))
    return _blend(img, _jitter(rng, [228, 206, 200], 8), rng.uniform(0.6, 0.85) * patch)


_PAINTERS = {"nv": _paint_nv, "mel": _paint_mel, "bkl": _paint_bkl, "bcc": _paint_bcc, "akiec": _paint_akiec,
             "vasc": _paint_vasc, "df": _paint_df}  # fmt: skip
assert set(_PAINTERS) == set(ALL_CLASSES), "every HAM10000 class needs a painter"


@functools.lru_cache(maxsize=4)
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy.flags.writeable = xx.flags.writeable = False  # shared between calls
    return yy, xx


def _paint_scene(dx: str, rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """Skin, lesion and hair for one lesion, on a canvas a little larger than the image."""
    # Large enough that any view (rotated by up to _MAX_ANGLE, shifted by up to _MAX_SHIFT) stays inside.
    a, shift = math.radians(_MAX_ANGLE), 2 * _MAX_SHIFT * max(height, width)
    shape = (math.ceil(width * math.sin(a) + height * math.cos(a) + shift) + 4,
             math.ceil(width * math.cos(a) + height * math.sin(a) + shift) + 4)  # fmt: skip
    yy, xx = _grid(*shape)  # pixel coordinates on the scene
    tone = _SKIN_TONES[rng.integers(len(_SKIN_TONES))]
    skin = _rgb(tone) * rng.uniform(0.92, 1.05) + _jitter(rng, [0, 0, 0], 6)
    img = skin * (1.0 + 0.025 * _noise(rng, shape, 30) + 0.012 * _noise(rng, shape, 3))  # mottled skin
    redness = _smoothstep(_noise(rng, shape, 40) - 0.3) * rng.uniform(0, 0.25)  # patchy erythema
    img = _blend(img, skin * _rgb([1.0, 0.78, 0.8]), redness)
    cy = shape[0] / 2 + rng.uniform(-0.08, 0.08) * height
    cx = shape[1] / 2 + rng.uniform(-0.08, 0.08) * width
    img = _PAINTERS[dx](rng, img, yy, xx, cy, cx, min(height, width))
    if rng.uniform() < 0.25:  # hair
        n = int(rng.integers(1, 7))
        starts = zip(rng.uniform(0, shape[0], n), rng.uniform(0, shape[1], n))
        ends = zip(rng.uniform(0, shape[0], n), rng.uniform(0, shape[1], n))
        hair = _curves(shape, starts, ends, rng.uniform(-0.3, 0.3, n), rng.integers(1, 3, n))
        img = _blend(img, _jitter(rng, _HAIR, 10), 0.8 * hair)
    return Image.merge("RGB", [Image.fromarray(c) for c in np.clip(img + 0.5, 0, 255).astype(np.uint8)])


def _photographs(dx: str, rng: np.random.Generator, height: int, width: int, n: int) -> list[np.ndarray]:
    """``n`` views of one painted lesion, taken with the same camera (dermatoscope field, vignetting, colour)."""
    scene = _paint_scene(dx, rng, height, width)
    # About a third of dermoscopy images show the scope's dark circular field; its radius is relative to the
    # half-diagonal, so corners go dark.
    field = rng.uniform(0.88, 1.02) if rng.uniform() < 0.35 else None
    camera = {"field": field, "vignette": rng.uniform(0.05, 0.3),
              "gain": _rgb(rng.uniform(0.88, 1.08) * rng.uniform(0.97, 1.03, 3)), "noise": rng.uniform(1.0, 3.5)}
    return [_take_view(scene, rng, camera, height, width) for _ in range(n)]


def _take_view(scene: Image.Image, rng: np.random.Generator, camera: dict, height: int, width: int) -> np.ndarray:
    """One photograph of the scene: small rotation and shift, brightness, vignetting, field of view, noise."""
    angle = math.radians(rng.uniform(-_MAX_ANGLE, _MAX_ANGLE))
    sy, sx = rng.uniform(-_MAX_SHIFT, _MAX_SHIFT, 2) * max(height, width)
    c, s = math.cos(angle), math.sin(angle)
    # PIL's affine transform maps each output pixel to the scene pixel it samples.
    cx0, cy0, ox, oy = scene.width / 2 + sx, scene.height / 2 + sy, width / 2, height / 2
    coeffs = (c, -s, cx0 - c * ox + s * oy, s, c, cy0 - s * ox - c * oy)
    view = scene.transform((width, height), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    img = np.stack([np.asarray(ch, dtype=np.float32) for ch in view.split()])
    yy, xx = _grid(height, width)
    r = np.hypot(yy - height / 2, xx - width / 2) / math.hypot(height / 2, width / 2)  # 1 in the corners
    img = img * ((1.0 - camera["vignette"] * r**2) * rng.uniform(0.93, 1.07)) * camera["gain"]
    if camera["field"] is not None:
        img = _blend(img, _rgb([12, 9, 9]), _smoothstep((r - camera["field"]) / 0.04))
    img += camera["noise"] * rng.standard_normal((height, width), dtype=np.float32)  # luminance noise
    return np.ascontiguousarray(np.clip(img + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0))


# ------------------------------------------------------------------------------------------------------------
# Parameters, metadata and the dataset on disk


def _check_fractions(class_fractions, classes: tuple[str, ...]) -> dict[str, float]:
    if class_fractions is None:
        return ham10000_fractions(classes)
    if not isinstance(class_fractions, dict) or set(class_fractions) != set(classes):
        raise ParameterError(f"class_fractions must be a dict with one entry per class of {classes}, "
                             f"got {class_fractions!r}")
    for c, f in class_fractions.items():
        if not isinstance(f, numbers.Real) or isinstance(f, bool) or not math.isfinite(f) or f <= 0:
            raise ParameterError(f"class_fractions must hold positive numbers, got {c!r}: {f!r}")
    total = sum(class_fractions.values())
    if abs(total - 1.0) > 1e-6:
        raise ParameterError(f"class_fractions must sum to 1, got {class_fractions!r} (sum {total})")
    return {c: float(class_fractions[c]) for c in classes}


def render_lesion(dx: str, rng: np.random.Generator, height: int = 150, width: int = 200) -> np.ndarray:
    """One synthetic dermoscopy-like image of a lesion of class ``dx``: uint8 RGB, shape (height, width, 3).

    The same ``numpy.random.Generator`` state gives the same image; a few milliseconds at 150 x 200 pixels.
    """
    if dx not in ALL_CLASSES:
        raise ParameterError(f"dx must be one of {ALL_CLASSES}, got {dx!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (numpy.random.default_rng(seed)), got {rng!r}")
    height, width = check_int("height", height, _MIN_SIZE), check_int("width", width, _MIN_SIZE)
    return _photographs(dx, rng, height, width, 1)[0]


def ham10000_fractions(classes: tuple[str, ...]) -> dict[str, float]:
    """HAM10000's class shares among ``classes`` (for the paper's three: nv 0.75, mel 0.12, bkl 0.12)."""
    classes = validate_classes(classes)
    counts = HAM10000["images_per_class"]
    total = sum(counts[c] for c in classes)
    return {c: counts[c] / total for c in classes}


def _lesion_counts(n_lesions: int, classes: tuple[str, ...], fractions: dict[str, float]) -> list[int]:
    """Lesions per class: as close to the fractions as whole numbers allow, with at least two per class."""
    exact = np.array([n_lesions * fractions[c] for c in classes])
    counts = np.maximum(np.floor(exact).astype(int), 2)
    while counts.sum() > n_lesions:
        counts[int(np.argmax(np.where(counts > 2, counts - exact, -np.inf)))] -= 1
    while counts.sum() < n_lesions:
        counts[int(np.argmax(exact - counts))] += 1
    return counts.tolist()


def _metadata_row(rng: np.random.Generator, dx: str) -> dict:
    """dx_type, age, sex and localization of one lesion (shared by all its images, as in HAM10000)."""
    dx_type = _DX_TYPES[rng.choice(4, p=_DX_TYPE_P.get(dx, _DX_TYPE_P["other"]))]
    age = int(np.clip(5 * round(rng.normal(_MEAN_AGE[dx], 15) / 5), 5, 85))
    sites, shares = list(_LOCALIZATION_P), list(_LOCALIZATION_P.values())
    # HAM10000_metadata.csv writes ages as floats ("45.0") and leaves missing ones blank.
    return {"dx_type": dx_type, "age": "" if rng.uniform() < _AGE_MISSING_P else f"{age:.1f}",
            "sex": _SEXES[rng.choice(3, p=_SEX_P)],
            "localization": sites[rng.choice(len(sites), p=np.array(shares) / sum(shares))]}


def _write_lesion_images(folder: Path, dx: str, seq: np.random.SeedSequence, image_ids, height: int, width: int):
    """Paint one lesion and save one JPEG per image id, each a different view of the same scene."""
    for image_id, view in zip(image_ids, _photographs(dx, np.random.default_rng(seq), height, width, len(image_ids))):
        Image.fromarray(view).save(folder / f"{image_id}.jpg", format="JPEG", quality=90)


def make_demo_dataset(root: Path, *, n_lesions: int = 600, classes: tuple[str, ...] = PAPER_CLASSES,
                      class_fractions: dict[str, float] | None = None, images_per_lesion: int = 3, seed: int = 0,
                      height: int = 150, width: int = 200, overwrite: bool = False,
                      workers: int | None = None) -> Path:  # fmt: skip
    """Write a synthetic HAM10000-like dataset to ``root`` and return ``root``.

    Layout as the real data (``images/<image_id>.jpg`` at JPEG quality 90, ``HAM10000_metadata.csv`` with its
    columns) plus ``<SYNTHETIC_MARKER>`` holding ``SYNTHETIC_WARNING`` and the parameters. ``n_lesions``: at least
    two per class. ``class_fractions``: share of lesions per class, summing to 1 (default HAM10000's imbalance among
    ``classes``). ``images_per_lesion``: the most per lesion (1 to 3); about 75% of lesions get one image, the others
    2 or 3 views of it, as in HAM10000. ``seed``: the same seed gives byte-identical files whatever ``workers``
    (painting threads; default the CPUs, at most 4). ``overwrite``: replace a synthetic set at ``root``, never any
    other folder. Files go to a temporary sibling renamed to ``root`` at the end: an interrupted run leaves nothing.
    """
    root = Path(root)
    classes = validate_classes(classes)
    n_lesions = check_int("n_lesions", n_lesions, 2 * len(classes))  # at least two lesions per class
    class_fractions = _check_fractions(class_fractions, classes)
    if check_int("images_per_lesion", images_per_lesion, 1) > 3:
        raise ParameterError(f"images_per_lesion: expected 1, 2 or 3, got {images_per_lesion!r}.")
    seed = check_int("seed", seed, 0)
    height, width = check_int("height", height, _MIN_SIZE), check_int("width", width, _MIN_SIZE)
    workers = min(os.cpu_count() or 1, 4) if workers is None else check_int("workers", workers, 1)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        if not overwrite:
            raise OutputExistsError(f"{root} exists and is not empty; choose another folder or pass overwrite=True")
        if not is_synthetic(root):
            raise OutputExistsError(f"{root} is not a synthetic demo set (no {SYNTHETIC_MARKER}), so it is never "
                                    "overwritten")

    # One stream plans the dataset; each lesion has its own stream, so its images do not depend on the others
    # (and lesions can be painted in any order, by several threads).
    plan_seq, lesions_seq = np.random.SeedSequence(seed).spawn(2)
    plan_rng = np.random.default_rng(plan_seq)
    counts = _lesion_counts(n_lesions, classes, class_fractions)
    dxs = [str(dx) for dx in plan_rng.permutation(np.repeat(np.array(classes), counts))]
    p = np.array(_IMAGES_PER_LESION_P[:images_per_lesion])
    n_images = 1 + plan_rng.choice(images_per_lesion, size=n_lesions, p=p / p.sum())
    # Image ids in random order, so the ids of one lesion's images are not consecutive (as in HAM10000).
    numbers = np.split(1 + plan_rng.permutation(int(n_images.sum())), np.cumsum(n_images)[:-1])
    image_ids = [[f"SYN_{k:07d}" for k in ks] for ks in numbers]
    meta = [_metadata_row(plan_rng, dx) for dx in dxs]
    rows = [{"lesion_id": f"SYNL_{i + 1:07d}", "image_id": image_id, "dx": dx, **meta[i]}
            for i, dx in enumerate(dxs) for image_id in image_ids[i]]  # fmt: skip

    make_folder(root.parent, f"root ({root})")
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".partial", dir=root.parent))
    try:
        (tmp / "images").mkdir()
        # numpy and Pillow release the GIL in their array work, so threads share the painting.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            jobs = [pool.submit(_write_lesion_images, tmp / "images", dx, seq, ids, height, width)
                    for dx, seq, ids in zip(dxs, lesions_seq.spawn(n_lesions), image_ids)]  # fmt: skip
            try:
                for job in jobs:
                    job.result()  # re-raises a worker's error
            except BaseException:
                pool.shutdown(cancel_futures=True)  # stop at the first error instead of painting the rest
                raise
        write_csv(tmp / HAM10000["metadata_file"], pd.DataFrame(rows, columns=list(HAM10000["metadata_columns"])))
        params = {"generator": "pskinlib.synthetic.make_demo_dataset", "seed": seed, "classes": list(classes),
                  "class_fractions": class_fractions, "n_lesions": n_lesions, "n_images": len(rows),
                  "lesions_per_class": dict(zip(classes, counts)),
                  "images_per_class": {c: sum(1 for r in rows if r["dx"] == c) for c in classes},
                  "images_per_lesion": int(images_per_lesion), "height": int(height), "width": int(width)}
        text = f"{SYNTHETIC_WARNING}\n\nGeneration parameters:\n{json.dumps(params, indent=2)}\n"
        (tmp / SYNTHETIC_MARKER).write_text(text, encoding="utf-8")
        tmp.chmod(0o755)  # mkdtemp makes the folder private; the dataset is ordinary data
        if root.exists():
            shutil.rmtree(root)  # an empty folder, or a synthetic dataset with overwrite=True
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def is_synthetic(root: Path) -> bool:
    """True if ``root`` holds a synthetic demo set (its marker file is present), not real HAM10000 data."""
    return (Path(root) / SYNTHETIC_MARKER).is_file()
