"""vgg_book.train: on-device preprocessing, reproducibility, resume, faults, CLI and DDP.

Everything runs on the CPU with a tiny VGG (widths 1..8, 32 hidden units) at 32x32 on a few
hundred Fashion-MNIST images, so the whole file takes well under a minute and a half.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vgg_book import train as T
from vgg_book.models import vgg

TINY = dict(epochs=2, batch_size=32, lr=0.05, image_size=32, device="cpu", limit_train=256,
            limit_test=128, progress=False)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors run faster on one thread than on two busy ones (CI shares its cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(seed=0, dropout=0.5):
    torch.manual_seed(seed)
    return vgg("A", num_classes=10, in_channels=1, width_ratio=64, hidden=32, dropout=dropout)


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- preprocessing
def test_preprocess_resizes_normalises_crops_and_flips():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8, generator=g)
    x = T.preprocess(images, 28, 0.0, 1.0)
    assert x.shape == (4, 1, 28, 28) and torch.allclose(x[:, 0] * 255, images.float())
    assert T.preprocess(images, 64, 0.5, 0.25).shape == (4, 1, 64, 64)
    # Normalising before the bilinear resize equals normalising after it (it is linear).
    after = (T.preprocess(images, 64, 0.0, 1.0) - 0.5) / 0.25
    assert torch.allclose(T.preprocess(images, 64, 0.5, 0.25), after, atol=1e-5)
    # A crop offset of AUG_PAD in both directions is the identity; 0 shifts down-right.
    centre = torch.full((4, 2), T.AUG_PAD)
    assert torch.equal(T.preprocess(images, 28, 0, 1, offsets=centre), x)
    shifted = T.preprocess(images, 28, 0, 1, offsets=torch.zeros(4, 2, dtype=torch.long))
    assert torch.equal(shifted[..., T.AUG_PAD:, T.AUG_PAD:], x[..., :-T.AUG_PAD, :-T.AUG_PAD])
    assert shifted[..., :T.AUG_PAD, :].abs().sum() == 0  # padded with black
    flips = torch.tensor([True, False, True, False])
    flipped = T.preprocess(images, 28, 0, 1, flips=flips)
    assert torch.equal(flipped[0], x[0].flip(-1)) and torch.equal(flipped[1], x[1])
    # The core chapter 5 prints is preprocess without scale jittering and memory layout.
    offsets = torch.randint(0, 2 * T.AUG_PAD + 1, (4, 2), generator=g)
    assert torch.equal(T.prepare_batch(images, 40, 0.5, 0.25, offsets=offsets, flips=flips),
                       T.preprocess(images, 40, 0.5, 0.25, offsets=offsets, flips=flips,
                                    channels_last=True))


def test_normalisation_stats_of_fashion_mnist():
    images, _ = T._load(True, None)
    mean, std = T.normalisation_stats(images[:1000])
    x = images[:1000].double() / 255
    assert mean == pytest.approx(float(x.mean()), abs=1e-5)
    assert std == pytest.approx(float(x.std()), abs=1e-5)


# ----------------------------------------------------------------------------- reproducibility
def test_fit_returns_metrics_and_is_reproducible():
    a, b = tiny_model(), tiny_model()
    m1 = T.fit(a, augment=True, **TINY)
    m2 = T.fit(b, augment=True, **TINY)
    assert [e["epoch"] for e in m1["epochs"]] == [1, 2]
    for key in ("train_loss", "train_acc", "test_acc", "images_per_s", "seconds"):
        assert all(key in e for e in m1["epochs"])
    assert m1["config"]["train_images"] == 256 and m1["config"]["test_images"] == 128
    assert [e["train_loss"] for e in m1["epochs"]] == [e["train_loss"] for e in m2["epochs"]]
    assert same_weights(a, b)
    c = tiny_model()
    T.fit(c, **{**TINY, "seed": 1, "epochs": 1})  # another shuffle -> other weights
    assert not same_weights(a, c)
    json.dumps(m1)  # the metrics are plain JSON


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, monkeypatch):
    whole = tiny_model()
    full = T.fit(whole, out=tmp_path / "whole", augment=True, **TINY)

    real_save = T._save

    def save_then_die(out, model, *args):
        real_save(out, model, *args)
        if args[-3] == 1:  # epoch: stop right after the first checkpoint
            raise KeyboardInterrupt

    monkeypatch.setattr(T, "_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        T.fit(tiny_model(), out=tmp_path / "cut", augment=True, **TINY)
    monkeypatch.setattr(T, "_save", real_save)
    saved = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert [e["epoch"] for e in saved["epochs"]] == [1]

    torch.manual_seed(123)  # a different global RNG state must not matter after resume
    resumed = tiny_model(seed=99)  # the checkpoint's weights replace these
    again = T.fit(resumed, out=tmp_path / "cut", resume=True, augment=True, **TINY)
    assert same_weights(whole, resumed)
    assert [e["train_loss"] for e in again["epochs"]] == [e["train_loss"] for e in full["epochs"]]
    ckpt = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "scaler", "rng", "epoch"} <= ckpt.keys() and ckpt["epoch"] == 2
    assert {"cpu", "cuda", "data"} <= ckpt["rng"][0].keys()
    assert not list((tmp_path / "cut").glob("*.tmp"))  # temp files were renamed away


# ----------------------------------------------------------------------------- faults
def test_existing_out_is_refused_and_resume_needs_a_checkpoint(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")
    with pytest.raises(ValueError, match="already exists.*--resume"):
        T.fit(tiny_model(), out=tmp_path / "run", **TINY)
    with pytest.raises(ValueError, match="cannot resume.*does not exist"):
        T.fit(tiny_model(), out=tmp_path / "empty", resume=True, **TINY)


def test_resume_with_other_settings_is_refused(tmp_path):
    T.fit(tiny_model(), out=tmp_path / "r", **{**TINY, "epochs": 1})
    with pytest.raises(ValueError, match=r"settings differ.*lr: saved 0\.05, now 0\.1"):
        T.fit(tiny_model(), out=tmp_path / "r", resume=True, **{**TINY, "epochs": 1, "lr": 0.1})


@pytest.mark.parametrize("size", [16, 31])
def test_image_size_below_32_is_refused(size):
    with pytest.raises(ValueError, match="at least 32x32"):
        T.fit(tiny_model(), **{**TINY, "image_size": size})


def test_cuda_without_a_gpu_says_so():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="no CUDA GPU is available.*--device cpu"):
        T.resolve_device("cuda")
    assert T.resolve_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="unknown device"):
        T.resolve_device("gpu0")


def test_nan_loss_stops_with_epoch_step_and_advice():
    with pytest.raises(T.TrainingError, match=r"NaN or infinite at epoch 1, step \d+ of 8.*"
                                              r"lower the learning rate"):
        T.fit(tiny_model(), **{**TINY, "lr": 1e12})


def test_out_of_memory_names_the_batch_size(monkeypatch):
    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(T, "train_step", oom)
    with pytest.raises(T.TrainingError, match=r"out of memory at batch size 32 .*--batch-size 16"):
        T.fit(tiny_model(), **TINY)


def test_too_few_images_for_a_batch():
    with pytest.raises(ValueError, match="no full batch of 32"):
        T.fit(tiny_model(), **{**TINY, "limit_train": 20})


# ----------------------------------------------------------------------------- command line
CLI = ["--model", "vgg11", "--width-ratio", "64", "--hidden", "32", "--image-size", "32",
       "--epochs", "1", "--batch-size", "32", "--limit-train", "128", "--limit-test", "64",
       "--device", "cpu", "--no-progress"]


def test_cli_writes_metrics_checkpoint_and_plot(tmp_path, capsys):
    out = tmp_path / "cli"
    assert T.main([*CLI, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["model_spec"]["width_ratio"] == 64
    assert len(metrics["epochs"]) == 1 and 0 <= metrics["epochs"][0]["test_acc"] <= 1
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    model = vgg("A", num_classes=10, in_channels=1, width_ratio=64, hidden=32)
    model.load_state_dict(ckpt["model"])  # strict: the checkpoint holds this architecture
    assert (out / "curves.png").stat().st_size > 1000
    assert T.main([*CLI, "--out", str(out)]) == 2  # exists, no --resume
    assert "error: output folder" in capsys.readouterr().err
    assert T.main([*CLI, "--out", str(tmp_path / "x"), "--image-size", "16"]) == 2
    assert "at least 32x32" in capsys.readouterr().err


# ----------------------------------------------------------------------------- DDP
def test_torchrun_two_processes_matches_one(tmp_path):
    """Same global batch on 2 gloo processes as on 1: same losses and weights (float noise)."""
    args = ["--model", "vgg11", "--width-ratio", "64", "--hidden", "32", "--dropout", "0",
            "--image-size", "32", "--epochs", "2", "--batch-size", "32", "--limit-train", "192",
            "--limit-test", "64", "--device", "cpu", "--no-progress", "--no-plot", "--augment"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(T.__file__).parents[1])}
    one = subprocess.run([sys.executable, "-m", "vgg_book.train", *args, "--out",
                          str(tmp_path / "one")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "vgg_book.train", *args, "--out",
                          str(tmp_path / "two")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert m2["config"]["world_size"] == 2 and m1["config"]["world_size"] == 1
    for e1, e2 in zip(m1["epochs"], m2["epochs"], strict=True):
        assert e2["train_loss"] == pytest.approx(e1["train_loss"], rel=1e-4)
        assert e2["train_acc"] == e1["train_acc"]
    w1 = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)["model"]
    w2 = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)["model"]
    for k in w1:
        assert torch.allclose(w1[k], w2[k], rtol=1e-4, atol=1e-6), k


# ----------------------------------------------------------------------------- scale jittering
JITTER = {**TINY, "scale_jitter": (32, 48)}


def test_scale_jitter_resizes_then_crops_each_image_on_its_own():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8, generator=g)
    big = T.preprocess(images, 40, 0.5, 0.25)
    corners = torch.tensor([[0, 0], [8, 3], [5, 8]])
    x = T.preprocess(images, 32, 0.5, 0.25, scale=40, crops=corners)
    assert x.shape == (3, 1, 32, 32)
    for b, (r, c) in enumerate(corners.tolist()):
        assert torch.equal(x[b], big[b, :, r:r + 32, c:c + 32])
    # scale == image_size with a zero corner is the plain resize
    plain = T.preprocess(images, 32, 0.5, 0.25)
    assert torch.equal(T.preprocess(images, 32, 0.5, 0.25, scale=32,
                                    crops=torch.zeros(3, 2, dtype=torch.long)), plain)


def test_jitter_draws_cover_the_range_and_repeat_with_the_seed():
    sides, where = T.jitter_plan(500, 400, torch.Generator().manual_seed(3), (32, 48))
    again, where2 = T.jitter_plan(500, 400, torch.Generator().manual_seed(3), (32, 48))
    assert sides == again and torch.equal(where, where2)
    assert min(sides) == 32 and max(sides) == 48 and len(set(sides)) == 17  # both ends included
    assert where.shape == (500, 2) and 0 <= where.min() and where.max() < 1
    other, _ = T.jitter_plan(500, 400, torch.Generator().manual_seed(4), (32, 48))
    assert other != sides


def test_fit_with_scale_jitter_is_reproducible_and_differs_from_without():
    a, b, c = tiny_model(), tiny_model(), tiny_model()
    m1 = T.fit(a, **JITTER)
    m2 = T.fit(b, **JITTER)
    assert same_weights(a, b)
    assert m1["config"]["scale_jitter"] == (32, 48) and m1["config"]["image_size"] == 32
    json.dumps(m1)
    T.fit(c, **TINY)
    assert not same_weights(a, c)  # the jitter really changed the training images
    # Per-step losses: one per batch, and their mean is the epoch's loss (equal batches).
    for e in m1["epochs"]:
        assert len(e["step_losses"]) == 256 // 32
        assert sum(e["step_losses"]) / len(e["step_losses"]) == pytest.approx(e["train_loss"],
                                                                               rel=1e-5)


def test_resume_with_scale_jitter_gives_the_same_weights(tmp_path, monkeypatch):
    whole = tiny_model()
    T.fit(whole, out=tmp_path / "whole", augment=True, **JITTER)
    real_save = T._save

    def save_then_die(out, model, *args):
        real_save(out, model, *args)
        if args[-3] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(T, "_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        T.fit(tiny_model(), out=tmp_path / "cut", augment=True, **JITTER)
    monkeypatch.setattr(T, "_save", real_save)
    resumed = tiny_model(seed=99)
    T.fit(resumed, out=tmp_path / "cut", resume=True, augment=True, **JITTER)
    assert same_weights(whole, resumed)
    with pytest.raises(ValueError, match=r"settings differ.*scale_jitter: saved \(32, 48\), now None"):
        T.fit(tiny_model(), out=tmp_path / "cut", resume=True, augment=True, **TINY)


@pytest.mark.parametrize("jitter, message", [
    ((16, 48), r"starts below image_size=32.*lo >= 32"),
    ((48, 40), r"lo > hi.*\(40, 48\)"),
    ((32.0, 48), "two integers"),
    ((32,), "two integers"),
    (48, "two integers"),
])
def test_bad_scale_jitter_is_refused(jitter, message):
    with pytest.raises(ValueError, match=message):
        T.fit(tiny_model(), **{**TINY, "scale_jitter": jitter})


def test_cli_scale_jitter(tmp_path, capsys):
    out = tmp_path / "cli"
    assert T.main([*CLI, "--no-plot", "--scale-jitter", "32", "40", "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["config"]["scale_jitter"] == [32, 40]
    assert T.main([*CLI, "--scale-jitter", "24", "40", "--out", str(tmp_path / "bad")]) == 2
    assert "starts below image_size=32" in capsys.readouterr().err


# ----------------------------------------------------------------------------- GPU precision
@pytest.mark.parametrize("capability, expected", [
    ((7, 5), torch.float16),   # T4 (Colab's free GPU): bf16 only emulated
    ((7, 0), torch.float16),   # V100
    ((8, 0), torch.bfloat16),  # A100
    ((8, 9), torch.bfloat16),  # L4
    ((9, 0), torch.bfloat16),  # H100
])
def test_amp_dtype_needs_native_bf16(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    # What torch says on a T4 by default (emulation counts): it must not decide.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert T.amp_dtype_for(torch.device("cuda")) == expected
    assert T.amp_dtype_for(torch.device("cuda", 0)) == expected


def test_amp_dtype_is_fp32_on_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert T.amp_dtype_for(torch.device("cpu")) is None


@pytest.mark.parametrize("amp_dtype, scaled", [(torch.float16, True), (torch.bfloat16, False),
                                                (None, False)])
def test_grad_scaler_only_for_fp16(monkeypatch, amp_dtype, scaled):
    made = []
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled: made.append(
        (device, enabled)) or "scaler")
    assert T.grad_scaler_for(torch.device("cuda"), amp_dtype) == "scaler"
    assert made == [("cuda", scaled)]


# ----------------------------------------------------------------------------- one recipe
def test_resume_continues_a_finished_run_for_more_epochs(tmp_path):
    two = tiny_model()
    T.fit(two, **TINY)  # 2 epochs in one go
    one_then_one = tiny_model()
    T.fit(one_then_one, out=tmp_path / "r", **{**TINY, "epochs": 1})
    more = T.fit(tiny_model(seed=5), out=tmp_path / "r", resume=True, **TINY)  # 1 -> 2
    assert [e["epoch"] for e in more["epochs"]] == [1, 2]
    resumed = tiny_model(seed=5)
    resumed.load_state_dict(torch.load(tmp_path / "r" / "checkpoint.pt",
                                       weights_only=True)["model"])
    assert same_weights(two, resumed)  # the constant schedule does not depend on the total
    with pytest.raises(ValueError, match=r"epochs: saved 2, now '1 \(the run already has 2\)'"):
        T.fit(tiny_model(), out=tmp_path / "r", resume=True, **{**TINY, "epochs": 1})


def test_resume_for_more_epochs_is_refused_when_the_schedule_needs_the_total(tmp_path):
    cfg = T.TrainConfig(out=str(tmp_path / "c"), schedule="cosine", **{**TINY, "epochs": 1})
    T.train(tiny_model(), cfg)
    longer = T.TrainConfig(out=str(tmp_path / "c"), schedule="cosine", resume=True, **TINY)
    with pytest.raises(ValueError, match="cosine learning-rate schedule depends on the total"):
        T.train(tiny_model(), longer)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    cfg = T.TrainConfig(epochs=2, lr=0.1, warmup_epochs=0.5, schedule="cosine")
    lrs = [T._lr_at(step, cfg, 10) for step in range(20)]
    assert lrs[0] == pytest.approx(0.02) and lrs[4] == pytest.approx(0.1)  # 5 warm-up steps
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:])) and lrs[-1] < 0.002
    constant = T.TrainConfig(epochs=2, lr=0.1)
    assert {T._lr_at(s, constant, 10) for s in range(20)} == {0.1}
    assert not T.schedule_needs_total(constant) and T.schedule_needs_total(cfg)
    with pytest.raises(ValueError, match="schedule must be one of constant, cosine"):
        T.validate(T.TrainConfig(epochs=1, schedule="step"))


def test_command_line_runs_the_notebook_recipe():
    from vgg_book import bench

    args = T.build_parser().parse_args([*T.full_recipe_args(), "--out", "x"])
    assert (args.epochs, args.batch_size, args.lr, args.image_size, args.augment) == tuple(
        T.FULL_RECIPE[k] for k in ("epochs", "batch_size", "lr", "image_size", "augment"))
    assert args.init == "xavier" and args.schedule == "constant"
    spec = {"config": args.model, "width_ratio": args.width_ratio, "hidden": args.hidden,
            "dropout": args.dropout, "batch_norm": args.batch_norm, "in_channels": 1,
            "num_classes": 10, "init": args.init}
    assert spec == T.FULL_RECIPE_MODEL
    torch.manual_seed(0)
    cli_model = T.build_model(spec)
    torch.manual_seed(0)
    assert same_weights(cli_model, bench.d2l_initialised_vgg11())  # the benchmark's network
    chapter = (Path(T.__file__).parents[1] / "chapters" / "05_training.ipynb").read_text()
    assert "FULL_RECIPE" in chapter  # chapter 5's GPU branch uses the same definition
    cells = json.loads(chapter)["cells"]
    listing = [c for c in cells if c["cell_type"] == "markdown"
               and "python -m vgg_book.train --model" in "".join(c["source"])]
    assert len(listing) == 1, "chapter 5 has one shell listing of the full recipe"
    assert any("python -m vgg_book.train --recipe cpu" in "".join(c["source"]) for c in cells
               if c["cell_type"] == "markdown"), "and one of the CPU recipe"
    shell = "".join(listing[0]["source"]).replace("\\\n", " ")
    assert " ".join(T.full_recipe_args()) in " ".join(shell.split())  # and its shell line
    gpu_branch = [c for c in cells if "build_model(training.FULL_RECIPE_MODEL)" in "".join(
        c["source"])]
    assert len(gpu_branch) == 1 and "training.FULL_RECIPE," in "".join(gpu_branch[0]["source"])
    assert T.build_parser().parse_args(["--out", "x", "--augment"]).augment is True
    assert T.build_parser().parse_args(["--out", "x"]).augment is False


def test_xavier_init_differs_from_torchvision_init():
    torch.manual_seed(0)
    plain = T.build_model({**T.FULL_RECIPE_MODEL, "width_ratio": 64, "hidden": 32,
                           "init": "torchvision"})
    torch.manual_seed(0)
    xavier = T.build_model({**T.FULL_RECIPE_MODEL, "width_ratio": 64, "hidden": 32})
    last = [m for m in xavier.modules() if isinstance(m, torch.nn.Linear)][-1]
    bound = (6 / (last.in_features + last.out_features)) ** 0.5
    assert last.weight.abs().max() <= bound and last.weight.std() > 0.05  # not N(0, 0.01)
    assert not same_weights(plain, xavier)


def test_explicit_data_root_must_hold_the_files(tmp_path, capsys):
    from vgg_book.data import DataError, check_data_root

    with pytest.raises(DataError, match="does not exist"):
        check_data_root(tmp_path / "nowhere")
    (tmp_path / "part").mkdir()
    (tmp_path / "part" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(DataError, match=r"lacks .*train-labels-idx1-ubyte\(\.gz\)"):
        check_data_root(tmp_path / "part")
    assert T.main([*CLI, "--out", str(tmp_path / "o"), "--data-root", str(tmp_path / "x")]) == 2
    assert "data root" in capsys.readouterr().err and not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- CUDA paths on CPU
def cpu_batch(n=8, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_bf16_autocast_step_on_cpu():
    model, (x, y) = tiny_model(dropout=0.0), cpu_batch()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss, right = T.train_step(model, opt, T.grad_scaler_for(torch.device("cpu"), None), x, y,
                               torch.bfloat16)
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and 0 <= int(right) <= 8
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_channels_last_step_on_cpu_matches_the_default_layout():
    a, b = tiny_model(dropout=0.0), tiny_model(dropout=0.0)
    b.to(memory_format=torch.channels_last)
    x, y = cpu_batch()
    losses = []
    for model, inp in ((a, x), (b, x.contiguous(memory_format=torch.channels_last))):
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        scaler = T.grad_scaler_for(torch.device("cpu"), None)
        losses.append(float(T.train_step(model, opt, scaler, inp, y, None)[0]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert b.features[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_fp16_grad_scaler_bookkeeping_on_cpu():
    model, (x, y) = tiny_model(dropout=0.0), cpu_batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 120, growth_interval=1)
    before = [p.detach().clone() for p in model.parameters()]
    T.train_step(model, opt, scaler, x, y, torch.float16)  # scaled gradients overflow
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # step skipped
    assert scaler.get_scale() == 2.0 ** 119  # and the scale halved
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8, growth_interval=1)
    loss, _ = T.train_step(model, opt, scaler, x, y, torch.float16)
    assert torch.isfinite(loss) and scaler.get_scale() == 2.0 ** 9  # applied, scale grows
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_torch_compile_training_step_on_cpu():
    eager, compiled = tiny_model(dropout=0.0), tiny_model(dropout=0.0)
    x, y = cpu_batch()
    net = torch.compile(compiled)
    losses = []
    for model, run in ((eager, eager), (compiled, net)):
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        scaler = T.grad_scaler_for(torch.device("cpu"), None)
        losses.append([float(T.train_step(run, opt, scaler, x, y, None)[0]) for _ in range(2)])
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    assert same_weights(eager, compiled) or all(
        torch.allclose(a, b, atol=1e-5) for a, b in zip(eager.parameters(), compiled.parameters()))


def test_full_recipe_network_is_d2ls_at_224():
    """The command line's network (torchvision-style, adaptive pool) computes d2l's network
    (Flatten, no pool) at 224x224, where the last map is already 7x7."""
    torch.manual_seed(0)
    ours = T.build_model({**T.FULL_RECIPE_MODEL, "width_ratio": 16, "hidden": 64}).eval()
    # d2l_vgg11 is vgg("A", ..., input_size=...); a narrow head keeps the test small
    d2l = vgg("A", num_classes=10, in_channels=1, width_ratio=16, hidden=64,
              input_size=T.FULL_RECIPE["image_size"]).eval()
    d2l.load_state_dict(ours.state_dict())  # same parameters, same names
    x = torch.randn(2, 1, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), d2l(x), atol=1e-5)
    assert T.FULL_RECIPE_MODEL["batch_norm"] is False  # d2l's network, no batch norm


def test_chapter_5_cpu_branch_trains_only_the_batch_norm_network():
    """Chapter 6 says so: on a CPU chapter 5 trains the batch-norm network, on a GPU d2l's."""
    chapter = (Path(T.__file__).parents[1] / "chapters" / "05_training.ipynb").read_text()
    branch = next("".join(c["source"]) for c in json.loads(chapter)["cells"]
                  if "build_model(training.FULL_RECIPE_MODEL)" in "".join(c["source"]))
    cpu = branch.split("else:", 1)[1]
    assert "reduced_vgg11(batch_norm=True)" in cpu and "batch_norm=False" not in cpu


