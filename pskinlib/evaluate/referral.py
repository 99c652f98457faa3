"""Referral and biopsy: melanoma thresholds chosen on HAM10000 validation, applied unchanged elsewhere.

A clinic would use the melanoma score as a rule: refer (for biopsy) every case scoring at least the threshold. The
threshold is chosen once, on the run's HAM10000 validation predictions, for a target sensitivity
(:data:`REFERRAL_SENSITIVITIES`: 90 % and 95 %) by :func:`pskinlib.metrics.threshold_for_sensitivity`, the rule
external validation uses, and then carried unchanged to the test split and to each external set; nothing is chosen
on the images it is reported on.

:func:`referral_table` reports, for each threshold: the sensitivity, the specificity, the share of all cases
referred, and the number needed to biopsy (cases referred per melanoma found, so at least 1; missing (NaN) when
no melanoma is found), each with a percentile-bootstrap interval over the cases (resamples finding no melanoma are
left out of the number needed to biopsy's interval). :func:`validation_thresholds` chooses the thresholds and
:func:`run_referral` applies them to a run's test split and external sets.

The case counted is the image, as in a run's predictions (each image is one referral decision; images of other
collections are each their own lesion). With ``lesion_ids`` a case is a lesion instead, scored by the mean of its
images' melanoma scores (as :func:`pskinlib.evaluate.ensemble.average_by_lesion` does).
"""

from __future__ import annotations

import itertools
import numbers
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ..errors import ParameterError
from ..info import MELANOMA
from ..metrics import _check_bootstrap_args, _interval, _resampled_indices, threshold_for_sensitivity
from ..runs import RunRecord, scores_of
from .external_validation import INTERNAL

REFERRAL_SENSITIVITIES = (0.90, 0.95)
RATES = ("sensitivity", "specificity", "share_referred", "number_needed_to_biopsy")


def _target_name(sensitivity: float) -> str:
    """``0.9`` -> ``"90%"``: the key external validation gives a threshold."""
    return f"{sensitivity:.0%}"


def _check_cases(positive, scores, lesion_ids) -> tuple[np.ndarray, np.ndarray]:
    """Per case: whether it is a melanoma and its score; per lesion (mean score) when ``lesion_ids`` are given."""
    positive, scores = np.asarray(positive), np.asarray(scores)
    if positive.ndim != 1 or len(positive) == 0:
        raise ParameterError(f"positive: need a non-empty 1-D array (True for a melanoma), got shape "
                             f"{positive.shape}.")
    if positive.dtype != bool:
        if positive.dtype.kind not in "iuf" or not np.isin(positive, (0, 1)).all():
            raise ParameterError("positive: need True/False (or 1/0) per case, True for a melanoma.")
        positive = positive.astype(bool)
    if scores.shape != positive.shape:
        raise ParameterError(f"scores: need one melanoma score per case ({len(positive)}), got shape "
                             f"{scores.shape}.")
    if scores.dtype.kind not in "iuf" or not np.all(np.isfinite(scores)):
        raise ParameterError("scores: need finite numbers (the melanoma probability of each case).")
    scores = scores.astype(np.float64)
    if lesion_ids is None:
        return positive, scores
    lesion_ids = np.asarray(lesion_ids, dtype=object)
    if lesion_ids.shape != positive.shape or pd.isna(lesion_ids).any():
        raise ParameterError(f"lesion_ids: need one lesion id per image ({len(positive)}), none missing.")
    lesions = pd.DataFrame({"lesion": lesion_ids, "positive": positive, "score": scores}).groupby(
        "lesion", sort=False).agg(positive=("positive", "max"), mixed=("positive", "nunique"),
                                  score=("score", "mean"))
    if (lesions["mixed"] > 1).any():
        raise ParameterError(f"lesion_ids: lesion(s) {lesions.index[lesions['mixed'] > 1].tolist()[:5]} have "
                             "images both of melanoma and not; a lesion has one diagnosis.")
    return lesions["positive"].to_numpy(bool), lesions["score"].to_numpy(np.float64)


def _check_thresholds(thresholds) -> dict[str, float]:
    if not isinstance(thresholds, Mapping) or not thresholds:
        raise ParameterError(f"thresholds: need a non-empty dict of target -> threshold such as "
                             f"{{'90%': 0.21}}, got {thresholds!r}.")
    for target, value in thresholds.items():
        if (not isinstance(target, str) or isinstance(value, bool) or not isinstance(value, numbers.Real)
                or not np.isfinite(value)):
            raise ParameterError(f"thresholds: need text targets and finite numbers, got {target!r}: {value!r}.")
    return {target: float(value) for target, value in thresholds.items()}


