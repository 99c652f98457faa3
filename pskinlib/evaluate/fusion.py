"""Patient metadata fusion: a trained network's image features plus the patient's age, sex and body site, in one
logistic-regression head.

HAM10000 records, for every lesion, the patient's age and sex and the body site (``localization``). They carry
what a small picture cannot: among the paper's three classes, nevi come from patients of 46 years on average,
melanomas and benign keratoses from patients of 61 and 64; 61 % of the lesions on the face are benign keratoses,
91 % of those on the trunk are nevi (counted in ``HAM10000_metadata.csv``). The paper classifies the images alone.
Fusion is our extension: the book reports it beside the image-only result, never instead of it.

How (:func:`fuse_run`): take a finished run; compute its network's image features (the input of its last linear
layer, flip-averaged when the run used TTA) for the training, validation and test images, without augmentation;
append the metadata columns (:func:`metadata_matrix`); fit a multinomial logistic regression on the training
split, weighted by the run's own class weights (times inverse frequency when the run balanced its batches with
the sampler instead); choose its regularisation strength on the validation split by the run's selection metric.
The test split is only predicted. The network itself is not changed.

``use_metadata=False`` refits the same head on the image features alone: the control that separates what the
metadata adds from what refitting the head on unaugmented images adds.

``dx_type`` (how a diagnosis was confirmed) is never an input: it gives the label away (in HAM10000 only nevi are
confirmed by follow-up).

:func:`load_fused` then predicts new images with their patients' facts (``pskin predict RUN IMAGE --age 60 --sex
male --site back``).

Results go to ``<run>/fusion-metadata/`` (or ``fusion-image/``): ``fusion.json`` (the fitted head and the
validation score of each strength), ``predictions_val.csv`` / ``predictions_test.csv`` in a run's format, and
``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.special import softmax
from torch import nn

from ..data.batches import BatchLoader
from ..errors import DataError, ParameterError
from ..info import BODY_SITES, PATIENT_COLUMNS, SEXES
from ..metrics import confusion_scores, report_with_intervals
from ..runs import FusionRecord, RunRecord, predictions_table
from ..train.device import autocast, autocast_dtype, use_channels_last
from ..train.models import head_layer, model_spec
from ..train.trainer import prepare_run_data, tta_of, tta_views
from .ensemble import average_by_lesion, evaluate_predictions
from .predict import TrainedModel, load_trained

# Regularisation strengths tried (scikit-learn's C: smaller is stronger) on standardised inputs.
STRENGTHS = (0.01, 0.03, 0.1, 0.3, 1.0)
METADATA_COLUMNS = ("age", "age_squared", "age_missing", *(f"sex_{s}" for s in SEXES),
                    *(f"site_{s}" for s in BODY_SITES))


def metadata_matrix(table: pd.DataFrame) -> np.ndarray:
    """The metadata inputs, one row per row of ``table`` (columns ``age``, ``sex``, ``localization``).

    Columns (:data:`METADATA_COLUMNS`): age in centuries and its square (risk does not grow linearly with age), a
    missing-age flag (a missing age counts as 0), one indicator per sex and per body site; values not recorded
    (``unknown``, blank) leave all their indicators at 0.
    """
    missing = [c for c in PATIENT_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"metadata: the table lacks the column(s) {missing}; fusion needs HAM10000's age, sex "
                        "and localization.")
    age = pd.to_numeric(table["age"], errors="coerce").to_numpy(np.float64) / 100
    age_missing = np.isnan(age)
    age = np.where(age_missing, 0.0, age)
    columns = [age, age ** 2, age_missing.astype(np.float64)]
    columns += [(table["sex"] == s).to_numpy(np.float64) for s in SEXES]
    columns += [(table["localization"] == s).to_numpy(np.float64) for s in BODY_SITES]
    return np.stack(columns, axis=1)


@torch.no_grad()
def image_features(model: nn.Module, loader: BatchLoader, device: torch.device, amp_dtype: torch.dtype | None,
                   tta: bool = False) -> np.ndarray:
    """The input of the network's last linear layer for every image of an (unshuffled) loader, ``(N, D)``;
    with ``tta`` the mean over the four flips, as the run's predictions average them."""
    captured: list[torch.Tensor] = []
    hook = head_layer(model).register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
    model.eval()
    outputs = []
    try:
        for images, _ in loader:
            captured.clear()
            with autocast(device, amp_dtype):
                for view in tta_views(images, tta):
                    model(view)
            outputs.append((sum(c.float() for c in captured) / len(captured)).cpu())
    finally:
        hook.remove()
    return torch.cat(outputs).numpy().astype(np.float64)


