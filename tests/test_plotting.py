"""The family figure: its boxes come from CONFIGS and match the networks torch builds."""

import matplotlib
import pytest
import torch
from torch import nn

matplotlib.use("Agg")

from vgg_book import paper, plotting  # noqa: E402
from vgg_book.models import CONFIGS, vgg  # noqa: E402
from vgg_book.plotting import family_layout, plot_family  # noqa: E402


def conv_outputs(name: str, side: int) -> list[tuple[int, int]]:
    """(channels, side) of every convolution's output in a forward pass on the meta device."""
    seen = []
    with torch.device("meta"):
        net = vgg(name)
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.register_forward_hook(lambda m, i, o: seen.append((o.shape[1], o.shape[-1])))
        net(torch.empty(1, 3, side, side))
    return seen


@pytest.mark.parametrize("side", [224, 96])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_boxes_match_the_network(name, side):
    boxes = family_layout(input_size=side)[name]
    convs = [b for b in boxes if b["kind"] in ("conv3", "conv1")]
    assert [(b["channels"], b["side"]) for b in convs] == conv_outputs(name, side)
    for b in convs:
        assert b["width"] == b["channels"] / 64 and b["height"] == b["side"] / side
    assert sum(b["kind"] == "pool" for b in boxes) == 5
    assert [b["channels"] for b in boxes if b["kind"] == "fc"] == [4096, 4096, 1000]
    assert sum(b["kind"] == "lrn" for b in boxes) == (name == "A-LRN")
    # Boxes run left to right without overlapping.
    assert all(a["x"] + a["width"] < b["x"] for a, b in zip(boxes, boxes[1:]))
    # Depth as the paper counts it: convolutions plus the three FC layers.
    assert len(convs) + 3 == paper.weight_layers(name)


def test_figure_labels_every_configuration_with_its_depth_and_parameters():
    fig = plot_family()
    texts = [t.get_text() for t in fig.axes[0].texts]
    for name in CONFIGS:
        assert f"{name}\n{paper.weight_layers(name)} weight layers" in texts
    with torch.device("meta"):
        params = sum(p.numel() for p in vgg("E").parameters())
    assert f"{params / 1e6:.0f}M params" in texts


def test_small_input_is_refused_clearly():
    with pytest.raises(ValueError, match="input_size must be at least 32"):
        family_layout(input_size=16)


def _paired_result():
    runs = {arm: [{"seed": s, "test_acc": 0.5 + 0.1 * k + 0.01 * s} for s in range(3)]
            for k, arm in enumerate(("a", "b"))}
    return {"experiment": "demo", "runs": runs}


def test_experiment_plot_joins_each_seed_across_the_arms():
    result = _paired_result()
    fig = plotting.plot_experiment(result)
    ax = fig.axes[0]
    lines = [l for l in ax.get_lines() if len(l.get_xdata()) == 2]
    assert len(lines) == 3  # one line per seed, across the two arms
    for seed, line in enumerate(lines):
        assert list(line.get_ydata()) == pytest.approx(
            [result["runs"][a][seed]["test_acc"] for a in ("a", "b")])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]


def test_experiment_plot_names_a_missing_arm():
    with pytest.raises(ValueError, match="demo has no arm c; it has: a, b"):
        plotting.plot_experiment(_paired_result(), arms=["a", "c"])
