"""Float64 reference simulator of an IR graph: NIR's ODEs, forward Euler at ``graph.dt``.

It measures what quantization costs (spike agreement, accuracy); it never
defines what "equivalent" means -- the CPU integer backend does.

Per step, every population receives ``x = sum of incoming projection outputs
+ bias`` (the ``bias`` param) and updates, with ``dt`` and every ``tau`` in
seconds::

    cuba_lif, cuba_li:  I = (1 - dt/tau_syn)*I + w_in*(dt/tau_syn)*x
                        v = (1 - dt/tau_mem)*v + (dt/tau_mem)*(v_leak + r*I)     (the new I)
    lif, li:            v = (1 - dt/tau_mem)*v + (dt/tau_mem)*(v_leak + r*x)
    if, i:              v = v + r*x                                             (no dt)
    threshold:          v = x
    spiking models (lif, cuba_lif, if, threshold):
                        z = v > v_threshold (strict); where z: v = v_reset   (reset "zero")
                                                               v = v - (v_threshold - v_reset) ("subtract")
                                                               v unchanged (reset "none")

A projection's output is ``W . s`` where ``s`` is the source's spikes (0/1)
or, for non-spiking sources (li, cuba_li, i), its ``v``; input populations
output their stimulus. A spike is a unit box over one step for the leaky
models, while if/i add ``r*w`` per spike with no dt (Sinabs, Norse); see
``docs/float_reference.md`` for the two readings.

snnTorch's NIR export sets ``r = tau_mem/dt`` and ``w_in = tau_syn/dt``; then
the equations above are exactly snnTorch's ``Leaky`` (``v = beta*v + x``) and
``Synaptic`` (``I = alpha*I + x; v = beta*v + I``) with
``beta = 1 - dt/tau_mem`` and ``alpha = 1 - dt/tau_syn``, including
``reset_mechanism`` "zero"/"subtract" with ``reset_delay=False``.

Timing (``timing=``):

- ``"nir"`` (what NIR, snnTorch and nirtorch do): populations update in
  topological order from the inputs; a feed-forward projection delivers in
  the same step, a projection closing a cycle (a back edge of a depth-first
  search from the inputs in graph order; self-loops included) one step later.
- ``"per_projection"``: every projection delivers one step later, the timing
  of the integer model in ``compiler/ir.py``, so that float-vs-quantized
  comparisons see quantization error only. :func:`latency` gives the shift
  between the two timings.

Per-synapse delays ``d`` add ``d`` steps in both modes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from snnc.backends.base import normalize_stimulus
from snnc.compiler import ir
from snnc.compiler.conv import conv_matrix
from snnc.runtime.raster import Raster

TIMINGS = ("nir", "per_projection")
NON_SPIKING_MODELS = frozenset({"li", "cuba_li", "i"})
_CURRENT_MODELS = frozenset({"cuba_lif", "cuba_li"})
_LEAKY_MODELS = frozenset({"lif", "li"})
_INTEGRATOR_MODELS = frozenset({"if", "i"})


@dataclass(frozen=True)
class DelayGroup:
    """Synapses of one projection sharing one delivery delay (steps after the source updates).

    Exactly one of ``weight_t`` (dense, (src, dst)) and ``matrix`` (scipy
    CSR, (dst, src)) is set.
    """

    dst: str
    delay: int
    weight_t: np.ndarray | None
    matrix: sp.csr_matrix | None

    def deliver(self, out: np.ndarray) -> np.ndarray:
        """Input to the destination, (B, dst size), from the source's output ``out`` (B, src size)."""
        if self.weight_t is not None:
            return out @ self.weight_t
        assert self.matrix is not None
        return np.asarray(self.matrix @ out.T).T


@dataclass
class _Neurons:
    """One population's per-neuron coefficients (N,) and state (B, N)."""

    model: str
    reset: str
    coeff: dict[str, np.ndarray]
    v: np.ndarray
    i: np.ndarray
    refractory: int = 0
    frozen: np.ndarray | None = None
    """Steps each neuron's v stays frozen (B, N), counted down once per step."""

    def step(self, x: np.ndarray) -> np.ndarray | None:
        """Advance one step on input ``x`` (B, N); the spikes (bool) of a spiking model, else None."""
        c = self.coeff
        held = self.v
        if self.model in _CURRENT_MODELS:
            self.i = c["alpha"] * self.i + c["syn_gain"] * x
            self.v = c["beta"] * self.v + c["mem_gain"] * (c["v_leak"] + c["r"] * self.i)
        elif self.model in _LEAKY_MODELS:
            self.v = c["beta"] * self.v + c["mem_gain"] * (c["v_leak"] + c["r"] * x)
        elif self.model in _INTEGRATOR_MODELS:
            self.v = self.v + c["r"] * x
        else:
            self.v = x
        if self.model in NON_SPIKING_MODELS:
            return None
        if self.frozen is not None:
            # refractory: v keeps its post-reset value, takes no input and cannot spike (I integrated above)
            resting = self.frozen > 0
            self.v = np.where(resting, held, self.v)
        z = self.v > c["v_threshold"]
        if self.frozen is not None:
            z &= ~resting
            self.frozen = np.where(z, self.refractory, np.maximum(self.frozen - 1, 0))
        if self.reset == "zero":
            self.v = np.where(z, c["v_reset"], self.v)
        elif self.reset == "subtract":
            self.v = np.where(z, self.v - (c["v_threshold"] - c["v_reset"]), self.v)
        return z


