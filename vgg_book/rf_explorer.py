"""Receptive-field explorer that computes in the reader's browser: an anywidget.

:class:`RFExplorer` shows, for a stack of convolutions and pools the reader builds (or a VGG
configuration of the paper and one of its layers), the receptive field, jump and start of every
layer, the field of the central output unit drawn on a 28x28 Fashion-MNIST image and on a
224x224 VGG input, and the stack's weights against one convolution with the same field.

All the arithmetic is in the front end, ``js/rf_explorer.mjs``, so the widget also works in a
static HTML page with no kernel. Python only supplies the starting state (the traits), including
the VGG configurations themselves (the ``configs`` trait, :data:`vgg_book.models.CONFIGS`: the
front end keeps no copy), and reads it back when a kernel runs; :meth:`RFExplorer.to_sequential` and :meth:`RFExplorer.records`
compute the same numbers with :func:`vgg_book.receptive.receptive_field`.
``tests/test_rf_explorer.py`` checks the JavaScript against this library, exactly.
"""

from __future__ import annotations

import functools
import pathlib
from typing import Any, Optional, Sequence

import anywidget
import numpy as np
import torch
import traitlets
from torch import nn

from vgg_book.esm import bundle
from vgg_book.models import CONFIGS, make_features
from vgg_book.receptive import RFRecord, receptive_field

__all__ = ["RFExplorer", "normalize_layer", "stack_to_sequential", "vgg_layer_names"]

IMAGE_SIDE = 28
MAX_LAYERS = 32
MAX_SIDE = 4096
KERNELS = (1, 3, 5, 7)

#: Short names accepted in ``stack``: a "same"-padded convolution or the 2x2 pool.
SHORTHANDS = {"conv1": 1, "conv3": 3, "conv5": 5, "conv7": 7, "pool": None}


