"""How good is a classifier on the test set, how sure can we be, and is it better than another one?

Everything here takes numpy arrays of integer labels (``y_true``, shape ``(N,)``, values ``0..K-1`` in the order
of ``classes``) and predicted probabilities (``y_prob``, shape ``(N, K)``, rows summing to 1, e.g. a softmax), and
returns plain Python numbers, dicts or a pandas table, so results can be written to JSON and shown in the book.
The prediction for an image is the class with the highest probability (``argmax``).

- :func:`classification_report`: accuracy, balanced accuracy (the paper's "average accuracy", 0.65 there),
  per-class precision / recall (sensitivity) / specificity / F1, their macro and weighted averages, the confusion
  matrix, one-vs-rest ROC AUC, expected calibration error and log loss.
- :func:`bootstrap_ci` / :func:`bootstrap_report`: percentile-bootstrap confidence intervals over test images. On a
  test set of a few hundred images, like the paper's, an accuracy of 0.65 is only known to about +/- 0.045.
- :func:`mcnemar_test`: are two classifiers' error rates on the same test images different?
- :func:`majority_baseline`: the score of always answering the most common training class, the number a model
  must beat (on HAM10000 "always nevus" is right 67 % of the time).
- :func:`report_table`: per-class rows for a notebook.

Scikit-learn computes every metric it has; this module adds input checks, specificity, calibration error, the
bootstrap and McNemar's test.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    recall_score,
    roc_auc_score,
)

from .data.ham10000 import validate_classes
from .errors import ParameterError
from .info import CLASSES

ECE_BINS = 15
BOOTSTRAP_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "recall:<code>")
# Rows of probabilities may miss 1 by float32 / float16 rounding of a softmax; more than this is not a probability.
ROW_SUM_TOLERANCE = 1e-3
# A McNemar test with fewer discordant pairs than this uses the exact binomial test (the chi-square approximation is
# poor for small counts).
MCNEMAR_EXACT_BELOW = 25
# Resampled index matrices are built this many entries at a time, so memory stays small for large test sets.
_BOOTSTRAP_CHUNK_ENTRIES = 2_000_000


# ----------------------------------------------------------------------------------------------------------------
# Input checks


def _check_labels(values, name: str, n_classes: int | None = None) -> np.ndarray:
    """``values`` as a 1-D int64 array of class indices, in ``0..n_classes-1`` when ``n_classes`` is given."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ParameterError(f"{name}: need a 1-D array of integer class labels, got shape {array.shape}.")
    if array.size == 0:
        raise ParameterError(f"{name}: is empty; need at least one label.")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise ParameterError(f"{name}: need integer class labels, got non-integer values such as "
                             f"{array[~(np.isfinite(array) & (array == np.round(array)))][0]!r}.")
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


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ParameterError(f"{name}: need an integer >= {minimum}, got {value!r}.")
    return int(value)


# ----------------------------------------------------------------------------------------------------------------
# Single metrics


