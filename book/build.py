"""The book's build: the runs its chapters read, then papermill executes the notebooks, then Jupyter Book 1.x
renders them (``python -m book``).

``build_book(profile)`` first checks every chapter's parameters against the notebook's ``parameters`` cell (papermill
itself only warns about unknown names; here they are errors, and so are wrong types) and every run's config. Then
one stage makes the runs the chapters read (:func:`book.runs.produce`: trained, fused, evaluated outside, each only
when missing), and only then are the chapters executed: the training notebook once per network, the class-weight
ablation once per scheme. Executed copies go to a staging folder first, and the HTML is built into a fresh folder
and swapped in at the end, so a failing notebook stops the build, names the notebook and cell, and leaves the
previous rendered book as it was. A chapter is executed again only when something it depends on changed: its
notebook, its parameters, pskinlib, the book modules it imports, and the folders its parameters name (the data's
tables, the runs, the committed reference results).

The terminal shows one line per run and per chapter and the total; a kernel's own messages go to
``_build/logs/<chapter>.log``.

Without real data the book is built on the synthetic demo set, and every chapter opens with a warning saying so.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pskinlib.data.demo import is_synthetic
from pskinlib.errors import ParameterError
from pskinlib.info import PAPER_PROCEDURES
from pskinlib.train.device import machine_description

from . import ROOT, BookBuildError
from .build_times import TIMES_FILE, time_lines, took, write_build_times
from .chapter import resolve_book_data
from .runs import chapter_configs, external_folders, produce

PROFILES_FILE = Path(__file__).resolve().parent / "profiles.yaml"
INTRO, BIBLIOGRAPHY = "intro.ipynb", "bibliography"
LIBRARY = ROOT / "pskinlib"  # pskinlib's source and profiles: every chapter runs on them
# Chapters executed side by side. Most of a short chapter is its kernel starting and importing, which keeps one core
# busy; two at a time keep both of a laptop's cores busy.
CHAPTER_WORKERS = 2


def book_profiles() -> dict[str, dict[str, Any]]:
    """The book's profiles (``book/profiles.yaml``): for each, the networks of each track and the training profile
    they use, the ablation's schemes and the networks that run the schemes beyond the paper's two."""
    return yaml.safe_load(PROFILES_FILE.read_text())


def _profile(profile: str) -> dict[str, Any]:
    profiles = book_profiles()
    if profile not in profiles:
        raise ParameterError(f"profile: unknown book profile {profile!r}; choose from {list(profiles)}.")
    return profiles[profile]


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
    spec = _profile(profile)
    scratch, pretrained = spec["scratch"], spec["pretrained"]
    common = {"data_dir": data_dir, "runs_dir": runs_dir}
    chapters = [Chapter("data_exploration.ipynb", "01_data_exploration.ipynb", "The data", "The data",
                        {"data_dir": data_dir})]
    trained = [(m, scratch["profile"], False) for m in scratch["models"]]
    trained += [(m, pretrained["profile"], True) for m in pretrained["models"]]
    for i, (model, train_profile, is_pretrained) in enumerate(trained):
        suffix, track = ("_pretrained", "ImageNet-pretrained") if is_pretrained else ("", "from scratch")
        chapters.append(Chapter("training.ipynb", f"02_{i + 1}_training_{model}{suffix}.ipynb",
                                f"Training {model} ({track})", "Training",
                                {**common, "profile": train_profile, "model": model}))
    for i, scheme in enumerate(spec["schemes"]):
        paper = scheme in PAPER_PROCEDURES
        chapters.append(Chapter("class_weights.ipynb", f"03_{i + 1}_class_weights_{scheme}.ipynb",
                                f"Class weights: {scheme}", "Class-weight ablation", {
                                    **common, "scheme": scheme, "profile": scratch["profile"],
                                    "models": list(scratch["models"] if paper else spec["scheme_models"]),
                                    "pretrained_models": list(pretrained["models"]) if paper else [],
                                    "pretrained_profile": pretrained["profile"]}))
    chapters.append(Chapter("results.ipynb", "04_results.ipynb", "Results", "Results",
                            {**common, "profile": scratch["profile"]}))
    chapters.append(Chapter("external.ipynb", "05_external.ipynb", "Beyond HAM10000", "Results", dict(common)))
    chapters.append(Chapter("clinical.ipynb", "06_clinical.ipynb", "For whom it fails, and how many it refers",
                            "Results", dict(common)))
    chapters.append(Chapter("inspector.ipynb", "07_inspector.ipynb", "Prediction inspector", "Results",
                            {**common, "model": scratch["models"][0], "class_weights": "inverse"}))
    chapters.append(Chapter("checklist.ipynb", "08_checklist.ipynb", "Reporting checklist and model card",
                            "Reporting", dict(common)))
    chapters.append(Chapter("performance.ipynb", "09_performance.ipynb", "Performance", "Appendix", {}))
    chapters.append(Chapter(INTRO, INTRO, "pskin", "", dict(common)))
    notebooks = Path(root or ROOT) / "notebooks"
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


def _source_fingerprint(folder: Path, suffixes=(".py", ".yaml")) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.suffix in suffixes and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _files_fingerprint(folder: Path, pattern: str) -> str:
    """The folder and the names, sizes and modification times of its files matching ``pattern``: a file added,
    removed or remade changes it."""
    stats = [(str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
             for p in sorted(folder.glob(pattern)) if p.is_file()] if folder.is_dir() else []
    return hashlib.sha256(repr((str(folder.resolve()), stats)).encode()).hexdigest()[:16]


def module_imports(source: str, package: str = "", is_module: Callable[[str], bool] = lambda name: False) -> set[str]:
    """The absolute names of the modules ``source`` imports, at any depth of the code (``package``: its own, for
    relative imports). ``from x import y`` counts as the module ``x.y`` where ``is_module`` says there is one, else as
    ``x``. The build's dependency walk and the layering test both read imports through this one function."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if is_module(f"{base}.{alias.name}") else base)
    return found


