"""Counting a network: parameters, multiply-adds, activations and training memory.

Conventions used throughout (the book's chapter 4 explains why):

* A **MAC** is one multiply-add, ``y += w * x``. **FLOPs = 2 x MACs** (one multiply, one add),
  the convention of ``torch.utils.flop_counter.FlopCounterMode``.
* A convolution costs ``C_out * H_out * W_out * (C_in / groups * K_h * K_w)`` MACs per image
  (any stride, padding or dilation: they change ``H_out`` and ``W_out``, not the work per
  output). A linear layer costs ``out * in`` MACs per row. With ``count_bias=True`` (the
  default, the blog posts' formula ``C_out*H_out*W_out*(C_in*K*K + 1)``) the bias add counts
  one more MAC per output value; ``FlopCounterMode`` ignores bias, so with
  ``count_bias=False`` our MACs are exactly its FLOPs / 2. ``torchinfo.summary``'s
  mult-adds equal our MACs with ``count_bias=True``, except that it also counts batch norm's
  scale and shift (2 x C per image and layer); torchvision's published "GFLOPS" of its VGG
  weights are our MACs with ``count_bias=False``.
* Pools, ReLU, batch norm, LRN, dropout, flatten and every other module without parameters
  count **0 MACs**: their work is a few operations per value, not a dot product, and
  ``FlopCounterMode`` does not count them either, so totals compare with it directly.
* An **activation value** is one number in a layer's output; its bytes are 4 in fp32, 2 in
  bf16. An in-place layer (``ReLU(inplace=True)``) gets its own row but writes into its
  input's memory, so a sum over rows counts that memory twice.

Training memory (:func:`training_memory`) is weights + gradients + optimizer state + the
tensors autograd saves for the backward pass, estimated from rules per layer type (see
:data:`SAVED_FOR_BACKWARD`) and checked against :func:`measure_saved_tensors`, a real
measurement with ``torch.autograd.graph.saved_tensors_hooks``;
:func:`saved_tensor_bytes` splits that measurement by kind and dtype, also under
``torch.autocast`` (mixed precision).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
from torch import nn

__all__ = [
    "LayerRow",
    "Summary",
    "summary",
    "SAVED_FOR_BACKWARD",
    "KeptTensor",
    "TrainingMemory",
    "training_memory",
    "measure_saved_tensors",
    "saved_tensor_bytes",
    "measure_cuda_peak",
    "OPTIMIZER_STATES",
]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)
BYTES = {"fp32": 4, "bf16": 2}


# --------------------------------------------------------------------------------------
# Per-layer summary
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerRow:
    """One call of one leaf module in the forward pass.

    ``params`` counts the module's parameters (0 on a repeated call of the same module);
    ``macs`` multiply-adds for the whole batch; ``activations`` the number of values in its
    output, for the whole batch.
    """

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    activations: int

    @property
    def flops(self) -> int:
        """Floating-point operations, 2 x MACs."""
        return 2 * self.macs

    @property
    def bytes_fp32(self) -> int:
        """Bytes of this layer's output in float32 (4 bytes a value)."""
        return BYTES["fp32"] * self.activations

    @property
    def bytes_bf16(self) -> int:
        """Bytes of this layer's output in bfloat16 (2 bytes a value)."""
        return BYTES["bf16"] * self.activations

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "output shape": self.output_shape,
                "params": self.params, "MACs": self.macs, "FLOPs": self.flops,
                "activations": self.activations, "fp32 bytes": self.bytes_fp32,
                "bf16 bytes": self.bytes_bf16}


_COLUMNS = ["name", "type", "output shape", "params", "MACs", "FLOPs", "activations",
            "fp32 bytes", "bf16 bytes"]


