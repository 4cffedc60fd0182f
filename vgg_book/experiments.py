"""The book's training experiments: one change each, several seeds, paired by seed.

``python -m vgg_book.experiments NAME [--size cpu|gpu|tiny] [--seeds N] [--workers N]``
trains every arm of experiment ``NAME`` once per seed and writes one JSON file: the recipe
(each arm's network and settings, the seeds), the machine, every run's result, and for each
comparison the per-seed differences, their mean and 95% confidence interval (Student's t over
the seeds), and the verdict that interval gives. The arms of a seed start from the same
random state and see the same batches in the same order, so the difference between two arms
of one seed is the effect of the one thing they differ in, plus noise the seeds measure.

Sizes: ``cpu`` (the default without a GPU) is ``train.CPU_RECIPE`` with fewer epochs, one
thread per run and ``--workers`` runs at once; ``gpu`` (the default with one) is the CPU
recipe's settings at its full length on the GPU; ``tiny`` checks the plumbing in seconds
and decides nothing. Results go to ``experiment-NAME.json`` (``experiment-NAME-gpu.json``,
``-tiny.json`` for the other sizes), by default in ``vgg_book/results/`` of a source checkout;
a test fails when a stored one was made by a recipe other than the one this module builds.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Optional

import torch

from vgg_book import train as T

__all__ = ["EXPERIMENTS", "SIZES", "recipe", "run_arm", "paired", "t_quantile", "verdict",
           "run_experiment", "result_path", "comparison", "describe", "arm_rows",
           "comparison_rows", "main"]

CHANCE = 0.1  # ten classes: what a diverged network scores

#: name -> question, arms (name -> changes to the CPU recipe's network and settings),
#: comparisons (arm a minus arm b, on a metric), epochs per size.
EXPERIMENTS = {
    "input-side": {
        "question": "Does a 64x64 input beat 32x32, with the adaptive pool and without it?",
        "arms": {
            "pooled-32": {"model": {"input_size": None}, "settings": {"image_size": 32}},
            "pooled-64": {"model": {"input_size": None}, "settings": {"image_size": 64}},
            "built-32": {"model": {"input_size": 32}, "settings": {"image_size": 32}},
            "built-64": {"model": {"input_size": 64}, "settings": {"image_size": 64}},
        },
        "comparisons": [("pooled-64", "pooled-32", "test_acc"),
                        ("built-64", "built-32", "test_acc")],
        "epochs": {"cpu": 1, "gpu": 5, "tiny": 1},
    },
    "batch-norm": {
        "question": "Does batch norm matter once the plain network is initialised well?",
        "arms": {
            "bn": {"model": {"batch_norm": True, "init": "torchvision"}},
            "plain-torchvision": {"model": {"batch_norm": False, "init": "torchvision"}},
            "plain-xavier": {"model": {"batch_norm": False, "init": "xavier"}},
        },
        "comparisons": [("bn", "plain-torchvision", "test_acc"),
                        ("bn", "plain-xavier", "test_acc"),
                        ("plain-xavier", "plain-torchvision", "test_acc"),
                        ("bn", "plain-torchvision", "first_epoch_loss")],
        "epochs": {"cpu": 2, "gpu": 5, "tiny": 1},
    },
    "heads": {
        "question": "At 64x64 (a 2x2 last map), which head is best: d2l's FC, torchvision's "
                    "FC or GAP, each with its source's initialisation and all with Xavier?",
        "arms": {
            "fc-d2l-xavier": {"model": {"input_size": 64, "init": "xavier"}},
            "fc-pool-torchvision": {"model": {"input_size": None, "init": "torchvision"}},
            "fc-pool-xavier": {"model": {"input_size": None, "init": "xavier"}},
            "gap-torchvision": {"model": {"head": "gap", "init": "torchvision"}},
            "gap-xavier": {"model": {"head": "gap", "init": "xavier"}},
        },
        "settings": {"image_size": 64},
        "comparisons": [("fc-pool-torchvision", "fc-d2l-xavier", "test_acc"),
                        ("gap-torchvision", "fc-d2l-xavier", "test_acc"),
                        ("fc-pool-xavier", "fc-d2l-xavier", "test_acc"),
                        ("gap-xavier", "fc-d2l-xavier", "test_acc"),
                        ("fc-pool-xavier", "fc-pool-torchvision", "test_acc")],
        "epochs": {"cpu": 1, "gpu": 5, "tiny": 1},
    },
    "vgg19-bn": {
        "question": "Does VGG-19 (E) train from scratch with the VGG-11 recipe, without and "
                    "with batch norm?",
        "arms": {
            "E-bn": {"model": {"config": "vgg19", "batch_norm": True}},
            "E-plain": {"model": {"config": "vgg19", "batch_norm": False}},
        },
        "comparisons": [("E-bn", "E-plain", "test_acc"),
                        ("E-bn", "E-plain", "first_epoch_loss")],
        "epochs": {"cpu": 2, "gpu": 5, "tiny": 1},
    },
    "scale-jitter": {
        "question": "Does scale jittering (S in [32, 64], 32x32 crops) make a GAP VGG-11 "
                    "robust to the test image's size, and what does it cost at 32x32?",
        "arms": {
            "fixed": {"model": {"head": "gap"}},
            "jitter": {"model": {"head": "gap"}, "settings": {"scale_jitter": (32, 64)}},
        },
        "test_sides": (32, 40, 48, 56, 64),
        "comparisons": [("jitter", "fixed", "size_spread"), ("jitter", "fixed", "test_acc"),
                        ("jitter", "fixed", "acc_at_64")],
        "epochs": {"cpu": 2, "gpu": 5, "tiny": 1},
    },
}
SIZES = ("cpu", "gpu", "tiny")
DEFAULT_SEEDS = {"cpu": 5, "gpu": 5, "tiny": 2}


def recipe(name: str, size: str = "cpu", seeds: Optional[int] = None) -> dict:
    """Everything that decides experiment ``name`` at ``size``: per arm, the network and the
    training settings; the seeds. The stored result keeps it; a test compares the two."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; expected one of: "
                         + ", ".join(EXPERIMENTS))
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of: {', '.join(SIZES)}")
    seeds = DEFAULT_SEEDS[size] if seeds is None else seeds
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 2:
        raise ValueError(f"seeds must be an integer of at least 2 (a paired interval needs "
                         f"two differences), got {seeds!r}")
    exp = EXPERIMENTS[name]
    base = dict(T.CPU_RECIPE)
    base["epochs"] = exp["epochs"][size]
    if size == "gpu":
        base.update(precision="auto", channels_last=None, threads=None, device="cuda")
    else:
        base.update(threads=1, device="cpu")
    if size == "tiny":
        base.update(limit_train=512, limit_test=256, batch_size=64)
    arms = {}
    for arm, change in exp["arms"].items():
        model = {**T.CPU_RECIPE_MODEL, "head": "fc", **change.get("model", {})}
        if model["head"] == "gap" or model.get("input_size") is None:
            model.pop("input_size", None)
        settings = {**base, **exp.get("settings", {}), **change.get("settings", {})}
        if settings.get("scale_jitter") is not None:
            settings["scale_jitter"] = list(settings["scale_jitter"])
        arms[arm] = {"model": model, "settings": settings}
    out = {"experiment": name, "size": size, "seeds": list(range(seeds)), "arms": arms,
           "comparisons": [list(c) for c in exp["comparisons"]]}
    if "test_sides" in exp:
        out["test_sides"] = list(exp["test_sides"])
    return out


