"""Drive the book's explorers in a built page, as a reader would, and check their numbers.

Used by ``tools/browser_test.py`` (network off): for each page with an explorer, a function
moves the controls with the keyboard and the pointer, reads the numbers the widget shows
(elements with ``data-testid``), and compares them with what ``vgg_book`` computes for the
same setting in Python. It also checks that the drawing changed, and takes a screenshot of
the explorer before and after. Returns a list of problems (empty: fine).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import torch
from torch import nn

from vgg_book.accounting import summary
from vgg_book.models import vgg
from vgg_book.receptive import receptive_field
from vgg_book.widgets import stack_summary

#: Largest difference allowed between a probability the page shows and PyTorch's.
PROB_TOLERANCE = 1e-4
#: ... and between its saliency map and the engine's in Node, relative to the map's largest
#: value (the same code on the same input: equal but for the last bits).
SALIENCY_TOLERANCE = 1e-6


def _text(page, testid: str) -> str | None:
    node = page.query_selector(f'[data-testid="{testid}"]')
    return node.inner_text().strip() if node else None


def _shot(page, selector: str, path: Path) -> None:
    """A screenshot of the element (scrolled into view, the sticky header out of the way)."""
    page.locator(selector).first.scroll_into_view_if_needed()
    page.locator(selector).first.screenshot(path=str(path))


def _expect(problems: list[str], what: str, shown, expected) -> None:
    if shown != expected:
        problems.append(f"{what}: the page shows {shown!r}, vgg_book gives {expected!r}")


def _settle(page) -> None:
    page.wait_for_timeout(150)


def accounting_explorer(page, shots: Path) -> list[str]:
    """Chapter 4: configuration (keyboard), batch norm (pointer), input side (keyboard)."""
    problems: list[str] = []
    if page.query_selector(".vggb-acct") is None:
        return ["accounting explorer: not rendered"]
    _shot(page, ".vggb-acct", shots / "explorer_accounting_before.png")

    def check(config: str, bn: bool, side: int, label: str) -> None:
        with torch.device("meta"):
            s = summary(vgg(config, batch_norm=bn), (1, 3, side, side))
        _expect(problems, f"{label}: parameters", _text(page, "acct-params"),
                f"{s.total_params:,}")
        _expect(problems, f"{label}: MACs", _text(page, "acct-macs"), f"{s.total_macs:,}")
        _expect(problems, f"{label}: activation values", _text(page, "acct-act-values"),
                f"{s.total_activations:,}")

    check("D", False, 224, "as built (D, 224)")
    chart_before = page.inner_html('[data-testid="acct-chart"]')
    page.focus('[data-testid="acct-config"]')  # keyboard: the next configuration, E
    page.keyboard.press("ArrowDown")
    _settle(page)
    check("E", False, 224, "keyboard: configuration E")
    page.click('[data-testid="acct-bn"]')  # pointer: batch norm on
    _settle(page)
    check("E", True, 224, "pointer: batch norm")
    page.focus('[data-testid="acct-side-range"]')  # keyboard: the side slider, 224 -> 227
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    _settle(page)
    side = int(page.input_value('[data-testid="acct-side"]'))
    if side != 227:
        problems.append(f"keyboard: the side slider moved to {side}, expected 227")
    check("E", True, side, f"keyboard: side {side}")
    if page.inner_html('[data-testid="acct-chart"]') == chart_before:
        problems.append("the bars did not change with the settings")
    _shot(page, ".vggb-acct", shots / "explorer_accounting_after.png")
    return problems


def _stack_rf(layers: list[tuple[str, int]], channels: int):
    """Field of the last layer of a stack of ("conv", k) / ("pool", 2) and the weight counts."""
    modules: list[nn.Module] = []
    with torch.device("meta"):
        for kind, k in layers:
            modules.append(nn.Conv2d(channels, channels, k, padding=k // 2, bias=False)
                           if kind == "conv" else nn.MaxPool2d(k))
        last = receptive_field(nn.Sequential(*modules), 224)[-1]
        big = nn.Conv2d(channels, channels, last.size, stride=last.stride, bias=False)
    weights = sum(p.numel() for m in modules for p in m.parameters())
    return last, weights, big.weight.numel()


def rf_explorer(page, shots: Path) -> list[str]:
    """Chapter 2: add layers (pointer, keyboard), then a VGG configuration and layer."""
    problems: list[str] = []
    if page.query_selector(".vggb-rf") is None:
        return ["receptive-field explorer: not rendered"]
    _shot(page, ".vggb-rf", shots / "explorer_rf_before.png")
    s = stack_summary(3, 3, channels=64)
    _expect(problems, "as built: field", _text(page, "rf-size"), str(s.rf))
    _expect(problems, "as built: stack weights", _text(page, "rf-stack-params"),
            f"{s.stack_weights:,}")
    box_before = page.get_attribute('[data-testid="rf-draw-28"]', "data-box")

    layers = [("conv", 3)] * 3
    page.click('[data-testid="rf-add-conv5"]')  # pointer: a 5x5 convolution
    layers.append(("conv", 5))
    page.focus('[data-testid="rf-add-pool"]')  # keyboard: a 2x2 pool
    page.keyboard.press("Enter")
    layers.append(("pool", 2))
    _settle(page)
    last, weights, big = _stack_rf(layers, 64)
    _expect(problems, "3x3 x3, 5x5, pool: field", _text(page, "rf-size"), str(last.size))
    _expect(problems, "3x3 x3, 5x5, pool: jump", _text(page, "rf-jump"), str(last.stride))
    _expect(problems, "3x3 x3, 5x5, pool: stack weights", _text(page, "rf-stack-params"),
            f"{weights:,}")
    _expect(problems, "3x3 x3, 5x5, pool: one big kernel", _text(page, "rf-big-params"),
            f"{big:,}")
    if page.get_attribute('[data-testid="rf-draw-28"]', "data-box") == box_before:
        problems.append("the drawing on the 28x28 image did not change with the stack")

    page.select_option('[data-testid="rf-mode"]', "vgg")
    page.select_option('[data-testid="rf-config"]', "E")
    page.select_option('[data-testid="rf-layer"]', "pool5")
    _settle(page)
    with torch.device("meta"):
        rec = {r.name: r for r in receptive_field(vgg("E").features, 224)}["pool5"]
    _expect(problems, "VGG E pool5: field", _text(page, "rf-size"), str(rec.size))
    _expect(problems, "VGG E pool5: jump", _text(page, "rf-jump"), str(rec.stride))
    _expect(problems, "VGG E pool5: output side", _text(page, "rf-out"), str(rec.output_size))
    _shot(page, ".vggb-rf", shots / "explorer_rf_after.png")
    return problems


def _shot_top(page, selector: str, path: Path) -> None:
    """A screenshot of an element taller than the window, taken from the top of the page so
    that the theme's sticky header does not cover it."""
    page.evaluate("window.scrollTo(0, 0)")
    box = page.locator(selector).first.bounding_box()
    page.screenshot(path=str(path), full_page=True, clip=box)


