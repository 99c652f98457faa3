"""The book pipeline: execute the notebooks with papermill, then render them with Jupyter Book 1.x.

``build_book(profile)`` runs every chapter in order — the training notebook once per model, the class-weight
ablation once per scheme — with parameters checked against each notebook's ``parameters`` cell (papermill itself
only warns about unknown names; here they are errors, and so are wrong types). Executed copies go to a staging
folder first, and the HTML is built into a fresh folder and swapped in at the end, so a failing notebook stops the
build, names the notebook and cell, and leaves the previous rendered book as it was. A chapter whose notebook,
parameters, library source and data are unchanged since the last build is not executed again.

The book lives in a pskin checkout (a folder holding ``_config.yml`` and ``notebooks/``): ``root`` names it, and by
default it is the checkout the current folder is in, never the place the package is installed. So ``pip install .``
then ``pskin book`` from the checkout works as well as an editable install.

Without real data the book is built on the synthetic demo set, and every chapter opens with a warning saying so.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.demo import is_synthetic, make_demo_dataset
from ..data.ham10000 import find_data_dir
from ..errors import BookBuildError, DataError, ParameterError
from ..info import ALL_CLASSES, SYNTHETIC_WARNING

WEIGHT_SCHEMES_IN_BOOK = ("none", "inverse", "sqrt_inverse", "effective")
PACKAGE = Path(__file__).resolve().parents[1]  # pskinlib's own source: part of each chapter's fingerprint


def find_checkout(start: str | os.PathLike | None = None) -> Path:
    """The pskin checkout holding ``start`` (default: the current folder): the nearest folder at or above it with
    ``_config.yml`` and ``notebooks/``."""
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "_config.yml").is_file() and (folder / "notebooks").is_dir():
            return folder
    raise ParameterError(f"root: {start} is not inside a pskin checkout (no folder above it holds _config.yml and "
                         "notebooks/); run pskin book from the repository, or pass --root.")


# What each book profile trains. CPU minutes were measured on the 2-core development machine.
BOOK_PROFILES: dict[str, dict[str, Any]] = {
    # CI: the whole book in a few minutes; the numbers mean nothing.
    "smoke": {"train_profile": "smoke", "models": ("resnet18", "efficientnet_b0"), "schemes": ("none", "inverse"),
              "extra_scheme_models": (), "train": {"select_metric": "balanced_accuracy"},
              "pretrained_models": ("efficientnet_lite0",), "pretrained_profile": "smoke",
              "pretrained_train": {"pretrained": True, "select_metric": "balanced_accuracy"}},
    # Default: the whole book within 15 minutes on 2 CPU cores, with small stand-ins for the paper's networks.
    # The paper's two procedures (no weights, inverse weights) run for every model of both tracks; the other
    # schemes for the first model only, to stay inside that budget.
    # EfficientNet-B0 from scratch does not leave the majority baseline in a CPU run this short (measured: 0.452
    # and 0.333 test balanced accuracy at 48 px, 4 epochs), so the quick book's EfficientNet is the pretrained Lite0.
    "quick": {"train_profile": "quick", "models": ("resnet18",),
              "schemes": WEIGHT_SCHEMES_IN_BOOK, "extra_scheme_models": ("resnet18",),
              # With class weights the epoch of best plain accuracy is the one leaning most towards nevus (measured:
              # a 15-epoch run kept epoch 1, test balanced accuracy 0.57); the CPU books select on balanced accuracy.
              # A short run needs a shorter weight average than the default (0.995: ~200 steps).
              "train": {"image_size": 48, "epochs": 4, "tta": False, "select_metric": "balanced_accuracy",
                        "ema_decay": 0.98},
              "pretrained_models": ("efficientnet_lite0",), "pretrained_profile": "transfer",
              "pretrained_train": {"image_size": 64, "epochs": 3, "tta": False}},
    # The study: ResNet101 and EfficientNet-B0 at 224 px for 100 epochs on Table 1's split. Meant for a GPU.
    "paper": {"train_profile": "paper", "models": ("resnet101", "efficientnet_b0"),
              "schemes": WEIGHT_SCHEMES_IN_BOOK, "extra_scheme_models": ("resnet101", "efficientnet_b0"),
              "train": {}, "pretrained_models": ("resnet101",), "pretrained_profile": "paper_pretrained",
              "pretrained_train": {}},
}
PAPER_PROCEDURES = ("none", "inverse")  # the paper trains each model without and with class weights
INTRO, BIBLIOGRAPHY = "intro.ipynb", "bibliography"


@dataclass
class Chapter:
    """One notebook execution: which notebook, under which name in the book, with which parameters."""

    notebook: str
    output: str
    title: str
    part: str
    parameters: dict[str, Any] = field(default_factory=dict)


def book_chapters(profile: str, data_dir: str, runs_dir: str, extra: dict[str, Any] | None = None, *,
                  root: str | os.PathLike | None = None) -> list[Chapter]:
    """The chapters of a build, in the order they run: the front page last, as it sums up the others (the table of
    contents puts it first). ``extra`` parameters go to every notebook that declares them."""
    if profile not in BOOK_PROFILES:
        raise ParameterError(f"profile: unknown book profile {profile!r}; choose from {list(BOOK_PROFILES)}.")
    spec = BOOK_PROFILES[profile]
    common = {"data_dir": data_dir, "runs_dir": runs_dir}
    scratch = {**common, "profile": spec["train_profile"], "train_overrides": dict(spec["train"])}
    pretrained = {**common, "profile": spec["pretrained_profile"], "train_overrides": dict(spec["pretrained_train"])}
    chapters = [Chapter("data_exploration.ipynb", "01_data_exploration.ipynb", "The data", "The data",
                        {"data_dir": data_dir})]
    trained = [(m, scratch, "from scratch") for m in spec["models"]]
    trained += [(m, pretrained, "ImageNet-pretrained") for m in spec["pretrained_models"]]
    for i, (model, parameters, track) in enumerate(trained):
        suffix = "" if parameters is scratch else "_pretrained"
        chapters.append(Chapter("training.ipynb", f"02_{i + 1}_training_{model}{suffix}.ipynb",
                                f"Training {model} ({track})", "Training", {**parameters, "model": model}))
    for i, scheme in enumerate(spec["schemes"]):
        paper = scheme in PAPER_PROCEDURES
        chapters.append(Chapter("class_weights.ipynb", f"03_{i + 1}_class_weights_{scheme}.ipynb",
                                f"Class weights: {scheme}", "Class-weight ablation", {
                                    **scratch, "scheme": scheme,
                                    "models": list(spec["models"] if paper else spec["extra_scheme_models"]),
                                    "pretrained_models": list(spec["pretrained_models"]) if paper else [],
                                    "pretrained_profile": spec["pretrained_profile"],
                                    "pretrained_overrides": dict(spec["pretrained_train"])}))
    chapters.append(Chapter("results.ipynb", "04_results.ipynb", "Results", "Results",
                            {**common, "profile": spec["train_profile"]}))
    chapters.append(Chapter("external.ipynb", "05_external.ipynb", "Beyond HAM10000", "Results", dict(common)))
    chapters.append(Chapter("inspector.ipynb", "06_inspector.ipynb", "Prediction inspector", "Results",
                            {**common, "model": spec["models"][0], "class_weights": "inverse"}))
    chapters.append(Chapter("performance.ipynb", "07_performance.ipynb", "Performance", "Appendix", {}))
    chapters.append(Chapter(INTRO, INTRO, "pskin", "", dict(common)))
    notebooks = find_checkout(root) / "notebooks"
    declared = {name: set(notebook_parameters(notebooks / name)) for name in {c.notebook for c in chapters}}
    for name, value in (extra or {}).items():
        takers = [c for c in chapters if name in declared[c.notebook]]
        if not takers:
            raise ParameterError(f"parameter {name!r} is declared by no notebook of the book; notebooks declare "
                                 f"{sorted(set().union(*declared.values()))}.")
        for chapter in takers:
            chapter.parameters[name] = value
    return chapters


# ---------------------------------------------------------------------------------------------------------------
# Data and runs, as the notebooks see them


def resolve_book_data(data_dir: str | os.PathLike | None = None, *, root: str | os.PathLike | None = None) -> Path:
    """The real data when it can be found (argument, ``$PSKIN_DATA``, ``data/ham10000``), else the demo set,
    generated once into the checkout's ``data/demo``."""
    try:
        return find_data_dir(data_dir)
    except DataError:
        if data_dir is not None:
            raise
    demo = find_checkout(root) / "data" / "demo"
    if not is_synthetic(demo):
        # All seven classes, so the data chapter can show the whole dataset's structure too.
        make_demo_dataset(demo, classes=ALL_CLASSES, overwrite=True)
    return demo


