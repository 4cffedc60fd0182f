"""Sphinx extension: drop repeated ``<script>`` tags from every page.

With Jupyter Book 1.0.4 and Sphinx 7.4, sphinx-thebe's inline configuration script
(``const THEBE_JS_URL = ...``) lands twice in each page, at two priorities, and the second
copy throws "Identifier 'THEBE_JS_URL' has already been declared" in the browser console.
Scripts are the same when their file and attributes (inline body included) are the same;
the first one is kept. Loaded by ``_config.yml`` (``sphinx: local_extensions``).
"""

from __future__ import annotations

import os


def dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    """``html-page-context`` handler: keep the first of each identical script."""
    seen, unique = set(), []
    for js in context.get("script_files", []):
        filename = getattr(js, "filename", js)
        key = (os.fspath(filename) if filename else "",
               tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", dedupe_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