def _te_state(page) -> dict:
    """What the trained explorer shows: probabilities, the input the network got, the picked
    image, the channels off, the drawn field, the last forward pass's time."""
    return page.evaluate("""() => {
      const q = (id) => document.querySelector(`[data-testid="${id}"]`);
      const probs = q("te-probs"), field = q("te-field"), time = q("te-time");
      return {
        probs: JSON.parse(probs.dataset.probs || "null"),
        predicted: Number(probs.dataset.predicted),
        pixels: (probs.dataset.pixels || "").split(",").filter((v) => v !== "").map(Number),
        index: Number(q("te-picker").dataset.index),
        off: JSON.parse(q("te-off").dataset.off || "null"),
        field: field && field.dataset.layer ? Object.fromEntries(["layer", "channel", "row",
          "col", "top", "left", "bottom", "right", "size"].map((k) => [k,
          k === "layer" ? field.dataset[k] : Number(field.dataset[k])])) : null,
        saliency: JSON.parse(q("te-saliency").dataset.saliency || "null"),
        saliency_target: Number(q("te-saliency").dataset.target),
        ms: Number(time.dataset.ms), median: Number(time.dataset.median),
        passes: Number(time.dataset.passes),
        message: q("te-message").textContent,
      };
    }""")


def _te_agree(problems: list[str], what: str, shown: dict, model, off=None) -> list[float]:
    """The page's probabilities against PyTorch's for the 28x28 input read back from the page
    (``vgg_book.seeing.switch_off`` for the channels off); PyTorch's, as a list."""
    from vgg_book.seeing import probabilities, switch_off

    if len(shown["pixels"]) != 28 * 28 or not shown["probs"]:
        problems.append(f"{what}: the page shows no input or no probabilities")
        return []
    image = torch.tensor(shown["pixels"], dtype=torch.uint8).reshape(28, 28)
    with switch_off(model, off or {}):
        expected = probabilities(model, image)[0]
    gap = (torch.tensor(shown["probs"], dtype=torch.float64) - expected.double()).abs().max()
    print(f"       trained explorer, {what}: probabilities within {gap.item():.1e} of PyTorch's")
    if not gap <= PROB_TOLERANCE:
        problems.append(f"{what}: probabilities differ from PyTorch's by {gap.item():.2e} "
                        f"(page {shown['probs']}, PyTorch {expected.tolist()})")
    if shown["predicted"] != int(expected.argmax()):
        problems.append(f"{what}: the page predicts class {shown['predicted']}, PyTorch "
                        f"{int(expected.argmax())}")
    return expected.tolist()


