"""Results by subgroup of patients: age band, sex and body site, each with a bootstrap interval.

A model can be good on average and poor for some patients. :func:`subgroup_table` splits one set of predictions by
a label per image and gives, for all images and for each subgroup: the number of images, lesions and melanomas,
balanced accuracy and melanoma recall with percentile-bootstrap intervals, whether that interval lies wholly below
the estimate on all images, and a note where a subgroup is too small for an interval to mean anything (the row is
kept, with its estimate). :func:`subgroup_labels` makes the labels from a metadata table (HAM10000's, or a labelled
folder's with ``age``, ``sex`` and ``localization``); :func:`run_subgroups` does both for a run's recorded
predictions.

Choices, so that a table can be read without the code:

- Age bands :data:`AGE_BANDS` (under 30, 30–49, 50–69, 70 and over, in years); a missing age is ``unknown``. Sex:
  ``female``, ``male``, ``unknown`` (blank or missing). Body site: the six most common sites, ``other sites`` and
  ``unknown``; ``unknown`` is never one of the six, since it is no site. The six are counted on the images
  given, unless ``sites`` names them: pass the same ``sites`` (e.g. :func:`common_sites` of all of HAM10000) to
  compare runs or splits row by row.
- The bootstrap resamples lesions when lesion ids are given (HAM10000 photographs many lesions more than once, and
  a lesion's images are not independent evidence), else images; each subgroup is resampled on its own, with the
  seeded generator of :mod:`pskinlib.metrics` (``numpy.random.default_rng(seed)``), so without lesion ids the
  all-images row's interval is :func:`pskinlib.metrics.bootstrap_ci`'s.
- No interval below :data:`MIN_LESIONS_FOR_INTERVAL` resampled lesions (images), nor a melanoma-recall interval
  below :data:`MIN_MELANOMAS_FOR_INTERVAL` melanoma lesions: a percentile bootstrap of so few has few distinct
  values and covers too little (a recall of 5/5 resamples to the "interval" [1, 1]).
- Balanced accuracy in a subgroup is the mean recall over the classes present in it; a subgroup without melanoma
  has no melanoma recall (missing: NaN in the table, not 0).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ..data.ham10000 import validate_classes
from ..errors import ParameterError, check_int
from ..info import MELANOMA, SEXES
from ..metrics import _check_bootstrap_args, _interval, _metrics_from_confusions, _resampled_indices
from ..runs import RunRecord, scores_of

# (label, lowest age, first age above the band) in years; ages are whole years or HAM10000's multiples of 5.
AGE_BANDS = (("under 30", 0.0, 30.0), ("30–49", 30.0, 50.0), ("50–69", 50.0, 70.0), ("70 and over", 70.0, np.inf))
UNKNOWN = "unknown"
OTHER_SITES = "other sites"
N_SITES = 6
# Each grouping and the metadata column it reads.
GROUPINGS = {"age band": "age", "sex": "sex", "body site": "localization"}
ALL_IMAGES = "all images"
MIN_LESIONS_FOR_INTERVAL = 30
MIN_MELANOMAS_FOR_INTERVAL = 10


# ---------- Labels from metadata


def _text_values(table: pd.DataFrame, column: str) -> pd.Series:
    """``table[column]`` stripped and lower-cased; blank, missing and ``unknown`` become :data:`UNKNOWN`."""
    values = table[column].astype("string").str.strip().str.lower()
    return values.where(values.notna() & (values != ""), UNKNOWN).astype(object)


def _check_table(table, by: str) -> str:
    if not isinstance(table, pd.DataFrame):
        raise ParameterError(f"table: need a pandas DataFrame of image metadata, got {type(table).__name__}.")
    if by not in GROUPINGS:
        raise ParameterError(f"by: unknown grouping {by!r}; choose from {list(GROUPINGS)}.")
    column = GROUPINGS[by]
    if column not in table.columns:
        raise ParameterError(f"table: grouping by {by!r} needs a {column!r} column; it has {list(table.columns)}.")
    return column


def common_sites(table: pd.DataFrame, n_sites: int = N_SITES) -> tuple[str, ...]:
    """The ``n_sites`` most common known body sites (``localization``) among the images of ``table``, most common
    first (ties by name)."""
    column = _check_table(table, "body site")
    n_sites = check_int("n_sites", n_sites, 1)
    counts = _text_values(table, column).value_counts()
    counts = counts[counts.index != UNKNOWN]
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return tuple(site for site, _ in ranked[:n_sites])


def _check_sites(sites) -> tuple[str, ...]:
    if isinstance(sites, str) or not isinstance(sites, Sequence) or not sites:
        raise ParameterError(f"sites: need a non-empty list of body sites such as ('back', 'lower extremity'), "
                             f"got {sites!r}.")
    if not all(isinstance(s, str) and s.strip() for s in sites):
        raise ParameterError(f"sites: every site must be a non-blank string, got {list(sites)}.")
    cleaned = tuple(s.strip().lower() for s in sites)
    if len(set(cleaned)) < len(cleaned):
        raise ParameterError(f"sites: names a site twice: {list(sites)}.")
    if reserved := sorted(set(cleaned) & {UNKNOWN, OTHER_SITES}):
        raise ParameterError(f"sites: {reserved} are groups of their own, not sites to name.")
    return cleaned


def subgroup_labels(table: pd.DataFrame, by: str, *, sites: Sequence[str] | None = None,
                    n_sites: int = N_SITES) -> pd.Series:
    """Each image's subgroup for ``by`` (``"age band"``, ``"sex"`` or ``"body site"``), as a categorical Series on
    ``table``'s index whose categories are every subgroup in display order (empty ones too).

    Age (years, column ``age``) goes into :data:`AGE_BANDS`; sex (``sex``) is ``female``/``male``; body site
    (``localization``) is one of ``sites`` (default: :func:`common_sites` of ``table``) or ``other sites``. A
    missing or blank value, or ``unknown``, is ``unknown``. A negative age or a sex other than these is a
    :class:`ParameterError`."""
    column = _check_table(table, by)
    if sites is not None and by != "body site":
        raise ParameterError(f"sites: only used with by='body site', not by={by!r}.")
    if by == "age band":
        age = pd.to_numeric(table[column], errors="coerce").astype(float)
        if (age < 0).any():
            raise ParameterError(f"table: column 'age' holds negative ages such as {age[age < 0].iloc[0]}; "
                                 "ages are years.")
        labels = pd.Series(UNKNOWN, index=table.index, dtype=object)
        for label, low, high in AGE_BANDS:
            labels[(age >= low) & (age < high)] = label
        categories = [label for label, _, _ in AGE_BANDS] + [UNKNOWN]
    elif by == "sex":
        labels = _text_values(table, column)
        if other := sorted(set(labels) - {*SEXES, UNKNOWN}):
            raise ParameterError(f"table: column 'sex' holds {other}; expected {list(SEXES)}, or blank or "
                                 f"{UNKNOWN!r}. Map other spellings first.")
        categories = [*SEXES, UNKNOWN]
    else:
        sites = common_sites(table, n_sites) if sites is None else _check_sites(sites)
        labels = _text_values(table, column)
        labels = labels.where(labels.isin([*sites, UNKNOWN]), OTHER_SITES)
        categories = [*sites, OTHER_SITES, UNKNOWN]
    return pd.Series(pd.Categorical(labels, categories=categories), index=table.index, name=by)


# ---------- Scores by subgroup


def _check_predictions(y_true, y_prob, classes) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Integer labels ``(N,)`` indexing ``classes`` and each image's predicted class (argmax of ``y_prob``)."""
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise ParameterError(f"classes: need a tuple of dx codes such as ('mel', 'nv', 'bkl'), got {classes!r}.")
    classes = validate_classes(tuple(classes))
    y_prob = np.asarray(y_prob, dtype=np.float64)
    y_true = np.asarray(y_true)
    if y_true.ndim != 1 or len(y_true) == 0:
        raise ParameterError(f"y_true: need a non-empty 1-D array of class indices, got shape {y_true.shape}.")
    if y_prob.shape != (len(y_true), len(classes)):
        raise ParameterError(f"y_prob: need shape (N, K) = ({len(y_true)}, {len(classes)}) for {len(y_true)} "
                             f"labels and classes {list(classes)}, got {y_prob.shape}.")
    if not np.all(np.isfinite(y_prob)):
        raise ParameterError("y_prob: contains NaN or infinite values; check the model's outputs.")
    if y_true.dtype.kind not in "iu" and not (y_true.dtype.kind == "f" and np.all(y_true == np.round(y_true))):
        raise ParameterError(f"y_true: need integer class indices into classes, got values such as {y_true[0]!r}.")
    y_true = y_true.astype(np.int64)
    if y_true.min() < 0 or y_true.max() >= len(classes):
        raise ParameterError(f"y_true: labels must be 0..{len(classes) - 1} for classes {list(classes)}, got "
                             f"{y_true.min()}..{y_true.max()}.")
    return y_true, y_prob.argmax(axis=1), classes


