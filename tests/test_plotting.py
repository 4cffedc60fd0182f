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


# --------------------------------------------------------------------------------------
# Chapter 4: what each part of a VGG costs, and training memory against the batch size
# --------------------------------------------------------------------------------------

def flop_counts_by_module(model, side):
    """FlopCounterMode's FLOPs of each leaf module ("features.0": n), bias ignored."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, side, side, device="meta"))
    prefix = type(model).__name__ + "."
    return {name.removeprefix(prefix): sum(ops.values())
            for name, ops in counter.get_flop_counts().items() if name.startswith(prefix)}


@pytest.mark.parametrize("side", [224, 96])
@pytest.mark.parametrize("name", ["A-LRN", "C", "D"])
def test_layer_costs_match_torch_modules_and_flop_counter(name, side):
    from vgg_book.accounting import training_memory

    with torch.device("meta"):
        net = vgg(name)
    flops = flop_counts_by_module(net, side)
    for by in ("block", "layer"):
        groups = plotting.layer_costs(name, side, by=by)
        # every leaf module in exactly one group, in forward order
        leaves = [n for n, m in net.named_modules() if not list(m.children())]
        assert [n for g in groups for n in g["layers"]] == leaves
        for g in groups:
            modules = [net.get_submodule(n) for n in g["layers"]]
            assert g["params"] == sum(p.numel() for m in modules for p in m.parameters())
            weights = [n for n, m in zip(g["layers"], modules)
                       if isinstance(m, (nn.Conv2d, nn.Linear))]
            assert 2 * g["macs"] == sum(flops[n] for n in weights)
        assert sum(g["kept_bytes"] for g in groups) == training_memory(
            net, (3, side, side), 1).activations
    blocks = plotting.layer_costs(name, side, by="block")
    assert [g["name"] for g in blocks] == [f"block {i}" for i in range(1, 6)] + [
        "fc6", "fc7", "fc8"]
    layers = plotting.layer_costs(name, side, by="layer")
    assert len(layers) == paper.weight_layers(name)  # the paper's depth
    assert layers[0]["name"] == "conv1_1" and layers[-1]["name"] == "fc8"


def test_vgg16_weights_live_in_the_head_and_work_in_the_convolutions():
    groups = {g["name"]: g for g in plotting.layer_costs("D")}
    params = sum(g["params"] for g in groups.values())
    macs = sum(g["macs"] for g in groups.values())
    kept = sum(g["kept_bytes"] for g in groups.values())
    head = ("fc6", "fc7", "fc8")
    assert sum(groups[n]["params"] for n in head) > 0.85 * params
    assert sum(groups[n]["macs"] for n in head) < 0.01 * macs
    assert max(groups.values(), key=lambda g: g["kept_bytes"])["name"] == "block 1"
    assert groups["block 1"]["kept_bytes"] > 0.4 * kept


def test_layer_cost_bars_are_the_shares_of_the_data():
    fig = plotting.plot_layer_costs("D", quantities=("params", "macs", "kept"))
    ax = fig.axes[0]
    groups = plotting.layer_costs("D")
    assert [t.get_text() for t in ax.get_xticklabels()] == [g["name"] for g in groups]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "parameters", "multiply-adds (MACs)", "memory kept for backward"]
    for container, key in zip(ax.containers, ("params", "macs", "kept_bytes")):
        total = sum(g[key] for g in groups)
        assert [b.get_height() for b in container] == pytest.approx(
            [100 * g[key] / total for g in groups])
    with pytest.raises(ValueError, match="quantities must name some of"):
        plotting.plot_layer_costs("D", quantities=("flops",))
    with pytest.raises(ValueError, match="by must be 'block' or 'layer'"):
        plotting.layer_costs("D", by="stage")


NARROW = dict(width_ratio=8, hidden=64, num_classes=10)


@pytest.mark.parametrize("name", ["D", "A"])
def test_activation_memory_equals_saved_tensors_measured_in_both_precisions(name):
    """The analytic lines of the figure against torch.autograd.graph.saved_tensors_hooks
    (through accounting.saved_tensor_bytes) on a narrow network, float32 and bf16."""
    from vgg_book.accounting import saved_tensor_bytes

    torch.manual_seed(0)
    data = plotting.activation_memory([1, 3], name, 32, **NARROW)
    model = vgg(name, **NARROW)
    x = torch.randn(3, 3, 32, 32)
    fp32 = saved_tensor_bytes(model, x)
    bf16 = saved_tensor_bytes(model, x, autocast_dtype=torch.bfloat16)
    assert sum(fp32.values()) == 3 * data["kept_float32"]
    assert bf16[("weight copies", "bfloat16")] == data["weight_copies"]
    assert sum(bf16.values()) == 3 * data["kept_bf16"] + data["weight_copies"]
    assert data["bf16"][1] - data["float32"][1] == (
        sum(bf16.values()) - sum(fp32.values()))


def test_activation_memory_totals_and_crossovers():
    from vgg_book.accounting import training_memory

    with torch.device("meta"):
        net = vgg("D")
    sizes = list(range(1, 80))
    for optimizer in ("sgd-momentum", "adam"):
        data = plotting.activation_memory(sizes, "D", 224, optimizer)
        for b in (1, 17, 64):
            plan = training_memory(net, (3, 224, 224), b, optimizer=optimizer)
            assert data["float32"][b - 1] == plan.total
            assert data["fixed"] == plan.weights + plan.gradients + plan.optimizer_state
        # the first batch at which bf16 needs less, and the one at which the float32
        # activations reach the fixed part, found by walking the batch sizes
        less = [b for b, t32, t16 in zip(sizes, data["float32"], data["bf16"]) if t16 < t32]
        assert data["bf16_crossover"] == less[0] > 1
        assert all(b in less for b in sizes if b >= less[0])
        reach = [b for b in sizes if b * data["kept_float32"] >= data["fixed"]]
        assert data["activations_crossover"] == reach[0]
    assert plotting.activation_memory([1], "D")["bf16_crossover"] == data["bf16_crossover"]


def test_activation_memory_figure_draws_the_data_and_marks_both_crossovers():
    fig = plotting.plot_activation_memory(range(1, 65))
    ax = fig.axes[0]
    data = plotting.activation_memory(range(1, 65))
    lines = {l.get_label(): l for l in ax.get_lines()}
    for key, label in (("float32", "float32"), ("bf16", "bf16 autocast")):
        assert list(lines[label].get_ydata()) == pytest.approx(
            [v / 2**30 for v in data[key]])
    texts = " ".join(t.get_text() for t in ax.texts)
    assert f"from batch {data['bf16_crossover']}" in texts
    assert f"at batch {data['activations_crossover']}" in texts


def test_activation_memory_refuses_what_its_rule_does_not_cover():
    with pytest.raises(ValueError, match="LocalResponseNorm"):
        plotting.activation_memory([1], "A-LRN")
    with pytest.raises(ValueError, match="BatchNorm2d"):
        plotting.activation_memory([1], "D", batch_norm=True)
    with pytest.raises(ValueError, match="batch_sizes must be positive integers"):
        plotting.activation_memory([0, 4])
