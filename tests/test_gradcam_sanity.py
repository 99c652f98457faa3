"""Grad-CAM maps that mean something: every network the book trains is explained at a block of 7×7 cells or more,
and on real HAM10000 test images a trained network's maps differ from the maps of the same network with its weights
re-initialised (the model-randomisation check of Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from book.build import book_profiles
from pskinlib.evaluate.predict import load_trained
from pskinlib.explain.gradcam import MIN_CELLS, grad_cam, gradcam_target
from pskinlib.explain.inspector import explained_layer, load_predictions, model_input
from pskinlib.train.config import make_config
from pskinlib.train.models import build_model, model_spec
from pskinlib.train.trainer import preprocessing_of, train

PER_CLASS = 11  # test images of each class: 33 in all
# Measured at layer1 (12×12 cells) on these 33 test images: mean rank correlation -0.14 between the maps of the run
# below and of the network re-initialised with seed 1 (seeds 0 to 3: 0.19, -0.14, 0.02, 0.01; after two epochs of 40
# batches: 0.06, -0.17, 0.06, -0.13). A map that ignores the weights (an edge detector, the image's brightness) stays
# near 1: the brightness against itself with a little noise gives 0.998.
MAX_MEAN_CORRELATION = 0.5


def book_networks() -> list[tuple[str, int]]:
    """Every (network, image size) a book profile trains (book/profiles.yaml and the training profiles it names)."""
    trained = set()
    for profile in book_profiles().values():
        for track in ("scratch", "pretrained"):
            size = make_config(profile[track]["profile"]).image_size
            trained |= {(model, size) for model in profile[track]["models"]}
    return sorted(trained)


def test_the_book_trains_the_networks_and_sizes_the_issue_names():
    assert {("resnet18", 32), ("resnet18", 48), ("efficientnet_b0", 32), ("efficientnet_lite0", 32),
            ("efficientnet_lite0", 64), ("resnet101", 224), ("efficientnet_b0", 224)} <= set(book_networks())


@pytest.mark.parametrize(("model", "size"), book_networks())
def test_every_network_the_book_trains_is_explained_at_7x7_cells_or_more(model, size):
    target = gradcam_target(build_model(model, 3), size)  # the grid depends on the architecture, not the weights
    assert target.usable and min(target.grid) >= MIN_CELLS, target.caption
    assert target.caption.startswith(f"Grad-CAM at {target.layer} (")


@pytest.fixture(scope="module")
def quick_run(real_data_dir, tmp_path_factory) -> Path:
    """The quick book's ResNet18 at 48 px, cut to one epoch of 30 batches (1920 images; half a minute on 2 idle
    cores with preparing the images): it has learnt something (test balanced accuracy 0.54; chance is 0.33)."""
    config = make_config("quick", data_dir=str(real_data_dir), epochs=1, warmup_epochs=0.5, max_train_batches=30,
                         quiet=True, device="cpu")
    return train(config, runs_dir=tmp_path_factory.mktemp("runs"))


def rank_correlations(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation of each pair of maps. A constant map (no positive evidence anywhere) ranks
    nothing: against another constant map it counts as 1 (the two agree), against any other map as 0."""
    rho = []
    for a, b in zip(first, second):
        constant = np.ptp(a) == 0, np.ptp(b) == 0
        rho.append(float(all(constant)) if any(constant) else spearmanr(a.ravel(), b.ravel()).statistic)
    return np.asarray(rho, dtype=np.float64)


@pytest.mark.slow
@pytest.mark.realdata
def test_maps_of_the_trained_network_differ_from_those_of_the_network_reinitialised(quick_run):
    trained = load_trained(quick_run, device="cpu")
    target = explained_layer(trained)
    assert target.usable and min(target.grid) >= MIN_CELLS, target.caption
    rows = load_predictions(quick_run, "test").sort_values("image_id").groupby("true").head(PER_CLASS)
    normalisation, preprocessing = model_spec(trained.config.model).normalisation, preprocessing_of(trained.config)
    images = torch.cat([model_input(p, trained.config.image_size, normalisation, preprocessing) for p in rows["path"]])
    with torch.no_grad():
        predicted = trained.model(images).argmax(1)
    maps = grad_cam(trained.model, images, predicted)
    torch.manual_seed(trained.config.seed + 1)  # not the run's own starting weights
    randomised = build_model(trained.config.model, len(trained.classes))  # every weight re-initialised
    random_maps = grad_cam(randomised, images, predicted)

    same = rank_correlations(maps, grad_cam(trained.model, images, predicted))
    rho = rank_correlations(maps, random_maps)
    assert same.min() > 0.99  # the comparison itself sees identical maps as identical
    assert rho.mean() < MAX_MEAN_CORRELATION, (f"{target.caption}: mean rank correlation {rho.mean():.2f} between the "
                                               "trained and the re-initialised network's maps")
