"""The shortcut test: does a run's prediction follow a mark on the picture rather than the lesion?

A classifier can learn that melanomas were photographed more often through a dermatoscope's dark round frame, or
with hair, or beside a surgeon's violet ink, and then call a nevus with such a mark a melanoma. No accuracy figure
shows this: the marks come with the lesions in the test split as in the training split. The test changes the
pictures instead: it takes the test images a run classified correctly, **adds** one artifact to each that shows none
(by :mod:`pskinlib.data.appearance`), predicts again with the run's own model and preprocessing, and counts how many
predictions change, and to which class. A model that looks at the lesion changes few; one that learnt the shortcut
turns nevi and keratoses into melanomas.

The artifacts are drawn on the picture at its own resolution, before the run's resize, as a real one would be:

- :func:`add_dark_border`: the dark round frame of a contact dermatoscope, black outside a circle with a soft edge.
- :func:`add_hairs`: thin dark curved hairs across the picture.
- :func:`add_ink`: a stroke of violet surgical marker, a solid or dotted arc around the lesion, never on its centre.

Each maker is deterministic (the hairs and the ink from a seed) and draws sizes given for a picture
:data:`~pskinlib.data.appearance.REFERENCE_SIDE` pixels long, scaled to others. :func:`shortcut_predictions` gives
one row per image and artifact; :func:`shortcut_summary` counts them per artifact and true class with
percentile-bootstrap intervals over lesions; :func:`shortcut_test` does both for a run folder that kept its
checkpoint (an exported record keeps none, and cannot predict).

Only additions are tested: removing a frame, hair or ink from a picture would need inpainting, which leaves its own
marks. A correct prediction that changes is an error the artifact caused; the share that changes is not an accuracy
and is read per artifact.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from ..data import appearance
from ..data.appearance import REFERENCE_SIDE, check_image, resized_for_measuring
from ..data.ham10000 import load_ham10000, load_image
from ..errors import ParameterError, check_int
from ..info import MELANOMA
from ..metrics import _check_bootstrap_args, _interval
from ..runs import PARTS, RunRecord
from .predict import load_trained
from .subgroups import MIN_LESIONS_FOR_INTERVAL, resampled_confusions

FRAME_COLOUR = (14, 11, 14)  # a dermatoscope's frame: near black, a little violet (L* 4, C* 2)
HAIR_COLOUR = (40, 28, 22)  # dark brown hair (L* 12)
INK_COLOUR = (95, 45, 150)  # gentian violet of a surgical skin marker (L* 31, hue angle 312 degrees, C* 66)
INK_OPACITY = 0.85  # marker ink is a dye: a little of the skin shows through
INK_STYLES = ("arc", "dots")
# Ink is drawn on an ellipse around the picture's centre, at this share of its width and height (half-axes): outside
# the central ellipse the lesion is taken to fill (appearance.CENTRE_ELLIPSE, 0.25), inside the picture.
INK_DISTANCE = (0.34, 0.42)
INK_EXTENT = (70.0, 130.0)  # degrees of arc a stroke covers
SUPERSAMPLE = 4  # lines are drawn this much larger and averaged down: antialiased edges

# The artifacts the test adds: the maker, and the column of appearance.Appearance.as_row that says an image has it.
ARTIFACTS = ("dark_border", "hairs", "ink")
_APPEARANCE_FLAG = {"dark_border": "dark_border", "hairs": "hair", "ink": "ink"}
_DETECTOR = {"dark_border": appearance.dark_border, "hairs": appearance.hair_coverage, "ink": appearance.ink_marks}
ALL_CLASSES_ROW = "all"


# ---------- Checking parameters


def _check_share(name: str, value, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ParameterError(f"{name}: expected a number from {low:g} to {high:g}, got {value!r}.")
    return float(value)


def _check_colour(name: str, colour) -> np.ndarray:
    values = np.asarray(colour) if isinstance(colour, (tuple, list, np.ndarray)) else np.empty(0)
    numeric = values.shape == (3,) and np.issubdtype(values.dtype, np.number)
    if not numeric or not ((0 <= values) & (values <= 255)).all():
        raise ParameterError(f"{name}: expected an RGB colour, three numbers from 0 to 255, got {colour!r}.")
    return values.astype(np.float64)


def _check_seed(seed) -> int:
    return check_int("seed", seed, 0)


def _scaled(pixels: np.ndarray, length: float) -> float:
    """A length given for a picture REFERENCE_SIDE pixels long, in pixels of this one."""
    return length * max(pixels.shape[:2]) / REFERENCE_SIDE


def _blend(pixels: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``pixels`` covered by ``colour`` where ``alpha`` (``(H, W)``, 0-1) says, as uint8."""
    out = pixels.astype(np.float32)  # float32 and in place: this runs for every picture tested
    out -= (out - colour.astype(np.float32)) * alpha.astype(np.float32)[..., None]
    return np.clip(np.rint(out, out=out), 0, 255, out=out).astype(np.uint8)


