"""The partitioners behind the partition pass: greedy (baseline) and METIS, a local refinement and the capacity repair.

Works on the atoms of ``compiler/atoms.py``:

- ``greedy``, the baseline (PACMAN's and Lava's way): atoms in graph order
  fill one core after another while it has room.
- ``metis`` (default): pymetis cuts the atom graph into about as many parts
  as greedy used cores, edges weighted by spikes per step, vertices by their
  largest share of a core limit; a local search then moves atoms to the
  core they exchange most spikes with while it has room. METIS balances
  only approximately (research/deploy_anchors.md §5), so a capacity repair
  follows.

Both end in the same repair, which also settles fan-out entries (known only
once destinations have cores): the atoms least attached to an overfull core
move to the core they send to or receive from most that has room, or to a
new core, and usage is recounted until every core fits. ``metis`` keeps
whichever result sends fewer spikes between cores, greedy's included.
"""

from __future__ import annotations

import numpy as np
import pymetis
import scipy.sparse as sp

from snnc.compiler import atoms as atomsmod
from snnc.compiler import hw as hwmod
from snnc.compiler import resources

PLACERS = ("metis", "greedy")
METIS_TRIALS = ((1.0, 30), (1.0, 1000), (1.25, 30), (1.25, 1000))
"""(parts as a multiple of greedy's cores, METIS ufactor in 1/1000) tried; the fewest inter-core spikes win.
Hard capacities are the repair's job, so a loose balance (ufactor 1000: parts up to 2x the mean) lets METIS
put a small layer together with its busiest sources, as greedy packing cannot."""
LARGE_GRAPH_ATOMS = 4096
"""Above this many atoms only the first two trials run (each costs a METIS run and a repair)."""
MAX_REPAIR_ROUNDS = 30
_EDGE_SCALE = 10_000


def _adjacency(atoms: atomsmod.Atoms) -> sp.csr_matrix:
    """Undirected atom graph, weights = spikes per step both ways, no self loops."""
    n = atoms.count
    weight = sp.coo_matrix((atoms.traffic(), (atoms.src, atoms.dst)), shape=(n, n)).tocsr()
    weight = (weight + weight.T).tocsr()
    weight.setdiag(0)
    weight.eliminate_zeros()
    return weight


class _Shared:
    """What each core pays for the shared keys of its atoms: per (core, key) the atoms' summed amount, capped."""

    def __init__(self, atoms: atomsmod.Atoms, core: np.ndarray | None = None) -> None:
        order = np.argsort(atoms.shared_atom, kind="stable")
        key = atoms.shared_key[order]
        flat = list(zip(key.tolist(), atoms.shared_amount[order].tolist(), atoms.key_dim[key].tolist(),
                        atoms.key_cap[key].tolist()))
        bounds = [0, *np.cumsum(np.bincount(atoms.shared_atom, minlength=atoms.count)).tolist()]
        self.entries: list[list[tuple[int, int, int, int]]] = [flat[lo:hi] for lo, hi in zip(bounds, bounds[1:])]
        self.load: dict[tuple[int, int], int] = {}
        if core is not None:
            n_keys = max(1, len(atoms.key_cap))
            pairs, inverse = np.unique(core[atoms.shared_atom] * n_keys + atoms.shared_key, return_inverse=True)
            total = np.bincount(inverse, weights=atoms.shared_amount, minlength=pairs.size).astype(np.int64)
            where, which = np.divmod(pairs, n_keys)
            self.load = dict(zip(zip(where.tolist(), which.tolist()), total.tolist()))

    def cost_to_add(self, atom: int, core: int) -> list[int]:
        """Extra [neurons, bits, axons] core ``core`` pays for shared keys if ``atom`` joins it."""
        extra = [0, 0, 0]
        for key, amount, dim, cap in self.entries[atom]:
            held = self.load.get((core, key), 0)
            extra[dim] += min(cap, held + amount) - min(cap, held)
        return extra

    def saved_by_removing(self, atom: int, core: int) -> list[int]:
        saved = [0, 0, 0]
        for key, amount, dim, cap in self.entries[atom]:
            held = self.load.get((core, key), 0)
            saved[dim] += min(cap, held) - min(cap, held - amount)
        return saved

    def move(self, atom: int, old: int | None, new: int) -> None:
        for key, amount, _, _ in self.entries[atom]:
            if old is not None:
                self.load[(old, key)] -= amount
            self.load[(new, key)] = self.load.get((new, key), 0) + amount


def _greedy(atoms: atomsmod.Atoms) -> np.ndarray:
    """Next fit in graph order on neurons, synapse bits and axons (fan-out is left to the repair)."""
    limits = atoms.limits[:3].tolist()
    shared = _Shared(atoms)
    core = np.zeros(atoms.count, dtype=np.int64)
    used, current = [0, 0, 0], 0
    for a, own in enumerate(atoms.own.tolist()):
        add = [x + y for x, y in zip(own, shared.cost_to_add(a, current))]
        if used[0] and any(u + x > lim for u, x, lim in zip(used, add, limits)):
            current += 1
            used = [0, 0, 0]
            add = [x + y for x, y in zip(own, shared.cost_to_add(a, current))]
        used = [u + x for u, x in zip(used, add)]
        shared.move(a, None, current)
        core[a] = current
    return core


