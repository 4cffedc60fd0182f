"""Inception module and GAP head: shapes and counts against hand counts, torchvision and
FlopCounterMode; the 5x5 branch really sees 5x5 pixels; clear errors for bad input."""

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vgg_book.inception import (GOOGLENET_INCEPTIONS, GOOGLENET_SPATIAL, GAPVGG, Inception,
                                gap_head, vgg_gap)
from vgg_book.models import vgg


def conv_params(k, c_in, c_out, bias=True):
    """Hand count of a k x k convolution: k*k*c_in weights per output channel, plus a bias."""
    return k * k * c_in * c_out + (c_out if bias else 0)


def hand_branches(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
    """Per branch: list of (kernel, c_in, c_out) of its convolutions, from the paper's Fig. 2b."""
    return {
        "branch1": [(1, in_channels, ch1x1)],
        "branch2": [(1, in_channels, ch3x3red), (3, ch3x3red, ch3x3)],
        "branch3": [(1, in_channels, ch5x5red), (5, ch5x5red, ch5x5)],
        "branch4": [(1, in_channels, pool_proj)],
    }


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", list(GOOGLENET_INCEPTIONS))
def test_branch_parameters_match_hand_count(name):
    args = GOOGLENET_INCEPTIONS[name]
    block = Inception(*args)
    for branch, convs in hand_branches(*args).items():
        expected = sum(conv_params(*c) for c in convs)
        got = n_params(getattr(block, branch))
        assert got == expected, f"{name} {branch}: {got} parameters, hand count {expected}"


def test_googlenet_3a_weights_match_paper_table():
    # Table 1 of the paper gives 159K parameters and 128M ops for inception (3a): the
    # weight count (no biases) is 163,328 = 159.5 x 1024; MACs at 28x28 are 128,049,152.
    args = GOOGLENET_INCEPTIONS["3a"]
    block = Inception.googlenet("3a")
    weights = sum(p.numel() for n, p in block.named_parameters() if n.endswith("weight"))
    assert weights == sum(conv_params(*c, bias=False)
                          for convs in hand_branches(*args).values() for c in convs)
    assert round(weights / 1024) in (159, 160)
    assert round(weights * 28 * 28 / 1e6) == 128


def test_output_shape_is_concatenation():
    block = Inception.googlenet("3a")
    x = torch.randn(2, 192, 28, 28)
    y = block(x)
    assert y.shape == (2, 64 + 128 + 32 + 32, 28, 28)
    assert block.out_channels == 256
    # The channel slices are the branches' outputs, in order.
    parts = [b(x) for b in block.branches().values()]
    assert torch.equal(y, torch.cat(parts, dim=1))
    assert [p.shape[1] for p in parts] == [64, 128, 32, 32]
    assert (y >= 0).all(), "every branch ends in a ReLU"


@pytest.mark.parametrize("size", [7, 14, 28, 5])
def test_spatial_size_is_kept(size):
    block = Inception(8, 4, 4, 6, 2, 3, 5)
    assert block(torch.randn(1, 8, size, size)).shape == (1, 18, size, size)


def test_flop_counter_agrees_with_hand_macs():
    name = "4b"
    args, hw = GOOGLENET_INCEPTIONS[name], GOOGLENET_SPATIAL[name]
    block = Inception(*args)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        block(torch.randn(1, args[0], hw, hw))
    # FlopCounterMode counts a convolution as 2 FLOPs per multiply-accumulate, without bias.
    hand_macs = sum(conv_params(*c, bias=False) * hw * hw
                    for convs in hand_branches(*args).values() for c in convs)
    assert counter.get_total_flops() == 2 * hand_macs


def test_third_branch_is_really_5x5():
    block = Inception.googlenet("3a")
    kernels = [m.kernel_size for m in block.branch3 if isinstance(m, nn.Conv2d)]
    assert kernels == [(1, 1), (5, 5)]
    # Which input pixels reach the centre output pixel? Exactly a k x k window per branch.
    torch.manual_seed(0)
    small = Inception(4, 3, 3, 3, 3, 3, 3)
    with torch.no_grad():  # positive biases keep every ReLU open, so gradients flow
        for m in small.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.abs_()
                m.bias.fill_(1.0)
    for branch, k in (("branch1", 1), ("branch2", 3), ("branch3", 5), ("branch4", 3)):
        x = torch.rand(1, 4, 11, 11, requires_grad=True)
        getattr(small, branch)(x)[0, :, 5, 5].sum().backward()
        touched = (x.grad[0].abs().sum(0) > 0).nonzero()
        rows, cols = touched[:, 0], touched[:, 1]
        extent = (int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1))
        if branch == "branch4":  # a max-pool passes gradient only to each window's maximum
            assert max(extent) <= k and (rows - 5).abs().max() <= k // 2
        else:
            assert extent == (k, k), f"{branch}: sees a {extent} window, expected {k}x{k}"


def test_against_torchvision_which_uses_3x3_in_the_fifth_branch():
    from torchvision.models.googlenet import Inception as TVInception

    ours, theirs = Inception.googlenet("3a"), TVInception(*GOOGLENET_INCEPTIONS["3a"])

    def conv_weights(branch):
        return [m.weight.numel() for m in branch.modules() if isinstance(m, nn.Conv2d)]

    for name in ("branch1", "branch2", "branch4"):
        assert conv_weights(getattr(ours, name)) == conv_weights(getattr(theirs, name))
    ours3, theirs3 = conv_weights(ours.branch3), conv_weights(theirs.branch3)
    assert ours3[0] == theirs3[0]
    assert ours3[1] * 9 == theirs3[1] * 25  # 5x5 against 3x3, same channels
    x = torch.randn(1, 192, 28, 28)
    theirs.eval()
    assert ours(x).shape == theirs(x).shape


