"""How good is a classifier on the test set, how sure can we be, and is it better than another one?

Inputs are integer labels ``y_true`` ``(N,)`` (values ``0..K-1`` in the order of ``classes``) and probabilities
``y_prob`` ``(N, K)`` (rows sum to 1, e.g. a softmax); the prediction is ``argmax(y_prob)``. Results are plain
numbers, dicts or a pandas table, ready for JSON. Scikit-learn computes the report's metrics (the bootstrap counts
confusion matrices, to the same numbers); this module adds input checks, specificity, calibration (error,
reliability bins, temperature scaling), percentile-bootstrap intervals (on a few hundred test images an accuracy of
0.65 is only known to about +/- 0.045), McNemar's test, the majority baseline and clinical operating points.

A class with no image in a set (PH2 has no seborrheic keratosis) gets no recall, F1 or AUC there (None, never 0),
and every macro figure averages over the classes present: the report names both (``absent_classes``,
``macro["classes"]``) and :func:`absent_classes_note` says it in words.
"""

from __future__ import annotations

import itertools
import numbers
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats
from scipy.optimize import minimize_scalar
from scipy.special import softmax
from sklearn import metrics as skm

from .data.ham10000 import validate_classes
from .errors import ParameterError, check_int
from .info import CLASSES

ECE_BINS = 15
BOOTSTRAP_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "recall:<code>")
# Rows of probabilities may miss 1 by float32 / float16 rounding of a softmax; more than this is not a probability.
ROW_SUM_TOLERANCE = 1e-3
# Below this many discordant pairs McNemar uses the exact binomial test (chi-square is poor for small counts).
MCNEMAR_EXACT_BELOW = 25
# Resampled index matrices are built this many entries at a time, so memory stays small for large test sets.
_BOOTSTRAP_CHUNK_ENTRIES = 2_000_000


# ---------- Input checks


def _check_labels(values, name: str, n_classes: int | None = None) -> np.ndarray:
    """``values`` as a 1-D int64 array of class indices, in ``0..n_classes-1`` when ``n_classes`` is given."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ParameterError(f"{name}: need a 1-D array of integer class labels, got shape {array.shape}.")
    if array.size == 0:
        raise ParameterError(f"{name}: is empty; need at least one label.")
    if array.dtype.kind == "f":
        whole = np.isfinite(array) & (array == np.round(array))
        if not whole.all():
            raise ParameterError(f"{name}: need integer class labels, got non-integer values such as "
                                 f"{array[~whole][0]!r}.")
    elif array.dtype.kind not in "iub":
        raise ParameterError(f"{name}: need integer class labels (indices into classes), got dtype {array.dtype}.")
    array = array.astype(np.int64)
    if n_classes is not None and (array.min() < 0 or array.max() >= n_classes):
        bad = array[(array < 0) | (array >= n_classes)][0]
        raise ParameterError(f"{name}: label {bad} is out of range; labels must be 0..{n_classes - 1} "
                             f"for {n_classes} classes.")
    return array


def _check_probabilities(values, name: str, n_rows: int) -> np.ndarray:
    """``values`` as an ``(n_rows, K)`` float64 array of finite probabilities whose rows sum to 1 (renormalised)."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] != n_rows or array.shape[1] < 2:
        raise ParameterError(f"{name}: need shape (N, K) = ({n_rows}, number of classes >= 2) matching y_true, "
                             f"got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ParameterError(f"{name}: contains NaN or infinite values (first at row "
                             f"{int(np.argwhere(~np.isfinite(array))[0, 0])}); check the model's outputs.")
    if array.min() < 0 or array.max() > 1:
        raise ParameterError(f"{name}: probabilities must lie in [0, 1], got values from {array.min():.6g} to "
                             f"{array.max():.6g}; apply a softmax to logits first.")
    sums = array.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1)))
    if abs(sums[worst] - 1) > ROW_SUM_TOLERANCE:
        raise ParameterError(f"{name}: each row must sum to 1, row {worst} sums to {sums[worst]:.6g}; "
                             f"apply a softmax to logits first.")
    # Remove the rounding left by float32 softmax, so log loss and calibration see exact probabilities.
    return array / sums[:, None]


