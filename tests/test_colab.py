"""Colab: the set-up cell installs the pinned package on Colab only, and never torch.

The set-up cell is run in a fresh IPython (a subprocess) whose ``%pip`` magic is replaced by
a recorder, so nothing is installed: outside Colab the magic must not be called; with a
stand-in ``google.colab`` module it must be called once, with a well-formed pinned install.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement

import vgg_book
from vgg_book.colab import (REPOSITORY, SPEC_VARIABLE, in_colab, install_requirement,
                            setup_cell_source)

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))

RUNNER = r"""
import json, sys, types
from IPython.core.interactiveshell import InteractiveShell
if sys.argv[2] == "colab":
    sys.modules["google"] = types.ModuleType("google")
    sys.modules["google.colab"] = types.ModuleType("google.colab")
shell = InteractiveShell.instance()
calls = []
shell.register_magic_function(lambda line: calls.append(line), "line", "pip")
shell.run_cell("pass")  # warm up: the first run imports parts of IPython
before = set(shell.user_ns)
modules = set(sys.modules)
result = shell.run_cell(open(sys.argv[1]).read())
print(json.dumps({
    "ok": result.success,
    "calls": calls,
    "new_names": sorted(n for n in set(shell.user_ns) - before if not n.startswith("_")),
    "new_modules": sorted(set(sys.modules) - modules),
}))
"""


def run_setup_cell(source: str, tmp_path: Path, colab: bool, spec: str | None = None) -> dict:
    cell = tmp_path / "cell.py"
    cell.write_text(source)
    env = {k: v for k, v in os.environ.items() if k != SPEC_VARIABLE}
    if spec is not None:
        env[SPEC_VARIABLE] = spec
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(cell), "colab" if colab else "plain"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_setup_cell_does_nothing_outside_colab(tmp_path):
    run = run_setup_cell(setup_cell_source(), tmp_path, colab=False)
    assert run["ok"]
    assert run["calls"] == []
    assert run["new_names"] == ["os", "sys"]  # the cell only imported os and sys
    assert run["new_modules"] == []  # and loaded no module
    assert not in_colab()


def test_setup_cell_installs_pinned_package_on_colab(tmp_path):
    run = run_setup_cell(setup_cell_source(), tmp_path, colab=True)
    assert run["ok"] and len(run["calls"]) == 1
    args = shlex.split(run["calls"][0])
    assert args[0] == "install" and "-q" in args
    reqs = [Requirement(a) for a in args[1:] if not a.startswith("-")]
    assert len(reqs) == 1, args
    req = reqs[0]
    assert req.name == "vgg-book" and not req.extras and not req.specifier
    assert req.url == f"git+{REPOSITORY}@v{vgg_book.__version__}"
    assert "torch" not in run["calls"][0]


@pytest.mark.parametrize("spec", ["/tmp/wheels/vgg_book-0.1.0-py3-none-any.whl",
                                  "vgg-book @ git+https://github.com/a-fork/vgg-book@main"])
def test_setup_cell_installs_the_spec_from_the_environment(tmp_path, spec):
    run = run_setup_cell(setup_cell_source(), tmp_path, colab=True, spec=spec)
    assert run["ok"] and len(run["calls"]) == 1
    assert shlex.split(run["calls"][0]) == ["install", "-q", spec]
    plain = run_setup_cell(setup_cell_source(), tmp_path, colab=False, spec=spec)
    assert plain["ok"] and plain["calls"] == []  # outside Colab the variable changes nothing


def test_install_requirement_checks_its_version():
    assert install_requirement("1.2.3").endswith("@v1.2.3")
    with pytest.raises(ValueError, match="bare release number"):
        install_requirement("v1.2.3")
    with pytest.raises(ValueError, match="bare release number"):
        install_requirement("")


def test_package_install_does_not_pull_torch():
    heavy = {"torch", "torchvision", "torchaudio"}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = {Requirement(r).name.lower() for r in pyproject["project"]["dependencies"]}
    assert declared and not declared & heavy, declared
    # The installed metadata is what pip reads on Colab.
    installed = {Requirement(r).name.lower()
                 for r in importlib.metadata.requires("vgg-book") or []
                 if "extra ==" not in r}
    assert installed == declared


@pytest.mark.skipif(not CHAPTERS, reason="no chapter written yet")
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_starts_with_setup_cell(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert first.source == setup_cell_source(), (
        f"{path.name}: the first code cell is not the set-up cell of vgg_book.colab; run "
        f"`.venv/bin/python tools/chapter_cells.py {path.relative_to(ROOT)}`")
