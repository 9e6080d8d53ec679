"""Export a Norse 1.1 model to the snnc IR so that every cell spikes exactly as in Norse.

Supported models: a ``norse.torch.SequentialState`` (or a plain
``nn.Sequential`` without Norse cells; nested ones are flattened) of

- torch layers ``nn.Linear``, ``nn.Conv2d``, ``nn.AvgPool2d`` and ``nn.Flatten``
  (``nn.Dropout*`` and ``nn.Identity`` are skipped: deployment is inference);
- Norse cells ``LIFBoxCell``, ``LIFCell``, ``LICell`` and ``LIBoxCell``.

The input is the population ``"input"``; each cell becomes a population named
by its module path (``"1"``, ``"block.3"``); the layers between two
populations compose into one projection (a lone Linear on a vector is
"dense", a lone Conv2d/AvgPool2d "conv", anything else a ``scipy.sparse``
product, "dense" above the NIR importer's density threshold), and a layer
bias, pushed through the layers after it, becomes the destination's ``bias``
param. Layers after the last cell end in an ``"li"`` readout ``"output"``
with tau_mem = dt, r = 1, so its v is the model's output at each step.

Equivalence, from norse 1.1.0's functional source (every cell integrates with
its own ``dt``, which must equal the graph's)::

    LIFBoxCell  v' = v + dt*tau_mem_inv*(x + v_leak - v);  z = heaviside(v' - v_th);
                v' = v_reset where z (reset_value) or v' - v_th (reset_subtract)
                -> "lif": tau_mem = 1/tau_mem_inv, r = 1
    LIFCell     i_new = i + x;  v' = v + dt*tau_mem_inv*((v_leak - v) + i_new);
                i' = i_new - dt*tau_syn_inv*i_new;  spike and reset to v_reset as above
                -> "cuba_lif": tau_syn = 1/tau_syn_inv, w_in = tau_syn/dt, r = 1
    LICell      as LIFCell without spiking (output v)   -> "cuba_li"
    LIBoxCell   as LIFBoxCell without spiking (output v) -> "li"

For LIFCell the stored current is already decayed, so I_t = i_new =
(1 - dt/tau_syn)*I_{t-1} + x_t with w_in*dt/tau_syn = 1, and v uses the I_t
of the same step: the IR's cuba_lif with no extra delay (an input at step t
moves v at step t). ``heaviside(y)`` is ``y > 0``, the IR's strict
``v > v_threshold``, for every surrogate method (norse 1.1.0's LIFCell
"adjoint" method does not run: its forward passes "adjoint" to ``threshold``).

Norse starts v at ``v_leak`` and the IR at 0, so spiking populations are
exported in coordinates shifted by v_leak (IR v = Norse v - v_leak): v_leak
= 0, v_threshold = v_th - v_leak and v_reset = v_reset - v_leak (for
reset_subtract v_reset = -v_leak, so that v_threshold - v_reset = v_th). The
spikes are the same; a leaky integrator's output is v itself, so LI cells
must have v_leak = 0 (their v_leak only adds a constant to the output).
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from snnc.compiler import ir
from snnc.compiler.conv import conv_matrix
from snnc.compiler.frontends.nir_import import DENSE_ABOVE

NORSE_SERIES = "1.1."
"""The Norse releases whose equations the mapping above was derived from and tested against."""
INPUT = "input"
READOUT = "output"
CELL_KINDS = frozenset({"lif_box", "lif", "li", "li_box"})
SPIKING_CELL_KINDS = frozenset({"lif_box", "lif"})
LAYER_KINDS = frozenset({"linear", "conv2d", "avgpool2d", "flatten"})
THRESHOLD_METHODS = frozenset({"super", "heaviside", "triangle", "tanh", "circ", "heavi_erfc"})
"""Norse threshold methods whose forward pass is heaviside (they differ in the surrogate gradient only)."""
DT_TOLERANCE = 1e-9
"""Relative difference allowed between a cell's dt and the dt given to the exporter."""

Shape = tuple[int, ...]


class NorseExportError(ValueError):
    """A Norse model uses something the exporter cannot map exactly; the one-line message names the module."""