@dataclass
class FusionHead:
    """A fitted head: standardise the inputs, then a linear layer and softmax."""

    classes: tuple[str, ...]
    columns: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (classes, columns)
    intercept: np.ndarray  # (classes,)
    strength: float

    def predict_proba(self, inputs: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, K)`` for inputs ``(N, len(columns))``: image features, then metadata."""
        inputs = np.asarray(inputs, dtype=np.float64)
        if inputs.ndim != 2 or inputs.shape[1] != len(self.columns):
            raise ParameterError(f"inputs: expected shape (N, {len(self.columns)}), got {inputs.shape}.")
        return softmax(((inputs - self.mean) / self.scale) @ self.coef.T + self.intercept, axis=1)

    def to_dict(self) -> dict:
        return {"classes": list(self.classes), "columns": list(self.columns), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "coef": self.coef.tolist(), "intercept": self.intercept.tolist(),
                "strength": self.strength}

    @classmethod
    def from_dict(cls, record: dict) -> FusionHead:
        return cls(tuple(record["classes"]), tuple(record["columns"]), np.asarray(record["mean"]),
                   np.asarray(record["scale"]), np.asarray(record["coef"]), np.asarray(record["intercept"]),
                   float(record["strength"]))


def fit_fusion_head(train_inputs: np.ndarray, train_labels: np.ndarray, val_inputs: np.ndarray,
                    val_labels: np.ndarray, *, classes: tuple[str, ...], columns: tuple[str, ...],
                    class_weights: np.ndarray, select_metric: str = "balanced_accuracy",
                    strengths: tuple[float, ...] = STRENGTHS) -> tuple[FusionHead, dict[float, float]]:
    """Fit a class-weighted multinomial logistic regression on the training inputs for each strength and keep the
    one with the best validation ``select_metric`` (the first of equals, strongest regularisation first); returns
    the head and the validation score of every strength.

    The strengths are fitted as a regularisation path, from the strongest regularisation (smallest ``C``) to the
    weakest, each fit starting from the previous solution (as scikit-learn's ``LogisticRegressionCV`` does), on the
    standardised inputs in float32: the path needs about a third fewer L-BFGS iterations and each costs about half,
    for the same optimum up to the solver's tolerance.

    BLAS runs on one thread here. Each L-BFGS step multiplies the inputs by a matrix of a few columns (one per
    class), a product that OpenBLAS spreads over threads badly: on 2 cores one thread is several times faster
    (measured: 8 instead of 109 ms a product when the other core is busy), and the fitted head no longer depends on
    how many cores the machine has, since the sums are always added in the same order."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    if not strengths or any(not s > 0 for s in strengths):
        raise ParameterError(f"strengths: expected positive numbers, got {strengths!r}.")
    mean = train_inputs.mean(axis=0)
    scale = train_inputs.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)  # a constant column (a site no training image has) stays 0
    train_z = ((train_inputs - mean) / scale).astype(np.float32)
    sample_weight = np.asarray(class_weights, dtype=np.float32)[train_labels]
    n_classes = len(classes)
    best, val_scores = None, {}
    regression = LogisticRegression(max_iter=5000, warm_start=True)
    for strength in sorted(strengths):
        with threadpool_limits(limits=1, user_api="blas"):
            regression.set_params(C=strength).fit(train_z, train_labels, sample_weight=sample_weight)
        coef, intercept = regression.coef_.astype(np.float64), regression.intercept_.astype(np.float64)
        if n_classes == 2:  # scikit-learn keeps one row for two classes; softmax of (-z/2, z/2) is its sigmoid
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
        head = FusionHead(tuple(classes), tuple(columns), mean, scale, coef, intercept, float(strength))
        confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
        np.add.at(confusion, (val_labels, head.predict_proba(val_inputs).argmax(1)), 1)
        val_scores[float(strength)] = confusion_scores(confusion, classes)[select_metric]
        if best is None or val_scores[float(strength)] > val_scores[best.strength]:
            best = head
    return best, val_scores


