"""The trained explorer's engine: its JavaScript against PyTorch, on the shipped weights.

``vgg_book/js/vgg_engine.mjs`` runs the shipped VGG-11 in the reader's browser. Here Node
imports that very file (``tests/js/trained_check.mjs``) and runs it on 200 Fashion-MNIST test
images (a seeded sample) and 50 seeded drawings (strokes on black as a reader draws them, a
blank pad, a white one, pure noise). Its numbers are compared with PyTorch's
(:func:`vgg_book.trained.trained_vgg`, the same float16-rounded weights, through
:mod:`vgg_book.seeing`): every layer's output to 1e-4 of the layer's largest absolute value,
the predicted class, the probabilities, saliency maps (predicted and another class) to 1e-3 of
the map's largest absolute value, switched-off channels; its receptive fields against
:func:`vgg_book.receptive.receptive_field`; its float16 decoding against numpy's.

Saliency needs care. A max-pool sends the gradient to its window's maximum, the first one
on ties (PyTorch's rule). Flat regions (a black background, a white pad) give windows of
equal values, and in float32 whether they come out exactly equal depends on rounding: which
of the four gets the gradient differs between implementations, even between PyTorch batch
sizes, and the map changes by tens of percent. So the reference here is torch.autograd in
float64 with each window's gradient sent to the first maximum of the engine's float32
values (checked to be float64's maximum but for gaps float32 cannot see), and, where no
window ties (pure noise), :func:`vgg_book.seeing.saliency` itself.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vgg_book
from vgg_book import seeing, trained
from vgg_book.data import load_fashion_mnist
from vgg_book.esm import bundle
from vgg_book.receptive import receptive_field
from vgg_book.widgets import rf_box

ROOT = Path(__file__).resolve().parents[1]
ENGINE = Path(vgg_book.__file__).parent / "js" / "vgg_engine.mjs"
HARNESS = ROOT / "tests" / "js" / "trained_check.mjs"
FOLDER = Path(vgg_book.__file__).parent / "trained"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="Node.js is not installed: the explorer's "
                                "JavaScript cannot be run (install Node 18+ to check it)")

N_TEST, N_DRAWN = 200, 50
LAYER_TOL, SALIENCY_TOL, PROB_TOL = 1e-4, 1e-3, 1e-5
#: Switched-off channels: a few layers, a few channels (a pool and fc units too).
OFF = [{"conv1_1": [0, 3]}, {"conv2_1": [1, 5, 7]}, {"conv3_2": list(range(0, 32, 2))},
       {"pool4": [10, 20]}, {"conv5_2": list(range(40))}, {"fc6": list(range(0, 256, 3))},
       {"conv1_1": [6], "conv4_1": [2, 9], "fc7": [5]}]


# --- the images ---------------------------------------------------------------------------
def stroke_drawing(rng: np.random.Generator) -> np.ndarray:
    """A pad drawing: 1..5 polylines of a round brush (radius 1..2.5, soft edge), in white or
    grey, on black."""
    img = np.zeros((28, 28))
    yy, xx = np.mgrid[0:28, 0:28]
    for _ in range(rng.integers(1, 6)):
        points = np.cumsum(rng.normal(0, 5, size=(rng.integers(2, 8), 2)), axis=0)
        points = np.clip(points + rng.uniform(4, 24, size=2), 1, 26)
        radius = rng.choice([1.0, 1.5, 2.0, 2.5])
        value = rng.choice([255, 255, rng.integers(96, 256)])
        for a, b in zip(points[:-1], points[1:]):
            for t in np.linspace(0, 1, int(4 * np.abs(b - a).max()) + 2):
                y, x = a + t * (b - a)
                ink = value * np.clip(radius + 0.5 - np.hypot(yy - y, xx - x), 0, 1)
                img = np.maximum(img, ink)
    return np.round(img).astype(np.uint8)


def drawings(n: int = N_DRAWN, seed: int = 21) -> np.ndarray:
    """n seeded drawings: a blank pad, a white one, 6 of pure noise, the rest strokes."""
    rng = np.random.default_rng(seed)
    noise = [rng.integers(0, 256, size=(28, 28)) for _ in range(4)]
    noise += [(rng.random((28, 28)) < 0.1) * 255 for _ in range(2)]  # salt on black
    pads = [np.zeros((28, 28)), np.full((28, 28), 255)] + noise
    pads += [stroke_drawing(rng) for _ in range(n - len(pads))]
    return np.stack(pads).astype(np.uint8)


def sample_test_images() -> np.ndarray:
    """N_TEST images of the Fashion-MNIST test set, a seeded sample."""
    x, _, _ = load_fashion_mnist(train=False)
    pick = np.sort(np.random.default_rng(6).choice(len(x), N_TEST, replace=False))
    return x[torch.from_numpy(pick)].numpy()


# --- running both sides ---------------------------------------------------------------------
def run_engine(engine: Path, images: np.ndarray, cases: list[dict], tmp: Path, units=(),
               bad_units=(), f16: bool = False) -> tuple[dict, np.ndarray]:
    """The harness's summary and its float32 results."""
    (tmp / "images.u8").write_bytes(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    spec = {"manifest": str(FOLDER / trained.MANIFEST), "weights": str(FOLDER / trained.WEIGHTS),
            "images": str(tmp / "images.u8"), "out": str(tmp / "out.f32"), "cases": cases,
            "units": list(units), "badUnits": list(bad_units),
            "f16": str(tmp / "f16.f32") if f16 else None}
    proc = subprocess.run([NODE, str(HARNESS), str(engine)], input=json.dumps(spec),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), np.fromfile(tmp / "out.f32", dtype="<f4")


def split(summary: dict, values: np.ndarray) -> list[dict]:
    """The flat results, case by case: {input, layers: {name: array}, probs, saliency: [...]}."""
    sizes = [int(np.prod(layer["shape"])) for layer in summary["layers"]]
    out, at = [], 0

    def take(n):
        nonlocal at
        at += n
        return values[at - n:at]
    for pred, classes in zip(summary["preds"], summary["saliencyClasses"]):
        r = {"pred": pred, "input": take(1024),
             "layers": {layer["name"]: take(n) for layer, n in zip(summary["layers"], sizes)},
             "probs": take(10), "saliency": [take(784) for _ in classes]}
        out.append(r)
    assert at == len(values), "the harness wrote more or less than the layout says"
    return out


def windows(x):
    """[..., C, H, W] -> [..., C, H/2, W/2, 4]: each 2x2 pool window, row-major."""
    *lead, c, h, w = x.shape
    x = x.reshape(*lead, c, h // 2, 2, w // 2, 2)
    x = x.permute(*range(len(lead)), -5, -4, -2, -3, -1) if torch.is_tensor(x) else \
        x.transpose(*range(len(lead)), -5, -4, -2, -3, -1)
    return x.reshape(*lead, c, h // 2, w // 2, 4)


def saliency64(model, images: np.ndarray, targets, off: dict, routes: dict) -> tuple:
    """d logits[target] / d (pixel / 255) by torch.autograd in float64, each max-pool's gradient
    to its window's first maximum as the engine's float32 values rank them (``routes``: pool name
    -> [N, C, h, w] index 0..3). Also the largest gap (relative to the layer's largest value)
    between the float64 maximum and that choice where they differ: float32 cannot rank values
    closer than about 1e-7 apart, so the choices may differ only there."""
    m = copy.deepcopy(model).double().eval()
    pre = trained.manifest()["preprocess"]
    names = {id(mod): name for name, mod in seeing.layer_modules(m).items()}
    u = torch.tensor(images, dtype=torch.float64).div(255).requires_grad_(True)
    x = F.interpolate(((u - pre["mean"]) / pre["std"]).unsqueeze(1), size=pre["network_side"],
                      mode="bilinear", align_corners=False)
    gap = 0.0
    assert isinstance(m.avgpool, nn.Identity)
    for mod in [*m.features, nn.Flatten(), *m.classifier]:
        if isinstance(mod, nn.MaxPool2d):
            win = windows(x)
            chosen = torch.from_numpy(routes[names[id(mod)]]).long().unsqueeze(-1)
            x = win.gather(-1, chosen).squeeze(-1)
            top = win.detach().max(-1).values
            scale = float(top.abs().max()) or 1.0
            gap = max(gap, float((top - x.detach()).max()) / scale)
        else:
            x = mod(x)
        name = names.get(id(mod))
        if name in off:
            x = x.clone()
            x[:, off[name]] = 0
    x.gather(1, torch.as_tensor(targets).view(-1, 1)).sum().backward()
    return u.grad.numpy().reshape(len(images), -1), gap


def torch_reference(model, images: np.ndarray, cases: list[dict], summary: dict,
                    results: list[dict]) -> list[dict]:
    """PyTorch's answers for the same cases (each group of cases with the same `off` at once):
    layers and probabilities from vgg_book.seeing, saliency from :func:`saliency64`."""
    refs: list = [None] * len(cases)
    groups: dict[str, list[int]] = {}
    for k, case in enumerate(cases):
        groups.setdefault(json.dumps(case["off"], sort_keys=True), []).append(k)
    layers = summary["layers"]
    for key, ks in groups.items():
        off = json.loads(key)
        x = torch.from_numpy(images[[cases[k]["image"] for k in ks]])
        with seeing.switch_off(model, off):
            acts = seeing.activations(model, x)
        probs = seeing.probabilities(model, x, off)
        pred = probs.argmax(1)
        routes = {}
        for before, layer in zip(layers, layers[1:]):
            if layer["kind"] == "pool":
                vals = np.stack([results[k]["layers"][before["name"]] for k in ks])
                routes[layer["name"]] = windows(vals.reshape(len(ks), *before["shape"])).argmax(-1)
        maps, gaps = [], []
        for j in range(len(cases[ks[0]]["saliency"])):
            target = [pred[i].item() if cases[k]["saliency"][j] is None
                      else cases[k]["saliency"][j] for i, k in enumerate(ks)]
            grad, gap = saliency64(model, images[[cases[k]["image"] for k in ks]], target, off,
                                   routes)
            maps.append(grad)
            gaps.append(gap)
        inputs = trained.network_input(x)
        for i, k in enumerate(ks):
            refs[k] = {"input": inputs[i].numpy().ravel(), "pred": int(pred[i]),
                       "layers": {n: a[i].numpy().ravel() for n, a in acts.items()},
                       "probs": probs[i].numpy(), "saliency": [m[i] for m in maps],
                       "gap": max(gaps)}
    return refs


def rel(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| relative to max |b| (absolute where b is all zero)."""
    scale = float(np.abs(b).max())
    return float(np.abs(a - b).max()) / (scale if scale > 0 else 1.0)


def errors(results: list[dict], refs: list[dict]) -> dict:
    """The worst error of each check over all cases."""
    worst: dict[str, float] = {"input": 0.0, "probs": 0.0, "saliency": 0.0, "preds": 0}
    for js, ref in zip(results, refs):
        worst["input"] = max(worst["input"], rel(js["input"], ref["input"]))
        for name, a in js["layers"].items():
            worst[name] = max(worst.get(name, 0.0), rel(a, ref["layers"][name]))
        worst["probs"] = max(worst["probs"], float(np.abs(js["probs"] - ref["probs"]).max()))
        for a, b in zip(js["saliency"], ref["saliency"]):
            worst["saliency"] = max(worst["saliency"], rel(a, b))
        worst["preds"] += js["pred"] != ref["pred"]
    return worst


def failures(worst: dict) -> list[str]:
    tol = {"probs": PROB_TOL, "saliency": SALIENCY_TOL, "preds": 0}
    return [f"{k}: {v:.3g}" for k, v in worst.items() if v > tol.get(k, LAYER_TOL)]


def unit_cases(model) -> list[list]:
    """Three units of every conv and pool layer: both corners and one inside."""
    cases = []
    for r in receptive_field(model.features, 32):
        if r.layer in ("Conv2d", "MaxPool2d"):
            n = r.output_size
            cases += [[r.name, 0, 0], [r.name, n - 1, n - 1], [r.name, n // 2, (n - 1) // 3]]
    return cases


BAD_UNITS = [(["fc6", 0, 0], "no receptive field for fc6"),
             (["conv9_1", 0, 0], "no receptive field for conv9_1"),
             (["conv1_1", 32, 0], r"conv1_1 has units 0\.\.31"),
             (["conv2_1", -1, 0], r"conv2_1 has units 0\.\.15"),
             (["pool5", 0, 1], r"pool5 has units 0\.\.0"),
             (["conv3_1", 1.5, 2], r"conv3_1 has units 0\.\.7"),
             (["conv3_1", "2", 2], r"conv3_1 has units 0\.\.7")]


@pytest.fixture(scope="module")
def model():
    return trained.trained_vgg()


@pytest.fixture(scope="module")
def checked(model, tmp_path_factory):
    """Node on every case (plain, then switched off), once; PyTorch on the same."""
    images = np.concatenate([sample_test_images(), drawings()])
    preds = seeing.probabilities(model, torch.from_numpy(images)).argmax(1).numpy()
    rng = np.random.default_rng(3)
    other = (preds + rng.integers(1, 10, size=len(images))) % 10  # never the predicted class
    cases = [{"image": i, "off": {}, "saliency": [None, int(other[i])]}
             for i in range(len(images))]
    for j, off in enumerate(OFF):
        for i in (j, N_TEST + 2 + j):  # a test image and a drawing
            cases.append({"image": i, "off": off, "saliency": [None]})
    tmp = tmp_path_factory.mktemp("engine")
    summary, values = run_engine(ENGINE, images, cases, tmp, unit_cases(model),
                                 [u for u, _ in BAD_UNITS], f16=True)
    results = split(summary, values)
    return {"images": images, "cases": cases, "summary": summary, "results": results,
            "refs": torch_reference(model, images, cases, summary, results),
            "f16": np.fromfile(tmp / "f16.f32", dtype="<f4")}


# --- the comparison -------------------------------------------------------------------------
@needs_node
def test_engine_layers_are_the_manifests(checked, model):
    summary = checked["summary"]
    names = seeing.layer_names(model)
    assert [layer["name"] for layer in summary["layers"]] == names
    assert [layer["name"] for layer in trained.manifest()["layers"]] == names
    acts = checked["refs"][0]["layers"]
    shapes = seeing.activations(model, torch.from_numpy(checked["images"][:1]))
    assert [layer["shape"] for layer in summary["layers"]] == [list(a.shape[1:])
                                                             for a in shapes.values()]
    assert all(acts[n].size == np.prod(s["shape"]) for n, s in zip(names, summary["layers"]))
    assert summary["classes"] == trained.manifest()["classes"]


@needs_node
def test_every_layer_matches_pytorch_on_test_images_and_drawings(checked):
    plain = [k for k, c in enumerate(checked["cases"]) if not c["off"]]
    assert len(plain) == N_TEST + N_DRAWN == 250
    worst = errors([checked["results"][k] for k in plain],
                   [checked["refs"][k] for k in plain])
    assert worst["preds"] == 0  # the predicted class of every image and drawing
    assert not failures(worst), failures(worst)
    assert set(worst) >= {"input", "conv1_1", "pool5", "fc8"}
    # the drawings are not trivial: several classes, confident and unsure answers
    drawn = [checked["refs"][k] for k in plain[N_TEST:]]
    assert len({r["pred"] for r in drawn}) >= 3
    assert min(r["probs"].max() for r in drawn) < 0.9 < max(r["probs"].max() for r in drawn)


@needs_node
def test_saliency_matches_pytorch_for_the_predicted_and_another_class(checked):
    summary, cases = checked["summary"], checked["cases"]
    n = 0
    for k, case in enumerate(cases):
        if case["off"]:
            continue
        pred, other = summary["saliencyClasses"][k]
        assert pred == summary["preds"][k] == checked["refs"][k]["pred"]
        assert other == case["saliency"][1] != pred
        for js, ref in zip(checked["results"][k]["saliency"], checked["refs"][k]["saliency"]):
            assert np.abs(ref).max() > 0
            assert rel(js, ref) <= SALIENCY_TOL, (k, rel(js, ref))
            n += 1
    assert n == 2 * (N_TEST + N_DRAWN)
    # the reference routed a pool's gradient elsewhere than float64's maximum only where the
    # two values are closer than float32 can tell (about 1e-7 of the layer's largest)
    assert max(r["gap"] for r in checked["refs"]) < 1e-6


@needs_node
def test_saliency_is_vgg_book_seeing_saliency_where_no_pool_window_ties(checked, model):
    """On pure noise no pool window holds two equal values, and seeing.saliency (float32,
    PyTorch's own max-pool) is defined without ambiguity: the engine's maps are the same."""
    ks = range(N_TEST + 2, N_TEST + 6)  # the drawings of uniform noise
    x = torch.from_numpy(checked["images"][list(ks)])
    for j in range(2):
        target = [checked["summary"]["saliencyClasses"][k][j] for k in ks]
        ref = seeing.saliency(model, x, target).numpy().reshape(len(ks), -1)
        for i, k in enumerate(ks):
            assert rel(checked["results"][k]["saliency"][j], ref[i]) <= SALIENCY_TOL, (k, j)


@needs_node
def test_switched_off_channels_match_pytorch(checked):
    ks = [k for k, c in enumerate(checked["cases"]) if c["off"]]
    assert len(ks) == 2 * len(OFF)
    worst = errors([checked["results"][k] for k in ks],
                   [checked["refs"][k] for k in ks])
    assert not failures(worst), failures(worst)
    changed = 0
    for k in ks:
        case, js = checked["cases"][k], checked["results"][k]
        for name, chans in case["off"].items():
            shape = next(s["shape"] for s in checked["summary"]["layers"] if s["name"] == name)
            assert not js["layers"][name].reshape(shape[0], -1)[chans].any()
        plain = checked["results"][case["image"]]["probs"]
        changed += float(np.abs(js["probs"] - plain).max()) > 1e-3
    assert changed >= len(ks) // 2  # switching channels off does change the answers


@needs_node
def test_unit_fields_are_the_receptive_field_library(checked, model):
    records = {r.name: r for r in receptive_field(model.features, 32)}
    cases = unit_cases(model)
    assert len(cases) == 3 * 13  # 8 convs and 5 pools
    for (name, row, col), field in zip(cases, checked["summary"]["units"]):
        rec = records[name]
        left, top, width, height = rf_box(rec, (row, col))
        assert (field["left"], field["top"], field["right"], field["bottom"]) == (
            left, top, left + width, top + height), (name, row, col)
        assert (field["size"], field["jump"], field["start"]) == (rec.size, rec.stride, rec.start)
    assert checked["summary"]["units"][-3]["size"] == 150  # pool5 sees more than the input


@needs_node
def test_engine_refuses_bad_input_clearly(checked):
    for (unit, match), message in zip(BAD_UNITS, checked["summary"]["badUnits"]):
        assert message is not None and re.search(match, message), (unit, message)
    assert "conv5_2, pool5" in checked["summary"]["badUnits"][0]  # names what is allowed
    expected = {"shortImage": r"expected 784 pixels .*got 783",
                "badClass": r"class must be an integer 0\.\.9, got 10",
                "offLayer": r"off maps a layer \(conv1_1, .*\) to a list of channels; got conv9_1",
                "offChannel": r"layer conv1_1 has channels 0\.\.7; got 8",
                "offNotList": r"list of channels; got conv1_1",
                "truncated": r"the weights hold 230793 values, the manifest expects 230794",
                "oddBytes": r"3 bytes, an odd number",
                "notBytes": r"expects a Uint8Array, DataView or ArrayBuffer",
                "noManifest": r"expects the manifest of vgg_book.trained"}
    assert set(checked["summary"]["errors"]) == set(expected)
    for key, match in expected.items():
        message = checked["summary"]["errors"][key]
        assert message is not None and re.search(match, message), (key, message)


@needs_node
def test_decode_float16_is_numpys_on_every_bit_pattern(checked):
    js = checked["f16"]
    ref = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
    assert js.shape == ref.shape == (65536,)
    nan = np.isnan(ref)
    assert nan.sum() == 2046 and np.array_equal(np.isnan(js), nan)
    assert np.array_equal(js[~nan].view(np.uint32), ref[~nan].view(np.uint32))  # -0, inf too


@needs_node
def test_harness_catches_a_broken_engine(tmp_path, model):
    """The comparison is not vacuous: the bundled module with a wrong resize, a shifted
    padding or the last maximum of a pool window (instead of the first) fails it."""
    text = bundle("vgg_engine.mjs")  # receptive.mjs inlined: the file stands alone
    images = np.concatenate([sample_test_images()[:8], drawings()[:6]])
    cases = [{"image": i, "off": {}, "saliency": [None]} for i in range(len(images))]
    breaks = {"resize": ("(d + 0.5) * Math.fround(n / N) - 0.5",  # align_corners=True instead
                         "d * Math.fround((n - 1) / (N - 1))"),
              "padding": ("c * P + (y + 1) * S + 1", "c * P + y * S + 1"),
              "ties": ("if (x[j + 1] > x[m]) m = j + 1;", "if (x[j + 1] >= x[m]) m = j + 1;")}
    found, refs = {}, None
    for name, (old, new) in [("none", ("", ""))] + list(breaks.items()):
        assert old in text, name
        engine = tmp_path / f"{name}.mjs"
        engine.write_text(text.replace(old, new) if old else text, encoding="utf-8")
        summary, values = run_engine(engine, images, cases, tmp_path)
        results = split(summary, values)
        # PyTorch's answers once, the pools' routes from the intact engine's values
        refs = refs or torch_reference(model, images, cases, summary, results)
        found[name] = failures(errors(results, refs))
    assert found["none"] == []  # the bundle alone computes the same as the file
    assert any(f.startswith("input") for f in found["resize"]), found
    assert any(f.startswith("conv1_1") for f in found["padding"]), found
    assert [f.split(":")[0] for f in found["ties"]] == ["saliency"], found  # forward unchanged


# --- the file the page gets -----------------------------------------------------------------
def test_engine_module_is_small_and_imports_only_receptive():
    text = ENGINE.read_text(encoding="utf-8")
    assert len(text.encode()) <= 12 * 1024  # 12 KiB, comments included
    assert re.findall(r"^\s*import\b.*$", text, re.M) == [
        'import { stackTable } from "./receptive.mjs";']
    assert not re.search(r"\bimport\(|\brequire\(|\bfetch\(|XMLHttpRequest|\bdocument\b|"
                         r"\bwindow\b|export default", text)
    exports = re.findall(r"^export function (\w+)\(", text, re.M)
    assert exports == ["decodeFloat16", "buildNetwork", "networkInput", "forward", "saliency",
                       "unitField"]
    bundled = bundle("vgg_engine.mjs")
    assert 'from "./' not in bundled and "export function stackTable(" in bundled
    assert bundled.endswith(text.split('import { stackTable } from "./receptive.mjs";\n')[1])
