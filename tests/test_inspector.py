"""The prediction inspector: the table functions, the widgets driven from Python, the error gallery, and the
chapter's notebook run headless as the book runs it."""

from __future__ import annotations

import dataclasses
import io
import shutil
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import ham_rows, image_bytes_for, write_ham_folder
from PIL import Image

from book.tables import run_to_inspect
from pskinlib.evaluate.fusion import fuse_run
from pskinlib.explain.inspector import (
    ConfusionMatrixWidget,
    NewImagePredictor,
    PredictionBrowser,
    confusion_counts,
    explained_layer,
    filter_predictions,
    inspect_run,
    load_predictions,
    most_confident_errors,
    page,
    plot_error_gallery,
    sort_predictions,
)
from pskinlib.io import read_json
from pskinlib.train.config import make_config
from pskinlib.train.trainer import train

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------------------
# A hand-made table for the pure functions

ROWS = [  # image_id, true, predicted, p_mel, p_nv, p_bkl
    ("a", "mel", "mel", 0.7, 0.2, 0.1),
    ("b", "mel", "nv", 0.3, 0.6, 0.1),
    ("c", "nv", "nv", 0.1, 0.8, 0.1),
    ("d", "nv", "mel", 0.9, 0.05, 0.05),
    ("e", "bkl", "nv", 0.2, 0.5, 0.3),
    ("f", "bkl", "bkl", 0.1, 0.1, 0.8),
    ("g", "mel", "nv", 0.1, 0.85, 0.05),
]


@pytest.fixture
def table() -> pd.DataFrame:
    raw = pd.DataFrame(ROWS, columns=["image_id", "true", "predicted", "p_mel", "p_nv", "p_bkl"])
    images = pd.DataFrame({"image_id": raw["image_id"], "path": [f"/x/{i}.jpg" for i in raw["image_id"]],
                           "age": 50.0, "sex": "female", "localization": "back", "dx_type": "histo",
                           "lesion_id": [f"L{i}" for i in raw["image_id"]]})
    return load_predictions(raw, images=images)


def test_loaded_predictions_have_confidence_loss_and_correctness(table):
    assert table.loc[table["image_id"] == "d", "confidence"].item() == pytest.approx(0.9)
    assert table.loc[table["image_id"] == "g", "loss"].item() == pytest.approx(-np.log(0.1))
    assert table["correct"].tolist() == [True, False, True, False, False, True, False]
    assert {"age", "sex", "localization", "dx_type", "lesion_id", "path"} <= set(table.columns)


def test_a_predictions_dataframe_needs_an_images_table_holding_its_images(table):
    raw = table[["image_id", "true", "predicted", "p_mel", "p_nv", "p_bkl"]]
    with pytest.raises(ValueError, match="images"):
        load_predictions(raw)
    with pytest.raises(ValueError, match="not in the images table"):
        load_predictions(raw, images=pd.DataFrame({"image_id": ["a"], "path": ["/x/a.jpg"]}))
    with pytest.raises(ValueError, match="p_<code>"):
        load_predictions(raw.drop(columns=["p_nv", "p_bkl"]), images=table)


def test_filters_select_by_true_class_predicted_class_and_correctness(table):
    assert filter_predictions(table, true="mel")["image_id"].tolist() == ["a", "b", "g"]
    assert filter_predictions(table, true="mel", predicted="nv")["image_id"].tolist() == ["b", "g"]
    assert filter_predictions(table, correct=False)["image_id"].tolist() == ["b", "d", "e", "g"]
    assert filter_predictions(table, predicted="bkl", correct=True)["image_id"].tolist() == ["f"]
    assert len(filter_predictions(table)) == len(table)
    with pytest.raises(ValueError, match="true"):
        filter_predictions(table, true="melanoma")
    with pytest.raises(ValueError, match="correct"):
        filter_predictions(table, correct="yes")


def test_sorting_by_confidence_or_loss_either_way(table):
    assert sort_predictions(table, "confidence")["image_id"].tolist()[:3] == ["d", "g", "c"]
    assert sort_predictions(table, "loss")["image_id"].iloc[0] == "d"  # p(true nv) = 0.05
    ascending = sort_predictions(table, "loss", descending=False)["loss"].to_numpy()
    assert (np.diff(ascending) >= 0).all()
    with pytest.raises(ValueError, match="by"):
        sort_predictions(table, "age")