def referral_table(positive: ArrayLike, scores: ArrayLike, thresholds: Mapping[str, float], *,
                   lesion_ids: ArrayLike | None = None, n_boot: int = 1000, seed: int = 0,
                   confidence: float = 0.95) -> pd.DataFrame:
    """What referring every case with ``score >= threshold`` does, for each threshold.

    ``positive`` ``(N,)``: True for a melanoma; ``scores`` ``(N,)``: the melanoma probability; ``thresholds``:
    target -> threshold (e.g. :func:`validation_thresholds`); ``lesion_ids`` ``(N,)``: count lesions (mean score of
    their images) instead of images.

    One row per target. Columns: ``target``, ``threshold``, ``n`` (cases), ``melanomas``, ``referred``,
    ``melanomas_found``, and ``sensitivity``, ``specificity``, ``share_referred`` (referred / n),
    ``number_needed_to_biopsy`` (referred / melanomas found), each with ``_low`` and ``_high`` (the ``confidence``
    percentile interval over ``n_boot`` resamples of the cases); NaN where undefined (no melanoma, none found).
    ``attrs["unit"]``: ``"images"`` or ``"lesions"``.
    """
    positive, scores = _check_cases(positive, scores, lesion_ids)
    thresholds = _check_thresholds(thresholds)
    n_boot, confidence, seed = _check_bootstrap_args(n_boot, confidence, seed)
    n = len(positive)
    # Counts per row (row 0: the cases themselves) of melanomas, and per threshold of referred and found.
    melanomas, referred, found = [], {t: [] for t in thresholds}, {t: [] for t in thresholds}
    # Row 0 is the cases themselves (the estimates), then the resamples operating_point draws.
    for rows in itertools.chain([np.arange(n)[None]], _resampled_indices(n, n_boot, seed)):
        melanoma_rows = positive[rows]
        melanomas.append(melanoma_rows.sum(1))
        for target, threshold in thresholds.items():
            referred_rows = scores[rows] >= threshold
            referred[target].append(referred_rows.sum(1))
            found[target].append((referred_rows & melanoma_rows).sum(1))
    melanomas = np.concatenate(melanomas).astype(np.float64)
    table = []
    for target, threshold in thresholds.items():
        flagged, hits = np.concatenate(referred[target]), np.concatenate(found[target])
        with np.errstate(invalid="ignore", divide="ignore"):  # NaN: no melanoma (or none found) in a resample
            rates = {"sensitivity": hits / melanomas,
                     "specificity": (n - melanomas - (flagged - hits)) / (n - melanomas),
                     "share_referred": flagged / n,
                     "number_needed_to_biopsy": np.where(hits > 0, flagged / np.maximum(hits, 1), np.nan)}
        row = {"target": target, "threshold": threshold, "n": n, "melanomas": int(melanomas[0]),
               "referred": int(flagged[0]), "melanomas_found": int(hits[0])}
        for name in RATES:
            interval = _interval(rates[name][0], rates[name][1:], confidence, n_boot)
            row.update({name: interval["estimate"], f"{name}_low": interval["low"], f"{name}_high": interval["high"]})
        table.append(row)
    result = pd.DataFrame(table).astype({f"{name}{end}": float for name in RATES for end in ("", "_low", "_high")})
    result.attrs["unit"] = "images" if lesion_ids is None else "lesions"
    return result


# ---------- A run: thresholds from validation, applied to test and external sets


def _melanoma_index(record: RunRecord) -> int:
    classes = record.classes
    if MELANOMA not in classes:
        raise ParameterError(f"run_dir: {record.path} was trained on {list(classes)}, without melanoma ('mel'); "
                             "referral needs a melanoma score.")
    return classes.index(MELANOMA)


