"""Train a VGG on Fashion-MNIST, fast and reproducibly.

The recipe in plain sight (nanoGPT style, one file you read top to bottom):

* The whole data set lives on the device as ``uint8`` (60,000 x 28 x 28 bytes = 47 MB).
  Each batch is gathered, augmented, normalised and resized to the model's input size *on the
  device* with tensor ops (``F.interpolate``): no PIL, no DataLoader workers.
* The shuffle order and the augmentation draws of an epoch come from one CPU generator, made
  in one go at the start of the epoch and copied to the device once.
* Scale jittering (the VGG paper's multi-scale training, section 3.1): with
  ``scale_jitter=(lo, hi)`` each batch is resized to a side S drawn uniformly from
  ``lo..hi`` (one S per batch) and every image gets its own random ``image_size`` crop of it.
  Evaluation always uses the whole image resized to ``image_size`` (no crop).
* On CUDA: bf16 autocast (fp16 with a ``GradScaler`` on GPUs without native bf16), channels_last,
  cuDNN autotuning, and ``torch.compile`` when asked.
* Loss and correct counts are summed on the device; the host reads them only every
  ``SYNC_EVERY`` steps (to check for NaN and update the progress bar) and at the epoch's end.
  Each step's loss is kept in a device tensor too and read once at the epoch's end
  (``step_losses`` in the epoch's record).
* Checkpoints (model, optimizer, scaler, RNG states, history) are written to a temp file and
  renamed, so a killed run never leaves half a file; ``resume`` continues from the last
  complete epoch and, on CPU, ends with the same weights as an uninterrupted run.
* ``torchrun --nproc_per_node=N -m vgg_book.train ...`` trains with DistributedDataParallel:
  every rank draws the same global batch and takes its slice of it, so a global batch holds
  the same images whatever the number of processes.

Command line::

    python -m vgg_book.train --model vgg11 --width-ratio 4 --image-size 224 --epochs 10 \\
        --batch-size 128 --lr 0.05 --init xavier --device auto --out runs/vgg11-224
    python -m vgg_book.train --model vgg11 --image-size 224 --scale-jitter 256 512 ...
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from vgg_book.models import ALIASES, CONFIGS, MIN_INPUT_SIZE, init_xavier_, vgg

__all__ = ["TrainConfig", "TrainingError", "fit", "train", "resolve_device", "preprocess",
           "normalisation_stats", "predict", "train_step", "amp_dtype_for", "grad_scaler_for",
           "epoch_plan", "jitter_plan", "build_model", "schedule_needs_total",
           "set_recipe_backends", "precision_dtype", "FULL_RECIPE", "FULL_RECIPE_MODEL",
           "CPU_RECIPE", "CPU_RECIPE_MODEL", "RECIPES", "recipe_model", "full_recipe_args",
           "main"]

#: Steps between host reads of the running loss (NaN check, progress bar) on an accelerator.
SYNC_EVERY = 50
#: Pixels of zero padding for the random-crop augmentation (at 28x28, before resizing).
AUG_PAD = 2
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
#: Config keys that must match for ``resume`` to continue a run (``epochs`` may grow, unless
#: the learning-rate schedule depends on it: see ``schedule_needs_total``).
RESUME_KEYS = ("model_spec", "batch_size", "lr", "momentum", "weight_decay", "image_size",
               "seed", "augment", "scale_jitter", "limit_train", "limit_test", "schedule",
               "warmup_epochs", "world_size", "precision", "channels_last")
#: Learning-rate schedules after the warm-up: constant (d2l's), or cosine decay to 0 at the
#: last epoch (which depends on the total number of epochs).
SCHEDULES = ("constant", "cosine")
#: Precisions of the forward pass: ``auto`` is ``amp_dtype_for(device)``; the others say it.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: Initialisations the command line offers (``--init``).
INITS = ("torchvision", "xavier")

#: The full recipe, defined once: d2l's narrow VGG-11 with the Xavier initialisation d2l's
#: trainer gives it, 224x224, batch 128, plain SGD at 0.05, 10 epochs, no augmentation. Chapter
#: 5 runs it on a GPU, the benchmark times it to accuracy, and ``full_recipe_args()`` is the
#: same run from the command line.
FULL_RECIPE_MODEL = {"config": "vgg11", "width_ratio": 4, "hidden": 4096, "dropout": 0.5,
                     "batch_norm": False, "in_channels": 1, "num_classes": 10, "init": "xavier"}
FULL_RECIPE = {"epochs": 10, "batch_size": 128, "lr": 0.05, "image_size": 224,
               "augment": False}

#: The CPU recipe: fast enough to experiment with on a 2-core CPU (at least 90% on the whole
#: test set in under two minutes; ``python -m vgg_book.bench --recipe cpu`` measures it).
#: A VGG-11 with every width divided by 8, batch norm, 256 hidden units and no dropout, built
#: for 32x32 inputs (no adaptive pool: its first linear layer reads the 1x1 map itself), on
#: all 60,000 images for 5 epochs; SGD with momentum and weight decay, a short warm-up and a
#: cosine decay; bf16 autocast and channels_last (oneDNN's fast paths), two threads.
CPU_RECIPE_MODEL = {"config": "vgg11", "width_ratio": 8, "hidden": 256, "dropout": 0.0,
                    "batch_norm": True, "in_channels": 1, "num_classes": 10,
                    "init": "torchvision", "input_size": 32}
CPU_RECIPE = {"epochs": 5, "batch_size": 256, "lr": 0.1, "momentum": 0.9,
              "weight_decay": 5e-4, "warmup_epochs": 0.3, "schedule": "cosine",
              "image_size": 32, "augment": False, "precision": "bf16", "channels_last": True,
              "threads": 2}
#: ``--recipe NAME``: (model spec, training settings).
RECIPES = {"full": (FULL_RECIPE_MODEL, FULL_RECIPE), "cpu": (CPU_RECIPE_MODEL, CPU_RECIPE)}


class TrainingError(RuntimeError):
    """Training cannot go on (loss became NaN/inf, the GPU ran out of memory)."""


@dataclass
class TrainConfig:
    """Everything that decides a run. Learning rate per step of SGD; sizes in pixels."""

    epochs: int
    batch_size: int = 128          # global batch (split across ranks under torchrun)
    lr: float = 0.05               # peak learning rate
    momentum: float = 0.0          # SGD momentum (d2l's recipe: plain SGD)
    weight_decay: float = 0.0
    warmup_epochs: float = 0.0     # linear warm-up from 0 over this many epochs (0 = none)
    schedule: str = "constant"     # after the warm-up: "constant" or "cosine" (to 0 at the end)
    image_size: int = 224
    device: str = "auto"
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None
    seed: int = 0
    augment: bool = False
    scale_jitter: Optional[tuple[int, int]] = None  # (S_min, S_max): resize to S, crop image_size
    progress: bool = True
    compile: bool = False
    out: Optional[str] = None
    resume: bool = False
    model_spec: dict = field(default_factory=dict)  # how the CLI built the model (for resume)
    data_root: Optional[str] = None
    world_size: int = 1
    precision: str = "auto"        # "auto" (see amp_dtype_for), "fp32", "bf16" or "fp16"
    channels_last: Optional[bool] = None  # None: on CUDA only
    threads: Optional[int] = None  # CPU threads (None: torch's default)


# ----------------------------------------------------------------------------- checks
def _check_positive_int(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def validate(cfg: TrainConfig) -> None:
    """Raise a clear ``ValueError`` for settings that cannot work."""
    _check_positive_int("epochs", cfg.epochs)
    _check_positive_int("batch_size", cfg.batch_size)
    _check_positive_int("limit_train", cfg.limit_train, allow_none=True)
    _check_positive_int("limit_test", cfg.limit_test, allow_none=True)
    if not isinstance(cfg.image_size, int) or cfg.image_size < MIN_INPUT_SIZE:
        raise ValueError(
            f"image_size={cfg.image_size!r} is too small: VGG's five 2x2 max-pools need at least "
            f"{MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels; use --image-size {MIN_INPUT_SIZE} or more "
            "(Fashion-MNIST's 28x28 images are resized on the device)")
    if not (isinstance(cfg.lr, (int, float)) and math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {cfg.lr!r}")
    if not 0 <= cfg.momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {cfg.momentum!r}")
    if cfg.weight_decay < 0 or cfg.warmup_epochs < 0:
        raise ValueError("weight_decay and warmup_epochs must be >= 0, got "
                         f"{cfg.weight_decay!r} and {cfg.warmup_epochs!r}")
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got "
                         f"{cfg.precision!r}")
    _check_positive_int("threads", cfg.threads, allow_none=True)
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {cfg.schedule!r}")
    if cfg.data_root is not None:
        from vgg_book.data import check_data_root

        check_data_root(cfg.data_root)  # an explicit root must hold the files: no fallback
    cfg.scale_jitter = check_scale_jitter(cfg.scale_jitter, cfg.image_size)
    if cfg.resume and cfg.out is None:
        raise ValueError("resume=True needs out= (the run folder holding checkpoint.pt)")


def check_scale_jitter(scale_jitter, image_size: int) -> Optional[tuple[int, int]]:
    """``None``, or ``(lo, hi)`` as a tuple of ints with ``image_size <= lo <= hi`` (pixels)."""
    if scale_jitter is None:
        return None
    if (not isinstance(scale_jitter, (tuple, list)) or len(scale_jitter) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in scale_jitter)):
        raise ValueError(f"scale_jitter must be None or two integers (lo, hi) in pixels, got "
                         f"{scale_jitter!r}; e.g. scale_jitter=(256, 512) with image_size=224")
    lo, hi = scale_jitter
    if lo < image_size:
        raise ValueError(f"scale_jitter=({lo}, {hi}) starts below image_size={image_size}: the "
                         f"{image_size}x{image_size} crop must fit inside the resized image; use "
                         f"lo >= {image_size}, e.g. ({image_size}, {max(hi, 2 * image_size)})")
    if lo > hi:
        raise ValueError(f"scale_jitter=({lo}, {hi}) has lo > hi; give the range as "
                         f"(smallest side, largest side), e.g. ({hi}, {lo})")
    return (lo, hi)


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; expected 'auto', 'cpu' or 'cuda[:N]'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} was asked for, but no CUDA GPU is available here "
            f"(torch {torch.__version__}, torch.cuda.is_available() is False); "
            "use --device cpu, or --device auto to take a GPU only when there is one")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported; use 'auto', 'cpu' or 'cuda'")
    return dev


#: Compute capability from which a GPU has native bf16 (Ampere: A100, RTX 30xx, L4, H100...).
NATIVE_BF16_CAPABILITY = (8, 0)


def amp_dtype_for(device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for ``device``: bf16 on a GPU with native bf16 (compute capability
    8.0 or newer), fp16 on older GPUs (T4, V100; the loop then scales the loss with a
    ``GradScaler``), ``None`` (fp32, no autocast) on the CPU.

    Not ``torch.cuda.is_bf16_supported()``: by default it counts emulated bf16, and says
    True on a T4, where bf16 matrix multiplications run without tensor cores.
    """
    if device.type != "cuda":
        return None
    native = torch.cuda.get_device_capability(device) >= NATIVE_BF16_CAPABILITY
    return torch.bfloat16 if native else torch.float16