def _int(name: str, value, lo: int, hi: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    return int(value)


def normalize_layer(layer, index: int = 0) -> dict:
    """One stack layer as the front end reads it, every field filled and checked.

    ``layer``: a dict ``{"kind": "conv", "kernel": 3, "stride": 1, "dilation": 1,
    "padding": 1}`` (stride, dilation and padding optional: 1, 1 and "same" =
    ``dilation * (kernel - 1) // 2``), ``{"kind": "pool"}`` (2x2, stride 2; kernel, stride and
    padding may be given), or a shorthand ``"conv3"``, ``"conv5"``, ``"conv7"``, ``"conv1"``,
    ``"pool"``.
    """
    where = f"stack item {index} ({layer!r})"
    if isinstance(layer, str):
        if layer not in SHORTHANDS:
            raise ValueError(f"{where}: unknown shorthand; use one of {', '.join(SHORTHANDS)} "
                             "or a dict such as {'kind': 'conv', 'kernel': 3, 'stride': 2}")
        kernel = SHORTHANDS[layer]
        layer = {"kind": "pool"} if kernel is None else {"kind": "conv", "kernel": kernel}
    if not isinstance(layer, dict):
        raise ValueError(f"{where}: a layer is a dict or a shorthand string")
    kind = layer.get("kind")
    allowed = {"conv": {"kind", "kernel", "stride", "dilation", "padding"},
               "pool": {"kind", "kernel", "stride", "dilation", "padding"}}
    if kind not in allowed:
        raise ValueError(f"{where}: 'kind' must be 'conv' or 'pool'")
    extra = set(layer) - allowed[kind]
    if extra:
        raise ValueError(f"{where}: unknown keys {sorted(extra)}")
    if kind == "conv":
        kernel = _int(f"{where}: kernel", layer.get("kernel", 3), 1, 7)
        if kernel not in KERNELS:
            raise ValueError(f"{where}: kernel must be one of {KERNELS} (odd, so 'same' padding "
                             f"is symmetric), got {kernel}")
        stride = _int(f"{where}: stride", layer.get("stride", 1), 1, 2)
        dilation = _int(f"{where}: dilation", layer.get("dilation", 1), 1, 3)
        padding = layer.get("padding", "same")
        most = dilation * (kernel - 1) // 2
        padding = most if padding == "same" else _int(f"{where}: padding", padding, 0, most)
    else:
        kernel = _int(f"{where}: kernel", layer.get("kernel", 2), 2, 3)
        stride = _int(f"{where}: stride", layer.get("stride", 2), 1, 3)
        if layer.get("dilation", 1) != 1:
            raise ValueError(f"{where}: a pool has no dilation")
        dilation = 1
        padding = _int(f"{where}: padding", layer.get("padding", 0), 0, kernel // 2)
    return {"kind": kind, "kernel": kernel, "stride": stride, "dilation": dilation,
            "padding": padding}


def stack_to_sequential(stack: Sequence, channels: int = 1, device: Optional[str] = "meta"
                        ) -> nn.Sequential:
    """The ``nn.Sequential`` a stack describes: convs (``channels`` in and out, no bias) and
    max-pools. ``device="meta"`` allocates no weights (enough to count them)."""
    layers: list[nn.Module] = []
    for i, item in enumerate(stack):
        layer = normalize_layer(item, i)
        if layer["kind"] == "conv":
            layers.append(nn.Conv2d(channels, channels, layer["kernel"], stride=layer["stride"],
                                    padding=layer["padding"], dilation=layer["dilation"],
                                    bias=False, device=device))
        else:
            layers.append(nn.MaxPool2d(layer["kernel"], layer["stride"], layer["padding"]))
    return nn.Sequential(*layers)


def vgg_layer_names(config: str) -> list[str]:
    """Names of a configuration's convs, LRN and pools (``conv1_1`` ... ``pool5``): the rows the
    explorer shows (ReLUs left out)."""
    if config not in CONFIGS:
        raise ValueError(f"unknown VGG configuration {config!r}; expected one of "
                         f"{', '.join(CONFIGS)}")
    return list(_layer_names(config))


@functools.lru_cache(maxsize=None)
def _layer_names(config: str) -> tuple[str, ...]:
    with torch.device("meta"):  # names only: no weights allocated
        features = make_features(config)
    return tuple(r.name for r in receptive_field(features) if r.layer != "ReLU")


def _json_configs() -> dict[str, list]:
    """:data:`~vgg_book.models.CONFIGS` as JSON reads it: ``("1x1", 256)`` becomes ``["1x1", 256]``."""
    return {name: [list(item) if isinstance(item, tuple) else item for item in items]
            for name, items in CONFIGS.items()}


def _image_list(image) -> list[int]:
    if image is None:
        return [0] * IMAGE_SIDE ** 2
    if hasattr(image, "detach"):  # a torch tensor
        image = image.detach().cpu().numpy()
    array = np.asarray(image)
    if array.shape != (IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(f"image must be {IMAGE_SIDE}x{IMAGE_SIDE} (one Fashion-MNIST image, "
                         f"e.g. images[0]), got shape {array.shape}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"image must hold numbers 0..255, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise ValueError("image holds NaN or infinite values")
    if array.min() < 0 or array.max() > 255 or np.any(array != np.round(array)):
        raise ValueError(f"image values must be whole numbers 0..255 (uint8 pixels); got range "
                         f"{array.min()}..{array.max()}. For floats in [0, 1], pass "
                         "(image * 255).round()")
    return [int(v) for v in array.reshape(-1)]


class RFExplorer(anywidget.AnyWidget):
    """Receptive-field explorer computed in the browser (works in a static HTML page).

    ``RFExplorer(image, stack=..., mode="build", config="D", layer="pool5", input_side=224,
    channels=64)``:

    * ``image``: one 28x28 Fashion-MNIST image (torch tensor, numpy array or nested list of
      whole numbers 0..255), or ``None`` for a blank one;
    * ``stack``: the starting stack of the "build a stack" mode, a list of layers (see
      :func:`normalize_layer`): by default three 3x3 convolutions (the field of one 7x7);
    * ``mode``: ``"build"`` or ``"vgg"``; ``config``: ``"A"``, ``"A-LRN"``, ``"B"`` ... ``"E"``;
      ``layer``: the configuration's layer shown (``"conv3_2"``, ``"pool5"``);
    * ``input_side``: input side in pixels for the table's output sides;
    * ``channels``: C, the channels in and out of every convolution of a built stack.

    The reader adds and removes layers in the page; with a kernel, the traits follow. The
    ``configs`` trait (read-only) carries :data:`vgg_book.models.CONFIGS` to the page.
    """

    _esm = bundle("rf_explorer.mjs")  # with receptive.mjs inlined

    mode = traitlets.Unicode("build").tag(sync=True)
    stack = traitlets.List().tag(sync=True)
    config = traitlets.Unicode("D").tag(sync=True)
    layer = traitlets.Unicode("pool5").tag(sync=True)
    input_side = traitlets.Int(224).tag(sync=True)
    channels = traitlets.Int(64).tag(sync=True)
    next_stride = traitlets.Int(1).tag(sync=True)
    next_dilation = traitlets.Int(1).tag(sync=True)
    image = traitlets.List(traitlets.Int()).tag(sync=True)
    #: The configurations the page offers, name -> layer list: data from the library, not an option.
    configs = traitlets.Dict(read_only=True).tag(sync=True)

    def __init__(self, image: Any = None, *, stack: Optional[Sequence] = None,
                 mode: str = "build", config: str = "D", layer: str = "pool5",
                 input_side: int = 224, channels: int = 64, **kwargs) -> None:
        if stack is None:
            stack = ["conv3", "conv3", "conv3"]
        input_side = _int("input_side", input_side, 1, MAX_SIDE)  # before traitlets' own checks
        channels = _int("channels", channels, 1, MAX_SIDE)
        if config not in CONFIGS:  # checked first: the layer is checked against it
            self._check_config({"value": config})
        self._layer_ok(layer, config)
        super().__init__(image=_image_list(image), stack=list(stack), mode=mode, config=config,
                         layer=layer, input_side=input_side, channels=channels, **kwargs)

    @traitlets.default("configs")
    def _default_configs(self) -> dict[str, list]:
        return _json_configs()  # a fresh copy per widget: no lists shared between widgets

    @staticmethod
    def _layer_ok(layer, config: str) -> str:
        names = vgg_layer_names(config)
        if layer not in names:
            raise ValueError(f"layer {layer!r} is not in configuration {config}; choose one "
                             f"of {', '.join(names)}")
        return layer

    # --- validation (raises ValueError, also when a trait is set later) ----------------------
    @traitlets.validate("mode")
    def _check_mode(self, proposal):
        if proposal["value"] not in ("build", "vgg"):
            raise ValueError(f"mode must be 'build' or 'vgg', got {proposal['value']!r}")
        return proposal["value"]

    @traitlets.validate("stack")
    def _check_stack(self, proposal):
        stack = proposal["value"]
        if len(stack) > MAX_LAYERS:
            raise ValueError(f"a stack has at most {MAX_LAYERS} layers, got {len(stack)}")
        return [normalize_layer(item, i) for i, item in enumerate(stack)]

    @traitlets.validate("config")
    def _check_config(self, proposal):
        if proposal["value"] not in CONFIGS:
            raise ValueError(f"unknown VGG configuration {proposal['value']!r}; expected one "
                             f"of {', '.join(CONFIGS)}")
        return proposal["value"]

    @traitlets.validate("layer")
    def _check_layer(self, proposal):
        return self._layer_ok(proposal["value"], self.config)

    @traitlets.observe("config")
    def _keep_layer(self, change):
        """A configuration without the layer shown (conv3_4 in A) shows pool5, as the page does."""
        if self.layer not in vgg_layer_names(change["new"]):
            self.layer = "pool5"

    @traitlets.validate("input_side")
    def _check_side(self, proposal):
        return _int("input_side", proposal["value"], 1, MAX_SIDE)

    @traitlets.validate("channels")
    def _check_channels(self, proposal):
        return _int("channels", proposal["value"], 1, MAX_SIDE)

    @traitlets.validate("next_stride")
    def _check_next_stride(self, proposal):
        return _int("next_stride", proposal["value"], 1, 2)

    @traitlets.validate("next_dilation")
    def _check_next_dilation(self, proposal):
        return _int("next_dilation", proposal["value"], 1, 3)

    @traitlets.validate("image")
    def _check_image(self, proposal):
        value = proposal["value"]
        if len(value) != IMAGE_SIDE ** 2 or any(not 0 <= v <= 255 for v in value):
            raise ValueError(f"image must be {IMAGE_SIDE ** 2} values 0..255 (a flat 28x28 "
                             "image); pass the 28x28 image to RFExplorer(image) instead")
        return value

    # --- the same numbers from the library ----------------------------------------------------
    def to_sequential(self, device: Optional[str] = "meta") -> nn.Module:
        """The network on show: the built stack (C channels, no bias) or the configuration's
        ``features`` (in ``"vgg"`` mode, real widths, 3 input channels)."""
        if self.mode == "vgg":
            if device is None:
                return make_features(self.config)
            with torch.device(device):
                return make_features(self.config)
        return stack_to_sequential(self.stack, self.channels, device=device)

    def records(self, input_side: Optional[int] = None) -> list[RFRecord]:
        """:func:`~vgg_book.receptive.receptive_field` of the rows the widget shows (ReLUs left
        out), at ``input_side`` (default: the widget's)."""
        side = self.input_side if input_side is None else input_side
        return [r for r in receptive_field(self.to_sequential(), side) if r.layer != "ReLU"]