def validation_thresholds(run_dir: str | os.PathLike,
                          sensitivities: Sequence[float] = REFERRAL_SENSITIVITIES) -> dict[str, float]:
    """``{"90%": threshold, "95%": threshold}``: for each target sensitivity the highest melanoma threshold that
    reaches it on the finished run's HAM10000 validation predictions (:func:`threshold_for_sensitivity`)."""
    if isinstance(sensitivities, (str, numbers.Real)) or not isinstance(sensitivities, Sequence) or not sensitivities:
        raise ParameterError(f"sensitivities: need a non-empty list of targets in (0, 1] such as (0.90, 0.95), got "
                             f"{sensitivities!r}.")
    for value in sensitivities:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
            raise ParameterError(f"sensitivities: each target must lie in (0, 1], got {value!r}.")
    names = [_target_name(s) for s in sensitivities]
    if len(set(names)) < len(names):
        raise ParameterError(f"sensitivities: {list(sensitivities)} name the same target twice ({names}).")
    record = RunRecord.open(run_dir, finished=True)
    melanoma = _melanoma_index(record)
    y_true, y_prob = record.scores("val", record.classes)
    if not np.any(y_true == melanoma):
        raise ParameterError(f"run_dir: {record.path}'s validation predictions hold no melanoma; no threshold can "
                             "be chosen.")
    return {name: threshold_for_sensitivity(y_true == melanoma, y_prob[:, melanoma], s)
            for name, s in zip(names, sensitivities)}


def recorded_external_sets(run_dir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The external sets the run was evaluated on (``pskin evaluate --external``), one per ``source_dataset`` of
    each recorded evaluation: name -> ``(y_true, y_prob)`` in the run's class order. A source that more than one
    evaluation holds is named ``"<evaluation>: <source>"``."""
    record = RunRecord.open(run_dir, finished=True)
    found = []
    for evaluation, result in record.evaluations().items():
        predictions = result.predictions()
        sources = (predictions["source_dataset"] if "source_dataset" in predictions
                   else pd.Series(evaluation, index=predictions.index))
        for source in dict.fromkeys(sources):
            found.append((evaluation, source, predictions[(sources == source).to_numpy()]))
    counts = pd.Series([source for _, source, _ in found]).value_counts()
    return {(source if counts[source] == 1 else f"{evaluation}: {source}"): scores_of(table, record.classes)
            for evaluation, source, table in found}


def run_referral(run_dir: str | os.PathLike, sets: Mapping[str, tuple[ArrayLike, ArrayLike]] | None = None, *,
                 sensitivities: Sequence[float] = REFERRAL_SENSITIVITIES, by_lesion: bool = False,
                 n_boot: int = 1000, seed: int = 0, confidence: float = 0.95) -> pd.DataFrame:
    """:func:`referral_table` of a finished run with the thresholds of :func:`validation_thresholds`, on its
    HAM10000 test split and on each external set: ``sets`` (name -> ``(y_true, y_prob)`` in the run's class
    order), by default the recorded ones (:func:`recorded_external_sets`).

    Columns: ``set``, ``unit`` (``images``; ``lesions`` for the test split with ``by_lesion``) and
    :func:`referral_table`'s; one row per set and target, the test split first."""
    _check_bootstrap_args(n_boot, confidence, seed)
    record = RunRecord.open(run_dir, finished=True)
    melanoma = _melanoma_index(record)
    thresholds = validation_thresholds(record, sensitivities)
    if sets is None:
        sets = recorded_external_sets(record)
    if not isinstance(sets, Mapping):
        raise ParameterError(f"sets: need a dict of name -> (y_true, y_prob), got {type(sets).__name__}.")
    if INTERNAL in sets:
        raise ParameterError(f"sets: {INTERNAL!r} is the run's own test split; name the external sets otherwise.")
    test = record.predictions("test")
    y_true, y_prob = scores_of(test, record.classes)
    lesion_ids = test["lesion_id"].to_numpy() if by_lesion and "lesion_id" in test else None
    cases = {INTERNAL: (y_true == melanoma, y_prob[:, melanoma], lesion_ids)}
    n_classes = len(record.classes)
    for name, pair in sets.items():
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ParameterError(f"sets: {name!r} needs a pair (y_true, y_prob), got {type(pair).__name__}.")
        labels, probs = np.asarray(pair[0]), np.asarray(pair[1], dtype=np.float64)
        if probs.ndim != 2 or probs.shape != (len(labels), n_classes):
            raise ParameterError(f"sets: {name!r} needs y_prob of shape ({len(labels)}, {n_classes}) in the run's "
                                 f"class order {list(record.classes)}, got {probs.shape}.")
        cases[name] = (labels == melanoma, probs[:, melanoma], None)
    parts = []
    for name, (positive, scores, lesions) in cases.items():
        part = referral_table(positive, scores, thresholds, lesion_ids=lesions, n_boot=n_boot, seed=seed,
                              confidence=confidence)
        part.insert(0, "unit", part.attrs["unit"])
        part.insert(0, "set", name)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


__all__ = ["REFERRAL_SENSITIVITIES", "recorded_external_sets", "referral_table", "run_referral",
           "validation_thresholds"]
