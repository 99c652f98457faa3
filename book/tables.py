"""The book's tables: each function reads run records (:class:`~pskinlib.runs.RunRecord`) and returns a DataFrame
a chapter shows, or finds the run a chapter reads. Nothing here trains, fits or evaluates: the build's runs stage
(:mod:`book.runs`) has made every run before a chapter asks for it.

Chapters call these so that a notebook holds questions, calls and figures, not record-reading code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from pskinlib.errors import ParameterError
from pskinlib.info import (
    CLASSES,
    ONE_ANSWER_BALANCED_ACCURACY,
    PAPER_PROCEDURES,
    PAPER_REPORTED,
    PUBLISHED_ANCHORS,
    TRACK_NAMES,
    TRACK_SHORT_NAMES,
)
from pskinlib.io import read_json
from pskinlib.metrics import mcnemar_test
from pskinlib.runs import (
    GPU_RUN_SUMMARY,
    PAPER_CPU_SUMMARY,
    QUALITY_BAR_SUMMARY,
    RunRecord,
    default_runs_dir,
    find_runs,
)
from pskinlib.train.models import validate_model_name

from . import BookBuildError, in_checkout
from .findings import comparison
from .format import interval, intervals, minutes
from .outside import best_outside, external_table, reference_runs
from .references import reference_folder, references
from .runs import ablation_configs, is_paper_weighted, latest_runs, need_run, runs_table, test_labels


def quality_bar_table(folder: str | os.PathLike) -> pd.DataFrame:
    """The CPU quality bars written by ``experiments/quality_bar.py`` (and the plain-loop yardstick of
    ``experiments/plain_loop.py``) under ``folder``, one subfolder per setting: one row per result (each member,
    the ensemble, the lesion-averaged decision, the fused ones); empty when there is none."""
    rows = []
    for path in sorted(in_checkout(folder).glob(f"*/{QUALITY_BAR_SUMMARY}")):
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


def gpu_run_table(folder: str | os.PathLike) -> pd.DataFrame:
    """The paper profile on a GPU, from ``experiments/gpu_paper_run.py``'s summary in ``folder``: one row per model
    (status, epochs, minutes against its budget and the 5-minute target, the trainer's and the raw step's images per
    second, the kernels of one step, test balanced accuracy alone and fused with the metadata); empty when there is
    no summary."""
    path = in_checkout(folder)
    path = path if path.name == GPU_RUN_SUMMARY else path / GPU_RUN_SUMMARY
    if not path.is_file():
        return pd.DataFrame()
    summary = read_json(path)
    gpu = (summary["machine"].get("gpu") or {}).get("name")
    rows = []
    for model in summary["models"]:
        probe, fusion = model.get("probe") or {}, model.get("fusion") or {}
        rows.append({
            "model": model["model"], "class_weights": model.get("class_weights"), "device": gpu or summary["device"],
            "gpu_result": summary["gpu_result"],
            "schedule": summary.get("schedule"), "status": model["status"], "epochs": model.get("epochs_run"),
            "epochs_planned": model.get("epochs_planned"), "size": model.get("size"),
            "minutes": model["seconds"] / 60 if "seconds" in model else None,
            "budget_minutes": model["budget_seconds"] / 60 if "budget_seconds" in model else None,
            "target_minutes": summary["target_seconds_per_model"] / 60, "under_target": model.get("under_target"),
            "images_per_second": model.get("images_per_second_median"),
            "raw_images_per_second": model.get("raw_images_per_second"), "trainer_vs_raw": model.get("trainer_vs_raw"),
            "kernels_per_step": probe.get("kernels_per_step"), "best_epoch": model.get("best_epoch"),
            "test_balanced_accuracy": model.get("test", {}).get("balanced_accuracy"),
            "+ metadata": fusion.get("test", {}).get("balanced_accuracy"),
        })
    return pd.DataFrame(rows)


def fusion_table(run_dirs) -> pd.DataFrame:
    """For each run: its test balanced accuracy from the images alone, with its head refitted on image features
    (the control), and with age, sex and body site fused in (:mod:`pskinlib.evaluate.fusion`), plain and
    lesion-averaged. Reads the heads the build's runs stage fitted; a run without them is an error saying so."""
    rows = []
    for run in map(RunRecord.open, run_dirs):
        reports = {}
        for use in (False, True):
            fusion = run.fusion(use)
            if not fusion.finished:
                raise BookBuildError(f"{run.path} has no {fusion.name}/ head: `python -m book` fits it in its runs "
                                     f"stage, or `pskin fuse {run.path}{'' if use else ' --image-only'}`.")
            reports[use] = fusion.metrics
        fused = reports[True]
        boot = fused["test"]["bootstrap"]["balanced_accuracy"]
        rows.append({"run": run.name, "model": run.config.model,
                     "images alone": fused["image_only_test_balanced_accuracy"],
                     "head refitted, images": reports[False]["test"]["balanced_accuracy"],
                     "+ metadata": fused["test"]["balanced_accuracy"], "+ metadata low": boot["low"],
                     "+ metadata high": boot["high"],
                     "+ metadata, lesion-averaged": fused["test_by_lesion"]["balanced_accuracy"],
                     **{f"recall_{code}": v["recall"] for code, v in fused["test"]["per_class"].items()}})
    return pd.DataFrame(rows)


