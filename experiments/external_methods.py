"""External validation: what each method against another collection's images buys, inside and outside HAM10000.

Each method is the CPU quality-bar recipe (the ``quality_bar`` profile: ResNet18 from scratch, 64 px, 18
epochs, the grouped lesion split) plus the options named in :data:`METHODS`. One call trains one method on one split
seed, then evaluates the run on the labelled ISIC 2017 folder (``$PSKIN_ISIC2017``; the training images of ISIC 2017
count as external for a model that never saw them) with
:func:`pskinlib.evaluate.external_validation.evaluate_external` twice: with the run's own test-time views
(``external``) and with the eight dihedral views (``external-dihedral``). Temperature and melanoma thresholds come
from HAM10000 validation in both. ``ISIC2017_val`` may guide the choice of a method; ``ISIC2017_test`` is reported
only.

The run record, with both evaluations and without checkpoints, goes into ``<out>/`` (``--out``, default
``book/results/external-methods``), and a row — method, split seed, wall minutes from start to the written
evaluations, run name — into ``<out>/external_methods.json``.

    PSKIN_DATA=../shared/data/ham10000 PSKIN_ISIC2017=../shared/data/isic2017 \\
        .venv/bin/python -m experiments.external_methods shades-of-gray
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

SUMMARY = "external_methods.json"
# Each: the options on top of the quality-bar recipe, and what the record's notes say of it.
SOG = {"colour_constancy": 6.0}
CROP = {"resize": "crop"}
PHOTOMETRIC = {"hue": 0.15, "gamma": 0.25, "channel_gain": 0.15, "blur": 0.5, "vignette": 0.4}
METHODS: dict[str, tuple[dict, str]] = {
    "baseline": ({}, "the CPU quality-bar recipe alone (HAM10000's 4:3 frames squashed to a square)"),
    "shades-of-gray": (SOG, "+ Shades of Gray colour constancy (p = 6) on training and test images"),
    "crop": (CROP, "+ an aspect-keeping square crop instead of squashing"),
    "photometric": (PHOTOMETRIC, "+ strong photometric augmentation (hue, gamma, channel gains, blur, vignette)"),
    "sog-crop": ({**SOG, **CROP}, "+ Shades of Gray + aspect-keeping crop"),
    "sog-crop-photometric": ({**SOG, **CROP, **PHOTOMETRIC},
                             "+ Shades of Gray + aspect-keeping crop + strong photometric augmentation"),
    "sog-photometric": ({**SOG, **PHOTOMETRIC}, "+ Shades of Gray + strong photometric augmentation"),
    # Resolution: the same recipe with the rest of the 15-minute budget spent on 96 px images.
    "96px": ({"image_size": 96, "epochs": 16}, "the recipe at 96 px for 16 epochs instead of 64 px for 18"),
}
# The second source is its own question (ISIC 2017 is no longer external for it), asked of a chosen recipe.
# The sampler already draws every (collection, class) pair equally often, so the loss takes no class weights on
# top: both together count the majority class down twice (nv recall on ISIC 2017 fell to 0.03 that way).
TWO_SOURCE = {"extra_sources": ("ISIC2017_train",), "sampler": "balanced_sources", "class_weights": "none"}


RECIPE_PROFILE = "quality_bar"  # the quality-bar recipe (pskinlib/configs/quality_bar.yaml), as quality_bar runs it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("method", choices=list(METHODS))
    parser.add_argument("--two-source", action="store_true",
                        help="also train on ISIC2017_train, sampled to balance sources and classes")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=18, help="unless the method sets them")
    parser.add_argument("--image-size", type=int, default=64, help="unless the method sets them")
    parser.add_argument("--data-dir", default=None, help="HAM10000 folder (default: $PSKIN_DATA, data/ham10000)")
    parser.add_argument("--isic2017", default=os.environ.get("PSKIN_ISIC2017"),
                        help="the labelled ISIC 2017 folder (default: $PSKIN_ISIC2017)")
    parser.add_argument("--out", default=str(Path("book") / "results" / "external-methods"))
    args = parser.parse_args(argv)
    if not args.isic2017 or not Path(args.isic2017).is_dir():
        parser.error("--isic2017: give the labelled ISIC 2017 folder (or set PSKIN_ISIC2017).")
    if args.split_seed < 0 or args.epochs < 2 or args.image_size < 16:
        parser.error("--split-seed >= 0, --epochs >= 2 and --image-size >= 16, please.")
    os.environ["PSKIN_ISIC2017"] = str(args.isic2017)  # where extra_sources finds ISIC2017_train

    from pskinlib.evaluate.external_validation import evaluate_external
    from pskinlib.io import read_json, write_json
    from pskinlib.runs import RunRecord
    from pskinlib.train.config import make_config
    from pskinlib.train.device import machine_description
    from pskinlib.train.trainer import train

    options, note = METHODS[args.method]
    name = args.method
    if args.two_source:
        options, note, name = {**options, **TWO_SOURCE}, note + "; + ISIC2017_train as a second training source", \
            f"{name}+two-source"
    config = make_config(RECIPE_PROFILE, **{"epochs": args.epochs, "image_size": args.image_size, **options},
                         split_seed=args.split_seed, data_dir=args.data_dir, quiet=True,
                         notes=f"{name}: {note}")
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="pskin-external-") as scratch:
        start = time.perf_counter()
        run = RunRecord.open(train(config, runs_dir=scratch))
        evaluate_external(run.path, [args.isic2017], name="external")
        evaluate_external(run.path, [args.isic2017], name="external-dihedral", tta_views="dihedral")
        wall = (time.perf_counter() - start) / 60
        exported = run.export(out)
    summary = read_json(out / SUMMARY) if (out / SUMMARY).is_file() else {"runs": []}
    summary["runs"].append({"method": name, "split_seed": args.split_seed, "run": exported.name,
                            "wall_minutes": wall, "machine": machine_description(), "notes": config.notes})
    write_json(out / SUMMARY, summary)
    groups = exported.evaluations()["external"].metrics["groups"]
    print(f"{name} (split seed {args.split_seed}, {wall:.1f} min): " + ", ".join(
        f"{g} {r['balanced_accuracy']:.3f}" for g, r in groups.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
