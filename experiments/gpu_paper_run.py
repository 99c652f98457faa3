"""The paper profile on one GPU: ResNet101 and EfficientNet-B0 at 224 px, 100 epochs, Table 1's split.

The book's reference GPU results. The GPU machine cannot reach the data, so it reads the pack that
``scripts/pack_gpu_data.py`` writes (``.gpu/ham10000-paper.npz``, carried to the machine), unpacks it into a
scratch HAM10000 folder and trains each model with :func:`pskinlib.trainer.train`, exactly as ``pskin train
--profile paper`` would: the images are decoded and resized once into the prepared cache, moved to the GPU once as
one uint8 tensor and augmented there, in bf16 autocast with channels_last. The split is remade from the pack and
checked against the hash recorded when packing, so it is the split a CPU run makes.

Each run's records (``config.json``, ``split.csv``, ``history.csv``, ``metrics.json``, ``predictions_*.csv``; no
checkpoints) go to ``book/results/gpu/<model>-<size>px/``, and ``book/results/gpu/gpu_paper_run.json`` gathers
images per second, epoch times, the raw model's speed on the same GPU (forward + backward + step on a batch in
memory, the machine's limit) and whether each model stayed under the 5-minute target.

After each model, its head is refitted on the image features plus the patient's age, sex and body site
(:func:`pskinlib.fusion.fuse_run`, as ``pskin fuse RUN``; the pack carries the metadata), and the record keeps it in
``fusion-metadata/``; ``--no-fusion`` leaves this out. The time it takes is planned in, like the final evaluation.

``--max-minutes`` (default 8) is a budget for the whole script: after a short probe of each model's speed, the
epochs are cut (the same fraction for every model) if 100 would not fit, and the cut is recorded in the run's
config notes and in the summary; should a run still fall behind, it is stopped after an epoch, before the budget
ends, and recorded as stopped.

    python scripts/gpu_paper_run.py                     # on the GPU machine, with .gpu/ carried
    python scripts/gpu_paper_run.py --device cpu --models resnet18 --size 32 --epochs 1 --max-train-batches 2 \
        --out /tmp/gpu-try                              # a CPU try of the whole path
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.bench import raw_training_speed
from experiments.gpu_pack import DEFAULT_PACK, unpack
from pskinlib.data.cache import prepare_images
from pskinlib.data.ham10000 import load_ham10000
from pskinlib.data.splits import make_split, split_hash
from pskinlib.evaluate.fusion import fuse_run
from pskinlib.io import write_json
from pskinlib.runs import GPU_RUN_SUMMARY, RunRecord, save_checkpoint
from pskinlib.train.config import PROFILES, TrainConfig, make_config
from pskinlib.train.device import machine_description, select_device
from pskinlib.train.models import MODELS, build_model
from pskinlib.train.trainer import train

DEFAULT_OUT = Path("book") / "results" / "gpu"
PAPER_MODELS = ("resnet101", "efficientnet_b0")
TARGET_SECONDS_PER_MODEL = 300.0
SAFETY_SECONDS = 20.0  # kept free at the end of the budget for writing the summary and copying records
# Planning guesses, refined by the probe: the trainer reaches about 90 % of the raw step's speed, evaluation
# (forward only) runs about 3x faster than training, and the final evaluation uses four flips (TTA).
TRAINER_EFFICIENCY, FORWARD_SPEEDUP, TTA_VIEWS = 0.9, 3.0, 4
FUSION_FIT_SECONDS = 30.0  # the logistic-regression fits of the fusion head, on the CPU (a guess with room to spare)


class OutOfTime(RuntimeError):
    """The next epoch would not end before the budget: the run stops after the one just finished."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    paper = PROFILES["paper"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", default=str(DEFAULT_PACK), help=f"the data pack (default: {DEFAULT_PACK})")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"where the records go (default: {DEFAULT_OUT})")
    parser.add_argument("--models", default=",".join(PAPER_MODELS), help="comma-separated model names")
    parser.add_argument("--epochs", type=int, default=paper["epochs"], help="epochs per model (paper: 100)")
    parser.add_argument("--size", type=int, default=paper["image_size"], help="image side in pixels (paper: 224)")
    parser.add_argument("--max-minutes", type=float, default=8.0, help="budget for the whole script")
    parser.add_argument("--device", default="auto", help="auto (the GPU if there is one), cuda, cuda:N or cpu")
    parser.add_argument("--max-train-batches", type=int, default=None, help="cap batches per epoch (CPU tries)")
    parser.add_argument("--probe-steps", type=int, default=30, help="timed raw steps per model before training")
    parser.add_argument("--no-fusion", action="store_true", help="leave out the metadata fusion of each run")
    parser.add_argument("--scratch", default=None, help="folder for the unpacked data, cache and checkpoints "
                                                         "(default: a temporary folder, removed at the end)")
    args = parser.parse_args(argv)
    args.models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    unknown = [m for m in args.models if m not in MODELS]
    if unknown or not args.models:
        raise ValueError(f"--models: unknown or empty {list(args.models)}; choose from {list(MODELS)}.")
    for name in ("epochs", "probe_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected an integer >= 1, got {getattr(args, name)}.")
    if not 16 <= args.size <= 1024:
        raise ValueError(f"--size: expected 16 to 1024 pixels, got {args.size}.")
    if not (args.max_minutes > 0 and math.isfinite(args.max_minutes)):
        raise ValueError(f"--max-minutes: expected a positive number, got {args.max_minutes}.")
    if args.max_train_batches is not None and args.max_train_batches < 1:
        raise ValueError(f"--max-train-batches: expected an integer >= 1, got {args.max_train_batches}.")
    return args


