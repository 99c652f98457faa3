"""Grad-CAM: where in the image a network finds the evidence for a class.

Grad-CAM (Selvaraju et al., ICCV 2017) takes the activations ``A`` of the last convolutional block (for ResNets
``layer4``, for EfficientNets the last ``features`` block: the registry's ``gradcam`` entry,
:func:`pskinlib.train.models.gradcam_layer`), weighs each channel by the mean gradient of the class score with
respect to it, sums the channels and keeps the positive part: ``relu(sum_k mean(dy_c / dA_k) * A_k)``. The map has
the block's resolution (the input size / 32) and is upsampled bilinearly to the input size, then scaled to [0, 1]
per image.

A forward hook on the block records its output; the gradient is taken with ``torch.autograd.grad``, so the model's
parameter gradients are not touched. No extra dependency is needed.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..errors import ParameterError
from ..train.models import gradcam_layer


def _class_indices(class_index: int | torch.Tensor, batch: int, n_classes: int) -> torch.Tensor:
    if isinstance(class_index, (int, np.integer)) and not isinstance(class_index, bool):
        class_index = torch.tensor(int(class_index))
    elif not isinstance(class_index, torch.Tensor):
        raise ParameterError(f"class_index: expected an int or a tensor of ints, got {type(class_index).__name__}.")
    indices = class_index.flatten().long()
    if indices.numel() == 1:
        indices = indices.expand(batch)
    if indices.numel() != batch:
        raise ParameterError(f"class_index: need one index per image ({batch}), got {class_index.numel()}.")
    if indices.min() < 0 or indices.max() >= n_classes:
        raise ParameterError(f"class_index: indices must be in [0, {n_classes - 1}], got {indices.tolist()}.")
    return indices


def grad_cam(model: nn.Module, images: torch.Tensor, class_index: int | torch.Tensor) -> np.ndarray:
    """Grad-CAM maps ``(B, H, W)`` in [0, 1] for ``images`` ``(B, 3, H, W)`` (normalised as for training).

    ``class_index``: one class for all images, or a tensor with one class per image. The model is put in eval mode
    (batch-norm uses its running statistics, as when it predicts) and left there; the hook is removed afterwards.
    A map that is zero everywhere means the model found no positive evidence for the class.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ParameterError(f"images: expected a float tensor (B, 3, H, W), got {shape}.")
    layer = gradcam_layer(model)
    model.eval()
    parameter = next(model.parameters())
    # A copy that requires grad: the graph then reaches the block even if the model's weights are frozen.
    x = images.detach().to(parameter.device, parameter.dtype).requires_grad_(True)
    recorded: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda module, inputs, output: recorded.append(output))
    try:
        with torch.enable_grad():
            logits = model(x)
            indices = _class_indices(class_index, len(x), logits.shape[1]).to(logits.device)
            score = logits.gather(1, indices[:, None]).sum()
            activations = recorded[-1]
            (gradients,) = torch.autograd.grad(score, activations)
    finally:
        handle.remove()
    with torch.no_grad():
        weights = gradients.float().mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * activations.float()).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=images.shape[2:], mode="bilinear", align_corners=False)[:, 0]
        peak = cam.amax(dim=(1, 2), keepdim=True)
        cam = cam / torch.where(peak > 0, peak, 1.0)
    return cam.clamp(0, 1).cpu().numpy()


def overlay(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.45, colormap: str = "jet") -> np.ndarray:
    """Blend a [0, 1] ``heatmap`` over an RGB uint8 ``image`` (H, W, 3); returns uint8 (H, W, 3).

    The heat map is resized to the image (bilinear) first, so a map computed on the model's square input can be laid
    over the original 4:3 photograph: the model saw the whole field of view squashed, so the map stretches back.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ParameterError(f"image: expected an RGB uint8 array (H, W, 3), got {image.dtype} {image.shape}.")
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.ndim != 2:
        raise ParameterError(f"heatmap: expected a 2-D array, got shape {heatmap.shape}.")
    if not 0 <= alpha <= 1:
        raise ParameterError(f"alpha: expected a number in [0, 1], got {alpha}.")
    if heatmap.shape != image.shape[:2]:
        resized = Image.fromarray(heatmap).resize((image.shape[1], image.shape[0]), Image.Resampling.BILINEAR)
        heatmap = np.asarray(resized)
    colours = matplotlib.colormaps[colormap](np.clip(heatmap, 0, 1))[..., :3]
    blended = (1 - alpha) * image.astype(np.float32) / 255 + alpha * colours
    return np.clip(blended * 255 + 0.5, 0, 255).astype(np.uint8)

