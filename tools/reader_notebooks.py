"""Write the reader notebooks: each chapter as plain Jupyter and Colab show it.

Usage:  .venv/bin/python tools/reader_notebooks.py [--check] [--out DIR] [CHAPTER ...]
        (no CHAPTER: every ``chapters/*.ipynb``; DIR defaults to ``notebooks/``)

A chapter's markdown is MyST: ``{glue:text}`n_train``` is a number only in the built book,
and Jupyter or Colab would show the role itself. The reader notebook ``notebooks/NN_name.ipynb``
is the chapter with
- every glue role replaced by the value the book's executed build stored in the chapter's
  outputs (formatted as myst-nb formats it); a value glued with ``varies=True`` (device,
  timings, training results) gets a dagger, and a note on top says what it means;
- the other MyST roles and directives turned into Markdown: ``{ref}`` into a link to the
  labelled heading (``NN_name.ipynb#Heading-text``, the anchors Jupyter gives headings),
  ``{doc}`` into a link, admonitions into block quotes, dropdowns (``{dropdown}``, or
  ``:class: dropdown``) into ``<details>`` (collapsed in Jupyter and Colab as in the HTML),
  ``{math}`` into ``$...$``, labels dropped; any other MyST construct is an error that names
  it, so none reaches a reader raw;
- what the HTML collapses collapsed: a ``hide-input`` cell gets
  ``metadata.jupyter.source_hidden`` (JupyterLab, Notebook 7) and Colab's form view
  (``cellView: "form"`` and a first line ``#@title`` with its toggle label: "Show the
  solution", "Show the checks", or the conclusion its first comment states), and a
  ``hide-cell`` cell also ``outputs_hidden`` (its output folds with it); a cell whose
  input the HTML removes is dropped when it only glues values that no later cell uses, and
  collapsed otherwise (``#@title`` ``BOOKKEEPING_TITLE``). Student notebooks
  (``keep_otter=True``) leave solution cells open: students write in them;
- otter's raw cells (``# BEGIN QUESTION``...) dropped: the exercises read as in the HTML
  (``keep_otter=True`` keeps them for ``tools/assignments.py``, so students see numbers too);
- outputs and execution counts cleared.
The Colab button and the download button of every chapter page open these notebooks
(``tools/sphinx_ext/reader_links.py``). ``--check`` writes nothing and exits 1 when a
committed reader notebook differs from what its chapter gives (``make test`` runs it).
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chapter_cells import PROMPTS, conclusion, otter_marker, write_atomic  # noqa: E402
from vgg_book.colab import REPOSITORY  # noqa: E402
from vgg_book.glue import VARIES_KEY  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"
OUT = ROOT / "notebooks"
DAGGER = "<sup>†</sup>"
NOTE_ID = "vgg-book-reader-note"

ROLE = re.compile(r"\{([A-Za-z][\w:-]*)\}`([^`]*)`")
FENCE_OPEN = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<arg>.*)$")
LABEL = re.compile(r"^\(([^()\s]+)\)=\s*$")
TITLED = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.S)
BOOKKEEPING_TITLE = "The book's checks and the numbers it puts in the text"
ADMONITIONS = {"note", "tip", "hint", "important", "warning", "caution", "attention",
               "danger", "error", "seealso", "admonition", "dropdown", "exercise", "solution"}


class ReaderError(ValueError):
    """A chapter cannot become a reader notebook (unknown role, missing glue value...)."""


# ----------------------------------------------------------------------------- glue values
def glue_values(nb) -> dict[str, tuple[str, bool]]:
    """``{name: (text/plain value, varies)}`` from the glue outputs stored in ``nb``."""
    values = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            meta = out.get("metadata", {})
            if "scrapbook" not in meta:
                continue
            name = meta["scrapbook"]["name"]
            prefix = meta["scrapbook"].get("mime_prefix", "")
            data = {k[len(prefix):]: v for k, v in out.get("data", {}).items()}
            if "text/plain" not in data:
                raise ReaderError(f"glue value {name!r} has no text/plain form")
            varies = bool(meta.get(VARIES_KEY, {}).get("varies"))
            values[name] = ("".join(data["text/plain"]), varies)
    return values


def format_plain_text(text: str, spec: str) -> str:
    """Format a stored text/plain value as myst-nb's ``{glue:text}`key:spec``` does."""
    try:
        value = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        value = text
    if spec == "":
        return str(value)
    kind = spec[-1]
    if kind in "bcdoxX":
        value = int(value)
    elif kind in "eEfFgGn%":
        value = float(value)
    elif kind == "s":
        value = str(value)
    return format(value, spec)


