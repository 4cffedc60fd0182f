"""Drive the book's explorers in a built page, as a reader would, and check their numbers.

Used by ``tools/browser_test.py`` (network off): for each page with an explorer, a function
moves the controls with the keyboard and the pointer, reads the numbers the widget shows
(elements with ``data-testid``), and compares them with what ``vgg_book`` computes for the
same setting in Python. It also checks that the drawing changed, and takes a screenshot of
the explorer before and after. Returns a list of problems (empty: fine).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vgg_book.accounting import summary
from vgg_book.models import vgg
from vgg_book.receptive import receptive_field
from vgg_book.widgets import stack_summary


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


#: Pages with an explorer, and the function that drives it.
EXPLORERS = {"chapters/02_receptive_fields.html": rf_explorer,
             "chapters/04_accounting.html": accounting_explorer}