#: Node runs the engine on the page's input (argv: the engine's path; stdin: the case).
NODE_SALIENCY = """
const { readFileSync } = await import("node:fs");
const { pathToFileURL } = await import("node:url");
const E = await import(pathToFileURL(process.argv[1]).href);
const spec = JSON.parse(readFileSync(0, "utf8"));
const net = E.buildNetwork(spec.manifest, new Uint8Array(readFileSync(spec.weights)));
const map = E.saliency(net, Uint8Array.from(spec.pixels), spec.target, spec.off);
console.log(JSON.stringify(Array.from(map)));
"""


def _te_saliency(problems: list[str], what: str, shown: dict, model, target: int,
                 off=None) -> None:
    """The page's saliency map: of the right class, and the engine's for the page's input and
    channels off (the engine run by Node; ``tests/test_trained_engine.py`` checks the engine
    against PyTorch). Its distance to ``vgg_book.seeing.saliency`` is printed, not asserted:
    in a blank background a 2x2 max-pool window holds values equal up to rounding, and which
    one takes the gradient depends on the order of float32 sums (the engine's test compares
    with PyTorch along the engine's own choices)."""
    import vgg_book
    from vgg_book.seeing import saliency
    from vgg_book.trained import WEIGHTS, manifest

    if shown["saliency_target"] != target:
        problems.append(f"{what}: the saliency map is of class {shown['saliency_target']}, "
                        f"expected {target}")
    if not shown["saliency"] or len(shown["saliency"]) != 28 * 28:
        problems.append(f"{what}: the page shows no saliency map")
        return
    page_map = torch.tensor(shown["saliency"], dtype=torch.float64)
    image = torch.tensor(shown["pixels"], dtype=torch.uint8).reshape(28, 28)
    ref = saliency(model, image, target, off or {})[0].flatten().double()
    cosine = float(page_map @ ref / (page_map.norm() * ref.norm()))
    node = shutil.which("node")
    if node is None:
        print(f"       trained explorer, {what}: no Node.js, the saliency map is not checked")
        return
    spec = {"manifest": manifest(), "weights": str(Path(vgg_book.__file__).parent / "trained"
                                                   / WEIGHTS),
            "pixels": shown["pixels"], "target": target, "off": off or {}}
    run = subprocess.run([node, "--input-type=module", "-e", NODE_SALIENCY,
                          str(Path(vgg_book.__file__).parent / "js" / "vgg_engine.mjs")],
                         input=json.dumps(spec), capture_output=True, text=True, timeout=120)
    if run.returncode:
        problems.append(f"{what}: the engine failed in Node: {run.stderr.strip()[-300:]}")
        return
    engine = torch.tensor(json.loads(run.stdout), dtype=torch.float64)
    gap = float((page_map - engine).abs().max() / engine.abs().max())
    print(f"       trained explorer, {what}: saliency within {gap:.1e} of the engine's in "
          f"Node; cosine {cosine:.3f} with vgg_book.seeing.saliency")
    if not gap <= SALIENCY_TOLERANCE:
        problems.append(f"{what}: the saliency map differs from the engine's by {gap:.2e} of "
                        "its largest value (wrong input, class or channels off?)")


