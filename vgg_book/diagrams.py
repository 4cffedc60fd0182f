"""Architecture diagrams: a VGG block, padding on a pixel grid, a receptive field growing,
dense evaluation, an Inception module.

Each diagram has a ``*_layout`` function that computes what is drawn from the library's own
code (tested against it) and a ``plot_*`` function that draws the layout with matplotlib and
returns the figure. ``vgg_book.plotting`` re-exports the ``plot_*`` functions.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["block_layout", "plot_block", "padding_layout", "plot_padding", "rf_growth_layout",
           "plot_rf_growth", "dense_layout", "plot_dense_evaluation", "inception_layout",
           "plot_inception"]

# One palette for every diagram: a colour means the same thing in each figure.
CONV = "#a9c4eb"       # a 3x3 (or larger) convolution
CONV1 = "#fde9a9"      # a 1x1 convolution
POOL = "#d9d9d9"       # a pooling layer
TENSOR = "#ffffff"     # an input or a plain unit / pixel
PAD = "#e6e6e6"        # zero padding
FIELD = "#f4a582"      # what one output depends on (window, receptive field)
FOCUS = "#c44e52"      # the one output unit the figure follows
INK = "#333333"        # edges, arrows, text


def _plt():
    from vgg_book.plotting import _plt as plt  # lazy: plotting imports this module
    return plt()


def _axes(ax, figsize):
    """``ax`` or a fresh one of ``figsize`` inches (dpi 100), with no ticks or frame."""
    if ax is None:
        _, ax = _plt().subplots(figsize=figsize, dpi=100)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    return ax


def _box(ax, x, y, w, h, colour, text=None, fontsize=9, **kw):
    """A rectangle with its lower-left corner at (x, y) and optional centred text."""
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((x, y), w, h, facecolor=colour, edgecolor=kw.pop("ec", INK),
                           linewidth=kw.pop("lw", 1), **kw))
    if text is not None:
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize,
                color=INK)


def _arrow(ax, start, end, colour=INK, lw=1.2):
    ax.annotate("", xy=end, xytext=start,
                arrowprops=dict(arrowstyle="-|>", color=colour, lw=lw, shrinkA=0, shrinkB=0))


# --- 1. A VGG block with its tensor shapes ---------------------------------------------------

GAP = 0.95  # between two boxes of a block: room for "512 x 224 x 224" at 9 points


def block_layout(num_convs: int = 2, in_channels: int = 3, out_channels: int = 64,
                 side: int = 224) -> list[dict]:
    """Boxes for :func:`plot_block`: the input, then each layer of ``models.vgg_block``.

    Each box has ``kind`` ("input", "conv" for a 3x3 convolution with its ReLU, "pool"),
    ``label``, ``shape`` = (C, H, W) of the tensor it outputs (a forward pass of the real block
    on the meta device), ``x`` (left edge), ``width`` (0.1 + 0.11 log2 C: each doubling of the
    channels adds the same width) and ``height`` (2 H / ``side``), in diagram units (inches
    at the figure's own size), with ``GAP`` units between boxes for the shape labels.
    """
    from vgg_book.models import vgg_block

    if not isinstance(side, int) or isinstance(side, bool) or side < 2:
        raise ValueError(f"side must be an integer of at least 2 pixels (the 2x2 max-pool "
                         f"halves it), got {side!r}")
    shapes = []
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        block = vgg_block(num_convs, in_channels, out_channels)
        for m in block:
            if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
                m.register_forward_hook(lambda m, i, o: shapes.append((m, tuple(o.shape[1:]))))
        block(torch.empty(1, in_channels, side, side))
    boxes, x = [], 0.0
    for module, shape in [(None, (in_channels, side, side)), *shapes]:
        if module is None:
            kind, label = "input", "input"
        elif isinstance(module, nn.Conv2d):
            k, p = module.kernel_size[0], module.padding[0]
            kind, label = "conv", f"{k}x{k} conv\npad {p}\n+ ReLU"
        else:
            k = module.kernel_size
            kind, label = "pool", f"{k}x{k}\nmax-pool\nstride {module.stride}"
        width = 0.1 + 0.11 * math.log2(shape[0])
        boxes.append(dict(kind=kind, label=label, shape=shape, x=x, width=width,
                          height=2 * shape[1] / side))
        x += width + GAP
    return boxes


def plot_block(num_convs: int = 2, in_channels: int = 3, out_channels: int = 64,
               side: int = 224, ax=None):
    """A VGG block as a row of layer boxes, the tensor shape (C x H x W) on every arrow.

    A box's height is the side of the map it outputs and its width grows with the channels
    (log scale), so the first convolution widens the tensor and the pool halves its height.
    """
    boxes = block_layout(num_convs, in_channels, out_channels, side)
    right = boxes[-1]["x"] + boxes[-1]["width"] + GAP
    ax = _axes(ax, (max(8.0, right + 0.4), 3))
    colours = {"input": TENSOR, "conv": CONV, "pool": POOL}
    for a, b in zip(boxes, boxes[1:] + [None]):
        h = a["height"]
        _box(ax, a["x"], -h / 2, a["width"], h, colours[a["kind"]],
             a["label"] if a["kind"] != "input" else None, fontsize=8.5)
        if a["kind"] == "input":
            ax.text(a["x"] + a["width"] / 2, -h / 2 - 0.12, a["label"], ha="center",
                    va="top", fontsize=9, color=INK)
        start = a["x"] + a["width"]
        end = b["x"] if b is not None else start + GAP
        _arrow(ax, (start + 0.05, 0), (end - 0.05, 0))
        ax.text((start + end) / 2, 0.1, " x ".join(map(str, a["shape"])), ha="center", va="bottom",
                fontsize=9, color=INK)
    ax.text(right, -1.4, "box height: map side; box width: channels (log scale)",
            ha="right", va="bottom", fontsize=8, color="0.4")
    ax.set(xlim=(-0.1, right + 0.1), ylim=(-1.45, 1.2))
    ax.set_title(f"One VGG block: {num_convs} x (3x3 conv + ReLU), then a 2x2 max-pool "
                 "(shapes are channels x height x width)", fontsize=10)
    ax.figure.tight_layout()
    return ax.figure


# --- 2. Padding and a kernel on a pixel grid -------------------------------------------------

def _check_int(name: str, value, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}")
    return value


def padding_layout(side: int = 5, kernel: int = 3, padding: int = 1, stride: int = 1,
                   position=(0, 0)) -> dict:
    """What :func:`plot_padding` draws, from ``vgg_book.receptive`` on a real ``nn.Conv2d``.

    Pixel (row, column) of the image is ``(r, c)`` with ``0 <= r, c < side``; the padding
    ring has coordinates from ``-padding`` to ``side + padding - 1``. Keys: ``out_side``;
    ``padding_cells`` (the ring, outside the image); ``window`` (the ``kernel x kernel``
    cells that output pixel ``position`` reads, padding included) and ``window_pixels``
    (those inside the image).
    """
    from vgg_book.receptive import receptive_field

    _check_int("side", side, 1)
    _check_int("kernel", kernel, 1)
    _check_int("padding", padding, 0)
    _check_int("stride", stride, 1)
    if side + 2 * padding < kernel:
        raise ValueError(f"a {kernel}x{kernel} kernel does not fit in a {side}x{side} image "
                         f"padded by {padding}: it needs side + 2 * padding >= kernel")
    conv = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding, device="meta")
    record = receptive_field([conv], side)[-1]
    out = record.output_size
    row, col = position
    if not (0 <= row < out and 0 <= col < out):
        raise ValueError(f"position {tuple(position)} is outside the {out}x{out} output; "
                         f"expected (row, column) with both from 0 to {out - 1}")
    top, left = (c - (record.size - 1) / 2 for c in record.centre(position))
    window = {(int(top) + i, int(left) + j) for i in range(kernel) for j in range(kernel)}
    grid = range(-padding, side + padding)
    inside = {(r, c) for r in range(side) for c in range(side)}
    return dict(side=side, kernel=kernel, padding=padding, stride=stride, out_side=out,
                position=tuple(position), window=window, window_pixels=window & inside,
                padding_cells={(r, c) for r in grid for c in grid} - inside)


def plot_padding(side: int = 5, kernel: int = 3, padding: int = 1, stride: int = 1,
                 position=(0, 0), ax=None):
    """The padded input grid with the kernel's window, and the output pixel it computes.

    Shaded cells hold the zeros of the padding, the orange square is the ``kernel x kernel``
    window of output pixel ``position`` (the top-left one by default, where it overlaps the
    padding), and the title gives the output side by the formula.
    """
    from matplotlib.patches import ConnectionPatch, Patch, Rectangle

    lay = padding_layout(side, kernel, padding, stride, position)
    n, p, out = side, padding, lay["out_side"]
    ax = _axes(ax, (8, 4.2))
    shift = n + p + 2.5  # the output grid's left edge, right of the input grid
    for r in range(-p, n + p):
        for c in range(-p, n + p):
            pad = (r, c) in lay["padding_cells"]
            colour = FIELD if (r, c) in lay["window_pixels"] else PAD if pad else TENSOR
            _box(ax, c, -r, 1, 1, colour, "0" if pad else None, lw=0.8,
                 ec="0.6" if pad else INK)
    for r in range(out):
        for c in range(out):
            _box(ax, shift + c, -r, 1, 1, FOCUS if (r, c) == lay["position"] else TENSOR,
                 lw=0.8)
    top = min(r for r, _ in lay["window"])
    left = min(c for _, c in lay["window"])
    ax.add_patch(Rectangle((left, -top - kernel + 1), kernel, kernel, fill=False,
                           edgecolor=FOCUS, linewidth=2.5))
    row, col = lay["position"]
    ax.add_artist(ConnectionPatch((left + kernel, -top + 1 - kernel / 2),
                                  (shift + col + 0.5, -row + 0.5), "data", "data",
                                  arrowstyle="-|>", color=FOCUS, lw=1.5,
                                  connectionstyle="arc3,rad=-0.2"))
    strided = f", stride {stride}" if stride > 1 else ""
    ax.text(n / 2, 1.3 + p, f"input {n}x{n}, padding {p}{strided}", ha="center", fontsize=10)
    ax.text(shift + out / 2, 1.3 + p, f"output {out}x{out}", ha="center", fontsize=10)
    ax.set_title(rf"output side $= \lfloor (n + 2p - k)\,/\,s \rfloor + 1 = "
                 rf"\lfloor ({n} + 2 \cdot {p} - {kernel})\,/\,{stride} \rfloor + 1 = {out}$",
                 fontsize=11, pad=14)
    ax.legend(handles=[Patch(facecolor=TENSOR, edgecolor=INK, label="image pixel"),
                       Patch(facecolor=PAD, edgecolor="0.6", label="zero padding"),
                       Patch(facecolor=FIELD, edgecolor=FOCUS, lw=2,
                             label=f"{kernel}x{kernel} kernel window"),
                       Patch(facecolor=FOCUS, edgecolor=INK, label="the output it computes")],
              loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=9,
              frameon=False)
    ax.set(xlim=(-p - 0.3, shift + out + 0.3), ylim=(-n - p + 0.7, p + 2.0))
    ax.set_aspect("equal")
    ax.figure.tight_layout()
    return ax.figure


# --- 3. The receptive field growing, layer by layer (one dimension) -------------------------

def _span(record, index: int, limit: int) -> list[int]:
    """Units (along the width) that unit ``index`` of ``record``'s layer reads, clipped."""
    centre = record.start_hw[1] + index * record.stride_hw[1]
    half = (record.size_hw[1] - 1) / 2
    return list(range(max(0, math.ceil(centre - half)), min(limit, int(centre + half) + 1)))


def _layer_label(module: nn.Module) -> str:
    k, s = (v[1] if isinstance(v, tuple) else v for v in (module.kernel_size, module.stride))
    kind = "conv" if isinstance(module, nn.Conv2d) else "max-pool" if isinstance(
        module, nn.MaxPool2d) else type(module).__name__
    return f"{k}x{k} {kind}" + (f", stride {s}" if s > 1 else "")


def _default_input(layers, margin: int) -> int:
    """The smallest width, a multiple of the last jump, whose central top unit's field lies
    ``margin`` pixels inside the image."""
    from vgg_book.receptive import receptive_field

    last = receptive_field(layers)[-1]
    for n in range(last.size, 4 * last.size + 8 * last.stride + 16):
        if n % last.stride == 0 and _fits(layers, n, margin):
            return n
    raise ValueError("no input width up to four fields wide holds this stack's field")


def _fits(layers, n: int, margin: int) -> bool:
    from vgg_book.receptive import receptive_field

    try:
        top = receptive_field(layers, n)[-1]
    except ValueError:  # the input is too small for the stack
        return False
    centre = top.centre([(top.output_hw[0] - 1) // 2] * 2)[1]
    return centre - (top.size - 1) / 2 >= margin and centre + (top.size - 1) / 2 <= n - 1 - margin


def rf_growth_layout(layers=None, input_size=None) -> dict:
    """What :func:`plot_rf_growth` draws for a stack (default: three 3x3 convolutions).

    ``layers``: what ``vgg_book.receptive.receptive_field`` accepts; layers that act pixel
    by pixel (ReLU, ...) get no row. ``input_size``: input width in pixels (default: the
    smallest that holds the field of the central top unit with room around it).
    Keys: ``input_size``; ``unit`` (the top unit followed); ``rows`` from the input up, each
    with ``label``, ``centres`` (of its units, in input pixels), ``width`` (the jump),
    ``field`` (a unit's receptive field in input pixels) and ``highlighted`` (the units the
    top unit depends on: the top unit's field in that row, by the recurrence over the
    layers above it); ``fans``: ``(row, unit, units of the row below it reads)``.
    """
    from vgg_book.receptive import POINTWISE, flatten_layers, receptive_field

    if layers is None:  # chapter 2's example
        layers = [nn.Conv2d(1, 1, 3, padding=1, device="meta") for _ in range(3)]
    stack = [m for _, m in flatten_layers(layers) if not isinstance(m, POINTWISE)]
    if not stack:
        raise ValueError("the stack has no convolution or pooling layer: nothing to draw")
    n = _default_input(stack, 2) if input_size is None else _check_int("input_size",
                                                                       input_size, 1)
    if not _fits(stack, n, 0):
        raise ValueError(f"input_size {n} is too small: the central unit of the last layer "
                         f"has a field of {receptive_field(stack)[-1].size} pixels that must "
                         f"fit in the input; use at least {_default_input(stack, 0)}")
    records = receptive_field(stack, n)
    sizes = [n] + [r.output_hw[1] for r in records]
    unit = (sizes[-1] - 1) // 2
    rows = [dict(label="input", centres=[float(i) for i in range(n)], width=1, field=1)]
    rows += [dict(label=_layer_label(m), centres=[r.centre((0, i))[1] for i in range(size)],
                  width=r.stride, field=r.size) for m, r, size in zip(stack, records, sizes[1:])]
    for row in range(len(rows) - 1):  # the top unit's field among the units of each row
        above = receptive_field(stack[row:])[-1]
        rows[row]["highlighted"] = _span(above, unit, sizes[row])
    rows[-1]["highlighted"] = [unit]
    fans = [(row, j, _span(receptive_field([stack[row - 1]])[-1], j, sizes[row - 1]))
            for row in range(1, len(rows)) for j in rows[row]["highlighted"]]
    return dict(input_size=n, unit=unit, rows=rows, fans=fans)


def plot_rf_growth(layers=None, ax=None, names=None, input_size=None):
    """One row of units per layer in one dimension, the input at the bottom (Distill's style).

    The red unit at the top depends on the orange units of every row below it, joined by
    the lines of each unit's window: the field grows by (k - 1) x jump pixels a layer.
    ``names``: one label per drawn layer (default: the kernel, e.g. "3x3 conv").
    """
    lay = rf_growth_layout(layers, input_size)
    rows, n = lay["rows"], lay["input_size"]
    if names is not None:
        if len(names) != len(rows) - 1:
            raise ValueError(f"names has {len(names)} labels for {len(rows) - 1} layers; give "
                             "one per convolution or pool (ReLUs have no row)")
        rows = [rows[0]] + [dict(r, label=name) for r, name in zip(rows[1:], names)]
    ax = _axes(ax, (8, 0.62 * len(rows) + 1.1))
    gap, h = 1.5, 0.6  # row spacing and unit height, in input pixels
    for y, row in enumerate(rows):
        top = y == len(rows) - 1
        for i, c in enumerate(row["centres"]):
            lit = i in row["highlighted"]
            colour = FOCUS if top and lit else FIELD if lit else TENSOR
            _box(ax, c - row["width"] / 2 + 0.06, y * gap - h / 2, row["width"] - 0.12, h,
                 colour, lw=0.8, ec=INK if lit else "0.65")
        ax.text(-1.2, y * gap, row["label"], ha="right", va="center", fontsize=9)
        ax.text(n + 0.4, y * gap, f"field {row['field']} px", ha="left", va="center",
                fontsize=9, color=INK)
    for row, j, inputs in lay["fans"]:
        x = rows[row]["centres"][j]
        for i in inputs:
            ax.plot([x, rows[row - 1]["centres"][i]], [row * gap - h / 2, (row - 1) * gap + h / 2],
                    color=FOCUS, lw=0.7, alpha=0.6)
    span = rows[0]["highlighted"]
    ax.annotate("", xy=(span[-1] + 0.5, -0.65), xytext=(span[0] - 0.5, -0.65),
                arrowprops=dict(arrowstyle="|-|", color=INK, lw=1, shrinkA=0, shrinkB=0))
    ax.text((span[0] + span[-1]) / 2, -0.85, f"receptive field: {len(span)} input pixels",
            ha="center", va="top", fontsize=9)
    ax.set(xlim=(-6.5, n + 4.5), ylim=(-1.6, (len(rows) - 1) * gap + 0.6))
    ax.set_title("The field of one unit grows layer by layer (one dimension shown)",
                 fontsize=10)
    ax.figure.tight_layout()
    return ax.figure


# --- 4. Dense evaluation: the classifier as convolutions slides over a larger image ---------

def dense_layout(image_side: int = 384, crop: int = 224, stride: int = 32) -> dict:
    """Windows and score map of dense evaluation (the paper's Section 3.2).

    ``models.fc_to_conv`` turns VGG's classifier into convolutions; on an ``image_side``
    image it gives one score per ``crop``-pixel window (224, its training crop) every
    ``stride`` pixels (32, the five pools). Keys: ``map_side`` (scores a side), ``offsets``
    (a window's left or top edge, in pixels) and ``covered`` (pixels the windows span; any
    rest of the image, right and below, is in no window).
    """
    _check_int("crop", crop, 1)
    _check_int("stride", stride, 1)
    if not isinstance(image_side, int) or isinstance(image_side, bool) or image_side < crop:
        raise ValueError(f"image_side must be an integer of at least the crop ({crop} pixels): "
                         f"the classifier needs one whole {crop}x{crop} window; got "
                         f"{image_side!r}")
    map_side = (image_side - crop) // stride + 1
    offsets = [j * stride for j in range(map_side)]
    return dict(image_side=image_side, crop=crop, stride=stride, map_side=map_side,
                offsets=offsets, covered=offsets[-1] + crop)


def plot_dense_evaluation(image_side: int = 384, crop: int = 224, scores=None, axes=None,
                          stride: int = 32, position=(0, 1)):
    """Left: the image with a few ``crop`` windows (every ``stride`` pixels), one highlighted
    and a dot at every window's centre. Right: the score map, one cell per window, coloured
    by ``scores`` (a map_side x map_side array, e.g. one class's scores) when given."""
    import numpy as np
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Rectangle

    lay = dense_layout(image_side, crop, stride)
    m, offsets = lay["map_side"], lay["offsets"]
    if scores is not None:
        scores = np.asarray(scores, dtype=float)
        if scores.shape != (m, m):
            raise ValueError(f"scores must be a {m}x{m} array (one score per window of a "
                             f"{image_side}-pixel image), got shape {scores.shape}")
    row, col = position
    if not (0 <= row < m and 0 <= col < m):
        raise ValueError(f"position {tuple(position)} is outside the {m}x{m} score map")
    if axes is None:
        _, axes = _plt().subplots(1, 2, figsize=(8, 4.2), dpi=100,
                                  gridspec_kw=dict(width_ratios=[1.15, 1]))
    left, right = (_axes(a, None) for a in axes)
    left.add_patch(Rectangle((0, 0), image_side, image_side, facecolor="#f2f2f2",
                             edgecolor="0.7", lw=1))
    for r, c in {(0, 0), (m - 1, m - 1)} - {(row, col)}:  # the first and the last window
        left.add_patch(Rectangle((offsets[c], offsets[r]), crop, crop, fill=False,
                                 edgecolor="0.15", lw=1.3, ls="--", zorder=2))
    left.add_patch(Rectangle((offsets[col], offsets[row]), crop, crop, edgecolor=FOCUS,
                             facecolor=to_rgba(FIELD, 0.45), lw=2.2))
    centres = np.array(offsets) + crop / 2
    xs, ys = np.meshgrid(centres, centres)
    left.scatter(xs.ravel(), ys.ravel(), s=10, color=INK, zorder=3)
    left.scatter([centres[col]], [centres[row]], s=40, color=FOCUS, zorder=4)
    if m > 1:
        y = -0.05 * image_side
        left.annotate("", xy=(offsets[1], y), xytext=(0, y), arrowprops=dict(
            arrowstyle="<->", color=INK, lw=1, shrinkA=0, shrinkB=0))
        left.text(offsets[1] + 0.02 * image_side, y, f"stride {stride} px", va="center",
                  fontsize=9)
    left.set_xlabel("dashed: first and last window; dots: window centres", fontsize=9)
    left.set(xlim=(-0.03 * image_side, 1.03 * image_side),
             ylim=(1.03 * image_side, -0.1 * image_side), aspect="equal")
    left.set_title(f"{image_side}x{image_side} image, {crop}x{crop} windows", fontsize=10)
    if scores is None:
        for r in range(m):
            for c in range(m):
                _box(right, c - 0.5, r - 0.5, 1, 1, FOCUS if (r, c) == (row, col) else TENSOR,
                     lw=0.8)
    else:
        image = right.imshow(scores, cmap="Blues")
        right.figure.colorbar(image, ax=right, fraction=0.046, label="score")
        right.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor=FOCUS,
                                  lw=2.5))
    right.set(xlim=(-0.6, m - 0.4), ylim=(m - 0.4, -0.6), aspect="equal")
    right.set_title(f"score map {m}x{m}: one score per window", fontsize=10)
    floor = (r"\lfloor", r"\rfloor") if (image_side - crop) % stride else ("", "")
    left.figure.suptitle(rf"${floor[0]}({image_side} - {crop})\,/\,{stride}{floor[1]} + 1 = "
                         rf"{m}$ windows a side, each scored by the same classifier",
                         fontsize=11)
    left.figure.tight_layout()
    return left.figure


# --- 5. An Inception module with its branch widths -------------------------------------------

def inception_layout(module=None) -> dict:
    """Branches of a ``vgg_book.inception.Inception`` (default GoogLeNet's "3a"), read from its
    layers: ``in_channels``, ``branches`` (per branch, bottom up, its layers as dicts with
    ``kind`` "conv1", "conv" or "pool", ``label`` and ``width``, the channels it outputs),
    ``widths`` (each branch's output channels) and ``total`` (their concatenation)."""
    from vgg_book.inception import Inception

    module = Inception.googlenet("3a") if module is None else module
    if not isinstance(module, Inception):
        raise ValueError(f"inception_layout expects a vgg_book.inception.Inception module, "
                         f"got {type(module).__name__}; e.g. Inception.googlenet('3a')")
    branches = []
    for branch in module.branches().values():
        width, ops = module.in_channels, []
        for m in branch:
            if isinstance(m, nn.Conv2d):
                k, width = m.kernel_size[0], m.out_channels
                ops.append(dict(kind="conv1" if k == 1 else "conv", label=f"{k}x{k} conv",
                                width=width))
            elif isinstance(m, nn.MaxPool2d):
                ops.append(dict(kind="pool", label=f"{m.kernel_size}x{m.kernel_size} max-pool",
                                width=width))
        branches.append(ops)
    widths = [ops[-1]["width"] for ops in branches]
    return dict(in_channels=module.in_channels, branches=branches, widths=widths,
                total=sum(widths))


def plot_inception(module=None, ax=None):
    """The four branches side by side, each box with the channels it outputs, the input at
    the bottom and the concatenation at the top: a bar split in the branches' widths."""
    lay = inception_layout(module)
    ax = _axes(ax, (8, 4.6))
    colours = {"conv1": CONV1, "conv": CONV, "pool": POOL}
    w, h, cols = 1.7, 0.62, [0.0, 2.1, 4.2, 6.3]
    _box(ax, 0, 0, cols[-1] + w, h, TENSOR, f"input: {lay['in_channels']} channels",
         fontsize=10)
    total, x = lay["total"], 0.0
    top = 3.4  # the concatenation's bottom edge
    for col, ops, width in zip(cols, lay["branches"], lay["widths"]):
        ys = [1.1, 2.2][-len(ops):]  # every branch ends on the same level
        _arrow(ax, (col + w / 2, h), (col + w / 2, ys[0]))
        for y, op in zip(ys, ops):
            _box(ax, col, y, w, h, colours[op["kind"]], f"{op['label']}\n{op['width']} ch")
            if y != ys[-1]:
                _arrow(ax, (col + w / 2, y + h), (col + w / 2, y + 1.1))
        share = width / total * (cols[-1] + w)  # this branch's part of the concatenation
        _box(ax, x, top, share, h, colours[ops[-1]["kind"]], str(width), fontsize=10)
        _arrow(ax, (col + w / 2, ys[-1] + h), (x + share / 2, top))
        x += share
    ax.text((cols[-1] + w) / 2, top + h + 0.15, f"concatenate along channels: {total} "
            "channels", ha="center", va="bottom", fontsize=10)
    ax.set(xlim=(-0.1, cols[-1] + w + 0.1), ylim=(-0.15, top + h + 0.55))
    ax.set_title("An Inception module: four branches read the same input and keep its height "
                 "and width", fontsize=10)
    ax.figure.tight_layout()
    return ax.figure
