"""The CPU backend: the executable definition of snnc's quantized semantics (the golden reference).

Every other backend is tested against this file bit for bit;
``docs/semantics.md`` is the same rules in prose, with worked examples and
the mapping onto Lava.

State and time
--------------
Every non-input neuron holds two integers, the current ``u`` and the voltage
``v``, both 0 before step 0. Steps are t = 0, 1, 2, ... (Lava's
``time_step`` is t + 1). At each step, in this order:

1. Input populations: ``s[t] = stimulus[t]`` (0/1).
2. Every other population gathers its synaptic input from *past* spikes only
   (so the order in which populations update does not matter)::

       a_in[n] = sum over projections p into the population,
                 over synapses (i -> n, w, d) of p:   (w << weight_exp_p) * s_src[t - 1 - d][i]

   in exact integers; spikes before step 0 are 0. Every projection delays by
   one step: an input spike at step t reaches layer 1 at t + 1 and layer 2 at
   t + 2; a per-synapse delay d adds d steps (t + 1 + d); a recurrent
   projection is an ordinary one-step projection.
3. Integrate (``rz(p / 4096) = sign(p) * (|p| >> 12)`` rounds toward zero,
   p computed in int64; ``sat`` clips to +-(2**(state_bits - 1) - 1) and
   every clipped u and v is counted)::

       u = sat(rz(u * (4096 - i_decay) / 4096) + (a_in << 6))
       v = sat(rz(v * (4096 - v_decay) / 4096) + u + (bias_mant << bias_exp))

   v uses the u of the same step. ``i_decay = 4096`` makes u the step's input
   alone; ``v_decay = 0`` means no leak. The bias is not shifted by 6.
4. Spiking populations (``quant.spiking``): ``s = v > (vth << 6)`` (strict),
   then where s: ``v = vreset << 6`` (reset "zero"), ``v -= (vth - vreset) << 6``
   (reset "subtract") or v unchanged (reset "none"), clipped to the state
   range again; ``vreset`` is 0 unless set. u is never reset. Non-spiking
   populations never spike; their output is v. For ``refractory`` steps
   after a spike, v is frozen: it keeps its post-reset value (no decay, no u,
   no bias), cannot spike and is not counted as clipped; u integrates as usual.
5. Record s, u and v, after the reset.

Conv projections follow PyTorch's conv2d (zero padding, stride, dilation,
groups; neurons in C order of ConvSpec's (C, H, W))::

    in[co, y, x] += W[co, ci', ky, kx] * src[g*Cin_g + ci', y*sy - py + ky*dy, x*sx - px + kx*dx]

with g = co // (C_out / groups), out-of-range source pixels contributing 0.

Edges: states saturate at the state width (Lava wraps u once at 24 bits and
the Loihi hardware wraps modulo 2**24; the quantizer keeps states in range so
all agree where it matters, and the counts in ``last_saturations`` /
:func:`simulate_with_stats` show where they may not). Everything else is exact:
``unsupported`` refuses a graph whose bias, threshold or summed input could
overflow int64.

Implementation
--------------
:class:`_Program` flattens the graph once (at compile/load, or per
:func:`simulate` call) into global neuron arrays, contiguous transposed rows
for dense projections without delays, and one CSR fan-out table (built with
vectorised numpy, conv by index arithmetic) for sparse, conv and delayed
synapses. ``cpu_kernels.run_batch`` then runs the whole time loop in numba,
event-driven, with samples of a batch in parallel.

Saturation counts: ``CpuArtifact.run`` stores ``{population: {"u": n, "v": n}}``
(clipped neuron-steps, summed over the batch) in ``artifact.last_saturations``;
:func:`simulate_with_stats` returns the same dict next to the rasters.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from snnc.backends import base
from snnc.compiler import ir
from snnc.runtime.raster import Raster

NAME = "cpu"

_INT32_LIMIT = 1 << 31


def available() -> str | None:
    """None when the backend can run here, else why not (numba is its only requirement)."""
    if importlib.util.find_spec("numba") is None:
        return "numba is not installed (pip install numba)"
    return None


# --------------------------------------------------------------------------- support checks


def _effective_weights(proj: ir.Projection) -> np.ndarray:
    """``weight << weight_exp`` as int64 (range-checked by ``base.int64_reasons`` first)."""
    assert proj.quant is not None
    return np.left_shift(np.asarray(proj.quant.weight, dtype=np.int64), proj.quant.weight_exp)


def _reasons(graph: ir.Graph) -> list[str]:
    return base.quantized_reasons(graph) or base.int64_reasons(graph, "the CPU backend")


def unsupported(graph: ir.Graph, hw: Any) -> list[str]:
    """Reasons this backend cannot run ``graph``; [] when it can.

    The CPU reference runs any valid quantized graph whose integers fit its
    int64 arithmetic (state_bits <= 32, see the module docstring); ``hw`` is
    not consulted: the graph's quant fields carry every number format.
    """
    return _reasons(graph)


# --------------------------------------------------------------------------- flattening


@dataclass(frozen=True)
class _Program:
    """A quantized graph flattened for ``cpu_kernels.run_batch`` (array meanings in that module).

    Population ``names[i]`` owns global neurons ``offsets[name]`` to
    ``offsets[name] + sizes[name]``; ``n_slots`` is the accumulator ring
    length (max delay + 1).
    """

    names: tuple[str, ...]
    offsets: dict[str, int]
    sizes: dict[str, int]
    arrays: dict[str, np.ndarray] = field(repr=False)
    n_slots: int

    @property
    def n_total(self) -> int:
        return int(self.arrays["keep_u"].size)


def _flatten(graph: ir.Graph) -> _Program:
    """Build the kernel's arrays from a checked quantized graph (vectorised; no per-synapse Python)."""
    names = tuple(p.name for p in graph.populations)
    sizes = {p.name: p.size for p in graph.populations}
    offsets: dict[str, int] = {}
    total = 0
    for pop in graph.populations:
        offsets[pop.name] = total
        total += pop.size

    n_pops = len(graph.populations)
    pop_start = np.asarray([offsets[p.name] for p in graph.populations], dtype=np.int64)
    pop_size = np.asarray([p.size for p in graph.populations], dtype=np.int64)
    pop_in_col = np.full(n_pops, -1, dtype=np.int64)
    pop_spiking = np.zeros(n_pops, dtype=np.bool_)
    pop_limit = np.zeros(n_pops, dtype=np.int64)
    for index, pop in enumerate(graph.populations):
        if pop.model != "input":
            assert pop.quant is not None
            pop_limit[index] = (1 << (pop.quant.state_bits - 1)) - 1
            pop_spiking[index] = pop.quant.spiking
    params = base.neuron_parameters(graph, offsets, total)  # input neurons keep zeros: they are never updated
    keep_u, keep_v, bias, vth = params["keep_u"], params["keep_v"], params["bias"], params["vth"]
    reset_keep, reset_add, refractory = params["reset_keep"], params["reset_add"], params["refractory"]
    # the stimulus matrix holds the inputs side by side in graph.inputs order
    column = 0
    for name in graph.inputs:
        pop_in_col[names.index(name)] = column
        column += sizes[name]

    bound = max((float(b.max()) for b in base.input_bounds(graph).values() if b.size), default=0.0)
    acc_dtype = np.int32 if bound < _INT32_LIMIT else np.int64

    rows_meta: list[tuple[int, int, int, int, int]] = []
    rows_w: list[np.ndarray] = []
    rows_len = 0
    fan_src: list[np.ndarray] = []
    fan_dst: list[np.ndarray] = []
    fan_w: list[np.ndarray] = []
    fan_delay: list[np.ndarray] = []
    for proj in graph.projections:
        src0, dst0 = offsets[proj.src], offsets[proj.dst]
        weight = _effective_weights(proj)
        if proj.kind == "dense" and proj.max_delay == 0:
            transposed = np.ascontiguousarray(weight.T, dtype=acc_dtype)  # (src, dst): one row per source neuron
            rows_meta.append((src0, sizes[proj.src], dst0, sizes[proj.dst], rows_len))
            rows_w.append(transposed.ravel())
            rows_len += transposed.size
            continue
        if proj.kind == "dense":
            dst, src = np.nonzero(weight)
            w = weight[dst, src]
            delay = np.asarray(proj.delay, dtype=np.int64)[dst, src]
        elif proj.kind == "sparse":
            assert proj.rows is not None and proj.cols is not None
            keep = weight != 0
            dst = np.asarray(proj.rows, dtype=np.int64)[keep]
            src = np.asarray(proj.cols, dtype=np.int64)[keep]
            w = weight[keep]
            delay = (np.zeros(w.size, dtype=np.int64) if proj.delay is None
                     else np.asarray(proj.delay, dtype=np.int64)[keep])
        else:
            assert proj.conv is not None
            src, dst, w = base.conv_synapses(proj.conv, weight)
            delay = np.zeros(w.size, dtype=np.int64)
        fan_src.append(src + src0)
        fan_dst.append(dst + dst0)
        fan_w.append(w)
        fan_delay.append(delay)

    if fan_src:
        src_all = np.concatenate(fan_src)
        delay_all = np.concatenate(fan_delay)
        max_delay = int(delay_all.max()) if delay_all.size else 0
        # a delayed synapse targets ring row (t + 1 + d): store d rows ahead as one offset d * N + dst
        target_all = delay_all * total + np.concatenate(fan_dst)
        # grouped by source for the CSR, targets ascending within a source for cache locality
        order = np.lexsort((target_all, src_all))
        fan_ptr = np.zeros(total + 1, dtype=np.int64)
        np.cumsum(np.bincount(src_all, minlength=total), out=fan_ptr[1:])
        fan_target = target_all[order]
        fan_w_arr = np.concatenate(fan_w)[order].astype(acc_dtype)
    else:
        max_delay = 0
        fan_ptr = np.zeros(total + 1, dtype=np.int64)
        fan_target = np.zeros(0, dtype=np.int64)
        fan_w_arr = np.zeros(0, dtype=acc_dtype)

    meta = np.asarray(rows_meta, dtype=np.int64).reshape(-1, 5)
    arrays = {
        "pop_start": pop_start, "pop_size": pop_size, "pop_in_col": pop_in_col, "pop_spiking": pop_spiking,
        "pop_limit": pop_limit, "reset_keep": reset_keep, "reset_add": reset_add, "refractory": refractory,
        "keep_u": keep_u, "keep_v": keep_v, "bias": bias, "vth": vth,
        "rows_src_off": np.ascontiguousarray(meta[:, 0]), "rows_src_n": np.ascontiguousarray(meta[:, 1]),
        "rows_dst_off": np.ascontiguousarray(meta[:, 2]), "rows_dst_n": np.ascontiguousarray(meta[:, 3]),
        "rows_w_off": np.ascontiguousarray(meta[:, 4]),
        "rows_w": np.concatenate(rows_w) if rows_w else np.zeros(0, dtype=acc_dtype),
        "fan_ptr": fan_ptr, "fan_target": fan_target, "fan_w": fan_w_arr,
    }
    return _Program(names=names, offsets=offsets, sizes=sizes, arrays=arrays, n_slots=max_delay + 1)


