"""The ``pskin`` command line: one argument parser, one small function per command."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .info import PAPER_CLASSES


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None,
                        help="folder holding HAM10000 (default: $PSKIN_DATA, else data/ham10000)")
    parser.add_argument("--classes", default=",".join(PAPER_CLASSES),
                        help="comma-separated dx codes, or 'all' for the seven (default: mel,nv,bkl)")
    parser.add_argument("--skip-missing", action="store_true", help="leave out images absent from disk")


def _add_split_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", choices=["grouped", "paper"], default="grouped")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fractions", default="0.70,0.15,0.15", help="train,val,test fractions (grouped)")


def _load(args):
    from .data import load_ham10000

    return load_ham10000(args.data_dir, classes=args.classes, skip_missing=args.skip_missing)


def _split(args, images):
    from .splits import make_split

    fractions = tuple(float(f) for f in args.fractions.split(","))
    return make_split(images, args.protocol, seed=args.seed, fractions=fractions)


def cmd_data_summary(args) -> int:
    from .splits import split_summary

    images = _load(args)
    print(images)
    split = _split(args, images)
    summary = split_summary(split, images.classes)
    print(f"\n{args.protocol} split (seed {args.seed}); no lesion is in two splits:")
    print(summary.to_string())
    totals = summary.groupby(level="split", sort=False).sum()
    print("\ntotals:")
    print(totals.to_string())
    return 0


def cmd_data_split(args) -> int:
    from .splits import split_summary, write_split

    images = _load(args)
    split = _split(args, images)
    path = write_split(split, args.out)
    print(split_summary(split, images.classes).to_string())
    print(f"wrote {len(split)} rows to {path}")
    return 0


def cmd_data_prepare(args) -> int:
    from .cache import prepare_images

    images = _load(args)
    start = time.perf_counter()
    prepared = prepare_images(images, args.size, cache_dir=args.cache_dir, skip_unreadable=args.skip_unreadable,
                              progress=not args.quiet)
    print(prepared)
    print(f"built in {prepared.seconds_to_build:.1f} s when first prepared; this call took "
          f"{time.perf_counter() - start:.1f} s")
    return 0


def cmd_data_download(args) -> int:
    from .data import REPO_DATA_DIR
    from .download import download_ham10000

    target = Path(args.data_dir) if args.data_dir else REPO_DATA_DIR
    download_ham10000(target, progress=not args.quiet, base_url=args.base_url)
    print(f"HAM10000 is in {target}; use it with --data-dir {target} or PSKIN_DATA={target}")
    return 0


def cmd_data_demo(args) -> int:
    from .synthetic import make_demo_dataset

    path = make_demo_dataset(Path(args.out), n_lesions=args.lesions, seed=args.seed)
    print(f"wrote the synthetic demo set to {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pskin", description="Pigmented skin lesion recognition on HAM10000.")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="the dataset: summary, split, prepare, download, demo")
    data_commands = data.add_subparsers(dest="data_command", required=True)

    summary = data_commands.add_parser("summary", help="images, lesions and repeats per class and split")
    _add_data_arguments(summary)
    _add_split_arguments(summary)
    summary.set_defaults(func=cmd_data_summary)

    split = data_commands.add_parser("split", help="write a split as CSV (image_id,lesion_id,dx,split)")
    _add_data_arguments(split)
    _add_split_arguments(split)
    split.add_argument("--out", required=True, help="CSV file to write")
    split.set_defaults(func=cmd_data_split)

    prepare = data_commands.add_parser("prepare", help="decode and resize every image once into the cache")
    _add_data_arguments(prepare)
    prepare.add_argument("--size", type=int, default=128, help="image side in pixels")
    prepare.add_argument("--cache-dir", default=None, help="default: $PSKIN_CACHE or ~/.cache/pskin")
    prepare.add_argument("--skip-unreadable", action="store_true", help="leave out images that do not decode")
    prepare.add_argument("--quiet", action="store_true")
    prepare.set_defaults(func=cmd_data_prepare)

    download = data_commands.add_parser("download", help="fetch HAM10000 (ISIC 2018 Task 3) from its source")
    download.add_argument("--data-dir", default=None, help="target folder (default: data/ham10000)")
    download.add_argument("--base-url", default=None, help="mirror to download from instead of the official one")
    download.add_argument("--quiet", action="store_true")
    download.set_defaults(func=cmd_data_download)

    demo = data_commands.add_parser("demo", help="write the synthetic demo set (not real data)")
    demo.add_argument("--out", required=True)
    demo.add_argument("--lesions", type=int, default=600)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_data_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .data import DataError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (DataError, ValueError) as exc:
        # Users get the message, not a traceback: every such error names the file or parameter at fault.
        print(f"pskin: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