def _check_report_inputs(y_true, y_prob, classes) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Labels, probabilities and class codes that agree with each other."""
    y_true = _check_labels(y_true, "y_true")
    y_prob = _check_probabilities(y_prob, "y_prob", len(y_true))
    classes = _check_classes(classes, y_prob.shape[1])
    return _check_labels(y_true, "y_true", y_prob.shape[1]), y_prob, classes


def specificity_per_class(confusion: ArrayLike) -> np.ndarray:
    """Specificity (true-negative rate) of each class, one-vs-rest, from a confusion matrix.

    ``confusion`` is a ``(K, K)`` count matrix with true classes as rows and predicted classes as columns (what
    ``sklearn.metrics.confusion_matrix`` returns). For class k, specificity = TN / (TN + FP): of the images that are
    *not* k, the fraction not predicted as k. Returns a float array of shape ``(K,)``, values in [0, 1]; a class with
    no negative images (every image is that class) gets 0, as scikit-learn's ``zero_division=0`` does for recall.
    """
    matrix = np.asarray(confusion)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 2:
        raise ParameterError(f"confusion: need a square (K, K) count matrix with K >= 2, got shape {matrix.shape}.")
    if not np.all(np.isfinite(matrix)) or matrix.min() < 0:
        raise ParameterError("confusion: counts must be finite and non-negative.")
    matrix = matrix.astype(np.float64)
    total = matrix.sum()
    true_positive = np.diag(matrix)
    false_positive = matrix.sum(axis=0) - true_positive
    negatives = total - matrix.sum(axis=1)  # TN + FP
    true_negative = negatives - false_positive
    return np.divide(true_negative, negatives, out=np.zeros_like(negatives), where=negatives > 0)


def expected_calibration_error(y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error (ECE) of the top-label confidence, in [0, 1] (0 = perfectly calibrated).

    ``y_true``: int labels ``(N,)``; ``y_prob``: probabilities ``(N, K)``. Each image's confidence is its highest
    probability; images are grouped into ``n_bins`` equal-width confidence bins (0, 1/n], (1/n, 2/n], ...; in each bin
    the accuracy is compared with the mean confidence, and the gaps are averaged weighted by the bin's share of
    images (Guo et al. 2017, "On calibration of modern neural networks", with 15 bins). A model that says "90 %" and
    is right 70 % of the time in that bin adds 0.2 x (share of images in the bin).
    """
    y_true = _check_labels(y_true, "y_true")
    y_prob = _check_probabilities(y_prob, "y_prob", len(y_true))
    y_true = _check_labels(y_true, "y_true", y_prob.shape[1])
    n_bins = _check_int(n_bins, "n_bins", 1)
    confidence = y_prob.max(axis=1)
    correct = (y_prob.argmax(axis=1) == y_true).astype(np.float64)
    # Bin b holds confidences in (b/n, (b+1)/n]; ceil puts a value on an edge into the lower bin.
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, weights=correct, minlength=n_bins)
                 - np.bincount(bins, weights=confidence, minlength=n_bins))
    # sum over bins of (n_b / N) * |acc_b - conf_b| = sum |correct_b - confidence_b| / N
    return float(gap[counts > 0].sum() / len(y_true))


def _roc_auc_one_vs_rest(y_true: np.ndarray, y_prob: np.ndarray, classes: tuple[str, ...]) -> dict:
    """Per-class one-vs-rest ROC AUC and their mean; None where a class has no positive or no negative image."""
    per_class: dict[str, float | None] = {}
    for k, code in enumerate(classes):
        positive = y_true == k
        # AUC needs both positives and negatives; None rather than NaN keeps the report valid JSON.
        if positive.all() or not positive.any():
            per_class[code] = None
        else:
            per_class[code] = float(roc_auc_score(positive, y_prob[:, k]))
    defined = [v for v in per_class.values() if v is not None]
    return {"per_class": per_class, "macro": float(np.mean(defined)) if defined else None}