def local_dependencies(notebook: Path, root: Path) -> list[Path]:
    """The checkout's own modules outside pskinlib (``book/``, ``benchmarks/``) that a notebook imports, directly
    or through each other: what its page depends on besides the library."""
    def file_of(module: str) -> Path | None:
        parts = module.split(".")
        if parts[0] not in ("book", "benchmarks"):
            return None
        for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
            if candidate.is_file():
                return candidate
        return None

    import nbformat

    cells = nbformat.read(notebook, as_version=4).cells
    source = "\n".join(c.source for c in cells if c.cell_type == "code" and not c.source.lstrip().startswith("%"))
    def is_module(module: str) -> bool:
        return file_of(module) is not None

    pending, found = list(module_imports(source, "", is_module)), {}
    while pending:
        module = pending.pop()
        path = file_of(module)
        if path is None or path in found.values():
            continue
        found[module] = path
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        pending += [*module_imports(path.read_text(), package, is_module), package]
    return sorted(set(found.values()))


def _defaults(notebook: Path) -> dict[str, Any]:
    """The values a notebook's ``parameters`` cell gives where a build passes none."""
    values = {}
    for name, declared in notebook_parameters(notebook).items():
        with contextlib.suppress(ValueError, SyntaxError):
            values[name] = ast.literal_eval(declared["default"])
    return values


def planned_runs(chapters: list[Chapter], root: Path | None = None) -> list:
    """The configs of every run the chapters read (:func:`book.runs.chapter_configs` of each chapter's parameters,
    its notebook's defaults filling in what the build does not pass), in the order the chapters run."""
    notebooks = Path(root or ROOT) / "notebooks"
    return [config for chapter in chapters
            for config in chapter_configs({**_defaults(notebooks / chapter.notebook), **chapter.parameters})]


