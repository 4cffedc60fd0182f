"""Assignments: otter assign turns a chapter into a student and an autograder version.

Checked on a small fixture chapter (tools/fixture_chapter.py) and once on chapter 1:
- ``tools/chapter_cells.py`` brings an author's notebook to the otter format idempotently,
  tags the solutions and tests ``hide-input`` and the otter raw cells ``remove-cell``;
- the teacher version scores full marks (``otter assign`` grades it, ``tools/grade.py`` too);
- the student version has none of the solution lines, runs top to bottom without an error,
  and its checks fail with the tests' own messages; graded, it scores 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import assignments  # noqa: E402
import chapter_cells  # noqa: E402
import grade  # noqa: E402
import reader_notebooks  # noqa: E402
import sandbox  # noqa: E402
from fixture_chapter import (HIDDEN_MESSAGE, PUBLIC_MESSAGE, SOLUTION_LINES,  # noqa: E402
                             assign_fixture, write_fixture_chapter)

CHAPTER1 = ROOT / "chapters" / "01_vgg_blocks.ipynb"


def run_notebook(path: Path, timeout: int = 300):
    """Execute the notebook at ``path`` in its folder; raise on the first failing cell."""
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def check_outputs(nb) -> dict[str, str]:
    """Text output of every ``grader.check("qN")`` cell, by question name."""
    found = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("grader.check("):
            name = cell.source.split('"')[1]
            parts = []
            for out in cell.outputs:
                parts.append(out.get("text", ""))
                parts.extend(str(v) for k, v in out.get("data", {}).items()
                             if k == "text/plain")
            found[name] = "\n".join(parts)
    return found


@pytest.fixture(scope="module")
def fixture_assignment(tmp_path_factory):
    return assign_fixture(tmp_path_factory.mktemp("assign"), run_tests=True)


def test_chapter_cells_fixes_format_and_is_idempotent(tmp_path):
    path = write_fixture_chapter(tmp_path / "99_fixture.ipynb")
    nb = nbformat.read(path, as_version=4)
    report = chapter_cells.apply(nb, "99_fixture")
    assert not report.errors, report.errors
    assert any("wrapped the solution" in c for c in report.changes)
    assert chapter_cells.apply(nb, "99_fixture").changes == []  # second run: nothing to do
    raws = [c for c in nb.cells if c.cell_type == "raw"]
    assert raws and all("remove-cell" in c.metadata["tags"] for c in raws)
    solution = next(c for c in nb.cells if "tripled = 3 * x" in c.source)
    assert "hide-input" in solution.metadata["tags"]
    test = next(c for c in nb.cells if PUBLIC_MESSAGE in c.source)
    assert "hide-input" in test.metadata["tags"]
    config = next(c for c in raws if c.source.startswith("# ASSIGNMENT CONFIG"))
    assert "generate: true" in config.source and "name: 99_fixture" in config.source


def test_chapter_cells_reports_unclosed_block(tmp_path):
    nb = nbformat.read(write_fixture_chapter(tmp_path / "x.ipynb"), as_version=4)
    nb.cells = [c for c in nb.cells if c.source != "# END QUESTION"]
    report = chapter_cells.apply(nb, "x")
    assert any("unclosed" in e or "without" in e for e in report.errors), report.errors


def test_student_version_has_no_solution(fixture_assignment):
    source, student, _ = fixture_assignment
    files = [p for p in student.rglob("*") if p.is_file()]
    assert [p.name for p in files] == ["99_fixture.ipynb"]
    nb = nbformat.read(files[0], as_version=4)
    everything = "\n".join(c.source for c in nb.cells) + json.dumps(nb.metadata)
    for line in SOLUTION_LINES:
        assert line in source.read_text() and line not in everything, line
    assert "BEGIN SOLUTION" not in everything and "# SOLUTION" not in everything
    assert HIDDEN_MESSAGE not in everything  # hidden tests live in the autograder only
    assert PUBLIC_MESSAGE in everything  # public tests are kept for grader.check
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_leak_check_catches_an_unstripped_solution(fixture_assignment, tmp_path):
    source, student, _ = fixture_assignment
    leaky = tmp_path / "student"
    leaky.mkdir()
    nb = nbformat.read(source, as_version=4)  # the teacher notebook, solutions and all
    nbformat.write(nb, leaky / "99_fixture.ipynb")
    found = assignments.leaks(leaky, assignments.solution_lines(source))
    assert len(found) == len(SOLUTION_LINES), found


def test_student_runs_and_fails_checks_with_clear_messages(fixture_assignment):
    _, student, _ = fixture_assignment
    nb = run_notebook(student / "99_fixture.ipynb")  # raises if any cell errors
    checks = check_outputs(nb)
    assert set(checks) == {"q1", "q2"}
    assert PUBLIC_MESSAGE in checks["q1"] and "returned None" in checks["q1"]
    assert "expected answer == 42, got Ellipsis" in checks["q2"]


def test_grading_teacher_full_marks_student_zero(fixture_assignment, tmp_path):
    _, student, autograder = fixture_assignment
    zip_path = grade.find_autograder(student / "99_fixture.ipynb", autograder.parent.parent)
    out = tmp_path / "student.json"
    # In the sandbox where bubblewrap runs (CI), else unisolated: the same scores.
    isolation = ["--no-sandbox"] if sandbox.bwrap_problem() else ["--isolation", "bubblewrap"]
    assert grade.main([str(student / "99_fixture.ipynb"), "--autograder", str(zip_path),
                       "--out", str(out), *isolation]) == 0
    result = json.loads(out.read_text())
    assert result["status"] == "graded", result["status"]
    assert result["possible"] == 2 and result["score"] == 0
    assert PUBLIC_MESSAGE in result["questions"]["q1"]["reason"]
    assert HIDDEN_MESSAGE in result["questions"]["q1"]["reason"]  # grading runs hidden tests
    grader = grade.Grader(isolation="none", limits=sandbox.Limits(seconds=120))
    teacher = grader.grade("teacher", autograder / "99_fixture.ipynb", zip_path)
    assert teacher.status == "graded", teacher.status
    assert teacher.score == teacher.possible == 2
    assert all(q["passed"] and q["reason"] is None for q in teacher.questions.values())


def test_autograder_zip_has_what_gradescope_needs(fixture_assignment, tmp_path):
    # Gradescope's otter image (and otter grade's containers) build the environment from
    # the zip: otter_config.json names the assignment, tests/ holds every question, and
    # environment.yml installs vgg-book, torch and torchvision beside otter.
    source = tmp_path / "99_fixture.ipynb"
    source.write_bytes(fixture_assignment[0].read_bytes())
    nb = assignments.with_requirements(nbformat.read(source, as_version=4),
                                       assignments.gradescope_requirements())
    nbformat.write(nb, source)
    _, autograder = assignments.assign(source, tmp_path / "out", run_tests=False)
    zip_path = grade.autograder_for("99_fixture", tmp_path / "out")
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        config = json.loads(z.read("otter_config.json"))
        env = yaml.safe_load(z.read("environment.yml"))
    assert config["assignment_name"] == "99_fixture"
    assert {"tests/q1.py", "tests/q2.py", "run_autograder", "setup.sh"} <= names
    assert grade.question_points(zip_path) == {"q1": 1, "q2": 1}
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    wanted = assignments.gradescope_requirements()
    assert [p for p in pip if p in wanted] == wanted, pip
    assert any(p.startswith("otter-grader") for p in pip)
    assert any(p.startswith("vgg-book @ https://") and p.endswith(".tar.gz") for p in pip)
    assert "torch==" in " ".join(pip) and "download.pytorch.org/whl/cpu" in " ".join(pip)


def test_requirements_follow_the_pins():
    reqs = assignments.gradescope_requirements()
    pins = (ROOT / "requirements.txt").read_text()
    for line in reqs[1:3]:
        assert line in pins.splitlines(), line


def test_grade_rejects_a_notebook_without_assignment(tmp_path):
    plain = tmp_path / "plain.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), plain)
    with pytest.raises(ValueError, match="no otter assignment name"):
        grade.find_autograder(plain, tmp_path)


@pytest.mark.skipif(not CHAPTER1.exists(), reason="chapter 1 not written yet")
def test_chapter1_assignment(tmp_path):
    # Work on a copy: the tool may need to fix the author's cells first.
    source = tmp_path / CHAPTER1.name
    source.write_bytes(CHAPTER1.read_bytes())
    assert chapter_cells.main([str(source)]) == 0
    # From the reader version, as `make assignments` does: students read numbers, not roles.
    # Otter does not rerun the teacher version here: nbval executes every chapter with its
    # solutions and their checks in order (make test-notebooks), which is the same test.
    student, _ = assignments.assign_chapter(source, tmp_path / "out", run_tests=False)
    handed_out = nbformat.read(student / CHAPTER1.name, as_version=4)
    roles = sum(c.source.count("{glue:text}") for c in nbformat.read(source, as_version=4).cells)
    raw = [m for c in handed_out.cells if c.cell_type == "markdown"
           for m in reader_notebooks.leftover_myst(c.source)]
    assert roles > 0 and raw == [], raw[:3]
    nb = run_notebook(student / CHAPTER1.name)
    checks = check_outputs(nb)
    assert checks, "chapter 1's student version has no grader.check cells"
    for name, text in checks.items():
        assert "AssertionError" in text or "Error" in text, f"{name} did not fail: {text[:300]}"


def test_unfixed_author_format_is_refused(tmp_path):
    # The format as first written in CONVENTIONS.md (no raw SOLUTION cells): otter would
    # hand the solutions to students; assign() must refuse and delete the student folder.
    source = write_fixture_chapter(tmp_path / "99_fixture.ipynb")
    with pytest.raises(RuntimeError, match="reached the student version"):
        assignments.assign(source, tmp_path / "out", run_tests=False)
    assert not (tmp_path / "out" / "student" / "99_fixture").exists()


CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


@pytest.mark.skipif(not CHAPTERS, reason="no chapter written yet")
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_follows_cell_conventions(path):
    nb = nbformat.read(path, as_version=4)
    report = chapter_cells.apply(nb, path.stem)
    assert not report.errors, f"{path.name}: " + "; ".join(report.errors)
    assert not report.changes, (
        f"{path.name} needs `.venv/bin/python tools/chapter_cells.py "
        f"{path.relative_to(ROOT)}`: " + "; ".join(report.changes[:5]))
