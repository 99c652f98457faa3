"""The main job end to end: the smoke book builds with no Sphinx warnings, and a real browser finds every chapter's
figures, no error output, and a rendered widget."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pskinlib.report.build import book_chapters

ROOT = Path(__file__).resolve().parents[1]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    """Build the smoke book once, as a user of ``pip install .`` (not editable) would: pskinlib installed into a
    folder of its own, and its ``pskin book`` run from the checkout (real data through PSKIN_DATA, else the
    synthetic demo set)."""
    build, site = tmp_path_factory.mktemp("book-build"), tmp_path_factory.mktemp("installed")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(ROOT)],
                   check=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import pskinlib; print(pskinlib.__file__)"], cwd=build, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert Path(where).resolve().is_relative_to(site.resolve()), where  # the installed copy, not the checkout's
    command = [str(site / "bin" / "pskin"), "book", "--profile", "smoke", "--force", "--warnings-are-errors",
               "--runs-dir", str(build / "runs"), "--build-dir", str(build)]
    if os.environ.get("PSKIN_DATA"):
        command += ["--data-dir", os.environ["PSKIN_DATA"]]
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    return build / "html"


@pytest.mark.slow
def test_smoke_book_builds_every_chapter(smoke_book):
    chapters = book_chapters("smoke", "DATA", "RUNS")
    for chapter in chapters:
        assert (smoke_book / "book" / f"{Path(chapter.output).stem}.html").is_file(), chapter.output
        assert (ROOT / "book" / chapter.output).is_file()
    assert (smoke_book / "index.html").is_file()


@pytest.mark.slow
def test_every_chapter_shows_figures_and_no_errors_in_a_browser(smoke_book):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(smoke_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    chapters = book_chapters("smoke", "DATA", "RUNS")
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            missing = []  # files the book asks its own server for and does not have (scripts, fonts, figures)
            page.on("response", lambda r: missing.append(r.url) if r.url.startswith(base) and r.status >= 400
                    else None)
            for chapter in chapters:
                name = Path(chapter.output).stem
                page.goto(f"{base}/book/{name}.html")
                text = page.inner_text("main")
                assert "Traceback" not in text and "Error" not in page.title(), name
                assert page.locator("div.output.traceback, div.output.error").count() == 0, name
                if chapter.notebook != "performance.ipynb" or (smoke_book / "_static").exists():
                    figures = page.locator("main img")
                    if chapter.notebook in ("data_exploration.ipynb", "training.ipynb", "class_weights.ipynb",
                                            "results.ipynb", "inspector.ipynb"):
                        assert figures.count() > 0, f"{name} shows no figure"
                        assert page.evaluate("Array.from(document.querySelectorAll('main img'))"
                                             ".every(i => i.complete && i.naturalWidth > 0)"), name
                if chapter.notebook == "inspector.ipynb":
                    page.wait_for_selector(".jupyter-widgets, .widget-inline-hbox, .widget-button",
                                           timeout=30_000)
            browser.close()
        assert not missing, f"the book's server answered 404 for: {sorted(set(missing))[:10]}"
    finally:
        server.shutdown()


@pytest.mark.slow
def test_widget_scripts_are_served_locally_when_npm_is_there(smoke_book):
    if not shutil.which("npm"):
        pytest.skip("npm is missing: the book loads its widget manager from the CDN")
    static = smoke_book / "_static"
    assert (static / "embed-amd.js").is_file() and (static / "require.js").is_file()
    fonts = smoke_book / "book" / "@jupyter-widgets"  # where the manager's stylesheet asks for them
    assert list(fonts.glob("*.woff2")), "the widget manager's icon fonts are not where its stylesheet looks"
    inspector = (smoke_book / "book" / "05_inspector.html").read_text()
    assert "_static/embed-amd.js" in inspector and "cdn.jsdelivr.net/npm/@jupyter-widgets" not in inspector
