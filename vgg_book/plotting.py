"""Figures for the training chapter: learning curves, confusion matrix, mistakes, throughput.

Every function draws on a matplotlib ``Axes`` (made if not given) and returns the figure, so a
notebook calls ``plt.show()`` and the command line saves the same figure to a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

__all__ = ["plot_history", "save_history_plot", "confusion_matrix", "plot_confusion",
           "show_misclassified", "plot_throughput", "save_figure", "plot_paper_errors"]


def _plt():
    import matplotlib

    if "MPLBACKEND" not in os.environ and not _in_notebook():
        matplotlib.use("Agg")  # the command line draws to files, never to a window
    import matplotlib.pyplot as plt
    return plt


def _in_notebook() -> bool:
    import sys
    return "ipykernel" in sys.modules


def plot_history(metrics: dict, axes=None, label: Optional[str] = None):
    """Two panels from a metrics dict: mean training loss, and train/test accuracy per epoch."""
    plt = _plt()
    epochs = metrics["epochs"]
    if not epochs:
        raise ValueError("the metrics hold no finished epoch yet: nothing to plot")
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3), dpi=100)
    fig = axes[0].figure
    x = [e["epoch"] for e in epochs]
    prefix = f"{label}: " if label else ""
    axes[0].plot(x, [e["train_loss"] for e in epochs], "o-", label=f"{prefix}train loss")
    axes[0].set(xlabel="epoch", ylabel="cross-entropy loss", title="training loss")
    axes[1].plot(x, [e["train_acc"] for e in epochs], "o-", label=f"{prefix}train")
    axes[1].plot(x, [e["test_acc"] for e in epochs], "s--", label=f"{prefix}test")
    axes[1].set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save_figure(fig, path) -> Path:
    """Save ``fig`` to ``path`` through a temp file and a rename (never half a PNG)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=path.suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_history_plot(metrics: dict, path) -> Path:
    """``plot_history`` saved as a PNG (used by ``python -m vgg_book.train``)."""
    fig = plot_history(metrics)
    try:
        return save_figure(fig, path)
    finally:
        _plt().close(fig)


def confusion_matrix(labels, preds, num_classes: int = 10) -> np.ndarray:
    """Counts ``[true class, predicted class]`` (int64): row i sums to the images of class i."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    if labels.shape != preds.shape:
        raise ValueError(f"labels {labels.shape} and predictions {preds.shape} differ in shape")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], ax=None):
    """The confusion matrix as a heat map, each row normalised to 1 (recall on the diagonal)."""
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.8), dpi=100)
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(ticks, class_names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true")
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            if cm[i, j]:
                ax.text(j, i, f"{rows[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if rows[i, j] > 0.5 else "black")
    ax.figure.colorbar(im, ax=ax, fraction=0.046)
    ax.figure.tight_layout()
    return ax.figure


def show_misclassified(images, labels, preds, class_names: Sequence[str], n: int = 12,
                       cols: int = 6):
    """The first ``n`` mistakes: each image titled 'true -> predicted'."""
    plt = _plt()
    images, labels, preds = np.asarray(images), np.asarray(labels), np.asarray(preds)
    wrong = np.flatnonzero(labels != preds)[:n]
    if len(wrong) == 0:
        raise ValueError("no misclassified images to show: every prediction is right")
    rows = -(-len(wrong) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), dpi=100,
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong):
        ax.imshow(images[i], cmap="gray_r")
        ax.set_title(f"{class_names[labels[i]]}\n-> {class_names[preds[i]]}", fontsize=7)
    fig.tight_layout()
    return fig


def plot_throughput(rows: Sequence[dict], ax=None, key: str = "images_per_s",
                    title: str = "training throughput"):
    """Horizontal bars of ``row[key]`` labelled ``row["name"]`` (e.g. a benchmark ablation)."""
    plt = _plt()
    rows = [r for r in rows if r.get(key) is not None]
    if not rows:
        raise ValueError(f"no row has a value for {key!r}: nothing to plot")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.45 * len(rows) + 1), dpi=100)
    y = np.arange(len(rows))
    ax.barh(y, [r[key] for r in rows], color="tab:blue")
    ax.set_yticks(y, [r["name"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel=key.replace("_", " ").replace(" per s", "/s"), title=title)
    ax.grid(axis="x", alpha=0.3)
    ax.figure.tight_layout()
    return ax.figure


def plot_paper_errors(ax=None, metric: str = "top1"):
    """The paper's Table 3: validation error against depth, one line per training scale.

    Lines join the plain 3x3 networks A, B, D, E; A-LRN and C (same depths as A and D) are
    unjoined hollow markers, so that a line never drops vertically between two networks.
    """
    from vgg_book.paper import TABLE3, weight_layers

    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.4), dpi=100)
    scales = {256: "S = 256", 384: "S = 384", (256, 512): "S jittered in [256, 512]"}
    for (scale, label), marker in zip(scales.items(), "os^"):
        rows = [r for r in TABLE3 if r.train == scale]
        plain = [r for r in rows if r.config in ("A", "B", "D", "E")]
        line, = ax.plot([weight_layers(r.config) for r in plain],
                        [getattr(r, metric) for r in plain], marker + "-", label=label)
        for r in rows:
            x, y = weight_layers(r.config), getattr(r, metric)
            if r not in plain:
                ax.plot([x], [y], marker, mfc="none", color=line.get_color())
            ax.annotate(r.config, (x, y), fontsize=7, xytext=(4, 2), textcoords="offset points")
    ax.set(xlabel="weight layers", ylabel=f"{metric} validation error (%)",
           title="Simonyan & Zisserman (2015), Table 3")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax.figure
