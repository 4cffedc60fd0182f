"""Build the book so that a downloaded copy of ``_build/html`` works with no network.

Usage:  .venv/bin/python tools/book_offline.py [--execute force|cache|off] [--no-vendor]
                                               [--source DIR]

Vendors MathJax and the widgets HTML manager (``tools/vendor.py``), then runs
``jupyter-book build --all -W --keep-going`` with ``_config.yml`` plus three Sphinx settings
(written to ``_build/offline_config.yml``): ``_vendor/`` becomes a static path (served as
``_static/``), ``mathjax_path`` points at the vendored MathJax, and ``nb_ipywidgets_js``
replaces myst-nb's CDN scripts (require.js and ``embed-amd.js``) by vendored copies of the same,
with anywidget's front end and its location (``vendor.AMD_CONFIG``), and a shim that lets the
embedder typeset widget labels with MathJax 3 (``vendor.MATHJAX2_SHIM``).
Widget state is embedded by myst-nb from the executed notebooks either way.
``--execute`` overrides ``execute.execute_notebooks`` (default: as in ``_config.yml``;
``off`` renders the outputs stored in the notebooks).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import vendor  # noqa: E402

OFFLINE_SPHINX = {
    "html_static_path": [str(vendor.VENDOR)],
    "mathjax_path": "mathjax/tex-mml-chtml.js",  # relative to _static/
    "nb_ipywidgets_js": {"widgets/require.js": {},
                         "widgets/amd-config.js": {},
                         "widgets/embed-amd.js": {},
                         "widgets/mathjax2-shim.js": {"defer": "defer"}},
}


def offline_config(source: Path, execute: str | None) -> dict:
    """``source``'s ``_config.yml`` with the offline Sphinx settings merged in."""
    config = yaml.safe_load((source / "_config.yml").read_text())
    sphinx = config.setdefault("sphinx", {})
    sphinx["config"] = {**(sphinx.get("config") or {}), **OFFLINE_SPHINX}
    # Jupyter Book resolves these against the config file's folder, which is now _build/.
    sphinx["local_extensions"] = {name: str((source / path).resolve()) for name, path
                                  in (sphinx.get("local_extensions") or {}).items()}
    if execute:
        config.setdefault("execute", {})["execute_notebooks"] = execute
    return config


def build(source: Path, execute: str | None = None) -> int:
    """Build ``source`` with the offline settings; return jupyter-book's exit status."""
    config_path = source / "_build" / "offline_config.yml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(offline_config(source, execute), sort_keys=False))
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb), "build", str(source), "--all", "-W", "--keep-going",
           "--config", str(config_path)]
    return subprocess.run(cmd).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--execute", choices=["force", "cache", "off", "auto"])
    parser.add_argument("--no-vendor", action="store_true",
                        help="use _vendor/ as it is (fails if it is missing)")
    parser.add_argument("--source", type=Path, default=ROOT, help="book folder")
    args = parser.parse_args(argv)
    if not args.no_vendor:
        vendor.vendor()
    elif not (vendor.VENDOR / "VENDORED.json").is_file():
        parser.error("_vendor/ is missing: run tools/vendor.py (or drop --no-vendor)")
    status = build(args.source.resolve(), args.execute)
    if status == 0:
        print(f"offline book: {args.source.resolve() / '_build' / 'html' / 'index.html'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
