"""The accounting explorer: a VGG's per-layer parameters, MACs and activation memory, live.

:class:`AccountingExplorer` is an ``anywidget`` whose front end
(``vgg_book/js/accounting_explorer.mjs``) does all the arithmetic in the reader's browser, so
it works in Jupyter, Colab and the book's static HTML page alike (no kernel needed there). The
reader picks a configuration of Table 1 (A, A-LRN, B, C, D, E), batch norm on or off, the
input side, the batch size, the dtype and whether bias adds count as MACs; the widget draws
every layer's parameters, multiply-adds and activation bytes as bars, with the totals.

Its numbers are those of :func:`vgg_book.accounting.summary` on
``vgg(config, batch_norm=...)`` with input ``(batch, 3, side, side)``, row for row:
``tests/test_accounting_explorer.py`` runs the JavaScript in Node and checks them exactly.
:meth:`AccountingExplorer.summary` returns that library table for the widget's current state.
The configurations' layer lists are :data:`vgg_book.models.CONFIGS`, sent to the front end as
the synced trait ``configs`` (the JavaScript holds no copy of them).
"""

from __future__ import annotations

import json
import pathlib

import anywidget
import traitlets

from vgg_book.models import ALIASES, CONFIGS, MIN_INPUT_SIZE

__all__ = ["AccountingExplorer", "DTYPES", "MAX_SIDE", "MAX_BATCH"]

#: Bytes per value of the dtypes the widget offers (the front end holds the same table).
DTYPES = {"float32": 4, "bfloat16": 2, "float16": 2}
#: The controls' ranges: input side MIN_INPUT_SIZE..MAX_SIDE pixels, batch 1..MAX_BATCH.
MAX_SIDE = 512
MAX_BATCH = 256

_ESM = pathlib.Path(__file__).parent / "js" / "accounting_explorer.mjs"


def _configs_json() -> dict:
    """:data:`vgg_book.models.CONFIGS` in JSON form: ``("1x1", 256)`` becomes ``["1x1", 256]``."""
    return json.loads(json.dumps(CONFIGS))


def _config_name(config) -> str:
    if not isinstance(config, str):
        raise ValueError(f"config must be the name of a VGG configuration "
                         f"({', '.join(CONFIGS)}), got {config!r}")
    key = ALIASES.get(config.lower(), config.upper())
    if key not in CONFIGS:
        raise ValueError(f"unknown VGG config {config!r}; expected one of "
                         f"{', '.join([*CONFIGS, *ALIASES])}")
    return key


def _int_in(name: str, value, low: int, high: int | None, why: str = "") -> int:
    if (not isinstance(value, int) or isinstance(value, bool) or value < low
            or (high is not None and value > high)):
        span = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {span}{why}, got {value!r}")
    return value


def _bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _dtype(value) -> str:
    if value not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {value!r}")
    return value


_SIDE_WHY = f" (five 2x2 max-pools need at least {MIN_INPUT_SIZE} pixels)"


class AccountingExplorer(anywidget.AnyWidget):
    """Per-layer parameters, multiply-adds and activation memory of a VGG, computed in the browser.

    ``AccountingExplorer(config="D", batch_norm=False, side=224, batch=1, dtype="float32",
    count_bias=True, num_classes=1000)``: ``config`` is a Table 1 name (``"A"``, ``"A-LRN"``,
    ``"B"``, ``"C"``, ``"D"``, ``"E"``) or an alias (``"vgg16"``); ``side`` the input's
    height and width, 32..512 pixels (five pools need 32); ``batch`` 1..256 images; ``dtype``
    ``"float32"`` (4 bytes), ``"bfloat16"`` or ``"float16"`` (2 bytes); ``count_bias`` counts a
    bias add as one MAC per output value (as :func:`vgg_book.accounting.summary` does by
    default). Bad values raise ``ValueError``. The traits of the same names follow the
    reader's controls when a kernel is running; :meth:`summary` gives the library's table for
    them.
    """

    _esm = _ESM

    config = traitlets.Unicode("D").tag(sync=True)
    batch_norm = traitlets.Bool(False).tag(sync=True)
    side = traitlets.Int(224).tag(sync=True)
    batch = traitlets.Int(1).tag(sync=True)
    dtype = traitlets.Unicode("float32").tag(sync=True)
    count_bias = traitlets.Bool(True).tag(sync=True)
    num_classes = traitlets.Int(1000).tag(sync=True)
    #: The layer lists the front end computes from (data, not an option): vgg_book.models.CONFIGS.
    configs = traitlets.Dict(read_only=True).tag(sync=True)

    def __init__(self, config: str = "D", *, batch_norm: bool = False, side: int = 224,
                 batch: int = 1, dtype: str = "float32", count_bias: bool = True,
                 num_classes: int = 1000, **kwargs) -> None:
        super().__init__(
            config=_config_name(config),
            batch_norm=_bool("batch_norm", batch_norm),
            side=_int_in("side", side, MIN_INPUT_SIZE, MAX_SIDE, _SIDE_WHY),
            batch=_int_in("batch", batch, 1, MAX_BATCH),
            dtype=_dtype(dtype),
            count_bias=_bool("count_bias", count_bias),
            num_classes=_int_in("num_classes", num_classes, 1, None),
            **kwargs)

    @traitlets.default("configs")
    def _default_configs(self):
        return _configs_json()  # a fresh copy per widget

    # Later assignments (from Python or from the front end) are checked too.
    @traitlets.validate("config")
    def _check_config(self, proposal):
        return self._traited(lambda: _config_name(proposal["value"]))

    @traitlets.validate("side")
    def _check_side(self, proposal):
        return self._traited(lambda: _int_in("side", proposal["value"], MIN_INPUT_SIZE,
                                             MAX_SIDE, _SIDE_WHY))

    @traitlets.validate("batch")
    def _check_batch(self, proposal):
        return self._traited(lambda: _int_in("batch", proposal["value"], 1, MAX_BATCH))

    @traitlets.validate("dtype")
    def _check_dtype(self, proposal):
        return self._traited(lambda: _dtype(proposal["value"]))

    @traitlets.validate("num_classes")
    def _check_num_classes(self, proposal):
        return self._traited(lambda: _int_in("num_classes", proposal["value"], 1, None))

    @staticmethod
    def _traited(check):
        try:
            return check()
        except ValueError as err:
            raise traitlets.TraitError(str(err)) from None

    @property
    def bytes_per_element(self) -> int:
        """Bytes per value of the current dtype."""
        return DTYPES[self.dtype]

    def summary(self):
        """:func:`vgg_book.accounting.summary` for the current state (built on the meta
        device: shapes only, instantly); the widget shows the same numbers."""
        import torch

        from vgg_book.accounting import summary
        from vgg_book.models import vgg

        with torch.device("meta"):
            model = vgg(self.config, batch_norm=self.batch_norm, num_classes=self.num_classes)
        return summary(model, (self.batch, 3, self.side, self.side), count_bias=self.count_bias)
