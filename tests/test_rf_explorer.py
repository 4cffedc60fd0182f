"""The in-browser receptive-field explorer: its JavaScript against the library, exactly.

``vgg_book/js/rf_explorer.mjs`` does all the arithmetic in the reader's browser. Here Node
imports that very file (``tests/js/rf_check.mjs``) and its numbers are compared with
:func:`vgg_book.receptive.receptive_field` and the weight counts of real ``nn.Conv2d`` modules:
every VGG configuration (its layer list from :data:`vgg_book.models.CONFIGS`, as the widget's
``configs`` trait hands it to the page) and a few hundred random stacks.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import traitlets
from torch import nn

import vgg_book
from vgg_book.esm import bundle
from vgg_book.models import CONFIGS, make_features
from vgg_book.receptive import receptive_field
from vgg_book.rf_explorer import RFExplorer, normalize_layer, stack_to_sequential, vgg_layer_names
from vgg_book.widgets import rf_box

ROOT = Path(__file__).resolve().parents[1]
MODULE = Path(vgg_book.__file__).parent / "js" / "rf_explorer.mjs"
HARNESS = ROOT / "tests" / "js" / "rf_check.mjs"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="Node.js is not installed: the explorer's "
                                "JavaScript cannot be run (install Node 18+ to check it)")

VGG_SIDES = (224, 32, 28)  # 28: pool5's output is empty, as the page says
N_RANDOM = 250
#: CONFIGS as JSON carries it to the page (tuples become lists), converted independently here.
JSON_CONFIGS = json.loads(json.dumps(CONFIGS))


def random_stack(rng: random.Random) -> dict:
    """A seeded random stack case: convs 1/3/5/7, stride 1/2, dilation 1/2/3, padding "same"
    or 0..d(k-1)/2; pools 2x2/2 and 3x3/2 padding 1; input side 32..300."""
    layers = []
    for _ in range(rng.randint(1, 10)):
        if rng.random() < 0.75:
            kernel, dilation = rng.choice((1, 3, 5, 7)), rng.choice((1, 2, 3))
            padding = "same" if rng.random() < 0.5 else rng.randint(0, dilation * (kernel - 1) // 2)
            layers.append({"kind": "conv", "kernel": kernel, "stride": rng.choice((1, 1, 2)),
                           "dilation": dilation, "padding": padding})
        else:
            layers.append(rng.choice(({"kind": "pool", "kernel": 2, "stride": 2, "padding": 0},
                                      {"kind": "pool", "kernel": 3, "stride": 2, "padding": 1})))
    return {"layers": layers, "side": rng.randint(32, 300),
            "channels": rng.choice((1, 3, 8, 64, 100))}


def torch_stack(case: dict) -> nn.Sequential:
    """The case as real modules (built independently of vgg_book.rf_explorer); "same" padding
    goes to torch as the string where torch accepts it (stride 1)."""
    c, modules = case["channels"], []
    for layer in case["layers"]:
        if layer["kind"] == "pool":
            modules.append(nn.MaxPool2d(layer["kernel"], layer["stride"], layer["padding"]))
            continue
        k, d, s, p = layer["kernel"], layer["dilation"], layer["stride"], layer["padding"]
        if p == "same" and s > 1:
            p = d * (k - 1) // 2
        modules.append(nn.Conv2d(c, c, k, stride=s, padding=p, dilation=d, bias=False,
                                 device="meta"))
    return nn.Sequential(*modules)


def vgg_features(config: str) -> nn.Sequential:
    with torch.device("meta"):
        return make_features(config)


def cases() -> list[dict]:
    rng = random.Random(13)
    return ([{"config": c, "vgg": JSON_CONFIGS[c], "side": n} for c in CONFIGS for n in VGG_SIDES]
            + [random_stack(rng) for _ in range(N_RANDOM)])


@pytest.fixture(scope="module")
def js():
    """Run the explorer's module in Node on every case, once."""
    all_cases = cases()
    proc = subprocess.run([NODE, str(HARNESS), str(MODULE)], input=json.dumps({"cases": all_cases}),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["results"]) == len(all_cases)
    return all_cases, out


