"""The book's figures: the VGG family, the paper's errors, learning curves, confusion matrix,
mistakes, throughput.

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
           "show_misclassified", "plot_throughput", "save_figure", "plot_paper_errors",
           "family_layout", "plot_family", "layer_costs", "plot_layer_costs",
           "activation_memory", "plot_activation_memory"]


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


def plot_experiment(result: dict, metric: str = "test_acc", arms: Optional[Sequence[str]] = None,
                    ax=None, title: Optional[str] = None):
    """A paired experiment (``vgg_book.experiments``): one column per arm, one dot per seed,
    and a grey line joining the dots of one seed, so that the eye follows the pairs."""
    plt = _plt()
    runs = result["runs"]
    arms = list(runs) if arms is None else list(arms)
    missing = [a for a in arms if a not in runs]
    if missing:
        raise ValueError(f"{result['experiment']} has no arm {', '.join(missing)}; it has: "
                         f"{', '.join(runs)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.4 * len(arms) + 2, 3), dpi=100)
    seeds = [r["seed"] for r in runs[arms[0]]]
    for i, seed in enumerate(seeds):
        ys = [runs[a][i][metric] for a in arms]
        ax.plot(range(len(arms)), ys, "-", color="0.75", lw=0.8, zorder=1)
        ax.scatter(range(len(arms)), ys, s=18, color="tab:blue", zorder=2,
                   label="one seed" if i == 0 else None)
    ax.set_xticks(range(len(arms)), arms, fontsize=8, rotation=15)
    ax.set(ylabel=metric.replace("_", " "), xlim=(-0.5, len(arms) - 0.5),
           title=title or f"{result['experiment']}: {len(seeds)} seeds, paired")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
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


# Colours of the five stages, by the side of the map a stage works on (input side 224).
_STAGE_COLOURS = ("#4c72b0", "#55a868", "#c9a227", "#dd8452", "#c44e52")


def family_layout(configs: Optional[dict] = None, input_size: int = 224) -> dict[str, list]:
    """Boxes for :func:`plot_family`, computed from ``models.CONFIGS``: {name: [box, ...]}.

    A box is a dict with ``kind`` ("conv3", "conv1", "lrn", "pool" or "fc"), ``x`` (left edge),
    ``width`` (channels / 64; 1 for an LRN, a pool or an FC layer), ``height`` (map side /
    input side; 1 for FC layers), ``channels``, ``side`` (map side the layer outputs) and
    ``stage`` (0-4, the pools passed before it; 5 for the FC head).
    """
    from vgg_book.models import CONFIGS, resolve_config

    configs = CONFIGS if configs is None else configs
    if input_size < 32:
        raise ValueError(f"input_size must be at least 32 (five pools halve it), got {input_size}")
    layouts = {}
    for name, config in configs.items():
        boxes, x, side, stage, channels = [], 0.0, input_size, 0, 3
        for item in resolve_config(config):
            if item == "M":
                side, kind, width = side // 2, "pool", 0.5
            elif item == "LRN":
                kind, width = "lrn", 0.5
            else:
                kind = "conv1" if isinstance(item, (tuple, list)) else "conv3"
                channels = item[1] if kind == "conv1" else item
                width = channels / 64
            boxes.append(dict(kind=kind, x=x, width=width, height=side / input_size,
                              channels=channels, side=side, stage=stage))
            x += width + 0.3
            stage += item == "M"
        for units in (4096, 4096, 1000):
            boxes.append(dict(kind="fc", x=x, width=1.0, height=1.0, channels=units, side=1,
                              stage=5))
            x += 1.3
        layouts[name] = boxes
    return layouts


def plot_family(configs: Optional[dict] = None, ax=None, input_size: int = 224):
    """The VGG family, one row per configuration, every layer a box drawn to scale.

    A convolution's width is its channels (64 per unit) and its height the side of the map it
    outputs, so each pool halves the height and each stage doubles the width up to 512. The
    colour is the stage; hatched boxes are C's 1x1 convolutions, thin grey boxes the pools,
    a red box A-LRN's local response normalisation, the three dark boxes the FC head.
    """
    from matplotlib.patches import Patch, Rectangle

    import torch

    from vgg_book.models import vgg

    plt = _plt()
    layouts = family_layout(configs, input_size)
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 0.7 * len(layouts) + 1.3), dpi=100)
    for row, (name, boxes) in enumerate(layouts.items()):
        y = -row * 1.25
        for b in boxes:
            colour = {"pool": "#bbbbbb", "lrn": "#7b3294", "fc": "#444444"}.get(
                b["kind"], _STAGE_COLOURS[min(b["stage"], 4)])
            ax.add_patch(Rectangle((b["x"], y - b["height"] / 2), b["width"], b["height"],
                                   facecolor=colour, edgecolor="white", linewidth=0.5,
                                   hatch="////" if b["kind"] == "conv1" else None))
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            params = sum(p.numel() for p in vgg(name).parameters())
        convs = sum(b["kind"].startswith("conv") for b in boxes)
        ax.text(-1, y, f"{name}\n{convs + 3} weight layers", ha="right", va="center", fontsize=9)
        ax.text(boxes[-1]["x"] + 1.6, y, f"{params / 1e6:.0f}M params", va="center", fontsize=9)
    width = max(b["x"] + b["width"] for boxes in layouts.values() for b in boxes)
    ax.set(xlim=(-8, width + 9), ylim=(-1.25 * len(layouts) + 0.5, 0.8), xticks=[], yticks=[])
    ax.set_title(f"The VGG family at {input_size}x{input_size}: width = channels, "
                 "height = map side", fontsize=11)
    for spine in ax.spines.values():
        spine.set_visible(False)
    sides = [input_size >> k for k in range(5)]
    handles = [Patch(color=c, label=f"{s}x{s} maps") for c, s in zip(_STAGE_COLOURS, sides)]
    handles += [Patch(facecolor="white", edgecolor="black", hatch="////", label="1x1 conv"),
                Patch(color="#bbbbbb", label="max-pool"), Patch(color="#7b3294", label="LRN"),
                Patch(color="#444444", label="FC layer")]
    ax.legend(handles=handles, ncol=5, fontsize=8, loc="upper center",
              bbox_to_anchor=(0.5, 0.0), frameon=False)
    ax.figure.tight_layout()
    return ax.figure


# Colours of the three costs, as in the accounting explorer (vgg_book/js/).
_COST_COLOURS = {"params": "#4c72b0", "macs": "#dd8452", "kept": "#55a868"}
_COST_LABELS = {"params": "parameters", "macs": "multiply-adds (MACs)",
                "kept": "memory kept for backward"}


def _network_name(config) -> str:
    """'VGG-16' for "D", 'VGG-11-LRN' for "A-LRN"; 'a VGG' for an explicit layer list."""
    from vgg_book.paper import TABLE1, weight_layers

    if isinstance(config, str) and config.upper() in TABLE1:
        key = config.upper()
        return f"VGG-{weight_layers(key)}" + ("-LRN" if key == "A-LRN" else "")
    return "a VGG"


def layer_costs(config="D", input_size: int = 224, by: str = "block") -> list[dict]:
    """What each part of a VGG costs, from ``vgg_book.accounting``: a list of groups in
    forward order, each ``{"name", "layers", "params", "macs", "kept_bytes"}``.

    ``by="block"`` makes one group per convolutional block ("block 1" ... "block 5") and one
    per FC layer ("fc6", "fc7", "fc8"); ``by="layer"`` one per weight layer, named as the
    paper does ("conv1_1" ... "fc8"). A group owns its weight layer(s) and every layer after
    them up to the next weight layer (ReLU, pools, dropout), so a block owns its max-pool.
    ``layers`` lists the leaf modules' names (``"features.0"``). ``params`` counts weights
    and biases; ``macs`` are multiply-adds for one ``input_size`` x ``input_size`` image,
    bias adds not counted (``FlopCounterMode``'s FLOPs / 2, torchvision's "GFLOPS");
    ``kept_bytes`` the float32 bytes autograd keeps for backward for one image
    (``training_memory``'s tensors, each given to the layer that first keeps it).
    """
    import torch

    from vgg_book.accounting import summary, training_memory
    from vgg_book.models import vgg

    if by not in ("block", "layer"):
        raise ValueError(f"by must be 'block' or 'layer', got {by!r}")
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = vgg(config)
    rows = summary(model, (3, input_size, input_size), count_bias=False).rows
    groups, where, block, conv, fc = [], {}, 1, 0, 5
    for r in rows:
        if r.type == "Conv2d":
            conv += 1
            name = f"block {block}" if by == "block" else f"conv{block}_{conv}"
        elif r.type == "Linear":
            fc += 1
            name = f"fc{fc}"
        else:
            name = None
        if name is not None and (not groups or groups[-1]["name"] != name):
            groups.append(dict(name=name, layers=[], params=0, macs=0, kept_bytes=0))
        group = groups[-1]
        group["layers"].append(r.name)
        group["params"] += r.params
        group["macs"] += r.macs
        where[r.name] = group
        if r.type == "MaxPool2d":
            block, conv = block + 1, 0
    for kept in training_memory(model, (3, input_size, input_size), 1).kept:
        where[kept.layer]["kept_bytes"] += kept.bytes
    return groups


def plot_layer_costs(config="D", input_size: int = 224, ax=None, by: str = "block",
                     quantities: Sequence[str] = ("params", "macs")):
    """Each group's share of the network's parameters and multiply-adds (and, with
    ``"kept"`` in ``quantities``, of the memory kept for backward), side by side.

    One cluster of bars per group of :func:`layer_costs` (``by`` "block" or "layer"); each
    bar is a percentage of its quantity's total, so bars of different units compare. For
    VGG-16 the weights sit in fc6 and the work in the convolutions.
    """
    plt = _plt()
    unknown = [q for q in quantities if q not in _COST_LABELS]
    if unknown or not quantities:
        raise ValueError(f"quantities must name some of {', '.join(_COST_LABELS)}, "
                         f"got {tuple(quantities)!r}")
    groups = layer_costs(config, input_size, by)
    if ax is None:
        # the width of the book's text column (about 690 px): shown at 1:1, not shrunk
        _, ax = plt.subplots(figsize=(6.9, 3.8), dpi=100)
    key = {"params": "params", "macs": "macs", "kept": "kept_bytes"}
    x = np.arange(len(groups))
    width = 0.8 / len(quantities)
    for j, q in enumerate(quantities):
        values = np.array([g[key[q]] for g in groups], dtype=float)
        shares = 100 * values / values.sum()
        offset = (j - (len(quantities) - 1) / 2) * width
        bars = ax.bar(x + offset, shares, width, color=_COST_COLOURS[q], label=_COST_LABELS[q])
        if by == "block":
            ax.bar_label(bars, [f"{s:.0f}%" if s >= 0.5 else "" for s in shares],
                         fontsize=8, padding=1)
    ax.set_xticks(x, [g["name"] for g in groups], fontsize=10,
                  rotation=0 if by == "block" else 60)
    ax.set_ylabel("share of the network's total (%)", fontsize=10)
    ax.tick_params(axis="y", labelsize=9)
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=10, loc="upper left", frameon=False)
    ax.set_title(f"{_network_name(config)} at {input_size}x{input_size}: which part costs "
                 "what", fontsize=11)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.figure.tight_layout()
    return ax.figure


def _bf16_checked(model) -> None:
    from torch import nn

    odd = sorted({type(m).__name__ for m in model.modules()
                  if isinstance(m, (nn.LocalResponseNorm, nn.BatchNorm2d))})
    if odd:
        raise ValueError(
            f"the bf16 autocast rule (every kept float tensor in 2 bytes) is checked for "
            f"plain VGGs only; this one has {', '.join(odd)} (LRN stays float32 under "
            "autocast). Measure it with vgg_book.accounting.saved_tensor_bytes instead")


def activation_memory(batch_sizes: Sequence[int] = range(1, 65), config="D",
                      input_size: int = 224, optimizer: str = "sgd-momentum",
                      **vgg_kwargs) -> dict:
    """Training memory of VGG ``config`` against the batch size, in float32 and under bfloat16
    autocast, from ``vgg_book.accounting.training_memory`` (bytes throughout).

    Returns ``fixed`` (weights, gradients and optimizer state, the same in both precisions:
    autocast keeps the weights in float32), ``kept_float32`` and ``kept_bf16`` (bytes autograd
    keeps per image: under autocast every kept float tensor takes 2 bytes a value, the
    max-pools' int64 indices stay 8), ``weight_copies`` (the bfloat16 copy of every conv and
    linear weight that autocast keeps, once per step), ``batch_sizes``, ``float32`` and
    ``bf16`` (totals per batch size), ``bf16_crossover`` (the first batch at which bf16 keeps
    less) and ``activations_crossover`` (the first batch at which the float32 activations
    reach the fixed part). ``vgg_kwargs`` go to ``vgg()`` (``width_ratio``, ``hidden``, ...);
    models with LRN or batch norm are refused (their kept tensors follow other rules).
    """
    import math

    import torch
    from torch import nn

    from vgg_book.accounting import training_memory
    from vgg_book.models import vgg

    batch_sizes = list(batch_sizes)
    if not batch_sizes or any(not isinstance(b, int) or isinstance(b, bool) or b < 1
                              for b in batch_sizes):
        raise ValueError(f"batch_sizes must be positive integers, got {batch_sizes!r}")
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = vgg(config, **vgg_kwargs)
    _bf16_checked(model)
    channels = model.in_channels
    one = training_memory(model, (channels, input_size, input_size), 1, optimizer=optimizer)
    fixed = one.weights + one.gradients + one.optimizer_state
    kept32 = one.activations
    kept16 = sum(t.bytes if t.what == "int64 indices" else t.bytes // 2 for t in one.kept)
    copies = 2 * sum(m.weight.numel() for m in model.modules()
                     if isinstance(m, (nn.Conv2d, nn.Linear)))
    return {
        "batch_sizes": batch_sizes, "fixed": fixed, "kept_float32": kept32,
        "kept_bf16": kept16, "weight_copies": copies,
        "float32": [fixed + b * kept32 for b in batch_sizes],
        "bf16": [fixed + copies + b * kept16 for b in batch_sizes],
        "bf16_crossover": copies // (kept32 - kept16) + 1,
        "activations_crossover": math.ceil(fixed / kept32),
    }


def plot_activation_memory(batch_sizes: Sequence[int] = range(1, 65), config="D",
                           input_size: int = 224, optimizer: str = "sgd-momentum", ax=None):
    """Memory of one training step against the batch size (GiB), in float32 and under
    bfloat16 autocast, from :func:`activation_memory`.

    The grey band is the fixed part (weights, gradients, optimizer state); the two lines add
    what autograd keeps for backward. Two dots mark the batch from which bf16 needs less and
    the batch at which the float32 activations overtake the fixed part.
    """
    plt = _plt()
    data = activation_memory(batch_sizes, config, input_size, optimizer)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.9, 4), dpi=100)  # the text column's width
    gib = 2 ** 30
    b = np.array(data["batch_sizes"])
    fixed = data["fixed"] / gib
    state = {"sgd": "no optimizer state", "sgd-momentum": "momentum",
             "adam": "Adam's two moments"}.get(optimizer, optimizer)
    ax.fill_between(b, 0, fixed, color="0.85", lw=0,
                    label=f"fixed part: weights, gradients, {state}")
    ax.plot(b, np.array(data["float32"]) / gib, color="#4c72b0", lw=2, label="float32")
    ax.plot(b, np.array(data["bf16"]) / gib, color="#dd8452", lw=2, label="bf16 autocast")
    top = max(data["float32"][-1], data["bf16"][-1]) / gib
    cross16 = data["bf16_crossover"]
    cross32 = data["activations_crossover"]
    marks = [(cross16, f"bf16 needs less\nfrom batch {cross16}", (8, -4), "left", "top"),
             (cross32, f"at batch {cross32} the float32\nactivations reach\nthe fixed part",
              (-6, 6), "right", "bottom")]
    for batch, text, offset, ha, va in marks:
        if b.min() <= batch <= b.max():
            y = fixed + batch * data["kept_float32"] / gib
            ax.plot([batch], [y], "o", color="0.2", ms=4, zorder=3)
            ax.annotate(text, (batch, y), xytext=offset, textcoords="offset points",
                        fontsize=9, ha=ha, va=va, color="0.2")
    ax.set(xlim=(b.min(), b.max()), ylim=(0, 1.05 * top), xlabel="batch size (images)",
           ylabel="GiB for one training step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9.5, loc="upper left", frameon=False)
    ax.set_title(f"{_network_name(config)} at {input_size}x{input_size}: training memory "
                 "against the batch", fontsize=11)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.figure.tight_layout()
    return ax.figure



# Figures drawn in other modules, gathered here so that every chapter draws its figures
# through ``vgg_book.plotting``: the stacks of chapter 2 and the architecture diagrams.
from vgg_book.widgets import draw_stack, plot_settings_grid  # noqa: E402
from vgg_book.diagrams import *  # noqa: E402,F401,F403
from vgg_book import diagrams as _diagrams  # noqa: E402

__all__ += ["draw_stack", "plot_settings_grid", *_diagrams.__all__]


# --------------------------------------------------------------------------------------
# Chapter 6: what a trained VGG sees (filters, feature maps, saliency, occlusion, class
# models). Images are drawn as the book draws Fashion-MNIST (``gray_r``: ink dark on white);
# signed maps on a diverging scale centred on zero, so that white means zero.
# --------------------------------------------------------------------------------------
#: The width of the book's text column, inches at dpi 100 (about 690 px, shown 1:1).
COLUMN_WIDTH = 6.8


def _array(x, dims: int, name: str) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=float)
    if a.ndim != dims:
        raise ValueError(f"{name} must have {dims} dimensions, got shape {list(a.shape)}")
    return a


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("0.75")


def _outline(ax, image: np.ndarray, colour: str = "0.25") -> None:
    """The garment's outline (where its pixels rise above 0), as a thin contour."""
    if (image > 0).any() and (image == 0).any():
        ax.contour((image > 0).astype(float), levels=[0.5], colors=colour, linewidths=0.7)


def plot_filters(filters, maps=None, titles: Optional[Sequence[str]] = None):
    """The first layer's 3x3 filters ``[C, 3, 3]``, one panel each on one diverging scale
    (red positive, blue negative), with each weight written in its cell; with ``maps``
    (``[C, H, W]``, e.g. conv1_1's output for one image) a second row shows what each filter
    makes of that image. ``titles``: one per filter (default: its number)."""
    plt = _plt()
    w = _array(filters, 3, "filters")
    c = len(w)
    titles = [f"filter {k}" for k in range(c)] if titles is None else list(titles)
    if len(titles) != c:
        raise ValueError(f"expected {c} titles (one per filter), got {len(titles)}")
    rows = 1 if maps is None else 2
    if maps is not None:
        maps = _array(maps, 3, "maps")
        if len(maps) != c:
            raise ValueError(f"expected {c} maps (one per filter), got {len(maps)}")
    side = COLUMN_WIDTH / c
    fig, axes = plt.subplots(rows, c, figsize=(COLUMN_WIDTH, side * rows + 0.55 * rows),
                             dpi=100, squeeze=False)
    limit = float(np.abs(w).max()) or 1.0
    for k in range(c):
        ax = axes[0, k]
        ax.imshow(w[k], cmap="RdBu_r", vmin=-limit, vmax=limit)
        for (i, j), v in np.ndenumerate(w[k]):
            ax.text(j, i, f"{v:.2f}".replace("0.", ".", 1), ha="center", va="center",
                    fontsize=7, color="white" if abs(v) > 0.6 * limit else "black")
        ax.set_title(titles[k], fontsize=8.5)
        _bare(ax)
        if maps is not None:
            axes[1, k].imshow(maps[k], cmap="magma", vmin=0, vmax=max(float(maps.max()), 1e-9))
            _bare(axes[1, k])
    if maps is not None:
        axes[1, 0].set_ylabel("its output", fontsize=8.5)
    axes[0, 0].set_ylabel("weights", fontsize=8.5)
    fig.tight_layout(h_pad=0.4, w_pad=0.3)
    return fig


def plot_feature_maps(image, maps: dict, channels: int = 8):
    """One image's feature maps, block by block: one row per entry of ``maps`` (layer name ->
    ``[C, H, W]`` output for this image, in running order), the image first, then that
    layer's ``channels`` most active channels (largest mean), each on its own colour scale
    (black: zero). The row label gives the layer's channels and side."""
    plt = _plt()
    image = _array(image, 2, "image")
    names = list(maps)
    if not names:
        raise ValueError("maps is empty: pass {layer name: [C, H, W] output}")
    arrays = {n: _array(maps[n], 3, f"maps[{n!r}]") for n in names}
    fig, axes = plt.subplots(len(names), channels + 1, dpi=100, squeeze=False,
                             figsize=(COLUMN_WIDTH, 0.78 * len(names) * COLUMN_WIDTH
                                      / (channels + 1) + 0.3))
    for r, name in enumerate(names):
        a = arrays[name]
        order = np.argsort(-a.mean(axis=(1, 2)), kind="stable")[:channels]
        ax = axes[r, 0]
        if r == 0:
            ax.imshow(image, cmap="gray_r")
            ax.set_title("input", fontsize=8.5)
            _bare(ax)
        else:
            ax.axis("off")
        ax.text(-0.08, 0.5, f"{name}\n{a.shape[0]} maps, {a.shape[1]}×{a.shape[2]}",
                transform=ax.transAxes, ha="right", va="center", fontsize=8.5)
        for k in range(channels):
            ax = axes[r, k + 1]
            if k < len(order):
                m = a[order[k]]
                ax.imshow(m, cmap="magma", vmin=0, vmax=max(float(m.max()), 1e-9))
                ax.set_title(f"ch {order[k]}", fontsize=7, pad=2)
                _bare(ax)
            else:
                ax.axis("off")
    fig.subplots_adjust(left=0.13, right=0.99, top=0.95, bottom=0.01, wspace=0.12,
                        hspace=0.35)
    return fig


def plot_layer_separation(names: Sequence[str], accuracies: Sequence[float],
                          pixels: Optional[float] = None, ax=None,
                          ylabel: str = "nearest class mean accuracy"):
    """How well each layer's outputs separate the classes (one dot per layer, in running
    order), with the same measure on the raw pixels as a dashed line."""
    plt = _plt()
    names, acc = list(names), np.asarray(accuracies, dtype=float) * 100
    if len(names) != len(acc) or not names:
        raise ValueError(f"expected one accuracy per layer name, got {len(names)} names and "
                         f"{len(acc)} accuracies")
    if ax is None:
        _, ax = plt.subplots(figsize=(COLUMN_WIDTH, 3.0), dpi=100)
    x = np.arange(len(names))
    ax.plot(x, acc, "o-", color="#4c72b0", lw=1.5, ms=5, label="the layer's outputs")
    if pixels is not None:
        ax.axhline(100 * pixels, color="0.4", ls="--", lw=1, label="the raw pixels")
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8.5)
    ax.set_ylabel(f"{ylabel} (%)", fontsize=9)
    ax.tick_params(axis="y", labelsize=8.5)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8.5, frameon=False, loc="lower right")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.figure.tight_layout()
    return ax.figure


