"""The trained network the book ships: the CPU recipe's narrow VGG-11, in float16.

``python -m vgg_book.trained --train`` trains it once (``python -m vgg_book.train --recipe
cpu --seed 0``, about 80 s on two cores), measures it on the full test set in float32 with its
float16 weights, and writes three files of package data into ``vgg_book/trained/``:

* ``cpu_vgg11.f16``: every floating-point tensor of the state dict, in the manifest's order,
  as little-endian float16 values, one after another;
* ``cpu_vgg11.json``: the manifest: the architecture (:data:`~vgg_book.train.CPU_RECIPE_MODEL`),
  the recipe and seed, the normalisation, every tensor's name, shape and offset, the layers in
  the order the network runs them, the test accuracy and the SHA-256 of both binary files;
* ``explorer_images.u8``: test images for the live explorer's picker (``IMAGES_PER_CLASS``
  of each class, the first ones of the test set), 784 bytes each, with their labels and
  indices in the manifest.

:func:`trained_vgg` loads the network into :func:`vgg_book.train.recipe_model`'s PyTorch
model, and refuses a file whose hash, size or shapes differ from the manifest's, with a clear
:class:`WeightsError`. The live explorer (:mod:`vgg_book.trained_explorer`) sends the same
bytes to the reader's browser.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from vgg_book.data import CLASS_NAMES
from vgg_book.train import CPU_RECIPE, CPU_RECIPE_MODEL, preprocess, recipe_model

__all__ = ["WeightsError", "FORMAT", "WEIGHTS", "MANIFEST", "IMAGES", "MAX_BYTES",
           "manifest", "weights_bytes", "load_state", "trained_vgg", "explorer_images",
           "network_input", "layer_specs", "export", "main"]

FORMAT = "vgg-book-weights/1"
WEIGHTS = "cpu_vgg11.f16"
MANIFEST = "cpu_vgg11.json"
IMAGES = "explorer_images.u8"
#: The float16 weights must fit in this many bytes (the explorer sends them to the page).
MAX_BYTES = 1_000_000
SEED = 0
IMAGES_PER_CLASS = 12
COMMAND = "python -m vgg_book.trained --train"
INPUT_SIDE = 28


class WeightsError(ValueError):
    """The shipped weights (or a file given in their place) do not match their manifest."""


def _folder(folder: Optional[Union[str, os.PathLike]] = None):
    return Path(folder) if folder is not None else resources.files("vgg_book").joinpath("trained")


def manifest(folder: Optional[Union[str, os.PathLike]] = None) -> dict:
    """The manifest of the shipped network (or of the one in ``folder``)."""
    path = _folder(folder).joinpath(MANIFEST)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WeightsError(f"no trained network in {path.parent}: {MANIFEST} is missing; "
                           f"make it with `{COMMAND}`") from None
    try:
        found = json.loads(text)
    except json.JSONDecodeError as err:
        raise WeightsError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(found, dict) or found.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a vgg-book weights manifest (expected "
                           f"\"format\": \"{FORMAT}\")")
    return found


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_checked(folder, name: str, expected_sha: str, expected_size: int) -> bytes:
    path = _folder(folder).joinpath(name)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WeightsError(f"{name} is missing from {path.parent}; make it with "
                           f"`{COMMAND}`") from None
    if len(data) != expected_size:
        raise WeightsError(f"{path} has {len(data):,} bytes but its manifest expects "
                           f"{expected_size:,}: the file is truncated or not this network's")
    digest = _sha256(data)
    if digest != expected_sha:
        raise WeightsError(f"{path} has SHA-256 {digest[:16]}... but its manifest expects "
                           f"{expected_sha[:16]}...: the file was changed or is not this "
                           "network's; restore it or re-export it with "
                           f"`{COMMAND}`")
    return data


def weights_bytes(folder=None, meta: Optional[dict] = None) -> bytes:
    """The float16 weights, checked against the manifest's size and SHA-256."""
    meta = meta or manifest(folder)
    count = sum(t["count"] for t in meta["tensors"])
    return _read_checked(folder, meta["weights"]["file"], meta["weights"]["sha256"], 2 * count)


def load_state(folder=None, meta: Optional[dict] = None) -> dict[str, torch.Tensor]:
    """The state dict (float32 tensors holding float16-rounded values), checked."""
    meta = meta or manifest(folder)
    values = np.frombuffer(weights_bytes(folder, meta), dtype="<f2")
    state = {}
    for t in meta["tensors"]:
        shape, count, offset = tuple(t["shape"]), t["count"], t["offset"]
        if int(np.prod(shape, dtype=np.int64)) != count:
            raise WeightsError(f"manifest entry {t['name']}: shape {list(shape)} holds "
                               f"{int(np.prod(shape))} values, not {count}")
        chunk = values[offset:offset + count]
        state[t["name"]] = torch.from_numpy(chunk.astype(np.float32)).reshape(shape)
    return state


