"""The architecture diagrams: what each one draws is checked against torch's own layers."""

import matplotlib
import pytest
import torch
from torch import nn

matplotlib.use("Agg")

import matplotlib.pyplot  # noqa: E402,F401
from vgg_book import diagrams, plotting  # noqa: E402
from vgg_book.models import vgg_block  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    matplotlib.pyplot.close("all")


def test_every_diagram_is_exported_through_plotting():
    for name in diagrams.__all__:
        assert getattr(plotting, name) is getattr(diagrams, name)
        assert name in plotting.__all__


# --- 1. A VGG block -------------------------------------------------------------------------

def block_shapes(num_convs, in_channels, out_channels, side):
    """(C, H, W) after each conv and pool of a real block, run on zeros."""
    seen = []
    block = vgg_block(num_convs, in_channels, out_channels)
    for m in block:
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
            m.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[1:])))
    block(torch.zeros(1, in_channels, side, side))
    return seen


@pytest.mark.parametrize("args", [(2, 3, 8, 16), (3, 4, 6, 15), (1, 2, 5, 7), (4, 1, 2, 2)])
def test_block_shapes_are_the_real_blocks(args):
    num_convs, in_channels, out_channels, side = args
    boxes = diagrams.block_layout(*args)
    assert [b["kind"] for b in boxes] == ["input"] + ["conv"] * num_convs + ["pool"]
    assert boxes[0]["shape"] == (in_channels, side, side)
    assert [b["shape"] for b in boxes[1:]] == block_shapes(*args)
    # Padding 1 keeps the side through every conv; the pool halves it, rounding down.
    assert boxes[-1]["shape"] == (out_channels, side // 2, side // 2)
    assert all(a["x"] + a["width"] < b["x"] for a, b in zip(boxes, boxes[1:]))
    assert boxes[1]["height"] == boxes[0]["height"] > boxes[-1]["height"]


def test_block_widths_grow_with_channels():
    boxes = diagrams.block_layout(2, 64, 128, 112)
    assert boxes[0]["width"] < boxes[1]["width"] == boxes[2]["width"] == boxes[3]["width"]


def test_block_figure_labels_every_arrow_with_its_shape():
    fig = plotting.plot_block(2, 3, 64, 224)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert [t for t in texts if " x " in t and "(" not in t] == [
        "3 x 224 x 224", "64 x 224 x 224", "64 x 224 x 224", "64 x 112 x 112"]
    assert sum("3x3 conv" in t for t in texts) == 2
    assert sum("max-pool" in t for t in texts) == 1


@pytest.mark.parametrize("side", [1, 0, 2.5, True])
def test_block_refuses_a_side_the_pool_cannot_halve(side):
    with pytest.raises(ValueError, match="side must be an integer of at least 2"):
        diagrams.block_layout(side=side)
    with pytest.raises(ValueError, match="num_convs must be a positive integer, got 0"):
        diagrams.block_layout(num_convs=0)


# --- 2. Padding on a pixel grid --------------------------------------------------------------

PADDINGS = [(5, 3, 1, 1), (5, 3, 0, 1), (7, 3, 1, 2), (6, 5, 2, 1), (8, 4, 1, 3), (3, 1, 0, 1)]


def ones_conv(kernel, padding, stride):
    conv = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding, bias=False)
    nn.init.ones_(conv.weight)
    return conv


def pixels_read(side, kernel, padding, stride, position):
    """Image pixels with a non-zero gradient for one output pixel of an all-ones conv."""
    x = torch.ones(1, 1, side, side, requires_grad=True)
    ones_conv(kernel, padding, stride)(x)[0, 0, position[0], position[1]].backward()
    return {tuple(rc) for rc in torch.nonzero(x.grad[0, 0]).tolist()}


@pytest.mark.parametrize("args", PADDINGS)
def test_padding_output_side_is_the_convs(args):
    side, kernel, padding, stride = args
    lay = diagrams.padding_layout(*args)
    out = ones_conv(kernel, padding, stride)(torch.zeros(1, 1, side, side))
    assert lay["out_side"] == out.shape[-1] == out.shape[-2]