# ----------------------------------------------------------------------------- markdown
def _titled(body: str) -> tuple[str, str | None]:
    m = TITLED.match(body.strip())
    return (m["text"].strip(), m["target"].strip()) if m else (body.strip(), None)


def heading_anchor(heading: str) -> str:
    """The anchor Jupyter gives a heading: its text with spaces as hyphens."""
    text = re.sub(r"[*`]", "", heading.lstrip("#").strip())
    return re.sub(r"\s+", "-", text)


def labels(chapters=None, values_of=None) -> dict[str, tuple[str, str]]:
    """``{label: (notebook name, heading text)}`` for every MyST label of the chapters."""
    found = {}
    for chapter in chapters or sorted(CHAPTERS.glob("*.ipynb")):
        nb = nbformat.read(chapter, as_version=4)
        values = (values_of or {}).get(chapter.name) or glue_values(nb)
        lines = [line for c in nb.cells if c.cell_type == "markdown"
                 for line in c.source.split("\n")]
        for i, line in enumerate(lines):
            m = LABEL.match(line.strip())
            if not m:
                continue
            heading = next((l for l in lines[i + 1:] if l.strip()), "")
            if heading.startswith("#"):
                text = ROLE.sub(lambda r: render_role(r[1], r[2], values, chapter.name),
                                heading.lstrip("#").strip())
                found[m[1]] = (chapter.name, text)
    return found


_LABELS: dict[str, tuple[str, str]] = {}
_PAGE: list[str] = [""]


def _ref_link(text: str, target: str | None) -> str:
    label = target or text
    if label not in _LABELS:
        return text if target else label
    page, heading = _LABELS[label]
    anchor = heading_anchor(heading)
    href = f"#{anchor}" if page == _PAGE[0] else f"{page}#{anchor}"
    return f"[{text if target else heading}]({href})"


def _doc_link(target: str) -> str:
    """A ``{doc}`` target as the reader notebook it opens (chapters) or the book's page."""
    stem = Path(target).name
    if (CHAPTERS / f"{stem}.ipynb").is_file():
        return f"{stem}.ipynb"
    return f"{REPOSITORY}/blob/main/{target.lstrip('/')}.md"


def render_role(name: str, body: str, values: dict, where: str) -> str:
    """The Markdown for one MyST role ``{name}`body```."""
    if name in ("glue", "glue:", "glue:text", "glue:md"):
        key, spec = body.strip(), ""
        if name == "glue:text" and ":" in key.replace("::", ""):
            key, spec = key.rsplit(":", 1)  # "key:.1%" formats the value
        key = key.split("::")[-1]  # "doc::key" reads the key from another page
        if key not in values:
            raise ReaderError(f"{where}: glue key {key!r} has no stored value; execute the "
                              "chapter (outputs stored) before writing its reader notebook")
        text, varies = values[key]
        return format_plain_text(text, spec) + (DAGGER if varies else "")
    text, target = _titled(body)
    if name == "ref":
        return _ref_link(text, target)
    if name in ("numref", "eq", "term", "abbr"):
        return text if target or name != "eq" else f"({text})"
    if name == "doc":
        return f"[{text}]({_doc_link(target or text)})" if target else text
    if name == "math":
        return f"${body}$"
    if name in ("sub", "sup"):
        return f"<{name}>{body}</{name}>"
    raise ReaderError(f"{where}: MyST role {{{name}}} has no plain-Markdown form here; "
                      "add it to tools/reader_notebooks.py")