def _per_image(values, name: str, n: int) -> np.ndarray:
    array = np.asarray(values, dtype=object)
    if array.ndim != 1 or len(array) != n:
        raise ParameterError(f"{name}: need one value per image ({n}), got shape {array.shape}.")
    if pd.isna(array).any():
        raise ParameterError(f"{name}: has missing values (first at position {int(np.argmax(pd.isna(array)))}); "
                             "every image needs one.")
    return array


def _check_bootstrap(n_boot, seed, confidence, min_lesions, min_melanomas) -> tuple:
    n_boot, confidence, seed = _check_bootstrap_args(n_boot, confidence, seed)
    return (n_boot, seed, confidence, check_int("min_lesions", min_lesions, 2),
            check_int("min_melanomas", min_melanomas, 2))


def _lesion_counts(y_true: np.ndarray, y_pred: np.ndarray, lesions: np.ndarray, n_classes: int) -> np.ndarray:
    """``(L, K * K)``: each lesion's images counted by (true, predicted) cell."""
    # Lesions in order of first appearance: without lesion ids, lesion i is image i, as metrics resamples them.
    lesion_index, _ = pd.factorize(lesions)
    counts = np.zeros((lesion_index.max() + 1, n_classes * n_classes))
    np.add.at(counts, (lesion_index, y_true * n_classes + y_pred), 1)
    return counts


