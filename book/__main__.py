"""``python -m book``: make the book's runs, execute its chapters and render it (what ``make book`` runs).

A mistake of the user's (a bad parameter, missing data, a chapter that fails) ends in one line ``book: error: ...``
and exit code 2, as pskin's own command does; ``PSKIN_DEBUG=1`` shows the traceback too.
"""

from __future__ import annotations

import argparse
import os
import sys

from pskinlib.cli import DEBUG_ENV, name_value
from pskinlib.errors import PskinError


def build_parser() -> argparse.ArgumentParser:
    from .build import book_profiles

    parser = argparse.ArgumentParser(prog="python -m book", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=list(book_profiles()), default="quick",
                        help="smoke: CI minutes; quick: the default, 13 min on 2 CPU cores with BF16, about twice that "
                             "on 2 fp32-only cores; paper: the study, for a GPU (book/profiles.yaml)")
    parser.add_argument("--data-dir",
                        help="HAM10000 folder (default: $PSKIN_DATA, data/ham10000, else the synthetic demo set)")
    parser.add_argument("--runs-dir", help="where the chapters' runs go (default: runs/book/PROFILE)")
    parser.add_argument("--build-dir", help="where the HTML is built (default: _build)")
    parser.add_argument("-p", "--parameter", action="append", type=name_value, metavar="NAME=VALUE",
                        help="a notebook parameter for every chapter that declares it (repeatable)")
    parser.add_argument("--force", action="store_true", help="run every chapter, even unchanged ones")
    parser.add_argument("--screenshots", metavar="DIR",
                        help="then write a full-page PNG of each chapter at 1400 px into DIR (needs Chromium)")
    parser.add_argument("--warnings-are-errors", action="store_true", help="fail on any Sphinx warning")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A build lasts minutes: its lines reach a log file or a pipe (`make book | tee`) as they are written.
    sys.stdout.reconfigure(line_buffering=True)
    try:
        from .build import book_chapters, build_book, screenshot_book

        html = build_book(args.profile, data_dir=args.data_dir, parameters=dict(args.parameter or []),
                          runs_dir=args.runs_dir, build_dir=args.build_dir, force=args.force,
                          warnings_are_errors=args.warnings_are_errors)
        if args.screenshots:
            shots = screenshot_book(html, args.screenshots, book_chapters(args.profile, "DATA", "RUNS"))
            print(f"{len(shots)} screenshots at 1400 px in {args.screenshots}")
    except PskinError as exc:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        print(f"book: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
