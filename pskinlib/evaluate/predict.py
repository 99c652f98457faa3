"""A trained run as a model that predicts image files.

:func:`load_trained` reads a run's record (:class:`~pskinlib.runs.RunRecord`): its configuration, and its best
checkpoint with the moving average of the weights when the run kept one. :class:`TrainedModel` decodes and resizes
image files of any size and format exactly as the training cache did, scales them as the model's weights expect,
and predicts them with the run's own test-time augmentation; :meth:`TrainedModel.predict_pixels` does the same for
images already decoded (an image changed in memory, as the shortcut test changes one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data.batches import BatchLoader
from ..data.cache import resize_image, resize_pixels
from ..errors import ParameterError
from ..runs import RunRecord
from ..train.config import TrainConfig
from ..train.device import autocast_dtype, select_device, use_channels_last
from ..train.models import build_model, model_spec
from ..train.trainer import evaluation_weights, predict_proba, preprocessing_of, tta_of


@dataclass
class TrainedModel:
    """A run's best checkpoint, ready to predict."""

    record: RunRecord
    config: TrainConfig
    classes: tuple[str, ...]
    model: nn.Module
    device: torch.device

    def batches(self, paths: list[str | os.PathLike], batch_size: int = 64) -> BatchLoader:
        """Image files of any size and format Pillow reads, decoded and resized as the training cache did."""
        preprocessing = preprocessing_of(self.config)
        return self._loader([resize_image(str(p), self.config.image_size, preprocessing) for p in paths], batch_size)

    def _loader(self, resized: list[np.ndarray], batch_size: int) -> BatchLoader:
        pixels = torch.from_numpy(np.stack(resized))
        return BatchLoader(pixels, torch.zeros(len(resized), dtype=torch.int64), batch_size=batch_size,
                           device=self.device, channels_last=use_channels_last(self.config, self.device),
                           normalisation=model_spec(self.config.model).normalisation)

    def _predict(self, loader: BatchLoader) -> np.ndarray:
        return predict_proba(self.model, loader, self.device, autocast_dtype(self.config, self.device),
                             tta=tta_of(self.config))

    def predict(self, paths: list[str | os.PathLike], batch_size: int = 64) -> np.ndarray:
        """Class probabilities ``(N, K)`` for image files of any size and format Pillow reads."""
        return self._predict(self.batches(paths, batch_size))

    def predict_pixels(self, images: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Class probabilities ``(N, K)`` for decoded RGB uint8 images ``(H, W, 3)`` of any size, resized with the
        run's preprocessing (:func:`~pskinlib.data.cache.resize_pixels`) and predicted as :meth:`predict` does."""
        if len(images) == 0:
            raise ParameterError("images: expected at least one RGB uint8 image (H, W, 3), got none.")
        preprocessing = preprocessing_of(self.config)
        return self._predict(self._loader([resize_pixels(p, self.config.image_size, preprocessing)
                                           for p in images], batch_size))


def load_trained(run_dir: str | os.PathLike, *, device: str = "auto", checkpoint: str = "best") -> TrainedModel:
    """Load a run folder's config and its best (or ``"last"``) checkpoint."""
    record = RunRecord.open(run_dir)
    config = record.config_with(pretrained=False, device=device)  # the weights come from the checkpoint
    torch_device = select_device(device)
    state = record.load_checkpoint(checkpoint.removesuffix(".pt"), map_location=torch_device)
    classes = tuple(state["classes"])
    model = build_model(config.model, len(classes)).to(torch_device)
    model.load_state_dict(evaluation_weights(state))
    if use_channels_last(config, torch_device):
        model = model.to(memory_format=torch.channels_last)
    return TrainedModel(record, config, classes, model.eval(), torch_device)
