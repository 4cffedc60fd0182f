"""Benchmark of the CPU recipe (``train.CPU_RECIPE``), against two baselines, in one run.

``python -m vgg_book.bench_cpu [--quick] [--compile]`` measures on this machine:

* **the recipe end to end**: ``python -m vgg_book.train --recipe cpu`` in a fresh process,
  timed by the wall clock from its start (imports, data, training, the tests after every
  epoch): its test accuracy on all 10,000 test images after every epoch, and the seconds to
  0.90;
* **the previous CPU recipe** (chapter 5's until December 2026, ``PREVIOUS_CPU_RECIPE``: the
  first 16,384 images, three epochs, plain SGD, the adaptive pool, fp32, one thread) the same
  way;
* **d2l's pipeline on the recipe's network**: the training images per second of d2l 1.0.3's
  ``load_data_fashion_mnist`` (PIL resize in 4 DataLoader workers) stepped like its
  ``train_ch6`` (a host read every step), beside the recipe's own loop on the same network;
* **the ablation**: the recipe's training step on device-resident data, one CPU setting
  switched on per row (two threads, channels_last, bf16 autocast, then ``torch.compile`` with
  its compile time apart), as images per second and as a ratio to the first row.

Every speed is a ratio to a baseline measured in the same run. The JSON goes to
``runs/cpu-recipe-bench-<date>[-quick].json`` (temp file, then rename); the one the book shows
is copied into ``vgg_book/results/``. ``--quick`` is a smoke test of the plumbing (tiny sizes):
its JSON says ``"smoke_test": true`` and the book never shows it.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

from vgg_book import train as T
from vgg_book.results import runs_dir

__all__ = ["PREVIOUS_CPU_RECIPE", "PREVIOUS_CPU_MODEL", "TARGET", "ABLATION", "cli_args",
           "run_recipe", "step_rate", "d2l_rate", "run_benchmark", "main"]

TARGET = 0.90
#: Chapter 5's CPU run until December 2026 (on 2,000 test images there; on all here).
PREVIOUS_CPU_MODEL = {"config": "vgg11", "width_ratio": 8, "hidden": 512, "dropout": 0.5,
                      "batch_norm": True, "in_channels": 1, "num_classes": 10,
                      "init": "torchvision"}
PREVIOUS_CPU_RECIPE = {"epochs": 3, "batch_size": 64, "lr": 0.05, "image_size": 32,
                       "limit_train": 16384, "precision": "fp32", "channels_last": False,
                       "threads": 1}
#: One CPU setting more per row, on the recipe's network and batch.
ABLATION = [
    ("fp32, 1 thread", dict(threads=1, channels_last=False, precision="fp32")),
    ("+ 2 threads", dict(threads=2, channels_last=False, precision="fp32")),
    ("+ channels_last", dict(threads=2, channels_last=True, precision="fp32")),
    ("+ bf16 autocast (the recipe)", dict(threads=2, channels_last=True, precision="bf16")),
    ("+ torch.compile", dict(threads=2, channels_last=True, precision="bf16", compile=True)),
]
_FLAGS = {"width_ratio": "--width-ratio", "hidden": "--hidden", "dropout": "--dropout",
          "input_size": "--input-size", "epochs": "--epochs", "batch_size": "--batch-size",
          "lr": "--lr", "momentum": "--momentum", "weight_decay": "--weight-decay",
          "warmup_epochs": "--warmup-epochs", "schedule": "--schedule",
          "image_size": "--image-size", "precision": "--precision", "threads": "--threads",
          "limit_train": "--limit-train", "limit_test": "--limit-test", "init": "--init"}


def cli_args(model: dict, settings: dict) -> list[str]:
    """``python -m vgg_book.train`` arguments for a model spec and training settings."""
    args = ["--model", model["config"]]
    for key, value in {**model, **settings}.items():
        if key in _FLAGS:
            args += [_FLAGS[key], str(value)]
        elif key in ("batch_norm", "channels_last", "augment"):
            args.append(f"--{'' if value else 'no-'}{key.replace('_', '-')}")
    return args


def run_recipe(args: list[str], data_root: Optional[str] = None) -> dict:
    """Run ``python -m vgg_book.train ARGS`` in a fresh process; its wall time and metrics."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "vgg_book.train", *args, "--out", str(Path(tmp) / "run"),
               "--no-progress", "--no-plot", "--device", "cpu"]
        if data_root is not None:
            cmd += ["--data-root", data_root]
        t = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        metrics = json.loads((Path(tmp) / "run" / T.METRICS).read_text())
    epochs = [{k: e[k] for k in ("epoch", "train_loss", "test_acc", "images_per_s", "seconds",
                                 "eval_seconds", "elapsed")} for e in metrics["epochs"]]
    hit = next((e for e in epochs if e["test_acc"] >= TARGET), None)
    startup = wall - epochs[-1]["elapsed"]  # imports, data, model: before the first step
    return {"command": "python -m vgg_book.train " + " ".join(args), "wall_seconds": wall,
            "startup_seconds": startup, "final_test_acc": epochs[-1]["test_acc"],
            "test_images": metrics["config"]["test_images"],
            "train_images": metrics["config"]["train_images"],
            "seconds_to_target": None if hit is None else startup + hit["elapsed"],
            "epoch_to_target": None if hit is None else hit["epoch"], "epochs": epochs,
            "images_per_s": sum(e["images_per_s"] for e in epochs) / len(epochs)}


