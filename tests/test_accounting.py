"""vgg_book.accounting: counts against FlopCounterMode, torchinfo, torchvision and real measurements."""

import random

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vgg_book.accounting import (LayerRow, measure_cuda_peak, measure_saved_tensors,
                                 saved_tensor_bytes, summary, training_memory)
from vgg_book.models import CONFIGS, vgg


def meta_vgg(config, **kwargs):
    """A VGG whose weights live on the meta device: built in milliseconds, no memory."""
    with torch.device("meta"):
        return vgg(config, **kwargs)


def flop_counter_total(model, shape):
    """FlopCounterMode's FLOPs (2 x MACs, bias ignored) for one forward pass."""
    device = next(model.parameters()).device
    x = torch.zeros(shape, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_every_config_matches_flop_counter(config, batch_norm):
    model = meta_vgg(config, batch_norm=batch_norm, num_classes=10)
    shape = (2, 3, 32, 32)
    without_bias = summary(model, shape, count_bias=False)
    assert without_bias.total_flops == flop_counter_total(model, shape)
    assert 2 * without_bias.total_macs == without_bias.total_flops
    # the bias adds one MAC per output value of every conv and linear layer
    with_bias = summary(model, shape)
    outputs = sum(r.activations for r in with_bias.rows if r.type in ("Conv2d", "Linear"))
    assert with_bias.total_macs - without_bias.total_macs == outputs
    assert with_bias.total_params == sum(p.numel() for p in model.parameters())
    assert sum(r.params for r in with_bias.rows) == with_bias.total_params


def test_real_cpu_forward_gives_the_same_counts_as_meta():
    torch.manual_seed(0)
    model = vgg("A-LRN", width_ratio=8, hidden=64, num_classes=10)
    shape = (1, 3, 32, 32)
    assert summary(model, shape, count_bias=False).total_flops == flop_counter_total(model, shape)


def random_config(rng):
    """A random VGG-style list: 1-5 pools, random conv widths, LRN and 1x1 convs."""
    layers = []
    for _ in range(rng.randint(1, 5)):
        for _ in range(rng.randint(1, 3)):
            kind = rng.random()
            width = rng.choice([4, 8, 12, 16, 24, 40])
            layers.append(("1x1", width) if kind < 0.15 and layers else width)
            if kind > 0.9:
                layers.append("LRN")
        layers.append("M")
    return layers


@pytest.mark.parametrize("seed", range(12))
def test_random_configs_match_flop_counter(seed):
    rng = random.Random(seed)
    config = random_config(rng)
    pools = config.count("M")
    shape = (rng.randint(1, 3), rng.choice([1, 3]), rng.randint(2 ** pools, 2 ** pools + 20),
             rng.randint(2 ** pools, 2 ** pools + 20))
    model = meta_vgg(config, in_channels=shape[1], batch_norm=rng.random() < 0.5,
                     num_classes=rng.randint(2, 20), hidden=rng.choice([16, 64, 100]))
    result = summary(model, shape, count_bias=False)
    assert result.total_flops == flop_counter_total(model, shape), config
    assert result.total_params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("seed", range(8))
def test_random_generic_convolutions_match_flop_counter(seed):
    """Any kernel, stride, padding, dilation and groups; convs with and without bias."""
    rng = random.Random(100 + seed)
    layers, channels = [], rng.choice([2, 4, 6])
    in_channels, size = channels, rng.randint(24, 40)
    first_size = size
    for _ in range(rng.randint(1, 4)):
        groups = rng.choice([g for g in (1, 2) if channels % g == 0])
        out = groups * rng.randint(1, 6)
        kernel, stride = (rng.randint(1, 4), rng.randint(1, 4)), rng.randint(1, 2)
        padding, dilation = rng.randint(0, 2), rng.randint(1, 2)
        # keep the smaller side at least 2 after this convolution
        new_size = (size + 2 * padding - dilation * (max(kernel) - 1) - 1) // stride + 1
        if new_size < 2:
            break
        layers += [nn.Conv2d(channels, out, kernel, stride=stride, padding=padding,
                             dilation=dilation, groups=groups, bias=rng.random() < 0.7),
                   nn.BatchNorm2d(out), nn.ReLU()]
        channels, size = out, new_size
        if rng.random() < 0.5 and size >= 4:
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
            size = (size + 1) // 2
    layers += [nn.AdaptiveAvgPool2d((2, 3)), nn.Flatten(), nn.Dropout(0.3),
               nn.Linear(channels * 6, 7, bias=rng.random() < 0.5)]
    with torch.device("meta"):
        model = nn.Sequential(*layers)
    shape = (rng.randint(1, 3), in_channels, first_size, first_size)
    without_bias = summary(model, shape, count_bias=False)
    assert without_bias.total_flops == flop_counter_total(model, shape)
    with_bias = summary(model, shape)
    outputs = sum(r.activations for r, m in zip(with_bias.rows, [m for m in model])
                  if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None)
    assert with_bias.total_macs - without_bias.total_macs == outputs


def test_vgg16_params_equal_torchvision_and_seed_formula():
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        reference = torchvision.models.vgg16(weights=None)
    result = summary(meta_vgg("D"), (3, 224, 224))
    assert result.total_params == sum(p.numel() for p in reference.parameters())
    first = result.rows[0]
    assert first.output_shape == (1, 64, 224, 224)
    # the seed's formula C_out*H_out*W_out*(C_in*K*K + 1) for the first convolution
    assert first.macs == 64 * 224 * 224 * (3 * 3 * 3 + 1)
    assert first.flops == 2 * first.macs
    assert first.bytes_fp32 == 4 * 64 * 224 * 224 and first.bytes_bf16 == 2 * 64 * 224 * 224


def test_batch_scales_macs_and_activations_not_params():
    model = meta_vgg("A", width_ratio=4, num_classes=10)
    one, four = summary(model, (3, 64, 64)), summary(model, (4, 3, 64, 64))
    assert four.total_macs == 4 * one.total_macs
    assert four.total_activations == 4 * one.total_activations
    assert four.total_params == one.total_params
    assert one.input_shape == (1, 3, 64, 64) and one.input_values == 3 * 64 * 64


def test_summary_leaves_the_model_alone():
    torch.manual_seed(0)
    model = vgg("A", width_ratio=8, hidden=32, num_classes=10, batch_norm=True).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary(model, (3, 32, 32))
    training_memory(model, (3, 32, 32), 2)
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("shape, message", [
    ((224, 224), r"\(C, H, W\) or \(N, C, H, W\)"),
    ((1, 1, 3, 224, 224), r"\(C, H, W\) or \(N, C, H, W\)"),
    ("3x224x224", r"\(C, H, W\) or \(N, C, H, W\)"),
    ((3, 0, 224), "positive integer"),
    ((3, -224, 224), "positive integer"),
    ((3, 224.0, 224), "positive integer"),
    ((1, 224, 224), "3 input channel"),
    ((3, 16, 16), "too small"),
])
def test_bad_input_shape_gives_a_clear_error(shape, message):
    with pytest.raises(ValueError, match=message):
        summary(meta_vgg("D"), shape)


def test_a_model_without_check_input_still_gives_a_value_error():
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.MaxPool2d(2), nn.Conv2d(8, 8, 5))
    with pytest.raises(ValueError, match="cannot take an input of shape"):
        summary(model, (1, 32, 32))  # wrong channels
    with pytest.raises(ValueError, match="cannot take an input of shape"):
        summary(model, (3, 8, 8))  # too small for the second conv


