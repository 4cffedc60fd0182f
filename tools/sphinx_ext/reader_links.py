"""Sphinx extension: a chapter page's Colab and download buttons open its reader notebook.

sphinx-book-theme points both buttons at the page's source, ``chapters/NN_name.ipynb``, whose
markdown is MyST: Jupyter and Colab would show ``{glue:text}`n_train``` where the book shows
a number. For every page whose reader notebook ``notebooks/NN_name.ipynb`` exists in the book
folder (``tools/reader_notebooks.py`` writes them), this extension
- points the Colab button at ``notebooks/NN_name.ipynb`` in the repository and branch of
  ``_config.yml`` (GitHub serves it to Colab);
- makes the download button's ``.ipynb`` a copy of that notebook, served from the HTML
  folder's ``notebooks/`` (so a downloaded ``_build/html`` has them too).
Other pages (the intro is an executed notebook too) lose the launch and source buttons.
Loaded by ``_config.yml`` (``sphinx: local_extensions``); runs after the theme's buttons.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

NOTEBOOKS = "notebooks"


def reader_notebook(app, pagename: str) -> Path | None:
    """The reader notebook of ``pagename`` in the book folder, or None."""
    path = Path(app.srcdir) / NOTEBOOKS / f"{PurePosixPath(pagename).name}.ipynb"
    return path if pagename.startswith("chapters/") and path.is_file() else None


def point_buttons(app, pagename, templatename, context, doctree) -> None:
    """``html-page-context`` handler: rewrite the Colab and download links of a chapter."""
    notebook = reader_notebook(app, pagename)
    if notebook is None:
        drop_source_buttons(context)
        return
    docs = (app.config.html_theme_options.get("path_to_docs") or "").strip("/")
    in_repo = "/".join(p for p in (docs, NOTEBOOKS, notebook.name) if p)
    download = context["pathto"](f"{NOTEBOOKS}/{notebook.name}", 1)
    for group in context.get("header_buttons", []):
        buttons = group.get("buttons", [])
        if group.get("label") == "launch-buttons":
            for button in buttons:
                url = button.get("url", "")
                if button.get("text") == "Colab" and "/blob/" in url:
                    head, tail = url.split("/blob/", 1)
                    button["url"] = f"{head}/blob/{tail.split('/', 1)[0]}/{in_repo}"
        elif group.get("label") == "download-buttons":
            kept = [b for b in buttons if b.get("label") != "download-notebook-button"]
            for button in kept:
                if button.get("label") == "download-source-button":
                    button.update(url=download, text=".ipynb",
                                  tooltip="Download the notebook (for Jupyter or Colab)")
            group["buttons"] = kept


def drop_source_buttons(context) -> None:
    """A page that is not a chapter (the intro, the sources) has no reader notebook: its
    source is MyST, which Colab and Jupyter would show with raw glue roles. No launch
    buttons and no source download there (the PDF button stays)."""
    groups = context.get("header_buttons", [])
    groups[:] = [g for g in groups if g.get("label") != "launch-buttons"]
    for group in groups:
        if group.get("label") == "download-buttons":
            group["buttons"] = [b for b in group.get("buttons", []) if b.get("label") not in
                                ("download-source-button", "download-notebook-button")]


def copy_notebooks(app, exception) -> None:
    """``build-finished`` handler: copy the reader notebooks next to the pages."""
    if exception is not None or app.builder.format != "html":
        return
    source = Path(app.srcdir) / NOTEBOOKS
    if not source.is_dir():
        return
    target = Path(app.outdir) / NOTEBOOKS
    target.mkdir(parents=True, exist_ok=True)
    for notebook in sorted(source.glob("*.ipynb")):
        shutil.copy2(notebook, target / notebook.name)


def setup(app):
    app.connect("html-page-context", point_buttons, priority=600)
    app.connect("build-finished", copy_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
