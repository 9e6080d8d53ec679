"""Import a trained ReLU network in ONNX as an integrate-and-fire SNN (ANN-to-SNN conversion).

The conversion is the data-based normalisation of Rueckauer et al. (2017,
"Conversion of continuous-valued deep networks to efficient event-driven
networks for image classification"). Every ReLU becomes a population of IF
neurons (model "if", r = 1, v_threshold = 1, v_reset = 0) whose rate, in
spikes per step, approximates the ReLU's activation a_l divided by a
per-layer scale λ_l, a robust maximum: the ``percentile`` (default 99.9) of
layer l's positive activations on calibration inputs. λ_0 is the largest
calibration input (1 for inputs in [0, 1]; ``graph.meta["input_scale"]``):
the input population spikes at rate x / λ_0 (``runtime.encode.rate_code``).
A projection from layer s into layer l then carries ``W·λ_s/λ_l`` and layer l
gets the bias ``b/λ_l`` (input per step, every step), so its input per step
is ``(W·a_s + b)/λ_l = a_l/λ_l`` while layer s fires at a_s/λ_s.

The last linear layer (the logits) becomes a non-spiking "i" population with
λ = 1: weights ``W·λ_s``, bias ``b``. Its v adds up the logits of every step,
so the class is the argmax of v at the end of a run (the argmax of the mean
logit); the graph's only output. A network that ends in a ReLU outputs that
IF population instead (read out by spike counts).

The reset defaults to "subtract" because it converts far better: a neuron
that resets to zero throws away the charge above threshold at each spike,
so its rate falls short of a/λ by up to one step's input per spike, and the
shortfall compounds layer by layer; subtracting the threshold keeps the
residue, so over T steps the spike count is a/λ·T within one spike (a/λ <= 1)
(Rueckauer et al. 2017). The gap grows with depth and shrinks with T.

ONNX ops, one by one:

- Conv (1-d and 2-d; groups, dilations, strides, symmetric pads),
  AveragePool, GlobalAveragePool, BatchNormalization (inference), Gemm
  (alpha, beta, transB), MatMul by a constant, Add of a constant, Flatten
  (axis 1) and Reshape (batch dimension kept) are affine maps. Consecutive
  maps with no ReLU between them are composed into one projection as
  ``scipy.sparse`` products, which folds BatchNormalization into the Conv or
  Gemm before it; biases are pushed through to the destination population.
  A composition that is still one convolution (Conv + BatchNormalization,
  AveragePool + Conv, ...) stays a "conv" projection, verified against the
  composed matrix; any other becomes "dense" above :data:`DENSE_ABOVE`
  non-zeros, else "sparse".
- Relu ends a chain and starts a population. A Relu straight on a
  population's output (the input, or another Relu) changes nothing, since
  spike rates are never negative, and is dropped.
- Dropout and Identity are dropped; Constant nodes are read like initializers.
- A final Softmax or LogSoftmax over the classes is dropped with an
  :class:`OnnxImportNote` (it does not change the argmax).
- Anything else, MaxPool or a Softmax before the end included, raises
  :class:`OnnxImportError` naming the op and the node.

Without calibration data, λ_l is the worst case over neurons n of
``Σ_j max(W_nj, 0)·λ_s + max(b_n, 0)`` with inputs in [0, 1]: nothing
saturates, but most neurons fire far below their best rate, and an
OnnxImportNote says accuracy may suffer.
"""

from __future__ import annotations

import math
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import scipy.sparse as sp
from onnx import helper, numpy_helper

from snnc.compiler import ir
from snnc.compiler.conv import conv_matrix

DEFAULT_DT = 1e-3
"""Seconds per step; IF and I neurons do not depend on it, it only labels the time axis."""
DEFAULT_RESET = "subtract"
"""Converts far better than "zero" (see the module docstring)."""
CONVERSION_RESETS = ("subtract", "zero")
"""Resets a converted IF neuron may use; without one its rate is not bounded by 1 spike per step."""
DEFAULT_PERCENTILE = 99.9
"""Percentile of a layer's positive activations taken as its maximum (Rueckauer et al. 2017)."""
DENSE_ABOVE = 0.25
"""A composed, non-convolutional projection denser than this becomes "dense" rather than "sparse"."""
COMPOSE_TOLERANCE = 1e-9
"""Largest relative difference between a composed kernel's matrix and the composed matrix it replaces."""

SUPPORTED_OPS = ("Add", "AveragePool", "BatchNormalization", "Constant", "Conv", "Dropout", "Flatten", "Gemm",
                 "GlobalAveragePool", "Identity", "LogSoftmax (last)", "MatMul", "Relu", "Reshape", "Softmax (last)")
"""What :func:`import_onnx` understands, as listed in its error messages."""

_FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                          onnx.TensorProto.BFLOAT16})
_INPUT_KEY = "input"
"""Name of the input population, and the fallback array name in a calibration ``.npz``."""


class OnnxImportError(ValueError):
    """An ONNX model cannot be converted; the one-line message names the file and the op, node or tensor."""


class OnnxImportNote(UserWarning):
    """Something was converted by a documented approximation (a dropped Softmax, no calibration data)."""


@dataclass(frozen=True)
class _Conv:
    """A convolution in IR form: ``kernel`` (C_out, C_in / groups, kH, kW) with geometry ``spec``."""

    spec: ir.ConvSpec
    kernel: np.ndarray


