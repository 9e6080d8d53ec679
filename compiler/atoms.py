"""Atoms: the pieces the partitioner moves between cores, what each costs a core, and who sends spikes to whom.

Every on-chip population is cut into equal contiguous atoms (C order,
:func:`resources.slice_bounds`), about ``ATOMS_PER_SLICE`` per core-sized
slice, so that atoms of several populations can share a core. A core's
need is four numbers (``RESOURCES``), compared with ``limits``:

- neurons, synapse bits and input axons of its atoms (``own``), plus
- *shared* costs (``shared_*``, ``key_*``): for each key, a core pays
  the sum of what its atoms need of it, but at most the key's cap: the
  source axons of a dense projection and the kernel of one conv output
  channel are paid once per core; an input row of a conv group (each
  atom needs the columns it reads) and a block of sources of a sparse
  projection at most once, and
- fan-out entries: each neuron of an atom holds one per distinct core its
  atom has synapses into (known only once destinations are placed).

These are the formulas of ``docs/resources.md`` applied per core; axons are
an upper bound (counted per conv input row and per block of sparse sources,
never below the exact union).

Spike traffic: atom ``s`` fires ``rate[s]`` spikes per step (measured on
calibration stimuli when the graph carries them, else ``ESTIMATED_RATE`` per
neuron). A spike travels once to each core holding a target: the edge
``s -> t`` with ``synapses`` synapses carries ``rate[s] * min(1, synapses /
size[s])`` spikes per step (exact for dense projections: every neuron
reaches every target).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from snnc.compiler import conv, ir, resources
from snnc.compiler import hw as hwmod

RESOURCES = ("neurons", "synapse bits", "input axons", "fan-out entries")
LIMIT_RULES = ("core.max_neurons", "core.synapse_memory_bytes", "core.max_axons", "core.max_fan_out")
"""The hardware-description key behind each of RESOURCES."""
ATOMS_PER_SLICE = 32
MAX_ATOMS = 16384
ESTIMATED_RATE = 0.05
"""Spikes per neuron per step assumed when no calibration stimuli were given."""
_CHUNK = 1 << 23
_DENSE_PAIR_LIMIT = 1 << 24
_BITMAP_LIMIT = 1 << 28
_SOURCE_BLOCK = 64
_MAX_BLOCKS_PER_ATOM = 64
"""An atom whose sparse sources spread over more blocks pays its distinct sources as its own cost (no sharing)."""


@dataclass(frozen=True)
class Atoms:
    """The partition problem as plain arrays; atom ids run over populations in graph order."""

    pops: tuple[str, ...]
    pop_index: np.ndarray = field(repr=False)   # (A,) index into pops
    start: np.ndarray = field(repr=False)       # (A,) first neuron within its population
    size: np.ndarray = field(repr=False)        # (A,) neurons
    own: np.ndarray = field(repr=False)         # (A, 3) neurons, synapse bits, input axons
    shared_atom: np.ndarray = field(repr=False)  # (S,) atom using a shared key
    shared_key: np.ndarray = field(repr=False)   # (S,) the key
    shared_amount: np.ndarray = field(repr=False)  # (S,) what the atom alone would need of it
    key_dim: np.ndarray = field(repr=False)      # (K,) resource of each key: 1 synapse bits, 2 input axons
    key_cap: np.ndarray = field(repr=False)      # (K,) most a core pays for the key
    src: np.ndarray = field(repr=False)          # (E,) edges between on-chip atoms, src -> dst
    dst: np.ndarray = field(repr=False)
    synapses: np.ndarray = field(repr=False)     # (E,) synapses on each edge
    rate: np.ndarray = field(repr=False)         # (A,) spikes per step of the whole atom
    rates_measured: bool
    limits: np.ndarray = field(repr=False)       # (4,) per-core limits in RESOURCES order
    slices: tuple[int, ...] = ()
    """Per population, ``resources.min_cores`` with the fan-out estimate: a split that never spreads a layer."""

    @property
    def count(self) -> int:
        return int(self.size.size)

    @property
    def rates_source(self) -> str:
        return "measured" if self.rates_measured else "estimated"

    def traffic(self) -> np.ndarray:
        """Spikes per step on each edge: ``rate[src] * min(1, synapses / size[src])``."""
        return self.rate[self.src] * np.minimum(1.0, self.synapses / self.size[self.src])

    def atoms_of(self, pop: str) -> np.ndarray:
        return np.flatnonzero(self.pop_index == self.pops.index(pop))


def limits_of(hw: hwmod.HardwareConfig) -> np.ndarray:
    core = hw.core
    return np.array([core.max_neurons, 8 * core.synapse_memory_bytes, core.max_axons, core.max_fan_out], dtype=np.int64)


def binding_limit(need: np.ndarray, limits: np.ndarray) -> tuple[str, int, int]:
    """The limit ``need`` (RESOURCES order) exceeds most: its rule, required and available (synapse memory in bytes)."""
    index = int(np.argmax(need / limits))
    required, available = int(need[index]), int(limits[index])
    if index == 1:
        required, available = -(-required // 8), available // 8
    return LIMIT_RULES[index], required, available


def _atom_counts(demands: dict[str, resources.Demand], hw: hwmod.HardwareConfig) -> dict[str, int]:
    """Atoms per on-chip population: ATOMS_PER_SLICE per core-sized slice, fewer if the total passes MAX_ATOMS."""
    slices = {}
    for name, demand in demands.items():
        if demand.on_chip:
            resources.unsplittable(dataclasses.replace(demand, fan_out=0), hw)
            slices[name] = demand.slices_without_fan_out
    wanted = {name: min(demands[name].neurons, k * ATOMS_PER_SLICE) for name, k in slices.items()}
    total = sum(wanted.values())
    if total > MAX_ATOMS:
        scale = MAX_ATOMS / total
        wanted = {name: max(slices[name], int(n * scale)) for name, n in wanted.items()}
    return wanted


def _slices_with_fan_out(demand: resources.Demand, hw: hwmod.HardwareConfig) -> int:
    try:
        return resources.min_cores(demand, hw)
    except resources.ResourceError:
        return demand.slices_without_fan_out


def _rates(graph: ir.Graph, pop: ir.Population) -> tuple[np.ndarray, bool]:
    """Spikes per step of each neuron: the calibration profile if measured, else its mean, else the estimate."""
    measured = graph.meta.get("calibration", {}).get(pop.name)
    if not measured:
        return np.full(pop.size, ESTIMATED_RATE), False
    profile = np.asarray(measured.get("rate_profile", [measured.get("rate", ESTIMATED_RATE)]), dtype=np.float64)
    chunk = np.arange(pop.size) * profile.size // pop.size
    return profile[chunk], True


def _pairs(s: np.ndarray, t: np.ndarray, n_s: int, n_t: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (s, t) pairs as keys ``s * n_t + t`` and how often each occurs."""
    key = s.astype(np.int64) * n_t + t
    if n_s * n_t <= _DENSE_PAIR_LIMIT:
        counts = np.bincount(key, minlength=n_s * n_t)
        keys = np.flatnonzero(counts)
        return keys, counts[keys]
    return np.unique(key, return_counts=True)


