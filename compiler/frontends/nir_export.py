"""Export an snnc IR graph as a NIR graph (and optionally a ``.nir`` file).

Mapping (the inverse of :mod:`snnc.compiler.frontends.nir_import`):

- populations -> neuron nodes of the same name ("lif" -> LIF with tau =
  tau_mem, "cuba_lif" -> CubaLIF, "if" -> IF, "li" -> LI, "cuba_li" ->
  CubaLI, "i" -> I, "threshold" -> Threshold, "input" -> Input), full
  per-neuron float64 arrays, never 0-d, ``v_reset`` always written;
- "dense" -> Affine; "conv" -> Conv2d (Conv1d when the source population is
  (C, L)) with ``input_shape`` set; "sparse" -> Affine holding the dense
  matrix of the non-zeros; per-synapse delays -> one Delay(d * dt) -> Affine
  branch per distinct delay d;
- a population's ``bias`` goes into the bias of its first incoming projection
  that can hold it (any Affine; a conv only when the bias is constant per channel);
- Flatten nodes (``start_dim`` relative to the unbatched tensor) bridge shape
  changes between populations and projections where a single Flatten can;
  NIR has no un-flatten, so an Affine feeding a (C, H, W) population keeps a
  same-size shape mismatch that snnc's importer accepts for its own files;
- an Output node per graph output.

Every linear node carries ``{"snnc_projection": name, "snnc_kind": kind}``
and the graph ``{"dt", "reset_mechanism" (when all spiking populations agree),
"spike_convention": "unit-per-step", "snnc_order"}`` so that importing the
file gives the same IR back. NIR cannot state reset by subtraction: it is
recorded in metadata only, with a :class:`NirExportWarning`.

A quantized graph (every population and projection has integer
parameters) also carries ``snnc_quant`` metadata: on each neuron node the
``IntNeuron`` fields, on the first linear node of each projection its
``IntWeights`` and exact synapse layout (kind, float weights, rows, cols,
delays), which NIR's one summed matrix per delay cannot hold (repeated
sparse pairs, delays of zero weights). snnc's importer restores them, so the
file compiles to the identical quantized graph and ``snnc verify`` replays it
exactly; other tools read the float network.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from pathlib import Path

import nir
import numpy as np

from snnc.compiler import ir
from snnc.compiler.frontends.nir_import import META_KIND, META_ORDER, META_PROJECTION, META_QUANT

SPIKE_CONVENTION = "unit-per-step"
"""A spike adds its weight once, in the step after it (snnc's float semantics)."""


class NirExportError(ValueError):
    """The graph cannot be written as NIR; the message names the population or projection."""


class NirExportWarning(UserWarning):
    """Something in the graph is only recorded in NIR metadata (e.g. reset by subtraction)."""


Shape = tuple[int, ...]

QUANT_NEURON_ARRAYS = ("i_decay", "v_decay", "vth", "bias_mant", "bias_exp")
"""The per-neuron integer arrays of ``ir.IntNeuron`` (``vreset`` is optional)."""


def export_nir(graph: ir.Graph, path: str | Path | None = None) -> nir.NIRGraph:
    """Convert ``graph`` (float parameters are used) to a ``nir.NIRGraph``; write it to ``path`` if given.

    The file is written atomically (a temporary file in the same directory,
    then a rename), uncompressed. Raises :class:`NirExportError`.
    """
    try:
        ir.check(graph, "float")
    except ir.IRError as exc:
        raise NirExportError(f"cannot export an invalid graph: {exc}") from exc
    builder = _Builder(graph)
    result = builder.build()
    for mode, words in (("subtract", "reset by subtraction"), ("none", "do not reset")):
        names = [p.name for p in graph.populations if p.spiking and p.model != "input" and p.reset == mode]
        if names:
            warnings.warn(NirExportWarning(
                f"populations {names} {words}: NIR cannot represent that; recorded in metadata only"), stacklevel=2)
    refractory = [p.name for p in graph.populations if p.refractory]
    if refractory:
        warnings.warn(NirExportWarning(
            f"populations {refractory} have refractory periods: NIR cannot represent that; recorded in metadata only"),
            stacklevel=2)
    if path is not None:
        _write_atomically(Path(path), result)
    return result


def _write_atomically(path: Path, graph: nir.NIRGraph) -> None:
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        # gzip (nir's default) fails on 0-d arrays and buys little for weights
        nir.write(tmp, graph, compression=None)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # mkstemp makes the file private; a model file should not be
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _single_flatten(src: Shape, dst: Shape) -> tuple[int, int] | None:
    """(start_dim, end_dim) of a Flatten that turns ``src`` into ``dst``, if one exists."""
    for start in range(len(src)):
        for end in range(start + 1, len(src)):
            if src[:start] + (math.prod(src[start:end + 1]),) + src[end + 1:] == dst:
                return start, end
    return None


def _neuron_quant(q: ir.IntNeuron) -> dict[str, object]:
    """``IntNeuron`` fields as NIR metadata (arrays keep their dtype; ``vreset`` only when set)."""
    meta: dict[str, object] = {key: np.asarray(getattr(q, key)) for key in QUANT_NEURON_ARRAYS}
    if q.vreset is not None:
        meta["vreset"] = np.asarray(q.vreset)
    meta.update(spiking=bool(q.spiking), reset=q.reset, state_bits=int(q.state_bits), refractory=int(q.refractory))
    return meta


def _projection_quant(proj: ir.Projection) -> dict[str, object]:
    """A projection's ``IntWeights`` and its exact synapse layout as NIR metadata."""
    q = proj.quant
    assert q is not None
    meta: dict[str, object] = {"kind": proj.kind, "weight": np.asarray(proj.weight),
                               "weight_mantissa": np.asarray(q.weight), "weight_exp": int(q.weight_exp),
                               "weight_bits": int(q.weight_bits)}
    for key in ("rows", "cols", "delay"):
        if getattr(proj, key) is not None:
            meta[key] = np.asarray(getattr(proj, key))
    return meta


def _neuron_node(pop: ir.Population, quantized: bool = False) -> nir.NIRNode:
    if pop.model == "input":
        return nir.Input(input_type=np.array(pop.shape, dtype=np.int64))
    p = {k: np.array(v, dtype=np.float64).reshape(pop.shape) for k, v in pop.params.items()}
    meta: dict[str, object] = {"reset_mechanism": pop.reset}
    if pop.refractory:
        meta["refractory"] = pop.refractory  # steps; NIR has no refractory period
    if quantized and pop.quant is not None:
        meta[META_QUANT] = _neuron_quant(pop.quant)
    if pop.model == "lif":
        return nir.LIF(tau=p["tau_mem"], r=p["r"], v_leak=p["v_leak"], v_threshold=p["v_threshold"],
                       v_reset=p["v_reset"], metadata=meta)
    if pop.model == "cuba_lif":
        return nir.CubaLIF(tau_syn=p["tau_syn"], tau_mem=p["tau_mem"], r=p["r"], v_leak=p["v_leak"],
                           v_threshold=p["v_threshold"], v_reset=p["v_reset"], w_in=p["w_in"], metadata=meta)
    if pop.model == "if":
        return nir.IF(r=p["r"], v_threshold=p["v_threshold"], v_reset=p["v_reset"], metadata=meta)
    if pop.model == "li":
        return nir.LI(tau=p["tau_mem"], r=p["r"], v_leak=p["v_leak"], metadata=meta)
    if pop.model == "cuba_li":
        return nir.CubaLI(tau_syn=p["tau_syn"], tau_mem=p["tau_mem"], r=p["r"], v_leak=p["v_leak"], w_in=p["w_in"],
                          metadata=meta)
    if pop.model == "i":
        return nir.I(r=p["r"], metadata=meta)
    if pop.model == "threshold":
        return nir.Threshold(threshold=p["v_threshold"], metadata=meta)
    raise NirExportError(f"population '{pop.name}': model '{pop.model}' has no NIR counterpart")


class _Builder:
    """Collects NIR nodes and edges for one graph."""

    def __init__(self, graph: ir.Graph) -> None:
        self.graph = graph
        self.pops = {p.name: p for p in graph.populations}
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []
        self.quantized = graph.is_quantized

    def name(self, wanted: str) -> str:
        """A free node name, ``wanted`` if possible (HDF5 forbids '/' and '.' alone)."""
        if "/" in wanted or wanted in ("", ".", ".."):
            raise NirExportError(f"name {wanted!r} cannot be a NIR node name (HDF5 group names cannot contain '/')")
        candidate, k = wanted, 1
        while candidate in self.nodes:
            k += 1
            candidate = f"{wanted}#{k}"
        return candidate

    def add(self, wanted: str, node: nir.NIRNode) -> str:
        name = self.name(wanted)
        self.nodes[name] = node
        return name

    def build(self) -> nir.NIRGraph:
        for pop in self.graph.populations:
            if self.name(pop.name) != pop.name:
                raise NirExportError(f"population '{pop.name}': name is used twice")
            self.nodes[pop.name] = _neuron_node(pop, self.quantized)
        carriers = self._bias_carriers()
        for proj in self.graph.projections:
            self._projection(proj, carriers.get(proj.name))
        for i, out in enumerate(self.graph.outputs):
            pop = self.pops[out]
            wanted = "output" if len(self.graph.outputs) == 1 else f"output_{i}"
            node = self.add(wanted, nir.Output(output_type=np.array(pop.shape, dtype=np.int64)))
            self.edges.append((out, node))
        return nir.NIRGraph(nodes=self.nodes, edges=self.edges, metadata=self._metadata(), type_check=False)

    def _metadata(self) -> dict[str, object]:
        meta: dict[str, object] = {"dt": float(self.graph.dt), "spike_convention": SPIKE_CONVENTION}
        resets = {p.reset for p in self.graph.populations if p.model in ir.SPIKING_MODELS}
        if len(resets) == 1:
            meta["reset_mechanism"] = resets.pop()
        meta[META_ORDER] = json.dumps({
            "populations": [p.name for p in self.graph.populations],
            "projections": [p.name for p in self.graph.projections],
            "inputs": list(self.graph.inputs),
            "outputs": list(self.graph.outputs),
        })
        return meta

    def _bias_carriers(self) -> dict[str, np.ndarray]:
        """Projection name -> the destination bias its NIR node must carry (flat, or per channel for conv)."""
        carriers: dict[str, np.ndarray] = {}
        for pop in self.graph.populations:
            if pop.model == "input":
                continue
            bias = np.asarray(pop.params["bias"], dtype=np.float64).ravel()
            if not np.any(bias):
                continue
            for proj in self.graph.projections_into(pop.name):
                if proj.kind != "conv":
                    carriers[proj.name] = bias
                    break
                assert proj.conv is not None
                per_channel = bias.reshape(proj.conv.out_shape[0], -1)
                if np.all(per_channel == per_channel[:, :1]):
                    carriers[proj.name] = per_channel[:, 0].copy()
                    break
            else:
                raise NirExportError(
                    f"population '{pop.name}' has a non-zero bias but no incoming projection whose NIR node can "
                    f"carry it (needs a dense/sparse projection, or a conv with a bias constant per channel)")
        return carriers

    def _reshape(self, start: str, have: Shape, want: Shape, label: str, meta: dict[str, str]) -> str:
        """Insert a Flatten from ``have`` to ``want`` after ``start`` when one Flatten can do it."""
        if have == want:
            return start
        dims = _single_flatten(have, want)
        if dims is None:
            # NIR cannot un-flatten; snnc's importer reshapes edges from its own nodes
            return start
        node = self.add(label, nir.Flatten(input_type=np.array(have, dtype=np.int64), start_dim=dims[0],
                                           end_dim=dims[1], metadata=dict(meta)))
        self.edges.append((start, node))
        return node

    def _projection(self, proj: ir.Projection, bias: np.ndarray | None) -> None:
        src, dst = self.pops[proj.src], self.pops[proj.dst]
        meta = {META_PROJECTION: proj.name, META_KIND: proj.kind}
        first_meta: dict[str, object] = dict(meta)
        if self.quantized:
            first_meta[META_QUANT] = _projection_quant(proj)
        if proj.kind == "conv":
            self._conv(proj, src, dst, bias, meta, first_meta)
            return
        weight = np.asarray(proj.weight, dtype=np.float64)
        if proj.kind == "sparse":
            assert proj.rows is not None and proj.cols is not None
            delays = np.zeros(weight.shape, dtype=np.int64) if proj.delay is None else np.asarray(proj.delay)
            rows, cols = np.asarray(proj.rows), np.asarray(proj.cols)
        else:
            delays = np.zeros(weight.shape, dtype=np.int64) if proj.delay is None else np.asarray(proj.delay)
            rows, cols = np.indices(weight.shape).reshape(2, -1)
            weight, delays = weight.ravel(), delays.ravel()
        flat = (src.size,)
        head = self._reshape(src.name, src.shape, flat, f"{proj.name}#flatten", meta)
        for i, d in enumerate(np.unique(delays) if delays.size else np.zeros(1, dtype=np.int64)):
            pick = delays == d
            matrix = np.zeros((dst.size, src.size))
            # sparse projections may repeat a (row, col) pair: NIR can only hold their sum
            np.add.at(matrix, (rows[pick], cols[pick]), weight[pick])
            start = head
            suffix = "" if d == 0 else f"#d{int(d)}"
            if d:
                delay = nir.Delay(delay=np.full(src.size, float(d) * self.graph.dt), metadata=dict(meta))
                start = self.add(f"{proj.name}#delay{int(d)}", delay)
                self.edges.append((head, start))
            node_bias = bias if (bias is not None and i == 0) else np.zeros(dst.size)
            node_meta = dict(first_meta if i == 0 else meta)
            affine = self.add(proj.name + suffix, nir.Affine(weight=matrix, bias=node_bias.copy(), metadata=node_meta))
            self.edges.append((start, affine))
            tail = self._reshape(affine, flat, dst.shape, f"{proj.name}{suffix}#flatten_out", meta)
            self.edges.append((tail, dst.name))

    def _conv(self, proj: ir.Projection, src: ir.Population, dst: ir.Population, bias: np.ndarray | None,
              meta: dict[str, str], conv_meta: dict[str, object]) -> None:
        spec = proj.conv
        assert spec is not None
        kernel = np.array(proj.weight, dtype=np.float64)
        c_out = kernel.shape[0]
        node_bias = np.zeros(c_out) if bias is None else bias.copy()
        one_d = (len(src.shape) == 2 and spec.in_shape[1] == 1 and kernel.shape[2] == 1
                 and spec.out_shape[1] == 1 and spec.padding[0] == 0)
        if one_d:
            node: nir.NIRNode = nir.Conv1d(
                input_shape=int(spec.in_shape[2]), weight=kernel[:, :, 0, :], stride=int(spec.stride[1]),
                padding=int(spec.padding[1]), dilation=int(spec.dilation[1]), groups=int(spec.groups),
                bias=node_bias, metadata=dict(conv_meta))
            node_in: Shape = (spec.in_shape[0], spec.in_shape[2])
            node_out: Shape = (spec.out_shape[0], spec.out_shape[2])
        else:
            node = nir.Conv2d(
                input_shape=np.array(spec.in_shape[1:], dtype=np.int64), weight=kernel,
                stride=np.array(spec.stride, dtype=np.int64), padding=np.array(spec.padding, dtype=np.int64),
                dilation=np.array(spec.dilation, dtype=np.int64), groups=int(spec.groups), bias=node_bias,
                metadata=dict(conv_meta))
            node_in, node_out = tuple(spec.in_shape), tuple(spec.out_shape)
        head = self._reshape(src.name, src.shape, node_in, f"{proj.name}#flatten", meta)
        conv = self.add(proj.name, node)
        self.edges.append((head, conv))
        tail = self._reshape(conv, node_out, dst.shape, f"{proj.name}#flatten_out", meta)
        self.edges.append((tail, dst.name))
