"""Vendor MathJax and the Jupyter widgets HTML manager from npm into ``_vendor/``.

Usage:  .venv/bin/python tools/vendor.py [--force]

The versions are pinned by ``tools/vendor/package.json`` and its lock file; ``npm ci``
installs them into ``_build/npm/`` (needs the npm registry once; skipped when that install
already matches the lock). Copied into ``_vendor/`` (git-ignored), which the offline build
serves as ``_static/`` (``tools/book_offline.py``):
- ``mathjax/``: ``tex-mml-chtml.js`` with its TeX extensions, CHTML woff2 fonts, menu and
  accessibility components (not the speech engine ``sre/``);
- ``widgets/``: the RequireJS embedder ``embed-amd.js`` of ``@jupyter-widgets/html-manager``
  (it can load custom widget modules, which the standalone ``embed.js`` cannot), the font
  files it references (no source maps), ``require.js``, anywidget's front end
  ``anywidget.js`` (the AMD module the installed ``anywidget`` Python package ships, so that
  its version matches the widgets' state), ``amd-config.js`` (see AMD_CONFIG) and
  ``mathjax2-shim.js`` (see MATHJAX2_SHIM); docs/WIDGETS.md explains the choice;
- ``VENDORED.json``: package versions and the number of files and bytes copied.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "tools" / "vendor"
NPM_DIR = ROOT / "_build" / "npm"
VENDOR = ROOT / "_vendor"

MATHJAX = ["tex-mml-chtml.js", "input/tex/extensions", "output/chtml/fonts/woff-v2",
           "a11y", "ui"]
WIDGET_SUFFIXES = (".woff2", ".woff", ".ttf", ".eot", ".svg")

# html-manager 1.x typesets widget labels with MathJax 2's API, MathJax.Hub.Queue(["Typeset",
# MathJax.Hub, element]); the book loads MathJax 3, where MathJax.Hub is undefined and every
# widget label throws a TypeError. Loaded (deferred, so after MathJax) by book_offline.py.
MATHJAX2_SHIM = """\
// Written by tools/vendor.py: MathJax 2's Hub.Queue, for @jupyter-widgets/html-manager 1.x.
(function () {
  var mj = window.MathJax;
  if (!mj || mj.Hub) { return; }
  mj.Hub = {Queue: function (job) {
    var element = job && job[2];
    var ready = mj.startup && mj.startup.promise ? mj.startup.promise : Promise.resolve();
    return ready.then(function () {
      return mj.typesetPromise ? mj.typesetPromise(element ? [element] : undefined) : null;
    });
  }};
})();
"""


# RequireJS finds anywidget's front end next to this file, and every module that embed-amd.js
# defines inline gets a URL in this folder too: webpack inside them derives its public path
# from that URL and loads the widget fonts from it (else from the page's folder: 404s).
AMD_CONFIG = """\
// Written by tools/vendor.py: module locations for require.js, relative to this script.
(function () {
  var src = document.currentScript.src;
  var base = src.slice(0, src.lastIndexOf("/"));
  var paths = {"anywidget": base + "/anywidget", "@jupyter-widgets/html-manager/dist": base};
  ["base", "controls", "base7", "controls7", "html-manager", "output"].forEach(function (m) {
    paths["@jupyter-widgets/" + m] = base + "/" + m;
  });
  window.require.config({paths: paths});
})();
"""


def anywidget_front_end() -> tuple[Path, str]:
    """The AMD front end of the installed anywidget (what classic Jupyter loads), and its
    version."""
    try:
        import anywidget
    except ImportError as err:
        raise SystemExit("anywidget is not installed: run make setup") from err
    path = Path(anywidget.__file__).parent / "nbextension" / "index.js"
    if not path.is_file():
        raise SystemExit(f"anywidget {anywidget.__version__} has no {path}: pin a version "
                         "that ships nbextension/index.js")
    return path, anywidget.__version__


def npm_install(force: bool = False) -> Path:
    """``npm ci`` the pinned packages into ``_build/npm``; return its ``node_modules``."""
    lock = (SPEC / "package-lock.json").read_text()
    modules = NPM_DIR / "node_modules"
    done = NPM_DIR / "package-lock.json"
    if not force and modules.is_dir() and done.is_file() and done.read_text() == lock:
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm not found: install Node.js and npm (Debian: apt-get install -y npm)")
    shutil.rmtree(NPM_DIR, ignore_errors=True)
    NPM_DIR.mkdir(parents=True)
    shutil.copy(SPEC / "package.json", NPM_DIR)
    shutil.copy(SPEC / "package-lock.json", NPM_DIR)
    subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
                   cwd=NPM_DIR, check=True)
    return modules


def copy_assets(modules: Path, dest: Path) -> dict:
    """Copy the assets from ``modules`` into ``dest`` (a fresh folder); return a manifest."""
    mathjax = modules / "mathjax" / "es5"
    for rel in MATHJAX:
        src, dst = mathjax / rel, dest / "mathjax" / rel
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    dist = modules / "@jupyter-widgets" / "html-manager" / "dist"
    widgets = dest / "widgets"
    widgets.mkdir(parents=True)
    shutil.copy2(dist / "embed-amd.js", widgets / "embed-amd.js")
    for font in dist.iterdir():
        if font.suffix in WIDGET_SUFFIXES:
            shutil.copy2(font, widgets / font.name)
    shutil.copy2(modules / "requirejs" / "require.js", widgets / "require.js")
    front_end, anywidget_version = anywidget_front_end()
    shutil.copy2(front_end, widgets / "anywidget.js")
    (widgets / "amd-config.js").write_text(AMD_CONFIG)
    (widgets / "mathjax2-shim.js").write_text(MATHJAX2_SHIM)
    files = [p for p in dest.rglob("*") if p.is_file()]
    versions = {name: json.loads((modules / name / "package.json").read_text())["version"]
                for name in ("mathjax", "@jupyter-widgets/html-manager", "requirejs")}
    versions["anywidget"] = anywidget_version
    return {"versions": versions, "files": len(files),
            "bytes": sum(p.stat().st_size for p in files)}


def vendor(force: bool = False) -> dict:
    """Fill ``_vendor/`` (replacing it whole, via a temp folder and a rename)."""
    modules = npm_install(force)
    NPM_DIR.parent.mkdir(parents=True, exist_ok=True)  # _build/, git-ignored like _vendor/
    tmp = Path(tempfile.mkdtemp(dir=NPM_DIR.parent, prefix="vendor."))
    try:
        manifest = copy_assets(modules, tmp)
        (tmp / "VENDORED.json").write_text(json.dumps(manifest, indent=2) + "\n")
        old = NPM_DIR.parent / "vendor.old"
        shutil.rmtree(old, ignore_errors=True)
        if VENDOR.exists():
            os.replace(VENDOR, old)
        os.replace(tmp, VENDOR)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="re-run npm ci")
    args = parser.parse_args(argv)
    manifest = vendor(args.force)
    print(f"_vendor/: {manifest['files']} files, {manifest['bytes'] / 1e6:.1f} MB, "
          + ", ".join(f"{k} {v}" for k, v in manifest["versions"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
