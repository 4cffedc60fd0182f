"""Reader notebooks: chapters as Jupyter and Colab show them, with numbers instead of roles.

- ``notebooks/`` is what ``tools/reader_notebooks.py`` makes of today's chapters (not stale);
- no MyST role or directive reaches a reader, and every glued value lands in the text, with
  a dagger exactly when the chapter glued it with ``varies=True``;
- the glue helper writes what myst-nb reads, and does nothing without myst-nb;
- unknown MyST and missing values fail with a message that says what to do.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

from vgg_book.glue import glue

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import reader_notebooks as rn  # noqa: E402

CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def markdown(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def test_committed_reader_notebooks_are_up_to_date():
    assert [p.name for p in sorted((ROOT / "notebooks").glob("*.ipynb"))] == [
        p.name for p in CHAPTERS]
    assert rn.main(["--check"]) == 0, "notebooks/ is stale: run `make notebooks` and commit it"


def test_check_reports_a_stale_notebook(tmp_path, capsys):
    (tmp_path / CHAPTERS[0].name).write_text("{}")
    assert rn.main(["--check", "--out", str(tmp_path), str(CHAPTERS[0])]) == 1
    assert "stale" in capsys.readouterr().err
    assert rn.main(["--check", "--out", str(tmp_path / "none"), str(CHAPTERS[0])]) == 1
    assert "missing" in capsys.readouterr().err


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_reader_notebook_has_every_value_and_no_myst(chapter):
    source = nbformat.read(chapter, as_version=4)
    reader = nbformat.read(ROOT / "notebooks" / chapter.name, as_version=4)
    values = rn.glue_values(source)
    roles = re.findall(r"\{glue:text\}`([^`:]+)`", markdown(source))
    text = markdown(reader)
    assert roles and rn.leftover_myst(text) == []
    for key in roles:  # each value is in the text, flagged exactly when it varies
        value, varies = values[key]
        shown = rn.format_plain_text(value, "") + (rn.DAGGER if varies else "")
        assert shown in text, (key, shown)
    assert reader.cells[0].id == rn.NOTE_ID  # the note on top explains the dagger
    body = markdown(nbformat.v4.new_notebook(cells=reader.cells[1:]))
    assert body.count(rn.DAGGER) == sum(values[k][1] for k in roles)
    assert not any(c.cell_type == "raw" for c in reader.cells)  # otter markers dropped
    code = [c for c in reader.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert "myst_nb" not in "\n".join(c.source for c in code)


def test_device_and_training_results_are_flagged():
    values = rn.glue_values(nbformat.read(ROOT / "chapters/05_training.ipynb", as_version=4))
    assert values["device_name"][1] and values["final_acc"][1] and values["run_seconds"][1]
    assert not values["n_train"][1] and not values["gflops_224"][1]  # computed the same anywhere


def test_render_markdown_roles_and_directives():
    values = {"n": ("'60,000'", False), "acc": ("0.8612", True), "dev": ("'a CPU'", True)}
    md = ("(sec-data)=\n# Data\n{glue:text}`n` images, {glue:text}`acc:.1%` on {glue}`dev`; "
          "see {ref}`the data <sec-data>` and {doc}`chapter 5 <05_training>`, {math}`x^2`.\n"
          ":::{note} Why\nIt is {glue:text}`n`.\n:::")
    got = rn.render_markdown(md, values, "test")
    assert got.startswith("# Data\n60,000 images, 86.1%<sup>†</sup> on a CPU<sup>†</sup>;")
    assert "see the data and [chapter 5](05_training.ipynb), $x^2$." in got
    assert "> **Why**\n>\n> It is 60,000." in got
    assert rn.leftover_myst(got) == []


def test_unknown_myst_and_missing_values_are_errors():
    with pytest.raises(rn.ReaderError, match=r"role \{cite\}.*add it to tools"):
        rn.render_markdown("{cite}`vgg2015`", {}, "ch.md cell 3")
    with pytest.raises(rn.ReaderError, match=r"directive \{figure\}"):
        rn.render_markdown("```{figure} a.png\ncaption\n```", {}, "x")
    with pytest.raises(rn.ReaderError, match=r"ch cell 2: glue key 'nope' has no stored value"):
        rn.render_markdown("{glue:text}`nope`", {}, "ch cell 2")
    with pytest.raises(rn.ReaderError, match="not closed"):
        rn.render_markdown(":::{note}\nopen", {}, "x")


GLUE_CELL = """
from vgg_book.glue import glue
glue("plain", f"{60000:,}")
glue("timed", 1.25, varies=True)
"""


def run_in_kernel(code: str, block_myst: bool):
    """Execute ``code`` in a fresh kernel (myst-nb made unimportable if ``block_myst``)."""
    from nbclient import NotebookClient

    prelude = "import sys; sys.modules['myst_nb'] = None\n" if block_myst else ""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(prelude + code)])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    return nb


def test_glue_writes_what_myst_nb_reads():
    nb = run_in_kernel(GLUE_CELL, block_myst=False)
    assert rn.glue_values(nb) == {"plain": ("'60,000'", False), "timed": ("1.25", True)}
    from myst_nb.ext.glue import extract_glue_data_cell

    keys = [key for key, _ in extract_glue_data_cell(nb.cells[0])]
    assert keys == ["plain", "timed"]  # myst-nb finds both
    assert nb.cells[0].outputs == []  # and shows nothing in the page


def test_glue_without_myst_nb_does_nothing():
    nb = run_in_kernel(GLUE_CELL + "glue('shown', 7, display=True)", block_myst=True)
    outputs = nb.cells[0].outputs
    assert len(outputs) == 1 and outputs[0]["data"]["text/plain"] == "7", outputs


def test_glue_rejects_a_bad_name():
    with pytest.raises(ValueError, match="identifier such as 'n_train'"):
        glue("n train", 1)


def collapsed(cell) -> bool:
    return (cell.metadata.get("jupyter", {}).get("source_hidden") is True
            and cell.metadata.get("cellView") == "form"
            and cell.source.startswith("#@title "))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_reader_notebook_collapses_what_the_html_collapses(chapter):
    """JupyterLab and Colab collapse what the book's HTML collapses (issue 19)."""
    source = nbformat.read(chapter, as_version=4)
    reader = nbformat.read(ROOT / "notebooks" / chapter.name, as_version=4)
    by_id = {c.id: c for c in reader.cells}
    for index, cell in enumerate(source.cells):
        tags = set(cell.metadata.get("tags", []))
        if cell.cell_type != "code" or not tags & {"hide-input", "hide-cell", "remove-input",
                                                   "remove-cell"}:
            continue
        mine = by_id.get(cell.id)
        if tags & {"hide-input", "hide-cell"}:
            assert mine is not None and collapsed(mine), (chapter.name, index)
            outputs_hidden = mine.metadata["jupyter"].get("outputs_hidden", False)
            assert outputs_hidden == ("hide-cell" in tags), (chapter.name, index)
            label = cell.metadata.get("mystnb", {}).get("code_prompt_show")
            assert label and mine.source.split("\n", 1)[0] == f"#@title {label}"
        elif mine is not None:  # a removed input: kept only collapsed
            assert collapsed(mine), (chapter.name, index)
            assert mine.source.startswith(f"#@title {rn.BOOKKEEPING_TITLE}")
        else:  # dropped: it only glued values nothing later reads
            assert rn.glue_only(source.cells, index), (chapter.name, index)
    visible = [c for c in reader.cells if c.cell_type == "code" and not collapsed(c)]
    assert not [c.source for c in visible if re.search(r"\bglue\(", c.source)]
    # Dropdowns become <details>, closed; no label leaks as text.
    text = markdown(source)
    dropdowns = len(re.findall(r"^(?:`{3,}|:{3,})\{dropdown\}", text, re.M)) + len(
        re.findall(r"^:class:.*\bdropdown\b", text, re.M))
    shown = markdown(reader)
    assert shown.count("<details>") == dropdowns and "<details open" not in shown
    for label in re.findall(r"^\(([^()\s]+)\)=\s*$", text, re.M):
        assert not re.search(rf"(?<![#\w-]){re.escape(label)}(?![\w-])", shown), label


