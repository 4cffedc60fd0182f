"""The VGG family as data: the paper's configurations, blocks, and the full network.

Configurations follow Table 1 of Simonyan & Zisserman (2015), "Very Deep Convolutional
Networks for Large-Scale Image Recognition" (arXiv:1409.1556). Each is a list in which an
integer ``c`` is a 3x3 convolution (padding 1) with ``c`` output channels, ``"M"`` a 2x2
max-pool, ``"LRN"`` local response normalisation and ``("1x1", c)`` a 1x1 convolution (config C).
Module names and ``state_dict`` keys equal torchvision's, so its weights load with ``strict=True``.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

__all__ = [
    "CONFIGS",
    "ALIASES",
    "VGG",
    "vgg_block",
    "make_features",
    "vgg",
    "d2l_vgg11",
    "init_xavier_",
    "fc_to_conv",
    "linear_to_conv",
    "MIN_INPUT_SIZE",
]

Layer = Union[int, str, tuple]

CONFIGS: dict[str, list[Layer]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, ("1x1", 256), "M",
          512, 512, ("1x1", 512), "M", 512, 512, ("1x1", 512), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
ALIASES = {"vgg11": "A", "vgg11-lrn": "A-LRN", "vgg13": "B", "vgg16-1x1": "C",
           "vgg16": "D", "vgg19": "E"}

#: Five 2x2 pools halve the input five times: anything below 32x32 pools to nothing.
MIN_INPUT_SIZE = 32


def _check_counts(where: str, **counts: int) -> None:
    """Raise ``ValueError`` unless every count is a positive integer (a bool is not one)."""
    for name, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{where}: {name} must be a positive integer, got {value!r}")


def vgg_block(num_convs: int, in_channels: int, out_channels: int,
              batch_norm: bool = False) -> nn.Sequential:
    """One VGG block: ``num_convs`` 3x3 convolutions (padding 1) with ReLU, then a 2x2 max-pool.

    Padding 1 keeps the height and width of every convolution's input; the pool halves them.
    """
    _check_counts("vgg_block", num_convs=num_convs, in_channels=in_channels,
                  out_channels=out_channels)
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
        in_channels = out_channels
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


def resolve_config(config: Union[str, Sequence[Layer]]) -> list[Layer]:
    """Return the layer list for a config name, alias or explicit list, validated."""
    if isinstance(config, str):
        key = ALIASES.get(config.lower(), config.upper() if config.upper() in CONFIGS else config)
        if key not in CONFIGS:
            valid = ", ".join([*CONFIGS, *ALIASES])
            raise ValueError(f"unknown VGG config {config!r}; expected one of: {valid}, "
                             "or a list such as [64, 'M', 128, 'M']")
        return list(CONFIGS[key])
    if not isinstance(config, (list, tuple)) or len(config) == 0:
        raise ValueError(f"a VGG config must be a name or a non-empty list of layers, got {config!r}")
    for i, item in enumerate(config):
        ok = ((isinstance(item, int) and not isinstance(item, bool) and item > 0)
              or item in ("M", "LRN")
              or (isinstance(item, (tuple, list)) and len(item) == 2 and item[0] == "1x1"
                  and isinstance(item[1], int) and item[1] > 0))
        if not ok:
            raise ValueError(
                f"malformed VGG config: item {i} is {item!r}; expected a positive int (3x3 conv "
                "channels), 'M' (2x2 max-pool), 'LRN', or ('1x1', channels)")
    if not any(isinstance(item, int) and not isinstance(item, bool) for item in config):
        raise ValueError("malformed VGG config: it has no 3x3 convolution (no positive int)")
    return list(config)


def _scaled(channels: int, width_ratio: int) -> int:
    return channels // width_ratio


def make_features(config: Union[str, Sequence[Layer]], in_channels: int = 3,
                  batch_norm: bool = False, width_ratio: int = 1) -> nn.Sequential:
    """Turn a configuration list into the ``features`` stack (torchvision's ``make_layers``)."""
    layers: list[nn.Module] = []
    for item in resolve_config(config):
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif item == "LRN":
            # Krizhevsky et al.'s (2012) constants, which the paper reuses (Section 2.1):
            # size 5, alpha 1e-4, beta 0.75, k 2. PyTorch divides alpha by size (Caffe's
            # convention), so the sum of squares is weighted by 1e-4 / 5; in Krizhevsky et
            # al.'s formula alpha multiplies the sum directly (that is alpha=5e-4 here).
            layers.append(nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0))
        else:
            kernel, channels = (1, item[1]) if isinstance(item, (tuple, list)) else (3, item)
            out_channels = _scaled(channels, width_ratio)
            layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=kernel,
                                    padding=kernel // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
            in_channels = out_channels
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """``features`` (convs and pools), ``avgpool`` (to 7x7), ``classifier`` (three FC layers).

    With ``input_size`` set there is no adaptive pool (``avgpool`` is the identity), as in
    d2l's VGG: the classifier reads the last map as it is, and its first linear layer has
    ``C * (input_size // 2**pools)**2`` inputs. Its layers would take any side with the same
    ``side // 2**pools``, as d2l's do; ``check_input`` refuses every side but ``input_size``.
    """

    def __init__(self, features: nn.Sequential, num_classes: int = 1000, hidden: int = 4096,
                 dropout: float = 0.5, init_weights: bool = True,
                 input_size: int | None = None) -> None:
        super().__init__()
        convs = [m for m in features.modules() if isinstance(m, nn.Conv2d)]
        self.in_channels = convs[0].in_channels
        self.num_pools = sum(isinstance(m, nn.MaxPool2d) for m in features.modules())
        last_channels = convs[-1].out_channels
        self.features = features
        self.input_size = input_size
        if input_size is None:
            self.flat_side = 7
            self.avgpool: nn.Module = nn.AdaptiveAvgPool2d((7, 7))
        else:
            self.flat_side = input_size // 2 ** self.num_pools
            if self.flat_side < 1:
                raise ValueError(f"input_size={input_size} is too small: {self.num_pools} 2x2 "
                                 f"max-pools need at least {2 ** self.num_pools}")
            self.avgpool = nn.Identity()
        self.classifier = nn.Sequential(
            nn.Linear(last_channels * self.flat_side ** 2, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )
        if init_weights:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's initialisation: Kaiming-normal convs, N(0, 0.01) linears, BN at 1/0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear ``ValueError`` for an input this network cannot take."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"VGG expects a 4-D tensor [batch, {self.in_channels}, H, W], got {shape}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"VGG expects {self.in_channels} input channel(s), got {x.shape[1]} "
                f"(input shape {tuple(x.shape)}); build it with in_channels={x.shape[1]} or "
                "convert the images")
        minimum = 2 ** self.num_pools
        if x.shape[2] < minimum or x.shape[3] < minimum:
            raise ValueError(
                f"input {x.shape[2]}x{x.shape[3]} is too small: {self.num_pools} 2x2 max-pools "
                f"need at least {minimum}x{minimum}; resize the images first, e.g. "
                f"torch.nn.functional.interpolate(x, size=({minimum}, {minimum}))")
        if self.input_size is not None and tuple(x.shape[2:]) != (self.input_size,) * 2:
            first = self.classifier[0]
            raise ValueError(
                f"this VGG has no adaptive pool and was built for {self.input_size}x"
                f"{self.input_size} inputs (its first linear layer reads {first.in_features:,} "
                f"values), got {x.shape[2]}x{x.shape[3]}; build it with "
                f"input_size={x.shape[2]} or resize the images")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def vgg(config: Union[str, Sequence[Layer]] = "A", *, num_classes: int = 1000,
        in_channels: int = 3, batch_norm: bool = False, width_ratio: int = 1,
        hidden: int = 4096, dropout: float = 0.5, input_size: int | None = None) -> VGG:
    """Build a VGG network from a config name (``"A"``..``"E"``, ``"vgg16"``, ...) or list.

    ``width_ratio`` divides every conv's channel count (d2l's narrow VGG uses 4; the post
    *Repeating Elements* 8); it must divide each of them exactly. ``input_size`` drops the adaptive pool (see ``VGG``).
    """
    layers = resolve_config(config)
    if not isinstance(width_ratio, int) or isinstance(width_ratio, bool) or width_ratio < 1:
        raise ValueError(f"width_ratio must be a positive integer, got {width_ratio!r}")
    channels = [c[1] if isinstance(c, (tuple, list)) else c for c in layers
                if not isinstance(c, str)]
    bad = sorted({c for c in channels if c % width_ratio})
    if bad:
        raise ValueError(f"width_ratio={width_ratio} does not divide the channel counts {bad}; "
                         "choose a ratio that divides every conv width (e.g. 1, 2, 4, 8)")
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels),
                        ("hidden", hidden)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if input_size is not None and (not isinstance(input_size, int) or isinstance(input_size, bool)
                                   or input_size < 1):
        raise ValueError(f"input_size must be a positive integer or None, got {input_size!r}")
    features = make_features(layers, in_channels=in_channels, batch_norm=batch_norm,
                             width_ratio=width_ratio)
    return VGG(features, num_classes=num_classes, hidden=hidden, dropout=dropout,
               input_size=input_size)