def fuse_run(run_dir: str | os.PathLike, *, data_dir: str | os.PathLike | None = None, use_metadata: bool = True,
             device: str = "auto", strengths: tuple[float, ...] = STRENGTHS) -> Path:
    """Fit a fusion head (or, with ``use_metadata=False``, an image-only head) for a finished run and record it in
    the run's ``fusion-metadata/`` (``fusion-image/``); returns that folder (``RunRecord.fusion`` reads it).
    ``data_dir``: the HAM10000 folder if not the one the run recorded (or ``$PSKIN_DATA``)."""
    record = RunRecord.open(run_dir, finished=True)
    config, data, classes, features = _run_features(str(record.path.resolve()),
                                                    record.checkpoint("best").stat().st_mtime_ns,
                                                    None if data_dir is None else str(data_dir), device)
    table = data.images.table.set_index("image_id")
    if use_metadata:
        known = (table["age"].notna() | table["sex"].isin(SEXES) | table["localization"].isin(BODY_SITES))
        if not known.any():
            raise DataError(f"{data.images.root}: no image has an age, sex or body site recorded (an ISIC 2018 "
                            "layout has none); fusion needs HAM10000_metadata.csv. Use use_metadata=False "
                            "(--image-only) to refit on the images alone.")
    inputs, labels = {}, {}
    for part, tensors in data.tensors.items():
        inputs[part] = (np.hstack([features[part], metadata_matrix(table.loc[list(tensors.image_ids)])])
                        if use_metadata else features[part])
        labels[part] = tensors.labels.numpy()
    metadata_columns = METADATA_COLUMNS if use_metadata else ()
    columns = tuple(f"feature_{i}" for i in range(inputs["train"].shape[1] - len(metadata_columns))) + metadata_columns
    weights = np.array([record.recorded["class_weights"][c] for c in classes])
    if config.sampler == "balanced":  # the run balanced its batches instead; the head gets the same balance
        counts = np.bincount(labels["train"], minlength=len(classes))
        weights = weights * len(labels["train"]) / (len(classes) * np.maximum(counts, 1))
    head, val_scores = fit_fusion_head(inputs["train"], labels["train"], inputs["val"], labels["val"],
                                       classes=classes, columns=columns, class_weights=weights,
                                       select_metric=config.select_metric, strengths=strengths)

    fusion = record.fusion(use_metadata)
    metrics = {"use_metadata": use_metadata, "strength": head.strength, "select_metric": config.select_metric,
               "classes": list(classes), "synthetic": data.images.synthetic,
               "image_only_test_balanced_accuracy": record.metrics["test"]["balanced_accuracy"]}
    for part in ("val", "test"):
        probs = head.predict_proba(inputs[part])
        ids = list(data.tensors[part].image_ids)
        predictions = predictions_table(ids, labels[part], probs, classes, lesion_ids=table.loc[ids, "lesion_id"])
        fusion.write_predictions(predictions, part)
        metrics[part] = report_with_intervals(labels[part], probs, classes, seed=config.seed)
        metrics[f"{part}_by_lesion"] = evaluate_predictions(average_by_lesion(predictions), seed=config.seed)
    fusion.write_head({"head": head.to_dict(), "validation_scores": val_scores,
                       "train_images": len(labels["train"]), "run": record.name})
    fusion.write_metrics(metrics)
    return fusion.path


@functools.lru_cache(maxsize=1)
def _run_features(run_dir: str, checkpoint_stamp: int, data_dir: str | None, device: str):
    """A finished run's config (``data_dir`` put in), its prepared data, its classes and the image features of each
    part of its split. Kept for the last run asked (``checkpoint_stamp``: its best checkpoint's modification time,
    so that a retrained run is read again), because the image-only head and the metadata fusion read the same
    features."""
    record = RunRecord.open(run_dir, finished=True)
    trained = load_trained(record, device=device)
    config = dataclasses.replace(trained.config, quiet=True,
                                 data_dir=data_dir if data_dir is not None else trained.config.data_dir)
    data = prepare_run_data(config, record.split())
    amp_dtype = autocast_dtype(config, trained.device)
    features = {}
    for part, tensors in data.tensors.items():
        # The paper's split repeats images (Table 1 asks for more melanomas than HAM10000 has): each distinct image
        # is passed through the network once, in the split's order, and its features are repeated where the split
        # repeats it. A split without repeats is passed as it is, in the same batches as before.
        first, repeat = _first_occurrences(tensors.image_ids)
        loader = BatchLoader(tensors.pixels[first], tensors.labels[first], batch_size=128, device=trained.device,
                             channels_last=use_channels_last(config, trained.device),
                             normalisation=model_spec(config.model).normalisation)
        features[part] = image_features(trained.model, loader, trained.device, amp_dtype,
                                        tta=tta_of(config))[repeat]
    return config, data, trained.classes, features


