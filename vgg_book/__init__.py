"""vgg_book: the small library behind the VGG book.

One module per idea: ``models`` (the VGG family), ``data`` (Fashion-MNIST), ``receptive``
(receptive fields), ``accounting`` (parameters, MACs, memory), ``train`` and ``bench``
(training and its benchmark), ``results`` (stored measurements, package data), ``glue``,
``plotting``, ``widgets`` and ``colab`` (for the chapters).
"""

__version__ = "0.1.0"