def _check_shapes(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()
            if v.is_floating_point()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    wrong = [f"{k}: {list(got[k])} where the model has {list(want[k])}"
             for k in sorted(set(want) & set(got)) if want[k] != got[k]]
    if missing or extra or wrong:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"unexpected {', '.join(extra)}"] if extra else []) + wrong
        raise WeightsError("the weights do not fit the CPU recipe's VGG-11 ("
                           + "; ".join(parts) + ")")


def trained_vgg(folder=None) -> nn.Module:
    """The shipped network as a PyTorch model in eval mode, float32 (float16-rounded values).

    Its input is :func:`network_input` of uint8 28x28 images; its output, ten class scores.
    """
    meta = manifest(folder)
    model = recipe_model("cpu", seed=meta["seed"])
    state = load_state(folder, meta)
    _check_shapes(model, state)
    full = model.state_dict()
    full.update(state)  # num_batches_tracked (integers, unused in eval) keep their values
    model.load_state_dict(full, strict=True)
    return model.eval()


def explorer_images(folder=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The picker's test images (uint8 ``[N, 28, 28]``) and their labels (int64 ``[N]``)."""
    meta = manifest(folder)
    info = meta["images"]
    data = _read_checked(folder, info["file"], info["sha256"],
                         len(info["labels"]) * INPUT_SIDE ** 2)
    images = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return images.reshape(-1, INPUT_SIDE, INPUT_SIDE), torch.tensor(info["labels"])


def network_input(images: torch.Tensor, meta: Optional[dict] = None) -> torch.Tensor:
    """uint8 (or float 0..255) ``[N, 28, 28]`` images -> the network's ``[N, 1, 32, 32]``
    input: scaled to [0, 1], normalised with the training set's mean and standard deviation,
    resized bilinearly to 32x32, as in training. Differentiable in a float input."""
    meta = meta or manifest()
    if images.dim() == 2:
        images = images.unsqueeze(0)
    if images.dim() != 3 or tuple(images.shape[1:]) != (INPUT_SIDE, INPUT_SIDE):
        raise ValueError(f"expected 28x28 images shaped [N, 28, 28], got "
                         f"{list(images.shape)}")
    norm = meta["preprocess"]
    return preprocess(images, norm["network_side"], norm["mean"], norm["std"])


def layer_specs(model: nn.Module) -> list[dict]:
    """The layers in the order the network runs them, as the browser reads them: each conv
    with its batch norm and ReLU, each pool, each linear layer (with or without ReLU).
    Names as :mod:`vgg_book.receptive`'s (``conv1_1``, ``pool1``) and ``fc6``..``fc8``."""
    specs: list[dict] = []
    block, conv = 1, 0
    modules = list(model.features.named_children())
    for i, (key, m) in enumerate(modules):
        if isinstance(m, nn.Conv2d):
            conv += 1
            bn = modules[i + 1][1] if i + 1 < len(modules) else None
            spec = {"name": f"conv{block}_{conv}", "kind": "conv", "in": m.in_channels,
                    "out": m.out_channels, "kernel": m.kernel_size[0],
                    "padding": m.padding[0], "weight": f"features.{key}.weight",
                    "bias": f"features.{key}.bias", "relu": True}
            if isinstance(bn, nn.BatchNorm2d):
                k = modules[i + 1][0]
                spec["bn"] = {"weight": f"features.{k}.weight", "bias": f"features.{k}.bias",
                              "mean": f"features.{k}.running_mean",
                              "var": f"features.{k}.running_var", "eps": bn.eps}
            specs.append(spec)
        elif isinstance(m, nn.MaxPool2d):
            specs.append({"name": f"pool{block}", "kind": "pool", "kernel": m.kernel_size,
                          "stride": m.stride})
            block, conv = block + 1, 0
    linears = [(k, m) for k, m in model.classifier.named_children() if isinstance(m, nn.Linear)]
    for n, (key, m) in enumerate(linears):
        specs.append({"name": f"fc{block + n}", "kind": "linear", "in": m.in_features,
                      "out": m.out_features, "weight": f"classifier.{key}.weight",
                      "bias": f"classifier.{key}.bias", "relu": n < len(linears) - 1})
    return specs


# ----------------------------------------------------------------------------- export
def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; package data is readable by all
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _picker_indices(labels: torch.Tensor) -> list[int]:
    chosen = []
    for c in range(len(CLASS_NAMES)):
        chosen += torch.nonzero(labels == c).flatten()[:IMAGES_PER_CLASS].tolist()
    return sorted(chosen)


def _accuracy(model: nn.Module, images, labels, meta: dict) -> int:
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), 500):
            x = network_input(images[i:i + 500], meta)
            correct += int((model(x).argmax(1) == labels[i:i + 500]).sum())
    return correct