def precision_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of ``precision`` on ``device`` (``None``: fp32, no autocast)."""
    if precision == "auto":
        return amp_dtype_for(device)
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def set_recipe_backends(enabled: bool = True) -> tuple[bool, str]:
    """Switch on (or off) the CUDA backend settings of the recipe: cuDNN autotuning of the
    convolution algorithms (fast, not bit-reproducible) and TF32 tensor cores for fp32 matrix
    multiplications. Returns the previous settings (``cudnn.benchmark``, matmul precision)."""
    previous = torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()
    torch.backends.cudnn.benchmark = enabled
    torch.set_float32_matmul_precision("high" if enabled else "highest")
    return previous


def grad_scaler_for(device: torch.device, amp_dtype: Optional[torch.dtype]):
    """A ``GradScaler`` that scales the loss under fp16 autocast only: fp16 gradients
    underflow without it, while bf16 (fp32's exponent range) and fp32 need none."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)


# ----------------------------------------------------------------------------- data on device
def normalisation_stats(images: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of uint8 images scaled to [0, 1] (one channel)."""
    x = images.to(torch.float32, copy=True).div_(255)
    return float(x.mean()), float(x.std())


def prepare_batch(images: torch.Tensor, side: int, mean: float, std: float,
                  offsets: Optional[torch.Tensor] = None,
                  flips: Optional[torch.Tensor] = None) -> torch.Tensor:
    """uint8 ``[B, 28, 28]`` -> normalised float ``[B, 1, side, side]``, on the same device."""
    x = images.unsqueeze(1).to(torch.float32, copy=True).div_(255)  # bytes to [0, 1], a copy
    if offsets is not None:  # a random 28x28 window of the image padded with black
        x = _shift(x, offsets)
    if flips is not None:  # mirror the chosen images left-right
        x = torch.where(flips.view(-1, 1, 1, 1), x.flip(3), x)
    x = (x - mean) / std  # before the (linear) resize: on 784 pixels, not side**2
    if side != x.shape[-1]:
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    return x


def preprocess(images: torch.Tensor, image_size: int, mean: float, std: float,
               offsets: Optional[torch.Tensor] = None, flips: Optional[torch.Tensor] = None,
               channels_last: bool = False, scale: Optional[int] = None,
               crops: Optional[torch.Tensor] = None) -> torch.Tensor:
    """uint8 ``[B, 28, 28]`` -> float ``[B, 1, image_size, image_size]``, on the images' device.

    ``prepare_batch`` does the work: ``offsets`` (int ``[B, 2]`` in ``0..2*AUG_PAD``) take a
    random 28x28 crop of the image padded by ``AUG_PAD`` black pixels; ``flips`` (bool ``[B]``)
    mirror left-right. Normalising before the (linear) bilinear resize gives the same result as
    after, on 784 instead of ``image_size**2`` pixels. Scale jittering: ``scale`` (pixels,
    >= ``image_size``) resizes to ``scale x scale`` instead, then ``crops`` (int ``[B, 2]``, row
    and column of the top-left corner, in ``0..scale - image_size``) cut each image's own
    ``image_size`` square out of it.
    """
    side = image_size if scale is None else scale
    x = prepare_batch(images, side, mean, std, offsets=offsets, flips=flips)
    if scale is not None:
        x = _crop(x, crops, image_size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _shift(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """``[B, 1, h, w]`` -> the same shape: image b's window at ``offsets[b]`` (row, col) of the
    image padded by ``AUG_PAD`` black (zero) pixels on every side."""
    n, _, h, w = x.shape
    padded = F.pad(x, (AUG_PAD,) * 4)
    rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # [B, h]
    cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # [B, w]
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def _crop(x: torch.Tensor, corners: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, C, S, S]`` -> ``[B, C, size, size]``: image b's square at ``corners[b]`` (row, col)."""
    n, c = x.shape[:2]
    span = torch.arange(size, device=x.device)
    rows = corners[:, 0, None] + span  # [B, size]
    cols = corners[:, 1, None] + span
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return x[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


def jitter_plan(n: int, steps: int, generator: torch.Generator,
                scale_jitter: tuple[int, int]) -> tuple[list[int], torch.Tensor]:
    """One epoch's scale-jitter draws from ``generator`` (CPU): a side S per batch and a crop
    position per image, as fractions in [0, 1) of the ``S - image_size + 1`` possible offsets
    (so one draw serves any S)."""
    lo, hi = scale_jitter
    sides = torch.randint(lo, hi + 1, (steps,), generator=generator).tolist()
    return sides, torch.rand(n, 2, generator=generator)


def epoch_plan(n: int, generator: torch.Generator, augment: bool):
    """One epoch's shuffle order and augmentation draws, all from ``generator`` (CPU)."""
    order = torch.randperm(n, generator=generator)
    if not augment:
        return order, None, None
    offsets = torch.randint(0, 2 * AUG_PAD + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    return order, offsets, flips


# ----------------------------------------------------------------------------- one step
def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, scaler, x: torch.Tensor,
               y: torch.Tensor, amp_dtype: Optional[torch.dtype]):
    """Forward, backward and update; returns (mean loss, number correct) as device tensors."""
    with torch.autocast(x.device.type, dtype=amp_dtype or torch.float32,
                        enabled=amp_dtype is not None):
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach(), (logits.detach().argmax(1) == y).sum()


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, image_size: int, mean: float, std: float,
            batch_size: int = 256, device: Optional[torch.device] = None) -> torch.Tensor:
    """Predicted class (int64, on the CPU) for each uint8 ``[N, 28, 28]`` image."""
    device = device or next(model.parameters()).device
    amp = amp_dtype_for(device)
    was_training = model.training
    model.eval()
    preds = []
    for i in range(0, len(images), batch_size):
        x = preprocess(images[i:i + batch_size].to(device), image_size, mean, std,
                       channels_last=device.type == "cuda")
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            preds.append(model(x).argmax(1))
    model.train(was_training)
    return torch.cat(preds).cpu()


@torch.no_grad()
def _count_correct(model, images, labels, image_size, mean, std, batch_size, amp_dtype,
                   channels_last) -> torch.Tensor:
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    for i in range(0, len(images), batch_size):
        x = preprocess(images[i:i + batch_size], image_size, mean, std,
                       channels_last=channels_last)
        with torch.autocast(images.device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            correct += (model(x).argmax(1) == labels[i:i + batch_size]).sum()
    model.train()
    return correct


# ----------------------------------------------------------------------------- files
def _atomic_write_bytes(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON to a temp file, then rename it onto ``path``."""
    _atomic_write_bytes(Path(path), lambda f: f.write(json.dumps(obj, indent=2).encode()))


def _distributed() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment variables."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 0, 1
    return int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world


@functools.lru_cache(maxsize=4)
def _load(train: bool, root: Optional[str]):
    """Fashion-MNIST images and labels, read (and hash-checked) once per process."""
    from vgg_book.data import load_fashion_mnist

    images, labels, _ = load_fashion_mnist(train=train, root=root)
    return images, labels


def schedule_needs_total(cfg: TrainConfig) -> bool:
    """Whether the learning rate at a step depends on the run's total number of epochs (then a
    finished run cannot simply be continued for more epochs: its past steps would differ)."""
    return cfg.schedule == "cosine"


def _lr_at(step: int, cfg: TrainConfig, steps_per_epoch: int) -> float:
    warmup = cfg.warmup_epochs * steps_per_epoch
    if warmup > 0 and step + 1 < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.schedule == "cosine":
        total = cfg.epochs * steps_per_epoch
        progress = (step - warmup) / max(1.0, total - warmup)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))
    return cfg.lr


# ----------------------------------------------------------------------------- the loop
@dataclass
class Data:
    """One run's data on the device: uint8 images, labels, the normalisation, the steps."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor       # this rank's share of the test set
    test_y: torch.Tensor
    n_test: int                # the whole test set's size (all ranks)
    mean: float
    std: float
    steps: int                 # full batches per epoch (the last partial batch is dropped)


@dataclass
class Run:
    """Where a run happens and how: rank, device, precision, layout."""

    rank: int
    world: int
    device: torch.device
    local_batch: int
    amp_dtype: Optional[torch.dtype]
    channels_last: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def train(model: nn.Module, cfg: TrainConfig) -> dict:
    """Train ``model`` in place on Fashion-MNIST as ``cfg`` says; return the metrics dict.

    The steps, in order: check the settings, set up the processes and the device, check the
    checkpoint to resume from, put the data on the device, build the optimizer (and restore
    a checkpoint), then train epoch by epoch, testing and saving after each.
    """
    validate(cfg)
    run = setup_run(cfg)
    out = Path(cfg.out) if cfg.out is not None else None
    ckpt = check_resume(cfg, model, out)
    data = load_data(cfg, run)
    torch.manual_seed(cfg.seed + run.rank)  # dropout masks differ between ranks
    model.to(run.device)
    if run.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    scaler = grad_scaler_for(run.device, run.amp_dtype)
    generator = torch.Generator().manual_seed(cfg.seed)  # same shuffle on every rank
    history, start_epoch = restore(ckpt, model, optimizer, scaler, generator, run)
    net = wrap_model(model, cfg, run)
    config = run_record(cfg, run, data, model)
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        record = train_epoch(net, optimizer, scaler, generator, data, cfg, run, epoch)
        t1 = time.perf_counter()
        test_correct = _count_correct(net, data.test_x, data.test_y, cfg.image_size,
                                      data.mean, data.std, 2 * run.local_batch, run.amp_dtype,
                                      run.channels_last)
        if run.world > 1:
            torch.distributed.all_reduce(test_correct)
        record["test_acc"] = int(test_correct) / data.n_test
        record["eval_seconds"] = time.perf_counter() - t1
        previous = history[-1]["elapsed"] if history else 0.0
        record["elapsed"] = previous + record["seconds"] + record["eval_seconds"]
        history.append(record)
        if run.is_main and cfg.progress:
            print(f"epoch {epoch + 1}/{cfg.epochs}: loss {record['train_loss']:.4f}, "
                  f"train acc {record['train_acc']:.4f}, test acc {record['test_acc']:.4f}, "
                  f"{record['images_per_s']:,.0f} images/s", file=sys.stderr)
        if out is not None:
            _save(out, model, optimizer, scaler, generator, run.device, config, history,
                  epoch + 1, run.world, run.is_main)
    return {"config": config, "epochs": history}


def setup_run(cfg: TrainConfig) -> Run:
    """Processes (torchrun), device, CPU threads, precision and memory layout of a run."""
    rank, local_rank, world = _distributed()
    cfg.world_size = world
    device = resolve_device(cfg.device)
    if world > 1:
        import torch.distributed as dist
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if cfg.batch_size % world:
            raise ValueError(f"batch_size={cfg.batch_size} is the global batch and must split "
                             f"evenly across {world} processes; use a multiple of {world}")
    if device.type == "cuda":
        set_recipe_backends(True)
    if cfg.threads is not None and device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    if cfg.channels_last is None:  # resolved here, so that a resumed run compares like for like
        cfg.channels_last = device.type == "cuda"
    return Run(rank=rank, world=world, device=device, local_batch=cfg.batch_size // world,
               amp_dtype=precision_dtype(cfg.precision, device),
               channels_last=cfg.channels_last)


def check_resume(cfg: TrainConfig, model: nn.Module, out: Optional[Path]) -> Optional[dict]:
    """The checkpoint to continue from (``cfg.resume``), after checking that its settings are
    this run's; ``None`` for a new run, whose folder must then be new or empty."""
    if out is not None and not cfg.resume and out.exists() and any(out.iterdir()):
        raise ValueError(f"output folder {out} already exists and is not empty; pass "
                         "--resume to continue that run, or choose a new --out")
    if not cfg.resume:
        return None
    if not (out / CHECKPOINT).is_file():
        raise ValueError(f"cannot resume: {out / CHECKPOINT} does not exist; run without "
                         "--resume to start a new run there")
    ckpt = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=True)
    saved = ckpt["config"]
    diff = {k: (saved.get(k), getattr(cfg, k)) for k in RESUME_KEYS
            if _plain(saved.get(k)) != _plain(getattr(cfg, k))}
    n_params = sum(p.numel() for p in model.parameters())
    if saved.get("parameters") != n_params:
        diff["parameters"] = (saved.get("parameters"), n_params)
    done, planned = int(ckpt["epoch"]), saved.get("epochs")
    if cfg.epochs < done:
        diff["epochs"] = (planned, f"{cfg.epochs} (the run already has {done})")
    elif cfg.epochs != planned and schedule_needs_total(cfg):
        raise ValueError(
            f"cannot resume {out} for {cfg.epochs} epochs instead of {planned}: its "
            f"{cfg.schedule} learning-rate schedule depends on the total number of epochs, "
            "so the steps already taken would not match a longer run; keep --epochs "
            f"{planned}, or start a new run with --out elsewhere")
    if diff:
        detail = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"cannot resume {out}: the settings differ from the saved run "
                         f"({detail}); use the same settings, or a new --out")
    return ckpt


def load_data(cfg: TrainConfig, run: Run) -> Data:
    """The whole training split and this rank's share of the test split, on the device."""
    train_x, train_y = _load(True, cfg.data_root)
    test_x, test_y = _load(False, cfg.data_root)
    train_x, train_y = train_x[:cfg.limit_train], train_y[:cfg.limit_train]
    test_x, test_y = test_x[:cfg.limit_test], test_y[:cfg.limit_test]
    steps = len(train_x) // cfg.batch_size  # the last partial batch is dropped
    if steps == 0:
        raise ValueError(f"{len(train_x)} training images make no full batch of "
                         f"{cfg.batch_size}; lower batch_size or raise limit_train")
    mean, std = normalisation_stats(train_x)
    local_test = torch.arange(run.rank, len(test_x), run.world)  # each rank scores its share
    dev = run.device
    return Data(train_x=train_x.to(dev), train_y=train_y.to(dev),
                test_x=test_x[local_test].to(dev), test_y=test_y[local_test].to(dev),
                n_test=len(test_x), mean=mean, std=std, steps=steps)


def restore(ckpt: Optional[dict], model, optimizer, scaler, generator,
            run: Run) -> tuple[list[dict], int]:
    """Load a checkpoint's weights, optimizer, scaler and RNG states; return its history and
    the epoch to start from (``[], 0`` for a new run)."""
    if ckpt is None:
        return [], 0
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scaler.load_state_dict(ckpt["scaler"])
    rng = ckpt["rng"][run.rank]
    torch.set_rng_state(rng["cpu"])
    if run.device.type == "cuda" and rng.get("cuda") is not None:
        torch.cuda.set_rng_state(rng["cuda"], run.device)
    generator.set_state(rng["data"])
    return list(ckpt["history"]), int(ckpt["epoch"])


def wrap_model(model: nn.Module, cfg: TrainConfig, run: Run) -> nn.Module:
    """The module the loop calls: DistributedDataParallel under torchrun, compiled if asked."""
    net = model
    if run.world > 1:
        from torch.nn.parallel import DistributedDataParallel
        ids = [run.device.index] if run.device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=ids)
    return torch.compile(net) if cfg.compile else net