@pytest.mark.parametrize("args", PADDINGS)
def test_padding_window_is_what_autograd_reads(args):
    side, kernel, padding, stride = args
    out_side = diagrams.padding_layout(*args)["out_side"]
    for position in [(0, 0), (out_side - 1, out_side - 1), (out_side // 2, 0)]:
        lay = diagrams.padding_layout(*args, position=position)
        assert lay["window_pixels"] == pixels_read(*args, position)
        assert len(lay["window"]) == kernel ** 2
        assert lay["window"] - lay["window_pixels"] <= lay["padding_cells"]
        grid = range(-padding, side + padding)
        assert all(r in grid and c in grid for r, c in lay["window"])
    inside = lambda r, c: 0 <= r < side and 0 <= c < side  # noqa: E731
    assert not any(inside(*rc) for rc in lay["padding_cells"])
    assert len(lay["padding_cells"]) == (side + 2 * padding) ** 2 - side ** 2


def test_padding_corner_window_reads_zeros_on_two_sides():
    lay = diagrams.padding_layout(5, 3, 1, 1)
    assert lay["window_pixels"] == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert len(lay["window"] & lay["padding_cells"]) == 5


def test_padding_figure_shows_every_zero_and_the_formula():
    fig = plotting.plot_padding(5, 3, 1, 1)
    ax = fig.axes[0]
    assert sum(t.get_text() == "0" for t in ax.texts) == 24
    assert ax.get_title().endswith("= 5$")
    assert len(ax.get_legend().get_texts()) == 4


def test_padding_refuses_bad_input_clearly():
    with pytest.raises(ValueError, match=r"position \(5, 0\) is outside the 5x5 output"):
        diagrams.padding_layout(position=(5, 0))
    with pytest.raises(ValueError, match="a 7x7 kernel does not fit in a 3x3 image"):
        diagrams.padding_layout(3, 7, 1)
    with pytest.raises(ValueError, match="padding must be an integer of at least 0"):
        diagrams.padding_layout(padding=-1)


# --- 3. The receptive field growing ----------------------------------------------------------

def conv(k, stride=1, padding=None):
    return nn.Conv2d(1, 1, k, stride=stride, padding=k // 2 if padding is None else padding)


STACKS = {
    "three 3x3": lambda: [conv(3), conv(3), conv(3)],
    "vgg": lambda: [conv(3), nn.ReLU(), conv(3), nn.ReLU(), nn.MaxPool2d(2),
                    conv(3), nn.ReLU(), conv(3), nn.ReLU(), nn.MaxPool2d(2)],
    "valid and strided": lambda: [conv(5, padding=0), conv(3, stride=2), conv(3)],
    "resnet stem": lambda: [conv(7, stride=2), nn.MaxPool2d(3, stride=2, padding=1), conv(3)],
}


def dependent_units(layers, side, unit):
    """Per row (input first), the columns whose value reaches the top unit (row ``unit``,
    column ``unit``): autograd through ones-weight convs, max-pools as average pools (every
    pixel of a window counts), on a side x side input."""
    twins = []
    for m in layers:
        if isinstance(m, nn.Conv2d):
            twin = nn.Conv2d(1, 1, m.kernel_size, m.stride, m.padding, bias=False)
            nn.init.ones_(twin.weight)
            twins.append(twin)
        elif isinstance(m, nn.MaxPool2d):
            twins.append(nn.AvgPool2d(m.kernel_size, m.stride, m.padding))
    x = torch.ones(1, 1, side, side, requires_grad=True)
    outputs, y = [x], x
    for twin in twins:
        y = twin(y)
        y.retain_grad()
        outputs.append(y)
    y[0, 0, unit, unit].backward()
    return [torch.nonzero(o.grad[0, 0].abs().sum(0)).flatten().tolist() for o in outputs]


@pytest.mark.parametrize("name", list(STACKS))
def test_rf_growth_rows_are_what_autograd_reaches(name):
    from vgg_book.receptive import receptive_field

    layers = STACKS[name]()
    lay = diagrams.rf_growth_layout(layers)
    rows = lay["rows"]
    assert len(rows) == 1 + sum(not isinstance(m, nn.ReLU) for m in layers)
    span = rows[0]["highlighted"]
    assert len(span) == receptive_field(layers)[-1].size
    assert span == list(range(span[0], span[-1] + 1)) and span[0] > 0
    assert span[-1] < lay["input_size"] - 1  # room around the field
    reached = dependent_units(layers, lay["input_size"], lay["unit"])
    assert [r["highlighted"] for r in rows] == reached
    assert [len(r["centres"]) for r in rows] == [lay["input_size"]] + [
        rec.output_size for rec in receptive_field(
            [m for m in layers if not isinstance(m, nn.ReLU)], lay["input_size"])]


@pytest.mark.parametrize("name", list(STACKS))
def test_rf_growth_fans_join_each_unit_to_its_window(name):
    lay = diagrams.rf_growth_layout(STACKS[name]())
    for row in range(1, len(lay["rows"])):
        fans = [inputs for r, _, inputs in lay["fans"] if r == row]
        assert len(fans) == len(lay["rows"][row]["highlighted"])
        assert sorted(set(sum(fans, []))) == lay["rows"][row - 1]["highlighted"]


def test_rf_growth_takes_a_given_input_size_and_refuses_a_small_one():
    lay = diagrams.rf_growth_layout(STACKS["three 3x3"](), input_size=15)
    assert lay["input_size"] == 15 and lay["unit"] == 7
    assert lay["rows"][0]["highlighted"] == list(range(4, 11))
    with pytest.raises(ValueError, match="input_size 5 is too small.*field of 7 pixels"):
        diagrams.rf_growth_layout(STACKS["three 3x3"](), input_size=5)
    with pytest.raises(ValueError, match="not supported"):
        diagrams.rf_growth_layout([conv(3), nn.Linear(3, 3)])


def test_rf_growth_figure_highlights_the_field():
    layers = STACKS["vgg"]()
    lay = diagrams.rf_growth_layout(layers)
    fig = plotting.plot_rf_growth(layers)
    ax = fig.axes[0]
    faces = [matplotlib.colors.to_hex(p.get_facecolor()) for p in ax.patches]
    assert faces.count(diagrams.FOCUS) == 1
    assert faces.count(diagrams.FIELD) == sum(len(r["highlighted"]) for r in lay["rows"]) - 1
    texts = [t.get_text() for t in ax.texts]
    assert "receptive field: 16 input pixels" in texts
    assert [t for t in texts if t.startswith("field ")] == [
        "field 1 px", "field 3 px", "field 5 px", "field 6 px", "field 10 px", "field 14 px",
        "field 16 px"]
    names = [f"layer {i}" for i in range(6)]
    assert set(names) <= {t.get_text() for t in
                          plotting.plot_rf_growth(layers, names=names).axes[0].texts}
    with pytest.raises(ValueError, match="names has 2 labels for 6 layers"):
        plotting.plot_rf_growth(layers, names=["a", "b"])


# --- 4. Dense evaluation ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def conv_vgg():
    """VGG-A with its classifier as convolutions, 64 times narrower, on the meta device."""
    from vgg_book.models import fc_to_conv, vgg

    with torch.device("meta"):
        return fc_to_conv(vgg("A", width_ratio=64, hidden=8, num_classes=5)).eval()


@pytest.mark.parametrize("side", [224, 250, 256, 300, 384, 480, 519])
def test_dense_map_side_is_the_conv_classifiers_output(conv_vgg, side):
    lay = diagrams.dense_layout(side)
    with torch.device("meta"):
        scores = conv_vgg(torch.empty(1, 3, side, side))
    assert tuple(scores.shape) == (1, 5, lay["map_side"], lay["map_side"])
    assert conv_vgg.min_size == lay["crop"]  # the smallest input: one whole window
    assert lay["offsets"] == [32 * j for j in range(lay["map_side"])]
    assert lay["covered"] <= side < lay["covered"] + 32


def test_dense_window_stride_is_the_networks_jump(conv_vgg):
    from vgg_book.receptive import receptive_field

    last = receptive_field([*conv_vgg.features, *conv_vgg.head], 384)[-1]
    lay = diagrams.dense_layout(384)
    assert last.stride == lay["stride"] and last.output_size == lay["map_side"]


@pytest.mark.parametrize("side", [223, 100, 0, 384.0])
def test_dense_refuses_an_image_smaller_than_the_crop(side):
    with pytest.raises(ValueError, match="image_side must be an integer of at least the crop"):
        diagrams.dense_layout(side)


def test_dense_figure_has_a_cell_per_window_and_checks_scores():
    import numpy as np

    fig = plotting.plot_dense_evaluation(384)
    image, score_map = fig.axes
    assert len(image.collections[0].get_offsets()) == 36  # a dot per window
    faces = [matplotlib.colors.to_hex(p.get_facecolor()) for p in score_map.patches]
    assert len(faces) == 36 and faces.count(diagrams.FOCUS) == 1
    assert "= 6$" in fig._suptitle.get_text()
    fig = plotting.plot_dense_evaluation(480, scores=np.arange(81.0).reshape(9, 9))
    assert fig.axes[1].images[0].get_array().shape == (9, 9)
    with pytest.raises(ValueError, match=r"scores must be a 6x6 array.*got shape \(5, 5\)"):
        plotting.plot_dense_evaluation(384, scores=np.zeros((5, 5)))


# --- 5. An Inception module ------------------------------------------------------------------

@pytest.mark.parametrize("args", [None, (8, 2, 3, 4, 1, 5, 6), (16, 1, 1, 1, 1, 1, 1)])
def test_inception_widths_are_the_modules_outputs(args):
    from vgg_book.inception import Inception

    module = Inception.googlenet("3a") if args is None else Inception(*args)
    lay = diagrams.inception_layout(module)
    x = torch.zeros(1, module.in_channels, 28, 28)
    with torch.no_grad():
        out = module(x)
        branch_out = [b(x).shape[1] for b in module.branches().values()]
    assert lay["in_channels"] == module.in_channels
    assert lay["widths"] == branch_out
    assert lay["total"] == out.shape[1] == module.out_channels
    assert [[op["kind"] for op in ops] for ops in lay["branches"]] == [
        ["conv1"], ["conv1", "conv"], ["conv1", "conv"], ["pool", "conv1"]]
    convs = [m.out_channels for b in module.branches().values() for m in b
             if isinstance(m, nn.Conv2d)]
    assert [op["width"] for ops in lay["branches"] for op in ops if op["kind"] != "pool"] == convs
    assert lay["branches"][3][0]["width"] == module.in_channels  # a pool keeps the channels


def test_inception_default_is_googlenets_3a():
    lay = diagrams.inception_layout()
    assert (lay["in_channels"], lay["widths"], lay["total"]) == (192, [64, 128, 32, 32], 256)
    assert [op["label"] for op in lay["branches"][2]] == ["1x1 conv", "5x5 conv"]


def test_inception_figure_labels_every_box_and_the_total():
    fig = plotting.plot_inception()
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "input: 192 channels" in texts
    assert "concatenate along channels: 256 channels" in texts
    assert sum(t.endswith(" ch") for t in texts) == 7  # the seven layers of the branches
    assert {"64", "128", "32"} <= set(texts)


def test_inception_refuses_another_module():
    with pytest.raises(ValueError, match="expects a vgg_book.inception.Inception module, got "
                                         "Conv2d"):
        diagrams.inception_layout(nn.Conv2d(3, 3, 1))
