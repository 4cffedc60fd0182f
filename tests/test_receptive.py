"""Receptive fields: the recurrence against autograd, real output shapes, and clear errors."""

import math

import pytest
import torch
from torch import nn
from torchvision.models import vgg16 as tv_vgg16

from vgg_book.models import CONFIGS, VGG, fc_to_conv, make_features, vgg
from vgg_book.receptive import (input_gradient, linear_twin, linearised,
                                 measured_receptive_field, min_input_size, min_measurable_size,
                                 receptive_field, rf_step)
from vgg_book.widgets import conv_stack, rf_box, stack_summary

# Channels do not change a receptive field: width_ratio=64 leaves 1..8 channels, which is cheap.
NARROW = dict(width_ratio=64, in_channels=1, hidden=16)


def full_width(config):
    """A full-width model without memory or initialisation cost: geometry only."""
    with torch.device("meta"):
        return VGG(make_features(config), init_weights=False)


def windowed(records):
    """Records of the layers that change the geometry (convs and pools)."""
    return [r for r in records if r.layer not in ("ReLU", "BatchNorm2d")]


@pytest.mark.parametrize("config", list(CONFIGS))
def test_analytic_equals_measured_for_every_layer(config):
    features = vgg(config, **NARROW).features
    size = min_measurable_size(features)
    analytic = receptive_field(features, size)
    measured = measured_receptive_field(features, size)
    assert len(analytic) == len(measured) == len(features)
    for a, m in zip(analytic, measured):
        assert not m.touches_border, f"{config} {a.name}: field clipped at input {size}"
        assert m.size_hw == a.size_hw, f"{config} {a.name}: measured {m.size_hw} vs {a.size_hw}"
        # The measured box's centre checks ``start`` and ``stride`` too.
        assert m.centre_hw == a.centre(m.unit), f"{config} {a.name}"
        # Positive linear network: every pixel of the square has a path to the unit.
        assert m.nonzero == a.size ** 2


def test_batch_norm_does_not_change_the_field():
    plain = receptive_field(vgg("B", **NARROW).features, 224)
    with_bn = receptive_field(vgg("B", batch_norm=True, **NARROW).features, 224)
    assert [r.size for r in windowed(plain)] == [r.size for r in windowed(with_bn)]
    features = vgg("B", batch_norm=True, **NARROW).features
    measured = measured_receptive_field(features, min_measurable_size(features))
    assert [m.size for m in measured] == [r.size for r in with_bn]


def test_vgg16_known_values_and_torchvision_agrees():
    ours = {r.name: r for r in receptive_field(full_width("D").features, 224)}
    assert ours["conv5_3"].size == 196
    assert ours["pool5"].size == 212
    assert [ours[f"pool{i}"].stride for i in range(1, 6)] == [2, 4, 8, 16, 32]
    assert [ours[f"pool{i}"].start for i in range(1, 6)] == [0.5, 1.5, 3.5, 7.5, 15.5]
    assert ours["pool5"].output_size == 7
    with torch.device("meta"):
        tv = receptive_field(tv_vgg16(weights=None, init_weights=False).features, 224)
    assert [(r.name, r.size_hw, r.stride_hw, r.start_hw, r.output_hw) for r in tv] == \
        [(r.name, r.size_hw, r.stride_hw, r.start_hw, r.output_hw) for r in ours.values()]


@pytest.mark.parametrize("config", ["A-LRN", "C"])
def test_output_sizes_match_a_forward_pass(config):
    features = vgg(config, **NARROW).features
    x = torch.zeros(1, 1, 75, 64)
    for record, layer in zip(receptive_field(features, (75, 64)), features):
        x = layer(x)
        assert record.output_hw == tuple(x.shape[2:]), record.name


def test_lrn_and_1x1_convs_add_nothing():
    a = {r.name: r.size for r in receptive_field(full_width("A").features)}
    a_lrn = {r.name: r.size for r in receptive_field(full_width("A-LRN").features)}
    assert a_lrn["lrn1_1"] == a_lrn["conv1_1"] == 3
    assert a_lrn["pool5"] == a["pool5"]
    c = {r.name: r.size for r in receptive_field(full_width("C").features)}
    assert c["conv3_3"] == c["conv3_2"]  # config C's conv3_3 is 1x1