def _neurons(pop: ir.Population, dt: float, batch: int) -> _Neurons:
    """Zero state and the Euler coefficients of ``pop`` (params flattened in C order)."""
    p = {k: np.asarray(v, dtype=np.float64).ravel() for k, v in pop.params.items()}
    coeff = dict(p)
    if "tau_mem" in p:
        coeff["mem_gain"] = dt / p["tau_mem"]
        coeff["beta"] = 1.0 - coeff["mem_gain"]
    if "tau_syn" in p:
        coeff["alpha"] = 1.0 - dt / p["tau_syn"]
        coeff["syn_gain"] = p["w_in"] * (dt / p["tau_syn"])
    if pop.model == "threshold":
        # NIR's Threshold has no v_reset; its v is replaced by x every step, so reset shows in recorded v only
        coeff["v_reset"] = np.zeros(pop.size)
    zeros = np.zeros((batch, pop.size))
    frozen = np.zeros((batch, pop.size), dtype=np.int64) if pop.refractory else None
    return _Neurons(model=pop.model, reset=pop.reset, coeff=coeff, v=zeros, i=zeros.copy(),
                    refractory=pop.refractory, frozen=frozen)


def delay_groups(proj: ir.Projection, src_size: int, dst_size: int, base: int) -> list[DelayGroup]:
    """``proj`` split by per-synapse delay; each group delivers ``base + delay`` steps after the source."""
    weight = np.asarray(proj.weight, dtype=np.float64)
    if proj.kind == "conv":
        assert proj.conv is not None
        return [DelayGroup(proj.dst, base, None, conv_matrix(proj.conv, weight))]
    if proj.kind == "dense":
        delay = np.zeros(weight.shape, dtype=np.int64) if proj.delay is None else np.asarray(proj.delay)
        if np.all(delay == delay.flat[0]):
            # one delay for all synapses: keep the dense matrix and its BLAS matmul
            return [DelayGroup(proj.dst, base + int(delay.flat[0]), np.ascontiguousarray(weight.T), None)]
        rows, cols = (idx.ravel() for idx in np.indices(weight.shape))
        weight, delay = weight.ravel(), delay.ravel()
    else:
        assert proj.rows is not None and proj.cols is not None
        rows, cols = np.asarray(proj.rows), np.asarray(proj.cols)
        delay = np.zeros(weight.shape, dtype=np.int64) if proj.delay is None else np.asarray(proj.delay)
    groups = []
    for d in np.unique(delay):
        chosen = delay == d
        # building CSR from (row, col) pairs sums repeated pairs, as the IR asks
        matrix = sp.csr_matrix((weight[chosen], (rows[chosen], cols[chosen])), shape=(dst_size, src_size))
        groups.append(DelayGroup(proj.dst, base + int(d), None, matrix))
    return groups


def _schedule(graph: ir.Graph) -> tuple[list[str], set[str]]:
    """Update order and the names of back-edge projections, from a depth-first search.

    The search starts at the inputs in ``graph.inputs`` order (then at any
    population no input reaches, in graph order) and follows projections in
    graph order. A projection into a population still on the search stack
    closes a cycle (a back edge; self-loops included). Reverse postorder is a
    topological order of the remaining, acyclic projections.
    """
    outgoing: dict[str, list[ir.Projection]] = {pop.name: [] for pop in graph.populations}
    for proj in graph.projections:
        outgoing[proj.src].append(proj)
    on_stack, done = set(), set()
    finished: list[str] = []
    back: set[str] = set()
    for root in (*graph.inputs, *(pop.name for pop in graph.populations)):
        if root in on_stack or root in done:
            continue
        on_stack.add(root)
        stack = [(root, iter(outgoing[root]))]
        while stack:
            name, edges = stack[-1]
            for proj in edges:
                if proj.dst in on_stack:
                    back.add(proj.name)
                elif proj.dst not in done:
                    on_stack.add(proj.dst)
                    stack.append((proj.dst, iter(outgoing[proj.dst])))
                    break
            else:
                stack.pop()
                on_stack.discard(name)
                done.add(name)
                finished.append(name)
    return finished[::-1], back


