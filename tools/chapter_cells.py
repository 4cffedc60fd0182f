"""Bring chapter notebooks to the book's cell conventions, idempotently.

Usage:  .venv/bin/python tools/chapter_cells.py [--check] [NOTEBOOK ...]
        (no NOTEBOOK: every ``chapters/*.ipynb``)

What it does to each notebook (see docs/CONVENTIONS.md):
- the first code cell becomes the Colab set-up cell of ``vgg_book.colab`` (pinned to the
  package version); a notebook without one gets it inserted before its first code cell;
- otter raw cells (``# ASSIGNMENT CONFIG``, ``# BEGIN QUESTION`` ...) lose any raw ``format``
  metadata and get the tag ``remove-cell``, so the HTML shows nothing of them;
- the ``# ASSIGNMENT CONFIG`` cell is normalised (name = notebook stem, init cell, no export
  or check-all cell, ``generate: true``; other keys are kept);
- code cells inside ``# BEGIN SOLUTION`` and ``# BEGIN TESTS`` blocks get ``hide-input``
  (a toggle in the HTML, labelled "Show the solution" / "Show the checks");
- any other ``hide-input`` or ``hide-cell`` cell (a collapsed cross-check) must open with a comment that states
  its conclusion: that sentence becomes the toggle's label (and, in the reader notebooks,
  Colab's ``#@title``), so a collapsed block is headed by what it shows;
- a solution code cell that is not between raw SOLUTION cells (otter would neither strip nor
  unlock it) gets wrapped in them;
- format errors that would leak solutions or break ``otter assign`` are reported.

``--check`` writes nothing and exits 1 when a notebook would change or has errors.
A notebook is rewritten only when something changed (temp file, then rename).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from vgg_book.colab import setup_cell_source  # noqa: E402

SETUP_MARKER = "# Set-up:"
HIDE_INPUT, REMOVE_CELL = "hide-input", "remove-cell"
# Labels of the HTML toggles (myst-nb reads them from the cell's "mystnb" metadata).
PROMPTS = {"SOLUTION": {"code_prompt_show": "Show the solution",
                        "code_prompt_hide": "Hide the solution"},
           "TESTS": {"code_prompt_show": "Show the checks", "code_prompt_hide": "Hide the checks"}}
# Keys the book needs in every assignment config; other keys (files, requirements...) stay.
CONFIG_DEFAULTS = {"init_cell": True, "export_cell": False, "check_all_cell": False,
                   "generate": True}
_BOUNDARY = re.compile(r"#\s*(BEGIN|END)\s+(QUESTION|SOLUTION|TESTS|PROMPT)\s*$", re.I)
_CONFIG = re.compile(r"#\s*ASSIGNMENT\s+CONFIG\s*$", re.I)


@dataclass
class Report:
    """What ``apply`` changed (``changes``) and what it could not fix (``errors``)."""
    changes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def otter_marker(cell) -> tuple[str, str] | None:
    """``("BEGIN", "QUESTION")``, ``("CONFIG", "")`` ... for an otter raw cell, else None."""
    if cell.cell_type != "raw" or not cell.source.strip():
        return None
    first = cell.source.strip().splitlines()[0].strip()
    if _CONFIG.match(first):
        return ("CONFIG", "")
    m = _BOUNDARY.match(first)
    return (m.group(1).upper(), m.group(2).upper()) if m else None


def _add_tag(cell, tag: str) -> bool:
    tags = cell.metadata.setdefault("tags", [])
    if tag in tags:
        return False
    tags.append(tag)
    return True


def _raw(source: str):
    cell = nbformat.v4.new_raw_cell(source)
    cell.metadata["tags"] = [REMOVE_CELL]
    return cell


def _normalise_config(cell, name: str, report: Report) -> None:
    body = cell.source.strip().split("\n", 1)[1] if "\n" in cell.source.strip() else ""
    try:
        config = yaml.safe_load(body) or {}
    except yaml.YAMLError as err:
        report.errors.append(f"ASSIGNMENT CONFIG is not valid YAML: {err}")
        return
    if not isinstance(config, dict):
        report.errors.append("ASSIGNMENT CONFIG must be a YAML mapping (key: value lines)")
        return
    new = {"name": name, **CONFIG_DEFAULTS}
    new.update({k: v for k, v in config.items() if k not in new})
    source = "# ASSIGNMENT CONFIG\n" + yaml.safe_dump(new, sort_keys=False).strip()
    if source != cell.source:
        cell.source = source
        report.changes.append("normalised the ASSIGNMENT CONFIG cell")


def apply(nb, name: str) -> Report:
    """Apply the conventions to notebook ``nb`` (in place); ``name`` is the notebook stem."""
    report = Report()
    setup = setup_cell_source()
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    if not code_cells or not nb.cells[code_cells[0]].source.startswith(SETUP_MARKER):
        at = code_cells[0] if code_cells else len(nb.cells)
        nb.cells.insert(at, nbformat.v4.new_code_cell(setup))
        report.changes.append("inserted the Colab set-up cell")
    elif nb.cells[code_cells[0]].source != setup:
        nb.cells[code_cells[0]].source = setup
        nb.cells[code_cells[0]].outputs = []
        report.changes.append("rewrote the Colab set-up cell")

    blocks: list[str] = []
    configs = 0
    cells = []
    for index, cell in enumerate(nb.cells):
        where = f"cell {index}"
        cells.append(cell)
        marker = otter_marker(cell)
        if marker is not None:
            for key in ("format", "raw_mimetype"):
                if cell.metadata.pop(key, None) is not None:
                    report.changes.append(f"{where}: dropped raw format metadata")
            if _add_tag(cell, REMOVE_CELL):
                report.changes.append(f"{where}: tagged {REMOVE_CELL}")
            kind, block = marker
            if kind == "CONFIG":
                configs += 1
                _normalise_config(cell, name, report)
            elif kind == "BEGIN":
                blocks.append(block)
            elif not blocks or blocks[-1] != block:
                report.errors.append(f"{where}: '# END {block}' without '# BEGIN {block}'")
            else:
                blocks.pop()
            continue
        if cell.cell_type == "markdown" and "```otter" in cell.source:
            report.errors.append(f"{where}: use raw cells for otter markers, not ```otter fences")
        if cell.cell_type != "code":
            continue
        inside = blocks[-1] if blocks else None
        has_solution = re.search(r"#\s*(BEGIN SOLUTION|SOLUTION\s*$)", cell.source, re.M)
        if inside == "QUESTION" and has_solution:
            # Otter strips (and leaves editable) only cells inside raw SOLUTION blocks.
            cells[-1:] = [_raw("# BEGIN SOLUTION"), cell, _raw("# END SOLUTION")]
            report.changes.append(f"{where}: wrapped the solution in raw SOLUTION cells")
            inside = "SOLUTION"
        elif has_solution and inside != "SOLUTION":
            report.errors.append(
                f"{where}: solution markers outside a question: otter would not strip them")
        if inside not in ("SOLUTION", "TESTS") and {HIDE_INPUT, "hide-cell"} & set(
                cell.metadata.get("tags", [])):
            _label_collapsed(cell, where, report)
        if inside in ("SOLUTION", "TESTS"):
            if _add_tag(cell, HIDE_INPUT):
                report.changes.append(f"{where}: tagged {HIDE_INPUT} ({inside.lower()})")
            prompts = PROMPTS[inside]
            mystnb = cell.metadata.setdefault("mystnb", {})
            if any(mystnb.get(k) != v for k, v in prompts.items()):
                mystnb.update(prompts)
                report.changes.append(f"{where}: toggle labels for the {inside.lower()}")
    nb.cells = cells
    if blocks:
        report.errors.append(f"unclosed otter block(s): {', '.join(blocks)}")
    if configs > 1:
        report.errors.append(f"{configs} ASSIGNMENT CONFIG cells; one is allowed")
    return report


def conclusion(cell) -> str | None:
    """The conclusion a collapsed code cell opens with (its first comment line), or None."""
    first = cell.source.lstrip("\n").split("\n", 1)[0].strip()
    if not first.startswith("#") or first.startswith(("#@", SETUP_MARKER)):
        return None
    text = first.lstrip("#").strip()
    return text or None


def _label_collapsed(cell, where: str, report: Report) -> None:
    """Label a collapsed cross-check's toggle with the conclusion its first line states."""
    text = conclusion(cell)
    if text is None:
        report.errors.append(f"{where}: a hide-input cell must open with a comment stating "
                             "its conclusion (e.g. '# The recurrence and autograd agree.')")
        return
    prompts = {"code_prompt_show": text, "code_prompt_hide": "Hide the code"}
    mystnb = cell.metadata.setdefault("mystnb", {})
    if any(mystnb.get(k) != v for k, v in prompts.items()):
        mystnb.update(prompts)
        report.changes.append(f"{where}: toggle labelled with its conclusion")


def write_atomic(nb, path: Path) -> None:
    """Write notebook ``nb`` to ``path`` through a temp file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".ipynb.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            nbformat.write(nb, f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def process(path: Path, check: bool) -> Report:
    """Apply the conventions to the notebook at ``path``; write it unless ``check``."""
    nb = nbformat.read(path, as_version=4)
    report = apply(nb, path.stem)
    if report.changes and not check and not report.errors:
        write_atomic(nb, path)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if needed")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "chapters").glob("*.ipynb"))
    status = 0
    for path in paths:
        report = process(path, args.check)
        verb = "would change" if args.check else "changed"
        for line in report.changes:
            print(f"{path}: {verb}: {line}")
        for line in report.errors:
            print(f"{path}: ERROR: {line}", file=sys.stderr)
        if report.errors or (args.check and report.changes):
            status = 1
        if report.errors and report.changes and not args.check:
            print(f"{path}: not written because of the errors above", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
