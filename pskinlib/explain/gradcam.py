"""Grad-CAM: where in the image a network finds the evidence for a class.

Grad-CAM (Selvaraju et al., ICCV 2017) takes the activations ``A`` of a convolutional block, weighs each channel by
the mean gradient of the class score with respect to it, sums the channels and keeps the positive part:
``relu(sum_k mean(dy_c / dA_k) * A_k)``. The map has the block's resolution (a ``grid`` of cells) and is upsampled
bilinearly to the input size, then scaled to [0, 1] per image.

Which block: the deepest one whose map has at least :data:`MIN_CELLS` (7) cells a side at the input size
(:func:`gradcam_target`). The last block is the most class-specific, but it sees the input at 1/32 of its size: a
ResNet18 at the quick book's 48 px gives ``layer4`` a 2 x 2 grid, which upsampled is one soft blob, often in a
corner, whatever the image. The registry (:data:`pskinlib.train.models.MODELS`) lists each network's candidate
blocks, deepest first, one per resolution; their grids are measured by forward hooks, not computed from strides.
Explaining a larger copy of the image instead would show a network images of a scale it was never trained on.
When no block reaches 7 x 7 (a ResNet below 28 px), there is no map worth showing: :attr:`GradCamTarget.usable`
is false and its :attr:`~GradCamTarget.caption` says so.

A map should depend on what the network learnt: ``tests/test_gradcam_sanity.py`` runs the model-randomisation
check of Adebayo et al. (NeurIPS 2018) on real HAM10000 images, comparing maps of a trained network with maps of
the same network re-initialised.

Forward hooks record the blocks' outputs; the gradient is taken with ``torch.autograd.grad``, so the model's
parameter gradients are not touched. No extra dependency is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..errors import ParameterError, check_int
from ..train.models import gradcam_blocks

# Cells a side a map needs: the grid the paper's 224 px gives the last block of ResNet101 and EfficientNet-B0. With
# fewer (2 x 2 at the quick book's sizes), the upsampled map is one soft blob whatever the image.
MIN_CELLS = 7


@dataclass(frozen=True)
class GradCamTarget:
    """The block Grad-CAM reads for one network at one input size: its dotted path ``layer`` and the ``grid``
    (rows, columns) of its map at ``image_size`` (height, width) pixels.

    ``usable``: the grid has at least ``min_cells`` cells a side. When no block has, ``layer`` is the finest block
    and no map should be shown; ``caption`` says which of the two it is.
    """

    model: str
    image_size: tuple[int, int]
    layer: str
    grid: tuple[int, int]
    min_cells: int = MIN_CELLS

    @property
    def usable(self) -> bool:
        return min(self.grid) >= self.min_cells

    @property
    def caption(self) -> str:
        """``"Grad-CAM at layer1 (12×12 cells)"``, or ``"no layer of resnet18 gives a 7×7 Grad-CAM map at 16 px:
        no map shown"``."""
        if self.usable:
            return f"Grad-CAM at {self.layer} ({self.grid[0]}×{self.grid[1]} cells)"
        height, width = self.image_size
        size = f"{height} px" if height == width else f"{height}×{width} px"
        return (f"no layer of {self.model} gives a {self.min_cells}×{self.min_cells} Grad-CAM map at {size}: "
                "no map shown")


def _image_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1
                                 for s in size):
        raise ParameterError(f"image_size: expected pixels as an int or (height, width), got {image_size!r}.")
    return int(size[0]), int(size[1])


def _choose(model: nn.Module, image_size: tuple[int, int], grids: dict[str, tuple[int, int]],
            min_cells: int) -> GradCamTarget:
    """The deepest block of ``grids`` (deepest first) with ``min_cells`` cells a side, else the finest one."""
    name = getattr(model, "module", model).pskin_model
    layer = next((path for path, grid in grids.items() if min(grid) >= min_cells),
                 max(grids, key=lambda path: min(grids[path])))
    return GradCamTarget(name, image_size, layer, grids[layer], min_cells)


def _recording(blocks: dict[str, nn.Module], recorded: dict[str, torch.Tensor]) -> list:
    return [block.register_forward_hook(lambda module, inputs, output, path=path: recorded.__setitem__(path, output))
            for path, block in blocks.items()]


def gradcam_target(model: nn.Module, image_size: int | Sequence[int], min_cells: int = MIN_CELLS) -> GradCamTarget:
    """The block :func:`grad_cam` reads for ``image_size`` pixels (an int, or height and width): the deepest of the
    registry's Grad-CAM blocks whose map has at least ``min_cells`` cells a side. The grids are measured with one
    forward pass of a blank image in eval mode (the model's mode is restored afterwards)."""
    size, min_cells = _image_size(image_size), check_int("min_cells", min_cells, 1)
    blocks, recorded = gradcam_blocks(model), {}
    parameter, training = next(model.parameters()), model.training
    handles = _recording(blocks, recorded)
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, *size, device=parameter.device, dtype=parameter.dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    return _choose(model, size, {path: tuple(recorded[path].shape[2:]) for path in blocks}, min_cells)


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


def _blocks_to_record(model: nn.Module, layer: str | None) -> dict[str, nn.Module]:
    if layer is None:
        return gradcam_blocks(model)
    network = getattr(model, "module", model)
    try:
        return {layer: network.get_submodule(layer)}
    except AttributeError:
        raise ParameterError(f"layer: {type(network).__name__} has no block {layer!r}; its Grad-CAM blocks are "
                             f"{list(gradcam_blocks(model))}.") from None


def grad_cam(model: nn.Module, images: torch.Tensor, class_index: int | torch.Tensor, *, layer: str | None = None,
             min_cells: int = MIN_CELLS) -> np.ndarray:
    """Grad-CAM maps ``(B, H, W)`` in [0, 1] for ``images`` ``(B, 3, H, W)`` (normalised as for training).

    ``class_index``: one class for all images, or a tensor with one class per image. ``layer``: the dotted path of
    the block to read; ``None``: :func:`gradcam_target`'s choice for the images' size (the deepest block with at
    least ``min_cells`` cells a side), and an error, which says so, when no block has. The model is put in eval mode
    (batch-norm uses its running statistics, as when it predicts) and left there; the hooks are removed afterwards.
    A map that is zero everywhere means the model found no positive evidence for the class.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ParameterError(f"images: expected a float tensor (B, 3, H, W), got {shape}.")
    min_cells = check_int("min_cells", min_cells, 1)
    blocks = _blocks_to_record(model, layer)
    model.eval()
    parameter = next(model.parameters())
    # A copy that requires grad: the graph then reaches the block even if the model's weights are frozen.
    x = images.detach().to(parameter.device, parameter.dtype).requires_grad_(True)
    recorded: dict[str, torch.Tensor] = {}
    handles = _recording(blocks, recorded)
    try:
        with torch.enable_grad():
            logits = model(x)
            indices = _class_indices(class_index, len(x), logits.shape[1]).to(logits.device)
            if layer is None:  # every candidate block ran on these images: their grids are measured, not guessed
                target = _choose(model, tuple(images.shape[2:]),
                                 {path: tuple(recorded[path].shape[2:]) for path in blocks}, min_cells)
                if not target.usable:
                    raise ParameterError(f"images: {target.caption}; pass layer= to read a block anyway "
                                         f"({target.layer} gives {target.grid[0]}×{target.grid[1]} cells).")
                layer = target.layer
            score = logits.gather(1, indices[:, None]).sum()
            activations = recorded[layer]
            (gradients,) = torch.autograd.grad(score, activations)
    finally:
        for handle in handles:
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

