"""The inspector of the static book: the data its HTML block carries, and the block in Chromium with no kernel and
the network cut (a confusion-matrix cell filters the gallery, a thumbnail shows its probabilities)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from book.build import CHROMIUM, chromium, served
from book.static_inspector import SCRIPT, STYLESHEET, gradcam_caption, static_inspector
from pskinlib.data.ham10000 import load_ham10000
from pskinlib.explain.inspector import confusion_counts, load_predictions

CODES = ("mel", "nv", "bkl")
DATA_BLOCK = re.compile(r'<script type="application/json" class="pskin-static-data">(.*?)</script>', re.S)


def carried(block_html: str) -> dict:
    """The data a block carries, read back from its HTML as the browser's script reads it."""
    (payload,) = DATA_BLOCK.findall(block_html)
    return json.loads(payload)


def jpeg_bytes(data: dict, kind: str, image: dict) -> bytes:
    return base64.b64decode(data["jpeg_heads"][kind] + image[kind])


@pytest.fixture(scope="module")
def ham(imbalanced_ham) -> Path:
    return imbalanced_ham


@pytest.fixture(scope="module")
def made_up(ham) -> pd.DataFrame:
    """Predictions for every image of the folder, made up (no model): more images than a gallery page holds."""
    images = load_ham10000(ham)
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(len(CODES)), len(images.table))
    raw = pd.DataFrame({"image_id": images.table["image_id"], "true": images.table["dx"],
                        "predicted": np.array(CODES)[probabilities.argmax(axis=1)],
                        **{f"p_{c}": probabilities[:, k] for k, c in enumerate(CODES)}})
    return load_predictions(raw, images=images)


def test_the_block_carries_every_image_once_and_the_confusion_matrix(made_up):
    block = static_inspector(made_up)
    data = carried(block.html)
    assert data["counts"] == confusion_counts(made_up).to_numpy().tolist()
    assert [c["code"] for c in data["classes"]] == list(CODES)
    ids = [image["id"] for image in data["images"]]
    assert sorted(ids) == sorted(made_up["image_id"]) and len(set(ids)) == len(ids)
    cells = pd.crosstab(pd.Series([i["true"] for i in data["images"]], name="true"),
                        pd.Series([i["predicted"] for i in data["images"]], name="predicted"))
    assert cells.reindex(index=CODES, columns=CODES, fill_value=0).to_numpy().tolist() == data["counts"]
    by_id = made_up.set_index("image_id")
    for image in data["images"]:
        assert image["p"] == pytest.approx([by_id.loc[image["id"], f"p_{c}"] for c in CODES], abs=1e-4)
        assert "cam" not in image  # no model, no Grad-CAM
        assert jpeg_bytes(data, "thumb", image)[:2] == b"\xff\xd8"  # a whole JPEG again
    confidence = [max(image["p"]) for image in data["images"]]
    assert confidence == sorted(confidence, reverse=True)  # the most confident first
    assert block.data == data and block.size_bytes == len(block.html.encode())
    assert re.search(r'<div class="pskin-static-inspector" id="pskin-static-inspector-[\w-]+">', block.html)
    assert "/tmp/" not in block.html and "no Grad-CAM maps" in block.html


def test_thumbnails_are_small_jpegs_sharing_one_header(made_up):
    data = static_inspector(made_up, thumb=32).data
    sizes = {Image.open(io.BytesIO(jpeg_bytes(data, "thumb", image))).size for image in data["images"]}
    assert sizes == {(32, 24)}  # the 4:3 frame, 32 px on its long side
    assert len(base64.b64decode(data["jpeg_heads"]["thumb"])) > 300  # the tables, stored once


def test_max_images_keeps_the_hardest_and_the_matrix_counts_them_all(made_up):
    data = static_inspector(made_up, max_images=10).data
    hardest = made_up.sort_values("loss", ascending=False).head(10)["image_id"]
    assert {image["id"] for image in data["images"]} == set(hardest)
    assert data["counts"] == confusion_counts(made_up).to_numpy().tolist()


def test_parameters_are_checked_before_any_image_is_read(made_up):
    for kwargs, name in (({"gradcam": "some"}, "gradcam"), ({"thumb": 8}, "thumb"), ({"detail": 20}, "detail"),
                         ({"max_images": 0}, "max_images"), ({"standalone": "yes"}, "standalone")):
        with pytest.raises(ValueError, match=name):
            static_inspector(made_up, **kwargs)


def test_every_error_has_a_grad_cam_map_of_its_predicted_class(run_predictions, trained):
    block = static_inspector(run_predictions, trained, thumb=32, detail=48)
    data = carried(block.html)
    errors = run_predictions.loc[~run_predictions["correct"], "image_id"]
    assert len(errors), "the tiny run made no error: nothing to check"
    with_map = {image["id"] for image in data["images"] if "cam" in image}
    assert with_map == set(errors)
    for image in data["images"]:
        if "cam" in image:
            assert jpeg_bytes(data, "cam", image)[:2] == b"\xff\xd8"
    assert data["cam_captions"] == {c: gradcam_caption(trained, c)
                                    for c in CODES if c in set(run_predictions.loc[~run_predictions["correct"],
                                                                                   "predicted"])}
    every = carried(static_inspector(run_predictions, trained, thumb=32, detail=48, gradcam="all").html)
    assert all("cam" in image for image in every["images"])
    assert carried(static_inspector(run_predictions, trained, gradcam="none").html)["gradcam"] == "none"


