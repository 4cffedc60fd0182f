"""Architecture diagrams: a VGG block, padding on a pixel grid, a receptive field growing,
dense evaluation, an Inception module.

Each diagram has a ``*_layout`` function that computes what is drawn from the library's own
code (tested against it) and a ``plot_*`` function that draws the layout with matplotlib and
returns the figure. ``vgg_book.plotting`` re-exports the ``plot_*`` functions.
"""

from __future__ import annotations

__all__: list[str] = []
