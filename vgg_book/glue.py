"""Glue: hand a computed value to the prose, in the book's build and nowhere else.

``glue("n_train", "60,000")`` in a code cell and ``{glue:text}`n_train``` in the markdown
put the computed number into the sentence (myst-nb's glue). myst-nb is a build tool: a
reader's Jupyter or Colab does not have it, and there this ``glue`` does nothing, because the
reader notebooks (``make notebooks``) already carry every value in their text.

``varies=True`` marks a value that a reader's own run may print differently (the device,
timings, what a training run reaches): the reader notebooks flag it as the build's value.
"""

from __future__ import annotations

from typing import Any

__all__ = ["glue", "VARIES_KEY"]

#: Output metadata key (beside myst-nb's ``scrapbook``) that flags a varying value.
VARIES_KEY = "vgg_book"


def glue(name: str, value: Any, display: bool = False, varies: bool = False) -> None:
    """Record ``value`` under ``name`` for ``{glue:text}`name``` when myst-nb is present.

    Writes the same output as ``myst_nb.glue`` (hidden unless ``display``), plus
    ``{"vgg_book": {"varies": true}}`` in its metadata when ``varies``. Without myst-nb it
    shows ``value`` if ``display`` and otherwise does nothing.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"glue name must be an identifier such as 'n_train', got {name!r}")
    try:
        from myst_nb.ext.glue import GLUE_PREFIX
    except ImportError:  # a reader's Jupyter or Colab
        if display:
            from IPython.display import display as show
            show(value)
        return
    from IPython.core.formatters import format_display_data
    from IPython.display import display as show

    bundle, metadata = format_display_data(value)
    prefix = "" if display else GLUE_PREFIX
    metadata["scrapbook"] = {"name": name, "mime_prefix": prefix}
    if varies:
        metadata[VARIES_KEY] = {"varies": True}
    show({prefix + mime: data for mime, data in bundle.items()}, raw=True, metadata=metadata)