def is_norse_model(model: object) -> bool:
    """Whether ``model`` is a torch module built with Norse (it or one of its submodules comes from ``norse``)."""
    torch = sys.modules.get("torch")
    # no torch imported means no object can be a torch module; checking this way keeps torch unimported
    if torch is None or not isinstance(model, torch.nn.Module):
        return False
    return any(type(module).__module__.split(".")[0] == "norse" for module in model.modules())


@functools.cache
def _kinds() -> dict[type, str]:
    """Exact module type -> role; subclasses are refused because they may change ``forward``."""
    import norse.torch as snn
    from torch import nn

    return {
        snn.SequentialState: "sequential_state",
        nn.Sequential: "sequential",
        nn.Linear: "linear",
        nn.Conv2d: "conv2d",
        nn.AvgPool2d: "avgpool2d",
        nn.Flatten: "flatten",
        nn.Dropout: "skip",
        nn.Dropout1d: "skip",
        nn.Dropout2d: "skip",
        nn.Dropout3d: "skip",
        nn.Identity: "skip",
        snn.LIFBoxCell: "lif_box",
        snn.LIFCell: "lif",
        snn.LICell: "li",
        snn.LIBoxCell: "li_box",
    }


SUPPORTED = "Linear, Conv2d, AvgPool2d, Flatten, Dropout, Identity, LIFBoxCell, LIFCell, LICell, LIBoxCell"


@dataclass(frozen=True)
class _Layer:
    """One leaf module in forward order, with its unbatched input and output shapes."""

    path: str
    module: Any
    kind: str
    in_shape: Shape
    out_shape: Shape

    @property
    def label(self) -> str:
        return f"module '{self.path}' ({type(self.module).__name__})"


def export_norse(model: Any, sample_input: Any, dt: float = 1e-3, reset: str | None = None) -> ir.Graph:
    """Export the Norse ``model`` to a float IR graph whose float reference spikes exactly as Norse does.

    ``sample_input`` is one time step with a batch dimension, (B, *input_shape);
    the model runs on it once (state None) to learn every layer's shape. ``dt``
    (s) must equal every cell's ``dt`` (Norse's default is 1e-3). ``reset`` may
    only confirm what the cells do: "zero" (reset to v_reset; LIFCell and
    LIFBoxCell's reset_value) or "subtract" (LIFBoxCell's reset_subtract).
    """
    try:
        import norse
        import torch
    except ImportError as exc:
        raise NorseExportError(f"export_norse needs torch and norse {NORSE_SERIES}x installed ({exc})") from exc
    version = str(getattr(norse, "__version__", "unknown"))
    if not version.startswith(NORSE_SERIES):
        raise NorseExportError(f"norse {version} is installed; export_norse reproduces norse {NORSE_SERIES}x only")
    if not (isinstance(dt, float | int) and math.isfinite(dt) and dt > 0):
        raise NorseExportError(f"dt must be a positive number of seconds, got {dt!r}")
    if reset is not None and reset not in ir.RESET_MODES:
        raise NorseExportError(f"reset '{reset}' is not one of {ir.RESET_MODES}")
    if not isinstance(sample_input, torch.Tensor) or sample_input.ndim < 2:
        shape = list(sample_input.shape) if isinstance(sample_input, torch.Tensor) else type(sample_input).__name__
        raise NorseExportError(f"sample_input must be a torch tensor (B, *input_shape) for one time step, got {shape}")
    layers = _trace(model, list(_leaves(model)), sample_input)
    graph = _Exporter(model, layers, tuple(int(n) for n in sample_input.shape[1:]), float(dt), reset, version).run()
    return ir.check(graph, "float")


def _leaves(model: Any) -> list[tuple[str, Any, str]]:
    """(path, module, kind) of every leaf in forward order, nested Sequentials flattened."""
    kind = _kinds().get(type(model))
    if kind not in ("sequential_state", "sequential"):
        raise NorseExportError(f"model ({type(model).__name__}) must be a norse.torch.SequentialState or nn.Sequential")
    found = _walk(model, "", kind == "sequential_state")
    if not found:
        raise NorseExportError(f"model ({type(model).__name__}) has no layers to export")
    return found


