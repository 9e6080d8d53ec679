"""Compile time and peak memory of ``pipeline.compile_graph`` on synthetic networks up to 1M neurons / 100M synapses.

    python -m bench.compile_scaling [--max-neurons 300000] [--quick]

Each size runs in a fresh subprocess, so its peak RSS (the child's
``ru_maxrss``) is its own: the graph from ``compiler/synthetic.py``'s
``layered_sparse`` (10 lif layers, locality 0.02, seed 0; generation is timed
apart and not counted) is compiled for ``hw_configs/loihi2.yaml`` with ``CHIPS`` chips by every
pass in ``pipeline.PASSES``, whatever that list holds today. It prints one
row per size: generation time, seconds per pass (the ir.check after each
included), the total compile time, the peak RSS and, for the target size, PASS
or FAIL against "1M neurons / 100M synapses in <= 60 s and <= 4 GB".
``--quick`` runs only 10k neurons / 1M synapses (a CI smoke test).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

from bench import report

REPO = Path(__file__).resolve().parents[1]
SIZES = ((10_000, 1_000_000), (100_000, 10_000_000), (300_000, 30_000_000), (1_000_000, 100_000_000))
"""(neurons, synapses) per row, about 100 synapses per neuron throughout."""
TARGET = (1_000_000, 100_000_000)
QUICK_SIZES = SIZES[:2]
TARGET_S = 60.0
TARGET_BYTES = 4 * 2**30
HW_NAME = "loihi2"
CHIPS = 48
"""Chips of the Loihi 2 system: 100M sparse synapses at 27 bits (8 weight, 6 delay, 13 index) need at least
2,575 cores of 128 KiB (21 chips of 128 cores) and the partition, packing whole atoms, uses more; loihi2.yaml
describes one chip."""


def _peak_rss_bytes() -> int:
    # VmHWM belongs to this process image; ru_maxrss would not do: Linux carries it across fork + exec, so a
    # child of a large parent (python -m bench after the GPU benchmark) would report the parent's peak
    for line in Path("/proc/self/status").read_text().splitlines() if Path("/proc/self/status").exists() else ():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def measure(neurons: int, synapses: int) -> dict:
    """Generate and compile one size in this process; what the table needs, JSON-friendly."""
    from snnc.compiler import hw, pipeline, synthetic

    start = time.perf_counter()
    graph = synthetic.layered_sparse(neurons, synapses)
    generate_s = time.perf_counter() - start
    graph_rss = _peak_rss_bytes()
    timings: dict[str, float] = {}
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        try:
            target = hw.bundled_hw(HW_NAME)
            target = dataclasses.replace(target, chip=dataclasses.replace(target.chip, chips=CHIPS))
            pipeline.compile_graph(graph, target, timings=timings)
        except ValueError as exc:
            error = str(exc)
        compile_s = time.perf_counter() - start
    return {"neurons": neurons, "synapses": synapses, "generate_s": generate_s, "timings": timings,
            "compile_s": compile_s, "graph_rss": graph_rss, "peak_rss": _peak_rss_bytes(),
            "warnings": len(caught), "error": error}


def _run_child(neurons: int, synapses: int) -> dict:
    done = subprocess.run([sys.executable, "-m", "bench.compile_scaling", "--child", str(neurons), str(synapses)],
                          capture_output=True, text=True, check=False, cwd=REPO)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"neurons": neurons, "synapses": synapses, "error": f"child exited {done.returncode}: {tail}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _verdict(row: dict) -> str:
    if (row["neurons"], row["synapses"]) != TARGET:
        return ""
    if row.get("error"):
        return "FAIL (error)"
    slow, big = row["compile_s"] > TARGET_S, row["peak_rss"] > TARGET_BYTES
    return "FAIL" + (" (time)" if slow else "") + (" (memory)" if big else "") if slow or big else "PASS"


def _label(neurons: int, synapses: int) -> str:
    count = f"{neurons / 1e6:g}M" if neurons >= 1_000_000 else f"{neurons / 1000:g}k"
    return f"{count} neurons / {synapses / 1e6:g}M synapses"


def scaling_exponent(small: dict, large: dict) -> float:
    """log(time ratio) / log(synapse ratio) between two measured sizes: 1.0 is linear, 2.0 quadratic."""
    return math.log(large["compile_s"] / small["compile_s"]) / math.log(large["synapses"] / small["synapses"])


def run(quick: bool = False, max_neurons: int | None = None) -> report.BenchResult:
    """One subprocess per size; rows of compile time against the pro-rata budget, the scaling exponent, the verdict."""
    from snnc.compiler import pipeline

    sizes = QUICK_SIZES if quick else SIZES
    if max_neurons is not None:
        sizes = tuple(size for size in sizes if size[0] <= max_neurons)
    passes = [name for name, _, _ in pipeline.PASSES]
    result = report.BenchResult("compile_scaling", f"pipeline.compile_graph on synthetic.layered_sparse (10 lif layers, "
                                                   f"locality 0.02) for {HW_NAME} x {CHIPS} chips, one subprocess per size")
    measured = []
    for neurons, synapses in sizes:
        row = _run_child(neurons, synapses)
        label = _label(neurons, synapses)
        if row.get("error"):
            result.rows.append(report.Row(f"compile {label}", "error", note=row["error"]))
            result.fail(f"{label}: {row['error']}")
            continue
        measured.append(row)
        budget = TARGET_S * synapses / TARGET[1]
        per_pass = ", ".join(f"{name} {row['timings'][name]:.2f}" for name in passes if name in row["timings"])
        result.rows.append(report.compare(
            f"compile time, {label}", row["compile_s"], "s", "budget pro rata (60 s per 100M synapses)", budget,
            note=f"passes (s): {per_pass}; peak RSS {row['peak_rss'] / 2**20:,.0f} MB",
            headline=(neurons, synapses) == sizes[-1]))
        verdict = _verdict(row)
        if verdict:
            result.rows.append(report.Row(f"target {label} in <= {TARGET_S:.0f} s and <= {TARGET_BYTES / 2**30:.0f} GB",
                                          verdict, headline=True))
            if verdict != "PASS":
                result.fail(f"target size: {verdict}")
    if len(measured) >= 2:
        small, large = measured[0], measured[-1]
        result.rows.append(report.Row(
            "scaling exponent (1.0 = linear)", scaling_exponent(small, large),
            baseline=f"{_label(small['neurons'], small['synapses'])} -> {_label(large['neurons'], large['synapses'])}",
            note=f"{large['synapses'] / small['synapses']:,.0f}× synapses took "
                 f"{large['compile_s'] / small['compile_s']:,.1f}× the time", headline=True))
    if TARGET not in sizes:
        result.notes.append(f"target {_label(*TARGET)} in <= {TARGET_S:.0f} s and <= {TARGET_BYTES / 2**30:.0f} GB: "
                            "not run" + (" (--quick)" if quick else ""))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-neurons", type=int, default=None, help="skip sizes with more neurons than this")
    parser.add_argument("--quick", action="store_true", help="only 10k / 1M and 100k / 10M (CI)")
    parser.add_argument("--child", nargs=2, type=int, metavar=("NEURONS", "SYNAPSES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return 0
    result = report.timed(lambda: run(args.quick, args.max_neurons))
    print(report.result_table(result))
    return 0 if result.status != report.FAILED else 1


if __name__ == "__main__":
    raise SystemExit(main())
