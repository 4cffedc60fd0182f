"""Receptive fields of convolution stacks: derived by the recurrence, and measured by gradients.

Coordinates are input pixels, pixel ``i`` centred at ``i`` (0-based). For every layer three
numbers describe the units of its output along one axis:

* ``size``:   side of the receptive field (RF), in input pixels;
* ``stride``: the *jump*, input pixels between the centres of two adjacent units;
* ``start``:  the centre of the first unit's RF (can be negative or a half pixel).

A layer with (effective) kernel ``k``, stride ``s`` and left padding ``p`` updates them by::

    size'   = size + (k - 1) * stride
    stride' = stride * s
    start'  = start + ((k - 1) / 2 - p) * stride

with ``k = dilation * (kernel - 1) + 1``. Layers that act pixel by pixel (ReLU, dropout,
local response normalisation across channels, batch norm in eval mode) change none of them.
(Batch norm in training mode normalises with the batch's statistics, so every output then
depends a little on every pixel of every image in the batch.)
Everything is computed per axis (height, width), so non-square kernels and dilation work;
``size``, ``stride``, ``start`` and ``output_size`` are the common value when both axes agree.

:func:`measured_receptive_field` checks the recurrence with autograd: it back-propagates from
the central unit of each layer's output and measures the extent of the non-zero input gradient.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Iterable, Optional, Sequence, Union

import torch
from torch import nn

__all__ = [
    "RFRecord",
    "MeasuredRF",
    "SUPPORTED_LAYERS",
    "flatten_layers",
    "rf_step",
    "receptive_field",
    "min_input_size",
    "min_measurable_size",
    "linear_twin",
    "linearised",
    "input_gradient",
    "measured_receptive_field",
]

Size2 = Union[int, Sequence[int]]
Channel = Union[int, str, None]

#: Layers that act on each pixel separately: no effect on size, stride or start.
POINTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
             nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
             nn.Softplus, nn.Identity, nn.BatchNorm2d, nn.Dropout, nn.Dropout2d,
             nn.LocalResponseNorm)
#: Layers that slide a window over the image.
WINDOWED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
SUPPORTED_LAYERS = ("Conv2d", "MaxPool2d", "AvgPool2d",
                    "AdaptiveAvgPool2d/AdaptiveMaxPool2d (when they act as a plain pool)",
                    *sorted({t.__name__ for t in POINTWISE}))


@dataclass(frozen=True)
class RFRecord:
    """Receptive-field geometry of one layer's output, per axis ``(height, width)``.

    ``size_hw`` and ``stride_hw`` are in input pixels, ``start_hw`` is a centre in input pixel
    coordinates, ``output_hw`` is the output's height and width in units (``None`` without an
    input size). ``name`` follows the VGG paper (``conv3_2``, ``pool3``), ``path`` is the key
    of the module inside the stack (``"12"`` or ``"features.12"``).
    """

    name: str
    path: str
    layer: str
    size_hw: tuple[int, int]
    stride_hw: tuple[int, int]
    start_hw: tuple[float, float]
    output_hw: Optional[tuple[int, int]] = None

    def _common(self, attr: str):
        value = getattr(self, attr + "_hw")
        if value is None:
            return None
        if value[0] != value[1]:
            raise ValueError(f"{self.name}: {attr} differs between height and width {value}; "
                             f"read {attr}_hw for the per-axis values")
        return value[0]

    @property
    def size(self) -> int:
        """Receptive-field side in input pixels (both axes equal)."""
        return self._common("size")

    @property
    def stride(self) -> int:
        """Jump: input pixels between adjacent output units (both axes equal)."""
        return self._common("stride")

    @property
    def start(self) -> float:
        """Centre of the first unit's receptive field, in input pixels (both axes equal)."""
        return self._common("start")

    @property
    def output_size(self) -> Optional[int]:
        """Output side in units, or ``None`` when no input size was given."""
        return self._common("output")

    def centre(self, index: Sequence[int]) -> tuple[float, float]:
        """Centre (row, column) in input pixels of the unit at ``index`` = (row, column)."""
        return tuple(s + i * j for s, i, j in zip(self.start_hw, index, self.stride_hw))