def _check_classes(classes, n_classes: int | None = None) -> tuple[str, ...]:
    """``classes`` as a tuple of distinct known dx codes, ``n_classes`` of them when given."""
    if isinstance(classes, str) or not all(isinstance(c, str) for c in classes):
        raise ParameterError(f"classes: need a tuple of dx codes such as ('mel', 'nv', 'bkl'), got {classes!r}.")
    classes = validate_classes(tuple(classes))
    if n_classes is not None and len(classes) != n_classes:
        raise ParameterError(f"classes: {len(classes)} codes {list(classes)} but y_prob has {n_classes} columns; "
                             f"give one code per column, in column order.")
    return classes


def _check_inputs(y_true, y_prob, classes=None, in_range: bool = True) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    """Labels and probabilities of the same images, and one class code per column when ``classes`` is given;
    labels must index the columns when ``in_range``."""
    y_true = _check_labels(y_true, "y_true")
    y_prob = _check_probabilities(y_prob, "y_prob", len(y_true))
    if classes is not None:
        classes = _check_classes(classes, y_prob.shape[1])
    return (_check_labels(y_true, "y_true", y_prob.shape[1]) if in_range else y_true), y_prob, classes


def _check_bootstrap_args(n_boot, confidence, seed) -> tuple[int, float, int]:
    n_boot = check_int("n_boot", n_boot, 1)
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not 0 < confidence < 1:
        raise ParameterError(f"confidence: need a number strictly between 0 and 1 (e.g. 0.95), got {confidence!r}.")
    return n_boot, float(confidence), check_int("seed", seed, 0)


# ---------- Single metrics


def specificity_per_class(confusion: ArrayLike) -> np.ndarray:
    """One-vs-rest specificity TN / (TN + FP) per class of a ``(K, K)`` confusion matrix (rows true); 0 without
    negatives, like scikit-learn's ``zero_division=0``."""
    matrix = np.asarray(confusion)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 2:
        raise ParameterError(f"confusion: need a square (K, K) count matrix with K >= 2, got shape {matrix.shape}.")
    if not np.all(np.isfinite(matrix)) or matrix.min() < 0:
        raise ParameterError("confusion: counts must be finite and non-negative.")
    matrix = matrix.astype(np.float64)
    negatives = matrix.sum() - matrix.sum(axis=1)  # TN + FP
    true_negative = negatives - (matrix.sum(axis=0) - np.diag(matrix))
    return np.divide(true_negative, negatives, out=np.zeros_like(negatives), where=negatives > 0)


def _confidence_bins(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int):
    """Top-label confidence, correctness and confidence bin of each image."""
    confidence = y_prob.max(axis=1)
    # Bin b holds confidences in (b/n, (b+1)/n]; ceil puts a value on an edge into the lower bin.
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    return confidence, y_prob.argmax(axis=1) == y_true, bins


def expected_calibration_error(y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top-label confidence (Guo et al. 2017): over ``n_bins`` equal-width bins,
    |accuracy - mean confidence| weighted by the bin's share of images; in [0, 1]."""
    y_true, y_prob, _ = _check_inputs(y_true, y_prob)
    n_bins = check_int("n_bins", n_bins, 1)
    confidence, correct, bins = _confidence_bins(y_true, y_prob, n_bins)
    counts = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, weights=correct.astype(np.float64), minlength=n_bins)
                 - np.bincount(bins, weights=confidence, minlength=n_bins))
    # sum over bins of (n_b / N) * |acc_b - conf_b| = sum |correct_b - confidence_b| / N
    return float(gap[counts > 0].sum() / len(y_true))


