"""What a trained VGG sees: its layers' outputs, switched-off channels and saliency maps.

Everything works on the shipped network (:func:`vgg_book.trained.trained_vgg`) and on uint8
28x28 images, as the live explorer (:mod:`vgg_book.trained_explorer`) does in the browser:

* :func:`layer_modules`: the module whose output is each named layer's output (``conv1_1`` is
  its ReLU, after the batch norm; ``pool1`` the pool; ``fc6`` its ReLU, ``fc8`` the last
  linear layer), names as in the manifest;
* :func:`activations`: those outputs for a batch of images;
* :func:`switch_off`: a context manager that zeroes chosen channels of chosen layers;
* :func:`saliency`: the gradient of a class score with respect to the input pixels (scaled
  to [0, 1]), Simonyan, Vedaldi & Zisserman (2013), arXiv:1312.6034;
* :func:`first_filters`: the first convolution's 3x3 filters, its batch norm folded in;
* :func:`occlusion`: how much a class's probability drops when a grey square hides each part
  of the image, Zeiler & Fergus (2014), arXiv:1311.2901;
* :func:`class_model`: an image made by gradient ascent on a class score, Simonyan et al.
  (2013);
* :func:`regions`, :func:`nearest_mean_accuracy`, :func:`float64`: what the chapter measures
  with them.

Pixels are on the images' scale, 0..255, wherever an image goes in or comes out; gradients are
per pixel scaled to [0, 1] (per ``pixel / 255``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
from dataclasses import dataclass, replace
from typing import Iterator, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from vgg_book.trained import manifest, network_input

__all__ = ["layer_modules", "layer_names", "activations", "switch_off", "scores",
           "probabilities", "saliency", "float64", "first_filters", "Occlusion",
           "occlusion_offsets", "occlusion", "class_model", "regions",
           "nearest_mean_accuracy"]


def layer_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Layer name -> the module whose output is that layer's output, in running order."""
    found: dict[str, nn.Module] = {}
    block, conv = 1, 0
    for m in model.features:
        if isinstance(m, nn.Conv2d):
            conv += 1
            name = f"conv{block}_{conv}"
        elif isinstance(m, nn.ReLU):
            found[name] = m  # conv -> (batch norm) -> ReLU: the ReLU's output is the layer's
        elif isinstance(m, nn.MaxPool2d):
            found[f"pool{block}"] = m
            block, conv = block + 1, 0
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    mods = list(model.classifier)
    for n, lin in enumerate(linears):
        i = mods.index(lin)
        last = n == len(linears) - 1
        found[f"fc{block + n}"] = lin if last else mods[i + 1]
    return found


def layer_names(model: nn.Module) -> list[str]:
    """The names :func:`layer_modules` knows, in running order."""
    return list(layer_modules(model))


def _check_names(model: nn.Module, names) -> dict[str, nn.Module]:
    mods = layer_modules(model)
    unknown = [n for n in names if n not in mods]
    if unknown:
        raise ValueError(f"unknown layer {unknown[0]!r}; the network's layers are "
                         f"{', '.join(mods)}")
    return mods


def _as_images(images) -> torch.Tensor:
    images = torch.as_tensor(images)
    if images.dim() == 2:
        images = images.unsqueeze(0)
    if images.dim() != 3 or tuple(images.shape[1:]) != (28, 28):
        raise ValueError(f"expected 28x28 images shaped [N, 28, 28] (or one [28, 28]), got "
                         f"{list(images.shape)}")
    return images


@torch.no_grad()
def activations(model: nn.Module, images, names: Optional[Sequence[str]] = None
                ) -> dict[str, torch.Tensor]:
    """Outputs of the named layers (default: all) for uint8 ``[N, 28, 28]`` images."""
    mods = _check_names(model, names or [])
    wanted = list(names) if names else list(mods)
    out: dict[str, torch.Tensor] = {}
    hooks = [mods[n].register_forward_hook(
        lambda m, i, o, n=n: out.__setitem__(n, o.detach().clone())) for n in wanted]
    try:
        model(_network_input(model, _as_images(images)))
    finally:
        for h in hooks:
            h.remove()
    return {n: out[n] for n in wanted}


@contextlib.contextmanager
def switch_off(model: nn.Module, channels: Mapping[str, Sequence[int]]) -> Iterator[nn.Module]:
    """Within the block, the given channels (or units, for ``fc`` layers) of the given layers
    output zero: ``with switch_off(model, {"conv1_1": [3]}): model(x)``."""
    mods = _check_names(model, channels)
    hooks = []
    for name, chans in channels.items():
        chans = list(chans)
        width = _width(model, name)
        bad = [c for c in chans if not isinstance(c, int) or not 0 <= c < width]
        if bad:
            raise ValueError(f"layer {name} has channels 0..{width - 1}; got {bad[0]!r}")

        def zero(m, i, o, chans=chans):
            o = o.clone()
            o[:, chans] = 0
            return o
        hooks.append(mods[name].register_forward_hook(zero))
    try:
        yield model
    finally:
        for h in hooks:
            h.remove()


