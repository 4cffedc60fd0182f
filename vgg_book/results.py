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
from importlib import resources
from pathlib import Path

__all__ = ["stored", "runs_dir"]


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
