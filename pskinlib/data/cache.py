"""The prepared image cache: every image decoded and resized once, kept as a memory-mapped uint8 array.

Decoding a JPEG costs more than a small CNN's forward pass on it, so no epoch should decode one. The first
:func:`prepare_images` call for a data folder and size decodes every image (in parallel), resizes it to ``size`` x
``size`` and writes an ``(N, size, size, 3)`` uint8 ``.npy`` file; later calls memory-map it in milliseconds.

:class:`Preprocessing` says what happens to an image before it is stored: the whole 4:3 field of view squashed to
a square the same way for every image, so no lesion border is cut off (``resize="squash"``, the default), or its
centre square cropped so the aspect ratio is kept (``resize="crop"``), and optionally Shades of Gray colour
constancy (Finlayson & Trezzi 2004; ``colour_constancy=p``, 6 in the ISIC winners' recipes), which divides out the
illuminant that a Minkowski p-norm of each channel estimates, so that images from dermatoscopes with other lights
look alike. Training, prediction and evaluation all decode through :func:`resize_image` with the run's preprocessing.

The cache is keyed by the data folder, the list of files (name, byte size, modification time), the size and the
preprocessing, so it is rebuilt when any of them changes. It lives in ``$PSKIN_CACHE`` or ``~/.cache/pskin``,
outside the repository: it is derived from the licensed images and must not be committed.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError, ParameterError, check_int
from ..io import atomic_path, make_folder, read_json, write_json
from .ham10000 import LesionImages, open_image

CACHE_ENV = "PSKIN_CACHE"
CACHE_FORMAT = 1  # bump when the resizing changes, so old caches are not reused
RESIZE_MODES = ("squash", "crop")


@dataclass(frozen=True)
class Preprocessing:
    """What happens to an image between its file and the cache: ``resize`` (``squash`` or ``crop``) and
    ``colour_constancy`` (None, or the Minkowski p of Shades of Gray)."""

    resize: str = "squash"
    colour_constancy: float | None = None

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ParameterError(f"resize: expected one of {list(RESIZE_MODES)}, got {self.resize!r}.")
        p = self.colour_constancy
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not 1 <= p <= 20):
            raise ParameterError(f"colour_constancy: expected None or a Minkowski p from 1 to 20 (6: Shades of "
                                 f"Gray), got {p!r}.")

    @property
    def key(self) -> str:
        return "" if self == Preprocessing() else f"|{self.resize}|{self.colour_constancy}"


def illuminant(pixels: np.ndarray, p: float = 6.0) -> np.ndarray:
    """Shades of Gray's estimate of the light an RGB image was taken under: each channel's Minkowski p-mean
    (p=1: grey world, p=inf: max-RGB), shape ``(3,)``."""
    values = pixels.astype(np.result_type(pixels.dtype, np.float32), copy=False)  # floats keep their precision
    return np.power(np.mean(np.power(values, p), axis=(0, 1)), 1 / p)


def shades_of_gray(pixels: np.ndarray, p: float = 6.0) -> np.ndarray:
    """Shades of Gray colour constancy of an RGB uint8 image: the :func:`illuminant` is divided out, so the
    estimate becomes neutral grey. Returns uint8."""
    image = pixels.astype(np.float32)
    light = illuminant(image, p)
    light = light / max(float(np.linalg.norm(light)), 1e-6)
    gains = 1.0 / (np.maximum(light, 1e-6) * np.sqrt(3))
    return np.clip(image * gains + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True, repr=False)
class PreparedImages:
    """Images of a :class:`~pskinlib.data.ham10000.LesionImages`, decoded and resized: ``pixels[i]`` is
    ``image_ids[i]``."""

    path: Path
    pixels: np.ndarray
    image_ids: tuple[str, ...]
    size: int
    unreadable: tuple[str, ...]
    seconds_to_build: float

    def rows(self, image_ids) -> np.ndarray:
        """Row numbers in ``pixels`` of the given image ids (repeats allowed)."""
        index = {image_id: i for i, image_id in enumerate(self.image_ids)}
        try:
            return np.fromiter((index[i] for i in image_ids), dtype=np.int64)
        except KeyError as exc:
            raise KeyError(f"image {exc.args[0]} is not in the prepared cache {self.path}") from None

    def __len__(self) -> int:
        return len(self.image_ids)

    def __repr__(self) -> str:
        megabytes = self.pixels.nbytes / 2**20
        return (f"PreparedImages: {len(self)} images at {self.size}x{self.size} px, uint8, {megabytes:.0f} MiB, "
                f"memory-mapped from {self.path}")


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pskin")


def cache_key(images: LesionImages, size: int, preprocessing: Preprocessing = Preprocessing()) -> str:
    """Hash of the data folder, each file's name, byte size and modification time, the size and the
    preprocessing."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}|{images.root}|{size}{preprocessing.key}".encode())
    for path in images.table["path"]:
        stat = os.stat(path)
        digest.update(f"|{os.path.basename(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def resize_image(path: str, size: int, preprocessing: Preprocessing = Preprocessing()) -> np.ndarray:
    """Decode one image, resize it to ``size`` x ``size`` RGB uint8 (antialiased) as ``preprocessing`` says. A
    file that is not an image, or a huge one, raises :class:`~pskinlib.errors.DataError` naming it."""
    with open_image(path) as image:
        # JPEG can decode straight at 1/2, 1/4 or 1/8 scale: much cheaper when the target is small.
        image.draft("RGB", (size, size))
        return _resized(image.convert("RGB"), size, preprocessing)


def resize_pixels(pixels: np.ndarray, size: int, preprocessing: Preprocessing = Preprocessing()) -> np.ndarray:
    """An image already decoded (RGB uint8, ``(H, W, 3)``) resized as :func:`resize_image` resizes a file. The
    same picture can differ from its file's by a level or two of some pixels: a JPEG file is decoded at a reduced
    scale first when that is enough (``Image.draft``), an array is resized from its full size."""
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ParameterError(f"pixels: expected an RGB uint8 numpy array (H, W, 3), got "
                             f"{getattr(pixels, 'dtype', type(pixels).__name__)} of shape "
                             f"{getattr(pixels, 'shape', '?')}.")
    return _resized(Image.fromarray(pixels), size, preprocessing)


def _resized(image: Image.Image, size: int, preprocessing: Preprocessing) -> np.ndarray:
    if preprocessing.resize == "crop":
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    pixels = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0))
    if preprocessing.colour_constancy is not None:
        pixels = shades_of_gray(pixels, preprocessing.colour_constancy)
    return pixels