def _coverage(shape: tuple[int, int], strokes: list[tuple[list[tuple[float, float]], float]],
              dots: bool = False) -> np.ndarray:
    """Coverage 0-1 ``(H, W)`` of ``strokes``, each a line through its points (x, y) so many pixels wide (or,
    with ``dots``, a dot that wide at each point), drawn :data:`SUPERSAMPLE` times larger and averaged down:
    antialiased strokes from Pillow's plain ones."""
    h, w = shape
    canvas = Image.new("L", (w * SUPERSAMPLE, h * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(canvas)
    for points, width in strokes:
        scaled = [(x * SUPERSAMPLE, y * SUPERSAMPLE) for x, y in points]
        if dots:
            r = width * SUPERSAMPLE / 2
            for x, y in scaled:
                draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
        else:
            draw.line(scaled, fill=255, width=max(1, round(width * SUPERSAMPLE)), joint="curve")
    return np.asarray(canvas.resize((w, h), Image.Resampling.BOX), dtype=np.float64) / 255.0


# ---------- The artifacts


def add_dark_border(pixels: np.ndarray, *, radius: float = 0.85, edge: float = 0.08,
                    colour: Sequence[float] = FRAME_COLOUR) -> np.ndarray:
    """The picture seen through a contact dermatoscope's round field: ``colour`` (near black) outside a circle
    about the picture's centre, fading into the picture over a soft edge.

    ``radius``: the circle's radius as a share of half the picture's diagonal (0.3-1; at the default 0.85 a
    200 x 150 picture keeps its middle and loses its corners, about a tenth of its pixels, as many HAM10000
    pictures do); ``edge``: the width of the fade as a share of half the diagonal (0-0.5), centred on the circle.
    Returns a new uint8 image; inside the circle less half the edge, the pixels are unchanged.
    """
    check_image(pixels)
    radius = _check_share("radius", radius, 0.3, 1.0)
    edge = _check_share("edge", edge, 0.0, 0.5)
    frame = _check_colour("colour", colour)
    h, w = pixels.shape[:2]
    y, x = np.ogrid[:h, :w]
    distance = np.hypot(y - (h - 1) / 2, x - (w - 1) / 2) / math.hypot(h / 2, w / 2)
    if edge == 0:
        alpha = (distance > radius).astype(np.float64)
    else:
        t = np.clip((distance - (radius - edge / 2)) / edge, 0, 1)
        alpha = t * t * (3 - 2 * t)  # smoothstep: a frame fades, it has no hard rim
    return _blend(pixels, frame, alpha)


def _bezier(p0: np.ndarray, control: np.ndarray, p2: np.ndarray, n: int = 32) -> list[tuple[float, float]]:
    t = np.linspace(0, 1, n)[:, None]
    points = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * control + t**2 * p2
    return [tuple(p) for p in points]


def _edge_point(rng: np.random.Generator, side: int, w: float, h: float) -> np.ndarray:
    """A random point on side 0 (top), 1 (right), 2 (bottom) or 3 (left) of a w x h picture."""
    u = rng.uniform(0.05, 0.95)
    return np.array([(u * w, 0.0), (w, u * h), (u * w, h), (0.0, u * h)][side])


def add_hairs(pixels: np.ndarray, n: int = 8, seed: int = 0, *, width: float = 1.5,
              colour: Sequence[float] = HAIR_COLOUR) -> np.ndarray:
    """``n`` thin dark hairs across the picture: each a gently curved line (a quadratic Bezier) from one side of the
    picture to another, ``width`` pixels wide (at :data:`~pskinlib.data.appearance.REFERENCE_SIDE`, 0.5-5), in
    ``colour`` made a little lighter or darker by the seed. The same ``seed`` draws the same hairs. Returns a new
    uint8 image; pixels away from the hairs are unchanged."""
    check_image(pixels)
    n = check_int("n", n, 1)
    rng = np.random.default_rng(_check_seed(seed))
    width = _check_share("width", width, 0.5, 5.0)
    base = _check_colour("colour", colour)
    h, w = pixels.shape[:2]
    strokes = []
    for _ in range(n):
        first = int(rng.integers(4))
        second = (first + int(rng.integers(1, 4))) % 4  # another side: the hair crosses the picture
        p0, p2 = _edge_point(rng, first, w, h), _edge_point(rng, second, w, h)
        along = p2 - p0
        normal = np.array([-along[1], along[0]])
        control = (p0 + p2) / 2 + normal * rng.uniform(-0.25, 0.25)
        strokes.append((_bezier(p0, control, p2), _scaled(pixels, width * rng.uniform(0.8, 1.2))))
    hair = np.clip(base * rng.uniform(0.7, 1.3), 0, 255)
    return _blend(pixels, hair, _coverage((h, w), strokes) * 0.95)


def add_ink(pixels: np.ndarray, seed: int = 0, *, style: str = "arc", width: float = 3.0,
            colour: Sequence[float] = INK_COLOUR) -> np.ndarray:
    """A violet surgical-marker stroke around the lesion: an arc of :data:`INK_EXTENT` degrees (solid, or a
    dotted line of dots ``style="dots"``) on an ellipse about the picture's centre at :data:`INK_DISTANCE` of its
    width and height, where a surgeon marks the skin around a lesion, never on the central ellipse where the
    lesion is. ``width``: the stroke's width in pixels at :data:`~pskinlib.data.appearance.REFERENCE_SIDE` (1-8);
    the seed picks where the arc starts, how far out it lies and how long it is. Returns a new uint8 image; pixels
    away from the stroke are unchanged."""
    check_image(pixels)
    rng = np.random.default_rng(_check_seed(seed))
    if style not in INK_STYLES:
        raise ParameterError(f"style: expected one of {list(INK_STYLES)}, got {style!r}.")
    width = _check_share("width", width, 1.0, 8.0)
    ink = _check_colour("colour", colour)
    h, w = pixels.shape[:2]
    distance = rng.uniform(*INK_DISTANCE)
    start = rng.uniform(0, 360)
    extent = rng.uniform(*INK_EXTENT)
    stroke = _scaled(pixels, width)
    angles = np.radians(np.linspace(start, start + extent, 64 if style == "arc" else 1 + int(extent / 360 * math.pi
                                                                                            * distance * (w + h)
                                                                                            / (2.5 * stroke))))
    points = [((w - 1) / 2 + distance * w * math.cos(a), (h - 1) / 2 + distance * h * math.sin(a)) for a in angles]
    # Dots a little wider than the line, as a marker's tip leaves them.
    coverage = _coverage((h, w), [(points, stroke if style == "arc" else 1.6 * stroke)], dots=style == "dots")
    return _blend(pixels, ink, coverage * INK_OPACITY)


MAKERS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "dark_border": lambda pixels, seed: add_dark_border(pixels),
    "hairs": lambda pixels, seed: add_hairs(pixels, seed=seed),
    "ink": lambda pixels, seed: add_ink(pixels, seed=seed),
}


# ---------- The test


def _check_artifacts(artifacts) -> tuple[str, ...]:
    if isinstance(artifacts, str) or not isinstance(artifacts, Sequence) or not artifacts:
        raise ParameterError(f"artifacts: expected a non-empty sequence of names among {list(ARTIFACTS)}, got "
                             f"{artifacts!r}.")
    unknown = [a for a in artifacts if a not in ARTIFACTS]
    if unknown or len(set(artifacts)) != len(artifacts):
        raise ParameterError(f"artifacts: expected distinct names among {list(ARTIFACTS)}, got {list(artifacts)}.")
    return tuple(artifacts)


def _test_images(record: RunRecord, data_dir, part: str, max_per_class: int | None, seed: int) -> pd.DataFrame:
    """The correctly classified images of the run's ``part``, each with its lesion and file; at most
    ``max_per_class`` of each true class, drawn with ``seed``."""
    predictions = record.predictions(part).drop_duplicates("image_id")
    # An exported record names its data by dataset, not by folder: then $PSKIN_DATA is used.
    images = load_ham10000(data_dir or record.recorded["data"].get("root"), classes=record.classes,
                           skip_missing=True).table.drop_duplicates("image_id")
    columns = ["image_id", "path"] + (["lesion_id"] if "lesion_id" not in predictions.columns else [])
    joined = predictions.merge(images[columns], on="image_id", how="left")
    missing = joined.loc[joined["path"].isna(), "image_id"].tolist()
    if missing:
        raise ParameterError(f"data_dir: {len(missing)} of the run's {part} images are not in the data folder: "
                             f"{missing[:5]}; pass data_dir= the folder the run was trained on.")
    correct = joined[joined["true"] == joined["predicted"]].reset_index(drop=True)
    if max_per_class is not None:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(correct))
        correct = correct.iloc[order].groupby("true", sort=False).head(max_per_class)
        correct = correct.sort_values("image_id", kind="stable").reset_index(drop=True)
    return correct


