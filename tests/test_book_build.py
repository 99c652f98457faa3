"""The main job end to end: the smoke book builds with no Sphinx warnings, and a real browser finds every chapter's
figures, no error output, and a rendered widget."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMOKE_BOOK_TIMES

from book.build import CHROMIUM, Chapter, book_chapters, chromium, served

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS: Path = Path()  # set by the smoke_book fixture
BUILD_OUTPUT = ""  # what the build printed
STUDY = "Xinyu Zhao. Image Recognition of Pigmented Skin Diseases Based on Deep Learning"



@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory, request):
    """Build the smoke book once, as ``make book`` does (``python -m book`` from the checkout), into a folder of its
    own (real data through PSKIN_DATA, else the synthetic demo set)."""
    build = tmp_path_factory.mktemp("book-build")
    global SCREENSHOTS
    SCREENSHOTS = build / "screenshots"
    command = [sys.executable, "-m", "book", "--profile", "smoke", "--force", "--warnings-are-errors",
               "--runs-dir", str(build / "runs"), "--build-dir", str(build)]
    if Path(CHROMIUM).exists():
        command += ["--screenshots", str(SCREENSHOTS)]
    if os.environ.get("PSKIN_DATA"):
        command += ["--data-dir", os.environ["PSKIN_DATA"]]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    global BUILD_OUTPUT
    BUILD_OUTPUT = result.stdout + result.stderr
    lines = result.stdout.splitlines()
    table = next((i for i, line in enumerate(lines) if line.startswith("Where the time went")), len(lines))
    request.config.stash[SMOKE_BOOK_TIMES] = [f"smoke book: {line}" for line in lines[table:]]
    return build / "html"


@pytest.mark.slow
def test_pskinlib_installs_as_a_package_of_its_own_with_its_profiles(tmp_path):
    """``pip install .`` (not editable) ships the library with its named profiles, and not the book beside it."""
    site = tmp_path / "installed"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(ROOT)],
                   check=True)
    script = (f"import sys; sys.path.insert(0, {str(site)!r}); import pskinlib; "
              "from pskinlib.train.config import PROFILES, make_config; "
              "print(pskinlib.__file__); print(sorted(PROFILES)); print(make_config('quick').image_size)")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert Path(out[0]).resolve().is_relative_to(site.resolve()), out  # the installed copy, not the checkout's
    assert "quick" in out[1] and "paper" in out[1] and out[2] == "48"
    assert not (site / "book").exists()


@pytest.mark.slow
def test_smoke_book_builds_every_chapter(smoke_book):
    chapters = book_chapters("smoke", "DATA", "RUNS")
    for chapter in chapters:
        assert (smoke_book / "book" / f"{Path(chapter.output).stem}.html").is_file(), chapter.output
        assert (ROOT / "book" / chapter.output).is_file()
    assert (smoke_book / "index.html").is_file()
    # The images' appearance is measured once, before the chapters, which then run two at a time.
    steps = json.loads((smoke_book.parent / "times.json").read_text())["steps"]
    stages = [step["stage"] for step in steps]
    assert stages.index("appearance") < stages.index("chapters")
    assert any(s["stage"] == "appearance" and s["what"].startswith("HAM10000 (") for s in steps)
    executed = sorted((s["began"], s["began"] + s["seconds"]) for s in steps if s["step"] == "executed")
    assert len(executed) == len(chapters)
    assert any(later[0] < earlier[1] for earlier, later in zip(executed, executed[1:]))  # some overlap


# What no page of the book may show: a notebook's debris, a folder of the machine that built it, a traceback.
DEBRIS = re.compile(r"IPython\.core\.display|<IPython|Traceback \(most recent call last\)")
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|tmp|root|home|Users|private|var/folders)/[\w.-]")


@pytest.mark.slow
def test_every_chapter_reads_as_a_report_in_a_browser(smoke_book):
    """Each chapter in Chromium: no debris or machine path or traceback in the text, every table inside the
    content column, every image loaded, figures where a chapter has them, and a "What we found" section that holds
    a number glued from this build."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    chapters = book_chapters("smoke", "DATA", "RUNS")
    problems = []
    with served(smoke_book) as base, chromium() as page:
        missing = []  # files the book asks its own server for and does not have (scripts, fonts, figures)
        script_errors = []  # uncaught JavaScript errors, as a reader's console shows them
        page.on("pageerror", lambda error: script_errors.append(f"{page.url}: {error}"))
        page.on("response", lambda r: missing.append(r.url) if r.url.startswith(base) and r.status >= 400
                else None)
        for chapter in [*chapters, Chapter("", "bibliography.md", "", "")]:
            name = Path(chapter.output).stem
            page.goto(f"{base}/book/{name}.html", wait_until="networkidle")
            text = page.inner_text("main")
            html = page.inner_html("main")
            if DEBRIS.search(text) or page.locator("div.output.traceback, div.output.error").count():
                problems.append(f"{name}: notebook debris or a traceback")
            if MACHINE_PATH.search(text) or MACHINE_PATH.search(html):
                problems.append(f"{name}: a path of the build machine: {MACHINE_PATH.search(text + html)[0]}")
            too_wide = page.evaluate("""() => {
                const column = document.querySelector('article.bd-article') || document.querySelector('main');
                const width = column.getBoundingClientRect().width;
                return Array.from(column.querySelectorAll('table'))
                    .filter(t => t.getBoundingClientRect().width > width + 1).length; }""")
            if too_wide:
                problems.append(f"{name}: {too_wide} table(s) wider than the content column")
            if not page.evaluate("Array.from(document.querySelectorAll('main img'))"
                                 ".every(i => i.complete && i.naturalWidth > 0)"):
                problems.append(f"{name}: an image that does not load")
            if chapter.notebook in ("data_exploration.ipynb", "training.ipynb", "class_weights.ipynb",
                                    "results.ipynb", "inspector.ipynb", "intro.ipynb") \
                    and not page.locator("main img").count():
                problems.append(f"{name}: no figure")
            found = page.locator("section#what-we-found")
            if found.count() and not found.locator("span.pasted-text").count():
                problems.append(f"{name}: a 'What we found' section with no number glued from this build")
            cites_study = chapter.notebook and "{cite}`study`" in (ROOT / "notebooks" / chapter.notebook).read_text()
            if cites_study and "Zhao" not in text:
                problems.append(f"{name}: cites the study without its author")
            if name == "bibliography" and STUDY not in text:
                problems.append(f"{name}: the study is not listed by its author and title")
            if chapter.notebook == "inspector.ipynb":
                page.wait_for_selector(".jupyter-widgets, .widget-inline-hbox, .widget-button",
                                       timeout=30_000)
    assert not missing, f"the book's server answered 404 for: {sorted(set(missing))[:10]}"
    assert not script_errors, "JavaScript errors:\n" + "\n".join(script_errors[:10])
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_the_screenshots_command_writes_every_chapter_at_1400_px(smoke_book):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: the book was built without --screenshots")
    shots = sorted(SCREENSHOTS.glob("*.png"))
    names = {Path(c.output).stem for c in book_chapters("smoke", "DATA", "RUNS")}
    assert {p.stem for p in shots} == names
    from PIL import Image

    assert all(Image.open(p).width == 1400 for p in shots)


