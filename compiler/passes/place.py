"""Place: put the partition's logical cores onto chips and mesh positions so spikes cross few links and chips.

Recursive bisection (the ``metis`` placer): the logical cores are cut in
two by pymetis, edges weighted by spikes per step between them, in the
proportion of the two halves of the hardware region they go to: first
the chips in use, then each chip's mesh along its longer side. Exact sizes
come from moving the vertices that cost least across. It recurses until a
region is a single core. The ``greedy`` placer puts logical core i on
physical core i (row-major, chip after chip). Only ``ceil(cores /
chip.cores)`` chips are used; on a single chip, the most square block of
the mesh that holds every core.

Afterwards ``placement`` holds physical core numbers (``chip * chip.cores
+ row * mesh_cols + col``) and ``graph.meta["placement"]`` the report of
``compiler/mapping_report.py``.
"""

from __future__ import annotations

import numpy as np
import pymetis
import scipy.sparse as sp

from snnc.compiler import atoms as atomsmod
from snnc.compiler import hw as hwmod
from snnc.compiler import ir, mapping_report

Region = tuple[range, range, range]
"""Chips, mesh rows and mesh columns of a block of physical cores."""


def _halves(region: Region) -> tuple[Region, Region]:
    chips, rows, cols = region
    if len(chips) > 1:
        mid = len(chips) // 2
        return (chips[:mid], rows, cols), (chips[mid:], rows, cols)
    if len(rows) >= len(cols):
        mid = len(rows) // 2
        return (chips, rows[:mid], cols), (chips, rows[mid:], cols)
    mid = len(cols) // 2
    return (chips, rows, cols[:mid]), (chips, rows, cols[mid:])


def _capacity(region: Region) -> int:
    return len(region[0]) * len(region[1]) * len(region[2])


def _bisect(weight: sp.csr_matrix, first: int) -> np.ndarray:
    """A 0/1 side for each vertex, exactly ``first`` zeros, few weighted edges across."""
    n = weight.shape[0]
    if first in (0, n):
        return np.full(n, 0 if first == n else 1, dtype=np.int64)
    if weight.nnz:
        weights = weight.data
        result = pymetis.part_graph(
            2, adjacency=pymetis.CSRAdjacency(weight.indptr, weight.indices),
            eweights=np.maximum(1, np.round(weights * (10_000 / weights.max()))).astype(np.int64),
            tpwgts=[first / n, 1 - first / n], options=pymetis.Options(seed=0))
        side = np.asarray(result.vertex_part, dtype=np.int64)
    else:
        side = (np.arange(n) >= first).astype(np.int64)
    while (moves := int((side == 0).sum()) - first) != 0:
        source = 0 if moves > 0 else 1
        to_other = weight @ (side != source).astype(np.float64)
        to_own = weight @ (side == source).astype(np.float64)
        gain = np.where(side == source, to_other - to_own, -np.inf)
        side[int(np.argmax(gain))] = 1 - source
    return side


def _physical(region: Region, hw: hwmod.HardwareConfig) -> int:
    chips, rows, cols = region
    return chips[0] * hw.chip.cores + rows[0] * hw.chip.mesh[1] + cols[0]


def _bisection(weight: sp.csr_matrix, hw: hwmod.HardwareConfig) -> np.ndarray:
    """Physical core of each logical core (rows of ``weight``, symmetric spikes per step between them)."""
    n = weight.shape[0]
    chips = -(-n // hw.chip.cores)
    rows, cols = hw.chip.mesh
    if chips == 1:  # one chip: the most square block of the mesh that holds every core, at its corner
        rows, cols = min(((r, -(-n // r)) for r in range(1, rows + 1) if -(-n // r) <= cols),
                         key=lambda rc: (rc[0] + rc[1], rc[0] * rc[1]))
    target = np.zeros(n, dtype=np.int64)
    stack: list[tuple[np.ndarray, Region]] = [(np.arange(n), (range(chips), range(rows), range(cols)))]
    while stack:
        members, region = stack.pop()
        if _capacity(region) == 1 or members.size == 0:
            if members.size:
                target[members] = _physical(region, hw)
            continue
        low, high = _halves(region)
        cap_low, cap_high = _capacity(low), _capacity(high)
        first = round(members.size * cap_low / (cap_low + cap_high))
        first = min(cap_low, max(members.size - cap_high, first))
        side = _bisect(weight[members][:, members].tocsr(), first)
        stack.append((members[side == 0], low))
        stack.append((members[side == 1], high))
    return target


def _core_weights(atoms: atomsmod.Atoms, logical: np.ndarray) -> sp.csr_matrix:
    n = int(logical.max(initial=-1)) + 1
    a, b, spikes = atomsmod.flows(atoms, logical)
    weight = sp.coo_matrix((spikes, (a, b)), shape=(n, n)).tocsr()
    return (weight + weight.T).tocsr()


def run(graph: ir.Graph, hw: hwmod.HardwareConfig) -> ir.Graph:
    """``placement`` becomes physical cores; the mapping report goes to ``graph.meta["placement"]``."""
    atoms = atomsmod.build(graph, hw)
    if not atoms.count:
        return graph
    logical = np.concatenate([graph.population(p).placement[atoms.start[atoms.atoms_of(p)]] for p in atoms.pops])
    placer = str(graph.meta.get("placer", "metis"))
    n = int(logical.max()) + 1
    physical = _bisection(_core_weights(atoms, logical), hw) if placer == "metis" and n > 1 else np.arange(n)
    chosen = graph.meta.get("partition", {}).get("placer", placer)
    report = {"placer": chosen, **mapping_report.summarize(atoms, physical[logical], hw)}
    pops = tuple(ir.replace(pop, placement=physical[pop.placement].astype(np.int32)) if pop.placement is not None
                 else pop for pop in graph.populations)
    return ir.replace(graph, populations=pops, meta={**graph.meta, "placement": report})
