"""The book's figures: each function takes plain data (tables, run folders) and returns a matplotlib Figure.

Notebooks call these so that a chapter is a sequence of questions, calls and figures, not plotting code.
Colours and names of the classes come from :mod:`pskinlib.info`.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from pskinlib.data.ham10000 import LesionImages, load_image
from pskinlib.info import CLASSES, class_colours, class_names


def _finished(fig: plt.Figure, rect=None) -> plt.Figure:
    """Laid out and closed to pyplot: a chapter shows it once, where it glues it (a returned figure still displays)."""
    fig.tight_layout(rect=rect)
    plt.close(fig)
    return fig


def sample_grid(images: LesionImages, per_class: int = 6, seed: int = 0) -> plt.Figure:
    """A few randomly chosen images of each class, one row per class."""
    rng = np.random.default_rng(seed)
    classes = images.classes
    fig, axes = plt.subplots(len(classes), per_class, figsize=(1.9 * per_class, 1.6 * len(classes)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for row, code in enumerate(classes):
        paths = images.table.loc[images.table["dx"] == code, "path"].to_numpy()
        chosen = rng.choice(paths, size=min(per_class, len(paths)), replace=False)
        for ax, path in zip(axes[row], chosen):
            ax.imshow(load_image(path))
        axes[row, 0].set_title(CLASSES[code].name, loc="left", fontsize=10, color=CLASSES[code].colour)
    return _finished(fig)


def count_bars(counts: pd.Series, title: str, ax=None) -> plt.Figure:
    """Horizontal bars of a count per class code (index), coloured by class, largest on top: the class names sit
    one under the other, so long ones cannot run into each other."""
    codes = list(counts.index)
    ax = ax or plt.subplots(figsize=(7, 0.42 * len(codes) + 1.1))[1]
    bars = ax.barh(class_names(codes)[::-1], counts.to_numpy()[::-1], color=class_colours(codes)[::-1])
    ax.bar_label(bars, [f"{value:,}" for value in counts.to_numpy()[::-1]], fontsize=9, padding=3)
    ax.set_title(title, fontsize=10)
    ax.set(xlabel="images", ylabel="diagnosis")
    ax.set_xlim(0, counts.max() * 1.15)  # room for the largest bar's label
    return _finished(ax.figure)


def learning_curves(history: pd.DataFrame, classes: tuple[str, ...], title: str = "",
                    paper_average: float | None = None) -> plt.Figure:
    """Loss, plain and balanced accuracy per epoch on training and validation, and each class's validation recall:
    the paper's Figure 3 plots its average accuracy per epoch, and ``paper_average`` marks the value it reports."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    epochs = history["epoch"]
    for split, style in (("train", "--"), ("val", "-")):
        axes[0].plot(epochs, history[f"{split}_loss"], style, label=split)
        axes[1].plot(epochs, history[f"{split}_accuracy"], style, label=f"{split} accuracy")
        axes[1].plot(epochs, history[f"{split}_balanced_accuracy"], style, label=f"{split} balanced accuracy")
    if paper_average is not None:
        axes[1].axhline(paper_average, color="grey", ls=":", lw=1, label="paper: average accuracy")
    for code in classes:
        axes[2].plot(epochs, history[f"val_recall_{code}"], color=CLASSES[code].colour, label=CLASSES[code].name)
    for ax, name, unit in zip(axes, ("loss", "accuracy", "validation recall per class"),
                              ("cross-entropy (nats)", "fraction of images", "recall (fraction)")):
        ax.set_title(name, fontsize=10)
        ax.set(xlabel="epoch", ylabel=unit)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    axes[1].set_ylim(0, 1)
    axes[2].set_ylim(0, 1)
    if title:
        fig.suptitle(title, fontsize=11)
    return _finished(fig)