def plot_saliency(images, maps, titles: Optional[Sequence[str]] = None):
    """Images (top row) over their saliency maps (bottom row, the absolute gradient, each on
    its own scale, dark where the score is most sensitive), the garment's outline drawn on
    both so that one sees where the map lies against the garment."""
    plt = _plt()
    images = _array(images, 3, "images")
    maps = np.abs(_array(maps, 3, "maps"))
    if maps.shape != images.shape:
        raise ValueError(f"maps {list(maps.shape)} and images {list(images.shape)} differ "
                         "in shape")
    n = len(images)
    titles = [""] * n if titles is None else list(titles)
    side = COLUMN_WIDTH / n
    fig, axes = plt.subplots(2, n, figsize=(COLUMN_WIDTH, 2 * side + 0.5), dpi=100,
                             squeeze=False)
    for k in range(n):
        axes[0, k].imshow(images[k], cmap="gray_r")
        axes[0, k].set_title(titles[k], fontsize=8)
        axes[1, k].imshow(maps[k], cmap="Reds", vmin=0, vmax=max(float(maps[k].max()), 1e-12))
        _outline(axes[1, k], images[k], colour="#2166ac")
        for ax in axes[:, k]:
            _bare(ax)
    axes[0, 0].set_ylabel("image", fontsize=8.5)
    axes[1, 0].set_ylabel("|saliency|", fontsize=8.5)
    fig.tight_layout(h_pad=0.3, w_pad=0.3)
    return fig


