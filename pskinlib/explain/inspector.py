"""The prediction inspector: which images does a run get wrong, and where does the model look?

Plain, widget-free functions load a run's predictions with each image's metadata, ``confidence``, ``loss`` and
``correct`` (:func:`load_predictions`) and select rows from them. On top, ipywidgets for JupyterLab: a browser of
thumbnails with a Grad-CAM detail pane, a clickable confusion matrix and a new-image predictor, put together by
:func:`inspect_run`; each keeps its controls as attributes so tests and notebooks can drive it from Python. For the
static book, where widgets cannot react, :func:`plot_error_gallery` draws the most confident errors as a figure.
"""

from __future__ import annotations

import html
import io
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import ipywidgets as widgets
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import to_hex
from PIL import Image

from ..data.batches import BatchConstants, normalise, to_float
from ..data.cache import Preprocessing, resize_image
from ..data.ham10000 import LesionImages, load_ham10000, load_image
from ..errors import ParameterError, check_int
from ..evaluate.predict import TrainedModel, load_trained
from ..info import CLASSES, PATIENT_COLUMNS
from ..runs import PARTS, RunRecord
from ..train.models import model_spec
from ..train.trainer import preprocessing_of
from .gradcam import GradCamTarget, grad_cam, gradcam_target, overlay

SORT_KEYS = ("confidence", "loss")
METADATA_COLUMNS = ("lesion_id", "dx_type", *PATIENT_COLUMNS)
ALL = "all"
CORRECTNESS = {ALL: None, "correct": True, "wrong": False}


# ---------------------------------------------------------------------------------------------------------------
# The table of predictions


def prediction_classes(predictions: pd.DataFrame) -> tuple[str, ...]:
    """The class codes of a predictions table, in label order (from its ``p_<code>`` columns)."""
    codes = tuple(c[2:] for c in predictions.columns if c.startswith("p_"))
    if len(codes) < 2:
        raise ParameterError(f"predictions: need a p_<code> probability column per class; found columns "
                             f"{list(predictions.columns)}.")
    return codes


def _check_predictions(predictions: pd.DataFrame) -> tuple[str, ...]:
    missing = [c for c in ("image_id", "true", "predicted") if c not in predictions.columns]
    if missing:
        raise ParameterError(f"predictions: missing column(s) {missing}; expected image_id, true, predicted and "
                             "p_<code> per class (a run's predictions_<split>.csv).")
    classes = prediction_classes(predictions)
    for column in ("true", "predicted"):
        unknown = sorted(set(predictions[column]) - set(classes))
        if unknown:
            raise ParameterError(f"predictions: {column} holds code(s) {unknown} that have no p_<code> column "
                                 f"(classes {list(classes)}).")
    return classes


def load_predictions(source: str | os.PathLike | pd.DataFrame, split: str = "test", *,
                     images: LesionImages | pd.DataFrame | None = None,
                     data_dir: str | os.PathLike | None = None, fused: bool = False) -> pd.DataFrame:
    """A run's predictions joined with each image's metadata and file, plus ``confidence``, ``loss``, ``correct``.

    ``source``: a run folder (images found through its recorded data root, or ``data_dir``) or a predictions
    DataFrame with ``images`` (a :class:`~pskinlib.data.LesionImages` or its table); ``fused``: the predictions of
    the run's head fused with age, sex and body site (``pskin fuse RUN``). One row per image (``paper`` repeats some).
    """
    if isinstance(source, pd.DataFrame):
        if fused:
            raise ParameterError("fused: only a run folder has a fused head; a DataFrame is read as it is.")
        if images is None:
            raise ParameterError("images: a predictions DataFrame needs the images table (image_id, path, metadata) "
                                 "to find its files; pass images=load_ham10000(...) or its .table.")
        predictions = source.copy()
    else:
        record = RunRecord.open(source)
        if split not in PARTS:
            raise ParameterError(f"split: expected one of {list(PARTS)}, got {split!r}.")
        results = record.fusion(True) if fused else record
        if fused and not results.finished:
            raise ParameterError(f"run_dir: {record.path} has no fused head yet; fit one with "
                                 f"`pskin fuse {record.path}`.")
        predictions = results.predictions(split)
        if images is None:
            # An exported record names its data by dataset, not by folder: then $PSKIN_DATA is used.
            images = load_ham10000(data_dir or record.recorded["data"].get("root"), classes=record.classes,
                                   skip_missing=True)
    table = images.table if isinstance(images, LesionImages) else images
    if not {"image_id", "path"} <= set(table.columns):
        raise ParameterError(f"images: need the columns image_id and path; found {list(table.columns)}.")
    return _with_metadata(predictions, table)


