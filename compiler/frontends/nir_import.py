"""Import NIR graphs (``.nir`` files or ``nir.NIRGraph`` objects) into the snnc IR.

NIR describes a network as continuous-time nodes joined by instantaneous
identity edges; the snnc IR only has neuron populations joined by weighted
projections. The importer therefore

1. flattens nested NIRGraphs (node names ``"sub.node"``; their Input/Output
   nodes become pass-throughs);
2. infers every node's unbatched shape (0-d neuron parameters take the shape
   arriving from upstream) and checks every edge: a same-size shape mismatch
   is imported with a :class:`NirImportWarning` and a C-order reshape, a size
   mismatch is a :class:`NirImportError`;
3. turns neuron and Input nodes into populations, and every path of linear
   nodes between two populations into one projection. Paths are composed as
   ``scipy.sparse`` matrices, one per delay value; Affine/conv biases are
   pushed through the maps after them into the destination's ``bias`` param.
   Recognisable single layers keep a compact kind: a lone Affine/Linear is
   "dense", a lone conv or pool (or a pool with kernel == stride followed by
   a conv) is "conv", anything else is "sparse" or, above 25 % density, "dense";
4. adds an "li" readout population (tau_mem = dt, r = 1, v_leak = 0, so
   v' = x) for every Output reached through linear nodes.

NIR carries neither dt nor a reset mode. Both come from the caller, else from
metadata (``"dt"``; ``"reset_mechanism"`` or ``"reset"`` per node, then per
graph), else from :data:`DEFAULT_DT` / :data:`DEFAULT_RESET`; ``graph.meta``
records which (``dt_from``, ``reset_from``: "option", "metadata" or "default").

Files written by :mod:`snnc.compiler.frontends.nir_export` carry snnc hints
in metadata that make the round trip exact: ``snnc_projection`` on linear
nodes (merge all branches with this value into one projection of that name),
``snnc_kind`` (keep this projection kind) and ``snnc_order`` on the graph
(population, projection, input and output order; HDF5 sorts node names).
A quantized graph's export also carries ``snnc_quant`` (integer parameters
on neuron nodes, integer weights and the exact synapse layout on the first
linear node of each projection): the importer restores them, returning the
identical quantized graph, when they cover every population and projection
and agree with the NIR weights; otherwise it warns and imports the float
network.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from snnc.compiler import ir
from snnc.compiler.conv import conv_matrix, merge_pool_conv

DEFAULT_DT = 1e-4
"""Seconds; snnTorch's hard-coded value and that of most NIR paper files."""
DEFAULT_RESET = "zero"
"""What NIR states: on a spike, v <- v_reset."""

META_PROJECTION = "snnc_projection"
META_KIND = "snnc_kind"
META_ORDER = "snnc_order"
META_QUANT = "snnc_quant"
DENSE_ABOVE = 0.25
"""A composed projection denser than this becomes "dense" rather than "sparse"."""
DELAY_TOLERANCE = 1e-6
"""Relative distance from an integer number of steps a Delay may have."""


class NirImportError(ValueError):
    """A NIR file or graph cannot be imported; the one-line message names the file or node."""


class NirImportWarning(UserWarning):
    """Something in a NIR graph was imported by a documented guess (e.g. a same-size shape mismatch)."""


_NEURON_TYPES: dict[type, tuple[str, dict[str, str]]] = {
    nir.LIF: ("lif", {"tau_mem": "tau", "r": "r", "v_leak": "v_leak", "v_threshold": "v_threshold", "v_reset": "v_reset"}),
    nir.CubaLIF: ("cuba_lif", {"tau_syn": "tau_syn", "tau_mem": "tau_mem", "r": "r", "v_leak": "v_leak",
                               "v_threshold": "v_threshold", "v_reset": "v_reset", "w_in": "w_in"}),
    nir.IF: ("if", {"r": "r", "v_threshold": "v_threshold", "v_reset": "v_reset"}),
    nir.LI: ("li", {"tau_mem": "tau", "r": "r", "v_leak": "v_leak"}),
    nir.CubaLI: ("cuba_li", {"tau_syn": "tau_syn", "tau_mem": "tau_mem", "r": "r", "v_leak": "v_leak", "w_in": "w_in"}),
    nir.I: ("i", {"r": "r"}),
    nir.Threshold: ("threshold", {"v_threshold": "threshold"}),
}
"""NIR neuron class -> (IR model, IR param -> NIR field)."""

_LINEAR_TYPES = (nir.Affine, nir.Linear, nir.Scale, nir.Delay, nir.Flatten, nir.Conv1d, nir.Conv2d,
                 nir.SumPool2d, nir.AvgPool2d)
_POOL_TYPES = (nir.SumPool2d, nir.AvgPool2d)
_CONV_TYPES = (nir.Conv1d, nir.Conv2d)
_KNOWN_TYPE_NAMES = frozenset(cls.__name__ for cls in (*_NEURON_TYPES, *_LINEAR_TYPES, nir.Input, nir.Output, nir.NIRGraph))
_DEFAULTS = {"v_reset": 0.0, "w_in": 1.0}
"""Neuron fields that may be absent (old files, graph objects) and their NIR defaults."""

Shape = tuple[int, ...]


