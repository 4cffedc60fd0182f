"""Sphinx extension: a 79-column code line fits its box in a 1280x900 window.

At 1280 pixels sphinx-book-theme's code boxes hold 69 characters of its 14 px monospace
(measured: shared/notes/book-tooling.md), so the book's 79-column code would scroll
sideways. ``static/vgg-book.css`` sets code in cells and listings a little smaller, and
``tools/browser_test.py`` fails a page where any code block still scrolls sideways. The same
file sets glued numbers in the weight of their sentence (myst-nb makes them bold).
Loaded by ``_config.yml`` (``sphinx: local_extensions``).
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
CSS = "vgg-book.css"


def add_static_path(app) -> None:
    """``builder-inited``: serve ``static/`` beside the configured static paths."""
    if str(STATIC) not in app.config.html_static_path:
        app.config.html_static_path.append(str(STATIC))


def setup(app):
    app.connect("builder-inited", add_static_path)
    app.add_css_file(CSS)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
