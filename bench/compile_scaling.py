"""Compile time and peak memory of ``pipeline.compile_graph`` on synthetic networks up to 1M neurons / 100M synapses.

    python bench/compile_scaling.py [--max-neurons 300000] [--quick]

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
import resource
import subprocess
import sys
import time
import warnings

SIZES = ((10_000, 1_000_000), (100_000, 10_000_000), (300_000, 30_000_000), (1_000_000, 100_000_000))
"""(neurons, synapses) per row, about 100 synapses per neuron throughout."""
TARGET = (1_000_000, 100_000_000)
TARGET_S = 60.0
TARGET_BYTES = 4 * 2**30
HW_NAME = "loihi2"
CHIPS = 48
"""Chips of the Loihi 2 system: 100M sparse synapses at 27 bits (8 weight, 6 delay, 13 index) need at least
2,575 cores of 128 KiB (21 chips of 128 cores) and the partition, packing whole atoms, uses more; loihi2.yaml
describes one chip."""


def _peak_rss_bytes() -> int:
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


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
    done = subprocess.run([sys.executable, __file__, "--child", str(neurons), str(synapses)],
                          capture_output=True, text=True, check=False)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-neurons", type=int, default=None, help="skip sizes with more neurons than this")
    parser.add_argument("--quick", action="store_true", help="only 10k neurons / 1M synapses (CI)")
    parser.add_argument("--child", nargs=2, type=int, metavar=("NEURONS", "SYNAPSES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return

    from snnc.compiler import pipeline

    sizes = SIZES[:1] if args.quick else SIZES
    if args.max_neurons is not None:
        sizes = tuple(size for size in sizes if size[0] <= args.max_neurons)
    passes = ["check"] + [name for name, _, _ in pipeline.PASSES]
    print(f"compile_graph on synthetic.layered_sparse (10 lif layers, locality 0.02) for {HW_NAME}; "
          f"passes: {', '.join(passes[1:])}; one subprocess per size")
    header = (f"{'neurons':>9} {'synapses':>11} {'gen s':>6} " + " ".join(f"{name[:10]:>10}" for name in passes)
              + f" {'total s':>8} {'graph MB':>9} {'peak MB':>8}  verdict")
    print(header)
    for neurons, synapses in sizes:
        row = _run_child(neurons, synapses)
        if "timings" not in row:
            print(f"{neurons:>9,} {synapses:>11,}  {row['error']}  {_verdict(row)}")
            continue
        cells = " ".join(f"{row['timings'][name]:>10.2f}" if name in row["timings"] else f"{'-':>10}"
                         for name in passes)
        print(f"{neurons:>9,} {synapses:>11,} {row['generate_s']:>6.2f} {cells} {row['compile_s']:>8.2f} "
              f"{row['graph_rss'] / 2**20:>9.0f} {row['peak_rss'] / 2**20:>8.0f}  {_verdict(row)}"
              + (f"  error: {row['error']}" if row["error"] else "")
              + (f"  ({row['warnings']} warnings)" if row["warnings"] else ""), flush=True)
    print("graph MB: peak RSS once the float graph exists; peak MB: peak RSS of the whole child (compile included)")
    if TARGET not in sizes:
        print(f"target {TARGET[0]:,} neurons / {TARGET[1]:,} synapses in <= {TARGET_S:.0f} s and <= "
              f"{TARGET_BYTES / 2**30:.0f} GB: not run")


if __name__ == "__main__":
    main()
