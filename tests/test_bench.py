"""vgg_book.bench: peak table, FLOP counts against hand counts, and a tiny run's JSON (not speed)."""

import json

import pytest
import torch
from torch import nn

from vgg_book import bench
from vgg_book.models import d2l_vgg11, vgg


@pytest.mark.parametrize("name, key, half, tf32", [
    ("NVIDIA H100 80GB HBM3", "H100", 989.0, 494.7),
    ("NVIDIA H100 PCIe", "H100 PCIe", 756.0, 378.0),
    ("NVIDIA H200", "H200", 989.0, 494.7),
    ("NVIDIA A100-SXM4-80GB", "A100", 312.0, 156.0),
    ("NVIDIA L40S", "L40S", 362.0, 183.0),
    ("NVIDIA L4", "L4", 121.0, 60.0),
    ("Tesla T4", "T4", 65.0, 8.1),  # no TF32 on Turing: fp32's peak
])
def test_peak_table_matches_the_most_specific_name(name, key, half, tf32):
    got_key, peaks = bench.table_peak_tflops(name)
    assert got_key == key and peaks["half"] == half and peaks["tf32"] == tf32
    assert peaks["fp32"] <= peaks["tf32"] < peaks["half"]
    assert bench.table_peak_tflops("Some Future GPU") == (None, None)


def test_each_ablation_row_changes_one_thing():
    rows = [{"compile": False, **kw} for _, _, kw in bench.ABLATION]
    changed = [[k for k in a if a[k] != b[k]] for a, b in zip(rows, rows[1:])]
    assert changed == [["sync_every"], ["backends"], ["amp"], ["channels_last"], ["compile"]]
    assert rows[0] == {"compile": False, "sync_every": 1, "backends": False, "amp": False,
                       "channels_last": False}  # like d2l's loop except for the data path


def test_reached_names_the_epoch_or_says_not_reached():
    history = [{"epoch": 1, "test_acc": 0.89, "elapsed": 5.0},
               {"epoch": 2, "test_acc": 0.905, "elapsed": 9.5}]
    assert bench._reached(history, 2) == {
        "0.90": {"epoch": 2, "seconds": 9.5},
        "0.92": {"epoch": None, "seconds": None, "note": "not reached in 2 epochs"}}


def hand_counted_forward_flops(model, in_channels, size):
    """2 x MACs of every conv and linear layer, from their output shapes (hooks)."""
    total = []

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            total.append(2 * k * m.in_channels * out.numel())
        else:
            total.append(2 * m.in_features * out.numel())

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, in_channels, size, size))
    for h in handles:
        h.remove()
    return sum(total)


@pytest.mark.parametrize("model, channels, size", [
    (d2l_vgg11(width_ratio=8, input_size=64), 1, 64),
    (vgg("B", num_classes=10, width_ratio=16, hidden=64), 3, 32),
])
def test_train_flops_are_three_forward_passes_of_hand_counted_flops(model, channels, size):
    assert bench.train_flops_per_image(model, channels, size) == \
        3 * hand_counted_forward_flops(model, channels, size)


TINY = bench.BenchSettings(batch_size=8, image_size=32, width_ratio=8, warmup=1, steps=1,
                           vgg16_batch=1, vgg16_image=32, vgg16_warmup=1, vgg16_steps=1,
                           matmul_n=128, d2l=True, tta_epochs=0, d2l_tta_epochs=0,
                           check_epochs=1, check_limit_train=64, check_image_size=32,
                           check_limit_test=64)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tiny_benchmark_writes_every_figure(tmp_path, one_thread):
    results, path = bench.run_benchmark("cpu", quick=True, settings=TINY, out_dir=tmp_path,
                                        log=lambda *a: None)
    assert path.parent == tmp_path and path.name.startswith("bench-cpu-")
    assert path.name.endswith("-quick.json") and not list(tmp_path.glob("*.tmp"))
    saved = json.loads(path.read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["smoke_test"] is True  # a --quick run is never a result
    for key in ("device", "device_name", "torch", "speedup_vs_d2l", "ablation", "vgg16",
                "time_to_accuracy", "settings", "train_flops_per_image", "peak_tflops"):
        assert key in saved, key
    assert saved["device"] == "cpu" and saved["settings"]["image_size"] == 32
    assert saved["peak_tflops"]["table"] is None  # no CPU in the table
    rows = {row["key"]: row for row in saved["ablation"]}
    assert list(rows) == ["d2l", "data", "sync", "backends", "autocast", "channels_last",
                          "compile"]
    for key in ("d2l", "data", "sync"):  # measured on a CPU, against the fp32 matmul
        assert rows[key]["precision"] == "fp32" and rows[key]["mfu"] is None
        assert rows[key]["images_per_s"] > 0 and rows[key]["mfu_vs_measured_matmul"] > 0
    for key in ("backends", "autocast", "channels_last"):  # CPU runs do not pretend
        assert "CUDA only" in rows[key]["skipped"] and rows[key]["images_per_s"] is None
    assert rows["compile"]["skipped"].startswith("not asked for")
    assert saved["ours"] == rows["sync"]  # train's recipe on a CPU
    assert saved["speedup_vs_d2l"] == pytest.approx(
        rows["sync"]["images_per_s"] / rows["d2l"]["images_per_s"])
    v16 = saved["vgg16"]
    for mode in ("fp32_eager", "recipe"):  # like for like: both sides in the same settings
        assert v16[mode]["ours_vs_torchvision"] == pytest.approx(
            v16[mode]["ours"]["images_per_s"] / v16[mode]["torchvision"]["images_per_s"])
    assert v16["recipe"]["settings"]["amp"] is False  # on a CPU the recipe is fp32
    assert saved["time_to_accuracy"]["ours"]["skipped"] == "--quick"
    assert 0 <= saved["smoke_check"]["test_acc"] <= 1
    assert saved["smoke_check"]["train_images"] == 64


def test_d2l_loop_time_to_accuracy_records_each_epoch(one_thread):
    s = bench.BenchSettings(batch_size=500, image_size=32, width_ratio=16, tta_max_batches=2)
    got = bench.d2l_time_to_accuracy(torch.device("cpu"), s, epochs=2)
    assert [e["epoch"] for e in got["epochs"]] == [1, 2]
    assert got["epochs"][0]["elapsed"] < got["epochs"][1]["elapsed"]
    assert all(0 <= e["test_acc"] <= 1 for e in got["epochs"])
    assert set(got["reached"]) == {"0.90", "0.92"}


def test_a_missing_data_root_is_an_error_not_a_fallback(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        bench.run_benchmark("cpu", quick=True, settings=TINY, out_dir=tmp_path,
                            data_root=str(tmp_path / "nope"), log=lambda *a: None)
    assert not list(tmp_path.glob("*.json"))