def chapter_key(chapter: Chapter, root: Path, library: str) -> str:
    """What a chapter's page depends on, hashed: its notebook and parameters, pskinlib (``library``), the book's
    modules it imports, and the folders its parameters name."""
    notebook = root / "notebooks" / chapter.notebook
    digest = hashlib.sha256(notebook.read_bytes())
    digest.update(json.dumps(chapter.parameters, sort_keys=True, default=str).encode())
    digest.update(library.encode())
    for path in local_dependencies(notebook, root):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    p = {**_defaults(notebook), **chapter.parameters}
    for name, pattern in (("data_dir", "*.csv"), ("runs_dir", "**/*.json"), ("reference_dir", "**/*")):
        if p.get(name):
            digest.update(_files_fingerprint(root / p[name], pattern).encode())  # an absolute path stays itself
    if p.get("benchmarks"):  # a file
        path = root / p["benchmarks"]
        digest.update(_files_fingerprint(path.parent, path.name).encode())
    if "external_dirs" in p:
        for folder in external_folders([root / f for f in p["external_dirs"]]):
            digest.update(_files_fingerprint(folder, "*.csv").encode())
    return digest.hexdigest()[:24]


@contextlib.contextmanager
def _kernel_output_to(log_file: Path):
    """The kernel inherits this process's standard error: for the chapter's run it goes to ``log_file``, so the
    terminal keeps one line per chapter (jupyter's transport notices and warnings are in the log)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log_file, "w") as handle:
        os.dup2(handle.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def execute_chapter(chapter: Chapter, output: Path, root: Path, log_dir: Path) -> None:
    """Run one notebook of ``root`` with papermill (in ``root``); a failure raises :class:`BookBuildError` naming
    notebook and cell. The kernel's own messages go to ``log_dir/<chapter>.log``."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook = root / "notebooks" / chapter.notebook
    log_file = log_dir / f"{Path(chapter.output).stem}.log"
    try:
        with _kernel_output_to(log_file):
            papermill.execute_notebook(str(notebook), str(output), parameters=chapter.parameters, cwd=str(root),
                                       kernel_name="python3", progress_bar=False, log_output=False)
        _hide_injected_parameters(output)
    except PapermillExecutionError as exc:
        raise BookBuildError(
            f"{chapter.notebook} (as {chapter.output}) failed in cell {exc.cell_index} (execution count "
            f"{exc.exec_count}): {exc.ename}: {exc.evalue}. The executed copy with the traceback is {output}, the "
            f"kernel's messages are in {log_file}; the previously rendered book is unchanged."
        ) from None


def _execute_timed(chapter: Chapter, output: Path, root: Path, log_dir: Path) -> float:
    """:func:`execute_chapter` in a worker process (whose standard error is its own to redirect); its seconds."""
    began = time.perf_counter()
    execute_chapter(chapter, output, root, log_dir)
    return time.perf_counter() - began


def execute_chapters(groups: list[list[Chapter]], staging: Path, root: Path, log_dir: Path,
                     workers: int = CHAPTER_WORKERS) -> Iterator[tuple[Chapter, float]]:
    """Execute the chapters of ``groups`` (into ``staging``), ``workers`` at a time, each in a process of its own, a
    group only once the one before has finished; yield each chapter and its seconds as it finishes. The first failure
    stops the chapters that have not started and is raised once the running ones end."""
    chapters = [chapter for group in groups for chapter in group]
    if workers < 2 or len(chapters) < 2:
        for chapter in chapters:
            yield chapter, _execute_timed(chapter, staging / chapter.output, root, log_dir)
        return
    # spawn, not fork: the build's process holds torch's threads, which a forked child must not inherit.
    with ProcessPoolExecutor(min(workers, len(chapters)), mp_context=multiprocessing.get_context("spawn")) as pool:
        for group in groups:
            pending = {pool.submit(_execute_timed, chapter, staging / chapter.output, root, log_dir): chapter
                       for chapter in group}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield pending.pop(future), future.result()
            finally:
                for future in pending:
                    future.cancel()


