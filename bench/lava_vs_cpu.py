"""The same 784-512-512-10 network on the Lava backend and on the CPU backend, as ratios measured in one run.

    python -m bench.lava_vs_cpu [--quick] [--steps 200]

The workload is ``bench/cpu_reference.py``'s (research/perf.md §1): three
int8 dense layers, LIF neurons, 8 % input spikes, batch 1. Both artifacts are
compiled from the same quantized graph for targets loihi2 and cpu; the spikes
of every population must be identical, and the result says so (and fails
otherwise).

Lava is timed twice: inside Lava's ``run()`` (its compiler, process
start-up and the steps; what ``run_lava.py`` reports) and end to end (the
whole subprocess: Python, ``import lava``, building processes, reading the
monitors). The CPU backend is timed per run after a warm-up. Expected
(research/perf.md §2): the CPU backend is at least 75x faster. Lava runs once
in either mode (a run costs seconds); ``--quick`` only times the CPU backend
with fewer samples.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from types import SimpleNamespace

from bench import report, timing
from bench.cpu_reference import NAMES, workload
from snnc.backends import cpu, lava
from snnc.compiler import hw

STEPS = 200
TITLE = "CPU backend vs Lava 0.10 fixed_pt simulation, 784-512-512-10 LIF, batch 1"


def run(quick: bool = False, steps: int = STEPS) -> report.BenchResult:
    """CPU backend timesteps/s against Lava's ``run()`` and Lava end to end, spikes compared on every population."""
    title = f"{TITLE}, T={steps}"
    missing = lava.available()
    if missing is not None:
        return report.BenchResult.not_run("lava_vs_cpu", title, missing)
    result = report.BenchResult("lava_vs_cpu", title)
    graph, stimulus = workload(steps)
    with tempfile.TemporaryDirectory() as tmp:
        cpu_art = cpu.compile(graph, SimpleNamespace(name="cpu"), f"{tmp}/cpu")
        lava_art = lava.compile(graph, hw.bundled_hw("loihi2"), f"{tmp}/lava")
        expected = cpu_art.run({"in": stimulus})
        ours = timing.time_calls(lambda: cpu_art.run({"in": stimulus}), 5 if quick else 9)
        start = time.perf_counter()
        got = lava_art.run({"in": stimulus})
        lava_total_s = time.perf_counter() - start
        lava_run_s = lava_art.last_lava_seconds
    same = all(got[name] == expected[name] for name in NAMES)
    cpu_rate = steps / ours.median_s
    result.rows.append(report.compare("CPU backend timesteps/s", cpu_rate, "timesteps/s", "Lava run()",
                                      steps / lava_run_s, note="run(): Lava's compiler, process start-up, the steps",
                                      headline=True))
    result.rows.append(report.compare("CPU backend timesteps/s", cpu_rate, "timesteps/s", "Lava end to end",
                                      steps / lava_total_s, note="the whole Lava subprocess, import lava included"))
    result.rows.append(report.Row("spikes identical on every population", "yes" if same else "NO",
                                  baseline="Lava fixed_pt", headline=True))
    counts = {name: int(expected[name].spikes.sum()) for name in NAMES}
    result.notes.append(f"spike counts {counts}; research/perf.md §2 expects the CPU backend >= 75× faster than Lava")
    if not same:
        result.fail("Lava and CPU spikes differ")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed CPU samples")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"timesteps per run (default {STEPS})")
    args = parser.parse_args()
    result = report.timed(lambda: run(args.quick, args.steps))
    print(report.result_table(result))
    return 0 if result.status != report.FAILED else 1


if __name__ == "__main__":
    raise SystemExit(main())
