"""The runs a book build needs: planned from its chapters' parameters, produced in one stage before any chapter
runs, then read by the chapters, which never train, fit or evaluate anything themselves.

The stage (:func:`produce`) trains each planned run that ``runs_dir`` does not hold yet, refits the head of the runs
with the paper's inverse class weights on image features with and without the patient's metadata
(:mod:`pskinlib.evaluate.fusion`), and evaluates every run on the other collections' labelled folders when there are
some (:mod:`pskinlib.evaluate.external_validation`); it says what it did, one line per run. A chapter asks for its
runs with :func:`need_run`, which names the command that makes a run it cannot find.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pandas as pd

from pskinlib.data.labelled_folders import ISIC2017_ENV
from pskinlib.evaluate.external_validation import evaluate_external
from pskinlib.evaluate.fusion import ensure_fused
from pskinlib.info import TRACK_NAMES
from pskinlib.metrics import pairwise_accuracy
from pskinlib.runs import RunRecord, find_runs, scores_of
from pskinlib.train.config import TrainConfig, make_config
from pskinlib.train.trainer import train

from . import BookBuildError, in_checkout
from .build_times import took

EXTERNAL_EVALUATION = "external"  # a run's evaluation on the other collections (RunRecord.evaluation)
EXTERNAL_RESAMPLES = 500  # bootstrap resamples of each external group: the build's intervals, not a paper's
# The paper's weighted procedure, whose runs the results chapter fuses with the patient's metadata.
PAPER_WEIGHTED = {"class_weights": "inverse", "sampler": "shuffle", "loss": "cross_entropy"}


# ---------------------------------------------------------------------------------------------------------------
# What a chapter trains


def training_config(*, profile: str, model: str, class_weights: str, data_dir: str | os.PathLike | None = None,
                    train_overrides: dict | None = None) -> TrainConfig:
    """The config of a training chapter's run: a training profile (``pskinlib/configs``) with the chapter's network
    and class weights, and any other ``TrainConfig`` parameter in ``train_overrides``."""
    return make_config(profile, data_dir=None if data_dir is None else str(data_dir), model=model,
                       class_weights=class_weights, quiet=True, **(train_overrides or {}))


def ablation_configs(scheme: str, *, data_dir: str | os.PathLike | None = None, models=(), profile: str,
                     train_overrides: dict | None = None, pretrained_models=(), pretrained_profile: str,
                     pretrained_overrides: dict | None = None) -> dict[tuple[str, str, str], TrainConfig]:
    """The class-weight ablation's configs, ``{(model, track, weights): config}``: each network of ``models`` (from
    scratch, ``profile``) and of ``pretrained_models`` (``pretrained_profile``), without weights and with
    ``scheme``."""
    tracks = [(m, False, profile, train_overrides) for m in models]
    tracks += [(m, True, pretrained_profile, pretrained_overrides) for m in pretrained_models]
    return {(model, TRACK_NAMES[pretrained], weights): training_config(
                profile=track_profile, model=model, class_weights=weights, data_dir=data_dir,
                train_overrides=overrides)
            for model, pretrained, track_profile, overrides in tracks for weights in dict.fromkeys(["none", scheme])}


_TRAINING = ("profile", "model", "class_weights", "data_dir", "train_overrides")
_ABLATION = ("scheme", "data_dir", "models", "profile", "train_overrides", "pretrained_models", "pretrained_profile",
             "pretrained_overrides")


def chapter_configs(parameters: dict) -> list[TrainConfig]:
    """The runs a chapter with these parameters reads: a training chapter's one, an ablation chapter's pairs; none
    for the others."""
    if "scheme" in parameters:
        values = {k: parameters[k] for k in _ABLATION if k in parameters}
        return list(ablation_configs(values.pop("scheme"), **values).values())
    if {"profile", "model", "class_weights"} <= set(parameters):
        return [training_config(**{k: parameters[k] for k in _TRAINING if k in parameters})]
    return []


def describe(config: TrainConfig) -> str:
    """A run as the build's log and errors name it: network, track, size, epochs and class weights."""
    weights = "no class weights" if config.class_weights == "none" else f"{config.class_weights} class weights"
    size = f"{config.image_size} px x {config.epochs} epochs"
    return f"{config.model} ({TRACK_NAMES[config.pretrained]}), {size}, {weights}"


# ---------------------------------------------------------------------------------------------------------------
# Finding runs