def recall_table(runs: dict[str, Any]) -> pd.DataFrame:
    """Test recall per class with its bootstrap interval, one row per (run label, class), for per_class_bars."""
    rows = []
    for label, run in runs.items():
        test = RunRecord.open(run).metrics["test"]
        for code, values in test["per_class"].items():
            ci = test["bootstrap"]["recall"][code] or {}
            rows.append({"run": label, "class": code, "recall": values["recall"], "low": ci.get("low"),
                         "high": ci.get("high")})
    return pd.DataFrame(rows)


def compare_runs(run_a: str | os.PathLike, run_b: str | os.PathLike) -> dict:
    """McNemar's test between two runs on the same test images (class codes mapped through the runs' classes)."""
    a, b = RunRecord.open(run_a, finished=True), RunRecord.open(run_b, finished=True)
    if a.classes != b.classes:
        raise ParameterError(f"run_b: {b.path} was trained on other classes than {a.path}.")
    y_true, pred_a, _, ids_a = test_labels(a)
    _, pred_b, _, ids_b = test_labels(b)
    if not ids_a.equals(ids_b):
        raise ParameterError(f"run_b: {b.path} was tested on other images than {a.path}; McNemar needs the same ones.")
    return mcnemar_test(y_true, pred_a, pred_b)


def run_to_inspect(run_dir: str | os.PathLike | None = None, *, runs_dir: str | os.PathLike | None = None,
                   model: str = "resnet18", data_dir: str | os.PathLike | None = None,
                   class_weights: str | None = None) -> RunRecord:
    """The run a chapter inspects: ``run_dir`` when given; else the newest finished run of ``model`` (and
    ``class_weights``, when given) under ``runs_dir`` (default ``$PSKIN_RUNS`` or ``runs``) trained on ``data_dir``
    (when given). None found is an error that says how to make one."""
    if run_dir is not None:
        return RunRecord.open(in_checkout(run_dir), finished=True)
    validate_model_name(model)
    runs_dir = in_checkout(runs_dir if runs_dir is not None else default_runs_dir())
    for run in reversed(find_runs(runs_dir)):
        root = run.recorded["data"].get("root")
        same_data = data_dir is None or (root is not None and Path(root).resolve() == Path(data_dir).resolve())
        same_weights = class_weights is None or run.config.class_weights == class_weights
        if run.config.model == model and same_data and same_weights:
            return run
    weights = f" with {class_weights} class weights" if class_weights else ""
    raise BookBuildError(f"no finished run of {model}{weights} under {runs_dir}: train one (`pskin train --model "
                         f"{model} --runs-dir {runs_dir}`), build the book (`python -m book`), or pass run_dir.")


def run_settings(run) -> pd.DataFrame:
    """What a run was: network, track, size, epochs, batch, optimiser, class weights, how its epoch was kept, its
    precision and training minutes, as ``setting, value`` rows."""
    run = RunRecord.open(run, finished=True)
    config, history = run.config, run.history
    settings = {"network": config.model, "track": TRACK_NAMES[config.pretrained], "image size (px)": config.image_size,
                "epochs run": len(history), "batch": config.batch_size,
                "optimiser": f"{config.optimizer}, lr {config.lr:g}", "class weights": config.class_weights,
                "epoch kept by": f"validation {config.select_metric}",
                "precision": run.recorded["environment"]["precision"],
                "training minutes": history["seconds"].sum() / 60}
    return pd.DataFrame(list(settings.items()), columns=["setting", "value"])