def _occlusion_extent(occ) -> tuple[float, float, float, float]:
    """imshow extent that puts each map cell at its square's centre, cells ``stride`` wide."""
    centres = occ.centres()
    half = occ.stride / 2
    low, high = centres[0] - half, centres[-1] + half
    return (low, high, high, low)


def plot_occlusion(images, occ, titles: Optional[Sequence[str]] = None):
    """Images (top row) over their occlusion maps (bottom row): the drop of the class's
    probability when the square is centred there (red: hiding it hurts; blue: it helps),
    drawn in image coordinates over the garment's outline. On each image an orange frame
    marks the square whose hiding hurts most, and under each map that largest drop is
    written. ``occ``: :class:`vgg_book.seeing.Occlusion` of these images."""
    from matplotlib.patches import Rectangle

    plt = _plt()
    images = _array(images, 3, "images")
    drop = _array(occ.drop, 3, "occ.drop")
    if len(drop) != len(images):
        raise ValueError(f"occ holds {len(drop)} maps for {len(images)} images")
    n = len(images)
    titles = [""] * n if titles is None else list(titles)
    side = COLUMN_WIDTH / n
    fig, axes = plt.subplots(2, n, figsize=(COLUMN_WIDTH, 2 * side + 0.5), dpi=100,
                             squeeze=False)
    extent = _occlusion_extent(occ)
    for k in range(n):
        axes[0, k].imshow(images[k], cmap="gray_r")
        i, j = np.unravel_index(int(np.argmax(drop[k])), drop[k].shape)
        axes[0, k].add_patch(Rectangle((occ.offsets[j] - 0.5, occ.offsets[i] - 0.5),
                                       occ.patch, occ.patch, fill=False, color="tab:orange",
                                       lw=1.5))
        axes[0, k].set_title(titles[k], fontsize=8)
        axes[1, k].imshow(drop[k], cmap="RdBu_r", vmin=-1, vmax=1, extent=extent,
                          interpolation="nearest")
        _outline(axes[1, k], images[k])
        axes[1, k].set_xlabel(f"largest drop {float(drop[k].max()):.2f}", fontsize=8)
        for ax in axes[:, k]:
            ax.set_xlim(-0.5, images.shape[2] - 0.5)
            ax.set_ylim(images.shape[1] - 0.5, -0.5)
            _bare(ax)
    axes[0, 0].set_ylabel("image", fontsize=8.5)
    axes[1, 0].set_ylabel("probability\ndrop", fontsize=8.5)
    fig.tight_layout(h_pad=0.3, w_pad=0.3)
    return fig


