"""The CUDA paths, on a real GPU: ``pytest -m cuda`` (``make gpu-check`` runs them).

Skipped where there is no GPU (``make test``); what torch can run on a CPU is checked there
instead (``tests/test_train.py``: bf16 autocast, channels_last, GradScaler, torch.compile).
"""

from __future__ import annotations

import socket

import pytest
import torch

from vgg_book import train as T
from vgg_book.models import vgg

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (run make gpu-check on one)")]

CUDA = torch.device("cuda")


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return vgg("A", num_classes=10, in_channels=1, width_ratio=16, hidden=64, dropout=0.0)


def batch(n=32, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=g)
    return x.to(CUDA), torch.randint(0, 10, (n,), generator=g).to(CUDA)


def step(model, x, y, amp_dtype, scaler=None, lr=0.01):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    scaler = scaler or T.grad_scaler_for(CUDA, amp_dtype)
    return T.train_step(model, opt, scaler, x, y, amp_dtype)


def test_precision_follows_the_gpu():
    native = torch.cuda.get_device_capability() >= (8, 0)
    assert T.amp_dtype_for(CUDA) == (torch.bfloat16 if native else torch.float16)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_steps_learn(dtype):
    model, (x, y) = tiny_model().to(CUDA), batch()
    scaler = T.grad_scaler_for(CUDA, dtype)
    assert scaler.is_enabled() == (dtype == torch.float16)  # loss scaling for fp16 only
    losses = [float(step(model, x, y, dtype, scaler, lr=0.05)[0]) for _ in range(20)]
    assert all(map(torch.isfinite, map(torch.tensor, losses))) and losses[-1] < losses[0]
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_channels_last_matches_the_default_layout():
    previous = T.set_recipe_backends(False)
    torch.set_float32_matmul_precision("highest")
    try:
        a, b = tiny_model().to(CUDA), tiny_model().to(CUDA).to(memory_format=torch.channels_last)
        x, y = batch()
        la = float(step(a, x, y, None)[0])
        lb = float(step(b, x.contiguous(memory_format=torch.channels_last), y, None)[0])
    finally:
        torch.backends.cudnn.benchmark = previous[0]
        torch.set_float32_matmul_precision(previous[1])
    assert la == pytest.approx(lb, rel=1e-4)


def test_compiled_step_matches_eager():
    eager, compiled = tiny_model().to(CUDA), tiny_model().to(CUDA)
    x, y = batch()
    net = torch.compile(compiled)
    le = [float(step(eager, x, y, T.amp_dtype_for(CUDA))[0]) for _ in range(3)]
    lc = [float(step(net, x, y, T.amp_dtype_for(CUDA))[0]) for _ in range(3)]
    assert lc == pytest.approx(le, rel=2e-2)


def test_fit_on_cuda_runs_the_recipe():
    metrics = T.fit(tiny_model(), epochs=1, batch_size=64, image_size=32, device="cuda",
                    limit_train=1024, limit_test=256, progress=False)
    config = metrics["config"]
    assert config["device_type"] == "cuda" and config["channels_last"] is True
    assert config["amp_dtype"] == str(T.amp_dtype_for(CUDA)).replace("torch.", "")
    assert torch.backends.cudnn.benchmark and torch.get_float32_matmul_precision() == "high"


def test_real_out_of_memory_is_a_training_error():
    free, _ = torch.cuda.mem_get_info()
    # Full-width VGG-11 at 512x512: the first block alone needs far more than the free memory.
    side, per_image = 512, 64 * 512 * 512 * 2 * 4  # 64 channels, bf16/fp16, a few copies
    n = 1 << max(10, int(free * 2 // per_image).bit_length())
    torch.manual_seed(0)
    model = vgg("A", num_classes=10, in_channels=1)
    with pytest.raises(T.TrainingError, match=f"out of memory at batch size {n}"):
        T.fit(model, epochs=1, batch_size=n, image_size=side, device="cuda", limit_train=n,
              limit_test=64, progress=False)
    del model
    torch.cuda.empty_cache()


def test_one_process_nccl_ddp_matches_plain():
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0,
                            world_size=1)
    try:
        plain, wrapped = tiny_model().to(CUDA), tiny_model().to(CUDA)
        ddp = DistributedDataParallel(wrapped, device_ids=[CUDA.index or 0])
        x, y = batch()
        step(plain, x, y, None)
        step(ddp, x, y, None)
        for a, b in zip(plain.parameters(), wrapped.parameters()):
            assert torch.allclose(a, b, atol=1e-5)
    finally:
        dist.destroy_process_group()
