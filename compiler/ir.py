"""The snnc intermediate representation: plain, frozen data.

A :class:`Graph` is a set of neuron :class:`Population` s joined by weighted
:class:`Projection` s. Everything is numpy arrays and tuples; the only
behaviour here is validation (:func:`check`), a readable text form
(:func:`dump`) and versioned save/load.

Neuron index convention: a population of ``shape`` (C, H, W) holds
``prod(shape)`` neurons numbered in C order (numpy ``ravel``). Weights are
indexed ``[dst, src]`` like ``torch.nn.Linear``.

Float semantics (what the float reference simulates, forward Euler at ``dt``;
``x`` is the sum of all incoming projections plus ``bias``)::

    cuba_lif:  I' = a*I + w_in*(dt/tau_syn)*x ;  v' = b*v + (dt/tau_mem)*(v_leak + r*I')
    lif:       v' = b*v + (dt/tau_mem)*(v_leak + r*x)                 (b = 1 - dt/tau_mem)
    if:        v' = v + r*x                                           (a = 1 - dt/tau_syn)
    li, cuba_li, i: as lif, cuba_lif, if but never spike (their output is v)
    threshold: v' = x
    spike z = v' > v_threshold; then v' = v_reset (reset "zero"), v' - (v_threshold - v_reset)
    ("subtract"; with v_reset = 0 the usual v' - v_threshold) or v' unchanged ("none");
    for ``refractory`` steps after a spike v is frozen (no decay, no input, no spike) while I integrates

Integer semantics (the quantized graph; the CPU backend is its definition,
``docs/semantics.md`` the prose)::

    a_in = sum over projections of (W_int << weight_exp) . s(t - 1 - delay)
    u'   = rz(u * (4096 - i_decay) / 4096) + (a_in << 6)          saturate to state_bits
    v'   = rz(v * (4096 - v_decay) / 4096) + u' + (bias_mant << bias_exp)   saturate
    z    = v' > (vth << 6)   (strict);  reset v' = vreset << 6, v' - ((vth - vreset) << 6) or unchanged
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1

NEURON_MODELS: dict[str, tuple[str, ...]] = {
    "input": (),
    "lif": ("tau_mem", "r", "v_leak", "v_threshold", "v_reset", "bias"),
    "cuba_lif": ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in", "bias"),
    "if": ("r", "v_threshold", "v_reset", "bias"),
    "li": ("tau_mem", "r", "v_leak", "bias"),
    "cuba_li": ("tau_syn", "tau_mem", "r", "v_leak", "w_in", "bias"),
    "i": ("r", "bias"),
    "threshold": ("v_threshold", "bias"),
}
"""Neuron model name -> the float parameters it must carry (each of the population's shape)."""

SPIKING_MODELS = frozenset({"lif", "cuba_lif", "if", "threshold"})
RESET_MODES = ("zero", "subtract", "none")
PROJECTION_KINDS = ("dense", "sparse", "conv")
STAGES = ("float", "quantized")

DECAY_UNITY = 4096
"""Integer decays are fractions of 4096: 0 keeps the state, 4096 clears it each step."""
ACT_SHIFT = 6
"""Synaptic input and threshold are shifted left by this many bits (Loihi's MSB alignment)."""


class IRError(ValueError):
    """A graph breaks an invariant; the message names the node and the rule."""


@dataclass(frozen=True)
class IntNeuron:
    """Quantized neuron parameters, one int64 entry per neuron (flattened).

    Per step (``rz`` rounds toward zero, ``sat`` clips to +-(2**(state_bits-1) - 1))::

        u' = sat(rz(u * (4096 - i_decay) / 4096) + (a_in << 6))
        v' = sat(rz(v * (4096 - v_decay) / 4096) + u' + (bias_mant << bias_exp))
        spike if spiking and v' > vth << 6; then
            v' = vreset << 6                 (reset "zero")
            v' = v' - ((vth - vreset) << 6)  (reset "subtract")
            v' unchanged                     (reset "none")
        and v' is clipped to the state range again; then for ``refractory``
        steps v is frozen (no decay, no input, no spike) while u integrates

    ``vreset`` None means zeros. Lava's LIF takes ``du = i_decay - 1`` (it adds
    a hidden 1) and ``dv = v_decay``; it can only reset to 0.
    """

    i_decay: np.ndarray
    v_decay: np.ndarray
    vth: np.ndarray
    bias_mant: np.ndarray
    bias_exp: np.ndarray
    spiking: bool
    reset: str = "zero"
    state_bits: int = 24
    vreset: np.ndarray | None = None
    refractory: int = 0

    def vreset_or_zeros(self) -> np.ndarray:
        """``vreset`` as an int64 array (zeros when unset)."""
        return np.zeros(self.vth.shape, dtype=np.int64) if self.vreset is None else self.vreset.astype(np.int64)


@dataclass(frozen=True)
class IntWeights:
    """Quantized weights: ``effective = weight << weight_exp``; ``weight`` has the float layout."""

    weight: np.ndarray
    weight_exp: int
    weight_bits: int


@dataclass(frozen=True)
class ConvSpec:
    """A 2-d convolution (PyTorch semantics, channels first). Conv1d uses H = 1.

    ``in_shape``/``out_shape`` are (C, H, W); the populations may have any
    shape with the same number of neurons (e.g. a flattened destination).
    """

    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1


@dataclass(frozen=True)
class Population:
    """A group of neurons sharing one model; see the module docstring for the equations.

    ``params`` holds float arrays of ``shape`` named by ``NEURON_MODELS[model]``
    (time constants in seconds, like every NIR exporter). ``bias`` is a
    constant input added to the projections' sum every step. ``quant`` is
    set by the quantize pass. ``placement`` (int32, one entry per neuron in C
    order, set by the partition pass and refined by the place pass) is the
    global core of each neuron: ``chip * chip.cores + row * mesh_cols + col``
    of the target's hardware description; None for input populations (their
    spikes come from off chip) and before partitioning. It never changes what
    the network computes.
    ``refractory`` (steps, spiking models only) freezes v after each spike:
    it neither decays nor integrates and cannot spike; the current I keeps
    integrating.
    """

    name: str
    shape: tuple[int, ...]
    model: str
    params: Mapping[str, np.ndarray] = field(default_factory=dict)
    reset: str = "zero"
    quant: IntNeuron | None = None
    placement: np.ndarray | None = None
    refractory: int = 0

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    @property
    def spiking(self) -> bool:
        return self.model in SPIKING_MODELS or self.model == "input"


@dataclass(frozen=True)
class Projection:
    """Weighted synapses from population ``src`` to population ``dst``.

    Every projection delays spikes by one step; a spike of ``src`` at step t
    reaches ``dst`` at step ``t + 1 + delay``. Layouts of ``weight``:

    - ``dense``: (dst.size, src.size)
    - ``sparse``: (nnz,), with ``rows`` (dst index) and ``cols`` (src index);
      a (row, col) pair may repeat, e.g. with different delays
    - ``conv``: (C_out, C_in / groups, kH, kW), geometry in ``conv``

    ``delay`` (int steps, same layout as ``weight``) is None for all zeros;
    conv projections carry no per-synapse delay.
    """

    name: str
    src: str
    dst: str
    kind: str
    weight: np.ndarray
    rows: np.ndarray | None = None
    cols: np.ndarray | None = None
    conv: ConvSpec | None = None
    delay: np.ndarray | None = None
    quant: IntWeights | None = None

    @property
    def synapse_count(self) -> int:
        if self.kind == "conv":
            assert self.conv is not None
            # upper bound: border neurons of a padded conv have fewer inputs
            return int(self.weight[0].size * math.prod(self.conv.out_shape))
        return int(self.weight.size)

    @property
    def max_delay(self) -> int:
        return 0 if self.delay is None or self.delay.size == 0 else int(self.delay.max())


@dataclass(frozen=True)
class Graph:
    """A network: populations, projections, which populations are inputs/outputs, and dt (s)."""

    populations: tuple[Population, ...]
    projections: tuple[Projection, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dt: float
    meta: Mapping[str, Any] = field(default_factory=dict)

    def population(self, name: str) -> Population:
        for pop in self.populations:
            if pop.name == name:
                return pop
        raise KeyError(name)

    def projections_into(self, name: str) -> tuple[Projection, ...]:
        return tuple(p for p in self.projections if p.dst == name)

    def projections_from(self, name: str) -> tuple[Projection, ...]:
        return tuple(p for p in self.projections if p.src == name)

    @property
    def is_quantized(self) -> bool:
        return all(p.quant is not None for p in self.projections) and all(
            p.quant is not None for p in self.populations if p.model != "input"
        )


def replace(obj: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` re-exported so passes need one import."""
    return dataclasses.replace(obj, **changes)


# --------------------------------------------------------------------------- check


def conv_output_shape(spec: ConvSpec, kernel: tuple[int, int]) -> tuple[int, int]:
    """Output (H, W) of a convolution, PyTorch's formula."""
    out = []
    for n, k, s, p, d in zip(spec.in_shape[1:], kernel, spec.stride, spec.padding, spec.dilation):
        out.append((n + 2 * p - d * (k - 1) - 1) // s + 1)
    return out[0], out[1]


def _fail(stage: str, what: str, message: str) -> IRError:
    return IRError(f"{what}: {message} (IR check, stage '{stage}')")


def _all_finite(arr: np.ndarray) -> bool:
    """Whether no entry is NaN or infinite, without a temporary as large as ``arr``.

    NaN propagates through min and max, and an infinity is the min or the max.
    """
    if arr.size == 0 or arr.dtype.kind in "iub":
        return True
    return bool(np.isfinite(arr.min()) and np.isfinite(arr.max()))


def _check_population(pop: Population, stage: str) -> None:
    what = f"population '{pop.name}'"
    if pop.model not in NEURON_MODELS:
        raise _fail(stage, what, f"unknown neuron model '{pop.model}' (known: {', '.join(NEURON_MODELS)})")
    if not pop.shape or any(int(n) <= 0 for n in pop.shape):
        raise _fail(stage, what, f"shape {pop.shape} must be non-empty with positive sizes")
    if not isinstance(pop.refractory, int) or pop.refractory < 0:
        raise _fail(stage, what, f"refractory {pop.refractory!r} must be a whole number of steps >= 0")
    if pop.refractory and pop.model not in SPIKING_MODELS:
        raise _fail(stage, what, f"refractory {pop.refractory} needs a spiking model, not '{pop.model}'")
    if pop.reset not in RESET_MODES:
        raise _fail(stage, what, f"reset '{pop.reset}' must be one of {RESET_MODES}")
    needed = NEURON_MODELS[pop.model]
    missing = [k for k in needed if k not in pop.params]
    extra = [k for k in pop.params if k not in needed]
    if missing or extra:
        raise _fail(stage, what, f"model '{pop.model}' needs params {list(needed)}; missing {missing}, unexpected {extra}")
    for key, value in pop.params.items():
        arr = np.asarray(value)
        if arr.shape != tuple(pop.shape):
            raise _fail(stage, what, f"param '{key}' has shape {arr.shape}, population shape is {tuple(pop.shape)}")
        if not np.all(np.isfinite(arr)):
            raise _fail(stage, what, f"param '{key}' contains NaN or infinite values")
        if key.startswith("tau") and np.any(arr <= 0):
            raise _fail(stage, what, f"param '{key}' must be > 0, got min {arr.min():g}")
    if pop.placement is not None:
        arr = np.asarray(pop.placement)
        if pop.model == "input":
            raise _fail(stage, what, "input populations live off chip and take no placement")
        if arr.shape != (pop.size,) or not np.issubdtype(arr.dtype, np.integer) or (arr.size and arr.min() < 0):
            raise _fail(stage, what, f"placement must be a non-negative integer core per neuron, shape ({pop.size},), "
                        f"got {arr.dtype}{arr.shape}")
    if stage == "quantized" and pop.model != "input":
        q = pop.quant
        if q is None:
            raise _fail(stage, what, "has no quantized parameters")
        for key in ("i_decay", "v_decay", "vth", "bias_mant", "bias_exp", "vreset"):
            arr = getattr(q, key)
            if arr is None and key == "vreset":
                continue
            if arr.shape != (pop.size,) or not np.issubdtype(arr.dtype, np.integer):
                raise _fail(stage, what,
                            f"quant.{key} must be an integer array of shape ({pop.size},), got {arr.dtype}{arr.shape}")
        for key in ("i_decay", "v_decay"):
            arr = getattr(q, key)
            if arr.min() < 0 or arr.max() > DECAY_UNITY:
                raise _fail(stage, what, f"quant.{key} must lie in [0, {DECAY_UNITY}], got [{arr.min()}, {arr.max()}]")
        if q.vth.min() < 0:
            raise _fail(stage, what, f"quant.vth must be >= 0, got {q.vth.min()}")
        if q.bias_exp.min() < 0:
            raise _fail(stage, what, f"quant.bias_exp must be >= 0, got {q.bias_exp.min()}")
        if q.reset not in RESET_MODES:
            raise _fail(stage, what, f"quant.reset '{q.reset}' must be one of {RESET_MODES}")
        if not 8 <= q.state_bits <= 32:
            raise _fail(stage, what, f"quant.state_bits {q.state_bits} must lie in [8, 32]")


def _check_projection(proj: Projection, pops: Mapping[str, Population], stage: str) -> None:
    what = f"projection '{proj.name}'"
    for end in (proj.src, proj.dst):
        if end not in pops:
            raise _fail(stage, what, f"refers to unknown population '{end}'")
    src, dst = pops[proj.src], pops[proj.dst]
    if dst.model == "input":
        raise _fail(stage, what, f"targets input population '{dst.name}'")
    if proj.kind not in PROJECTION_KINDS:
        raise _fail(stage, what, f"unknown kind '{proj.kind}' (known: {PROJECTION_KINDS})")
    w = np.asarray(proj.weight)
    if not _all_finite(w):
        raise _fail(stage, what, "weights contain NaN or infinite values")
    if proj.kind == "dense":
        if w.shape != (dst.size, src.size):
            raise _fail(stage, what, f"dense weight shape {w.shape} must be (dst {dst.size}, src {src.size})")
    elif proj.kind == "sparse":
        if proj.rows is None or proj.cols is None or w.ndim != 1:
            raise _fail(stage, what, "sparse projections need 1-d weight, rows and cols")
        if proj.rows.shape != w.shape or proj.cols.shape != w.shape:
            raise _fail(stage, what, f"rows {proj.rows.shape}, cols {proj.cols.shape} and weight {w.shape} must match")
        if w.size and (proj.rows.min() < 0 or proj.rows.max() >= dst.size):
            raise _fail(stage, what, f"row index out of range [0, {dst.size})")
        if w.size and (proj.cols.min() < 0 or proj.cols.max() >= src.size):
            raise _fail(stage, what, f"column index out of range [0, {src.size})")
    else:
        spec = proj.conv
        if spec is None or w.ndim != 4:
            raise _fail(stage, what, "conv projections need a 4-d kernel and a ConvSpec")
        c_in, c_out = spec.in_shape[0], spec.out_shape[0]
        if math.prod(spec.in_shape) != src.size or math.prod(spec.out_shape) != dst.size:
            raise _fail(stage, what, f"conv shapes {spec.in_shape} -> {spec.out_shape} do not match populations "
                        f"'{src.name}' ({src.size}) -> '{dst.name}' ({dst.size})")
        if w.shape[0] != c_out or w.shape[1] * spec.groups != c_in or c_out % spec.groups:
            raise _fail(stage, what, f"kernel {w.shape} does not fit channels {c_in} -> {c_out} with groups {spec.groups}")
        if conv_output_shape(spec, (w.shape[2], w.shape[3])) != tuple(spec.out_shape[1:]):
            raise _fail(stage, what, f"output shape {spec.out_shape} disagrees with the conv geometry")
        if proj.delay is not None:
            raise _fail(stage, what, "conv projections cannot carry per-synapse delays")
    if proj.delay is not None:
        if proj.delay.shape != w.shape or not np.issubdtype(proj.delay.dtype, np.integer):
            raise _fail(stage, what, f"delay must be an integer array shaped like the weights {w.shape}")
        if proj.delay.size and proj.delay.min() < 0:
            raise _fail(stage, what, f"negative delay {proj.delay.min()}")
    if stage == "quantized":
        q = proj.quant
        if q is None:
            raise _fail(stage, what, "has no quantized weights")
        if q.weight.shape != w.shape or not np.issubdtype(q.weight.dtype, np.integer):
            raise _fail(stage, what, f"quant.weight must be integer with shape {w.shape}")
        lo, hi = -(1 << (q.weight_bits - 1)), (1 << (q.weight_bits - 1)) - 1
        if q.weight.size and (q.weight.min() < lo or q.weight.max() > hi):
            raise _fail(stage, what, f"quantized weights [{q.weight.min()}, {q.weight.max()}] leave "
                        f"the {q.weight_bits}-bit range [{lo}, {hi}]")
        if q.weight_exp < 0:
            raise _fail(stage, what, f"weight_exp {q.weight_exp} must be >= 0")


def check(graph: Graph, stage: str = "float") -> Graph:
    """Validate every invariant of ``graph`` for ``stage`` ("float" or "quantized").

    Returns the graph unchanged so passes can ``return check(new, ...)``;
    raises :class:`IRError` naming the population/projection and the rule.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage '{stage}'")
    if not (isinstance(graph.dt, float | int) and math.isfinite(graph.dt) and graph.dt > 0):
        raise IRError(f"graph: dt must be a positive number of seconds, got {graph.dt!r}")
    pops: dict[str, Population] = {}
    for pop in graph.populations:
        if pop.name in pops:
            raise _fail(stage, f"population '{pop.name}'", "name is used twice")
        _check_population(pop, stage)
        pops[pop.name] = pop
    names = set()
    for proj in graph.projections:
        if proj.name in names:
            raise _fail(stage, f"projection '{proj.name}'", "name is used twice")
        names.add(proj.name)
        _check_projection(proj, pops, stage)
    for name in graph.inputs:
        if name not in pops or pops[name].model != "input":
            raise IRError(f"graph: input '{name}' is not an input population")
    for pop in graph.populations:
        if pop.model == "input" and pop.name not in graph.inputs:
            raise IRError(f"graph: input population '{pop.name}' is missing from graph.inputs")
    for name in graph.outputs:
        if name not in pops:
            raise IRError(f"graph: output '{name}' is not a population")
    if not graph.inputs:
        raise IRError("graph: has no input population")
    return graph


# --------------------------------------------------------------------------- text dump


def _summary(arr: np.ndarray) -> str:
    arr = np.asarray(arr)
    if arr.size == 0:
        return "[]"
    if np.all(arr == arr.flat[0]):
        return f"{arr.flat[0]:.6g}" if arr.dtype.kind == "f" else str(arr.flat[0])
    if arr.dtype.kind == "f":
        return f"[{arr.min():.6g} .. {arr.max():.6g}]"
    return f"[{arr.min()} .. {arr.max()}]"


def dump(graph: Graph) -> str:
    """A readable, deterministic text form of ``graph`` (used for golden tests)."""
    lines = [f"graph dt={graph.dt:g} inputs={list(graph.inputs)} outputs={list(graph.outputs)}"]
    for key in sorted(graph.meta):
        lines.append(f"  meta {key} = {graph.meta[key]!r}")
    for pop in graph.populations:
        head = f"population {pop.name} {pop.model} shape={tuple(pop.shape)} n={pop.size}"
        if pop.model in SPIKING_MODELS:
            head += f" reset={pop.reset}"
        if pop.refractory:
            head += f" refractory={pop.refractory}"
        if pop.placement is not None:
            cores = np.unique(pop.placement)
            head += f" placement={len(cores)} cores [{cores[0]}..{cores[-1]}]"
        lines.append(head)
        for key in NEURON_MODELS[pop.model]:
            lines.append(f"    {key} = {_summary(pop.params[key])}")
        if pop.quant is not None:
            q = pop.quant
            lines.append(
                f"    quant: i_decay={_summary(q.i_decay)} v_decay={_summary(q.v_decay)} vth={_summary(q.vth)} "
                f"bias={_summary(q.bias_mant)}<<{_summary(q.bias_exp)} spiking={q.spiking} reset={q.reset} "
                f"state_bits={q.state_bits}"
                + ("" if q.vreset is None or not np.any(q.vreset) else f" vreset={_summary(q.vreset)}")
                + (f" refractory={q.refractory}" if q.refractory else "")
            )
    for proj in graph.projections:
        w = np.asarray(proj.weight)
        head = f"projection {proj.name} {proj.src} -> {proj.dst} {proj.kind} weight{list(w.shape)} {_summary(w)}"
        if proj.kind == "sparse":
            head += f" nnz={w.size}"
        if proj.conv is not None:
            c = proj.conv
            head += (f" in={list(c.in_shape)} out={list(c.out_shape)} stride={list(c.stride)} "
                     f"padding={list(c.padding)} dilation={list(c.dilation)} groups={c.groups}")
        if proj.delay is not None:
            head += f" delay={_summary(proj.delay)}"
        lines.append(head)
        if proj.quant is not None:
            q = proj.quant
            lines.append(f"    quant: {q.weight_bits}-bit {_summary(q.weight)} << {q.weight_exp}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- save / load


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_jsonable(v) for v in value]
    return value


def _pack(graph: Graph) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    arrays: dict[str, np.ndarray] = {}

    def put(key: str, arr: np.ndarray | None) -> str | None:
        if arr is None:
            return None
        arrays[key] = np.asarray(arr)
        return key

    pops = []
    for i, pop in enumerate(graph.populations):
        entry: dict[str, Any] = {
            "name": pop.name, "shape": list(pop.shape), "model": pop.model, "reset": pop.reset,
            "params": {k: put(f"p{i}/{k}", v) for k, v in pop.params.items()},
            "placement": put(f"p{i}/placement", pop.placement),
            "refractory": pop.refractory,
        }
        if pop.quant is not None:
            q = pop.quant
            entry["quant"] = {
                "spiking": q.spiking, "reset": q.reset, "state_bits": q.state_bits,
                **{k: put(f"p{i}/q/{k}", getattr(q, k)) for k in ("i_decay", "v_decay", "vth", "bias_mant", "bias_exp")},
                "vreset": put(f"p{i}/q/vreset", q.vreset),
                "refractory": q.refractory,
            }
        pops.append(entry)
    projs = []
    for i, proj in enumerate(graph.projections):
        entry = {
            "name": proj.name, "src": proj.src, "dst": proj.dst, "kind": proj.kind,
            "weight": put(f"j{i}/weight", proj.weight), "rows": put(f"j{i}/rows", proj.rows),
            "cols": put(f"j{i}/cols", proj.cols), "delay": put(f"j{i}/delay", proj.delay),
            "conv": None if proj.conv is None else _to_jsonable(dataclasses.asdict(proj.conv)),
        }
        if proj.quant is not None:
            entry["quant"] = {"weight": put(f"j{i}/q/weight", proj.quant.weight),
                              "weight_exp": proj.quant.weight_exp, "weight_bits": proj.quant.weight_bits}
        projs.append(entry)
    header = {
        "format": "snnc-graph", "format_version": FORMAT_VERSION, "dt": graph.dt,
        "inputs": list(graph.inputs), "outputs": list(graph.outputs), "meta": _to_jsonable(dict(graph.meta)),
        "populations": pops, "projections": projs,
    }
    return header, arrays


def to_bytes(graph: Graph) -> bytes:
    """Serialise ``graph`` to the bytes of an ``.npz`` archive (header JSON + arrays)."""
    header, arrays = _pack(graph)
    buf = io.BytesIO()
    np.savez(buf, __header__=np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8), **arrays)
    return buf.getvalue()


def graph_hash(graph: Graph) -> str:
    """sha256 of the graph's content (header and every array), stable across saves."""
    header, arrays = _pack(graph)
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for key in sorted(arrays):
        arr = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}:{arr.dtype.str}:{arr.shape}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def save(graph: Graph, path: str | Path) -> None:
    """Write ``graph`` to ``path`` atomically (a temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(to_bytes(graph))
    tmp.replace(path)


def _unpack(header: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> Graph:
    def get(key: str | None) -> np.ndarray | None:
        return None if key is None else np.asarray(arrays[key])

    pops = []
    for entry in header["populations"]:
        quant = None
        if "quant" in entry:
            q = entry["quant"]
            quant = IntNeuron(
                **{k: get(q[k]) for k in ("i_decay", "v_decay", "vth", "bias_mant", "bias_exp")},
                spiking=bool(q["spiking"]), reset=q["reset"], state_bits=int(q["state_bits"]),
                vreset=get(q.get("vreset")),
                refractory=int(q.get("refractory", 0)),
            )
        pops.append(Population(
            name=entry["name"], shape=tuple(int(n) for n in entry["shape"]), model=entry["model"],
            params={k: get(v) for k, v in entry["params"].items()}, reset=entry["reset"], quant=quant,
            placement=get(entry["placement"]),
            refractory=int(entry.get("refractory", 0)),
        ))
    projs = []
    for entry in header["projections"]:
        conv = None
        if entry["conv"] is not None:
            conv = ConvSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in entry["conv"].items()})
        quant = None
        if "quant" in entry:
            q = entry["quant"]
            quant = IntWeights(weight=get(q["weight"]), weight_exp=int(q["weight_exp"]), weight_bits=int(q["weight_bits"]))
        projs.append(Projection(
            name=entry["name"], src=entry["src"], dst=entry["dst"], kind=entry["kind"], weight=get(entry["weight"]),
            rows=get(entry["rows"]), cols=get(entry["cols"]), conv=conv, delay=get(entry["delay"]), quant=quant,
        ))
    return Graph(
        populations=tuple(pops), projections=tuple(projs), inputs=tuple(header["inputs"]),
        outputs=tuple(header["outputs"]), dt=float(header["dt"]), meta=header["meta"],
    )


def load(path: str | Path) -> Graph:
    """Read a graph written by :func:`save`; refuses unknown format versions."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "__header__" not in npz.files:
                raise IRError(f"{path}: not an snnc graph file (no header)")
            header = json.loads(npz["__header__"].tobytes().decode())
            arrays = {k: npz[k] for k in npz.files if k != "__header__"}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, json.JSONDecodeError) as exc:
        if isinstance(exc, IRError):
            raise
        raise IRError(f"{path}: cannot read graph file ({exc})") from exc
    version = header.get("format_version")
    if header.get("format") != "snnc-graph" or version != FORMAT_VERSION:
        raise IRError(f"{path}: graph format version {version!r} is not supported; this snnc reads version {FORMAT_VERSION}")
    try:
        return _unpack(header, arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise IRError(f"{path}: graph file is malformed ({exc})") from exc
