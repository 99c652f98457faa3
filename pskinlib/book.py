"""The book pipeline: execute the notebooks with papermill, then render them with Jupyter Book 1.x.

``build_book(profile)`` runs every chapter in order — the training notebook once per model, the class-weight
ablation once per scheme — with parameters checked against each notebook's ``parameters`` cell (papermill itself
only warns about unknown names; here they are errors, and so are wrong types). Executed copies go to a staging
folder first, and the HTML is built into a fresh folder and swapped in at the end, so a failing notebook stops the
build, names the notebook and cell, and leaves the previous rendered book as it was. A chapter whose notebook,
parameters, library source and data are unchanged since the last build is not executed again.

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

import pandas as pd

from .data import DataError, find_data_dir
from .info import ALL_CLASSES, PAPER_REPORTED, SYNTHETIC_WARNING
from .metrics import mcnemar_test, pairwise_accuracy
from .runs import find_runs, read_json
from .synthetic import is_synthetic, make_demo_dataset

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
BOOK_DIR = ROOT / "book"
BUILD_DIR = ROOT / "_build"
DEMO_DIR = ROOT / "data" / "demo"
WEIGHT_SCHEMES_IN_BOOK = ("none", "inverse", "sqrt_inverse", "effective")


class BookBuildError(RuntimeError):
    """A chapter failed; the message names the notebook and the cell."""


# What each book profile trains. CPU minutes were measured on the 2-core development machine.
BOOK_PROFILES: dict[str, dict[str, Any]] = {
    # CI: the whole book in a few minutes; the numbers mean nothing.
    "smoke": {"train_profile": "smoke", "models": ("resnet18", "efficientnet_b0"), "schemes": ("none", "inverse"),
              "extra_scheme_models": (), "train": {"select_metric": "balanced_accuracy"}},
    # Default: the whole book within 15 minutes on 2 CPU cores, with small stand-ins for the paper's networks.
    # The paper's two procedures (no weights, inverse weights) run for both models; the other schemes for the
    # first model only, to stay inside that budget.
    "quick": {"train_profile": "quick", "models": ("resnet18", "efficientnet_b0"),
              "schemes": WEIGHT_SCHEMES_IN_BOOK, "extra_scheme_models": ("resnet18",),
              # With class weights the epoch of best plain accuracy is the one leaning most towards nevus (measured:
              # a 15-epoch run kept epoch 1, test balanced accuracy 0.57); the CPU books select on balanced accuracy.
              # A short run needs a shorter weight average than the default (0.995: ~200 steps).
              "train": {"image_size": 48, "epochs": 4, "tta": False, "select_metric": "balanced_accuracy",
                        "ema_decay": 0.98}},
    # The study: ResNet101 and EfficientNet-B0 at 224 px for 100 epochs on Table 1's split. Meant for a GPU.
    "paper": {"train_profile": "paper", "models": ("resnet101", "efficientnet_b0"),
              "schemes": WEIGHT_SCHEMES_IN_BOOK, "extra_scheme_models": ("resnet101", "efficientnet_b0"),
              "train": {}},
}
PAPER_PROCEDURES = ("none", "inverse")  # the paper trains each model without and with class weights


@dataclass
class Chapter:
    """One notebook execution: which notebook, under which name in the book, with which parameters."""

    notebook: str
    output: str
    title: str
    part: str
    parameters: dict[str, Any] = field(default_factory=dict)


def book_chapters(profile: str, data_dir: str, runs_dir: str, extra: dict[str, Any] | None = None) -> list[Chapter]:
    """The chapters of a build, in order. ``extra`` parameters go to every notebook that declares them."""
    if profile not in BOOK_PROFILES:
        raise ValueError(f"profile: unknown book profile {profile!r}; choose from {list(BOOK_PROFILES)}.")
    spec = BOOK_PROFILES[profile]
    common = {"data_dir": data_dir, "profile": spec["train_profile"], "runs_dir": runs_dir,
              "train_overrides": dict(spec["train"])}
    chapters = [Chapter("data_exploration.ipynb", "01_data_exploration.ipynb", "The data", "The data",
                        {"data_dir": data_dir})]
    for i, model in enumerate(spec["models"]):
        chapters.append(Chapter("training.ipynb", f"02_{i + 1}_training_{model}.ipynb", f"Training {model}",
                                "Training", {**common, "model": model}))
    for i, scheme in enumerate(spec["schemes"]):
        chapters.append(Chapter("class_weights.ipynb", f"03_{i + 1}_class_weights_{scheme}.ipynb",
                                f"Class weights: {scheme}", "Class-weight ablation",
                                {**common, "scheme": scheme, "models": list(
                                    spec["models"] if scheme in PAPER_PROCEDURES else spec["extra_scheme_models"])}))
    chapters.append(Chapter("results.ipynb", "04_results.ipynb", "Results", "Results",
                            {"data_dir": data_dir, "runs_dir": runs_dir, "profile": spec["train_profile"]}))
    chapters.append(Chapter("inspector.ipynb", "05_inspector.ipynb", "Prediction inspector", "Results",
                            {"data_dir": data_dir, "runs_dir": runs_dir, "model": spec["models"][0],
                             "class_weights": "inverse"}))
    chapters.append(Chapter("performance.ipynb", "06_performance.ipynb", "Performance", "Appendix", {}))
    declared = {name: set(notebook_parameters(NOTEBOOKS / name)) for name in {c.notebook for c in chapters}}
    for name, value in (extra or {}).items():
        takers = [c for c in chapters if name in declared[c.notebook]]
        if not takers:
            raise ValueError(f"parameter {name!r} is declared by no notebook of the book; notebooks declare "
                             f"{sorted(set().union(*declared.values()))}.")
        for chapter in takers:
            chapter.parameters[name] = value
    return chapters


# ---------------------------------------------------------------------------------------------------------------
# Data and runs, as the notebooks see them


def resolve_book_data(data_dir: str | os.PathLike | None = None) -> Path:
    """The real data when it can be found (argument, ``$PSKIN_DATA``, ``data/ham10000``), else the demo set,
    generated once into ``data/demo``."""
    try:
        return find_data_dir(data_dir)
    except DataError:
        if data_dir is not None:
            raise
    if not is_synthetic(DEMO_DIR):
        # All seven classes, so the data chapter can show the whole dataset's structure too.
        make_demo_dataset(DEMO_DIR, classes=ALL_CLASSES, overwrite=True)
    return DEMO_DIR


def data_notice(data_dir: str | os.PathLike):
    """A warning box for the top of a chapter when its data is the synthetic demo set (else nothing)."""
    from IPython.display import Markdown

    if not is_synthetic(Path(data_dir)):
        return Markdown("")
    return Markdown(f":::{{warning}}\n{SYNTHETIC_WARNING}\n:::\n")


def runs_table(runs_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per finished run under ``runs_dir``: what was trained and how it scored on the test split."""
    rows = []
    for run in find_runs(runs_dir):
        config, metrics = read_json(run / "config.json"), read_json(run / "metrics.json")
        c, test = config["config"], metrics["test"]
        boot = test.get("bootstrap", {}).get("balanced_accuracy", {})
        history = pd.read_csv(run / "history.csv")
        rows.append({
            "run": run.name, "path": str(run), "model": c["model"], "image_size": c["image_size"],
            "epochs": c["epochs"], "class_weights": c["class_weights"], "sampler": c["sampler"],
            "loss": c["loss"], "protocol": c["protocol"], "profile": c["profile"],
            "synthetic": config["data"]["synthetic"], "device": config["environment"]["device_name"],
            "precision": config["environment"]["precision"],
            "val_balanced_accuracy": metrics["val"]["balanced_accuracy"],
            "best_epoch": metrics["best_epoch"], "train_minutes": history["seconds"].sum() / 60,
            "test_images": test["n"], "accuracy": test["accuracy"], "balanced_accuracy": test["balanced_accuracy"],
            "balanced_accuracy_low": boot.get("low"), "balanced_accuracy_high": boot.get("high"),
            "macro_f1": test["macro"]["f1"], "nv_vs_bkl": _nv_vs_bkl(run, metrics["classes"]),
            "hardest_class": min(test["per_class"], key=lambda code: test["per_class"][code]["recall"]),
            **{f"recall_{code}": v["recall"] for code, v in test["per_class"].items()},
            **{f"precision_{code}": v["precision"] for code, v in test["per_class"].items()},
        })
    return pd.DataFrame(rows)


