"""Export a PyTorch / snnTorch spiking network to the snnc IR, neuron for neuron and spike for spike.

:func:`export_torch` traces the model with ``torch.fx`` (every layer and
neuron module is a leaf), runs one time step of ``sample_input`` (B,
*features) through a copy of it to learn every value's unbatched shape, and
maps the trace straight to populations and projections:

- the model's single input becomes the input population ``"input"`` (the
  sample's unbatched shape); the float reference and every target feed it 0/1
  spikes, so the first layer after it sees ``W . s``;
- every neuron module becomes a population named by its module path;
- the layers between two populations (``nn.Linear``, ``nn.Conv2d``,
  ``nn.AvgPool2d`` as a depthwise conv with kernel ``1/(kH*kW)``, and the
  pure reshapes ``nn.Flatten``, ``nn.Unflatten``, ``torch.flatten``,
  ``.view``/``.reshape``; ``nn.Identity`` and dropout are skipped; ``+``
  sums branches) are composed into one projection: a single Linear stays
  "dense" with its own weight, a single conv or pool, or a conv and an
  average pool whose windows tile, stays "conv", anything else becomes a
  ``scipy.sparse`` product stored "dense" above 25 % density, else "sparse";
- every bias (Linear, conv, a recurrent layer's) is pushed through the
  layers after it into the destination population's ``bias`` param;
- trailing layers after the last neuron become an ``"li"`` readout
  population ``"output"`` with ``tau_mem = dt`` and ``r = 1``, so v = x.

Neurons (``dt`` in seconds is only the graph's clock for snnTorch, which has
none: every time constant is ``dt / (1 - decay)``, so any dt gives the same
spikes). The decays are clamped to [0, 1] as snnTorch does::

    snnTorch Leaky(beta)          v' = beta*v + x
        beta < 1  -> "lif": tau_mem = dt/(1-beta), r = tau_mem/dt, v_leak = 0
        beta == 1 -> "if":  r = 1
    snnTorch Synaptic(alpha, beta)  I' = alpha*I + x ; v' = beta*v + I'
        -> "cuba_lif": tau_syn = dt/(1-alpha), w_in = tau_syn/dt, tau_mem and r as Leaky
           (alpha == 0 and beta == 1 -> "if"; otherwise alpha or beta == 1 has no equivalent)
    RLeaky / RSynaptic: as Leaky / Synaptic plus their recurrent layer (``recurrent``
        Linear or Conv2d, or the one-to-one ``V``) as a projection from the population
        to itself; it closes a cycle, so it delivers the spikes of step t-1 at step t,
        exactly where snnTorch adds ``recurrent(spk_{t-1})``
    snnc.nn.LIF / snnc.nn.IF        their own parameters (they implement snnc's equations)

snnTorch resets from the previous step's membrane (``reset_delay=True``, the
default). What each combination is in snnc's semantics (checked spike for
spike in ``tests/test_torch_export.py``):

- ``"zero"``, Leaky: the old membrane is cleared before the step's input is
  added, which is snnc's immediate reset ``v <- 0``. Synaptic, RLeaky and
  RSynaptic instead compute the whole step after a spike and subtract all of
  it, ``mem_t = m - s_{t-1}*m`` with ``m = beta*mem_{t-1} + syn_t`` (RLeaky:
  ``+ x_t + recurrent(s_{t-1})``), so that step's mem is exactly 0, input and
  recurrent spikes included, and cannot fire (threshold >= 0); the synaptic
  current is not cleared (``_base_state_reset_zero`` returns 0 for it, so
  ``syn_t - s_{t-1}*0``) and keeps integrating. The step after, mem grows from
  0 again. That is snnc's reset "zero" (``v_reset = 0``) with
  ``refractory = 1``: v held at 0 for one step while I integrates. A negative
  threshold is refused: snnTorch's membrane, 0 at the start and after every
  clear, is above it, so the neuron fires and is cleared on every step.
  With ``reset_delay=False`` Leaky, Synaptic and RLeaky are snnc's
  ``v <- 0`` (threshold >= 0); RSynaptic's ``reset_delay=False`` crashes in
  snnTorch 1.0.0 and is refused;
- ``"subtract"``: snnTorch computes ``mem_t = beta*mem_{t-1} + x_t - s_{t-1}*theta``.
  With snnc's immediate subtraction of ``theta/beta`` the pre-reset potentials
  are the same numbers, so this exports as reset "subtract" with
  ``v_reset = theta - theta/beta`` (beta > 0). ``reset_delay=False`` is refused:
  snnTorch then derives the next step's reset from the already subtracted
  membrane, so while that is still above theta it subtracts theta again before
  testing (and adds it back if no spike): such a neuron needs
  ``beta*mem + x > 2*theta`` to fire where snnc needs ``> theta``;
- ``"none"``: reset "none".

Anything else (other layers or functions, graded spikes, inhibition,
state quantization, a spike function other than the Heaviside step, a
neuron called twice) raises :class:`TorchExportError` with a one-line
message naming the module path and type.
"""

from __future__ import annotations

import copy
import inspect
import math
import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.fx as fx
from torch import nn

from snnc import nn as snnc_nn
from snnc.compiler import ir
from snnc.compiler.conv import conv_matrix, merge_conv_pool, merge_pool_conv
from snnc.compiler.frontends.nir_import import DENSE_ABOVE

