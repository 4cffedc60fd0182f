"""Tiny helper to write a chapter notebook from a list of (kind, source[, tags]) cells."""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

SETUP = '''# Set-up: on Colab, install vgg_book (torch and torchvision are already there).
# Everywhere else this cell does nothing.
import sys
if "google.colab" in sys.modules:
    %pip install -q "vgg-book @ git+https://github.com/vgg-book/vgg-book@main"'''


def write(path, cells):
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for cell in cells:
        kind, src = cell[0], cell[1].strip("\n")
        tags = list(cell[2]) if len(cell) > 2 else []
        make = {"md": new_markdown_cell, "code": new_code_cell, "raw": new_raw_cell}[kind]
        c = make(src)
        if tags:
            c.metadata["tags"] = tags
        nb.cells.append(c)
    nbformat.write(nb, path)
