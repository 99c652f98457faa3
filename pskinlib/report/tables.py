"""The book's tables: each function reads run records (:class:`~pskinlib.runs.RunRecord`) and returns a DataFrame
a chapter shows, or finds the run a chapter needs (training it when there is none yet).

Chapters call these so that a notebook holds questions, calls and figures, not record-reading code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ParameterError
from ..info import PAPER_REPORTED
from ..metrics import mcnemar_test, pairwise_accuracy
from ..runs import GPU_RUN_SUMMARY, QUALITY_BAR_SUMMARY, RunRecord, default_runs_dir, find_runs
from ..train.config import TrainConfig, make_config
from ..train.models import validate_model_name


def runs_table(runs_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per finished run under ``runs_dir``: what was trained and how it scored on the test split."""
    rows = []
    for run in find_runs(runs_dir):
        recorded, metrics = run.recorded, run.metrics
        c, test = recorded["config"], metrics["test"]
        boot = test.get("bootstrap", {}).get("balanced_accuracy", {})
        rows.append({
            "run": run.name, "path": str(run.path), "model": c["model"], "pretrained": c.get("pretrained", False),
            "image_size": c["image_size"],
            "epochs": c["epochs"], "class_weights": c["class_weights"], "sampler": c["sampler"],
            "loss": c["loss"], "protocol": c["protocol"], "profile": c["profile"],
            "synthetic": recorded["data"]["synthetic"], "device": recorded["environment"]["device_name"],
            "precision": recorded["environment"]["precision"],
            "val_balanced_accuracy": metrics["val"]["balanced_accuracy"],
            "best_epoch": metrics["best_epoch"], "train_minutes": run.history["seconds"].sum() / 60,
            "test_images": test["n"], "accuracy": test["accuracy"], "balanced_accuracy": test["balanced_accuracy"],
            "balanced_accuracy_low": boot.get("low"), "balanced_accuracy_high": boot.get("high"),
            "macro_auc": test["roc_auc_ovr"]["macro"],
            "macro_auc_low": (test.get("bootstrap", {}).get("macro_auc") or {}).get("low"),
            "macro_auc_high": (test.get("bootstrap", {}).get("macro_auc") or {}).get("high"),
            "split_seed": c.get("split_seed", 0), "notes": c.get("notes", ""),
            "macro_f1": test["macro"]["f1"], "nv_vs_bkl": _nv_vs_bkl(run),
            "hardest_class": min(test["per_class"], key=lambda code: test["per_class"][code]["recall"]),
            **{f"recall_{code}": v["recall"] for code, v in test["per_class"].items()},
            **{f"precision_{code}": v["precision"] for code, v in test["per_class"].items()},
        })
    return pd.DataFrame(rows)


def quality_bar_table(folder: str | os.PathLike) -> pd.DataFrame:
    """The CPU quality bars written by ``experiments/quality_bar.py`` (and the plain-loop yardstick of
    ``experiments/plain_loop.py``) under ``folder``, one subfolder per setting: one row per result (each member,
    the ensemble, the lesion-averaged decision, the fused ones); empty when there is none."""
    from ..io import read_json

    rows = []
    for path in sorted(Path(folder).glob(f"*/{QUALITY_BAR_SUMMARY}")):
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
    from ..io import read_json

    path = Path(folder)
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