try:
    import snntorch
except ImportError:  # snnTorch is optional: plain torch models with snnc.nn neurons export without it
    snntorch = None

DEFAULT_DT = 1e-4
"""Seconds per step when neither the caller nor an snnc.nn module says: snnTorch's NIR convention."""
INPUT = "input"
READOUT = "output"

Shape = tuple[int, ...]

_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_RESHAPE_MODULES = (nn.Flatten, nn.Unflatten, nn.Identity, *_DROPOUTS)
_LAYER_MODULES = (nn.Linear, nn.Conv2d, nn.AvgPool2d, *_RESHAPE_MODULES)
_RESHAPE_FUNCTIONS = (torch.flatten, torch.reshape)
_RESHAPE_METHODS = ("flatten", "view", "reshape")
_SHAPE_METHODS = ("size", "dim")
_ADD_FUNCTIONS = (operator.add, torch.add)
_STATE_FUNCTIONS = {"_base_sub": "subtract", "_base_zero": "zero", "_base_int": "none"}
"""snnTorch picks its update once, in __init__; the bound method says which reset really runs."""


class TorchExportError(ValueError):
    """The model cannot be exported exactly; the one-line message names the module path and type."""


def export_torch(model: nn.Module, sample_input: torch.Tensor, dt: float | None = None,
                 reset: str | None = None) -> ir.Graph:
    """The float IR graph of ``model``, one IR step per call of ``model.forward``.

    ``sample_input``: one time step with a batch dimension, (B, *features);
    only its shape and dtype matter. ``dt``: seconds per step; None takes the
    ``dt`` of the model's snnc.nn.LIF modules, else :data:`DEFAULT_DT`.
    ``reset`` ("zero", "subtract", "none"), when given, must be what every
    neuron module does; it never overrides a module. The model and its
    neuron states are left untouched (a copy is traced and run).
    """
    if not isinstance(model, nn.Module):
        raise TorchExportError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(sample_input, torch.Tensor) or sample_input.ndim < 2:
        shape = tuple(sample_input.shape) if isinstance(sample_input, torch.Tensor) else type(sample_input).__name__
        raise TorchExportError(f"sample_input must be a tensor of one time step with a batch dimension "
                               f"(B, *features), got {shape}")
    if reset is not None and reset not in ir.RESET_MODES:
        raise TorchExportError(f"reset must be one of {ir.RESET_MODES} or None, got {reset!r}")
    if dt is not None and not (isinstance(dt, float | int) and math.isfinite(dt) and dt > 0):
        raise TorchExportError(f"dt must be a positive number of seconds, got {dt!r}")
    return _Exporter(model, sample_input, dt, reset).run()


# --------------------------------------------------------------------------- small helpers


def _type_name(module: Any) -> str:
    """'nn.MaxPool2d', 'snntorch.Leaky', 'snnc.nn.LIF' or the full class path."""
    cls = type(module)
    home = cls.__module__
    if home.startswith("torch.nn"):
        return f"nn.{cls.__name__}"
    if home.startswith("snntorch"):
        return f"snntorch.{cls.__name__}"
    if home == "snnc.nn":
        return f"snnc.nn.{cls.__name__}"
    return f"{home}.{cls.__qualname__}"


def _function_name(target: Any) -> str:
    if isinstance(target, str):
        return f"Tensor.{target}"
    home = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", repr(target))
    if home in ("_operator", "operator"):
        return f"operator.{name}"
    return f"{'torch' if home.startswith('torch') or not home else home}.{name}"


def _oneline(exc: BaseException) -> str:
    """The exception's first line (fx appends a multi-line account of the node that failed)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    values = tuple(int(v) for v in value)
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _is_snntorch_neuron(module: nn.Module) -> bool:
    return snntorch is not None and isinstance(module, snntorch.SpikingNeuron)


def _is_neuron(module: nn.Module) -> bool:
    return isinstance(module, snnc_nn.LIF | snnc_nn.IF) or _is_snntorch_neuron(module)


def _supported_snntorch() -> tuple[type, ...]:
    if snntorch is None:
        return ()
    return (snntorch.Leaky, snntorch.Synaptic, snntorch.RLeaky, snntorch.RSynaptic)


class _Tracer(fx.Tracer):
    """Keeps every neuron module (snnTorch's are not torch.nn modules) and every torch.nn layer a leaf."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return _is_neuron(m) or super().is_leaf_module(m, module_qualified_name)


class _Recorder(fx.Interpreter):
    """Runs the traced model once and keeps every node's result (for shapes)."""

    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module)
        self.results: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        self.results[n] = result
        return result


# --------------------------------------------------------------------------- linear maps


@dataclass(frozen=True)
class _Op:
    """One layer as a map on flat (C-order) unbatched vectors: y = matrix @ x + bias.

    ``kind`` "dense" (``weight`` is the (out, in) Linear weight and the
    input is 1-d), "conv" (``weight`` the kernel, ``spec`` its geometry),
    "map" (any other matrix) or "reshape" (the identity, ``matrix`` None).
    """

    name: str
    kind: str
    matrix: sp.csr_matrix | None
    bias: np.ndarray | None
    weight: np.ndarray | None = None
    spec: ir.ConvSpec | None = None


