"""The prediction inspector of the rendered book: a confusion matrix, filters, a gallery and a detail pane that work
in the static HTML, with no kernel and no network.

The live inspector (:func:`pskinlib.explain.inspector.inspect_run`) is made of ipywidgets: in the static book they
are drawn from their saved state and cannot run Python, so clicks do nothing. Here everything a click can show is
computed at build time instead and written into the page: for each image its class probabilities, a small JPEG
thumbnail and, for the errors, a JPEG of the Grad-CAM map of the (wrong) predicted class over the photograph. The
book's script ``book/_static/inspector.js`` (loaded on every page through ``html_js_files`` in ``_config.yml``)
reads that data and draws the inspector in the reader's browser.

The page has to stay light: thumbnails are 64 px on the long side, a larger image (160 px) exists only where there
is a Grad-CAM map, and the JPEG header every image of a kind shares is stored once. On the real HAM10000 test split
of the smoke book's ResNet18 (32 px, inverse class weights: 1,338 images, 657 of them errors) the block is 2.5 MB:
0.7 MB of thumbnails, 1.7 MB of maps. :attr:`StaticInspector.size_text` says how large a block is, for the chapter
to quote.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from pskinlib.data.ham10000 import load_image
from pskinlib.errors import ParameterError, check_int
from pskinlib.evaluate.predict import TrainedModel
from pskinlib.explain.gradcam import overlay
from pskinlib.explain.inspector import (
    class_heatmaps,
    confusion_counts,
    explained_layer,
    prediction_classes,
    sort_predictions,
)
from pskinlib.info import CLASSES

STATIC = Path(__file__).resolve().parent / "_static"
SCRIPT, STYLESHEET = STATIC / "inspector.js", STATIC / "pskin.css"  # the book loads both on every page
GRADCAM_CHOICES = ("errors", "all", "none")  # which images get a Grad-CAM map of their predicted class
JPEG_QUALITY = 70  # the thumbnails and maps are small: at 70 JPEG's blocks are not yet visible
_counter = itertools.count()  # two inspectors on one page get different ids


@dataclass(frozen=True)
class StaticInspector:
    """A block of HTML holding one split's predictions and the markup ``inspector.js`` turns into the inspector; a
    notebook displays it. ``data`` is what the block carries (:func:`inspector_data`)."""

    html: str
    data: dict[str, Any]

    @property
    def n_maps(self) -> int:
        """How many of its images have a Grad-CAM map."""
        return _n_maps(self.data)

    @property
    def size_bytes(self) -> int:
        """What the block adds to the page, in bytes (UTF-8)."""
        return len(self.html.encode())

    @property
    def size_text(self) -> str:
        """The size for a reader: ``"2.5 MB"`` (10^6 bytes) or ``"74 kB"``."""
        return _megabytes(self.size_bytes)

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return (f"StaticInspector: {len(self.data['images'])} images, {self.n_maps} Grad-CAM maps, "
                f"{self.size_text} of HTML")


def gradcam_caption(trained: TrainedModel, code: str) -> str:
    """The caption under the Grad-CAM map of class ``code``: the one place that words it, with the block the map
    was read from and its grid."""
    name = CLASSES[code].name if code in CLASSES else code
    return (f"{explained_layer(trained).caption} of the predicted class, {code} ({name}): red is where "
            f"{trained.config.model} found its evidence for it")


def _n_maps(data: dict[str, Any]) -> int:
    return sum("cam" in image for image in data["images"])


def _jpeg(image: Image.Image) -> bytes:
    # Pillow's standard Huffman tables (no optimize=True): then every JPEG of one size starts with the same bytes.
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _shared_head(jpegs: list[bytes]) -> tuple[str, list[str]]:
    """The bytes all ``jpegs`` start with (their header: tables, and the size when they share it) in base64 once,
    and each one's rest in base64: ``head + rest`` is the whole file's base64, since the head is cut at a multiple
    of 3 bytes. A 64 px thumbnail is about 1 kB, 600 bytes of it header: this halves the thumbnails."""
    if not jpegs:
        return "", []
    cut = len(os.path.commonprefix(jpegs)) // 3 * 3
    return (base64.b64encode(jpegs[0][:cut]).decode("ascii"),
            [base64.b64encode(jpeg[cut:]).decode("ascii") for jpeg in jpegs])


def _fitted(image: Image.Image, long_side: int) -> Image.Image:
    """A copy at most ``long_side`` pixels on its long side, aspect kept."""
    small = image.copy()
    small.thumbnail((long_side, long_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return small


def _stored_rows(predictions: pd.DataFrame, max_images: int | None) -> pd.DataFrame:
    """The rows the page stores, most confident first; with ``max_images``, the hardest ones (highest loss)."""
    if max_images is not None and len(predictions) > max_images:
        predictions = sort_predictions(predictions, "loss").head(max_images)
    return sort_predictions(predictions, "confidence")


def inspector_data(predictions: pd.DataFrame, trained: TrainedModel | None = None, *, thumb: int = 64,
                   detail: int = 160, gradcam: str = "errors", max_images: int | None = None) -> dict[str, Any]:
    """What the page stores for ``inspector.js``, as JSON-ready data.

    ``predictions``: :func:`~pskinlib.explain.inspector.load_predictions`' table; ``trained``: the run's model, for
    Grad-CAM (``None``: no maps); ``thumb`` and ``detail``: pixels on the long side of the thumbnails and of the
    Grad-CAM images; ``gradcam``: which images get the map of their predicted class (``"errors"``, ``"all"`` or
    ``"none"``); ``max_images``: store at most this many images, the hardest (highest loss ``-log p(true)``) ones,
    while the confusion matrix still counts them all.

    Returns ``classes`` (code, name, colour), ``counts`` (rows true, columns predicted), ``images`` (most confident
    first; each with ``id``, ``true``, ``predicted``, ``p`` in class order, ``thumb`` and maybe ``cam``: a JPEG in
    base64 without its first bytes, which ``jpeg_heads[kind]`` holds once for all), ``gradcam`` (which images have
    a map) and ``cam_captions`` (by predicted class).
    """
    classes = list(prediction_classes(predictions))
    thumb = check_int("thumb", thumb, 16)
    detail = check_int("detail", detail, thumb)
    if gradcam not in GRADCAM_CHOICES:
        raise ParameterError(f"gradcam: expected one of {list(GRADCAM_CHOICES)}, got {gradcam!r}.")
    if max_images is not None:
        max_images = check_int("max_images", max_images, 1)
    if trained is not None and tuple(trained.classes) != tuple(classes):
        raise ParameterError(f"trained: the model's classes {list(trained.classes)} are not the predictions' "
                             f"{classes}; pass the model of the run the predictions come from.")
    # No map where no block of the network gives a 7x7 grid at its image size: a blob would mislead.
    with_maps = trained is not None and gradcam != "none" and explained_layer(trained).usable
    images = []
    for row in _stored_rows(predictions, max_images).itertuples(index=False):
        photo = Image.fromarray(load_image(row.path))
        item = {"id": str(row.image_id), "true": row.true, "predicted": row.predicted,
                "p": [round(float(getattr(row, f"p_{c}")), 4) for c in classes],
                "thumb": _jpeg(_fitted(photo, thumb))}
        if with_maps and (gradcam == "all" or row.true != row.predicted):
            large = np.asarray(_fitted(photo, detail))
            heatmap = class_heatmaps(trained, row.path, [row.predicted])[0]
            item["cam"] = _jpeg(Image.fromarray(overlay(large, heatmap)))
        images.append(item)
    heads = {}
    for kind in ("thumb", "cam"):
        having = [item for item in images if kind in item]
        heads[kind], tails = _shared_head([item[kind] for item in having])
        for item, tail in zip(having, tails):
            item[kind] = tail
    predicted = sorted({item["predicted"] for item in images if "cam" in item}, key=classes.index)
    return {"classes": [{"code": c, "name": CLASSES[c].name if c in CLASSES else c,
                         "colour": CLASSES[c].colour if c in CLASSES else "#777777"} for c in classes],
            "counts": confusion_counts(predictions).to_numpy().tolist(),
            "images": images, "jpeg_heads": heads, "gradcam": gradcam if with_maps else "none",
            "cam_captions": {c: gradcam_caption(trained, c) for c in predicted}}


def _json_for_script(data: dict[str, Any]) -> str:
    # "<" escaped: no "</script>" or "<!--" inside the data can end the block early.
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")


def static_inspector(predictions: pd.DataFrame, trained: TrainedModel | None = None, *, thumb: int = 64,
                     detail: int = 160, gradcam: str = "errors", max_images: int | None = None,
                     standalone: bool = False) -> StaticInspector:
    """The inspector for the static book, as a block of HTML a notebook displays (arguments: :func:`inspector_data`).

    The book loads ``inspector.js`` and ``pskin.css`` on every page; ``standalone``: put them in the block itself,
    for a page that does not load the book's files (a saved HTML file, a trusted notebook in JupyterLab).
    """
    if not isinstance(standalone, bool):
        raise ParameterError(f"standalone: expected True or False, got {standalone!r}.")
    data = inspector_data(predictions, trained, thumb=thumb, detail=detail, gradcam=gradcam, max_images=max_images)
    payload = _json_for_script(data)
    key = f"pskin-static-inspector-{hashlib.sha1(payload.encode()).hexdigest()[:10]}-{next(_counter)}"
    n_maps, stored, total = _n_maps(data), len(data["images"]), len(predictions)
    maps = {"errors": f"{n_maps} Grad-CAM maps of the errors", "all": f"{n_maps} Grad-CAM maps",
            "none": "no Grad-CAM maps"}[data["gradcam"]]
    parts = [f'<div class="pskin-static-inspector" id="{key}">',
             '<p class="pskin-static-fallback"><i>This inspector is drawn in the browser by the book\'s script '
             '(<code>_static/inspector.js</code>), which this page did not run. In JupyterLab, use the live '
             "inspector, or display <code>static_inspector(..., standalone=True)</code>.</i></p>",
             f'<script type="application/json" class="pskin-static-data">{payload}</script>']
    if standalone:
        parts.insert(0, f"<style>{STYLESHEET.read_text()}</style>")
        parts.append(f"<script>{SCRIPT.read_text()}</script>")
    size = sum(len(p.encode()) for p in parts)
    stored_text = f"{stored:,} images" if stored == total else f"{stored:,} of the {total:,} images (the hardest)"
    parts.append(f'<p class="pskin-static-size">Stored in this page: {stored_text}, {maps}; '
                 f"{html.escape(_megabytes(size))}.</p>")
    parts.append("</div>")
    return StaticInspector("".join(parts), data)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