@pytest.mark.slow
def test_widget_scripts_are_served_locally_when_npm_is_there(smoke_book):
    if not shutil.which("npm"):
        pytest.skip("npm is missing: the book loads its widget manager from the CDN")
    static = smoke_book / "_static"
    assert (static / "embed-amd.js").is_file() and (static / "require.js").is_file()
    fonts = smoke_book / "book" / "@jupyter-widgets"  # where the manager's stylesheet asks for them
    assert list(fonts.glob("*.woff2")), "the widget manager's icon fonts are not where its stylesheet looks"
    inspector = (smoke_book / "book" / "07_inspector.html").read_text()
    assert "_static/embed-amd.js" in inspector and "cdn.jsdelivr.net/npm/@jupyter-widgets" not in inspector


BUILD_LINE = re.compile(r"^(Building the smoke book on .+|  run .+: (reused|training|[a-z, ]+ \(\d+ s\))|"
                        r"    epoch \d+/\d+: validation balanced accuracy [\d.]+, \d+ images/s, about [\d.]+ min left|"
                        r"    (refitting the head|fusing age, sex and body site|evaluating on .+)|"
                        r"  appearance of \w+ \(\d+ images\): (measuring|(measured|read from the cache) \(\d+ s\))|"
                        r"    \d+ of \d+ images measured \(\d+ s\)|"
                        r"  chapter \w+: (ran \(\d+ s\)|reused, unchanged)|  rendered the HTML \(\d+ s\)|"
                        r"Where the time went:|  [a-z]+(: [a-zA-Z ]+)? +\d+ +[\d.]+ min +\d+%(  slowest: .+)?|"
                        r"Book built in [\d.]+ min: .+|\d+ screenshots at 1400 px in .+)$")


