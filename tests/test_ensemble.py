"""Ensembles of runs and lesion averaging, on hand-made run records (no training needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from pskinlib.cli import main
from pskinlib.data.splits import write_split
from pskinlib.evaluate.ensemble import average_by_lesion, average_runs, evaluate_predictions, write_ensemble
from pskinlib.io import read_json, write_json

CLASSES = ("mel", "nv", "bkl")
SPLIT = pd.DataFrame({
    "image_id": [f"ISIC_{i:07d}" for i in range(8)],
    "lesion_id": ["HAM_a", "HAM_b", "HAM_c", "HAM_d", "HAM_d", "HAM_e", "HAM_f", "HAM_f"],
    "dx": ["mel", "nv", "bkl", "mel", "mel", "nv", "bkl", "bkl"],
    "split": ["train", "train", "train", "test", "test", "test", "test", "test"],
})


def _run(root, name, test_probs, split=SPLIT):
    run = root / name
    run.mkdir()
    write_split(split, run / "split.csv")
    for part in ("val", "test"):
        rows = split[split["split"] == "test"]  # the same images stand in for validation
        table = pd.DataFrame({"image_id": rows["image_id"].values, "lesion_id": rows["lesion_id"].values,
                              "true": rows["dx"].values})
        probs = np.asarray(test_probs, dtype=float)
        table["predicted"] = [CLASSES[i] for i in probs.argmax(1)]
        for k, code in enumerate(CLASSES):
            table[f"p_{code}"] = probs[:, k]
        table.to_csv(run / f"predictions_{part}.csv", index=False)
    write_json(run / "metrics.json", {"best_epoch": 1, "test": {"balanced_accuracy": 0.5}})
    return run


A = [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.3, 0.6], [0.1, 0.5, 0.4]]
B = [[0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.3, 0.2, 0.5], [0.2, 0.2, 0.6]]


def test_an_ensemble_averages_probabilities_and_decides_again(tmp_path):
    table = average_runs([_run(tmp_path, "a", A), _run(tmp_path, "b", B)])
    expected = (np.array(A) + np.array(B)) / 2
    np.testing.assert_allclose(table[["p_mel", "p_nv", "p_bkl"]].to_numpy(), expected)
    assert list(table["predicted"]) == [CLASSES[i] for i in expected.argmax(1)]
    assert list(table["predicted"]) == ["nv", "nv", "nv", "bkl", "bkl"]  # run a alone: mel, nv, nv, bkl, nv


def test_lesion_averaging_gives_a_lesions_images_one_decision(tmp_path):
    table = average_by_lesion(average_runs([_run(tmp_path, "a", A), _run(tmp_path, "b", A)]))
    # HAM_d's two images: (0.6,0.3,0.1) and (0.2,0.7,0.1) -> (0.4,0.5,0.1): both now "nv".
    np.testing.assert_allclose(table.loc[0, ["p_mel", "p_nv", "p_bkl"]].to_numpy(float), [0.4, 0.5, 0.1])
    assert list(table["predicted"]) == ["nv", "nv", "nv", "bkl", "bkl"]


def test_runs_on_other_splits_or_images_are_refused(tmp_path):
    a = _run(tmp_path, "a", A)
    other = SPLIT.assign(split=["train", "train", "test", "test", "test", "train", "test", "test"])
    with pytest.raises(ValueError, match="another split"):
        average_runs([a, _run(tmp_path, "b", A[:5], split=other)])
    with pytest.raises(ValueError, match="at least two"):
        average_runs([a])


def test_write_ensemble_and_the_cli_report_what_sklearn_computes(tmp_path, capsys):
    a, b = _run(tmp_path, "a", A), _run(tmp_path, "b", B)
    assert main(["ensemble", str(a), str(b), "--out", str(tmp_path / "ens")]) == 0
    record = read_json(tmp_path / "ens" / "ensemble.json")
    truth = SPLIT[SPLIT["split"] == "test"]["dx"]
    predicted = [CLASSES[i] for i in ((np.array(A) + np.array(B)) / 2).argmax(1)]
    assert record["test"]["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(truth, predicted))
    assert "test_by_lesion" in record and len(record["members"]) == 2
    assert "balanced accuracy" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "ens" / "predictions_test.csv")
    assert evaluate_predictions(table)["balanced_accuracy"] == record["test"]["balanced_accuracy"]
    assert write_ensemble([a, b], tmp_path / "again").is_dir()