def _values(config: TrainConfig) -> TrainConfig:
    """A config as the values it trained with: the profile only named where they came from."""
    return dataclasses.replace(config, profile="")


def find_run(config: TrainConfig, runs_dir: str | os.PathLike) -> RunRecord | None:
    """The newest finished run under ``runs_dir`` trained with exactly ``config``'s values, or None."""
    for run in reversed(find_runs(in_checkout(runs_dir))):
        if _values(run.config) == _values(config):
            return run
    return None


def train_command(config: TrainConfig, runs_dir: str | os.PathLike) -> str:
    """The ``pskin train`` command line that trains ``config``: its profile and the values it changes."""
    base = make_config(config.profile).to_dict()
    flags = [f"--profile {config.profile}"]
    for name, value in config.to_dict().items():
        if name in ("profile", "data_dir", "quiet") or value == base[name]:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{flag[2:]}")
        else:
            flags.append(f"{flag} {','.join(map(str, value)) if isinstance(value, tuple) else value}")
    if config.data_dir:
        flags.append(f"--data-dir {config.data_dir}")
    return f"pskin train {' '.join(flags)} --runs-dir {runs_dir}"


def need_run(config: TrainConfig, runs_dir: str | os.PathLike) -> RunRecord:
    """:func:`find_run`, or a :class:`BookBuildError` that names the run and how to make it."""
    run = find_run(config, runs_dir)
    if run is None:
        raise BookBuildError(f"no run of {describe(config)} under {runs_dir}: `python -m book` trains the runs of "
                             "its chapters before running them; train this one alone with "
                             f"`{train_command(config, runs_dir)}`.")
    return run


def test_labels(run: RunRecord) -> tuple:
    """A run's test labels and predictions as indices into its classes, its probabilities and image ids."""
    predictions = run.predictions("test")
    y_true, probs = scores_of(predictions, run.classes)
    predicted = predictions["predicted"].map({c: i for i, c in enumerate(run.classes)}).to_numpy()
    return y_true, predicted, probs, predictions["image_id"]


def _nv_vs_bkl(run: RunRecord) -> float | None:
    """The paper's second figure: nevus vs seborrheic keratosis, from the run's test predictions."""
    classes = list(run.classes)
    if not {"nv", "bkl"} <= set(classes):
        return None
    y_true, _, probs, _ = test_labels(run)
    return pairwise_accuracy(y_true, probs, classes.index("nv"), classes.index("bkl"))["accuracy"]


