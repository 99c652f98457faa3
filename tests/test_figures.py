"""The book's figures lay their labels out so that none overlaps another: tick labels, titles and legends are checked
by their drawn extents on figures made with the longest class names."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg

from book import figures
from pskinlib.info import ALL_CLASSES, PAPER_CLASSES


def _overlaps(fig) -> list[str]:
    """Pairs of visible, non-empty texts of each axes (tick labels, axis labels, title) whose drawn boxes overlap."""
    canvas = FigureCanvasAgg(fig)  # the chapters' figures are closed to pyplot: draw them on a canvas of their own
    canvas.draw()
    renderer = canvas.get_renderer()
    found = []
    for ax in fig.axes:
        texts = [t for t in (*ax.get_xticklabels(), *ax.get_yticklabels(), ax.xaxis.label, ax.yaxis.label, ax.title)
                 if t.get_visible() and t.get_text().strip()]
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
        found += [f"{a!r} and {b!r}" for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2)
                  if box_a.overlaps(box_b)]
    return found


def test_the_data_chapter_s_counts_of_all_seven_diagnoses_do_not_overlap():
    counts = pd.Series(np.arange(7, 0, -1) * 1000, index=list(ALL_CLASSES))
    assert _overlaps(figures.count_bars(counts, "Images per diagnosis, all seven classes")) == []


def test_the_confusion_matrix_and_the_recall_bars_do_not_overlap():
    confusion = np.array([[50, 30, 20], [10, 700, 40], [15, 25, 90]])
    assert _overlaps(figures.confusion_matrix(confusion, PAPER_CLASSES)) == []
    table = pd.DataFrame([{"run": f"resnet18 ({track}), {weights}", "class": code, "recall": 0.5, "low": 0.4,
                           "high": 0.6} for track in ("from scratch", "ImageNet-pretrained")
                          for weights in ("none", "inverse") for code in PAPER_CLASSES])
    assert _overlaps(figures.per_class_bars(table, title="recall per class", paper_average=0.65)) == []


def test_the_interval_dots_of_many_labelled_runs_do_not_overlap():
    labels = [f"reference external: method {i}, split {i % 3}" for i in range(12)]
    table = pd.DataFrame({"label": labels, "value": np.linspace(0.4, 0.8, 12), "low": np.linspace(0.35, 0.75, 12),
                          "high": np.linspace(0.45, 0.85, 12)})
    assert _overlaps(figures.interval_dots(table, "label", "value", "low", "high", marks={"the paper": 0.65})) == []