def _recipe_model(spec: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return T.build_model(spec)


def step_rate(spec: dict, batch_size: int, image_size: int, steps: int, warmup: int,
              threads: int, channels_last: bool, precision: str,
              compile: bool = False) -> dict:
    """Training images/s of ``train.train_step`` on device-resident uint8 Fashion-MNIST."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        images, labels = T._load(True, None)
        mean, std = T.normalisation_stats(images)
        model = _recipe_model(spec)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        net = torch.compile(model) if compile else model
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        amp = T.precision_dtype(precision, torch.device("cpu"))
        scaler = T.grad_scaler_for(torch.device("cpu"), amp)
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))

        def step(i):
            pick = order[i * batch_size:(i + 1) * batch_size]
            x = T.preprocess(images[pick], image_size, mean, std, channels_last=channels_last)
            T.train_step(net, optimizer, scaler, x, labels[pick], amp)

        t = time.perf_counter()
        step(0)
        first = time.perf_counter() - t
        for i in range(1, warmup):
            step(i)
        t = time.perf_counter()
        for i in range(warmup, warmup + steps):
            step(i)
        per_step = (time.perf_counter() - t) / steps
    finally:
        torch.set_num_threads(previous)
    return {"images_per_s": batch_size / per_step,
            "compile_seconds": first - per_step if compile else None}


def d2l_rate(spec: dict, batch_size: int, image_size: int, steps: int, warmup: int,
             threads: int, data_root: Optional[str] = None) -> float:
    """Training images/s of the recipe's network fed by d2l 1.0.3's DataLoader pipeline and
    stepped like its ``train_ch6`` (fp32, a host read every step)."""
    from vgg_book.bench import BenchSettings, _d2l_data, _d2l_step

    s = BenchSettings(batch_size=batch_size, image_size=image_size)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with _d2l_data(s, data_root) as (d2l, (train_iter, _)):
            net = _recipe_model(spec)
            optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
            loss, metric = torch.nn.CrossEntropyLoss(), d2l.Accumulator(3)
            net.train()
            t = None
            for i, (X, y) in enumerate(train_iter):
                if i == warmup:
                    t = time.perf_counter()
                if i == warmup + steps:
                    break
                _d2l_step(d2l, net, optimizer, loss, X, y, torch.device("cpu"), metric)
            return steps * batch_size / (time.perf_counter() - t)
    finally:
        torch.set_num_threads(previous)


def _machine() -> dict:
    import platform

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": name, "cores": os.cpu_count(), "torch": str(torch.__version__),
            "python": platform.python_version(),
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def run_benchmark(quick: bool = False, compile: bool = True,
                  out_dir: Optional[str] = None, data_root: Optional[str] = None,
                  log=print) -> tuple[dict, Path]:
    """Measure everything the module docstring lists; write and return the JSON."""
    spec, recipe = T.CPU_RECIPE_MODEL, dict(T.CPU_RECIPE)
    previous = dict(PREVIOUS_CPU_RECIPE)
    steps, warmup = (2, 1) if quick else (40, 5)
    if quick:  # the plumbing only: a few hundred images, one epoch
        recipe.update(epochs=1, limit_train=512, limit_test=256)
        previous.update(epochs=1, limit_train=256, limit_test=256)
    log("the CPU recipe, end to end ...")
    ours = run_recipe(cli_args(spec, recipe), data_root)
    log(f"  {ours['final_test_acc']:.4f} in {ours['wall_seconds']:.1f} s")
    log("the previous CPU recipe, end to end ...")
    old = run_recipe(cli_args(PREVIOUS_CPU_MODEL, previous), data_root)
    log(f"  {old['final_test_acc']:.4f} in {old['wall_seconds']:.1f} s")
    size, batch = recipe["image_size"], recipe["batch_size"]
    rows = []
    for name, kw in ABLATION:
        if kw.get("compile") and not compile:
            rows.append({"name": name, "settings": kw, "images_per_s": None,
                         "compile_seconds": None, "skipped": "not asked (--compile)"})
            continue
        if kw.get("compile"):  # a cold compile: an empty inductor cache, as a reader has
            torch._dynamo.reset()
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
        rate = step_rate(spec, batch, size, steps, warmup, **kw)
        rows.append({"name": name, "settings": kw, **rate, "skipped": None})
        log(f"  {name}: {rate['images_per_s']:,.0f} images/s")
    base = rows[0]["images_per_s"]
    for r in rows:
        r["vs_first_row"] = None if r["images_per_s"] is None else r["images_per_s"] / base
    log("d2l's pipeline on the recipe's network ...")
    d2l = d2l_rate(spec, batch, size, steps, warmup, recipe["threads"], data_root)
    recipe_row = next(r for r in rows if r["settings"] == {k: recipe[k] for k in (
        "threads", "channels_last", "precision")})
    results = {
        "benchmark": "cpu-recipe", "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "smoke_test": quick, "machine": _machine(), "device_name": T._device_name(
            torch.device("cpu")), "target": TARGET,
        "recipe": {"model": spec, "settings": recipe}, "recipe_run": ours,
        "previous": {"model": PREVIOUS_CPU_MODEL, "settings": previous}, "previous_run": old,
        "ablation": rows, "d2l_pipeline_images_per_s": d2l,
        "ratios": {
            "throughput_vs_previous": ours["images_per_s"] / old["images_per_s"],
            "wall_vs_previous": ours["wall_seconds"] / old["wall_seconds"],
            "images_seen_vs_previous": (ours["train_images"] * recipe["epochs"])
            / (old["train_images"] * previous["epochs"]),
            "recipe_loop_vs_d2l_pipeline": recipe_row["images_per_s"] / d2l,
            "same_settings_loop_vs_d2l_pipeline": rows[1]["images_per_s"] / d2l},
    }
    date = _dt.date.today().isoformat()
    out = Path(out_dir) if out_dir is not None else runs_dir()
    path = out / f"cpu-recipe-bench-{date}{'-quick' if quick else ''}.json"
    T.write_json(path, results)
    log(f"wrote {path}")
    return results, path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m vgg_book.bench_cpu",
                                description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke test: tiny sizes")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    p.add_argument("--out-dir", default=None, help="folder for the JSON (default ./runs)")
    p.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST files")
    args = p.parse_args(argv)
    try:
        r, _ = run_benchmark(args.quick, not args.no_compile, args.out_dir, args.data_root)
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run, ratios = r["recipe_run"], r["ratios"]
    reached = run["seconds_to_target"]
    print(f"recipe: {run['final_test_acc']:.2%} on {run['test_images']:,} test images, "
          f"{TARGET:.0%} after " + (f"{reached:.0f} s" if reached else "never") +
          f"; {ratios['recipe_loop_vs_d2l_pipeline']:.1f}x d2l's pipeline, "
          f"{ratios['throughput_vs_previous']:.1f}x the previous recipe's images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