def resampled_confusions(lesion_counts: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, K * K)`` confusion counts of ``n_boot`` resamples of the lesions, drawn with replacement by
    ``default_rng(seed)`` in the order :mod:`pskinlib.metrics` draws images."""
    n = len(lesion_counts)
    blocks = []
    for drawn in _resampled_indices(n, n_boot, seed):
        rows = len(drawn)
        # How often each resample drew each lesion, then its lesions' counts summed.
        offset = drawn + (np.arange(rows) * n)[:, None]
        times_drawn = np.bincount(offset.ravel(), minlength=rows * n).reshape(rows, n)
        blocks.append(times_drawn @ lesion_counts)
    return np.concatenate(blocks)


def _scores(confusions: np.ndarray, n_classes: int, melanoma: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Balanced accuracy (mean recall over the classes present) and melanoma recall of ``(B, K * K)`` counts; NaN
    where undefined."""
    scores = _metrics_from_confusions(confusions.reshape(len(confusions), n_classes, n_classes),
                                      np.ones(n_classes, dtype=bool))  # (the mask only matters to macro F1)
    recall = scores["recall"]
    melanoma_recall = recall[:, melanoma] if melanoma is not None else np.full(len(confusions), np.nan)
    return scores["balanced_accuracy"], melanoma_recall