def class_weights_table(runs) -> pd.DataFrame:
    """The loss's weight of each class (by name) that training computed: one row for a run, or one per labelled
    run of a dict ``{label: run}`` (then with a ``run`` column)."""
    labelled = runs if isinstance(runs, dict) else {None: runs}
    rows = [{**({"run": label} if label is not None else {}),
             **{CLASSES[c].name: v for c, v in RunRecord.open(run).recorded["class_weights"].items()}}
            for label, run in labelled.items()]
    return pd.DataFrame(rows)


def test_summary(run) -> pd.DataFrame:
    """A run's test accuracy, balanced accuracy and macro F1 with their intervals, and the majority baseline's
    accuracy and balanced accuracy, as ``metric, value`` rows."""
    metrics = RunRecord.open(run, finished=True).metrics
    test, boot, baseline = metrics["test"], metrics["test"]["bootstrap"], metrics["majority_baseline"]
    scores = (("accuracy", test["accuracy"], "accuracy"),
              ("balanced accuracy", test["balanced_accuracy"], "balanced_accuracy"),
              ("macro F1", test["macro"]["f1"], "macro_f1"))
    rows = [(name, interval(value, boot[key]["low"], boot[key]["high"])) for name, value, key in scores]
    rows += [(f"always the majority class: {key.replace('_', ' ')}", f"{baseline[key]:.3f}")
             for key in ("accuracy", "balanced_accuracy")]
    return pd.DataFrame(rows, columns=["metric", "value"])


def ablation_runs(scheme: str, *, runs_dir: str | os.PathLike, **configs) -> dict:
    """The class-weight ablation's runs, ``{(model, track, weights): RunRecord}``, for the configs of
    :func:`book.runs.ablation_configs` (``configs`` are its arguments), as the build's runs stage made them."""
    return {key: need_run(config, runs_dir) for key, config in ablation_configs(scheme, **configs).items()}


def ablation_scores(runs: dict) -> pd.DataFrame:
    """Test accuracy, balanced accuracy with its interval and macro F1 of each :func:`ablation_runs` run."""
    rows = []
    for (model, track, weights), run in runs.items():
        test = run.metrics["test"]
        ci = test["bootstrap"]["balanced_accuracy"]
        rows.append({"network": f"{model} ({track})", "weights": weights, "accuracy": test["accuracy"],
                     "balanced accuracy": interval(test["balanced_accuracy"], ci["low"], ci["high"]),
                     "macro F1": test["macro"]["f1"]})
    return pd.DataFrame(rows)


def ablation_tests(runs: dict, scheme: str) -> pd.DataFrame:
    """McNemar's test of each network's run without weights against its run with ``scheme``, with the change in
    test balanced accuracy and the verdict phrase."""
    rows = []
    for model, track in dict.fromkeys((m, t) for m, t, _ in runs):
        without, with_scheme = runs[(model, track, "none")], runs[(model, track, scheme)]
        result = compare_runs(without, with_scheme)
        rows.append({"network": f"{model} ({track})", "right only without weights": result["b"],
                     f"right only with {scheme}": result["c"], "p-value": f"{result['p_value']:.3g}",
                     "test": result["method"],
                     "gain": with_scheme.metrics["test"]["balanced_accuracy"]
                     - without.metrics["test"]["balanced_accuracy"],
                     "verdict": comparison(result, "without weights", f"with {scheme} weights")["verdict"].data})
    return pd.DataFrame(rows)


def reported_figures() -> pd.DataFrame:
    """The paper's reported figures, the majority baseline and the published anchors, for the results chapter."""
    return pd.DataFrame([
        {"source": "paper (reported)", "figure": "average accuracy over the three classes",
         "value": PAPER_REPORTED["average_accuracy"]},
        {"source": "paper (reported)", "figure": "nevus vs seborrheic keratosis accuracy",
         "value": PAPER_REPORTED["nv_vs_bkl_accuracy"]},
        {"source": "always 'nevus'", "figure": "balanced accuracy on three classes",
         "value": ONE_ANSWER_BALANCED_ACCURACY},
        *[{"source": a["source"], "figure": a["what"], "value": a["value"]} for a in PUBLISHED_ANCHORS]])


