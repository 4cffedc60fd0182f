"""The trained network, live in the reader's browser: an anywidget.

:class:`TrainedExplorer` runs the network the book ships (:mod:`vgg_book.trained`, the CPU
recipe's VGG-11 in float16) in the page: the reader picks one of the 120 test images or draws
a garment on a 28x28 pad, and sees the ten class probabilities (updated while drawing), every
channel of a chosen layer's output as a small map, the saliency map of the predicted or a
chosen class (:func:`vgg_book.seeing.saliency`), the receptive field of the unit under the
pointer on the input (the arithmetic of chapter 2's explorer), and what the prediction does
when channels are switched off.

The forward and backward passes are ``js/vgg_engine.mjs``, a small module on ``Float32Array``
s; the view is ``js/trained_explorer.mjs``. Both are inlined into one module string
(:func:`vgg_book.esm.bundle`), so the widget also works in a static HTML page with no kernel
and no network. The weights travel as a ``Bytes`` trait, the shipped float16 file itself; the
picker's images as another. Python gives the starting state and reads the reader's back when
a kernel runs: :meth:`TrainedExplorer.probabilities`, :meth:`~TrainedExplorer.saliency`,
:meth:`~TrainedExplorer.activations` and :func:`unit_field` compute with PyTorch
(:mod:`vgg_book.seeing`, :mod:`vgg_book.receptive`) what the page shows.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Optional, Sequence

import anywidget
import numpy as np
import torch
import traitlets
from torch import nn

from vgg_book import seeing, trained
from vgg_book.esm import bundle
from vgg_book.receptive import receptive_field
from vgg_book.rf_explorer import _image_list

__all__ = ["TrainedExplorer", "map_layers", "unit_field", "model"]

IMAGE_SIDE = trained.INPUT_SIDE
#: The layer whose maps show first: 16 channels of 16x16, after two convolutions' worth of
#: field (8x8 pixels of the 32x32 input).
DEFAULT_LAYER = "conv2_1"


@functools.lru_cache(maxsize=1)
def model() -> nn.Module:
    """The shipped network (:func:`vgg_book.trained.trained_vgg`), loaded once."""
    return trained.trained_vgg()


@functools.lru_cache(maxsize=1)
def _picker() -> tuple[bytes, tuple[int, ...]]:
    images, labels = trained.explorer_images()
    return images.numpy().tobytes(), tuple(labels.tolist())


def _layers() -> list[dict]:
    return trained.manifest()["layers"]


def map_layers() -> list[str]:
    """The layers whose output the widget shows as maps (the convolutions and pools), in
    running order; ``fc6``..``fc8`` have no maps."""
    return [layer["name"] for layer in _layers() if layer["kind"] in ("conv", "pool")]


def _widths() -> dict[str, int]:
    """Channels (or units) of every layer's output; a pool keeps its convolution's."""
    widths, width = {}, 1
    for layer in _layers():
        if layer["kind"] != "pool":
            width = layer["out"]
        widths[layer["name"]] = width
    return widths


@functools.lru_cache(maxsize=None)
def _fields(side: int) -> dict[str, tuple[int, int, float, int]]:
    """Layer -> (size, jump, start, output side) from :func:`~vgg_book.receptive
    .receptive_field` on the network's features at ``side``."""
    return {r.name: (r.size_hw[0], r.stride_hw[0], r.start_hw[0], r.output_hw[0])
            for r in receptive_field(model().features, side)}


def unit_field(layer: str, row: int, col: int) -> dict[str, float]:
    """The receptive field of unit (``row``, ``col``) of a conv or pool layer's output, on the
    network's 32x32 input (pixel p covers [p - 0.5, p + 0.5]): ``{"top", "left", "bottom",
    "right", "size", "jump", "start"}`` from :func:`vgg_book.receptive.receptive_field`. The
    field can reach beyond the input, into the zero padding."""
    side = trained.manifest()["preprocess"]["network_side"]
    fields = _fields(side)
    if layer not in map_layers():
        raise ValueError(f"layer {layer!r} has no feature maps; choose one of "
                         f"{', '.join(map_layers())}")
    size, jump, start, out = fields[layer]
    for name, value in (("row", row), ("col", col)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) \
                or not 0 <= value < out:
            raise ValueError(f"{name} must be an integer in 0..{out - 1} ({layer}'s output is "
                             f"{out}x{out}), got {value!r}")
    top, left = start + row * jump - size / 2, start + col * jump - size / 2
    return {"top": top, "left": left, "bottom": top + size, "right": left + size,
            "size": size, "jump": jump, "start": start}