def import_nir(source: str | Path | nir.NIRGraph, dt: float | None = None, reset: str | None = None) -> ir.Graph:
    """Import a NIR file or ``nir.NIRGraph`` as a float-stage :class:`ir.Graph`.

    ``dt`` (seconds) and ``reset`` ("zero", "subtract" or "none") override what the
    file's metadata says; see the module docstring for the precedence.
    Raises :class:`NirImportError` with a one-line message naming the file or node.
    """
    if reset is not None and reset not in ir.RESET_MODES:
        raise NirImportError(f"reset must be one of {ir.RESET_MODES}, got {reset!r}")
    if dt is not None and not (isinstance(dt, float | int) and math.isfinite(dt) and dt > 0):
        raise NirImportError(f"dt must be a positive number of seconds, got {dt!r}")
    if isinstance(source, nir.NIRGraph):
        label, graph, version = "NIR graph", source, None
    elif isinstance(source, nir.NIRNode):
        raise NirImportError(f"NIR graph: expected a nir.NIRGraph, got a {type(source).__name__} node")
    else:
        label = str(source)
        graph, version = _read_file(Path(source), label)
    importer = _Importer(label, graph, dt, reset)
    result = importer.restore_quant(importer.run())
    meta: dict[str, Any] = {"source": label, "format": "nir"}
    if version is not None:
        meta["nir_version"] = version
    meta["dt_from"] = importer.dt_from
    meta["reset_from"] = importer.reset_from
    result = ir.replace(result, meta=meta)
    try:
        return ir.check(result, "quantized" if result.is_quantized else "float")
    except ir.IRError as exc:
        raise NirImportError(f"{label}: {exc}") from exc


# --------------------------------------------------------------------------- reading