ODD_STACK = [
    nn.Conv2d(1, 2, kernel_size=(3, 5), padding=(1, 0), dilation=(1, 2)),
    nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
    nn.Conv2d(2, 2, kernel_size=4, padding="same"),
    nn.AvgPool2d((2, 3), stride=(2, 1)),
    nn.Conv2d(2, 1, kernel_size=3, stride=2, padding="valid", dilation=2, groups=1),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_non_square_dilated_padded_stacks_per_axis():
    size = (61, 53)
    analytic = receptive_field(ODD_STACK, size)
    measured = measured_receptive_field(ODD_STACK, size)
    x = torch.zeros(1, 1, *size)
    for a, m, layer in zip(analytic, measured, ODD_STACK):
        x = layer(x)
        assert a.output_hw == tuple(x.shape[2:]), a.name
        assert not m.touches_border, a.name
        assert m.size_hw == a.size_hw, a.name
        assert m.centre_hw == pytest.approx(a.centre(m.unit)), a.name
    assert analytic[0].size_hw == (3, 9)  # dilation 2 spreads a 5-wide kernel over 9 pixels
    with pytest.raises(ValueError, match="size_hw"):
        analytic[0].size


def test_fc_head_as_conv_sees_more_than_the_image():
    model = vgg("D", **NARROW)
    head = fc_to_conv(model).head
    layers = list(model.features) + list(head)
    records = receptive_field(layers, 224)
    assert records[-1].size == 212 + 6 * 32  # fc6 is a 7x7 conv at jump 32
    (measured,) = measured_receptive_field(layers, 224, last_only=True)
    assert measured.touches_border and measured.size == 224


def test_adaptive_pool_acts_as_plain_pool():
    model = vgg("D", **NARROW)
    stack = nn.Sequential(model.features, model.avgpool)
    assert receptive_field(stack, 224)[-1].size == 212  # 7x7 -> 7x7: a 1x1 pool
    r = receptive_field(stack, 448)[-1]
    assert (r.size, r.stride, r.output_size) == (244, 64, 7)
    assert measured_receptive_field(stack, 448, last_only=True)[-1].size == 244
    with pytest.raises(ValueError, match="not a whole number"):
        receptive_field(stack, 320)  # 10x10 -> 7x7
    with pytest.raises(ValueError, match="needs input_size"):
        receptive_field(stack)


def test_naive_measurement_loses_the_pool():
    """Through a real max-pool the gradient reaches one pixel of each window."""
    pool = [nn.MaxPool2d(2)]
    assert measured_receptive_field(pool, 8, linear=False)[0].nonzero == 1
    assert measured_receptive_field(pool, 8)[0].nonzero == 4
    torch.manual_seed(0)
    features = vgg("D", width_ratio=8, hidden=16).features
    # The strongest channel of pool1 is not zeroed by a ReLU; its gradient goes to the arg-max
    # of its window, a conv1_2 unit, which sees 5 pixels where pool1 sees 6.
    naive = {m.name: m for m in measured_receptive_field(features[:5], 64, linear=False,
                                                         channel="max")}
    analytic = {r.name: r for r in receptive_field(features[:5], 64)}
    assert analytic["pool1"].size == 6 and analytic["conv1_2"].size == 5
    assert naive["conv1_2"].size == 5
    assert naive["pool1"].size == 5


def test_unsupported_layers_are_named():
    with pytest.raises(ValueError, match=r"layer 1 \(Linear.*Conv2d, MaxPool2d"):
        receptive_field([nn.Conv2d(1, 1, 3), nn.Linear(3, 3)])
    with pytest.raises(ValueError, match="Conv1d"):
        receptive_field(nn.Sequential(nn.Conv1d(1, 1, 3)))
    with pytest.raises(ValueError, match="padding_mode='circular'"):
        receptive_field([nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular")])
    with pytest.raises(ValueError, match="pass model.features"):
        receptive_field(vgg("A", **NARROW))
    with pytest.raises(ValueError, match="empty"):
        receptive_field([])
    with pytest.raises(ValueError, match="dilated max-pool"):
        measured_receptive_field([nn.MaxPool2d(2, dilation=2)], 16)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "224", (224,), (224, 0), True])
def test_bad_input_sizes(bad):
    with pytest.raises(ValueError, match="input_size must be"):
        receptive_field(vgg("A", **NARROW).features, bad)


def test_too_small_input_says_how_large():
    features = vgg("A", **NARROW).features
    assert min_input_size(features) == 32
    with pytest.raises(ValueError, match=r"too small.*pool5.*at least 32x32"):
        receptive_field(features, 31)
    with pytest.raises(ValueError, match="channel 9 does not exist"):
        measured_receptive_field(features, 32, linear=False, channel=9)
    with pytest.raises(ValueError, match="channel 'middle' does not exist"):
        measured_receptive_field(features, 32, linear=False, channel="middle")


# --- the explorer's pure functions -----------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_stack_of_3x3_matches_one_larger_kernel(n):
    s = stack_summary(n, 3, channels=8)
    assert s.rf == 2 * n + 1 and s.jump == 1
    assert s.stack_weights == 9 * n * 8 ** 2
    assert s.single_weights == (2 * n + 1) ** 2 * 8 ** 2
    assert s.stack_relus == n and s.single_relus == 1
    # The single convolution really has that field: measure it.
    single = [nn.Conv2d(1, 1, s.rf, stride=s.jump)]
    assert measured_receptive_field(single, 32)[0].size == s.rf


def test_stack_with_pools_and_its_box():
    stack = conv_stack(4, 3, pool_every=2)
    assert [type(m).__name__ for m in stack].count("MaxPool2d") == 2
    s = stack_summary(4, 3, pool_every=2)
    measured = measured_receptive_field(stack, 28)[-1]
    assert (s.rf, s.jump) == (16, 4) and measured.size == s.rf
    last = receptive_field(stack, 28)[-1]
    left, top, width, height = rf_box(last, measured.unit)
    # Box edges sit half a pixel outside the first and last pixel of the measured field.
    assert (top + height / 2, left + width / 2) == measured.centre_hw
    assert width == height == measured.size
    assert math.isclose(s.ratio, 256 / 36)


def test_widget_inputs_are_checked():
    with pytest.raises(ValueError, match="odd"):
        conv_stack(2, kernel_size=4)
    with pytest.raises(ValueError, match="num_convs must be an integer >= 1"):
        stack_summary(0)
    with pytest.raises(ValueError, match="pool_every"):
        conv_stack(2, pool_every=-1)


def test_input_gradient_counts_paths_and_checks_inputs():
    # In the linearised stack (weights 1/9) 9**n times the gradient counts the paths from each
    # pixel to the unit: 9**n paths in all, 1 to each corner, the most to the centre.
    for n in (1, 2, 3):
        paths = input_gradient(conv_stack(n), 11) * 9 ** n
        assert round(paths.sum().item()) == 9 ** n
        half = n  # the field spans centre +- n pixels
        assert round(paths[5 - half, 5 - half].item()) == 1
        assert paths[5, 5] == paths.max()
    with pytest.raises(ValueError, match=r"inputs must be a \[batch, 1, 11, 11\]"):
        input_gradient(conv_stack(2), 11, linear=False, inputs=torch.zeros(1, 3, 11, 11))


def test_rf_step_is_the_recurrence_receptive_field_applies():
    # A dilated, strided, padded convolution after a pool: one step from the pool's record.
    pool, conv = nn.MaxPool2d(3, 2, padding=1), nn.Conv2d(1, 1, 3, stride=2, padding=2, dilation=2)
    first, second = receptive_field([pool, conv])
    step = rf_step(first.size, first.stride, first.start, kernel=5, stride=2, left=2)
    assert step == (second.size, second.stride, second.start) == (11, 4, 0.0)
    assert rf_step(1, 1, 0.0, 3, 1, 1) == (3, 1, 0.0)


def test_linearised_is_the_twin_of_every_layer_and_checks_them():
    layers = [nn.Conv2d(3, 8, 5, stride=2, padding=1, dilation=2), nn.ReLU(),
              nn.MaxPool2d(3, 2, ceil_mode=True), nn.BatchNorm2d(8), nn.AvgPool2d(2)]
    twins = linearised(layers)
    for module, twin in zip(layers, twins):
        assert type(twin) is type(linear_twin(module))
    conv = twins[0]
    geometry = (conv.in_channels, conv.kernel_size, conv.stride, conv.dilation, conv.padding)
    assert geometry == (1, (5, 5), (2, 2), (2, 2), (1, 1))
    assert torch.all(conv.weight == 1 / 25) and conv.bias is None
    assert isinstance(twins[2], nn.AvgPool2d) and twins[2].ceil_mode
    assert isinstance(twins[1], nn.Identity) and isinstance(twins[3], nn.Identity)
    with pytest.raises(ValueError, match="dilated max-pool"):
        linearised([nn.MaxPool2d(2, dilation=2)])
    with pytest.raises(ValueError, match=r"layer 0 \(Flatten"):
        linearised([nn.Flatten(), nn.Linear(4, 2)])