def load_evaluation_predictions(run_dir: str | os.PathLike, evaluation: str, folders) -> pd.DataFrame:
    """An external evaluation's predictions (``pskin evaluate RUN --external``) joined with their images in the
    labelled ``folders``, as :func:`load_predictions` gives a run's own."""
    from ..data.labelled_folders import read_labelled_folders

    result = RunRecord.open(run_dir).evaluations().get(evaluation)
    if result is None:
        raise ParameterError(f"run_dir: {run_dir} has no finished evaluation {evaluation!r}; make it with "
                             f"`pskin evaluate {run_dir} --external DIR --name {evaluation}`.")
    return _with_metadata(result.predictions(), read_labelled_folders(folders))


def _with_metadata(predictions: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    classes = _check_predictions(predictions)
    predictions = predictions.drop_duplicates("image_id").reset_index(drop=True)
    extra = [c for c in (*METADATA_COLUMNS, "path") if c in table.columns and c not in predictions.columns]
    joined = predictions.merge(table.drop_duplicates("image_id")[["image_id", *extra]], on="image_id", how="left")
    missing = joined.loc[joined["path"].isna() | (joined["path"] == ""), "image_id"].tolist()
    if missing:
        raise ParameterError(f"images: {len(missing)} predicted image(s) are not in the images table: "
                             f"{missing[:10]}; pass data_dir= the folder the run was trained on.")
    joined = joined.assign(**{c: np.nan for c in METADATA_COLUMNS if c not in joined.columns})
    probs = joined[[f"p_{c}" for c in classes]].to_numpy(np.float64)
    p_true = probs[np.arange(len(joined)), joined["true"].map(classes.index).to_numpy()]
    joined["confidence"] = probs.max(axis=1)
    joined["loss"] = -np.log(np.clip(p_true, 1e-12, 1.0))
    joined["correct"] = joined["true"] == joined["predicted"]
    return joined


def filter_predictions(predictions: pd.DataFrame, true: str | None = None, predicted: str | None = None,
                       correct: bool | None = None) -> pd.DataFrame:
    """The rows with the given true class, predicted class and correctness (``None``: any)."""
    classes = prediction_classes(predictions)
    for name, value in (("true", true), ("predicted", predicted)):
        if value is not None and value not in classes:
            raise ParameterError(f"{name}: expected None or one of {list(classes)}, got {value!r}.")
    if correct is not None and not isinstance(correct, (bool, np.bool_)):
        raise ParameterError(f"correct: expected None, True or False, got {correct!r}.")
    keep = pd.Series(True, index=predictions.index)
    for column, value in (("true", true), ("predicted", predicted), ("correct", correct)):
        if value is not None:
            keep &= predictions[column] == value
    return predictions[keep]


def sort_predictions(predictions: pd.DataFrame, by: str = "confidence", descending: bool = True) -> pd.DataFrame:
    """Rows sorted by ``confidence`` or ``loss``; ties in image_id order, so pages are reproducible."""
    if by not in SORT_KEYS:
        raise ParameterError(f"by: expected one of {list(SORT_KEYS)}, got {by!r}.")
    return predictions.sort_values([by, "image_id"], ascending=[not descending, True], kind="mergesort")


def n_pages(n_rows: int, per_page: int) -> int:
    """Pages needed for ``n_rows`` rows; an empty table still has one (empty) page."""
    return max(1, math.ceil(n_rows / per_page))


def page(predictions: pd.DataFrame, page: int, per_page: int) -> pd.DataFrame:
    """Rows of page ``page`` (counted from 0) with ``per_page`` rows a page."""
    check_int("per_page", per_page, 1)
    last = n_pages(len(predictions), per_page) - 1
    if not isinstance(page, (int, np.integer)) or isinstance(page, bool) or not 0 <= page <= last:
        raise ParameterError(f"page: expected an integer from 0 to {last}, got {page!r}.")
    return predictions.iloc[page * per_page:(page + 1) * per_page]


def most_confident_errors(predictions: pd.DataFrame, per_class: int = 4) -> pd.DataFrame:
    """Up to ``per_class`` wrong predictions of each true class, the most confident first."""
    check_int("per_class", per_class, 1)
    classes = prediction_classes(predictions)
    errors = sort_predictions(filter_predictions(predictions, correct=False), "confidence")
    chosen = errors.groupby("true", sort=False).head(per_class)
    return chosen.sort_values("true", key=lambda codes: codes.map(classes.index), kind="stable")


def confusion_counts(predictions: pd.DataFrame) -> pd.DataFrame:
    """Images per (true, predicted) pair: rows true, columns predicted, in class order."""
    classes = list(prediction_classes(predictions))
    counts = pd.crosstab(predictions["true"], predictions["predicted"])  # its axes are named true and predicted
    return counts.reindex(index=classes, columns=classes, fill_value=0)


# ---------------------------------------------------------------------------------------------------------------
# Pictures: thumbnails, model inputs and Grad-CAM maps


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _image_widget(**layout) -> widgets.Image:
    # A 1-pixel white PNG until it gets a picture: an empty Image widget is a broken image in the static book.
    return widgets.Image(value=_png(np.full((1, 1, 3), 255)), format="png", layout=widgets.Layout(**layout))


def display_image(path: str | os.PathLike, width: int) -> np.ndarray:
    """An image at ``width`` pixels wide, aspect kept (the 4:3 dermoscopy frame, as the clinician sees it)."""
    image = Image.fromarray(load_image(path))
    height = max(1, round(image.height * width / image.width))
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0))


