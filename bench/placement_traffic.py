"""Spikes between cores: the METIS partitioner against the greedy sequential baseline, measured in one run.

    python -m bench.placement_traffic [--quick]

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
a spike reaches each core holding a target once. Each row's ratio is METIS
over greedy (lower is better; the cut is one minus it). The workloads are
small enough that ``--quick`` runs them all too.
"""

from __future__ import annotations

import argparse
import dataclasses
import warnings
from pathlib import Path

import numpy as np

from bench import report
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
         goal: bool = False) -> report.Row:
    greedy = _placed(graph, target, "greedy", calibration)
    metis = _placed(graph, target, "metis", calibration)
    before, after = greedy["inter_core_spikes_per_step"], metis["inter_core_spikes_per_step"]
    cut = 100.0 * (before - after) / before if before else 0.0
    verdict = f"; target cut >= {TARGET_CUT:.0f}%: {'PASS' if cut >= TARGET_CUT else 'FAIL'}" if goal else ""
    return report.compare(
        f"inter-core spikes/step, {name} ({metis['rates']} rates)", after, "spikes/step", "greedy sequential", before,
        note=f"{target.name}; cut {cut:.1f}%{verdict}; cores {greedy['cores_used']}/{metis['cores_used']}, "
             f"mean hops {greedy['mean_hops']:.2f}/{metis['mean_hops']:.2f}, inter-chip spikes "
             f"{greedy['inter_chip_spikes_per_step']:,.1f}/{metis['inter_chip_spikes_per_step']:,.1f} (greedy/metis)",
        headline=goal)


def run(quick: bool = False) -> report.BenchResult:
    """METIS against greedy placement on the digits MLP, the digits CNN and two 50k-neuron sparse networks."""
    result = report.BenchResult("placement_traffic", "spikes between cores: METIS partitioner vs greedy sequential "
                                                     "placement (ratio = METIS / greedy, lower is better)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = hw.load_hw(REPO / "hw_configs" / "mesh_study.yaml")
        loihi = hw.bundled_hw("loihi2")
        loihi = dataclasses.replace(loihi, chip=dataclasses.replace(loihi.chip, chips=4))
        digits = load_model(EXAMPLES / "digits_snntorch.nir")
        with np.load(EXAMPLES / "digits_snntorch_test.npz") as test:
            measured = {"input": test["input"][:100].astype(np.float64)}
        result.rows.append(_row("digits snnTorch MLP (64-128-10)", digits, study, measured, goal=True))
        result.rows.append(_row("digits snnTorch MLP (64-128-10)", digits, study))
        result.rows.append(_row("digits ONNX CNN", load_model(EXAMPLES / "digits_cnn.onnx"), study))
        for locality, label in ((0.001, "topographic ±0.1%"), (0.02, "wide ±2%")):
            sparse = synthetic.layered_sparse(50_000, 2_000_000, locality=locality)
            result.rows.append(_row(f"sparse 50k/2M, {label}", sparse, loihi, goal=locality < 0.01))
    failed = [row.metric for row in result.rows if row.note.endswith("FAIL")]
    if failed:
        result.fail(f"cut below {TARGET_CUT:.0f}% on {', '.join(failed)}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="accepted for symmetry: the workloads are the same")
    args = parser.parse_args()
    result = report.timed(lambda: run(args.quick))
    print(report.result_table(result))
    return 0 if result.status != report.FAILED else 1


if __name__ == "__main__":
    raise SystemExit(main())
