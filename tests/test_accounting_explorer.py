"""The accounting explorer (vgg_book.accounting_explorer): its JavaScript against the library.

The front end ``vgg_book/js/accounting_explorer.mjs`` computes every number in the reader's
browser. Here Node imports that very file (through ``tests/js/accounting_check.mjs``) and its
rows and totals are compared, exactly, with :func:`vgg_book.accounting.summary` on models
built by :func:`vgg_book.models.vgg` on the meta device: every configuration, with and without
batch norm, at sides that pools floor (100, 320, ...), several batch sizes, bias adds counted
or not. The JavaScript holds no configurations: each case passes it the layer list of
:data:`vgg_book.models.CONFIGS` (JSON form), as the widget does through its ``configs`` trait.
The widget class is checked too (traits, validation, the packaged ES module).
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from vgg_book import accounting_explorer as ae
from vgg_book.accounting import BYTES, summary
from vgg_book.models import CONFIGS, MIN_INPUT_SIZE, vgg

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "vgg_book" / "js" / "accounting_explorer.mjs"
HARNESS = ROOT / "tests" / "js" / "accounting_check.mjs"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="Node.js is not installed: the explorer's "
                                "JavaScript cannot be run (apt-get install nodejs)")

#: CONFIGS as the front end receives it (the widget's ``configs`` trait): ("1x1", c) -> lists.
CONFIGS_JSON = json.loads(json.dumps(CONFIGS))

SIDES = [32, 64, 100, 224, 256, 320, 512]
BATCHES = [1, 3, 64]


def run_js(cases: list[dict], module: Path = MODULE) -> dict:
    """Run the harness on ``cases``; return its parsed JSON output."""
    done = subprocess.run([NODE, str(HARNESS), str(module)], input=json.dumps(cases),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"node failed:\n{done.stderr}"
    return json.loads(done.stdout)


def _case(config, bn, side, batch, bias, num_classes=1000, layers=None) -> dict:
    """A case for the harness: ``layers`` (what the JS gets) is CONFIGS[config] in JSON form
    unless given; ``config`` names the model the library builds to compare with."""
    if layers is None:
        layers = CONFIGS_JSON[config]
    return {"config": config, "layers": layers, "batchNorm": bn, "side": side, "batch": batch,
            "countBias": bias, "numClasses": num_classes}


def _cases() -> list[dict]:
    grid = itertools.product(CONFIGS, [False, True], SIDES, BATCHES, [True, False])
    cases = [_case(*c) for c in grid]
    # A few more: other class counts, odd sides.
    cases += [_case("A", False, 33, 2, True, 10), _case("E", True, 511, 5, False, 10),
              _case("C", True, 63, 1, True, 1)]
    return cases


_MODELS: dict = {}


def _summary(c: dict):
    key = (c["config"], c["batchNorm"], c["numClasses"])
    if key not in _MODELS:
        with torch.device("meta"):
            _MODELS[key] = vgg(c["config"], batch_norm=c["batchNorm"],
                               num_classes=c["numClasses"])
    return summary(_MODELS[key], (c["batch"], 3, c["side"], c["side"]),
                   count_bias=c["countBias"])


def _compare(case: dict, got: dict) -> None:
    assert "error" not in got, f"{case}: {got.get('error')}"
    expected = _summary(case)
    rows = got["rows"]
    assert len(rows) == len(expected.rows), case
    for r, e in zip(rows, expected.rows):
        where = f"{case} row {e.name}"
        assert r["name"] == e.name, where
        assert r["type"] == e.type, where
        assert tuple(r["outShape"]) == e.output_shape, where
        assert r["params"] == e.params, where
        assert r["macs"] == e.macs, where
        assert r["activations"] == e.activations, where
    assert got["bytes"]["float32"] == [e.bytes_fp32 for e in expected.rows], case
    assert got["bytes"]["bfloat16"] == [e.bytes_bf16 for e in expected.rows], case
    assert got["bytes"]["float16"] == [e.bytes_bf16 for e in expected.rows], case
    for dtype, size in ae.DTYPES.items():
        t = got["totals"][dtype]
        assert t["params"] == expected.total_params, case
        assert t["macs"] == expected.total_macs, case
        assert t["flops"] == expected.total_flops, case
        assert t["activations"] == expected.total_activations, case
        assert t["activationBytes"] == size * expected.total_activations, case
        assert t["weightBytes"] == size * expected.total_params, case
        assert t["gmacs"] == expected.total_macs / 1e9, case
        assert t["gflops"] == expected.total_flops / 1e9, case


@pytest.fixture(scope="module")
def js_output() -> tuple[list[dict], dict]:
    if NODE is None:
        pytest.skip("Node.js is not installed")
    cases = _cases()
    return cases, run_js(cases)


@needs_node
def test_js_rows_and_totals_equal_summary(js_output):
    cases, out = js_output
    assert len(cases) >= 200 and len(out["results"]) == len(cases)
    for case, got in zip(cases, out["results"]):
        _compare(case, got)


@needs_node
def test_js_dtypes_and_constants_equal_the_library(js_output):
    _, out = js_output
    assert "configs" not in out  # the module holds no copy of CONFIGS any more
    assert out["dtypes"] == ae.DTYPES
    assert out["dtypes"]["float32"] == BYTES["fp32"] and out["dtypes"]["bfloat16"] == BYTES["bf16"]
    assert out["minSide"] == MIN_INPUT_SIZE
    assert (out["maxSide"], out["maxBatch"]) == (ae.MAX_SIDE, ae.MAX_BATCH)
    assert out["formatted"] == [[n, f"{n:,}"] for n, _ in out["formatted"]]
    assert [s for _, s in out["short"]] == ["0", "1.79k", "590k", "1M", "138M", "15.5G"]
    assert [s for _, s in out["bytes"]] == ["512 B", "100 MiB", "528 MiB", "2 GiB"]
    assert out["fixed"] == "6,530.89"


@needs_node
def test_js_rejects_what_the_library_rejects():
    bad = [_case("D", False, 31, 1, True), _case("D", False, 224, 1, True, layers=[]),
           _case("D", False, 224, 1, True, layers="D"),
           _case("D", False, 224, 1, True, layers=[64, ["3x3", 64], "M"]),
           _case("D", False, 224, 0, True), _case("D", False, 224.5, 1, True)]
    out = run_js(bad)
    assert len(out["results"]) == len(bad)
    for case, got in zip(bad, out["results"]):
        assert "error" in got, case
    with torch.device("meta"):
        model = vgg("D")
    with pytest.raises(ValueError, match="too small"):
        summary(model, (1, 3, 31, 31))


@needs_node
def test_a_broken_formula_is_caught(tmp_path):
    """The comparison fails for real: drop the bias add from the convolutions' MACs."""
    text = MODULE.read_text()
    needle = "const perOutput = cin * k * k + (countBias ? 1 : 0);"
    assert needle in text
    broken = tmp_path / "broken.mjs"
    broken.write_text(text.replace(needle, "const perOutput = cin * k * k;"))
    case = _case("A", False, 64, 1, True)
    got = run_js([case], broken)["results"][0]
    with pytest.raises(AssertionError):
        _compare(case, got)
    # and the untouched file passes the same case
    _compare(case, run_js([case])["results"][0])