def runs_table(runs_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per finished run under ``runs_dir``: what was trained and how it scored on the test split."""
    rows = []
    for run in find_runs(in_checkout(runs_dir)):
        recorded, metrics, c = run.recorded, run.metrics, run.config
        test = metrics["test"]
        boot = test.get("bootstrap", {})
        ci, auc_ci = boot.get("balanced_accuracy", {}), boot.get("macro_auc") or {}
        rows.append({
            "run": run.name, "path": str(run.path), "model": c.model, "pretrained": c.pretrained,
            **{key: getattr(c, key) for key in ("image_size", "epochs", "class_weights", "sampler", "loss",
                                                "protocol", "profile")},
            "synthetic": recorded["data"]["synthetic"], "device": recorded["environment"]["device_name"],
            "precision": recorded["environment"]["precision"],
            "val_balanced_accuracy": metrics["val"]["balanced_accuracy"],
            "best_epoch": metrics["best_epoch"], "train_minutes": run.history["seconds"].sum() / 60,
            "test_images": test["n"], "accuracy": test["accuracy"], "balanced_accuracy": test["balanced_accuracy"],
            "balanced_accuracy_low": ci.get("low"), "balanced_accuracy_high": ci.get("high"),
            "macro_auc": test["roc_auc_ovr"]["macro"], "macro_auc_low": auc_ci.get("low"),
            "macro_auc_high": auc_ci.get("high"),
            "split_seed": c.split_seed, "notes": c.notes,
            "macro_f1": test["macro"]["f1"], "nv_vs_bkl": _nv_vs_bkl(run),
            "hardest_class": min((code for code, v in test["per_class"].items() if v["recall"] is not None),
                                 key=lambda code: test["per_class"][code]["recall"]),
            **{f"recall_{code}": v["recall"] for code, v in test["per_class"].items()},
            **{f"precision_{code}": v["precision"] for code, v in test["per_class"].items()},
        })
    return pd.DataFrame(rows)


def latest_runs(table: pd.DataFrame) -> pd.DataFrame:
    """The newest run of each configuration (a rebuilt chapter adds a run; the old one stays on disk)."""
    keys = ["model", "pretrained", "image_size", "epochs", "class_weights", "sampler", "loss", "protocol",
            "synthetic", "split_seed", "notes"]
    return table.drop_duplicates(keys, keep="last") if len(table) else table


def is_paper_weighted(config: dict) -> bool:
    """Whether a (recorded) config is the paper's weighted procedure (:data:`PAPER_WEIGHTED`)."""
    return all(config.get(key) == value for key, value in PAPER_WEIGHTED.items())


def evaluated_runs(runs_dir: str | os.PathLike) -> list[RunRecord]:
    """The newest run of each configuration under ``runs_dir`` that has an evaluation on other collections."""
    latest = latest_runs(runs_table(runs_dir))
    runs = [RunRecord(path) for path in latest.get("path", [])]
    return [run for run in runs if EXTERNAL_EVALUATION in run.evaluations()]


def external_folders(external_dirs=()) -> list[Path]:
    """The labelled folders a build evaluates on: ``external_dirs``, else ``$PSKIN_ISIC2017`` when it is set."""
    if external_dirs:
        return [in_checkout(f) for f in external_dirs]
    return [Path(os.environ[ISIC2017_ENV])] if os.environ.get(ISIC2017_ENV) else []


# ---------------------------------------------------------------------------------------------------------------
# The stage that makes them


def _epoch_progress(config: TrainConfig, log, started: float):
    """An ``on_epoch_end`` that logs each epoch of a build's run: its validation score, its speed and an estimate
    of the training time left (the mean epoch so far, times the epochs to go)."""
    def on_epoch_end(row: dict) -> bool:
        epoch, elapsed = row["epoch"], time.perf_counter() - started
        left = elapsed / epoch * (config.epochs - epoch) / 60
        log(f"    epoch {epoch}/{config.epochs}: validation balanced accuracy {row['val_balanced_accuracy']:.3f}, "
            f"{row['images_per_second']:.0f} images/s, about {left:.1f} min left")
        return False
    return on_epoch_end


def produce(configs: list[TrainConfig], runs_dir: str | os.PathLike, *, data_dir: str | os.PathLike,
            external_dirs=(), log=print, steps: list[dict] | None = None) -> list[RunRecord]:
    """Make every run of ``configs`` that ``runs_dir`` lacks, fuse the paper-weighted ones, and evaluate them all on
    the external folders (:func:`external_folders`); each step is skipped where its result is already recorded.
    Logs each step as it starts (a line per epoch while a run trains) and one line per run when it is done, so a
    build is never silent for long; appends each step and its seconds to ``steps`` when it is a list
    (:mod:`book.build_times`); returns the runs in the order of ``configs``."""
    runs, seen = [], set()
    folders = external_folders(external_dirs)
    for config in configs:
        key = _values(config)
        if key in seen:
            continue
        seen.add(key)
        start, done, what = time.perf_counter(), [], describe(config)
        run = find_run(config, runs_dir)
        if run is None:
            log(f"  run {what}: training")
            run = RunRecord.open(train(config, runs_dir=in_checkout(runs_dir),
                                       on_epoch_end=_epoch_progress(config, log, time.perf_counter())))
            took(steps, "runs", "training", what, start)
            done.append("trained")
        if is_paper_weighted(config.to_dict()):
            for use_metadata in (False, True):
                if not run.fusion(use_metadata).finished:
                    log(f"    {'fusing age, sex and body site' if use_metadata else 'refitting the head'}")
                    began = time.perf_counter()
                    ensure_fused(run, data_dir=data_dir, use_metadata=use_metadata)
                    took(steps, "runs", "metadata fusion" if use_metadata else "head refit", what, began)
                    done.append("fused" if use_metadata else "refitted")
        if folders and EXTERNAL_EVALUATION not in run.evaluations():
            log(f"    evaluating on {', '.join(f.name for f in folders)}")
            began = time.perf_counter()
            evaluate_external(run, folders, name=EXTERNAL_EVALUATION, n_boot=EXTERNAL_RESAMPLES)
            took(steps, "runs", "external evaluation", what, began)
            done.append("evaluated outside")
        if not done:
            took(steps, "runs", "reused", what, start)
        log(f"  run {what}: {', '.join(done) if done else 'reused'} ({time.perf_counter() - start:.0f} s)")
        runs.append(run)
    return runs
