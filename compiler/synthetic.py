"""Deterministic synthetic float graphs for benchmarks and tests.

:func:`layered_sparse` builds networks of up to millions of neurons and
hundreds of millions of synapses in seconds: an input population feeding a
chain of spiking layers through sparse projections with int32 ``rows``/``cols``
and float32 weights (12 bytes per synapse, 13 with delays).
:func:`layered_dense` is a small fully connected chain for tests.
"""

from __future__ import annotations

import numpy as np

from snnc.compiler import ir

DT = 1e-3
"""Time step of every synthetic graph (s)."""

DEFAULTS: dict[str, float] = {
    "tau_mem": 1e-2, "tau_syn": 5e-3, "r": 1.0, "v_leak": 0.0, "v_threshold": 1.0, "v_reset": 0.0,
    "w_in": 1.0, "bias": 0.9,
}
"""Float neuron parameters (time constants in s) shared by every neuron of a synthetic graph.

The bias holds v at 0.9 of the threshold without input, so spikes come from the fluctuations of a
near-balanced input; that keeps the rate of deep layers steady instead of dying out or saturating."""

INPUT_RATE = 0.1
"""Input spike probability per neuron and step that the weight scale assumes."""
HIDDEN_RATE = 0.03
"""Spike probability per neuron and step of the spiking layers that the weight scale assumes."""
WEIGHT_MEAN = -0.1
WEIGHT_SPREAD = 3.0
"""Weights are (WEIGHT_MEAN + WEIGHT_SPREAD·N(0, 1)) / (fan-in · source rate), about half negative.
With lif and fan-in ~100, every layer then spikes on 2.5-4 % of neurons per step under 10 % input
(float reference, per-projection timing)."""
MAX_DELAY = 7
"""Delays (with ``delays=True``) are uniform in 0..MAX_DELAY steps, within every target's delay bits."""


def _population(name: str, size: int, model: str) -> ir.Population:
    params = {key: np.full(size, DEFAULTS[key]) for key in ir.NEURON_MODELS[model]}
    return ir.Population(name, (size,), model, params)


def _split(total: int, parts: int) -> np.ndarray:
    """``total`` as ``parts`` whole numbers that differ by at most 1, larger ones first."""
    return np.full(parts, total // parts, dtype=np.int64) + (np.arange(parts) < total % parts)


def _sources(rng: np.random.Generator, rows: np.ndarray, n: int, m: int, locality: float | None) -> np.ndarray:
    """int32 source index per synapse; topographic around j·n/m within ±locality·n (wrapping) unless None."""
    if locality is None:
        return rng.integers(0, n, rows.size, dtype=np.int32)
    half = window_half_width(n, locality)
    centres = (np.arange(m, dtype=np.int64) * n // m).astype(np.int32)
    cols = rng.integers(-half, half + 1, rows.size, dtype=np.int32)
    cols += centres[rows]
    np.remainder(cols, n, out=cols)
    return cols


def window_half_width(n: int, locality: float) -> int:
    """Half width (neurons) of the source window in a layer of ``n`` neurons: round(locality·n), at least 1."""
    return max(1, int(round(locality * n)))


def layered_sparse(neurons: int, synapses: int, layers: int = 10, locality: float | None = 0.02, seed: int = 0,
                   model: str = "lif", delays: bool = False) -> ir.Graph:
    """An input population and ``layers`` spiking layers chained by sparse projections.

    The ``layers + 1`` populations ("in", "l1", ...) have sizes differing by at
    most 1 that sum to ``neurons``; projection "p<l>" joins layer l-1 to l and
    holds ``synapses / layers`` synapses (the total is exactly ``synapses``),
    spread evenly over its destination neurons and sorted by row. With
    ``locality``, destination j of a layer of m neurons draws each source
    uniformly from ±round(locality·n) around j·n/m of its source layer of n
    neurons, wrapping at the edges; None draws sources uniformly. Sources are
    drawn with replacement, so a (row, col) pair can repeat when the fan-in
    approaches the window. ``model`` is a spiking model of ``ir.NEURON_MODELS``
    (parameters from :data:`DEFAULTS`); the weight scale (see
    :data:`WEIGHT_MEAN`) keeps lif layers spiking a few percent of steps under
    :data:`INPUT_RATE` random input (see :data:`WEIGHT_SPREAD`). ``delays`` adds int8 per-synapse delays.
    Same arguments, same graph.
    """
    if model not in ir.SPIKING_MODELS:
        raise ValueError(f"model '{model}' does not spike; pick one of {sorted(ir.SPIKING_MODELS)}")
    if layers < 1 or neurons < layers + 1 or synapses < layers:
        raise ValueError(f"need layers >= 1, neurons >= layers + 1 and synapses >= layers; got layers {layers}, "
                         f"neurons {neurons:,}, synapses {synapses:,}")
    rng = np.random.default_rng(seed)
    sizes = _split(neurons, layers + 1)
    names = ["in"] + [f"l{i}" for i in range(1, layers + 1)]
    populations = [ir.Population("in", (int(sizes[0]),), "input")]
    populations += [_population(name, int(size), model) for name, size in zip(names[1:], sizes[1:])]
    projections = []
    for layer, nnz in enumerate(_split(synapses, layers), start=1):
        n, m = int(sizes[layer - 1]), int(sizes[layer])
        rows = np.repeat(np.arange(m, dtype=np.int32), _split(int(nnz), m))
        cols = _sources(rng, rows, n, m, locality)
        rate = INPUT_RATE if layer == 1 else HIDDEN_RATE
        weight = rng.standard_normal(rows.size, dtype=np.float32)
        weight *= np.float32(WEIGHT_SPREAD)
        weight += np.float32(WEIGHT_MEAN)
        weight *= np.float32(m / (nnz * rate))
        delay = rng.integers(0, MAX_DELAY + 1, rows.size, dtype=np.int8) if delays else None
        projections.append(ir.Projection(f"p{layer}", names[layer - 1], names[layer], "sparse", weight,
                                         rows=rows, cols=cols, delay=delay))
    meta = {"source": "compiler/synthetic.py", "generator": "layered_sparse", "seed": seed,
            "locality": locality}
    return ir.Graph(populations=tuple(populations), projections=tuple(projections), inputs=("in",),
                    outputs=(names[-1],), dt=DT, meta=meta)


def layered_dense(sizes: list[int], seed: int = 0, model: str = "lif") -> ir.Graph:
    """A fully connected chain: input of ``sizes[0]`` neurons, then one ``model`` layer per further size.

    Weights are float64 N(WEIGHT_MEAN, WEIGHT_SPREAD) / (fan-in · source rate), layout [dst, src].
    """
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"need an input and at least one layer of positive sizes, got {sizes}")
    rng = np.random.default_rng(seed)
    names = ["in"] + [f"l{i}" for i in range(1, len(sizes))]
    populations = [ir.Population("in", (sizes[0],), "input")]
    populations += [_population(name, size, model) for name, size in zip(names[1:], sizes[1:])]
    projections = []
    for layer in range(1, len(sizes)):
        n, m = sizes[layer - 1], sizes[layer]
        rate = INPUT_RATE if layer == 1 else HIDDEN_RATE
        weight = (WEIGHT_MEAN + WEIGHT_SPREAD * rng.standard_normal((m, n))) / (n * rate)
        projections.append(ir.Projection(f"p{layer}", names[layer - 1], names[layer], "dense", weight))
    return ir.Graph(populations=tuple(populations), projections=tuple(projections), inputs=("in",),
                    outputs=(names[-1],), dt=DT, meta={"source": "compiler/synthetic.py", "generator": "layered_dense"})