def d2l_vgg11(width_ratio: int = 4, num_classes: int = 10, in_channels: int = 1,
              batch_norm: bool = False, input_size: int = 224) -> VGG:
    """d2l's narrow VGG-11 for Fashion-MNIST: config A with every width divided by ``width_ratio``.

    As in d2l, the five blocks are followed by ``Flatten`` and the FC head (4096 hidden units),
    with no adaptive pool: the first linear layer reads ``C * (input_size // 32)**2`` values
    (d2l's ``LazyLinear`` infers that from its 224x224 images). d2l's network then takes every
    side with the same ``side // 32`` (224 to 255); this one takes only ``input_size`` (its own
    check). d2l divides the widths by 4 (16..128); the post *Repeating Elements* by 8.
    """
    return vgg("A", num_classes=num_classes, in_channels=in_channels, batch_norm=batch_norm,
               width_ratio=width_ratio, input_size=input_size)


def init_xavier_(model: nn.Module) -> nn.Module:
    """Re-initialise every convolution and linear weight Xavier-uniform, in place, as d2l's
    ``init_cnn`` (applied by its trainer) does; biases stay as they are. Returns ``model``."""
    for m in model.modules():
        if type(m) in (nn.Linear, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
    return model


class ConvClassifier(nn.Module):
    """The FC head run as convolutions (7x7 then two 1x1), so any input >= 224 gives a score map."""

    def __init__(self, features: nn.Module, head: nn.Sequential, min_size: int = 224) -> None:
        super().__init__()
        self.features = features
        self.head = head
        self.min_size = min_size  # pixels: the 7x7 first layer needs a 7x7 map after the pools

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_channels = next(m for m in self.features.modules() if isinstance(m, nn.Conv2d)).in_channels
        if isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[1] != in_channels:
            raise ValueError(f"the network expects {in_channels} input channel(s), got "
                             f"{x.shape[1]} (input shape {tuple(x.shape)})")
        if isinstance(x, torch.Tensor) and x.dim() == 4 and min(x.shape[2:]) < self.min_size:
            raise ValueError(
                f"input {x.shape[2]}x{x.shape[3]} is too small for the convolutional classifier: "
                f"its first layer needs at least {self.min_size}x{self.min_size}; use the "
                "original VGG (any size >= 32) or resize the images")
        return self.head(self.features(x))


def linear_to_conv(linear: nn.Linear, side: int) -> nn.Conv2d:
    """The convolution that computes ``linear`` on a ``C x side x side`` map: the same
    weights, each output's row reshaped into a ``C x side x side`` kernel (1x1 for side 1)."""
    channels = linear.in_features // side ** 2
    conv = nn.Conv2d(channels, linear.out_features, kernel_size=side)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.reshape(linear.out_features, channels, side, side))
        conv.bias.copy_(linear.bias)
    return conv


