"""Make the student and autograder versions of every chapter with ``otter assign``.

Usage:  .venv/bin/python tools/assignments.py [--out DIR] [--no-run-tests] [NOTEBOOK ...]
        (no NOTEBOOK: every ``chapters/*.ipynb`` with an ``# ASSIGNMENT CONFIG`` cell)

A chapter is first turned into its reader version (``tools/reader_notebooks.py``, otter's
raw cells kept), so that students read numbers where the source has MyST glue roles. For a
chapter ``NN_name`` it writes
- ``DIR/student/NN_name/NN_name.ipynb``: solutions replaced by ``...``, outputs removed,
  public tests kept in the notebook (students run ``grader.check("q1")``);
- ``DIR/autograder/NN_name/``: the teacher notebook and ``NN_name-autograder_*.zip``, which
  ``tools/grade.py`` uses.
``otter assign`` grades the teacher version and fails unless it scores full marks (skip with
``--no-run-tests``). Then every solution line of the source is searched for in the student
folder: one found is an error, and the student folder is deleted.
DIR defaults to ``_build/assignments``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import reader_notebooks  # noqa: E402
from chapter_cells import otter_marker, write_atomic  # noqa: E402


def has_assignment(path: Path) -> bool:
    """Whether the notebook at ``path`` has an ``# ASSIGNMENT CONFIG`` raw cell."""
    nb = nbformat.read(path, as_version=4)
    return any(otter_marker(c) == ("CONFIG", "") for c in nb.cells)


def solution_lines(path: Path) -> list[str]:
    """The lines a student must not see: in any code cell, those between ``# BEGIN SOLUTION``
    and ``# END SOLUTION`` comments and those ending in ``# SOLUTION`` (without the comment).
    Stripped, without blank or trivial lines (``...``, ``pass``, comments) and without lines
    that also appear elsewhere in the notebook (e.g. in a test)."""
    nb = nbformat.read(path, as_version=4)
    lines, public = [], set()
    for cell in nb.cells:
        inside = False
        for line in cell.source.splitlines():
            text = line.strip()
            if cell.cell_type != "code":
                public.add(text)
            elif text.startswith("# BEGIN SOLUTION"):
                inside = True
            elif text.startswith("# END SOLUTION"):
                inside = False
            elif inside:
                lines.append(text)
            elif re.search(r"# ?SOLUTION$", text):
                lines.append(re.sub(r"\s*# ?SOLUTION$", "", text))
            else:
                public.add(text)
    return [t for t in lines if t and t not in public and t not in ("...", "pass")
            and not t.startswith("#")]


def leaks(student_dir: Path, lines: list[str]) -> list[str]:
    """Solution ``lines`` found in any file under ``student_dir`` (each as 'file: line')."""
    found = []
    for file in sorted(p for p in student_dir.rglob("*") if p.is_file()):
        text = file.read_text(encoding="utf-8", errors="replace")
        # Notebook JSON escapes quotes and backslashes: search the cell sources instead.
        if file.suffix == ".ipynb":
            nb = nbformat.reads(text, as_version=4)
            text = "\n".join(c.source for c in nb.cells) + "\n" + str(nb.metadata)
        found += [f"{file.name}: {line}" for line in lines if line in text]
    return found


def assign(path: Path, out: Path, run_tests: bool = True) -> tuple[Path, Path]:
    """Run ``otter assign`` on the notebook at ``path``; return (student dir, autograder dir).

    Raises ``RuntimeError`` with otter's output when it fails (e.g. the teacher version does
    not pass its own tests) or when a solution line reaches the student version.
    """
    path = path.resolve()
    name = path.stem
    work = out / "_otter" / name
    shutil.rmtree(work, ignore_errors=True)
    cmd = [sys.executable, "-m", "otter", "assign", "--no-pdfs", str(path), str(work)]
    if not run_tests:
        cmd.insert(-2, "--no-run-tests")
    proc = subprocess.run(cmd, cwd=path.parent, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"otter assign failed on {path.name} (exit {proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    student, autograder = out / "student" / name, out / "autograder" / name
    for src, dst in ((work / "student", student), (work / "autograder", autograder)):
        shutil.rmtree(dst, ignore_errors=True)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dst))
    shutil.rmtree(work)
    found = leaks(student, solution_lines(path))
    if found:
        shutil.rmtree(student)
        raise RuntimeError(f"solution lines of {path.name} reached the student version "
                           f"(deleted it): " + "; ".join(found))
    return student, autograder


def assign_chapter(chapter: Path, out: Path, run_tests: bool = True) -> tuple[Path, Path]:
    """``assign`` the reader version of ``chapter`` (glue roles replaced by their values)."""
    source = out / "_source" / chapter.name
    source.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(reader_notebooks.reader_notebook(chapter, keep_otter=True), source)
    return assign(source, out, run_tests=run_tests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "assignments")
    parser.add_argument("--no-run-tests", action="store_true",
                        help="do not grade the teacher version while assigning")
    args = parser.parse_args(argv)
    paths = args.notebooks or [p for p in sorted((ROOT / "chapters").glob("*.ipynb"))
                               if has_assignment(p)]
    if not paths:
        print("no chapter has an '# ASSIGNMENT CONFIG' cell yet", file=sys.stderr)
        return 1
    out = args.out.resolve()
    failed = 0
    for path in paths:
        try:
            student, autograder = assign_chapter(path, out, run_tests=not args.no_run_tests)
        except (RuntimeError, reader_notebooks.ReaderError) as err:
            print(f"FAILED {path}: {err}", file=sys.stderr)
            failed += 1
            continue
        print(f"{path.name}: student {student.relative_to(out.parent)}, "
              f"autograder {autograder.relative_to(out.parent)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
