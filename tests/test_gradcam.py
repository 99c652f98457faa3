"""Grad-CAM: a trained model's map finds the region that carries the class signal; shapes, ranges and hooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pskinlib.explain.gradcam import grad_cam, overlay
from pskinlib.train.models import build_model, gradcam_layer

SIZE = 128  # ResNet's layer4 is then 4 x 4: coarse enough to train fast, fine enough to place a quadrant


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
    assert not gradcam_layer(model)._forward_hooks
    assert all(p.grad is None for p in model.parameters())  # the model's gradients are not touched


def test_a_resnet_map_is_scaled_to_peak_at_one():
    torch.manual_seed(0)
    model = build_model("resnet18", 3).eval()
    maps = grad_cam(model, torch.randn(3, 3, 96, 96), 1)
    assert maps.shape == (3, 96, 96)
    assert all(m.max() == pytest.approx(1.0) or m.max() == 0 for m in maps)


def test_bad_arguments_are_refused_with_the_parameter_named():
    model = build_model("resnet18", 3)
    with pytest.raises(ValueError, match="images"):
        grad_cam(model, torch.randn(3, 32, 32), 0)
    with pytest.raises(ValueError, match="class_index"):
        grad_cam(model, torch.randn(2, 3, 32, 32), 3)
    with pytest.raises(ValueError, match="class_index"):
        grad_cam(model, torch.randn(2, 3, 32, 32), torch.tensor([0, 1, 2]))


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