def shortcut_predictions(run_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None, *,
                         part: str = "test", artifacts: Sequence[str] = ARTIFACTS, seed: int = 0,
                         max_per_class: int | None = None, device: str = "auto",
                         batch_size: int = 64) -> pd.DataFrame:
    """Each correctly classified image of a run's ``part`` ("test" or "val"), with each of ``artifacts`` added.

    ``run_dir``: a run folder with its best checkpoint; ``data_dir``: the images (None: the run's recorded data
    folder, else ``$PSKIN_DATA``); ``max_per_class``: test at most this many correct images of each true class
    (drawn with ``seed``; None: all); ``seed`` also seeds each image's hairs and ink.

    Every image is decoded at its own size, measured by :func:`pskinlib.data.appearance.estimate_appearance`,
    and predicted by the run's model through :meth:`~pskinlib.evaluate.predict.TrainedModel.predict_pixels` as it
    is and with each artifact added. One row per (artifact, image), with ``status``:

    - ``"tested"``: the artifact was added;
    - ``"already present"``: the image shows it already (or could not be measured): it cannot be added;
    - ``"not reproduced"``: the unchanged image, resized from its full size rather than from the file's reduced
      decoding, is no longer predicted correctly; the comparison would not be with a correct prediction.

    Columns: ``artifact, image_id, lesion_id, true, status, predicted_before, predicted_after, p_mel_before,
    p_mel_after`` (NaN without a ``mel`` class) and ``detected`` (whether the appearance estimate finds the added
    artifact; missing unless tested).
    """
    if part not in PARTS:
        raise ParameterError(f"part: expected one of {list(PARTS)}, got {part!r}.")
    artifacts = _check_artifacts(artifacts)
    seed = _check_seed(seed)
    if max_per_class is not None:
        max_per_class = check_int("max_per_class", max_per_class, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    record = RunRecord.open(run_dir, finished=True)
    if not record.checkpoint("best").is_file():
        raise ParameterError(f"run_dir: {record.path} keeps no best checkpoint (an exported record keeps none), so "
                             "its model cannot predict changed pictures; use the run folder training wrote.")
    correct = _test_images(record, data_dir, part, max_per_class, seed)
    if correct.empty:
        raise ParameterError(f"run_dir: the run classified none of its {part} images correctly; nothing to test.")
    trained = load_trained(record.path, device=device)
    classes = trained.classes
    melanoma = classes.index(MELANOMA) if MELANOMA in classes else None
    originals = [load_image(path) for path in correct["path"]]
    flags = pd.DataFrame([appearance.estimate_appearance(resized_for_measuring(p)).as_row() for p in originals])
    before = trained.predict_pixels(originals, batch_size)
    reproduced = np.array(classes)[before.argmax(1)] == correct["true"].to_numpy()
    seeds = np.random.default_rng(seed).integers(0, 2**31, size=(len(ARTIFACTS), len(correct)))
    parts = []
    for artifact in artifacts:
        absent = ~flags[_APPEARANCE_FLAG[artifact]].fillna(True).to_numpy(bool)
        tested = np.flatnonzero(absent & reproduced)
        rows = correct[["image_id", "lesion_id", "true"]].assign(
            artifact=artifact, status=np.where(~absent, "already present",
                                               np.where(reproduced, "tested", "not reproduced")),
            predicted_before=np.array(classes)[before.argmax(1)], predicted_after=None,
            p_mel_before=before[:, melanoma] if melanoma is not None else np.nan, p_mel_after=np.nan, detected=None)
        if len(tested):
            made = [MAKERS[artifact](originals[i], int(seeds[ARTIFACTS.index(artifact), i])) for i in tested]
            after = trained.predict_pixels(made, batch_size)
            rows.loc[tested, "predicted_after"] = np.array(classes)[after.argmax(1)]
            if melanoma is not None:
                rows.loc[tested, "p_mel_after"] = after[:, melanoma]
            rows.loc[tested, "detected"] = [bool(_DETECTOR[artifact](resized_for_measuring(m)).present) for m in made]
        parts.append(rows)
    table = pd.concat(parts, ignore_index=True)
    columns = ["artifact", "image_id", "lesion_id", "true", "status", "predicted_before", "predicted_after",
               "p_mel_before", "p_mel_after", "detected"]
    table = table[columns]
    table.attrs["classes"] = classes
    return table


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def _summary_row(rows: pd.DataFrame, classes: tuple[str, ...], true: str, settings: dict) -> dict:
    """One row of :func:`shortcut_summary`: the tested images of one artifact and true class (or all)."""
    tested = rows[rows["status"] == "tested"]
    changed = tested["predicted_after"] != tested["true"]
    out = {"correct": len(rows), "with_artifact": int((rows["status"] == "already present").sum()),
           "not_reproduced": int((rows["status"] == "not reproduced").sum()), "images": len(tested),
           "lesions": int(tested["lesion_id"].nunique()), "detected": int(tested["detected"].eq(True).sum()),
           "changed": int(changed.sum())}
    for code in classes:
        out[f"to_{code}"] = int((changed & (tested["predicted_after"] == code)).sum())
    has_melanoma = MELANOMA in classes and true != MELANOMA
    to_melanoma = (changed & (tested["predicted_after"] == MELANOMA)).to_numpy(float)
    if not has_melanoma:  # a melanoma cannot turn into one; without the class there is none to turn into
        to_melanoma = to_melanoma * np.nan
    delta = (tested["p_mel_after"] - tested["p_mel_before"]).to_numpy(float)
    lesion_index, _ = pd.factorize(tested["lesion_id"])
    per_lesion = np.zeros((len(np.unique(lesion_index)), 4))
    np.add.at(per_lesion, lesion_index, np.column_stack([np.ones(len(tested)), changed.to_numpy(float),
                                                         np.nan_to_num(to_melanoma), np.nan_to_num(delta)]))
    estimates = per_lesion.sum(axis=0)
    notes = []
    samples = None
    if len(tested) == 0:
        notes.append("no image tested")
    elif len(per_lesion) < settings["min_lesions"]:
        notes.append(f"too few lesions for an interval ({len(per_lesion)} lesions, n={len(tested)} images)")
    else:
        # resampled over lesions as the subgroups' intervals are: that resampler sums any per-lesion counts
        samples = resampled_confusions(per_lesion, settings["n_boot"], settings["seed"])
        if out["changed"] == 0:  # every resample is 0 too: the bootstrap cannot say how large the share may be
            notes.append(f"no prediction changed; by the rule of three the share is below "
                         f"{3 / len(per_lesion):.3f} (95 %)")
    values = {"share_changed": (1, estimates, samples, True),
              "share_to_melanoma": (2, estimates, samples, has_melanoma),
              "mean_change_p_mel": (3, estimates, samples, MELANOMA in classes)}
    for name, (column, totals, resampled, defined) in values.items():
        estimate = _ratio(totals[column], totals[0]) if defined else np.nan
        boot = _ratio(resampled[:, column], resampled[:, 0]) if resampled is not None and defined else np.empty(0)
        interval = _interval(float(estimate), boot, settings["confidence"], settings["n_boot"])
        out.update({name: interval["estimate"], f"{name}_low": interval["low"], f"{name}_high": interval["high"]})
    out["note"] = "; ".join(notes)
    return {"true": true, **out}


def shortcut_summary(predictions: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95,
                     min_lesions: int = MIN_LESIONS_FOR_INTERVAL) -> pd.DataFrame:
    """Per artifact, per true class and for all classes together (``true == "all"``): how many of the tested
    correct predictions changed, and to which class.

    ``predictions``: :func:`shortcut_predictions`'s table (its ``attrs["classes"]`` gives the class order, else
    the classes seen). Columns: ``artifact, true``; ``correct`` (correct images considered), ``with_artifact``
    (left out: they show it already), ``not_reproduced`` (left out, see :func:`shortcut_predictions`),
    ``images`` and ``lesions`` (tested), ``detected`` (tested images in which the appearance estimate finds the
    added artifact), ``changed`` and ``to_<code>`` per class (they sum to ``changed``); ``share_changed`` (of the
    tested images), ``share_to_melanoma`` (turned into melanoma; NaN for melanomas) and ``mean_change_p_mel``
    (the mean change of the melanoma probability, after minus before), each with ``_low`` and ``_high``, the
    ``confidence`` percentile interval over ``n_boot`` resamples of the lesions (none below ``min_lesions``
    lesions); ``note``: why an interval is missing, or the rule-of-three bound where nothing changed (a bootstrap
    of no change is 0-0).
    """
    n_boot, confidence, seed = _check_bootstrap_args(n_boot, confidence, seed)
    min_lesions = check_int("min_lesions", min_lesions, 2)
    required = {"artifact", "lesion_id", "true", "status", "predicted_after", "p_mel_before", "p_mel_after",
                "detected"}
    if not isinstance(predictions, pd.DataFrame) or not required <= set(predictions.columns):
        raise ParameterError(f"predictions: expected shortcut_predictions' table with columns {sorted(required)}, "
                             f"got {getattr(predictions, 'columns', type(predictions).__name__)!r}.")
    classes = tuple(predictions.attrs.get("classes") or sorted(set(predictions["true"])))
    settings = {"n_boot": n_boot, "seed": seed, "confidence": confidence, "min_lesions": min_lesions}
    rows = []
    for artifact, part in predictions.groupby("artifact", sort=False):
        groups = [ALL_CLASSES_ROW, *(c for c in classes if (part["true"] == c).any())]
        for true in groups:
            chosen = part if true == ALL_CLASSES_ROW else part[part["true"] == true]
            rows.append({"artifact": artifact, **_summary_row(chosen, classes, true, settings)})
    table = pd.DataFrame(rows)
    table.attrs["classes"] = classes
    return table


def shortcut_test(run_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None, *, part: str = "test",
                  artifacts: Sequence[str] = ARTIFACTS, n_boot: int = 1000, seed: int = 0,
                  max_per_class: int | None = None, confidence: float = 0.95, device: str = "auto") -> pd.DataFrame:
    """:func:`shortcut_summary` of :func:`shortcut_predictions`: for each artifact, how many of a run's correct
    ``part`` predictions change when it is added to pictures that lack it, and to which class, with intervals over
    lesions. The bootstrap's parameters are checked before any image is read."""
    _check_bootstrap_args(n_boot, confidence, seed)
    predictions = shortcut_predictions(run_dir, data_dir, part=part, artifacts=artifacts, seed=seed,
                                       max_per_class=max_per_class, device=device)
    return shortcut_summary(predictions, n_boot=n_boot, seed=seed, confidence=confidence)