def plot_class_models(models, class_names: Sequence[str], probs=None, cols: int = 5):
    """Class models (``[K, 28, 28]``, pixels 0..255, one per class) drawn as the images are,
    each titled with its class and, given ``probs`` (``[K]``), the probability the network
    gives that class for it."""
    plt = _plt()
    models = _array(models, 3, "models")
    if len(class_names) != len(models):
        raise ValueError(f"expected {len(models)} class names, got {len(class_names)}")
    rows = -(-len(models) // cols)
    side = COLUMN_WIDTH / cols
    titles = [class_names[k] if probs is None else
              f"{class_names[k]}\np = {float(probs[k]):.2f}" for k in range(len(models))]
    lines = max(t.count("\n") + 1 for t in titles)
    fig, axes = plt.subplots(rows, cols, dpi=100, squeeze=False,
                             figsize=(COLUMN_WIDTH, rows * (side + 0.2 * lines + 0.15)))
    for ax in axes.flat:
        ax.axis("off")
    for k, ax in enumerate(axes.flat[:len(models)]):
        ax.axis("on")
        ax.imshow(models[k], cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(titles[k], fontsize=8.5)
        _bare(ax)
    fig.tight_layout(h_pad=1.0, w_pad=0.4)
    return fig


__all__ += ["COLUMN_WIDTH", "plot_filters", "plot_feature_maps", "plot_layer_separation",
            "plot_saliency", "plot_occlusion", "plot_class_models"]