def _width(model: nn.Module, name: str) -> int:
    """Channels (or units) of a layer's output: a pool keeps its conv's."""
    width = model.in_channels
    for m in [*model.features, *model.classifier]:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            width = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        if layer_modules(model).get(name) is m:
            return width
    raise ValueError(f"unknown layer {name!r}")


def scores(model: nn.Module, images, off: Optional[Mapping[str, Sequence[int]]] = None
           ) -> torch.Tensor:
    """Class scores (logits) ``[N, 10]`` of uint8 ``[N, 28, 28]`` images, channels ``off``."""
    with torch.no_grad(), switch_off(model, off or {}):
        return model(_network_input(model, _as_images(images)))


def probabilities(model: nn.Module, images,
                  off: Optional[Mapping[str, Sequence[int]]] = None) -> torch.Tensor:
    """Softmax of :func:`scores`."""
    return scores(model, images, off).softmax(1)


def saliency(model: nn.Module, images, target: Union[None, int, Sequence[int]] = None,
             off: Optional[Mapping[str, Sequence[int]]] = None) -> torch.Tensor:
    """d score[target] / d pixel, pixels scaled to [0, 1]: float ``[N, 28, 28]``.

    ``target``: a class for all images, one class per image, or ``None`` (each image's
    predicted class). The map shown is usually its absolute value. The score is the logit
    before the softmax, as in Simonyan et al. (2013).
    """
    images = _as_images(images)
    x = images.to(_dtype(model)).div(255).requires_grad_(True)
    with switch_off(model, off or {}):
        logits = model(_network_input(model, x * 255))
    if target is None:
        chosen = logits.argmax(1)
    else:
        chosen = _targets(target, len(images), logits.shape[1])
    logits.gather(1, chosen.view(-1, 1)).sum().backward()
    return x.grad.detach()