def test_unknown_layers_with_parameters_are_refused():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return x * self.gain

    model = nn.Sequential(nn.Conv2d(3, 4, 3), Scale())
    with pytest.raises(ValueError, match="Scale.*own parameters"):
        summary(model, (3, 8, 8))
    with pytest.raises(ValueError, match="nn.Module"):
        summary("vgg16", (3, 224, 224))
    with pytest.raises(ValueError, match="count_bias must be True or False"):
        summary(nn.Sequential(nn.Conv2d(3, 4, 3)), (3, 8, 8), count_bias="no")


def test_rendering_as_text_html_and_pandas():
    result = summary(meta_vgg("A", width_ratio=8, num_classes=10), (3, 32, 32))
    text = str(result)
    assert "FLOPs = 2 x MACs" in text and f"{result.total_macs:,}" in text
    assert f"{result.total_params:,}" in result._repr_html_()
    pd = pytest.importorskip("pandas")
    table = result.to_pandas()
    assert isinstance(table, pd.DataFrame) and len(table) == len(result.rows)
    assert table["MACs"].sum() == result.total_macs
    assert (table["FLOPs"] == 2 * table["MACs"]).all()
    assert table["params"].sum() == result.total_params
    assert isinstance(result.rows[0], LayerRow)


MEMORY_MODELS = {
    "plain": dict(config=[8, "M", 16, "M", 16, 16, "M"], batch_norm=False),
    "batch norm": dict(config=[8, "M", 16, "M", 16, 16, "M"], batch_norm=True),
    "LRN and 1x1": dict(config=[8, "LRN", "M", 16, ("1x1", 16), "M", 16, "M"], batch_norm=False),
}


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("name", list(MEMORY_MODELS))
def test_memory_estimate_equals_saved_tensor_measurement(name, batch_size):
    """The rules for what autograd keeps, against a real CPU measurement: within 1%
    (on torch 2.14 they agree to the byte)."""
    torch.manual_seed(0)
    spec = MEMORY_MODELS[name]
    model = vgg(spec["config"], batch_norm=spec["batch_norm"], hidden=32, num_classes=10)
    estimate = training_memory(model, (3, 32, 32), batch_size, device="cpu")
    measured = measure_saved_tensors(model, torch.randn(batch_size, 3, 32, 32))
    assert measured > 0
    assert abs(estimate.activations - measured) <= 0.01 * measured, (estimate.kept, measured)