def _interval_of(estimate: float, samples: np.ndarray | None, settings: dict) -> dict:
    """The estimate with the percentile interval of its resamples (none without resamples: too few cases)."""
    return _interval(estimate, np.empty(0) if samples is None else samples, settings["confidence"], settings["n_boot"])


def _below(interval: dict, overall: float | None) -> bool | None:
    """Whether the interval lies wholly below ``overall``; None when either is missing."""
    if interval["high"] is None or overall is None:
        return None
    return interval["high"] < overall


def _group_row(group: str, y_true, y_pred, lesions, n_classes: int, melanoma: int | None, settings: dict,
               unit: str) -> dict:
    """One row of :func:`subgroup_table` (without the marks against the all-images row)."""
    if len(y_true) == 0:
        empty = {"estimate": None, "low": None, "high": None}
        return {"group": group, "n": 0, "lesions": 0, "melanomas": 0, "balanced_accuracy": empty,
                "melanoma_recall": empty, "notes": ["no images"]}
    counts = _lesion_counts(y_true, y_pred, lesions, n_classes)
    balanced, recall = _scores(counts.sum(axis=0)[None], n_classes, melanoma)
    melanoma_lesions = (int((counts.reshape(len(counts), n_classes, n_classes)[:, melanoma].sum(axis=1) > 0).sum())
                        if melanoma is not None else 0)
    notes, boot_balanced, boot_recall = [], None, None
    if len(counts) < settings["min_lesions"]:
        notes.append(f"too few images for an interval (n={len(y_true)})" if unit == "images"
                     else f"too few lesions for an interval ({len(counts)} lesions, n={len(y_true)} images)")
    else:
        boot_balanced, boot_recall = _scores(resampled_confusions(counts, settings["n_boot"], settings["seed"]),
                                             n_classes, melanoma)
    if melanoma is not None and melanoma_lesions == 0:
        notes.append("no melanoma: no melanoma recall")
    elif melanoma is not None and boot_recall is not None and melanoma_lesions < settings["min_melanomas"]:
        notes.append(f"too few melanomas for a recall interval ({melanoma_lesions}"
                     f"{'' if unit == 'images' else ' lesions'})")
        boot_recall = None
    return {"group": group, "n": len(y_true), "lesions": len(counts),
            "melanomas": int(np.sum(y_true == melanoma)) if melanoma is not None else 0,
            "balanced_accuracy": _interval_of(balanced[0], boot_balanced, settings),
            "melanoma_recall": _interval_of(recall[0], boot_recall, settings), "notes": notes}


