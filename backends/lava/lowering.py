"""Lower a quantized snnc graph to a Lava process description: ``network.json`` plus ``network.npz`` arrays.

The description is plain data that ``run_lava.py`` turns into Lava processes
(see its docstring). Choices, each keeping Lava's bit-accurate models equal
to the CPU reference (``docs/semantics.md``, "Mapping onto Lava"):

- **Segments.** Lava's ``LIF`` holds ``du``, ``dv`` and ``vth`` as scalars, so
  a population whose neurons differ in (i_decay, v_decay, vth) becomes one
  ``LIF`` per distinct triple; ``bias_mant``/``bias_exp`` stay per neuron.
  ``du = i_decay - 1`` (Lava adds a hidden 1), ``dv = v_decay``. A
  non-spiking population gets the largest threshold, 131071, and the runner
  checks that it never fires.
- **Weights.** A b-bit mantissa ``w`` with exponent ``e`` becomes Lava weights
  ``w << k`` with ``num_weight_bits = b`` and ``weight_exp = e - k``, where
  ``k = 8 - b + isMixed``: Lava's clip and LSB truncation then leave every
  weight unchanged, and the (possibly negative) exponent shifts a sum of
  multiples of 2**k exactly. b is the fewest bits that hold the
  connection's values in its sign mode.
- **Synapses.** Dense matrices up to ``dense_limit`` entries go to ``Dense``
  (``DelayDense`` with delays), larger ones to ``Sparse`` / ``DelaySparse``.
  A (dst, src) pair that repeats in a sparse projection is split over
  several connections, since a matrix holds one weight (and delay) per pair.
- **Conv.** A conv projection becomes Lava's ``Conv`` when its weight exponent
  is 0 (Lava's fixed-point ``Conv`` ignores ``weight_exp``), both populations
  are one segment, and the geometry fits Lava's int8 fields; its populations
  then live in Lava's (W, H, C) layout, flattened through port transposes
  where they meet dense connections. Otherwise its synapses are enumerated
  and lowered like any other (Dense when small, Sparse when large).
- **Placement.** Recorded per population (the cores its neurons use); open
  Lava has no way to pin a process to a core, so the Loihi compiler
  (lava-loihi) places processes itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from snnc.backends import base
from snnc.compiler import ir

LAVA_VTH_MAX = (1 << 17) - 1
"""Largest LIF threshold mantissa (17 bits); non-spiking populations get it."""
CONV_FIELD_MAX = 127
"""Lava's Conv stores kernel size, stride, padding, dilation and groups as int8."""
CONV_SUM_LIMIT = 1 << 23
"""Lava's fixed-point Conv clamps its output to signed 24 bits."""
DENSE_LIMIT = 1 << 22
"""Connections with at most this many (dst x src) entries use Dense/DelayDense, larger ones Sparse."""


def weight_format(w: np.ndarray, weight_exp: int) -> tuple[np.ndarray, int, int]:
    """(Lava weights, num_weight_bits, Lava weight_exp) that reproduce mantissas ``w`` << ``weight_exp`` exactly."""
    w = np.asarray(w, dtype=np.int64)
    lo, hi = int(w.min()), int(w.max())
    mixed = int(lo < 0 < hi)
    if mixed:
        bits = max((-lo - 1).bit_length(), hi.bit_length()) + 1
    else:
        bits = max(1, max(hi, -lo).bit_length())
    shift = 8 - bits + mixed
    return (w << shift).astype(np.int32), bits, int(weight_exp) - shift


def _segments(pop: ir.Population) -> tuple[np.ndarray, np.ndarray]:
    """(unique (i_decay, v_decay, vth) rows, segment number of each neuron)."""
    q = pop.quant
    assert q is not None
    vth = q.vth if q.spiking else np.full(pop.size, LAVA_VTH_MAX)
    keys = np.stack([np.asarray(q.i_decay, np.int64), np.asarray(q.v_decay, np.int64), np.asarray(vth, np.int64)],
                    axis=1)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    return unique, inverse.reshape(-1)