@dataclass
class Summary:
    """What :func:`summary` returns: per-layer rows plus totals (see the module docstring).

    Attributes: ``rows`` (list of :class:`LayerRow`, in forward order), ``input_shape``
    (N, C, H, W), ``count_bias``, ``total_params`` (every parameter of the model, shared ones
    once), ``total_macs`` and ``total_flops`` (whole batch), ``total_activations`` (sum of the
    rows' output values, whole batch; in-place layers counted again), ``input_values``
    (values in the input batch), ``unused`` (names of modules with parameters that the
    forward pass never called).
    """

    rows: list[LayerRow]
    input_shape: tuple[int, ...]
    count_bias: bool
    total_params: int
    unused: list[str] = field(default_factory=list)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def total_flops(self) -> int:
        return 2 * self.total_macs

    @property
    def total_activations(self) -> int:
        return sum(r.activations for r in self.rows)

    @property
    def input_values(self) -> int:
        return math.prod(self.input_shape)

    def records(self) -> list[dict[str, Any]]:
        """The rows as a list of dicts (column name -> value)."""
        return [r.as_dict() for r in self.rows]

    def to_pandas(self):
        """The rows as a ``pandas.DataFrame`` (pandas is imported only here)."""
        import pandas as pd

        return pd.DataFrame(self.records(), columns=_COLUMNS)

    def _cells(self) -> tuple[list[str], list[list[str]], list[str]]:
        body = [[r.name, r.type, "x".join(map(str, r.output_shape)), f"{r.params:,}",
                 f"{r.macs:,}", f"{r.flops:,}", f"{r.activations:,}", f"{r.bytes_fp32:,}",
                 f"{r.bytes_bf16:,}"] for r in self.rows]
        acts = self.total_activations
        total = ["total", "", "", f"{self.total_params:,}", f"{self.total_macs:,}",
                 f"{self.total_flops:,}", f"{acts:,}", f"{4 * acts:,}", f"{2 * acts:,}"]
        return _COLUMNS, body, total

    def __str__(self) -> str:
        head, body, total = self._cells()
        table = [head, *body, total]
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(row, widths))) for row in table]
        rule = "-" * len(lines[0])
        bias = "bias adds counted" if self.count_bias else "bias adds not counted"
        caption = (f"input {'x'.join(map(str, self.input_shape))}; 1 MAC = 1 multiply-add, "
                   f"FLOPs = 2 x MACs; {bias}")
        return "\n".join([caption, lines[0], rule, *lines[1:-1], rule, lines[-1]])

    def _repr_html_(self) -> str:
        head, body, total = self._cells()
        def row(cells, tag="td"):
            return "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"
        return ("<table><thead>" + row(head, "th") + "</thead><tbody>"
                + "".join(row(r) for r in body) + row([f"<b>{c}</b>" for c in total])
                + "</tbody></table>")

    def __repr__(self) -> str:
        return (f"Summary(input_shape={self.input_shape}, layers={len(self.rows)}, "
                f"total_params={self.total_params:,}, total_macs={self.total_macs:,}, "
                f"count_bias={self.count_bias})")


def _leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if not list(m.children())]


def _check_known(model: nn.Module) -> None:
    """Raise if a module owns parameters that :func:`summary` cannot attribute to MACs."""
    for name, m in model.named_modules():
        if isinstance(m, _CONVS) and m.transposed:  # pragma: no cover - never for nn.ConvNd
            raise ValueError(f"transposed convolution {m} is not supported")
        own = [n for n, _ in m.named_parameters(recurse=False)]
        if not own or isinstance(m, _CONVS + _NORMS + (nn.Linear,)):
            continue
        kind = "a container" if list(m.children()) else "a layer"
        raise ValueError(
            f"summary cannot count module {name or '<model>'!r} ({type(m).__name__}, {kind} with "
            f"its own parameters {own}): it knows Conv1d/2d/3d, Linear and BatchNorm/GroupNorm/"
            "LayerNorm layers with parameters, and counts 0 MACs for parameter-free layers "
            "(pools, ReLU, LRN, dropout, flatten). Count this module by hand, or use "
            "torch.utils.flop_counter.FlopCounterMode for its compute")


def _layer_macs(m: nn.Module, inputs: tuple, output: torch.Tensor, count_bias: bool) -> int:
    """Multiply-adds of one call of ``m`` for the whole batch (see the module docstring)."""
    if isinstance(m, _CONVS):  # each output value: a dot product over C_in/groups x K_h x K_w
        macs = output.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)
    elif isinstance(m, nn.Linear):  # each output value: a dot product over in_features
        macs = output.numel() * m.in_features
    else:
        return 0  # pools, ReLU, norms, dropout: a few operations per value, no dot product
    if count_bias and m.bias is not None:
        macs += output.numel()  # the bias add: one more MAC per output value
    return macs


