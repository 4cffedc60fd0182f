"""Stored measurements that travel with the package, and the folder new runs go to.

Results a chapter shows but cannot recompute everywhere (GPU benchmarks, GPU training runs)
are package data in ``vgg_book/results/``, read through ``importlib.resources`` so that a
pip-installed ``vgg_book`` (on Colab, say) has them too. New measurements never go into the
installed package: they are written under ``runs/`` in the working directory, and a
maintainer copies the ones worth keeping into ``vgg_book/results/``.
"""

from __future__ import annotations

import fnmatch
import json
from datetime import datetime
from importlib import resources
from pathlib import Path

__all__ = ["stored", "runs_dir", "notebook_seconds"]


def stored(pattern: str = "*.json") -> dict[str, dict]:
    """The stored result files whose names match ``pattern`` (a glob), as {name: JSON}.

    Sorted by name; empty when none is stored (a chapter then says so). A file that is not
    valid JSON raises ``ValueError`` naming it.
    """
    folder = resources.files("vgg_book").joinpath("results")
    if not folder.is_dir():
        return {}
    found = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_file() and fnmatch.fnmatch(entry.name, pattern):
            try:
                found[entry.name] = json.loads(entry.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(f"stored result {entry.name} is not valid JSON: {err}") from None
    return found


def runs_dir(*parts: str) -> Path:
    """``runs/`` (or ``runs/<parts>``) under the current working directory, not created."""
    return Path.cwd().joinpath("runs", *parts)


def notebook_seconds(notebook) -> float:
    """Seconds an executed notebook's code cells took, from the timings Jupyter stores.

    ``notebook`` is a path or a notebook dict. Jupyter (nbclient) records when each cell was
    sent to the kernel and when the kernel replied, in the cell's ``metadata.execution``; the
    sum over cells is the notebook's run time, kernel start-up excluded. A notebook with no
    timed cell (never executed, or executed by a front end that keeps no timings) raises
    ``ValueError``.
    """
    if not isinstance(notebook, dict):
        path = Path(notebook)
        notebook = json.loads(path.read_text(encoding="utf-8"))
    total, timed = 0.0, 0
    for cell in notebook.get("cells", []):
        times = cell.get("metadata", {}).get("execution", {})
        start, end = times.get("iopub.execute_input"), times.get("shell.execute_reply")
        if cell.get("cell_type") == "code" and start and end:
            parse = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00"))  # noqa: E731
            total += (parse(end) - parse(start)).total_seconds()
            timed += 1
    if not timed:
        raise ValueError("the notebook has no cell timings: execute it with Jupyter "
                         "(jupyter nbconvert --execute), which records them")
    return total