def check_case(case: dict, result: dict, module: nn.Sequential, in_channels: int) -> bool:
    """Compare one case's JS rows with the library; True when the input was too small."""
    side, rows = case["side"], result["rows"]
    no_side = [r for r in receptive_field(module) if r.layer != "ReLU"]
    assert [r["name"] for r in rows] == [r.name for r in no_side] == result["names"]
    try:
        records = [r for r in receptive_field(module, side) if r.layer != "ReLU"]
        empty_at = None
    except ValueError as e:  # the library refuses an input too small; JS shows "empty"
        empty_at = next(i for i, r in enumerate(rows) if r["out"] == 0)
        assert f"({rows[empty_at]['name']}, " in str(e), (str(e), rows[empty_at])
        # every layer before it: compare with the library on the prefix
        prefix = [m for m in module][: [i for i, m in enumerate(module)
                                         if not isinstance(m, nn.ReLU)][empty_at]]
        records = [r for r in receptive_field(prefix, side) if r.layer != "ReLU"] if prefix else []
        assert all(r["out"] == 0 for r in rows[empty_at:])
    for i, (row, rec, full) in enumerate(zip(rows, records + [None] * len(rows), no_side)):
        assert (row["size"], row["jump"]) == (full.size, full.stride), (case, row, full)
        assert row["start"] == full.start and isinstance(row["start"], (int, float))
        if rec is not None:
            assert row["out"] == rec.output_size, (case, row, rec)
            unit = (rec.output_size - 1) // 2
            left, top, width, height = rf_box(rec, (unit, unit))
            box = result["boxes"][i]
            assert (box["unit"], box["left"], box["right"]) == (unit, left, left + width)
            assert box["inside"] == (left >= -0.5 and left + width <= side - 0.5)
    # weights: real Conv2d modules, bias excluded; the single big conv has kernel = RF, stride = jump
    layers = [m for m in module if not isinstance(m, nn.ReLU)]
    weights = [m.weight.numel() if isinstance(m, nn.Conv2d) else 0 for m in layers]
    assert result["weights"] == weights
    assert result["stackParams"] == sum(weights)
    width = in_channels
    for i, (layer, cmp, full) in enumerate(zip(layers, result["comparisons"], no_side)):
        width = layer.out_channels if isinstance(layer, nn.Conv2d) else width
        big = nn.Conv2d(in_channels, width, full.size, stride=full.stride, bias=False,
                        device="meta")
        assert (cmp["size"], cmp["jump"], cmp["width"]) == (full.size, full.stride, width)
        assert cmp["stack"] == sum(weights[: i + 1])
        assert cmp["big"] == big.weight.numel(), (case, i, cmp)
        assert result["formatted"][i] == f"{big.weight.numel():,}"
    return empty_at is not None


@needs_node
def test_js_matches_receptive_field_on_every_vgg_configuration(js):
    all_cases, out = js
    compared = 0
    for case, result in zip(all_cases, out["results"]):
        if "config" in case:
            empty = check_case(case, result, vgg_features(case["config"]), in_channels=3)
            assert empty == (case["side"] == 28)  # five pools take 28 pixels to nothing
            assert result["names"] == vgg_layer_names(case["config"])
            compared += 1
    assert compared == len(CONFIGS) * len(VGG_SIDES)
    d224 = next(r for c, r in zip(all_cases, out["results"])
                if c.get("config") == "D" and c["side"] == 224)
    assert (d224["rows"][-1]["size"], d224["rows"][-1]["jump"], d224["rows"][-1]["out"]) == (212, 32, 7)


@needs_node
def test_js_matches_receptive_field_on_random_stacks(js):
    all_cases, out = js
    compared = empties = 0
    for case, result in zip(all_cases, out["results"]):
        if "layers" in case:
            empties += check_case(case, result, torch_stack(case), in_channels=case["channels"])
            compared += 1
    assert compared == N_RANDOM
    assert 0 < empties < N_RANDOM  # both branches exercised