def _fill_rows(npy_path: str, rows: range, paths: list[str], size: int,
               preprocessing: Preprocessing = Preprocessing()) -> list[tuple[str, str]]:
    """Worker: decode ``paths`` into ``rows`` of the array file; return (path, error) of each failure."""
    pixels = np.load(npy_path, mmap_mode="r+")
    failures = []
    for row, path in zip(rows, paths):
        try:
            pixels[row] = resize_image(path, size, preprocessing)
        except (OSError, SyntaxError, ValueError) as exc:
            failures.append((path, f"{type(exc).__name__}: {exc}"))
    pixels.flush()
    return failures


def prepare_images(
    images: LesionImages,
    size: int,
    *,
    cache_dir: str | os.PathLike | None = None,
    skip_unreadable: bool = False,
    workers: int | None = None,
    progress: bool = True,
    preprocessing: Preprocessing = Preprocessing(),
) -> PreparedImages:
    """Decode and resize every image of ``images`` once (as ``preprocessing`` says), or reuse the cache built
    earlier for the same files.

    An image that does not decode is an error listing every such file; with ``skip_unreadable=True`` a warning,
    and the returned ``unreadable`` ids are to be dropped (``images.without(prepared.unreadable)``).
    """
    if check_int("size", size, 8) > 1024:
        raise ParameterError(f"size: expected an integer from 8 to 1024 pixels, got {size!r}.")
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(images, size, preprocessing)
    npy_path, info_path = folder / f"{key}.npy", folder / f"{key}.json"
    if not (npy_path.is_file() and info_path.is_file()):
        make_folder(folder, "cache_dir")  # only to build: a cache already built may be read from a read-only folder
        _build(images, size, npy_path, info_path, workers, progress, preprocessing)
    info = read_json(info_path)
    unreadable = tuple(info["unreadable"])
    if unreadable and not skip_unreadable:
        listing = "; ".join(f"{p}: {e}" for p, e in info["errors"][:20])
        raise DataError(f"{len(unreadable)} image(s) under {images.root} do not decode: {listing}. "
                        "Pass skip_unreadable=True (--skip-unreadable) to leave them out.")
    if unreadable:
        warnings.warn(f"{len(unreadable)} unreadable image(s) left out: {', '.join(unreadable[:10])}",
                      stacklevel=2)
    pixels = np.load(npy_path, mmap_mode="r")
    return PreparedImages(npy_path, pixels, tuple(info["image_ids"]), size, unreadable, info["seconds"])


def _build(images: LesionImages, size: int, npy_path: Path, info_path: Path, workers: int | None,
           progress: bool, preprocessing: Preprocessing) -> None:
    from tqdm.auto import tqdm

    start = time.perf_counter()
    paths = images.table["path"].tolist()
    workers = workers or min(os.cpu_count() or 1, 8)
    chunk = max(64, len(paths) // (workers * 8) + 1)
    chunks = [range(s, min(s + chunk, len(paths))) for s in range(0, len(paths), chunk)]
    failures: list[tuple[str, str]] = []
    # Written under a temporary name and renamed at the end: a killed build never leaves a half-filled cache.
    with atomic_path(npy_path) as tmp:
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3)).flush()
        bar = tqdm(total=len(paths), desc=f"preparing {len(paths)} images at {size}px", unit="img",
                   disable=not progress)
        fill = partial(_fill_rows, str(tmp), size=size, preprocessing=preprocessing)
        with nullcontext() if workers == 1 else ProcessPoolExecutor(workers) as pool:
            mapper = map if pool is None else pool.map
            for rows, failed in zip(chunks, mapper(fill, chunks, [paths[c.start:c.stop] for c in chunks])):
                failures += failed
                bar.update(len(rows))
        bar.close()
    failed_paths = {p for p, _ in failures}
    ids = images.table["image_id"].tolist()
    # After the pixels: an info file always describes a complete array.
    write_json(info_path, {
        "image_ids": ids,
        "size": size,
        "root": str(images.root),
        "unreadable": [i for i, p in zip(ids, paths) if p in failed_paths],
        "errors": failures,
        "seconds": round(time.perf_counter() - start, 3),
    })