def model_input(path: str | os.PathLike, image_size: int, normalisation: str = "imagenet",
                preprocessing: Preprocessing | None = None) -> torch.Tensor:
    """One image as the model sees it: resized like the training cache, normalised, ``(1, 3, S, S)``."""
    pixels = resize_image(str(path), image_size, preprocessing or Preprocessing())
    pixels = torch.from_numpy(np.array(pixels[None]))  # a writable copy
    return normalise(to_float(pixels), BatchConstants.on("cpu", normalisation))


def explained_layer(trained: TrainedModel) -> GradCamTarget:
    """The block Grad-CAM reads in a run's model at the run's image size, and its grid: ``.caption`` names both
    (``"Grad-CAM at layer1 (12×12 cells)"``); ``.usable`` is false, and the caption says no map is shown, where no
    block gives 7×7 cells (:func:`~pskinlib.explain.gradcam.gradcam_target`)."""
    return gradcam_target(trained.model, trained.config.image_size)


def class_heatmaps(trained: TrainedModel, path: str | os.PathLike, codes: list[str] | tuple[str, ...], *,
                   layer: str | None = None) -> np.ndarray:
    """Grad-CAM maps ``(len(codes), S, S)`` of one image for the given classes, in one forward pass, at ``layer``
    (``None``: :func:`explained_layer`'s, an error where no block gives 7×7 cells)."""
    unknown = [c for c in codes if c not in trained.classes]
    if unknown:
        raise ParameterError(f"codes: {unknown} are not classes of the model ({list(trained.classes)}).")
    x = model_input(path, trained.config.image_size, model_spec(trained.config.model).normalisation,
                    preprocessing_of(trained.config))
    x = x.repeat(len(codes), 1, 1, 1).to(trained.device)
    return grad_cam(trained.model, x, torch.tensor([trained.classes.index(c) for c in codes]), layer=layer)


def probability_html(probabilities: dict[str, float], true: str | None = None, predicted: str | None = None) -> str:
    """An HTML table with one coloured bar per class (it renders in the static book, unlike a live plot)."""
    td = "<td style='padding:1px 6px"
    rows = []
    for code, p in probabilities.items():
        marks = " · ".join(m for m, c in (("true", true), ("predicted", predicted)) if c == code)
        colour = CLASSES[code].colour if code in CLASSES else "#777777"
        rows.append(f"<tr>{td}'><b>{html.escape(code)}</b></td>{td}'><div style='width:160px;background:#eee;"
                    f"height:12px'><div style='width:{100 * p:.1f}%;background:{colour};height:12px'></div></div>"
                    f"</td>{td};text-align:right'>{p:.1%}</td>{td};color:#555'>{marks}</td></tr>")
    return "<table class='pskin-probabilities'>" + "".join(rows) + "</table>"


