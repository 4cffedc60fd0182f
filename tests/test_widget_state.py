"""The widgets stored in the chapters run the front end the package has now.

A built page re-creates each explorer from the widget state its chapter stored when it was
executed, ``_esm`` (the whole front-end module) included. So a change to ``vgg_book/js/``
reaches the HTML only when the chapter is executed again; this test names the chapter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vgg_book import esm

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def stored_modules(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    return [model["state"]["_esm"] for model in state.values()
            if isinstance(model.get("state", {}).get("_esm"), str)]


def test_the_explorer_chapters_store_widgets():
    with_widgets = {p.stem for p in CHAPTERS if stored_modules(p)}
    assert {"02_receptive_fields", "04_accounting", "06_what_vgg_sees"} <= with_widgets


@pytest.mark.parametrize("path", [p for p in CHAPTERS if stored_modules(p)], ids=lambda p: p.stem)
def test_stored_front_ends_are_the_current_bundles(path):
    current = {esm.bundle(p.name) for p in esm.JS.glob("*.mjs")
               if "export default" in p.read_text(encoding="utf-8")}
    for module in stored_modules(path):
        assert module in current, (
            f"{path.name} stores a widget front end that vgg_book/js/ no longer gives (its "
            f"first line: {module.splitlines()[0][:70]!r}); execute the chapter again")