def _normalise_shape(input_shape: Sequence[int], who: str) -> tuple[int, ...]:
    if isinstance(input_shape, torch.Size):
        input_shape = tuple(input_shape)
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) not in (3, 4):
        raise ValueError(
            f"{who}: input_shape must be (C, H, W) or (N, C, H, W), e.g. (3, 224, 224); "
            f"got {input_shape!r}")
    for v in input_shape:
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(
                f"{who}: every entry of input_shape must be a positive integer, got "
                f"{tuple(input_shape)!r}; use e.g. (3, 224, 224) for one RGB image")
    shape = tuple(input_shape)
    return shape if len(shape) == 4 else (1, *shape)


def _meta_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Meta-device stand-ins for every parameter and buffer: shapes without memory or work."""
    state = {k: torch.empty_like(v, device="meta") for k, v in model.named_parameters()}
    state.update({k: torch.empty_like(v, device="meta") for k, v in model.named_buffers()})
    return state


def _check_model_input(model: nn.Module, x: torch.Tensor) -> None:
    check = getattr(model, "check_input", None)
    if callable(check):
        check(x)  # vgg_book.models.VGG explains channels and the minimum size itself


def _traced_forward(model: nn.Module, shape: tuple[int, ...], hook, *, train: bool,
                    who: str) -> None:
    """Run ``model`` on a meta tensor of ``shape`` with ``hook(name, module, inputs, output)``
    on every leaf module; the model's weights, buffers and train/eval mode are left as they were."""
    x = torch.empty(shape, device="meta")
    _check_model_input(model, x)
    handles = [m.register_forward_hook(lambda mod, inp, out, name=name: hook(name, mod, inp, out))
               for name, m in _leaf_modules(model)]
    was_training = [(m, m.training) for m in model.modules()]
    model.train(train)
    try:
        with torch.no_grad():
            torch.func.functional_call(model, _meta_state(model), (x,))
    except (RuntimeError, IndexError) as err:  # shape errors deep inside torch
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{who}: the model cannot take an input of shape {shape} (N, C, H, W): {first}. "
            "Check the number of channels and that H and W are large enough for every "
            "pool and convolution") from None
    finally:
        for h in handles:
            h.remove()
        for m, mode in was_training:
            m.training = mode