# --------------------------------------------------------------------------- running


def _execute(program: _Program, graph: ir.Graph, stimulus: Mapping[str, np.ndarray], steps: int | None,
             record_state: bool) -> tuple[dict[str, Raster], dict[str, dict[str, int]]]:
    """Run ``program`` on ``stimulus``; rasters for every population and the saturation counts."""
    # imported here so that importing the backend (e.g. for available()) never compiles or loads numba code;
    # relative because cpu_kernels is this backend's own half, not another backend
    from . import cpu_kernels

    normalized, t_steps, batched = base.normalize_stimulus(graph, stimulus, steps)
    batch = next(iter(normalized.values())).shape[0]
    stim = np.concatenate([normalized[name] for name in graph.inputs], axis=2)
    a = program.arrays
    # u and v are recorded per population into contiguous columns; non-spiking populations always report v
    pop_u_col = np.full(len(program.names), -1, dtype=np.int64)
    pop_v_col = np.full(len(program.names), -1, dtype=np.int64)
    u_cols = v_cols = 0
    for index, name in enumerate(program.names):
        is_input = a["pop_in_col"][index] >= 0
        if record_state:
            pop_u_col[index] = u_cols
            u_cols += program.sizes[name]
        if record_state or not (is_input or a["pop_spiking"][index]):
            pop_v_col[index] = v_cols
            v_cols += program.sizes[name]
    spikes = np.zeros((batch, t_steps, program.n_total), dtype=np.bool_)
    u_out = np.zeros((batch, t_steps, u_cols), dtype=np.int64)
    v_out = np.zeros((batch, t_steps, v_cols), dtype=np.int64)
    saturations = np.zeros((batch, len(program.names), 2), dtype=np.int64)
    cpu_kernels.run_batch(
        stim, a["pop_start"], a["pop_size"], a["pop_in_col"], a["pop_spiking"], a["pop_limit"],
        pop_u_col, pop_v_col, a["keep_u"], a["keep_v"], a["bias"], a["vth"], a["reset_keep"], a["reset_add"], a["refractory"],
        a["rows_src_off"], a["rows_src_n"], a["rows_dst_off"], a["rows_dst_n"], a["rows_w_off"], a["rows_w"],
        a["fan_ptr"], a["fan_target"], a["fan_w"], program.n_slots,
        spikes, u_out, v_out, saturations,
    )
    rasters: dict[str, Raster] = {}
    for index, name in enumerate(program.names):
        size = program.sizes[name]
        spike = spikes[:, :, program.offsets[name]:program.offsets[name] + size]
        u = None if pop_u_col[index] < 0 else u_out[:, :, pop_u_col[index]:pop_u_col[index] + size]
        v = None if pop_v_col[index] < 0 else v_out[:, :, pop_v_col[index]:pop_v_col[index] + size]
        if not batched:
            spike, u, v = spike[0], None if u is None else u[0], None if v is None else v[0]
        rasters[name] = Raster(spikes=spike, v=v, u=u)
    totals = saturations.sum(axis=0)
    counts = {name: {"u": int(totals[i, 0]), "v": int(totals[i, 1])} for i, name in enumerate(program.names)}
    return rasters, counts