def metadata_html(row: pd.Series) -> str:
    """The image's id, lesion and HAM10000 metadata as a small HTML table."""
    cells = []
    for name in ("image_id", *METADATA_COLUMNS):
        value = row.get(name)
        text = "—" if pd.isna(value) or value == "" else value
        if name == "age" and isinstance(text, float):
            text = f"{text:.0f}"
        cells.append(f"<tr><td style='padding:1px 6px;color:#555'>{name}</td>"
                     f"<td style='padding:1px 6px'>{html.escape(str(text))}</td></tr>")
    return "<table class='pskin-metadata'>" + "".join(cells) + "</table>"


# ---------------------------------------------------------------------------------------------------------------
# Widgets


class _Displayable:
    """Shows ``self.widget`` when the object is displayed in a notebook."""

    widget: widgets.Widget

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def _sized(widget_class, width: str, **kwargs) -> widgets.Widget:
    return widget_class(layout=widgets.Layout(width=width), **kwargs)


class PredictionBrowser(_Displayable):
    """Filters, sorting and pages of thumbnails over :func:`load_predictions`' table, with a detail pane for one image
    (Grad-CAM maps too when ``trained``, the run's model, is given); controls and state are public attributes."""

    def __init__(self, predictions: pd.DataFrame, trained: TrainedModel | None = None, *, per_page: int = 12,
                 thumbnail_size: int = 96, detail_size: int = 300):
        self.classes = _check_predictions(predictions)
        for name, value, low in (("per_page", per_page, 1), ("thumbnail_size", thumbnail_size, 16),
                                 ("detail_size", detail_size, 32)):
            check_int(name, value, low, int)
        self.predictions, self.trained = predictions, trained
        self.gradcam = explained_layer(trained) if trained is not None else None
        self.per_page, self.thumbnail_size, self.detail_size = per_page, thumbnail_size, detail_size
        self.page_index, self.selected = 0, None
        self._thumbnails: dict[str, bytes] = {}
        self._heatmaps: dict[str, dict[str, np.ndarray]] = {}
        self._holding = False
        options = [ALL, *self.classes]
        self.true_filter = _sized(widgets.Dropdown, "160px", options=options, value=ALL, description="true")
        self.predicted_filter = _sized(widgets.Dropdown, "180px", options=options, value=ALL, description="predicted")
        self.correct_filter = widgets.ToggleButtons(options=list(CORRECTNESS), value=ALL,
                                                    style={"button_width": "70px"})
        self.correct_filter.add_class("pskin-correct-filter")
        self.sort_by = _sized(widgets.Dropdown, "180px", options=list(SORT_KEYS), value="confidence",
                              description="sort by")
        self.descending = _sized(widgets.Checkbox, "120px", value=True, description="highest first", indent=False)
        for control in (self.true_filter, self.predicted_filter, self.correct_filter, self.sort_by, self.descending):
            control.observe(self._on_control, names="value")
        self.prev_button = _sized(widgets.Button, "100px", description="◀ previous")
        self.next_button = _sized(widgets.Button, "100px", description="next ▶")
        for button, step in ((self.prev_button, -1), (self.next_button, 1)):
            button.on_click(lambda _, step=step: self.go_to_page(self.page_index + step))
        self.page_label = widgets.HTML()
        self.page_label.add_class("pskin-page-label")
        # A fixed pool of cells, refilled on every change: no widgets pile up in the kernel while paging.
        cell_width = max(thumbnail_size + 8, 120)  # room for "mel→bkl 100%"
        self._thumbnail_images = [_image_widget(width=f"{thumbnail_size}px") for _ in range(per_page)]
        self.thumbnail_buttons = [_sized(widgets.Button, f"{cell_width}px") for _ in range(per_page)]
        for slot, button in enumerate(self.thumbnail_buttons):
            button.on_click(lambda _, slot=slot: self.select(self.page_rows["image_id"].iloc[slot]))
        self._cells = [widgets.VBox([image, button], layout=widgets.Layout(align_items="center"))
                       for image, button in zip(self._thumbnail_images, self.thumbnail_buttons)]
        self.gallery = widgets.GridBox(self._cells, layout=widgets.Layout(
            grid_template_columns=f"repeat(auto-fill, {cell_width + 4}px)", grid_gap="4px", width="100%"))
        self.gallery.add_class("pskin-gallery")
        self.detail_title = widgets.HTML("<i>Click a thumbnail's button to see the image in detail.</i>")
        self.detail_image, self.cam_predicted, self.cam_true = _image_widget(), _image_widget(), _image_widget()
        self.cam_predicted_label, self.cam_true_label = widgets.HTML(), widgets.HTML()
        self.probability_html, self.metadata_html = widgets.HTML(), widgets.HTML()
        self.detail = widgets.VBox([
            self.detail_title,
            widgets.HBox([widgets.VBox([widgets.HTML("<b>image</b>"), self.detail_image]),
                          widgets.VBox([self.cam_predicted_label, self.cam_predicted]),
                          widgets.VBox([self.cam_true_label, self.cam_true])]),
            widgets.HBox([self.probability_html, self.metadata_html]),
        ])
        self.detail.add_class("pskin-detail")
        self._detail_parts = self.detail.children[1:]
        self.widget = widgets.VBox([
            widgets.HBox([self.true_filter, self.predicted_filter, self.correct_filter]),
            widgets.HBox([self.sort_by, self.descending, self.prev_button, self.page_label, self.next_button]),
            self.gallery, self.detail])
        self._show_detail(False)
        self.refresh()

    @property
    def filters(self) -> dict:
        """The current filters as :func:`filter_predictions` arguments."""
        return {"true": None if self.true_filter.value == ALL else self.true_filter.value,
                "predicted": None if self.predicted_filter.value == ALL else self.predicted_filter.value,
                "correct": CORRECTNESS[self.correct_filter.value]}

    @property
    def n_pages(self) -> int:
        return n_pages(len(self.rows), self.per_page)

    def set_filters(self, true: str | None = None, predicted: str | None = None, correct: bool | None = None) -> None:
        """Set all three filters at once (one refresh); ``None`` means any."""
        filter_predictions(self.predictions.iloc[:0], true, predicted, correct)  # validates the arguments
        self._holding = True
        try:
            self.true_filter.value = true or ALL
            self.predicted_filter.value = predicted or ALL
            self.correct_filter.value = {v: k for k, v in CORRECTNESS.items()}[None if correct is None
                                                                                else bool(correct)]
        finally:
            self._holding = False
        self.go_to_page(0)

    def go_to_page(self, index: int) -> None:
        """Show page ``index`` (from 0), clamped to the pages there are."""
        self.page_index = index
        self.refresh()

    def _on_control(self, change) -> None:
        if not self._holding:
            self.go_to_page(0)

    def refresh(self) -> None:
        """Recompute the rows from the controls and redraw the page of thumbnails (``page_index`` clamped)."""
        self.rows = sort_predictions(filter_predictions(self.predictions, **self.filters), self.sort_by.value,
                                     self.descending.value)
        self.page_index = min(max(0, self.page_index), self.n_pages - 1)
        self.page_rows = page(self.rows, self.page_index, self.per_page)
        for slot, cell in enumerate(self._cells):
            cell.layout.display = None if slot < len(self.page_rows) else "none"
            if slot < len(self.page_rows):
                row, button = self.page_rows.iloc[slot], self.thumbnail_buttons[slot]
                if row["image_id"] not in self._thumbnails:
                    self._thumbnails[row["image_id"]] = _png(display_image(row["path"], self.thumbnail_size))
                self._thumbnail_images[slot].value = self._thumbnails[row["image_id"]]
                button.description = f"{row['true']}→{row['predicted']} {row['confidence']:.0%}"
                button.tooltip = (f"{row['image_id']}: true {row['true']}, predicted {row['predicted']}, "
                                  f"confidence {row['confidence']:.1%}, loss {row['loss']:.2f}")
                button.button_style = "success" if row["correct"] else "danger"
        first = self.page_index * self.per_page
        shown = f"{first + 1}–{first + len(self.page_rows)}" if len(self.page_rows) else "0"
        self.page_label.value = f"page {self.page_index + 1} of {self.n_pages} · images {shown} of {len(self.rows)}"
        self.prev_button.disabled = self.page_index == 0
        self.next_button.disabled = self.page_index >= self.n_pages - 1

    def _show_detail(self, visible: bool) -> None:
        for part in self._detail_parts:
            part.layout.display = None if visible else "none"

    def select(self, image_id: str) -> None:
        """Show one image in the detail pane: large, with probabilities, metadata and Grad-CAM maps."""
        matches = self.predictions.index[self.predictions["image_id"] == image_id]
        if not len(matches):
            raise ParameterError(f"image_id: {image_id!r} is not among the predictions.")
        row = self.predictions.loc[matches[0]]
        self.selected = image_id
        image = display_image(row["path"], self.detail_size)
        verdict = "correct" if row["correct"] else "wrong"
        self.detail_title.value = (f"<b>{html.escape(image_id)}</b>: true <b>{row['true']}</b>, predicted "
                                   f"<b>{row['predicted']}</b> ({verdict}, confidence {row['confidence']:.1%}, "
                                   f"loss {row['loss']:.2f})")
        self.detail_image.value = _png(image)
        probabilities = {c: float(row[f"p_{c}"]) for c in self.classes}
        self.probability_html.value = probability_html(probabilities, row["true"], row["predicted"])
        self.metadata_html.value = metadata_html(row)
        mapped = self.gradcam is not None and self.gradcam.usable
        for cam in (self.cam_predicted, self.cam_true):
            cam.layout.display = None if mapped else "none"
        if not mapped:
            self.cam_predicted_label.value = ("<i>Grad-CAM needs the run's model (pass trained=).</i>"
                                              if self.gradcam is None else f"<i>{html.escape(self.gradcam.caption)}"
                                              "</i>")
            self.cam_true_label.value = ""
        else:
            maps = self.heatmaps(image_id)
            for label, cam, kind in ((self.cam_predicted_label, self.cam_predicted, "predicted"),
                                     (self.cam_true_label, self.cam_true, "true")):
                label.value = f"<b>{self.gradcam.caption}: {kind} class {row[kind]}</b>"
                cam.value = _png(overlay(image, maps[row[kind]]))
        self._show_detail(True)

    def heatmaps(self, image_id: str) -> dict[str, np.ndarray]:
        """Grad-CAM maps of one image for its predicted and its true class (computed once, then kept)."""
        if self.trained is None:
            raise ParameterError("trained: the browser was made without the run's model, so it has no Grad-CAM.")
        if not self.gradcam.usable:
            raise ParameterError(f"trained: {self.gradcam.caption}.")
        if image_id not in self._heatmaps:
            row = self.predictions.loc[self.predictions["image_id"] == image_id].iloc[0]
            codes = list(dict.fromkeys([row["predicted"], row["true"]]))
            maps = class_heatmaps(self.trained, row["path"], codes, layer=self.gradcam.layer)
            self._heatmaps[image_id] = dict(zip(codes, maps))
        return self._heatmaps[image_id]


