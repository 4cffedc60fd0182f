"""What a reader sees of each chapter: a way in, a summary, exercises, and code worth reading.

The chapters are read by students meeting VGG for the first time (issue 12), so every page:
- opens with its title and a paragraph on why the question matters;
- ends with ``## Summary`` (what was measured) and then ``## Exercises``, at least four of them;
- shows no bookkeeping: no ``glue(...)`` call in a code cell the reader sees (they live in
  cells tagged ``remove-input``);
- shows code cells of at most 30 lines (longer verifications are collapsed, ``hide-input``)
  and lines of at most 79 characters, collapsed cells included (issue 19);
- has a core path (prose outside collapsed blocks, before the summary) of at most 2,000 words,
  at least three figures drawn by ``vgg_book.plotting``, no sentence that chains colons and
  none that points at "the cell below" (``vgg_book.reading`` measures all of it);
- keeps no audit of the blog posts: that lives on the appendix page, and the posts are named
  by their titles there, never "seed 003" or "post 003".
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from vgg_book import reading

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("0*.ipynb"))
APPENDIX = ROOT / "chapters" / "appendix_posts.ipynb"
PAGES = [ROOT / "intro.ipynb", *CHAPTERS, APPENDIX]
MAX_LINES, MAX_COLUMNS, MIN_QUESTIONS = 30, reading.MAX_COLUMNS, 4
MAX_CORE_WORDS, MIN_FIGURES = 2000, 3


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
    wide = reading.wide_lines(nb, MAX_COLUMNS)
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


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_core_path_is_one_sitting_told_with_figures(path):
    nb = nbformat.read(path, as_version=4)
    words, figures = reading.core_words(nb), reading.plotting_figures(nb)
    assert words <= MAX_CORE_WORDS, (
        f"{path.name}: {words} words on the core path (at most {MAX_CORE_WORDS}); fold "
        "cross-checks and long evidence into dropdowns or hide-input cells")
    assert len(figures) >= MIN_FIGURES, (
        f"{path.name}: {len(figures)} figures drawn by vgg_book.plotting (cells {figures}); "
        f"a chapter shows at least {MIN_FIGURES}")


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_prose_reads_as_a_teacher_writes(path):
    nb = nbformat.read(path, as_version=4)
    assert not reading.colon_chains(nb), f"{path.name}: sentences chain colons"
    assert not reading.pointers(nb), (
        f"{path.name}: say what a cell shows instead of pointing at it: {reading.pointers(nb)}")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_the_audit_lives_on_the_appendix_page(path):
    nb = nbformat.read(path, as_version=4)
    audit = [h for h in headings(nb) if re.search(r"blog|posts?\b|seeds?\b", h, re.I)]
    assert not audit, f"{path.name}: audit sections {audit} belong on the appendix page"
    text = "\n".join(c.source for c in nb.cells if c.cell_type != "raw")
    links = text.count("appendix_posts")
    assert not re.search(r"\b(seed|post)s? 00\d", text, re.I), (
        f"{path.name}: name a post by its title (the appendix page), not its file number")
    mentions = len(re.findall(r"blog posts?|the posts?\b", text, re.I))
    assert mentions <= max(links, 0) + 1, (
        f"{path.name}: {mentions} mentions of the posts and {links} links to the appendix")


def test_the_appendix_holds_the_audit():
    nb = nbformat.read(APPENDIX, as_version=4)
    assert nb.cells[0].source.startswith("# What the posts got wrong")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    verdicts = re.findall(r"\b(WRONG|IMPRECISE|DEBATABLE|RIGHT)\b", "\n".join(
        c.source for c in nb.cells if c.cell_type == "markdown"))
    assert code.count("assert") >= 20 and {"WRONG", "RIGHT"} <= set(verdicts)


def test_every_chapter_is_checked():
    assert [p.stem[:2] for p in CHAPTERS] == ["01", "02", "03", "04", "05", "06", "07"]