def data_notice(data_dir: str | os.PathLike):
    """A warning box for the top of a chapter when its data is the synthetic demo set; None (nothing shown) for
    real data."""
    from IPython.display import Markdown

    if not is_synthetic(Path(data_dir)):
        return None
    return Markdown(f":::{{warning}}\n{SYNTHETIC_WARNING}\n:::\n")


# ---------------------------------------------------------------------------------------------------------------
# Executing notebooks


def notebook_parameters(notebook: Path) -> dict[str, dict]:
    """The names, declared types and defaults of a notebook's ``parameters`` cell."""
    import papermill

    parameters = papermill.inspect_notebook(str(notebook))
    if not parameters:
        raise BookBuildError(f"{notebook.name} has no cell tagged 'parameters'.")
    return parameters


def _accepts(type_name: str, value: Any) -> bool:
    if type_name in ("int", "float") and isinstance(value, bool):
        return False
    kinds = {"None": type(None), "str": str, "int": int, "float": (int, float), "bool": bool, "dict": dict,
             "list": (list, tuple)}
    return type_name not in kinds or isinstance(value, kinds[type_name])


def check_parameters(notebook: Path, parameters: dict[str, Any]) -> None:
    """Unknown names and values of the wrong type are errors (papermill would only warn, or not notice).

    Types come from the annotations of the ``parameters`` cell (``x: int = 1``, ``data_dir: Optional[str] = None``).
    """
    declared = notebook_parameters(notebook)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ParameterError(f"{notebook.name}: unknown parameter(s) {unknown}; it declares {sorted(declared)}.")
    for name, value in parameters.items():
        annotation = declared[name].get("inferred_type_name") or "None"
        union = f"{annotation[9:-1]} | None" if annotation.startswith("Optional[") else annotation
        if not any(_accepts(t.strip(), value) for t in union.split("|")):
            raise ParameterError(f"{notebook.name}: parameter {name} must be {annotation}, got {value!r} "
                                 f"({type(value).__name__}).")


