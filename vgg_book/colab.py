"""Running the chapters on Google Colab: the set-up cell every chapter starts with.

A chapter's first code cell installs this package when the notebook runs on Colab and does
nothing anywhere else. Colab already has torch and torchvision, so the install pulls only
this package and its light dependencies (``pyproject.toml`` lists neither torch nor
torchvision). The install is pinned to the release tag ``v{__version__}`` so that a chapter
runs against the library it was written with; ``tools/chapter_cells.py`` writes the cell.
``VGG_BOOK_PIP_SPEC`` in the environment overrides the requirement (forks, mirrors, tests).
"""

from __future__ import annotations

import sys

from . import __version__

__all__ = ["REPOSITORY", "DIST_NAME", "SPEC_VARIABLE", "in_colab", "install_requirement",
           "setup_cell_source"]

#: Where the book lives; also the repository of the "Open in Colab" buttons (``_config.yml``).
REPOSITORY = "https://github.com/vgg-book/vgg-book"
#: The distribution name in ``pyproject.toml`` (the import name is ``vgg_book``).
DIST_NAME = "vgg-book"
#: Environment variable that, when set, replaces the pinned requirement of the set-up cell.
SPEC_VARIABLE = "VGG_BOOK_PIP_SPEC"


def in_colab() -> bool:
    """True when running in a Colab kernel (which imports ``google.colab`` at start-up)."""
    return "google.colab" in sys.modules


def install_requirement(version: str = __version__) -> str:
    """The PEP 508 requirement the set-up cell installs: this package at tag ``v{version}``."""
    if not version or any(c.isspace() for c in version) or version.startswith("v"):
        raise ValueError(
            f"version must be a bare release number such as '0.1.0', got {version!r}; "
            "the 'v' of the git tag is added here"
        )
    return f"{DIST_NAME} @ git+{REPOSITORY}@v{version}"


def setup_cell_source(version: str = __version__) -> str:
    """The source of every chapter's first code cell, pinned to ``version``.

    ``VGG_BOOK_PIP_SPEC``, when set in the kernel's environment, replaces the pinned
    requirement (a fork, a mirror, a local wheel): the reader-environment test installs the
    wheel it just built this way.
    """
    return (
        "# Set-up: on Colab, install vgg_book (torch and torchvision are already there);\n"
        f"# {SPEC_VARIABLE} may name another source. Elsewhere this does nothing.\n"
        "import os\n"
        "import sys\n"
        'if "google.colab" in sys.modules:\n'
        f'    spec = "{install_requirement(version)}"\n'
        f"    %pip install -q \"{{os.environ.get('{SPEC_VARIABLE}', spec)}}\""
    )
