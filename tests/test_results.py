"""Stored results are package data (a pip-installed vgg_book has them); runs go to ./runs."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from vgg_book import bench, results
from vgg_book.results import notebook_seconds

ROOT = Path(__file__).resolve().parent.parent


def test_stored_reads_the_package_results():
    files = sorted((ROOT / "vgg_book" / "results").glob("bench-*.json"))
    got = results.stored("bench-*.json")
    assert files and list(got) == [f.name for f in files]
    assert got[files[0].name] == json.loads(files[0].read_text())
    assert results.stored("no-such-*.json") == {}


def test_results_are_declared_package_data():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "results/*.json" in pyproject["tool"]["setuptools"]["package-data"]["vgg_book"]


def test_a_broken_result_file_is_named(tmp_path, monkeypatch):
    package = tmp_path / "vgg_book"
    (package / "results").mkdir(parents=True)
    (package / "results" / "bench-x.json").write_text("{not json")
    monkeypatch.setattr(results.resources, "files", lambda name: package)
    with pytest.raises(ValueError, match="bench-x.json is not valid JSON"):
        results.stored()
    (package / "results" / "bench-x.json").unlink()
    (package / "results").rmdir()
    assert results.stored() == {}  # no folder at all: nothing stored, no crash


def test_new_runs_go_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert results.runs_dir() == tmp_path / "runs"
    assert results.runs_dir("ch06_runs.json") == tmp_path / "runs" / "ch06_runs.json"
    assert bench._default_out_dir() == tmp_path / "runs"  # never into the installed package


def test_notebook_seconds_sums_the_cell_timings(tmp_path):
    def cell(start, end):
        return {"cell_type": "code", "metadata": {"execution": {
            "iopub.execute_input": f"2026-01-01T00:00:{start}Z",
            "shell.execute_reply": f"2026-01-01T00:00:{end}Z"}}}

    nb = {"cells": [cell("01.000000", "03.500000"), {"cell_type": "markdown", "metadata": {}},
                    cell("10.000000", "10.250000"), {"cell_type": "code", "metadata": {}}]}
    assert notebook_seconds(nb) == pytest.approx(2.75)
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(nb))
    assert notebook_seconds(path) == pytest.approx(2.75)


def test_notebook_seconds_refuses_an_untimed_notebook():
    with pytest.raises(ValueError, match="no cell timings: execute it with Jupyter"):
        notebook_seconds({"cells": [{"cell_type": "code", "metadata": {}}]})