def run_record(cfg: TrainConfig, run: Run, data: Data, model: nn.Module) -> dict:
    """The settings and the machine, as saved with the metrics and the checkpoint."""
    config = {**asdict(cfg), "device_name": _device_name(run.device),
              "device_type": run.device.type,
              "amp_dtype": str(run.amp_dtype).replace("torch.", "") if run.amp_dtype
              else "float32",
              "threads": torch.get_num_threads(),
              "train_images": data.steps * cfg.batch_size, "test_images": data.n_test,
              "mean": data.mean, "std": data.std, "torch": str(torch.__version__),
              "parameters": sum(p.numel() for p in model.parameters())}
    config.pop("progress")
    return config


def train_epoch(net, optimizer, scaler, generator, data: Data, cfg: TrainConfig, run: Run,
                epoch: int) -> dict:
    """One pass over the training set; returns the epoch's record (without the test)."""
    from tqdm.auto import tqdm  # a notebook bar in Jupyter and Colab, text in a terminal

    steps, device, batch = data.steps, run.device, run.local_batch
    order, offsets, flips = (t.to(device) if t is not None else None
                             for t in epoch_plan(len(data.train_x), generator, cfg.augment))
    if cfg.scale_jitter is not None:
        sides, crop_at = jitter_plan(len(data.train_x), steps, generator, cfg.scale_jitter)
        crop_at = crop_at.to(device)
    step_losses = torch.zeros(steps, device=device)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)
    sync_every = 1 if device.type == "cpu" else SYNC_EVERY
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
               disable=not (cfg.progress and run.is_main), file=sys.stderr)
    _sync(device)
    t0 = time.perf_counter()
    for step in range(steps):
        lo = step * cfg.batch_size + run.rank * batch  # this rank's slice of the batch
        pick = order[lo:lo + batch]
        scale = crops = None
        if cfg.scale_jitter is not None:
            scale = sides[step]
            crops = (crop_at[lo:lo + batch] * (scale - cfg.image_size + 1)).long()
        x = preprocess(data.train_x[pick], cfg.image_size, data.mean, data.std,
                       offsets[lo:lo + batch] if offsets is not None else None,
                       flips[lo:lo + batch] if flips is not None else None,
                       run.channels_last, scale=scale, crops=crops)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(epoch * steps + step, cfg, steps)
        loss, right = _guarded_step(net, optimizer, scaler, x, data.train_y[pick], cfg, run,
                                    epoch, step)
        first_bad = torch.where(~torch.isfinite(loss) & (first_bad < 0), step, first_bad)
        loss_sum += loss.float() * batch
        step_losses[step] = loss.float()  # no host read: copied on the device
        correct += right
        bar.update(1)
        if (step + 1) % sync_every == 0 or step + 1 == steps:
            if int(first_bad) >= 0:  # the host reads the device here (a sync)
                bar.close()
                raise TrainingError(
                    f"the training loss became NaN or infinite at epoch {epoch + 1}, "
                    f"step {int(first_bad) + 1} of {steps} (lr={cfg.lr}); the run diverged: "
                    f"lower the learning rate (e.g. --lr {cfg.lr / 10:g}) or add warm-up")
            bar.set_postfix(loss=f"{float(loss):.3f}", refresh=False)
    totals = torch.stack([loss_sum.double(), correct.double()])
    if run.world > 1:
        torch.distributed.all_reduce(totals)
        torch.distributed.all_reduce(step_losses)
        step_losses /= run.world
    _sync(device)
    seconds = time.perf_counter() - t0
    bar.close()
    n_train = steps * cfg.batch_size
    return {"epoch": epoch + 1, "train_loss": float(totals[0]) / n_train,
            "train_acc": float(totals[1]) / n_train, "images_per_s": n_train / seconds,
            "seconds": seconds, "lr": optimizer.param_groups[0]["lr"],
            "step_losses": step_losses.tolist()}


