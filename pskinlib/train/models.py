"""The model registry: one table says, for each network, how to build it and where its parts are.

The paper trains ResNet101 and EfficientNet. Every entry of :data:`MODELS` is a :class:`ModelSpec`: the torchvision
builder, the dotted path of the final linear layer (the head, whose input is the image features), the block Grad-CAM
reads, the normalisation its weights expect (:data:`pskinlib.info.NORMALISATIONS`), and whether bf16 autocast pays
on a CPU with AVX512-BF16 (measured by ``pskin bench``: it about doubles a ResNet's speed and gains nothing for
EfficientNet's depthwise convolutions). Code asks the table; nothing tests a model's class.

``pretrained=True`` starts from torchvision's ImageNet weights: downloaded into ``$TORCH_HOME/hub/checkpoints`` where
the machine reaches the internet, or read from that cache; offline without them, :class:`WeightsError` says how to
get them.
"""

from __future__ import annotations

import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ParameterError, WeightsError

if TYPE_CHECKING:
    from torch import nn

# torch and torchvision are imported inside the functions: the CLI and the config checks need only the table, and
# `pskin --help` should not wait two seconds for torchvision.


@dataclass(frozen=True)
class ModelSpec:
    """What pskin knows about one network."""

    name: str
    family: str
    head: str  # dotted path of the final nn.Linear
    gradcam: str  # dotted path of the last convolutional block
    normalisation: str = "imagenet"
    cpu_bf16: bool = False


MODELS: dict[str, ModelSpec] = {
    **{f"resnet{d}": ModelSpec(f"resnet{d}", "resnet", "fc", "layer4", cpu_bf16=True) for d in (18, 34, 50, 101, 152)},
    # torchvision's EfficientNets all end in 9 feature blocks: stem, 7 stages, the final 1x1 convolution.
    **{f"efficientnet_b{i}": ModelSpec(f"efficientnet_b{i}", "efficientnet", "classifier.1", "features.8")
       for i in range(8)},
}


def model_spec(name: str) -> ModelSpec:
    """The registry entry of ``name``; an unknown name is a :class:`ParameterError` listing the known ones."""
    if name not in MODELS:
        raise ParameterError(f"model: unknown name {name!r}; choose from {list(MODELS)}.")
    return MODELS[name]


def validate_model_name(name: str) -> str:
    return model_spec(name).name


def pretrained_weights_file(name: str) -> tuple[str, Path]:
    """The URL of a model's default ImageNet weights and where torch's cache keeps them."""
    import torch
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    return weights.url, Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def build_model(name: str, num_classes: int, *, pretrained: bool = False) -> nn.Module:
    """The network ``name`` with a fresh ``num_classes``-way linear head, from scratch or from ImageNet weights."""
    import torchvision
    from torch import nn

    spec = model_spec(name)
    if num_classes < 2:
        raise ParameterError(f"num_classes: need at least 2, got {num_classes}.")
    weights = torchvision.models.get_model_weights(name).DEFAULT if pretrained else None
    try:
        model = torchvision.models.get_model(name, weights=weights)
    except (urllib.error.URLError, OSError) as exc:
        url, path = pretrained_weights_file(name)
        raise WeightsError(f"ImageNet weights for {name} are not in the cache ({path}) and could not be downloaded "
                           f"({exc}). Download {url} on a machine with internet and put it at {path} (or set "
                           "TORCH_HOME), or train from scratch with pretrained=False.") from None
    model.pskin_model = name  # so that head_layer and gradcam_layer find the registry entry
    parent, _, attribute = spec.head.rpartition(".")
    setattr(model.get_submodule(parent), attribute, nn.Linear(head_layer(model).in_features, num_classes))
    return model


def head_layer(model: nn.Module) -> nn.Linear:
    """The final linear classifier, whose input is the network's image features."""
    model = getattr(model, "module", model)  # a DistributedDataParallel wrapper
    return model.get_submodule(_spec_of(model).head)


def gradcam_layer(model: nn.Module) -> nn.Module:
    """The last convolutional block, whose activations Grad-CAM weighs."""
    model = getattr(model, "module", model)
    return model.get_submodule(_spec_of(model).gradcam)


def _spec_of(model: nn.Module) -> ModelSpec:
    """The registry entry a network was built from (:func:`build_model` writes its name on it)."""
    name = getattr(model, "pskin_model", None)
    if name not in MODELS:
        raise ParameterError(f"model: this {type(model).__name__} was not built by pskinlib.train.models.build_model, "
                             "so its head and Grad-CAM layer are unknown.")
    return MODELS[name]
