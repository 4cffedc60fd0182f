"""Benchmark: d2l 1.0.3's Fashion-MNIST pipeline against ours, on the same device in one run.

``python -m vgg_book.bench [--device cpu|cuda|auto] [--quick] [--compile]`` measures

* training images/s of d2l's narrow VGG-11 (width ratio 4, 224x224, batch 128) fed by
  ``d2l.load_data_fashion_mnist`` (PIL resize in 4 DataLoader workers) and stepped like its
  ``train_ch6`` (fp32, a host read every step), then the recipe of ``vgg_book.train`` built up
  one change per row (the ablation): the data on the device, host reads every ``SYNC_EVERY``
  steps, train's CUDA backend settings (cuDNN autotuning, TF32 matmuls), autocast (bf16, or
  fp16 with loss scaling on GPUs without native bf16), channels_last, and ``torch.compile``
  (its compile time reported apart from its throughput);
* model FLOP utilisation (MFU) of every row against the peak of the precision that row runs
  in (fp32, TF32 or bf16/fp16: vendors' dense datasheet figures) and against a matmul measured
  here in the same precision. FLOPs per image come from ``torch.utils.flop_counter`` on one
  forward pass, times 3 for forward plus backward;
* full-width VGG-16 (3x224x224, 1000 classes, synthetic data), ours against torchvision's,
  like for like: both fp32 eager, and both with the recipe; beside them the recipe's gain;
* time to 0.90 and 0.92 test accuracy of the full recipe (``train.FULL_RECIPE``) and of d2l's
  loop, or "not reached in N epochs".

Results go to ``runs/bench-<device>-<date>[-quick].json`` in the working directory (temp file +
rename); the ones the book shows are copied into ``vgg_book/results/`` (``vgg_book.results``).
``--quick`` is a smoke test of the plumbing (a few steps, small inputs on CPU): its JSON says
``"smoke_test": true`` and the book never shows it as a result.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import os
import platform
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from vgg_book.models import d2l_vgg11, init_xavier_, vgg
from vgg_book.results import runs_dir
from vgg_book.train import (SYNC_EVERY, amp_dtype_for, fit, grad_scaler_for,
                            normalisation_stats, preprocess, resolve_device,
                            set_recipe_backends, train_step, write_json)


__all__ = ["PEAK_TFLOPS", "d2l_initialised_vgg11", "BenchSettings", "FULL", "QUICK_CPU",
           "QUICK_CUDA", "ABLATION", "table_peak_tflops", "measured_matmul_tflops",
           "train_flops_per_image", "time_ours", "time_d2l", "d2l_time_to_accuracy",
           "time_synthetic", "run_benchmark", "main"]

#: Dense (no sparsity) peaks in TFLOP/s from the vendors' datasheets, per precision: fp32 on
#: CUDA cores, TF32 and bf16 on tensor cores. The T4 and V100 have neither TF32 nor bf16: their
#: "tf32" is fp32 and their "half" is fp16, which autocast uses there. First match on the device
#: name wins (so "H100 PCIe" before "H100", "A100" before "A10", "L40S" before "L4").
PEAK_TFLOPS = [
    ("H100 PCIe", {"fp32": 51.2, "tf32": 378.0, "half": 756.0}),
    ("H100 NVL", {"fp32": 60.0, "tf32": 417.5, "half": 835.0}),
    ("H100", {"fp32": 66.9, "tf32": 494.7, "half": 989.0}),
    ("H200", {"fp32": 66.9, "tf32": 494.7, "half": 989.0}),
    ("GH200", {"fp32": 66.9, "tf32": 494.7, "half": 989.0}),
    ("B200", {"fp32": 80.0, "tf32": 1100.0, "half": 2250.0}),
    ("A100", {"fp32": 19.5, "tf32": 156.0, "half": 312.0}),
    ("A10G", {"fp32": 31.2, "tf32": 35.0, "half": 70.0}),
    ("A10", {"fp32": 31.2, "tf32": 62.5, "half": 125.0}),
    ("L40S", {"fp32": 91.6, "tf32": 183.0, "half": 362.0}),
    ("L4", {"fp32": 30.3, "tf32": 60.0, "half": 121.0}),
    ("T4", {"fp32": 8.1, "tf32": 8.1, "half": 65.0}),
    ("V100", {"fp32": 15.7, "tf32": 15.7, "half": 125.0}),
]
TARGETS = (0.90, 0.92)
EPOCH_IMAGES = 60_000

#: The ablation: each row switches on one more part of train's recipe (CUDA only from
#: "backends" on: on a CPU, train runs fp32 in the default layout).
ABLATION = [
    ("data", "ours: device-resident uint8 data + on-device resize (fp32, host read per step)",
     dict(sync_every=1, backends=False, amp=False, channels_last=False)),
    ("sync", "+ host reads every SYNC_EVERY steps, not every step",
     dict(sync_every=SYNC_EVERY, backends=False, amp=False, channels_last=False)),
    ("backends", "+ cuDNN autotuning and TF32 matmuls (train's backend settings)",
     dict(sync_every=SYNC_EVERY, backends=True, amp=False, channels_last=False)),
    ("autocast", "+ autocast (bf16; fp16 with loss scaling without native bf16)",
     dict(sync_every=SYNC_EVERY, backends=True, amp=True, channels_last=False)),
    ("channels_last", "+ channels_last (train's recipe)",
     dict(sync_every=SYNC_EVERY, backends=True, amp=True, channels_last=True)),
    ("compile", "+ torch.compile",
     dict(sync_every=SYNC_EVERY, backends=True, amp=True, channels_last=True, compile=True)),
]


@dataclass
class BenchSettings:
    """What one benchmark run measures; sizes in pixels, counts in images or steps."""

    batch_size: int = 128
    image_size: int = 224
    width_ratio: int = 4
    warmup: int = 10            # untimed steps first (cuDNN autotuning, compile, workers)
    steps: int = 50             # timed steps
    vgg16_batch: int = 64
    vgg16_image: int = 224
    vgg16_warmup: int = 3
    vgg16_steps: int = 20
    matmul_n: int = 8192
    d2l: bool = True
    tta_epochs: int = 10        # ours, time to accuracy: at most this many epochs (0 = skip)
    d2l_tta_epochs: int = 4     # d2l's loop, time to accuracy (0 = skip; its loader is slow)
    tta_max_batches: Optional[int] = None  # d2l's loop: batches per epoch (None = all)
    check_epochs: int = 0       # quick mode: a short real training run for test_acc
    check_limit_train: Optional[int] = None
    check_image_size: int = 224
    check_limit_test: Optional[int] = None
    lr: float = 0.05


FULL = BenchSettings()
QUICK_CUDA = replace(FULL, warmup=5, steps=20, vgg16_steps=5, tta_epochs=0, d2l_tta_epochs=0,
                     check_epochs=1)
QUICK_CPU = BenchSettings(batch_size=8, image_size=32, width_ratio=8, warmup=1, steps=2,
                          vgg16_batch=1, vgg16_image=32, vgg16_warmup=1, vgg16_steps=1,
                          matmul_n=256, tta_epochs=0, d2l_tta_epochs=0, check_epochs=1,
                          check_limit_train=64, check_image_size=32, check_limit_test=64)


# ----------------------------------------------------------------------------- peaks and FLOPs
def table_peak_tflops(device_name: str) -> tuple[Optional[str], Optional[dict]]:
    """(matched key, {"fp32", "tf32", "half": TFLOP/s}) for a GPU name; (None, None) if unknown."""
    for key, peaks in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return key, dict(peaks)
    return None, None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measured_matmul_tflops(device: torch.device, n: int = 8192, precision: str = "fp32",
                           iters: int = 10) -> float:
    """Achieved TFLOP/s of an ``n x n`` matmul (2 n^3 FLOPs) in ``precision``: "fp32" (true
    fp32), "tf32" (fp32 tensors on TF32 tensor cores) or "half" (bf16, or fp16 without
    native bf16)."""
    dtype = torch.float32
    if precision == "half":
        dtype = amp_dtype_for(device) or torch.bfloat16
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    try:
        for _ in range(2):
            a @ b
        _sync(device)
        t = time.perf_counter()
        for _ in range(iters):
            a @ b
        _sync(device)
    finally:
        torch.set_float32_matmul_precision(before)
    return 2 * n ** 3 / ((time.perf_counter() - t) / iters) / 1e12


def train_flops_per_image(model: nn.Module, in_channels: int, image_size: int) -> int:
    """Training FLOPs for one image: FlopCounterMode's forward count x 3 (forward + backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, in_channels, image_size, image_size, device=device))
    model.train(was_training)
    return 3 * counter.get_total_flops()