def render_markdown(source: str, values: dict, where: str) -> str:
    """``source`` (MyST) as plain Markdown: roles replaced, directives rewritten."""
    out, lines, i = [], source.split("\n"), 0
    while i < len(lines):
        line = lines[i]
        if LABEL.match(line.strip()) or line.startswith("% "):
            i += 1
            continue
        m = FENCE_OPEN.match(line.strip())
        if not m:
            out.append(ROLE.sub(lambda r: render_role(r[1], r[2], values, where), line))
            i += 1
            continue
        fence, name, arg = m["fence"], m["name"], m["arg"].strip()
        body, i = [], i + 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ReaderError(f"{where}: directive {{{name}}} is not closed by {fence}")
        i += 1
        options = [b.strip() for b in body if re.match(r"^:[\w-]+:", b.strip())]
        body = [b for b in body if not re.match(r"^:[\w-]+:", b.strip())]  # options
        text = render_markdown("\n".join(body).strip("\n"), values, where)
        dropdown = name == "dropdown" or any(
            re.match(r"^:class:.*\bdropdown\b", o) for o in options)
        if dropdown and (name in ADMONITIONS or name == "dropdown"):
            title = render_markdown(arg or name.capitalize(), values, where)
            out.append(f"<details>\n<summary>{title}</summary>\n\n{text}\n\n</details>")
        elif name in ADMONITIONS:
            title = arg or name.capitalize()
            quoted = "\n".join("> " + b if b else ">" for b in text.split("\n"))
            out.append(f"> **{render_markdown(title, values, where)}**\n>\n{quoted}")
        elif name == "math":
            out.append(f"$$\n{text}\n$$")
        elif name in ("code", "code-block"):
            out.append(f"```{arg}\n{text}\n```")
        else:
            raise ReaderError(f"{where}: MyST directive {{{name}}} has no plain-Markdown form "
                              "here; add it to tools/reader_notebooks.py")
    return "\n".join(out)


def leftover_myst(text: str) -> list[str]:
    """MyST roles or directives still in ``text`` (a test: none may reach a reader)."""
    found = [f"{{{m[1]}}}`{m[2]}`" for m in ROLE.finditer(text)]
    found += [l.strip() for l in text.split("\n") if FENCE_OPEN.match(l.strip())]
    return found


# ----------------------------------------------------------------------------- notebooks
def note_cell(title: str, values: dict):
    daggers = any(v for _, v in values.values())
    text = (f"*A reader's copy of **{title}** from [vgg-book]({REPOSITORY}). The numbers in "
            "the text were computed by the book's own build of this notebook.")
    if daggers:
        text += (f" Those marked {DAGGER} depend on the machine or the run (device, timings, "
                 "what a training run reaches): your run prints its own.")
    text += (" Run the cells top to bottom; on Colab the first one installs `vgg_book`, and a "
             "GPU runtime (Runtime > Change runtime type) runs the full training recipes.*")
    cell = nbformat.v4.new_markdown_cell(text)
    cell.id = NOTE_ID
    return cell


def _tags(cell) -> set[str]:
    return set(cell.metadata.get("tags", []))


def collapse(cell, title: str) -> None:
    """Collapse ``cell`` in JupyterLab/Notebook 7 and in Colab's form view, titled ``title``."""
    lines = cell.source.split("\n")
    if conclusion(cell) == title:  # the first comment line becomes the title
        lines = lines[1:]
    cell.source = "\n".join([f"#@title {title}", *lines])
    cell.metadata.setdefault("jupyter", {})["source_hidden"] = True
    cell.metadata["cellView"] = "form"