@dataclass(frozen=True)
class _Value:
    """A tensor of the network as an affine map of one population's output (flat, no batch axis).

    ``value = matrix @ source_output + bias``; ``shape`` is the ONNX shape
    without the batch dimension. ``conv``, when set, is a convolution whose
    matrix equals ``matrix``. ``raw`` says the value is the source's output
    itself (only reshapes applied). ``nodes`` are the ONNX nodes composed so far.
    """

    source: str
    shape: tuple[int, ...]
    matrix: sp.csr_matrix
    bias: np.ndarray
    conv: _Conv | None
    raw: bool
    nodes: tuple[str, ...]

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))


@dataclass(frozen=True)
class _Layer:
    """A population to be: the value feeding it and whether it spikes (a ReLU) or integrates (the logits)."""

    key: str
    value: _Value
    spiking: bool


def import_onnx(source: str | Path | onnx.ModelProto, calibration: np.ndarray | str | Path | None = None,
                dt: float = DEFAULT_DT, reset: str = DEFAULT_RESET, percentile: float = DEFAULT_PERCENTILE) -> ir.Graph:
    """Convert a trained ReLU network (``.onnx`` file or ``onnx.ModelProto``) into a float IF-neuron graph.

    ``calibration`` holds typical inputs, (B, *input_shape) or (B, N), as an
    array or an ``.npz`` file with an array named like the ONNX input (else
    ``input``); a few hundred training samples are plenty. ``dt`` is in
    seconds; ``reset`` is "subtract" (default, see the module docstring) or
    "zero"; ``percentile`` in (0, 100] sets each layer's scale. The input
    population is ``input`` with the ONNX input's shape minus the batch axis;
    ``graph.meta`` records the scales (``input_scale``, ``activation_scales``).
    Raises :class:`OnnxImportError`; warns :class:`OnnxImportNote`.
    """
    if reset not in CONVERSION_RESETS:
        raise OnnxImportError(f"reset must be one of {CONVERSION_RESETS} for a rate-coded conversion, got {reset!r}")
    if not (isinstance(dt, float | int) and math.isfinite(dt) and dt > 0):
        raise OnnxImportError(f"dt must be a positive number of seconds, got {dt!r}")
    if not (isinstance(percentile, float | int) and 0 < percentile <= 100):
        raise OnnxImportError(f"percentile must lie in (0, 100], got {percentile!r}")
    if isinstance(source, onnx.ModelProto):
        label, model = "ONNX model", source
    else:
        label = str(source)
        model = _read_model(Path(source), label)
    importer = _Importer(label, model)
    importer.run()
    data = None
    if calibration is not None:
        data = _calibration_array(calibration, importer.input_name, importer.input_shape, label)
    graph = importer.graph(data, float(dt), reset, float(percentile))
    for note in importer.notes:
        warnings.warn(note, OnnxImportNote, stacklevel=2)
    try:
        return ir.check(graph, "float")
    except ir.IRError as exc:
        raise OnnxImportError(f"{label}: {exc}") from exc