def _walk(container: Any, prefix: str, threads_state: bool) -> list[tuple[str, Any, str]]:
    """The leaves under ``container``; ``threads_state`` says whether it passes Norse cells their state."""
    found = []
    # _modules keeps a module that appears twice under both names (named_children would drop the second)
    for name, child in container._modules.items():
        if child is None:
            continue
        path = f"{prefix}{name}"
        kind = _kinds().get(type(child))
        if kind is None:
            raise NorseExportError(f"module '{path}' ({type(child).__name__}) is not supported "
                                   f"(the Norse exporter takes {SUPPORTED})")
        if kind in ("sequential_state", "sequential"):
            found += _walk(child, f"{path}.", kind == "sequential_state")
        elif kind == "skip":
            continue
        elif kind in CELL_KINDS and not threads_state:
            raise NorseExportError(f"module '{path}' ({type(child).__name__}) sits in a plain nn.Sequential, which "
                                   "passes the cell's (output, state) tuple on as input; use norse.torch.SequentialState")
        else:
            found.append((path, child, kind))
    return found


def _trace(model: Any, leaves: list[tuple[str, Any, str]], sample: Any) -> list[_Layer]:
    """Run ``model`` once on ``sample`` with forward hooks; the leaves with their unbatched shapes."""
    import torch

    calls: dict[int, list[tuple[Shape, Shape]]] = {}

    def record(module: Any, args: tuple[Any, ...], output: Any) -> None:
        # Norse cells return (output, state); torch layers a tensor
        out = output[0] if isinstance(output, tuple) else output
        calls.setdefault(id(module), []).append((tuple(args[0].shape), tuple(out.shape)))

    unique = {id(module): module for _, module, _ in leaves}
    handles = [module.register_forward_hook(record) for module in unique.values()]
    try:
        with torch.no_grad():
            model(sample)
    except Exception as exc:  # whatever the model raises, reported on one line with the sample's shape
        raise NorseExportError(f"running the model on sample_input {list(sample.shape)} failed: {_oneline(exc)}") from exc
    finally:
        for handle in handles:
            handle.remove()

    layers = []
    used: dict[int, int] = {}
    previous = tuple(sample.shape)
    batch = previous[0]
    for path, module, kind in leaves:
        k = used.get(id(module), 0)
        used[id(module)] = k + 1
        seen = calls.get(id(module), [])
        label = f"module '{path}' ({type(module).__name__})"
        if k >= len(seen):
            raise NorseExportError(f"{label} did not run in the model's forward; the exporter needs a plain chain")
        in_batched, out_batched = seen[k]
        if in_batched != previous:
            raise NorseExportError(f"{label} received shape {list(in_batched)} where the chain before it gives "
                                   f"{list(previous)}; the exporter needs a plain chain of modules")
        if len(out_batched) < 2 or out_batched[0] != batch:
            raise NorseExportError(f"{label} turns shape {list(in_batched)} into {list(out_batched)}; the batch "
                                   "dimension must stay first and whole (e.g. nn.Flatten with start_dim >= 1)")
        if kind in CELL_KINDS and out_batched != in_batched:
            raise NorseExportError(f"{label} broadcasts its input {list(in_batched)} to {list(out_batched)} "
                                   "(a parameter larger than the input); give it an input of the population's shape")
        layers.append(_Layer(path, module, kind, in_batched[1:], out_batched[1:]))
        previous = out_batched
    for key, seen in calls.items():
        if len(seen) != used.get(key, 0):
            raise NorseExportError(f"module '{_path_of(leaves, key)}' ran {len(seen)} times for {used.get(key, 0)} "
                                   "place(s) in the model; the exporter needs a plain chain of modules")
    return layers


def _path_of(leaves: list[tuple[str, Any, str]], key: int) -> str:
    return next(path for path, module, _ in leaves if id(module) == key)


