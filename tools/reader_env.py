"""The reader-environment test: every reader notebook runs as it would on Colab.

Usage:  .venv/bin/python tools/reader_env.py [--keep] [--timeout S] [NOTEBOOK ...]
        (no NOTEBOOK: every ``notebooks/*.ipynb``)

1. Builds a wheel of ``vgg_book`` from a copy of the package (nothing is written into the
   source tree) and makes a reader environment: a hard-linked copy of ``.venv`` from which
   vgg-book (the editable install), myst-nb, jupyter-book, sphinx and d2l are uninstalled.
   The first reader notebook's set-up cell, run alone in the Colab stand-in kernel (below),
   must install the wheel; then it is checked that ``vgg_book`` imports from the environment's
   site-packages with its stored results, and that none of the build tools imports.
2. Executes one student notebook (chapter 1's, made by ``tools/assignments.py`` from its reader
   version) in that environment, with otter-grader still installed, and checks that
   ``grader.check("q1")`` reports the unanswered ``...`` as a failure with the test's message.
3. Uninstalls otter-grader too, then executes every reader notebook from an empty folder in a
   kernel of that environment that imports a stand-in ``google.colab`` at start, as Colab's
   kernels do: the set-up cell takes its Colab branch and installs the wheel through
   ``VGG_BOOK_PIP_SPEC``. ``HOME`` is a folder of the test, and ``PIP_NO_INDEX`` keeps pip
   off the network.
4. Checks that nothing was written outside the test's folder: no file in the source tree
   (``_build/`` aside) or in the environment's installed ``vgg_book`` changed.
Everything lives in ``_build/reader-env/`` (deleted at the end unless ``--keep``, which also
keeps the executed notebooks in ``executed/``). Prints one
line per notebook and a closing ``N passed, M failed``; exit status 1 when any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import assignments  # noqa: E402
import reader_notebooks  # noqa: E402

WORK = ROOT / "_build" / "reader-env"
BUILD_ONLY = ["vgg-book", "myst-nb", "jupyter-book", "sphinx", "d2l"]
BUILD_MODULES = ["myst_nb", "jupyter_book", "sphinx", "d2l"]
KERNEL = "vgg-book-reader"
STUDENT_CHAPTER = "01_vgg_blocks"


def run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{proc.stdout[-2000:]}"
                         f"\n{proc.stderr[-2000:]}")
    return proc


def build_wheel(out: Path) -> Path:
    """A wheel of the package, built from a copy of the files it is made of."""
    src = out / "src"
    shutil.copytree(ROOT / "vgg_book", src / "vgg_book",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", out / "wheel", src])
    (wheel,) = (out / "wheel").glob("vgg_book-*.whl")
    return wheel


def make_env(out: Path) -> Path:
    """A copy of .venv without the build tools and without vgg_book; its python."""
    venv = ROOT / ".venv"
    env = out / "env"
    run(["cp", "-al", venv, env])  # hard links: seconds, and pip only unlinks files
    python = env / "bin" / "python"
    run([python, "-m", "pip", "uninstall", "-q", "-y", *BUILD_ONLY])
    return python


def install_by_setup_cell(notebook: Path, work: Path, timeout: int) -> str | None:
    """Run only the set-up cell of ``notebook``: on the stand-in Colab it installs the wheel."""
    nb = nbformat.read(notebook, as_version=4)
    setup = next(c for c in nb.cells if c.cell_type == "code")
    path = work.parent / "setup-cell.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[setup], metadata=nb.metadata), path)
    return execute(path, work, timeout)[1]


def clean_env(home: Path, **extra) -> dict:
    """The kernel's environment: no path into the source tree, a home of the test's own."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "VGG_BOOK_DATA")}
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), MPLCONFIGDIR=str(home / ".matplotlib"), PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1", **extra)
    return env


def check_env(python: Path, cwd: Path, env: dict, absent: list[str]) -> list[str]:
    """Problems with the environment: build tools importable, package not from the wheel."""
    probe = ("import importlib.util, json, vgg_book\n"
             "from vgg_book.results import stored\n"
             f"found = [m for m in {absent!r} if importlib.util.find_spec(m)]\n"
             "print(json.dumps({'found': found, 'file': vgg_book.__file__,"
             " 'stored': len(stored())}))")
    proc = subprocess.run([python, "-c", probe], cwd=cwd, env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        return [f"probe failed: {proc.stderr[-1000:]}"]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    problems = [f"{m} can be imported in the reader environment" for m in got["found"]]
    if "site-packages" not in got["file"] or str(ROOT / "vgg_book") in got["file"]:
        problems.append(f"vgg_book is imported from {got['file']}, not from the wheel")
    if got["stored"] == 0:
        problems.append("the installed vgg_book has no stored results (package data missing)")
    return problems


def write_kernel(out: Path, python: Path, stub: Path) -> Path:
    """A kernelspec that runs ``python`` and imports the stand-in ``google.colab`` first."""
    (stub / "google" / "colab").mkdir(parents=True, exist_ok=True)  # google: a namespace
    (stub / "google" / "colab" / "__init__.py").write_text(
        '"""Stand-in for Colab\'s google.colab (the reader-environment test)."""\n')
    spec = out / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}",
                 "--IPKernelApp.exec_lines=['import google.colab']"],
        "display_name": "vgg-book reader (Colab stand-in)", "language": "python",
        "env": {"PYTHONPATH": str(stub)}}))
    return out / "jupyter"


