"""The ``pskin`` command line: one argument parser, one small function per command.

Every command imports what it needs when it runs, so ``pskin --help`` and the parameter checks answer at once.
Failures the user can fix (:class:`~pskinlib.errors.PskinError`) end in one line ``pskin: error: ...`` and exit code
2; ``PSKIN_DEBUG=1`` shows their traceback too.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

from .info import ALL_CLASSES, DOWNLOAD_SOURCES, PAPER_CLASSES, SEXES, SYNTHETIC_WARNING

DEBUG_ENV = "PSKIN_DEBUG"


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    from .data.ham10000 import DATA_ENV, DEFAULT_DATA_DIR

    parser.add_argument("--data-dir", help=f"folder holding HAM10000 (default: ${DATA_ENV}, else {DEFAULT_DATA_DIR})")
    parser.add_argument("--classes", default=",".join(PAPER_CLASSES),
                        help=f"comma-separated dx codes, or 'all' for the {len(ALL_CLASSES)} (default: "
                             f"{','.join(PAPER_CLASSES)})")
    parser.add_argument("--skip-missing", action="store_true", help="leave out images absent from disk")


def _add_split_arguments(parser: argparse.ArgumentParser) -> None:
    """The split's flags, with the defaults training uses, so ``data summary`` shows the split a run would draw."""
    from .data.splits import PROTOCOLS
    from .train.config import TrainConfig

    parser.add_argument("--protocol", choices=PROTOCOLS, default=TrainConfig.protocol)
    parser.add_argument("--seed", type=int, default=TrainConfig.split_seed)
    parser.add_argument("--fractions", default=",".join(f"{f:.2f}" for f in TrainConfig.fractions),
                        help="train,val,test fractions (grouped)")


def _load(args):
    from .data.ham10000 import load_ham10000

    return load_ham10000(args.data_dir, classes=args.classes, skip_missing=args.skip_missing)


def _split(args, images):
    from .data.splits import make_split

    fractions = tuple(float(f) for f in args.fractions.split(","))
    return make_split(images, args.protocol, seed=args.seed, fractions=fractions)


def cmd_data_summary(args) -> int:
    from .data.splits import split_summary

    images = _load(args)
    print(images)
    split = _split(args, images)
    summary = split_summary(split, images.classes)
    print(f"\n{args.protocol} split (seed {args.seed}); no lesion is in two splits:")
    print(summary.to_string())
    print(f"\ntotals:\n{summary.groupby(level='split', sort=False).sum().to_string()}")
    return 0


def cmd_data_split(args) -> int:
    from .data.splits import split_summary, write_split

    images = _load(args)
    split = _split(args, images)
    path = write_split(split, args.out)
    print(split_summary(split, images.classes).to_string())
    print(f"wrote {len(split)} rows to {path}")
    return 0


def cmd_data_prepare(args) -> int:
    from .data.cache import prepare_images

    images = _load(args)
    start = time.perf_counter()
    prepared = prepare_images(images, args.size, cache_dir=args.cache_dir, skip_unreadable=args.skip_unreadable,
                              progress=not args.quiet)
    print(prepared)
    print(f"built in {prepared.seconds_to_build:.1f} s when first prepared; this call took "
          f"{time.perf_counter() - start:.1f} s")
    return 0


def cmd_data_download(args) -> int:
    from .data.download import download_ham10000, download_isic2017
    from .data.ham10000 import DATA_ENV, DEFAULT_DATA_DIR
    from .data.labelled_folders import ISIC2017_DEFAULT_DIR, ISIC2017_ENV

    if args.dataset == "isic2017":
        target = Path(args.data_dir) if args.data_dir else ISIC2017_DEFAULT_DIR
        download_isic2017(target, progress=not args.quiet, base_url=args.base_url, overwrite=args.overwrite)
        print(f"ISIC 2017 Part 3 (validation and test) is in {target}, its content verified; evaluate on it with "
              f"--external {target}, and set {ISIC2017_ENV}={target}")
        return 0
    target = Path(args.data_dir) if args.data_dir else DEFAULT_DATA_DIR
    download_ham10000(target, progress=not args.quiet, base_url=args.base_url)
    print(f"HAM10000 is in {target}, its content verified; use it with --data-dir {target} or {DATA_ENV}={target}")
    return 0