def test_pages_cover_the_rows_once_and_out_of_range_pages_are_refused(table):
    pages = [page(table, k, 3)["image_id"].tolist() for k in range(3)]
    assert pages == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    assert page(table.iloc[:0], 0, 3).empty
    with pytest.raises(ValueError, match="page"):
        page(table, 3, 3)
    with pytest.raises(ValueError, match="per_page"):
        page(table, 0, 0)


def test_most_confident_errors_are_chosen_per_true_class(table):
    errors = most_confident_errors(table, per_class=1)
    assert errors[["image_id", "true"]].values.tolist() == [["g", "mel"], ["d", "nv"], ["e", "bkl"]]
    assert most_confident_errors(table, per_class=4)["image_id"].tolist() == ["g", "b", "d", "e"]


def test_confusion_counts_have_true_rows_and_predicted_columns(table):
    counts = confusion_counts(table)
    assert counts.loc["mel", "nv"] == 2 and counts.loc["nv", "mel"] == 1 and counts.loc["bkl", "mel"] == 0
    assert counts.to_numpy().sum() == len(table)


# ---------------------------------------------------------------------------------------------------------------
# A real (tiny) run for the widgets


def test_a_class_the_set_lacks_is_named_as_absent_in_the_confusion_matrix_not_given_0_percent(table):
    without_bkl = table[table["true"] != "bkl"]
    confusion = ConfusionMatrixWidget(without_bkl)
    labels = [cell.value for cell in confusion.grid.children if isinstance(cell, widgets.HTML)]
    assert "<b>bkl</b> <small>(none in this set)</small>" in labels and "<b>mel</b>" in labels
    bkl = confusion.classes.index("bkl")
    assert all(confusion.cell_button(bkl, j).tooltip.endswith("no true bkl image in this set") for j in range(3))
    assert confusion.cell_button(0, 0).tooltip.endswith("% of true mel")


def test_a_run_folder_is_joined_with_the_images_it_was_trained_on(grad_cam_run, run_predictions):
    raw = pd.read_csv(grad_cam_run / "predictions_test.csv")
    assert len(run_predictions) == raw["image_id"].nunique()
    assert run_predictions["path"].map(lambda p: Path(p).is_file()).all()
    assert (run_predictions["sex"] == "male").all() and run_predictions["age"].notna().all()
    with pytest.raises(ValueError, match="split"):
        load_predictions(grad_cam_run, "train")


def test_the_chapter_finds_the_newest_run_of_its_model(grad_cam_run, tmp_path):
    assert run_to_inspect(runs_dir=grad_cam_run.parent, model="resnet18") == grad_cam_run
    data_root = read_json(grad_cam_run / "config.json")["data"]["root"]
    assert run_to_inspect(runs_dir=grad_cam_run.parent, model="resnet18", data_dir=data_root) == grad_cam_run
    assert run_to_inspect(grad_cam_run) == grad_cam_run
    with pytest.raises(ValueError, match="run_dir"):
        run_to_inspect(tmp_path)
    with pytest.raises(ValueError, match="model"):
        run_to_inspect(runs_dir=grad_cam_run.parent, model="vgg16")


def _gallery(browser: PredictionBrowser) -> list[str]:
    """The image ids the gallery shows now."""
    return [b.tooltip.split(":")[0] for b, c in zip(browser.thumbnail_buttons, browser._cells)
            if c.layout.display != "none"]


def test_browser_filters_change_the_gallery(run_predictions):
    browser = PredictionBrowser(run_predictions, per_page=50)
    assert len(_gallery(browser)) == len(run_predictions)
    browser.true_filter.value = "mel"
    expected = run_predictions.loc[run_predictions["true"] == "mel", "image_id"]
    assert sorted(_gallery(browser)) == sorted(expected) and (browser.rows["true"] == "mel").all()
    browser.correct_filter.value = "wrong"
    assert not browser.rows["correct"].any() and (browser.rows["true"] == "mel").all()
    assert len(_gallery(browser)) == len(browser.rows)
    browser.true_filter.value = "all"
    browser.correct_filter.value = "all"
    browser.predicted_filter.value = run_predictions["predicted"].iloc[0]
    assert (browser.rows["predicted"] == run_predictions["predicted"].iloc[0]).all()
    with pytest.raises(ValueError, match="true"):
        browser.set_filters(true="xyz")