def test_module_is_self_contained():
    text = MODULE.read_text()
    assert "export default" in text and "render" in text
    for forbidden in ("import ", "import(", "fetch(", "http://", "https://", "require("):
        lines = [ln for ln in text.splitlines() if forbidden in ln
                 and not ln.lstrip().startswith("//") and "xmlns" not in ln]
        assert not lines, f"{forbidden!r} in the ES module: {lines}"
    for testid in ("acct-config", "acct-bn", "acct-side", "acct-batch", "acct-dtype",
                   "acct-bias", "acct-params", "acct-macs", "acct-act-bytes"):
        assert f'"{testid}"' in text or f"{testid}" in text


# --------------------------------------------------------------------------------------
# The widget class
# --------------------------------------------------------------------------------------

def test_widget_defaults_and_traits():
    w = ae.AccountingExplorer()
    assert (w.config, w.batch_norm, w.side, w.batch, w.dtype, w.count_bias, w.num_classes) == (
        "D", False, 224, 1, "float32", True, 1000)
    synced = {name for name in w.trait_names(sync=True)}
    assert {"config", "batch_norm", "side", "batch", "dtype", "count_bias",
            "num_classes"} <= synced
    assert w.bytes_per_element == 4


def test_widget_configs_trait_is_the_library_data():
    """The front end's only source of layer lists: CONFIGS in JSON form, synced, in order."""
    w = ae.AccountingExplorer()
    assert "configs" in set(w.trait_names(sync=True))
    assert w.configs == CONFIGS_JSON
    assert list(w.configs) == list(CONFIGS)  # the select's order
    assert w.configs["C"][8] == ["1x1", 256]
    state = w.get_state()["configs"]
    assert state == CONFIGS_JSON and json.loads(json.dumps(state)) == state
    # each widget its own copy: editing one leaves the library and other widgets alone
    w.configs["A"].append(64)
    assert ae.AccountingExplorer().configs["A"] == CONFIGS_JSON["A"] == list(CONFIGS["A"])
    import traitlets
    with pytest.raises(traitlets.TraitError, match="read-only"):
        ae.AccountingExplorer(configs={"A": [64]})