@pytest.mark.parametrize("optimizer", ["sgd", "sgd-momentum", "adam"])
def test_optimizer_state_and_gradients_equal_a_real_step(optimizer):
    torch.manual_seed(0)
    model = vgg([4, "M", 8, "M"], in_channels=1, hidden=16, num_classes=3, batch_norm=True)
    estimate = training_memory(model, (1, 8, 8), 2, optimizer=optimizer)
    params = list(model.parameters())
    opt = (torch.optim.Adam(params) if optimizer == "adam"
           else torch.optim.SGD(params, lr=0.1, momentum=0.9 if optimizer == "sgd-momentum" else 0))
    nn.functional.cross_entropy(model(torch.randn(2, 1, 8, 8)), torch.tensor([0, 2])).backward()
    opt.step()
    state = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
                if isinstance(t, torch.Tensor))
    assert estimate.optimizer_state == state
    assert estimate.gradients == sum(p.grad.numel() * p.grad.element_size() for p in params)
    assert estimate.weights == sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert estimate.total == (estimate.weights + estimate.gradients + estimate.optimizer_state
                              + estimate.activations)


def test_memory_estimate_scales_with_batch_and_rejects_bad_input():
    model = meta_vgg("A", width_ratio=8, num_classes=10)
    one, eight = (training_memory(model, (3, 32, 32), b) for b in (1, 8))
    assert eight.activations == 8 * one.activations and eight.weights == one.weights
    with pytest.raises(ValueError, match="optimizer"):
        training_memory(model, (3, 32, 32), 1, optimizer="lbfgs")
    with pytest.raises(ValueError, match="batch_size"):
        training_memory(model, (3, 32, 32), 0)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        training_memory(model, (2, 3, 32, 32), 2)
    with pytest.raises(ValueError, match="too small"):
        training_memory(model, (3, 8, 8), 1)

    class Swish(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    with pytest.raises(ValueError, match="Swish"):
        training_memory(nn.Sequential(nn.Conv2d(3, 4, 3), Swish()), (3, 8, 8), 1)


def test_cuda_dropout_mask_is_one_byte_a_value():
    model = meta_vgg("A", width_ratio=8, num_classes=10, hidden=128)
    cpu = training_memory(model, (3, 32, 32), 2, device="cpu")
    cuda = training_memory(model, (3, 32, 32), 2, device="cuda")
    # two dropout layers of 128 values per image, 4 bytes on CPU and 1 on CUDA
    assert cpu.activations - cuda.activations == 2 * 2 * 128 * (4 - 1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_cuda_peak_without_a_gpu_says_so():
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        measure_cuda_peak(nn.Sequential(nn.Conv2d(3, 4, 3)), (3, 8, 8), 1)


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_torchinfo_totals_equal_summary(config, batch_norm):
    """torchinfo's mult-adds count every weight and bias once per output position: the same
    as summary's MACs with bias adds, except that it also counts batch norm's scale and shift
    (2 x C per image and layer), which summary leaves at 0 like FlopCounterMode."""
    torchinfo = pytest.importorskip("torchinfo")
    model = meta_vgg(config, batch_norm=batch_norm)
    batch = 2
    ours = summary(model, (batch, 3, 224, 224))
    theirs = torchinfo.summary(model, input_size=(batch, 3, 224, 224), verbose=0, device="meta")
    assert theirs.total_params == ours.total_params
    bn_affine = sum(m.weight.numel() + m.bias.numel() for m in model.modules()
                    if isinstance(m, nn.BatchNorm2d))
    assert (bn_affine > 0) == batch_norm
    assert theirs.total_mult_adds == ours.total_macs + batch * bn_affine
    # its "Forward/backward pass size": 2 x the float32 outputs of the layers with parameters
    with_params = sum(r.bytes_fp32 for r in ours.rows
                      if r.type in ("Conv2d", "Linear", "BatchNorm2d"))
    assert theirs.total_output_bytes == 2 * with_params
    assert theirs.total_param_bytes == sum(p.numel() * p.element_size() for p in model.parameters())


def test_torchvision_ops_are_multiply_adds_without_bias():
    """torchvision's published "GFLOPS" (meta["_ops"]) of its eight VGG weights are our MACs
    without bias adds, to its three decimals; batch norm does not change them."""
    models = pytest.importorskip("torchvision.models")
    for config, name in (("A", "VGG11"), ("B", "VGG13"), ("D", "VGG16"), ("E", "VGG19")):
        for suffix, bn in (("", False), ("_BN", True)):
            published = getattr(models, f"{name}{suffix}_Weights").IMAGENET1K_V1.meta["_ops"]
            result = summary(meta_vgg(config, batch_norm=bn), (3, 224, 224), count_bias=False)
            assert round(result.total_macs / 1e9, 3) == published, (name + suffix, published)
            assert round(2 * result.total_macs / 1e9, 3) != published


def test_saved_tensor_bytes_by_kind_fp32_and_bf16_autocast():
    """bf16 autocast halves the float tensors autograd keeps, not the int64 pool indices, and
    adds bf16 copies of the conv and linear weights (not the biases), whatever the batch."""
    torch.manual_seed(0)
    model = vgg([8, "M", 16, "M", 16, "M"], hidden=32, num_classes=10)
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    copies = {}
    for batch in (1, 3):
        x = torch.randn(batch, 3, 32, 32)
        fp32 = saved_tensor_bytes(model, x)
        bf16 = saved_tensor_bytes(model, x, autocast_dtype=torch.bfloat16)
        assert sum(fp32.values()) == measure_saved_tensors(model, x)
        assert set(fp32) == {("activations", "float32"), ("activations", "int64")}
        assert bf16[("activations", "bfloat16")] * 2 == fp32[("activations", "float32")]
        assert bf16[("activations", "int64")] == fp32[("activations", "int64")]
        assert bf16[("weight copies", "bfloat16")] == 2 * weights
        assert set(bf16) == {("activations", "bfloat16"), ("activations", "int64"),
                             ("weight copies", "bfloat16")}
        copies[batch] = bf16[("weight copies", "bfloat16")]
    assert copies[1] == copies[3]
    assert model.training
    with pytest.raises(ValueError, match="torch.dtype"):
        saved_tensor_bytes(model, torch.randn(1, 3, 32, 32), autocast_dtype="bf16")
    with pytest.raises(ValueError, match="tensor input"):
        saved_tensor_bytes(model, [1, 2, 3])