def subgroup_table(y_true: ArrayLike, y_prob: ArrayLike, classes: Sequence[str], groups: ArrayLike, *,
                   lesion_ids: ArrayLike | None = None, n_boot: int = 1000, seed: int = 0,
                   confidence: float = 0.95, min_lesions: int = MIN_LESIONS_FOR_INTERVAL,
                   min_melanomas: int = MIN_MELANOMAS_FOR_INTERVAL) -> pd.DataFrame:
    """Balanced accuracy and melanoma recall of one set of predictions, on all images and by subgroup.

    ``y_true`` ``(N,)``: class indices into ``classes``; ``y_prob`` ``(N, K)``: scores (the prediction is their
    argmax); ``groups`` ``(N,)``: each image's subgroup (a categorical, e.g. :func:`subgroup_labels`, gives the row
    order and keeps empty subgroups; else sorted); ``lesion_ids`` ``(N,)``: resample lesions instead of images.

    One row for all images, then one per subgroup. Columns: ``group``, ``n`` (images), ``lesions`` (= ``n``
    without lesion ids), ``melanomas`` (images), ``balanced_accuracy``, ``melanoma_recall`` (each with ``_low``,
    ``_high``: the ``confidence`` percentile interval over ``n_boot`` resamples, NaN where too small, see the
    module's docstring; and ``_below_overall``: True when the interval lies wholly below the all-images estimate,
    None without an interval) and ``note`` (why an interval or recall is missing; empty otherwise). An undefined
    score (no melanoma, no image) is NaN, never 0. The table's ``attrs["resampled"]`` says ``"lesions"`` or
    ``"images"``.
    """
    y_true, y_pred, classes = _check_predictions(y_true, y_prob, classes)
    labels = _per_image(groups, "groups", len(y_true))
    lesions = np.arange(len(y_true)) if lesion_ids is None else _per_image(lesion_ids, "lesion_ids", len(y_true))
    n_boot, seed, confidence, min_lesions, min_melanomas = _check_bootstrap(n_boot, seed, confidence, min_lesions,
                                                                            min_melanomas)
    settings = {"n_boot": n_boot, "seed": seed, "confidence": confidence, "min_lesions": min_lesions,
                "min_melanomas": min_melanomas}
    unit = "images" if lesion_ids is None else "lesions"
    if isinstance(getattr(groups, "dtype", None), pd.CategoricalDtype):
        names = list(groups.dtype.categories)
    else:
        names = sorted(set(labels), key=str)
    melanoma = classes.index(MELANOMA) if MELANOMA in classes else None
    n_classes = len(classes)
    rows = [_group_row(ALL_IMAGES, y_true, y_pred, lesions, n_classes, melanoma, settings, unit)]
    for name in names:
        keep = labels == name
        rows.append(_group_row(str(name), y_true[keep], y_pred[keep], lesions[keep], n_classes, melanoma, settings,
                               unit))
    overall = rows[0]
    table = []
    for i, row in enumerate(rows):
        out = {"group": row["group"], "n": row["n"], "lesions": row["lesions"], "melanomas": row["melanomas"]}
        for metric in ("balanced_accuracy", "melanoma_recall"):
            interval = row[metric]
            out.update({metric: interval["estimate"], f"{metric}_low": interval["low"],
                        f"{metric}_high": interval["high"],
                        f"{metric}_below_overall": None if i == 0 else _below(interval, overall[metric]["estimate"])})
        out["note"] = "; ".join(row["notes"])
        table.append(out)
    scores = [f"{metric}{end}" for metric in ("balanced_accuracy", "melanoma_recall") for end in ("", "_low", "_high")]
    # Scores are floats (NaN where missing); the marks stay True, False or None (undecided).
    result = pd.DataFrame(table).astype({**dict.fromkeys(scores, float),
                                         **dict.fromkeys(("balanced_accuracy_below_overall",
                                                          "melanoma_recall_below_overall"), object)})
    result.attrs["resampled"] = unit
    return result


# ---------- A run's predictions


def _predictions_with_metadata(predictions: pd.DataFrame, images_table: pd.DataFrame) -> pd.DataFrame:
    """The predictions joined, by ``image_id``, with the metadata of ``images_table``."""
    if images_table["image_id"].duplicated().any():
        raise ParameterError(f"images_table: image_id listed more than once: "
                             f"{images_table.loc[images_table['image_id'].duplicated(), 'image_id'].tolist()[:10]}.")
    metadata = [c for c in GROUPINGS.values() if c in images_table.columns]
    if missing := sorted(set(predictions["image_id"]) - set(images_table["image_id"])):
        raise ParameterError(f"images_table: has no row for {len(missing)} predicted image(s), such as "
                             f"{missing[:5]}; give the metadata of the images the run predicted.")
    return predictions.drop(columns=[c for c in metadata if c in predictions.columns]).merge(
        images_table[["image_id", *metadata]], on="image_id", how="left", validate="one_to_one")