@dataclass
class _Value:
    """A tensor that is a linear function of population outputs: sum_p terms[p] @ out(p) + bias.

    ``chains[p]`` lists the layers applied since population p, or None once
    several branches from p were summed (then only the composed matrix is known).
    """

    shape: Shape
    terms: dict[str, sp.csr_matrix]
    bias: np.ndarray
    chains: dict[str, tuple[_Op, ...] | None]


@dataclass(frozen=True)
class _NeuronTuple:
    """A neuron module's tuple result (spikes, states...): only item 0, the spikes, may flow on."""

    population: str
    spikes: _Value


@dataclass(frozen=True)
class _State:
    """A neuron's membrane or synaptic state: it may be returned, never fed to a layer."""

    population: str


@dataclass(frozen=True)
class _Meta:
    """A tensor's shape or size (``x.shape[0]``, ``x.size(0)``): allowed as arguments of reshapes only."""


def _source(population: str, shape: Shape) -> _Value:
    n = int(math.prod(shape))
    return _Value(shape, {population: sp.identity(n, format="csr")}, np.zeros(n), {population: ()})


def _apply(op: _Op, value: _Value, out_shape: Shape) -> _Value:
    if op.matrix is None:
        terms = dict(value.terms)
        bias = value.bias
    else:
        terms = {p: (op.matrix @ m).tocsr() for p, m in value.terms.items()}
        bias = op.matrix @ value.bias
    if op.bias is not None:
        bias = bias + op.bias
    chains = {p: None if c is None else (*c, op) for p, c in value.chains.items()}
    return _Value(out_shape, terms, np.asarray(bias, dtype=np.float64), chains)


def _add(a: _Value, b: _Value) -> _Value:
    terms = dict(a.terms)
    chains = dict(a.chains)
    for p, m in b.terms.items():
        if p in terms:
            terms[p] = (terms[p] + m).tocsr()
            chains[p] = None
        else:
            terms[p] = m
            chains[p] = b.chains[p]
    return _Value(a.shape, terms, a.bias + b.bias, chains)


def _is_box(op: _Op) -> bool:
    """A depthwise conv whose kernel is one constant everywhere: an average pool, as far as merging goes."""
    spec, kernel = op.spec, op.weight
    assert spec is not None and kernel is not None
    return (spec.groups == spec.in_shape[0] == spec.out_shape[0] and kernel.shape[1] == 1
            and bool(np.all(kernel == kernel.flat[0])))


# --------------------------------------------------------------------------- the exporter


@dataclass(frozen=True)
class _Neuron:
    """What a neuron module becomes: IR model, float params (no bias yet), reset, refractory steps, recurrent layer."""

    model: str
    params: dict[str, np.ndarray]
    reset: str
    recurrent: nn.Module | None = None
    refractory: int = 0


