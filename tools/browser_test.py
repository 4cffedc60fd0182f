"""Open every page of the built (offline) book in headless Chromium with the network off.

Usage:  .venv/bin/python tools/browser_test.py [--html _build/html] [--out _build/screenshots]
            [--chromium /usr/bin/chromium] [--expect-widgets chapters/NN_name.html ...]

Runs itself under ``unshare -n`` (or ``unshare -rn`` without root) so that the browser has no
network at all; where neither works it says so and relies on blocking every request that is
not ``file:``/``data:``/``blob:``. Per page it checks:
- no request to another host (each one is blocked and reported) and no failed request;
- no console error and no uncaught JavaScript error;
- every math element is typeset by MathJax (``mjx-container``, no ``mjx-merror``);
- every embedded widget view rendered; pages given by ``--expect-widgets``, and chapter pages
  whose notebook stores widget outputs, must have at least one;
- every image loaded (``naturalWidth > 0``);
- no code block scrolls sideways at 1280x900 (every ``<pre>`` of the page, collapsed ones
  opened after the screenshot: ``scrollWidth <= clientWidth``);
- Chinese text (the Sources page cites the blog posts by their titles) is drawn by a CJK font
  (the browser reports the fonts it used; Debian's ``fonts-noto-cjk`` provides one);
- the explorers (``tools/explorer_checks.py``): driven with the keyboard and the pointer,
  their numbers must change and equal ``vgg_book``'s for each new setting (screenshots
  ``explorer_*_before.png`` / ``_after.png``);
- pages with a size budget (``PAGE_BUDGETS``: the trained network's chapter, whose widget
  state holds the weights): the HTML file, widget state included, is printed and must fit;
- chapter pages: the Colab button points at the reader notebook ``notebooks/NN_name.ipynb`` of
  the repository and branch in ``_config.yml``, and the download button's ``.ipynb`` is a copy
  of that notebook.
A full-page screenshot of each page goes to ``OUT/<page>.png``, the findings to
``OUT/report.json``. Exit status 1 when any page fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from explorer_checks import EXPLORERS  # noqa: E402
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
NETNS_ENV = "VGG_BOOK_BROWSER_NETNS"
#: Pages whose HTML file (widget state included) must stay within this many bytes.
PAGE_BUDGETS = {"chapters/06_what_vgg_sees.html": 2_000_000}
META_REFRESH = re.compile(r'<meta http-equiv="Refresh" content="0; url=([^"]+)"', re.I)

# Waits for MathJax, widget views and images, then measures the page.
MEASURE_JS = """
async () => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const views = [...document.querySelectorAll(
    'script[type="application/vnd.jupyter.widget-view+json"]')];
  // A rendered view: a Lumino widget in the subarea (without a kernel it is marked
  // "jupyter-widgets-disconnected", standard controls and anywidget views alike).
  const rendered = s => s.parentElement.querySelector(
    '.widget-subarea .jupyter-widgets, .widget-subarea .lm-Widget') !== null;
  for (let i = 0; i < 100 && !views.every(rendered); i++) await sleep(100);
  const imgs = [...document.images];
  await Promise.all(imgs.map(img => img.complete ? null :
    new Promise(r => { img.onload = r; img.onerror = r; })));
  const maths = [...document.querySelectorAll('.math')];
  // The first visible element holding Chinese text: the test asks which fonts drew it.
  const cjk = /[\u3400-\u9fff]/;
  const holders = [...document.querySelectorAll('article *')].filter(e =>
    (e.checkVisibility ? e.checkVisibility() : e.getClientRects().length > 0) &&
    [...e.childNodes].some(n => n.nodeType === 3 && cjk.test(n.textContent)));
  if (holders.length) holders[0].setAttribute('data-cjk-probe', '');
  return {
    cjk_elements: holders.length,
    math: maths.length,
    math_typeset: maths.filter(m => m.querySelector('mjx-container')).length,
    math_errors: document.querySelectorAll('mjx-merror').length,
    widget_views: views.length,
    widget_views_rendered: views.filter(rendered).length,
    images: imgs.map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0})),
    colab: [...document.querySelectorAll('a[href^="https://colab.research.google.com/"]')]
      .map(a => a.getAttribute('href')),
    downloads: [...document.querySelectorAll('a[href$=".ipynb"]')]
      .map(a => a.getAttribute('href')).filter(h => !h.startsWith('http')),
  };
}
"""


def reexec_without_network(argv: list[str]) -> int | None:
    """Run this script again in a network namespace with no network; None if impossible."""
    unshare = shutil.which("unshare")
    if os.environ.get(NETNS_ENV) or unshare is None:
        return None
    env = dict(os.environ, **{NETNS_ENV: "1"})
    for flags in (["-n"], ["-r", "-n"]):
        probe = subprocess.run([unshare, *flags, "true"], capture_output=True)
        if probe.returncode == 0:
            cmd = [unshare, *flags, sys.executable, str(Path(__file__).resolve()), *argv]
            return subprocess.run(cmd, env=env).returncode
    return None


def network_is_off() -> bool:
    """True when no outside address can be reached (we are in an empty network namespace)."""
    try:
        socket.create_connection(("1.1.1.1", 443), timeout=2).close()
    except OSError:
        return True
    return False


# Opens every collapsed block (hide-input cells, dropdowns), then lists the code blocks that
# scroll sideways: their first line and how many pixels they overflow by.
OVERFLOW_JS = """
() => {
  document.querySelectorAll('article details').forEach(d => { d.open = true; });
  const pres = [...document.querySelectorAll('article pre')]
    .filter(p => p.offsetParent !== null);
  return {
    code_blocks: pres.length,
    overflowing: pres.filter(p => p.scrollWidth > p.clientWidth + 1).map(p => ({
      text: p.textContent.split('\\n').reduce((a, b) => b.length > a.length ? b : a, ''),
      by: p.scrollWidth - p.clientWidth})),
  };
}
"""


def overflow_problems(m: dict) -> list[str]:
    """A code block that scrolls sideways at 1280x900 (issue 19: none may)."""
    return [f"code scrolls sideways by {o['by']} px: {o['text'].strip()[:90]!r}"
            for o in m.get("overflowing", [])]


def notebook_has_widgets(notebook: Path) -> bool:
    """Whether the stored outputs of ``notebook`` contain a widget view."""
    if not notebook.is_file():
        return False
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    return any("application/vnd.jupyter.widget-view+json" in out.get("data", {})
               for cell in nb["cells"] for out in cell.get("outputs", []))


def page_problems(rel: str, m: dict, book: Path, html: Path, config: dict,
                  expect_widgets: set[str]) -> list[str]:
    """What is wrong with page ``rel`` given its measurements ``m`` (empty list: fine)."""
    problems = []
    if m["math_typeset"] < m["math"] or m["math_errors"]:
        problems.append(f"math: {m['math_typeset']} of {m['math']} typeset, "
                        f"{m['math_errors']} MathJax errors")
    if m["widget_views_rendered"] < m["widget_views"]:
        problems.append(f"widgets: {m['widget_views_rendered']} of {m['widget_views']} rendered")
    stem = Path(rel).stem
    notebook = book / "chapters" / f"{stem}.ipynb"
    if (rel in expect_widgets or notebook_has_widgets(notebook)) and not m["widget_views"]:
        problems.append("widgets: the page should show widgets but embeds none")
    for img in m["images"]:
        if not img["ok"]:
            problems.append(f"image not loaded: {img['src']}")
    if rel.startswith("chapters/"):
        repo = config["repository"]["url"].removeprefix("https://github.com/").strip("/")
        url = (f"https://colab.research.google.com/github/{repo}/blob/"
               f"{config['repository']['branch']}/notebooks/{stem}.ipynb")
        if m["colab"] != [url]:
            problems.append(f"Colab button: expected [{url}], found {m['colab']}")
        reader = book / "notebooks" / f"{stem}.ipynb"
        if not reader.is_file():
            problems.append(f"the page's reader notebook {reader.relative_to(book)} is missing")
        served = [(html / rel).parent.joinpath(h).resolve() for h in m["downloads"]]
        if not served or not all(p.is_file() for p in served):
            problems.append(f"download button: .ipynb links {m['downloads']} not all present")
        elif reader.is_file() and any(p.read_bytes() != reader.read_bytes() for p in served):
            problems.append(f"download button: {m['downloads']} is not the reader notebook")
    return problems


def size_problems(rel: str, html: Path) -> list[str]:
    """The page's HTML against its budget (``PAGE_BUDGETS``); prints the size."""
    if rel not in PAGE_BUDGETS:
        return []
    size, budget = (html / rel).stat().st_size, PAGE_BUDGETS[rel]
    print(f"       {rel}: {size:,} bytes of HTML with its widget state "
          f"(budget {budget:,})")
    if size > budget:
        return [f"page size: {size:,} bytes, over the budget of {budget:,}"]
    return []