def cmd_data_import(args) -> int:
    from .data.labelled_folders import IMPORTERS

    counts = IMPORTERS[args.dataset](args.folder, args.out, overwrite=args.overwrite)
    left_out = counts.pop("left_out", {})
    print(f"{args.dataset}: wrote {sum(counts.values())} images to {args.out}: "
          + ", ".join(f"{code} {n}" for code, n in counts.items()))
    if left_out:
        print(f"left out {sum(left_out.values())} image(s), a diagnosis outside the classes pskin imports: "
              + ", ".join(f"{diagnosis} {n}" for diagnosis, n in left_out.items()))
    return 0


def cmd_data_demo(args) -> int:
    from .data.demo import make_demo_dataset

    path = make_demo_dataset(Path(args.out), n_lesions=args.lesions, seed=args.seed, overwrite=args.overwrite)
    print(f"wrote the synthetic demo set to {path}")
    return 0


def _parse_value(text: str, annotation: str):
    """Turn a flag's text into the type its TrainConfig field declares (tuples are comma-separated)."""
    if "tuple" in annotation:
        items = [t.strip() for t in text.split(",") if t.strip()]
        return tuple(float(t) for t in items) if "float" in annotation else tuple(items)
    if text.lower() == "none" and "None" in annotation:
        return None
    for kind in (int, float):
        if annotation.startswith(kind.__name__):
            try:
                return kind(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
    return text


def _shown(value) -> str:
    """A default as it is typed on the command line: ``none``, ``true``/``false``, comma-separated items."""
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value) if value != "" else "''"


def _flag_help(field: dataclasses.Field, more: str = "") -> str:
    """A TrainConfig field's help (written once, beside the field), ``more``, then its default; ``%`` escaped for
    argparse."""
    return f"{field.metadata.get('help', '')}{more} (default: {_shown(field.default)})".replace("%", "%%")


def _metavar(field: dataclasses.Field) -> str:
    """What a flag's value looks like: its choices, N (an integer), X (a number), comma-separated items, or a
    word from its name (``data_dir``: DIR)."""
    annotation = str(field.type)
    if field.metadata.get("choices"):
        return "{" + ",".join(field.metadata["choices"]) + "}"
    if annotation.startswith("tuple"):
        return "X,X,..." if "float" in annotation else "A,B,..."
    return {"int": "N", "float": "X"}.get(annotation.split(" ")[0], field.name.split("_")[-1].upper())


def _add_config_arguments(parser: argparse.ArgumentParser) -> dict[str, argparse._ArgumentGroup]:
    """One flag per TrainConfig field, so every parameter can be set from the command line, each with the help and
    in the group its field declares (pskinlib/train/config.py); returns the groups by name."""
    from .train.config import GROUPS, PROFILES, TrainConfig

    groups = {name: parser.add_argument_group(name, description) for name, description in GROUPS.items()}
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    groups["run"].add_argument("--profile", choices=list(PROFILES), default=fields["profile"].default,
                               metavar="NAME", help=_flag_help(fields["profile"], f"; one of {', '.join(PROFILES)}"))
    groups["run"].add_argument("--config", metavar="FILE",
                               help="YAML file of name: value pairs (profile: NAME picks its base); flags override it")
    for f in fields.values():
        if f.name == "profile":
            continue
        group, flag, annotation = groups[f.metadata.get("group", "run")], "--" + f.name.replace("_", "-"), str(f.type)
        if annotation.startswith("bool"):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, help=_flag_help(f))
        else:
            group.add_argument(flag, dest=f.name, type=lambda text, a=annotation: _parse_value(text, a),
                               metavar=_metavar(f), help=_flag_help(f))
    return groups


def _config_from_args(args):
    from .train.config import TrainConfig, load_yaml_config, make_config

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                 if f.name != "profile" and getattr(args, f.name, None) is not None}
    if args.config:
        return load_yaml_config(args.config, **({"profile": args.profile} if args.profile != "default" else {}),
                                **overrides)
    return make_config(args.profile, **overrides)


def _result_line(report: dict) -> str:
    """Accuracy, balanced accuracy with its bootstrap CI, and per-class recall of a metrics report."""
    ci = report["bootstrap"]["balanced_accuracy"]
    # A class with no image in the set has no recall (None): nothing was there to find.
    recalls = ", ".join(f"{code} " + ("(no image)" if v["recall"] is None else f"{v['recall']:.3f}")
                        for code, v in report["per_class"].items())
    return (f"accuracy {report['accuracy']:.3f}, balanced accuracy {report['balanced_accuracy']:.3f} "
            f"(95% CI {ci['low']:.3f}-{ci['high']:.3f}); recall {recalls}")