def confusion_matrix(confusion, classes: tuple[str, ...], title: str = "", ax=None) -> plt.Figure:
    """Confusion matrix with counts and row percentages (rows: true class, columns: predicted)."""
    confusion = np.asarray(confusion)
    ax = ax or plt.subplots(figsize=(4.6, 3.8))[1]
    share = confusion / confusion.sum(axis=1, keepdims=True).clip(min=1)
    labels = np.array([[f"{n}\n{p:.0%}" for n, p in zip(r, s)] for r, s in zip(confusion, share)])
    names = [textwrap.fill(CLASSES[c].name, 12) for c in classes]  # wrapped: long names overlap as columns
    sns.heatmap(share, annot=labels, fmt="", cmap="Blues", vmin=0, vmax=1, cbar=False, ax=ax,
                xticklabels=names, yticklabels=names)
    ax.tick_params(axis="both", labelrotation=0)
    ax.set(xlabel="predicted class", ylabel="true class")
    ax.set_title(title or "confusion matrix (counts and share of each true class)", fontsize=10)
    return _finished(ax.figure)


def _class_bars(ax, table: pd.DataFrame, value: str, group: str, paper_average: float | None) -> None:
    """Grouped bars of ``value`` per class on ``ax``, one colour per ``group``, with intervals where the table has
    ``low``/``high``, and the paper's average as a dotted line."""
    groups = list(dict.fromkeys(table[group]))
    codes = list(dict.fromkeys(table["class"]))
    width = 0.8 / len(groups)
    palette = sns.color_palette("colorblind", len(groups))
    has_ci = {"low", "high"} <= set(table.columns)
    for g, name in enumerate(groups):
        part = table[table[group] == name].set_index("class").reindex(codes)
        x = np.arange(len(codes)) + (g - (len(groups) - 1) / 2) * width
        errors = np.vstack([part[value] - part["low"], part["high"] - part[value]]).clip(min=0) if has_ci else None
        ax.bar(x, part[value], width, yerr=errors, capsize=2, label=name, color=palette[g])
    if paper_average is not None:
        ax.axhline(paper_average, color="grey", ls=":", lw=1, label="paper: average accuracy")
    ax.set_xticks(np.arange(len(codes)), [textwrap.fill(CLASSES[c].name, 16) for c in codes])
    ax.set(xlabel="true class", ylabel=f"test {value} (fraction)", ylim=(0, 1))


def _legend_below(fig: plt.Figure, ax) -> plt.Figure:
    """The legend in a band of the figure below the axis labels, two entries a row, so long run names stay apart."""
    handles, labels = ax.get_legend_handles_labels()
    band = 0.03 + 0.06 * -(-len(labels) // 2)
    fig.legend(handles, labels, fontsize=8, ncol=min(2, len(labels)), loc="lower center", frameon=False)
    return _finished(fig, rect=(0, band, 1, 1))


def per_class_bars(table: pd.DataFrame, value: str = "recall", group: str = "run", title: str = "",
                   paper_average: float | None = None) -> plt.Figure:
    """Grouped bars of one per-class metric (the paper's Figure 4 shows per-class accuracy, i.e. recall, of its two
    procedures; ``paper_average`` marks the average it reports).

    ``table`` has columns ``group``, ``class`` (code), ``value`` and optionally ``low``/``high`` (a CI)."""
    fig, ax = plt.subplots(figsize=(min(10, max(6, 1.2 * table[group].nunique() * table["class"].nunique() / 2)),
                                    4.2))
    _class_bars(ax, table, value, group, paper_average)
    ax.set_title(title, fontsize=10)
    return _legend_below(fig, ax)


def per_class_panels(table: pd.DataFrame, panel: str, value: str = "recall", group: str = "run", title: str = "",
                     paper_average: float | None = None) -> plt.Figure:
    """:func:`per_class_bars` with one panel per value of the ``panel`` column (e.g. one per network), the groups
    in the same colours in every panel."""
    panels = list(dict.fromkeys(table[panel]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 0.6, 4.4), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], panels):
        _class_bars(ax, table[table[panel] == name], value, group, paper_average)
        ax.set_title(name, fontsize=10)
    fig.suptitle(title, fontsize=10)
    return _legend_below(fig, axes[0][0])