def _lava_conv_ok(proj: ir.Projection, single: dict[str, bool], shapes: dict[str, tuple[int, ...]]) -> bool:
    spec, quant = proj.conv, proj.quant
    assert spec is not None and quant is not None
    kernel = np.asarray(quant.weight, dtype=np.int64)
    fields = (*kernel.shape[2:], *spec.stride, *spec.padding, *spec.dilation, spec.groups)
    want_src, want_dst = tuple(reversed(spec.in_shape)), tuple(reversed(spec.out_shape))
    return (quant.weight_exp == 0 and single[proj.src] and single[proj.dst] and proj.src != proj.dst
            and max(fields) <= CONV_FIELD_MAX
            and int(np.abs(kernel).reshape(kernel.shape[0], -1).sum(axis=1).max()) < CONV_SUM_LIMIT
            and shapes.get(proj.src, want_src) == want_src and shapes.get(proj.dst, want_dst) == want_dst)


def _synapses(proj: ir.Projection) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(src, dst, mantissa, delay) of every non-zero synapse, population-flat indices."""
    assert proj.quant is not None
    weight = np.asarray(proj.quant.weight, dtype=np.int64)
    if proj.kind == "dense":
        dst, src = np.nonzero(weight)
        delay = np.zeros(dst.size, np.int64) if proj.delay is None else np.asarray(proj.delay, np.int64)[dst, src]
        return src, dst, weight[dst, src], delay
    if proj.kind == "sparse":
        assert proj.rows is not None and proj.cols is not None
        keep = weight != 0
        delay = np.zeros(weight.size, np.int64) if proj.delay is None else np.asarray(proj.delay, np.int64)
        return (np.asarray(proj.cols, np.int64)[keep], np.asarray(proj.rows, np.int64)[keep], weight[keep],
                delay[keep])
    assert proj.conv is not None
    src, dst, w = base.conv_synapses(proj.conv, weight)
    return src, dst, w, np.zeros(src.size, np.int64)


def _repeat_rank(src: np.ndarray, dst: np.ndarray, n_src: int) -> np.ndarray:
    """For each synapse, how many earlier synapses share its (dst, src) pair (0 for the first)."""
    key = dst * n_src + src
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, key.size]))
    rank = np.empty(key.size, np.int64)
    rank[order] = np.arange(key.size) - run_start
    return rank


class _Builder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, key: str, array: np.ndarray) -> str:
        self.arrays[key] = np.ascontiguousarray(array)
        return key


def lower(graph: ir.Graph, dense_limit: int = DENSE_LIMIT) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The Lava description of quantized ``graph`` (checked by ``unsupported`` first) and its arrays."""
    arrays = _Builder()
    seg_keys: dict[str, np.ndarray] = {}
    seg_of: dict[str, np.ndarray] = {}
    for pop in graph.populations:
        if pop.model == "input":
            seg_keys[pop.name], seg_of[pop.name] = np.zeros((1, 0), np.int64), np.zeros(pop.size, np.int64)
        else:
            seg_keys[pop.name], seg_of[pop.name] = _segments(pop)
    single = {name: len(keys) == 1 for name, keys in seg_keys.items()}
    seg_sizes = {name: np.bincount(of) for name, of in seg_of.items()}
    shapes: dict[str, tuple[int, ...]] = {}
    lava_conv: set[str] = set()
    for proj in graph.projections:
        if proj.kind == "conv" and _lava_conv_ok(proj, single, shapes):
            assert proj.conv is not None
            shapes[proj.src] = tuple(reversed(proj.conv.in_shape))
            shapes[proj.dst] = tuple(reversed(proj.conv.out_shape))
            lava_conv.add(proj.name)

    populations = []
    seg_ids: dict[str, list[str]] = {}
    local_index: dict[str, np.ndarray] = {}
    for pop in graph.populations:
        keys, of = seg_keys[pop.name], seg_of[pop.name]
        ids = [pop.name] if len(keys) == 1 else [f"{pop.name}#{k}" for k in range(len(keys))]
        seg_ids[pop.name] = ids
        local = np.zeros(pop.size, np.int64)
        segments = []
        for k, seg_id in enumerate(ids):
            members = np.flatnonzero(of == k)
            local[members] = np.arange(members.size)
            seg: dict[str, Any] = {"id": seg_id, "size": int(members.size),
                                   "lava_shape": list(shapes.get(pop.name, (int(members.size),))),
                                   "index": None if len(ids) == 1 else arrays.add(f"{seg_id}/index", members)}
            if pop.model != "input":
                q = pop.quant
                assert q is not None
                i_decay, v_decay, vth = (int(x) for x in keys[k])
                seg.update(du=i_decay - 1, dv=v_decay, vth=vth,
                           bias_mant=arrays.add(f"{seg_id}/bias_mant", np.asarray(q.bias_mant, np.int32)[members]),
                           bias_exp=arrays.add(f"{seg_id}/bias_exp", np.asarray(q.bias_exp, np.int32)[members]))
            segments.append(seg)
        local_index[pop.name] = local
        entry: dict[str, Any] = {"name": pop.name, "kind": "input" if pop.model == "input" else "lif",
                                 "model": pop.model, "shape": list(pop.shape), "size": pop.size,
                                 "spiking": bool(pop.quant.spiking) if pop.quant is not None else True,
                                 "segments": segments}
        if pop.placement is not None:
            entry["cores"] = sorted({int(c) for c in np.unique(pop.placement)})
        populations.append(entry)

    connections: list[dict[str, Any]] = []
    for proj in graph.projections:
        assert proj.quant is not None
        if proj.name in lava_conv:
            assert proj.conv is not None
            kernel = np.asarray(proj.quant.weight, np.int32)[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)
            cid = f"{proj.name}"
            connections.append({"id": cid, "projection": proj.name, "kind": "conv", "src": proj.src, "dst": proj.dst,
                                "weight": arrays.add(f"{cid}/weight", kernel),
                                "stride": list(reversed(proj.conv.stride)),
                                "padding": list(reversed(proj.conv.padding)),
                                "dilation": list(reversed(proj.conv.dilation)), "groups": proj.conv.groups})
            continue
        src_pop = graph.population(proj.src)
        src, dst, w, delay = _synapses(proj)
        if src.size == 0:
            continue
        src_seg, dst_seg = seg_of[proj.src][src], seg_of[proj.dst][dst]
        rank = _repeat_rank(src, dst, src_pop.size)
        groups = np.stack([src_seg, dst_seg, rank], axis=1)
        unique, which = np.unique(groups, axis=0, return_inverse=True)
        which = which.reshape(-1)
        for g, (s_seg, d_seg, r) in enumerate(unique):
            sel = which == g
            ls, ld = local_index[proj.src][src[sel]], local_index[proj.dst][dst[sel]]
            src_id, dst_id = seg_ids[proj.src][s_seg], seg_ids[proj.dst][d_seg]
            n_src, n_dst = int(seg_sizes[proj.src][s_seg]), int(seg_sizes[proj.dst][d_seg])
            lava_w, bits, lava_exp = weight_format(w[sel], proj.quant.weight_exp)
            d = delay[sel]
            cid = proj.name if len(unique) == 1 else f"{proj.name}#{s_seg}.{d_seg}.{r}"
            conn: dict[str, Any] = {"id": cid, "projection": proj.name, "src": src_id, "dst": dst_id,
                                    "n_src": n_src, "n_dst": n_dst, "weight_exp": lava_exp,
                                    "num_weight_bits": bits, "max_delay": int(d.max())}
            delayed = bool(d.any())
            if n_src * n_dst <= dense_limit:
                matrix = np.zeros((n_dst, n_src), np.int32)
                matrix[ld, ls] = lava_w
                conn.update(kind="delay_dense" if delayed else "dense", weight=arrays.add(f"{cid}/weight", matrix))
                if delayed:
                    delays = np.zeros((n_dst, n_src), np.int64)
                    delays[ld, ls] = d
                    conn["delay"] = arrays.add(f"{cid}/delay", delays)
            else:
                conn.update(kind="delay_sparse" if delayed else "sparse",
                            rows=arrays.add(f"{cid}/rows", ld.astype(np.int32)),
                            cols=arrays.add(f"{cid}/cols", ls.astype(np.int32)),
                            weight=arrays.add(f"{cid}/weight", lava_w))
                if delayed:
                    conn["delay"] = arrays.add(f"{cid}/delay", d.astype(np.int64))
            connections.append(conn)
    description = {"format": "snnc-lava-network", "version": 1, "graph_hash": ir.graph_hash(graph),
                   "dt": graph.dt, "inputs": list(graph.inputs), "outputs": list(graph.outputs),
                   "populations": populations, "connections": connections}
    return description, arrays.arrays