def quality_bar_table(folder: str | os.PathLike) -> pd.DataFrame:
    """The CPU quality bars written by ``scripts/quality_bar.py`` (and the plain-loop baseline of
    ``scripts/plain_loop.py``) under ``folder``, one subfolder per setting: one row per result (each member, the
    ensemble, the lesion-averaged decision, the fused ones); empty when there is none."""
    rows = []
    for path in sorted(Path(folder).glob("*/quality_bar.json")):
        summary = read_json(path)
        setting = summary.get("setting")  # the plain loop names its own
        if not setting:
            setting = f"{summary['members']} x {summary['epochs']} epochs, {summary['image_size']} px"
            if summary.get("precision", "auto") != "auto":
                setting += f", {summary['precision']}"
            if summary.get("split_seed", 0):
                setting += f", split seed {summary['split_seed']}"
        for result in summary["results"]:
            rows.append({"setting": setting, **result, "headline": result["result"] == summary["headline"],
                         "wall_minutes": summary["wall_minutes"], "split_seed": summary.get("split_seed", 0)})
    return pd.DataFrame(rows)


def gpu_run_table(summary_path: str | os.PathLike) -> pd.DataFrame:
    """The paper profile on a GPU, from ``scripts/gpu_paper_run.py``'s ``gpu_paper_run.json``: one row per model
    (status, epochs, minutes against the 5-minute target, the trainer's and the raw model's images per second, test
    balanced accuracy alone and fused with the metadata); empty when the file is not there."""
    path = Path(summary_path)
    if not path.is_file():
        return pd.DataFrame()
    summary = read_json(path)
    rows = []
    for model in summary["models"]:
        fusion = model.get("fusion") or {}
        rows.append({
            "model": model["model"], "device": summary["machine"].get("gpu") or summary["device"],
            "gpu_result": summary["gpu_result"], "status": model["status"],
            "epochs": model.get("epochs_run"), "epochs_planned": model.get("epochs_planned"),
            "size": model.get("size"), "minutes": model["seconds_total"] / 60 if "seconds_total" in model else None,
            "target_minutes": summary["target_seconds_per_model"] / 60, "under_target": model.get("under_target"),
            "images_per_second": model.get("images_per_second_median"),
            "raw_images_per_second": model.get("raw_images_per_second"), "trainer_vs_raw": model.get("trainer_vs_raw"),
            "best_epoch": model.get("best_epoch"),
            "test_balanced_accuracy": model.get("test", {}).get("balanced_accuracy"),
            "+ metadata": fusion.get("test", {}).get("balanced_accuracy"),
        })
    return pd.DataFrame(rows)