def summary(model: nn.Module, input_shape: Sequence[int], *, count_bias: bool = True) -> Summary:
    """Count parameters, MACs, FLOPs and activation values of ``model``, layer by layer.

    ``input_shape`` is (C, H, W) for one image or (N, C, H, W) for a batch; MACs, FLOPs and
    activations are for the whole batch, parameters for the model. Shapes come from forward
    hooks on a real forward pass run on the ``meta`` device (shapes only: no memory, no
    arithmetic, the model itself untouched), in eval mode.

    Conventions: 1 MAC = one multiply-add; FLOPs = 2 x MACs. A convolution costs
    ``C_out*H_out*W_out*(C_in/groups*K_h*K_w + 1)`` MACs per image with ``count_bias=True``
    (the +1 is the bias add; the blog posts' formula), without the +1 when
    ``count_bias=False``; a linear layer ``out*(in + 1)`` or ``out*in``. Every module without
    parameters (pools, ReLU, batch-norm's arithmetic, LRN, dropout, flatten) counts 0 MACs,
    as in ``torch.utils.flop_counter.FlopCounterMode``; with ``count_bias=False``,
    ``total_flops`` equals that counter's total. Only work done inside modules is counted:
    functional calls in a ``forward`` (``F.conv2d``, ``x @ w``) are invisible to hooks.

    Raises ``ValueError`` for a malformed ``input_shape``, an input the model cannot take
    (wrong channels, too small for its pools), or a module with parameters it cannot count.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"summary expects a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(count_bias, bool):
        raise ValueError(f"count_bias must be True or False, got {count_bias!r}")
    shape = _normalise_shape(input_shape, "summary")
    _check_known(model)
    rows: list[LayerRow] = []
    seen: set[int] = set()

    def record(name: str, m: nn.Module, inputs: tuple, output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"summary: layer {name!r} ({type(m).__name__}) returned "
                             f"{type(output).__name__}, expected one tensor")
        first_call = id(m) not in seen
        seen.add(id(m))
        params = sum(p.numel() for p in m.parameters()) if first_call else 0
        rows.append(LayerRow(name=name, type=type(m).__name__, output_shape=tuple(output.shape),
                             params=params, macs=_layer_macs(m, inputs, output, count_bias),
                             activations=output.numel()))

    _traced_forward(model, shape, record, train=False, who="summary")
    unique = {id(p): p.numel() for p in model.parameters()}
    unused = [name for name, m in _leaf_modules(model)
              if id(m) not in seen and any(True for _ in m.parameters())]
    return Summary(rows=rows, input_shape=shape, count_bias=count_bias,
                   total_params=sum(unique.values()), unused=unused)


# --------------------------------------------------------------------------------------
# Training memory
# --------------------------------------------------------------------------------------

#: What autograd keeps for the backward pass, per layer type (training mode, PyTorch 2.x
#: on CPU and CUDA). "Kept" tensors shared by two layers (an in-place ReLU's output is its
#: input; a conv's input is the previous pool's output) are counted once.
SAVED_FOR_BACKWARD = {
    "Conv2d / Linear": "its input (to compute the weight gradient); the weight is a parameter",
    "ReLU": "its output (the mask of positive values); in place, that is its input's memory",
    "MaxPool2d": "its input, and the argmax indices of its output as int64 (8 bytes a value)",
    "AvgPool2d / AdaptiveAvgPool2d": "its input, except an adaptive pool to 1x1 (a mean: nothing)",
    "BatchNorm2d": "its input, plus the batch mean and inverse std (2 x C values)",
    "LocalResponseNorm": "its input, the zero-padded squares (C + size - 1 channels) and two "
                         "more tensors of the input's size (the denominator before and after pow)",
    "Dropout": "the mask: 1 byte a value on CUDA (bool), 4 on CPU (a float32 tensor)",
    "Flatten / Identity": "nothing (a view)",
}

#: Optimizer state in values per parameter, and small per-tensor extras.
OPTIMIZER_STATES = {"sgd": 0, "sgd-momentum": 1, "adam": 2}


@dataclass(frozen=True)
class KeptTensor:
    """One tensor kept for backward: the first layer that keeps it, what it is, its bytes."""

    layer: str
    what: str
    bytes: int


@dataclass
class TrainingMemory:
    """Bytes needed for one training step at ``batch_size`` (see :func:`training_memory`).

    ``weights``, ``gradients``, ``optimizer_state`` and ``activations`` (tensors kept for
    backward) are bytes; ``kept`` lists the kept tensors one by one.
    """

    batch_size: int
    optimizer: str
    weights: int
    gradients: int
    optimizer_state: int
    activations: int
    kept: list[KeptTensor] = field(default_factory=list, repr=False)

    @property
    def total(self) -> int:
        """The sum of the four parts, in bytes (a lower bound on the peak: see the chapter)."""
        return self.weights + self.gradients + self.optimizer_state + self.activations

    def as_dict(self) -> dict[str, Any]:
        return {"batch size": self.batch_size, "optimizer": self.optimizer,
                "weights": self.weights, "gradients": self.gradients,
                "optimizer state": self.optimizer_state, "activations": self.activations,
                "total": self.total}


def _kept_by(m: nn.Module, inputs: tuple, output: torch.Tensor, device: str
             ) -> Optional[list[tuple[str, Any, int]]]:
    """Rules of :data:`SAVED_FOR_BACKWARD`: a list of (what, key, bytes) for one layer call.

    ``key`` identifies the memory: the tensor's base for tensors the forward pass made
    (so an in-place output and a view count once), a fresh object for extra buffers.
    ``None`` means the layer type is unknown.
    """
    x = inputs[0] if inputs else None

    def tensor(what: str, t: torch.Tensor):
        base = t._base if t._base is not None else t
        return (what, base, base.numel() * base.element_size())

    def extra(what: str, numel: int, size: int):
        return (what, object(), numel * size)

    if isinstance(m, _CONVS + (nn.Linear,)):
        return [tensor("input", x)]
    if isinstance(m, nn.ReLU):
        return [tensor("output", output)]
    if isinstance(m, nn.MaxPool2d):
        return [tensor("input", x), extra("int64 indices", output.numel(), 8)]
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return [] if all(s == 1 for s in output.shape[2:]) else [tensor("input", x)]
    if isinstance(m, nn.AvgPool2d):
        return [tensor("input", x)]
    if isinstance(m, nn.BatchNorm2d):
        return [tensor("input", x), extra("batch mean and inverse std", 2 * x.shape[1], 4)]
    if isinstance(m, nn.LocalResponseNorm):
        n, c = x.shape[:2]
        padded = n * (c + m.size - 1) * math.prod(x.shape[2:])
        return [tensor("input", x),
                extra("padded squares", padded, x.element_size()),
                extra("denominator before and after pow", 2 * x.numel(), x.element_size())]
    if isinstance(m, nn.Dropout):
        if m.p == 0:
            return []
        return [extra("dropout mask", x.numel(), 1 if device == "cuda" else x.element_size())]
    if isinstance(m, (nn.Flatten, nn.Identity)):
        return []
    return None


def training_memory(model: nn.Module, input_shape: Sequence[int], batch_size: int, *,
                    optimizer: str = "sgd-momentum", device: str = "cpu") -> TrainingMemory:
    """Estimate the bytes of one float32 training step of ``model`` at ``batch_size``.

    ``input_shape`` is (C, H, W). Weights and gradients are 4 bytes per parameter each;
    optimizer state is 0 (``"sgd"``), 1 (``"sgd-momentum"``: the momentum buffer) or 2
    (``"adam"``: first and second moments, plus a 4-byte step counter per parameter tensor)
    values per parameter. Weights include buffers (batch norm's running statistics).
    Activations are the tensors autograd keeps for backward, by the
    rules of :data:`SAVED_FOR_BACKWARD`, counted once each; ``device`` (``"cpu"`` or
    ``"cuda"``) matters only for dropout masks. The estimate leaves out the temporary
    tensors of the backward pass itself, the final loss and allocator slack.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"training_memory expects a torch.nn.Module, got {type(model).__name__}")
    if optimizer not in OPTIMIZER_STATES:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of "
                         f"{', '.join(OPTIMIZER_STATES)}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if len(tuple(input_shape)) != 3:
        raise ValueError(f"training_memory: input_shape must be (C, H, W), got {input_shape!r}; "
                         "pass the batch size as batch_size")
    shape = _normalise_shape((batch_size, *input_shape), "training_memory")
    kept: list[KeptTensor] = []
    keys: set[int] = set()
    alive: list[Any] = []  # holds the meta tensors so that their ids stay unique

    def record(name: str, m: nn.Module, inputs: tuple, output: Any) -> None:
        rules = _kept_by(m, inputs, output, device)
        if rules is None:
            raise ValueError(
                f"training_memory does not know what autograd keeps for layer {name!r} "
                f"({type(m).__name__}); it knows: {', '.join(SAVED_FOR_BACKWARD)}. Measure "
                "this model with measure_saved_tensors instead")
        for what, key, nbytes in rules:
            alive.append(key)
            if id(key) not in keys:
                keys.add(id(key))
                kept.append(KeptTensor(name, what, nbytes))

    _traced_forward(model, shape, record, train=True, who="training_memory")
    trainable = [p for p in model.parameters() if p.requires_grad]
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    n_trainable = sum(p.numel() for p in trainable)
    state = OPTIMIZER_STATES[optimizer] * 4 * n_trainable
    if optimizer == "adam":
        state += 4 * len(trainable)  # torch.optim.Adam's float32 "step" tensor per parameter
    return TrainingMemory(batch_size=batch_size, optimizer=optimizer, weights=weights,
                          gradients=4 * n_trainable, optimizer_state=state,
                          activations=sum(k.bytes for k in kept), kept=kept)