def _check_training_parameters(chapter: Chapter) -> None:
    """Chapters that train: their configs must be valid before the first notebook starts."""
    from ..train.config import make_config

    p = chapter.parameters
    if "profile" not in p or "train_overrides" not in p:
        return
    weights = p.get("class_weights", p.get("scheme", "inverse"))
    for model in [p["model"]] if "model" in p else p.get("models", []):
        make_config(p["profile"], data_dir=p.get("data_dir"), model=model, class_weights=weights,
                    **p["train_overrides"])
    for model in p.get("pretrained_models", []):
        make_config(p["pretrained_profile"], data_dir=p.get("data_dir"), model=model, class_weights=weights,
                    **p.get("pretrained_overrides", {}))


def _source_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _files_fingerprint(folder: Path, pattern: str) -> str:
    """The folder and the names, sizes and modification times of its files matching ``pattern``: a file added,
    removed or remade changes it."""
    stats = [(str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
             for p in sorted(folder.glob(pattern)) if p.is_file()]
    return hashlib.sha256(repr((str(folder.resolve()), stats)).encode()).hexdigest()[:16]


def chapter_key(chapter: Chapter, notebooks: Path, source: str, data: str) -> str:
    digest = hashlib.sha256((notebooks / chapter.notebook).read_bytes())
    digest.update(json.dumps(chapter.parameters, sort_keys=True, default=str).encode())
    digest.update(f"{source}|{data}".encode())
    return digest.hexdigest()[:24]


def execute_chapter(chapter: Chapter, output: Path, root: Path, log=print) -> None:
    """Run one notebook of ``root`` with papermill (in ``root``); a failure raises :class:`BookBuildError` naming
    notebook and cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook = root / "notebooks" / chapter.notebook
    start = time.perf_counter()
    try:
        papermill.execute_notebook(str(notebook), str(output), parameters=chapter.parameters, cwd=str(root),
                                   kernel_name="python3", progress_bar=False, log_output=False)
        _hide_injected_parameters(output)
    except PapermillExecutionError as exc:
        raise BookBuildError(
            f"{chapter.notebook} (as {chapter.output}) failed in cell {exc.cell_index} (execution count "
            f"{exc.exec_count}): {exc.ename}: {exc.evalue}. The executed copy with the traceback is {output}; "
            "the previously rendered book is unchanged."
        ) from None
    log(f"  {chapter.output}: {time.perf_counter() - start:.0f} s")


def _hide_injected_parameters(path: Path) -> None:
    """papermill's injected ``# Parameters`` cell holds this build's values (machine paths among them): the page
    shows the chapter's parameters table instead."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(notebook, path)


# ---------------------------------------------------------------------------------------------------------------
# Rendering


FONT_SUFFIXES = (".woff", ".woff2", ".ttf", ".eot", ".svg")
WIDGET_FONTS = "widgets_fonts"  # folder of the build mirrored into the HTML root


def widget_scripts(build_dir: Path, root: Path, log=print) -> dict[str, dict]:
    """The widget manager's scripts for ``nb_ipywidgets_js``: from npm into a static folder of the build, so the
    book's widgets work offline; the CDN (myst-nb's default) when npm is missing or fails."""
    modules = root / "node_modules"
    scripts = [modules / "requirejs" / "require.js", modules / "@jupyter-widgets/html-manager/dist/embed-amd.js"]
    if shutil.which("npm") and not all(f.is_file() for f in scripts):
        result = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=root,
                                capture_output=True, text=True)
        if result.returncode != 0:
            log(f"npm install failed ({result.stderr.strip()[:300]}); widgets will load from the CDN")
    if not all(f.is_file() for f in scripts):
        return {}
    static = build_dir / "widgets_js"
    static.mkdir(parents=True, exist_ok=True)
    for script in scripts:
        shutil.copy2(script, static / script.name)
    # The manager's icon fonts: its stylesheets ask for them relative to the page, at "@jupyter-widgets/<file>" and
    # at "@jupyter-widgets/html-manager/dist/<file>", so they go there beside the chapters (html_extra_path copies
    # this folder into the HTML root). Without them the icons fall back to empty boxes.
    fonts = [f for f in (modules / "@jupyter-widgets/html-manager/dist").iterdir() if f.suffix in FONT_SUFFIXES]
    for place in ("@jupyter-widgets", "@jupyter-widgets/html-manager/dist"):
        target = build_dir / WIDGET_FONTS / "book" / place
        target.mkdir(parents=True, exist_ok=True)
        for font in fonts:
            shutil.copy2(font, target / font.name)
    return {"require.js": {}, "embed-amd.js": {"data-jupyter-widgets-cdn": "https://cdn.jsdelivr.net/npm/"}}


