"""The measured experiments whose records the book shows (see README.md). Run each from the checkout's root as a
module, e.g. ``python -m experiments.quality_bar --help``; they use pskinlib's public API only."""
