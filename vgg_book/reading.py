"""How long a chapter takes to read, and what its reader meets on the core path.

A chapter's *core path* is its prose outside collapsed blocks (``{dropdown}`` directives,
admonitions with ``:class: dropdown``), before its ``## Summary`` (the summary and the
exercises are not part of it). ``core_words`` counts its words; the intro gives each
chapter's reading time at ``WORDS_PER_MINUTE``. Math, code fences, labels and comments are
not words; a glued number is one word.

``python -m vgg_book.reading chapters/*.ipynb`` prints, per chapter, the core words, the
figures drawn by ``vgg_book.plotting``, shown code lines over 79 columns, and the sentences
that chain colons or point at "the cell below" (what tests/test_chapter_style.py checks).
"""

from __future__ import annotations

import argparse
import ast
import math
import re
from pathlib import Path

import nbformat

__all__ = ["core_prose", "core_words", "reading_minutes", "plotting_figures",
           "wide_lines", "colon_chains", "pointers", "WORDS_PER_MINUTE", "MAX_COLUMNS"]

WORDS_PER_MINUTE = 200
MAX_COLUMNS = 79
FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})(?P<rest>.*)$")
_DROPPED_LINE = re.compile(r"^\s*(\([^()\s]+\)=\s*$|%|<!--)")
_WORD = re.compile(r"[A-Za-z0-9]")
_POINTERS = re.compile(r"\b(the|this|next|following|previous)\s+(code\s+)?cells?\b"
                       r"|\bcells?\s+(below|above)\b", re.I)


def _read(nb_or_path):
    if isinstance(nb_or_path, (str, Path)):
        return nbformat.read(nb_or_path, as_version=4)
    return nb_or_path


def _tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def _strip_blocks(source: str) -> str:
    """``source`` without fenced blocks that collapse (dropdowns), code, or display math."""
    out, stack = [], []  # stack of (fence, kept) for open fences
    in_math = False
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped.startswith("$$") or (in_math and stripped.endswith("$$")):
            one_line = len(stripped) > 4 and stripped.startswith("$$") \
                and stripped.endswith("$$")
            in_math = in_math if one_line else not in_math
            continue
        if in_math:
            continue
        m = FENCE.match(stripped)
        if m and stack and stripped == stack[-1][0]:
            stack.pop()
            continue
        if m and m["rest"].strip():
            rest = m["rest"].strip()
            name = re.match(r"\{([\w:-]+)\}", rest)
            kept = bool(name) and name[1] not in ("dropdown", "code", "code-block",
                                                  "math", "toggle")
            stack.append((m["fence"], kept))
            continue
        if m and not m["rest"].strip():  # a bare ``` opens a code block
            stack.append((m["fence"], False))
            continue
        if stack and not all(kept for _, kept in stack):
            continue
        if stack and re.match(r"^:class:.*\bdropdown\b", stripped):
            stack[-1] = (stack[-1][0], False)
            continue
        if stack and re.match(r"^:[\w-]+:", stripped):
            continue
        if _DROPPED_LINE.match(line):
            continue
        out.append(line)
    return "\n".join(out)


def core_prose(nb_or_path) -> str:
    """The chapter's core-path prose (see the module docstring), as one string."""
    nb = _read(nb_or_path)
    parts = []
    for cell in nb.cells:
        if cell.cell_type != "markdown" or _tags(cell) & {"remove-cell", "hide-cell"}:
            continue
        if re.search(r"^##\s+(Summary|Exercises)\s*$", cell.source, re.M):
            head = re.split(r"^##\s+(?:Summary|Exercises)\s*$", cell.source, 1, re.M)[0]
            parts.append(_strip_blocks(head))
            break
        parts.append(_strip_blocks(cell.source))
    text = "\n\n".join(parts)
    text = re.sub(r"\{glue(?::\w+)?\}`[^`]*`", "N", text)
    text = re.sub(r"\{[\w:-]+\}`([^`<]*)(<[^`]*>)?`", r"\1", text)
    text = re.sub(r"(?<!\$)\$[^$\n]+\$(?!\$)", "M", text)
    return text


def core_words(nb_or_path) -> int:
    """Words on the chapter's core path (tokens holding a letter or digit)."""
    return sum(1 for tok in core_prose(nb_or_path).split() if _WORD.search(tok))


def reading_minutes(nb_or_path) -> int:
    """Minutes to read the core path at ``WORDS_PER_MINUTE``, rounded up."""
    return max(1, math.ceil(core_words(nb_or_path) / WORDS_PER_MINUTE))


def _plotting_names() -> set[str]:
    from vgg_book import plotting
    return {n for n in dir(plotting) if not n.startswith("_") and callable(getattr(plotting, n))
            and (n.startswith(("plot_", "show_", "draw_")))}


def plotting_figures(nb_or_path) -> list[int]:
    """Indices of code cells that show a figure drawn by a ``vgg_book.plotting`` function."""
    nb = _read(nb_or_path)
    names = _plotting_names()
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "remove-cell" in _tags(cell) \
                or "remove-output" in _tags(cell):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        called = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                called.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
        has_image = any("image/png" in out.get("data", {}) or "image/svg+xml"
                        in out.get("data", {}) for out in cell.get("outputs", []))
        if called & names and has_image:
            found.append(i)
    return found


def shown_code(nb) -> list[tuple[int, object]]:
    """Code cells whose input the HTML shows (collapsed ones included)."""
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"
            and not _tags(c) & {"remove-input", "remove-cell"}]


def wide_lines(nb_or_path, limit: int = MAX_COLUMNS) -> list[tuple[int, int]]:
    """(cell, line) of every shown code line over ``limit`` columns."""
    nb = _read(nb_or_path)
    return [(i, n) for i, c in shown_code(nb)
            for n, line in enumerate(c.source.splitlines(), 1) if len(line) > limit]


def _sentences(text: str) -> list[str]:
    """Sentences of ``text``; a blank line, heading, list item or table row ends one."""
    out = []
    for block in re.split(r"\n\s*\n|\n(?=\s*(?:#|[-*|] |\d+\. ))", text):
        flat = re.sub(r"\s+", " ", block).strip()
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z(*`])", flat) if s.strip()]
    return out


def colon_chains(nb_or_path) -> list[str]:
    """Core-path sentences with two or more colons (a chain of clauses), links excluded."""
    prose = re.sub(r"https?://\S+|\]\([^)]*\)|`[^`]*`|arXiv:\d", "", core_prose(nb_or_path))
    return [s for s in _sentences(prose) if s.count(":") >= 2]


def pointers(nb_or_path) -> list[str]:
    """Core-path sentences that point at "the cell below" instead of saying what it shows."""
    return [s for s in _sentences(core_prose(nb_or_path)) if _POINTERS.search(s)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Core-path statistics of chapters.")
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the offending sentences and lines too")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        nb = _read(path)
        chains, points, wide = colon_chains(nb), pointers(nb), wide_lines(nb)
        print(f"{path.name}: {core_words(nb)} core words ({reading_minutes(nb)} min), "
              f"{len(plotting_figures(nb))} plotting figures, {len(wide)} wide lines, "
              f"{len(chains)} colon chains, {len(points)} cell pointers")
        if args.verbose:
            for s in chains:
                print("  colons:", s[:160])
            for s in points:
                print("  pointer:", s[:160])
            for cell, line in wide:
                print(f"  wide: cell {cell} line {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