@pytest.mark.parametrize("bad, message", [
    ((192, 0, 96, 128, 16, 32, 32), "ch1x1 must be a positive integer"),
    ((192, 64, 96, 128, 16, -32, 32), "ch5x5 must be a positive integer"),
    ((192.0, 64, 96, 128, 16, 32, 32), "in_channels must be a positive integer"),
    ((192, 64, 96, 128, True, 32, 32), "ch5x5red must be a positive integer"),
])
def test_bad_arguments(bad, message):
    with pytest.raises(ValueError, match=message):
        Inception(*bad)


def test_bad_input_and_name():
    block = Inception(8, 4, 4, 6, 2, 3, 5)
    with pytest.raises(ValueError, match=r"expects a 4-D tensor \[batch, 8, H, W\], got \(1, 3, 9, 9\)"):
        block(torch.randn(1, 3, 9, 9))
    with pytest.raises(ValueError, match="4-D tensor"):
        block(torch.randn(8, 9, 9))
    with pytest.raises(ValueError, match="unknown GoogLeNet Inception module '6a'"):
        Inception.googlenet("6a")


def fc_head_params(last_channels, hidden, classes):
    return (last_channels * 49 * hidden + hidden) + (hidden * hidden + hidden) + (hidden * classes + classes)


@pytest.mark.parametrize("config", ["A", "B", "C", "D", "E"])
def test_gap_head_parameter_change(config):
    with torch.device("meta"):  # counts only: no memory, no initialisation cost
        plain = vgg(config, num_classes=1000)
        gap = vgg_gap(config, num_classes=1000)
    assert isinstance(gap.classifier, nn.Linear)
    removed = n_params(plain) - n_params(gap)
    assert removed == fc_head_params(512, 4096, 1000) - (512 * 1000 + 1000)
    assert n_params(gap.features) == n_params(plain.features)


def test_gap_vgg16_against_torchvision():
    with torch.device("meta"):
        tv = torchvision.models.vgg16()
        gap = vgg_gap("vgg16", num_classes=1000)
    tv_head = sum(p.numel() for p in tv.classifier.parameters())
    assert n_params(gap) == n_params(tv) - tv_head + 512 * 1000 + 1000


def test_gap_head_copies_features_and_any_size_works():
    torch.manual_seed(0)
    model = vgg("A", num_classes=10, in_channels=1, width_ratio=16, hidden=32)
    gap = gap_head(model)
    assert isinstance(gap, GAPVGG) and gap.classifier.out_features == 10
    assert gap.features is not model.features
    for a, b in zip(gap.features.parameters(), model.features.parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    assert n_params(gap) == n_params(model.features) + 32 * 10 + 10
    for h, w in ((32, 32), (64, 48), (100, 77)):
        assert gap(torch.randn(2, 1, h, w)).shape == (2, 10)
    assert gap_head(model, num_classes=3).classifier.out_features == 3


def test_gap_then_linear_equals_average_of_per_position_scores():
    # The linear layer commutes with the average: GAP + linear is a 1x1 conv score map, averaged.
    torch.manual_seed(0)
    gap = vgg_gap("A", num_classes=10, in_channels=1, width_ratio=16).eval()
    x = torch.randn(2, 1, 96, 64)
    with torch.no_grad():
        fmap = gap.features(x)  # [2, 32, 3, 2]
        score_map = torch.einsum("nchw,kc->nkhw", fmap, gap.classifier.weight)
        dense = score_map.mean((2, 3)) + gap.classifier.bias
        assert torch.allclose(dense, gap(x), atol=1e-6)


def test_gap_bad_input():
    with pytest.raises(ValueError, match="gap_head expects a vgg_book VGG model"):
        gap_head(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        vgg_gap("A", num_classes=0)
    with pytest.raises(ValueError, match="width_ratio=3 does not divide"):
        vgg_gap("A", width_ratio=3)
    gap = vgg_gap("A", num_classes=10, in_channels=1, width_ratio=16)
    with pytest.raises(ValueError, match="1 input channel"):
        gap(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="too small"):
        gap(torch.randn(1, 1, 28, 28))


def test_googlenet_table_chains():
    # Each module's output channels are the next one's input (pools between stages keep
    # channels), and GoogLeNet ends with 1024 channels before its average pool.
    names = list(GOOGLENET_INCEPTIONS)
    for this, nxt in zip(names, names[1:]):
        assert Inception.googlenet(this).out_channels == GOOGLENET_INCEPTIONS[nxt][0], (this, nxt)
    assert Inception.googlenet("5b").out_channels == 1024
    assert [GOOGLENET_SPATIAL[n] for n in names] == [28, 28, 14, 14, 14, 14, 14, 7, 7]


def test_gap_vgg_takes_any_side_even_after_vgg_gained_input_size():
    """VGG.check_input, shared with GAPVGG, reads ``input_size``: GAPVGG has none (any side)."""
    model = vgg_gap("A", num_classes=10, in_channels=1, width_ratio=64).eval()
    assert model.input_size is None
    with torch.no_grad():
        for side in (32, 48, 96):
            assert model(torch.zeros(1, 1, side, side)).shape == (1, 10)
    with pytest.raises(ValueError, match="too small"):
        model(torch.zeros(1, 1, 16, 16))