def test_refs_become_links_to_the_labelled_heading(monkeypatch):
    monkeypatch.setattr(rn, "_LABELS", {"sec-a": ("01_x.ipynb", "VGG-11, block by block")})
    monkeypatch.setattr(rn, "_PAGE", ["02_y.ipynb"])
    got = rn.render_markdown("see {ref}`sec-a` and {ref}`the trace <sec-a>`", {}, "t")
    assert got == ("see [VGG-11, block by block](01_x.ipynb#VGG-11,-block-by-block) and "
                   "[the trace](01_x.ipynb#VGG-11,-block-by-block)")
    rn._PAGE[0] = "01_x.ipynb"
    assert rn.render_markdown("{ref}`sec-a`", {}, "t").endswith("(#VGG-11,-block-by-block)")


def test_dropdowns_become_closed_details():
    md = ":::{dropdown} The counts agree\nIt is {glue:text}`n`.\n:::\n" \
         "```{note} Why\n:class: dropdown\nBecause.\n```"
    got = rn.render_markdown(md, {"n": ("3", False)}, "t")
    assert got == ("<details>\n<summary>The counts agree</summary>\n\nIt is 3.\n\n</details>\n"
                   "<details>\n<summary>Why</summary>\n\nBecause.\n\n</details>")


def test_glue_only_cells_are_dropped_unless_a_later_cell_reads_them():
    cells = [nbformat.v4.new_code_cell("x = 3\nglue('x', x)"),
             nbformat.v4.new_code_cell("glue('y', 4)\nassert 4 > 3"),
             nbformat.v4.new_code_cell("z = 5\nglue('z', z)"),
             nbformat.v4.new_code_cell("print(z)")]
    assert [rn.glue_only(cells, i) for i in range(3)] == [True, False, False]