def execute(path: Path, cwd: Path, timeout: int):
    """Execute the notebook at ``path`` with ``cwd`` as its folder; return (nb, error)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute()
    except CellExecutionError as err:
        return nb, str(err).strip().splitlines()[-1][:300]
    return nb, None


def snapshot(*folders: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, int]]:
    """``{path: (size, mtime_ns)}`` of the files under ``folders`` (caches left out)."""
    files = {}
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if d not in ("__pycache__", ".git")
                           and os.path.join(dirpath, d) not in skip]
            for name in filenames:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                files[p] = (st.st_size, st.st_mtime_ns)
    return files


def check_output(nb, question: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.strip() == f'grader.check("{question}")':
            return "\n".join(out.get("text", "") or str(out.get("data", {}).get("text/plain", ""))
                             for out in cell.outputs)
    return ""


def student_check(out: Path, python: Path, env: dict, timeout: int) -> list[str]:
    """Chapter 1's student notebook: it runs, and q1's check fails with a clear message."""
    chapter = ROOT / "chapters" / f"{STUDENT_CHAPTER}.ipynb"
    student, _ = assignments.assign_chapter(chapter, out / "assignments", run_tests=False)
    folder = out / "student-work"
    shutil.copytree(student, folder)
    nb, error = execute(folder / f"{STUDENT_CHAPTER}.ipynb", folder, timeout)
    if error:
        return [f"student notebook: {error}"]
    text = check_output(nb, "q1")
    problems = []
    if "AssertionError" not in text or "expected" not in text:
        problems.append(f"grader.check('q1') did not report the failing test clearly: {text!r}")
    raw = [m for c in nb.cells if c.cell_type == "markdown"
           for m in reader_notebooks.leftover_myst(c.source)]
    if raw:
        problems.append(f"student notebook shows raw MyST: {raw[:3]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep _build/reader-env/")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = parser.parse_args(argv)
    notebooks = [p.resolve() for p in args.notebooks] or sorted(
        (ROOT / "notebooks").glob("*.ipynb"))
    if not notebooks:
        print("no reader notebooks: run `make notebooks`", file=sys.stderr)
        return 1
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    t0 = time.perf_counter()
    wheel = build_wheel(WORK)
    python = make_env(WORK)
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
                    ).stdout.strip())
    work = WORK / "work"
    work.mkdir()
    jupyter = write_kernel(WORK, python, WORK / "stub")
    env = clean_env(WORK / "home", JUPYTER_PATH=str(jupyter),
                    JUPYTER_RUNTIME_DIR=str(WORK / "runtime"), VGG_BOOK_PIP_SPEC=str(wheel))
    os.environ.update(env)  # the kernels nbclient starts inherit this process's environment
    for key in ("PYTHONPATH", "VIRTUAL_ENV", "VGG_BOOK_DATA"):
        os.environ.pop(key, None)
    # vgg_book is not installed yet: the set-up cell must install it, as on Colab.
    error = install_by_setup_cell(notebooks[0], work, args.timeout)
    problems = [f"the set-up cell failed: {error}"] if error else []
    problems += check_env(python, work, env, BUILD_MODULES)
    before = snapshot(ROOT, site / "vgg_book", skip=(str(ROOT / "_build"), str(ROOT / ".venv")))
    print(f"reader environment ready in {time.perf_counter() - t0:.0f} s: {wheel.name} "
          "installed by the set-up cell")

    failed, passed = [], 0
    problems += student_check(WORK, python, env, args.timeout)
    run([python, "-m", "pip", "uninstall", "-q", "-y", "otter-grader"])
    problems += check_env(python, work, env, BUILD_MODULES + ["otter"])
    for problem in problems:
        print(f"FAIL environment: {problem}")
    failed += ["environment"] if problems else []
    passed += not problems

    for path in notebooks:
        start = time.perf_counter()
        nb, error = execute(path, work, args.timeout)
        if error is None:
            raw = [m for c in nb.cells if c.cell_type == "markdown"
                   for m in reader_notebooks.leftover_myst(c.source)]
            error = f"raw MyST in the markdown: {raw[:3]}" if raw else None
        print(f"{'FAIL' if error else 'ok  '} {path.name} ({time.perf_counter() - start:.0f} s)"
              + (f": {error}" if error else ""))
        failed += [path.name] if error else []
        passed += error is None
        if args.keep:  # the executed notebooks, to look at
            (WORK / "executed").mkdir(exist_ok=True)
            nbformat.write(nb, WORK / "executed" / path.name)

    after = snapshot(ROOT, site / "vgg_book", skip=(str(ROOT / "_build"), str(ROOT / ".venv")))
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    if changed:
        print(f"FAIL written outside {work}: " + ", ".join(changed[:10]))
        failed.append("writes")
    else:
        passed += 1
    if not args.keep:
        shutil.rmtree(WORK, ignore_errors=True)
    print(f"reader environment: {passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