def trained_explorer(page, shots: Path) -> list[str]:
    """Chapter 6: draw a stroke (pointer) and paint (keyboard) on the pad, pick test images
    (pointer, keyboard), point at a unit of a map, switch channels off (pointer, keyboard);
    every time the page's numbers must be PyTorch's for the input read back from the page."""
    from vgg_book.seeing import probabilities
    from vgg_book.trained import explorer_images, manifest, trained_vgg

    problems: list[str] = []
    if page.query_selector(".vggb-te") is None:
        return ["trained explorer: not rendered"]
    model = trained_vgg()
    images, labels = explorer_images()
    first = _te_state(page)
    if first["message"]:
        problems.append(f"the explorer says: {first['message']}")
    _shot_top(page, ".vggb-te", shots / "explorer_trained_before.png")
    if first["index"] >= 0:  # the chapter may start from a picked image or a drawing
        _expect(problems, f"as built: the input is picker image {first['index']}",
                first["pixels"], images[first["index"]].flatten().tolist())
    _te_agree(problems, "as built", first, model)

    # A stroke with the pointer: down, ten moves across the pad, up.
    pad = page.locator('[data-testid="te-pad"]')
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    page.mouse.move(box["x"] + 0.3 * box["width"], box["y"] + 0.15 * box["height"])
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(box["x"] + (0.3 + 0.04 * i) * box["width"],
                        box["y"] + (0.15 + 0.07 * i) * box["height"])
    page.mouse.up()
    _settle(page)
    drawn = _te_state(page)
    changed = sum(a != b for a, b in zip(drawn["pixels"], first["pixels"]))
    if changed < 20:
        problems.append(f"pointer stroke: only {changed} pixels of the input changed")
    _expect(problems, "pointer stroke: the picked image (a drawing)", drawn["index"], -1)
    if drawn["probs"] == first["probs"]:
        problems.append("pointer stroke: the probabilities did not change")
    _te_agree(problems, "pointer stroke", drawn, model)

    # The keyboard on the pad: the cursor up twice, space paints.
    page.focus('[data-testid="te-pad"]')
    for key in ("ArrowUp", "ArrowUp", "ArrowLeft", "Space"):
        page.keyboard.press(key)
    _settle(page)
    painted = _te_state(page)
    if painted["pixels"] == drawn["pixels"]:
        problems.append("keyboard: space on the pad painted nothing")
    _te_agree(problems, "keyboard paint", painted, model)

    # Pick a test image with the pointer, then the next one with the keyboard.
    pick = int(torch.nonzero(labels == 9)[3])  # an ankle boot
    page.click(f'[data-testid="te-thumb"][data-index="{pick}"]')
    _settle(page)
    shown = _te_state(page)
    _expect(problems, "pointer pick: the picked image", shown["index"], pick)
    _expect(problems, f"pointer pick: the input is picker image {pick}", shown["pixels"],
            images[pick].flatten().tolist())
    _te_agree(problems, f"picked image {pick}", shown, model)
    page.keyboard.press("ArrowDown")  # the ankle boot below it in the picker's column
    _settle(page)
    shown = _te_state(page)
    below = int(torch.nonzero(labels == 9)[5])
    _expect(problems, "keyboard pick: the picked image", shown["index"], below)
    _expect(problems, f"keyboard pick: the input is picker image {below}", shown["pixels"],
            images[below].flatten().tolist())
    plain = _te_agree(problems, f"picked image {below}", shown, model)
    _te_saliency(problems, f"picked image {below}", shown, model, int(torch.tensor(plain)
                                                                      .argmax()))
    before_off = shown["probs"]

    # Point at a unit of a conv3_1 map (pointer), then move it right (keyboard).
    layer, channel, row, col = "conv3_1", 2, 5, 2
    page.select_option('[data-testid="te-layer"]', layer)
    _settle(page)
    records = {r.name: r for r in receptive_field(model.features, 32)}
    rec = records[layer]
    side = rec.output_hw[0]
    canvas = page.locator(f'[data-testid="te-map"][data-channel="{channel}"] canvas')
    canvas.scroll_into_view_if_needed()
    cbox = canvas.bounding_box()
    page.mouse.move(cbox["x"] + (col + 0.5) * cbox["width"] / side,
                    cbox["y"] + (row + 0.5) * cbox["height"] / side)
    _settle(page)

    def field_expected(r: int, c: int) -> dict:
        size, jump, start = rec.size_hw[0], rec.stride_hw[0], rec.start_hw[0]
        top, left = start + r * jump - size / 2, start + c * jump - size / 2
        return {"layer": layer, "channel": channel, "row": r, "col": c, "top": top,
                "left": left, "bottom": top + size, "right": left + size, "size": size}

    _expect(problems, f"pointer on {layer} unit ({row}, {col}): the drawn field",
            _te_state(page)["field"], field_expected(row, col))
    page.focus(f'[data-testid="te-map"][data-channel="{channel}"]')
    page.keyboard.press("ArrowRight")
    _settle(page)
    _expect(problems, f"keyboard on {layer} unit ({row}, {col + 1}): the drawn field",
            _te_state(page)["field"], field_expected(row, col + 1))

    # Switch off the channel of conv3_1 that moves this image's prediction most (pointer),
    # then one more with the keyboard.
    image = images[below]
    width = {s["name"]: s for s in manifest()["layers"]}[layer]["out"]
    effect = [abs(probabilities(model, image, {layer: [c]})[0] - torch.tensor(plain))
              .max().item() for c in range(width)]
    strongest = max(range(len(effect)), key=effect.__getitem__)
    print(f"       trained explorer: switching off {layer} channel {strongest} moves a "
          f"probability by {effect[strongest]:.3f} in PyTorch")
    page.click(f'[data-testid="te-map"][data-channel="{strongest}"]')
    _settle(page)
    shown = _te_state(page)
    off = {layer: [strongest]}
    _expect(problems, "pointer: channels off", shown["off"], off)
    if shown["probs"] == before_off:
        problems.append(f"switching off {layer} channel {strongest} changed no probability")
    _te_agree(problems, f"{layer} channel {strongest} off", shown, model, off)
    other = 0 if strongest else 1
    page.focus(f'[data-testid="te-map"][data-channel="{other}"]')
    page.keyboard.press("Enter")
    _settle(page)
    shown = _te_state(page)
    off = {layer: sorted([strongest, other])}
    _expect(problems, "keyboard: channels off", shown["off"], off)
    _te_agree(problems, f"{layer} channels {off[layer]} off", shown, model, off)
    # The saliency map of a chosen class, with those channels off.
    page.select_option('[data-testid="te-target"]', "7")
    _settle(page)
    _te_saliency(problems, f"class 7's saliency, {layer} channels {off[layer]} off",
                 _te_state(page), model, 7, off)
    print(f"       trained explorer: forward pass {shown['ms']:.1f} ms in this browser "
          f"(median {shown['median']:.1f} ms of the last {shown['passes']} passes; "
          "printed, not asserted)")
    _shot_top(page, ".vggb-te", shots / "explorer_trained_after.png")
    return problems


#: Pages with an explorer, and the function that drives it.
EXPLORERS = {"chapters/02_receptive_fields.html": rf_explorer,
             "chapters/04_accounting.html": accounting_explorer,
             "chapters/06_what_vgg_sees.html": trained_explorer}