def measure_appearance(chapters: list[Chapter], root: Path, data: Path, steps: list[dict] | None = None,
                       log=print) -> None:
    """Measure the appearance of the images the chapters read through :mod:`book.appearance` (HAM10000 and each
    labelled folder they name), or read it from the cache: once, before the chapters run side by side, instead of in
    two chapters at the same time."""
    notebooks = root / "notebooks"
    readers = [chapter for chapter in chapters
               if root / "book" / "appearance.py" in local_dependencies(notebooks / chapter.notebook, root)]
    if not readers:
        return
    from pskinlib.data.appearance import appearance_cache, appearance_table

    from .appearance import measured_collections

    folders = dict.fromkeys(folder for chapter in readers for folder in external_folders(
        {**_defaults(notebooks / chapter.notebook), **chapter.parameters}.get("external_dirs", [])))
    for name, images in measured_collections(data, list(folders)).items():
        began, cached = time.perf_counter(), appearance_cache(images).is_file()
        what = f"{name} ({len(images.table)} images)"
        if not cached:
            log(f"  appearance of {what}: measuring")
        appearance_table(images, progress=False, on_progress=_quarterly(log, began))
        took(steps, "appearance", "read" if cached else "measured", what, began)
        log(f"  appearance of {what}: {'read from the cache' if cached else 'measured'} "
            f"({time.perf_counter() - began:.0f} s)")


def _quarterly(log, began: float) -> Callable[[int, int], None]:
    """An ``on_progress(done, total)`` that logs how many images are measured at each quarter of them."""
    shown = 0

    def on_progress(done: int, total: int) -> None:
        nonlocal shown
        if done < total and done * 4 // total > shown:
            shown = done * 4 // total
            log(f"    {done} of {total} images measured ({time.perf_counter() - began:.0f} s)")

    return on_progress


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


@contextlib.contextmanager
def served(html: str | os.PathLike):
    """A built book served from 127.0.0.1 while the block runs; yields its base URL."""
    import functools
    import http.server
    import threading

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # one line per request on stderr otherwise
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(html)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@contextlib.contextmanager
def chromium(*, width: int = 1400, height: int = 900, offline: bool = False, executable: str = CHROMIUM):
    """A page of Debian's Chromium driven by playwright, ``width`` pixels wide; ``offline``: with the network cut
    (a page then reaches only what the book serves from 127.0.0.1)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise ParameterError("screenshots: need playwright (the dev extra: pip install -e '.[dev]').") from None
    if not Path(executable).exists():
        raise ParameterError(f"screenshots: no Chromium at {executable}; install Debian's chromium.")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": width, "height": height})
        if offline:  # everything but the local server is refused, as with no network at all
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
                "http://127.0.0.1") else route.abort())
        try:
            yield context.new_page()
        finally:
            browser.close()


def screenshot_book(html: str | os.PathLike, out_dir: str | os.PathLike, chapters: list[Chapter], *,
                    width: int = 1400) -> list[Path]:
    """A full-page PNG of each chapter of a built book, as a reader's browser at ``width`` pixels shows it (served
    from 127.0.0.1, widgets and figures loaded). Needs playwright and a Chromium."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with served(html) as base, chromium(width=width) as page:
        for chapter in chapters:
            name = Path(chapter.output).stem
            page.goto(f"{base}/book/{name}.html", wait_until="networkidle")
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            written.append(out / f"{name}.png")
    return written