def _check_off(off) -> dict[str, list[int]]:
    """``{layer: [channels]}``, checked; sorted, without repeats or empty lists."""
    if not isinstance(off, Mapping):
        raise ValueError("off must be a dict of layer name -> list of channels, e.g. "
                         f"{{'conv2_1': [3, 5]}}; got {off!r}")
    widths, clean = _widths(), {}
    for name, channels in off.items():
        if name not in widths:
            raise ValueError(f"off: unknown layer {name!r}; the network's layers are "
                             f"{', '.join(widths)}")
        if isinstance(channels, (int, np.integer)) or not isinstance(channels, Sequence):
            raise ValueError(f"off[{name!r}] must be a list of channels, got {channels!r}")
        width = widths[name]
        for c in channels:
            if not isinstance(c, (int, np.integer)) or isinstance(c, bool) or not 0 <= c < width:
                raise ValueError(f"off[{name!r}]: layer {name} has channels 0..{width - 1}; "
                                 f"got {c!r}")
        if channels:
            clean[name] = sorted({int(c) for c in channels})
    return clean


def _int(name: str, value, lo: int, hi: int, what: str = "") -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) \
            or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}{what}, got {value!r}")
    return int(value)


class TrainedExplorer(anywidget.AnyWidget):
    """The shipped VGG-11, computed in the browser (works in a static HTML page).

    ``TrainedExplorer(image=None, *, index=0, layer="conv2_1", target=-1, off=None)``:

    * ``image``: a 28x28 image of whole numbers 0..255 (torch tensor, numpy array or nested
      list) to start from, as if the reader had drawn it; or ``None``: the picker's image
      ``index`` (0..119; the picker holds :func:`vgg_book.trained.explorer_images`);
    * ``layer``: the layer whose feature maps show (:func:`map_layers`: ``conv1_1`` ...
      ``pool5``);
    * ``target``: the class whose saliency map shows, 0..9, or -1 for the predicted class;
    * ``off``: channels switched off, ``{"conv2_1": [3, 5]}``.

    The traits of the same names (``pixels`` is the image, flat) follow the reader's drawing,
    picks and clicks when a kernel runs; :meth:`probabilities` and :meth:`saliency` give
    PyTorch's numbers for them. ``weights``, ``images`` and ``manifest`` (read-only) carry
    the network and the picker's images to the page.
    """

    _esm = bundle("trained_explorer.mjs")  # with vgg_engine.mjs and receptive.mjs inlined

    #: The shipped float16 weights (:func:`vgg_book.trained.weights_bytes`), byte for byte.
    weights = traitlets.Bytes(read_only=True).tag(sync=True)
    #: The manifest: layers, tensor offsets, classes, normalisation, picker labels.
    manifest = traitlets.Dict(read_only=True).tag(sync=True)
    #: The picker's 120 test images, 784 uint8 values each, row by row.
    images = traitlets.Bytes(read_only=True).tag(sync=True)
    #: The picked image (0..119), or -1 when the input is the reader's own drawing.
    index = traitlets.Int(0).tag(sync=True)
    #: The 28x28 input the network gets, flat: 784 whole numbers 0..255.
    pixels = traitlets.List(traitlets.Int()).tag(sync=True)
    layer = traitlets.Unicode(DEFAULT_LAYER).tag(sync=True)
    target = traitlets.Int(-1).tag(sync=True)
    off = traitlets.Dict().tag(sync=True)

    def __init__(self, image: Any = None, *, index: int = 0, layer: str = DEFAULT_LAYER,
                 target: int = -1, off: Optional[Mapping] = None, **kwargs) -> None:
        count = len(_picker()[1])
        if image is None:
            index = _int("index", index, 0, count - 1, " (a picker image; or pass image=)")
            pixels = self._picked(index)
        else:
            index, pixels = -1, _image_list(image)
        self._check_layer({"value": layer})
        target = _int("target", target, -1, 9, " (a class, or -1 for the predicted one)")
        super().__init__(index=index, pixels=pixels, layer=layer, target=target,
                         off=_check_off(off or {}), **kwargs)

    @traitlets.default("weights")
    def _default_weights(self) -> bytes:
        return trained.weights_bytes()

    @traitlets.default("manifest")
    def _default_manifest(self) -> dict:
        return trained.manifest()  # a fresh copy per widget

    @traitlets.default("images")
    def _default_images(self) -> bytes:
        return _picker()[0]

    @staticmethod
    def _picked(index: int) -> list[int]:
        data = _picker()[0]
        return list(data[index * IMAGE_SIDE ** 2:(index + 1) * IMAGE_SIDE ** 2])

    # --- validation (raises ValueError, also when a trait is set later) ----------------------
    @traitlets.validate("layer")
    def _check_layer(self, proposal):
        if proposal["value"] not in map_layers():
            raise ValueError(f"layer {proposal['value']!r} has no feature maps to show; choose "
                             f"one of {', '.join(map_layers())}")
        return proposal["value"]

    @traitlets.validate("index")
    def _check_index(self, proposal):
        return _int("index", proposal["value"], -1, len(_picker()[1]) - 1,
                    " (a picker image, or -1 for a drawing)")

    @traitlets.validate("target")
    def _check_target(self, proposal):
        return _int("target", proposal["value"], -1, 9, " (a class, or -1 for the predicted one)")

    @traitlets.validate("off")
    def _check_off_trait(self, proposal):
        return _check_off(proposal["value"])

    @traitlets.validate("pixels")
    def _check_pixels(self, proposal):
        value = proposal["value"]
        if len(value) != IMAGE_SIDE ** 2 or any(not 0 <= v <= 255 for v in value):
            raise ValueError(f"pixels must be {IMAGE_SIDE ** 2} whole numbers 0..255 (a flat "
                             "28x28 image); to start from an image, pass it as "
                             "TrainedExplorer(image)")
        return value

    @traitlets.observe("index")
    def _load_picked(self, change):
        """Picking an image (from Python or the page) makes it the input."""
        if change["new"] >= 0:
            self.pixels = self._picked(change["new"])

    @traitlets.observe("pixels")
    def _drawn(self, change):
        """An input that is not the picked image is a drawing: index -1."""
        if self.index >= 0 and change["new"] != self._picked(self.index):
            self.index = -1

    # --- the same numbers with PyTorch --------------------------------------------------------
    def image(self) -> torch.Tensor:
        """The input the network gets: uint8 ``[28, 28]``."""
        return torch.tensor(self.pixels, dtype=torch.uint8).reshape(IMAGE_SIDE, IMAGE_SIDE)

    def probabilities(self) -> torch.Tensor:
        """The ten class probabilities for the input with the channels ``off``:
        :func:`vgg_book.seeing.probabilities` on the shipped network, float ``[10]``."""
        return seeing.probabilities(model(), self.image(), self.off)[0]

    def predicted(self) -> int:
        """The predicted class (0..9)."""
        return int(self.probabilities().argmax())

    def saliency(self) -> torch.Tensor:
        """The saliency map on show: d score[target] / d pixel (pixels scaled to [0, 1]),
        target the predicted class when ``target`` is -1; float ``[28, 28]``
        (:func:`vgg_book.seeing.saliency`)."""
        target = None if self.target < 0 else self.target
        return seeing.saliency(model(), self.image(), target, self.off)[0]

    def activations(self, layer: Optional[str] = None) -> torch.Tensor:
        """The maps on show: ``layer``'s output (default: the widget's layer), channels off
        included, float ``[C, H, W]``."""
        layer = self.layer if layer is None else self._check_layer({"value": layer})
        with seeing.switch_off(model(), self.off):
            return seeing.activations(model(), self.image(), [layer])[layer][0]
