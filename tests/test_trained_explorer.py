"""The live explorer of the trained network (vgg_book.trained_explorer): the Python widget.

The front end (``vgg_book/js/trained_explorer.mjs`` with the engine ``vgg_engine.mjs``) is
checked against PyTorch in Node by ``tests/test_trained_engine.py`` and, driven as a reader
would, in the built page by ``tools/browser_test.py`` (``tools/explorer_checks.py``:
``trained_explorer``). Here: the widget's defaults and traits, its validation messages, that
it sends the shipped bytes themselves, the size of its state in a page, the bundled module
(engine and receptive-field arithmetic inlined, nothing imported or fetched), its PyTorch
methods, and that the browser check's comparisons catch a wrong page.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import traitlets
from ipywidgets.embed import dependency_state

import vgg_book
from vgg_book import seeing
from vgg_book.receptive import receptive_field
from vgg_book.trained import explorer_images, trained_vgg
from vgg_book.trained_explorer import TrainedExplorer, map_layers, unit_field

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(vgg_book.__file__).parent
sys.path.insert(0, str(ROOT / "tools"))
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="Node.js is not installed")

#: The chapter page's budget is 2 MB with everything on it; one explorer may take this much.
STATE_BUDGET = 900_000


@pytest.fixture(scope="module")
def widget():
    return TrainedExplorer()


@pytest.fixture(scope="module")
def picker():
    return explorer_images()


def test_defaults(widget, picker):
    images, _ = picker
    assert widget.index == 0
    assert widget.pixels == images[0].flatten().tolist()
    assert widget.layer == "conv2_1" and widget.target == -1 and widget.off == {}
    assert torch.equal(widget.image(), images[0])


def test_synced_bytes_are_the_shipped_files(widget):
    folder = PACKAGE / "trained"
    assert widget.weights == (folder / "cpu_vgg11.f16").read_bytes()
    assert len(widget.weights) == 461_588
    assert widget.images == (folder / "explorer_images.u8").read_bytes()
    assert len(widget.images) == 120 * 784
    assert widget.manifest == json.loads((folder / "cpu_vgg11.json").read_text())
    for name in ("weights", "images", "manifest"):
        assert widget.trait_metadata(name, "sync")
        with pytest.raises(traitlets.TraitError, match="read-only"):
            setattr(widget, name, widget.manifest if name == "manifest" else b"")


def test_map_layers_are_the_convs_and_pools():
    assert map_layers() == ["conv1_1", "pool1", "conv2_1", "pool2", "conv3_1", "conv3_2",
                            "pool3", "conv4_1", "conv4_2", "pool4", "conv5_1", "conv5_2",
                            "pool5"]


def test_state_in_a_page_is_small_and_holds_the_buffers(widget):
    state = dependency_state([widget])
    entry = state[widget.model_id]
    paths = sorted(b["path"] for b in entry["buffers"])
    assert paths == [["images"], ["weights"]]
    assert all(b["encoding"] == "base64" for b in entry["buffers"])
    size = len(json.dumps(state))
    # base64 of the weights alone is 4/3 of 461,588 bytes
    assert 4 * 461_588 / 3 < size < STATE_BUDGET, size


def test_picking_and_drawing_from_python(picker):
    images, _ = picker
    w = TrainedExplorer(index=7)
    assert w.pixels == images[7].flatten().tolist()
    w.index = 42
    assert w.pixels == images[42].flatten().tolist()
    drawn = list(w.pixels)
    drawn[0] = 255 - drawn[0]
    w.pixels = drawn
    assert w.index == -1 and w.pixels == drawn
    w.pixels = images[3].flatten().tolist()  # a drawing that equals no picked image: still -1
    assert w.index == -1
    mine = TrainedExplorer(images[5].numpy())
    assert mine.index == -1 and mine.pixels == images[5].flatten().tolist()


def test_updates_from_the_page(picker):
    """What the front end sends (``set_state``, as ipywidgets applies a message from the
    page): a pick, a drawing, channels off, another layer and target."""
    images, _ = picker
    w = TrainedExplorer()
    w.set_state({"index": 50, "pixels": images[50].flatten().tolist()})
    assert w.index == 50 and torch.equal(w.image(), images[50])
    drawn = [255] * 784
    w.set_state({"index": -1, "pixels": drawn})
    assert w.index == -1 and w.pixels == drawn
    w.set_state({"off": {"conv2_1": [2]}, "layer": "pool3", "target": 4})
    assert (w.off, w.layer, w.target) == ({"conv2_1": [2]}, "pool3", 4)
    assert torch.equal(w.probabilities(), seeing.probabilities(
        trained_vgg(), torch.full((28, 28), 255, dtype=torch.uint8), {"conv2_1": [2]})[0])


def test_off_is_checked_and_tidied():
    w = TrainedExplorer(off={"conv2_1": [5, 3, 3], "conv1_1": []})
    assert w.off == {"conv2_1": [3, 5]}
    w.off = {"fc6": [255], "pool5": [0]}
    assert w.off == {"fc6": [255], "pool5": [0]}


@pytest.mark.parametrize("kwargs, message", [
    ({"layer": "fc6"}, r"layer 'fc6' has no feature maps to show; choose one of conv1_1, "
                       r"pool1, conv2_1"),
    ({"layer": "conv9_9"}, r"layer 'conv9_9' has no feature maps"),
    ({"off": {"conv9": [0]}}, r"off: unknown layer 'conv9'; the network's layers are conv1_1"),
    ({"off": {"conv2_1": [16]}}, r"off\['conv2_1'\]: layer conv2_1 has channels 0..15; got 16"),
    ({"off": {"conv2_1": 3}}, r"off\['conv2_1'\] must be a list of channels, got 3"),
    ({"off": ["conv2_1"]}, r"off must be a dict of layer name -> list of channels"),
    ({"index": 120}, r"index must be an integer in 0..119 \(a picker image; or pass image=\)"),
    ({"target": 10}, r"target must be an integer in -1..9"),
    ({"image": torch.zeros(32, 32)}, r"image must be 28x28 .*got shape \(32, 32\)"),
    ({"image": torch.full((28, 28), 300)}, r"whole numbers 0..255"),
])
def test_bad_arguments_say_what_is_expected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainedExplorer(**kwargs)


def test_bad_traits_later_are_refused_too():
    w = TrainedExplorer()
    with pytest.raises(ValueError, match="784 whole numbers 0..255"):
        w.pixels = [0] * 783
    with pytest.raises(ValueError, match="784 whole numbers 0..255"):
        w.pixels = [256] * 784
    with pytest.raises(ValueError, match="has no feature maps"):
        w.layer = "fc8"
    with pytest.raises(ValueError, match="index must be an integer in -1..119"):
        w.index = -2
    with pytest.raises(ValueError, match="layer pool1 has channels 0..7; got 8"):
        w.off = {"pool1": [8]}
    assert (w.layer, w.off, w.index) == ("conv2_1", {}, 0)


def test_pytorch_methods(picker):
    images, _ = picker
    model = trained_vgg()
    w = TrainedExplorer(index=11, target=3, off={"conv3_1": [1, 2]})
    expected = seeing.probabilities(model, images[11], {"conv3_1": [1, 2]})[0]
    assert torch.allclose(w.probabilities(), expected, atol=0, rtol=0)
    plain = seeing.probabilities(model, images[11])[0]
    assert not torch.equal(w.probabilities(), plain)  # the channels off matter
    assert w.predicted() == int(expected.argmax())
    sal = w.saliency()
    assert sal.shape == (28, 28)
    assert torch.equal(sal, seeing.saliency(model, images[11], 3, {"conv3_1": [1, 2]})[0])
    maps = w.activations("conv3_1")
    assert maps.shape == (32, 8, 8)
    assert maps[1].abs().sum() == 0 and maps[2].abs().sum() == 0 and maps[0].abs().sum() > 0
    assert w.activations().shape == (16, 16, 16)  # the widget's layer, conv2_1


def test_unit_field_is_receptive_field_arithmetic():
    records = {r.name: r for r in receptive_field(trained_vgg().features, 32)}
    for name in map_layers():
        rec = records[name]
        size, jump, start = rec.size_hw[0], rec.stride_hw[0], rec.start_hw[0]
        side = rec.output_hw[0]
        for row, col in {(0, 0), (side - 1, 0), (side // 2, side - 1)}:
            f = unit_field(name, row, col)
            assert f["top"] == start + row * jump - size / 2
            assert f["left"] == start + col * jump - size / 2
            assert f["bottom"] - f["top"] == f["right"] - f["left"] == size
    assert unit_field("conv1_1", 0, 0) == {"top": -1.5, "left": -1.5, "bottom": 1.5,
                                           "right": 1.5, "size": 3, "jump": 1, "start": 0.0}
    with pytest.raises(ValueError, match="layer 'fc6' has no feature maps"):
        unit_field("fc6", 0, 0)
    with pytest.raises(ValueError, match=r"row must be an integer in 0..7 \(conv3_1's output "
                                         r"is 8x8\), got 8"):
        unit_field("conv3_1", 8, 0)


def test_bundle_holds_the_engine_and_imports_nothing():
    text = TrainedExplorer._esm
    assert "// ---- inlined from vgg_book/js/vgg_engine.mjs" in text
    assert "// ---- inlined from vgg_book/js/receptive.mjs" in text
    assert text.count("// ---- inlined from vgg_book/js/receptive.mjs") == 1
    assert not re.search(r"^\s*(import|export)\s[^\n]*\bfrom\b", text, re.M)
    assert "import(" not in text and "fetch(" not in text and "XMLHttpRequest" not in text
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text)  # no URL but SVG's
    assert not re.search(r"\bconsole\.\w+\(", text)  # the browser test fails on console errors
    assert text.count("export default") == 1


@needs_node
def test_bundle_runs_in_node_on_the_synced_traits(tmp_path, widget, picker):
    """The module string the page gets imports in Node (no DOM until ``render``), and its
    engine, fed the synced traits as the page gets them (the manifest, the weights' bytes,
    the picker's bytes), gives PyTorch's probabilities for picker image 0."""
    (tmp_path / "bundle.mjs").write_text(TrainedExplorer._esm, encoding="utf-8")
    (tmp_path / "manifest.json").write_text(json.dumps(widget.manifest), encoding="utf-8")
    (tmp_path / "weights.f16").write_bytes(widget.weights)
    (tmp_path / "images.u8").write_bytes(widget.images)
    script = """
      const { readFileSync } = await import("node:fs");
      const dir = process.argv[1];
      const m = await import(dir + "/bundle.mjs");
      const manifest = JSON.parse(readFileSync(dir + "/manifest.json", "utf8"));
      const weights = new DataView(readFileSync(dir + "/weights.f16").buffer.slice(0));
      const images = new Uint8Array(readFileSync(dir + "/images.u8"));
      const net = m.buildNetwork(manifest, weights);
      const out = m.forward(net, images.subarray(0, 784));
      console.log(JSON.stringify({ render: typeof m.default.render,
                                   probs: Array.from(out.probs) }));
    """
    out = subprocess.run([NODE, "--input-type=module", "-e", script, str(tmp_path)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    found = json.loads(out)
    assert found["render"] == "function"
    expected = seeing.probabilities(trained_vgg(), picker[0][0])[0]
    assert torch.allclose(torch.tensor(found["probs"]), expected, atol=1e-5, rtol=0)


def test_browser_check_catches_a_wrong_page(picker):
    """``_te_agree`` (the browser test's comparison) passes PyTorch's own numbers and flags
    probabilities off by more than the tolerance, a wrong prediction, or channels off that
    the page ignored."""
    from explorer_checks import PROB_TOLERANCE, _te_agree

    images, _ = picker
    model = trained_vgg()
    pixels = images[9].flatten().tolist()
    probs = seeing.probabilities(model, images[9])[0].tolist()
    right = {"pixels": pixels, "probs": probs, "predicted": int(torch.tensor(probs).argmax())}
    problems: list[str] = []
    _te_agree(problems, "right", right, model)
    assert problems == []
    wrong = dict(right, probs=[p + (3 * PROB_TOLERANCE if i == 0 else 0)
                               for i, p in enumerate(probs)])
    _te_agree(problems, "wrong", wrong, model)
    assert len(problems) == 1 and "wrong: probabilities differ" in problems[0]
    problems.clear()
    _te_agree(problems, "off ignored", right, model, {"conv2_1": list(range(8))})
    assert problems and "off ignored: probabilities differ" in problems[0]


def test_browser_test_fails_a_chapter_page_over_its_budget(tmp_path):
    from browser_test import PAGE_BUDGETS, size_problems

    page = "chapters/06_what_vgg_sees.html"
    assert PAGE_BUDGETS[page] == 2_000_000
    (tmp_path / "chapters").mkdir()
    (tmp_path / page).write_bytes(b"x" * 2_000_000)
    assert size_problems(page, tmp_path) == []
    (tmp_path / page).write_bytes(b"x" * 2_000_001)
    assert size_problems(page, tmp_path) == [
        "page size: 2,000,001 bytes, over the budget of 2,000,000"]
    assert size_problems("chapters/02_receptive_fields.html", tmp_path) == []  # no budget
