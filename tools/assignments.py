"""Make the student and autograder versions of every chapter with ``otter assign``.

Usage:  .venv/bin/python tools/assignments.py [--out DIR] [--check] [NOTEBOOK ...]
        (no NOTEBOOK: every ``chapters/*.ipynb`` with an ``# ASSIGNMENT CONFIG`` cell)

A chapter is first turned into its reader version (``tools/reader_notebooks.py``, otter's
raw cells kept), so that students read numbers where the source has MyST glue roles. For a
chapter ``NN_name`` it writes
- ``DIR/student/NN_name/NN_name.ipynb``: solutions replaced by ``...``, outputs removed,
  public tests kept in the notebook (students run ``grader.check("q1")``);
- ``DIR/autograder/NN_name/``: the teacher notebook and ``NN_name-autograder_*.zip``, which
  ``tools/grade.py`` uses.
Every solution line of the source is then searched for in the student folder: one found is
an error, and the student folder is deleted. The autograder installs vgg-book, torch and
torchvision (``gradescope_requirements``), so its zip can be uploaded to Gradescope.

Where the time goes: writing all seven chapters' versions takes about 15 s here. ``otter
assign`` would also grade each teacher version, which executes the whole chapter again
(chapter 5 trains its CPU recipe): over 10 minutes on this 2-core machine, repeating what
``make test`` already does (nbval executes every chapter with its solutions and their
checks, and ``tests/test_assignments.py`` grades the fixture's teacher version through
otter). So that grading runs only with ``--check`` (``make assignments CHECK=1``), for a
teacher who changed a solution and has not run ``make test`` since.
DIR defaults to ``_build/assignments``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
#: CPU builds of torch: the autograder needs no GPU, and they are a tenth of the download.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
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


def gradescope_requirements() -> list[str]:
    """What the autograder's environment installs besides otter (Gradescope's otter image
    and ``otter grade``'s containers build it): CPU builds of torch and torchvision at this
    book's pins, pandas, and ``vgg-book`` at this version's release tag, as a source archive
    over https (those images have no git). ``$VGG_BOOK_PIP_SPEC`` names another source, as
    it does for the Colab set-up cell."""
    sys.path.insert(0, str(ROOT))
    from vgg_book import __version__
    from vgg_book.colab import DIST_NAME, REPOSITORY, SPEC_VARIABLE

    book = os.environ.get(SPEC_VARIABLE) or (
        f"{DIST_NAME} @ {REPOSITORY}/archive/refs/tags/v{__version__}.tar.gz")

    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(r"(torch|torchvision)==([\w.]+)\s*$", line.strip())
        if m:
            pins[m.group(1)] = line.strip()
    if set(pins) != {"torch", "torchvision"}:
        raise RuntimeError("requirements.txt must pin torch==X and torchvision==Y")
    return [f"--extra-index-url {TORCH_CPU_INDEX}", pins["torch"], pins["torchvision"],
            "pandas", book]


def with_requirements(nb, requirements: list[str]):
    """``nb`` with ``requirements`` added to its ``# ASSIGNMENT CONFIG`` cell (in place)."""
    config = [c for c in nb.cells if otter_marker(c) == ("CONFIG", "")]
    if len(config) != 1:
        raise RuntimeError(f"expected one ASSIGNMENT CONFIG cell, found {len(config)}")
    if re.search(r"^requirements:", config[0].source, re.M):
        return nb
    config[0].source = (config[0].source.rstrip() + "\nrequirements:\n"
                        + "".join(f"  - {json.dumps(r)}\n" for r in requirements))
    return nb


def assign_chapter(chapter: Path, out: Path, run_tests: bool = True) -> tuple[Path, Path]:
    """``assign`` the reader version of ``chapter`` (glue roles replaced by their values),
    its autograder installing ``gradescope_requirements()``."""
    source = out / "_source" / chapter.name
    source.parent.mkdir(parents=True, exist_ok=True)
    nb = reader_notebooks.reader_notebook(chapter, keep_otter=True)
    write_atomic(with_requirements(nb, gradescope_requirements()), source)
    return assign(source, out, run_tests=run_tests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "assignments")
    parser.add_argument("--check", action="store_true",
                        help="also grade each teacher version with otter (executes every "
                        "chapter again; make test does this through nbval)")
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
            student, autograder = assign_chapter(path, out, run_tests=args.check)
        except (RuntimeError, reader_notebooks.ReaderError) as err:
            print(f"FAILED {path}: {err}", file=sys.stderr)
            failed += 1
            continue
        print(f"{path.name}: student {student.relative_to(out.parent)}, "
              f"autograder {autograder.relative_to(out.parent)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
