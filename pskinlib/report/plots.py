"""The book's figures: each function takes plain data (tables, run folders) and returns a matplotlib Figure.

Notebooks call these so that a chapter is a sequence of questions, calls and figures, not plotting code.
Colours and names of the classes come from :mod:`pskinlib.info`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..data.ham10000 import LesionImages, load_image
from ..info import CLASSES, class_colours


def sample_grid(images: LesionImages, per_class: int = 6, seed: int = 0) -> plt.Figure:
    """A few randomly chosen images of each class, one row per class."""
    rng = np.random.default_rng(seed)
    classes = images.classes
    fig, axes = plt.subplots(len(classes), per_class, figsize=(1.9 * per_class, 1.6 * len(classes)),
                             squeeze=False)
    for row, code in enumerate(classes):
        paths = images.table.loc[images.table["dx"] == code, "path"].to_numpy()
        chosen = rng.choice(paths, size=min(per_class, len(paths)), replace=False)
        for col in range(per_class):
            ax = axes[row, col]
            ax.axis("off")
            if col < len(chosen):
                ax.imshow(load_image(chosen[col]))
        axes[row, 0].set_title(CLASSES[code].name, loc="left", fontsize=10, color=CLASSES[code].colour)
    fig.tight_layout()
    return fig


def count_bars(counts: pd.Series, title: str, ax=None) -> plt.Figure:
    """Bars of a count per class code (index), coloured by class."""
    ax = ax or plt.subplots(figsize=(6, 3))[1]
    codes = list(counts.index)
    ax.bar([CLASSES[c].name for c in codes], counts.to_numpy(), color=class_colours(codes))
    for i, value in enumerate(counts.to_numpy()):
        ax.annotate(f"{value:,}", (i, value), ha="center", va="bottom", fontsize=9)
    ax.set_title(title)
    ax.set_ylabel("images")
    ax.tick_params(axis="x", labelrotation=20)
    ax.figure.tight_layout()
    return ax.figure


def learning_curves(history: pd.DataFrame, classes: tuple[str, ...], title: str = "") -> plt.Figure:
    """Loss, accuracy and balanced accuracy per epoch on training and validation — the paper's Figure 3 shows the
    average accuracy per epoch."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    epochs = history["epoch"]
    for split, style in (("train", "--"), ("val", "-")):
        axes[0].plot(epochs, history[f"{split}_loss"], style, label=split)
        axes[1].plot(epochs, history[f"{split}_accuracy"], style, label=f"{split} accuracy")
        axes[1].plot(epochs, history[f"{split}_balanced_accuracy"], style, label=f"{split} balanced accuracy")
    for code in classes:
        axes[2].plot(epochs, history[f"val_recall_{code}"], color=CLASSES[code].colour, label=CLASSES[code].name)
    axes[0].set_title("loss")
    axes[1].set_title("accuracy (plain and balanced)")
    axes[2].set_title("validation recall per class")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    axes[1].set_ylim(0, 1)
    axes[2].set_ylim(0, 1)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix(confusion, classes: tuple[str, ...], title: str = "", ax=None) -> plt.Figure:
    """Confusion matrix with counts and row percentages (rows: true class, columns: predicted)."""
    confusion = np.asarray(confusion)
    ax = ax or plt.subplots(figsize=(4.6, 3.8))[1]
    share = confusion / confusion.sum(axis=1, keepdims=True).clip(min=1)
    labels = np.array([[f"{n}\n{p:.0%}" for n, p in zip(r, s)] for r, s in zip(confusion, share)])
    names = [CLASSES[c].name.replace(" ", "\n", 1) for c in classes]
    sns.heatmap(share, annot=labels, fmt="", cmap="Blues", vmin=0, vmax=1, cbar=False, ax=ax,
                xticklabels=names, yticklabels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    ax.figure.tight_layout()
    return ax.figure


def per_class_bars(table: pd.DataFrame, value: str = "recall", group: str = "run", title: str = "") -> plt.Figure:
    """Grouped bars of one per-class metric (the paper's Figure 4 shows per-class accuracy, i.e. recall).

    ``table`` has columns ``group``, ``class`` (code), ``value`` and optionally ``low``/``high`` (a CI)."""
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * table[group].nunique() * table["class"].nunique() / 2), 3.6))
    groups = list(dict.fromkeys(table[group]))
    codes = list(dict.fromkeys(table["class"]))
    width = 0.8 / len(groups)
    palette = sns.color_palette("colorblind", len(groups))
    for g, name in enumerate(groups):
        part = table[table[group] == name].set_index("class").reindex(codes)
        x = np.arange(len(codes)) + (g - (len(groups) - 1) / 2) * width
        errors = None
        if {"low", "high"} <= set(part.columns):
            errors = np.vstack([part[value] - part["low"], part["high"] - part[value]]).clip(min=0)
        ax.bar(x, part[value], width, yerr=errors, capsize=2, label=name, color=palette[g])
    ax.set_xticks(np.arange(len(codes)), [CLASSES[c].name for c in codes])
    ax.set_ylim(0, 1)
    ax.set_ylabel(value)
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=min(4, len(groups)), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    return fig


def save(fig: plt.Figure, path: str | Path) -> Path:
    """Save a figure as PNG (for results committed beside the book)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