@dataclass(frozen=True)
class MeasuredRF:
    """What autograd sees for the central unit of one layer's output.

    ``size_hw``: side (rows, columns) of the bounding box of the non-zero input gradient, in
    pixels; ``nonzero``: how many input pixels have a non-zero gradient; ``unit``: the output
    unit (row, column) measured; ``centre_hw``: centre of the box in input pixels;
    ``touches_border``: the box reaches the image edge, so the true receptive field may be
    larger than what fits in the input.
    """

    name: str
    size_hw: tuple[int, int]
    nonzero: int
    unit: tuple[int, int]
    centre_hw: tuple[float, float]
    touches_border: bool

    @property
    def size(self) -> int:
        """Measured side in pixels (both axes equal)."""
        if self.size_hw[0] != self.size_hw[1]:
            raise ValueError(f"{self.name}: measured extent differs between height and width "
                             f"{self.size_hw}; read size_hw")
        return self.size_hw[0]


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def flatten_layers(layers) -> list[tuple[str, nn.Module]]:
    """``(path, module)`` for every layer of a stack, nested ``nn.Sequential`` flattened.

    Accepts an ``nn.Sequential`` (e.g. ``model.features``), an ``nn.ModuleList`` or a list or
    tuple of modules.
    """
    if isinstance(layers, nn.Module) and not isinstance(layers, (nn.Sequential, nn.ModuleList)):
        hint = (" (for a VGG model pass model.features)" if hasattr(layers, "features") else "")
        raise ValueError(f"receptive_field needs a sequence of layers, got a "
                         f"{type(layers).__name__}{hint}; pass an nn.Sequential, nn.ModuleList "
                         "or a list of modules")
    if isinstance(layers, nn.Module):
        items: Iterable = layers.named_children()
    elif isinstance(layers, (list, tuple)):
        items = ((str(i), m) for i, m in enumerate(layers))
    else:
        raise ValueError(f"receptive_field needs a sequence of layers, got "
                         f"{type(layers).__name__}; pass an nn.Sequential or a list of modules")
    flat: list[tuple[str, nn.Module]] = []
    for path, module in items:
        if isinstance(module, (nn.Sequential, nn.ModuleList)):
            flat += [(f"{path}.{sub}", m) for sub, m in flatten_layers(module)]
        elif isinstance(module, nn.Module):
            flat.append((path, module))
        else:
            raise ValueError(f"item {path} of the stack is a {type(module).__name__}, not an "
                             "nn.Module")
    if not flat:
        raise ValueError("receptive_field got an empty stack of layers")
    return flat


def _unsupported(path: str, module: nn.Module, why: str = "") -> ValueError:
    return ValueError(f"layer {path} ({module}) {why or 'is not supported'}; receptive_field "
                      f"handles: {', '.join(SUPPORTED_LAYERS)}. Pass only the convolutional "
                      "part (e.g. model.features), or turn fully connected layers into "
                      "convolutions with vgg_book.models.fc_to_conv")


def _geometry(path: str, module: nn.Module, in_hw):
    """Per-axis (kernel, stride, left padding, right padding, ceil_mode) of a windowed layer.

    Kernel is the effective kernel ``dilation * (k - 1) + 1``. ``in_hw`` is only needed for
    adaptive pools. Returns ``None`` for a pointwise layer.
    """
    if isinstance(module, POINTWISE):
        return None
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        out = _pair(module.output_size)
        if in_hw is None:
            raise _unsupported(path, module, "needs input_size (an adaptive pool's window "
                                             "depends on the input)")
        out = tuple(n if o is None else o for o, n in zip(out, in_hw))
        if any(n % o for n, o in zip(in_hw, out)):
            raise _unsupported(path, module, f"maps {in_hw} to {out}, which is not a whole "
                                             "number of pixels per window; its receptive field "
                                             "differs from unit to unit")
        kernel = tuple(n // o for n, o in zip(in_hw, out))
        return kernel, kernel, (0, 0), (0, 0), False
    if not isinstance(module, WINDOWED):
        raise _unsupported(path, module)
    kernel = _pair(module.kernel_size)
    stride = _pair(module.stride if module.stride is not None else module.kernel_size)
    dilation = _pair(getattr(module, "dilation", 1))
    ceil_mode = bool(getattr(module, "ceil_mode", False))
    if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
        raise _unsupported(path, module, f"uses padding_mode={module.padding_mode!r}, which "
                                         "wraps or mirrors the image; only 'zeros' is")
    eff = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel))
    padding = module.padding
    if padding == "valid":
        left = right = (0, 0)
    elif padding == "same":  # torch puts the odd pixel of padding on the right
        left = tuple((e - 1) // 2 for e in eff)
        right = tuple(e - 1 - l for e, l in zip(eff, left))
    else:
        left = right = _pair(padding)
    return eff, stride, left, right, ceil_mode


def _out_len(n: int, k: int, s: int, pl: int, pr: int, ceil_mode: bool) -> int:
    """Output length of a window of ``k`` at stride ``s`` over ``n`` pixels padded ``pl``/``pr``."""
    span = n + pl + pr - k
    if span < 0:
        return 0
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= n + pl:  # torch: the last window must start inside the image
        out -= 1
    return out


_SHORT = {nn.ReLU: "relu", nn.BatchNorm2d: "bn", nn.LocalResponseNorm: "lrn",
          nn.Dropout: "drop", nn.Dropout2d: "drop"}


def _names(modules: Sequence[nn.Module]) -> list[str]:
    """VGG-paper names: ``conv{block}_{i}``, ``relu{block}_{i}``, ``pool{block}`` ..."""
    names, block, conv = [], 1, 0
    for m in modules:
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            names.append(f"pool{block}")
            block, conv = block + 1, 0
        elif isinstance(m, nn.Conv2d):
            conv += 1
            names.append(f"conv{block}_{conv}")
        else:
            short = _SHORT.get(type(m), type(m).__name__.lower())
            names.append(f"{short}{block}_{conv}" if conv else f"{short}{block}")
    return names


def _input_hw(input_size) -> Optional[tuple[int, int]]:
    if input_size is None:
        return None
    hw = _pair(input_size)
    if len(hw) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0
                               for n in hw):
        raise ValueError(f"input_size must be a positive int or (height, width) of positive "
                         f"ints, in pixels; got {input_size!r}")
    return hw