def test_widget_arguments_and_aliases():
    w = ae.AccountingExplorer("vgg19", batch_norm=True, side=100, batch=8, dtype="bfloat16",
                              count_bias=False)
    assert (w.config, w.batch_norm, w.side, w.batch, w.dtype, w.count_bias) == (
        "E", True, 100, 8, "bfloat16", False)
    assert ae.AccountingExplorer("a-lrn").config == "A-LRN"
    assert w.bytes_per_element == 2


@pytest.mark.parametrize("kwargs, match", [
    ({"config": "F"}, "unknown VGG config"),
    ({"config": ["M"]}, "config must be the name"),
    ({"side": 31}, "five 2x2 max-pools"),
    ({"side": 513}, "side must be an integer from 32 to 512"),
    ({"side": 224.0}, "side must be an integer"),
    ({"batch": 0}, "batch must be an integer from 1 to 256"),
    ({"batch": True}, "batch must be an integer"),
    ({"dtype": "float64"}, "dtype must be one of"),
    ({"batch_norm": 1}, "batch_norm must be True or False"),
    ({"count_bias": "yes"}, "count_bias must be True or False"),
    ({"num_classes": 0}, "num_classes must be an integer"),
])
def test_widget_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ae.AccountingExplorer(**kwargs)


def test_widget_later_assignments_are_checked():
    import traitlets

    w = ae.AccountingExplorer()
    w.side = 100
    w.config = "vgg11"
    assert (w.side, w.config) == (100, "A")
    with pytest.raises(traitlets.TraitError, match="five 2x2 max-pools"):
        w.side = 16
    with pytest.raises(traitlets.TraitError, match="dtype"):
        w.dtype = "int8"
    assert w.side == 100


def test_widget_esm_is_the_packaged_file():
    assert ae._ESM == MODULE and MODULE.is_file()
    # anywidget reads the file: the front end it sends (the synced _esm) is the file's text
    w = ae.AccountingExplorer()
    assert w._esm == MODULE.read_text()
    assert w.get_state()["_esm"] == MODULE.read_text()


def test_widget_summary_is_the_library_table():
    w = ae.AccountingExplorer("B", batch_norm=True, side=96, batch=2, count_bias=False)
    s = w.summary()
    assert s.input_shape == (2, 3, 96, 96) and not s.count_bias
    assert s.rows[1].type == "BatchNorm2d"
    assert s.total_params == 133_053_736  # torchvision's vgg13_bn