def build_book(profile: str = "quick", *, root: str | os.PathLike | None = None, data_dir: str | None = None,
               parameters: dict[str, Any] | None = None, runs_dir: str | None = None,
               build_dir: str | os.PathLike | None = None, force: bool = False, warnings_are_errors: bool = False,
               log=print) -> Path:
    """Make the runs of every chapter, execute the chapters and render the book of the checkout ``root`` (default:
    this one); returns the folder of the HTML (``<root>/_build/html``)."""
    _profile(profile)
    root = Path(root or ROOT)
    notebooks, book_dir = root / "notebooks", root / "book"
    data = resolve_book_data(data_dir, root=root, from_book_build=False)
    runs = runs_dir or str(root / "runs" / "book" / profile)
    chapters = book_chapters(profile, str(data), runs, parameters, root=root)
    for chapter in chapters:  # every parameter and every run's config is checked before anything runs
        check_parameters(notebooks / chapter.notebook, chapter.parameters)
    planned = planned_runs(chapters, root)
    build = Path(build_dir) if build_dir else root / "_build"
    times_path, machine, steps = build / TIMES_FILE, machine_description(), []
    for chapter in chapters:  # the Performance appendix shows the time table of the build that made it
        if "build_times" in notebook_parameters(notebooks / chapter.notebook):
            chapter.parameters.setdefault("build_times", str(times_path))
    start = time.perf_counter()
    log(f"Building the {profile} book on {'the SYNTHETIC demo set' if is_synthetic(data) else 'HAM10000'}")
    external = next((c.parameters.get("external_dirs", []) for c in chapters if c.notebook == "external.ipynb"), [])
    produce(planned, runs, data_dir=data, external_dirs=external, log=log, steps=steps)
    write_build_times(times_path, profile, machine, steps)
    staging = build / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    manifest_path = build / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    library = _source_fingerprint(LIBRARY) if LIBRARY.is_dir() else ""
    keys, fresh = {}, []
    for chapter in chapters:
        keys[chapter.output] = key = chapter_key(chapter, root, library)
        done, name = book_dir / chapter.output, Path(chapter.output).stem
        began = time.perf_counter()
        if not force and manifest.get(chapter.output) == key and done.is_file():
            shutil.copy2(done, staging / chapter.output)
            took(steps, "chapters", "reused", name, began)
            log(f"  chapter {name}: reused, unchanged")
        else:
            fresh.append(chapter)
    if fresh:
        measure_appearance(fresh, root, data, steps, log)
        write_build_times(times_path, profile, machine, steps)
    # The Performance appendix shows the time table of the chapters before it, and the front page sums up the
    # others: they run after the rest.
    last = [c for c in fresh if "build_times" in c.parameters or c.notebook == INTRO]
    stage_began = time.perf_counter()
    groups = [[c for c in fresh if c not in last], last]
    for chapter, seconds in execute_chapters(groups, staging, root, build / "logs"):
        manifest[chapter.output] = keys[chapter.output]
        name = Path(chapter.output).stem
        took(steps, "chapters", "executed", name, time.perf_counter() - seconds, origin=stage_began)
        write_build_times(times_path, profile, machine, steps)
        log(f"  chapter {name}: ran ({seconds:.0f} s)")
    # Every chapter ran: only now do the executed copies replace the book's.
    for chapter in chapters:
        shutil.copy2(staging / chapter.output, book_dir / chapter.output)
    current = {chapter.output for chapter in chapters}
    for stale in book_dir.glob("*.ipynb"):  # chapters of an earlier layout or profile would linger in book/
        if stale.name not in current:
            stale.unlink()
    began = time.perf_counter()
    html = render_html(build, chapters, root, warnings_are_errors, log)
    took(steps, "rendering", "HTML", "the book", began)
    log(f"  rendered the HTML ({time.perf_counter() - began:.0f} s)")
    manifest_path.write_text(json.dumps(manifest, indent=1))
    write_build_times(times_path, profile, machine, steps)
    for line in time_lines(steps):
        log(line)
    log(f"Book built in {(time.perf_counter() - start) / 60:.1f} min: {html / 'index.html'}")
    return html
