"""Class-weight schemes against hand-computed values, the balanced sampler, and focal loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pskinlib.train.losses import balanced_sampler_weights, class_weights, focal_loss

COUNTS = [100, 600, 300]  # n = 1000, K = 3


def test_none_gives_ones():
    np.testing.assert_allclose(class_weights(COUNTS, "none"), [1, 1, 1])


def test_inverse_frequency_is_n_over_k_nc():
    np.testing.assert_allclose(class_weights(COUNTS, "inverse"), [1000 / 300, 1000 / 1800, 1000 / 900])


def test_square_root_inverse():
    np.testing.assert_allclose(class_weights(COUNTS, "sqrt_inverse"),
                               [np.sqrt(1000 / 300), np.sqrt(1000 / 1800), np.sqrt(1000 / 900)])


def test_effective_number_follows_cui_et_al():
    beta = 0.99
    effective = [(1 - beta ** 100) / (1 - beta), (1 - beta ** 600) / (1 - beta), (1 - beta ** 300) / (1 - beta)]
    raw = [1 / e for e in effective]
    expected = [3 * r / sum(raw) for r in raw]
    np.testing.assert_allclose(class_weights(COUNTS, "effective", beta=beta), expected)
    # beta = 0 treats every class alike; beta near 1 approaches inverse frequency's ratios.
    np.testing.assert_allclose(class_weights(COUNTS, "effective", beta=0.0), [1, 1, 1])
    near_one = class_weights(COUNTS, "effective", beta=0.999999)
    inverse = class_weights(COUNTS, "inverse")
    np.testing.assert_allclose(near_one / near_one[0], inverse / inverse[0], rtol=1e-3)


def test_manual_weights_are_used_as_given_and_checked():
    np.testing.assert_allclose(class_weights(COUNTS, "manual", manual=[2, 1, 1.5]), [2, 1, 1.5])
    for bad in (None, [1, 2], [1, -1, 1], [1, float("nan"), 1]):
        with pytest.raises(ValueError, match="manual_weights"):
            class_weights(COUNTS, "manual", manual=bad)


@pytest.mark.parametrize("bad", [dict(scheme="median"), dict(counts=[0, 5, 5]), dict(counts=[5]),
                                 dict(scheme="effective", beta=1.0)])
def test_bad_weight_parameters_are_rejected(bad):
    arguments = {"counts": COUNTS, "scheme": "inverse", **bad}
    counts = arguments.pop("counts")
    with pytest.raises(ValueError):
        class_weights(counts, **arguments)


def test_balanced_sampler_gives_each_class_equal_total_weight():
    labels = torch.tensor([0] * 10 + [1] * 60 + [2] * 30)
    weights = balanced_sampler_weights(labels, 3)
    totals = torch.bincount(labels, weights=weights)
    torch.testing.assert_close(totals, torch.ones(3, dtype=torch.float64))


def test_focal_loss_with_gamma_zero_is_weighted_cross_entropy():
    logits, target = torch.randn(20, 3, generator=torch.Generator().manual_seed(0)), torch.arange(20) % 3
    weight = torch.tensor([3.0, 0.5, 1.0])
    torch.testing.assert_close(focal_loss(logits, target, weight, gamma=0.0),
                               F.cross_entropy(logits, target, weight=weight))
    assert focal_loss(logits, target, weight, gamma=2.0) < F.cross_entropy(logits, target, weight=weight)