def run_subgroups(run_dir: str | os.PathLike, images_table: pd.DataFrame,
                  by: str | Sequence[str] = tuple(GROUPINGS), *, evaluation: str | None = None,
                  source: str | None = None, sites: Sequence[str] | None = None, by_lesion: bool = True,
                  n_boot: int = 1000, seed: int = 0, confidence: float = 0.95,
                  min_lesions: int = MIN_LESIONS_FOR_INTERVAL,
                  min_melanomas: int = MIN_MELANOMAS_FOR_INTERVAL) -> pd.DataFrame:
    """:func:`subgroup_table` of a finished run's test predictions, or of its evaluation named ``evaluation`` (an
    external labelled folder; ``source`` keeps one ``source_dataset``), with the subgroups of ``images_table``
    (``image_id`` with ``age``, ``sex``, ``localization``: ``load_ham10000(...).table`` or a labelled folder's).

    ``by``: one grouping or several; the result has a ``grouping`` column (``"all"`` for the all-images row, given
    once) before :func:`subgroup_table`'s columns. Body sites: ``sites``, or the six most common among the images
    evaluated. ``by_lesion`` resamples lesions where the predictions have lesion ids (HAM10000's test split)."""
    groupings = [by] if isinstance(by, str) else list(by)
    if not groupings or any(g not in GROUPINGS for g in groupings):
        raise ParameterError(f"by: need one or more of {list(GROUPINGS)}, got {by!r}.")
    if sites is not None and "body site" not in groupings:
        raise ParameterError("sites: only used when by includes 'body site'.")
    _check_bootstrap(n_boot, seed, confidence, min_lesions, min_melanomas)
    if not isinstance(images_table, pd.DataFrame) or "image_id" not in images_table.columns:
        raise ParameterError("images_table: need a DataFrame with an image_id column and age, sex, localization "
                             "(e.g. load_ham10000().table or a labelled folder's table).")
    if missing := [GROUPINGS[g] for g in groupings if GROUPINGS[g] not in images_table.columns]:
        raise ParameterError(f"images_table: has no {missing} column(s), needed for by={by!r}; a labelled folder "
                             "needs them in its labels.csv.")
    record = RunRecord.open(run_dir, finished=True)
    if evaluation is None:
        if source is not None:
            raise ParameterError("source: only used with evaluation= (a run's test split has one source).")
        predictions = record.predictions("test")
    else:
        result = record.evaluation(evaluation)
        if not result.finished:
            raise ParameterError(f"evaluation: {record.path} holds no finished evaluation {evaluation!r}; it has "
                                 f"{sorted(record.evaluations())}.")
        predictions = result.predictions()
        if source is not None:
            if "source_dataset" not in predictions or source not in set(predictions["source_dataset"]):
                raise ParameterError(f"source: {source!r} is not among the evaluation's sources "
                                     f"{sorted(set(predictions.get('source_dataset', [])))}.")
            predictions = predictions[predictions["source_dataset"] == source].reset_index(drop=True)
    table = _predictions_with_metadata(predictions, images_table)
    classes = record.classes
    y_true, y_prob = scores_of(table, classes)
    lesion_ids = table["lesion_id"].to_numpy() if by_lesion and "lesion_id" in table else None
    options = {"lesion_ids": lesion_ids, "n_boot": n_boot, "seed": seed, "confidence": confidence,
               "min_lesions": min_lesions, "min_melanomas": min_melanomas}
    parts = []
    for grouping in groupings:
        groups = subgroup_labels(table, grouping, sites=sites if grouping == "body site" else None)
        part = subgroup_table(y_true, y_prob, classes, groups, **options)
        part.insert(0, "grouping", ["all", *[grouping] * (len(part) - 1)])
        parts.append(part if not parts else part.iloc[1:])
    combined = pd.concat(parts, ignore_index=True)
    combined.attrs["resampled"] = parts[0].attrs["resampled"]
    return combined


__all__ = ["AGE_BANDS", "GROUPINGS", "common_sites", "resampled_confusions", "run_subgroups", "subgroup_labels",
           "subgroup_table"]
