"""tools/gpu_check.py: its plumbing end to end on the CPU (--dry-run), and its refusals."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import gpu_check  # noqa: E402


def test_dry_run_exercises_every_part(tmp_path, capsys):
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["dry_run"] is True
    assert [p for p in gpu_check.PARTS if summary[p]["ok"]] == list(gpu_check.PARTS)
    assert "skipped" in summary["tests"]["summary"]  # every CUDA test, on a CPU
    assert (tmp_path / "cuda-tests.xml").is_file()
    (bench_json,) = tmp_path.glob("bench-cpu-*-quick.json")
    assert json.loads(bench_json.read_text())["smoke_test"] is True
    for name in gpu_check.CHAPTERS:
        nb = nbformat.read(tmp_path / "chapters" / f"{name}.ipynb", as_version=4)
        assert [c for c in nb.cells if c.cell_type == "code"][1].outputs  # imports ran
    (times,) = tmp_path.glob("chapter-times-cpu-*.json")
    record = json.loads(times.read_text())
    assert record["dry_run"] is True and set(record["seconds"]) == set(gpu_check.CHAPTERS)
    assert all(s > 0 for s in record["seconds"].values())
    (exp,) = tmp_path.glob("experiment-*.json")
    assert json.loads(exp.read_text())["smoke_test"] is True  # the tiny size, on a CPU
    assert f"{len(gpu_check.PARTS)} passed, 0 failed" in printed.splitlines()[-1]
    log = (tmp_path / "gpu-check.log").read_text()
    assert "vgg_book.bench" in log and "pytest" in log


def test_unknown_part_and_missing_gpu_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        gpu_check.main(["--dry-run", "--parts", "tests,speed", "--out", str(tmp_path)])
    assert "unknown part(s) speed" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            gpu_check.main(["--out", str(tmp_path)])
        assert "no CUDA GPU here; use --dry-run" in capsys.readouterr().err


def test_missing_wheels_fail_fast(tmp_path, capsys):
    code = gpu_check.main(["--dry-run", "--parts", "tests", "--wheels",
                           str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert code == 1 and "make gpu-wheels" in capsys.readouterr().out


def test_carried_wheels_are_unpacked_onto_the_path(tmp_path, monkeypatch):
    import subprocess

    project = tmp_path / "proj"
    (project / "vggbook_probe").mkdir(parents=True)
    (project / "vggbook_probe" / "__init__.py").write_text("ANSWER = 42\n")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "vggbook-probe"\nversion = "1.0"\n'
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n')
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path / "whl"), str(project)],
                   check=True, capture_output=True)
    monkeypatch.setattr(sys, "path", list(sys.path))
    env = {"PYTHONPATH": "/elsewhere"}
    log = gpu_check.Log(tmp_path / "log.txt")
    assert gpu_check.install_wheels(tmp_path / "whl", tmp_path / "site", log, env) is None
    assert (tmp_path / "site" / "vggbook_probe" / "__init__.py").is_file()
    assert env["PYTHONPATH"] == f"{tmp_path / 'site'}:/elsewhere"
    assert sys.path[0] == str(tmp_path / "site")
