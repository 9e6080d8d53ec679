"""Throughput of the CPU golden reference on the 784-512-512-10 LIF workload of research/perf.md.

    python bench/cpu_reference.py [--steps 100] [--repeats 5]

The network is built directly as a quantized IR graph with perf.md's
generator (``np.random.default_rng(0)``: the three int8 weight matrices
``clip(round(N(2, 40)), -128, 127)`` drawn (src, dst) in layer order, then the
input ``rng.random((T, 64, 784)) < 0.08``; sample 0 is the batch-1 stimulus).
Lava's weight there is ``2 * w8``, so our mantissa is w8 with ``weight_exp``
1. LIF: i_decay 4096 (u is the step's input), v_decay 512, vth 1500, reset
to zero. It prints timesteps/s, synaptic events/s (sum over projections of
presynaptic spikes x fan-out, divided by the run time) and the spike counts,
which must equal perf.md's (in 6464, h1 6324, h2 6604, out 110) at T = 100.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from types import SimpleNamespace

import numpy as np

from snnc.backends import cpu
from snnc.compiler import ir

SIZES = (784, 512, 512, 10)
NAMES = ("in", "h1", "h2", "out")
PERF_T = 100
PERF_BATCH = 64
INPUT_RATE = 0.08
V_DECAY = 512
VTH = 1500
LAVA_STEPS_PER_S = 676
PERF_COUNTS = {"in": 6464, "h1": 6324, "h2": 6604, "out": 110}
"""Spike counts of perf.md §1 at B = 1, T = 100 (its integer model and Lava agree on them)."""


def workload(steps: int) -> tuple[ir.Graph, np.ndarray]:
    """The quantized network and a (steps, 784) input raster, drawn exactly as perf.md's common.py."""
    rng = np.random.default_rng(0)
    w8 = [np.clip(np.round(rng.normal(2.0, 40, (a, b))), -128, 127).astype(np.int8)
          for a, b in zip(SIZES[:-1], SIZES[1:])]
    x = rng.random((PERF_T, PERF_BATCH, SIZES[0])) < INPUT_RATE
    if steps > PERF_T:
        x = np.concatenate([x, rng.random((steps - PERF_T, PERF_BATCH, SIZES[0])) < INPUT_RATE])
    stimulus = x[:steps, 0]

    dt = 1e-3
    # float parameters in "integer v" units: v' = (1 - 1/8) v + 64 * sum(w_eff s), spike above vth << 6
    populations = [ir.Population(NAMES[0], (SIZES[0],), "input")]
    for name, n in zip(NAMES[1:], SIZES[1:]):
        full = lambda value, n=n: np.full(n, value, dtype=np.float64)  # noqa: E731
        params = {"tau_mem": full(dt * ir.DECAY_UNITY / V_DECAY), "r": full(64.0 * ir.DECAY_UNITY / V_DECAY),
                  "v_leak": full(0.0), "v_threshold": full(VTH * 64.0), "v_reset": full(0.0), "bias": full(0.0)}
        quant = ir.IntNeuron(i_decay=np.full(n, ir.DECAY_UNITY, dtype=np.int64),
                             v_decay=np.full(n, V_DECAY, dtype=np.int64), vth=np.full(n, VTH, dtype=np.int64),
                             bias_mant=np.zeros(n, dtype=np.int64), bias_exp=np.zeros(n, dtype=np.int64),
                             spiking=True, reset="zero", state_bits=24)
        populations.append(ir.Population(name, (n,), "lif", params, quant=quant))
    projections = []
    for i, w in enumerate(w8):
        mantissa = np.ascontiguousarray(w.T.astype(np.int64))  # IR layout is [dst, src]
        projections.append(ir.Projection(f"fc{i + 1}", NAMES[i], NAMES[i + 1], "dense", 2.0 * mantissa,
                                          quant=ir.IntWeights(weight=mantissa, weight_exp=1, weight_bits=8)))
    graph = ir.Graph(populations=tuple(populations), projections=tuple(projections), inputs=(NAMES[0],),
                     outputs=(NAMES[-1],), dt=dt, meta={"source": "bench/cpu_reference.py"})
    return ir.check(graph, "quantized"), stimulus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=PERF_T, help="timesteps per run (default 100)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs after the warm-up (default 5)")
    args = parser.parse_args()

    graph, stimulus = workload(args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        artifact = cpu.compile(graph, SimpleNamespace(name="cpu"), f"{tmp}/cpu")
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        rasters = artifact.run({"in": stimulus})
        warmup_s = time.perf_counter() - start
        start = time.perf_counter()
        again = artifact.run({"in": stimulus})
        # each repeat times enough back-to-back runs to last ~50 ms, so one scheduler hiccup cannot dominate
        inner = max(1, math.ceil(0.05 / (time.perf_counter() - start)))
        assert all(again[name] == rasters[name] for name in NAMES), "runs of the same stimulus differ"
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in range(inner):
                artifact.run({"in": stimulus})
            times.append((time.perf_counter() - start) / inner)

    counts = {name: int(rasters[name].spikes.sum()) for name in NAMES}
    events = sum(counts[NAMES[i]] * SIZES[i + 1] for i in range(len(SIZES) - 1))
    best, median = min(times), statistics.median(times)
    steps_per_s = args.steps / median
    synapses = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
    print(f"workload: 784-512-512-10 LIF, {synapses:,} synapses, T={args.steps}, batch 1")
    print(f"compile (flatten + write artifact): {compile_s * 1e3:.1f} ms; first run (numba compile or cache load): "
          f"{warmup_s:.2f} s")
    print(f"run: median {median * 1e3:.3f} ms, best {best * 1e3:.3f} ms per run over {args.repeats} repeats "
          f"of {inner} runs")
    print(f"timesteps/s: {steps_per_s:,.0f} (best {args.steps / best:,.0f})")
    print(f"synaptic events/s: {events / median:.3g} ({events:,} events per run)")
    print(f"vs Lava fixed_pt (research/perf.md §2, {LAVA_STEPS_PER_S} steps/s): {steps_per_s / LAVA_STEPS_PER_S:.0f}x")
    print(f"spike counts: {counts}")
    saturated = {name: s for name, s in (artifact.last_saturations or {}).items() if s["u"] or s["v"]}
    print(f"saturations: {saturated or 'none'}")
    if args.steps == PERF_T:
        verdict = "match" if counts == PERF_COUNTS else f"DIFFER from {PERF_COUNTS}"
        print(f"cross-check vs research/perf.md §1 reference integer model: {verdict}")


if __name__ == "__main__":
    main()
