"""Metadata fusion: the metadata columns, the head (against scikit-learn), the image features (against the
network's own logits), and a fused run where only the metadata knows the class."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ham_rows, write_ham_folder
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from test_trainer import tiny_config

from book.tables import fusion_table
from pskinlib.cli import main
from pskinlib.data.batches import BatchLoader
from pskinlib.errors import DataError
from pskinlib.evaluate import fusion
from pskinlib.evaluate.fusion import (
    METADATA_COLUMNS,
    FusionHead,
    fit_fusion_head,
    fuse_run,
    image_features,
    load_fused,
    metadata_matrix,
    patient_facts,
)
from pskinlib.evaluate.image_folder import evaluate_folder
from pskinlib.info import BODY_SITES
from pskinlib.io import read_json
from pskinlib.train.models import build_model
from pskinlib.train.trainer import train


def test_metadata_columns_are_age_sex_and_site_and_unrecorded_values_stay_zero():
    table = pd.DataFrame({"age": [50.0, np.nan], "sex": ["female", "unknown"], "localization": ["face", ""]})
    matrix = metadata_matrix(table)
    assert matrix.shape == (2, len(METADATA_COLUMNS))
    first = dict(zip(METADATA_COLUMNS, matrix[0]))
    assert first["age"] == 0.5 and first["age_squared"] == 0.25 and first["age_missing"] == 0
    assert first["sex_female"] == 1 and first["sex_male"] == 0 and first["site_face"] == 1
    assert sum(v for k, v in first.items() if k.startswith("site_")) == 1
    second = dict(zip(METADATA_COLUMNS, matrix[1]))
    assert second["age_missing"] == 1 and second["age"] == 0
    assert sum(v for k, v in second.items() if k.startswith(("sex_", "site_"))) == 0
    assert "dx_type" not in " ".join(METADATA_COLUMNS)  # it gives the label away


def test_a_table_without_metadata_columns_is_refused():
    with pytest.raises(DataError, match="localization"):
        metadata_matrix(pd.DataFrame({"age": [1.0], "sex": ["male"]}))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_head_predicts_what_scikit_learn_fitted_and_survives_json(n_classes):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, n_classes, 300)
    inputs = rng.normal(size=(300, 5)) + labels[:, None] * np.array([1.0, -0.5, 0, 0, 2.0])
    classes = ("mel", "nv", "bkl")[:n_classes]
    weights = np.linspace(1, 2, n_classes)
    head, scores = fit_fusion_head(inputs[:200], labels[:200], inputs[200:], labels[200:], classes=classes,
                                   columns=tuple("abcde"), class_weights=weights, strengths=(0.1, 1.0))
    assert set(scores) == {0.1, 1.0} and head.strength == max(scores, key=scores.get)
    z = (inputs[:200] - inputs[:200].mean(0)) / inputs[:200].std(0)
    reference = LogisticRegression(C=head.strength, max_iter=5000).fit(z, labels[:200],
                                                                      sample_weight=weights[labels[:200]])
    expected = reference.predict_proba((inputs[200:] - inputs[:200].mean(0)) / inputs[:200].std(0))
    probs = head.predict_proba(inputs[200:])
    # the head was fitted along the regularisation path in float32: the same optimum up to L-BFGS's tolerance
    np.testing.assert_allclose(probs, expected, atol=2e-3)
    assert scores[head.strength] == pytest.approx(balanced_accuracy_score(labels[200:], probs.argmax(1)))
    np.testing.assert_allclose(FusionHead.from_dict(head.to_dict()).predict_proba(inputs[200:]), probs)
    with pytest.raises(ValueError, match="shape"):
        head.predict_proba(inputs[:, :4])


@pytest.mark.parametrize("tta", [False, True])
def test_image_features_are_what_the_last_layer_reads(tta):
    torch.manual_seed(0)
    model = build_model("resnet18", 3).eval()
    pixels = torch.randint(0, 256, (6, 32, 32, 3), dtype=torch.uint8)
    loader = BatchLoader(pixels, torch.zeros(6, dtype=torch.int64), batch_size=4, device=torch.device("cpu"))
    features = torch.from_numpy(image_features(model, loader, torch.device("cpu"), None, tta=tta)).float()
    assert features.shape == (6, 512)
    with torch.no_grad():
        images = torch.cat([batch for batch, _ in loader])
        views = [images, images.flip(3), images.flip(2), images.flip(2, 3)] if tta else [images]
        logits = sum(model(v) for v in views) / len(views)
    # The head is linear, so the mean of the views' logits is the head applied to the mean feature.
    torch.testing.assert_close(model.fc(features), logits, atol=1e-4, rtol=1e-4)


def test_a_split_that_repeats_images_passes_each_through_the_network_once_in_its_order():
    ids = ("c", "a", "c", "b", "a", "d")
    first, repeat = fusion._first_occurrences(ids)
    assert [ids[i] for i in first.tolist()] == ["c", "a", "b", "d"]  # first appearances, in the split's order
    assert [ids[i] for i in first[repeat].tolist()] == list(ids)  # every row gets its own image's features back
    first, repeat = fusion._first_occurrences(("x", "y", "z"))  # no repeats: the rows as they are
    assert first.tolist() == [0, 1, 2] and repeat.tolist() == [0, 1, 2]


@pytest.fixture
def metadata_only_ham(tmp_path):
    """Images that all look alike (every one painted as a nevus) while age and body site tell the class."""
    rows = ham_rows({"mel": 40, "nv": 60, "bkl": 40}, seed=1)
    root = write_ham_folder(tmp_path / "ham", rows.assign(dx="nv"))
    rng = np.random.default_rng(0)
    rows["age"] = rows["dx"].map({"mel": 80.0, "nv": 20.0, "bkl": 50.0}) + rng.integers(-2, 3, len(rows))
    rows["localization"] = rows["dx"].map({"mel": "back", "nv": "trunk", "bkl": "face"})
    rows.to_csv(root / "HAM10000_metadata.csv", index=False)
    return root


@pytest.mark.slow
def test_a_fused_run_learns_what_only_the_metadata_knows(metadata_only_ham, tmp_path, capsys, monkeypatch):
    run = train(tiny_config(metadata_only_ham, epochs=1), runs_dir=tmp_path / "runs")
    extracted = []
    monkeypatch.setattr(fusion, "image_features", lambda *args, **kwargs: extracted.append(1) or
                        image_features(*args, **kwargs))
    fused = fuse_run(run, use_metadata=True, device="cpu")
    image_only = fuse_run(run, use_metadata=False, device="cpu")
    assert (fused.name, image_only.name) == ("fusion-metadata", "fusion-image")
    assert len(extracted) == 3  # train, val and test once: the second head reads the first one's features

    metrics = read_json(fused / "metrics.json")
    predictions = pd.read_csv(fused / "predictions_test.csv")
    split = pd.read_csv(run / "split.csv")
    assert sorted(predictions["image_id"]) == sorted(split.loc[split["split"] == "test", "image_id"])
    np.testing.assert_allclose(predictions[["p_mel", "p_nv", "p_bkl"]].sum(axis=1), 1.0, atol=1e-9)
    assert metrics["test"]["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(predictions["true"], predictions["predicted"]))
    assert metrics["test"]["balanced_accuracy"] == 1.0  # age and site separate the classes
    assert read_json(image_only / "metrics.json")["test"]["balanced_accuracy"] < 0.9  # the images cannot
    assert metrics["image_only_test_balanced_accuracy"] == read_json(run / "metrics.json")["test"][
        "balanced_accuracy"]
    head = FusionHead.from_dict(read_json(fused / "fusion.json")["head"])
    assert head.columns[-len(METADATA_COLUMNS):] == METADATA_COLUMNS and len(head.columns) == 512 + len(
        METADATA_COLUMNS)

    row = fusion_table([run]).iloc[0]  # what the results chapter shows: the heads fitted above, not refitted
    assert (row["images alone"], row["head refitted, images"], row["+ metadata"]) == (
        metrics["image_only_test_balanced_accuracy"], read_json(image_only / "metrics.json")["test"][
            "balanced_accuracy"], 1.0)

    assert main(["fuse", str(run), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "age, sex, body site" in out and "fused test: accuracy 1.000" in out

    # New images with their patients' facts give what the recorded predictions say.
    table = pd.read_csv(metadata_only_ham / "HAM10000_metadata.csv").set_index("image_id")
    ids = list(predictions["image_id"])
    paths = [metadata_only_ham / "images" / f"{i}.jpg" for i in ids]
    probs = load_fused(run, device="cpu").predict(paths, table.loc[ids])
    np.testing.assert_allclose(probs, predictions[["p_mel", "p_nv", "p_bkl"]].to_numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="one row per image"):
        load_fused(run, device="cpu").predict(paths)
    image_only_probs = load_fused(run, use_metadata=False, device="cpu").predict(paths)
    recorded = pd.read_csv(image_only / "predictions_test.csv")[["p_mel", "p_nv", "p_bkl"]].to_numpy()
    np.testing.assert_allclose(image_only_probs, recorded, atol=1e-5)

    first = table.loc[ids[0]]
    assert main(["predict", str(run), str(paths[0]), "--age", str(first["age"]), "--site", first["localization"],
                 "--sex", "male", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "fusion head" in out and out.strip().splitlines()[-1].endswith(first["dx"])

    # Another labelled folder, evaluated through the fused head with its CSV's metadata columns.
    labels = tmp_path / "labels.csv"
    table.loc[ids].reset_index()[["image_id", "dx", "age", "sex", "localization"]].to_csv(labels, index=False)
    assert main(["evaluate", str(run), "--images", str(metadata_only_ham / "images"), "--labels", str(labels),
                 "--metadata", "--device", "cpu"]) == 0
    evaluated = read_json(run / "eval-images-metadata" / "metrics.json")
    assert evaluated["metadata"] is True and evaluated["balanced_accuracy"] == metrics["test"]["balanced_accuracy"]
    table.loc[ids].reset_index()[["image_id", "dx", "age"]].to_csv(labels, index=False)
    with pytest.raises(DataError, match="localization"):
        evaluate_folder(run, metadata_only_ham / "images", labels, metadata=True, device="cpu")


def test_patient_facts_are_checked_and_absent_ones_count_as_not_recorded(tmp_path):
    facts = patient_facts(2, age=60, site="face")
    assert list(facts["sex"]) == ["unknown"] * 2 and (facts["age"] == 60).all()
    assert metadata_matrix(facts)[0, METADATA_COLUMNS.index("site_face")] == 1
    for bad, message in [(dict(age=200), "age"), (dict(sex="m"), "sex"), (dict(site="Back"), "site")]:
        with pytest.raises(ValueError, match=message):
            patient_facts(1, **bad)
    with pytest.raises(ValueError, match="pskin fuse"):
        load_fused(tmp_path)


def test_fusion_refuses_data_without_any_metadata(tiny_ham, tmp_path):
    run = train(tiny_config(tiny_ham, epochs=1), runs_dir=tmp_path / "runs")
    rows = pd.read_csv(tiny_ham / "HAM10000_metadata.csv")
    rows.assign(age=np.nan, sex="unknown", localization="unknown").to_csv(tiny_ham / "HAM10000_metadata.csv",
                                                                          index=False)
    with pytest.raises(DataError, match="no image has an age"):
        fuse_run(run, device="cpu")
    assert fuse_run(run, use_metadata=False, device="cpu").is_dir()  # the image-only head needs none


def test_body_sites_are_the_ones_ham10000_records(real_data_dir):
    sites = set(pd.read_csv(real_data_dir / "HAM10000_metadata.csv")["localization"]) - {"unknown"}
    assert sites == set(BODY_SITES)
