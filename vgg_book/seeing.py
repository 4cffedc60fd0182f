"""What a trained VGG sees: its layers' outputs, switched-off channels and saliency maps.

Everything works on the shipped network (:func:`vgg_book.trained.trained_vgg`) and on uint8
28x28 images, as the live explorer (:mod:`vgg_book.trained_explorer`) does in the browser:

* :func:`layer_modules`: the module whose output is each named layer's output (``conv1_1`` is
  its ReLU, after the batch norm; ``pool1`` the pool; ``fc6`` its ReLU, ``fc8`` the last
  linear layer), names as in the manifest;
* :func:`activations`: those outputs for a batch of images;
* :func:`switch_off`: a context manager that zeroes chosen channels of chosen layers;
* :func:`saliency`: the gradient of a class score with respect to the input pixels (scaled
  to [0, 1]), Simonyan, Vedaldi & Zisserman (2013), arXiv:1312.6034.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from vgg_book.trained import manifest, network_input

__all__ = ["layer_modules", "layer_names", "activations", "switch_off", "scores",
           "probabilities", "saliency"]


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
        model(network_input(_as_images(images), manifest()))
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
        return model(network_input(_as_images(images), manifest()))


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
    x = images.float().div(255).requires_grad_(True)
    with switch_off(model, off or {}):
        logits = model(network_input(x * 255, manifest()))
    if target is None:
        chosen = logits.argmax(1)
    else:
        chosen = torch.as_tensor(target).expand(len(images)) if torch.as_tensor(
            target).dim() == 0 else torch.as_tensor(target)
        if len(chosen) != len(images) or chosen.min() < 0 or chosen.max() >= logits.shape[1]:
            raise ValueError(f"target must be a class 0..{logits.shape[1] - 1} or one per "
                             f"image, got {target!r}")
    logits.gather(1, chosen.view(-1, 1)).sum().backward()
    return x.grad.detach()