class ConfusionMatrixWidget(_Displayable):
    """The confusion matrix as buttons (rows true, columns predicted; ``cell_button(i, j)``): a click sets the
    ``browser``'s filters to that cell and calls ``on_select(true, predicted)``."""

    def __init__(self, predictions: pd.DataFrame, browser: PredictionBrowser | None = None, *,
                 on_select: Callable[[str, str], None] | None = None):
        self.classes = _check_predictions(predictions)
        self.counts = confusion_counts(predictions)
        self.browser, self._on_select, self.selected = browser, on_select, None
        per_true = self.counts.to_numpy().sum(axis=1)
        share = self.counts.to_numpy() / per_true[:, None].clip(min=1)
        blues = matplotlib.colormaps["Blues"]
        self._buttons: list[list[widgets.Button]] = []
        cells: list[widgets.Widget] = [widgets.HTML("<small>true ↓ predicted →</small>")]
        cells += [widgets.HTML(f"<b>{c}</b>") for c in self.classes]
        for i, true in enumerate(self.classes):
            self._buttons.append([])
            for j, predicted in enumerate(self.classes):
                count = int(self.counts.iloc[i, j])
                button = _sized(widgets.Button, "72px", description=str(count),
                                tooltip=f"true {true}, predicted {predicted}: {count} image(s), "
                                        + (f"{share[i, j]:.0%} of true {true}" if per_true[i]
                                           else f"no true {true} image in this set"),
                                style={"button_color": to_hex(blues(0.1 + 0.8 * share[i, j])),
                                       "text_color": "white" if share[i, j] > 0.5 else "black",
                                       "font_weight": "bold" if i == j else "normal"})
                button.on_click(lambda _, t=true, p=predicted: self._select(t, p))
                self._buttons[i].append(button)
            # A class the set lacks has no share to colour and no recall: its row says so instead of showing 0 %.
            row_label = f"<b>{true}</b>" if per_true[i] else f"<b>{true}</b> <small>(none in this set)</small>"
            cells += [widgets.HTML(row_label), *self._buttons[i]]
        self.grid = widgets.GridBox(cells, layout=widgets.Layout(
            grid_template_columns=f"120px repeat({len(self.classes)}, 76px)", grid_gap="2px"))
        self.grid.add_class("pskin-confusion")
        self.show_all_button = widgets.Button(description="show all images")
        self.show_all_button.on_click(lambda _: self._select(None, None))
        self.widget = widgets.VBox([self.grid, self.show_all_button])

    def cell_button(self, i: int, j: int) -> widgets.Button:
        """The button of true class ``i`` and predicted class ``j`` (indices in class order)."""
        n = len(self.classes)
        if not (isinstance(i, int) and isinstance(j, int) and 0 <= i < n and 0 <= j < n):
            raise ParameterError(f"i, j: expected class indices from 0 to {n - 1}, got ({i!r}, {j!r}).")
        return self._buttons[i][j]

    def _select(self, true: str | None, predicted: str | None) -> None:
        # (None, None) is "show all images": the browser's filters are cleared and no callback is told.
        self.selected = None if true is None else (true, predicted)
        if self.browser is not None:
            self.browser.set_filters(true=true, predicted=predicted, correct=None)
        if true is not None and self._on_select is not None:
            self._on_select(true, predicted)


