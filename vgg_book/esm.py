"""One ES module per widget, from the files in ``vgg_book/js/``.

anywidget imports a widget's front end from a blob URL, so the module cannot import a
neighbour (``import ... from "./receptive.mjs"`` has nothing to resolve against, and from
``file://`` a browser blocks module files anyway). The sources keep such imports, which Node
follows when the tests import a file, and :func:`bundle` inlines them for the browser: each
local module once, before the code that imports it. A local module must be a library (named
exports only, no ``export default``).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

__all__ = ["JS", "bundle"]

JS = Path(__file__).parent / "js"

#: ``import {a, b} from "./x.mjs";`` and ``export * from "./x.mjs";`` (possibly on several lines).
_LOCAL = re.compile(r'^(?:import\s*\{[^}]*\}\s*from|export\s*\*\s*from)\s*"\./([\w.-]+\.mjs)";'
                    r'[ \t]*\n?', re.M)
_ANY_IMPORT = re.compile(r'^\s*(?:import\s|export\s[^\n]*\sfrom\s)', re.M)


def _inline(name: str, done: list[str], root: bool) -> str:
    path = JS / name
    if not path.is_file():
        raise FileNotFoundError(f"vgg_book/js/{name} does not exist (imported by a widget)")
    text = path.read_text(encoding="utf-8")
    if not root and re.search(r"^export\s+default\b", text, re.M):
        raise ValueError(f"vgg_book/js/{name} has a default export: a module other widgets "
                         "import must only have named exports")
    parts = []
    for dep in _LOCAL.findall(text):
        if dep not in done:
            done.append(dep)
            parts.append(f"// ---- inlined from vgg_book/js/{dep}\n" + _inline(dep, done, False))
    body = _LOCAL.sub("", text)
    left = _ANY_IMPORT.search(body)
    if left:
        line = body[left.start():].splitlines()[0]
        raise ValueError(f"vgg_book/js/{name}: cannot bundle `{line.strip()}` (only "
                         "`import {...} from \"./x.mjs\"` of a neighbour is supported)")
    return "\n".join(parts + [body])


@functools.lru_cache(maxsize=None)
def bundle(name: str) -> str:
    """The module ``vgg_book/js/<name>`` with its local imports inlined: one string that a
    blob URL can hold."""
    return _inline(name, [name], True)