def save(fig: plt.Figure, path: str | Path) -> Path:
    """Save a figure as PNG (for results committed beside the book)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def interval_dots(table: pd.DataFrame, label: str, value: str, low: str, high: str, *, marks: dict | None = None,
                  xlabel: str = "test balanced accuracy (95 % bootstrap interval)") -> plt.Figure:
    """One dot with its interval per row of ``table`` (labelled by ``label``), and vertical lines at ``marks``
    ({text: value}: the paper's figure, the majority baseline, an anchor)."""
    longest = max((len(str(text)) for text in table[label]), default=0)
    # wide enough that long run labels leave the axes most of the figure
    fig, ax = plt.subplots(figsize=(max(8.0, 5.0 + 0.07 * longest), 0.32 * len(table) + 1.6))
    y = np.arange(len(table))[::-1]
    errors = np.vstack([table[value] - table[low], table[high] - table[value]]).clip(min=0)
    ax.errorbar(table[value], y, xerr=errors, fmt="o", capsize=3, color="#1f4e79")
    ax.set_yticks(y, table[label])
    palette = sns.color_palette("colorblind", len(marks or {}))
    for colour, (text, where) in zip(palette, (marks or {}).items()):
        ax.axvline(where, ls="--", lw=1, color=colour, label=text)
    ax.set(xlabel=xlabel, xlim=(0, 1))
    if marks:
        # above the axes: inside, the box would hide the dots near 1
        ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(marks), frameon=False)
    return _finished(fig)


def epoch_curves(histories: dict[str, pd.DataFrame], column: str = "val_balanced_accuracy", *,
                 marks: dict | None = None, title: str = "",
                 ylabel: str = "validation balanced accuracy (fraction)") -> plt.Figure:
    """One curve of ``column`` per epoch for each run ({label: history table}), with horizontal lines at ``marks``
    ({text: value}, e.g. a figure the paper reports)."""
    return epoch_panels(histories, {column: ylabel}, marks=marks, title=title)


def epoch_panels(histories: dict[str, pd.DataFrame], columns: dict[str, str], *, marks: dict | None = None,
                 title: str = "") -> plt.Figure:
    """One panel per history column ({column: what it measures}), one curve per run ({label: history table}) in
    the same colour in every panel, with horizontal lines at ``marks`` ({text: value}). Long runs get lines without
    markers. With one column the panel's axis says what it measures; with several, each panel's title does."""
    fig, axes = plt.subplots(1, len(columns), figsize=(7 if len(columns) == 1 else 5.2 * len(columns), 3.6),
                             sharey=True, squeeze=False)
    longest = max((len(h) for h in histories.values()), default=0)
    for ax, column in zip(axes[0], columns):
        for text, history in histories.items():
            ax.plot(history["epoch"], history[column], marker="o" if longest <= 30 else None, ms=3, lw=1.2,
                    label=text)
        for text, where in (marks or {}).items():
            ax.axhline(where, color="grey", ls=":", label=text)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epoch", ylim=(0, 1))
    if len(columns) == 1:
        axes[0][0].set(ylabel=next(iter(columns.values())))
        axes[0][0].set_title(title, fontsize=10)
        axes[0][0].legend(fontsize=7)
        return _finished(fig)
    axes[0][0].set(ylabel="fraction")
    for ax, measure in zip(axes[0], columns.values()):
        ax.set_title(measure, fontsize=10)
    fig.suptitle(title, fontsize=10)
    return _legend_below(fig, axes[0][0])


