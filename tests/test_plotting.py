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


# --------------------------------------------------------------------------------------
# Chapter 6: what a trained VGG sees
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped():
    from vgg_book import trained

    images, labels = trained.explorer_images()
    return trained.trained_vgg(), images, labels


def drawn(ax):
    """The array of the first image an Axes shows."""
    return ax.get_images()[0].get_array().data


def test_filter_figure_draws_the_folded_filters_and_their_outputs(shipped):
    from vgg_book import seeing

    model, images, _ = shipped
    filters, _ = seeing.first_filters(model)
    maps = seeing.activations(model, images[0], ["conv1_1"])["conv1_1"][0]
    fig = plotting.plot_filters(filters, maps, titles=[f"f{k}" for k in range(8)])
    assert len(fig.axes) == 16 and fig.get_size_inches()[0] == pytest.approx(6.8)
    for k in range(8):
        top, bottom = fig.axes[k], fig.axes[8 + k]
        assert drawn(top) == pytest.approx(filters[k].numpy())
        assert drawn(bottom) == pytest.approx(maps[k].numpy())
        assert top.get_title() == f"f{k}" and len(top.texts) == 9  # every weight written
    # one colour scale for all filters, centred on zero
    limits = {fig.axes[k].get_images()[0].get_clim() for k in range(8)}
    assert limits == {(-float(filters.abs().max()), float(filters.abs().max()))}
    assert len(plotting.plot_filters(filters).axes) == 8
    with pytest.raises(ValueError, match="expected 8 titles"):
        plotting.plot_filters(filters, titles=["a"])


def test_feature_map_figure_shows_each_layers_most_active_channels(shipped):
    from vgg_book import seeing

    model, images, _ = shipped
    acts = seeing.activations(model, images[5])
    layers = ["conv1_1", "conv3_2", "conv5_2"]
    fig = plotting.plot_feature_maps(images[5], {n: acts[n][0] for n in layers}, channels=4)
    axes = fig.axes
    assert len(axes) == 3 * 5
    assert drawn(axes[0]) == pytest.approx(images[5].numpy())
    for r, name in enumerate(layers):
        a = acts[name][0]
        best = a.mean((1, 2)).argsort(descending=True, stable=True)[:4].tolist()
        for k, channel in enumerate(best):
            ax = axes[5 * r + 1 + k]
            assert ax.get_title() == f"ch {channel}"
            assert drawn(ax) == pytest.approx(a[channel].numpy())
        c, h, w = a.shape
        assert f"{name}\n{c} maps, {h}×{w}" in [t.get_text() for t in axes[5 * r].texts]


def test_separation_figure_draws_the_accuracies():
    fig = plotting.plot_layer_separation(["a", "b", "c"], [0.7, 0.8, 0.9], pixels=0.6)
    ax = fig.axes[0]
    line, baseline = ax.get_lines()
    assert list(line.get_ydata()) == pytest.approx([70, 80, 90])
    assert list(baseline.get_ydata()) == pytest.approx([60, 60])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="one accuracy per layer name"):
        plotting.plot_layer_separation(["a"], [0.5, 0.6])


def test_saliency_and_occlusion_figures_draw_the_librarys_maps(shipped):
    from vgg_book import seeing

    model, images, _ = shipped
    chosen = images[:3]
    maps = seeing.saliency(model, chosen)
    fig = plotting.plot_saliency(chosen, maps, ["a", "b", "c"])
    assert len(fig.axes) == 6
    for k in range(3):
        assert drawn(fig.axes[k]) == pytest.approx(chosen[k].numpy())
        assert drawn(fig.axes[3 + k]) == pytest.approx(maps[k].abs().numpy())
        assert fig.axes[k].get_title() == "abc"[k]
    with pytest.raises(ValueError, match="differ in shape"):
        plotting.plot_saliency(chosen, maps[:2])
    occ = seeing.occlusion(model, chosen, patch=6, stride=2)
    fig = plotting.plot_occlusion(chosen, occ)
    assert len(fig.axes) == 6
    for k in range(3):
        im = fig.axes[3 + k].get_images()[0]
        assert im.get_array().data == pytest.approx(occ.drop[k].numpy())
        # cells centred on the squares' centres, one stride wide
        left, right, bottom, top = im.get_extent()
        assert left == pytest.approx(occ.centres()[0] - 1) and top == left
        assert right == pytest.approx(occ.centres()[-1] + 1) and bottom == right
        assert fig.axes[3 + k].get_xlabel() == f"largest drop {float(occ.drop[k].max()):.2f}"
        square = fig.axes[k].patches[0]  # where hiding hurts most
        i, j = divmod(int(occ.drop[k].argmax()), occ.drop.shape[-1])
        assert square.get_xy() == (occ.offsets[j] - 0.5, occ.offsets[i] - 0.5)
        assert square.get_width() == square.get_height() == 6
    with pytest.raises(ValueError, match="occ holds 3 maps for 2 images"):
        plotting.plot_occlusion(chosen[:2], occ)


def test_class_model_figure_titles_each_model_with_its_probability():
    models = torch.rand(10, 28, 28) * 255
    probs = torch.linspace(0, 1, 10)
    names = [f"class {k}" for k in range(10)]
    fig = plotting.plot_class_models(models, names, probs)
    assert len(fig.axes) == 10 and fig.get_size_inches()[0] == pytest.approx(6.8)
    for k, ax in enumerate(fig.axes):
        assert drawn(ax) == pytest.approx(models[k].numpy())
        assert ax.get_title() == f"class {k}\np = {float(probs[k]):.2f}"
    with pytest.raises(ValueError, match="expected 10 class names"):
        plotting.plot_class_models(models, names[:3])
