"""Pack the images the paper protocol needs into one file, for the GPU paper run (``experiments/gpu_paper_run.py``).

The pack holds the original JPEG bytes of every image of the paper's three classes (8,917 HAM10000 images,
about 35 MB: the 200x150 JPEGs are 4 KB each), their metadata rows, and the paper split made from them, so the
GPU machine, which cannot reach the data, remakes exactly the split a CPU run makes (its hash is checked). All
images rather than only the 5,500 the split draws: ``make_split`` deals lesions from the whole class, so only the
whole set reproduces it, and it fits.

It is one ``.npz`` (no pickled objects): ``jpeg`` (uint8, all files end to end), ``offsets`` (int64, N + 1),
``image_ids``, and ``metadata_csv``, ``split_csv``, ``info_json`` as UTF-8 bytes. It is derived from licensed
images (CC BY-NC 4.0): it goes to the git-ignored ``.gpu/`` folder and must not be committed.

    python -m experiments.gpu_pack --data-dir ../shared/data/ham10000     # writes .gpu/ham10000-paper.npz
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pskinlib.data.ham10000 import load_ham10000
from pskinlib.data.splits import make_split, read_split, split_hash
from pskinlib.errors import DataError, ParameterError, PskinError
from pskinlib.info import HAM10000, PAPER_CLASSES, SYNTHETIC_MARKER
from pskinlib.io import atomic_path

DEFAULT_PACK = Path(".gpu") / "ham10000-paper.npz"
MAX_MEGABYTES = 40.0
PACK_FORMAT = 1


def _text(array: np.ndarray) -> str:
    return array.tobytes().decode("utf-8")


def _bytes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def pack(data_dir: str | os.PathLike | None, out_path: str | os.PathLike = DEFAULT_PACK, *,
         classes: tuple[str, ...] = PAPER_CLASSES, split_seed: int = 0,
         max_megabytes: float = MAX_MEGABYTES) -> dict:
    """Write the pack for ``data_dir`` to ``out_path`` (atomically) and return its ``info``.

    Raises :class:`~pskinlib.errors.ParameterError` when the pack would exceed ``max_megabytes`` (the GPU
    machine's transfer budget).
    """
    if not max_megabytes > 0:
        raise ParameterError(f"max_megabytes: expected a positive number, got {max_megabytes!r}.")
    images = load_ham10000(data_dir, classes=classes)
    split = make_split(images, "paper", seed=split_seed)
    table = images.table
    blobs = [Path(p).read_bytes() for p in table["path"]]
    size = sum(len(b) for b in blobs)
    if size / 1e6 > max_megabytes:
        raise ParameterError(f"max_megabytes: the {len(blobs)} images of {list(classes)} under {images.root} take "
                         f"{size / 1e6:.1f} MB, over the limit of {max_megabytes} MB.")
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    jpeg = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    metadata = table[list(HAM10000["metadata_columns"])].copy()
    metadata["file_suffix"] = [Path(p).suffix for p in table["path"]]
    info = {
        "format": PACK_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "source": images.source,
        "synthetic": images.synthetic, "classes": list(images.classes), "images": len(blobs),
        "jpeg_megabytes": round(size / 1e6, 2), "jpeg_sha256": hashlib.sha256(jpeg.tobytes()).hexdigest(),
        "protocol": "paper", "split_seed": split_seed, "split_hash": split_hash(split),
        "split_images": len(split), "split_distinct_images": int(split["image_id"].nunique()),
        "licence": "HAM10000: CC BY-NC 4.0 (doi:10.1038/sdata.2018.161); do not commit this file",
    }
    out_path = Path(out_path)
    # Uncompressed: JPEG bytes do not compress, and np.load then reads the arrays without inflating them.
    with atomic_path(out_path) as tmp:
        np.savez(tmp, jpeg=jpeg, offsets=offsets, image_ids=np.array(table["image_id"].tolist()),
                 metadata_csv=_bytes(metadata.to_csv(index=False)), split_csv=_bytes(split.to_csv(index=False)),
                 info_json=_bytes(json.dumps(info)))
    info["pack_megabytes"] = round(out_path.stat().st_size / 1e6, 2)
    return info


def read_pack(path: str | os.PathLike) -> dict:
    """The pack's arrays and tables: ``info``, ``metadata`` and ``split`` (DataFrames), ``image_ids``, ``jpeg``,
    ``offsets``. The JPEG bytes are checked against the recorded hash."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pack: {path} does not exist; make it with `make gpu-pack`.")
    with np.load(path, allow_pickle=False) as pack_file:
        arrays = {name: pack_file[name] for name in pack_file.files}
    info = json.loads(_text(arrays["info_json"]))
    if info.get("format") != PACK_FORMAT:
        raise DataError(f"pack: {path} has format {info.get('format')}, this script reads {PACK_FORMAT}.")
    if hashlib.sha256(arrays["jpeg"].tobytes()).hexdigest() != info["jpeg_sha256"]:
        raise DataError(f"pack: {path} is damaged (its JPEG bytes do not match their recorded hash).")
    return {"info": info, "image_ids": arrays["image_ids"].tolist(), "jpeg": arrays["jpeg"],
            "offsets": arrays["offsets"],
            "metadata": pd.read_csv(io.StringIO(_text(arrays["metadata_csv"])), dtype=str, keep_default_na=False),
            "split": read_split(io.StringIO(_text(arrays["split_csv"])))}


def unpack(path: str | os.PathLike, folder: str | os.PathLike) -> dict:
    """Write the pack as a HAM10000 folder (``images/`` + ``HAM10000_metadata.csv``) that pskin loads as usual;
    return the pack's contents (as :func:`read_pack`)."""
    contents = read_pack(path)
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    jpeg, offsets = contents["jpeg"], contents["offsets"]
    metadata = contents["metadata"]
    for i, (image_id, suffix) in enumerate(zip(contents["image_ids"], metadata["file_suffix"])):
        (folder / "images" / f"{image_id}{suffix}").write_bytes(jpeg[offsets[i]:offsets[i + 1]].tobytes())
    metadata.drop(columns="file_suffix").to_csv(folder / HAM10000["metadata_file"], index=False)
    if contents["info"]["synthetic"]:
        (folder / SYNTHETIC_MARKER).write_text("Unpacked from a pack of the synthetic demo set: not real data.\n")
    return contents


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="HAM10000 folder (default: $PSKIN_DATA, else data/ham10000)")
    parser.add_argument("--out", default=str(DEFAULT_PACK), help=f"pack file (default: {DEFAULT_PACK})")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the paper split (the trainer's default 0)")
    parser.add_argument("--max-megabytes", type=float, default=MAX_MEGABYTES)
    args = parser.parse_args(argv)
    try:
        info = pack(args.data_dir, args.out, split_seed=args.split_seed, max_megabytes=args.max_megabytes)
    except PskinError as exc:
        print(f"gpu_pack: error: {exc}", file=sys.stderr)
        return 2
    print(f"packed {info['images']} images ({info['jpeg_megabytes']} MB of JPEG) and the paper split "
          f"({info['split_images']} rows, {info['split_distinct_images']} distinct images, hash {info['split_hash']}) "
          f"into {args.out}: {info['pack_megabytes']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
