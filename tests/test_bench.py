"""vgg_book.bench: peak table, FLOP counts against hand counts, and a tiny run's JSON (not speed)."""

import json

import pytest
import torch
from torch import nn

from vgg_book import bench
from vgg_book.models import d2l_vgg11, vgg


@pytest.mark.parametrize("name, key, tflops", [
    ("NVIDIA H100 80GB HBM3", "H100", 989.0),
    ("NVIDIA H100 PCIe", "H100 PCIe", 756.0),
    ("NVIDIA H200", "H200", 989.0),
    ("NVIDIA A100-SXM4-80GB", "A100", 312.0),
    ("NVIDIA L40S", "L40S", 362.0),
    ("NVIDIA L4", "L4", 121.0),
    ("Tesla T4", "T4", 65.0),
    ("Some Future GPU", None, None),
])
def test_peak_table_matches_the_most_specific_name(name, key, tflops):
    assert bench.table_peak_tflops(name) == (key, tflops)


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
    (d2l_vgg11(width_ratio=8), 1, 64),
    (vgg("B", num_classes=10, width_ratio=16, hidden=64), 3, 32),
])
def test_train_flops_are_three_forward_passes_of_hand_counted_flops(model, channels, size):
    assert bench.train_flops_per_image(model, channels, size) == \
        3 * hand_counted_forward_flops(model, channels, size)


def test_tiny_benchmark_writes_every_figure(tmp_path):
    tiny = bench.BenchSettings(batch_size=8, image_size=32, width_ratio=8, warmup=1, steps=1,
                               vgg16_batch=1, vgg16_image=32, vgg16_steps=1, matmul_n=128,
                               d2l=True, tta_epochs=0, check_epochs=1, check_limit_train=64,
                               check_image_size=32, check_limit_test=64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results, path = bench.run_benchmark("cpu", quick=True, settings=tiny, out_dir=tmp_path,
                                            log=lambda *a: None)
    finally:
        torch.set_num_threads(threads)
    assert path.parent == tmp_path and path.name.startswith("bench-cpu-")
    assert path.name.endswith("-quick.json") and not list(tmp_path.glob("*.tmp"))
    saved = json.loads(path.read_text())
    assert saved == json.loads(json.dumps(results))
    for key in ("device", "device_name", "torch", "speedup_vs_d2l", "seconds_per_epoch",
                "test_acc", "mfu", "mfu_vs_measured_matmul", "ablation", "vgg16",
                "time_to_accuracy", "settings", "train_flops_per_image", "peak_tflops"):
        assert key in saved, key
    assert saved["device"] == "cpu" and saved["settings"]["image_size"] == 32
    assert saved["mfu"] is None and saved["peak_tflops"]["table"] is None  # no CPU in the table
    assert 0 < saved["mfu_vs_measured_matmul"]
    assert saved["speedup_vs_d2l"] == pytest.approx(
        saved["ours"]["images_per_s"] / saved["d2l_baseline"]["images_per_s"])
    assert saved["seconds_per_epoch"] == pytest.approx(60_000 / saved["ours"]["images_per_s"])
    assert saved["time_to_accuracy"]["skipped"] == "--quick"
    assert 0 <= saved["test_acc"] <= 1 and saved["training_run"]["train_images"] == 64
    names = [row["name"] for row in saved["ablation"]]
    assert names[0].startswith("d2l") and any("bf16" in n for n in names)
    skipped = {row["name"]: row["skipped"] for row in saved["ablation"]}
    assert "CUDA only" in skipped["+ bf16 autocast"]  # CPU runs do not pretend to measure it
    assert saved["vgg16"]["speedup"] == pytest.approx(
        saved["vgg16"]["ours"]["images_per_s"]
        / saved["vgg16"]["torchvision_fp32_eager"]["images_per_s"])