def _from_parameters(t: torch.Tensor) -> bool:
    """Whether autograd made ``t`` from one parameter by one-input steps only (a cast, a
    transpose, a view): a copy of a weight, not an activation."""
    fn = t.grad_fn
    while fn is not None:
        if hasattr(fn, "variable"):  # AccumulateGrad: the parameter itself
            return True
        nexts = fn.next_functions
        if len(nexts) != 1 or nexts[0][0] is None:
            return False  # an operation with several inputs (a conv, a matmul) or on the input
        fn = nexts[0][0]
    return False


def saved_tensor_bytes(model: nn.Module, x: torch.Tensor, *,
                       autocast_dtype: Optional[torch.dtype] = None) -> dict[tuple[str, str], int]:
    """Measure the bytes autograd keeps for backward in one training-mode forward of ``x``.

    Every tensor autograd saves passes through a ``saved_tensors_hooks`` pack hook; we add up
    the distinct storages behind them (a tensor saved twice, or an in-place result, counts
    once), leaving out the model's own parameters and buffers. The result maps
    ``(kind, dtype)`` to bytes, e.g. ``("activations", "float32")``: kind ``"weight copies"``
    is a tensor made from a parameter alone, such as the bfloat16 copy of a weight that
    ``torch.autocast`` makes and a convolution keeps; everything else (the input, layer
    outputs, pool indices, dropout masks) is ``"activations"``. With ``autocast_dtype``
    (e.g. ``torch.bfloat16``) the forward pass runs under ``torch.autocast`` on ``x``'s
    device. Runs a real forward pass; the model is put in training mode and restored.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"saved_tensor_bytes expects a tensor input, got {type(x).__name__}")
    if autocast_dtype is not None and not isinstance(autocast_dtype, torch.dtype):
        raise ValueError(f"autocast_dtype must be a torch.dtype such as torch.bfloat16 or None, "
                         f"got {autocast_dtype!r}")
    was_training = [(m, m.training) for m in model.modules()]
    model.train()
    try:
        return _saved_bytes(model, x, autocast_dtype)
    finally:
        for m, mode in was_training:
            m.training = mode


def _saved_bytes(model: nn.Module, x: torch.Tensor, autocast_dtype: Optional[torch.dtype]
                 ) -> dict[tuple[str, str], int]:
    """The measurement of :func:`saved_tensor_bytes`, without its checks."""
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    storages: dict[int, tuple[tuple[str, str], int]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:  # autograd calls it for every tensor it saves
        s = t.untyped_storage()
        if s.data_ptr() not in own and s.data_ptr() not in storages:  # new memory
            kind = "weight copies" if _from_parameters(t) else "activations"
            storages[s.data_ptr()] = ((kind, str(t.dtype).removeprefix("torch.")), s.nbytes())
        return t

    precision = (nullcontext() if autocast_dtype is None
                 else torch.autocast(x.device.type, dtype=autocast_dtype))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), precision:
        out = model(x)
    del out  # the graph, and so every saved tensor, stayed alive until here
    result: dict[tuple[str, str], int] = {}
    for key, nbytes in storages.values():
        result[key] = result.get(key, 0) + nbytes
    return result


def measure_saved_tensors(model: nn.Module, x: torch.Tensor) -> int:
    """Measure the bytes autograd keeps for backward in one training-mode float forward of
    ``x``: the total of :func:`saved_tensor_bytes` (distinct storages, the model's own
    parameters and buffers left out)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"measure_saved_tensors expects a tensor input, got {type(x).__name__}")
    return sum(saved_tensor_bytes(model, x).values())