def labelled_runs(table: pd.DataFrame, origin: str) -> pd.DataFrame:
    """The newest run of each configuration in ``table``, with its ``origin`` and a ``label``: origin, model,
    track and class weights, and the split seed where the same recipe ran on several."""
    table = latest_runs(table)
    if not len(table):
        return table
    track = table["pretrained"].map(TRACK_SHORT_NAMES)
    label = origin + ": " + table["model"] + " (" + track + "), " + table["class_weights"]
    label = label.mask(label.duplicated(keep=False), label + ", split " + table["split_seed"].astype(str))
    return table.assign(origin=origin, label=label)


def book_runs(runs_dir: str | os.PathLike, reference_dir: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """:func:`labelled_runs` of this build (``"this build"``, first) and of each reference experiment whose runs
    stand in the table of every run (``every_run`` in ``book/results/references.yaml``), as ``"reference
    <folder>"``; the external ones are the external chapter's."""
    sets = {"this build": labelled_runs(runs_table(runs_dir), "this build")}
    for name, reference in references(reference_dir).items():
        if reference.every_run:
            origin = f"reference {reference.folder.name}"
            sets[origin] = labelled_runs(runs_table(reference_folder(name, reference_dir)), origin)
    return sets


def _ci(table: pd.DataFrame, metric: str = "balanced_accuracy") -> list[str]:
    """:func:`~book.format.intervals` of a metric of :func:`runs_table` and its ``_low``, ``_high``."""
    return intervals(table, metric, f"{metric}_low", f"{metric}_high")


def runs_view(table: pd.DataFrame) -> pd.DataFrame:
    """Every run as the results chapter lists it: size and epochs, minutes, test balanced accuracy with its
    interval, each class's test recall."""
    return pd.DataFrame({
        "run": table["label"], "px x epochs": table["image_size"].astype(str) + " x " + table["epochs"].astype(str),
        "minutes": minutes(table["train_minutes"]), "balanced accuracy (95 % CI)": _ci(table),
        "melanoma": table["recall_mel"], "nevus": table["recall_nv"], "keratosis": table["recall_bkl"]})


def paper_procedures(built: pd.DataFrame) -> dict[str, RunRecord]:
    """This build's runs of the paper's two procedures (no class weights, inverse weights), by label without the
    origin: the runs of its Figures 3 and 4."""
    pairs = built[built["class_weights"].isin(["none", "inverse"])] if len(built) else built
    return {row.label.removeprefix("this build: "): RunRecord(row.path) for row in pairs.itertuples()}


def _best(table: pd.DataFrame, rows):
    """The row of ``rows`` best on validation (balanced accuracy): the book never chooses a run by its test score."""
    part = table[rows]
    return part.loc[part["val_balanced_accuracy"].idxmax()] if len(part) else None


def track_comparisons(sets: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """For each set of runs holding both tracks: its best run from scratch against its best pretrained run, each
    chosen on validation balanced accuracy, with McNemar's test on their test images; sets tested on other images are
    left out."""
    rows = []
    for origin, table in sets.items():
        if not len(table):
            continue
        scratch, pretrained = _best(table, table["pretrained"].eq(False)), _best(table, table["pretrained"].eq(True))
        if scratch is None or pretrained is None:
            continue
        try:
            test = compare_runs(scratch["path"], pretrained["path"])
        except ValueError:  # other test images or classes: no paired test
            continue
        rows.append({"origin": origin, **{f"{track} {key}": row[key] for track, row in (("scratch", scratch),
                     ("pretrained", pretrained)) for key in ("model", "balanced_accuracy", "recall_mel",
                                                             "train_minutes")},
                     "p_value": test["p_value"],
                     "verdict": comparison(test, "the run from scratch", "the pretrained run")["verdict"].data})
    return pd.DataFrame(rows)


def track_comparisons_view(comparisons: pd.DataFrame) -> pd.DataFrame:
    """:func:`track_comparisons` as the results chapter shows it."""
    def pair(key: str, digits: int) -> list[str]:
        return [f"{a:.{digits}f} → {b:.{digits}f}" for a, b in zip(comparisons[f"scratch {key}"],
                                                                   comparisons[f"pretrained {key}"])]

    return pd.DataFrame({
        "runs": comparisons["origin"],
        **{name: [f"{m}, {v:.3f}" for m, v in zip(comparisons[f"{track} model"],
                                                  comparisons[f"{track} balanced_accuracy"])]
           for name, track in (("from scratch", "scratch"), ("pretrained", "pretrained"))},
        "melanoma recall": pair("recall_mel", 3), "minutes": pair("train_minutes", 1),
        "p-value": [f"{p:.3g}" for p in comparisons["p_value"]]})


def quality_bar_view(quality_bar: pd.DataFrame) -> pd.DataFrame:
    """The headline result of each quality-bar setting: minutes, balanced accuracy with its interval, recalls."""
    headline = quality_bar[quality_bar["headline"]]
    return pd.DataFrame({"setting": headline["setting"], "minutes": minutes(headline["wall_minutes"]),
                         "balanced accuracy (95 % CI)": _ci(headline), "melanoma": headline["recall_mel"],
                         "nevus": headline["recall_nv"], "keratosis": headline["recall_bkl"]})


def split_seed_runs(folder: str | os.PathLike, summary: str = "transfer.json") -> tuple[pd.DataFrame, dict]:
    """The runs of one recipe on several split seeds (``experiments/transfer.py``'s folder) and each run's wall
    minutes from the folder's summary (empty without one)."""
    path = in_checkout(folder) / summary
    walls = {r["run"]: r["wall_minutes"] for r in read_json(path)["runs"]} if path.is_file() else {}
    return runs_table(folder), walls


def split_seeds_view(table: pd.DataFrame, walls: dict) -> pd.DataFrame:
    """:func:`split_seed_runs` as the results chapter shows it: a row per split seed."""
    return pd.DataFrame({
        "split seed": table["split_seed"], "best epoch": table["best_epoch"],
        "wall minutes": minutes(walls.get(r) for r in table["run"]),
        "balanced accuracy (95 % CI)": _ci(table), "macro AUC (95 % CI)": _ci(table, "macro_auc"),
        "melanoma": table["recall_mel"], "nevus": table["recall_nv"], "keratosis": table["recall_bkl"]})


def paper_weighted(built: pd.DataFrame) -> pd.DataFrame:
    """This build's runs of the paper's weighted procedure: inverse class weights, plain shuffling, cross-entropy."""
    if not len(built):
        return built
    return built[[is_paper_weighted(row) for row in built.to_dict("records")]]


def headline(runs_dir: str | os.PathLike, reference_dir: str | os.PathLike) -> pd.DataFrame:
    """The front page's rows (``what, value, low, high, detail, chapter``): the paper's reported accuracy, the
    majority baseline, the published anchors, and this book's best real-data runs of each track and outside
    HAM10000. Every best run is chosen on validation (HAM10000's, or ISIC2017_val) and reported on test."""
    references = in_checkout(reference_dir)
    folders = sorted({p.parent.parent for p in references.rglob("*/metrics.json")} - {references})
    tables = [t for t in [runs_table(runs_dir), *map(runs_table, folders)] if len(t)]
    runs = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    real = runs[~runs["synthetic"].astype(bool)] if len(runs) else runs
    rows = [{"what": "the paper: average accuracy (reported)", "value": PAPER_REPORTED["average_accuracy"],
             "detail": "ResNet101 / EfficientNet, Table 1 split", "chapter": "04_results"},
            {"what": "always answering 'nevus'", "value": ONE_ANSWER_BALANCED_ACCURACY,
             "detail": "balanced accuracy of the majority class", "chapter": "01_data_exploration"},
            *[{"what": "published anchor", "value": a["value"], "detail": a["what"], "chapter": "04_results"}
              for a in PUBLISHED_ANCHORS]]
    for pretrained, what in TRACK_NAMES.items():
        best = _best(real, real["pretrained"] == pretrained) if len(real) else None
        if best is not None:
            rows.append({"what": f"this book, {what} (HAM10000 test)", "value": best["balanced_accuracy"],
                         "low": best["balanced_accuracy_low"], "high": best["balanced_accuracy_high"],
                         "detail": f"{best['model']}, {best['image_size']} px, {best['class_weights']} weights",
                         "chapter": "04_results"})
    outside = best_outside(external_table(reference_runs(reference_dir)))
    if outside is not None:
        rows.append({"what": "this book on ISIC 2017's test set (another collection)",
                     "value": outside["balanced_accuracy"], "low": outside["balanced_accuracy_low"],
                     "high": outside["balanced_accuracy_high"],
                     "detail": f"{outside['model']}, trained on HAM10000 only", "chapter": "05_external"})
    return pd.DataFrame(rows).reindex(columns=["what", "value", "low", "high", "detail", "chapter"])


def headline_view(rows: pd.DataFrame) -> pd.DataFrame:
    """:func:`headline` as the front page shows it, each row linked to its chapter."""
    return pd.DataFrame({
        "": rows["what"], "balanced accuracy (95 % CI)": intervals(rows, "value", "low", "high"),
        "what it is": rows["detail"],
        "chapter": [f'<a href="{c}.html">{c.split("_", 1)[1].replace("_", " ")}</a>' for c in rows["chapter"]]})


def reference_tracks(reference_dir: str | os.PathLike) -> tuple[dict[str, RunRecord], dict[str, Path]]:
    """The reference records the Performance appendix times, by label: the from-scratch and the pretrained
    track's first runs, and the plain-loop yardstick's folder (:func:`~book.references.reference_folder`)."""
    tracks = {}
    for name, label in (("quality_bar_resnet18", "ResNet18 from scratch, 64 px"),
                        ("transfer", "EfficientNet-Lite0, ImageNet-pretrained")):
        found = find_runs(reference_folder(name, reference_dir))
        if found:
            tracks[label] = found[0]
    return tracks, {"the plain loop, 64 px": reference_folder("plain_loop", reference_dir)}


def precision_check(reference_dir: str | os.PathLike) -> pd.DataFrame:
    """The same quality-bar recipe in bf16 and in fp32 (the full-length precision check), as :func:`runs_table`
    rows, bf16 first; fewer than two rows when the check is not in the checkout."""
    return pd.concat([runs_table(reference_folder("quality_bar_bf16", reference_dir)),
                      runs_table(reference_folder("precision_check", reference_dir))], ignore_index=True)


def precision_view(pair: pd.DataFrame) -> pd.DataFrame:
    """:func:`precision_check` as the appendix shows it."""
    return pd.DataFrame({"precision": pair["precision"], "best epoch": pair["best_epoch"],
                         "minutes": pair["train_minutes"], "validation": pair["val_balanced_accuracy"],
                         "test balanced accuracy (95 % CI)": _ci(pair)})


def time_to_accuracy(runs: dict[str, Any], plain_loops: dict[str, Any] | None = None,
                     thresholds: tuple[float, ...] = (0.70, 0.75)) -> pd.DataFrame:
    """The CPU minutes each run needed to first reach each validation balanced accuracy in ``thresholds``: for a
    run record, its summed training seconds up to that epoch (validation excluded); for a plain-loop yardstick
    (a folder with its ``quality_bar.json``), the wall time its summary recorded, decoding included. None where the
    run never got there."""
    rows = []
    curves = {label: (RunRecord.open(run).history, "training") for label, run in runs.items()}
    for label, folder in (plain_loops or {}).items():
        curves[label] = (pd.DataFrame(read_json(in_checkout(folder) / QUALITY_BAR_SUMMARY)["history"]), "wall")
    for label, (history, clock) in curves.items():
        minutes = (history["seconds"].cumsum() if clock == "training" else history["seconds"]) / 60
        row = {"run": label, "clock": clock, "epochs": len(history),
               "best validation balanced accuracy": float(history["val_balanced_accuracy"].max())}
        for threshold in thresholds:
            reached = history["val_balanced_accuracy"] >= threshold
            row[f"minutes to {threshold:.2f}"] = float(minutes[reached].iloc[0]) if reached.any() else None
        rows.append(row)
    return pd.DataFrame(rows)


# The study's experiment on a CPU (experiments/paper_cpu.py): ResNet101 and EfficientNet-B0, each without and with
# inverse class weights, 100 epochs on Table 1's split; EfficientNet-B0 again on more split seeds.
PROCEDURE_NAMES = dict(zip(PAPER_PROCEDURES, ("no class weights", "inverse class weights")))


def study_runs(folder: str | os.PathLike) -> pd.DataFrame:
    """The runs its manifest (``paper_cpu.json``) lists in ``folder``, as :func:`runs_table` rows with the manifest's
    ``slot``, ``wall_minutes`` (start to record, over every sitting) and the CPU it trained on; empty when the
    folder has no manifest. A run the manifest lists but the folder lacks is an error naming it: the book finds
    these records by what they are, never by a folder name, and never leaves one out without a word."""
    path = in_checkout(folder)
    manifest = path / PAPER_CPU_SUMMARY
    if not manifest.is_file():
        return pd.DataFrame()
    listed = pd.DataFrame(read_json(manifest)["runs"])
    table = runs_table(path)
    missing = sorted(set(listed["run"]) - set(table.get("run", [])))
    if missing:
        raise BookBuildError(f"{manifest} lists {', '.join(missing)}, which {path} does not hold as a finished run: "
                             "restore the record, or export it again with `python -m experiments.paper_cpu "
                             "--export-only`.")
    listed["cpu"] = [machine["cpu_model"] for machine in listed["machine"]]
    table = table.merge(listed[["run", "slot", "wall_minutes", "cpu"]], on="run")
    label = table["model"] + ", " + table["class_weights"].map(PROCEDURE_NAMES)
    seeds = ", split " + table["split_seed"].astype(str)
    return table.assign(label=label.where(table["split_seed"].eq(0), label + seeds))


def study_view(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`study_runs` as the results chapter lists them: epochs, the epoch kept, wall minutes, accuracy and
    balanced accuracy with its interval, the nevus-vs-keratosis figure and each class's test recall."""
    return pd.DataFrame({
        "run": table["label"], "epochs": table["epochs"], "epoch kept": table["best_epoch"],
        "wall minutes": minutes(table["wall_minutes"]), "accuracy": table["accuracy"],
        "balanced accuracy (95 % CI)": _ci(table), "nevus vs keratosis": table["nv_vs_bkl"],
        "melanoma": table["recall_mel"], "nevus": table["recall_nv"], "keratosis": table["recall_bkl"]})


def study_pairs(table: pd.DataFrame, split_seed: int = 0) -> dict[str, dict[str, RunRecord]]:
    """For each network of :func:`study_runs` on ``split_seed``: its runs by procedure name (no class weights,
    inverse class weights), the runs of the study's Figures 3 and 4."""
    pairs: dict[str, dict[str, RunRecord]] = {}
    if not len(table):
        return pairs
    for row in table[table["split_seed"].eq(split_seed)].itertuples():
        pairs.setdefault(row.model, {})[PROCEDURE_NAMES[row.class_weights]] = RunRecord(row.path)
    return pairs


def study_recalls(pairs: dict[str, dict[str, RunRecord]]) -> pd.DataFrame:
    """:func:`recall_table` of every network's runs in :func:`study_pairs`, with a ``network`` column."""
    parts = [recall_table(runs).assign(network=model) for model, runs in pairs.items()]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def procedure_tests(table: pd.DataFrame) -> pd.DataFrame:
    """For each network and split seed of :func:`study_runs` with both procedures: each one's test accuracy, balanced
    accuracy and melanoma recall, and McNemar's test on the test images only one of the two got right."""
    rows = []
    for (model, seed), part in table.groupby(["model", "split_seed"], sort=False) if len(table) else ():
        runs = part.set_index("class_weights")
        if not set(PAPER_PROCEDURES) <= set(runs.index):
            continue
        none, inverse = runs.loc["none"], runs.loc["inverse"]
        test = compare_runs(none["path"], inverse["path"])
        rows.append({"network": model, "split_seed": seed,
                     **{f"{key} {name}": run[key] for name, run in (("none", none), ("inverse", inverse))
                        for key in ("accuracy", "balanced_accuracy", "recall_mel")},
                     "only none": test["b"], "only inverse": test["c"], "p_value": test["p_value"],
                     "verdict": comparison(test, "the run without weights", "the run with them")["verdict"].data})
    return pd.DataFrame(rows)


def procedure_tests_view(tests: pd.DataFrame) -> pd.DataFrame:
    """:func:`procedure_tests` as the results chapter shows it: each figure without → with class weights."""
    def pair(key: str) -> list[str]:
        return [f"{a:.3f} → {b:.3f}" for a, b in zip(tests[f"{key} none"], tests[f"{key} inverse"])]

    return pd.DataFrame({"network": tests["network"], "split seed": tests["split_seed"],
                         "accuracy": pair("accuracy"), "balanced accuracy": pair("balanced_accuracy"),
                         "melanoma recall": pair("recall_mel"), "right only without": tests["only none"],
                         "right only with": tests["only inverse"],
                         "p-value": [f"{p:.3g}" for p in tests["p_value"]]})