def _names(source: str) -> tuple[set[str], set[str], bool, bool]:
    """(names stored, names loaded, calls glue, asserts) of a code cell's source."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython syntax (%pip ...): treat as using everything
        return set(), set(), False, True
    stored, loaded, glues, asserts = set(), set(), False, False
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (stored if isinstance(node.ctx, (ast.Store, ast.Del)) else loaded).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stored.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            stored.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assert):
            asserts = True
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "glue":
            glues = True
    return stored, loaded, glues, asserts


def glue_only(cells, index: int) -> bool:
    """Whether code cell ``cells[index]`` only glues values: it calls ``glue``, asserts
    nothing, shows nothing but glue outputs, and no later code cell uses a name it sets."""
    cell = cells[index]
    stored, _, glues, asserts = _names(cell.source)
    if not glues or asserts:
        return False
    if any("scrapbook" not in out.get("metadata", {}) for out in cell.get("outputs", [])):
        return False
    later = set()
    for other in cells[index + 1:]:
        if other.cell_type == "code":
            later |= _names(other.source)[1]
    return not stored & later


def _code_cell(cells, index: int, inside: str | None, keep_otter: bool):
    """The reader's version of code cell ``cells[index]``, or None to drop it."""
    cell = cells[index]
    tags = _tags(cell)
    if tags & {"remove-input", "remove-cell"}:
        if glue_only(cells, index):
            return None
        collapse(cell, BOOKKEEPING_TITLE)
    elif tags & {"hide-input", "hide-cell"} and not (keep_otter and inside == "SOLUTION"):
        prompts = PROMPTS.get(inside or "", {})
        collapse(cell, prompts.get("code_prompt_show") or conclusion(cell) or "Show the code")
        if "hide-cell" in tags:  # the HTML folds the output too
            cell.metadata["jupyter"]["outputs_hidden"] = True
    cell.outputs, cell.execution_count = [], None
    return cell


def reader_notebook(chapter: Path, keep_otter: bool = False):
    """The reader notebook of ``chapter`` (a path to ``chapters/NN_name.ipynb``)."""
    nb = nbformat.read(chapter, as_version=4)
    values = glue_values(nb)
    if not _LABELS:
        _LABELS.update(labels())
    _PAGE[0] = chapter.name
    out = copy.deepcopy(nb)
    cells, blocks = [], []
    for index, cell in enumerate(out.cells):
        where = f"{chapter.name} cell {index}"
        marker = otter_marker(cell)
        if marker is not None:
            kind, block = marker
            if kind == "BEGIN":
                blocks.append(block)
            elif kind == "END" and blocks:
                blocks.pop()
            if keep_otter:
                cells.append(cell)
            continue
        if "remove-cell" in _tags(cell) and cell.cell_type != "code":
            continue
        if cell.cell_type == "markdown":
            cell.source = render_markdown(cell.source, values, where)
        elif cell.cell_type == "code":
            cell = _code_cell(out.cells, index, blocks[-1] if blocks else None, keep_otter)
            if cell is None:
                continue
        cells.append(cell)
    heading = next((c.source.split("\n", 1)[0].lstrip("# ").strip() for c in cells
                    if c.cell_type == "markdown" and c.source.startswith("# ")), chapter.stem)
    out.cells = [note_cell(heading, values)] + cells
    out.metadata = {"kernelspec": nb.metadata.get("kernelspec", {
        "name": "python3", "display_name": "Python 3", "language": "python"}),
        "language_info": {"name": "python"}}
    nbformat.validate(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a reader notebook is missing or stale")
    args = parser.parse_args(argv)
    chapters = args.chapters or sorted(CHAPTERS.glob("*.ipynb"))
    stale = 0
    for chapter in chapters:
        try:
            nb = reader_notebook(chapter)
        except ReaderError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        path = args.out / chapter.name
        text = nbformat.writes(nb) + "\n"
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        if args.check:
            print(f"{path}: {'missing' if current is None else 'stale'} (its chapter changed); "
                  "run `make notebooks` and commit notebooks/", file=sys.stderr)
            stale += 1
        else:
            write_atomic(nb, path)
            print(f"wrote {path}")
    if args.check and not stale:
        print(f"reader notebooks: {len(chapters)} up to date")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