def latency(graph: ir.Graph) -> dict[str, int]:
    """Projections on the shortest path from any input to each population (inputs 0).

    In a feed-forward graph whose paths into each population all have the
    same length, with zero bias and v_leak, a ``"per_projection"`` run of
    population P at step ``t + latency[P]`` equals the ``"nir"`` run at ``t``.
    Populations that no input reaches get 0: there is no input timing to
    align them with.
    """
    outgoing: dict[str, list[str]] = {pop.name: [] for pop in graph.populations}
    for proj in graph.projections:
        outgoing[proj.src].append(proj.dst)
    hops = {name: 0 for name in graph.inputs}
    frontier = list(graph.inputs)
    while frontier:
        reached = []
        for name in frontier:
            for dst in outgoing[name]:
                if dst not in hops:
                    hops[dst] = hops[name] + 1
                    reached.append(dst)
        frontier = reached
    return {pop.name: hops.get(pop.name, 0) for pop in graph.populations}


def simulate(graph: ir.Graph, stimulus: Mapping[str, np.ndarray], steps: int | None = None,
             timing: str = "nir", record_state: bool = False) -> dict[str, Raster]:
    """Run ``graph`` in float64 on ``stimulus``; a Raster for every population, inputs included.

    ``stimulus`` maps each input population to 0/1 spikes (T, N), (T, *shape)
    or with a leading batch dimension (see ``normalize_stimulus``); ``steps``
    cuts or zero-extends it. Rasters are (T, N) for an unbatched stimulus,
    else (B, T, N). Non-spiking populations (li, cuba_li, i) always carry
    their output ``v``; ``record_state`` adds ``v`` for every non-input
    population and the synaptic current ``I`` as ``u`` for cuba_lif/cuba_li.
    States are recorded after the step's update and reset.
    """
    if timing not in TIMINGS:
        raise ValueError(f"timing '{timing}' is not one of {TIMINGS}")
    ir.check(graph, "float")
    stim, n_steps, batched = normalize_stimulus(graph, stimulus, steps)
    batch = next(iter(stim.values())).shape[0]
    pops = {pop.name: pop for pop in graph.populations}
    order, back = _schedule(graph)

    outgoing: dict[str, list[DelayGroup]] = {name: [] for name in pops}
    for proj in graph.projections:
        base = 1 if timing == "per_projection" or proj.name in back else 0
        outgoing[proj.src] += delay_groups(proj, pops[proj.src].size, pops[proj.dst].size, base)
    # slot (t + delay) % ring_len of a population's ring holds what arrives at step t + delay
    ring_len = {name: 1 for name in pops}
    for groups in outgoing.values():
        for group in groups:
            ring_len[group.dst] = max(ring_len[group.dst], group.delay + 1)
    neurons = {name: _neurons(pop, float(graph.dt), batch) for name, pop in pops.items() if pop.model != "input"}
    rings = {name: np.zeros((ring_len[name], batch, pops[name].size)) for name in neurons}

    spikes = {name: stim[name] if pop.model == "input" else np.zeros((batch, n_steps, pop.size), dtype=bool)
              for name, pop in pops.items()}
    v_trace = {name: np.zeros((batch, n_steps, pop.size)) for name, pop in pops.items()
               if pop.model in NON_SPIKING_MODELS or (record_state and pop.model != "input")}
    u_trace = {name: np.zeros((batch, n_steps, pop.size)) for name, pop in pops.items()
               if record_state and pop.model in _CURRENT_MODELS}

    for t in range(n_steps):
        for name in order:
            if name in neurons:
                slot = t % ring_len[name]
                x = rings[name][slot] + neurons[name].coeff["bias"]
                rings[name][slot] = 0.0
                z = neurons[name].step(x)
                if z is not None:
                    spikes[name][:, t] = z
                if name in v_trace:
                    v_trace[name][:, t] = neurons[name].v
                if name in u_trace:
                    u_trace[name][:, t] = neurons[name].i
                out = neurons[name].v if z is None else z.astype(np.float64)
            else:
                out = stim[name][:, t].astype(np.float64)
            for group in outgoing[name]:
                rings[group.dst][(t + group.delay) % ring_len[group.dst]] += group.deliver(out)

    rasters = {}
    for name in pops:
        s, v, u = spikes[name], v_trace.get(name), u_trace.get(name)
        if not batched:
            s, v, u = s[0], None if v is None else v[0], None if u is None else u[0]
        rasters[name] = Raster(spikes=s, v=v, u=u)
    return rasters