def build(model: dict, seed: int) -> torch.nn.Module:
    """An arm's network, initialised from ``seed`` (the same for every arm of a seed)."""
    from vgg_book.inception import vgg_gap
    from vgg_book.models import init_xavier_

    torch.manual_seed(seed)
    if model["head"] == "gap":
        net = vgg_gap(model["config"], num_classes=model["num_classes"],
                      in_channels=model["in_channels"], batch_norm=model["batch_norm"],
                      width_ratio=model["width_ratio"])
        return init_xavier_(net) if model["init"] == "xavier" else net
    return T.build_model(model)


def run_arm(job: tuple) -> dict:
    """Train one arm for one seed (a worker's job); its results."""
    name, arm, seed, spec, test_sides = job
    settings = dict(spec["settings"], seed=seed, progress=False)
    if settings.get("scale_jitter") is not None:
        settings["scale_jitter"] = tuple(settings["scale_jitter"])
    epochs = settings.pop("epochs")
    model = build(spec["model"], seed)
    t = time.perf_counter()
    try:
        metrics = T.fit(model, epochs=epochs, **settings)
    except T.TrainingError as e:
        return {"arm": arm, "seed": seed, "diverged": str(e), "test_acc": CHANCE,
                "first_epoch_loss": None, "seconds": time.perf_counter() - t}
    history = metrics["epochs"]
    out = {"arm": arm, "seed": seed, "diverged": None, "test_acc": history[-1]["test_acc"],
           "first_epoch_loss": history[0]["train_loss"],
           "epoch_test_acc": [e["test_acc"] for e in history],
           "epoch_loss": [e["train_loss"] for e in history],
           "seconds": time.perf_counter() - t}
    if test_sides:
        out["acc_by_side"] = _acc_by_side(model, metrics["config"], test_sides,
                                          settings.get("limit_test"))
        out["size_spread"] = max(out["acc_by_side"].values()) - min(out["acc_by_side"].values())
        out["acc_at_64"] = out["acc_by_side"].get("64")
    return out