def table_of_contents(chapters: list[Chapter]) -> dict:
    """The Jupyter Book 1.x ``_toc.yml`` for a list of chapters: the front page as the root, the others grouped
    into parts, and the bibliography last."""
    parts: dict[str, list] = {}
    for chapter in chapters:
        if chapter.notebook != INTRO:
            parts.setdefault(chapter.part, []).append(
                {"file": f"book/{Path(chapter.output).stem}", "title": chapter.title})
    parts["References"] = [{"file": f"book/{BIBLIOGRAPHY}", "title": "References"}]
    return {"format": "jb-book", "root": f"book/{Path(INTRO).stem}",
            "parts": [{"caption": caption, "chapters": entries} for caption, entries in parts.items()]}


def render_html(build_dir: Path, chapters: list[Chapter], root: Path, warnings_are_errors: bool = False,
                log=print) -> Path:
    """Build the HTML into a fresh folder and swap it in only when the build succeeded."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text())
    scripts = widget_scripts(build_dir, root, log)
    sphinx = config.setdefault("sphinx", {}).setdefault("config", {})
    if scripts:
        sphinx["nb_ipywidgets_js"] = scripts
        sphinx["html_static_path"] = [*sphinx.get("html_static_path", []),
                                      os.path.relpath(build_dir / "widgets_js", root)]
        sphinx["html_extra_path"] = [os.path.relpath(build_dir / WIDGET_FONTS, root)]
    generated = build_dir / "_config.generated.yml"
    generated.write_text(yaml.safe_dump(config, sort_keys=False))
    toc = build_dir / "_toc.generated.yml"
    toc.write_text(yaml.safe_dump(table_of_contents(chapters), sort_keys=False))
    fresh = build_dir / ".next"
    shutil.rmtree(fresh, ignore_errors=True)
    command = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(root),
               "--config", str(generated),
               "--toc", str(toc), "--path-output", str(fresh), "--builder", "html"]
    if warnings_are_errors:
        command += ["--warningiserror", "--keep-going"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BookBuildError(f"jupyter-book build failed; the previous book is unchanged.\n{result.stdout[-4000:]}"
                             f"\n{result.stderr[-4000:]}")
    html, old = build_dir / "html", build_dir / ".previous"
    shutil.rmtree(old, ignore_errors=True)
    if html.exists():
        html.rename(old)
    (fresh / "_build" / "html").rename(html)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(fresh, ignore_errors=True)
    return html


CHROMIUM = "/usr/bin/chromium"  # Debian's; CI installs it
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def screenshot_book(html: str | os.PathLike, out_dir: str | os.PathLike, chapters: list[Chapter], *,
                    width: int = 1400, chromium: str = CHROMIUM) -> list[Path]:
    """A full-page PNG of each chapter of a built book, as a reader's browser at ``width`` pixels shows it (served
    from 127.0.0.1, widgets and figures loaded). Needs playwright and a Chromium."""
    import functools
    import http.server
    import threading

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise ParameterError("screenshots: need playwright (pskinlib's dev extra: pip install -e '.[dev]').") from None
    if not Path(chromium).exists():
        raise ParameterError(f"screenshots: no Chromium at {chromium}; install Debian's chromium.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # one line per request on stderr otherwise
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(html)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    written = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": width, "height": 900})
            for chapter in chapters:
                name = Path(chapter.output).stem
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/book/{name}.html", wait_until="networkidle")
                page.screenshot(path=str(out / f"{name}.png"), full_page=True)
                written.append(out / f"{name}.png")
            browser.close()
    finally:
        server.shutdown()
    return written


def build_book(profile: str = "quick", *, root: str | os.PathLike | None = None, data_dir: str | None = None,
               parameters: dict[str, Any] | None = None, runs_dir: str | None = None,
               build_dir: str | os.PathLike | None = None, force: bool = False, warnings_are_errors: bool = False,
               log=print) -> Path:
    """Execute every chapter of the checkout ``root`` (default: the one the current folder is in) and render the
    book; returns the folder of the HTML (``<root>/_build/html``)."""
    if profile not in BOOK_PROFILES:
        raise ParameterError(f"profile: unknown book profile {profile!r}; choose from {list(BOOK_PROFILES)}.")
    root = find_checkout(root)
    notebooks, book_dir = root / "notebooks", root / "book"
    data = resolve_book_data(data_dir, root=root)
    build = Path(build_dir) if build_dir else root / "_build"
    runs = runs_dir or str(root / "runs" / "book" / profile)
    chapters = book_chapters(profile, str(data), runs, parameters, root=root)
    for chapter in chapters:  # every parameter is checked before anything runs
        check_parameters(notebooks / chapter.notebook, chapter.parameters)
        _check_training_parameters(chapter)
    log(f"Building the {profile} book on {'the SYNTHETIC demo set' if is_synthetic(data) else 'HAM10000'} "
        f"at {data}")
    staging = build / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    manifest_path = build / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    # The data's tables, and the committed reference records in book/results/ that the chapters read.
    source = _source_fingerprint()
    data_print = _files_fingerprint(data, "*.csv") + _files_fingerprint(book_dir / "results", "**/*")
    start = time.perf_counter()
    for chapter in chapters:
        key = chapter_key(chapter, notebooks, source, data_print)
        done = book_dir / chapter.output
        if not force and manifest.get(chapter.output) == key and done.is_file():
            shutil.copy2(done, staging / chapter.output)
            log(f"  {chapter.output}: unchanged, not run again")
            continue
        execute_chapter(chapter, staging / chapter.output, root, log)
        manifest[chapter.output] = key
    # Every chapter ran: only now do the executed copies replace the book's.
    for chapter in chapters:
        shutil.copy2(staging / chapter.output, book_dir / chapter.output)
    current = {chapter.output for chapter in chapters}
    for stale in book_dir.glob("*.ipynb"):  # chapters of an earlier layout or profile would linger in book/
        if stale.name not in current:
            stale.unlink()
    html = render_html(build, chapters, root, warnings_are_errors, log)
    manifest_path.write_text(json.dumps(manifest, indent=1))
    log(f"Book built in {(time.perf_counter() - start) / 60:.1f} min: {html / 'index.html'}")
    return html