def classification_report(y_true: ArrayLike, y_prob: ArrayLike, classes: tuple[str, ...]) -> dict:
    """Every test-set metric the book reports, as a JSON-serialisable dict.

    Inputs: ``y_true`` int labels ``(N,)`` indexing ``classes``; ``y_prob`` probabilities ``(N, K)`` (rows sum to 1);
    ``classes`` the K dx codes in column order, e.g. ``("mel", "nv", "bkl")``. Predictions are ``argmax(y_prob)``.

    Returns (all fractions in [0, 1] unless said otherwise):

    - ``n``: number of test images; ``classes``: the codes.
    - ``accuracy``: fraction of images predicted correctly.
    - ``balanced_accuracy``: mean recall over the classes present in ``y_true`` (the paper's "average accuracy",
      0.65 there); unlike accuracy it is not inflated by the majority class.
    - ``per_class``: ``{code: {precision, recall, specificity, f1, support}}``; recall is sensitivity, support the
      number of true images of the class (int). A class never predicted gets precision 0 (``zero_division=0``).
    - ``macro``: unweighted mean over all K classes of precision, recall, f1 and specificity. A class absent from
      ``y_true`` counts with recall 0 here, so macro recall can then be lower than ``balanced_accuracy``.
    - ``weighted``: precision, recall, f1 averaged with weights = support.
    - ``confusion_matrix``: K x K list of lists of counts, rows true class, columns predicted class.
    - ``roc_auc_ovr``: ``{"per_class": {code: AUC or None}, "macro": mean of the defined ones or None}``; None
      where a class has no image in ``y_true`` (or every image is that class).
    - ``ece``: expected calibration error, 15 equal-width bins of top-label confidence.
    - ``log_loss``: mean cross-entropy in nats (natural log); 0 is perfect, ln(K) is a uniform guess.
    """
    y_true, y_prob, classes = _check_report_inputs(y_true, y_prob, classes)
    n_classes = y_prob.shape[1]
    y_pred = y_prob.argmax(axis=1)
    labels = list(range(n_classes))

    # labels=range(K): a class absent from y_true and y_pred still gets a row, column and per-class entry.
    confusion = confusion_matrix(y_true, y_pred, labels=labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    specificity = specificity_per_class(confusion)
    averages = {}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0)
        averages[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    averages["macro"]["specificity"] = float(specificity.mean())

    with warnings.catch_warnings():
        # Predictions of a class absent from y_true are expected here; balanced accuracy ignores that class.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        balanced = balanced_accuracy_score(y_true, y_pred)

    return {
        "n": len(y_true),
        "classes": list(classes),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced),
        "per_class": {
            code: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "specificity": float(specificity[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
            }
            for k, code in enumerate(classes)
        },
        "macro": averages["macro"],
        "weighted": averages["weighted"],
        "confusion_matrix": confusion.astype(int).tolist(),
        "roc_auc_ovr": _roc_auc_one_vs_rest(y_true, y_prob, classes),
        "ece": expected_calibration_error(y_true, y_prob),
        "log_loss": float(log_loss(y_true, y_prob, labels=labels)),
    }


def report_table(report: dict, classes: tuple[str, ...]) -> pd.DataFrame:
    """Per-class table of a :func:`classification_report`, one row per class, for a notebook to show.

    Rows are indexed by display name (``info.CLASSES[code].name``), in the order of ``classes``; columns are
    ``code, precision, recall, specificity, f1, support`` (fractions in [0, 1]; support is a count of images).
    """
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
    table = pd.DataFrame(
        [{"code": code, **{column: per_class[code][column] for column in columns}} for code in classes],
        index=pd.Index([CLASSES[code].name for code in classes], name="class"),
    )
    return table.astype({"support": int})


def confusion_scores(confusion: ArrayLike, classes: tuple[str, ...] | list[str]) -> dict[str, float]:
    """Accuracy, balanced accuracy and ``recall_<code>`` per class from a ``(K, K)`` count matrix (rows true,
    columns predicted), as scikit-learn defines them: balanced accuracy averages the recall of the classes present,
    and a class without images gets recall NaN. The trainer scores every epoch with it."""
    matrix = np.asarray(confusion, dtype=np.float64)
    if matrix.shape != (len(classes), len(classes)):
        raise ParameterError(f"confusion: need a ({len(classes)}, {len(classes)}) count matrix for classes "
                             f"{list(classes)}, got shape {matrix.shape}.")
    support = matrix.sum(axis=1)
    recall = np.divide(np.diag(matrix), support, out=np.full(len(classes), np.nan), where=support > 0)
    return {"accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)),
            "balanced_accuracy": float(np.nanmean(recall)) if (support > 0).any() else float("nan"),
            **{f"recall_{code}": float(r) for code, r in zip(classes, recall)}}


def summary_row(name: str, report: dict) -> dict:
    """One result as a results table shows it: test images, accuracy, balanced accuracy with its bootstrap
    interval, and each class's recall, from a :func:`report_with_intervals` report."""
    ci = report["bootstrap"]["balanced_accuracy"]
    return {"result": name, "test_images": report["n"], "accuracy": report["accuracy"],
            "balanced_accuracy": report["balanced_accuracy"], "balanced_accuracy_low": ci["low"],
            "balanced_accuracy_high": ci["high"],
            **{f"recall_{code}": v["recall"] for code, v in report["per_class"].items()}}


# ----------------------------------------------------------------------------------------------------------------
# Uncertainty: bootstrap confidence intervals


def _predictions(y_true: np.ndarray, y_prob_or_pred, name: str) -> tuple[np.ndarray, int | None]:
    """Predicted labels from probabilities ``(N, K)`` (argmax) or labels ``(N,)``; K when it is known."""
    array = np.asarray(y_prob_or_pred)
    if array.ndim == 2:
        y_prob = _check_probabilities(array, name, len(y_true))
        return y_prob.argmax(axis=1), y_prob.shape[1]
    y_pred = _check_labels(array, name)
    if len(y_pred) != len(y_true):
        raise ParameterError(f"{name}: has {len(y_pred)} entries but y_true has {len(y_true)}; "
                         f"they must describe the same images.")
    return y_pred, None


def _resampled_indices(n: int, n_boot: int, seed: int):
    """Yield blocks of bootstrap index rows (each row: n indices drawn with replacement), n_boot rows in all."""
    rng = np.random.default_rng(seed)
    rows_per_block = max(1, _BOOTSTRAP_CHUNK_ENTRIES // n)
    for start in range(0, n_boot, rows_per_block):
        yield rng.integers(0, n, size=(min(rows_per_block, n_boot - start), n))


def _bootstrap_confusions(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, n_boot: int,
                          seed: int) -> np.ndarray:
    """Confusion matrices ``(n_boot, K, K)`` of the bootstrap resamples, counted without a Python loop."""
    pair = y_true * n_classes + y_pred  # one code per (true, predicted) cell
    blocks = []
    for indices in _resampled_indices(len(y_true), n_boot, seed):
        rows = len(indices)
        # Offset each resample's codes so one bincount counts all resamples of the block at once.
        codes = pair[indices] + (np.arange(rows) * n_classes * n_classes)[:, None]
        blocks.append(np.bincount(codes.ravel(), minlength=rows * n_classes * n_classes)
                      .reshape(rows, n_classes, n_classes))
    return np.concatenate(blocks)


def _metrics_from_confusions(confusions: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy, macro F1 and per-class recall of each resample, defined as scikit-learn does.

    ``confusions`` is ``(B, K, K)``; returns arrays of shape ``(B,)`` (``recall``: ``(B, K)``, NaN where a resample
    holds no image of the class).
    """
    confusions = confusions.astype(np.float64)
    true_positive = np.diagonal(confusions, axis1=1, axis2=2)
    actual = confusions.sum(axis=2)
    predicted = confusions.sum(axis=1)
    n = confusions.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(actual > 0, true_positive / np.where(actual > 0, actual, 1), np.nan)
        # F1 = 2TP / (2TP + FP + FN), 0 for a class neither present nor predicted (zero_division=0); the macro
        # mean runs over all K classes, as in classification_report.
        seen = (actual + predicted) > 0
        f1 = np.where(seen, 2 * true_positive / np.where(seen, actual + predicted, 1), 0.0)
        return {
            "accuracy": true_positive.sum(axis=1) / n,
            # sklearn's balanced accuracy averages recall over the classes present in y_true.
            "balanced_accuracy": np.nanmean(recall, axis=1),
            "macro_f1": f1.mean(axis=1),
            "recall": recall,
        }


def _interval(estimate: float | None, samples: np.ndarray, confidence: float, n_boot: int) -> dict:
    """Percentile interval of the finite bootstrap samples around ``estimate``."""
    finite = samples[np.isfinite(samples)]
    alpha = 1 - confidence
    if estimate is not None and not np.isfinite(estimate):
        estimate = None  # an undefined metric; None keeps the result valid JSON
    if estimate is None or finite.size == 0:
        low = high = None
    else:
        low, high = (float(v) for v in np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)]))
    return {"estimate": estimate, "low": low, "high": high, "n_boot": n_boot, "confidence": confidence}


def _check_bootstrap_args(n_boot, confidence, seed) -> tuple[int, float, int]:
    n_boot = _check_int(n_boot, "n_boot", 1)
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not 0 < confidence < 1:
        raise ParameterError(f"confidence: need a number strictly between 0 and 1 (e.g. 0.95), got {confidence!r}.")
    seed = _check_int(seed, "seed", 0)
    return n_boot, float(confidence), seed


def bootstrap_ci(
    y_true: ArrayLike,
    y_prob_or_pred: ArrayLike,
    metric: str | Callable[[np.ndarray, np.ndarray], float],
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    *,
    classes: tuple[str, ...] | None = None,
) -> dict:
    """Percentile-bootstrap confidence interval of a test-set metric.

    The test images are resampled with replacement ``n_boot`` times (seeded, so the interval is reproducible); the
    metric is computed on each resample and the interval is the middle ``confidence`` share of those values. It
    measures how much the score would move with another test set of the same size from the same population; it
    does not cover changes of the training run.

    - ``y_true``: int labels ``(N,)``. ``y_prob_or_pred``: probabilities ``(N, K)`` (argmax is the prediction) or
      predicted int labels ``(N,)``.
    - ``metric``: ``"accuracy"``, ``"balanced_accuracy"``, ``"macro_f1"`` (scikit-learn's definitions; macro F1
      over all K classes as in :func:`classification_report`, K from ``y_prob``, ``classes`` or the labels) or
      ``"recall:<code>"`` (e.g. ``"recall:mel"``, melanoma sensitivity; needs ``classes``) -- these are computed for
      all resamples at once -- or any ``metric(y_true, y_prob_or_pred) -> float``, called once per resample with the
      resampled arrays (slower).
    - ``classes``: dx codes in label order, needed only for ``"recall:<code>"``.

    Returns ``{"estimate", "low", "high", "n_boot", "confidence"}``: the metric on the full test set, the interval's
    ends, the number of resamples and the confidence level. Resamples on which the metric is undefined (NaN, e.g. a
    recall when a resample holds no image of the class) are left out of the percentiles.
    """
    n_boot, confidence, seed = _check_bootstrap_args(n_boot, confidence, seed)
    y_true = _check_labels(y_true, "y_true")

    if callable(metric):
        values = np.asarray(y_prob_or_pred)
        if values.ndim == 2:
            values = _check_probabilities(values, "y_prob_or_pred", len(y_true))
        elif values.ndim != 1 or len(values) != len(y_true):
            raise ParameterError(f"y_prob_or_pred: need {len(y_true)} rows like y_true, got shape {values.shape}.")
        estimate = float(metric(y_true, values))
        samples = np.array([float(metric(y_true[rows], values[rows]))
                            for indices in _resampled_indices(len(y_true), n_boot, seed) for rows in indices])
        return _interval(estimate, samples, confidence, n_boot)

    if not isinstance(metric, str) or not (metric in BOOTSTRAP_METRICS[:3] or metric.startswith("recall:")):
        raise ParameterError(f"metric: unknown {metric!r}; choose from {list(BOOTSTRAP_METRICS)} or pass a "
                         f"function metric(y_true, y_prob_or_pred) -> float.")
    y_pred, n_classes = _predictions(y_true, y_prob_or_pred, "y_prob_or_pred")
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
    estimate = _full_sample_metric(metric, y_true, y_pred, n_classes, class_index)
    resampled = _metrics_from_confusions(_bootstrap_confusions(y_true, y_pred, n_classes, n_boot, seed))
    samples = resampled["recall"][:, class_index] if class_index is not None else resampled[metric]
    return _interval(estimate, samples, confidence, n_boot)


def _full_sample_metric(metric: str, y_true: np.ndarray, y_pred: np.ndarray, n_classes: int,
                        class_index: int | None = None) -> float:
    """A named metric on the whole test set, computed by scikit-learn (macro F1 over all ``n_classes``)."""
    if class_index is not None:
        return float(recall_score(y_true, y_pred, labels=[class_index], average="macro", zero_division=0))
    if metric == "accuracy":
        return float(accuracy_score(y_true, y_pred))
    if metric == "macro_f1":
        return float(f1_score(y_true, y_pred, labels=list(range(n_classes)), average="macro", zero_division=0))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(y_true, y_pred))


def bootstrap_report(y_true: ArrayLike, y_prob: ArrayLike, classes: tuple[str, ...], n_boot: int = 1000,
                     seed: int = 0, confidence: float = 0.95) -> dict:
    """Bootstrap confidence intervals of the headline metrics, all from the same resamples.

    Inputs as for :func:`classification_report`. Returns ``{"accuracy": ci, "balanced_accuracy": ci,
    "macro_f1": ci, "recall": {code: ci or None}}``, each ``ci`` a :func:`bootstrap_ci` dict
    (``estimate, low, high, n_boot, confidence``); a class with no image in ``y_true`` gets None.
    """
    n_boot, confidence, seed = _check_bootstrap_args(n_boot, confidence, seed)
    y_true, y_prob, classes = _check_report_inputs(y_true, y_prob, classes)
    n_classes = y_prob.shape[1]
    y_pred = y_prob.argmax(axis=1)
    # One set of resamples for every metric: the intervals then describe the same hypothetical test sets.
    resampled = _metrics_from_confusions(_bootstrap_confusions(y_true, y_pred, n_classes, n_boot, seed))
    report = {
        name: _interval(_full_sample_metric(name, y_true, y_pred, n_classes), resampled[name], confidence, n_boot)
        for name in ("accuracy", "balanced_accuracy", "macro_f1")
    }
    report["recall"] = {
        code: (_interval(_full_sample_metric("recall", y_true, y_pred, n_classes, k), resampled["recall"][:, k],
                         confidence, n_boot) if np.any(y_true == k) else None)
        for k, code in enumerate(classes)
    }
    return report


# ----------------------------------------------------------------------------------------------------------------
# Comparisons


def mcnemar_test(y_true: ArrayLike, pred_a: ArrayLike, pred_b: ArrayLike) -> dict:
    """McNemar's test: do classifiers A and B have different error rates on the same test images?

    Only the images where exactly one classifier is right carry information: ``b`` = A right and B wrong,
    ``c`` = A wrong and B right. Under "equally good", each such image is a fair coin flip. With ``b + c < 25``
    the two-sided exact binomial test is used (``method="exact"``, ``statistic`` = min(b, c)); otherwise the
    chi-square test with continuity correction, statistic (|b - c| - 1)^2 / (b + c) with 1 degree of freedom
    (``method="chi2_continuity"``). With no discordant image, ``p_value`` is 1 (``method="none"``).

    Inputs: int labels ``(N,)`` each, same images in the same order. Returns ``{"b", "c", "statistic",
    "p_value", "method"}``. A small p-value (e.g. < 0.05) says the difference is unlikely to be chance on this
    test set.
    """
    y_true = _check_labels(y_true, "y_true")
    pred_a = _check_labels(pred_a, "pred_a")
    pred_b = _check_labels(pred_b, "pred_b")
    for name, values in (("pred_a", pred_a), ("pred_b", pred_b)):
        if len(values) != len(y_true):
            raise ParameterError(f"{name}: has {len(values)} predictions but y_true has {len(y_true)} labels; "
                             f"both classifiers must be scored on the same test images.")
    right_a = pred_a == y_true
    right_b = pred_b == y_true
    b = int(np.sum(right_a & ~right_b))
    c = int(np.sum(~right_a & right_b))
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
    """Scores of always predicting the most frequent training class: the floor a model must beat.

    ``y_train``, ``y_test``: int labels; ``n_classes``: K. Ties go to the lowest label. Returns
    ``{"class_index", "class", "n", "accuracy", "balanced_accuracy", "macro_f1"}`` on the test set; ``class`` is
    the dx code when ``classes`` is given, else None. Always answering "nv" on a test set that is 75 % nevi scores
    accuracy 0.75 but balanced accuracy 1/K over the K classes present (1/3 for mel / nv / bkl).
    """
    n_classes = _check_int(n_classes, "n_classes", 2)
    y_train = _check_labels(y_train, "y_train", n_classes)
    y_test = _check_labels(y_test, "y_test", n_classes)
    if classes is not None:
        classes = _check_classes(classes, n_classes)
    majority = int(np.argmax(np.bincount(y_train, minlength=n_classes)))
    y_pred = np.full_like(y_test, majority)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        balanced = balanced_accuracy_score(y_test, y_pred)
    return {
        "class_index": majority,
        "class": classes[majority] if classes is not None else None,
        "n": len(y_test),
        "accuracy": float(accuracy_score(y_test, y_pred)),
        "balanced_accuracy": float(balanced),
        "macro_f1": float(f1_score(y_test, y_pred, labels=list(range(n_classes)), average="macro",
                                   zero_division=0)),
    }


def pairwise_accuracy(y_true: ArrayLike, y_prob: ArrayLike, a: int, b: int) -> dict:
    """Accuracy of telling class ``a`` from class ``b`` alone: over the test images of those two classes, the
    prediction is whichever of the two has the higher probability. The paper reports about 0.80 for nevus vs
    seborrheic keratosis this way (a two-class question inside the three-class model)."""
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
    """:func:`classification_report` with its ``"bootstrap"`` intervals (:func:`bootstrap_report`): what every
    ``metrics.json`` of a run, an evaluation or an ensemble holds."""
    report = classification_report(y_true, y_prob, classes)
    report["bootstrap"] = bootstrap_report(y_true, y_prob, classes, n_boot=n_boot, seed=seed)
    return report


__all__ = [
    "bootstrap_ci",
    "confusion_scores",
    "summary_row",
    "pairwise_accuracy",
    "bootstrap_report",
    "classification_report",
    "expected_calibration_error",
    "majority_baseline",
    "mcnemar_test",
    "report_table",
    "report_with_intervals",
    "specificity_per_class",
]
