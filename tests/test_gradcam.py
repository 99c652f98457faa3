"""Grad-CAM: a trained model's map finds the region that carries the class signal; the block it reads has 7×7
cells or more; shapes, ranges and hooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pskinlib.explain.gradcam import MIN_CELLS, grad_cam, gradcam_target, overlay
from pskinlib.train.models import build_model, gradcam_blocks

SIZE = 128  # small enough to train fast; ResNet's layer3 has 8 x 8 cells there (layer4 only 4 x 4)


def blob_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images; class 1 (every other image) also has a bright blob somewhere in the top-left quadrant."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, SIZE, SIZE, generator=generator) * 0.5
    labels = torch.arange(n) % 2
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    radius = SIZE / 16
    for i in torch.nonzero(labels).flatten():
        cy, cx = (torch.rand(2, generator=generator) * (SIZE / 2 - 4 * radius) + 2 * radius).tolist()
        images[i] += 2.5 * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius ** 2))
    return images, labels


@pytest.fixture(scope="module")
def blob_model() -> torch.nn.Module:
    torch.manual_seed(0)
    images, labels = blob_images(96, seed=0)
    model = build_model("resnet18", 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(2):  # two epochs
        order = torch.randperm(len(images))
        for start in range(0, len(images), 32):
            batch = order[start:start + 32]
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    # Six steps leave batch-norm's running averages far from the trained weights' statistics: re-estimate them
    # (a cumulative average over the training images) so that eval mode predicts as training did.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        model(images)
    return model.eval()


@pytest.mark.slow
def test_the_map_of_the_blob_class_peaks_in_the_blob_quadrant(blob_model):
    images, labels = blob_images(64, seed=1)
    with torch.no_grad():
        assert (blob_model(images).argmax(1) == labels).float().mean() >= 0.9
    maps = grad_cam(blob_model, images[labels == 1], 1)
    half = SIZE // 2
    peaks = [np.unravel_index(m.argmax(), m.shape) for m in maps]
    inside = np.mean([y < half and x < half for y, x in peaks])
    mass = maps[:, :half, :half].sum(axis=(1, 2)) / maps.sum(axis=(1, 2)).clip(min=1e-9)
    opposite = maps[:, half:, half:].sum(axis=(1, 2)) / maps.sum(axis=(1, 2)).clip(min=1e-9)
    assert inside >= 0.7, f"only {inside:.0%} of the maps peak in the blob's quadrant"
    assert mass.mean() > 0.3 and mass.mean() > 2 * opposite.mean()


def test_maps_have_the_input_size_lie_in_0_1_and_leave_no_hook_for_an_efficientnet():
    torch.manual_seed(0)
    model = build_model("efficientnet_b0", 3)
    model.train()
    maps = grad_cam(model, torch.randn(2, 3, 64, 48), torch.tensor([0, 2]))
    assert maps.shape == (2, 64, 48) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    assert not model.training  # explained as it predicts
    assert not any(block._forward_hooks for block in gradcam_blocks(model).values())
    assert all(p.grad is None for p in model.parameters())  # the model's gradients are not touched


def test_a_resnet_map_is_scaled_to_peak_at_one():
    torch.manual_seed(0)
    model = build_model("resnet18", 3).eval()
    maps = grad_cam(model, torch.randn(3, 3, 96, 96), 1)
    assert maps.shape == (3, 96, 96)
    assert all(m.max() == pytest.approx(1.0) or m.max() == 0 for m in maps)


@pytest.mark.parametrize(("size", "layer", "grid"), [(32, "layer1", (8, 8)), (48, "layer1", (12, 12)),
                                                     (96, "layer2", (12, 12)), (224, "layer4", (7, 7)),
                                                     ((64, 256), "layer2", (8, 32))])
def test_the_deepest_block_with_7x7_cells_is_read_by_default(size, layer, grid):
    model = build_model("resnet18", 3).train()
    target = gradcam_target(model, size)
    assert (target.layer, target.grid, target.usable) == (layer, grid, True)
    assert target.caption == f"Grad-CAM at {layer} ({grid[0]}×{grid[1]} cells)"
    assert model.training and not any(block._forward_hooks for block in gradcam_blocks(model).values())
    images = torch.randn(2, 3, *((size, size) if isinstance(size, int) else size))
    np.testing.assert_array_equal(grad_cam(model, images, 1), grad_cam(model, images, 1, layer=layer))


def test_the_last_block_is_read_where_its_map_has_the_cells():
    model = build_model("efficientnet_b0", 3)
    assert gradcam_target(model, 224).layer == "features.8"
    assert gradcam_target(model, 193).grid == (7, 7)  # its map has ceil(size / 32) cells a side
    assert (gradcam_target(model, 192).layer, gradcam_target(model, 192).grid) == ("features.5", (12, 12))
    assert gradcam_target(model, 224, min_cells=8).grid == (14, 14)


def test_without_a_block_of_7x7_cells_there_is_no_default_map_and_the_caption_says_so():
    model = build_model("resnet18", 3)
    target = gradcam_target(model, 16)
    assert (target.layer, target.grid, target.usable) == ("layer1", (4, 4), False)
    assert target.caption == f"no layer of resnet18 gives a {MIN_CELLS}×{MIN_CELLS} Grad-CAM map at 16 px: no map shown"
    assert "16×24 px" in gradcam_target(model, (16, 24)).caption
    with pytest.raises(ValueError, match="no layer of resnet18 gives a 7×7"):
        grad_cam(model, torch.randn(1, 3, 16, 16), 0)
    assert grad_cam(model, torch.randn(1, 3, 16, 16), 0, layer="layer1").shape == (1, 16, 16)  # asked for: drawn
    assert not any(block._forward_hooks for block in gradcam_blocks(model).values())


def test_bad_arguments_are_refused_with_the_parameter_named():
    model = build_model("resnet18", 3)
    with pytest.raises(ValueError, match="images"):
        grad_cam(model, torch.randn(3, 32, 32), 0)
    with pytest.raises(ValueError, match="class_index"):
        grad_cam(model, torch.randn(2, 3, 32, 32), 3)
    with pytest.raises(ValueError, match="class_index"):
        grad_cam(model, torch.randn(2, 3, 32, 32), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="layer: .*'layer9'.*layer4"):
        grad_cam(model, torch.randn(2, 3, 32, 32), 0, layer="layer9")
    with pytest.raises(ValueError, match="min_cells"):
        grad_cam(model, torch.randn(2, 3, 32, 32), 0, min_cells=0)
    with pytest.raises(ValueError, match="image_size"):
        gradcam_target(model, (32, 32, 3))


def test_overlay_resizes_the_map_to_the_image_and_blends():
    image = np.full((30, 40, 3), 128, dtype=np.uint8)
    heatmap = np.zeros((8, 8), dtype=np.float32)
    heatmap[:4, :4] = 1.0
    blended = overlay(image, heatmap)
    assert blended.shape == image.shape and blended.dtype == np.uint8
    assert not np.array_equal(blended[0, 0], blended[-1, -1])  # hot corner differs from the cold one
    with pytest.raises(ValueError, match="image"):
        overlay(image.astype(np.float32), heatmap)
    with pytest.raises(ValueError, match="heatmap"):
        overlay(image, np.zeros((2, 2, 2)))