def rf_step(size: int, jump: int, start: float, kernel: int, stride: int,
            left: int) -> tuple[int, int, float]:
    """One layer of the recurrence along one axis: ``(size, jump, start)`` after a window of
    (effective) ``kernel`` pixels, moved by ``stride``, with ``left`` pixels of padding."""
    new_size = size + (kernel - 1) * jump
    new_start = start + ((kernel - 1) / 2 - left) * jump
    return new_size, jump * stride, new_start


def receptive_field(layers, input_size: Optional[Size2] = None) -> list[RFRecord]:
    """One :class:`RFRecord` per layer of ``layers``: receptive-field size, jump and start.

    ``layers``: ``model.features``, any ``nn.Sequential`` (nested ones are flattened) or list of
    modules. ``input_size``: optional input side in pixels (int or ``(height, width)``); with it
    every record also has ``output_size``, and an input too small for the stack raises a
    ``ValueError`` naming the first layer whose output would be empty.
    """
    flat = flatten_layers(layers)
    in_hw = _input_hw(input_size)
    size, jump, start = [1, 1], [1, 1], [0.0, 0.0]
    hw = list(in_hw) if in_hw else None
    records = []
    for (path, module), name in zip(flat, _names([m for _, m in flat])):
        geometry = _geometry(path, module, hw)
        if geometry is not None:
            kernel, stride, left, right, ceil_mode = geometry
            for a in range(2):
                size[a], jump[a], start[a] = rf_step(size[a], jump[a], start[a], kernel[a],
                                                     stride[a], left[a])
                if hw is not None:
                    hw[a] = _out_len(hw[a], kernel[a], stride[a], left[a], right[a], ceil_mode)
            if hw is not None and min(hw) < 1:
                need = min_input_size(layers)
                raise ValueError(
                    f"input_size {input_size!r} is too small: after layer {path} ({name}, "
                    f"{module}) the output would be empty; this stack needs an input of at "
                    f"least {need}x{need} pixels")
        records.append(RFRecord(name=name, path=path, layer=type(module).__name__,
                                size_hw=tuple(size), stride_hw=tuple(jump),
                                start_hw=tuple(start),
                                output_hw=tuple(hw) if hw is not None else None))
    return records


def min_input_size(layers, limit: int = 4096) -> int:
    """Smallest square input side (pixels) for which every layer's output is non-empty."""
    flat = flatten_layers(layers)
    for n in range(1, limit + 1):
        hw, ok = [n, n], True
        for path, module in flat:
            geometry = _geometry(path, module, hw)
            if geometry is None:
                continue
            kernel, stride, left, right, ceil_mode = geometry
            hw = [_out_len(hw[a], kernel[a], stride[a], left[a], right[a], ceil_mode)
                  for a in range(2)]
            if min(hw) < 1:
                ok = False
                break
        if ok:
            return n
    raise ValueError(f"no input up to {limit}x{limit} pixels gives a non-empty output")