def test_browser_sorts_by_confidence_or_loss(run_predictions):
    browser = PredictionBrowser(run_predictions, per_page=50)
    assert (np.diff(browser.rows["confidence"].to_numpy()) <= 0).all()
    browser.sort_by.value = "loss"
    assert (np.diff(browser.rows["loss"].to_numpy()) <= 0).all()
    assert _gallery(browser) == browser.rows["image_id"].tolist()
    browser.descending.value = False
    assert (np.diff(browser.rows["loss"].to_numpy()) >= 0).all()


def test_browser_pages_through_the_thumbnails(run_predictions):
    browser = PredictionBrowser(run_predictions, per_page=4)
    n = len(run_predictions)
    seen = []
    assert browser.prev_button.disabled and f"of {n}" in browser.page_label.value
    for k in range(browser.n_pages):
        assert browser.page_label.value.startswith(f"page {k + 1} of {browser.n_pages}")
        seen += _gallery(browser)
        browser.next_button.click()
    assert browser.next_button.disabled and browser.page_index == browser.n_pages - 1
    assert seen == browser.rows["image_id"].tolist() and len(seen) == n
    browser.prev_button.click()
    assert browser.page_index == browser.n_pages - 2
    browser.true_filter.value = "nv"  # a new filter starts again at the first page
    assert browser.page_index == 0


def test_selecting_a_thumbnail_shows_the_image_probabilities_metadata_and_grad_cam(run_predictions, trained):
    browser = PredictionBrowser(run_predictions, trained, per_page=6)
    assert browser.selected is None and all(p.layout.display == "none" for p in browser._detail_parts)
    browser.thumbnail_buttons[2].click()
    row = browser.page_rows.iloc[2]
    assert browser.selected == row["image_id"] and all(p.layout.display is None for p in browser._detail_parts)
    assert row["image_id"] in browser.detail_title.value
    assert all(f"{row[f'p_{c}']:.1%}" in browser.probability_html.value for c in browser.classes)
    assert row["lesion_id"] in browser.metadata_html.value and "back" in browser.metadata_html.value
    large = Image.open(io.BytesIO(browser.detail_image.value))
    assert large.size == (300, 225)  # the 4:3 frame kept
    for widget in (browser.cam_predicted, browser.cam_true):
        assert Image.open(io.BytesIO(widget.value)).size == large.size
    assert f"Grad-CAM at layer1 (8×8 cells): predicted class {row['predicted']}" in browser.cam_predicted_label.value
    maps = browser.heatmaps(row["image_id"])
    assert set(maps) == {row["predicted"], row["true"]}
    assert all(m.shape == (32, 32) and 0 <= m.min() and m.max() <= 1 for m in maps.values())


def test_without_the_model_the_detail_pane_says_grad_cam_needs_it(run_predictions):
    browser = PredictionBrowser(run_predictions, per_page=3)
    browser.thumbnail_buttons[0].click()
    assert "needs the run's model" in browser.cam_predicted_label.value
    assert browser.cam_predicted.layout.display == "none" and browser.probability_html.value
    with pytest.raises(ValueError, match="trained"):
        browser.heatmaps(browser.selected)


def test_a_confusion_cell_selects_its_images_in_the_browser(run_predictions):
    browser = PredictionBrowser(run_predictions, per_page=50)
    confusion = ConfusionMatrixWidget(run_predictions, browser)
    counts = confusion_counts(run_predictions)
    i, j = np.unravel_index(np.argmax(counts.to_numpy()), counts.shape)
    i, j = int(i), int(j)
    true, predicted = browser.classes[i], browser.classes[j]
    assert confusion.cell_button(i, j).description == str(counts.iloc[i, j])
    confusion.cell_button(i, j).click()
    assert confusion.selected == (true, predicted)
    assert browser.filters == {"true": true, "predicted": predicted, "correct": None}
    assert len(browser.rows) == counts.iloc[i, j] == len(_gallery(browser))
    assert ((browser.rows["true"] == true) & (browser.rows["predicted"] == predicted)).all()
    confusion.show_all_button.click()
    assert len(browser.rows) == len(run_predictions)
    with pytest.raises(ValueError, match="i, j"):
        confusion.cell_button(3, 0)