def _by_layer(atoms: atomsmod.Atoms) -> np.ndarray:
    """Each population on its own ``atoms.slices`` cores (check's estimate): a layer never spreads further."""
    core = np.zeros(atoms.count, dtype=np.int64)
    base = 0
    for index, k in enumerate(atoms.slices):
        mine = np.flatnonzero(atoms.pop_index == index)
        neurons = int(atoms.size[mine].sum())
        core[mine] = base + np.minimum(k - 1, atoms.start[mine] * k // max(1, neurons))
        base += k
    return core


def _metis(atoms: atomsmod.Atoms, adjacency: sp.csr_matrix, parts: int, imbalance: int) -> np.ndarray:
    share = (atoms.own / atoms.limits[:3]).max(axis=1)
    vweights = np.maximum(1, np.round(share * 1000)).astype(np.int64)
    top = adjacency.data.max(initial=0.0)
    eweights = (np.maximum(1, np.round(adjacency.data * (_EDGE_SCALE / top))) if top > 0
                else np.ones(adjacency.nnz)).astype(np.int64)
    result = pymetis.part_graph(parts, adjacency=pymetis.CSRAdjacency(adjacency.indptr, adjacency.indices),
                                vweights=vweights, eweights=eweights,
                                options=pymetis.Options(seed=0, ufactor=imbalance))
    return np.asarray(result.vertex_part, dtype=np.int64)


def _refine(atoms: atomsmod.Atoms, core: np.ndarray, adjacency: sp.csr_matrix, passes: int = 6) -> np.ndarray:
    """Greedy local search: move an atom to the core it exchanges most spikes with, when that core has room.

    Gains use the edge-cut model (spikes to each core); capacity counts
    neurons, synapse bits and axons with shared keys; fan-out is left to the
    repair that follows.
    """
    limits = atoms.limits[:3]
    core = core.copy()
    for _ in range(passes):
        n = int(core.max()) + 1
        onehot = sp.csr_matrix((np.ones(atoms.count), (np.arange(atoms.count), core)), shape=(atoms.count, n))
        toward = (adjacency @ onehot).tocsr()
        here = np.asarray(toward[np.arange(atoms.count), core]).ravel()
        toward.data[toward.indices == np.repeat(core, np.diff(toward.indptr))] = 0.0
        best = np.asarray(toward.argmax(axis=1)).ravel()
        gain = np.asarray(toward.max(axis=1).todense()).ravel() - here
        movers = np.flatnonzero(gain > 1e-12)
        if not movers.size:
            break
        use = atomsmod.usage(atoms, core)[:, :3]
        shared = _Shared(atoms, core)
        moved = 0
        for a in movers[np.argsort(-gain[movers], kind="stable")].tolist():
            p, q = int(core[a]), int(best[a])
            add = atoms.own[a] + shared.cost_to_add(a, q)
            if np.any(use[q] + add > limits):
                continue
            use[p] -= atoms.own[a] + shared.saved_by_removing(a, p)
            use[q] += add
            shared.move(a, p, q)
            core[a] = q
            moved += 1
        if not moved:
            break
    return core


def _too_big(atoms: atomsmod.Atoms, atom: int, need: np.ndarray, hw: hwmod.HardwareConfig) -> resources.ResourceError:
    rule, required, available = atomsmod.binding_limit(need, atoms.limits)
    pop = atoms.pops[atoms.pop_index[atom]]
    return resources.ResourceError(resources.Finding(
        "error", rule, pop, required, available,
        f"neurons {atoms.start[atom]}..{atoms.start[atom] + atoms.size[atom] - 1} of '{pop}' alone exceed a core; "
        "make the layers they send to smaller", hw.source))


def _renumber(core: np.ndarray) -> np.ndarray:
    """Cores numbered 0..n-1 in order of first use."""
    first = np.unique(core, return_index=True)[1]
    order = core[np.sort(first)]
    renumber = np.zeros(int(core.max(initial=-1)) + 1, dtype=np.int64)
    renumber[order] = np.arange(order.size)
    return renumber[core]


def _repair(atoms: atomsmod.Atoms, core: np.ndarray, adjacency: sp.csr_matrix, hw: hwmod.HardwareConfig) -> np.ndarray:
    """Move atoms off overfull cores until every core meets every limit; cores renumbered 0..n-1 in first use."""
    limits = atoms.limits
    core = _renumber(core)
    for _ in range(MAX_REPAIR_ROUNDS):
        use = atomsmod.usage(atoms, core)
        over = np.flatnonzero((use > limits).any(axis=1))
        if not over.size:
            return _renumber(core)
        fan = atomsmod.fan_out_entries(atoms, core)
        shared = _Shared(atoms, core)
        rows = list(use)
        for p in over.tolist():
            members = np.flatnonzero(core == p)
            inside = np.asarray(adjacency[members][:, members].sum(axis=1)).ravel()
            for a in members[np.argsort(inside, kind="stable")].tolist():
                if np.all(rows[p] <= limits):
                    break
                own = np.append(atoms.own[a], fan[a])
                lo, hi = adjacency.indptr[a], adjacency.indptr[a + 1]
                pull = np.bincount(core[adjacency.indices[lo:hi]], weights=adjacency.data[lo:hi], minlength=len(rows))
                candidates = [q for q in np.argsort(-pull, kind="stable")[:8].tolist() if pull[q] > 0 and q != p]
                candidates.append(len(rows) - 1)
                target, added = None, None
                for q in candidates:
                    add = own + np.append(shared.cost_to_add(a, q), 0)
                    if q != p and np.all(rows[q] + add <= limits):
                        target, added = q, add
                        break
                if target is None:
                    added = own + np.append(shared.cost_to_add(a, len(rows)), 0)
                    if np.any(added > limits):
                        raise _too_big(atoms, a, added, hw)
                    target = len(rows)
                    rows.append(np.zeros(4, dtype=np.int64))
                rows[p] = rows[p] - own - np.append(shared.saved_by_removing(a, p), 0)
                rows[target] = rows[target] + added
                shared.move(a, p, target)
                core[a] = target
    raise resources.ResourceError(resources.Finding(
        "error", "core", atoms.pops[0], int(core.max()) + 1, hw.chip.cores * hw.chip.chips,
        f"no placement meets every per-core limit after {MAX_REPAIR_ROUNDS} repair rounds; reduce weight bits "
        "or layer sizes", hw.source))


def inter_core_spikes(atoms: atomsmod.Atoms, core: np.ndarray) -> float:
    """Spikes per step that leave their core (every target core counted once per spike)."""
    return float(atomsmod.flows(atoms, core)[2].sum())


def partition(atoms: atomsmod.Atoms, hw: hwmod.HardwareConfig, placer: str = "metis") -> tuple[np.ndarray, dict]:
    """Logical core of every atom and a summary (placer used, cores, traffic of greedy and metis).

    A single-core target (an FPGA's time-multiplexed core) takes every atom;
    whether they fit is the caller's check.
    """
    if placer not in PLACERS:
        raise ValueError(f"unknown placer '{placer}' (known: {', '.join(PLACERS)})")
    if hw.chip.cores * hw.chip.chips == 1:
        alone = np.zeros(atoms.count, dtype=np.int64)
        return alone, {"placer": "greedy", "greedy_cores": 1, "greedy_inter_core_spikes_per_step": 0.0,
                       "rates": atoms.rates_source, "cores": 1}
    adjacency = _adjacency(atoms)
    packed = _greedy(atoms)
    cores = int(packed.max(initial=-1)) + 1
    summary: dict = {"placer": "greedy", "greedy_cores": cores, "rates": atoms.rates_source}
    try:
        greedy = _repair(atoms, packed, adjacency, hw)
    except resources.ResourceError:
        if placer == "greedy" or cores == 1:
            raise
        greedy = None  # greedy's spread can break fan-out where METIS' grouping does not
    if greedy is not None:
        cores = int(greedy.max(initial=-1)) + 1
        summary.update(greedy_cores=cores, greedy_inter_core_spikes_per_step=round(inter_core_spikes(atoms, greedy), 6))
    best, best_traffic = greedy, summary.get("greedy_inter_core_spikes_per_step", float("inf"))
    if placer == "metis" and cores > 1:
        total = hw.chip.cores * hw.chip.chips
        trials = METIS_TRIALS if atoms.count <= LARGE_GRAPH_ATOMS else METIS_TRIALS[:2]
        found = None
        for factor, imbalance in trials:
            parts = min(atoms.count, max(cores, min(total, round(cores * factor))))
            start = _refine(atoms, _metis(atoms, adjacency, parts, imbalance), adjacency)
            try:
                metis = _repair(atoms, start, adjacency, hw)
            except resources.ResourceError:
                continue
            traffic = inter_core_spikes(atoms, metis)
            if found is None or traffic < found[1]:
                found = (metis, traffic)
        if found is not None:
            summary.update(metis_cores=int(found[0].max()) + 1, metis_inter_core_spikes_per_step=round(found[1], 6))
            if found[1] < best_traffic:
                best, summary["placer"] = found[0], "metis"
    if best is None:
        best = _repair(atoms, _by_layer(atoms), adjacency, hw)  # raises the finding if this fails too
        summary["placer"] = "greedy"
    summary["cores"] = int(best.max(initial=-1)) + 1
    return best, summary