def fusion_table(run_dirs, data_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """For each run: its test balanced accuracy from the images alone, with its head refitted on image features
    (the control), and with age, sex and body site fused in (:mod:`pskinlib.fusion`), plain and lesion-averaged.
    Fits the heads that a run does not have yet (a few seconds to a minute per run on a CPU)."""
    from .fusion import ensure_fused

    rows = []
    for run in map(Path, run_dirs):
        reports = {use_metadata: read_json(ensure_fused(run, data_dir=data_dir, use_metadata=use_metadata)
                                           / "metrics.json")
                   for use_metadata in (False, True)}
        fused = reports[True]
        boot = fused["test"]["bootstrap"]["balanced_accuracy"]
        rows.append({"run": run.name, "model": read_json(run / "config.json")["config"]["model"],
                     "images alone": fused["image_only_test_balanced_accuracy"],
                     "head refitted, images": reports[False]["test"]["balanced_accuracy"],
                     "+ metadata": fused["test"]["balanced_accuracy"], "+ metadata low": boot["low"],
                     "+ metadata high": boot["high"],
                     "+ metadata, lesion-averaged": fused["test_by_lesion"]["balanced_accuracy"],
                     **{f"recall_{code}": v["recall"] for code, v in fused["test"]["per_class"].items()}})
    return pd.DataFrame(rows)


def _test_predictions(run: Path, classes: list[str]) -> tuple:
    """A run's test labels (as indices into ``classes``), predicted indices and probabilities."""
    predictions = pd.read_csv(run / "predictions_test.csv")
    index = {c: i for i, c in enumerate(classes)}
    return (predictions["true"].map(index).to_numpy(), predictions["predicted"].map(index).to_numpy(),
            predictions[[f"p_{c}" for c in classes]].to_numpy(), predictions["image_id"])


def _nv_vs_bkl(run: Path, classes: list[str]) -> float | None:
    """The paper's second figure: nevus vs seborrheic keratosis, from the run's test predictions."""
    if not {"nv", "bkl"} <= set(classes):
        return None
    y_true, _, probs, _ = _test_predictions(run, classes)
    return pairwise_accuracy(y_true, probs, classes.index("nv"), classes.index("bkl"))["accuracy"]


def latest_runs(table: pd.DataFrame) -> pd.DataFrame:
    """The newest run of each configuration (a rebuilt chapter adds a run; the old one stays on disk)."""
    keys = ["model", "image_size", "epochs", "class_weights", "sampler", "loss", "protocol", "synthetic"]
    return table.drop_duplicates(keys, keep="last") if len(table) else table


def recall_table(runs: dict[str, Path]) -> pd.DataFrame:
    """Test recall per class with its bootstrap interval, one row per (run label, class), for per_class_bars."""
    rows = []
    for label, run in runs.items():
        test = read_json(Path(run) / "metrics.json")["test"]
        for code, values in test["per_class"].items():
            ci = test["bootstrap"]["recall"][code] or {}
            rows.append({"run": label, "class": code, "recall": values["recall"], "low": ci.get("low"),
                         "high": ci.get("high")})
    return pd.DataFrame(rows)


def compare_runs(run_a: str | os.PathLike, run_b: str | os.PathLike) -> dict:
    """McNemar's test between two runs on the same test images (class codes mapped through the runs' classes)."""
    classes = read_json(Path(run_a) / "metrics.json")["classes"]
    if read_json(Path(run_b) / "metrics.json")["classes"] != classes:
        raise ValueError(f"run_b: {run_b} was trained on other classes than {run_a}.")
    y_true, pred_a, _, ids_a = _test_predictions(Path(run_a), classes)
    _, pred_b, _, ids_b = _test_predictions(Path(run_b), classes)
    if not ids_a.equals(ids_b):
        raise ValueError(f"run_b: {run_b} was tested on other images than {run_a}; McNemar needs the same ones.")
    return mcnemar_test(y_true, pred_a, pred_b)


def find_or_train(config, runs_dir: str | os.PathLike) -> Path:
    """The newest finished run under ``runs_dir`` trained with exactly ``config``, else a new one.

    Chapters share runs this way: the ablation's ``inverse`` chapter reuses the training chapter's runs.
    """
    from .trainer import train

    wanted = json.loads(json.dumps(config.to_dict(), default=str))
    for run in reversed(find_runs(runs_dir)):
        if read_json(run / "config.json")["config"] == wanted:
            return run
    return train(config, runs_dir=runs_dir)


def find_run(runs_dir: str | os.PathLike, **criteria: Any) -> Path:
    """The newest finished run whose config matches every ``criteria`` value."""
    table = runs_table(runs_dir)
    for name, value in criteria.items():
        table = table[table[name] == value] if len(table) else table
    if not len(table):
        raise LookupError(f"No finished run under {runs_dir} with {criteria}.")
    return Path(table.iloc[-1]["path"])


def paper_comparison() -> pd.DataFrame:
    """The paper's reported figures, for the results table."""
    return pd.DataFrame([
        {"source": "paper (reported)", "what": "average accuracy over the three classes",
         "value": PAPER_REPORTED["average_accuracy"]},
        {"source": "paper (reported)", "what": "nevus vs seborrheic keratosis accuracy",
         "value": PAPER_REPORTED["nv_vs_bkl_accuracy"]},
    ])


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
    if type_name == "None":
        return value is None
    if type_name in ("int", "float") and isinstance(value, bool):
        return False
    kinds = {"str": str, "int": int, "float": (int, float), "bool": bool, "dict": dict, "list": (list, tuple)}
    return type_name not in kinds or isinstance(value, kinds[type_name])


def check_parameters(notebook: Path, parameters: dict[str, Any]) -> None:
    """Unknown names and values of the wrong type are errors (papermill would only warn, or not notice).

    Types come from the annotations of the ``parameters`` cell (``x: int = 1``, ``data_dir: Optional[str] = None``).
    """
    declared = notebook_parameters(notebook)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ValueError(f"{notebook.name}: unknown parameter(s) {unknown}; it declares {sorted(declared)}.")
    for name, value in parameters.items():
        annotation = declared[name].get("inferred_type_name") or "None"
        optional = annotation.startswith("Optional[")
        names = [t.strip() for t in (annotation[9:-1] if optional else annotation).split("|")]
        if optional:
            names.append("None")
        if not any(_accepts(t, value) for t in names):
            raise ValueError(f"{notebook.name}: parameter {name} must be {annotation}, got {value!r} "
                             f"({type(value).__name__}).")


def _check_training_parameters(chapter: Chapter) -> None:
    """Chapters that train: their configs must be valid before the first notebook starts."""
    from .config import make_config

    p = chapter.parameters
    if "profile" not in p or "train_overrides" not in p:
        return
    models = [p["model"]] if "model" in p else p.get("models", [])
    for model in models:
        make_config(p["profile"], data_dir=p.get("data_dir"), model=model,
                    class_weights=p.get("class_weights", p.get("scheme", "inverse")), **p["train_overrides"])


def _source_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "pskinlib").glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _data_fingerprint(data_dir: str) -> str:
    path = Path(data_dir)
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.glob("*.csv"))]
    return hashlib.sha256(repr((str(path.resolve()), stats)).encode()).hexdigest()[:16]