def _checked(graph: ir.Graph) -> ir.Graph:
    reasons = _reasons(graph)
    if reasons:
        raise ValueError("the CPU backend cannot run this graph: " + "; ".join(reasons))
    return graph


def simulate_with_stats(graph: ir.Graph, stimulus: Mapping[str, np.ndarray], steps: int | None = None,
                        record_state: bool = False) -> tuple[dict[str, Raster], dict[str, dict[str, int]]]:
    """:func:`simulate`, plus ``{population: {"u": n, "v": n}}``: clipped neuron-steps summed over the batch."""
    return _execute(_flatten(_checked(graph)), graph, stimulus, steps, record_state)


def simulate(graph: ir.Graph, stimulus: Mapping[str, np.ndarray], steps: int | None = None,
             record_state: bool = False) -> dict[str, Raster]:
    """Run a quantized graph without an artifact; a Raster for every population (inputs included).

    ``stimulus``: input name -> 0/1 array (T, *shape) or (T, N), or with a
    leading batch dimension B; rasters are then (T, N) or (B, T, N).
    Non-spiking populations always carry v; ``record_state`` adds u and v
    (int64) to every population (inputs: zeros). ``steps`` extends with
    silence or cuts the stimulus.
    """
    return simulate_with_stats(graph, stimulus, steps, record_state)[0]