def fusion_table(run_dirs, data_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """For each run: its test balanced accuracy from the images alone, with its head refitted on image features
    (the control), and with age, sex and body site fused in (:mod:`pskinlib.evaluate.fusion`), plain and
    lesion-averaged. Fits the heads that a run does not have yet (seconds to a minute per run on a CPU)."""
    from ..evaluate.fusion import ensure_fused

    rows = []
    for run in map(RunRecord.open, run_dirs):
        reports = {use: ensure_fused(run, data_dir=data_dir, use_metadata=use).metrics for use in (False, True)}
        fused = reports[True]
        boot = fused["test"]["bootstrap"]["balanced_accuracy"]
        rows.append({"run": run.name, "model": run.recorded["config"]["model"],
                     "images alone": fused["image_only_test_balanced_accuracy"],
                     "head refitted, images": reports[False]["test"]["balanced_accuracy"],
                     "+ metadata": fused["test"]["balanced_accuracy"], "+ metadata low": boot["low"],
                     "+ metadata high": boot["high"],
                     "+ metadata, lesion-averaged": fused["test_by_lesion"]["balanced_accuracy"],
                     **{f"recall_{code}": v["recall"] for code, v in fused["test"]["per_class"].items()}})
    return pd.DataFrame(rows)


def _test_labels(run: RunRecord) -> tuple:
    """A run's test labels and predictions as indices into its classes, its probabilities and image ids."""
    classes = list(run.classes)
    predictions = run.predictions("test")
    index = {c: i for i, c in enumerate(classes)}
    return (predictions["true"].map(index).to_numpy(), predictions["predicted"].map(index).to_numpy(),
            predictions[[f"p_{c}" for c in classes]].to_numpy(), predictions["image_id"])


def _nv_vs_bkl(run: RunRecord) -> float | None:
    """The paper's second figure: nevus vs seborrheic keratosis, from the run's test predictions."""
    classes = list(run.classes)
    if not {"nv", "bkl"} <= set(classes):
        return None
    y_true, _, probs, _ = _test_labels(run)
    return pairwise_accuracy(y_true, probs, classes.index("nv"), classes.index("bkl"))["accuracy"]


def latest_runs(table: pd.DataFrame) -> pd.DataFrame:
    """The newest run of each configuration (a rebuilt chapter adds a run; the old one stays on disk)."""
    keys = ["model", "pretrained", "image_size", "epochs", "class_weights", "sampler", "loss", "protocol",
            "synthetic", "split_seed", "notes"]
    return table.drop_duplicates(keys, keep="last") if len(table) else table


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
    y_true, pred_a, _, ids_a = _test_labels(a)
    _, pred_b, _, ids_b = _test_labels(b)
    if not ids_a.equals(ids_b):
        raise ParameterError(f"run_b: {b.path} was tested on other images than {a.path}; McNemar needs the same "
                             "ones.")
    return mcnemar_test(y_true, pred_a, pred_b)


def find_or_train(config: TrainConfig, runs_dir: str | os.PathLike) -> RunRecord:
    """The newest finished run under ``runs_dir`` trained with exactly ``config``, else a new one.

    Chapters share runs this way: the ablation's ``inverse`` chapter reuses the training chapter's runs.
    """
    from ..train.trainer import train

    wanted = json.loads(json.dumps(config.to_dict(), default=str))
    for run in reversed(find_runs(runs_dir)):
        if run.recorded["config"] == wanted:
            return run
    return RunRecord.open(train(config, runs_dir=runs_dir))


def run_to_inspect(run_dir: str | os.PathLike | None = None, *, runs_dir: str | os.PathLike | None = None,
                   model: str = "resnet18", data_dir: str | os.PathLike | None = None,
                   class_weights: str | None = None) -> RunRecord:
    """The run a chapter inspects: ``run_dir`` when given; else the newest finished run of ``model`` (and
    ``class_weights``, when given) under ``runs_dir`` (default ``$PSKIN_RUNS`` or ``runs``) trained on ``data_dir``
    (when given); else a new run of the ``smoke`` profile (seconds on a CPU), so that the chapter always has
    something to show."""
    if run_dir is not None:
        return RunRecord.open(run_dir, finished=True)
    validate_model_name(model)
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    for run in reversed(find_runs(runs_dir)):
        recorded = run.recorded
        root = recorded["data"].get("root")
        same_data = data_dir is None or (root is not None and Path(root).resolve() == Path(data_dir).resolve())
        same_weights = class_weights is None or recorded["config"]["class_weights"] == class_weights
        if recorded["config"]["model"] == model and same_data and same_weights:
            return run
    return find_or_train(make_config("smoke", data_dir=None if data_dir is None else str(data_dir), model=model,
                                     quiet=True), runs_dir)


def paper_comparison() -> pd.DataFrame:
    """The paper's reported figures, for the results table."""
    return pd.DataFrame([
        {"source": "paper (reported)", "what": "average accuracy over the three classes",
         "value": PAPER_REPORTED["average_accuracy"]},
        {"source": "paper (reported)", "what": "nevus vs seborrheic keratosis accuracy",
         "value": PAPER_REPORTED["nv_vs_bkl_accuracy"]},
    ])





def external_table(runs, evaluation: str = "external") -> pd.DataFrame:
    """One row per (run, group) of each run's external evaluation (``pskin evaluate RUN --external``): balanced
    accuracy with its interval, melanoma recall and AUC, the melanoma sensitivity and specificity at the
    HAM10000-validation threshold for 80 % sensitivity, and the calibration error before and after temperature
    scaling. Runs without that evaluation are left out."""
    rows = []
    for run in map(RunRecord, runs):
        result = run.evaluations().get(evaluation)
        if result is None:
            continue
        metrics = result.metrics
        for group, report in metrics["groups"].items():
            boot = report["bootstrap"]
            point = report.get("melanoma_operating_points", {}).get("80%", {})
            rows.append({
                "run": run.name, "path": str(run.path), "model": run.recorded["config"]["model"], "group": group,
                "images": report["n"],
                "pretrained": run.recorded["config"].get("pretrained", False),
                "class_weights": run.recorded["config"].get("class_weights"),
                "split_seed": run.recorded["config"].get("split_seed", 0),
                "extra_sources": ",".join(run.recorded["config"].get("extra_sources", ())),
                "balanced_accuracy": report["balanced_accuracy"],
                "balanced_accuracy_low": boot["balanced_accuracy"]["low"],
                "balanced_accuracy_high": boot["balanced_accuracy"]["high"],
                "recall_mel": report["per_class"]["mel"]["recall"] if "mel" in report["per_class"] else None,
                "auc_mel": report["roc_auc_ovr"]["per_class"].get("mel"), "macro_auc": report["roc_auc_ovr"]["macro"],
                "sensitivity_at_80": (point.get("sensitivity") or {}).get("estimate"),
                "specificity_at_80": (point.get("specificity") or {}).get("estimate"),
                "ece": report["calibration"]["ece"], "ece_calibrated": report["calibration"]["ece_calibrated"],
                **{f"recall_{code}": v["recall"] for code, v in report["per_class"].items()},
            })
    return pd.DataFrame(rows)


def methods_table(runs, evaluations: tuple[str, ...] = ("external", "external-dihedral"),
                  sets: tuple[str, ...] = ("HAM10000 test", "ISIC2017_val", "ISIC2017_test")) -> pd.DataFrame:
    """The methods against another collection's images, one row per (run, evaluation): the method (a run's notes
    up to their first colon, as ``experiments/external_methods.py`` writes them) and its description, the
    test-time views, the split seed, and for each set of ``sets``: balanced accuracy with its interval, melanoma
    recall and the melanoma sensitivity at the HAM10000-validation threshold for 80 %; the calibration error on the
    last set before and after temperature scaling."""
    rows = []
    for name in evaluations:
        table = external_table(runs, evaluation=name)
        if not len(table):
            continue
        for run, group in table.groupby("run", sort=False):
            record = RunRecord(group["path"].iloc[0])
            config = record.recorded["config"]
            method, _, described = config.get("notes", "").partition(":")
            by_set = group.set_index("group")
            row = {"run": run, "method": method.strip() or run, "description": described.strip(),
                   "evaluation": name, "views": record.evaluation(name).metrics["tta"] or "none",
                   "split_seed": config.get("split_seed", 0), "extra_sources": group["extra_sources"].iloc[0]}
            for part in sets:
                if part not in by_set.index:
                    continue
                values = by_set.loc[part]
                row.update({f"{part} balanced_accuracy": values["balanced_accuracy"],
                            f"{part} low": values["balanced_accuracy_low"],
                            f"{part} high": values["balanced_accuracy_high"],
                            f"{part} recall_mel": values["recall_mel"],
                            f"{part} sensitivity_at_80": values["sensitivity_at_80"]})
            last = sets[-1]
            if last in by_set.index:
                row.update({"ece": by_set.loc[last, "ece"], "ece_calibrated": by_set.loc[last, "ece_calibrated"]})
            rows.append(row)
    return pd.DataFrame(rows)


def time_to_accuracy(runs: dict[str, Any], plain_loops: dict[str, Any] | None = None,
                     thresholds: tuple[float, ...] = (0.70, 0.75)) -> pd.DataFrame:
    """The CPU minutes each run needed to first reach each validation balanced accuracy in ``thresholds``: for a
    run record, its summed training seconds up to that epoch (validation excluded); for a plain-loop yardstick
    (a folder with its ``quality_bar.json``), the wall time its summary recorded, decoding included. None where the
    run never got there."""
    from ..io import read_json

    rows = []
    curves = {label: (RunRecord.open(run).history, "training") for label, run in runs.items()}
    for label, folder in (plain_loops or {}).items():
        history = pd.DataFrame(read_json(Path(folder) / QUALITY_BAR_SUMMARY)["history"])
        curves[label] = (history, "wall")
    for label, (history, clock) in curves.items():
        minutes = (history["seconds"].cumsum() if clock == "training" else history["seconds"]) / 60
        row = {"run": label, "clock": clock, "epochs": len(history),
               "best validation balanced accuracy": float(history["val_balanced_accuracy"].max())}
        for threshold in thresholds:
            reached = history["val_balanced_accuracy"] >= threshold
            row[f"minutes to {threshold:.2f}"] = float(minutes[reached].iloc[0]) if reached.any() else None
        rows.append(row)
    return pd.DataFrame(rows)



__all__ = ["compare_runs", "external_table", "find_or_train", "fusion_table", "gpu_run_table", "latest_runs",
           "methods_table", "paper_comparison", "quality_bar_table", "recall_table", "run_to_inspect", "runs_table",
           "time_to_accuracy"]
