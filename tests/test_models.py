"""vgg_book.models: blocks, shapes per block, the narrow d2l VGG and the config checks."""

import pytest
import torch
from torch import nn

from vgg_book.models import CONFIGS, d2l_vgg11, vgg, vgg_block


@pytest.mark.parametrize("num_convs,cin,cout", [(1, 3, 64), (2, 64, 128), (3, 256, 512)])
def test_block_parameters_follow_the_formula(num_convs, cin, cout):
    block = vgg_block(num_convs, cin, cout)
    measured = sum(p.numel() for p in block.parameters())
    expected = (3 * 3 * cin + 1) * cout + (num_convs - 1) * (3 * 3 * cout + 1) * cout
    assert measured == expected


def test_block_keeps_size_through_convs_and_halves_at_pool():
    block = vgg_block(2, 3, 8)
    x = torch.randn(1, 3, 30, 18)
    for layer in block[:-1]:
        x = layer(x)
        assert x.shape[-2:] == (30, 18)
    assert block[-1](x).shape == (1, 8, 15, 9)
    # floor: an odd side loses its last row
    assert vgg_block(1, 1, 1)(torch.randn(1, 1, 7, 7)).shape[-1] == 3


def test_block_with_batch_norm_orders_conv_bn_relu():
    kinds = [type(m) for m in vgg_block(2, 3, 8, batch_norm=True)]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d]


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_block_rejects_bad_counts(bad):
    with pytest.raises(ValueError, match="num_convs must be a positive integer"):
        vgg_block(bad, 3, 8)


def shapes_after_pools(model, size, channels):
    x = torch.zeros(1, channels, size, size)
    shapes = []
    with torch.no_grad():
        for layer in model.features:
            x = layer(x)
            if isinstance(layer, nn.MaxPool2d):
                shapes.append(tuple(x.shape[1:]))
    return shapes


def test_vgg11_shapes_per_block_at_224():
    assert shapes_after_pools(vgg("vgg11"), 224, 3) == [
        (64, 112, 112), (128, 56, 56), (256, 28, 28), (512, 14, 14), (512, 7, 7)]


def test_d2l_vgg11_widths_and_shapes():
    model = d2l_vgg11()
    convs = [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)]
    assert convs == [16, 32, 64, 64, 128, 128, 128, 128]
    assert shapes_after_pools(model, 224, 1)[-1] == (128, 7, 7)
    assert model(torch.zeros(2, 1, 224, 224)).shape == (2, 10)
    assert [m.out_channels for m in d2l_vgg11(8).features if isinstance(m, nn.Conv2d)][0] == 8


def test_d2l_vgg11_is_d2ls_network_flatten_and_linear():
    # d2l: blocks, nn.Flatten(), LazyLinear(4096): no adaptive pool, FC1 reads what is there.
    assert isinstance(d2l_vgg11().avgpool, nn.Identity)
    assert d2l_vgg11().classifier[0].in_features == 128 * 7 * 7
    small = d2l_vgg11(input_size=32)
    assert small.classifier[0].in_features == 128
    assert small(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    # torchvision-style VGG at 32x32: FC1 reads 6,272 values that repeat 128 numbers 49 times.
    tv = vgg("A", width_ratio=4, in_channels=1, num_classes=10)
    with torch.no_grad():
        pooled = tv.avgpool(tv.features(torch.randn(1, 1, 32, 32)))
    assert pooled.numel() == 6272 and torch.unique(pooled).numel() <= 128
    with pytest.raises(ValueError, match=r"built for 224x224 inputs \(its first linear layer "
                                         r"reads 6,272 values\), got 32x32; build it with input_size=32"):
        d2l_vgg11()(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="input_size must be a positive integer"):
        d2l_vgg11(input_size=0)
    with pytest.raises(ValueError, match="input_size=16 is too small"):
        d2l_vgg11(input_size=16)


def test_d2l_vgg11_matches_d2ls_chapter_code():
    # d2l.ai, "Networks Using Blocks (VGG)": the chapter's code (d2l 1.0.3 does not ship it).
    def vgg_block(num_convs, out_channels):
        layers = []
        for _ in range(num_convs):
            layers += [nn.LazyConv2d(out_channels, kernel_size=3, padding=1), nn.ReLU()]
        return nn.Sequential(*layers, nn.MaxPool2d(kernel_size=2, stride=2))

    arch = ((1, 16), (1, 32), (2, 64), (2, 128), (2, 128))
    for side in (224, 64, 32):
        theirs = nn.Sequential(
            *[vgg_block(n, c) for n, c in arch], nn.Flatten(),
            nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(0.5),
            nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(0.5), nn.LazyLinear(10))
        theirs(torch.zeros(1, 1, side, side))  # materialise the lazy layers
        ours = d2l_vgg11(input_size=side)
        assert [p.shape for p in ours.parameters()] == [p.shape for p in theirs.parameters()]



def test_config_c_has_three_1x1_convs_and_d_has_thirteen_3x3():
    kernels = [m.kernel_size for m in vgg("C").features if isinstance(m, nn.Conv2d)]
    assert kernels.count((1, 1)) == 3 and len(kernels) == 13
    assert len([c for c in CONFIGS["D"] if isinstance(c, int)]) == 13


def test_alrn_has_one_lrn_after_first_conv():
    layers = list(vgg("A-LRN").features)
    assert isinstance(layers[2], nn.LocalResponseNorm) and isinstance(layers[0], nn.Conv2d)


@pytest.mark.parametrize("config,message", [
    ("F", "unknown VGG config 'F'; expected one of: A, A-LRN, B, C, D, E, vgg11"),
    ([64, "X"], r"item 1 is 'X'"),
    (["M"], "no 3x3 convolution"),
    ([], "non-empty list"),
])
def test_bad_configs(config, message):
    with pytest.raises(ValueError, match=message):
        vgg(config)


def test_bad_width_ratio():
    with pytest.raises(ValueError, match=r"width_ratio=3 does not divide the channel counts \[64"):
        vgg("A", width_ratio=3)
    with pytest.raises(ValueError, match="width_ratio must be a positive integer"):
        vgg("A", width_ratio=0)


def test_bad_inputs_at_forward():
    model = d2l_vgg11(width_ratio=8, input_size=64)
    with pytest.raises(ValueError, match="expects 1 input channel"):
        model(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"28x28 is too small: 5 2x2 max-pools need at least 32x32; resize"):
        model(torch.zeros(1, 1, 28, 28))
    with pytest.raises(ValueError, match="4-D tensor"):
        model(torch.zeros(1, 28, 28))


def test_conv_classifier_rejects_wrong_channels():
    from vgg_book.models import fc_to_conv

    conv_net = fc_to_conv(vgg("A", width_ratio=8, hidden=16).eval())
    with pytest.raises(ValueError, match=r"expects 3 input channel\(s\), got 1"):
        conv_net(torch.zeros(1, 1, 224, 224))