class NewImagePredictor(_Displayable):
    """Predict an image that is not in the run (a typed path or an upload): probabilities and the Grad-CAM map of
    the predicted class; ``predict_path`` and ``predict_bytes`` do the same from code."""

    def __init__(self, trained: TrainedModel, *, detail_size: int = 300):
        self.trained, self.detail_size = trained, detail_size
        self.gradcam = explained_layer(trained)
        self.path_text = _sized(widgets.Text, "420px", placeholder="path to a .jpg or .png", description="file")
        self.predict_button = widgets.Button(description="predict", button_style="primary")
        self.predict_button.on_click(lambda _: self._reporting(self.predict_path, self.path_text.value.strip()))
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="upload")
        self.upload.observe(self._on_upload, names="value")
        self.status, self.image, self.heatmap = widgets.HTML(), _image_widget(), _image_widget()
        self.probability_html = widgets.HTML()
        self.probabilities: dict[str, float] | None = None
        self.result = widgets.HBox([self.image, self.heatmap, self.probability_html],
                                   layout=widgets.Layout(display="none"))  # shown after the first prediction
        self.widget = widgets.VBox([widgets.HBox([self.path_text, self.predict_button, self.upload]), self.status,
                                    self.result])

    def predict_path(self, path: str | os.PathLike, name: str | None = None) -> dict[str, float]:
        """Predict the image file at ``path``, show the result, and return the probabilities by class."""
        path = Path(path)
        if not path.is_file():
            raise ParameterError(f"path: no image file at {path}.")
        probs = self.trained.predict([path])[0]
        probabilities = dict(zip(self.trained.classes, map(float, probs)))
        predicted = self.trained.classes[int(np.argmax(probs))]
        image = display_image(path, self.detail_size)
        self.image.value = _png(image)
        self.heatmap.layout.display = None if self.gradcam.usable else "none"
        if self.gradcam.usable:
            heatmap = class_heatmaps(self.trained, path, [predicted], layer=self.gradcam.layer)[0]
            self.heatmap.value = _png(overlay(image, heatmap))
        self.probability_html.value = probability_html(probabilities, predicted=predicted)
        explained = f"right: {self.gradcam.caption} of {predicted}" if self.gradcam.usable else self.gradcam.caption
        self.status.value = (f"<b>{html.escape(name or path.name)}</b>: predicted <b>{predicted}</b> "
                             f"({probabilities[predicted]:.1%}); {html.escape(explained)}")
        self.probabilities = probabilities
        self.result.layout.display = None
        return probabilities

    def predict_bytes(self, content: bytes, name: str = "upload.png") -> dict[str, float]:
        """Predict an image given as file bytes (an upload); ``name``'s suffix tells its format."""
        with tempfile.TemporaryDirectory(prefix="pskin-upload-") as folder:
            path = Path(folder) / f"upload{Path(name).suffix.lower() or '.png'}"
            path.write_bytes(bytes(content))
            return self.predict_path(path, name=name)

    def _reporting(self, predict: Callable, *args) -> None:
        try:
            predict(*args)
        except ValueError as exc:  # a bad path or an undecodable file (DataError): say so in the widget
            self.status.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"

    def _on_upload(self, change) -> None:
        if change["new"]:
            upload = change["new"][0]
            self._reporting(self.predict_bytes, bytes(upload["content"]), upload["name"])