def _acc_by_side(model, config: dict, sides, limit_test) -> dict:
    """Test accuracy with the whole test image resized to each side."""
    images, labels = T._load(False, config.get("data_root"))
    images, labels = images[:limit_test], labels[:limit_test]
    return {str(side): float((T.predict(model, images, side, config["mean"], config["std"])
                              == labels).float().mean()) for side in sides}


def t_quantile(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (scipy's)."""
    from scipy.stats import t

    if not isinstance(df, int) or df < 1:
        raise ValueError(f"a t interval needs at least 1 degree of freedom, got {df!r}")
    return float(t.ppf(0.975, df))


def paired(a: list[float], b: list[float]) -> dict:
    """Mean of the per-seed differences ``a - b`` and its 95% confidence interval."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"paired differences need two equally long lists of at least 2 "
                         f"values (one per seed), got {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b)]
    mean = statistics.fmean(diffs)
    half = t_quantile(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return {"differences": diffs, "mean": mean, "ci95": [mean - half, mean + half],
            "n": len(diffs), "verdict": verdict(mean - half, mean + half)}


def verdict(lo: float, hi: float) -> str:
    """"resolves: a above b" or "... below b" when the interval excludes 0; else not."""
    if lo > 0:
        return "resolves: higher"
    if hi < 0:
        return "resolves: lower"
    return "cannot resolve at this size"


def comparison(result: dict, a: str, b: str, metric: str = "test_acc") -> dict:
    """The stored comparison of arm ``a`` against arm ``b`` on ``metric``."""
    for c in result["comparisons"]:
        if (c["a"], c["b"], c["metric"]) == (a, b, metric):
            return c
    have = ", ".join(f"{c['a']} - {c['b']} ({c['metric']})" for c in result["comparisons"])
    raise ValueError(f"{result['experiment']} has no comparison {a} - {b} ({metric}); it has: "
                     f"{have}")


def describe(c: dict, percent: bool = True) -> str:
    """A comparison in words, from its interval: "2.1 points higher (95% interval 1.0 to 3.2
    points): resolved", or "... cannot resolve at this size". ``percent``: the metric is a
    fraction shown in percentage points (accuracies); otherwise as it is (losses)."""
    if c["ci95"] is None:
        return c["verdict"]
    k, unit, fmt = (100, " points", ".1f") if percent else (1, "", ".3f")
    mean, (lo, hi) = c["mean"] * k, (v * k for v in c["ci95"])
    interval = f"95% interval {lo:+{fmt}} to {hi:+{fmt}}{unit}"
    if c["verdict"] == "resolves: higher":
        return f"{mean:{fmt}}{unit} higher ({interval}): resolved"
    if c["verdict"] == "resolves: lower":
        return f"{-mean:{fmt}}{unit} lower ({interval}): resolved"
    return f"{mean:+{fmt}}{unit} ({interval}): cannot resolve at this size"


def arm_rows(result: dict, metrics=("test_acc",)) -> list[dict]:
    """Per arm: the mean, lowest and highest of each metric over the seeds."""
    rows = []
    for arm, runs in result["runs"].items():
        row = {"arm": arm, "seeds": len(runs),
               "diverged": sum(r["diverged"] is not None for r in runs)}
        for m in metrics:
            values = [r[m] for r in runs if r.get(m) is not None]
            if values:
                row.update({f"{m} mean": statistics.fmean(values), f"{m} min": min(values),
                            f"{m} max": max(values)})
        rows.append(row)
    return rows


def comparison_rows(result: dict) -> list[dict]:
    """Per comparison: the mean paired difference, its 95% interval and the verdict."""
    return [{"a - b": f"{c['a']} - {c['b']}", "metric": c["metric"], "mean": c["mean"],
             "95% low": c["ci95"][0] if c["ci95"] else None,
             "95% high": c["ci95"][1] if c["ci95"] else None, "verdict": c["verdict"]}
            for c in result["comparisons"]]


def result_path(name: str, out_dir: Optional[Path] = None, size: str = "cpu") -> Path:
    """``experiment-NAME.json`` for the CPU size, ``experiment-NAME-SIZE.json`` otherwise."""
    suffix = "" if size == "cpu" else f"-{size}"
    return (out_dir or default_out_dir()) / f"experiment-{name}{suffix}.json"


def default_out_dir() -> Path:
    """The package's results folder in a source checkout (where stored results are kept);
    ``runs/experiments`` elsewhere (a pip-installed package is never written to)."""
    package = Path(__file__).resolve().parent
    if (package.parent / ".git").exists():
        return package / "results"
    from vgg_book.results import runs_dir
    return runs_dir("experiments")


def run_experiment(name: str, size: str = "cpu", seeds: Optional[int] = None,
                   workers: int = 1, out_dir: Optional[Path] = None, log=print) -> dict:
    """Run every arm for every seed, then the paired comparisons; write and return the JSON."""
    from vgg_book.bench_cpu import _machine

    spec = recipe(name, size, seeds)
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if size == "gpu" and not torch.cuda.is_available():
        raise ValueError("size 'gpu' needs a CUDA GPU, and none is available here; use "
                         "--size cpu (or tiny)")
    jobs = [(name, arm, seed, spec["arms"][arm], spec.get("test_sides"))
            for seed in spec["seeds"] for arm in spec["arms"]]
    t = time.perf_counter()
    if workers == 1:
        runs = [_logged(run_arm(job), log) for job in jobs]
    else:
        import multiprocessing as mp
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            runs = [_logged(r, log) for r in pool.map(run_arm, jobs)]
    results = {arm: [r for r in runs if r["arm"] == arm] for arm in spec["arms"]}
    comparisons = []
    for a, b, metric in spec["comparisons"]:
        va, vb = ([r[metric] for r in results[x]] for x in (a, b))
        if any(v is None for v in va + vb):
            comparisons.append({"a": a, "b": b, "metric": metric, "mean": None, "ci95": None,
                                "verdict": "not measured (a run diverged)"})
            continue
        comparisons.append({"a": a, "b": b, "metric": metric, **paired(va, vb)})
    device = torch.device("cuda" if size == "gpu" else "cpu")
    out = {"experiment": name, "question": EXPERIMENTS[name]["question"], "recipe": spec,
           "machine": {**_machine(), "device_name": T._device_name(device),
                       "workers": workers},
           "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": time.perf_counter() - t,
           "smoke_test": size == "tiny", "runs": results, "comparisons": comparisons}
    path = result_path(name, out_dir, size)
    T.write_json(path, out)
    log(f"wrote {path}")
    return out


def _logged(run: dict, log) -> dict:
    log(f"  {run['arm']:>20s} seed {run['seed']}: test accuracy {run['test_acc']:.4f}"
        + (" (diverged)" if run["diverged"] else "") + f", {run['seconds']:.0f} s")
    return run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m vgg_book.experiments",
                                description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="+", metavar="NAME",
                   help="experiments to run: " + ", ".join(EXPERIMENTS) + ", or all")
    p.add_argument("--size", choices=SIZES, default=None,
                   help="cpu (default without a GPU), gpu (default with one), tiny (plumbing)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per arm (default 5)")
    p.add_argument("--workers", type=int, default=None,
                   help="runs at once, one thread each (default: the CPU's cores; 1 on a GPU)")
    p.add_argument("--out-dir", default=None, help="folder for experiment-NAME.json")
    args = p.parse_args(argv)
    names = list(EXPERIMENTS) if args.names == ["all"] else args.names
    size = args.size or ("gpu" if torch.cuda.is_available() else "cpu")
    workers = args.workers or (1 if size == "gpu" else max(1, min(2, os.cpu_count() or 1)))
    out_dir = Path(args.out_dir) if args.out_dir else None
    try:
        for name in names:
            recipe(name, size, args.seeds)  # every name checked before anything runs
        for name in names:
            print(f"{name} ({size}, {workers} worker(s)):")
            out = run_experiment(name, size, args.seeds, workers, out_dir)
            for c in out["comparisons"]:
                ci = c["ci95"]
                print(f"  {c['a']} - {c['b']} ({c['metric']}): " + (
                    f"{c['mean']:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}], {c['verdict']}"
                    if ci else c["verdict"]))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
