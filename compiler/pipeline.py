"""The compiler pipeline: one plain list of passes, a checker after each.

``PASSES`` is the whole story of what happens between import and a backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from snnc.compiler import calibration as calib
from snnc.compiler import hw as hwmod
from snnc.compiler import ir
from snnc.compiler.passes import normalize, partition, place, quantize
from snnc.compiler.quant_options import QuantOptions

Pass = Callable[[ir.Graph, hwmod.HardwareConfig], ir.Graph]

PASSES: list[tuple[str, Pass, str]] = [
    ("normalize", normalize.run, "float"),
    ("quantize", quantize.run, "quantized"),
    ("partition", partition.run, "quantized"),
    ("place", place.run, "quantized"),
]
"""(name, run, stage the checker enforces afterwards), in execution order."""


class PassError(ValueError):
    """A pass failed; the message names the pass, what ran before it and the problem."""


def compile_graph(graph: ir.Graph, hw: hwmod.HardwareConfig, dump_dir: str | Path | None = None,
                  options: QuantOptions | None = None,
                  calibration: Mapping[str, np.ndarray] | None = None,
                  timings: dict[str, float] | None = None, until: str | None = None) -> ir.Graph:
    """Run every pass on ``graph`` for ``hw``; write ``NN_<pass>.txt`` IR dumps into ``dump_dir`` if given.

    ``options`` narrow ``hw``'s numerics (weight bits, per-channel scales); their
    per-layer overrides reach the quantize pass as ``graph.meta["quant_overrides"]``.
    ``until`` names the last pass to run (all by default).
    ``calibration`` (input population -> 0/1 spikes (B, T, N)) is run through the
    float graph first; its ranges reach the passes as ``graph.meta["calibration"]``
    (``compiler/calibration.py``).
    ``timings``, if given, receives the wall-clock seconds of each pass (its check included) by pass name,
    and of the first check as "check".
    """
    if calibration is not None:
        graph = ir.replace(graph, meta={**graph.meta, "calibration": calib.measure_ranges(graph, calibration)})
    if options is not None:
        hw = options.apply(hw)
        if options.overrides:
            graph = ir.replace(graph, meta={**graph.meta, "quant_overrides": options.meta()})
    dump_path = Path(dump_dir) if dump_dir is not None else None
    if dump_path is not None:
        dump_path.mkdir(parents=True, exist_ok=True)
        (dump_path / "00_import.txt").write_text(ir.dump(graph))
    start = time.perf_counter()
    ir.check(graph, "float")
    if timings is not None:
        timings["check"] = time.perf_counter() - start
    done: list[str] = ["import"]
    for index, (name, run, stage) in enumerate(PASSES, start=1):
        start = time.perf_counter()
        try:
            graph = ir.check(run(graph, hw), stage)
        except ValueError as exc:
            raise PassError(f"pass '{name}' (after {', '.join(done)}): {exc}") from exc
        if timings is not None:
            timings[name] = time.perf_counter() - start
        done.append(name)
        if dump_path is not None:
            (dump_path / f"{index:02d}_{name}.txt").write_text(ir.dump(graph))
        if name == until:
            break
    return graph
