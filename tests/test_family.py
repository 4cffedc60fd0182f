"""The VGG family against torchvision and the paper; the classifier as convolutions.

Parameter counts and ``state_dict`` keys are checked on the meta device (no memory, no
initialisation); outputs are compared on real weights, filled cheaply with uniform noise.
"""

import math

import pytest
import torch
import torchvision
from torch import nn

from vgg_book import paper
from vgg_book.models import ALIASES, CONFIGS, VGG, fc_to_conv, linear_to_conv, vgg
from vgg_book.receptive import receptive_field

# torchvision factory -> (our config, batch norm)
TORCHVISION = {
    "vgg11": ("A", False), "vgg11_bn": ("A", True),
    "vgg13": ("B", False), "vgg13_bn": ("B", True),
    "vgg16": ("D", False), "vgg16_bn": ("D", True),
    "vgg19": ("E", False), "vgg19_bn": ("E", True),
}

# Simonyan & Zisserman (2015), arXiv:1409.1556, Table 2: "Number of parameters (in millions)".
PAPER_TABLE_2 = paper.TABLE2_PARAMS_M


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def on_meta(factory, *args, **kwargs):
    with torch.device("meta"):
        return factory(*args, **kwargs)


def randomise_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter and buffer with seeded noise of a sensible scale (uniform: fast)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if name.endswith("num_batches_tracked"):
                t.fill_(1)
            elif name.endswith("running_var"):
                t.uniform_(0.5, 1.5, generator=g)
            elif t.dim() > 1:  # Kaiming-uniform bound keeps activations of order one
                bound = math.sqrt(6.0 / (t[0].numel()))
                t.uniform_(-bound, bound, generator=g)
            else:  # biases, BN weights and shifts, running means
                t.uniform_(-0.1, 0.1, generator=g).add_(1.0 if name.endswith(".weight") else 0.0)
    return model


@pytest.mark.parametrize("name", TORCHVISION)
def test_parameter_count_equals_torchvision(name):
    config, bn = TORCHVISION[name]
    theirs = on_meta(getattr(torchvision.models, name), weights=None)
    ours = on_meta(vgg, config, batch_norm=bn)
    assert n_params(ours) == n_params(theirs)
    assert [k for k in ours.state_dict()] == [k for k in theirs.state_dict()]
    ours.load_state_dict(theirs.state_dict(), strict=True, assign=True)  # keys and shapes


# One per depth, with and without batch norm: real weights cost time (124M of them in the head).
@pytest.mark.parametrize("name", ["vgg11", "vgg13_bn", "vgg16", "vgg19_bn"])
def test_torchvision_weights_load_strictly_and_outputs_match(name):
    config, bn = TORCHVISION[name]
    theirs = on_meta(getattr(torchvision.models, name), weights=None).to_empty(device="cpu")
    randomise_(theirs).eval()
    ours = on_meta(vgg, config, batch_norm=bn).eval()
    # assign=True hands torchvision's tensors to our modules; strict=True checks every key
    ours.load_state_dict(theirs.state_dict(), strict=True, assign=True)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = theirs(x), ours(x)
    assert want.abs().max() > 1e-3, "degenerate test: torchvision's output is all ~zero"
    torch.testing.assert_close(got, want)


def test_a_strict_load_rejects_a_mismatched_model():
    """The load test above could fail: VGG-16's weights do not fit VGG-16-BN."""
    theirs = on_meta(torchvision.models.vgg16, weights=None)
    ours = on_meta(vgg, "D", batch_norm=True)
    with pytest.raises(RuntimeError, match="Missing key"):
        ours.load_state_dict(theirs.state_dict(), strict=True, assign=True)


@pytest.mark.parametrize("config", PAPER_TABLE_2)
def test_parameter_count_rounds_to_the_papers_table_2(config):
    assert round(n_params(on_meta(vgg, config)) / 1e6) == PAPER_TABLE_2[config]


def layer_counts(model: VGG) -> dict:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return {
        "weight": len(convs) + sum(isinstance(m, nn.Linear) for m in model.modules()),
        "3x3": sum(m.kernel_size == (3, 3) for m in convs),
        "1x1": sum(m.kernel_size == (1, 1) for m in convs),
        "lrn": sum(isinstance(m, nn.LocalResponseNorm) for m in model.modules()),
        "pools": sum(isinstance(m, nn.MaxPool2d) for m in model.modules()),
    }