def _first_occurrences(image_ids) -> tuple[torch.Tensor, np.ndarray]:
    """The rows where each distinct id first appears, in their order, and for every row the position of its id
    among them: ``rows[first][repeat]`` is ``rows``, whatever the repeats."""
    repeat, _ = pd.factorize(np.asarray(image_ids))  # codes numbered in the order the ids first appear
    return torch.from_numpy(np.unique(repeat, return_index=True)[1]), repeat


def ensure_fused(run_dir: str | os.PathLike, *, data_dir: str | os.PathLike | None = None,
                 use_metadata: bool = True, device: str = "auto") -> FusionRecord:
    """The run's fusion record, fitting its head first (:func:`fuse_run`) when it has none."""
    fusion = RunRecord.open(run_dir).fusion(use_metadata)
    if not fusion.finished:
        fuse_run(run_dir, data_dir=data_dir, use_metadata=use_metadata, device=device)
    return fusion


@dataclass
class FusedModel:
    """A trained run with its fitted fusion head: predicts images with (or, image-only, without) metadata."""

    trained: TrainedModel
    head: FusionHead

    @property
    def uses_metadata(self) -> bool:
        return self.head.columns[-len(METADATA_COLUMNS):] == METADATA_COLUMNS

    def predict(self, paths: list[str | os.PathLike], metadata: pd.DataFrame | None = None) -> np.ndarray:
        """Class probabilities ``(N, K)`` for image files; ``metadata``: one row per image with ``age`` (years or
        NaN), ``sex`` and ``localization`` (HAM10000's spellings; anything else counts as not recorded)."""
        trained = self.trained
        inputs = image_features(trained.model, trained.batches(paths), trained.device,
                                autocast_dtype(trained.config, trained.device), tta=tta_of(trained.config))
        if self.uses_metadata:
            if metadata is None or len(metadata) != len(paths):
                raise ParameterError(f"metadata: this head uses age, sex and body site; give one row per image "
                                     f"({len(paths)}), got {None if metadata is None else len(metadata)}.")
            inputs = np.hstack([inputs, metadata_matrix(metadata.reset_index(drop=True))])
        return self.head.predict_proba(inputs)


def load_fused(run_dir: str | os.PathLike, *, use_metadata: bool = True, device: str = "auto") -> FusedModel:
    """A run's best checkpoint with the head :func:`fuse_run` fitted for it."""
    head = FusionHead.from_dict(RunRecord(run_dir).fusion(use_metadata).head["head"])  # says how to fit one
    return FusedModel(load_trained(run_dir, device=device), head)


def patient_facts(n_images: int, *, age: float | None = None, sex: str | None = None,
                  site: str | None = None) -> pd.DataFrame:
    """One metadata row per image, all the same patient and site, checked: ``age`` in years (0-120), ``sex`` one
    of :data:`pskinlib.info.SEXES`, ``site`` one of :data:`pskinlib.info.BODY_SITES` (``None``: not recorded)."""
    if age is not None and not 0 <= age <= 120:
        raise ParameterError(f"age: expected years from 0 to 120, got {age!r}.")
    if sex is not None and sex not in SEXES:
        raise ParameterError(f"sex: expected one of {list(SEXES)} (or leave it out), got {sex!r}.")
    if site is not None and site not in BODY_SITES:
        raise ParameterError(f"site: expected one of {list(BODY_SITES)} (or leave it out), got {site!r}.")
    return pd.DataFrame({"age": [np.nan if age is None else float(age)] * n_images,
                         "sex": [sex or "unknown"] * n_images, "localization": [site or "unknown"] * n_images})