@needs_node
def test_harness_catches_a_wrong_formula(tmp_path):
    """The comparison is not vacuous: a module with ceil instead of floor output sides fails."""
    broken = tmp_path / "rf_explorer.mjs"
    text = bundle("rf_explorer.mjs")  # receptive.mjs inlined: the file stands alone
    assert "Math.floor(span / s) + 1" in text
    broken.write_text(text.replace("Math.floor(span / s) + 1", "Math.ceil(span / s) + 1"))
    rng = random.Random(1)
    stacks = [random_stack(rng) for _ in range(40)]
    proc = subprocess.run([NODE, str(HARNESS), str(broken)], input=json.dumps({"cases": stacks}),
                          capture_output=True, text=True, timeout=60, check=True)
    results = json.loads(proc.stdout)["results"]
    failures = 0
    for case, result in zip(stacks, results):
        try:
            check_case(case, result, torch_stack(case), case["channels"])
        except AssertionError:
            failures += 1
    assert failures > 0


def test_module_is_self_contained_and_exports_the_functions():
    text = bundle("rf_explorer.mjs")  # what the page gets
    assert not re.search(r"^\s*import\b|\bimport\(|\brequire\(|\bfetch\(|XMLHttpRequest", text, re.M)
    assert re.findall(r"https?://[^\s\"']+", text) == ["http://www.w3.org/2000/svg"]
    for name in ("stackTable", "vggLayers", "stackParams", "bigKernelParams", "convWeights",
                 "comparison", "fieldBox", "layerNames", "outSide", "formatInt"):
        assert re.search(rf"^export function {name}\(", text, re.M), name
    assert "export default { render }" in text
    assert "CONFIGS" not in text.replace("vgg_book.models.CONFIGS", "")  # no copy: the trait
    assert 'get("configs"' in text and "Object.keys(configs)" in text
    for testid in ("rf-mode", "rf-add-conv3", "rf-add-conv5", "rf-add-conv7", "rf-add-pool",
                   "rf-remove", "rf-reset", "rf-stride", "rf-dilation", "rf-config", "rf-layer",
                   "rf-layer-slider", "rf-input-side", "rf-channels"):
        assert f'"data-testid": "{testid}"' in text or "rf-add-conv${k}" in text, testid


# --- the Python widget ------------------------------------------------------------------------

def test_widget_esm_is_the_packaged_file():
    assert MODULE.is_file()
    assert RFExplorer._esm == bundle("rf_explorer.mjs")
    assert (MODULE.parent / "receptive.mjs").read_text() in RFExplorer._esm


def test_widget_defaults_and_traits():
    w = RFExplorer()
    assert w.mode == "build" and w.config == "D" and w.layer == "pool5"
    assert (w.input_side, w.channels, w.next_stride, w.next_dilation) == (224, 64, 1, 1)
    assert w.image == [0] * 784
    assert w.stack == [{"kind": "conv", "kernel": 3, "stride": 1, "dilation": 1, "padding": 1}] * 3
    assert [r.size for r in w.records()] == [3, 5, 7]
    synced = {n for n, t in w.traits(sync=True).items()}
    assert {"mode", "stack", "config", "layer", "input_side", "channels", "image",
            "next_stride", "next_dilation", "configs"} <= synced


def test_widget_configs_trait_is_the_library():
    """The page's only source of the configurations: CONFIGS in JSON form, in its order."""
    w = RFExplorer()
    assert w.configs == JSON_CONFIGS and list(w.configs) == list(CONFIGS)
    assert w.get_state()["configs"] == JSON_CONFIGS
    assert w.configs["C"][8] == ["1x1", 256]
    w.configs["A"].append(1)  # each widget has its own copy; the library is untouched
    assert RFExplorer().configs == JSON_CONFIGS and CONFIGS["A"][-1] == "M"
    with pytest.raises(traitlets.TraitError, match="read-only"):
        RFExplorer(configs={})


