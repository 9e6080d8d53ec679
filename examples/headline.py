"""The headline: the bundled trained digits SNN compiled for every installed target and checked
spike for spike against the CPU integer reference, ending in a one-line verdict.

    .venv/bin/python examples/headline.py [--model examples/digits_if.nir] [--samples 200]

Exit code 0 only when every usable target matches the CPU reference exactly.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import snnc
from snnc import targets
from snnc.compiler.frontends.load import load_model
from snnc.runtime import float_reference

HERE = Path(__file__).resolve().parent


def predictions(rasters, output: str) -> np.ndarray:
    """Class = output neuron with the most spikes (ties: the lower index)."""
    return rasters[output].spikes.sum(axis=1).argmax(axis=1)


def main() -> int:
    parser = argparse.ArgumentParser(description="compile the bundled SNN for every installed target and verify it")
    parser.add_argument("--model", default=str(HERE / "digits_if.nir"))
    parser.add_argument("--stimuli", default=str(HERE / "digits_test.npz"))
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--out-dir", default="build/headline")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    data = np.load(args.stimuli)
    stimulus = {"input": data["input"][: args.samples]}
    labels = data["labels"][: args.samples]
    graph = load_model(args.model)
    output = graph.outputs[0]
    batch, steps = stimulus["input"].shape[:2]
    print(f"model    {args.model}: {len(graph.populations)} populations, "
          f"{sum(p.size for p in graph.populations if p.model != 'input')} neurons, "
          f"{sum(p.synapse_count for p in graph.projections):,} synapses")
    print(f"stimuli  {batch} test digits x {steps} steps (rate-coded), dt = {graph.dt:g} s")

    float_run = float_reference.simulate(graph, stimulus)
    float_acc = float((predictions(float_run, output) == labels).mean())
    print(f"float reference accuracy: {float_acc:.1%}\n")

    rows = []
    reference = None
    for target in targets.TARGETS.values():
        state = targets.status(target)
        if state != "ready":
            rows.append((target.name, state, "", "", "", ""))
            continue
        start = time.perf_counter()
        artifact = snnc.compile(args.model, target=target.name, out_dir=Path(args.out_dir) / target.name)
        compiled = time.perf_counter() - start
        start = time.perf_counter()
        result = artifact.run(stimulus)
        ran = time.perf_counter() - start
        acc = float((predictions(result, output) == labels).mean())
        if reference is None:
            reference = result
            verdict = "reference (golden integer model)"
        else:
            mismatches = sum(int((result[p].spikes != reference[p].spikes).sum()) for p in reference)
            verdict = "spike-equivalent" if mismatches == 0 else f"MISMATCH: {mismatches} spikes differ"
        rows.append((target.name, "ready", f"{compiled:.2f} s", f"{ran:.2f} s", f"{acc:.1%}", verdict))

    header = ("target", "status", "compile", "run", "accuracy", "vs cpu")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())

    ready = [r for r in rows if r[1] == "ready"]
    failed = [r for r in ready if r[5].startswith("MISMATCH")]
    print()
    if failed:
        print(f"FAIL: {len(failed)} of {len(ready)} installed targets differ from the CPU reference")
        return 1
    print(f"OK: {len(ready)} of {len(rows)} targets installed; all {len(ready)} spike-equivalent to the CPU "
          f"reference on {batch} samples (0 mismatching spikes); quantized accuracy "
          f"{ready[0][4]} vs float {float_acc:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