def cmd_train(args) -> int:
    from .io import make_folder
    from .runs import RunRecord, default_runs_dir
    from .train.trainer import resume, train

    if args.print_config:
        config = RunRecord.open(args.resume).config if args.resume else _config_from_args(args)
        print(f"# the parameters {'of the run ' + args.resume if args.resume else 'a run would use'}, resolved and "
              "validated; saved to a file, `pskin train --config FILE` trains with them")
        print(config.to_yaml(), end="")
        return 0
    if args.resume:
        run_dir = resume(args.resume)
    else:
        config = _config_from_args(args)
        # Made before the data is read: a folder that cannot be made fails at once, not after preparing the images.
        runs_dir = make_folder(args.runs_dir or default_runs_dir(), "--runs-dir")
        run_dir = train(config, runs_dir=runs_dir)
    run = RunRecord.open(run_dir)
    metrics = run.metrics
    print(f"run: {run.path}")
    print(f"best epoch {metrics['best_epoch']} (by validation {metrics['select_metric']}); test: "
          + _result_line(metrics["test"]))
    if metrics.get("stopped"):
        print(metrics["stopped"])
    if metrics.get("warning"):
        print(f"WARNING: {metrics['warning']}")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate.external_validation import SENSITIVITIES, evaluate_external
    from .evaluate.image_folder import evaluate_folder, left_out_lines
    from .info import CLASSES, MELANOMA

    if args.external:
        if args.images or args.labels or args.metadata or args.out:
            raise_usage("evaluate: --external takes labelled folders and records the result in the run (name it "
                        "with --name); leave out --images, --labels, --metadata and --out.")
        metrics = evaluate_external(args.run_dir, args.external, name=args.name or "external", device=args.device,
                                    tta_views=args.tta_views)
        target = f"{SENSITIVITIES[0]:.0%}"  # the operating points are keyed as the thresholds are named
        for group, report in metrics["groups"].items():
            line = f"{group}: {report['n']} images, {_result_line(report)}"
            point = report.get("melanoma_operating_points", {}).get(target)
            if point is not None:
                line += (f"; {CLASSES[MELANOMA].name} at the HAM10000-validation threshold for {target} sensitivity: "
                         f"sensitivity {point['sensitivity']['estimate']:.3f}, specificity "
                         f"{point['specificity']['estimate']:.3f}")
            print(line)
    else:
        if not (args.images and args.labels):
            raise_usage("evaluate: give --images DIR --labels CSV, or --external DIR [DIR ...].")
        if args.name or args.tta_views:
            raise_usage("evaluate: --name and --tta-views go with --external; with --images the result goes to "
                        "--out (default: RUN_DIR/eval-<images folder name>).")
        metrics = evaluate_folder(args.run_dir, args.images, args.labels, out_dir=args.out, device=args.device,
                                  metadata=args.metadata)
        print(f"{metrics['n']} images: accuracy {metrics['accuracy']:.3f}, balanced accuracy "
              f"{metrics['balanced_accuracy']:.3f}")
    for line in left_out_lines(metrics):
        print(line)
    return 0


def raise_usage(message: str):
    from .errors import ParameterError

    raise ParameterError(message)


def cmd_predict(args) -> int:
    from .evaluate.predict import load_trained

    if any(v is not None for v in (args.age, args.sex, args.site)):
        from .evaluate.fusion import load_fused, patient_facts

        facts = patient_facts(len(args.images), age=args.age, sex=args.sex, site=args.site)
        fused = load_fused(args.run_dir, device=args.device)
        probs, classes = fused.predict(args.images, facts), fused.head.classes
        print("# with the patient's facts, through the run's fusion head (fusion-metadata/)")
    else:
        trained = load_trained(args.run_dir, device=args.device)
        probs, classes = trained.predict(args.images), trained.classes
    print("image\t" + "\t".join(classes) + "\tpredicted")
    for path, row in zip(args.images, probs):
        print(f"{path}\t" + "\t".join(f"{p:.4f}" for p in row) + f"\t{classes[row.argmax()]}")
    return 0


def cmd_fuse(args) -> int:
    from .evaluate.fusion import fuse_run
    from .runs import RunRecord

    out = fuse_run(args.run_dir, data_dir=args.data_dir, use_metadata=not args.image_only, device=args.device)
    metrics = RunRecord.open(args.run_dir).fusion(not args.image_only).metrics
    inputs = "image features + age, sex, body site" if metrics["use_metadata"] else "image features alone"
    print(f"fusion head on {inputs} (strength C={metrics['strength']}, chosen on validation "
          f"{metrics['select_metric']})")
    print(f"the run alone: test balanced accuracy {metrics['image_only_test_balanced_accuracy']:.3f}")
    for key in ("test", "test_by_lesion"):
        print(f"fused {key.replace('_', ' ')}: {_result_line(metrics[key])}")
    if metrics.get("synthetic"):
        print(f"WARNING: {SYNTHETIC_WARNING}")
    print(f"wrote {out}")
    return 0


