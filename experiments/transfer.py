"""The pretrained track's reference runs: the ``transfer`` profile (ImageNet-pretrained EfficientNet-Lite0, whose
weights ship with pskin) on one grouped split seed, timed from start to the written record.

Trains, evaluates the run on the labelled ISIC 2017 folder when ``$PSKIN_ISIC2017`` (or ``--isic2017``) names one
(:func:`pskinlib.evaluate.external_validation.evaluate_external`; thresholds and temperature from HAM10000
validation), and exports the record without checkpoints into ``<out>/`` (default ``book/results/transfer``), with a
row — split seed, wall minutes, run name, the options given — in ``<out>/transfer.json``. Options the profile does
not fix can be tried with ``--set NAME=VALUE`` (TrainConfig field names; recorded in the run's config and in the
row).

    PSKIN_DATA=../shared/data/ham10000 .venv/bin/python -m experiments.transfer --split-seed 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from pskinlib.cli import name_value

SUMMARY = "transfer.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--set", action="append", type=name_value, default=[], metavar="NAME=VALUE",
                        help="a TrainConfig field on top of the transfer profile (repeatable)")
    parser.add_argument("--data-dir", default=None, help="HAM10000 folder (default: $PSKIN_DATA, data/ham10000)")
    parser.add_argument("--isic2017", default=os.environ.get("PSKIN_ISIC2017"),
                        help="a labelled ISIC 2017 folder to evaluate on (default: $PSKIN_ISIC2017; none: skip)")
    parser.add_argument("--out", default=str(Path("book") / "results" / "transfer"))
    args = parser.parse_args(argv)
    if args.split_seed < 0:
        parser.error(f"--split-seed: need 0 or more, got {args.split_seed}.")

    from pskinlib.evaluate.external_validation import evaluate_external
    from pskinlib.io import read_json, write_json
    from pskinlib.runs import RunRecord
    from pskinlib.train.config import make_config
    from pskinlib.train.device import machine_description
    from pskinlib.train.trainer import train

    options = dict(args.set)
    described = ", ".join(f"{k}={v}" for k, v in options.items())
    config = make_config("transfer", split_seed=args.split_seed, data_dir=args.data_dir, quiet=True, **options,
                         notes="the transfer profile" + (f" with {described}" if described else ""))
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="pskin-transfer-") as scratch:
        start = time.perf_counter()
        run = RunRecord.open(train(config, runs_dir=scratch))
        wall = (time.perf_counter() - start) / 60  # the run itself; the external evaluation comes after
        if args.isic2017:
            evaluate_external(run.path, [args.isic2017], name="external")
        exported = run.export(out)
    summary = read_json(out / SUMMARY) if (out / SUMMARY).is_file() else {"runs": []}
    summary["runs"].append({"split_seed": args.split_seed, "run": exported.name, "wall_minutes": wall,
                            "options": options, "machine": machine_description()})
    write_json(out / SUMMARY, summary)
    test = exported.metrics["test"]
    print(f"transfer (split seed {args.split_seed}, {wall:.1f} min): test balanced accuracy "
          f"{test['balanced_accuracy']:.3f}, macro AUC {test['roc_auc_ovr']['macro']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