def _oneline(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class _Exporter:
    """Builds populations and projections from the traced chain of layers."""

    def __init__(self, model: Any, layers: list[_Layer], input_shape: Shape, dt: float, reset: str | None,
                 version: str) -> None:
        self.model = model
        self.layers = layers
        self.input_shape = input_shape
        self.dt = dt
        self.reset = reset
        self.version = version

    def run(self) -> ir.Graph:
        populations = [ir.Population(name=INPUT, shape=self.input_shape, model="input")]
        projections: list[ir.Projection] = []
        names = {INPUT}
        source = populations[0]
        chain: list[_Layer] = []
        for layer in self.layers:
            if layer.kind not in CELL_KINDS:
                chain.append(layer)
                continue
            if layer.path in names:
                raise NorseExportError(f"{layer.label}: population name '{layer.path}' is taken")
            projection, bias = self._projection(source, layer.path, chain, layer.in_shape)
            population = self._population(layer, bias)
            populations.append(population)
            projections.append(projection)
            names.add(layer.path)
            source, chain = population, []
        if any(layer.kind != "flatten" for layer in chain):
            if READOUT in names:
                raise NorseExportError(f"the readout after the last cell needs the population name '{READOUT}', "
                                       "which a module path already uses")
            shape = chain[-1].out_shape
            projection, bias = self._projection(source, READOUT, chain, shape)
            params = {"tau_mem": np.full(shape, self.dt), "r": np.ones(shape), "v_leak": np.zeros(shape),
                      "bias": bias}
            source = ir.Population(name=READOUT, shape=shape, model="li", params=params)
            populations.append(source)
            projections.append(projection)
        meta = {"source": type(self.model).__name__, "format": "norse", "norse_version": self.version}
        return ir.Graph(populations=tuple(populations), projections=tuple(projections), inputs=(INPUT,),
                        outputs=(source.name,), dt=self.dt, meta=meta)

    # ------------------------------------------------------------------ projections

    def _projection(self, source: ir.Population, dst: str, chain: list[_Layer],
                    dst_shape: Shape) -> tuple[ir.Projection, np.ndarray]:
        """The projection ``source`` -> ``dst`` through ``chain``, and the bias it delivers (dst shape)."""
        acting = [layer for layer in chain if layer.kind != "flatten"]
        reshapes = [layer for layer in chain if layer.kind == "flatten"]
        name = "+".join(layer.path for layer in (acting or reshapes)) or f"{source.name}->{dst}"
        if len(acting) == 1:
            compact = self._compact(acting[0], source.name, dst, name)
            if compact is not None:
                return compact, _shaped(self._bias(acting[0]), dst_shape)
        matrix: sp.csr_matrix | None = None
        bias: np.ndarray | None = None
        for layer in acting:
            step = self._matrix(layer)
            matrix = step if matrix is None else (step @ matrix).tocsr()
            if bias is not None:
                bias = step @ bias
            own = self._bias(layer)
            if own is not None:
                bias = own if bias is None else bias + own
        n_dst = math.prod(dst_shape)
        bias_out = _shaped(bias, dst_shape)
        if matrix is None:
            # only reshapes (or nothing) between two populations: neuron k drives neuron k
            index = np.arange(n_dst, dtype=np.int64)
            identity = ir.Projection(name=name, src=source.name, dst=dst, kind="sparse", weight=np.ones(n_dst),
                                     rows=index, cols=index.copy())
            return identity, bias_out
        coo = matrix.tocoo()
        coo.sum_duplicates()
        keep = coo.data != 0
        rows, cols, weight = coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64), coo.data[keep]
        order = np.lexsort((cols, rows))
        rows, cols, weight = rows[order], cols[order], weight[order].astype(np.float64)
        if weight.size > DENSE_ABOVE * n_dst * source.size:
            dense = np.zeros((n_dst, source.size))
            dense[rows, cols] = weight
            return ir.Projection(name=name, src=source.name, dst=dst, kind="dense", weight=dense), bias_out
        sparse = ir.Projection(name=name, src=source.name, dst=dst, kind="sparse", weight=weight, rows=rows, cols=cols)
        return sparse, bias_out

    def _compact(self, layer: _Layer, src: str, dst: str, name: str) -> ir.Projection | None:
        """A "dense" projection for a Linear on a vector, "conv" for a Conv2d or AvgPool2d; else None."""
        if layer.kind == "linear" and len(layer.in_shape) == 1:
            weight = _array(layer.module.weight)
            return ir.Projection(name=name, src=src, dst=dst, kind="dense", weight=weight)
        if layer.kind in ("conv2d", "avgpool2d"):
            spec, kernel = self._conv(layer)
            return ir.Projection(name=name, src=src, dst=dst, kind="conv", weight=kernel, conv=spec)
        return None

    def _matrix(self, layer: _Layer) -> sp.csr_matrix:
        """``layer`` as a sparse (out size, in size) matrix on C-order neuron indices."""
        if layer.kind == "linear":
            # nn.Linear acts on the last dimension; every leading index gets its own copy
            outer = math.prod(layer.in_shape[:-1])
            weight = sp.csr_matrix(_array(layer.module.weight))
            return weight if outer == 1 else sp.kron(sp.identity(outer, format="csr"), weight, format="csr")
        return conv_matrix(*self._conv(layer))

    def _bias(self, layer: _Layer) -> np.ndarray | None:
        """The constant ``layer`` adds to each of its outputs, (out size,), or None."""
        bias = getattr(layer.module, "bias", None)
        if layer.kind not in ("linear", "conv2d") or bias is None:
            return None
        if layer.kind == "linear":
            return np.tile(_array(bias), math.prod(layer.in_shape[:-1]))
        return np.repeat(_array(bias), math.prod(layer.out_shape[1:]))

    def _conv(self, layer: _Layer) -> tuple[ir.ConvSpec, np.ndarray]:
        """ConvSpec and kernel of a Conv2d, or of an AvgPool2d as a depthwise conv with taps 1/divisor."""
        module = layer.module
        if len(layer.in_shape) != 3 or len(layer.out_shape) != 3:
            raise NorseExportError(f"{layer.label} needs (C, H, W) per sample, got {list(layer.in_shape)}")
        in_shape = (layer.in_shape[0], layer.in_shape[1], layer.in_shape[2])
        out_shape = (layer.out_shape[0], layer.out_shape[1], layer.out_shape[2])
        if layer.kind == "conv2d":
            if module.padding_mode != "zeros":
                raise NorseExportError(f"{layer.label} pads with '{module.padding_mode}'; only zero padding is supported")
            kernel = _array(module.weight)
            dilation = _pair(module.dilation)
            spec = ir.ConvSpec(in_shape=in_shape, out_shape=out_shape, stride=_pair(module.stride),
                               padding=self._padding(layer, kernel.shape[2:], dilation), dilation=dilation,
                               groups=int(module.groups))
        else:
            size = _pair(module.kernel_size)
            padding = _pair(module.padding)
            if any(padding) and not module.count_include_pad:
                raise NorseExportError(f"{layer.label} has count_include_pad=False with padding; border windows "
                                       "would divide by fewer taps than a convolution does")
            divisor = module.divisor_override or size[0] * size[1]
            channels = in_shape[0]
            kernel = np.full((channels, 1, *size), 1.0 / divisor)
            spec = ir.ConvSpec(in_shape=in_shape, out_shape=out_shape, stride=_pair(module.stride), padding=padding,
                               groups=channels)
        if ir.conv_output_shape(spec, (kernel.shape[2], kernel.shape[3])) != out_shape[1:]:
            raise NorseExportError(f"{layer.label} gives output {list(out_shape)}, not what a convolution with its "
                                   "geometry gives (ceil_mode adds partial windows); use ceil_mode=False")
        return spec, kernel

    def _padding(self, layer: _Layer, kernel: tuple[int, ...], dilation: tuple[int, int]) -> tuple[int, int]:
        padding = layer.module.padding
        if padding == "valid":
            return (0, 0)
        if padding == "same":
            total = [d * (k - 1) for d, k in zip(dilation, kernel)]
            if any(t % 2 for t in total):
                raise NorseExportError(f"{layer.label} uses padding='same' with an even kernel, which pads "
                                       "asymmetrically; give an explicit padding")
            return (total[0] // 2, total[1] // 2)
        return _pair(padding)

    # ------------------------------------------------------------------ populations

    def _population(self, layer: _Layer, bias: np.ndarray) -> ir.Population:
        """The IR population equivalent to the Norse cell ``layer`` (see the module docstring)."""
        cell = layer.module
        cell_dt = float(cell.dt)
        if not math.isclose(cell_dt, self.dt, rel_tol=DT_TOLERANCE):
            raise NorseExportError(f"{layer.label} integrates with dt = {cell_dt:g} s but export_norse was given "
                                   f"dt = {self.dt:g} s; pass dt={cell_dt:g}")
        p = cell.p
        shape = layer.out_shape
        ones = np.ones(shape)
        params = {"tau_mem": self._tau(layer, "tau_mem_inv"), "r": ones, "v_leak": np.zeros(shape), "bias": bias}
        if layer.kind in ("lif", "li"):
            params["tau_syn"] = self._tau(layer, "tau_syn_inv")
            # w_in*dt/tau_syn = 1: Norse adds the input to the current unscaled
            params["w_in"] = params["tau_syn"] / self.dt
        v_leak = self._param(layer, "v_leak")
        if layer.kind not in SPIKING_CELL_KINDS:
            if np.any(v_leak != 0):
                raise NorseExportError(f"{layer.label} has v_leak != 0: Norse starts its v at v_leak, the IR at 0, and "
                                       "v is the output; set v_leak = 0 (it only adds v_leak to the output)")
            return ir.Population(name=layer.path, shape=shape, model="li" if layer.kind == "li_box" else "cuba_li",
                                 params=params)
        if p.method not in THRESHOLD_METHODS:
            raise NorseExportError(f"{layer.label} uses threshold method '{p.method}'; "
                                   f"supported: {sorted(THRESHOLD_METHODS)}")
        native = self._native_reset(layer)
        if self.reset is not None and self.reset != native:
            raise NorseExportError(f"reset '{self.reset}' disagrees with {layer.label}, which resets "
                                   f"{'to v_reset' if native == 'zero' else 'by subtracting v_th'} ('{native}')")
        # shifted by v_leak so that v starts at 0 as in the IR (module docstring)
        v_th = self._param(layer, "v_th")
        params["v_threshold"] = v_th - v_leak
        params["v_reset"] = self._param(layer, "v_reset") - v_leak if native == "zero" else -v_leak
        return ir.Population(name=layer.path, shape=shape, model="lif" if layer.kind == "lif_box" else "cuba_lif",
                             params=params, reset=native)

    def _native_reset(self, layer: _Layer) -> str:
        """The IR reset mode the cell's own equations use."""
        if layer.kind == "lif":
            return "zero"
        from norse.torch.functional.reset import reset_subtract, reset_value

        method = layer.module.p.reset_method
        if method is reset_value:
            return "zero"
        if method is reset_subtract:
            return "subtract"
        raise NorseExportError(f"{layer.label} uses reset_method {getattr(method, '__name__', method)!r}; "
                               "supported: reset_value, reset_subtract")

    def _tau(self, layer: _Layer, field: str) -> np.ndarray:
        inverse = self._param(layer, field)
        if np.any(inverse <= 0):
            raise NorseExportError(f"{layer.label} parameter '{field}' must be > 0 (a finite time constant), "
                                   f"got min {inverse.min():g}")
        return 1.0 / inverse

    def _param(self, layer: _Layer, field: str) -> np.ndarray:
        """Norse parameter ``field`` of the cell as float64 of the population's shape (scalars broadcast)."""
        value = _array(getattr(layer.module.p, field))
        # Norse broadcasts parameters against the batched input, so leading 1s may stand for the batch
        while value.ndim > len(layer.out_shape) and value.shape[0] == 1:
            value = value[0]
        try:
            full = np.broadcast_to(value, layer.out_shape).astype(np.float64)
        except ValueError as exc:
            raise NorseExportError(f"{layer.label} parameter '{field}' has shape {list(value.shape)}, which does "
                                   f"not broadcast to the population shape {list(layer.out_shape)}") from exc
        if not np.all(np.isfinite(full)):
            raise NorseExportError(f"{layer.label} parameter '{field}' contains NaN or infinite values")
        return full


def _shaped(bias: np.ndarray | None, shape: Shape) -> np.ndarray:
    """A composed bias (or None: zeros) as a population's ``bias`` param."""
    return np.zeros(shape) if bias is None else np.asarray(bias, dtype=np.float64).reshape(shape)


def _array(value: Any) -> np.ndarray:
    """A tensor, number or array as a float64 numpy array (detached, on the CPU)."""
    import torch

    return torch.as_tensor(value).detach().to(device="cpu", dtype=torch.float64).numpy().copy()


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    first, second = value
    return (int(first), int(second))