@pytest.mark.parametrize("config,expected", [
    ("A", {"weight": 11, "3x3": 8, "1x1": 0, "lrn": 0, "pools": 5}),
    ("A-LRN", {"weight": 11, "3x3": 8, "1x1": 0, "lrn": 1, "pools": 5}),
    ("B", {"weight": 13, "3x3": 10, "1x1": 0, "lrn": 0, "pools": 5}),
    ("C", {"weight": 16, "3x3": 10, "1x1": 3, "lrn": 0, "pools": 5}),
    ("D", {"weight": 16, "3x3": 13, "1x1": 0, "lrn": 0, "pools": 5}),
    ("E", {"weight": 19, "3x3": 16, "1x1": 0, "lrn": 0, "pools": 5}),
])
def test_layer_counts_follow_table_1(config, expected):
    assert layer_counts(on_meta(vgg, config)) == expected


def test_c_puts_its_1x1_convs_last_in_blocks_3_to_5():
    convs = [m for m in on_meta(vgg, "C").features if isinstance(m, nn.Conv2d)]
    one_by_one = [(i, m.in_channels, m.out_channels) for i, m in enumerate(convs)
                  if m.kernel_size == (1, 1)]
    assert one_by_one == [(6, 256, 256), (9, 512, 512), (12, 512, 512)]
    assert all(m.padding == (0, 0) for m in convs if m.kernel_size == (1, 1))


@pytest.mark.parametrize("config", list(CONFIGS))
def test_table1_labels_are_kernel_size_and_output_channels(config):
    """"conv3-64" is a 3x3 conv with 64 output channels (not "the third layer", as *VGG16 Explained* says)."""
    convs = [m for m in on_meta(vgg, config).features if isinstance(m, nn.Conv2d)]
    labels = [layer for layer in paper.TABLE1[config] if layer.startswith("conv")]
    assert [f"conv{m.kernel_size[0]}-{m.out_channels}" for m in convs] == labels
    assert labels[0] == "conv3-64"


def named_layers(config: str) -> dict:
    """The paper's names (conv<block>_<rank>, then fc6-fc8) -> (weight shape, bias shape)."""
    model = on_meta(vgg, config)
    convs = {r.name: model.features[int(r.path)]
             for r in receptive_field(model.features) if r.layer == "Conv2d"}
    fcs = [m for m in model.classifier if isinstance(m, nn.Linear)]
    layers = {**convs, **{f"fc{6 + i}": m for i, m in enumerate(fcs)}}
    return {name: (tuple(m.weight.shape), tuple(m.bias.shape)) for name, m in layers.items()}


@pytest.mark.parametrize("config", ["B", "C", "D", "E"])
def test_a_initialises_deeper_nets_block_by_block(config):
    """Section 3.1: the first four convs and last three FC layers of a deeper net come from A.

    Mapped block by block (A's conv1_1, conv2_1, conv3_1, conv3_2 onto the layers of the same
    names), every shape fits; so do A's other convs and its three FC layers.
    """
    a, deep = named_layers("A"), named_layers(config)
    first_four = [name for name in a if name.startswith("conv")][:4]
    assert first_four == ["conv1_1", "conv2_1", "conv3_1", "conv3_2"]
    assert all(deep[name] == a[name] for name in a)
    # the copy works: A's weights load into those layers of the deeper net
    deep_model = vgg(config, width_ratio=16, hidden=32)
    a_model = vgg("A", width_ratio=16, hidden=32)
    a_convs = {r.name: a_model.features[int(r.path)] for r in receptive_field(a_model.features)}
    deep_convs = {r.name: deep_model.features[int(r.path)]
                  for r in receptive_field(deep_model.features)}
    for name in first_four:
        deep_convs[name].load_state_dict(a_convs[name].state_dict())


def test_the_deeper_nets_first_four_by_position_cannot_all_come_from_a():
    """Read as D's first four convs (conv1_1, conv1_2, conv2_1, conv2_2), two have no source."""
    a_shapes = {shape for name, shape in named_layers("A").items() if name.startswith("conv")}
    d = named_layers("D")
    first_four = [name for name in d if name.startswith("conv")][:4]
    assert [name for name in first_four if d[name] not in a_shapes] == ["conv1_2", "conv2_2"]


