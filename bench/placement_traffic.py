"""Spikes between cores: the METIS partitioner against the greedy sequential baseline, measured in one run.

    python bench/placement_traffic.py

For each network the same quantized graph goes through the partition and
place passes twice, with ``meta["placer"]`` "greedy" and "metis", and the
mapping reports (``compiler/mapping_report.py``) are printed side by side:
cores, inter-core spikes per step, the cut against greedy, mean hops and
spikes between chips. Networks:

- the bundled snnTorch digits MLP on ``hw_configs/mesh_study.yaml`` (64-neuron
  cores), firing rates measured on 100 of its test digits, and estimated;
- the bundled ONNX digits CNN on ``mesh_study.yaml`` (rates estimated);
- ``synthetic.layered_sparse``, 50,000 neurons, 2M synapses, 10 layers, on
  ``loihi2.yaml`` with 4 chips: topographic wiring (each neuron's sources
  within ±0.1% of the previous layer) and wide wiring (±2%).

The target is a cut of at least 30% on the 50k-neuron sparse network and on
the digits example. Traffic is the multicast count of ``compiler/atoms.py``:
a spike reaches each core holding a target once.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from snnc.compiler import hw, ir, pipeline, synthetic
from snnc.compiler.frontends.load import load_model

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
TARGET_CUT = 30.0


def _placed(graph: ir.Graph, target: hw.HardwareConfig, placer: str,
            calibration: dict[str, np.ndarray] | None) -> dict:
    graph = ir.replace(graph, meta={**graph.meta, "placer": placer})
    return pipeline.compile_graph(graph, target, calibration=calibration).meta["placement"]


def _row(name: str, graph: ir.Graph, target: hw.HardwareConfig, calibration: dict[str, np.ndarray] | None = None,
         goal: bool = False) -> str:
    greedy = _placed(graph, target, "greedy", calibration)
    metis = _placed(graph, target, "metis", calibration)
    before, after = greedy["inter_core_spikes_per_step"], metis["inter_core_spikes_per_step"]
    cut = 100.0 * (before - after) / before if before else 0.0
    verdict = ("PASS" if cut >= TARGET_CUT else "FAIL") if goal else ""
    return (f"{name:<36} {target.name:<11} {metis['rates']:<9} {greedy['cores_used']:>4}/{metis['cores_used']:<4} "
            f"{before:>11,.1f} {after:>11,.1f} {cut:>6.1f}% {greedy['mean_hops']:>5.2f}/{metis['mean_hops']:<5.2f} "
            f"{greedy['inter_chip_spikes_per_step']:>9,.1f}/{metis['inter_chip_spikes_per_step']:<9,.1f} {verdict}")


def main() -> None:
    warnings.simplefilter("ignore")
    study = hw.load_hw(REPO / "hw_configs" / "mesh_study.yaml")
    loihi = hw.bundled_hw("loihi2")
    loihi = dataclasses.replace(loihi, chip=dataclasses.replace(loihi.chip, chips=4))
    print("inter-core spikes per step, greedy sequential baseline vs METIS (cut = how many fewer)")
    print(f"{'network':<36} {'target':<11} {'rates':<9} {'cores g/m':>9} {'greedy':>11} {'metis':>11} {'cut':>7} "
          f"{'hops g/m':>11} {'inter-chip g/m':>19}")
    digits = load_model(EXAMPLES / "digits_snntorch.nir")
    test = np.load(EXAMPLES / "digits_snntorch_test.npz")
    measured = {"input": test["input"][:100].astype(np.float64)}
    print(_row("digits snnTorch MLP (64-128-10)", digits, study, measured, goal=True))
    print(_row("digits snnTorch MLP (64-128-10)", digits, study))
    print(_row("digits ONNX CNN", load_model(EXAMPLES / "digits_cnn.onnx"), study))
    for locality, label in ((0.001, "topographic ±0.1%"), (0.02, "wide ±2%")):
        sparse = synthetic.layered_sparse(50_000, 2_000_000, locality=locality)
        print(_row(f"sparse 50k/2M, {label}", sparse, loihi, goal=locality < 0.01))


if __name__ == "__main__":
    main()