def chapter_key(chapter: Chapter, source: str, data: str) -> str:
    digest = hashlib.sha256((NOTEBOOKS / chapter.notebook).read_bytes())
    digest.update(json.dumps(chapter.parameters, sort_keys=True, default=str).encode())
    digest.update(f"{source}|{data}".encode())
    return digest.hexdigest()[:24]


def execute_chapter(chapter: Chapter, output: Path, log=print) -> None:
    """Run one notebook with papermill; a failure raises :class:`BookBuildError` naming notebook and cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook = NOTEBOOKS / chapter.notebook
    start = time.perf_counter()
    try:
        papermill.execute_notebook(str(notebook), str(output), parameters=chapter.parameters, cwd=str(ROOT),
                                   kernel_name="python3", progress_bar=False, log_output=False)
    except PapermillExecutionError as exc:
        raise BookBuildError(
            f"{chapter.notebook} (as {chapter.output}) failed in cell {exc.cell_index} (execution count "
            f"{exc.exec_count}): {exc.ename}: {exc.evalue}. The executed copy with the traceback is {output}; "
            "the previously rendered book is unchanged."
        ) from None
    log(f"  {chapter.output}: {time.perf_counter() - start:.0f} s")


# ---------------------------------------------------------------------------------------------------------------
# Rendering


FONT_SUFFIXES = (".woff", ".woff2", ".ttf", ".eot", ".svg")
WIDGET_FONTS = "widgets_fonts"  # folder of the build mirrored into the HTML root


def widget_scripts(build_dir: Path, log=print) -> dict[str, dict]:
    """The widget manager's scripts for ``nb_ipywidgets_js``: from npm into a static folder of the build, so the
    book's widgets work offline; the CDN (myst-nb's default) when npm is missing or fails."""
    package = {"requirejs": "require.js", "@jupyter-widgets/html-manager": "dist/embed-amd.js"}
    modules = ROOT / "node_modules"
    if shutil.which("npm") and not all((modules / p / f).is_file() for p, f in package.items()):
        result = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=ROOT,
                                capture_output=True, text=True)
        if result.returncode != 0:
            log(f"npm install failed ({result.stderr.strip()[:300]}); widgets will load from the CDN")
    if not all((modules / p / f).is_file() for p, f in package.items()):
        return {}
    static = build_dir / "widgets_js"
    static.mkdir(parents=True, exist_ok=True)
    for name, file in package.items():
        shutil.copy2(modules / name / file, static / Path(file).name)
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
    """The Jupyter Book 1.x ``_toc.yml`` for a list of chapters, grouped into parts."""
    parts: dict[str, list] = {}
    for chapter in chapters:
        parts.setdefault(chapter.part, []).append(
            {"file": f"book/{Path(chapter.output).stem}", "title": chapter.title})
    return {"format": "jb-book", "root": "book/intro",
            "parts": [{"caption": caption, "chapters": entries} for caption, entries in parts.items()]}


def render_html(build_dir: Path, chapters: list[Chapter], warnings_are_errors: bool = False, log=print) -> Path:
    """Build the HTML into a fresh folder and swap it in only when the build succeeded."""
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    scripts = widget_scripts(build_dir, log)
    sphinx = config.setdefault("sphinx", {}).setdefault("config", {})
    if scripts:
        sphinx["nb_ipywidgets_js"] = scripts
        sphinx["html_static_path"] = [os.path.relpath(build_dir / "widgets_js", ROOT)]
        sphinx["html_extra_path"] = [os.path.relpath(build_dir / WIDGET_FONTS, ROOT)]
    generated = build_dir / "_config.generated.yml"
    generated.write_text(yaml.safe_dump(config, sort_keys=False))
    toc = build_dir / "_toc.generated.yml"
    toc.write_text(yaml.safe_dump(table_of_contents(chapters), sort_keys=False))
    fresh = build_dir / ".next"
    shutil.rmtree(fresh, ignore_errors=True)
    command = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(ROOT),
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


def build_book(profile: str = "quick", *, data_dir: str | None = None, parameters: dict[str, Any] | None = None,
               runs_dir: str | None = None, build_dir: str | os.PathLike | None = None, force: bool = False,
               warnings_are_errors: bool = False, log=print) -> Path:
    """Execute every chapter and render the book; returns the folder of the HTML (``_build/html``)."""
    if profile not in BOOK_PROFILES:
        raise ValueError(f"profile: unknown book profile {profile!r}; choose from {list(BOOK_PROFILES)}.")
    data = resolve_book_data(data_dir)
    build = Path(build_dir) if build_dir else BUILD_DIR
    runs = runs_dir or str(ROOT / "runs" / "book" / profile)
    chapters = book_chapters(profile, str(data), runs, parameters)
    for chapter in chapters:  # every parameter is checked before anything runs
        check_parameters(NOTEBOOKS / chapter.notebook, chapter.parameters)
        _check_training_parameters(chapter)
    log(f"Building the {profile} book on {'the SYNTHETIC demo set' if is_synthetic(data) else 'HAM10000'} "
        f"at {data}")
    staging = build / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    manifest_path = build / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    source, data_print = _source_fingerprint(), _data_fingerprint(str(data))
    start = time.perf_counter()
    for chapter in chapters:
        key = chapter_key(chapter, source, data_print)
        done = BOOK_DIR / chapter.output
        if not force and manifest.get(chapter.output) == key and done.is_file():
            shutil.copy2(done, staging / chapter.output)
            log(f"  {chapter.output}: unchanged, not run again")
            continue
        execute_chapter(chapter, staging / chapter.output, log)
        manifest[chapter.output] = key
    # Every chapter ran: only now do the executed copies replace the book's.
    for chapter in chapters:
        shutil.copy2(staging / chapter.output, BOOK_DIR / chapter.output)
    html = render_html(build, chapters, warnings_are_errors, log)
    (build / "manifest.json").write_text(json.dumps(manifest, indent=1))
    log(f"Book built in {(time.perf_counter() - start) / 60:.1f} min: {html / 'index.html'}")
    return html