def _guarded_step(net, optimizer, scaler, x, y, cfg: TrainConfig, run: Run, epoch: int,
                  step: int):
    """``train_step``, with an out-of-memory error turned into advice."""
    try:
        return train_step(net, optimizer, scaler, x, y, run.amp_dtype)
    except torch.cuda.OutOfMemoryError:
        raise TrainingError(
            f"CUDA ran out of memory at batch size {cfg.batch_size} "
            f"({run.local_batch} per process, {cfg.image_size}x{cfg.image_size} input, "
            f"epoch {epoch + 1}, step {step + 1}); try --batch-size "
            f"{max(1, cfg.batch_size // 2)} or a smaller --image-size") from None


def _plain(value):
    """Lists and tuples compare equal (a saved ``(lo, hi)`` may come back as either)."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def _save(out: Path, model, optimizer, scaler, generator, device, config, history, epoch,
          world, is_main) -> None:
    """Checkpoint then metrics, each to a temp file renamed into place (rank 0 writes)."""
    rng = {"cpu": torch.get_rng_state(), "data": generator.get_state(),
           "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
    states = [rng]
    if world > 1:
        import torch.distributed as dist
        states = [None] * world
        dist.all_gather_object(states, rng)
    if is_main:
        ckpt = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(), "rng": states, "epoch": epoch,
                "history": history, "config": config}
        _atomic_write_bytes(out / CHECKPOINT, lambda f: torch.save(ckpt, f))
        write_json(out / METRICS, {"config": config, "epochs": history})
    if world > 1:
        torch.distributed.barrier()


def fit(model: nn.Module, *, epochs: int, **settings) -> dict:
    """Train ``model`` (1 x image_size x image_size in, 10 classes out) on Fashion-MNIST.

    ``settings`` are the fields of ``TrainConfig`` (its defaults are d2l's recipe: plain SGD
    at 0.05, batches of 128, 224x224), so ``fit(model, **CPU_RECIPE)`` runs the CPU recipe.
    ``limit_train``/``limit_test`` keep the first N images of each split. The model is
    trained in place (and left on the device). ``scale_jitter=(lo, hi)`` trains on random
    ``image_size`` crops of each batch resized to a side drawn from ``lo..hi`` pixels (the
    VGG paper's multi-scale training); tests always see the whole image at ``image_size``.
    Returns ``{"config": {...}, "epochs": [{"epoch", "train_loss", "train_acc", "test_acc",
    "images_per_s", "seconds", "step_losses", ...}, ...]}``; ``step_losses`` holds each
    training step's mean loss; ``seconds`` is an epoch's training time, ``elapsed`` the
    run's wall time including tests. With ``out``, writes ``out/metrics.json`` and
    ``out/checkpoint.pt`` after every epoch.
    """
    known = {f.name for f in fields(TrainConfig)} - {"epochs", "model_spec", "world_size"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(f"fit() got unknown setting(s) {', '.join(unknown)}; expected "
                        f"TrainConfig's fields: {', '.join(sorted(known))}")
    if settings.get("out") is not None:
        settings["out"] = str(settings["out"])
    return train(model, TrainConfig(epochs=epochs, **settings))


# ----------------------------------------------------------------------------- CLI
def build_parser(recipe: Optional[str] = None) -> argparse.ArgumentParser:
    """The command line; ``recipe`` (a key of ``RECIPES``) sets the defaults to that recipe."""
    p = argparse.ArgumentParser(prog="python -m vgg_book.train",
                                description=__doc__.split("\n")[0])
    p.add_argument("--recipe", choices=sorted(RECIPES), default=recipe,
                   help="start from a recipe: full (d2l's, for a GPU) or cpu (90%% in two "
                        "minutes on a CPU); the other options change it")
    p.add_argument("--model", default="vgg11",
                   help="VGG config: " + ", ".join([*ALIASES, *CONFIGS]))
    p.add_argument("--width-ratio", type=int, default=4, help="divide every conv width (d2l: 4)")
    p.add_argument("--hidden", type=int, default=4096, help="units in each hidden FC layer")
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--input-size", type=int, default=None,
                   help="build the network for this side, with no adaptive pool (d2l's way)")
    p.add_argument("--image-size", type=int, default=224, help="input side in pixels (>= 32)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128, help="global batch size")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--warmup-epochs", type=float, default=0.0)
    p.add_argument("--schedule", choices=SCHEDULES, default="constant",
                   help="learning rate after the warm-up (cosine: decays to 0 at --epochs)")
    p.add_argument("--init", choices=INITS, default="torchvision",
                   help="weights: torchvision's (Kaiming convs, N(0, 0.01) linears) or xavier "
                        "(Xavier-uniform, as d2l's trainer initialises its VGG)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=False,
                   help="random crop (pad 2) and flip (default: off, as in d2l's recipe)")
    p.add_argument("--scale-jitter", type=int, nargs=2, metavar=("LO", "HI"), default=None,
                   help="multi-scale training: resize each batch to a side drawn from LO..HI "
                        "pixels, then crop --image-size (VGG paper: 256 512 with 224)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="autocast: auto (bf16 or fp16 on a GPU, fp32 on a CPU), fp32, bf16, fp16")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory layout (default: on a GPU only)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/NAME")
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--limit-test", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST files")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-plot", action="store_true")
    if recipe is not None:
        model, settings = RECIPES[recipe]
        p.set_defaults(model=model["config"], init=model["init"],
                       **{k: v for k, v in {**model, **settings}.items()
                          if k not in ("config", "in_channels", "num_classes", "init")})
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Parse a command line: ``--recipe`` first (it sets the defaults), then the rest."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--recipe", choices=sorted(RECIPES), default=None)
    known, _ = first.parse_known_args(argv)
    return build_parser(known.recipe).parse_args(argv)


def full_recipe_args() -> list[str]:
    """Command-line arguments that run ``FULL_RECIPE`` on ``FULL_RECIPE_MODEL`` (add --out)."""
    m, r = FULL_RECIPE_MODEL, FULL_RECIPE
    return ["--model", m["config"], "--width-ratio", str(m["width_ratio"]), "--hidden",
            str(m["hidden"]), "--init", m["init"], "--image-size", str(r["image_size"]),
            "--epochs", str(r["epochs"]), "--batch-size", str(r["batch_size"]), "--lr",
            str(r["lr"]), "--augment" if r["augment"] else "--no-augment"]


def build_model(spec: dict) -> nn.Module:
    """The network a command line's model spec describes (seed the RNG first)."""
    model = vgg(spec["config"], num_classes=spec["num_classes"], in_channels=spec["in_channels"],
                batch_norm=spec["batch_norm"], width_ratio=spec["width_ratio"],
                hidden=spec["hidden"], dropout=spec["dropout"],
                input_size=spec.get("input_size"))
    return init_xavier_(model) if spec.get("init") == "xavier" else model


def recipe_model(name: str, seed: int = 0) -> nn.Module:
    """The network of ``RECIPES[name]``, initialised from ``seed``."""
    torch.manual_seed(seed)
    return build_model(RECIPES[name][0])


def main(argv=None) -> int:
    args = parse_args(argv)
    spec = {"config": args.model, "width_ratio": args.width_ratio, "hidden": args.hidden,
            "dropout": args.dropout, "batch_norm": args.batch_norm, "in_channels": 1,
            "num_classes": 10, "init": args.init}
    if args.input_size is not None:
        spec["input_size"] = args.input_size
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      momentum=args.momentum, weight_decay=args.weight_decay,
                      warmup_epochs=args.warmup_epochs, schedule=args.schedule,
                      image_size=args.image_size,
                      device=args.device, limit_train=args.limit_train,
                      limit_test=args.limit_test, seed=args.seed, augment=args.augment,
                      scale_jitter=None if args.scale_jitter is None else tuple(args.scale_jitter),
                      progress=not args.no_progress, compile=args.compile, out=args.out,
                      resume=args.resume, model_spec=spec, data_root=args.data_root,
                      precision=args.precision, channels_last=args.channels_last,
                      threads=args.threads)
    try:
        torch.manual_seed(args.seed)  # the initial weights depend on the seed alone
        model = build_model(spec)
        metrics = train(model, cfg)
    except (ValueError, TrainingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if _distributed()[0] == 0:
        last = metrics["epochs"][-1]
        print(f"done: test accuracy {last['test_acc']:.4f} after {last['epoch']} epochs; "
              f"{Path(args.out) / METRICS}")
        if not args.no_plot:
            from vgg_book.plotting import save_history_plot
            save_history_plot(metrics, Path(args.out) / "curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
