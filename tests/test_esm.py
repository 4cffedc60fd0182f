"""vgg_book.esm.bundle: a widget's module with its neighbours inlined, as the browser gets it.

The bundled string must export exactly what Node exports when it imports the source file
itself (following the real ``import`` lines), compute the same, and import nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from vgg_book import esm

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="Node.js is not installed")

EXPORTS = """
const [file, bundled] = [process.argv[2], process.argv[3]];
const { readFileSync } = await import("node:fs");
const a = await import(file);
const text = readFileSync(bundled, "utf8");
const b = await import("data:text/javascript;base64," + Buffer.from(text).toString("base64"));
const rows = a.stackTable ? [a.stackTable([{kind: "conv", kernel: 3}, {kind: "pool", kernel: 2}], 28),
                             b.stackTable([{kind: "conv", kernel: 3}, {kind: "pool", kernel: 2}], 28)]
                          : [null, null];
console.log(JSON.stringify({a: Object.keys(a).sort(), b: Object.keys(b).sort(), rows}));
"""


def widget_modules() -> list[str]:
    return sorted(p.name for p in esm.JS.glob("*.mjs")
                  if "export default" in p.read_text(encoding="utf-8"))


def test_every_widget_module_bundles_without_local_imports():
    assert "rf_explorer.mjs" in widget_modules()
    for name in widget_modules():
        text = esm.bundle(name)
        assert 'from "./' not in text, name
        assert text.count("export default") == 1, name


@needs_node
@pytest.mark.parametrize("name", widget_modules())
def test_bundle_exports_what_node_imports_from_the_file(name, tmp_path):
    bundled = tmp_path / name
    bundled.write_text(esm.bundle(name), encoding="utf-8")
    script = tmp_path / "exports.mjs"
    script.write_text(EXPORTS, encoding="utf-8")
    out = subprocess.run([NODE, script, str(esm.JS / name), str(bundled)], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    found = json.loads(out)
    assert found["a"] == found["b"] and "default" in found["a"]
    assert found["rows"][0] == found["rows"][1]


def test_bundle_refuses_what_it_cannot_inline(tmp_path, monkeypatch):
    monkeypatch.setattr(esm, "JS", tmp_path)
    esm.bundle.cache_clear()
    (tmp_path / "lib.mjs").write_text("export const x = 1;\nexport default {};\n")
    (tmp_path / "w.mjs").write_text('import { x } from "./lib.mjs";\nexport default { x };\n')
    (tmp_path / "cdn.mjs").write_text('import * as d3 from "https://cdn/d3.js";\n')
    (tmp_path / "gone.mjs").write_text('import { y } from "./missing.mjs";\n')
    try:
        with pytest.raises(ValueError, match="default export"):
            esm.bundle("w.mjs")
        with pytest.raises(ValueError, match="cannot bundle"):
            esm.bundle("cdn.mjs")
        with pytest.raises(FileNotFoundError, match="missing.mjs does not exist"):
            esm.bundle("gone.mjs")
    finally:
        esm.bundle.cache_clear()