def test_a_new_file_or_upload_is_predicted_with_its_heat_map(trained, tmp_path):
    predictor = NewImagePredictor(trained)
    assert predictor.result.layout.display == "none"  # nothing to show yet
    path = tmp_path / "new.png"
    Image.fromarray(image_bytes_for("mel", "X_0000001", size=(120, 90))).save(path)
    probabilities = predictor.predict_path(path)
    assert list(probabilities) == list(trained.classes) and sum(probabilities.values()) == pytest.approx(1)
    expected = trained.predict([path])[0]
    assert list(probabilities.values()) == pytest.approx(expected.tolist())
    assert Image.open(io.BytesIO(predictor.heatmap.value)).size == (300, 225)
    assert predictor.result.layout.display is None
    assert "new.png" in predictor.status.value and "predicted" in predictor.status.value
    assert "Grad-CAM at layer1 (8×8 cells)" in predictor.status.value
    assert predictor.predict_bytes(path.read_bytes(), "upload.png") == pytest.approx(probabilities)
    predictor.path_text.value = str(tmp_path / "absent.png")
    predictor.predict_button.click()
    assert "no image file" in predictor.status.value


def test_inspect_run_puts_the_widgets_together_and_shows_one_image(grad_cam_run, run_predictions):
    inspector = inspect_run(grad_cam_run, "test", per_page=5, device="cpu")
    assert inspector.browser.selected == inspector.browser.rows["image_id"].iloc[0]
    assert inspector.browser.widget in inspector.children and inspector.confusion.widget in inspector.children
    inspector.confusion.cell_button(0, 0).click()
    assert inspector.browser.filters["true"] == inspector.browser.classes[0]
    assert len(inspector.predictor.widget.children) == 3

    def images(widget):
        if isinstance(widget, widgets.Image):
            yield widget
        for child in getattr(widget, "children", ()):
            yield from images(child)

    # An Image widget without a picture is a broken image in the static book.
    assert all(Image.open(io.BytesIO(image.value)).size for image in images(inspector))


def test_the_fused_heads_predictions_are_inspected_like_the_networks(grad_cam_run, tmp_path):
    run = Path(shutil.copytree(grad_cam_run, tmp_path / grad_cam_run.name))  # the module's run stays without a head
    with pytest.raises(ValueError, match="pskin fuse"):
        load_predictions(run, "test", fused=True)
    fuse_run(run)
    raw = pd.read_csv(run / "fusion-metadata" / "predictions_test.csv")
    fused = load_predictions(run, "test", fused=True)
    columns = [c for c in raw.columns if c.startswith("p_")]
    assert fused["image_id"].tolist() == raw["image_id"].tolist()
    np.testing.assert_allclose(fused[columns].to_numpy(), raw[columns].to_numpy())
    assert fused["age"].notna().all() and fused["path"].map(lambda p: Path(p).is_file()).all()
    assert not np.allclose(fused[columns].to_numpy(), load_predictions(run, "test")[columns].to_numpy())

    inspector = inspect_run(run, "test", per_page=5, device="cpu", fused=True)
    assert "fused with age, sex and body site" in inspector.children[0].value
    shown = inspector.browser.rows.set_index("image_id").loc[fused["image_id"], columns].to_numpy()
    np.testing.assert_allclose(shown, fused[columns].to_numpy())
    with pytest.raises(ValueError, match="fused"):
        load_predictions(raw, fused=True)


def test_the_error_gallery_shows_each_error_beside_its_heat_map(run_predictions, trained):
    fig = plot_error_gallery(run_predictions, trained, per_class=2)
    errors = most_confident_errors(run_predictions, per_class=2)
    titles = [ax.get_title() for ax in fig.axes]
    assert sum(t.startswith("Grad-CAM") for t in titles) == len(errors)
    assert sum(t.startswith("true ") for t in titles) == len(errors)
    assert len(fig.axes) == 3 * 4
    assert fig.get_suptitle().endswith("\nGrad-CAM at layer1 (8×8 cells)")
    plt.close(fig)