# ----------------------------------------------------------------------------- helpers
def _dtype(model: nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


@functools.lru_cache(maxsize=1)
def _manifest() -> dict:
    return manifest()  # read once: the loops below call the network hundreds of times


def _network_input(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """:func:`~vgg_book.trained.network_input` of pixels 0..255, in the model's dtype
    (float32: exactly ``network_input``; float64: the same steps in float64)."""
    if pixels.is_floating_point():
        pixels = pixels.clone()  # network_input divides a float input by 255 in place
    if _dtype(model) == torch.float32:
        return network_input(pixels, _manifest())
    norm = _manifest()["preprocess"]
    x = (pixels.to(_dtype(model)).unsqueeze(1) / 255 - norm["mean"]) / norm["std"]
    side = norm["network_side"]
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)


def _targets(target, n: int, classes: int) -> torch.Tensor:
    """``target`` (one class, one per image) as a long tensor ``[n]``, checked."""
    chosen = torch.as_tensor(target)
    if chosen.dtype.is_floating_point or chosen.dtype == torch.bool:
        raise ValueError(f"target must be a class 0..{classes - 1} or one per image, got "
                         f"{target!r}")
    chosen = chosen.expand(n) if chosen.dim() == 0 else chosen
    if chosen.dim() != 1 or len(chosen) != n or chosen.min() < 0 or chosen.max() >= classes:
        raise ValueError(f"target must be a class 0..{classes - 1} or one per image, got "
                         f"{target!r}")
    return chosen.long()


def float64(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model`` (eval mode), for checks that need more digits, such as
    finite differences; every function here runs it on float64 inputs."""
    return copy.deepcopy(model).double().eval()


# ----------------------------------------------------------------------------- the filters
def first_filters(model: nn.Module, fold_batch_norm: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first convolution's filters ``[C, kh, kw]`` (one input channel) and biases ``[C]``.

    With ``fold_batch_norm`` (the default) the batch norm that follows, in eval mode, is
    folded in: each filter is scaled by ``gamma / sqrt(var + eps)`` and the bias becomes
    ``(bias - mean) * gamma / sqrt(var + eps) + beta``, so that conv1_1's output is exactly
    ``relu(conv2d(x, filters, biases, padding=1))`` of the normalised input ``x``. Without it,
    the convolution's own weights and biases, before the batch norm rescales them.
    """
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("the model has no convolution in model.features")
    conv = convs[0]
    if conv.in_channels != 1:
        raise ValueError(f"expected a first convolution on one (grey) channel, it has "
                         f"{conv.in_channels}")
    weight = conv.weight.detach()[:, 0].clone()
    bias = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(len(weight))
    if not fold_batch_norm:
        return weight, bias
    mods = list(model.features)
    after = mods[mods.index(conv) + 1]
    if not isinstance(after, nn.BatchNorm2d):
        raise ValueError(f"fold_batch_norm: the first convolution is followed by "
                         f"{type(after).__name__}, not a BatchNorm2d; pass "
                         "fold_batch_norm=False")
    scale = (after.weight / torch.sqrt(after.running_var + after.eps)).detach()
    return weight * scale.view(-1, 1, 1), (bias - after.running_mean) * scale + after.bias.detach()


# ----------------------------------------------------------------------------- occlusion
@dataclass(frozen=True)
class Occlusion:
    """What :func:`occlusion` measured.

    ``drop[n, i, j]``: the target's probability for image n minus its probability with the
    square whose top-left pixel is ``(offsets[i], offsets[j])`` filled with ``fill``; positive
    where hiding that part hurts. ``base``: the target's probability on the intact image.
    """
    drop: torch.Tensor      # float [N, P, P]
    base: torch.Tensor      # float [N]
    target: torch.Tensor    # long [N]
    patch: int              # side of the square, pixels
    stride: int             # pixels between two positions
    fill: float             # the square's pixel value, 0..255
    offsets: tuple          # top-left row (and column) of each position

    def centres(self) -> list[float]:
        """The centre of each position's square along one axis, in pixels (pixel p at p)."""
        return [o + (self.patch - 1) / 2 for o in self.offsets]

    def subset(self, index) -> "Occlusion":
        """The measurements of some of the images (``index``: a list of image numbers)."""
        index = torch.as_tensor(index, dtype=torch.long).view(-1)
        return replace(self, drop=self.drop[index], base=self.base[index],
                       target=self.target[index])


def occlusion_offsets(patch: int, stride: int, side: int = 28) -> list[int]:
    """Top-left rows (or columns) of the squares: ``0, stride, ...`` while the square fits."""
    for name, value in (("patch", patch), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive whole number of pixels, got "
                             f"{value!r}")
    if patch > side:
        raise ValueError(f"patch must fit in the {side}x{side} image, got {patch}")
    return list(range(0, side - patch + 1, stride))


@torch.no_grad()
def occlusion(model: nn.Module, images, patch: int = 8, stride: int = 4,
              fill: Optional[float] = None, target: Union[None, int, Sequence[int]] = None,
              batch: int = 256) -> Occlusion:
    """Zeiler & Fergus (2014) occlusion sensitivity of uint8 ``[N, 28, 28]`` images.

    A ``patch`` x ``patch`` square of pixel value ``fill`` (0..255; default: the training
    set's mean pixel, a grey) slides over each image by ``stride`` pixels, always inside it;
    for every position the network classifies the occluded image (all positions of all images
    in batched forwards of at most ``batch`` images) and the result holds the drop of the
    ``target`` class's probability (``None``: each image's predicted class).
    """
    images = _as_images(images)
    offsets = occlusion_offsets(patch, stride, images.shape[-1])
    if fill is None:
        fill = _manifest()["preprocess"]["mean"] * 255
    if not 0 <= float(fill) <= 255:
        raise ValueError(f"fill is a pixel value 0..255, got {fill!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive number of images, got {batch!r}")
    dtype = _dtype(model)
    # Channels-last runs these small convolutions about 1.5 times faster on a CPU (the same
    # values to float32 rounding); a copy, so that the caller's model is left as it was.
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)

    def probabilities_of(pixels: torch.Tensor) -> torch.Tensor:
        x = _network_input(model, pixels).contiguous(memory_format=torch.channels_last)
        return fast(x).softmax(1)

    pixels = images.to(dtype)
    probs = probabilities_of(pixels)
    chosen = probs.argmax(1) if target is None else _targets(target, len(images),
                                                             probs.shape[1])
    base = probs.gather(1, chosen.view(-1, 1))[:, 0]
    # One mask per position: 1 inside the square.
    p = len(offsets)
    masks = torch.zeros(p * p, *images.shape[1:], dtype=torch.bool)
    for k, (r, c) in enumerate((r, c) for r in offsets for c in offsets):
        masks[k, r:r + patch, c:c + patch] = True
    drops = torch.empty(len(images), p * p, dtype=dtype)
    for n in range(len(images)):
        occluded = torch.where(masks, torch.tensor(float(fill), dtype=dtype), pixels[n])
        for start in range(0, p * p, batch):
            prob = probabilities_of(occluded[start:start + batch])[:, chosen[n]]
            drops[n, start:start + batch] = base[n] - prob
    return Occlusion(drops.view(-1, p, p), base, chosen, patch, stride, float(fill),
                     tuple(offsets))


# ----------------------------------------------------------------------------- class models
def class_model(model: nn.Module, cls: Union[int, Sequence[int]], steps: int = 200,
                lr: float = 0.05, l2: Union[float, Sequence[float]] = 0.5,
                seed: int = 0) -> torch.Tensor:
    """Simonyan, Vedaldi & Zisserman's (2013) class model: an image that maximises the class
    score (the logit before the softmax) ``S_c(x) - l2 * ||x||^2`` by gradient ascent.

    ``x`` is the 28x28 image with pixels scaled to [0, 1]; it starts at the training set's
    mean grey plus noise (standard deviation 0.01, drawn from ``seed``) and takes ``steps``
    steps of ``lr`` times the gradient, each followed by clipping to [0, 1], so that it stays
    an image the network could be shown. ``cls``: one class, or several (optimised together,
    each on its own image); ``l2``: one penalty for all, or one per class. Returns float
    ``[N, 28, 28]`` on the pixel scale 0..255, which :func:`scores` and the other functions
    take as they take the test images.
    """
    classes = _classes(cls, model)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a whole number >= 0, got {steps!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    dtype = _dtype(model)
    penalty = torch.as_tensor(l2, dtype=dtype)
    if penalty.dim() == 0:
        penalty = penalty.expand(len(classes))
    if penalty.shape != (len(classes),) or not bool((penalty >= 0).all()):
        raise ValueError(f"l2 must be zero or positive, one value or one per class "
                         f"({len(classes)}), got {l2!r}")
    mean = _manifest()["preprocess"]["mean"]
    g = torch.Generator().manual_seed(seed)
    x = (mean + 0.01 * torch.randn(len(classes), 28, 28, generator=g)).clamp(0, 1).to(dtype)
    wanted = [p.requires_grad for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(False)  # gradients for the image only
        for _ in range(steps):
            x.requires_grad_(True)
            logits = model(_network_input(model, x * 255))
            norms = (x ** 2).sum((1, 2))
            objective = (logits.gather(1, classes.view(-1, 1))[:, 0] - penalty * norms).sum()
            (grad,) = torch.autograd.grad(objective, x)
            x = (x.detach() + lr * grad).clamp(0, 1)
    finally:
        for p, w in zip(model.parameters(), wanted):
            p.requires_grad_(w)
    return x.detach() * 255


def _classes(cls, model: nn.Module) -> torch.Tensor:
    width = _width(model, layer_names(model)[-1])
    classes = torch.as_tensor(cls)
    if classes.dtype.is_floating_point or classes.dtype == torch.bool or classes.dim() > 1:
        raise ValueError(f"cls must be a class 0..{width - 1} or a list of them, got {cls!r}")
    classes = classes.view(-1).long()
    if len(classes) == 0 or classes.min() < 0 or classes.max() >= width:
        raise ValueError(f"cls must be a class 0..{width - 1} or a list of them, got {cls!r}")
    return classes


# ----------------------------------------------------------------------------- measurements
def regions(images, band: int = 2) -> dict[str, torch.Tensor]:
    """Three masks ``[N, 28, 28]`` that split each image: ``"garment"`` (pixels above 0),
    ``"outline"`` (black pixels within ``band`` pixels of the garment, a square neighbourhood)
    and ``"background"`` (the other black pixels)."""
    images = _as_images(images)
    if isinstance(band, bool) or not isinstance(band, int) or band < 1:
        raise ValueError(f"band must be a positive number of pixels, got {band!r}")
    garment = images > 0
    near = F.max_pool2d(garment.float().unsqueeze(1), 2 * band + 1, 1, band)[:, 0] > 0
    return {"garment": garment, "outline": near & ~garment, "background": ~near}


def nearest_mean_accuracy(features: torch.Tensor, labels: torch.Tensor, fit: int) -> float:
    """Share of images ``fit:`` that lie nearest (Euclidean) to the mean feature vector of
    their own class, the means taken over images ``:fit``: how well a layer's outputs
    separate the classes without training anything."""
    features = torch.as_tensor(features).flatten(1).double()
    labels = torch.as_tensor(labels)
    if len(features) != len(labels) or not 0 < fit < len(labels):
        raise ValueError(f"need as many labels as feature rows and 0 < fit < {len(labels)}; "
                         f"got {len(features)} rows, {len(labels)} labels, fit={fit!r}")
    classes = labels[:fit].unique()
    means = torch.stack([features[:fit][labels[:fit] == c].mean(0) for c in classes])
    nearest = classes[torch.cdist(features[fit:], means).argmin(1)]
    return float((nearest == labels[fit:]).double().mean())