# --------------------------------------------------------------------------- reading


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _read_model(path: Path, label: str) -> onnx.ModelProto:
    """onnx.load and onnx.checker with every failure turned into one OnnxImportError line naming the file."""
    if not path.is_file():
        raise OnnxImportError(f"{label}: no such file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError, OSError for missing external data, ...
        raise OnnxImportError(f"{label}: not a readable ONNX file, truncated or not ONNX ({_first_line(exc)})") from exc
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx.checker.ValidationError, or a protobuf error on a damaged model
        raise OnnxImportError(f"{label}: not a valid ONNX model, truncated or damaged ({_first_line(exc)})") from exc
    return model


def _calibration_array(calibration: np.ndarray | str | Path, input_name: str, shape: tuple[int, ...],
                       label: str) -> np.ndarray:
    """Calibration inputs as float64 (B, N); reads an ``.npz`` file when given a path."""
    if isinstance(calibration, str | Path):
        path = Path(calibration)
        keys = [input_name] if input_name == _INPUT_KEY else [input_name, _INPUT_KEY]
        try:
            with np.load(path, allow_pickle=False) as npz:
                found = [k for k in keys if k in npz.files]
                if not found:
                    wanted = " or ".join(f"'{k}'" for k in keys)
                    raise OnnxImportError(f"{path}: calibration file has no array {wanted} (the input of {label}); "
                                          f"it holds {sorted(npz.files)}")
                data = np.asarray(npz[found[0]])
        except FileNotFoundError as exc:
            raise OnnxImportError(f"{path}: no such calibration file") from exc
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            if isinstance(exc, OnnxImportError):
                raise
            raise OnnxImportError(f"{path}: not a readable .npz calibration file ({_first_line(exc)})") from exc
        what = f"{path}: calibration array '{found[0]}'"
    else:
        data = np.asarray(calibration)
        what = f"{label}: calibration data"
    size = int(math.prod(shape))
    if data.dtype.kind not in "biuf":
        raise OnnxImportError(f"{what} has dtype {data.dtype}, not numbers")
    if data.ndim < 2 or data.shape[0] == 0 or tuple(data.shape[1:]) not in (tuple(shape), (size,)):
        raise OnnxImportError(f"{what} has shape {data.shape}; expected (B, {', '.join(map(str, shape))}) "
                              f"or (B, {size}) with B >= 1")
    data = data.astype(np.float64).reshape(data.shape[0], size)
    if not np.all(np.isfinite(data)):
        raise OnnxImportError(f"{what} contains NaN or infinite values")
    return data


# --------------------------------------------------------------------------- shapes and kernels


def _as_chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C,), (C, L) or (C, H, W) as the (C, H, W) of a 2-d convolution."""
    if len(shape) == 1:
        return shape[0], 1, 1
    if len(shape) == 2:
        return shape[0], 1, shape[1]
    return shape[0], shape[1], shape[2]


def _from_chw(shape: tuple[int, int, int], rank: int) -> tuple[int, ...]:
    """Inverse of :func:`_as_chw` for a tensor of ``rank`` unbatched dimensions."""
    return (shape[0],) if rank == 1 else (shape[0], shape[2]) if rank == 2 else shape


def _group_index(c_out: int, c_in: int, groups: int) -> np.ndarray:
    """(C_out, C_in / groups) input channel of each grouped kernel entry."""
    per_out, per_in = c_out // groups, c_in // groups
    return (np.arange(c_out) // per_out)[:, None] * per_in + np.arange(per_in)[None, :]


def _ungrouped(kernel: np.ndarray, groups: int, c_in: int) -> np.ndarray:
    """A grouped kernel (C_out, C_in / groups, kH, kW) as the full (C_out, C_in, kH, kW) with zeros off-group."""
    full = np.zeros((kernel.shape[0], c_in, *kernel.shape[2:]))
    full[np.arange(kernel.shape[0])[:, None], _group_index(kernel.shape[0], c_in, groups)] = kernel
    return full


def _groups_of(full: np.ndarray) -> int:
    """The most groups a full kernel (C_out, C_in, kH, kW) splits into (block-diagonal channel structure)."""
    c_out, c_in = full.shape[:2]
    used = np.abs(full).reshape(c_out, c_in, -1).max(axis=2) > 0
    common = math.gcd(c_out, c_in)
    for groups in sorted((g for g in range(1, common + 1) if common % g == 0), reverse=True):
        same_group = (np.arange(c_out)[:, None] // (c_out // groups)) == (np.arange(c_in)[None, :] // (c_in // groups))
        if not np.any(used & ~same_group):
            return groups
    return 1


def _compose_convs(first: _Conv, second: _Conv, matrix: sp.csr_matrix) -> _Conv | None:
    """The one convolution equal to ``second`` applied after ``first``, or None when there is none.

    ``second``, at offset q with stride s_1 and dilation d_2, reads inputs
    ``q·d_2·s_1 + u`` of ``first``'s window: a kernel of size
    ``(k_2 - 1)·d_2·s_1 + k_1``, stride ``s_1·s_2`` and padding
    ``p_1 + s_1·p_2``. Padding of ``second`` is only equivalent when
    ``first`` reads nothing but padding there, so the candidate is checked
    against ``matrix``, the composed map.
    """
    a, b = first.spec, second.spec
    if a.dilation != (1, 1):
        return None
    ka = _ungrouped(first.kernel, a.groups, a.in_shape[0])
    kb = _ungrouped(second.kernel, b.groups, b.in_shape[0])
    size = tuple((kb.shape[2 + i] - 1) * b.dilation[i] * a.stride[i] + ka.shape[2 + i] for i in range(2))
    full = np.zeros((kb.shape[0], ka.shape[1], *size))
    for qh in range(kb.shape[2]):
        for qw in range(kb.shape[3]):
            oh, ow = qh * b.dilation[0] * a.stride[0], qw * b.dilation[1] * a.stride[1]
            full[:, :, oh:oh + ka.shape[2], ow:ow + ka.shape[3]] += np.einsum("om,mihw->oihw", kb[:, :, qh, qw], ka)
    groups = _groups_of(full)
    spec = ir.ConvSpec(
        in_shape=a.in_shape, out_shape=b.out_shape,
        stride=(a.stride[0] * b.stride[0], a.stride[1] * b.stride[1]),
        padding=(a.padding[0] + a.stride[0] * b.padding[0], a.padding[1] + a.stride[1] * b.padding[1]),
        groups=groups,
    )
    if ir.conv_output_shape(spec, (size[0], size[1])) != tuple(b.out_shape[1:]):
        return None
    kernel = full[np.arange(full.shape[0])[:, None], _group_index(full.shape[0], full.shape[1], groups)]
    difference = abs(conv_matrix(spec, kernel) - matrix).max()
    scale = abs(matrix).max()
    if difference > COMPOSE_TOLERANCE * max(scale, np.finfo(float).tiny):
        return None
    return _Conv(spec, kernel)


def _evaluate(value: _Value, source: np.ndarray) -> np.ndarray:
    """The value (B, size) for source outputs ``source`` (B, source size), in float64."""
    return np.asarray((value.matrix @ source.T).T) + value.bias


# --------------------------------------------------------------------------- the importer


class _Importer:
    """One conversion: ONNX nodes walked in order into values and layers, then scaled into an IR graph."""

    def __init__(self, label: str, model: onnx.ModelProto) -> None:
        self.label = label
        self.model = model
        self.onnx_graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.constants: dict[str, np.ndarray] = {}
        self.values: dict[str, _Value] = {}
        self.layers: dict[str, _Layer] = {}
        self.notes: list[str] = []
        self.dropped: list[str] = []
        self.consumers: dict[str, list[tuple[str, str]]] = {}
        for index, node in enumerate(self.onnx_graph.node):
            for tensor in node.input:
                self.consumers.setdefault(tensor, []).append((node.op_type, self._node_name(node, index)))
        for init in self.onnx_graph.initializer:
            self.constants[init.name] = self._array(init, f"initializer '{init.name}'")
        self.input_name, self.input_shape = self._input()
        outputs = [o.name for o in self.onnx_graph.output]
        if len(outputs) != 1:
            raise self.fail(f"the model has {len(outputs)} outputs {outputs}; snnc converts single-output networks")
        self.output_name = outputs[0]
        size = int(math.prod(self.input_shape))
        self.values[self.input_name] = _Value(_INPUT_KEY, self.input_shape, sp.identity(size, format="csr"),
                                              np.zeros(size), None, True, ())

    def fail(self, message: str) -> OnnxImportError:
        return OnnxImportError(f"{self.label}: {message}")

    @staticmethod
    def _node_name(node: onnx.NodeProto, index: int) -> str:
        return node.name or f"#{index}"

    def _array(self, tensor: onnx.TensorProto, what: str) -> np.ndarray:
        try:
            arr = numpy_helper.to_array(tensor)
        except Exception as exc:  # missing external data, unsupported element type
            raise self.fail(f"{what} cannot be read ({_first_line(exc)})") from exc
        return self._checked(arr, what)

    def _checked(self, arr: np.ndarray, what: str) -> np.ndarray:
        """``arr`` with floats as float64; NaN or infinite values raise."""
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)):
                raise self.fail(f"{what} contains NaN or infinite values")
            return arr.astype(np.float64)
        return arr

    def _input(self) -> tuple[str, tuple[int, ...]]:
        """Name and unbatched shape of the one graph input that is not an initializer."""
        inputs = [i for i in self.onnx_graph.input if i.name not in self.constants]
        if len(inputs) != 1:
            raise self.fail(f"the model has {len(inputs)} inputs {[i.name for i in inputs]}; "
                            f"snnc converts single-input networks")
        tensor = inputs[0]
        kind = tensor.type.tensor_type
        if not tensor.type.HasField("tensor_type") or kind.elem_type not in _FLOAT_TYPES:
            raise self.fail(f"input '{tensor.name}' is not a floating-point tensor")
        dims = list(kind.shape.dim)
        if len(dims) < 2:
            raise self.fail(f"input '{tensor.name}' has rank {len(dims)}; expected (batch, features...)")
        shape = []
        for axis, dim in enumerate(dims[1:], start=1):
            if not dim.HasField("dim_value") or dim.dim_value <= 0:
                raise self.fail(f"input '{tensor.name}' has no fixed size along axis {axis} "
                                f"('{dim.dim_param}'); only the batch axis may vary")
            shape.append(int(dim.dim_value))
        return tensor.name, tuple(shape)

    # ------------------------------------------------------------------ walking the nodes

    def run(self) -> None:
        """Turn every node into values and layers; raises OnnxImportError on the first it cannot convert."""
        handlers = {
            "Add": self._add, "AveragePool": self._average_pool, "BatchNormalization": self._batch_norm,
            "Constant": self._constant_node, "Conv": self._conv, "Dropout": self._pass_through, "Flatten": self._flatten,
            "Gemm": self._gemm, "GlobalAveragePool": self._global_average_pool, "Identity": self._pass_through,
            "LogSoftmax": self._softmax, "MatMul": self._matmul, "Relu": self._relu, "Reshape": self._reshape,
            "Softmax": self._softmax,
        }
        if not self.onnx_graph.node:
            raise self.fail("the graph has no nodes")
        for index, node in enumerate(self.onnx_graph.node):
            name = self._node_name(node, index)
            op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            if op not in handlers:
                raise self.fail(f"unsupported ONNX op '{op}' (node '{name}'); supported: {', '.join(SUPPORTED_OPS)}")
            present = [t for t in node.input if t]
            if op not in ("Constant", "Identity", "Dropout") and present and all(t in self.constants for t in present):
                raise self.fail(f"ONNX op '{op}' (node '{name}') computes on constants only; export with constant "
                                f"folding (torch.onnx.export(..., do_constant_folding=True))")
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            handlers[op](node, name, attrs)

    def _value(self, node: onnx.NodeProto, name: str, position: int = 0) -> _Value:
        tensor = node.input[position] if position < len(node.input) else ""
        if tensor in self.values:
            return self.values[tensor]
        what = f"ONNX op '{node.op_type}' (node '{name}')"
        if tensor in self.constants:
            raise self.fail(f"{what} needs a computed tensor as input {position}, got the constant '{tensor}'")
        raise self.fail(f"{what} reads '{tensor}', which snnc does not compute")

    def _constant_input(self, node: onnx.NodeProto, name: str, position: int, what: str) -> np.ndarray | None:
        """Input ``position`` as a constant; None when the optional input is absent."""
        tensor = node.input[position] if position < len(node.input) else ""
        if not tensor:
            return None
        if tensor not in self.constants:
            raise self.fail(f"ONNX op '{node.op_type}' (node '{name}'): {what} '{tensor}' must be a constant "
                            f"(an initializer); snnc converts fixed, trained weights")
        return self.constants[tensor]

    def _set(self, node: onnx.NodeProto, value: _Value) -> None:
        self.values[node.output[0]] = value

    def _apply(self, x: _Value, name: str, matrix: sp.csr_matrix, bias: np.ndarray, shape: tuple[int, ...],
               conv: _Conv | None) -> _Value:
        """``x`` followed by the affine map ``matrix @ . + bias`` (conv: the same map as a convolution)."""
        composed = sp.csr_matrix(matrix @ x.matrix)
        if conv is None:
            kept = None
        elif x.raw:
            kept = conv
        elif x.conv is not None and tuple(x.conv.spec.out_shape) == tuple(conv.spec.in_shape):
            kept = _compose_convs(x.conv, conv, composed)
        else:
            kept = None
        return _Value(x.source, shape, composed, matrix @ x.bias + bias, kept, False, (*x.nodes, name))

    def _conv_spec(self, x: _Value, node: onnx.NodeProto, name: str, kernel: np.ndarray, stride: tuple[int, int],
                   padding: tuple[int, int], dilation: tuple[int, int], groups: int) -> ir.ConvSpec:
        """The geometry of a 2-d convolution of ``x`` by ``kernel`` (C_out, C_in / groups, kH, kW), checked."""
        in_shape = _as_chw(x.shape)
        c_out, per_group = kernel.shape[:2]
        if groups < 1 or per_group * groups != in_shape[0] or c_out % groups:
            raise self.fail(f"ONNX op '{node.op_type}' (node '{name}'): kernel {kernel.shape} with group={groups} "
                            f"does not fit an input of shape {x.shape}")
        probe = ir.ConvSpec(in_shape, (c_out, 1, 1), stride, padding, dilation, groups)
        height, width = ir.conv_output_shape(probe, (kernel.shape[2], kernel.shape[3]))
        if height < 1 or width < 1:
            raise self.fail(f"ONNX op '{node.op_type}' (node '{name}'): window {kernel.shape[2:]} leaves no output "
                            f"on an input of shape {x.shape}")
        return ir.replace(probe, out_shape=(c_out, height, width))

    def _apply_conv(self, x: _Value, node: onnx.NodeProto, name: str, kernel: np.ndarray, bias: np.ndarray,
                    stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int], groups: int) -> _Value:
        """``x`` followed by a 2-d convolution (kernel (C_out, C_in / groups, kH, kW), bias per output channel)."""
        spec = self._conv_spec(x, node, name, kernel, stride, padding, dilation, groups)
        matrix = conv_matrix(spec, kernel)
        shape = _from_chw(spec.out_shape, len(x.shape))
        per_channel = spec.out_shape[1] * spec.out_shape[2]
        return self._apply(x, name, matrix, np.repeat(bias, per_channel), shape, _Conv(spec, kernel))

    def _spatial(self, node: onnx.NodeProto, name: str, x: _Value, window: tuple[int, ...],
                 attrs: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """Stride, symmetric padding and dilation of a 1-d or 2-d window op, as (H, W) pairs."""
        what = f"ONNX op '{node.op_type}' (node '{name}')"
        n = len(window)
        if n not in (1, 2) or len(x.shape) != n + 1:
            raise self.fail(f"{what}: snnc converts 1-d and 2-d windows on (C, L) or (C, H, W) inputs; "
                            f"got a {n}-d window on an input of shape {x.shape}")
        strides = [int(s) for s in attrs.get("strides", [1] * n)]
        dilations = [int(d) for d in attrs.get("dilations", [1] * n)]
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
        spatial = x.shape[1:]
        if auto_pad == "NOTSET":
            pads = [int(p) for p in attrs.get("pads", [0] * 2 * n)]
        elif auto_pad == "VALID":
            pads = [0] * 2 * n
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            total = [max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
                     for size, s, k, d in zip(spatial, strides, window, dilations)]
            small = [t // 2 for t in total]
            large = [t - t // 2 for t in total]
            pads = small + large if auto_pad == "SAME_UPPER" else large + small
        else:
            raise self.fail(f"{what}: auto_pad '{auto_pad}' is not an ONNX padding mode")
        if pads[:n] != pads[n:]:
            raise self.fail(f"{what}: asymmetric pads {pads} (begin {pads[:n]}, end {pads[n:]}) are not supported; "
                            f"snnc convolutions pad both sides of an axis equally")
        if n == 1:
            return (1, strides[0]), (0, pads[0]), (1, dilations[0])
        return (strides[0], strides[1]), (pads[0], pads[1]), (dilations[0], dilations[1])

    # ------------------------------------------------------------------ op handlers

    def _conv(self, node: onnx.NodeProto, name: str, attrs: dict[str, Any]) -> None:
        x = self._value(node, name)
        weight = self._constant_input(node, name, 1, "weight")
        assert weight is not None  # the checker requires Conv's W
        bias = self._constant_input(node, name, 2, "bias")
        window = tuple(int(k) for k in weight.shape[2:])
        if "kernel_shape" in attrs and tuple(int(k) for k in attrs["kernel_shape"]) != window:
            raise self.fail(f"ONNX op 'Conv' (node '{name}'): kernel_shape {list(attrs['kernel_shape'])} "
                            f"disagrees with the weight's {list(window)}")
        stride, padding, dilation = self._spatial(node, name, x, window, attrs)
        kernel = weight.reshape(weight.shape[0], weight.shape[1], 1, window[0]) if len(window) == 1 else weight
        bias = np.zeros(weight.shape[0]) if bias is None else bias.ravel()
        self._set(node, self._apply_conv(x, node, name, kernel, bias, stride, padding, dilation, int(attrs.get("group", 1))))

    def _average_pool(self, node: onnx.NodeProto, name: str, attrs: dict[str, Any]) -> None:
        x = self._value(node, name)
        window = tuple(int(k) for k in attrs.get("kernel_shape", ()))
        stride, padding, dilation = self._spatial(node, name, x, window, attrs)
        channels = x.shape[0]
        kernel_hw = (1, window[0]) if len(window) == 1 else window
        if attrs.get("ceil_mode", 0):
            in_shape = _as_chw(x.shape)
            for n, k, s, p, d in zip(in_shape[1:], kernel_hw, stride, padding, dilation):
                span = n + 2 * p - d * (k - 1) - 1
                if span % s:
                    raise self.fail(f"ONNX op 'AveragePool' (node '{name}'): ceil_mode=1 adds a partial window "
                                    f"here; export with ceil_mode=0 or pad the input to a multiple of the stride")
        ones = np.ones((channels, 1, *kernel_hw))
        if any(padding) and not attrs.get("count_include_pad", 0):
            # border windows divide by their in-range taps only: a per-row scale, so not a convolution
            spec = self._conv_spec(x, node, name, ones, stride, padding, dilation, channels)
            taps = conv_matrix(spec, ones)
            matrix = sp.csr_matrix(sp.diags(1.0 / np.asarray(taps.sum(axis=1)).ravel()) @ taps)
            shape = _from_chw(spec.out_shape, len(x.shape))
            self._set(node, self._apply(x, name, matrix, np.zeros(matrix.shape[0]), shape, None))
            return
        kernel = ones / (kernel_hw[0] * kernel_hw[1])
        self._set(node, self._apply_conv(x, node, name, kernel, np.zeros(channels), stride, padding, dilation, channels))

    def _global_average_pool(self, node: onnx.NodeProto, name: str, attrs: dict[str, Any]) -> None:
        x = self._value(node, name)
        if len(x.shape) not in (2, 3):
            raise self.fail(f"ONNX op 'GlobalAveragePool' (node '{name}'): input shape {x.shape} is not (C, L) or (C, H, W)")
        channels, height, width = _as_chw(x.shape)
        kernel = np.full((channels, 1, height, width), 1.0 / (height * width))
        self._set(node, self._apply_conv(x, node, name, kernel, np.zeros(channels), (1, 1), (0, 0), (1, 1), channels))

    def _batch_norm(self, node: onnx.NodeProto, name: str, attrs: dict[str, Any]) -> None:
        x = self._value(node, name)
        if attrs.get("training_mode", 0):
            raise self.fail(f"ONNX op 'BatchNormalization' (node '{name}') is in training mode; export the model "
                            f"in eval mode")
        params = [self._constant_input(node, name, i, what) for i, what in
                  ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance"))]
        channels = x.shape[0]
        if any(p is None or p.size != channels for p in params):
            raise self.fail(f"ONNX op 'BatchNormalization' (node '{name}'): scale, bias, mean and variance need "
                            f"{channels} values each, one per channel")
        scale, shift, mean, variance = (np.asarray(p, dtype=np.float64).ravel() for p in params)
        gain = scale / np.sqrt(variance + float(attrs.get("epsilon", 1e-5)))
        # a per-channel affine map is a depthwise 1x1 convolution, so it composes with the conv before it
        kernel = gain.reshape(channels, 1, 1, 1)
        self._set(node, self._apply_conv(x, node, name, kernel, shift - mean * gain, (1, 1), (0, 0), (1, 1), channels))

    def _gemm(self, node: onnx.NodeProto, name: str, attrs: dict[str, Any]) -> None:
        x = self._value(node, name)
        b = self._constant_input(node, name, 1, "weight B")
        c = self._constant_input(node, name, 2, "bias C")
        assert b is not None  # the checker requires Gemm's B
        if attrs.get("transA", 0):
            raise self.fail(f"ONNX op 'Gemm' (node '{name}'): transA=1 (transposing the batch into the features) "
                            f"is not supported")
        weight = b if attrs.get("transB", 0) else b.T
        self._dense(node, name, x, float(attrs.get("alpha", 1.0)) * weight,
                    None if c is None else float(attrs.get("beta", 1.0)) * c)

    def _matmul(self, node: onnx.NodeProto, name: str, attrs: dict[str, Any]) -> None:
        if node.input[0] in self.constants:
            raise self.fail(f"ONNX op 'MatMul' (node '{name}') multiplies a constant by a computed tensor; snnc "
                            f"converts x @ W with the weight W on the right")
        x = self._value(node, name)
        b = self._constant_input(node, name, 1, "weight")
        assert b is not None
        if b.ndim != 2:
            raise self.fail(f"ONNX op 'MatMul' (node '{name}'): weight of shape {b.shape} is not a matrix")
        self._dense(node, name, x, b.T, None)

    def _dense(self, node: onnx.NodeProto, name: str, x: _Value, weight: np.ndarray, bias: np.ndarray | None) -> None:
        """``x`` (features,) times ``weight`` (out, in) plus ``bias`` broadcast to (out,)."""
        if len(x.shape) != 1 or weight.ndim != 2 or weight.shape[1] != x.shape[0]:
            raise self.fail(f"ONNX op '{node.op_type}' (node '{name}'): weight {weight.shape} (as out, in) does not "
                            f"fit an input of shape {x.shape}; flatten the input first")
        out = weight.shape[0]
        full = np.zeros(out)
        if bias is not None:
            try:
                full = np.broadcast_to(bias, (1, out)).ravel().astype(np.float64)
            except ValueError as exc:
                raise self.fail(f"ONNX op '{node.op_type}' (node '{name}'): bias of shape {bias.shape} does not "
                                f"broadcast to ({out},)") from exc
        self._set(node, self._apply(x, name, sp.csr_matrix(weight), full, (out,), None))

    def _add(self, node: onnx.NodeProto, name: str, attrs: dict[str, Any]) -> None:
        computed = [t for t in node.input if t in self.values]
        if len(computed) == 2:
            raise self.fail(f"ONNX op 'Add' (node '{name}') adds two computed tensors ('{computed[0]}' and "
                            f"'{computed[1]}'); residual connections are not supported, only a constant bias")
        position = 0 if node.input[0] in self.values else 1
        x = self._value(node, name, position)
        c = self._constant_input(node, name, 1 - position, "addend")
        assert c is not None
        batched = (1, *x.shape)
        try:
            fits = np.broadcast_shapes(c.shape, batched) == batched
        except ValueError:
            fits = False
        if not fits:
            raise self.fail(f"ONNX op 'Add' (node '{name}'): constant of shape {c.shape} does not broadcast to the "
                            f"input's shape (batch, {', '.join(map(str, x.shape))})")
        bias = np.broadcast_to(c, batched).ravel().astype(np.float64)
        self._set(node, _Value(x.source, x.shape, x.matrix, x.bias + bias, x.conv, False, (*x.nodes, name)))

    def _reshaped(self, x: _Value, name: str, shape: tuple[int, ...]) -> _Value:
        return _Value(x.source, shape, x.matrix, x.bias, x.conv, x.raw, (*x.nodes, name))

    def _flatten(self, node: onnx.NodeProto, name: str, attrs: dict[str, Any]) -> None:
        x = self._value(node, name)
        axis = int(attrs.get("axis", 1))
        if axis < 0:
            axis += len(x.shape) + 1
        if axis != 1:
            raise self.fail(f"ONNX op 'Flatten' (node '{name}'): axis {attrs.get('axis')} mixes the batch axis into "
                            f"the features; only axis=1 is supported")
        self._set(node, self._reshaped(x, name, (x.size,)))

    def _reshape(self, node: onnx.NodeProto, name: str, attrs: dict[str, Any]) -> None:
        x = self._value(node, name)
        target = self._constant_input(node, name, 1, "shape")
        what = f"ONNX op 'Reshape' (node '{name}')"
        if target is None or target.ndim != 1 or target.size < 1:
            raise self.fail(f"{what}: needs a constant 1-d target shape")
        dims = [int(d) for d in target]
        if dims[0] not in (-1, 0, 1) or (attrs.get("allowzero", 0) and 0 in dims):
            raise self.fail(f"{what}: target shape {dims} does not keep the batch axis first; "
                            f"snnc converts per-sample reshapes such as (0, -1) or (-1, 64)")
        features = [x.shape[i - 1] if d == 0 and i - 1 < len(x.shape) else d for i, d in enumerate(dims[1:], start=1)]
        unknown = [i for i, d in enumerate(features) if d == -1]
        known = math.prod(d for d in features if d != -1)
        if (dims[0] == -1 and unknown) or len(unknown) > 1 or known <= 0 or any(d < -1 or d == 0 for d in features):
            raise self.fail(f"{what}: target shape {dims} is ambiguous for an input of shape (batch, "
                            f"{', '.join(map(str, x.shape))})")
        if unknown:
            features[unknown[0]] = x.size // known
        if math.prod(features) != x.size:
            raise self.fail(f"{what}: target shape {dims} does not hold the {x.size} features of one sample "
                            f"(input shape {x.shape})")
        self._set(node, self._reshaped(x, name, tuple(features)))

    def _pass_through(self, node: onnx.NodeProto, name: str, attrs: dict[str, Any]) -> None:
        for extra in node.output[1:]:
            if extra and extra in self.consumers:
                raise self.fail(f"ONNX op '{node.op_type}' (node '{name}'): its output '{extra}' (the dropout mask) "
                                f"is used; snnc converts inference graphs only")
        tensor = node.input[0]
        if tensor in self.constants:
            self.constants[node.output[0]] = self.constants[tensor]
        else:
            self._set(node, self._value(node, name))

    def _constant_node(self, node: onnx.NodeProto, name: str, attrs: dict[str, Any]) -> None:
        what = f"ONNX op 'Constant' (node '{name}')"
        if "value" in attrs:
            self.constants[node.output[0]] = self._array(attrs["value"], what)
            return
        for key in ("value_float", "value_floats", "value_int", "value_ints"):
            if key in attrs:
                self.constants[node.output[0]] = self._checked(np.asarray(attrs[key]), what)
                return
        raise self.fail(f"{what}: only numeric tensor constants are supported, got {sorted(attrs)}")

    def _relu(self, node: onnx.NodeProto, name: str, attrs: dict[str, Any]) -> None:
        x = self._value(node, name)
        if x.raw:
            # rates of the input or of an IF population are never negative: the ReLU is already there
            self._set(node, self._reshaped(x, name, x.shape))
            return
        key = node.output[0]
        self.layers[key] = _Layer(key, _Value(x.source, x.shape, x.matrix, x.bias, x.conv, False, (*x.nodes, name)), True)
        self._set(node, _Value(key, x.shape, sp.identity(x.size, format="csr"), np.zeros(x.size), None, True, ()))

    def _softmax(self, node: onnx.NodeProto, name: str, attrs: dict[str, Any]) -> None:
        x = self._value(node, name)
        output = node.output[0]
        what = f"ONNX op '{node.op_type}' (node '{name}')"
        if output in self.consumers:
            op, consumer = self.consumers[output][0]
            raise self.fail(f"unsupported {what} before the network's output (it feeds '{op}' node '{consumer}'); "
                            f"a Softmax is only dropped as the last op")
        axis = int(attrs.get("axis", -1 if self.opset >= 13 else 1))
        if len(x.shape) != 1 or axis not in (1, -1):
            raise self.fail(f"{what}: a softmax over axis {axis} of (batch, {', '.join(map(str, x.shape))}) is not "
                            f"over the classes, so dropping it would change the argmax")
        if output == self.output_name:
            self.dropped.append(f"{node.op_type} '{name}'")
            self.notes.append(f"{self.label}: the final {node.op_type} (node '{name}') is dropped: the SNN outputs "
                              f"the logits, whose argmax is the same")
        self._set(node, x)

    # ------------------------------------------------------------------ building the graph

    def _output_layers(self) -> tuple[list[_Layer], str]:
        """The layers the output depends on, in topological order, and the output layer's key."""
        if self.output_name not in self.values:
            raise self.fail(f"the output '{self.output_name}' is not computed from the input")
        out = self.values[self.output_name]
        if out.raw:
            if out.source == _INPUT_KEY:
                raise self.fail("the network computes nothing from its input (no Conv, Gemm or MatMul on the "
                                "way to the output)")
            key = out.source
        else:
            key = self.output_name
            self.layers[key] = _Layer(key, out, False)
        needed = {key}
        for layer in reversed(list(self.layers.values())):
            if layer.key in needed:
                needed.add(layer.value.source)
        return [layer for layer in self.layers.values() if layer.key in needed], key

    def _scales(self, layers: list[_Layer], calibration: np.ndarray | None, percentile: float) -> dict[str, float]:
        """λ per spiking layer key and for the input (``_INPUT_KEY``)."""
        scales: dict[str, float] = {}
        if calibration is None:
            self.notes.append(f"{self.label}: no calibration data, so each layer's scale is its worst case "
                              f"for inputs in [0, 1]; neurons will fire far below their best rate and accuracy may "
                              f"suffer (pass calibration inputs, e.g. --calibration)")
            scales[_INPUT_KEY] = 1.0
            for layer in layers:
                if layer.spiking:
                    upper = layer.value.matrix.maximum(0) @ np.full(layer.value.matrix.shape[1], scales[layer.value.source])
                    bound = float(np.max(upper + np.maximum(layer.value.bias, 0.0), initial=0.0))
                    scales[layer.key] = bound if bound > 0 else 1.0
            return scales
        low, high = float(calibration.min()), float(calibration.max())
        if high <= 0:
            raise self.fail(f"calibration inputs are all <= 0 (max {high:g}); the input population's rate code "
                            f"carries only positive values")
        if low < 0:
            self.notes.append(f"{self.label}: calibration inputs go down to {low:g}; the input population's rate code "
                              f"carries only values >= 0, so negative inputs are lost (rescale inputs to [0, 1])")
        scales[_INPUT_KEY] = high
        activations = {_INPUT_KEY: calibration}
        for layer in layers:
            if not layer.spiking:
                continue
            act = np.maximum(_evaluate(layer.value, activations[layer.value.source]), 0.0)
            positive = act[act > 0]
            if positive.size == 0:
                self.notes.append(f"{self.label}: ReLU '{layer.value.nodes[-1]}' never activates on the calibration "
                                  f"data; its scale is set to 1")
            scales[layer.key] = float(np.percentile(positive, percentile)) if positive.size else 1.0
            activations[layer.key] = act
        return scales

    def graph(self, calibration: np.ndarray | None, dt: float, reset: str, percentile: float) -> ir.Graph:
        """The IR graph, weights and biases scaled with λ from ``calibration`` (B, N) or the weights alone."""
        layers, output_key = self._output_layers()
        scales = self._scales(layers, calibration, percentile)
        names = {_INPUT_KEY: _INPUT_KEY}
        spiking = [layer for layer in layers if layer.spiking]
        for index, layer in enumerate(spiking, start=1):
            names[layer.key] = f"relu{index}"
        if output_key not in names:
            names[output_key] = "logits"
        populations = [ir.Population(_INPUT_KEY, self.input_shape, "input")]
        projections = []
        onnx_nodes: dict[str, list[str]] = {}
        for index, layer in enumerate(layers, start=1):
            value = layer.value
            scale = scales[layer.key] if layer.spiking else 1.0
            factor = scales[value.source] / scale
            ones = np.ones(value.shape)
            params = {"r": ones, "bias": (value.bias / scale).reshape(value.shape)}
            if layer.spiking:
                params.update(v_threshold=ones.copy(), v_reset=np.zeros(value.shape))
            populations.append(ir.Population(names[layer.key], value.shape, "if" if layer.spiking else "i", params,
                                              reset=reset))
            projection = f"layer{index}"
            onnx_nodes[projection] = list(value.nodes)
            projections.append(self._projection(projection, names[value.source], names[layer.key], value, factor))
        meta: dict[str, Any] = {
            "source": self.label, "format": "onnx", "onnx_producer": self.model.producer_name,
            "onnx_opset": int(self.opset), "conversion": "rate code, data-based normalisation (Rueckauer et al. 2017)",
            "input_scale": scales[_INPUT_KEY], "percentile": percentile,
            "activation_scales": {names[k]: v for k, v in scales.items() if k != _INPUT_KEY},
            "calibration_samples": 0 if calibration is None else int(calibration.shape[0]),
            "dropped_ops": list(self.dropped), "onnx_nodes": onnx_nodes,
            "readout": "spike count" if any(layer.key == output_key for layer in spiking) else "argmax of v at the last step",
        }
        return ir.Graph(tuple(populations), tuple(projections), (_INPUT_KEY,), (names[output_key],), dt=dt, meta=meta)

    @staticmethod
    def _projection(name: str, src: str, dst: str, value: _Value, factor: float) -> ir.Projection:
        """The value's map, times ``factor``, as a conv, dense or sparse projection."""
        if value.conv is not None:
            return ir.Projection(name, src, dst, "conv", value.conv.kernel * factor, conv=value.conv.spec)
        matrix = sp.coo_matrix(value.matrix * factor)
        matrix.eliminate_zeros()
        rows, cols = matrix.shape
        if matrix.nnz > DENSE_ABOVE * rows * cols:
            return ir.Projection(name, src, dst, "dense", matrix.toarray())
        order = np.lexsort((matrix.col, matrix.row))
        return ir.Projection(name, src, dst, "sparse", matrix.data[order], rows=matrix.row[order].astype(np.int64),
                             cols=matrix.col[order].astype(np.int64))