def test_widget_image_inputs():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(28, 28), dtype=np.uint8)
    expected = [int(v) for v in pixels.reshape(-1)]
    assert RFExplorer(pixels).image == expected
    assert RFExplorer(torch.from_numpy(pixels)).image == expected
    assert RFExplorer(pixels.tolist()).image == expected
    assert RFExplorer(pixels.astype(np.float32)).image == expected
    for bad, match in ((np.zeros((28, 27)), "28x28"), (torch.zeros(1, 28, 28), "28x28"),
                       (np.full((28, 28), 256), "0..255"), (np.full((28, 28), -1), "0..255"),
                       (np.full((28, 28), 0.5), r"\(image \* 255\)"),
                       (np.full((28, 28), np.nan), "NaN"), (np.full((28, 28), "a"), "numbers")):
        with pytest.raises(ValueError, match=match):
            RFExplorer(bad)


def test_widget_stack_forms_and_sequential():
    w = RFExplorer(stack=["conv7", {"kind": "conv", "kernel": 5, "stride": 2, "dilation": 2},
                          "pool", {"kind": "pool", "kernel": 3, "padding": 1},
                          {"kind": "conv", "kernel": 3, "padding": 0}], channels=8)
    assert w.stack[1] == {"kind": "conv", "kernel": 5, "stride": 2, "dilation": 2, "padding": 4}
    assert w.stack[3] == {"kind": "pool", "kernel": 3, "stride": 2, "dilation": 1, "padding": 1}
    seq = w.to_sequential()
    convs = [m for m in seq if isinstance(m, nn.Conv2d)]
    assert [(m.kernel_size, m.stride, m.dilation, m.padding, m.in_channels, m.bias)
            for m in convs] == [((7, 7), (1, 1), (1, 1), (3, 3), 8, None),
                                ((5, 5), (2, 2), (2, 2), (4, 4), 8, None),
                                ((3, 3), (1, 1), (1, 1), (0, 0), 8, None)]
    assert [r.name for r in w.records(64)] == ["conv1_1", "conv1_2", "pool1", "pool2", "conv3_1"]
    assert stack_to_sequential(w.stack, 8)[0].weight.numel() == 8 * 8 * 49
    v = RFExplorer(mode="vgg", config="E", layer="conv5_4")
    assert [r.name for r in v.records()][-2:] == ["conv5_4", "pool5"]


def test_widget_rejects_bad_arguments():
    bad = [(dict(mode="static"), "mode must be 'build' or 'vgg'"),
           (dict(config="F"), "unknown VGG configuration 'F'"),
           (dict(config="A", layer="conv3_3"), "layer 'conv3_3' is not in configuration A"),
           (dict(stack=["conv4"]), "unknown shorthand"),
           (dict(stack=[{"kind": "conv", "kernel": 4}]), "kernel must be one of"),
           (dict(stack=[{"kind": "conv", "kernel": 3, "stride": 3}]), "stride must be"),
           (dict(stack=[{"kind": "conv", "kernel": 3, "dilation": 4}]), "dilation must be"),
           (dict(stack=[{"kind": "conv", "kernel": 3, "padding": 2}]), "padding must be"),
           (dict(stack=[{"kind": "conv", "kernel": 3, "bias": True}]), "unknown keys"),
           (dict(stack=[{"kind": "dense"}]), "'kind' must be"),
           (dict(stack=["conv3"] * 33), "at most 32 layers"),
           (dict(input_side=0), "input_side must be an integer in 1..4096"),
           (dict(channels=2.5), "channels must be an integer"),
           (dict(channels=True), "channels must be an integer")]
    for kwargs, match in bad:
        with pytest.raises(ValueError, match=re.escape(match) if "'" in match else match):
            RFExplorer(**kwargs)
    w = RFExplorer(config="E", layer="conv3_4")
    w.config = "A"  # A has no conv3_4: the page and the trait fall back to pool5
    assert w.layer == "pool5"
    with pytest.raises(ValueError, match="is not in configuration A"):
        w.layer = "conv3_4"
    with pytest.raises(ValueError, match="padding must be"):
        normalize_layer({"kind": "pool", "kernel": 2, "padding": 2})
