"""Benchmark: d2l 1.0.3's Fashion-MNIST pipeline against ours, on the same device in one run.

``python -m vgg_book.bench [--device cpu|cuda|auto] [--quick] [--compile]`` measures

* training images/s of d2l's narrow VGG-11 (width ratio 4, 224x224, batch 128) fed by
  ``d2l.load_data_fashion_mnist`` (PIL resize in 4 DataLoader workers) and stepped like its
  ``train_ch6`` (fp32, a host read every step), against ``vgg_book.train``'s pipeline
  (device-resident uint8 data, on-device resize, bf16 autocast and channels_last on CUDA),
  and each of our tricks switched on one at a time (the ablation);
* model FLOP utilisation (MFU): achieved FLOP/s over the device's dense bf16 peak (a table of
  datasheet figures) and over a measured bf16 matmul peak. FLOPs per image come from
  ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass, times 3 for forward plus
  backward (the backward pass costs about twice the forward: gradients for inputs and weights);
* full-width VGG-16 (3x224x224, 1000 classes, synthetic data): ours against torchvision's
  ``vgg16`` trained the plain eager fp32 way;
* time to accuracy: seconds of our full recipe (d2l's network and Xavier initialisation,
  plain SGD, lr 0.05, batch 128, 224x224) until the test accuracy reaches 0.92, at most 10
  epochs (skipped with ``--quick``).

Results go to ``runs/bench-<device>-<date>[-quick].json`` in the working directory (temp file +
rename); the ones the book shows are copied into ``vgg_book/results/`` (``vgg_book.results``).
``--quick`` uses fewer steps and, on CPU, a smaller batch and input; the JSON records them.
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
import torch.nn.functional as F
from torch import nn

from vgg_book.models import d2l_vgg11, vgg
from vgg_book.results import runs_dir
from vgg_book.train import (amp_dtype_for, fit, grad_scaler_for, normalisation_stats,
                            preprocess, resolve_device, train_step, write_json)

__all__ = ["PEAK_TFLOPS", "d2l_initialised_vgg11", "BenchSettings", "FULL", "QUICK_CPU", "QUICK_CUDA", "table_peak_tflops",
           "measured_matmul_tflops", "train_flops_per_image", "time_ours", "time_d2l",
           "time_synthetic", "run_benchmark", "main"]

#: Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendors' datasheets; the T4
#: and V100 have no bf16, so their fp16 peak. First match on the device name wins (so "H100
#: PCIe" before "H100", "A100" before "A10", "L40S" before "L4").
PEAK_TFLOPS = [
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0),
    ("GH200", 989.0), ("B200", 2250.0), ("A100", 312.0), ("A10G", 70.0), ("A10", 125.0),
    ("L40S", 362.0), ("L4", 121.0), ("T4", 65.0), ("V100", 125.0),
]
TARGET_ACC = 0.92
EPOCH_IMAGES = 60_000


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
    vgg16_steps: int = 20
    matmul_n: int = 8192
    d2l: bool = True
    tta_epochs: int = 10        # time to accuracy: at most this many epochs (0 = skip)
    check_epochs: int = 0       # quick mode: a short real training run for test_acc
    check_limit_train: Optional[int] = None
    check_image_size: int = 224
    check_limit_test: Optional[int] = None
    lr: float = 0.05


FULL = BenchSettings()
QUICK_CUDA = replace(FULL, warmup=5, steps=20, vgg16_steps=5, tta_epochs=0, check_epochs=1,
                     check_limit_train=None)
QUICK_CPU = BenchSettings(batch_size=16, image_size=64, width_ratio=4, warmup=1, steps=3,
                          vgg16_batch=2, vgg16_image=64, vgg16_steps=2, matmul_n=1024,
                          tta_epochs=0, check_epochs=1, check_limit_train=512,
                          check_image_size=32, check_limit_test=500)


# ----------------------------------------------------------------------------- peaks and FLOPs
def table_peak_tflops(device_name: str) -> tuple[Optional[str], Optional[float]]:
    """(matched key, dense bf16 TFLOP/s) for a GPU name, or (None, None) if not in the table."""
    for key, tflops in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return key, tflops
    return None, None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measured_matmul_tflops(device: torch.device, n: int = 8192, dtype=None,
                           iters: int = 10) -> tuple[float, str]:
    """Achieved TFLOP/s of an ``n x n`` by ``n x n`` matmul (2 n^3 FLOPs); bf16 on CUDA, fp32 on CPU."""
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        a @ b
    _sync(device)
    seconds = (time.perf_counter() - t) / iters
    return 2 * n ** 3 / seconds / 1e12, str(dtype).replace("torch.", "")


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
def _timed(step: Callable[[], object], warmup: int, steps: int, device) -> float:
    """Seconds per step of ``step()`` after ``warmup`` untimed calls (device synchronised)."""
    for _ in range(warmup):
        step()
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - t) / steps


def time_ours(device: torch.device, s: BenchSettings, images: torch.Tensor, labels: torch.Tensor,
              amp: bool = True, channels_last: bool = True, compile: bool = False,
              seed: int = 0) -> float:
    """Training images/s of ``vgg_book.train``'s step on device-resident uint8 Fashion-MNIST.

    ``amp`` and ``channels_last`` apply on CUDA only (as in ``vgg_book.train``).
    """
    torch.manual_seed(seed)
    model = d2l_vgg11(width_ratio=s.width_ratio).to(device)
    cuda = device.type == "cuda"
    amp_dtype = amp_dtype_for(device) if amp else None
    channels_last = channels_last and cuda
    if channels_last:
        model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=s.lr)
    scaler = grad_scaler_for(device, amp_dtype)
    images, labels = images.to(device), labels.to(device)
    mean, std = normalisation_stats(images)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=generator).to(device)
    position = [0]

    def step():
        lo = position[0] % (len(images) - s.batch_size + 1)
        pick = order[lo:lo + s.batch_size]
        position[0] += s.batch_size
        x = preprocess(images[pick], s.image_size, mean, std, channels_last=channels_last)
        train_step(net, optimizer, scaler, x, labels[pick], amp_dtype)

    return s.batch_size / _timed(step, s.warmup, s.steps, device)


def d2l_initialised_vgg11(width_ratio: int = 4) -> nn.Module:
    """d2l's narrow VGG-11 with the Xavier-uniform weights ``d2l.train_ch6`` gives it.

    (torchvision's initialisation, our default, starts with far smaller logits and sits
    longer at the loss of a uniform guess under plain SGD.)
    """
    net = d2l_vgg11(width_ratio=width_ratio)
    for m in net.modules():
        if type(m) in (nn.Linear, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
    return net


@contextlib.contextmanager
def _chdir(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def time_d2l(device: torch.device, s: BenchSettings, data_root: Optional[str] = None) -> float:
    """Training images/s of d2l 1.0.3's pipeline: its DataLoader and a ``train_ch6`` loop.

    d2l reads ``../data`` relative to the working directory, so we lay our Fashion-MNIST files
    out in torchvision's ``FashionMNIST/raw`` form in a temp folder and step into it.
    """
    import d2l.torch as d2l  # lazy: d2l (and IPython) are needed for this baseline only

    from vgg_book.data import prepare_torchvision_root

    with tempfile.TemporaryDirectory() as tmp:
        prepare_torchvision_root(Path(tmp) / "data", source=data_root)
        (Path(tmp) / "work").mkdir()
        with _chdir(Path(tmp) / "work"), warnings.catch_warnings():
            # d2l asks for 4 workers whatever the core count; torch warns about it
            warnings.filterwarnings("ignore", message="This DataLoader will create")
            train_iter, _ = d2l.load_data_fashion_mnist(s.batch_size, resize=s.image_size)
        torch.manual_seed(0)
        net = d2l_initialised_vgg11(s.width_ratio).to(device)
        optimizer = torch.optim.SGD(net.parameters(), lr=s.lr)
        loss = nn.CrossEntropyLoss()
        metric = d2l.Accumulator(3)
        net.train()
        t = None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="This DataLoader will create")
            batches = iter(train_iter)
        for i, (X, y) in enumerate(batches):  # the loop body of d2l.train_ch6
            if i == s.warmup:
                _sync(device)
                t = time.perf_counter()
            if i == s.warmup + s.steps:
                break
            optimizer.zero_grad()
            X, y = X.to(device), y.to(device)
            y_hat = net(X)
            l = loss(y_hat, y)
            l.backward()
            optimizer.step()
            with torch.no_grad():
                metric.add(l * X.shape[0], d2l.accuracy(y_hat, y), X.shape[0])
        else:
            raise ValueError(f"the d2l loader ran out after {i + 1} batches; ask for fewer "
                             f"than {s.warmup + s.steps} warm-up + timed steps")
        _sync(device)
        seconds = time.perf_counter() - t
        del batches, train_iter  # stop the workers before the temp folder goes
    return s.steps * s.batch_size / seconds


def time_synthetic(model: nn.Module, device: torch.device, batch: int, image_size: int,
                   warmup: int, steps: int, amp: bool, channels_last: bool,
                   compile: bool = False) -> float:
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
    seconds = _timed(lambda: train_step(net, optimizer, scaler, x, y, amp_dtype),
                     warmup, steps, device)
    return batch / seconds


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


def _utilisation(images_per_s, flops, peak_tflops):
    if images_per_s is None or not peak_tflops:
        return None
    return images_per_s * flops / (peak_tflops * 1e12)


def run_benchmark(device: str = "auto", quick: bool = False, compile: bool = False,
                  settings: Optional[BenchSettings] = None, out_dir=None,
                  data_root: Optional[str] = None, log=print) -> tuple[dict, Path]:
    """Run every measurement; write and return the results dict and the JSON's path."""
    from vgg_book.data import load_fashion_mnist

    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    s = settings or (QUICK_CUDA if quick and cuda else QUICK_CPU if quick else FULL)
    name = _device_name(dev)
    table_key, table_peak = table_peak_tflops(name) if cuda else (None, None)
    load_before = _load_average()
    log(f"benchmark on {name} ({'quick' if quick else 'full'}): {asdict(s)}")
    measured_peak, peak_dtype = measured_matmul_tflops(dev, n=s.matmul_n)
    log(f"measured {peak_dtype} matmul peak: {measured_peak:.2f} TFLOP/s")

    images, labels, _ = load_fashion_mnist(train=True, root=data_root)
    torch.manual_seed(0)
    flops_vgg11 = train_flops_per_image(d2l_vgg11(width_ratio=s.width_ratio), 1, s.image_size)

    def figures(ips, flops):
        return {"images_per_s": ips, "seconds_per_epoch": EPOCH_IMAGES / ips if ips else None,
                "achieved_tflops": ips * flops / 1e12 if ips else None,
                "mfu": _utilisation(ips, flops, table_peak),
                "mfu_vs_measured_matmul": _utilisation(ips, flops, measured_peak)}

    # d2l's pipeline, then ours with the tricks one at a time (ablation).
    ablation = []
    d2l_ips, d2l_skip = None, None
    if s.d2l:
        try:
            d2l_ips = time_d2l(dev, s, data_root)
        except ImportError as e:
            d2l_skip = f"d2l is not importable here ({e}); install d2l==1.0.3 --no-deps"
    else:
        d2l_skip = "turned off in the settings"
    ablation.append({"name": "d2l 1.0.3: DataLoader + PIL resize, fp32", "skipped": d2l_skip,
                     **figures(d2l_ips, flops_vgg11)})
    steps = [("device-resident uint8 data + on-device resize, fp32", dict(amp=False, channels_last=False)),
             ("+ bf16 autocast", dict(amp=True, channels_last=False)),
             ("+ channels_last (the default recipe)", dict(amp=True, channels_last=True)),
             ("+ torch.compile", dict(amp=True, channels_last=True, compile=True))]
    ours_ips = None
    for label, kw in steps:
        skip = None
        if kw.get("compile") and not compile:
            skip = "not asked for (pass --compile)"
        elif not cuda and (kw.get("amp") or kw.get("channels_last")):
            skip = "CUDA only: vgg_book.train uses fp32 and the default layout on CPU"
        ips = None if skip else time_ours(dev, s, images, labels, **kw)
        ablation.append({"name": label, "skipped": skip, **figures(ips, flops_vgg11)})
        log(f"  {label}: {'skipped: ' + skip if skip else f'{ips:,.1f} images/s'}")
        if ips is not None and not kw.get("compile"):
            ours_ips = ips  # the last row measured without compile is the default recipe
    log(f"  d2l: {'skipped: ' + d2l_skip if d2l_skip else f'{d2l_ips:,.1f} images/s'}")

    # Full-width VGG-16 on synthetic data: ours vs torchvision's, eager fp32.
    import torchvision

    torch.manual_seed(0)
    ours16 = vgg("D", num_classes=1000, in_channels=3)
    flops_vgg16 = train_flops_per_image(ours16, 3, s.vgg16_image)
    ips16 = time_synthetic(ours16, dev, s.vgg16_batch, s.vgg16_image, 1, s.vgg16_steps,
                           amp=True, channels_last=cuda, compile=compile)
    del ours16
    tv16 = torchvision.models.vgg16()
    tv_ips16 = time_synthetic(tv16, dev, s.vgg16_batch, s.vgg16_image, 1, s.vgg16_steps,
                              amp=False, channels_last=False)
    del tv16
    log(f"  VGG-16: ours {ips16:,.2f} images/s, torchvision fp32 eager {tv_ips16:,.2f} images/s")

    # A real training run: time to accuracy (full) or a short check (quick).
    run_epochs = s.tta_epochs or s.check_epochs
    torch.manual_seed(0)
    image_size = s.image_size if s.tta_epochs else s.check_image_size
    metrics = fit(d2l_initialised_vgg11(s.width_ratio), epochs=run_epochs,
                  batch_size=s.batch_size, lr=s.lr, image_size=image_size, device=str(dev),
                  limit_train=None if s.tta_epochs else s.check_limit_train,
                  limit_test=None if s.tta_epochs else s.check_limit_test, seed=0,
                  progress=not quick, compile=compile and bool(s.tta_epochs))
    reached = next((e for e in metrics["epochs"] if e["test_acc"] >= TARGET_ACC), None)
    tta = {"target": TARGET_ACC, "max_epochs": s.tta_epochs,
           "seconds": reached["elapsed"] if reached else None,
           "epoch": reached["epoch"] if reached else None,
           "skipped": None if s.tta_epochs else "--quick"}
    if s.tta_epochs and reached is None:
        tta["note"] = f"not reached in {s.tta_epochs} epochs"

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
        "quick": quick, "compile": compile, "settings": asdict(s),
        "load_average": {"before": load_before, "after": _load_average(),
                         "cpus": os.cpu_count(),
                         "note": "1-minute load average; above the CPU count, other processes "
                                 "shared the cores and the CPU timings are pessimistic"},
        "model": f"d2l VGG-11 (config A, width ratio {s.width_ratio}, 1x{s.image_size}x"
                 f"{s.image_size}, 10 classes), batch {s.batch_size}",
        "flops_method": "torch.utils.flop_counter.FlopCounterMode on one forward pass, x3 for "
                        "forward + backward",
        "train_flops_per_image": {"vgg11_d2l": flops_vgg11, "vgg16": flops_vgg16},
        "peak_tflops": {"table": table_peak, "table_key": table_key,
                        "table_note": "datasheet dense bf16 (fp16 for T4/V100); none for CPUs",
                        "measured_matmul": measured_peak, "measured_dtype": peak_dtype,
                        "matmul_n": s.matmul_n},
        "d2l_baseline": {"skipped": d2l_skip, **figures(d2l_ips, flops_vgg11)},
        "ours": figures(ours_ips, flops_vgg11),
        "speedup_vs_d2l": ours_ips / d2l_ips if ours_ips and d2l_ips else None,
        "seconds_per_epoch": EPOCH_IMAGES / ours_ips if ours_ips else None,
        "mfu": _utilisation(ours_ips, flops_vgg11, table_peak),
        "mfu_vs_measured_matmul": _utilisation(ours_ips, flops_vgg11, measured_peak),
        "ablation": ablation,
        "vgg16": {"batch_size": s.vgg16_batch, "image_size": s.vgg16_image,
                  "ours": figures(ips16, flops_vgg16),
                  "torchvision_fp32_eager": figures(tv_ips16, flops_vgg16),
                  "speedup": ips16 / tv_ips16},
        "time_to_accuracy": tta,
        "test_acc": metrics["epochs"][-1]["test_acc"],
        "training_run": {"epochs": metrics["epochs"], "image_size": image_size,
                         "train_images": metrics["config"]["train_images"],
                         "test_images": metrics["config"]["test_images"]},
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