def name_value(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` with VALUE read as YAML, so ``-p epochs=3`` gives an int and ``-p models=[a,b]`` a list."""
    import yaml

    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), yaml.safe_load(value)


def cmd_export(args) -> int:
    from .io import make_folder
    from .runs import RunRecord

    record = RunRecord.open(args.run_dir)
    print(f"exported to {record.export(make_folder(args.destination, 'destination')).path}")
    return 0


def cmd_ensemble(args) -> int:
    from .evaluate.ensemble import write_ensemble
    from .runs import EnsembleRecord

    out = write_ensemble(args.run_dirs, args.out)
    record = EnsembleRecord(out).summary
    for member in record["members"]:
        print(f"member {member['run']}: test balanced accuracy {member['test_balanced_accuracy']:.3f}")
    for key in ("test", "test_by_lesion"):
        print(f"ensemble {key.replace('_', ' ')}: {_result_line(record[key])}")
    print(f"wrote {out}")
    return 0


def cmd_bench(args) -> int:
    """``pskin bench``: the benchmarks live beside the package in the checkout's ``benchmarks/`` (they are not part
    of what ``pip install`` ships), so they are loaded from there, with their own arguments."""
    import importlib.util

    path = next((folder / "benchmarks" / "bench.py" for folder in (Path.cwd(), *Path.cwd().parents)
                 if (folder / "benchmarks" / "bench.py").is_file()), None)
    if path is None:
        raise_usage(f"bench: {Path.cwd()} is not inside a pskin checkout (no benchmarks/bench.py above it); run "
                    "pskin bench from the repository.")
    spec = importlib.util.spec_from_file_location("benchmarks.bench", path)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    parser = argparse.ArgumentParser(prog="pskin")
    bench.add_bench_parser(parser.add_subparsers(dest="command"))
    inner = parser.parse_args(["bench", *args.rest])
    return inner.func(inner)


def _command(commands, name: str, func, help: str, **kwargs) -> argparse.ArgumentParser:
    """Add the subcommand ``name``, run by ``func``."""
    parser = commands.add_parser(name, help=help, **kwargs)
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    from .data.cache import CACHE_ENV
    from .data.ham10000 import DATA_ENV, DEFAULT_DATA_DIR
    from .data.labelled_folders import IMPORTERS, ISIC2017_DEFAULT_DIR
    from .runs import RUNS_ENV
    from .train.config import TTA_VIEWS

    parser = argparse.ArgumentParser(prog="pskin", description="Pigmented skin lesion recognition on HAM10000.")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="the dataset: summary, split, prepare, download, demo")
    data_commands = data.add_subparsers(dest="data_command", required=True)

    summary = _command(data_commands, "summary", cmd_data_summary, "images, lesions and repeats per class and split")
    _add_data_arguments(summary)
    _add_split_arguments(summary)

    split = _command(data_commands, "split", cmd_data_split, "write a split as CSV (image_id,lesion_id,dx,split)")
    _add_data_arguments(split)
    _add_split_arguments(split)
    split.add_argument("--out", required=True, help="CSV file to write")

    prepare = _command(data_commands, "prepare", cmd_data_prepare, "decode and resize every image once into the cache")
    _add_data_arguments(prepare)
    prepare.add_argument("--size", type=int, default=128, help="image side in pixels")
    prepare.add_argument("--cache-dir", help=f"default: ${CACHE_ENV} or ~/.cache/pskin")
    prepare.add_argument("--skip-unreadable", action="store_true", help="leave out images that do not decode")
    prepare.add_argument("--quiet", action="store_true")

    download = _command(data_commands, "download", cmd_data_download,
                        "fetch HAM10000 (ISIC 2018 Task 3) or ISIC 2017 Part 3")
    download.add_argument("dataset", nargs="?", choices=list(DOWNLOAD_SOURCES), default="ham10000")
    download.add_argument("--data-dir", help=f"target folder (default: {DEFAULT_DATA_DIR}, {ISIC2017_DEFAULT_DIR})")
    download.add_argument("--overwrite", action="store_true", help="replace an earlier labelled folder (isic2017)")
    download.add_argument("--base-url", help="mirror to download from instead of the official one")
    download.add_argument("--quiet", action="store_true")

    import_ = _command(data_commands, "import", cmd_data_import,
                       "turn PH2 or derm7pt, as unpacked, into a labelled folder")
    import_.add_argument("dataset", choices=list(IMPORTERS))
    import_.add_argument("folder", help="the official distribution, unpacked")
    import_.add_argument("--out", required=True, help="the labelled folder to write (labels.csv and images/)")
    import_.add_argument("--overwrite", action="store_true", help="replace an earlier labelled folder in --out")

    demo = _command(data_commands, "demo", cmd_data_demo, "write the synthetic demo set (not real data)")
    demo.add_argument("--out", required=True)
    demo.add_argument("--lesions", type=int, default=600)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--overwrite", action="store_true", help="replace an earlier demo set in --out")

    train = _command(commands, "train", cmd_train, "train a model and write its run folder",
                     usage="pskin train [--profile NAME] [--config FILE] [--PARAMETER VALUE ...] [--print-config] "
                           "[--runs-dir RUNS_DIR] [--resume RUN_DIR]",
                     description="Train a model and write its run folder. Each flag sets the TrainConfig parameter "
                                 "of the same name (pskinlib/train/config.py); the defaults shown are the default "
                                 "profile's, which --profile and --config change: --print-config shows the values "
                                 "a run would use.")
    run = _add_config_arguments(train)["run"]
    run.add_argument("--print-config", action="store_true",
                     help="print the resolved, validated parameters as YAML (a file --config reads back) and exit, "
                          "reading no data; with --resume, the run's own")
    run.add_argument("--runs-dir", help=f"where run folders go (default: ${RUNS_ENV} or runs/)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run with its recorded parameters")

    evaluate = _command(commands, "evaluate", cmd_evaluate, "evaluate a trained run on labelled images from anywhere")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--external", nargs="+", metavar="DIR",
                          help="labelled folders (labels.csv with image_id,dx,source_dataset and images/): per "
                               "source and pooled, with intervals, calibration and melanoma operating points")
    evaluate.add_argument("--name", help="the evaluation's name in the run (default: external)")
    evaluate.add_argument("--tta-views", choices=TTA_VIEWS,
                          help="with --external: predict with these test-time views instead of the run's own")
    evaluate.add_argument("--images", help="folder of <image_id>.jpg/.png files, any size")
    evaluate.add_argument("--labels", help="CSV with columns image_id,dx")
    evaluate.add_argument("--out", help="default: RUN_DIR/eval-<images folder name>")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--metadata", action="store_true",
                          help="use the run's fusion head (pskin fuse) with the CSV's age,sex,localization columns")

    predict = _command(commands, "predict", cmd_predict, "print class probabilities for image files")
    predict.add_argument("run_dir")
    predict.add_argument("images", nargs="+")
    predict.add_argument("--device", default="auto")
    predict.add_argument("--age", type=float, help="patient's age in years (uses the fusion head)")
    predict.add_argument("--sex", help=f"{' or '.join(SEXES)} (uses the fusion head)")
    predict.add_argument("--site", help="body site as HAM10000 spells it, e.g. back, face, "
                         "'lower extremity' (uses the fusion head)")

    export = _command(commands, "export", cmd_export, "copy a run record without checkpoints (e.g. into book/results)")
    export.add_argument("run_dir")
    export.add_argument("destination")

    ensemble = _command(commands, "ensemble", cmd_ensemble, "average the predictions of runs trained on the same split")
    ensemble.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    ensemble.add_argument("--out", required=True, help="folder for the ensemble's predictions and ensemble.json")

    fuse = _command(commands, "fuse", cmd_fuse, "refit a run's head on its image features plus age, sex and body site")
    fuse.add_argument("run_dir")
    fuse.add_argument("--data-dir", help=f"HAM10000 folder (default: the run's, or ${DATA_ENV})")
    fuse.add_argument("--image-only", action="store_true",
                      help="refit on the image features alone (the control for what the metadata adds)")
    fuse.add_argument("--device", default="auto")

    _command(commands, "bench", cmd_bench, "run the CPU benchmarks (from a checkout's benchmarks/) into "
             "book/results/benchmarks.json; pskin bench --help for its flags", add_help=False)

    return parser


def main(argv: list[str] | None = None) -> int:
    from .errors import PskinError

    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command != "bench" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    try:
        return args.func(args)
    except PskinError as exc:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        # Users get the message, not a traceback: every such error names the file or parameter at fault.
        print(f"pskin: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
