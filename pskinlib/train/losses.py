"""Class weights and the losses that use them: how training counters HAM10000's imbalance.

Nevus is 75 % of the three studied classes. Trained on raw frequencies, a network learns that "nv" is usually
right; the paper's remedy is a softmax cross-entropy whose terms are weighted per class. The schemes:

- ``none``: every class 1.
- ``inverse``: ``n / (K * n_c)`` — a class's images count as much in total as any other class's.
- ``sqrt_inverse``: ``sqrt(n / (K * n_c))`` — half-way between none and inverse, on a log scale.
- ``effective``: Cui et al. (CVPR 2019), the inverse of the *effective number of samples*
  ``(1 - beta**n_c) / (1 - beta)``, normalised to sum to ``K``; ``beta`` -> 0 gives ``none``, -> 1 ``inverse``.
- ``manual``: one value per class, given by the user.

Only ratios matter: PyTorch's weighted cross-entropy divides by the summed weights of the batch's targets.
A different remedy, :func:`balanced_sampler_weights`, draws every class equally often instead of weighting the loss;
:func:`focal_loss` down-weights easy images (Lin et al. 2017) and also accepts class weights.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ParameterError

WEIGHT_SCHEMES = ("none", "inverse", "sqrt_inverse", "effective", "manual")


def class_weights(counts, scheme: str = "inverse", *, beta: float = 0.999, manual=None) -> np.ndarray:
    """Per-class loss weights from the training split's images per class (``counts``, in label order)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or len(counts) < 2 or (counts <= 0).any():
        raise ParameterError(f"counts: need a positive image count for each of at least two classes, got {counts}.")
    n, k = counts.sum(), len(counts)
    if scheme == "none":
        return np.ones(k)
    if scheme == "inverse":
        return n / (k * counts)
    if scheme == "sqrt_inverse":
        return np.sqrt(n / (k * counts))
    if scheme == "effective":
        if not 0 <= beta < 1:
            raise ParameterError(f"beta: the effective-number parameter must be in [0, 1), got {beta}.")
        inverse_effective = (1 - beta) / (1 - np.power(beta, counts))
        return inverse_effective * k / inverse_effective.sum()
    if scheme == "manual":
        values = np.asarray(manual if manual is not None else [], dtype=np.float64)
        if values.shape != (k,) or not np.isfinite(values).all() or (values <= 0).any():
            raise ParameterError(f"manual_weights: need {k} positive numbers (one per class), got {manual}.")
        return values
    raise ParameterError(f"class_weights: unknown scheme {scheme!r}; choose from {list(WEIGHT_SCHEMES)}.")


def balanced_sampler_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Per-image sampling weights ``1 / n_c``: every class is drawn equally often, with replacement."""
    counts = torch.bincount(labels, minlength=n_classes).double()
    if (counts == 0).any():
        raise ParameterError(f"labels: class(es) {torch.nonzero(counts == 0).flatten().tolist()} have no image.")
    return (1.0 / counts)[labels]


def focal_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
               gamma: float = 2.0) -> torch.Tensor:
    """Focal loss ``-w_y (1 - p_y)**gamma log p_y``, averaged like weighted cross-entropy (``gamma=0`` equals it)."""
    log_p = F.log_softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
    terms = -((1 - log_p.exp()) ** gamma) * log_p
    w = weight[target] if weight is not None else torch.ones_like(terms)
    return (w * terms).sum() / w.sum()
