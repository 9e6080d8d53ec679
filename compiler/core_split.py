"""Split a placed graph into one population per (population, core): the graph the hardware runs.

Partitioning assigns every on-chip neuron a core (``Population.placement``),
but a core is the unit that hardware and per-core runtimes instantiate: Lava
builds one LIF process per core, the FPGA core table holds one entry per
core. Backends like those lower from the graph :func:`split` returns, where
every population lives on exactly one core and every projection joins one
source piece to one destination piece.

The split graph computes exactly what the original computes: same neurons,
same synapses, same integer weights and delays, only renumbered. Running the
CPU reference on both and reassembling the split rasters with :func:`merge`
is how the tests prove that partitioning never changes the network's output.

Naming: population ``p`` on core 3 becomes ``p@c3``; projection ``w`` from a
piece on core 1 (or from an input population, ``in``) to a piece on core 3
becomes ``w@1>3``. Input populations live off chip and are kept whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from snnc.compiler import conv, ir


@dataclass(frozen=True)
class _Pieces:
    """How one original population is cut: per piece its name, core label and original neuron indices.

    ``piece_of[i]`` and ``local_of[i]`` say which piece neuron ``i`` went to and its index there.
    """

    names: tuple[str, ...]
    cores: tuple[str, ...]
    indices: tuple[np.ndarray, ...]
    piece_of: np.ndarray
    local_of: np.ndarray


def _cut(pop: ir.Population) -> _Pieces:
    if pop.model == "input":
        everything = np.arange(pop.size, dtype=np.int64)
        return _Pieces((pop.name,), ("in",), (everything,), np.zeros(pop.size, dtype=np.int64), everything)
    if pop.placement is None:
        raise ValueError(f"population '{pop.name}' has no placement; run the partition pass before "
                         "splitting the graph into per-core populations")
    placement = np.asarray(pop.placement, dtype=np.int64)
    cores = np.unique(placement)
    piece_of = np.searchsorted(cores, placement)
    local_of = np.zeros(pop.size, dtype=np.int64)
    indices = []
    for k in range(cores.size):
        members = np.flatnonzero(piece_of == k)
        local_of[members] = np.arange(members.size)
        indices.append(members)
    return _Pieces(
        names=tuple(f"{pop.name}@c{core}" for core in cores),
        cores=tuple(str(core) for core in cores),
        indices=tuple(indices),
        piece_of=piece_of,
        local_of=local_of,
    )


def _piece_population(pop: ir.Population, name: str, core: str, members: np.ndarray) -> ir.Population:
    quant = pop.quant
    if quant is not None:
        quant = ir.replace(
            quant,
            **{key: np.asarray(getattr(quant, key))[members]
               for key in ("i_decay", "v_decay", "vth", "bias_mant", "bias_exp")},
            vreset=None if quant.vreset is None else np.asarray(quant.vreset)[members],
        )
    return ir.replace(
        pop,
        name=name,
        shape=(int(members.size),),
        params={key: np.asarray(value).ravel()[members] for key, value in pop.params.items()},
        quant=quant,
        placement=np.full(members.size, int(core), dtype=np.int32),
    )


def _conv_synapses(proj: ir.Projection) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """(rows, cols, integer weights or None, float weights) of every in-range synapse of a conv projection.

    The conv is expanded once over tap numbers rather than weights, so the
    float and integer synapse lists come from one index computation and a
    tap that is zero in one kernel but not the other cannot shift them apart.
    Synapses zero in both kernels are dropped.
    """
    assert proj.conv is not None
    kernel = np.asarray(proj.weight)
    # tap numbers start at 1: conv_matrix drops zero taps. Dilation >= 1 means no two taps of one
    # output neuron read the same input, so the matrix never sums two taps into one entry.
    taps = np.arange(1, kernel.size + 1, dtype=np.float64).reshape(kernel.shape)
    expanded = conv.conv_matrix(proj.conv, taps).tocoo()
    tap = expanded.data.astype(np.int64) - 1
    weight = kernel.ravel()[tap]
    quant = None if proj.quant is None else np.asarray(proj.quant.weight).ravel()[tap]
    keep = weight != 0 if quant is None else (weight != 0) | (quant != 0)
    return (expanded.row.astype(np.int64)[keep], expanded.col.astype(np.int64)[keep],
            None if quant is None else quant[keep], weight[keep])


def _split_dense(proj: ir.Projection, src: _Pieces, dst: _Pieces) -> list[ir.Projection]:
    weight = np.asarray(proj.weight)
    quant = None if proj.quant is None else np.asarray(proj.quant.weight)
    pieces = []
    for s, (src_core, cols) in enumerate(zip(src.cores, src.indices)):
        for d, (dst_core, rows) in enumerate(zip(dst.cores, dst.indices)):
            block = np.ix_(rows, cols)
            if not (np.any(weight[block]) or (quant is not None and np.any(quant[block]))):
                continue
            pieces.append(ir.replace(
                proj,
                name=f"{proj.name}@{src_core}>{dst_core}",
                src=src.names[s],
                dst=dst.names[d],
                weight=weight[block],
                delay=None if proj.delay is None else np.asarray(proj.delay)[block],
                quant=None if proj.quant is None else ir.replace(proj.quant, weight=quant[block]),
            ))
    return pieces


def _split_synapses(proj: ir.Projection, src: _Pieces, dst: _Pieces) -> list[ir.Projection]:
    """Sparse and conv projections: group the synapse list by (source piece, destination piece)."""
    if proj.kind == "conv":
        rows, cols, quant, weight = _conv_synapses(proj)
        delay = None
    else:
        assert proj.rows is not None and proj.cols is not None
        rows = np.asarray(proj.rows, dtype=np.int64)
        cols = np.asarray(proj.cols, dtype=np.int64)
        quant = None if proj.quant is None else np.asarray(proj.quant.weight)
        weight = np.asarray(proj.weight)
        delay = None if proj.delay is None else np.asarray(proj.delay)
    pair = src.piece_of[cols] * len(dst.names) + dst.piece_of[rows]
    pieces = []
    for key in np.unique(pair):
        s, d = divmod(int(key), len(dst.names))
        members = np.flatnonzero(pair == key)
        pieces.append(ir.Projection(
            name=f"{proj.name}@{src.cores[s]}>{dst.cores[d]}",
            src=src.names[s],
            dst=dst.names[d],
            kind="sparse",
            weight=weight[members],
            rows=dst.local_of[rows[members]],
            cols=src.local_of[cols[members]],
            delay=None if delay is None else delay[members],
            quant=None if proj.quant is None else ir.replace(proj.quant, weight=quant[members]),
        ))
    return pieces


def split(graph: ir.Graph) -> tuple[ir.Graph, dict[str, list[tuple[str, np.ndarray]]]]:
    """One population per (population, core) and one projection per joined pair of pieces.

    Returns the split graph (checked; every on-chip population has shape
    (n,) and one core) and, per original population, its pieces as
    ``(piece name, original neuron indices)`` in ascending core order; an
    input population is one piece of itself. Raises ``ValueError`` naming an
    on-chip population without a placement.
    """
    cuts = {pop.name: _cut(pop) for pop in graph.populations}
    populations = []
    for pop in graph.populations:
        if pop.model == "input":
            populations.append(pop)
            continue
        cut = cuts[pop.name]
        populations += [_piece_population(pop, name, core, members)
                        for name, core, members in zip(cut.names, cut.cores, cut.indices)]
    projections = []
    for proj in graph.projections:
        src, dst = cuts[proj.src], cuts[proj.dst]
        if proj.kind == "dense":
            projections += _split_dense(proj, src, dst)
        else:
            projections += _split_synapses(proj, src, dst)
    result = ir.Graph(
        populations=tuple(populations),
        projections=tuple(projections),
        inputs=graph.inputs,
        outputs=tuple(name for output in graph.outputs for name in cuts[output].names),
        dt=graph.dt,
        meta=dict(graph.meta),
    )
    ir.check(result, "quantized" if graph.is_quantized else "float")
    pieces = {name: list(zip(cut.names, cut.indices)) for name, cut in cuts.items()}
    return result, pieces


def merge(per_piece: Mapping[str, np.ndarray],
          pieces: Mapping[str, list[tuple[str, np.ndarray]]]) -> dict[str, np.ndarray]:
    """Reassemble per-piece arrays (neurons on the last axis, e.g. (T, n) rasters) into the original populations.

    ``pieces`` is the second result of :func:`split`; every piece of a
    population must be present in ``per_piece``. Returns arrays (..., N) in
    the original neuron order.
    """
    merged = {}
    for name, parts in pieces.items():
        first = np.asarray(per_piece[parts[0][0]])
        size = sum(int(members.size) for _, members in parts)
        out = np.zeros((*first.shape[:-1], size), dtype=first.dtype)
        for piece, members in parts:
            out[..., members] = per_piece[piece]
        merged[name] = out
    return merged