def fc_to_conv(model: VGG) -> ConvClassifier:
    """Convert a VGG's FC classifier into an equivalent fully convolutional network.

    ``Linear(C*7*7, h)`` becomes ``Conv2d(C, h, 7)``, the next two linears 1x1 convs
    (``linear_to_conv``). On a 224x224 input the output is a 1x1 score map equal to
    ``model(x)``; on a larger input it is a map of scores, one per 224x224 window at stride 32
    (dense evaluation, as in the paper). The features are shared with ``model``, the head's
    weights copied.
    """
    if not isinstance(model, VGG):
        raise ValueError(f"fc_to_conv expects a vgg_book VGG model, got {type(model).__name__}")
    first = next(m for m in model.classifier if isinstance(m, nn.Linear))
    side = model.flat_side
    layers: list[nn.Module] = []
    for i, m in enumerate(model.classifier):
        if isinstance(m, nn.Linear):
            layers.append(linear_to_conv(m, side if m is first else 1))
        elif isinstance(m, nn.ReLU):
            layers.append(nn.ReLU(inplace=False))
        elif isinstance(m, nn.Dropout):
            layers.append(nn.Dropout(m.p))
        else:  # pragma: no cover - VGG's classifier holds only these
            raise ValueError(f"unexpected layer {i} in classifier: {m}")
    head = nn.Sequential(*layers)
    head.train(model.training)
    return ConvClassifier(model.features, head, min_size=side * 2 ** model.num_pools)