def _accumulate(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    keys = np.concatenate([k for k, _ in parts]) if parts else np.zeros(0, np.int64)
    counts = np.concatenate([c for _, c in parts]) if parts else np.zeros(0, np.int64)
    if len(parts) > 1:
        keys, inverse = np.unique(keys, return_inverse=True)
        counts = np.bincount(inverse, weights=counts).astype(np.int64)
    return keys, counts


class _Keys:
    """Collects shared keys and the atoms' amounts of them while atoms are built."""

    def __init__(self) -> None:
        self.dim: list[int] = []
        self.cap: list[int] = []
        self.atom: list[np.ndarray] = []
        self.key: list[np.ndarray] = []
        self.amount: list[np.ndarray] = []

    def new(self, dim: int, caps: np.ndarray) -> int:
        """Register ``len(caps)`` keys of resource ``dim``; returns the first key id."""
        first = len(self.dim)
        self.dim.extend([dim] * len(caps))
        self.cap.extend(int(c) for c in caps)
        return first

    def use(self, atom: np.ndarray, key: np.ndarray, amount: np.ndarray) -> None:
        self.atom.append(np.asarray(atom, dtype=np.int64))
        self.key.append(np.asarray(key, dtype=np.int64))
        self.amount.append(np.asarray(amount, dtype=np.int64))


def _sparse_sources(inc: resources.Incoming, bounds: np.ndarray, first: int, keys: _Keys) -> np.ndarray:
    """Distinct sources of each atom, as shared blocks of ``_SOURCE_BLOCK`` sources; returns the unshared part."""
    assert inc.rows is not None and inc.cols is not None
    k = len(bounds) - 1
    n_blocks = -(-inc.src_size // _SOURCE_BLOCK)
    atom_of = inc.rows // max(1, int(bounds[1]))
    if k * inc.src_size <= _BITMAP_LIMIT:
        seen = np.zeros((k, n_blocks * _SOURCE_BLOCK), dtype=bool)
        seen[atom_of, inc.cols] = True
        per_block = seen.reshape(k, n_blocks, _SOURCE_BLOCK).sum(axis=2)
        atom, block = np.nonzero(per_block)
        amount = per_block[atom, block]
    else:
        pairs = np.unique(atom_of.astype(np.int64) * inc.src_size + inc.cols)
        atom, col = np.divmod(pairs, inc.src_size)
        blocks, amount = np.unique(atom * n_blocks + col // _SOURCE_BLOCK, return_counts=True)
        atom, block = np.divmod(blocks, n_blocks)
    spread = np.bincount(atom, minlength=k) > _MAX_BLOCKS_PER_ATOM
    lone = np.bincount(atom, weights=amount * spread[atom], minlength=k).astype(np.int64)
    caps = np.minimum(_SOURCE_BLOCK, inc.src_size - np.arange(n_blocks) * _SOURCE_BLOCK)
    base = keys.new(2, caps)
    shared = ~spread[atom]
    keys.use(first + atom[shared], base + block[shared], amount[shared])
    return lone[:k]


def _conv_field(inc: resources.Incoming, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Groups, input rows, and input columns per row that output neurons [lo, hi) of a conv read."""
    spec = inc.conv
    assert spec is not None
    c_out, _, kh, kw = inc.kernel_shape
    _, h_out, w_out = spec.out_shape
    _, h_in, w_in = spec.in_shape
    plane = h_out * w_out
    first, last = lo // plane, (hi - 1) // plane
    positions = resources.slice_positions(lo, hi, plane)
    out_rows, out_cols = (np.unique(a) for a in np.divmod(np.flatnonzero(positions), w_out))
    (sh, sw), (ph, pw), (dh, dw) = spec.stride, spec.padding, spec.dilation
    rows = (out_rows[:, None] * sh - ph + np.arange(kh)[None, :] * dh).ravel()
    cols = (out_cols[:, None] * sw - pw + np.arange(kw)[None, :] * dw).ravel()
    rows = np.unique(rows[(rows >= 0) & (rows < h_in)])
    per_group = c_out // spec.groups
    groups = np.arange(first // per_group, last // per_group + 1)
    return groups, rows, int(np.unique(cols[(cols >= 0) & (cols < w_in)]).size)


def _conv_pairs(spec: ir.ConvSpec, kernel_shape: tuple[int, ...], s_size: int, t_size: int,
                n_s: int, n_t: int) -> tuple[np.ndarray, np.ndarray]:
    """(src atom, dst atom) pair keys and synapse counts of a conv, one kernel tap at a time (no matrix)."""
    return _accumulate([_pairs(cols // s_size, rows // t_size, n_s, n_t)
                        for _, _, _, rows, cols in conv.conv_taps(spec, kernel_shape)])


def _sparse_pairs(proj: ir.Projection, s_size: int, t_size: int, n_s: int, n_t: int) -> tuple[np.ndarray, np.ndarray]:
    assert proj.rows is not None and proj.cols is not None
    found = []
    for lo in range(0, proj.rows.size, _CHUNK):
        rows, cols = proj.rows[lo:lo + _CHUNK], proj.cols[lo:lo + _CHUNK]
        found.append(_pairs(cols // s_size, rows // t_size, n_s, n_t))
    return _accumulate(found)


def build(graph: ir.Graph, hw: hwmod.HardwareConfig) -> Atoms:
    """Atoms, costs and traffic edges of ``graph`` on ``hw``.

    Raises :class:`resources.ResourceError` when a population breaks a
    per-core limit however it is split (a single neuron's fan-in, synapse
    memory or input axons).
    """
    demands = resources.population_demand(graph, hw)
    counts = _atom_counts(demands, hw)
    pops = tuple(counts)
    index = {name: i for i, name in enumerate(pops)}
    offset: dict[str, int] = {}
    atom_size: dict[str, int] = {}
    pop_index, starts, sizes, owns, rates = [], [], [], [], []
    shared = _Keys()
    measured = False
    for name in pops:
        demand = demands[name]
        bounds = resources.slice_bounds(demand.neurons, counts[name])
        k = int(np.count_nonzero(np.diff(bounds)))
        size = np.diff(bounds)[:k]
        first = int(sum(s.size for s in sizes))
        offset[name], atom_size[name] = first, int(bounds[1])
        bits = np.zeros(k, dtype=np.int64)
        axons = np.zeros(k, dtype=np.int64)
        mine = np.arange(first, first + k)
        for inc in demand.incoming:
            if inc.kind == "dense":
                bits += size * inc.src_size * inc.bits
                key = shared.new(2, np.array([inc.src_size]))
                shared.use(mine, np.full(k, key), np.full(k, inc.src_size))
            elif inc.kind == "sparse":
                assert inc.row_counts is not None
                bits += np.add.reduceat(inc.row_counts, bounds[:k]) * inc.bits
                axons += _sparse_sources(inc, bounds[:k + 1], first, shared)
            else:
                assert inc.conv is not None
                c_out, cin_g = inc.kernel_shape[0], inc.kernel_shape[1]
                plane = math.prod(inc.conv.out_shape[1:])
                channel_bits = math.prod(inc.kernel_shape[1:]) * inc.bits
                kernels = shared.new(1, np.full(c_out, channel_bits))
                h_in, w_in = inc.conv.in_shape[1:]
                row_axons = cin_g * w_in
                rows_key = shared.new(2, np.full(inc.conv.groups * h_in, row_axons))
                for i in range(k):
                    lo, hi = int(bounds[i]), int(bounds[i + 1])
                    channels = np.arange(lo // plane, (hi - 1) // plane + 1)
                    shared.use(np.full(channels.size, first + i), kernels + channels, np.full(channels.size, channel_bits))
                    groups, rows, columns = _conv_field(inc, lo, hi)
                    touched = (groups[:, None] * h_in + rows[None, :]).ravel()
                    shared.use(np.full(touched.size, first + i), rows_key + touched, np.full(touched.size, cin_g * columns))
        pop = graph.population(name)
        neuron_rate, was_measured = _rates(graph, pop)
        measured |= was_measured
        pop_index.append(np.full(k, index[name]))
        starts.append(bounds[:k])
        sizes.append(size)
        owns.append(np.stack([size, bits, axons], axis=1))
        rates.append(np.add.reduceat(neuron_rate, bounds[:k]))
    n_atoms = int(sum(s.size for s in sizes))
    edge_keys, edge_counts = [], []
    for proj in graph.projections:
        if proj.src not in index or proj.dst not in index:
            continue  # input populations live off chip
        s_size, t_size = atom_size[proj.src], atom_size[proj.dst]
        n_s = len(starts[index[proj.src]])
        n_t = len(starts[index[proj.dst]])
        if proj.kind == "dense":
            s, t = np.meshgrid(np.arange(n_s), np.arange(n_t), indexing="ij")
            keys = (s * n_t + t).ravel()
            pair_counts = (sizes[index[proj.src]][s] * sizes[index[proj.dst]][t]).ravel()
        elif proj.kind == "sparse":
            keys, pair_counts = _sparse_pairs(proj, s_size, t_size, n_s, n_t)
        else:
            assert proj.conv is not None
            keys, pair_counts = _conv_pairs(proj.conv, tuple(proj.weight.shape), s_size, t_size, n_s, n_t)
        s, t = np.divmod(keys, n_t)
        edge_keys.append((s + offset[proj.src]) * n_atoms + t + offset[proj.dst])
        edge_counts.append(pair_counts)
    keys, syn = _accumulate(list(zip(edge_keys, edge_counts)))
    src, dst = np.divmod(keys, max(1, n_atoms))
    cat = np.concatenate
    empty = np.zeros(0, dtype=np.int64)
    return Atoms(
        pops=pops, pop_index=cat(pop_index) if pops else empty, start=cat(starts) if pops else empty,
        size=cat(sizes) if pops else empty, own=cat(owns) if pops else np.zeros((0, 3), np.int64),
        shared_atom=cat(shared.atom) if shared.atom else empty, shared_key=cat(shared.key) if shared.key else empty,
        shared_amount=cat(shared.amount) if shared.amount else empty,
        key_dim=np.array(shared.dim, dtype=np.int64), key_cap=np.array(shared.cap, dtype=np.int64),
        src=src, dst=dst, synapses=syn.astype(np.float64),
        rate=cat(rates) if pops else np.zeros(0), rates_measured=measured, limits=limits_of(hw),
        slices=tuple(_slices_with_fan_out(demands[name], hw) for name in pops),
    )


def fan_out_entries(atoms: Atoms, core: np.ndarray) -> np.ndarray:
    """Fan-out entries of each atom when atom ``i`` sits on ``core[i]``: its neurons x distinct target cores."""
    n_cores = int(core.max(initial=0)) + 1
    pairs = np.unique(atoms.src * n_cores + core[atoms.dst])
    return np.bincount(pairs // n_cores, minlength=atoms.count) * atoms.size


def usage(atoms: Atoms, core: np.ndarray, n_cores: int | None = None) -> np.ndarray:
    """(cores, 4) need of each core in RESOURCES order when atom ``i`` sits on ``core[i]``."""
    n = int(core.max(initial=-1)) + 1 if n_cores is None else n_cores
    use = np.zeros((n, 4), dtype=np.int64)
    for j in range(3):
        use[:, j] = np.bincount(core, weights=atoms.own[:, j], minlength=n)[:n]
    if atoms.shared_key.size:
        n_keys = len(atoms.key_cap)
        present, inverse = np.unique(core[atoms.shared_atom] * n_keys + atoms.shared_key, return_inverse=True)
        total = np.bincount(inverse, weights=atoms.shared_amount, minlength=present.size).astype(np.int64)
        where, key = np.divmod(present, n_keys)
        np.add.at(use, (where, atoms.key_dim[key]), np.minimum(total, atoms.key_cap[key]))
    use[:, 3] = np.bincount(core, weights=fan_out_entries(atoms, core), minlength=n)[:n]
    return use


def flows(atoms: Atoms, core: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spikes per step from core ``a`` to a different core ``b``, summed per pair: arrays ``(a, b, spikes)``.

    A spike of atom ``s`` goes once to each core holding one of its targets:
    ``rate[s] * min(1, synapses of s into that core / size[s])``.
    """
    n = int(core.max(initial=0)) + 1
    keys, inverse = np.unique(atoms.src * n + core[atoms.dst], return_inverse=True)
    synapses = np.bincount(inverse, weights=atoms.synapses, minlength=keys.size)
    s, target = np.divmod(keys, n)
    spikes = atoms.rate[s] * np.minimum(1.0, synapses / atoms.size[s])
    source = core[s]
    keep = source != target
    pairs, inverse = np.unique(source[keep] * n + target[keep], return_inverse=True)
    total = np.bincount(inverse, weights=spikes[keep], minlength=pairs.size)
    return pairs // n, pairs % n, total