def classification_report(y_true: ArrayLike, y_prob: ArrayLike, classes: tuple[str, ...]) -> dict:
    """Every test-set metric the book reports, as a JSON-serialisable dict.

    Keys: ``n``, ``classes``, ``absent_classes`` (the codes with no image in ``y_true``, e.g. ``["bkl"]`` for
    PH2; usually ``[]``), ``accuracy``, ``balanced_accuracy`` (mean recall over the classes present),
    ``per_class`` (``{code: {precision, recall, specificity, f1, support}}``, ``zero_division=0``), ``macro``
    (precision, recall, F1 and specificity averaged over the classes present, named in its ``classes``),
    ``weighted`` (by support), ``confusion_matrix`` (rows true), ``roc_auc_ovr`` (``{"per_class": {code: AUC or
    None}, "macro"}``, None for a class absent from ``y_true`` or covering it), ``ece`` (15 bins) and ``log_loss``
    (nats). An absent class has no recall, F1 or AUC (None, not 0: there was nothing to find), and no precision
    unless the model predicted it (then 0: every such call was wrong); its specificity is still defined.
    """
    y_true, y_prob, classes = _check_inputs(y_true, y_prob, classes)
    y_pred = y_prob.argmax(axis=1)
    labels = list(range(y_prob.shape[1]))
    # labels=range(K): a class absent from y_true and y_pred still gets a row, column and per-class entry.
    confusion = skm.confusion_matrix(y_true, y_pred, labels=labels)
    precision, recall, f1, support = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                                         zero_division=0)
    specificity = specificity_per_class(confusion)
    present = [k for k in labels if support[k] > 0]
    predicted = np.bincount(y_pred, minlength=len(labels))
    averages = {}
    # An absent class's recall 0 would be a figure about images that do not exist: macro means leave it out.
    for average, over in (("macro", present), ("weighted", labels)):
        p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=over, average=average,
                                                         zero_division=0)
        averages[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    averages["macro"]["specificity"] = float(specificity[present].mean())
    averages["macro"]["classes"] = [classes[k] for k in present]
    # AUC needs positives and negatives; None rather than NaN keeps the report valid JSON.
    auc = {code: None if (y_true == k).all() or not (y_true == k).any()
           else float(skm.roc_auc_score(y_true == k, y_prob[:, k])) for k, code in enumerate(classes)}
    defined = [v for v in auc.values() if v is not None]
    return {
        "n": len(y_true), "classes": list(classes),
        "absent_classes": [code for k, code in enumerate(classes) if support[k] == 0],
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        # scikit-learn's balanced accuracy: the mean recall over the classes present in y_true.
        "balanced_accuracy": float(recall[support > 0].mean()),
        "per_class": {code: {"precision": float(precision[k]) if support[k] or predicted[k] else None,
                             "recall": float(recall[k]) if support[k] else None,
                             "specificity": float(specificity[k]), "f1": float(f1[k]) if support[k] else None,
                             "support": int(support[k])}
                      for k, code in enumerate(classes)},
        **averages,  # "macro", "weighted"
        "confusion_matrix": confusion.astype(int).tolist(),
        "roc_auc_ovr": {"per_class": auc, "macro": float(np.mean(defined)) if defined else None},
        "ece": expected_calibration_error(y_true, y_prob),
        "log_loss": float(skm.log_loss(y_true, y_prob, labels=labels)),
    }


def report_table(report: dict, classes: tuple[str, ...]) -> pd.DataFrame:
    """Per-class table of a :func:`classification_report` for a notebook: rows by display name in the order of
    ``classes``, columns ``code, precision, recall, specificity, f1, support``; a figure the report leaves undefined
    (a class with no image in the set has no recall or F1) is NaN, which the book shows as a dash."""
    classes = _check_classes(classes)
    try:
        per_class = report["per_class"]
    except (TypeError, KeyError):
        message = "report: need the dict returned by classification_report (it has no 'per_class')."
        raise ParameterError(message) from None
    missing = [c for c in classes if c not in per_class]
    if missing:
        raise ParameterError(f"report: has no per-class entry for {missing}; it holds {list(per_class)}.")
    columns = ["precision", "recall", "specificity", "f1", "support"]
    table = pd.DataFrame([{"code": code, **{c: per_class[code][c] for c in columns}} for code in classes],
                         index=pd.Index([CLASSES[code].name for code in classes], name="class"))
    # float, not object, even when a column is all None (NaN), so the table sorts and plots like any other.
    return table.astype({**{c: float for c in columns[:-1]}, "support": int})


def absent_classes_note(report: dict) -> str | None:
    """The note a table or printout of ``report`` needs when its set lacks a class, e.g. ``"no bkl image in this
    set: bkl has no recall, F1 or AUC; macro figures average over mel, nv"``; None when every class has images.
    A report written before ``absent_classes`` existed is read by its supports."""
    absent = report.get("absent_classes")
    if absent is None:
        absent = [code for code, values in report["per_class"].items() if values["support"] == 0]
    if not absent:
        return None
    names = " or ".join(absent)
    present = [code for code in report["classes"] if code not in absent]
    return (f"no {names} image in this set: {names} {'has' if len(absent) == 1 else 'have'} no recall, F1 or AUC; "
            f"macro figures average over {', '.join(present)}")


def confusion_scores(confusion: ArrayLike, classes: tuple[str, ...] | list[str]) -> dict[str, float]:
    """Accuracy, balanced accuracy (over classes present) and ``recall_<code>`` (NaN for a class without images)
    from a ``(K, K)`` count matrix, rows true, by the bootstrap's formula (:func:`_metrics_from_confusions`); the
    trainer scores each epoch so."""
    matrix = np.asarray(confusion, dtype=np.float64)
    if matrix.shape != (len(classes), len(classes)):
        raise ParameterError(f"confusion: need a ({len(classes)}, {len(classes)}) count matrix for classes "
                             f"{list(classes)}, got shape {matrix.shape}.")
    scores = _metrics_from_confusions(matrix[None], matrix.sum(axis=1) > 0)
    return {"accuracy": float(scores["accuracy"][0]), "balanced_accuracy": float(scores["balanced_accuracy"][0]),
            **{f"recall_{code}": float(r) for code, r in zip(classes, scores["recall"][0])}}


def summary_row(name: str, report: dict) -> dict:
    """One results-table row (images, accuracy, balanced accuracy and its interval, recalls) of a report."""
    ci = report["bootstrap"]["balanced_accuracy"]
    return {"result": name, "test_images": report["n"], "accuracy": report["accuracy"],
            "balanced_accuracy": report["balanced_accuracy"], "balanced_accuracy_low": ci["low"],
            "balanced_accuracy_high": ci["high"],
            **{f"recall_{code}": v["recall"] for code, v in report["per_class"].items()}}


# ---------- Uncertainty: bootstrap confidence intervals


def _resampled_indices(n: int, n_boot: int, seed: int):
    """Yield blocks of bootstrap index rows (each row: n indices drawn with replacement), n_boot rows in all."""
    rng = np.random.default_rng(seed)
    rows_per_block = max(1, _BOOTSTRAP_CHUNK_ENTRIES // n)
    for start in range(0, n_boot, rows_per_block):
        yield rng.integers(0, n, size=(min(rows_per_block, n_boot - start), n))


def _bootstrap_scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, n_boot: int,
                      seed: int) -> dict[str, np.ndarray]:
    """:func:`_metrics_from_confusions` of the test set itself (row 0, the estimates) and of its ``n_boot``
    bootstrap resamples (rows 1 on), their confusion matrices counted without a Python loop; macro F1 over the
    classes present in ``y_true`` (a resample that happens to lack one of them still counts its F1)."""
    pair = y_true * n_classes + y_pred  # one code per (true, predicted) cell
    cells = n_classes * n_classes
    blocks = []
    for indices in itertools.chain([np.arange(len(y_true))[None]], _resampled_indices(len(y_true), n_boot, seed)):
        # Offset each resample's codes so one bincount counts all resamples of the block at once.
        codes = pair[indices] + (np.arange(len(indices)) * cells)[:, None]
        blocks.append(np.bincount(codes.ravel(), minlength=len(indices) * cells)
                      .reshape(len(indices), n_classes, n_classes))
    return _metrics_from_confusions(np.concatenate(blocks), np.bincount(y_true, minlength=n_classes) > 0)


def _metrics_from_confusions(confusions: np.ndarray, present: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy, macro F1 ``(B,)`` and recall ``(B, K)`` (NaN for a class a resample lacks) of
    ``(B, K, K)`` confusion matrices, defined as scikit-learn does; the macro F1 averages over the classes
    ``present`` (a ``(K,)`` mask: those with an image in the set that was resampled)."""
    confusions = confusions.astype(np.float64)
    true_positive = np.diagonal(confusions, axis1=1, axis2=2)
    actual, predicted = confusions.sum(axis=2), confusions.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an empty matrix: no class present, balanced accuracy NaN
        recall = np.where(actual > 0, true_positive / np.where(actual > 0, actual, 1), np.nan)
        # F1 = 2TP / (2TP + FP + FN), 0 for a class neither present nor predicted (zero_division=0); the macro
        # mean runs over the classes of the set, as in classification_report.
        seen = (actual + predicted) > 0
        f1 = np.where(seen, 2 * true_positive / np.where(seen, actual + predicted, 1), 0.0)
        return {"accuracy": true_positive.sum(axis=1) / np.maximum(confusions.sum(axis=(1, 2)), 1),  # 0 if empty
                # sklearn's balanced accuracy averages recall over the classes present in y_true.
                "balanced_accuracy": np.nanmean(recall, axis=1), "macro_f1": f1[:, present].mean(axis=1),
                "recall": recall}


def _interval(estimate: float | None, samples: np.ndarray, confidence: float, n_boot: int) -> dict:
    """Percentile interval of the finite bootstrap samples around ``estimate``."""
    finite = samples[np.isfinite(samples)]
    alpha = 1 - confidence
    if estimate is not None:
        estimate = float(estimate) if np.isfinite(estimate) else None  # None (undefined) keeps the result valid JSON
    if estimate is None or finite.size == 0:
        low = high = None
    else:
        low, high = (float(v) for v in np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)]))
    return {"estimate": estimate, "low": low, "high": high, "n_boot": n_boot, "confidence": confidence}


def bootstrap_ci(y_true: ArrayLike, y_prob_or_pred: ArrayLike, metric: str | Callable[[np.ndarray, np.ndarray], float],
                 n_boot: int = 1000, confidence: float = 0.95, seed: int = 0, *,
                 classes: tuple[str, ...] | None = None) -> dict:
    """Percentile-bootstrap interval of a metric over ``n_boot`` seeded resamples of the test images.

    ``y_prob_or_pred``: probabilities ``(N, K)`` or labels ``(N,)``. ``metric``: one of :data:`BOOTSTRAP_METRICS`
    (``"recall:<code>"`` needs ``classes``; macro F1 over the classes present in ``y_true``) or
    ``metric(y_true, y_prob_or_pred) -> float``. Returns ``{"estimate", "low", "high", "n_boot", "confidence"}``,
    NaN resamples left out."""
    n_boot, confidence, seed = _check_bootstrap_args(n_boot, confidence, seed)
    y_true = _check_labels(y_true, "y_true")

    if callable(metric):
        values = np.asarray(y_prob_or_pred)
        if values.ndim == 2:
            values = _check_probabilities(values, "y_prob_or_pred", len(y_true))
        elif values.ndim != 1 or len(values) != len(y_true):
            raise ParameterError(f"y_prob_or_pred: need {len(y_true)} rows like y_true, got shape {values.shape}.")
        samples = np.array([float(metric(y_true[rows], values[rows]))
                            for indices in _resampled_indices(len(y_true), n_boot, seed) for rows in indices])
        return _interval(float(metric(y_true, values)), samples, confidence, n_boot)

    if not isinstance(metric, str) or not (metric in BOOTSTRAP_METRICS[:3] or metric.startswith("recall:")):
        raise ParameterError(f"metric: unknown {metric!r}; choose from {list(BOOTSTRAP_METRICS)} or pass a "
                             f"function metric(y_true, y_prob_or_pred) -> float.")
    values = np.asarray(y_prob_or_pred)
    if values.ndim == 2:
        y_prob = _check_probabilities(values, "y_prob_or_pred", len(y_true))
        y_pred, n_classes = y_prob.argmax(axis=1), y_prob.shape[1]
    else:
        y_pred, n_classes = _check_labels(values, "y_prob_or_pred"), None
        if len(y_pred) != len(y_true):
            raise ParameterError(f"y_prob_or_pred: has {len(y_pred)} entries but y_true has {len(y_true)}; "
                                 f"they must describe the same images.")
    if classes is not None:
        classes = _check_classes(classes, n_classes)
        n_classes = len(classes)
    class_index = None
    if metric.startswith("recall:"):
        code = metric.split(":", 1)[1]
        if classes is None:
            raise ParameterError(f"classes: needed to know which label is {code!r} for metric={metric!r}.")
        if code not in classes:
            raise ParameterError(f"metric: {metric!r} names a class not in classes {list(classes)}.")
        class_index = classes.index(code)
    if n_classes is None:
        n_classes = int(max(y_true.max(), y_pred.max())) + 1
    y_true = _check_labels(y_true, "y_true", n_classes)
    y_pred = _check_labels(y_pred, "y_prob_or_pred", n_classes)
    if class_index is not None and not np.any(y_true == class_index):
        raise ParameterError(f"metric: {metric!r} is undefined, y_true holds no image of class "
                             f"{classes[class_index]!r}.")
    scores = _bootstrap_scores(y_true, y_pred, n_classes, n_boot, seed)
    samples = scores["recall"][:, class_index] if class_index is not None else scores[metric]
    return _interval(samples[0], samples[1:], confidence, n_boot)


def bootstrap_report(y_true: ArrayLike, y_prob: ArrayLike, classes: tuple[str, ...], n_boot: int = 1000,
                     seed: int = 0, confidence: float = 0.95) -> dict:
    """Bootstrap intervals of the headline metrics from the same resamples: ``{"accuracy", "balanced_accuracy",
    "macro_f1": ci, "recall": {code: ci or None}}`` (:func:`bootstrap_ci` dicts; None for a class absent from
    ``y_true``, which the macro F1 leaves out too)."""
    n_boot, confidence, seed = _check_bootstrap_args(n_boot, confidence, seed)
    y_true, y_prob, classes = _check_inputs(y_true, y_prob, classes)
    # One set of resamples for every metric: the intervals then describe the same hypothetical test sets.
    scores = _bootstrap_scores(y_true, y_prob.argmax(axis=1), len(classes), n_boot, seed)
    report = {name: _interval(scores[name][0], scores[name][1:], confidence, n_boot) for name in BOOTSTRAP_METRICS[:3]}
    report["recall"] = {code: _interval(scores["recall"][0, k], scores["recall"][1:, k], confidence, n_boot)
                        if np.any(y_true == k) else None for k, code in enumerate(classes)}
    return report


# ---------- Comparisons


def mcnemar_test(y_true: ArrayLike, pred_a: ArrayLike, pred_b: ArrayLike) -> dict:
    """McNemar's test: do classifiers A and B have different error rates on the same test images?

    ``b``: A right, B wrong; ``c``: A wrong, B right. ``b + c < 25``: exact binomial (``"exact"``, min(b, c));
    else chi-square with continuity correction (``"chi2_continuity"``); none discordant: p = 1 (``"none"``)."""
    y_true = _check_labels(y_true, "y_true")
    pred_a, pred_b = _check_labels(pred_a, "pred_a"), _check_labels(pred_b, "pred_b")
    for name, values in (("pred_a", pred_a), ("pred_b", pred_b)):
        if len(values) != len(y_true):
            raise ParameterError(f"{name}: has {len(values)} predictions but y_true has {len(y_true)} labels; "
                                 f"both classifiers must be scored on the same test images.")
    right_a, right_b = pred_a == y_true, pred_b == y_true
    b, c = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    if b + c == 0:
        return {"b": 0, "c": 0, "statistic": 0.0, "p_value": 1.0, "method": "none"}
    if b + c < MCNEMAR_EXACT_BELOW:
        p_value = stats.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue
        return {"b": b, "c": c, "statistic": float(min(b, c)), "p_value": float(min(p_value, 1.0)),
                "method": "exact"}
    statistic = (abs(b - c) - 1) ** 2 / (b + c)
    return {"b": b, "c": c, "statistic": float(statistic), "p_value": float(stats.chi2.sf(statistic, df=1)),
            "method": "chi2_continuity"}


def majority_baseline(y_train: ArrayLike, y_test: ArrayLike, n_classes: int,
                      classes: tuple[str, ...] | None = None) -> dict:
    """Test scores of always predicting the most frequent training class (ties: lowest label): ``{"class_index",
    "class" (None without ``classes``), "n", "accuracy", "balanced_accuracy", "macro_f1"}``, balanced accuracy and
    macro F1 over the classes present in ``y_test``."""
    n_classes = check_int("n_classes", n_classes, 2)
    y_train = _check_labels(y_train, "y_train", n_classes)
    y_test = _check_labels(y_test, "y_test", n_classes)
    if classes is not None:
        classes = _check_classes(classes, n_classes)
    majority = int(np.argmax(np.bincount(y_train, minlength=n_classes)))
    confusion = skm.confusion_matrix(y_test, np.full_like(y_test, majority), labels=list(range(n_classes)))
    scores = _metrics_from_confusions(confusion[None], confusion.sum(axis=1) > 0)
    return {"class_index": majority, "class": classes[majority] if classes is not None else None, "n": len(y_test),
            **{name: float(scores[name][0]) for name in BOOTSTRAP_METRICS[:3]}}


def pairwise_accuracy(y_true: ArrayLike, y_prob: ArrayLike, a: int, b: int) -> dict:
    """Accuracy of telling class ``a`` from ``b`` alone, over the test images of those two classes, predicting the
    one of the two with the higher probability (the paper: about 0.80 for nevus vs seborrheic keratosis)."""
    y_prob = np.asarray(y_prob, dtype=np.float64)
    y_true = _check_labels(y_true, "y_true", y_prob.shape[1] if y_prob.ndim == 2 else None)
    y_prob = _check_probabilities(y_prob, "y_prob", len(y_true))
    for name, value in (("a", a), ("b", b)):
        if not isinstance(value, (int, np.integer)) or not 0 <= value < y_prob.shape[1]:
            raise ParameterError(f"{name}: need a class index in 0..{y_prob.shape[1] - 1}, got {value!r}.")
    if a == b:
        raise ParameterError(f"a and b: need two different classes, got {a} twice.")
    keep = (y_true == a) | (y_true == b)
    if not keep.any():
        raise ParameterError(f"y_true: holds no image of class {a} or {b}.")
    predicted = np.where(y_prob[keep, a] >= y_prob[keep, b], a, b)
    return {"n": int(keep.sum()), "accuracy": float((predicted == y_true[keep]).mean())}


def report_with_intervals(y_true: ArrayLike, y_prob: ArrayLike, classes: tuple[str, ...], n_boot: int = 1000,
                          seed: int = 0) -> dict:
    """:func:`classification_report` with its ``"bootstrap"`` intervals (:func:`bootstrap_report` and
    :func:`bootstrap_scores`): what every ``metrics.json`` holds."""
    report = classification_report(y_true, y_prob, classes)
    report["bootstrap"] = bootstrap_report(y_true, y_prob, classes, n_boot=n_boot, seed=seed)
    report["bootstrap"].update(bootstrap_scores(y_true, y_prob, classes, n_boot=n_boot, seed=seed))
    return report


# ---------- Beyond one test set: intervals of AUC and precision, calibration, clinical operating points


def bootstrap_scores(y_true: ArrayLike, y_prob: ArrayLike, classes: tuple[str, ...], n_boot: int = 1000,
                     seed: int = 0, confidence: float = 0.95) -> dict:
    """Bootstrap intervals of each class's precision and one-vs-rest ROC AUC and of the macro AUC (over classes
    present): ``{"precision": {code: ci}, "roc_auc": {code: ci}, "macro_auc": ci}``, None where undefined."""
    n_boot, confidence, seed = _check_bootstrap_args(n_boot, confidence, seed)
    # The estimates from the inputs as given: normalising twice moves the last bit and breaks exact ties either way,
    # so the estimate would differ from classification_report's for the same predictions.
    full = classification_report(y_true, y_prob, classes)
    y_true, y_prob, classes = _check_inputs(y_true, y_prob, classes)
    y_pred = y_prob.argmax(axis=1)
    k, n = len(classes), len(y_true)
    rows = np.concatenate(list(_resampled_indices(n, n_boot, seed)))  # (n_boot, n)
    truth, predicted = y_true[rows], y_pred[rows]
    precision, auc = np.full((n_boot, k), np.nan), np.full((n_boot, k), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        for c in range(k):
            flagged, positive = predicted == c, truth == c
            precision[:, c] = (flagged & positive).sum(1) / flagged.sum(1)
            # AUC by ranks (Mann-Whitney), every resample at once; ties share their mean rank as in scikit-learn.
            ranks = stats.rankdata(y_prob[rows, c], axis=1)
            n_pos = positive.sum(1)
            auc[:, c] = ((ranks * positive).sum(1) - n_pos * (n_pos + 1) / 2) / (n_pos * (n - n_pos))
    auc[~np.isfinite(auc)] = np.nan
    present = [c for c in range(k) if np.any(y_true == c)]
    ovr = full["roc_auc_ovr"]["per_class"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # resamples without a class give NaN columns
        macro_samples = np.nanmean(auc[:, present], axis=1)
    return {
        "precision": {code: _interval(full["per_class"][code]["precision"], precision[:, c], confidence, n_boot)
                      if np.any(y_pred == c) else None for c, code in enumerate(classes)},
        "roc_auc": {code: _interval(ovr[code], auc[:, c], confidence, n_boot) if ovr[code] is not None else None
                    for c, code in enumerate(classes)},
        "macro_auc": _interval(full["roc_auc_ovr"]["macro"], macro_samples, confidence, n_boot),
    }


def reliability_bins(y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = ECE_BINS) -> list[dict]:
    """Reliability-diagram data: per equal-width confidence bin its ``low``/``high`` edges, image count ``n``, mean
    ``confidence`` and ``accuracy`` (None in an empty bin)."""
    y_true, y_prob, _ = _check_inputs(y_true, y_prob, in_range=False)
    n_bins = check_int("n_bins", n_bins, 1)
    confidence, correct, bins = _confidence_bins(y_true, y_prob, n_bins)
    return [{"low": b / n_bins, "high": (b + 1) / n_bins, "n": int(np.sum(bins == b)),
             "confidence": float(confidence[bins == b].mean()) if np.any(bins == b) else None,
             "accuracy": float(correct[bins == b].mean()) if np.any(bins == b) else None} for b in range(n_bins)]


def fit_temperature(y_true: ArrayLike, y_prob: ArrayLike) -> float:
    """Temperature scaling (Guo et al. 2017): the T > 0 minimising the log loss of ``softmax(log p / T)`` (fit on
    validation, carried unchanged; T > 1 softens overconfidence, argmax never changes)."""
    y_true, y_prob, _ = _check_inputs(y_true, y_prob, in_range=False)
    labels = list(range(y_prob.shape[1]))

    def loss(log_t: float) -> float:
        return float(skm.log_loss(y_true, apply_temperature(y_prob, np.exp(log_t)), labels=labels))

    return float(np.exp(minimize_scalar(loss, bounds=(-3, 3), method="bounded").x))


def apply_temperature(y_prob: ArrayLike, temperature: float) -> np.ndarray:
    """Probabilities softened (T > 1) or sharpened (T < 1) by a temperature, as ``softmax(log p / T)``."""
    if not temperature > 0:
        raise ParameterError(f"temperature: expected a positive number, got {temperature!r}.")
    return apply_temperature_to_logits(np.log(np.clip(np.asarray(y_prob, float), 1e-12, 1.0)), temperature)


def apply_temperature_to_logits(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Row-wise ``softmax(logits / temperature)``."""
    return softmax(logits / temperature, axis=1)


def threshold_for_sensitivity(positive: ArrayLike, scores: ArrayLike, sensitivity: float) -> float:
    """The highest threshold whose rule ``score >= threshold`` finds at least ``sensitivity`` of the positives."""
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if not 0 < sensitivity <= 1 or not positive.any():
        raise ParameterError(f"sensitivity: need a target in (0, 1] and at least one positive image, got "
                             f"{sensitivity!r} with {int(positive.sum())} positives.")
    ranked = np.sort(scores[positive])[::-1]
    return float(ranked[int(np.ceil(sensitivity * len(ranked))) - 1])


def operating_point(positive: ArrayLike, scores: ArrayLike, threshold: float, n_boot: int = 1000,
                    seed: int = 0, confidence: float = 0.95) -> dict:
    """Sensitivity and specificity of ``score >= threshold``, each with a bootstrap interval:
    ``{"threshold", "n", "positives", "sensitivity": ci, "specificity": ci}``."""
    n_boot, confidence, seed = _check_bootstrap_args(n_boot, confidence, seed)
    positive = np.asarray(positive, dtype=bool)
    flagged = np.asarray(scores, dtype=np.float64) >= threshold
    # Row 0 is the test set itself (its rates are the estimates), the others the resamples.
    rows = np.concatenate([np.arange(len(positive))[None], *_resampled_indices(len(positive), n_boot, seed)])
    pos, flag = positive[rows], flagged[rows]
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN in a row without positives (negatives)
        sensitivity = (pos & flag).sum(1) / pos.sum(1)
        specificity = (~pos & ~flag).sum(1) / (~pos).sum(1)
    return {"threshold": float(threshold), "n": int(len(positive)), "positives": int(positive.sum()),
            "sensitivity": _interval(sensitivity[0], sensitivity[1:], confidence, n_boot),
            "specificity": _interval(specificity[0], specificity[1:], confidence, n_boot)}


__all__ = [
    "absent_classes_note", "apply_temperature", "bootstrap_ci", "bootstrap_scores", "fit_temperature",
    "operating_point", "reliability_bins", "threshold_for_sensitivity", "confusion_scores", "summary_row",
    "pairwise_accuracy", "bootstrap_report", "classification_report", "expected_calibration_error", "majority_baseline",
    "mcnemar_test", "report_table", "report_with_intervals", "specificity_per_class",
]