def measure_cuda_peak(model: nn.Module, input_shape: Sequence[int], batch_size: int, *,
                      optimizer: str = "sgd-momentum", steps: int = 2) -> dict[str, int]:
    """Peak CUDA memory (bytes) of ``steps`` real float32 training steps, with its parts.

    Returns ``{"peak": max_memory_allocated, "weights": ..., "after_forward": ...}`` where
    ``after_forward`` is the memory allocated right after the last forward pass minus the
    memory before it (what the forward pass left alive: the kept tensors and the output).
    The model is moved to the GPU. Needs ``torch.cuda.is_available()``.
    """
    if not torch.cuda.is_available():
        raise ValueError("measure_cuda_peak needs a CUDA GPU (torch.cuda.is_available() is False)")
    if optimizer not in OPTIMIZER_STATES:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of "
                         f"{', '.join(OPTIMIZER_STATES)}")
    device = torch.device("cuda")
    model = model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=1e-4)
    else:
        opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9 if optimizer == "sgd-momentum" else 0)
    x = torch.randn(batch_size, *input_shape, device=device)
    target = torch.zeros(batch_size, dtype=torch.long, device=device)
    torch.cuda.synchronize()
    weights = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    after_forward = 0
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        before = torch.cuda.memory_allocated()
        loss = nn.functional.cross_entropy(model(x), target)
        after_forward = torch.cuda.memory_allocated() - before
        loss.backward()
        opt.step()
        del loss
    torch.cuda.synchronize()
    return {"peak": torch.cuda.max_memory_allocated(), "weights": weights,
            "after_forward": after_forward}
