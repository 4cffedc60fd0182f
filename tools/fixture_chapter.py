"""A tiny chapter notebook in the book's format, for the tests of the tools.

It is written as an author might leave it before ``tools/chapter_cells.py`` runs: set-up
cell pinned to ``@main``, solution cells not wrapped in raw SOLUTION cells, ``generate:
false``. Two questions: ``q1`` (a function, public test plus a hidden one) and ``q2`` (a
value on a ``# SOLUTION`` line).
"""

from __future__ import annotations

from pathlib import Path

import nbformat

#: Lines of the fixture's solutions: none may reach the student version.
SOLUTION_LINES = ("tripled = 3 * x", "return tripled", "answer = 6 * 7")
#: Text of the public test's failure message, which a student must see.
PUBLIC_MESSAGE = "expected triple(4) == 12"
HIDDEN_MESSAGE = "hidden check: triple(-5)"
#: A collapsed block of each kind, headed by its conclusion.
DROPDOWN_TITLE = "Doubling gives an even number"
CHECK_CONCLUSION = "Doubling twice quadruples."

OLD_SETUP = (
    "# Set-up: on Colab, install vgg_book (torch and torchvision are already there).\n"
    "# Everywhere else this cell does nothing.\n"
    "import sys\n"
    'if "google.colab" in sys.modules:\n'
    '    %pip install -q "vgg-book @ git+https://github.com/vgg-book/vgg-book@main"'
)


def fixture_notebook(name: str = "99_fixture"):
    """The fixture notebook as an ``nbformat`` node (not executed)."""
    v4 = nbformat.v4
    cells = [
        v4.new_markdown_cell(f"# 99. Fixture\n\nPythagoras: $a^2 + b^2 = c^2$.\n\n$$e^{{i\\pi}} = -1$$"),
        v4.new_code_cell(OLD_SETUP),
        v4.new_code_cell("def double(x):\n    return 2 * x\n\nprint(double(21))"),
        v4.new_markdown_cell(f":::{{dropdown}} {DROPDOWN_TITLE}\nTwice an integer is even.\n:::"),
        v4.new_code_cell(f"# {CHECK_CONCLUSION}\nassert double(double(1)) == 4",
                         metadata={"tags": ["hide-input"]}),
        v4.new_raw_cell(f"# ASSIGNMENT CONFIG\nname: {name}\nexport_cell: false\n"
                        "generate: false\ncheck_all_cell: false"),
        v4.new_markdown_cell("## Exercises"),
        v4.new_raw_cell("# BEGIN QUESTION\nname: q1"),
        v4.new_markdown_cell("**Exercise 1.** Write `triple(x)`, which returns `3 * x`."),
        v4.new_code_cell("def triple(x):\n    # BEGIN SOLUTION\n    tripled = 3 * x\n"
                         "    return tripled\n    # END SOLUTION"),
        v4.new_raw_cell("# BEGIN TESTS"),
        v4.new_code_cell("got = triple(4)\n"
                         f"assert got == 12, f\"{PUBLIC_MESSAGE}, your function returned {{got}}\""),
        v4.new_code_cell("# HIDDEN\n"
                         f"assert triple(-5) == -15, \"{HIDDEN_MESSAGE} should be -15\""),
        v4.new_raw_cell("# END TESTS"),
        v4.new_raw_cell("# END QUESTION"),
        v4.new_raw_cell("# BEGIN QUESTION\nname: q2"),
        v4.new_markdown_cell("**Exercise 2.** Set `answer` to six times seven."),
        v4.new_code_cell("answer = 6 * 7  # SOLUTION"),
        v4.new_raw_cell("# BEGIN TESTS"),
        v4.new_code_cell("assert answer == 42, f\"expected answer == 42, got {answer!r}\""),
        v4.new_raw_cell("# END TESTS"),
        v4.new_raw_cell("# END QUESTION"),
    ]
    return v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})


def write_fixture_chapter(path: Path) -> Path:
    """Write the fixture notebook to ``path`` (its stem becomes the assignment name)."""
    path = Path(path)
    nbformat.write(fixture_notebook(path.stem), path)
    return path


def assign_fixture(folder: Path, run_tests: bool = False) -> tuple[Path, Path, Path]:
    """The fixture chapter written to ``folder``, brought to the book's format and assigned
    into ``folder/out``: (source notebook, student folder, autograder folder)."""
    import assignments
    import chapter_cells

    source = write_fixture_chapter(Path(folder) / "99_fixture.ipynb")
    if chapter_cells.main([str(source)]) != 0:
        raise RuntimeError(f"chapter_cells could not bring {source} to the book's format")
    student, autograder = assignments.assign(source, Path(folder) / "out",
                                             run_tests=run_tests)
    return source, student, autograder