def _oneline(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _text(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _read_file(path: Path, label: str) -> tuple[nir.NIRGraph, str | None]:
    """nir.read with every failure turned into one NirImportError line naming the file."""
    if not path.exists():
        raise NirImportError(f"{label}: file not found")
    if not path.is_file():
        raise NirImportError(f"{label}: not a file")
    try:
        with h5py.File(path, "r") as f:
            version = _text(f["version"][()]) if "version" in f else None
            if "node" not in f or not isinstance(f["node"], h5py.Group):
                raise NirImportError(f"{label}: not a NIR file (no /node group)")
            # nir.read only says "AssertionError" for an unknown type; find the node first
            _prescan(f["node"], label, "")
    except NirImportError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise NirImportError(f"{label}: not a readable NIR file (truncated or not HDF5)") from exc
    try:
        graph = nir.read(path, type_check=False)
    except Exception as exc:  # nir raises TypeError/KeyError/AssertionError/ValueError on malformed nodes
        raise NirImportError(f"{label}: malformed NIR file ({_oneline(exc)})") from exc
    if not isinstance(graph, nir.NIRGraph):
        raise NirImportError(f"{label}: the root node is a {type(graph).__name__}, not a NIRGraph")
    return graph, version


def _prescan(group: h5py.Group, label: str, name: str) -> None:
    where = f"node '{name}'" if name else "the root node"
    if "type" not in group:
        raise NirImportError(f"{label}: {where} has no type")
    kind = _text(group["type"][()])
    if kind not in _KNOWN_TYPE_NAMES:
        raise NirImportError(f"{label}: unknown NIR node type '{kind}' ({where})")
    if kind == "NIRGraph":
        if "nodes" not in group or "edges" not in group:
            raise NirImportError(f"{label}: graph {where} lacks nodes or edges")
        for child, sub in group["nodes"].items():
            if not isinstance(sub, h5py.Group):
                raise NirImportError(f"{label}: node '{name + '.' if name else ''}{child}' is not a group")
            _prescan(sub, label, f"{name}.{child}" if name else child)


# --------------------------------------------------------------------------- helpers


def _shape_of(value: Any) -> Shape | None:
    """A declared NIR shape (array of ints) as a tuple; None when absent or 0-d."""
    if value is None:
        return None
    arr = np.asarray(value).ravel()
    if arr.size == 0:
        return None
    return tuple(int(n) for n in arr)


def _flatten_shape(shape: Shape, start: int, end: int) -> Shape | None:
    n = len(shape)
    s = start + n if start < 0 else start
    e = end + n if end < 0 else end
    if not 0 <= s <= e < n:
        return None
    return shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:]


@dataclass
class _LinearMap:
    """One linear node as a map on flat vectors: y = matrix @ x, delayed per output element (biases apart)."""

    matrix: sp.csr_matrix | None
    """None: the identity (a reshape or a Delay)."""
    delays: np.ndarray | None = None
    """Integer steps per output element (Delay nodes only)."""


@dataclass
class _Path:
    src: str
    dst: str
    nodes: tuple[str, ...]


Terms = dict[int, sp.csr_matrix]
"""A composed map: delay (steps) -> sparse matrix (dst, src)."""


class _Importer:
    """One import: flattened NIR nodes, their shapes, and the IR built from them."""

    def __init__(self, label: str, graph: nir.NIRGraph, dt: float | None, reset: str | None) -> None:
        self.label = label
        self.nodes: dict[str, nir.NIRNode] = {}
        self.role: dict[str, str] = {}
        self.graph_reset: dict[str, str | None] = {}
        self.edges: list[tuple[str, str]] = []
        self.top_meta = dict(getattr(graph, "metadata", None) or {})
        self._flatten(graph, "", self._reset_of(self.top_meta, "the graph"))
        self.dt, self.dt_from = self._resolve_dt(dt)
        self.reset_option = reset
        self.reset_from = "option" if reset is not None else "default"
        self.succ: dict[str, list[str]] = {n: [] for n in self.nodes}
        for a, b in self.edges:
            self.succ[a].append(b)
        self.in_shape: dict[str, Shape] = {}
        self.out_shape: dict[str, Shape] = {}
        self._maps: dict[str, _LinearMap] = {}

    def fail(self, message: str) -> NirImportError:
        return NirImportError(f"{self.label}: {message}")

    # ------------------------------------------------------------------ structure

    def _flatten(self, graph: nir.NIRGraph, prefix: str, inherited_reset: str | None) -> None:
        """Copy ``graph``'s nodes into self.nodes (nested ones as "sub.node") and wire its edges."""
        entries: dict[str, list[str]] = {}
        exits: dict[str, list[str]] = {}
        for name, node in graph.nodes.items():
            full = prefix + str(name)
            if isinstance(node, nir.NIRGraph):
                sub_reset = self._reset_of(dict(node.metadata or {}), f"graph '{full}'") or inherited_reset
                self._flatten(node, full + ".", sub_reset)
                entries[str(name)] = [full + "." + k for k, n in node.nodes.items() if isinstance(n, nir.Input)]
                exits[str(name)] = [full + "." + k for k, n in node.nodes.items() if isinstance(n, nir.Output)]
                continue
            if full in self.nodes:
                raise self.fail(f"node name '{full}' is used twice after flattening nested graphs")
            self.nodes[full] = node
            self.graph_reset[full] = inherited_reset
            self.role[full] = self._role_of(full, node, top=not prefix)
            self._check_finite(full, node)
        for edge in graph.edges:
            a, b = (str(end) for end in edge)
            srcs = self._ends(a, prefix, exits, "Output", graph)
            dsts = self._ends(b, prefix, entries, "Input", graph)
            for s in srcs:
                for d in dsts:
                    if self.role[d] == "input":
                        raise self.fail(f"edge ('{s}', '{d}') leads into Input node '{d}'")
                    if self.role[s] == "output":
                        raise self.fail(f"edge ('{s}', '{d}') leaves Output node '{s}'")
                    self.edges.append((s, d))

    def _ends(self, name: str, prefix: str, ports: dict[str, list[str]], kind: str, graph: nir.NIRGraph) -> list[str]:
        if name in ports:
            found = ports[name]
            if len(found) != 1:
                raise self.fail(f"an edge meets nested graph '{prefix}{name}', which has {len(found)} {kind} nodes "
                                f"(NIR nodes have exactly one port)")
            return found
        if name not in graph.nodes:
            raise self.fail(f"an edge refers to node '{prefix}{name}', which does not exist")
        return [prefix + name]

    def _role_of(self, name: str, node: nir.NIRNode, top: bool) -> str:
        if isinstance(node, nir.Input):
            return "input" if top else "pass"
        if isinstance(node, nir.Output):
            return "output" if top else "pass"
        if type(node) in _NEURON_TYPES:
            return "neuron"
        if isinstance(node, _LINEAR_TYPES):
            return "linear"
        raise self.fail(f"unknown NIR node type '{type(node).__name__}' (node '{name}')")

    def _check_finite(self, name: str, node: nir.NIRNode) -> None:
        for f in dataclasses.fields(node):
            if f.name in ("input_type", "output_type", "metadata"):
                continue
            value = getattr(node, f.name, None)
            if value is None or isinstance(value, str):
                continue
            try:
                arr = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise self.fail(f"node '{name}' parameter '{f.name}' is not numeric ({_oneline(exc)})") from exc
            if not np.all(np.isfinite(arr)):
                raise self.fail(f"node '{name}' parameter '{f.name}' contains NaN or infinite values")

    def _reset_of(self, meta: Mapping[str, Any], where: str) -> str | None:
        for key in ("reset_mechanism", "reset"):
            if key in meta:
                value = _text(meta[key]).strip().lower()
                if value not in ir.RESET_MODES:
                    raise self.fail(f"{where} metadata '{key}' is {value!r}; snnc understands {ir.RESET_MODES}")
                return value
        return None

    def _resolve_dt(self, dt: float | None) -> tuple[float, str]:
        if dt is not None:
            return float(dt), "option"
        if "dt" in self.top_meta:
            try:
                value = float(np.asarray(self.top_meta["dt"]).item())
            except (TypeError, ValueError) as exc:
                raise self.fail(f"graph metadata 'dt' is not a number ({_oneline(exc)})") from exc
            if not (math.isfinite(value) and value > 0):
                raise self.fail(f"graph metadata 'dt' must be a positive number of seconds, got {value!r}")
            return value, "metadata"
        return DEFAULT_DT, "default"

    def _meta(self, name: str) -> Mapping[str, Any]:
        return getattr(self.nodes[name], "metadata", None) or {}

    def _cycle_check(self) -> None:
        """A cycle of linear nodes alone has no population to delay it: refuse it."""
        linear = [n for n in self.nodes if self.role[n] in ("linear", "pass")]
        index = {n: i for i, n in enumerate(linear)}
        pairs = [(index[a], index[b]) for a, b in self.edges if a in index and b in index]
        for a, b in pairs:
            if a == b:
                raise self.fail(f"linear node '{linear[a]}' feeds itself; a cycle needs a neuron node in it")
        if not pairs:
            return
        rows, cols = np.array(pairs).T
        adj = sp.csr_matrix((np.ones(len(pairs)), (rows, cols)), shape=(len(linear), len(linear)))
        _, labels = connected_components(adj, directed=True, connection="strong")
        counts = np.bincount(labels)
        for lab in np.flatnonzero(counts > 1):
            members = [linear[i] for i in np.flatnonzero(labels == lab)]
            raise self.fail(f"cycle made only of linear nodes {members}; a cycle needs a neuron node in it")

    # ------------------------------------------------------------------ shapes

    def _neuron_fields(self, name: str) -> tuple[str, dict[str, np.ndarray]]:
        node = self.nodes[name]
        model, sources = _NEURON_TYPES[type(node)]
        values = {}
        for key, field_name in sources.items():
            value = getattr(node, field_name, None)
            if value is None:
                if field_name not in _DEFAULTS:
                    raise self.fail(f"node '{name}' lacks parameter '{field_name}'")
                value = _DEFAULTS[field_name]
            values[key] = np.asarray(value, dtype=np.float64)
        return model, values

    def _param_shape(self, name: str) -> Shape | None:
        _, values = self._neuron_fields(name)
        shaped = [v.shape for v in values.values() if v.ndim > 0]
        return max(shaped, key=len) if shaped else None

    def _declared(self, name: str) -> tuple[Shape | None, Shape | None]:
        """(input shape, output shape) a node fixes by itself; None where only upstream can tell."""
        node, role = self.nodes[name], self.role[name]
        if role == "input":
            shape = _shape_of(node.input_type.get("input"))
            return None, shape
        if role in ("output", "pass"):
            if isinstance(node, nir.Output):
                shape = _shape_of((node.output_type or {}).get("output"))
            else:
                shape = _shape_of((node.input_type or {}).get("input"))
            return shape, shape
        if role == "neuron":
            shape = self._param_shape(name)
            return shape, shape
        if isinstance(node, nir.Affine | nir.Linear):
            w = np.asarray(node.weight)
            if w.ndim != 2:
                raise self.fail(f"node '{name}' weight has shape {w.shape}; snnc imports 2-d (out, in) weights only")
            return (w.shape[1],), (w.shape[0],)
        if isinstance(node, nir.Scale | nir.Delay):
            arr = np.asarray(node.scale if isinstance(node, nir.Scale) else node.delay)
            shape = tuple(arr.shape) or None
            return shape, shape
        if isinstance(node, nir.Flatten):
            return _shape_of((node.input_type or {}).get("input")), None
        if isinstance(node, nir.Conv2d) and _shape_of(node.input_shape) is not None:
            w = np.asarray(node.weight)
            return (w.shape[1] * int(node.groups), *_shape_of(node.input_shape)), None
        if isinstance(node, nir.Conv1d) and _shape_of(node.input_shape) is not None:
            w = np.asarray(node.weight)
            return (w.shape[1] * int(node.groups), int(np.asarray(node.input_shape).ravel()[0])), None
        return None, None

    def _transform(self, name: str, shape: Shape) -> Shape:
        """The output shape of ``name`` for input ``shape``."""
        node = self.nodes[name]
        if isinstance(node, nir.Flatten):
            out = _flatten_shape(shape, int(node.start_dim), int(node.end_dim))
            if out is None:
                raise self.fail(f"node '{name}' flattens dims {int(node.start_dim)}..{int(node.end_dim)} "
                                f"of a {len(shape)}-d input {shape}")
            return out
        if isinstance(node, _CONV_TYPES + _POOL_TYPES):
            spec, _ = self._conv_spec(name, shape)
            if isinstance(node, nir.Conv1d):
                return (spec.out_shape[0], spec.out_shape[2])
            return spec.out_shape
        return shape

    def _infer_shapes(self) -> None:
        """Propagate shapes along edges (both ways for shape-less identities) until nothing changes."""
        out_fixed: dict[str, Shape] = {}
        for name in self.nodes:
            req, out = self._declared(name)
            if req is not None:
                self.in_shape[name] = req
            if out is not None:
                out_fixed[name] = out
        self.out_shape.update(out_fixed)
        identity_like = {n for n in self.nodes if self.role[n] in ("neuron", "pass", "input")
                         or isinstance(self.nodes[n], nir.Scale | nir.Delay)}
        changed = True
        while changed:
            changed = False
            for name in self.nodes:
                if name not in self.out_shape and name in self.in_shape and self.role[name] not in ("output", "input"):
                    self.out_shape[name] = self._transform(name, self.in_shape[name])
                    changed = True
            for a, b in self.edges:
                if a in self.out_shape and b not in self.in_shape:
                    self.in_shape[b] = self.out_shape[a]
                    changed = True
                elif a not in self.out_shape and b in self.in_shape and a in identity_like:
                    self.out_shape[a] = self.in_shape[b]
                    if self.role[a] != "input":
                        self.in_shape.setdefault(a, self.in_shape[b])
                    changed = True
        for name in self.nodes:
            role = self.role[name]
            need_in = role not in ("input",)
            need_out = role not in ("output",)
            if (need_in and name not in self.in_shape) or (need_out and name not in self.out_shape):
                raise self.fail(f"cannot infer the shape of node '{name}' ({type(self.nodes[name]).__name__}): "
                                f"no shape reaches it from an Input or a sized node")

    def _check_edges(self) -> None:
        for a, b in self.edges:
            have, want = self.out_shape[a], self.in_shape[b]
            if have == want:
                continue
            if math.prod(have) != math.prod(want):
                raise self.fail(f"node '{a}' delivers shape {list(have)} but node '{b}' expects {list(want)}")
            # snnc's own exporter writes such edges knowingly: NIR has no un-flatten node
            if META_PROJECTION in self._meta(a) or META_PROJECTION in self._meta(b):
                continue
            warnings.warn(NirImportWarning(
                f"{self.label}: node '{b}' expects shape {list(want)} but node '{a}' delivers {list(have)}; "
                f"same number of elements, importing with a C-order reshape"), stacklevel=4)

    # ------------------------------------------------------------------ linear maps

    def _conv_spec(self, name: str, in_shape: Shape) -> tuple[ir.ConvSpec, np.ndarray]:
        """ConvSpec and 4-d kernel of a conv or pool node for input ``in_shape`` (Conv1d as H = 1)."""
        node = self.nodes[name]
        one_d = isinstance(node, nir.Conv1d)
        if len(in_shape) != (2 if one_d else 3):
            raise self.fail(f"node '{name}' ({type(node).__name__}) needs a {'(C, L)' if one_d else '(C, H, W)'} "
                            f"input, got shape {list(in_shape)}")
        spatial = (1, in_shape[1]) if one_d else (in_shape[1], in_shape[2])
        channels = in_shape[0]
        if isinstance(node, _POOL_TYPES):
            kernel_size = self._pair(name, "kernel_size", node.kernel_size)
            stride = self._pair(name, "stride", node.stride)
            padding = self._pair(name, "padding", node.padding)
            dilation = (1, 1)
            groups = channels
            scale = 1.0 / math.prod(kernel_size) if isinstance(node, nir.AvgPool2d) else 1.0
            kernel = np.full((channels, 1, *kernel_size), scale)
        else:
            weight = np.asarray(node.weight, dtype=np.float64)
            if weight.ndim != (3 if one_d else 4):
                raise self.fail(f"node '{name}' weight has shape {weight.shape}")
            kernel = weight[:, :, None, :] if one_d else weight
            groups = int(node.groups)
            if one_d:
                stride = (1, self._single(name, "stride", node.stride))
                dilation = (1, self._single(name, "dilation", node.dilation))
            else:
                stride = self._pair(name, "stride", node.stride)
                dilation = self._pair(name, "dilation", node.dilation)
            padding = self._padding(name, node.padding, kernel.shape[2:], dilation, one_d)
            if groups < 1 or kernel.shape[0] % groups or kernel.shape[1] * groups != channels:
                raise self.fail(f"node '{name}' kernel {kernel.shape if not one_d else weight.shape} with groups "
                                f"{groups} does not fit {channels} input channels")
        if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0 or min(kernel.shape[2:]) < 1:
            raise self.fail(f"node '{name}' has unsupported stride {stride}, padding {padding} or dilation {dilation}")
        probe = ir.ConvSpec((channels, *spatial), (kernel.shape[0], 1, 1), stride, padding, dilation, groups)
        out_hw = ir.conv_output_shape(probe, (kernel.shape[2], kernel.shape[3]))
        if min(out_hw) < 1:
            raise self.fail(f"node '{name}' produces an empty output from input shape {list(in_shape)}")
        spec = dataclasses.replace(probe, out_shape=(kernel.shape[0], *out_hw))
        return spec, kernel

    def _pair(self, name: str, what: str, value: Any) -> tuple[int, int]:
        arr = np.asarray(value).ravel()
        if arr.size == 1:
            return int(arr[0]), int(arr[0])
        if arr.size == 2:
            return int(arr[0]), int(arr[1])
        raise self.fail(f"node '{name}' {what} {arr.tolist()} is not one or two integers")

    def _single(self, name: str, what: str, value: Any) -> int:
        arr = np.asarray(value).ravel()
        if arr.size != 1:
            raise self.fail(f"node '{name}' {what} {arr.tolist()} is not one integer")
        return int(arr[0])

    def _padding(self, name: str, value: Any, kernel: tuple[int, ...], dilation: tuple[int, int],
                 one_d: bool) -> tuple[int, int]:
        if isinstance(value, str | bytes):
            mode = _text(value)
            if mode == "valid":
                return 0, 0
            if mode == "same":
                total = [d * (k - 1) for d, k in zip(dilation, kernel)]
                if any(t % 2 for t in total):
                    raise self.fail(f"node '{name}' padding 'same' with an even kernel pads asymmetrically, "
                                    f"which snnc does not support")
                return total[0] // 2, total[1] // 2
            raise self.fail(f"node '{name}' padding {mode!r} is not 'same', 'valid' or integers")
        if one_d:
            return 0, self._single(name, "padding", value)
        return self._pair(name, "padding", value)

    def _map(self, name: str) -> _LinearMap:
        """The flat linear map of a linear or pass-through node (cached, built only when a path needs it)."""
        if name in self._maps:
            return self._maps[name]
        node = self.nodes[name]
        n_in = math.prod(self.in_shape[name])
        if isinstance(node, nir.Affine | nir.Linear):
            result = _LinearMap(sp.csr_matrix(np.asarray(node.weight, dtype=np.float64)))
        elif isinstance(node, nir.Scale):
            scale = np.broadcast_to(np.asarray(node.scale, dtype=np.float64), self.in_shape[name]).ravel()
            result = _LinearMap(sp.diags(scale, format="csr"))
        elif isinstance(node, nir.Delay):
            seconds = np.broadcast_to(np.asarray(node.delay, dtype=np.float64), self.out_shape[name]).ravel()
            result = _LinearMap(None, delays=self._steps(name, seconds))
        elif isinstance(node, _CONV_TYPES + _POOL_TYPES):
            result = _LinearMap(conv_matrix(*self._conv_spec(name, self.in_shape[name])))
        else:
            result = _LinearMap(None)
        if result.matrix is not None and result.matrix.shape[1] != n_in:
            raise self.fail(f"node '{name}' maps {result.matrix.shape[1]} inputs but receives {n_in}")
        self._maps[name] = result
        return result

    def _bias(self, name: str) -> np.ndarray | None:
        """The flat bias an Affine or conv node adds to its output; None when it has none or only zeros."""
        node = self.nodes[name]
        if not isinstance(node, (nir.Affine, *_CONV_TYPES)) or node.bias is None:
            return None
        bias = np.asarray(node.bias, dtype=np.float64)
        if not np.any(bias):
            return None
        out = self.out_shape[name]
        # Affine biases are per output element, conv biases per output channel
        per = math.prod(out) if isinstance(node, nir.Affine) else out[0]
        try:
            return np.repeat(np.broadcast_to(bias.ravel() if bias.ndim else bias, (per,)), math.prod(out) // per)
        except ValueError as exc:
            raise self.fail(f"node '{name}' bias has shape {list(bias.shape)}, output shape is {list(out)}") from exc

    def _steps(self, name: str, seconds: np.ndarray) -> np.ndarray:
        steps = seconds / self.dt
        rounded = np.rint(steps)
        off = np.abs(steps - rounded) > DELAY_TOLERANCE * np.maximum(np.abs(rounded), 1.0)
        if np.any(off) or np.any(rounded < 0):
            worst = float(seconds[np.argmax(off | (rounded < 0))])
            raise self.fail(f"node '{name}' delay {worst:g} s is not a non-negative whole number of steps of "
                            f"dt = {self.dt:g} s")
        return rounded.astype(np.int64)

    # ------------------------------------------------------------------ paths and projections

    def _reshape_only(self, name: str) -> bool:
        return self.role[name] == "pass" or isinstance(self.nodes[name], nir.Flatten)

    def _paths(self) -> list[_Path]:
        """Every path population -> linear nodes -> population/Output, in node and edge order."""
        found = []
        for start in self.nodes:
            if self.role[start] not in ("input", "neuron"):
                continue
            stack: list[tuple[str, tuple[str, ...]]] = [(n, ()) for n in reversed(self.succ[start])]
            while stack:
                node, path = stack.pop()
                role = self.role[node]
                if role in ("neuron", "output"):
                    found.append(_Path(start, node, path))
                else:
                    stack.extend((n, (*path, node)) for n in reversed(self.succ[node]))
        return found

    def _compose(self, path: _Path) -> Terms:
        terms: Terms | None = None
        for name in path.nodes:
            m = self._map(name)
            if m.delays is not None:
                base = terms if terms is not None else {0: sp.identity(len(m.delays), format="csr")}
                split: Terms = {}
                for value in np.unique(m.delays):
                    mask = sp.diags((m.delays == value).astype(np.float64), format="csr")
                    for d, a in base.items():
                        part = mask @ a
                        key = int(d + value)
                        split[key] = split[key] + part if key in split else part
                terms = split
            elif m.matrix is not None:
                terms = {0: m.matrix} if terms is None else {d: m.matrix @ a for d, a in terms.items()}
        if terms is None:
            return {0: sp.identity(math.prod(self.out_shape[path.src]), format="csr")}
        return terms

    def _path_hint(self, path: _Path) -> tuple[str | None, str | None]:
        names = {_text(self._meta(n)[META_PROJECTION]) for n in path.nodes if META_PROJECTION in self._meta(n)}
        kinds = {_text(self._meta(n)[META_KIND]) for n in path.nodes if META_KIND in self._meta(n)}
        name = names.pop() if len(names) == 1 else None
        kind = kinds.pop() if len(kinds) == 1 else None
        return name, kind if kind in ir.PROJECTION_KINDS else None

    def _chain_name(self, path: _Path) -> str:
        acting = [n for n in path.nodes if not self._reshape_only(n)]
        if acting:
            return "+".join(acting)
        flattens = [n for n in path.nodes if isinstance(self.nodes[n], nir.Flatten)]
        return "+".join(flattens) if flattens else f"{path.src}->{path.dst}"

    def _compact(self, path: _Path, hint: str | None) -> tuple[str, np.ndarray, ir.ConvSpec | None] | None:
        """A "dense" or "conv" projection for a path that is one recognisable layer, else None."""
        acting = [n for n in path.nodes if not self._reshape_only(n)]
        nodes = [self.nodes[n] for n in acting]
        if len(acting) == 1 and isinstance(nodes[0], nir.Affine | nir.Linear) and hint in (None, "dense"):
            return "dense", np.array(nodes[0].weight, dtype=np.float64), None
        if hint not in (None, "conv"):
            return None
        if len(acting) == 1 and isinstance(nodes[0], _CONV_TYPES + _POOL_TYPES):
            spec, kernel = self._conv_spec(acting[0], self.in_shape[acting[0]])
            if isinstance(nodes[0], nir.Conv1d):
                spec = dataclasses.replace(spec, in_shape=(spec.in_shape[0], 1, spec.in_shape[2]))
            return "conv", kernel, spec
        if len(acting) == 2 and isinstance(nodes[0], _POOL_TYPES) and isinstance(nodes[1], nir.Conv2d):
            return self._merge_pool_conv(acting[0], acting[1])
        return None

    def _merge_pool_conv(self, pool: str, conv: str) -> tuple[str, np.ndarray, ir.ConvSpec] | None:
        """Pool then conv as one conv (``compiler/conv.py``), or None when they do not merge."""
        merged = merge_pool_conv(*self._conv_spec(pool, self.in_shape[pool]), *self._conv_spec(conv, self.in_shape[conv]))
        return None if merged is None else ("conv", *merged)

    def _from_terms(self, name: str, src: str, dst: str, terms: Terms, hint: str | None,
                    identity: bool) -> ir.Projection:
        rows, cols, vals, delays = [], [], [], []
        n_dst, n_src = next(iter(terms.values())).shape
        for d in sorted(terms):
            a = terms[d].tocoo()
            a.sum_duplicates()
            keep = a.data != 0
            rows.append(a.row[keep].astype(np.int64))
            cols.append(a.col[keep].astype(np.int64))
            vals.append(a.data[keep].astype(np.float64))
            delays.append(np.full(int(keep.sum()), d, dtype=np.int64))
        r, c, w, dl = (np.concatenate(x) for x in (rows, cols, vals, delays))
        order = np.lexsort((dl, c, r))
        r, c, w, dl = r[order], c[order], w[order], dl[order]
        flat = r * n_src + c
        duplicated = flat.size > 1 and bool(np.any(flat[1:] == flat[:-1]))
        density = flat.size / max(n_dst * n_src, 1)
        dense = hint == "dense" or (hint is None and not identity and density > DENSE_ABOVE)
        any_delay = bool(np.any(dl))
        if dense and not duplicated:
            weight = np.zeros((n_dst, n_src))
            weight[r, c] = w
            delay = None
            if any_delay:
                delay = np.zeros((n_dst, n_src), dtype=np.int64)
                delay[r, c] = dl
            return ir.Projection(name=name, src=src, dst=dst, kind="dense", weight=weight, delay=delay)
        return ir.Projection(name=name, src=src, dst=dst, kind="sparse", weight=w, rows=r, cols=c,
                             delay=dl if any_delay else None)

    def _projection(self, name: str, src: str, dst: str, paths: list[_Path], hint: str | None) -> ir.Projection:
        if len(paths) == 1:
            compact = self._compact(paths[0], hint)
            if compact is not None:
                kind, weight, spec = compact
                return ir.Projection(name=name, src=src, dst=dst, kind=kind, weight=weight, conv=spec)
        total: Terms = {}
        for path in paths:
            for d, a in self._compose(path).items():
                total[d] = total[d] + a if d in total else a
        identity = all(self._reshape_only(n) for path in paths for n in path.nodes)
        return self._from_terms(name, src, dst, total, hint, identity)

    # ------------------------------------------------------------------ populations

    def _population(self, name: str, bias: np.ndarray) -> ir.Population:
        shape = self.out_shape[name]
        if self.role[name] == "input":
            return ir.Population(name=name, shape=shape, model="input", params={})
        model, values = self._neuron_fields(name)
        params: dict[str, np.ndarray] = {}
        for key, value in values.items():
            try:
                params[key] = np.broadcast_to(value, shape).astype(np.float64)
            except ValueError as exc:
                raise self.fail(f"node '{name}' parameter '{_NEURON_TYPES[type(self.nodes[name])][1][key]}' has "
                                f"shape {list(value.shape)}, which does not fit the population shape {list(shape)}") from exc
        params["bias"] = bias.reshape(shape)
        reset = self.reset_option
        if reset is None:
            reset = self._reset_of(self._meta(name), f"node '{name}'") or self.graph_reset[name]
            if reset is not None:
                self.reset_from = "metadata"
            else:
                reset = DEFAULT_RESET
        refractory = self._meta(name).get("refractory", 0)
        try:
            refractory = int(np.asarray(refractory))
        except (TypeError, ValueError) as exc:
            raise self.fail(f"node '{name}' metadata 'refractory' is {refractory!r}, not a number of steps") from exc
        return ir.Population(name=name, shape=shape, model=model, params=params, reset=reset, refractory=refractory)

    def _readout(self, name: str, bias: np.ndarray) -> ir.Population:
        shape = self.in_shape[name]
        params = {"tau_mem": np.full(shape, self.dt), "r": np.ones(shape), "v_leak": np.zeros(shape),
                  "bias": bias.reshape(shape)}
        return ir.Population(name=name, shape=shape, model="li", params=params, reset=self.reset_option or DEFAULT_RESET)

    def _biases(self) -> dict[str, np.ndarray]:
        """Every Affine/conv bias pushed through the linear maps after it, summed per population/Output."""
        sums: dict[str, np.ndarray] = {}
        for origin in self.nodes:
            bias = self._bias(origin)
            if bias is None:
                continue
            stack = [(n, bias) for n in reversed(self.succ[origin])]
            while stack:
                node, vec = stack.pop()
                if self.role[node] in ("neuron", "output"):
                    sums[node] = sums[node] + vec if node in sums else vec.copy()
                    continue
                m = self._map(node)
                nxt = vec if m.matrix is None else m.matrix @ vec
                stack.extend((n, nxt) for n in reversed(self.succ[node]))
        return sums

    # ------------------------------------------------------------------ assembly

    def run(self) -> ir.Graph:
        self._cycle_check()
        self._infer_shapes()
        self._check_edges()
        paths = self._paths()
        biases = self._biases()
        into_output: dict[str, list[_Path]] = {}
        for path in paths:
            if self.role[path.dst] == "output":
                into_output.setdefault(path.dst, []).append(path)
        direct: dict[str, str] = {}
        for out, found in into_output.items():
            if len(found) == 1 and out not in biases and all(self._reshape_only(n) for n in found[0].nodes):
                direct[out] = found[0].src
        readouts = [o for o in into_output if o not in direct] + [o for o in biases if self.role[o] == "output"
                                                                  and o not in into_output]

        populations = []
        for name in self.nodes:
            role = self.role[name]
            if role in ("input", "neuron"):
                size = math.prod(self.out_shape[name])
                populations.append(self._population(name, biases.get(name, np.zeros(size))))
            elif role == "output" and name in readouts:
                size = math.prod(self.in_shape[name])
                populations.append(self._readout(name, biases.get(name, np.zeros(size))))

        groups: dict[tuple[str, str, str | int], tuple[str, str | None, list[_Path]]] = {}
        for i, path in enumerate(paths):
            if path.dst in direct:
                continue
            hint_name, hint_kind = self._path_hint(path)
            key = (path.src, path.dst, hint_name if hint_name is not None else i)
            if key not in groups:
                groups[key] = (hint_name or self._chain_name(path), hint_kind, [])
            groups[key][2].append(path)
        projections = []
        used: dict[str, int] = {}
        for (src, dst, _), (name, hint, group) in groups.items():
            used[name] = used.get(name, 0) + 1
            unique = name if used[name] == 1 else f"{name}#{used[name]}"
            projections.append(self._projection(unique, src, dst, group, hint))

        inputs = [n for n in self.nodes if self.role[n] == "input"]
        outputs: list[str] = []
        for name in self.nodes:
            if self.role[name] != "output":
                continue
            chosen = direct.get(name, name if name in readouts else None)
            if chosen is not None and chosen not in outputs:
                outputs.append(chosen)
        graph = ir.Graph(populations=tuple(populations), projections=tuple(projections), inputs=tuple(inputs),
                         outputs=tuple(outputs), dt=self.dt)
        return self._apply_order(graph)

    # ------------------------------------------------------------------ integer parameters

    def restore_quant(self, graph: ir.Graph) -> ir.Graph:
        """``graph`` with the integer parameters an snnc export stored as ``snnc_quant``; unchanged without them.

        All or nothing: when they miss a population or projection, or disagree
        with the NIR weights (a file edited by another tool), a warning says
        so and the float network is returned.
        """
        neurons = {name: self._meta(name)[META_QUANT] for name in self.nodes
                   if self.role[name] == "neuron" and META_QUANT in self._meta(name)}
        synapses = {_text(self._meta(name)[META_PROJECTION]): self._meta(name)[META_QUANT] for name in self.nodes
                    if META_QUANT in self._meta(name) and META_PROJECTION in self._meta(name)}
        if not neurons and not synapses:
            return graph
        try:
            populations = tuple(pop if pop.model == "input" else _quantized_population(pop, neurons)
                                for pop in graph.populations)
            projections = tuple(_quantized_projection(proj, graph, synapses) for proj in graph.projections)
            return ir.check(ir.replace(graph, populations=populations, projections=projections), "quantized")
        except (KeyError, TypeError, ValueError) as exc:
            reason = f"nothing stored for {exc.args[0]}" if isinstance(exc, KeyError) else _oneline(exc)
            warnings.warn(NirImportWarning(f"{self.label}: integer parameters in '{META_QUANT}' metadata not "
                                           f"restored ({reason}); importing the float network"), stacklevel=3)
            return graph

    def _apply_order(self, graph: ir.Graph) -> ir.Graph:
        """Restore snnc's own order from an exported file's ``snnc_order`` (HDF5 sorts node names),
        else order populations by distance from the inputs so dumps read from input to output."""
        if META_ORDER not in self.top_meta:
            return _order_by_depth(graph)
        try:
            order = json.loads(_text(self.top_meta[META_ORDER]))
        except (TypeError, ValueError):
            return graph

        def arrange(items: tuple[Any, ...], names: Any, key: Any) -> tuple[Any, ...]:
            by_name = {key(item): item for item in items}
            if not isinstance(names, list) or sorted(map(str, names)) != sorted(by_name):
                return items
            return tuple(by_name[str(n)] for n in names)

        return ir.replace(
            graph,
            populations=arrange(graph.populations, order.get("populations"), lambda p: p.name),
            projections=arrange(graph.projections, order.get("projections"), lambda p: p.name),
            inputs=arrange(graph.inputs, order.get("inputs"), str),
            outputs=arrange(graph.outputs, order.get("outputs"), str),
        )


def _integers(value: Any, what: str, size: int | None = None) -> np.ndarray:
    """A stored integer array (its dtype kept), checked for ``size`` elements when given."""
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} is {arr.dtype}, not integer")
    if size is not None and arr.size != size:
        raise ValueError(f"{what} has {arr.size} entries, expected {size}")
    return arr.reshape(-1) if size is not None else arr


def _quantized_population(pop: ir.Population, stored: Mapping[str, Any]) -> ir.Population:
    """``pop`` with the ``IntNeuron`` stored for it."""
    if pop.name not in stored:
        raise KeyError(f"population '{pop.name}'")
    q = stored[pop.name]
    arrays = {key: _integers(q[key], f"population '{pop.name}' {key}", pop.size)
              for key in ("i_decay", "v_decay", "vth", "bias_mant", "bias_exp")}
    vreset = _integers(q["vreset"], f"population '{pop.name}' vreset", pop.size) if "vreset" in q else None
    quant = ir.IntNeuron(**arrays, spiking=bool(q["spiking"]), reset=_text(q["reset"]), state_bits=int(q["state_bits"]),
                         vreset=vreset, refractory=int(q["refractory"]))
    return ir.replace(pop, quant=quant)


def _synapse_sums(proj: ir.Projection, n_dst: int, n_src: int) -> dict[int, np.ndarray]:
    """Delay -> (dst, src) matrix of summed float weights (all-zero delays left out): what NIR can hold."""
    weight = np.asarray(proj.weight, dtype=np.float64)
    if proj.kind == "sparse":
        assert proj.rows is not None and proj.cols is not None
        rows, cols = np.asarray(proj.rows), np.asarray(proj.cols)
    else:
        rows, cols = (a.ravel() for a in np.indices(weight.shape))
    weight = weight.ravel()
    delays = np.zeros(weight.size, dtype=np.int64) if proj.delay is None else np.asarray(proj.delay).ravel()
    sums: dict[int, np.ndarray] = {}
    for d in np.unique(delays):
        pick = delays == d
        matrix = np.zeros((n_dst, n_src))
        np.add.at(matrix, (rows[pick], cols[pick]), weight[pick])
        if np.any(matrix):
            sums[int(d)] = matrix
    return sums


def _quantized_projection(proj: ir.Projection, graph: ir.Graph, stored: Mapping[str, Any]) -> ir.Projection:
    """The projection stored for ``proj`` (exact layout and ``IntWeights``), checked against the imported weights."""
    if proj.name not in stored:
        raise KeyError(f"projection '{proj.name}'")
    q = stored[proj.name]
    kind = _text(q["kind"])
    optional = {key: _integers(q[key], f"projection '{proj.name}' {key}") if key in q else None
                for key in ("rows", "cols", "delay")}
    quant = ir.IntWeights(weight=_integers(q["weight_mantissa"], f"projection '{proj.name}' weight mantissa"),
                          weight_exp=int(q["weight_exp"]), weight_bits=int(q["weight_bits"]))
    restored = ir.Projection(name=proj.name, src=proj.src, dst=proj.dst, kind=kind, weight=np.asarray(q["weight"]),
                             conv=proj.conv, quant=quant, **optional)
    if (kind == "conv") != (proj.kind == "conv"):
        raise ValueError(f"projection '{proj.name}' is stored as {kind} but imports as {proj.kind}")
    if kind == "conv":
        same = np.array_equal(np.asarray(restored.weight, dtype=np.float64), np.asarray(proj.weight, dtype=np.float64))
    else:
        ir.check(ir.replace(graph, projections=(restored,)), "float")  # shapes and indices, before summing them
        n_dst, n_src = graph.population(proj.dst).size, graph.population(proj.src).size
        mine, theirs = _synapse_sums(restored, n_dst, n_src), _synapse_sums(proj, n_dst, n_src)
        same = mine.keys() == theirs.keys() and all(np.allclose(mine[d], theirs[d], rtol=1e-12, atol=0) for d in mine)
    if not same:
        raise ValueError(f"projection '{proj.name}': the stored weights disagree with the NIR weights")
    return restored


def _natural_key(name: str) -> tuple[Any, ...]:
    """'10' after '9', 'fc2' before 'fc10'."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _order_by_depth(graph: ir.Graph) -> ir.Graph:
    """Populations by breadth-first distance from the inputs (unreached last), then natural name order."""
    depth = {name: 0 for name in graph.inputs}
    frontier = list(graph.inputs)
    while frontier:
        following = []
        for name in frontier:
            for proj in graph.projections_from(name):
                if proj.dst not in depth:
                    depth[proj.dst] = depth[name] + 1
                    following.append(proj.dst)
        frontier = following
    unreached = len(graph.populations) + 1

    def pop_key(name: str) -> tuple[Any, ...]:
        return (depth.get(name, unreached), _natural_key(name))

    populations = tuple(sorted(graph.populations, key=lambda p: pop_key(p.name)))
    projections = tuple(sorted(graph.projections, key=lambda p: (pop_key(p.dst), pop_key(p.src), _natural_key(p.name))))
    return ir.replace(graph, populations=populations, projections=projections,
                      inputs=tuple(sorted(graph.inputs, key=_natural_key)))
