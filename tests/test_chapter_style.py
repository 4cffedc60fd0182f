"""What a reader sees of each chapter: a way in, a summary, exercises, and code worth reading.

The chapters are read by students meeting VGG for the first time (issue 12), so every page:
- opens with its title and a paragraph on why the question matters;
- ends with ``## Summary`` (what was measured) and then ``## Exercises``, at least four of them;
- shows no bookkeeping: no ``glue(...)`` call in a code cell the reader sees (they live in
  cells tagged ``remove-input``);
- shows code cells of at most 30 lines (longer verifications are collapsed, ``hide-input``)
  and lines of at most 99 characters, collapsed cells included.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("0*.ipynb"))
PAGES = [ROOT / "intro.ipynb", *CHAPTERS]
MAX_LINES, MAX_COLUMNS, MIN_QUESTIONS = 30, 99, 4


def tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def shown_code(nb) -> list[tuple[int, nbformat.NotebookNode]]:
    """Code cells whose input the HTML shows (collapsed ones included)."""
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"
            and not tags(c) & {"remove-input", "remove-cell"}]


def headings(nb) -> list[str]:
    return [line for c in nb.cells if c.cell_type == "markdown"
            for line in c.source.splitlines() if line.startswith("## ")]


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_no_bookkeeping_in_code_a_reader_sees(path):
    nb = nbformat.read(path, as_version=4)
    calls = [i for i, c in shown_code(nb) if re.search(r"\bglue\(", c.source)]
    assert not calls, (f"{path.name}: cells {calls} call glue(...) where the reader sees it; "
                       "move the calls into a cell tagged remove-input")


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_code_cells_are_short_and_narrow(path):
    nb = nbformat.read(path, as_version=4)
    long = [(i, len(c.source.splitlines())) for i, c in shown_code(nb)
            if "hide-input" not in tags(c) and len(c.source.splitlines()) > MAX_LINES]
    wide = [(i, n) for i, c in shown_code(nb) for n, line in enumerate(c.source.splitlines(), 1)
            if len(line) > MAX_COLUMNS]
    assert not long, f"{path.name}: (cell, lines) over {MAX_LINES} lines: {long}"
    assert not wide, f"{path.name}: (cell, line) over {MAX_COLUMNS} columns: {wide}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_opens_with_why_and_ends_with_summary_and_exercises(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    number = int(path.stem[:2])
    assert first.cell_type == "markdown" and first.source.startswith(f"# {number}. "), (
        f"{path.name} must open with its title '# {number}. ...'")
    opening = first.source.split("\n", 1)[1].strip() if "\n" in first.source else ""
    assert len(opening.split()) >= 40, f"{path.name}: the title needs a paragraph on why"
    heads = headings(nb)
    assert heads[-2:] == ["## Summary", "## Exercises"], (
        f"{path.name} must end with '## Summary' then '## Exercises'; its last sections are "
        f"{heads[-2:]}")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_has_enough_exercises(path):
    nb = nbformat.read(path, as_version=4)
    questions = [c for c in nb.cells if c.cell_type == "raw"
                 and re.match(r"#\s*BEGIN\s+QUESTION", c.source, re.I)]
    assert len(questions) >= MIN_QUESTIONS, (
        f"{path.name} has {len(questions)} exercises; a chapter needs {MIN_QUESTIONS}")


def test_every_chapter_is_checked():
    assert [p.stem[:2] for p in CHAPTERS] == ["01", "02", "03", "04", "05", "06"]