class RunInspector(widgets.VBox):
    """:func:`inspect_run`'s result: the widgets stacked, with ``browser``, ``confusion`` and ``predictor``."""

    def __init__(self, browser: PredictionBrowser, confusion: ConfusionMatrixWidget, predictor: NewImagePredictor,
                 title: str):
        super().__init__([widgets.HTML(f"<h3>{html.escape(title)}</h3><p>Confusion matrix: rows true, columns "
                                       "predicted; click a cell to browse its images.</p>"), confusion.widget,
                          widgets.HTML("<h4>Predictions</h4>"), browser.widget,
                          widgets.HTML("<h4>Predict a new image</h4>"), predictor.widget])
        self.browser, self.confusion, self.predictor = browser, confusion, predictor


def inspect_run(run_dir: str | os.PathLike, split: str = "test", *, data_dir: str | os.PathLike | None = None,
                per_page: int = 12, device: str = "auto", fused: bool = False) -> RunInspector:
    """The whole inspector for one run folder and split (``val`` or ``test``); ``fused``: browse the fused head's
    predictions (Grad-CAM and a new image's prediction still come from the network alone)."""
    predictions = load_predictions(run_dir, split, data_dir=data_dir, fused=fused)
    trained = load_trained(run_dir, device=device)
    browser = PredictionBrowser(predictions, trained, per_page=per_page)
    if len(browser.page_rows):
        # Show one image in full from the start, so the saved widget state in the book has an example.
        browser.select(browser.page_rows["image_id"].iloc[0])
    head = " of the head fused with age, sex and body site" if fused else ""
    return RunInspector(browser, ConfusionMatrixWidget(predictions, browser), NewImagePredictor(trained),
                        f"{Path(run_dir).name}: {split} predictions{head}")