def min_measurable_size(layers, multiple: int = 32, limit: int = 4096) -> int:
    """Smallest square input side, a multiple of ``multiple`` pixels, in which the field of the
    central unit of every layer lies inside the image (so a measurement is not clipped)."""
    for n in range(multiple, limit + 1, multiple):
        try:
            records = receptive_field(layers, n)
        except ValueError:
            continue
        if all(c - s / 2 >= -0.5 and c + s / 2 <= n - 0.5
               for r in records
               for c, s in zip(r.centre([(k - 1) // 2 for k in r.output_hw]), r.size_hw)):
            return n
    raise ValueError(f"no input up to {limit}x{limit} pixels holds every layer's field")


# --- Measurement -----------------------------------------------------------------------------

def linear_twin(module: nn.Module) -> nn.Module:
    """``module``'s one-channel twin in the :func:`linearised` copy (no checks: see there)."""
    if isinstance(module, nn.Conv2d):  # same geometry, positive weights, no bias
        conv = nn.Conv2d(1, 1, module.kernel_size, stride=module.stride, padding=module.padding,
                         dilation=module.dilation, padding_mode=module.padding_mode,
                         bias=False, dtype=torch.float64)
        nn.init.constant_(conv.weight, 1.0 / conv.weight.numel())
        return conv
    if isinstance(module, nn.MaxPool2d):  # every pixel of the window counts, not the arg-max
        return nn.AvgPool2d(module.kernel_size, module.stride, module.padding,
                            ceil_mode=module.ceil_mode)
    if isinstance(module, nn.AdaptiveMaxPool2d):
        return nn.AdaptiveAvgPool2d(module.output_size)
    if isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        return copy.deepcopy(module)
    return nn.Identity()  # ReLU, LRN, dropout, eval-mode batch norm: pixel by pixel


def linearised(layers) -> nn.Sequential:
    """A one-channel copy of ``layers`` in which every pixel's influence is positive.

    Each convolution becomes a one-channel ``nn.Conv2d`` with the same kernel size, stride,
    padding, dilation and padding mode, weights ``1 / (kernel height * width)`` and no bias;
    max-pools become average pools of the same window; pointwise layers (ReLU, batch norm as
    in eval mode, LRN, dropout) become identities. The result is a positive linear map, so the
    gradient of one output unit is non-zero exactly on the input pixels joined to it by some
    path: its receptive field. (With such weights every channel would carry the same values,
    so one channel loses nothing, whatever the widths or groups of the original.)
    """
    out = []
    for path, module in flatten_layers(layers):
        if not isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            _geometry(path, module, None)  # a clear ValueError for unsupported layers
        if isinstance(module, nn.MaxPool2d) and _pair(module.dilation) != (1, 1):
            raise ValueError(f"layer {path} ({module}): a dilated max-pool has no average-pool "
                             "twin in torch, so it cannot be measured; use dilation=1")
        out.append(linear_twin(module))
    return nn.Sequential(*out)


def _in_channels(flat) -> int:
    for _, module in flat:
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return 1


def input_gradient(layers, input_size: Size2, *, linear: bool = True, layer: int = -1,
                   channel: Channel = 0, inputs: Optional[torch.Tensor] = None,
                   seed: int = 0) -> torch.Tensor:
    """|d(central unit of layer ``layer``) / d(input)|, summed over input channels: [H, W].

    The unit is channel ``channel`` at the output position ``((h - 1) // 2, (w - 1) // 2)`` of
    that layer (``None``: the sum of all channels at that position; ``"max"``: the channel
    with the largest value there, which a ReLU has not zeroed unless all are; the linearised
    copy has one channel, so ``channel`` only matters with ``linear=False``).
    ``linear=True`` measures the :func:`linearised` copy (the geometric receptive field);
    ``linear=False`` the layers as they are, in eval mode, with real ReLUs
    and max-pools, on ``inputs`` (default: a seeded N(0, 1) image; a batch is summed, which
    averages the gradient magnitude over the batch).
    """
    hw = _input_hw(input_size)
    if hw is None:
        raise ValueError("input_gradient needs input_size (pixels), e.g. 224")
    records = receptive_field(layers, hw)
    index = range(len(records))[layer]
    net, x = _prepare(layers, hw, linear, inputs, seed)
    channel = 0 if linear else channel  # the linearised copy has one channel
    y = net[: index + 1](x)
    rows, cols = records[index].output_hw
    _select(y, channel, ((rows - 1) // 2, (cols - 1) // 2)).sum().backward()
    return x.grad.abs().sum(dim=(0, 1)).float()


def _select(y: torch.Tensor, channel: Channel, unit: tuple[int, int]) -> torch.Tensor:
    """The output unit(s) to differentiate at position ``unit``: one channel, all channels
    (``None``) or, for ``"max"``, the channel with the largest value (of the first image)."""
    at = y[:, :, unit[0], unit[1]]
    if channel is None:
        return at
    if channel == "max":
        return at[:, int(at[0].argmax())]
    if not isinstance(channel, int) or not 0 <= channel < y.shape[1]:
        raise ValueError(f"channel {channel!r} does not exist: this layer has {y.shape[1]} "
                         f"channels (0..{y.shape[1] - 1}); or pass None (all) or 'max'")
    return at[:, channel]


def _prepare(layers, hw, linear: bool, inputs: Optional[torch.Tensor], seed: int):
    """The network to differentiate and its input (requires grad)."""
    flat = flatten_layers(layers)
    if linear:
        net = linearised(layers)
        x = torch.ones(1, 1, *hw, dtype=torch.float64)
    else:
        net = copy.deepcopy(nn.Sequential(*[m for _, m in flat])).eval()
        for m in net.modules():  # in-place ReLUs would overwrite outputs that autograd needs
            if hasattr(m, "inplace"):
                m.inplace = False
        channels = _in_channels(flat)
        if inputs is None:
            g = torch.Generator().manual_seed(seed)
            inputs = torch.randn(1, channels, *hw, generator=g)
        elif (not isinstance(inputs, torch.Tensor) or inputs.dim() != 4
              or tuple(inputs.shape[1:]) != (channels, *hw)):
            shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs)
            raise ValueError(f"inputs must be a [batch, {channels}, {hw[0]}, {hw[1]}] tensor "
                             f"(input_size {hw}), got {shape}")
        x = inputs.detach().clone()
    return net, x.requires_grad_(True)


def _extent(grad: torch.Tensor):
    """Bounding box of the non-zero entries of a [H, W] map: size, count, centre, at border."""
    rows = torch.nonzero(grad.sum(1)).flatten().tolist()
    cols = torch.nonzero(grad.sum(0)).flatten().tolist()
    if not rows:
        return (0, 0), 0, (math.nan, math.nan), False
    size = (rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    centre = ((rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2)
    border = (rows[0] == 0 or cols[0] == 0 or rows[-1] == grad.shape[0] - 1
              or cols[-1] == grad.shape[1] - 1)
    return size, int((grad != 0).sum()), centre, border


def measured_receptive_field(layers, input_size: Size2, *, linear: bool = True,
                             channel: Channel = 0, seed: int = 0,
                             last_only: bool = False) -> list[MeasuredRF]:
    """Measure every layer's receptive field with autograd: one :class:`MeasuredRF` per layer.

    For each layer, back-propagate from the central unit of its output (channel ``channel`` at
    the central position, ``None``: all channels there, ``"max"``: the largest one; only with
    ``linear=False``) to the input and take
    the bounding box of the non-zero gradient. With ``linear=True`` (the default) the network
    is first :func:`linearised`, because through a real max-pool the gradient reaches only the
    arg-max of each window and a ReLU zeroes it wherever its input was negative: that naive
    measurement (``linear=False``, a seeded random input) gives the pixels that influenced the
    unit *for this input*, a sparse subset of the receptive field. ``input_size`` (pixels) must
    be large enough for the central unit's field to fit, else ``touches_border`` is set.
    ``last_only=True`` measures only the last layer (one backward pass instead of one a layer).
    """
    hw = _input_hw(input_size)
    if hw is None:
        raise ValueError("measured_receptive_field needs input_size (pixels), e.g. 224")
    records = receptive_field(layers, hw)
    net, x = _prepare(layers, hw, linear, None, seed)
    channel = 0 if linear else channel  # the linearised copy has one channel
    outputs, y = [], x
    for module in net:
        y = module(y)
        outputs.append(y)
    results: list[MeasuredRF] = []
    for i, (out, record) in enumerate(zip(outputs, records)):
        if last_only and i < len(outputs) - 1:
            continue
        if i and results and out is outputs[i - 1]:  # an identity (linear ReLU, BN...): same
            results.append(replace(results[-1], name=record.name))
            continue
        rows, cols = record.output_hw
        unit = ((rows - 1) // 2, (cols - 1) // 2)
        (grad,) = torch.autograd.grad(_select(out, channel, unit).sum(), x,
                                      retain_graph=i < len(outputs) - 1)
        size, nonzero, centre, border = _extent(grad[0].abs().sum(0))
        results.append(MeasuredRF(name=record.name, size_hw=size, nonzero=nonzero, unit=unit,
                                  centre_hw=centre, touches_border=border))
    return results
