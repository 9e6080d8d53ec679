"""Throughput of the CPU golden reference on the 784-512-512-10 LIF workload of research/perf.md, against snnTorch.

    python -m bench.cpu_reference [--quick] [--steps 100] [--repeats 5]

The network is built directly as a quantized IR graph with perf.md's
generator (``np.random.default_rng(0)``: the three int8 weight matrices
``clip(round(N(2, 40)), -128, 127)`` drawn (src, dst) in layer order, then the
input ``rng.random((T, 64, 784)) < 0.08``; sample 0 is the batch-1 stimulus).
Lava's weight there is ``2 * w8``, so our mantissa is w8 with ``weight_exp``
1. LIF: i_decay 4096 (u is the step's input), v_decay 512, vth 1500, reset
to zero. It prints timesteps/s, synaptic events/s (sum over projections of
presynaptic spikes x fan-out, divided by the run time) and the spike counts,
which must equal perf.md's (in 6464, h1 6324, h2 6604, out 110) at T = 100.
The baseline, timed in the same run on the same stimulus, is snnTorch 1.0
(``nn.Linear`` + ``snn.Leaky`` under ``torch.no_grad()``, the CPU, batch 1)
with the same layers (:func:`snntorch_net`).
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

from bench import report, timing
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
"""Lava fixed_pt on this workload in research/perf.md §2 (a note only: ``bench.lava_vs_cpu`` measures it)."""
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


def snntorch_net(graph: ir.Graph, device: str) -> Any:
    """The same layers in snnTorch (``torch.nn.Sequential``), with the quantized weights in v units so activity compares."""
    import snntorch as snn
    import torch

    layers: list[torch.nn.Module] = []
    for proj in graph.projections:
        linear = torch.nn.Linear(*reversed(proj.weight.shape), bias=False)
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(proj.weight * 64.0, dtype=torch.float32))
        layers += [linear, snn.Leaky(beta=1 - V_DECAY / ir.DECAY_UNITY, threshold=float(VTH * 64), init_hidden=True)]
    return torch.nn.Sequential(*layers).to(device)


def snntorch_runner(net: Any, stimulus: np.ndarray, device: str) -> Callable[[], np.ndarray]:
    """A call running ``net`` on ``stimulus`` (batch, steps, 784) under ``no_grad``, spikes back on the host."""
    import snntorch as snn
    import torch

    x = torch.as_tensor(stimulus, dtype=torch.float32, device=device).transpose(0, 1).contiguous()

    def run() -> np.ndarray:
        with torch.no_grad():
            for layer in net:
                if isinstance(layer, snn.Leaky):
                    layer.reset_mem()
            out = torch.stack([net(x[t]) for t in range(x.shape[0])])
        return out.cpu().numpy()

    return run


def _snntorch_missing() -> str | None:
    missing = [name for name in ("torch", "snntorch") if importlib.util.find_spec(name) is None]
    return f"{' and '.join(missing)} not installed (pip install -e .[torch])" if missing else None


def run(quick: bool = False, steps: int = PERF_T, repeats: int | None = None) -> report.BenchResult:
    """CPU backend timesteps/s at batch 1 against snnTorch on the CPU, measured in this run."""
    repeats = repeats or (5 if quick else 9)
    synapses = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
    result = report.BenchResult("cpu_reference", f"CPU golden reference vs snnTorch, 784-512-512-10 LIF "
                                                 f"({synapses:,} synapses), T={steps}, batch 1")
    graph, stimulus = workload(steps)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        artifact = cpu.compile(graph, SimpleNamespace(name="cpu"), f"{tmp}/cpu")
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        rasters = artifact.run({"in": stimulus})
        first_run_s = time.perf_counter() - start
        again = artifact.run({"in": stimulus})
        if not all(again[name] == rasters[name] for name in NAMES):
            return result.fail("two runs of the same stimulus differ")
        missing = _snntorch_missing()
        if missing:
            ours = timing.time_calls(lambda: artifact.run({"in": stimulus}), repeats)
        else:
            net = snntorch_net(graph, "cpu")
            ours, theirs = timing.time_interleaved(
                [lambda: artifact.run({"in": stimulus}), snntorch_runner(net, stimulus[None], "cpu")], repeats)
    counts = {name: int(rasters[name].spikes.sum()) for name in NAMES}
    events = sum(counts[NAMES[i]] * SIZES[i + 1] for i in range(len(SIZES) - 1))
    steps_per_s = steps / ours.median_s

    if missing:
        result.rows.append(report.Row("timesteps/s", steps_per_s, "timesteps/s", f"snnTorch: not run ({missing})",
                                      headline=True))
    else:
        import torch

        result.rows.append(report.compare(
            "timesteps/s", steps_per_s, "timesteps/s", "snnTorch no_grad", steps / theirs.median_s,
            note=f"medians of {ours.repeats} interleaved samples; torch {torch.__version__}, {torch.get_num_threads()} "
                 "threads; float LIF, same layers", headline=True))
    result.rows.append(report.Row("synaptic events/s", events / ours.median_s, "events/s",
                                  note=f"{events:,} events per run"))
    result.rows.append(report.Row("timesteps/s, best sample", steps / ours.best_s, "timesteps/s",
                                  note=f"best of {ours.repeats} samples of {ours.inner} runs each"))
    result.rows.append(report.Row("compile (flatten + write artifact)", compile_s * 1e3, "ms"))
    result.rows.append(report.Row("first run (numba compile or cache load)", first_run_s, "s"))
    saturated = {name: s for name, s in (artifact.last_saturations or {}).items() if s["u"] or s["v"]}
    result.notes.append(f"spike counts {counts}; saturations: {saturated or 'none'}")
    result.notes.append(f"research/perf.md §2 measured Lava fixed_pt at {LAVA_STEPS_PER_S} timesteps/s on this workload "
                        f"(not this run; bench.lava_vs_cpu measures it): {steps_per_s / LAVA_STEPS_PER_S:,.0f}×")
    if steps == PERF_T:
        same = counts == PERF_COUNTS
        result.rows.append(report.Row("spike counts vs research/perf.md §1 integer model",
                                      "match" if same else "DIFFER", baseline=str(PERF_COUNTS)))
        if not same:
            result.fail(f"spike counts {counts} differ from research/perf.md's {PERF_COUNTS}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed repeats")
    parser.add_argument("--steps", type=int, default=PERF_T, help="timesteps per run (default 100)")
    parser.add_argument("--repeats", type=int, default=None, help="timed samples after the warm-up (default 9, --quick 5)")
    args = parser.parse_args()
    result = report.timed(lambda: run(args.quick, args.steps, args.repeats))
    print(report.result_table(result))
    return 0 if result.status != report.FAILED else 1


if __name__ == "__main__":
    raise SystemExit(main())
