"""The networks: torchvision's ResNets and EfficientNets with an N-class head.

The paper trains ResNet101 and EfficientNet. ``pretrained=True`` starts from torchvision's ImageNet weights: they
are downloaded into ``$TORCH_HOME/hub/checkpoints`` where the machine can reach the internet, or read from that
cache when it holds them; offline without them, :class:`PretrainedWeightsError` says how to get them. Our own
reference results are trained from scratch.
"""

from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

# torch and torchvision are imported inside the functions: the CLI and the config checks need only the names
# below, and `pskin --help` should not wait two seconds for torchvision.

RESNETS = tuple(f"resnet{d}" for d in (18, 34, 50, 101, 152))
EFFICIENTNETS = tuple(f"efficientnet_b{i}" for i in range(8))
MODELS = RESNETS + EFFICIENTNETS


class PretrainedWeightsError(RuntimeError):
    """ImageNet weights were asked for but are neither cached nor downloadable."""


def validate_model_name(name: str) -> str:
    if name not in MODELS:
        raise ValueError(f"model: unknown name {name!r}; choose from {list(MODELS)}.")
    return name


def pretrained_weights_file(name: str) -> tuple[str, Path]:
    """The URL of a model's default ImageNet weights and where torch's cache keeps them."""
    import torch
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    return weights.url, Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def build_model(name: str, num_classes: int, *, pretrained: bool = False) -> nn.Module:
    """A torchvision ResNet / EfficientNet named ``name`` with a ``num_classes``-way linear head."""
    import torchvision

    validate_model_name(name)
    if num_classes < 2:
        raise ValueError(f"num_classes: need at least 2, got {num_classes}.")
    weights = None
    if pretrained:
        url, path = pretrained_weights_file(name)
        weights = torchvision.models.get_model_weights(name).DEFAULT
        try:
            model = torchvision.models.get_model(name, weights=weights)
        except (urllib.error.URLError, OSError) as exc:
            raise PretrainedWeightsError(
                f"ImageNet weights for {name} are not in the cache ({path}) and could not be downloaded ({exc}). "
                f"Download {url} on a machine with internet and put it at {path} (or set TORCH_HOME), "
                "or train from scratch with pretrained=False."
            ) from exc
    else:
        model = torchvision.models.get_model(name, weights=None)
    replace_head(model, num_classes)
    return model


def replace_head(model: nn.Module, num_classes: int) -> None:
    """Swap the 1000-way ImageNet classifier for a fresh ``num_classes``-way one."""
    import torchvision
    from torch import nn

    if isinstance(model, torchvision.models.ResNet):
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    elif isinstance(model, torchvision.models.EfficientNet):
        last = model.classifier[-1]
        model.classifier[-1] = nn.Linear(last.in_features, num_classes)
    else:
        raise TypeError(f"replace_head: unsupported model type {type(model).__name__}.")


def head_layer(model: nn.Module) -> nn.Linear:
    """The final linear classifier, whose input is the network's image features."""
    import torchvision

    model = getattr(model, "module", model)
    if isinstance(model, torchvision.models.ResNet):
        return model.fc
    if isinstance(model, torchvision.models.EfficientNet):
        return model.classifier[-1]
    raise TypeError(f"head_layer: unsupported model type {type(model).__name__}.")


def gradcam_layer(model: nn.Module) -> nn.Module:
    """The last convolutional block, whose activations Grad-CAM weighs."""
    import torchvision

    model = getattr(model, "module", model)
    if isinstance(model, torchvision.models.ResNet):
        return model.layer4
    if isinstance(model, torchvision.models.EfficientNet):
        return model.features[-1]
    raise TypeError(f"gradcam_layer: unsupported model type {type(model).__name__}.")
