"""After VGG: the Inception module and a VGG with a global-average-pooling head.

``Inception`` is the module of GoogLeNet (Szegedy et al. 2014, "Going deeper with
convolutions", arXiv:1409.4842, Figure 2b): four branches run side by side on the same input
and their outputs are concatenated along the channel axis. Its arguments follow torchvision's
``googlenet.Inception`` (``in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj``),
but the third branch has the paper's 5x5 convolution (torchvision's uses a 3x3 there), every
convolution is followed by a ReLU as in the paper, and there is no batch norm.

``vgg_gap`` / ``gap_head`` replace VGG's three fully connected layers by global average
pooling and one linear layer (Lin et al. 2013, "Network in Network"; GoogLeNet's head).
"""

from __future__ import annotations

import copy
from typing import Optional, Sequence, Union

import torch
from torch import nn

from .models import VGG, vgg

__all__ = ["Inception", "GOOGLENET_INCEPTIONS", "GOOGLENET_SPATIAL", "GAPVGG", "gap_head",
           "vgg_gap"]

ARG_NAMES = ("in_channels", "ch1x1", "ch3x3red", "ch3x3", "ch5x5red", "ch5x5", "pool_proj")

#: Table 1 of the GoogLeNet paper: module name -> the seven arguments of ``Inception``.
GOOGLENET_INCEPTIONS: dict[str, tuple[int, ...]] = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}
#: Height = width (pixels) of each module's input and output in GoogLeNet on a 224x224 image.
GOOGLENET_SPATIAL = {name: {"3": 28, "4": 14, "5": 7}[name[0]] for name in GOOGLENET_INCEPTIONS}


def _positive_int(owner: str, name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer (a number of channels), "
                         f"got {value!r}")
    return value


def _check_widths(*widths) -> None:
    # ValueError naming the first of Inception's seven widths that is not a positive int.
    for name, value in zip(ARG_NAMES, widths):
        _positive_int("Inception", name, value)


def _conv_relu(in_channels: int, out_channels: int, kernel_size: int) -> list[nn.Module]:
    # 'same' padding: every branch keeps the input's height and width, so they concatenate.
    return [nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.ReLU(inplace=True)]


class Inception(nn.Module):
    """GoogLeNet's Inception module with dimension reductions (the paper's Figure 2b).

    Branches, each keeping height and width (stride 1, 'same' padding):

    - ``branch1``: 1x1 conv to ``ch1x1`` channels;
    - ``branch2``: 1x1 conv to ``ch3x3red`` ("3x3 reduce"), then 3x3 conv to ``ch3x3``;
    - ``branch3``: 1x1 conv to ``ch5x5red`` ("5x5 reduce"), then 5x5 conv to ``ch5x5``;
    - ``branch4``: 3x3 max-pool (stride 1), then 1x1 conv to ``pool_proj``.

    A ReLU follows every convolution. The output is the concatenation along channels:
    ``ch1x1 + ch3x3 + ch5x5 + pool_proj`` channels (``out_channels``).
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int,
                 ch5x5red: int, ch5x5: int, pool_proj: int) -> None:
        super().__init__()
        _check_widths(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
        self.in_channels = in_channels
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj
        self.branch1 = nn.Sequential(*_conv_relu(in_channels, ch1x1, 1))
        self.branch2 = nn.Sequential(*_conv_relu(in_channels, ch3x3red, 1),
                                     *_conv_relu(ch3x3red, ch3x3, 3))
        self.branch3 = nn.Sequential(*_conv_relu(in_channels, ch5x5red, 1),
                                     *_conv_relu(ch5x5red, ch5x5, 5))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
                                     *_conv_relu(in_channels, pool_proj, 1))

    @classmethod
    def googlenet(cls, name: str) -> "Inception":
        """The module ``name`` ("3a" .. "5b") of GoogLeNet, with the paper's Table 1 widths."""
        if name not in GOOGLENET_INCEPTIONS:
            raise ValueError(f"unknown GoogLeNet Inception module {name!r}; expected one of "
                             f"{', '.join(GOOGLENET_INCEPTIONS)}")
        return cls(*GOOGLENET_INCEPTIONS[name])

    def branches(self) -> dict[str, nn.Sequential]:
        """The four branches by name, in concatenation order."""
        return {"branch1": self.branch1, "branch2": self.branch2,
                "branch3": self.branch3, "branch4": self.branch4}

    def check_input(self, x) -> None:
        """ValueError unless ``x`` is a 4-D tensor with ``in_channels`` channels."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"Inception expects a 4-D tensor [batch, {self.in_channels}, H, W], "
                             f"got {shape}; check the previous layer's output channels")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        # the four branches side by side, their outputs stacked along the channel axis
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)],
                         dim=1)


class GAPVGG(nn.Module):
    """VGG's ``features``, then global average pooling and one linear layer.

    ``avgpool`` averages each of the last conv's C channels over all positions (any input
    size works), and ``classifier`` maps those C numbers to the class scores: C * num_classes
    weights plus num_classes biases, instead of VGG's three FC layers.
    """

    def __init__(self, features: nn.Sequential, num_classes: int = 1000) -> None:
        super().__init__()
        _positive_int("GAPVGG", "num_classes", num_classes)
        convs = [m for m in features.modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ValueError("GAPVGG: features has no Conv2d layer; pass a VGG's features")
        self.in_channels = convs[0].in_channels
        self.num_pools = sum(isinstance(m, nn.MaxPool2d) for m in features.modules())
        self.features = features
        self.input_size = None  # any side: VGG.check_input then checks only the minimum
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(convs[-1].out_channels, num_classes)
        nn.init.normal_(self.classifier.weight, 0, 0.01)  # as VGG's linears
        nn.init.constant_(self.classifier.bias, 0)

    # The same checks, and the same messages, as VGG's.
    check_input = VGG.check_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def gap_head(model: VGG, num_classes: Optional[int] = None) -> GAPVGG:
    """A copy of ``model`` whose FC head is replaced by global average pooling + one linear.

    The convolutional ``features`` (and their weights) are copied, so ``model`` is unchanged;
    ``num_classes`` defaults to the model's own. The new linear layer is freshly initialised.
    """
    if not isinstance(model, VGG):
        raise ValueError(f"gap_head expects a vgg_book VGG model (from vgg_book.models.vgg), "
                         f"got {type(model).__name__}")
    if num_classes is None:
        num_classes = model.classifier[-1].out_features
    return GAPVGG(copy.deepcopy(model.features), num_classes=num_classes)


def vgg_gap(config: Union[str, Sequence] = "D", *, num_classes: int = 1000, in_channels: int = 3,
            batch_norm: bool = False, width_ratio: int = 1) -> GAPVGG:
    """Build VGG configuration ``config`` ("A".."E", "vgg16", ...) with a GAP + linear head.

    Arguments as ``vgg_book.models.vgg``; there is no ``hidden`` or ``dropout`` since the head
    is a single linear layer from the last conv's channels to ``num_classes``.
    """
    # Build the plain VGG with a 1-unit hidden layer: it validates the arguments and
    # initialises the convs as torchvision does, without allocating a 4096-wide head.
    base = vgg(config, num_classes=num_classes, in_channels=in_channels,
               batch_norm=batch_norm, width_ratio=width_ratio, hidden=1, dropout=0.0)
    return GAPVGG(base.features, num_classes=num_classes)