@dataclass
class CpuArtifact:
    """A compiled CPU artifact: the directory, its manifest, the quantized graph and its flattened form.

    ``last_saturations`` holds the saturation counts of the latest
    :meth:`run` (None before the first).
    """

    path: Path
    manifest: Mapping[str, Any]
    graph: ir.Graph
    _program: _Program = field(repr=False)
    last_saturations: dict[str, dict[str, int]] | None = None

    def run(self, stimulus: Mapping[str, np.ndarray], steps: int | None = None,
            record_state: bool = False) -> dict[str, Raster]:
        """Run on ``stimulus``; see :func:`simulate` for shapes and what each Raster carries."""
        rasters, self.last_saturations = _execute(self._program, self.graph, stimulus, steps, record_state)
        return rasters


def compile(graph: ir.Graph, hw: Any, out_dir: str | Path) -> CpuArtifact:  # noqa: A001 - the backend contract
    """Write ``out_dir`` (manifest + quantized graph.npz, the whole artifact) and return it ready to run.

    ``hw`` is used only for its ``name``, recorded as the manifest's target.
    """
    program = _flatten(_checked(graph))
    path = base.write_artifact(out_dir, NAME, graph, hw.name, files={})
    manifest = json.loads((path / base.MANIFEST).read_text())
    return CpuArtifact(path=path, manifest=manifest, graph=graph, _program=program)


def load(out_dir: str | Path) -> CpuArtifact:
    """Re-open a compiled directory; every file hash is verified (``base.ArtifactError`` on tampering)."""
    manifest, graph = base.read_artifact(out_dir)
    if manifest.get("backend") != NAME:
        raise base.ArtifactError(f"{out_dir}: compiled for backend '{manifest.get('backend')}', not '{NAME}'")
    return CpuArtifact(path=Path(out_dir), manifest=manifest, graph=graph, _program=_flatten(_checked(graph)))
