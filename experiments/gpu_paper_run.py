"""The paper profile on one GPU: ResNet101 and EfficientNet-B0 at 224 px, 100 epochs, Table 1's split, each trained
as the paper does twice, without and with class weights.

A GPU machine is lent rarely and briefly, and only what a command leaves under ``$OUT`` comes back (at most 8 files,
two folders deep). So this script is built to succeed the first time it meets a device:

* **One command** (``bash experiments/gpu_run.sh``, with the pack carried; README.md gives the device call) runs
  everything under a ``timeout`` inside the device's 10-minute limit and writes two files: ``$OUT/gpu_paper_run.log``
  and ``$OUT/gpu_paper_run.tar.gz``, which holds every record and the summary. The archive is rewritten whole and
  renamed into place after every result and every ``--snapshot-seconds``, so a kill at any moment leaves a readable
  archive with what had finished (and the epochs of what had not).
* **The data travels as a pack** (``make gpu-pack``: ``.gpu/ham10000-paper.npz``, the JPEG bytes, the metadata and
  the paper split itself), so nothing on the device re-derives the split with other numpy or pandas versions.
* **Each run (a model with one weight scheme) has its own process**, which is its failure scope: a NaN, an
  out-of-memory or a crash in one is recorded in the summary and the others still run. On a GPU the processes run
  **concurrently** on the one device (the choice recorded in the summary): at the paper's batch of 32 an eager
  training step of these networks is bound by the host launching kernels, not by the GPU, and several processes
  launch in parallel. This keeps the paper's
  protocol (no larger batch, no change to the learning rate) and costs no risky machinery (CUDA graphs would have to
  capture the augmentation's random draws). On a CPU they run one after the other.
* **A budget per model**: each training gets ``max_minutes`` (concurrent: the whole window; in turn: an equal share of
  what is left), so it stops after the last epoch that fits and still evaluates its best epoch: every model has test
  metrics for the epochs it did. Training keeps the best weights on the device and writes them once
  (``checkpoints="best_in_memory"``); the step never waits for the GPU (scores are counted on the device).
* Before training, each model's raw training step is timed on a batch already on the device (the machine's limit;
  the summary gives the trainer's speed against it); after it, the head is refitted with the patient's age, sex and
  body site (:func:`pskinlib.evaluate.fusion.fuse_run`) when time is left.

Back here, ``python -m experiments.gpu_paper_run unpack ARCHIVE`` puts the records into ``book/results/gpu/``.

    bash experiments/gpu_run.sh                                   # on the GPU machine (see README.md)
    python -m experiments.gpu_paper_run unpack PATH/gpu_paper_run.tar.gz
    python -m experiments.gpu_paper_run run --device cpu --models resnet18 --size 32 --epochs 2 \\
        --max-train-batches 2 --archive /tmp/try/gpu_paper_run.tar.gz    # a CPU rehearsal of the whole path
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
from pathlib import Path

from experiments.gpu_pack import DEFAULT_PACK, unpack
from pskinlib.errors import DataError, ParameterError, PskinError, check_int
from pskinlib.info import PAPER_MODELS, PAPER_PROCEDURES
from pskinlib.io import atomic_path, make_folder, read_json, write_json
from pskinlib.runs import GPU_RUN_SUMMARY, RunRecord
from pskinlib.train.config import PROFILES
from pskinlib.train.losses import WEIGHT_SCHEMES
from pskinlib.train.models import MODELS

ARCHIVE_NAME, LOG_NAME = "gpu_paper_run.tar.gz", "gpu_paper_run.log"
FOLDER = "gpu"  # inside the archive, and under book/results once unpacked
TARGET_SECONDS_PER_MODEL = 300.0
SAFETY_SECONDS = 20.0  # kept free at the end of the window for the last archive
FUSION_SECONDS = 45.0  # set aside in each model's budget for the metadata fusion (features and the fits)


# ---------------------------------------------------------------------------------------------------------------
# The command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    paper = PROFILES["paper"]
    parser = argparse.ArgumentParser(prog="python -m experiments.gpu_paper_run", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train every model and write the archive (the device's command)")
    run.add_argument("--pack", default=str(DEFAULT_PACK), help=f"the data pack (default: {DEFAULT_PACK})")
    run.add_argument("--archive", default=None, help=f"where the archive goes (default: $OUT/{ARCHIVE_NAME})")
    run.add_argument("--log", default=None, help=f"a copy of the output (default: beside the archive, {LOG_NAME})")
    run.add_argument("--models", default=",".join(PAPER_MODELS), help="comma-separated model names")
    run.add_argument("--weights", default=",".join(PAPER_PROCEDURES),
                     help="comma-separated class-weight schemes, one run each (the paper's: none,inverse)")
    run.add_argument("--epochs", type=int, default=paper["epochs"], help="epochs per model (paper: 100)")
    run.add_argument("--size", type=int, default=paper["image_size"], help="image side in pixels (paper: 224)")
    run.add_argument("--max-minutes", type=float, default=9.0, help="the whole command's window (default: 9)")
    run.add_argument("--device", default="auto", help="auto (the GPU if there is one), cuda, cuda:N or cpu")
    run.add_argument("--in-turn", action="store_true", help="train the models one after the other even on a GPU")
    run.add_argument("--max-train-batches", type=int, default=None, help="cap batches per epoch (rehearsals)")
    run.add_argument("--probe-steps", type=int, default=20, help="timed raw training steps per model")
    run.add_argument("--no-fusion", action="store_true", help="leave out the metadata fusion of each run")
    run.add_argument("--snapshot-seconds", type=float, default=30.0, help="how often the archive is rewritten")
    run.add_argument("--scratch", default=None, help="folder for data, cache and runs (default: a temporary one)")
    model = commands.add_parser("model", help="one model, in its own process (run starts these)")
    for name, kind in (("--model", str), ("--class-weights", str), ("--data-dir", str), ("--split", str),
                       ("--runs-dir", str),
                       ("--result", str), ("--device", str), ("--epochs", int), ("--size", int),
                       ("--budget-seconds", float), ("--probe-steps", int)):
        model.add_argument(name, type=kind, required=True)
    model.add_argument("--max-train-batches", type=int, default=None)
    model.add_argument("--no-fusion", action="store_true")
    unpack_ = commands.add_parser("unpack", help="put an archive's records into book/results/gpu/")
    unpack_.add_argument("archive")
    unpack_.add_argument("--into", default=str(Path("book") / "results"), help="default: book/results")
    args = parser.parse_args(argv)
    if args.command == "run":
        args.models = tuple(m.strip() for m in args.models.split(",") if m.strip())
        unknown = [m for m in args.models if m not in MODELS]
        if unknown or not args.models:
            raise ParameterError(f"--models: unknown or empty {list(args.models)}; choose from {list(MODELS)}.")
        args.weights = tuple(w.strip() for w in args.weights.split(",") if w.strip())
        if not args.weights or any(w not in WEIGHT_SCHEMES or w == "manual" for w in args.weights):
            raise ParameterError(f"--weights: expected schemes among {[w for w in WEIGHT_SCHEMES if w != 'manual']}, "
                                 f"got {list(args.weights)}.")
        for name in ("epochs", "probe_steps"):
            check_int(f"--{name.replace('_', '-')}", getattr(args, name), 1)
        if not 16 <= args.size <= 1024:
            raise ParameterError(f"--size: expected 16 to 1024 pixels, got {args.size}.")
        for name in ("max_minutes", "snapshot_seconds"):
            if not (getattr(args, name) > 0 and math.isfinite(getattr(args, name))):
                raise ParameterError(f"--{name.replace('_', '-')}: expected a positive number, got "
                                     f"{getattr(args, name)}.")
        if args.max_train_batches is not None:
            check_int("--max-train-batches", args.max_train_batches, 1)
        if args.archive is None:
            if not os.environ.get("OUT"):
                raise ParameterError("--archive: not given and $OUT is not set; name where the archive goes.")
            args.archive = str(Path(os.environ["OUT"]) / ARCHIVE_NAME)
        args.log = args.log or str(Path(args.archive).with_name(LOG_NAME))
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        return {"run": run_all, "model": run_one, "unpack": unpack_archive}[args.command](args)
    except PskinError as exc:
        print(f"gpu_paper_run: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------------------------------------------------------
# One model, in its own process


def run_one(args: argparse.Namespace) -> int:
    """Probe, train and fuse one model; write what became of it to ``--result`` whatever happens."""
    started = time.perf_counter()
    result: dict = {"model": args.model, "class_weights": args.class_weights, "status": "failed"}
    try:
        import torch

        from benchmarks.bench import raw_training_speed, training_step_profile
        from pskinlib.data.splits import read_split
        from pskinlib.evaluate.fusion import fuse_run
        from pskinlib.train.config import make_config
        from pskinlib.train.device import select_device
        from pskinlib.train.trainer import train

        device = select_device(args.device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # as the trainer sets it: the probe sees the same kernels
        split = read_split(args.split)
        paper = PROFILES["paper"]
        fusion_share = 0.0 if args.no_fusion else FUSION_SECONDS
        budget = args.budget_seconds - fusion_share - (time.perf_counter() - started)
        config = make_config(
            "paper", model=args.model, class_weights=args.class_weights, epochs=args.epochs, image_size=args.size,
            device=args.device,
            data_dir=args.data_dir, warmup_epochs=paper["warmup_epochs"] * min(1.0, args.epochs / paper["epochs"]),
            max_train_batches=args.max_train_batches, quiet=True, checkpoints="best_in_memory",
            max_minutes=max(budget, 1.0) / 60,
            notes=f"experiments/gpu_paper_run.py: budget {args.budget_seconds:.0f} s for this model")
        probe = raw_training_speed(config, args.probe_steps, device=device, n_classes=len(config.classes),
                                   warmup_steps=max(2, args.probe_steps // 3))
        result["probe"] = {k: probe[k] for k in ("images_per_second", "seconds_per_step", "precision",
                                                 "channels_last") if k in probe}
        # What one step asks of the machine: host operations and, on a GPU, kernels and their summed time; against
        # the probe's seconds per step this splits the step into GPU work and the host's overhead.
        step = training_step_profile(config, device=device, n_classes=len(config.classes))
        result["probe"].update(seconds_per_step=config.batch_size / probe["images_per_second"],
                               ops_per_step=step["ops"], kernels_per_step=step["kernels"],
                               kernel_seconds_per_step=step["kernel_seconds"])
        kernels = f", {step['kernels']} kernels, {step['kernel_seconds'] * 1e3:.1f} ms" if step["kernels"] else ""
        print(f"probe: raw training step {probe['images_per_second']:.0f} img/s ({probe['precision']}), "
              f"{step['ops']} host operations{kernels}", flush=True)

        def progress(row: dict) -> None:
            print(f"epoch {row['epoch']}/{config.epochs}: {row['seconds']:.1f} s, {row['images_per_second']:.0f} "
                  f"img/s, val accuracy {row['val_accuracy']:.3f}, balanced {row['val_balanced_accuracy']:.3f}",
                  flush=True)

        run = RunRecord.open(train(config, runs_dir=args.runs_dir, split=split, on_epoch_end=progress))
        metrics = run.metrics
        result.update(status="stopped early" if metrics.get("stopped") else "complete", run=run.name,
                      reason=metrics.get("stopped"), seconds_training=time.perf_counter() - started)
        left = args.budget_seconds - (time.perf_counter() - started)
        if args.no_fusion:
            result["fusion"] = {"status": "skipped", "reason": "--no-fusion"}
        elif left < FUSION_SECONDS / 3:
            result["fusion"] = {"status": "skipped", "reason": f"only {left:.0f} s of the budget left"}
        else:
            fusion_start = time.perf_counter()
            fuse_run(run, data_dir=args.data_dir, device=args.device)
            fused = run.fusion(True).metrics
            result["fusion"] = {"status": "complete", "seconds": time.perf_counter() - fusion_start,
                                "test": {k: fused["test"][k] for k in ("accuracy", "balanced_accuracy")}}
    except Exception as exc:  # the failure scope: record it, and let the other model run
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc().splitlines()[-12:])
        print(f"failed: {type(exc).__name__}: {exc}", flush=True)
    result["seconds"] = time.perf_counter() - started
    write_json(args.result, result)
    return 0 if result["status"] != "failed" else 1


# ---------------------------------------------------------------------------------------------------------------
# The whole command


class Archive:
    """The staging folder of the archive, and the one way it is written: whole, then renamed into place."""

    def __init__(self, staging: Path, path: Path):
        self.staging, self.path = staging, path
        self.lock = threading.RLock()  # the signal handler may write while the loop is writing

    def write(self, summary: dict) -> None:
        with self.lock:
            write_json(self.staging / FOLDER / GPU_RUN_SUMMARY, summary)
            with atomic_path(self.path) as tmp, tarfile.open(tmp, "w:gz") as tar:
                tar.add(self.staging / FOLDER, arcname=FOLDER)


class Log:
    """Every line of the command and its models, on the screen and in ``--log``."""

    def __init__(self, path: Path):
        make_folder(path.parent, "--log")
        self.file, self.lock = open(path, "a", buffering=1), threading.Lock()

    def __call__(self, line: str) -> None:
        with self.lock:
            stamped = f"[{time.strftime('%H:%M:%S')}] {line}"
            print(stamped, flush=True)
            self.file.write(stamped + "\n")


def run_all(args: argparse.Namespace) -> int:

    from pskinlib.data.cache import prepare_images
    from pskinlib.data.ham10000 import load_ham10000
    from pskinlib.data.splits import split_hash, write_split
    from pskinlib.train.device import machine_description, select_device

    clock = time.perf_counter()
    deadline = clock + args.max_minutes * 60
    log = Log(Path(args.log))
    device = select_device(args.device)
    scratch = Path(args.scratch) if args.scratch else Path(tempfile.mkdtemp(prefix="pskin-gpu-"))
    os.environ["PSKIN_CACHE"] = str(scratch / "cache")  # the prepared cache stays in the scratch folder
    archive = Archive(scratch / "archive", Path(args.archive))
    jobs = [(m, w) for m in args.models for w in args.weights]
    concurrent = device.type == "cuda" and len(jobs) > 1 and not args.in_turn
    summary = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "finished": None, "seconds": None, "status": "running",
        "max_minutes": args.max_minutes, "device": str(device), "gpu_result": device.type == "cuda",
        "note": "the paper profile on one GPU" if device.type == "cuda" else "a rehearsal on the CPU, not a GPU result",
        "schedule": "concurrent" if concurrent else "in turn",
        "schedule_reason": ("one process per run on the one GPU: at batch 32 an eager step is bound by launching "
                            "kernels, and processes launch in parallel; the paper's batch and learning rate are kept")
        if concurrent else "one model after the other",
        "target_seconds_per_model": TARGET_SECONDS_PER_MODEL, "machine": machine_description(), "models": [],
    }
    children: dict[str, subprocess.Popen] = {}

    def stop(signum, frame) -> None:  # the shell's timeout: end the models, keep what is there
        log(f"signal {signum}: stopping the models and writing the archive")
        for child in children.values():
            child.terminate()
        summary["status"] = f"stopped by signal {signum}"
        _finish(summary, clock, archive, scratch, args, log)
        os._exit(124)

    signal.signal(signal.SIGTERM, stop)
    try:
        contents = unpack(args.pack, scratch / "ham10000")
        info, split = contents["info"], contents["split"]
        if split_hash(split) != info["split_hash"]:
            raise DataError(f"{args.pack}: its split does not match the hash recorded when packing.")
        write_split(split, scratch / "paper_split.csv")
        unpacked = time.perf_counter()
        prepare_images(load_ham10000(scratch / "ham10000", classes=info["classes"]), args.size, progress=False)
        summary["pack"] = {k: info[k] for k in ("images", "jpeg_megabytes", "jpeg_sha256", "split_hash",
                                                "split_images", "split_distinct_images", "synthetic", "source")}
        summary["data_seconds"] = {"unpack": unpacked - clock, "prepare": time.perf_counter() - unpacked}
        summary["split_counts"] = split["split"].value_counts().to_dict()
        log(f"{info['images']} images unpacked and prepared at {args.size} px in {time.perf_counter() - clock:.1f} s;"
            f" split {info['split_hash']} as packed; {summary['schedule']} on {device}")
        archive.write(summary)
        entries = {f"{m}-{w}": {"model": m, "class_weights": w, "status": "waiting",
                                "records": f"{m}-{w}-{args.size}px"} for m, w in jobs}
        summary["models"] = list(entries.values())
        queue = list(entries)
        last_snapshot = time.perf_counter()
        while queue or children:
            while queue and (concurrent or not children):
                model = queue.pop(0)
                left = deadline - time.perf_counter() - SAFETY_SECONDS
                budget = left if concurrent else left / (len(queue) + 1)
                if budget < 30:
                    entries[model].update(status="skipped", reason=f"only {left:.0f} s of the window left")
                    log(f"{model}: skipped, {left:.0f} s left")
                    continue
                entries[model].update(status="running", budget_seconds=budget, epochs_planned=args.epochs,
                                      size=args.size, started_after_seconds=time.perf_counter() - clock)
                children[model] = _start_model(entries[model], budget, args, scratch, device, log)
            time.sleep(0.5)
            for model, child in list(children.items()):
                if child.poll() is not None:
                    del children[model]
                    _collect(entries[model], model, child.returncode, scratch, archive, log)
                    archive.write(summary)
            if time.perf_counter() - last_snapshot >= args.snapshot_seconds:
                for model in children:
                    _snapshot(entries[model], model, scratch, archive)
                archive.write(summary)
                last_snapshot = time.perf_counter()
        failed = [f"{e['model']}-{e['class_weights']}" for e in summary["models"]
                  if e["status"] in ("failed", "skipped")]
        summary["status"] = "complete" if not failed else f"finished; not complete: {', '.join(failed)}"
    except PskinError as exc:
        summary["status"], summary["error"] = "failed", str(exc)
        log(f"error: {exc}")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for child in children.values():
            child.kill()
    _finish(summary, clock, archive, scratch, args, log)
    return 0 if summary["status"] == "complete" else 1


def _start_model(entry: dict, budget: float, args, scratch: Path, device, log) -> subprocess.Popen:
    model = f"{entry['model']}-{entry['class_weights']}"
    command = [sys.executable, "-m", "experiments.gpu_paper_run", "model", "--model", entry["model"],
               "--class-weights", entry["class_weights"],
               "--data-dir", str(scratch / "ham10000"), "--split", str(scratch / "paper_split.csv"),
               "--runs-dir", str(scratch / "runs" / model), "--result", str(scratch / "results" / f"{model}.json"),
               "--device", str(device), "--epochs", str(args.epochs), "--size", str(args.size),
               "--budget-seconds", f"{budget:.1f}", "--probe-steps", str(args.probe_steps)]
    if args.max_train_batches:
        command += ["--max-train-batches", str(args.max_train_batches)]
    if args.no_fusion:
        command.append("--no-fusion")
    log(f"{model}: starting, budget {budget:.0f} s")
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def relay() -> None:
        for line in child.stdout:
            if line.strip():
                log(f"{model}: {line.rstrip()}")

    threading.Thread(target=relay, daemon=True).start()
    return child


def _run_folder(model: str, scratch: Path) -> RunRecord | None:
    folders = sorted(p for p in (scratch / "runs" / model).glob("*") if p.is_dir())
    return RunRecord(folders[-1]) if folders else None


def _snapshot(entry: dict, model: str, scratch: Path, archive: Archive) -> None:
    """The record of a model still training, as far as it goes: its config and the epochs done."""
    run = _run_folder(model, scratch)
    if run is None:
        return
    history = run.history
    entry["epochs_run"] = len(history)
    target = archive.staging / FOLDER / entry["records"]
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    run.copy_to(target)


def _collect(entry: dict, model: str, code: int, scratch: Path, archive: Archive, log) -> None:
    """A model's process ended: its result, its records into the archive, the figures into the summary."""
    path = scratch / "results" / f"{model}.json"
    result = read_json(path) if path.is_file() else {"status": "failed", "error": f"exit code {code}, no result"}
    entry.update({k: v for k, v in result.items() if k not in ("model", "class_weights")})
    run = _run_folder(model, scratch)
    if run is not None:
        _snapshot(entry, model, scratch, archive)
        history = run.history
        if len(history):
            ips = float(history["images_per_second"].median())
            raw = result.get("probe", {}).get("images_per_second")
            entry.update(epochs_run=len(history), seconds_training_loop=float(history["seconds"].sum()),
                         epoch_seconds=history["seconds"].round(3).tolist(), images_per_second_median=ips,
                         raw_images_per_second=raw, trainer_vs_raw=ips / raw if raw else None)
        if run.finished:
            metrics = run.metrics
            entry.update(best_epoch=metrics["best_epoch"],
                         test={k: metrics["test"][k] for k in ("accuracy", "balanced_accuracy")})
    entry["under_target"] = (entry["status"] == "complete" and entry.get("epochs_run") == PROFILES["paper"]["epochs"]
                             and entry.get("seconds", math.inf) <= TARGET_SECONDS_PER_MODEL)
    test = entry.get("test", {})
    log(f"{model}: {entry['status']} after {entry.get('seconds', 0):.0f} s, {entry.get('epochs_run', 0)} epochs"
        + (f", test balanced accuracy {test['balanced_accuracy']:.3f}" if test else "")
        + (f" ({entry['error']})" if entry.get("error") else ""))