# ----------------------------------------------------------------------------- timing
@contextlib.contextmanager
def _backends(enabled: bool):
    """train's CUDA backend settings on (or PyTorch's defaults) inside the block."""
    previous = set_recipe_backends(enabled)
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous[0]
        torch.set_float32_matmul_precision(previous[1])


def _timed(step: Callable[[], object], warmup: int, steps: int, device) -> tuple[float, float]:
    """(seconds per step after ``warmup`` untimed calls, seconds of the first call)."""
    _sync(device)
    t = time.perf_counter()
    step()
    _sync(device)
    first = time.perf_counter() - t
    for _ in range(warmup - 1):
        step()
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - t) / steps, first


def time_ours(device: torch.device, s: BenchSettings, images: torch.Tensor, labels: torch.Tensor,
              sync_every: int = SYNC_EVERY, backends: bool = True, amp: bool = True,
              channels_last: bool = True, compile: bool = False,
              seed: int = 0) -> tuple[float, Optional[float]]:
    """(training images/s, compile seconds or None) of ``vgg_book.train``'s step on
    device-resident uint8 Fashion-MNIST, with the parts of the recipe asked for: the host reads
    the loss every ``sync_every`` steps (1: every step, as d2l does)."""
    torch.manual_seed(seed)
    model = d2l_initialised_vgg11(s.width_ratio, s.image_size).to(device)
    amp_dtype = amp_dtype_for(device) if amp else None
    if channels_last:
        model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=s.lr)
    scaler = grad_scaler_for(device, amp_dtype)
    images, labels = images.to(device), labels.to(device)
    mean, std = normalisation_stats(images)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    order = order.to(device)
    state = {"position": 0, "loss": torch.zeros((), device=device)}

    def step():
        lo = state["position"] % (len(images) - s.batch_size + 1)
        pick = order[lo:lo + s.batch_size]
        state["position"] += s.batch_size
        x = preprocess(images[pick], s.image_size, mean, std, channels_last=channels_last)
        loss, _ = train_step(net, optimizer, scaler, x, labels[pick], amp_dtype)
        state["loss"] += loss
        if (state["position"] // s.batch_size) % sync_every == 0:
            float(state["loss"])  # the host reads the device: a synchronisation

    with _backends(backends):
        per_step, first = _timed(step, max(1, s.warmup), s.steps, device)
    return s.batch_size / per_step, (first - per_step) if compile else None


def d2l_initialised_vgg11(width_ratio: int = 4, input_size: int = 224) -> nn.Module:
    """d2l's narrow VGG-11 with the Xavier-uniform weights ``d2l.train_ch6`` gives it.

    (torchvision's initialisation, our default, starts with far smaller logits and sits
    longer at the loss of a uniform guess under plain SGD.)
    """
    return init_xavier_(d2l_vgg11(width_ratio=width_ratio, input_size=input_size))


@contextlib.contextmanager
def _chdir(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextlib.contextmanager
def _d2l_data(s: BenchSettings, data_root: Optional[str]):
    """d2l's (train, test) iterators over our Fashion-MNIST files, in a temp folder.

    d2l reads ``../data`` relative to the working directory, so the files are laid out in
    torchvision's ``FashionMNIST/raw`` form in a temp folder, and we step into it.
    """
    import d2l.torch as d2l  # lazy: d2l (and IPython) are needed for this baseline only

    from vgg_book.data import prepare_torchvision_root

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # d2l asks for 4 workers whatever the core count; torch warns about it
        warnings.filterwarnings("ignore", message="This DataLoader will create")
        prepare_torchvision_root(Path(tmp) / "data", source=data_root)
        (Path(tmp) / "work").mkdir()
        with _chdir(Path(tmp) / "work"):
            iters = d2l.load_data_fashion_mnist(s.batch_size, resize=s.image_size)
        yield d2l, iters
        del iters  # stop the workers before the temp folder goes


def _d2l_step(d2l, net, optimizer, loss, X, y, device, metric):
    """The loop body of ``d2l.train_ch6``: fp32, and a host read of the accuracy every step."""
    optimizer.zero_grad()
    X, y = X.to(device), y.to(device)
    y_hat = net(X)
    l = loss(y_hat, y)
    l.backward()
    optimizer.step()
    with torch.no_grad():
        metric.add(l * X.shape[0], d2l.accuracy(y_hat, y), X.shape[0])


def time_d2l(device: torch.device, s: BenchSettings, data_root: Optional[str] = None) -> float:
    """Training images/s of d2l 1.0.3's pipeline: its DataLoader and a ``train_ch6`` loop."""
    with _d2l_data(s, data_root) as (d2l, (train_iter, _)), _backends(False):
        torch.manual_seed(0)
        net = d2l_initialised_vgg11(s.width_ratio, s.image_size).to(device)
        optimizer = torch.optim.SGD(net.parameters(), lr=s.lr)
        loss, metric = nn.CrossEntropyLoss(), d2l.Accumulator(3)
        net.train()
        t = None
        for i, (X, y) in enumerate(train_iter):
            if i == s.warmup:
                _sync(device)
                t = time.perf_counter()
            if i == s.warmup + s.steps:
                break
            _d2l_step(d2l, net, optimizer, loss, X, y, device, metric)
        else:
            raise ValueError(f"the d2l loader ran out after {i + 1} batches; ask for fewer "
                             f"than {s.warmup + s.steps} warm-up + timed steps")
        _sync(device)
        return s.steps * s.batch_size / (time.perf_counter() - t)


def _reached(history: list[dict], epochs: int) -> dict:
    """{"0.90": {"epoch", "seconds"} or {"note": "not reached in N epochs"}, ...}."""
    out = {}
    for target in TARGETS:
        hit = next((e for e in history if e["test_acc"] >= target), None)
        out[f"{target:.2f}"] = ({"epoch": hit["epoch"], "seconds": hit["elapsed"]} if hit else
                                {"epoch": None, "seconds": None,
                                 "note": f"not reached in {epochs} epochs"})
    return out


def d2l_time_to_accuracy(device: torch.device, s: BenchSettings, epochs: int,
                         data_root: Optional[str] = None) -> dict:
    """d2l's loop (loader, ``train_ch6`` body, ``evaluate_accuracy_gpu``) for ``epochs``:
    per-epoch test accuracy and wall seconds (tests included), and when it reached each target."""
    with _d2l_data(s, data_root) as (d2l, (train_iter, test_iter)), _backends(False):
        torch.manual_seed(0)
        net = d2l_initialised_vgg11(s.width_ratio, s.image_size).to(device)
        optimizer = torch.optim.SGD(net.parameters(), lr=s.lr)
        loss, history, elapsed = nn.CrossEntropyLoss(), [], 0.0
        for epoch in range(epochs):
            metric = d2l.Accumulator(3)
            net.train()
            _sync(device)
            t = time.perf_counter()
            for i, (X, y) in enumerate(train_iter):
                if s.tta_max_batches is not None and i == s.tta_max_batches:
                    break
                _d2l_step(d2l, net, optimizer, loss, X, y, device, metric)
            acc = d2l.evaluate_accuracy_gpu(net, test_iter, device)
            elapsed += time.perf_counter() - t
            history.append({"epoch": epoch + 1, "test_acc": acc, "elapsed": elapsed,
                            "train_loss": metric[0] / metric[2]})
    return {"epochs": history, "reached": _reached(history, epochs)}


def time_synthetic(model: nn.Module, device: torch.device, batch: int, image_size: int,
                   warmup: int, steps: int, amp: bool, channels_last: bool,
                   backends: bool = False, compile: bool = False) -> float:
    """Training images/s on one fixed random batch (no data pipeline at all)."""
    in_channels = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
    num_classes = [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features
    model.to(device)
    amp_dtype = amp_dtype_for(device) if amp else None
    x = torch.randn(batch, in_channels, image_size, image_size, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    net = torch.compile(model) if compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = grad_scaler_for(device, amp_dtype)
    with _backends(backends):
        per_step, _ = _timed(lambda: train_step(net, optimizer, scaler, x, y, amp_dtype),
                             max(1, warmup), steps, device)
    return batch / per_step


# ----------------------------------------------------------------------------- the whole run
def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def _load_average() -> Optional[float]:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # not on every platform
        return None


def _precision(kw: dict) -> str:
    """The peak a row is measured against: "half" under autocast, "tf32" with the backends."""
    return "half" if kw.get("amp") else "tf32" if kw.get("backends") else "fp32"


def _figures(ips, flops, precision, table, measured) -> dict:
    def mfu(peak):
        return ips * flops / (peak * 1e12) if ips and peak else None

    return {"images_per_s": ips, "seconds_per_epoch": EPOCH_IMAGES / ips if ips else None,
            "achieved_tflops": ips * flops / 1e12 if ips else None, "precision": precision,
            "mfu": mfu((table or {}).get(precision)),
            "mfu_vs_measured_matmul": mfu(measured.get(precision))}


def _ablation(dev, s, images, labels, compile, flops, table, measured, d2l_ips, d2l_skip, log):
    cuda = dev.type == "cuda"
    rows = [{"key": "d2l", "name": "d2l 1.0.3: DataLoader + PIL resize, fp32, host read per step",
             "skipped": d2l_skip, "compile_seconds": None,
             **_figures(d2l_ips, flops, "fp32", table, measured)}]
    for key, label, kw in ABLATION:
        skip = None
        if kw.get("compile") and not compile:
            skip = "not asked for (pass --compile)"
        elif not cuda and (kw["backends"] or kw["amp"] or kw["channels_last"]):
            skip = "CUDA only: vgg_book.train runs fp32 in the default layout on a CPU"
        ips, compile_s = (None, None) if skip else time_ours(dev, s, images, labels, **kw)
        rows.append({"key": key, "name": label.replace("SYNC_EVERY", str(SYNC_EVERY)),
                     "skipped": skip, "compile_seconds": compile_s,
                     **_figures(ips, flops, _precision(kw), table, measured)})
        log(f"  {label}: {'skipped: ' + skip if skip else f'{ips:,.1f} images/s'}")
    return rows


def _vgg16(dev, s, compile, table, measured, log) -> dict:
    """Full-width VGG-16, ours against torchvision's: fp32 eager, then both with the recipe."""
    import torchvision

    cuda = dev.type == "cuda"
    torch.manual_seed(0)
    flops = train_flops_per_image(vgg("D", num_classes=1000, in_channels=3), 3, s.vgg16_image)
    args = (dev, s.vgg16_batch, s.vgg16_image, s.vgg16_warmup, s.vgg16_steps)
    recipe = dict(amp=cuda, channels_last=cuda, backends=cuda, compile=compile)
    result = {"batch_size": s.vgg16_batch, "image_size": s.vgg16_image, "flops": flops}
    for name, kw in (("fp32_eager", dict(amp=False, channels_last=False)), ("recipe", recipe)):
        ours = time_synthetic(vgg("D", num_classes=1000, in_channels=3), *args, **kw)
        theirs = time_synthetic(torchvision.models.vgg16(), *args, **kw)
        precision = _precision(kw)
        result[name] = {"ours": _figures(ours, flops, precision, table, measured),
                        "torchvision": _figures(theirs, flops, precision, table, measured),
                        "ours_vs_torchvision": ours / theirs, "settings": kw}
        log(f"  VGG-16 {name}: ours {ours:,.2f}, torchvision {theirs:,.2f} images/s")
    result["recipe_gain"] = (result["recipe"]["ours"]["images_per_s"]
                             / result["fp32_eager"]["ours"]["images_per_s"])
    return result


def _time_to_accuracy(dev, s, quick, compile, data_root, d2l_skip, log) -> dict:
    """The full recipe's and d2l's loop's epochs and seconds to each target accuracy."""
    from vgg_book.train import FULL_RECIPE

    out = {"targets": list(TARGETS)}
    if not s.tta_epochs:
        out["ours"] = {"skipped": "--quick" if quick else "tta_epochs is 0"}
    else:
        recipe = {**FULL_RECIPE, "epochs": s.tta_epochs, "batch_size": s.batch_size,
                  "image_size": s.image_size, "lr": s.lr}
        torch.manual_seed(0)
        metrics = fit(d2l_initialised_vgg11(s.width_ratio, s.image_size), device=str(dev),
                      seed=0, progress=False, compile=compile, **recipe)
        out["ours"] = {"recipe": recipe, "epochs": [
            {k: e[k] for k in ("epoch", "test_acc", "elapsed", "train_loss")}
            for e in metrics["epochs"]], "reached": _reached(metrics["epochs"], s.tta_epochs)}
        log(f"  time to accuracy, ours: {out['ours']['reached']}")
    if not s.d2l_tta_epochs or d2l_skip:
        out["d2l"] = {"skipped": d2l_skip or ("--quick" if quick else "d2l_tta_epochs is 0")}
    else:
        out["d2l"] = d2l_time_to_accuracy(dev, s, s.d2l_tta_epochs, data_root)
        log(f"  time to accuracy, d2l: {out['d2l']['reached']}")
    return out


def run_benchmark(device: str = "auto", quick: bool = False, compile: bool = False,
                  settings: Optional[BenchSettings] = None, out_dir=None,
                  data_root: Optional[str] = None, log=print) -> tuple[dict, Path]:
    """Run every measurement; write and return the results dict and the JSON's path."""
    import torchvision

    from vgg_book.data import check_data_root, load_fashion_mnist

    if data_root is not None:
        check_data_root(data_root)  # an explicit root must hold the files: no fallback
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    s = settings or (QUICK_CUDA if quick and cuda else QUICK_CPU if quick else FULL)
    name = _device_name(dev)
    table_key, table = table_peak_tflops(name) if cuda else (None, None)
    load_before = _load_average()
    log(f"benchmark on {name} ({'quick smoke test' if quick else 'full'}): {asdict(s)}")
    precisions = ("fp32", "tf32", "half") if cuda else ("fp32",)
    measured = {p: measured_matmul_tflops(dev, s.matmul_n, p) for p in precisions}
    log("measured matmul peaks (TFLOP/s): "
        + ", ".join(f"{p} {v:.2f}" for p, v in measured.items()))

    images, labels, _ = load_fashion_mnist(train=True, root=data_root)
    torch.manual_seed(0)
    flops = train_flops_per_image(d2l_vgg11(s.width_ratio, input_size=s.image_size), 1,
                                 s.image_size)
    d2l_ips, d2l_skip = None, None if s.d2l else "turned off in the settings"
    if s.d2l:
        try:
            d2l_ips = time_d2l(dev, s, data_root)
        except ImportError as e:
            d2l_skip = f"d2l is not importable here ({e}); install d2l==1.0.3 --no-deps"
    log(f"  d2l: {'skipped: ' + d2l_skip if d2l_skip else f'{d2l_ips:,.1f} images/s'}")
    ablation = _ablation(dev, s, images, labels, compile, flops, table, measured, d2l_ips,
                         d2l_skip, log)
    ours = next(r for r in ablation if r["key"] == ("channels_last" if cuda else "sync"))
    vgg16 = _vgg16(dev, s, compile, table, measured, log)
    tta = _time_to_accuracy(dev, s, quick, compile, data_root, d2l_skip, log)
    check = None
    if s.check_epochs:  # a smoke test's short real run: does the loop learn at all?
        torch.manual_seed(0)
        run = fit(d2l_initialised_vgg11(s.width_ratio, s.check_image_size), epochs=s.check_epochs,
                  batch_size=s.batch_size, lr=s.lr, image_size=s.check_image_size,
                  device=str(dev), limit_train=s.check_limit_train,
                  limit_test=s.check_limit_test, seed=0, progress=False)
        check = {"test_acc": run["epochs"][-1]["test_acc"], "epochs": s.check_epochs,
                 "train_images": run["config"]["train_images"],
                 "test_images": run["config"]["test_images"]}

    try:
        import d2l as _d2l
        d2l_version = _d2l.__version__
    except ImportError:
        d2l_version = None
    results = {
        "device": dev.type, "device_name": name, "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__), "d2l": d2l_version,
        "python": platform.python_version(),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "quick": quick, "smoke_test": quick, "compile": compile, "settings": asdict(s),
        "load_average": {"before": load_before, "after": _load_average(),
                         "cpus": os.cpu_count(),
                         "note": "1-minute load average; above the CPU count, other processes "
                                 "shared the cores and the CPU timings are pessimistic"},
        "model": f"d2l VGG-11 (config A, width ratio {s.width_ratio}, 1x{s.image_size}x"
                 f"{s.image_size}, 10 classes), batch {s.batch_size}",
        "flops_method": "torch.utils.flop_counter.FlopCounterMode on one forward pass, x3 for "
                        "forward + backward",
        "train_flops_per_image": {"vgg11_d2l": flops, "vgg16": vgg16["flops"]},
        "peak_tflops": {"table": table, "table_key": table_key,
                        "table_note": "datasheet dense peaks; none for CPUs",
                        "measured_matmul": measured, "matmul_n": s.matmul_n},
        "d2l_baseline": ablation[0],
        "ours": ours,
        "speedup_vs_d2l": ours["images_per_s"] / d2l_ips
        if ours["images_per_s"] and d2l_ips else None,
        "ablation": ablation,
        "vgg16": vgg16,
        "time_to_accuracy": tta,
        "smoke_check": check,
    }
    date = _dt.date.today().isoformat()
    out_dir = Path(out_dir) if out_dir is not None else _default_out_dir()
    path = out_dir / f"bench-{dev.type}-{date}{'-quick' if quick else ''}.json"
    write_json(path, results)
    log(f"wrote {path}")
    return results, path


def _default_out_dir() -> Path:
    return runs_dir()  # never into the installed package; keep a result: vgg_book/results/


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m vgg_book.bench", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--quick", action="store_true", help="a few steps only; no time to accuracy")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile")
    p.add_argument("--out-dir", default=None, help="folder for the JSON (default ./runs; stored results live in vgg_book/results)")
    p.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST files")
    args = p.parse_args(argv)
    try:
        results, _ = run_benchmark(args.device, quick=args.quick, compile=args.compile,
                                   out_dir=args.out_dir, data_root=args.data_root)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    speedup = results["speedup_vs_d2l"]
    print(f"speedup vs d2l: {speedup:.2f}x" if speedup else "speedup vs d2l: not measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