# ---------------------------------------------------------------------------------------------------------------
# The static book


def plot_error_gallery(predictions: pd.DataFrame, trained: TrainedModel, per_class: int = 4, *,
                       width: int = 160):
    """A matplotlib Figure of the ``per_class`` most confident errors of each true class, each image beside its
    Grad-CAM map for the (wrong) predicted class; the title names the block and its grid (:func:`explained_layer`).
    Where no block gives a 7×7 map the images stand alone and the title says why."""
    errors = most_confident_errors(predictions, per_class)
    classes = prediction_classes(predictions)
    target = explained_layer(trained)
    step = 2 if target.usable else 1  # columns per error: the image, then its map
    fig, axes = plt.subplots(len(classes), step * per_class, figsize=(1.55 * 2 * per_class, 1.75 * len(classes)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, code in enumerate(classes):
        rows = errors[errors["true"] == code]
        colour = CLASSES[code].colour if code in CLASSES else "black"
        if rows.empty:
            axes[r, 0].text(0, 0.5, f"true {code}:\nno errors", color=colour, fontsize=9, va="center")
        for k, row in enumerate(rows.itertuples()):
            image = display_image(row.path, width)
            axes[r, step * k].imshow(image)
            axes[r, step * k].set_title(f"true {row.true} → {row.predicted}\n{row.confidence:.0%} confident",
                                        fontsize=8, color=colour)
            if target.usable:
                heatmap = class_heatmaps(trained, row.path, [row.predicted], layer=target.layer)[0]
                axes[r, 2 * k + 1].imshow(overlay(image, heatmap))
                axes[r, 2 * k + 1].set_title(f"Grad-CAM {row.predicted}", fontsize=8)
    looked = "and where the model looked for its answer" if target.usable else "without maps"
    fig.suptitle(f"Most confident errors of each true class, {looked}\n{target.caption}", fontsize=10)
    fig.tight_layout()
    return fig
