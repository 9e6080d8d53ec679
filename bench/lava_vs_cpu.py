"""The same 784-512-512-10 network on the Lava backend and on the CPU backend, as ratios measured in one run.

    python bench/lava_vs_cpu.py [--steps 200]

The workload is ``bench/cpu_reference.py``'s (research/perf.md §1): three
int8 dense layers, LIF neurons, 8 % input spikes, batch 1. Both artifacts are
compiled from the same quantized graph for targets loihi2 and cpu; the spikes
of every population must be identical, and the script says so.

Lava is timed twice: inside Lava's ``run()`` (its compiler, process
start-up and the steps; what ``run_lava.py`` reports) and end to end (the
whole subprocess: Python, ``import lava``, building processes, reading the
monitors). The CPU backend is timed per run after a warm-up. Expected
(research/perf.md §2): the CPU backend is at least 75x faster.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from types import SimpleNamespace

from cpu_reference import NAMES, workload

from snnc.backends import cpu, lava
from snnc.compiler import hw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timesteps per run (default 200)")
    args = parser.parse_args()
    if lava.available() is not None:
        raise SystemExit(f"lava backend unavailable: {lava.available()}")
    graph, stimulus = workload(args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        cpu_art = cpu.compile(graph, SimpleNamespace(name="cpu"), f"{tmp}/cpu")
        lava_art = lava.compile(graph, hw.bundled_hw("loihi2"), f"{tmp}/lava")
        expected = cpu_art.run({"in": stimulus})  # warm-up (numba)
        runs = 0
        start = time.perf_counter()
        while runs < 5 or time.perf_counter() - start < 0.5:
            cpu_art.run({"in": stimulus})
            runs += 1
        cpu_s = (time.perf_counter() - start) / runs
        start = time.perf_counter()
        got = lava_art.run({"in": stimulus})
        lava_total_s = time.perf_counter() - start
        lava_run_s = lava_art.last_lava_seconds
    same = all(got[name] == expected[name] for name in NAMES)
    counts = {name: int(expected[name].spikes.sum()) for name in NAMES}
    print(f"workload: 784-512-512-10 LIF, T={args.steps}, batch 1; spike counts {counts}")
    print(f"spikes identical on every population (Lava vs CPU): {'yes' if same else 'NO'}")
    print(f"cpu backend:  {cpu_s * 1e3:9.2f} ms per run   {args.steps / cpu_s:12,.0f} timesteps/s")
    print(f"lava run():   {lava_run_s * 1e3:9.2f} ms per run   {args.steps / lava_run_s:12,.0f} timesteps/s")
    print(f"lava total:   {lava_total_s * 1e3:9.2f} ms per run   {args.steps / lava_total_s:12,.0f} timesteps/s")
    print(f"ratio: cpu backend is {lava_run_s / cpu_s:,.0f}x faster than Lava's run(), "
          f"{lava_total_s / cpu_s:,.0f}x end to end (expected >= 75x)")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