def export(run: Union[str, os.PathLike], out: Union[str, os.PathLike],
           data_root: Optional[str] = None) -> dict:
    """Write the float16 weights, the picker's images and the manifest of a CPU-recipe run
    (a folder written by ``python -m vgg_book.train --recipe cpu``) into ``out``."""
    from vgg_book.data import load_fashion_mnist

    run, out = Path(run), Path(out)
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    config = ckpt["config"]
    if config.get("model_spec") != CPU_RECIPE_MODEL:
        raise WeightsError(f"{run} is not a run of the CPU recipe's network "
                           f"(its model is {config.get('model_spec')})")
    model = recipe_model("cpu")
    model.load_state_dict(ckpt["model"])
    tensors, chunks, offset = [], [], 0
    for name, value in model.state_dict().items():
        if not value.is_floating_point():
            continue
        half = value.detach().to(torch.float16).contiguous()
        if not torch.isfinite(half).all():
            raise WeightsError(f"{name} does not fit in float16")
        chunks.append(half.numpy().astype("<f2").tobytes())
        tensors.append({"name": name, "shape": list(value.shape), "offset": offset,
                        "count": value.numel()})
        offset += value.numel()
    weights = b"".join(chunks)
    if len(weights) > MAX_BYTES:
        raise WeightsError(f"the weights take {len(weights):,} bytes, over {MAX_BYTES:,}")
    test_x, test_y, _ = load_fashion_mnist(train=False, root=data_root)
    picked = _picker_indices(test_y)
    images = test_x[picked].contiguous().numpy().tobytes()
    meta = {
        "format": FORMAT,
        "description": "The CPU recipe's narrow VGG-11 (vgg_book.train.CPU_RECIPE_MODEL), "
                       "trained on Fashion-MNIST",
        "architecture": CPU_RECIPE_MODEL, "recipe": CPU_RECIPE, "seed": config["seed"],
        "command": COMMAND,
        "classes": CLASS_NAMES,
        "preprocess": {"input_side": INPUT_SIDE, "network_side": CPU_RECIPE["image_size"],
                       "scale": 1 / 255, "mean": config["mean"], "std": config["std"],
                       "resize": "bilinear, align_corners=False (after normalising)"},
        "weights": {"file": WEIGHTS, "dtype": "float16", "byteorder": "little",
                    "bytes": len(weights), "sha256": _sha256(weights)},
        "tensors": tensors,
        "layers": layer_specs(model),
        "images": {"file": IMAGES, "count": len(picked), "indices": picked,
                   "labels": test_y[picked].tolist(), "sha256": _sha256(images)},
        "training": {"test_accuracy_bf16": ckpt["history"][-1]["test_acc"],
                     "epochs": len(ckpt["history"]),
                     "seconds": round(sum(e.get("seconds", 0) for e in ckpt["history"]), 1),
                     "device": config.get("device_name"), "torch": config.get("torch"),
                     "threads": config.get("threads")},
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        "date": date.today().isoformat(),
    }
    # The accuracy of what ships: float16 weights, float32 arithmetic, all 10,000 images.
    _atomic_write(out / WEIGHTS, weights)
    _atomic_write(out / IMAGES, images)
    model = recipe_model("cpu")
    state = load_state(out, meta)
    full = model.state_dict()
    full.update(state)
    model.load_state_dict(full)
    model.eval()
    correct = _accuracy(model, test_x, test_y, meta)
    meta["test"] = {"images": len(test_y), "correct": correct,
                    "accuracy": correct / len(test_y), "dtype": "float32 on float16 weights"}
    _atomic_write(out / MANIFEST, (json.dumps(meta, indent=1) + "\n").encode())
    return meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m vgg_book.trained", description=__doc__.split(
        "\n")[0])
    p.add_argument("--train", action="store_true",
                   help="train the CPU recipe (seed 0) into --run first")
    p.add_argument("--run", default="runs/trained-cpu", help="the CPU-recipe run folder")
    p.add_argument("--out", default=str(Path(__file__).parent / "trained"),
                   help="where the weights, images and manifest go (default: the package)")
    p.add_argument("--data-root", default=None)
    args = p.parse_args(argv)
    if args.train:
        from vgg_book import train
        extra = ["--data-root", args.data_root] if args.data_root else []
        start = time.perf_counter()
        code = train.main(["--recipe", "cpu", "--seed", str(SEED), "--out", args.run,
                           "--no-plot", *extra])
        if code:
            return code
        print(f"trained in {time.perf_counter() - start:.0f} s")
    try:
        meta = export(args.run, args.out, args.data_root)
    except (WeightsError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{meta['weights']['bytes']:,} bytes of float16 weights; test accuracy "
          f"{meta['test']['accuracy']:.2%} ({meta['test']['correct']:,} of "
          f"{meta['test']['images']:,}); {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