# ---------------------------------------------------------------------------------------------------------------
# In the browser


@pytest.fixture
def browser_page():
    """Chromium with the network cut, or a skip that says what is missing."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: install it with `apt-get install -y chromium`")
    with chromium(width=1200, offline=True) as page:
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page, errors


def _page_html(block: str, head: str = "") -> str:
    return f'<!doctype html><html><head><meta charset="utf-8">{head}</head><body><main>{block}</main></body></html>'


def _shown(page) -> list[dict]:
    return page.locator(".pskin-gallery .pskin-thumb").evaluate_all(
        "bs => bs.map(b => ({id: b.dataset.id, true: b.dataset.true, predicted: b.dataset.predicted}))")


@pytest.mark.slow
def test_a_cell_filters_the_gallery_and_a_thumbnail_shows_its_probabilities(browser_page, made_up, trained,
                                                                             tmp_path):
    page, errors = browser_page
    # Made-up predictions fill every cell (a one-epoch run answers one class); the run's model draws their maps.
    block = static_inspector(made_up, trained, thumb=32, detail=48)
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(SCRIPT, site / SCRIPT.name)
    shutil.copy(STYLESHEET, site / STYLESHEET.name)
    (site / "index.html").write_text(_page_html(
        block.html, f'<link rel="stylesheet" href="{STYLESHEET.name}"><script src="{SCRIPT.name}"></script>'))
    with served(site) as base:
        page.goto(f"{base}/index.html", wait_until="networkidle")
        assert page.locator(".pskin-static-fallback").count() == 0
        assert len(_shown(page)) == 48  # the first page of all the images

        # The error cell with the most images: its images only, each with that true and predicted class.
        counts = confusion_counts(made_up)
        true, predicted = max(((t, p) for t in CODES for p in CODES if t != p), key=lambda c: counts.loc[c])
        count = counts.loc[true, predicted]
        assert 0 < count < min(counts.loc[true].sum(), counts[predicted].sum())  # both filters leave some out
        page.locator(f".pskin-cm-cell[data-true='{true}'][data-predicted='{predicted}']").click()
        shown = _shown(page)
        expected = made_up[(made_up["true"] == true) & (made_up["predicted"] == predicted)]
        assert sorted(s["id"] for s in shown) == sorted(expected["image_id"])
        assert all(s["true"] == true and s["predicted"] == predicted for s in shown)
        assert page.locator(".pskin-filter[data-filter='true']").input_value() == true
        assert page.locator(".pskin-filter[data-filter='predicted']").input_value() == predicted
        assert page.locator(f".pskin-cm-cell[data-true='{true}'][data-predicted='{predicted}']"
                            ).get_attribute("aria-pressed") == "true"
        status = page.inner_text(".pskin-gallery-status")
        assert f"Showing {count:,} of {count:,} image{'s' if count != 1 else ''}" in status

        # A thumbnail: the detail pane shows its probabilities, as the data has them, and its Grad-CAM map.
        chosen = shown[-1]["id"]
        page.locator(f".pskin-thumb[data-id='{chosen}']").click()
        detail = page.locator(".pskin-detail")
        assert detail.get_attribute("data-id") == chosen
        assert page.locator(f".pskin-thumb[data-id='{chosen}']").get_attribute("aria-pressed") == "true"
        row = made_up.set_index("image_id").loc[chosen]
        for code in CODES:
            value = detail.locator(f".pskin-prob[data-class='{code}'] .pskin-prob-value").inner_text()
            assert value == f"{100 * row[f'p_{code}']:.1f}%", (code, value)
        assert detail.locator(".pskin-detail-caption").inner_text() == gradcam_caption(trained, predicted)
        assert detail.locator(".pskin-detail-cam img").evaluate("i => i.complete && i.naturalWidth > 0")

        # A filter: the correct predictions of all classes.
        page.locator(".pskin-show-all").click()
        page.locator(".pskin-filter[data-filter='correct']").select_option("correct")
        correct = made_up.loc[made_up["correct"], "image_id"]
        shown = _shown(page)
        assert len(shown) == min(48, len(correct)) and set(s["id"] for s in shown) <= set(correct)
        assert all(s["true"] == s["predicted"] for s in shown)
        assert page.locator(".pskin-cm-cell[aria-pressed='true']").count() == 0
        assert page.evaluate("Array.from(document.querySelectorAll('main img'))"
                             ".every(i => i.complete && i.naturalWidth > 0)")
    assert not errors, errors


@pytest.mark.slow
def test_a_standalone_block_pages_its_gallery_without_the_books_files(browser_page, made_up, tmp_path):
    page, errors = browser_page
    block = static_inspector(made_up, standalone=True)
    assert len(block.data["images"]) > 48  # more than one page of thumbnails
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(_page_html(block.html))
    with served(site) as base:
        page.goto(f"{base}/index.html", wait_until="networkidle")
        assert len(_shown(page)) == 48
        page.locator(".pskin-more").click()
        assert len(_shown(page)) == len(made_up)
        assert page.locator(".pskin-more").is_hidden()
        page.locator(".pskin-filter[data-filter='true']").select_option("mel")
        shown = _shown(page)
        assert len(shown) == (made_up["true"] == "mel").sum() and all(s["true"] == "mel" for s in shown)
        page.locator(".pskin-thumb").first.click()
        assert page.locator(".pskin-detail .pskin-prob").count() == len(CODES)
        assert page.locator(".pskin-detail-cam").count() == 0  # no model, no map
    assert not errors, errors