def test_a_dense_position_scores_a_window_centred_on_it():
    """A score-map position sees 404 px (> 224), centred on its 224x224 crop; stride 32."""
    conv = on_meta(lambda: fc_to_conv(vgg("D")))
    rf = receptive_field([*conv.features, *conv.head], 384)[-1]
    pool5 = receptive_field(conv.features)[-1]
    assert (rf.output_size, rf.stride) == (384 // 32 - 6, 32)
    assert rf.size == pool5.size + 6 * 32 == 404
    for i in range(rf.output_size):  # position i <-> the 224x224 crop starting at 32 i
        assert rf.start + i * rf.stride == 32 * i + (224 - 1) / 2


def test_batch_norm_adds_two_parameters_per_conv_channel():
    for config in CONFIGS:
        plain, bn = on_meta(vgg, config), on_meta(vgg, config, batch_norm=True)
        channels = sum(m.out_channels for m in plain.modules() if isinstance(m, nn.Conv2d))
        assert n_params(bn) - n_params(plain) == 2 * channels


# --- the classifier as convolutions --------------------------------------------------------

def narrow(config="D", **kwargs):
    torch.manual_seed(0)
    return vgg(config, width_ratio=16, hidden=64, num_classes=10, **kwargs).eval()


@pytest.mark.parametrize("config,bn", [("D", False), ("A", True)])
def test_fc_to_conv_equals_the_fc_head_at_224(config, bn):
    model = narrow(config, batch_norm=bn)
    randomise_(model.classifier)  # N(0, 0.01) heads give tiny outputs; use order-one ones
    conv = fc_to_conv(model).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        want, got = model(x), conv(x)
    assert got.shape == (2, 10, 1, 1)
    assert want.abs().max() > 1e-2
    torch.testing.assert_close(got.flatten(1), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("side", [1, 3])
def test_linear_to_conv_computes_the_linear_layer_on_a_map(side):
    torch.manual_seed(0)
    linear = nn.Linear(5 * side * side, 4)
    conv = linear_to_conv(linear, side)
    assert conv.weight.shape == (4, 5, side, side)
    x = torch.randn(2, 5, side, side)
    torch.testing.assert_close(conv(x).flatten(1), linear(x.flatten(1)))


@pytest.mark.parametrize("size,side", [(384, 6), (256, 2), (224 + 5 * 32 + 31, 6)])
def test_fc_to_conv_gives_a_score_map_on_larger_input(size, side):
    conv = fc_to_conv(narrow())
    with torch.no_grad():
        out = conv(torch.randn(1, 3, size, size))
    assert out.shape == (1, 10, side, side)
    assert side == size // 32 - 6  # 7x7 windows over the size//32 map at stride 1


def test_fc_to_conv_shares_features_and_copies_the_head():
    model = narrow()
    conv = fc_to_conv(model)
    assert conv.features is model.features
    first = conv.head[0]
    assert isinstance(first, nn.Conv2d) and first.kernel_size == (7, 7)
    assert [m.kernel_size for m in conv.head if isinstance(m, nn.Conv2d)][1:] == [(1, 1), (1, 1)]
    with torch.no_grad():
        model.classifier[0].weight.add_(1.0)
    assert not torch.equal(first.weight.flatten(1), model.classifier[0].weight)


def test_conv_classifier_explains_an_input_below_224():
    conv = fc_to_conv(narrow())
    with pytest.raises(ValueError, match=r"input 200x300 is too small .* at least 224x224"):
        conv(torch.zeros(1, 3, 200, 300))


def test_fc_to_conv_rejects_other_models():
    with pytest.raises(ValueError, match="fc_to_conv expects a vgg_book VGG model, got Sequential"):
        fc_to_conv(nn.Sequential(nn.Linear(2, 2)))


# --- bad input to vgg() and to the network ---------------------------------------------------

def test_unknown_config_lists_every_valid_name():
    with pytest.raises(ValueError) as info:
        vgg("vgg17")
    message = str(info.value)
    assert "unknown VGG config 'vgg17'" in message
    for name in [*CONFIGS, *ALIASES]:
        assert name in message


@pytest.mark.parametrize("config,match", [
    ([64, "M", ("1x1",)], r"item 2 is \('1x1',\)"),
    ([64, "M", 0], "item 2 is 0"),
    ([64, "max"], "item 1 is 'max'.*'M' \\(2x2 max-pool\\)"),
    ("A LRN", "unknown VGG config"),
    (64, "must be a name or a non-empty list"),
])
def test_malformed_configs(config, match):
    with pytest.raises(ValueError, match=match):
        vgg(config)


@pytest.mark.parametrize("ratio,match", [
    (1.5, "width_ratio must be a positive integer, got 1.5"),
    (-2, "width_ratio must be a positive integer"),
    (True, "width_ratio must be a positive integer"),
    (128, r"width_ratio=128 does not divide the channel counts \[64\]"),
])
def test_bad_width_ratio(ratio, match):
    with pytest.raises(ValueError, match=match):
        vgg("E", width_ratio=ratio)


def test_wrong_channels_and_too_small_input_at_forward():
    model = narrow("A")
    with pytest.raises(ValueError, match=r"expects 3 input channel\(s\), got 1 .*in_channels=1"):
        model(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r"224x16 is too small: .*at least 32x32; resize"):
        model(torch.zeros(1, 3, 224, 16))
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)  # the minimum itself works