def reliability_diagram(groups: dict[str, list[dict]], title: str = "") -> plt.Figure:
    """Accuracy against confidence per confidence bin (the bins of ``metrics.reliability_bins``), one line per
    group; the diagonal is perfect calibration."""
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":", label="calibrated")
    for name, bins in groups.items():
        points = [(b["confidence"], b["accuracy"]) for b in bins if b["n"]]
        ax.plot(*zip(*points), marker="o", ms=3, label=name)
    ax.set(xlabel="confidence (largest probability)", ylabel="accuracy in the bin (fraction)", xlim=(0, 1), ylim=(0, 1))
    ax.set_title(title or "reliability", fontsize=10)
    ax.legend(fontsize=7)
    return _finished(fig)


def patients(images: LesionImages) -> plt.Figure:
    """Age at diagnosis (density per class) and sex (share of each class's images), side by side."""
    named = images.table.assign(diagnosis=images.table["dx"].map(lambda c: CLASSES[c].name))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    sns.histplot(named, x="age", hue="diagnosis", element="step", stat="density", common_norm=False, bins=18,
                 palette=class_colours(images.classes), hue_order=class_names(images.classes), ax=axes[0])
    axes[0].set_title("age at diagnosis", fontsize=10)
    axes[0].set(xlabel="age (years)", ylabel="density")
    pd.crosstab(named["diagnosis"], named["sex"], normalize="index").plot.barh(stacked=True, ax=axes[1])
    axes[1].set_title("sex, as a share of each class", fontsize=10)
    axes[1].set_xlabel("share of the class's images")
    return _finished(fig)


def shift_bars(shift: pd.DataFrame) -> plt.Figure:
    """Two panels of a ``data.statistics.shift_table``: the light's chromaticity per collection (1/3 each is
    neutral) and the corner-to-centre brightness (vignetting)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    by_source = shift.set_index("source_dataset")
    light = by_source[["light_r", "light_g", "light_b"]].rename(columns={"light_r": "red", "light_g": "green",
                                                                        "light_b": "blue"})
    light.plot.bar(ax=axes[0], color=["#c44", "#4a4", "#44c"], xlabel="", ylabel="light chromaticity (fraction)")
    axes[0].axhline(1 / 3, color="grey", ls=":", lw=1)
    axes[0].set_ylim(0, max(0.5, float(light.to_numpy().max()) * 1.35))  # room above the bars for the legend
    axes[0].legend(ncol=3, fontsize=8, loc="upper center", frameon=False)
    axes[0].set_title("the colour of the light", fontsize=10)
    by_source["corner_ratio"].plot.bar(ax=axes[1], color="#777", xlabel="", ylabel="corner / centre brightness")
    axes[1].set_title("vignetting", fontsize=10)
    return _finished(fig)


def placeholder(text: str = "not measured in this build") -> plt.Figure:
    """A small figure that says why a chapter has no figure here (a glued figure must exist for the page)."""
    fig, ax = plt.subplots(figsize=(6, 0.6))  # with an axes: IPython renders a figure without one as text
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, color="#666", transform=ax.transAxes)
    plt.close(fig)  # as _finished, but not laid out: there are no labels to make room for
    return fig


def thumbnail_rows(rows: dict[str, list], per_row: int) -> plt.Figure:
    """One row of thumbnails per label: ``{label: [(pixels or None, caption), ...]}`` (at most ``per_row`` each),
    the label above the row's first image; a row without images says so, an image that could not be read is
    left blank with its caption."""
    fig, axes = plt.subplots(len(rows), per_row, figsize=(1.75 * per_row, 1.75 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for axes_row, (label, cells) in zip(axes, rows.items()):
        axes_row[0].set_title(label, loc="left", fontsize=9, fontweight="bold")
        if not cells:
            axes_row[0].text(0, 0.5, "no image", fontsize=9, color="#666", transform=axes_row[0].transAxes)
        for ax, (pixels, caption) in zip(axes_row, cells[:per_row]):
            if pixels is not None:
                ax.imshow(pixels)
            ax.text(0.5, -0.04, caption, ha="center", va="top", fontsize=7, transform=ax.transAxes)
    return _finished(fig)