def test_xavier_is_smaller_than_kaiming_for_convs_and_larger_than_001_for_linears():
    """Chapter 5's correction: d2l's Xavier init is not larger throughout than torchvision's."""
    from vgg_book.models import d2l_vgg11

    for m in d2l_vgg11(input_size=224).modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(m.weight)
            xavier = (2 / (fan_in + fan_out)) ** 0.5
            if isinstance(m, torch.nn.Conv2d):
                assert xavier < (2 / fan_out) ** 0.5
            else:
                assert xavier > 0.01


def test_cpu_recipe_from_the_command_line():
    """--recipe cpu sets every default to CPU_RECIPE; an option still changes it."""
    args = T.parse_args(["--recipe", "cpu", "--out", "x"])
    for key, value in T.CPU_RECIPE.items():
        assert getattr(args, key) == value, key
    spec = T.CPU_RECIPE_MODEL
    assert (args.width_ratio, args.hidden, args.dropout, args.batch_norm, args.input_size,
            args.init) == (spec["width_ratio"], spec["hidden"], spec["dropout"],
                           spec["batch_norm"], spec["input_size"], spec["init"])
    changed = T.parse_args(["--out", "x", "--epochs", "2", "--recipe", "cpu", "--no-batch-norm"])
    assert changed.epochs == 2 and changed.batch_norm is False and changed.lr == 0.1
    assert T.parse_args(["--out", "x"]).batch_size == 128  # no recipe: d2l's defaults
    net = T.recipe_model("cpu")
    assert net.input_size == 32 and net.classifier[0].in_features == 64


def test_cpu_recipe_cli_run_records_its_settings(tmp_path, capsys):
    out = tmp_path / "cpu"
    assert T.main(["--recipe", "cpu", "--epochs", "1", "--limit-train", "512",
                   "--limit-test", "128", "--out", str(out), "--no-progress",
                   "--no-plot"]) == 0
    cfg = json.loads((out / "metrics.json").read_text())["config"]
    assert (cfg["amp_dtype"], cfg["channels_last"], cfg["threads"]) == ("bfloat16", True, 2)
    assert (cfg["momentum"], cfg["schedule"], cfg["model_spec"]["input_size"]) == (
        0.9, "cosine", 32)
    assert "done: test accuracy" in capsys.readouterr().out


def test_bad_precision_threads_and_fit_settings_are_refused():
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, fp16"):
        T.validate(T.TrainConfig(epochs=1, precision="int8"))
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        T.validate(T.TrainConfig(epochs=1, threads=0))
    with pytest.raises(TypeError, match="unknown setting\\(s\\) learning_rate; expected"):
        T.fit(tiny_model(), epochs=1, learning_rate=0.1)
