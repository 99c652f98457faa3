"""Use a trained run: predict single images, and evaluate it on any labelled image folder.

A model trained on HAM10000 can be tested on another dermoscopy collection: :func:`evaluate_folder` reads an
``image_id,dx`` CSV and ``<image_id>.jpg``/``.png`` files of any size, resizes them exactly as the training cache
did, and writes the same metrics and predictions as training does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from .cache import resize_image
from .config import TrainConfig, make_config
from .data import IMAGE_SUFFIXES, DataError
from .datasets import BatchLoader
from .metrics import report_with_intervals
from .models import build_model
from .runs import load_checkpoint, predictions_table, read_json, write_csv, write_json
from .trainer import autocast_dtype, evaluation_weights, predict_proba, select_device, use_channels_last


@dataclass
class TrainedModel:
    """A run's best checkpoint, ready to predict."""

    run_dir: Path
    config: TrainConfig
    classes: tuple[str, ...]
    model: nn.Module
    device: torch.device

    def batches(self, paths: list[str | os.PathLike], batch_size: int = 64) -> BatchLoader:
        """Image files of any size and format Pillow reads, decoded and resized as the training cache did."""
        pixels = torch.from_numpy(np.stack([_decode(p, self.config.image_size) for p in paths]))
        return BatchLoader(pixels, torch.zeros(len(paths), dtype=torch.int64), batch_size=batch_size,
                           device=self.device, channels_last=use_channels_last(self.config, self.device))

    def predict(self, paths: list[str | os.PathLike], batch_size: int = 64) -> np.ndarray:
        """Class probabilities ``(N, K)`` for image files of any size and format Pillow reads."""
        return predict_proba(self.model, self.batches(paths, batch_size), self.device,
                             autocast_dtype(self.config, self.device), tta=self.config.tta)


def _decode(path, size: int) -> np.ndarray:
    try:
        return resize_image(str(path), size)
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"Cannot decode image {path}: {exc}") from exc


def load_trained(run_dir: str | os.PathLike, *, device: str = "auto", checkpoint: str = "best.pt") -> TrainedModel:
    """Load a run folder's config and its best (or another) checkpoint."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ValueError(f"run_dir: {run_dir} holds no config.json; it is not a pskin run folder.")
    recorded = read_json(run_dir / "config.json")["config"]
    config = make_config(recorded.pop("profile"), **{**recorded, "pretrained": False, "device": device})
    torch_device = select_device(device)
    state = load_checkpoint(run_dir / checkpoint, map_location=torch_device)
    classes = tuple(state["classes"])
    model = build_model(config.model, len(classes)).to(torch_device)
    model.load_state_dict(evaluation_weights(state))
    if use_channels_last(config, torch_device):
        model = model.to(memory_format=torch.channels_last)
    return TrainedModel(run_dir, config, classes, model.eval(), torch_device)


def read_labels(labels_csv: str | os.PathLike, images_dir: str | os.PathLike,
                classes: tuple[str, ...]) -> pd.DataFrame:
    """An ``image_id,dx`` CSV joined to its files in ``images_dir`` (``<image_id>.jpg``/``.jpeg``/``.png``)."""
    labels = pd.read_csv(labels_csv, dtype=str, encoding="utf-8-sig")
    labels.columns = [c.strip() for c in labels.columns]
    if not {"image_id", "dx"} <= set(labels.columns):
        raise DataError(f"{labels_csv}: need the columns image_id,dx; found {list(labels.columns)}.")
    unknown = sorted(set(labels["dx"]) - set(classes))
    if unknown:
        raise DataError(f"{labels_csv}: dx value(s) {unknown} are not among the model's classes {list(classes)}.")
    files = {Path(name).stem: Path(images_dir) / name for name in os.listdir(images_dir)
             if Path(name).suffix.lower() in IMAGE_SUFFIXES}
    missing = [i for i in labels["image_id"] if i not in files]
    if missing:
        raise DataError(f"{len(missing)} image(s) of {labels_csv} are not in {images_dir}: {missing[:10]}.")
    return labels.assign(path=[str(files[i]) for i in labels["image_id"]])


def evaluate_folder(run_dir: str | os.PathLike, images_dir: str | os.PathLike, labels_csv: str | os.PathLike,
                    *, out_dir: str | os.PathLike | None = None, device: str = "auto",
                    metadata: bool = False) -> dict:
    """Evaluate a run on a labelled folder; write ``metrics.json`` and ``predictions.csv`` to ``out_dir``
    (default ``<run_dir>/eval-<folder name>``, ``...-metadata`` with ``metadata``) and return the metrics.

    ``metadata``: predict through the run's fusion head (fitted by ``pskin fuse``) with the CSV's ``age``, ``sex``
    and ``localization`` columns.
    """
    if metadata:
        from .fusion import PATIENT_COLUMNS, load_fused  # fusion builds on this module: imported only when asked

        model = load_fused(run_dir, device=device)
        classes = model.head.classes
    else:
        model = load_trained(run_dir, device=device)
        classes = model.classes
    labels = read_labels(labels_csv, images_dir, classes)
    if metadata:
        missing = [c for c in PATIENT_COLUMNS if c not in labels.columns]
        if missing:
            raise DataError(f"{labels_csv}: metadata=True needs the column(s) {missing} beside image_id,dx.")
        probs = model.predict(labels["path"].tolist(), labels[list(PATIENT_COLUMNS)])
    else:
        probs = model.predict(labels["path"].tolist())
    y_true = labels["dx"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    suffix = "-metadata" if metadata else ""
    out = Path(out_dir) if out_dir else Path(run_dir) / f"eval-{Path(images_dir).name}{suffix}"
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "predictions.csv", predictions_table(labels["image_id"], y_true, probs, classes))
    metrics = report_with_intervals(y_true, probs, classes)
    metrics["images_dir"] = str(images_dir)
    metrics["metadata"] = metadata
    write_json(out / "metrics.json", metrics)
    return metrics