class _Exporter:
    """One export: the traced copy, its recorded shapes and the IR built from them."""

    def __init__(self, model: nn.Module, sample: torch.Tensor, dt: float | None, reset: str | None) -> None:
        self.label = _type_name(model)
        try:
            self.model = copy.deepcopy(model).eval()
        except Exception as exc:  # deepcopy can fail in many ways on arbitrary user modules
            raise TorchExportError(f"cannot copy the model to trace it ({_oneline(exc)})") from exc
        self.sample = sample.detach()
        self.batch = int(sample.shape[0])
        self.reset_option = reset
        self.dt, self.dt_from = self._resolve_dt(dt)
        self.populations: list[ir.Population] = []
        self.projections: list[ir.Projection] = []
        self.names: set[str] = set()
        self.neurons_seen: set[str] = set()

    # ------------------------------------------------------------------ setup

    def _resolve_dt(self, dt: float | None) -> tuple[float, str]:
        steps = {name: m.dt for name, m in self.model.named_modules() if isinstance(m, snnc_nn.LIF)}
        if dt is not None:
            for name, own in steps.items():
                if not math.isclose(own, dt, rel_tol=1e-9):
                    raise TorchExportError(f"'{name}' (snnc.nn.LIF) steps at dt = {own:g} s but export was asked "
                                           f"for dt = {dt:g} s; pass dt={own:g} or leave dt unset")
            return float(dt), "option"
        if not steps:
            return DEFAULT_DT, "default"
        distinct = sorted(set(steps.values()))
        if len(distinct) > 1:
            raise TorchExportError(f"the snnc.nn.LIF modules step at different dt {distinct} s; one graph has one dt")
        return float(distinct[0]), "module"

    def _trace(self) -> fx.GraphModule:
        params = list(inspect.signature(self.model.forward).parameters.values())
        extra = {p.name: p.default for p in params[1:] if p.default is not inspect.Parameter.empty
                 and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        try:
            graph = _Tracer().trace(self.model, concrete_args=extra or None)
        except Exception as exc:  # fx raises many types for untraceable Python
            raise TorchExportError(
                f"cannot trace {self.label} with torch.fx ({_oneline(exc)}); snnc exports nn.Sequential models and "
                f"modules whose forward is one time step through a chain of layers") from exc
        return fx.GraphModule(self.model, graph)

    def _where(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return f"'{node.target}' ({_type_name(self.model.get_submodule(str(node.target)))})"
        stack = node.meta.get("nn_module_stack")
        if stack:
            path = list(stack.values())[-1][0]
            return f"'{path}'"
        return f"the forward of {self.label}"

    def _precheck(self, gm: fx.GraphModule) -> None:
        """Name the first unsupported layer or operation before running anything."""
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise TorchExportError(f"{self.label}.forward takes {len(placeholders)} tensor inputs; snnc exports "
                                   f"models of one input (one time step of shape (B, *features))")
        supported = _LAYER_MODULES + _supported_snntorch() + (snnc_nn.LIF, snnc_nn.IF)
        for node in gm.graph.nodes:
            if node.op == "call_module":
                module = gm.get_submodule(node.target)
                if type(module) not in supported:
                    raise TorchExportError(f"unsupported layer '{node.target}' ({_type_name(module)})")
                if _is_snntorch_neuron(module):
                    self._check_snntorch(str(node.target), module)
            elif node.op == "call_function":
                shape_query = node.target is getattr and len(node.args) == 2 and node.args[1] == "shape"
                if node.target not in (*_ADD_FUNCTIONS, *_RESHAPE_FUNCTIONS, operator.getitem) and not shape_query:
                    raise TorchExportError(f"unsupported operation {_function_name(node.target)} in {self._where(node)}")
            elif node.op == "call_method":
                if node.target not in (*_RESHAPE_METHODS, *_SHAPE_METHODS, "add"):
                    raise TorchExportError(f"unsupported operation {_function_name(node.target)} in {self._where(node)}")
            elif node.op == "get_attr":
                raise TorchExportError(f"{self._where(node)} uses the tensor attribute '{node.target}' directly; "
                                       f"snnc exports layers and neuron modules only")

    def _record(self, gm: fx.GraphModule) -> dict[fx.Node, Any]:
        for module in gm.modules():
            if isinstance(module, snnc_nn.LIF | snnc_nn.IF):
                module.reset_state()
            elif _is_snntorch_neuron(module) and hasattr(module, "reset_mem"):
                module.reset_mem()
        dtype = next((t.dtype for t in (*gm.parameters(), *gm.buffers()) if t.is_floating_point()),
                     torch.get_default_dtype())
        sample = self.sample.to(dtype)
        recorder = _Recorder(gm)
        try:
            with torch.no_grad():
                recorder.run(sample)
        except Exception as exc:  # the user's model failing on its own sample: report it in one line
            raise TorchExportError(f"running {self.label} on sample_input of shape {tuple(self.sample.shape)} "
                                   f"failed ({_oneline(exc)})") from exc
        return recorder.results

    def _shape(self, node: fx.Node, result: Any) -> Shape:
        """The unbatched shape of a recorded tensor result; refuse results that lost the batch dimension."""
        tensor = result[0] if isinstance(result, tuple | list) else result
        if not isinstance(tensor, torch.Tensor):
            raise TorchExportError(f"{self._where(node)} returns {type(tensor).__name__}, not a tensor")
        if tensor.ndim < 1 or tensor.shape[0] != self.batch:
            raise TorchExportError(
                f"{self._where(node)} mixes the batch dimension into the features (batch {self.batch}, output shape "
                f"{tuple(tensor.shape)}); keep dim 0 as the batch, e.g. nn.Flatten(start_dim=1)")
        return tuple(int(n) for n in tensor.shape[1:])

    # ------------------------------------------------------------------ walk

    def run(self) -> ir.Graph:
        gm = self._trace()
        self._precheck(gm)
        results = self._record(gm)
        values: dict[fx.Node, Any] = {}
        outputs: list[Any] = []
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                shape = self._shape(node, results[node])
                self._add_population(ir.Population(INPUT, shape, "input", {}))
                values[node] = _source(INPUT, shape)
            elif node.op == "call_module":
                module = gm.get_submodule(node.target)
                arg = self._value_arg(node, values)
                shape = self._shape(node, results[node])
                if _is_neuron(module):
                    values[node] = self._neuron_node(node, module, arg, shape, results[node])
                else:
                    values[node] = _apply(self._layer(str(node.target), module, arg.shape, shape), arg, shape)
            elif node.op in ("call_function", "call_method"):
                values[node] = self._function_node(node, values, results)
            elif node.op == "output":
                outputs = list(self._leaves(node.args[0], values))
        out_names = self._outputs(outputs)
        graph = ir.Graph(populations=tuple(self.populations), projections=tuple(self.projections),
                         inputs=(INPUT,), outputs=tuple(out_names), dt=self.dt,
                         meta={"source": self.label, "format": "torch", "dt_from": self.dt_from})
        try:
            return ir.check(graph, "float")
        except ir.IRError as exc:
            raise TorchExportError(f"{self.label}: the exported graph is invalid ({exc})") from exc

    def _value_arg(self, node: fx.Node, values: dict[fx.Node, Any]) -> _Value:
        if len(node.args) != 1 or node.kwargs:
            raise TorchExportError(f"{self._where(node)} is called with {len(node.args)} arguments "
                                   f"{sorted(node.kwargs)}; snnc exports layers called on one tensor")
        return self._as_value(node, node.args[0], values)

    def _as_value(self, node: fx.Node, arg: Any, values: dict[fx.Node, Any]) -> _Value:
        value = values.get(arg) if isinstance(arg, fx.Node) else None
        if isinstance(value, _NeuronTuple):
            raise TorchExportError(f"{self._where(node)} receives the whole tuple returned by '{value.population}'; "
                                   f"pass its spikes (item 0)")
        if isinstance(value, _Meta):
            raise TorchExportError(f"{self._where(node)} computes with a tensor's shape; snnc exports shapes only as "
                                   f"arguments of reshapes")
        if isinstance(value, _State):
            raise TorchExportError(f"{self._where(node)} receives a state (membrane or synaptic current) of "
                                   f"'{value.population}'; only spikes may flow between layers")
        if not isinstance(value, _Value):
            raise TorchExportError(f"{self._where(node)} receives {arg!r}, which is not a tensor computed from the input")
        return value

    def _function_node(self, node: fx.Node, values: dict[fx.Node, Any], results: dict[fx.Node, Any]) -> Any:
        if (node.target is getattr or node.target in _SHAPE_METHODS
                or (node.target is operator.getitem and isinstance(values.get(node.args[0]), _Meta))):
            return _Meta()
        if node.target is operator.getitem:
            holder = values.get(node.args[0])
            if not isinstance(holder, _NeuronTuple):
                raise TorchExportError(f"unsupported operation operator.getitem (indexing a tensor) in {self._where(node)}")
            return holder.spikes if node.args[1] == 0 else _State(holder.population)
        if node.target in _ADD_FUNCTIONS or node.target == "add":
            if len(node.args) != 2 or node.kwargs:
                raise TorchExportError(f"{self._where(node)} adds with extra arguments {dict(node.kwargs)}; "
                                       f"snnc sums plain branches")
            a, b = (self._as_value(node, arg, values) for arg in node.args)
            if a.shape != b.shape:
                raise TorchExportError(f"{self._where(node)} adds tensors of shapes {a.shape} and {b.shape}; "
                                       f"snnc sums branches of equal shape only (no broadcasting)")
            return _add(a, b)
        # a reshape that keeps dim 0 keeps each sample's elements in C order: the identity on flat vectors
        value = self._as_value(node, node.args[0], values)
        shape = self._shape(node, results[node])
        return _apply(_Op(node.name, "reshape", None, None), value, shape)

    def _leaves(self, arg: Any, values: dict[fx.Node, Any]) -> Iterator[Any]:
        if isinstance(arg, fx.Node):
            yield values.get(arg)
        elif isinstance(arg, tuple | list):
            for item in arg:
                yield from self._leaves(item, values)
        elif isinstance(arg, dict):
            for item in arg.values():
                yield from self._leaves(item, values)

    # ------------------------------------------------------------------ layers

    def _layer(self, name: str, module: nn.Module, in_shape: Shape, out_shape: Shape) -> _Op:
        """The linear map of one layer module for its recorded unbatched input/output shapes."""
        where = f"'{name}' ({_type_name(module)})"
        if isinstance(module, _RESHAPE_MODULES):
            if math.prod(in_shape) != math.prod(out_shape):
                raise TorchExportError(f"{where} changes the number of elements {in_shape} -> {out_shape}")
            return _Op(name, "reshape", None, None)
        if isinstance(module, nn.Linear):
            weight = module.weight.detach().cpu().double().numpy()
            bias = None if module.bias is None else module.bias.detach().cpu().double().numpy()
            prefix = math.prod(in_shape[:-1])
            if len(in_shape) == 1:
                return _Op(name, "dense", sp.csr_matrix(weight), bias, weight=weight)
            # nn.Linear acts on the last dimension: one copy of W per leading index
            matrix = sp.kron(sp.identity(prefix, format="csr"), sp.csr_matrix(weight), format="csr")
            return _Op(name, "map", matrix, None if bias is None else np.tile(bias, prefix))
        if isinstance(module, nn.Conv2d | nn.AvgPool2d):
            if len(in_shape) != 3 or len(out_shape) != 3:
                raise TorchExportError(f"{where} needs (B, C, H, W) inputs, got unbatched shape {in_shape}")
            kernel, spec, bias = self._conv_geometry(where, module, in_shape, out_shape)
            flat_bias = None if bias is None else np.repeat(bias, out_shape[1] * out_shape[2])
            return _Op(name, "conv", conv_matrix(spec, kernel), flat_bias, weight=kernel, spec=spec)
        raise TorchExportError(f"unsupported layer {where}")

    def _conv_geometry(self, where: str, module: nn.Conv2d | nn.AvgPool2d, in_shape: Shape,
                       out_shape: Shape) -> tuple[np.ndarray, ir.ConvSpec, np.ndarray | None]:
        channels = in_shape[0]
        if isinstance(module, nn.Conv2d):
            if module.padding_mode != "zeros":
                raise TorchExportError(f"{where} pads with '{module.padding_mode}'; snnc convolutions pad with zeros")
            kernel = module.weight.detach().cpu().double().numpy()
            dilation = _pair(module.dilation)
            if isinstance(module.padding, str):
                total = [0, 0] if module.padding == "valid" else [d * (k - 1) for d, k in zip(dilation, kernel.shape[2:])]
                if any(t % 2 for t in total):
                    raise TorchExportError(f"{where} padding 'same' with an even kernel pads asymmetrically, "
                                           f"which snnc convolutions cannot")
                padding = (total[0] // 2, total[1] // 2)
            else:
                padding = _pair(module.padding)
            spec = ir.ConvSpec(in_shape, out_shape, _pair(module.stride), padding, dilation, int(module.groups))
            bias = None if module.bias is None else module.bias.detach().cpu().double().numpy()
        else:
            k = _pair(module.kernel_size)
            padding = _pair(module.padding)
            if not module.count_include_pad and padding != (0, 0):
                raise TorchExportError(f"{where} with count_include_pad=False divides border windows by fewer "
                                       f"elements, which is no convolution; use count_include_pad=True or no padding")
            divisor = module.divisor_override or k[0] * k[1]
            kernel = np.full((channels, 1, *k), 1.0 / divisor)
            stride = _pair(module.stride if module.stride is not None else module.kernel_size)
            spec = ir.ConvSpec(in_shape, out_shape, stride, padding, (1, 1), channels)
            bias = None
        if ir.conv_output_shape(spec, kernel.shape[2:]) != tuple(out_shape[1:]):
            # only ceil_mode can make torch's output larger than the convolution formula
            raise TorchExportError(f"{where} produces {out_shape} from {in_shape}, not the convolution's "
                                   f"{ir.conv_output_shape(spec, kernel.shape[2:])} (ceil_mode?)")
        return kernel, spec, bias

    # ------------------------------------------------------------------ neurons

    def _neuron_node(self, node: fx.Node, module: nn.Module, arg: _Value, shape: Shape, result: Any) -> Any:
        name = str(node.target)
        if name in self.neurons_seen:
            raise TorchExportError(f"neuron module '{name}' ({_type_name(module)}) is called more than once per "
                                   f"step; each call needs its own state, so give each its own module")
        self.neurons_seen.add(name)
        if arg.shape != shape:
            raise TorchExportError(f"'{name}' ({_type_name(module)}) returns shape {shape} for input {arg.shape}")
        if isinstance(module, snnc_nn.LIF | snnc_nn.IF):
            neuron = self._snnc_neuron(name, module)
        else:
            neuron = self._snntorch_neuron(name, module, shape)
        bias = arg.bias.copy()
        incoming = [(arg, None)]
        if neuron.recurrent is not None:
            rec = self._recurrent_value(name, module, neuron.recurrent, shape)
            bias = bias + rec.bias
            incoming.append((rec, f"{name}.recurrent"))
        params = {k: np.array(np.broadcast_to(v, shape), dtype=np.float64) for k, v in neuron.params.items()}
        params["bias"] = bias.reshape(shape)
        self._add_population(ir.Population(name, shape, neuron.model, params, reset=neuron.reset,
                                           refractory=neuron.refractory))
        for value, label in incoming:
            self._connect(value, name, label)
        spikes = _source(name, shape)
        return _NeuronTuple(name, spikes) if isinstance(result, tuple | list) else spikes

    def _recurrent_value(self, name: str, module: nn.Module, layer: nn.Module, shape: Shape) -> _Value:
        source = _source(name, shape)
        label = f"{name}.recurrent"
        if isinstance(layer, nn.Linear | nn.Conv2d):
            with torch.no_grad():
                probe = torch.zeros((1, *shape), dtype=layer.weight.dtype)
                out_shape = tuple(int(n) for n in layer(probe).shape[1:])
            if out_shape != shape:
                raise TorchExportError(f"'{label}' ({_type_name(layer)}) maps shape {shape} to {out_shape}; "
                                       f"a recurrent layer must keep the population's shape")
            return _apply(self._layer(label, layer, shape, shape), source, shape)
        scale = self._per_neuron(name, module, getattr(layer, "V", None), "V", shape)
        return _apply(_Op(label, "map", sp.diags(scale.ravel(), format="csr"), None), source, shape)

    def _per_neuron(self, name: str, module: nn.Module, value: Any, what: str, shape: Shape) -> np.ndarray:
        """``value`` (scalar or tensor, broadcast against (B, *shape) as torch does) as one float per neuron."""
        arr = np.asarray(value.detach().cpu().double().numpy() if isinstance(value, torch.Tensor) else value,
                         dtype=np.float64)
        try:
            full = np.broadcast_shapes(arr.shape, (1, *shape))
        except ValueError:
            full = None
        if full != (1, *shape):
            raise TorchExportError(f"'{name}' ({_type_name(module)}) {what} of shape {list(arr.shape)} does not "
                                   f"broadcast to one value per neuron of shape {list(shape)}")
        return np.array(np.broadcast_to(arr, (1, *shape))[0])

    def _check_reset(self, name: str, module: nn.Module, mechanism: str) -> None:
        if self.reset_option is not None and self.reset_option != mechanism:
            raise TorchExportError(f"'{name}' ({_type_name(module)}) resets with '{mechanism}' but export was asked "
                                   f"for reset='{self.reset_option}'; the reset argument checks, it never overrides")

    def _snnc_neuron(self, name: str, module: snnc_nn.LIF | snnc_nn.IF) -> _Neuron:
        self._check_reset(name, module, module.reset)
        tensor = {key: buf.detach().cpu().double().numpy() for key, buf in module.named_buffers() if key != "v"}
        if isinstance(module, snnc_nn.LIF):
            params = {k: tensor[k] for k in ("tau_mem", "r", "v_leak", "v_threshold", "v_reset")}
            return _Neuron("lif", params, module.reset)
        return _Neuron("if", {k: tensor[k] for k in ("r", "v_threshold", "v_reset")}, module.reset)

    def _check_snntorch(self, name: str, module: nn.Module) -> str:
        """Refuse snnTorch features without an exact snnc equivalent (before anything runs); the reset mechanism."""
        where = f"'{name}' ({_type_name(module)})"

        def refuse(feature: str) -> TorchExportError:
            return TorchExportError(f"{where}: {feature}")

        if module.inhibition:
            raise refuse("inhibition=True (winner-take-all across the layer) has no snnc equivalent")
        if module.state_quant:
            raise refuse("state_quant quantizes the membrane in a way snnc's float semantics do not; export "
                         "without it and let snnc quantize")
        if np.any(np.asarray(module.graded_spikes_factor.detach().cpu().double().numpy()) != 1.0):
            raise refuse("graded_spikes_factor != 1: snnc spikes are 0/1 (fold the factor into the next layer's weights)")
        probe = torch.tensor([-1.0, -1e-300, 0.0, 1e-300, 1.0], dtype=torch.float64)
        with torch.no_grad():
            stepped = np.asarray(module.spike_grad(probe).detach().double().numpy())
        if not np.array_equal(stepped, [0.0, 0.0, 0.0, 1.0, 1.0]):
            raise refuse("its spike_grad's forward is not the Heaviside step (u > 0)")
        mechanism = _STATE_FUNCTIONS.get(getattr(module.state_function, "__name__", ""))
        if mechanism is None or mechanism != module.reset_mechanism:
            raise refuse(f"reset_mechanism was changed after construction to '{module.reset_mechanism}', but snnTorch "
                         f"still runs the update it chose at construction; build the module with the reset you want")
        self._check_reset(name, module, mechanism)
        delay = bool(module.reset_delay)
        if isinstance(module, snntorch.RSynaptic) and not delay:
            raise refuse("reset_delay=False is broken in snnTorch 1.0.0's RSynaptic (it crashes with its own state, "
                         "and is ignored with explicit state); use reset_delay=True")
        if mechanism == "subtract" and not delay:
            raise refuse("reset_mechanism='subtract' with reset_delay=False has no exact snnc equivalent: while the "
                         "subtracted membrane stays above threshold, snnTorch subtracts the threshold again before the "
                         "next test, so such a neuron needs beta*mem + input > 2*threshold to fire (snnc: > threshold); "
                         "use reset_delay=True (the default)")
        return mechanism

    def _snntorch_neuron(self, name: str, module: nn.Module, shape: Shape) -> _Neuron:
        where = f"'{name}' ({_type_name(module)})"

        def refuse(feature: str) -> TorchExportError:
            return TorchExportError(f"{where}: {feature}")

        mechanism = self._check_snntorch(name, module)
        delay = bool(module.reset_delay)
        synaptic = isinstance(module, snntorch.Synaptic | snntorch.RSynaptic)
        recurrent = isinstance(module, snntorch.RLeaky | snntorch.RSynaptic)
        beta = np.clip(self._per_neuron(name, module, module.beta, "beta", shape), 0.0, 1.0)
        theta = self._per_neuron(name, module, module.threshold, "threshold", shape)
        alpha = np.clip(self._per_neuron(name, module, module.alpha, "alpha", shape), 0.0, 1.0) if synaptic else None
        # Synaptic, RLeaky and RSynaptic clear the whole step after a spike, not the current (module docstring)
        refractory = int(mechanism == "zero" and delay and not isinstance(module, snntorch.Leaky))
        if mechanism == "zero" and not delay and np.any(theta < 0):
            raise refuse("reset_delay=False with a negative threshold makes snnTorch reset again every step after a "
                         f"spike; use {'reset_delay=True or ' if isinstance(module, snntorch.Leaky) else ''}"
                         "a threshold >= 0")
        if refractory and np.any(theta < 0):
            # the cleared membrane 0 is above the threshold, and v0 = 0 is too: snnTorch fires and clears every step
            raise refuse("reset_mechanism='zero' with reset_delay=True and a negative threshold has no exact snnc "
                         "equivalent: snnTorch's membrane, 0 at the start and after every clear, is above it, so the "
                         "neuron fires on every step, where snnc's refractory step cannot fire; use a threshold >= 0")
        if mechanism == "subtract":
            if np.any(beta == 0):
                raise refuse("beta = 0 with the delayed subtractive reset subtracts the threshold from a membrane "
                             "that is already forgotten; no snnc reset does that")
            # the delayed subtraction of theta equals an immediate one of theta/beta (module docstring)
            v_reset = theta - theta / beta
        else:
            v_reset = np.zeros(shape)
        reset = mechanism

        if alpha is not None and np.all(alpha == 0.0) and np.all(beta == 1.0):
            model, params = "if", {"r": np.ones(shape)}
        elif alpha is not None:
            if np.any(alpha == 1.0) or np.any(beta == 1.0):
                raise refuse("alpha or beta = 1 (a current or membrane that never decays) has no cuba_lif equivalent")
            tau_syn = self.dt / (1.0 - alpha)
            tau_mem = self.dt / (1.0 - beta)
            model = "cuba_lif"
            params = {"tau_syn": tau_syn, "tau_mem": tau_mem, "r": tau_mem / self.dt, "v_leak": np.zeros(shape),
                      "w_in": tau_syn / self.dt}
        elif np.all(beta == 1.0):
            model, params = "if", {"r": np.ones(shape)}
        elif np.any(beta == 1.0):
            raise refuse("beta is 1 for some neurons and below 1 for others; one population has one model "
                         "(split the layer, or keep every beta below 1)")
        else:
            tau_mem = self.dt / (1.0 - beta)
            model, params = "lif", {"tau_mem": tau_mem, "r": tau_mem / self.dt, "v_leak": np.zeros(shape)}
        params.update(v_threshold=theta, v_reset=v_reset)
        layer = module.recurrent if recurrent else None
        if recurrent and not isinstance(layer, nn.Linear | nn.Conv2d) and not hasattr(layer, "V"):
            raise refuse(f"its recurrent layer {_type_name(layer)} is not a Linear, a Conv2d or the one-to-one V")
        return _Neuron(model, params, reset, layer, refractory)

    # ------------------------------------------------------------------ assembly

    def _unique(self, wanted: str) -> str:
        name, k = wanted, 1
        while name in self.names:
            k += 1
            name = f"{wanted}#{k}"
        self.names.add(name)
        return name

    def _add_population(self, pop: ir.Population) -> None:
        if pop.name in self.names:
            raise TorchExportError(f"population name '{pop.name}' is used twice (a module named '{INPUT}' or "
                                   f"'{READOUT}'?)")
        self.names.add(pop.name)
        self.populations.append(pop)

    def _connect(self, value: _Value, dst: str, label: str | None) -> None:
        for src, matrix in value.terms.items():
            chain = value.chains[src]
            if label is not None:
                wanted = label
            elif chain:
                acting = [op.name for op in chain if op.kind != "reshape"]
                wanted = "+".join(acting or [op.name for op in chain])
            else:
                wanted = f"{src}->{dst}"
            self.projections.append(self._projection(self._unique(wanted), src, dst, matrix, chain))

    def _projection(self, name: str, src: str, dst: str, matrix: sp.csr_matrix,
                    chain: tuple[_Op, ...] | None) -> ir.Projection:
        acting = None if chain is None else [op for op in chain if op.kind != "reshape"]
        if acting is not None and len(acting) == 1 and acting[0].kind == "dense":
            return ir.Projection(name, src, dst, "dense", np.array(acting[0].weight))
        if acting is not None and len(acting) == 1 and acting[0].kind == "conv":
            return ir.Projection(name, src, dst, "conv", np.array(acting[0].weight), conv=acting[0].spec)
        if acting is not None and len(acting) == 2 and all(op.kind == "conv" for op in acting):
            first, second = acting
            merged = merge_pool_conv(first.spec, first.weight, second.spec, second.weight) if _is_box(first) else None
            if merged is None and _is_box(second):
                merged = merge_conv_pool(first.spec, first.weight, second.spec, second.weight)
            if merged is not None:
                return ir.Projection(name, src, dst, "conv", merged[0], conv=merged[1])
        coo = matrix.tocoo()
        coo.sum_duplicates()
        keep = coo.data != 0
        rows, cols, data = coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64), coo.data[keep]
        if data.size / max(matrix.shape[0] * matrix.shape[1], 1) > DENSE_ABOVE:
            weight = np.zeros(matrix.shape)
            weight[rows, cols] = data
            return ir.Projection(name, src, dst, "dense", weight)
        order = np.lexsort((cols, rows))
        return ir.Projection(name, src, dst, "sparse", data[order].astype(np.float64), rows=rows[order],
                             cols=cols[order])

    def _outputs(self, leaves: list[Any]) -> list[str]:
        names: list[str] = []
        readout_terms: list[_Value] = []
        for leaf in leaves:
            if isinstance(leaf, _NeuronTuple):
                leaf = leaf.spikes
            if isinstance(leaf, _State) or leaf is None:
                continue
            src = next(iter(leaf.terms)) if len(leaf.terms) == 1 else None
            plain = (src is not None and src != INPUT and leaf.chains[src] == () and not np.any(leaf.bias))
            if plain:
                if src not in names:
                    names.append(src)
            else:
                readout_terms.append(leaf)
        for leaf in readout_terms:
            # layers after the last neuron: an li population with tau_mem = dt, r = 1 holds v = x exactly
            name, k = READOUT, 1
            while name in self.names:
                k += 1
                name = f"{READOUT}_{k}"
            shape = leaf.shape
            params = {"tau_mem": np.full(shape, self.dt), "r": np.ones(shape), "v_leak": np.zeros(shape),
                      "bias": leaf.bias.reshape(shape)}
            self._add_population(ir.Population(name, shape, "li", params))
            self._connect(leaf, name, None)
            names.append(name)
        if not names:
            raise TorchExportError(f"{self.label} returns no spikes and no layer output; return the last neuron's spikes")
        return names
