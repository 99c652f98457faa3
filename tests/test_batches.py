"""Batches: the evaluation path is exact and ordered, training batches are augmented and reproducible per epoch."""

from __future__ import annotations

import pytest
import torch

from pskinlib.data.batches import (
    Augmentation,
    BatchLoader,
    PreparedDataset,
    augment_batch,
    normalise,
    split_tensors,
    to_float,
)
from pskinlib.data.cache import prepare_images
from pskinlib.data.ham10000 import load_ham10000
from pskinlib.data.splits import make_split


@pytest.fixture
def tensors(tiny_ham, tmp_path):
    images = load_ham10000(tiny_ham)
    prepared = prepare_images(images, 32, cache_dir=tmp_path / "cache", progress=False, workers=1)
    return split_tensors(prepared, make_split(images, seed=0), images.classes)


def _all(loader):
    batches = list(loader)
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def test_split_tensors_hold_each_split_with_matching_labels(tensors):
    assert set(tensors) == {"train", "val", "test"}
    for split in tensors.values():
        assert split.pixels.dtype == torch.uint8 and split.pixels.shape[1:] == (32, 32, 3)
        assert len(split.labels) == len(split.pixels) == len(split.image_ids)


def test_evaluation_batches_are_the_normalised_images_in_order(tensors):
    val = tensors["val"]
    loader = BatchLoader(val.pixels, val.labels, batch_size=7)
    images, labels = _all(loader)
    torch.testing.assert_close(images, normalise(to_float(val.pixels)))
    assert torch.equal(labels, val.labels) and len(loader) == -(-len(val.labels) // 7)
    again, _ = _all(loader)
    assert torch.equal(images, again)


def test_training_batches_depend_only_on_seed_and_epoch(tensors):
    train = tensors["train"]

    def epoch(e, seed=1):
        loader = BatchLoader(train.pixels, train.labels, batch_size=8, augmentation=Augmentation(), shuffle=True,
                             seed=seed)
        loader.set_epoch(e)
        return _all(loader)

    x0, y0 = epoch(0)
    x0_again, y0_again = epoch(0)
    x1, _ = epoch(1)
    assert torch.equal(x0, x0_again) and torch.equal(y0, y0_again)
    assert not torch.equal(x0, x1) and not torch.equal(x0, epoch(0, seed=2)[0])
    assert sorted(y0.tolist()) == sorted(train.labels.tolist())  # a permutation: every image once per epoch


def test_augmentation_changes_images_but_keeps_shape_and_range():
    images = torch.rand(16, 3, 24, 24)
    out = augment_batch(images, Augmentation(), torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    assert (out - images).abs().mean() > 0.05
    still = Augmentation(rotation_degrees=0, flips=False, crop_scale=(1, 1), aspect=(1, 1), brightness=0,
                         contrast=0, saturation=0)
    torch.testing.assert_close(augment_batch(images, still, torch.Generator().manual_seed(0)), images,
                               atol=1e-5, rtol=0)


def test_fused_colour_jitter_equals_the_step_by_step_definition():
    # The batch path folds brightness, contrast, saturation (and normalisation) into one matrix per image; it must
    # give what applying them one after another gives.
    images = torch.rand(8, 3, 20, 20)
    colour_only = Augmentation(rotation_degrees=0, flips=False, crop_scale=(1, 1), aspect=(1, 1),
                               brightness=0.4, contrast=0.4, saturation=0.4)
    out = augment_batch(images, colour_only, torch.Generator().manual_seed(3))
    # Redraw the same factors: 5 geometric draws of 8, then brightness, contrast, saturation.
    generator = torch.Generator().manual_seed(3)
    for _ in range(5):
        torch.rand(8, generator=generator)
    b, c, s = ((torch.rand(8, generator=generator) * 0.8 + 0.6).view(8, 1, 1, 1) for _ in range(3))
    expected = images * b
    mean = expected.mean(dim=(1, 2, 3), keepdim=True)
    expected = (expected - mean) * c + mean
    gray = 0.299 * expected[:, 0:1] + 0.587 * expected[:, 1:2] + 0.114 * expected[:, 2:3]
    expected = ((expected - gray) * s + gray).clamp(0, 1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    normalised = augment_batch(images, colour_only, torch.Generator().manual_seed(3), normalised=True)
    torch.testing.assert_close(normalised, normalise(expected), atol=1e-4, rtol=0)


def test_the_geometric_grid_equals_torch_affine_grid():
    from pskinlib.data.batches import _affine_grid

    theta = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.affine_grid(theta, [5, 3, 7, 11], align_corners=False)
    torch.testing.assert_close(_affine_grid(theta, 7, 11), expected, atol=1e-6, rtol=0)


def test_a_horizontal_flip_is_among_the_augmentations():
    image = torch.zeros(1, 3, 8, 8)
    image[..., :4] = 1.0  # left half white
    flip_only = Augmentation(rotation_degrees=0, crop_scale=(1, 1), aspect=(1, 1), brightness=0, contrast=0,
                             saturation=0)
    outs = augment_batch(image.repeat(32, 1, 1, 1), flip_only, torch.Generator().manual_seed(0))
    left_white = outs[:, 0, :, :4].mean(dim=(1, 2)) > 0.5
    assert 0 < left_white.sum() < 32


@pytest.mark.parametrize("bad", [dict(crop_scale=(0, 1)), dict(crop_scale=(0.9, 0.5)), dict(brightness=-1)])
def test_bad_augmentation_parameters_are_rejected(bad):
    with pytest.raises(ValueError):
        Augmentation(**bad)


def test_distributed_ranks_get_disjoint_equal_shares(tensors):
    train = tensors["train"]
    shares = []
    for rank in range(2):
        loader = BatchLoader(train.pixels, torch.arange(len(train.labels)), batch_size=4, shuffle=True, seed=3,
                             rank=rank, world_size=2)
        shares.append(_all(loader)[1])
    assert len(shares[0]) == len(shares[1]) == len(train.labels) // 2
    assert not set(shares[0].tolist()) & set(shares[1].tolist())


def test_class_balanced_sampler_draws_classes_evenly(tensors):
    train = tensors["train"]
    counts = torch.bincount(train.labels).float()
    weights = 1.0 / counts[train.labels]
    loader = BatchLoader(train.pixels, train.labels, batch_size=16, sampler_weights=weights, seed=0)
    drawn = torch.cat([torch.cat([y for _, y in loader]) for loader.epoch in range(20)])
    share = torch.bincount(drawn).float() / len(drawn)
    assert (share - 1 / 3).abs().max() < 0.08


def test_prepared_dataset_works_with_a_dataloader(tensors):
    dataset = PreparedDataset(tensors["val"])
    images, labels = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert images.shape == (4, 3, 32, 32) and labels.dtype == torch.int64


def test_the_stronger_photometric_changes_stay_in_range_and_change_the_colours():
    images = torch.rand(16, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    geometry_off = dict(rotation_degrees=0, flips=False, crop_scale=(1, 1), aspect=(1, 1), brightness=0,
                        contrast=0, saturation=0)
    plain = augment_batch(images, Augmentation(**geometry_off), torch.Generator().manual_seed(1))
    torch.testing.assert_close(plain, images, atol=1e-5, rtol=0)  # everything off: the image itself
    for name, value in (("hue", 0.5), ("gamma", 0.4), ("channel_gain", 0.3), ("blur", 1.0), ("vignette", 0.8)):
        out = augment_batch(images, Augmentation(**geometry_off, **{name: value}), torch.Generator().manual_seed(1))
        assert out.shape == images.shape and 0 <= out.min() and out.max() <= 1, name
        assert (out - images).abs().mean() > 1e-3, name
    grey = torch.full((4, 3, 8, 8), 0.4)  # a hue rotation turns about the grey axis: grey stays grey
    turned = augment_batch(grey, Augmentation(**geometry_off, hue=1.0), torch.Generator().manual_seed(2))
    torch.testing.assert_close(turned, grey, atol=1e-5, rtol=0)
    corner = augment_batch(torch.ones(1, 3, 9, 9), Augmentation(**geometry_off, vignette=0.8),
                           torch.Generator().manual_seed(3))
    assert corner[0, :, 4, 4].min() > 0.999 and corner[0, :, 0, 0].max() < 1  # dark corners, a bright centre