def cjk_fonts(page, context) -> list[str]:
    """Font families the browser drew the page's first Chinese text with (DevTools protocol)."""
    cdp = context.new_cdp_session(page)
    try:
        root = cdp.send("DOM.getDocument")["root"]["nodeId"]
        node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": "[data-cjk-probe]"})
        cdp.send("CSS.enable")
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]})["fonts"]
        return [f["familyName"] for f in fonts]
    finally:
        cdp.detach()


def cjk_problems(m: dict) -> list[str]:
    """Chinese text must be drawn by a font with CJK glyphs (else readers see empty boxes)."""
    if not m["cjk_elements"]:
        return []
    if not any("CJK" in f or "Han" in f for f in m["cjk_fonts"]):
        return [f"Chinese text drawn with {m['cjk_fonts']}, no CJK font: install one "
                "(apt-get install fonts-noto-cjk)"]
    return []


def blocker(errors: list[str]):
    """A route handler that lets local files through and blocks (and records) the rest."""
    def route(r):
        if r.request.url.startswith(LOCAL_SCHEMES):
            return r.continue_()
        errors.append(f"request to another host: {r.request.url}")
        return r.abort()
    return route


def run(html: Path, out: Path, chromium: str, expect_widgets: set[str]) -> int:
    from playwright.sync_api import sync_playwright

    book = html.parent.parent
    config = yaml.safe_load((book / "_config.yml").read_text())
    pages = sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                   if not p.relative_to(html).parts[0].startswith("_"))
    if not pages:
        print(f"no pages in {html}: build the book first (tools/book_offline.py)")
        return 1
    missing = expect_widgets - set(pages)
    out.mkdir(parents=True, exist_ok=True)
    offline = network_is_off()
    print(f"network: {'off' if offline else 'ON (requests to other hosts are blocked)'}; "
          f"{len(pages)} pages in {html}")
    report, failed = {"network_off": offline, "pages": {}}, 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        for rel in pages:
            errors: list[str] = []
            redirect = META_REFRESH.search((html / rel).read_text(encoding="utf-8"))
            if redirect:  # e.g. index.html -> intro.html: check the target, which is a page too
                target = (html / rel).parent / redirect.group(1)
                problems = [] if target.is_file() else [f"redirect to missing {target.name}"]
                report["pages"][rel] = {"problems": problems, "redirect": redirect.group(1)}
                failed += bool(problems)
                print(f"{'FAIL' if problems else 'ok  '} {rel}: redirects to {redirect.group(1)}")
                continue

            errors.extend(size_problems(rel, html))
            page = context.new_page()
            page.route("**/*", blocker(errors))
            page.on("console", lambda msg: msg.type == "error" and errors.append(
                f"console error: {msg.text}"))
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.on("requestfailed", lambda req: req.url.startswith(LOCAL_SCHEMES)
                    and errors.append(f"failed request: {req.url} ({req.failure})"))
            page.goto((html / rel).as_uri(), wait_until="load")
            measured = page.evaluate(MEASURE_JS)
            page.wait_for_timeout(300)  # let fonts settle before the screenshot
            measured["cjk_fonts"] = cjk_fonts(page, context) if measured["cjk_elements"] else []
            shot = out / (rel.replace("/", "__").removesuffix(".html") + ".png")
            page.screenshot(path=str(shot), full_page=True)
            if rel in EXPLORERS:  # drive the explorer as a reader would, check its numbers
                explorer_problems = EXPLORERS[rel](page, out)
                measured["explorer_problems"] = explorer_problems
                errors.extend(explorer_problems)
            measured.update(page.evaluate(OVERFLOW_JS))
            page.close()
            problems = (errors + page_problems(rel, measured, book, html, config, expect_widgets)
                        + cjk_problems(measured) + overflow_problems(measured))
            report["pages"][rel] = {"problems": problems, "screenshot": shot.name, **measured}
            failed += bool(problems)
            ok = sum(i["ok"] for i in measured["images"])
            print(f"{'FAIL' if problems else 'ok  '} {rel}: math {measured['math_typeset']}/"
                  f"{measured['math']}, widgets {measured['widget_views_rendered']}/"
                  f"{measured['widget_views']}, images {ok}/{len(measured['images'])}, "
                  f"code blocks {measured['code_blocks'] - len(measured['overflowing'])}/"
                  f"{measured['code_blocks']} fit"
                  + (f", Chinese text in {measured['cjk_fonts']}" if measured["cjk_elements"]
                     else ""))
            for problem in problems:
                print(f"       {problem}")
        browser.close()
    for rel in sorted(missing):
        print(f"FAIL {rel}: expected widgets, but the page was not built")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"screenshots and report.json in {out}")
    passed = len(pages) - failed
    failed += len(missing)
    print(f"browser: {passed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "screenshots")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--expect-widgets", action="append", default=[], metavar="PAGE",
                        help="page (relative to --html) that must show widgets")
    args = parser.parse_args(argv)
    if not Path(args.chromium).exists():
        parser.error(f"no Chromium at {args.chromium}: apt-get install -y chromium")
    status = reexec_without_network(argv)
    if status is not None:
        return status
    if not os.environ.get(NETNS_ENV):
        print("unshare -n is not available: the network stays on, other hosts are blocked")
    return run(args.html.resolve(), args.out.resolve(), args.chromium, set(args.expect_widgets))


if __name__ == "__main__":
    sys.exit(main())