def _finish(summary: dict, clock: float, archive: Archive, scratch: Path, args, log) -> None:
    summary["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    summary["seconds"] = time.perf_counter() - clock
    archive.write(summary)
    log(f"{summary['status']}: wrote {archive.path} in {summary['seconds']:.0f} s")
    if not args.scratch:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# Back here


def unpack_archive(args: argparse.Namespace) -> int:
    """Extract an archive (safely) and replace ``<into>/gpu`` with its records."""
    from pskinlib.data.download import safe_extract

    into = Path(args.into)
    with tempfile.TemporaryDirectory(prefix="pskin-gpu-unpack-", dir=into if into.is_dir() else None) as folder:
        safe_extract(args.archive, folder)
        unpacked = Path(folder) / FOLDER
        if not (unpacked / GPU_RUN_SUMMARY).is_file():
            raise DataError(f"{args.archive}: holds no {FOLDER}/{GPU_RUN_SUMMARY}; is it this script's archive?")
        target, old = into / FOLDER, into / f".{FOLDER}.old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        make_folder(into, "--into")
        shutil.move(str(unpacked), str(target))
        shutil.rmtree(old, ignore_errors=True)
    summary = read_json(target / GPU_RUN_SUMMARY)
    for model in summary["models"]:
        test = model.get("test", {}).get("balanced_accuracy")
        print(f"{model['model']}: {model['status']}, {model.get('epochs_run', 0)} epochs"
              + (f", test balanced accuracy {test:.3f}" if test is not None else ""))
    print(f"unpacked into {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
