"""The HTML pages: Colab launch URL, .ipynb download, exercises rendered for a reader.

A tiny book (the real ``_config.yml`` with execution off, one fixture chapter prepared by
``tools/chapter_cells.py``) is built in a temp folder, so the test needs no executed chapter
(about 10 s). The pages of the real book, in a real browser and with the network off, are
checked by ``tools/browser_test.py`` (``make test-html``), Colab links included.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import chapter_cells  # noqa: E402
import reader_notebooks  # noqa: E402
from fixture_chapter import (CHECK_CONCLUSION, DROPDOWN_TITLE, PUBLIC_MESSAGE,  # noqa: E402
                             SOLUTION_LINES, write_fixture_chapter)

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO = CONFIG["repository"]["url"].removeprefix("https://github.com/").strip("/")
BRANCH = CONFIG["repository"]["branch"]


def colab_url(notebook: str) -> str:
    """The Colab URL a page must link to for ``notebook`` (a path in the repository)."""
    return f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/{notebook}"


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory) -> Path:
    book = tmp_path_factory.mktemp("book")
    (book / "chapters").mkdir()
    chapter = write_fixture_chapter(book / "chapters/99_fixture.ipynb")
    assert chapter_cells.main([str(chapter)]) == 0
    assert reader_notebooks.main([str(chapter), "--out", str(book / "notebooks")]) == 0
    config = dict(CONFIG, execute=dict(CONFIG["execute"], execute_notebooks="off"))
    # Local Sphinx extensions live in this repository, not in the temp book.
    config["sphinx"] = dict(CONFIG["sphinx"], local_extensions={
        name: str(ROOT / path) for name, path in CONFIG["sphinx"]["local_extensions"].items()})
    (book / "_config.yml").write_text(yaml.safe_dump(config))
    (book / "_toc.yml").write_text(yaml.safe_dump(
        {"format": "jb-book", "root": "intro", "chapters": [{"file": "chapters/99_fixture"}]}))
    # The intro is an executed notebook too, like the book's (no reader notebook of its own).
    intro = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A fixture book"),
        nbformat.v4.new_code_cell("1 + 1", outputs=[nbformat.v4.new_output(
            "execute_result", {"text/plain": "2"}, execution_count=1)], execution_count=1),
        nbformat.v4.new_markdown_cell("```{tableofcontents}\n```")])
    intro.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}
    nbformat.write(intro, book / "intro.ipynb")
    proc = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build",
                           str(book), "-W", "--keep-going"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return book / "_build" / "html"


def page(html: Path) -> BeautifulSoup:
    return BeautifulSoup(html.read_text(encoding="utf-8"), "html.parser")


def colab_links(soup: BeautifulSoup) -> list[str]:
    return [a["href"] for a in soup.find_all("a", href=True)
            if a["href"].startswith("https://colab.research.google.com/")]


def test_config_has_colab_and_repository():
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert REPO == "vgg-book/vgg-book" and BRANCH == "main"
    assert CONFIG["repository"].get("path_to_book", "") == ""


def test_colab_button_opens_the_reader_notebook(tiny_book):
    links = colab_links(page(tiny_book / "chapters" / "99_fixture.html"))
    assert links == [colab_url("notebooks/99_fixture.ipynb")]
    assert (tiny_book.parent.parent / "notebooks" / "99_fixture.ipynb").is_file()


def test_intro_has_no_colab_or_source_button(tiny_book):
    soup = page(tiny_book / "intro.html")
    assert soup.select(".cell_output")  # the intro's output is there: it is a notebook page
    assert colab_links(soup) == []
    assert not [a for a in soup.find_all("a", href=True) if a["href"].endswith(".ipynb")]


def test_download_button_serves_the_reader_notebook(tiny_book):
    soup = page(tiny_book / "chapters" / "99_fixture.html")
    hrefs = [a["href"] for a in soup.find_all("a", href=True) if a["href"].endswith(".ipynb")
             and not a["href"].startswith("http")]
    assert hrefs == ["../notebooks/99_fixture.ipynb"], hrefs
    served = (tiny_book / "notebooks" / "99_fixture.ipynb").read_text()
    reader = (tiny_book.parent.parent / "notebooks" / "99_fixture.ipynb").read_text()
    assert served == reader
    cells = json.loads(served)["cells"]
    assert not any(c["cell_type"] == "raw" for c in cells)  # no otter markers for readers


def test_otter_cells_do_not_show(tiny_book):
    text = page(tiny_book / "chapters" / "99_fixture.html").get_text()
    for marker in ("ASSIGNMENT CONFIG", "BEGIN QUESTION", "END QUESTION", "BEGIN TESTS",
                   "name: q1", "generate:"):
        assert marker not in text, marker
    assert "Exercise 1." in text and "Exercise 2." in text


def test_solutions_and_tests_are_behind_a_toggle(tiny_book):
    soup = page(tiny_book / "chapters" / "99_fixture.html")
    hidden = [d.get_text() for d in soup.select("div.cell.tag_hide-input details.hide")]
    shown = [c.get_text() for c in soup.select("div.cell:not(.tag_hide-input)")]
    for line in SOLUTION_LINES + (PUBLIC_MESSAGE,):
        assert any(line in h for h in hidden), f"{line!r} is not inside a toggle"
        assert not any(line in s for s in shown), f"{line!r} shows without a toggle"
    assert any("double(21)" in s for s in shown)  # ordinary cells stay visible
    labels = [s.get_text(" ", strip=True) for s in soup.select("details.hide summary")]
    assert sorted(labels) == sorted(["Show the checks Hide the checks"] * 3 + [
        "Show the solution Hide the solution"] * 2 + [f"{CHECK_CONCLUSION} Hide the code"]), labels


def test_collapsed_blocks_are_headed_by_their_conclusion(tiny_book):
    soup = page(tiny_book / "chapters" / "99_fixture.html")
    dropdowns = soup.select("details.sd-dropdown")
    assert [d.summary.get_text(" ", strip=True) for d in dropdowns] == [DROPDOWN_TITLE]
    assert not dropdowns[0].has_attr("open")  # collapsed until the reader opens it
    assert "Twice an integer is even." in dropdowns[0].get_text()


def test_code_css_is_linked_and_served(tiny_book):
    soup = page(tiny_book / "chapters" / "99_fixture.html")
    links = [l["href"] for l in soup.find_all("link", rel="stylesheet")]
    assert any(h.split("?")[0].endswith("_static/vgg-book.css") for h in links), links
    css = (tiny_book / "_static" / "vgg-book.css").read_text()
    assert "font-size: 13px" in css and "pre-wrap" in css and "span.pasted-text" in css


def test_each_script_once(tiny_book):
    # sphinx-thebe's inline config appears twice without tools/sphinx_ext/dedupe_scripts.py,
    # and the second copy is a JavaScript error ("THEBE_JS_URL has already been declared").
    soup = page(tiny_book / "chapters" / "99_fixture.html")
    scripts = [(s.get("src"), s.string) for s in soup.find_all("script")
               if s.get("src") or (s.string or "").strip()]
    repeated = {s for s in scripts if scripts.count(s) > 1}
    assert not repeated, repeated
    assert sum("THEBE_JS_URL" in (body or "") for _, body in scripts) == 1


def test_offline_config_loads_nothing_from_the_network():
    import book_offline

    config = book_offline.offline_config(ROOT, execute="off")
    sphinx = config["sphinx"]["config"]
    assert sphinx["mathjax_path"] == "mathjax/tex-mml-chtml.js"
    assert sphinx["html_static_path"] == [str(ROOT / "_vendor")]
    assert list(sphinx["nb_ipywidgets_js"]) == ["widgets/require.js", "widgets/amd-config.js",
                                                "widgets/embed-amd.js", "widgets/mathjax2-shim.js"]
    assert config["execute"]["execute_notebooks"] == "off"
    assert sphinx["nb_execution_show_tb"] is True  # the book's own settings are kept
    assert "http" not in json.dumps(sphinx)
    # The config file is written to _build/: local extension paths must not be relative.
    assert config["sphinx"]["local_extensions"] == {
        "dedupe_scripts": str(ROOT / "tools" / "sphinx_ext"),
        "reader_links": str(ROOT / "tools" / "sphinx_ext"),
        "code_width": str(ROOT / "tools" / "sphinx_ext")}
