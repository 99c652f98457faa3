"""The study's experiment on a CPU: the ``paper_cpu`` profile (the paper profile at 48 px) for ResNet101 and
EfficientNet-B0, each trained without and with inverse class weights, 100 epochs each, then EfficientNet-B0 on more
split seeds (Table 1 needs repeats).

Hours of training on two cores, so the queue is built to be stopped and started again:

* each run trains in its own folder under ``--runs`` (default ``~/pskin-runs/paper-cpu``, outside the checkout, so a
  new work tree does not remove it): ``<runs>/<model>-<scheme>-split<seed>/``;
* started again, the queue skips the runs that finished, continues an interrupted one from its last epoch
  (:func:`pskinlib.train.trainer.resume`) and starts the rest; one run at a time;
* after every epoch a line goes to the standard output (the log) and the run's wall time so far to ``wall.json``
  beside it, so the wall time of a run trained over several sittings adds up;
* a finished run is evaluated on ISIC 2017 when ``$PSKIN_ISIC2017`` names it, exported without checkpoints into
  ``--out`` (default ``book/results/paper-cpu``), and listed in ``<out>/paper_cpu.json`` with its model, weight
  scheme, split seed, wall minutes and machine: the manifest the results chapter reads.

    PSKIN_DATA=../shared/data/ham10000 nohup .venv/bin/python -m experiments.paper_cpu > ~/pskin-runs/paper-cpu.log &
    .venv/bin/python -m experiments.paper_cpu --runs-only resnet101-none-split0   # one run of the queue
    .venv/bin/python -m experiments.paper_cpu --export-only                           # export what has finished
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pskinlib.info import PAPER_MODELS, PAPER_PROCEDURES

PROFILE = "paper_cpu"
WALL = "wall.json"
ORDER = ("efficientnet_b0", "resnet101")  # the study's networks, the cheaper first: its pair trains in hours
REPEAT_MODEL, REPEAT_SEEDS = "efficientnet_b0", (1, 2)  # the cheaper network on two more split seeds


@dataclass(frozen=True)
class Slot:
    """One run of the queue: a network, a weight scheme and a split seed."""

    model: str
    class_weights: str
    split_seed: int

    @property
    def name(self) -> str:
        return f"{self.model}-{self.class_weights}-split{self.split_seed}"


def queue() -> list[Slot]:
    """The study's four runs first (EfficientNet-B0, then ResNet101, each without and with class weights), then the
    repeats of EfficientNet-B0 on more split seeds."""
    runs = [Slot(m, w, 0) for m in sorted(PAPER_MODELS, key=ORDER.index) for w in PAPER_PROCEDURES]
    return runs + [Slot(REPEAT_MODEL, w, s) for s in REPEAT_SEEDS for w in PAPER_PROCEDURES]


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)


def run_slot(slot: Slot, runs: Path, data_dir: str | None, isic2017: str | None) -> Path:
    """Train (or continue) one run of the queue to its end; returns the finished run folder."""
    from pskinlib.evaluate.external_validation import evaluate_external
    from pskinlib.io import make_folder, read_json, write_json
    from pskinlib.runs import RunRecord, find_runs
    from pskinlib.train.config import make_config
    from pskinlib.train.trainer import resume, train

    folder = make_folder(runs / slot.name, "--runs")
    finished = find_runs(folder)
    if finished:
        return finished[-1].path
    wall_file = folder / WALL
    before = read_json(wall_file)["seconds"] if wall_file.is_file() else 0.0
    started = time.perf_counter()

    def on_epoch_end(row: dict) -> bool:
        seconds = before + time.perf_counter() - started
        write_json(wall_file, {"seconds": seconds})
        _log(f"{slot.name} epoch {row['epoch']}: train loss {row['train_loss']:.3f}, val accuracy "
             f"{row['val_accuracy']:.3f}, val balanced accuracy {row['val_balanced_accuracy']:.3f}, "
             f"{row['images_per_second']:.0f} images/s, {seconds / 60:.1f} min so far")
        return False

    unfinished = [p.parent for p in folder.glob("*/config.json")]
    if unfinished:
        _log(f"{slot.name}: continuing {unfinished[-1].name}")
        run_dir = resume(sorted(unfinished)[-1], on_epoch_end=on_epoch_end)
    else:
        config = make_config(PROFILE, model=slot.model, class_weights=slot.class_weights,
                             split_seed=slot.split_seed, data_dir=data_dir, quiet=True,
                             notes=f"the study's protocol at 48 px on a CPU ({slot.name})")
        _log(f"{slot.name}: starting")
        run_dir = train(config, runs_dir=folder, on_epoch_end=on_epoch_end)
    write_json(wall_file, {"seconds": before + time.perf_counter() - started})
    if isic2017:
        evaluate_external(run_dir, [isic2017], name="external")
    test = RunRecord.open(run_dir).metrics["test"]
    _log(f"{slot.name}: finished, test accuracy {test['accuracy']:.3f}, balanced accuracy "
         f"{test['balanced_accuracy']:.3f}")
    return run_dir


def export_finished(runs: Path, out: Path, slots: list[Slot]) -> list[dict]:
    """Export every finished run of ``slots`` not yet in ``out`` and rewrite the manifest; returns its rows."""
    from pskinlib.io import read_json, write_json
    from pskinlib.runs import PAPER_CPU_SUMMARY as SUMMARY
    from pskinlib.runs import find_runs
    from pskinlib.train.device import machine_description

    summary = read_json(out / SUMMARY) if (out / SUMMARY).is_file() else {"profile": PROFILE, "runs": []}
    listed = {row["slot"] for row in summary["runs"]}
    for slot in slots:
        finished = find_runs(runs / slot.name)
        if slot.name in listed or not finished:
            continue
        run = finished[-1]
        exported = run.export(out)
        wall = read_json(runs / slot.name / WALL)["seconds"] / 60
        summary["runs"].append({"slot": slot.name, "model": slot.model, "class_weights": slot.class_weights,
                                "split_seed": slot.split_seed, "run": exported.name, "wall_minutes": wall,
                                "epochs": len(exported.history), "machine": machine_description()})
        _log(f"{slot.name}: exported to {out / exported.name}")
    summary["runs"].sort(key=lambda row: [s.name for s in slots].index(row["slot"]))
    write_json(out / SUMMARY, summary)
    return summary["runs"]


def main(argv: list[str] | None = None) -> int:
    slots = queue()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default=str(Path.home() / "pskin-runs" / "paper-cpu"),
                        help="where the runs train (default: ~/pskin-runs/paper-cpu, outside the checkout)")
    parser.add_argument("--out", default=str(Path("book") / "results" / "paper-cpu"),
                        help="where finished runs are exported (default: book/results/paper-cpu)")
    parser.add_argument("--data-dir", default=None, help="HAM10000 folder (default: $PSKIN_DATA, data/ham10000)")
    parser.add_argument("--isic2017", default=os.environ.get("PSKIN_ISIC2017"),
                        help="a labelled ISIC 2017 folder to evaluate each finished run on (default: "
                             "$PSKIN_ISIC2017; none: skip)")
    parser.add_argument("--only", nargs="+", choices=[s.name for s in slots], metavar="RUN",
                        help=f"train these runs of the queue only, in this order (of {[s.name for s in slots]})")
    parser.add_argument("--export-only", action="store_true", help="export what has finished, train nothing")
    args = parser.parse_args(argv)
    chosen = [next(s for s in slots if s.name == name) for name in args.only] if args.only else slots
    runs, out = Path(args.runs).expanduser(), Path(args.out)
    if not args.export_only:
        for slot in chosen:
            run_slot(slot, runs, args.data_dir, args.isic2017)
            export_finished(runs, out, slots)
    export_finished(runs, out, slots)
    return 0


if __name__ == "__main__":
    sys.exit(main())