def test_where_no_block_gives_7x7_cells_no_map_is_shown_and_the_page_says_so(run_predictions, trained, tmp_path):
    small = dataclasses.replace(trained, config=dataclasses.replace(trained.config, image_size=16))
    no_map = "no layer of resnet18 gives a 7×7 Grad-CAM map at 16 px: no map shown"
    assert not explained_layer(small).usable and explained_layer(small).caption == no_map
    fig = plot_error_gallery(run_predictions, small, per_class=2)
    titles = [ax.get_title() for ax in fig.axes]
    assert not any(t.startswith("Grad-CAM") for t in titles) and len(fig.axes) == 3 * 2
    assert no_map in fig.get_suptitle()
    plt.close(fig)
    browser = PredictionBrowser(run_predictions, small, per_page=3)
    browser.thumbnail_buttons[0].click()
    assert no_map in browser.cam_predicted_label.value
    assert browser.cam_predicted.layout.display == browser.cam_true.layout.display == "none"
    with pytest.raises(ValueError, match="no map shown"):
        browser.heatmaps(browser.selected)
    predictor = NewImagePredictor(small)
    path = tmp_path / "new.png"
    Image.fromarray(image_bytes_for("mel", "X_0000001", size=(120, 90))).save(path)
    predictor.predict_path(path)
    assert no_map in predictor.status.value and predictor.heatmap.layout.display == "none"


@pytest.mark.slow
@pytest.mark.parametrize("fused", [False, True])
def test_the_chapter_runs_headless_and_saves_its_widgets(fused, tmp_path, monkeypatch):
    """As the book runs it: papermill with the default parameters on the data in $PSKIN_DATA (and with the fused
    head's predictions, which the chapter fits first)."""
    import nbformat
    import papermill

    data = write_ham_folder(tmp_path / "ham", ham_rows({"mel": 12, "nv": 40, "bkl": 12}))
    monkeypatch.setenv("PSKIN_DATA", str(data))
    monkeypatch.setenv("PSKIN_RUNS", str(tmp_path / "runs"))
    # The chapter reads runs, it never trains or fits one: the run and its fused head are made here first.
    run = train(make_config("smoke", data_dir=str(data), image_size=32, epochs=1, batch_size=16, quiet=True,
                            threads=1), runs_dir=tmp_path / "runs")
    if fused:
        fuse_run(run, data_dir=data, device="cpu")
    out = tmp_path / "inspector.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / "inspector.ipynb"), str(out), cwd=str(tmp_path),
                               parameters={"fused": fused}, progress_bar=False, kernel_name="python3")
    assert len(list((tmp_path / "runs").glob("*/fusion-metadata/predictions_test.csv"))) == fused
    notebook = nbformat.read(out, as_version=4)
    outputs = {cell.get("id"): cell.outputs for cell in notebook.cells if cell.cell_type == "code"}
    assert any("image/png" in o.get("data", {}) for o in outputs["gallery"])
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs["inspector"])
    assert any("pskin-static-inspector" in "".join(o.get("data", {}).get("text/html", ""))
               for o in outputs["static-inspector"])
    state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert any(w["state"].get("_dom_classes") == ["pskin-gallery"] for w in state.values())


def test_the_chapter_is_committed_without_outputs_and_with_a_parameters_cell():
    import nbformat

    notebook = nbformat.read(ROOT / "notebooks" / "inspector.ipynb", as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    import papermill

    parameters = papermill.inspect_notebook(str(ROOT / "notebooks" / "inspector.ipynb"))
    assert {"run_dir", "split", "data_dir", "fused"} <= set(parameters) and parameters["run_dir"]["default"] == "None"
    assert parameters["fused"]["default"] == "False"
    assert parameters["split"]["default"] == '"test"'
    assert all(not c.outputs and c.execution_count is None for c in code)
    text = "".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    assert "jupyter lab notebooks/inspector.ipynb" in text