def paper_config(model: str, epochs: int, args: argparse.Namespace, data_dir: Path, classes: tuple[str, ...],
                 split_seed: int, notes: str) -> TrainConfig:
    """The paper profile for ``model``; fewer epochs keep the warm-up the same fraction of the run."""
    paper = PROFILES["paper"]
    warmup = paper["warmup_epochs"] * min(1.0, epochs / paper["epochs"])
    return make_config("paper", model=model, epochs=epochs, warmup_epochs=warmup, image_size=args.size,
                       device=args.device, data_dir=str(data_dir), classes=classes, split_seed=split_seed,
                       max_train_batches=args.max_train_batches, quiet=True, notes=notes)


def probe(config: TrainConfig, device: torch.device, n_classes: int, steps: int, scratch: Path) -> dict:
    """The raw model's training speed on this device, and the time to write one checkpoint."""
    raw = raw_training_speed(config, steps, device=device, n_classes=n_classes, warmup_steps=max(2, steps // 3))
    model = build_model(config.model, n_classes).to(device)
    # Model and SGD momentum: about what the trainer's best.pt / last.pt hold.
    state = {"model": model.state_dict(), "momentum": {k: v.clone() for k, v in model.state_dict().items()}}
    start = time.perf_counter()
    save_checkpoint(scratch / "probe.pt", state)
    checkpoint_seconds = time.perf_counter() - start
    (scratch / "probe.pt").unlink()
    del model, state
    return {"raw_images_per_second": raw["images_per_second"], "precision": raw["precision"],
            "channels_last": raw["channels_last"], "checkpoint_seconds": checkpoint_seconds}


def estimate_seconds(config: TrainConfig, measured: dict, counts: dict[str, int], fusion: bool = True
                     ) -> dict[str, float]:
    """Planning estimates for one epoch, for the final evaluation and (``fusion``) for the metadata fusion, from
    the probe."""
    ips = measured["raw_images_per_second"]
    steps = counts["train"] // config.batch_size
    if config.max_train_batches is not None:
        steps = min(steps, config.max_train_batches)
    epoch = (steps * config.batch_size / (TRAINER_EFFICIENCY * ips) + counts["val"] / (FORWARD_SPEEDUP * ips)
             + 2 * measured["checkpoint_seconds"] + 0.1)
    final = ((counts["val"] + counts["test"]) * TTA_VIEWS / (FORWARD_SPEEDUP * ips)
             + measured["checkpoint_seconds"] + 5.0)
    # Fusion reads every image's features once (with the flips) and fits a small logistic regression.
    fused = sum(counts.values()) * TTA_VIEWS / (FORWARD_SPEEDUP * ips) + FUSION_FIT_SECONDS if fusion else 0.0
    return {"epoch": epoch, "final": final, "setup": 5.0, "fusion": fused}


def plan_epochs(epochs: int, estimates: dict[str, dict[str, float]], seconds_left: float) -> dict[str, int]:
    """``epochs`` for every model if they fit in ``seconds_left``, else the same fraction of them for each."""
    fixed = sum(e["final"] + e["setup"] + e.get("fusion", 0.0) for e in estimates.values())
    per_epoch = sum(e["epoch"] for e in estimates.values())
    if fixed + epochs * per_epoch <= seconds_left:
        return dict.fromkeys(estimates, epochs)
    fitting = max(1, math.floor((seconds_left - fixed) / per_epoch))
    return dict.fromkeys(estimates, min(epochs, fitting))


def run_model(config: TrainConfig, runs_dir: Path, deadline: float, final_seconds: float) -> dict:
    """Train one model; stop after an epoch if the next one and the final evaluation would overrun ``deadline``."""
    wall: list[float] = []
    start = time.perf_counter()
    last = [start]

    def on_epoch_end(row: dict) -> None:
        now = time.perf_counter()
        wall.append(now - last[0])
        last[0] = now
        print(f"  {config.model} epoch {row['epoch']}/{config.epochs}: {row['seconds']:.1f} s training "
              f"({row['images_per_second']:.0f} img/s), {wall[-1]:.1f} s in all; val accuracy "
              f"{row['val_accuracy']:.3f}", flush=True)
        if row["epoch"] < config.epochs and now + max(wall[-3:]) + final_seconds > deadline:
            raise OutOfTime(f"stopped after epoch {row['epoch']} of {config.epochs}: the next epoch and the final "
                            "evaluation would overrun --max-minutes")

    status, reason = "complete", None
    try:
        run_dir = RunRecord(train(config, runs_dir=runs_dir, on_epoch_end=on_epoch_end))
    except OutOfTime as exc:
        status, reason = "stopped", str(exc)
        run_dir = RunRecord(next(p for p in runs_dir.iterdir() if p.is_dir()))
    return {"run_dir": run_dir, "status": status, "reason": reason, "seconds": time.perf_counter() - start,
            "epoch_wall_seconds": wall}


def fuse_in_time(run_dir: RunRecord, data_dir: Path, device: str, deadline: float, estimate: float) -> dict:
    """Fit the run's metadata fusion head if the run finished and the estimate fits before ``deadline``; what
    became of it, for the summary."""
    if not run_dir.finished:
        return {"status": "skipped", "reason": "the run stopped before its final evaluation"}
    if time.perf_counter() + estimate > deadline:
        return {"status": "skipped", "reason": "no time left in --max-minutes"}
    start = time.perf_counter()
    fuse_run(run_dir, data_dir=data_dir, device=device)
    metrics = run_dir.fusion(True).metrics
    seconds = time.perf_counter() - start
    print(f"  fused with age, sex and body site in {seconds:.1f} s: test balanced accuracy "
          f"{metrics['test']['balanced_accuracy']:.3f} (images alone "
          f"{metrics['image_only_test_balanced_accuracy']:.3f})", flush=True)
    return {"status": "complete", "seconds": seconds,
            "test": {k: metrics["test"][k] for k in ("accuracy", "balanced_accuracy")},
            "test_by_lesion": {k: metrics["test_by_lesion"][k] for k in ("accuracy", "balanced_accuracy")}}


def copy_records(run_dir: RunRecord, target: Path) -> None:
    """Copy a run's records without its checkpoints to ``target``, replacing an earlier copy only once the new one
    is complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    run_dir.copy_to(tmp)
    old = target.with_name(f".{target.name}.{os.getpid()}.old")
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def summarize_run(model: str, result: dict, config: TrainConfig, measured: dict, args: argparse.Namespace,
                  folder: str) -> dict:
    run_dir = result["run_dir"]
    history = run_dir.history
    ips = float(history["images_per_second"].median()) if len(history) else None
    summary = {
        "model": model, "status": result["status"], "reason": result["reason"], "records": folder,
        "epochs_profile": PROFILES["paper"]["epochs"], "epochs_asked": args.epochs, "epochs_planned": config.epochs,
        "epochs_run": len(history), "size": config.image_size, "batch_size": config.batch_size,
        "precision": measured["precision"], "channels_last": measured["channels_last"],
        "seconds_total": result["seconds"],
        "seconds_training": float(history["seconds"].sum()) if len(history) else 0.0,
        "epoch_seconds": history["seconds"].round(3).tolist() if len(history) else [],
        "epoch_wall_seconds": [round(s, 3) for s in result["epoch_wall_seconds"]],
        "images_per_second_median": ips,
        "raw_images_per_second": measured["raw_images_per_second"],
        "trainer_vs_raw": ips / measured["raw_images_per_second"] if ips else None,
        "checkpoint_seconds": measured["checkpoint_seconds"],
        "under_target": result["status"] == "complete" and config.epochs == PROFILES["paper"]["epochs"]
        and result["seconds"] <= TARGET_SECONDS_PER_MODEL,
    }
    if run_dir.finished:
        metrics = run_dir.metrics
        summary["best_epoch"] = metrics["best_epoch"]
        summary["test"] = {k: metrics["test"][k] for k in ("accuracy", "balanced_accuracy")}
    return summary


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        device = select_device(args.device)
        if device.type != "cuda" and Path(args.out).resolve() == DEFAULT_OUT.resolve():
            raise ValueError(f"--out: a run on {device} would replace the reference GPU results in {DEFAULT_OUT}; "
                             "give another --out for a CPU try.")
    except ValueError as exc:
        print(f"gpu_paper_run: error: {exc}", file=sys.stderr)
        return 2
    started, clock = time.strftime("%Y-%m-%dT%H:%M:%S"), time.perf_counter()
    deadline = clock + args.max_minutes * 60
    out = Path(args.out)
    scratch = Path(args.scratch) if args.scratch else Path(tempfile.mkdtemp(prefix="pskin-gpu-"))
    scratch.mkdir(parents=True, exist_ok=True)
    # The prepared cache goes to the scratch folder, not the machine's ~/.cache, and goes with it.
    os.environ["PSKIN_CACHE"] = str(scratch / "cache")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer sets it; the probe should see the same kernels
    try:
        contents = unpack(args.pack, scratch / "ham10000")
        info = contents["info"]
        unpacked = time.perf_counter()
        images = load_ham10000(scratch / "ham10000", classes=info["classes"])
        split = make_split(images, "paper", seed=info["split_seed"])
        if split_hash(split) != info["split_hash"]:
            raise ValueError(f"the paper split remade from {args.pack} has hash {split_hash(split)}, not the "
                             f"{info['split_hash']} recorded when packing: the pack or pskinlib's split changed.")
        prepare_images(images, args.size, progress=False)
        prepared = time.perf_counter()
        print(f"unpacked {len(images)} images in {unpacked - clock:.1f} s, prepared them at {args.size} px in "
              f"{prepared - unpacked:.1f} s; split {info['split_hash']} as packed", flush=True)

        counts = split["split"].value_counts().to_dict()
        n_classes = len(images.classes)
        measured, estimates = {}, {}
        for model in args.models:
            config = paper_config(model, args.epochs, args, scratch / "ham10000", images.classes,
                                  info["split_seed"], "")
            measured[model] = probe(config, device, n_classes, args.probe_steps, scratch)
            estimates[model] = estimate_seconds(config, measured[model], counts, fusion=not args.no_fusion)
            print(f"probe {model}: raw {measured[model]['raw_images_per_second']:.0f} img/s "
                  f"({measured[model]['precision']}{', channels_last' if measured[model]['channels_last'] else ''})"
                  f", checkpoint {measured[model]['checkpoint_seconds']:.2f} s; about "
                  f"{estimates[model]['epoch']:.1f} s per epoch", flush=True)
        seconds_left = deadline - time.perf_counter() - SAFETY_SECONDS
        planned = plan_epochs(args.epochs, estimates, seconds_left)

        summary = {
            "started": started, "finished": None, "seconds": None, "max_minutes": args.max_minutes,
            "device": str(device), "gpu_result": device.type == "cuda",
            "note": "reference GPU results of the paper profile" if device.type == "cuda"
            else "a try of the script on the CPU, not a GPU result",
            "target_seconds_per_model": TARGET_SECONDS_PER_MODEL, "machine": machine_description(),
            "pack": {k: info[k] for k in ("images", "jpeg_megabytes", "jpeg_sha256", "split_hash", "split_seed",
                                          "split_images", "split_distinct_images", "synthetic", "source")},
            "data_seconds": {"unpack": unpacked - clock, "prepare": prepared - unpacked},
            "split_counts": counts, "planned_epochs": planned, "estimates": estimates, "models": [],
        }
        out.mkdir(parents=True, exist_ok=True)
        for model in args.models:
            notes = f"GPU reference run (scripts/gpu_paper_run.py) from the pack {info['jpeg_sha256'][:12]}"
            if planned[model] < args.epochs:
                notes += f"; epochs cut from {args.epochs} to {planned[model]} to fit --max-minutes {args.max_minutes}"
            config = paper_config(model, planned[model], args, scratch / "ham10000", images.classes,
                                  info["split_seed"], notes)
            if time.perf_counter() + estimates[model]["setup"] + estimates[model]["epoch"] \
                    + estimates[model]["final"] + estimates[model]["fusion"] > deadline - SAFETY_SECONDS:
                summary["models"].append({"model": model, "status": "skipped",
                                          "reason": "no time left in --max-minutes"})
                print(f"{model}: skipped, no time left", flush=True)
                continue
            print(f"{model}: {config.epochs} epochs at {config.image_size} px on {device}", flush=True)
            result = run_model(config, scratch / "runs" / model, deadline - SAFETY_SECONDS,
                               estimates[model]["final"] + estimates[model]["fusion"])
            fusion = None if args.no_fusion else fuse_in_time(result["run_dir"], scratch / "ham10000", args.device,
                                                               deadline - SAFETY_SECONDS, estimates[model]["fusion"])
            folder = f"{model}-{config.image_size}px"
            copy_records(result["run_dir"], out / folder)
            summary["models"].append({**summarize_run(model, result, config, measured[model], args, folder),
                                      **({"fusion": fusion} if fusion else {})})
            # Written after every model: a run cut short by the machine's own time limit keeps what it finished.
            summary["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            summary["seconds"] = time.perf_counter() - clock
            write_json(out / GPU_RUN_SUMMARY, summary)
            print(f"{model}: {result['status']} in {result['seconds']:.0f} s", flush=True)
        summary["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        summary["seconds"] = time.perf_counter() - clock
        write_json(out / GPU_RUN_SUMMARY, summary)
        print(f"wrote {out / GPU_RUN_SUMMARY} in {summary['seconds']:.0f} s", flush=True)
    except ValueError as exc:  # a bad pack or split; DataError is a ValueError too
        print(f"gpu_paper_run: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if not args.scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