@pytest.mark.slow
def test_the_build_prints_one_line_per_run_and_chapter_and_nothing_else(smoke_book):
    lines = BUILD_OUTPUT.splitlines()
    assert [line for line in lines if not BUILD_LINE.match(line)] == []
    assert sum(line.startswith("  chapter ") for line in lines) == len(book_chapters("smoke", "DATA", "RUNS"))
    done = [line for line in lines if line.startswith("  run ") and not line.endswith(": training")]
    assert len(done) == 6  # two networks and Lite0, without and with weights
    trained = sum(line.endswith(": training") for line in lines)
    assert sum(line.startswith("    epoch 1/") for line in lines) == trained  # every run trained shows its epochs
    table = [line.split() for line in lines[lines.index("Where the time went:") + 1:] if line.startswith("  ")]
    steps = [" ".join(words[:2]) if words[0].endswith(":") else words[0] for words in table]
    assert steps[0] == "runs: training" and "chapters: executed" in steps and steps[-2:] == ["rendering: HTML", "total"]


@pytest.mark.slow
def test_the_inspector_works_in_the_static_page_with_no_kernel_and_no_network(smoke_book):
    """07_inspector.html in Chromium with the network cut: a confusion-matrix cell puts exactly that cell's images in
    the gallery, and a thumbnail shows its class probabilities (and, for an error, its Grad-CAM map)."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    with served(smoke_book) as base, chromium(offline=True) as page:
        errors = []  # scripts' errors; the inspector's must be none (the theme has one of its own on every page)
        page.on("pageerror", lambda error: errors.append(f"{error}\n{error.stack}"))
        page.goto(f"{base}/book/07_inspector.html", wait_until="networkidle")
        block = page.locator(".pskin-static-inspector")
        assert block.count() == 1 and block.get_attribute("data-ready") == "true", "inspector.js did not run"
        data = json.loads(block.locator("script.pskin-static-data").text_content())
        codes = [c["code"] for c in data["classes"]]
        # The fullest error cell (a cell of the diagonal if the run made no error).
        cells = [(t != p, count, t, p) for t, row in zip(codes, data["counts"]) for p, count in zip(codes, row)
                 if count]
        _, _, true, predicted = max(cells)
        # inside the static inspector: the live ipywidgets one below uses some of the same class names
        block.locator(f".pskin-cm-cell[data-true='{true}'][data-predicted='{predicted}']").click()
        stored = [image for image in data["images"] if image["true"] == true and image["predicted"] == predicted]
        thumbs = block.locator(".pskin-gallery .pskin-thumb")
        shown = thumbs.evaluate_all("bs => bs.map(b => [b.dataset.id, b.dataset.true, b.dataset.predicted])")
        assert 0 < len(shown) == min(48, len(stored))  # a page of 48 at most, "show more" for the rest
        assert [s[0] for s in shown] == [image["id"] for image in stored[:48]]
        assert all(s[1:] == [true, predicted] for s in shown)

        image = stored[0]
        thumbs.first.click()
        detail = block.locator(".pskin-detail")
        assert detail.get_attribute("data-id") == image["id"]
        for code, p in zip(codes, image["p"]):
            value = detail.locator(f".pskin-prob[data-class='{code}'] .pskin-prob-value").inner_text()
            assert value == f"{100 * p:.1f}%", (code, value, p)
        if true != predicted and data["gradcam"] != "none":
            assert detail.locator(".pskin-detail-cam img").evaluate("i => i.complete && i.naturalWidth > 0")
    assert not [e for e in errors if "inspector.js" in e], errors
