"""Stacks of convolutions drawn on an image, with their weight counts: the static figures.

The pure functions (:func:`conv_stack`, :func:`stack_summary`, :func:`rf_box`) do the work and
are tested; :func:`draw_stack` and :func:`plot_settings_grid` draw with matplotlib (the
printable grid of settings beside the live explorer, :class:`vgg_book.rf_explorer.RFExplorer`,
which computes in the browser).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from vgg_book.receptive import RFRecord, receptive_field

__all__ = ["conv_stack", "StackSummary", "stack_summary", "rf_box", "draw_stack",
           "plot_settings_grid"]


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def conv_stack(num_convs: int, kernel_size: int = 3, pool_every: int = 0,
               channels: int = 1, device: Optional[str] = None) -> nn.Sequential:
    """``num_convs`` k x k convolutions (padding k // 2, ReLU after each), a 2x2 max-pool after
    every ``pool_every`` of them (0: no pool), ``channels`` in and out, no bias.

    ``device="meta"`` builds the modules without allocating their weights (for counting).
    """
    _positive_int("num_convs", num_convs)
    _positive_int("kernel_size", kernel_size)
    _positive_int("pool_every", pool_every, minimum=0)
    _positive_int("channels", channels)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd so that padding k // 2 keeps the image size "
                         f"(VGG uses 3); got {kernel_size}")
    layers: list[nn.Module] = []
    for i in range(1, num_convs + 1):
        layers += [nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2,
                             bias=False, device=device), nn.ReLU()]
        if pool_every and i % pool_every == 0:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class StackSummary:
    """A stack's receptive field and weights against one convolution with the same field.

    ``rf`` and ``jump`` in input pixels. The single convolution has kernel ``rf`` and stride
    ``jump``: it has the same receptive field and output grid as the stack. Weight counts are
    from real ``nn.Conv2d`` modules (no bias), ``channels`` in and out of every convolution.
    """

    num_convs: int
    kernel_size: int
    pool_every: int
    channels: int
    rf: int
    jump: int
    stack_weights: int
    single_weights: int
    stack_relus: int
    single_relus: int

    @property
    def ratio(self) -> float:
        """Weights of the single convolution per weight of the stack."""
        return self.single_weights / self.stack_weights


def stack_summary(num_convs: int, kernel_size: int = 3, pool_every: int = 0,
                  channels: int = 1) -> StackSummary:
    """Receptive field and weight counts of :func:`conv_stack` and of its single-conv twin."""
    stack = conv_stack(num_convs, kernel_size, pool_every, channels, device="meta")
    last = receptive_field(stack)[-1]
    single = nn.Conv2d(channels, channels, last.size, stride=last.stride, bias=False,
                       device="meta")
    return StackSummary(
        num_convs=num_convs, kernel_size=kernel_size, pool_every=pool_every, channels=channels,
        rf=last.size, jump=last.stride,
        stack_weights=sum(p.numel() for p in stack.parameters()),
        single_weights=sum(p.numel() for p in single.parameters()),
        stack_relus=sum(isinstance(m, nn.ReLU) for m in stack), single_relus=1)


def rf_box(record: RFRecord, unit: Sequence[int]) -> tuple[float, float, float, float]:
    """(left, top, width, height) of ``unit``'s receptive field, in ``imshow`` coordinates.

    ``imshow`` centres pixel ``i`` at ``i``, so a field of side ``s`` centred at ``c`` covers
    ``[c - s / 2, c + s / 2]``. Parts outside ``[-0.5, n - 0.5]`` lie in the zero padding.
    """
    row, col = record.centre(unit)
    height, width = record.size_hw
    return col - width / 2, row - height / 2, width, height


def _label(s: StackSummary) -> str:
    pools = f", pool every {s.pool_every}" if s.pool_every else ""
    return f"{s.num_convs} x {s.kernel_size}x{s.kernel_size} conv{pools}"


def draw_stack(ax, image: torch.Tensor, num_convs: int, kernel_size: int = 3,
               pool_every: int = 0) -> StackSummary:
    """Draw on ``ax`` the receptive field of the central output unit of the stack over ``image``.

    ``image``: [H, W] tensor. The red square is the field (dashed where it hangs over the
    border into padding); when the jump exceeds one pixel, dots mark the centres of the output
    units (their spacing is the jump). Returns the :func:`stack_summary` (one channel pair).
    """
    from matplotlib.patches import Rectangle

    image = torch.as_tensor(image)
    if image.dim() != 2:
        raise ValueError(f"draw_stack expects one [H, W] image, got shape {tuple(image.shape)}")
    summary = stack_summary(num_convs, kernel_size, pool_every)
    records = receptive_field(conv_stack(num_convs, kernel_size, pool_every, device="meta"),
                              tuple(image.shape))
    last = records[-1]
    rows, cols = last.output_hw
    unit = ((rows - 1) // 2, (cols - 1) // 2)
    left, top, width, height = rf_box(last, unit)
    ax.imshow(image, cmap="gray_r")
    ax.add_patch(Rectangle((-0.5, -0.5), image.shape[1], image.shape[0], fill=False,
                           color="0.6", lw=1))
    ax.add_patch(Rectangle((left, top), width, height, fill=False, color="tab:red", lw=2,
                           ls="--" if left < -0.5 or top < -0.5 else "-"))
    if last.stride > 1:
        centres = [last.centre((r, c)) for r in range(rows) for c in range(cols)]
        ax.scatter([c for _, c in centres], [r for r, _ in centres], s=6, color="tab:blue")
    margin = max(0.0, -left - 0.5, -top - 0.5, left + width - image.shape[1] + 0.5,
                 top + height - image.shape[0] + 0.5)
    ax.set_xlim(-0.5 - margin - 1, image.shape[1] - 0.5 + margin + 1)
    ax.set_ylim(image.shape[0] - 0.5 + margin + 1, -0.5 - margin - 1)
    ax.set_title(f"{_label(summary)}\nRF {summary.rf}x{summary.rf}, jump {summary.jump}\n"
                 f"weights per channel pair: {summary.stack_weights} vs {summary.single_weights}",
                 fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return summary


def plot_settings_grid(image: torch.Tensor, settings: Sequence[tuple[int, int, int]],
                       ncols: int = 3):
    """A grid of :func:`draw_stack` panels, one per ``(num_convs, kernel_size, pool_every)``.

    Each panel's title also gives the weights per channel pair: stack vs one convolution with
    the same field and stride. Returns the figure (the static twin of :func:`explorer`).
    """
    import matplotlib.pyplot as plt

    nrows = -(-len(settings) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 3.4 * nrows), dpi=100,
                             squeeze=False)
    for ax, setting in zip(axes.flat, settings):
        draw_stack(ax, image, *setting)
    for ax in list(axes.flat)[len(settings):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def _draw_comparison(ax, s: StackSummary, channels: int) -> None:
    wide = stack_summary(s.num_convs, s.kernel_size, s.pool_every, channels)
    bars = ax.bar(["stack", f"one {s.rf}x{s.rf}\nconv"], [wide.stack_weights,
                                                        wide.single_weights],
                  color=["tab:blue", "tab:gray"])
    ax.bar_label(bars, labels=[f"{v:,}" for v in (wide.stack_weights, wide.single_weights)],
                 fontsize=8)
    ax.set_ylabel(f"weights ({channels} channels in and out)")
    ax.set_title(f"ReLUs: {s.stack_relus} vs {s.single_relus}", fontsize=9)
