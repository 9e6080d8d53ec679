"""FPGA throughput for the digits example: cycles per timestep measured in RTL simulation, timesteps/s at Fmax.

    python -m bench.fpga [--quick] [--samples 50] [--targets fpga-ice40,fpga-ecp5]

For each target the bundled snnTorch digits SNN (64-128-10 LIF) is compiled
(with a real bitstream: yosys + nextpnr + pack, unless skipped), then
``--samples`` test digits run through the generated RTL in Verilator or
Icarus. The core's per-step cycle counts come from the simulation itself
(``step_cycles``); timesteps/s is Fmax (nextpnr's final figure, report.json)
divided by the mean, or the board's nominal clock when no bitstream was
built. The host link is reported separately: at the board's UART rate, the
bytes one step needs (SPIKES + TICK frames in, OUT_SPIKES out) bound what a
board attached to a PC can sustain. The baseline is the CPU backend on the
same stimulus, timed in the same run (sample-timesteps/s); spikes must match
it. ``--quick`` simulates 10 digits instead of 50 and still builds the
bitstreams named in :data:`QUICK_BITSTREAMS` (both: they take 14-17 s each
here); ``--no-bitstream`` simulates only, at the nominal clock.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import snnc
from bench import report, timing
from snnc import targets as registry
from snnc.backends import fpga
from snnc.compiler import hw
from snnc.runtime import verify

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FRAME_OVERHEAD = 6  # 0xA5, op, seq, len (2), crc
TARGETS = ("fpga-ice40", "fpga-ecp5")
QUICK_BITSTREAMS = TARGETS
"""Targets whose bitstream ``--quick`` still builds: on a 2-core VM the digits bitstream took 14 s (iCE40) and 17 s (ECP5)."""


def link_bytes(inputs: np.ndarray, fired: np.ndarray) -> np.ndarray:
    """UART bytes per step: SPIKES frame (if any input spikes), TICK frame, OUT_SPIKES reply (8 N 1: 10 bits/byte)."""
    n_in = inputs.sum(axis=-1)
    n_out = fired.sum(axis=-1)
    return np.where(n_in > 0, FRAME_OVERHEAD + 2 * n_in, 0) + FRAME_OVERHEAD + FRAME_OVERHEAD + 6 + 2 * n_out


def _target_rows(target: str, stimulus: dict[str, np.ndarray], bitstream: bool, tmp: Path) -> list[report.Row]:
    """Build one target, simulate ``stimulus`` in RTL, and compare with the CPU backend timed on the same stimulus."""
    samples, steps = stimulus["input"].shape[:2]
    start = time.perf_counter()
    artifact = snnc.compile(EXAMPLES / "digits_snntorch.nir", target=target, out_dir=tmp / target, bitstream=bitstream)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    result = artifact.run(stimulus)
    sim_s = time.perf_counter() - start
    reference = verify.reference_artifact(artifact.graph, "cpu", tmp / f"{target}-cpu")
    expected = reference.run(stimulus)
    mismatches = sum(int((result[p].spikes != expected[p].spikes).sum()) for p in expected)
    cpu_rate = samples * steps / timing.time_calls(lambda: reference.run(stimulus), 5).median_s

    report_json = json.loads((artifact.path / "report.json").read_text())
    implementation = report_json["implementation"] or {}
    clock = report_json["throughput"]["clock_mhz"]
    fmax = implementation.get("fmax_mhz")
    cycles = artifact.last_cycles
    mean = float(cycles.mean())
    fired = np.concatenate([result[p.name].spikes for p in artifact.graph.populations if p.model != "input"], axis=-1)
    link_rate = report_json["design"]["uart_baud"] / 10 / float(link_bytes(stimulus["input"].astype(bool), fired).mean())
    part = report_json["part"]
    at = f"Fmax {fmax:.1f} MHz" if fmax else f"nominal clock {clock:g} MHz (no bitstream built)"
    rtl = report.Row(f"{target}: spikes vs CPU backend", "identical" if mismatches == 0 else f"{mismatches} MISMATCHES",
                     baseline="CPU backend", note=f"{samples} digits × {steps} steps in RTL simulation ({sim_s:.1f} s)")
    rows = [
        report.compare(f"{target}: timesteps/s at {at}", fmax * 1e6 / mean if fmax else clock * 1e6 / mean,
                       "timesteps/s", "CPU backend, same digits", cpu_rate,
                       note=f"{part}; cycles/step from RTL simulation: mean {mean:.0f}, max {int(cycles.max())}, "
                            f"worst case {report_json['throughput']['worst_case_cycles']}", headline=True),
        report.compare(f"{target}: UART-bound timesteps/s", link_rate, "timesteps/s", "CPU backend, same digits",
                       cpu_rate, note=f"{report_json['design']['uart_baud']:,} baud, bytes per step from the spikes"),
        rtl,
    ]
    if fmax:
        rows.append(report.compare(f"{target}: Fmax", fmax, "MHz", "clock constraint", clock,
                                   note=f"nextpnr, bitstream built in {build_s:.1f} s (compile included)"))
        summary = implementation.get("summary", {})
        for key, label in (("luts", "LUTs"), ("bram_blocks", "block RAMs"), ("spram_blocks", "SPRAMs")):
            if summary.get(key):
                rows.append(report.compare(f"{target}: {label}", summary[key]["used"], "", f"available on {part}",
                                           summary[key]["available"]))
    else:
        rows.append(report.Row(f"{target}: Fmax and resources", "not measured",
                               note="no bitstream was built for this target in this run"))
    if mismatches:
        raise SpikeMismatch(f"{target}: {mismatches} spikes differ from the CPU backend", rows)
    return rows


class SpikeMismatch(Exception):
    """The RTL's spikes differ from the CPU backend's; ``rows`` are what was measured."""

    def __init__(self, message: str, rows: list[report.Row]) -> None:
        super().__init__(message)
        self.rows = rows


def run(quick: bool = False, samples: int | None = None, targets: Sequence[str] = TARGETS,
        bitstreams: Sequence[str] | None = None) -> report.BenchResult:
    """Per target: timesteps/s at Fmax (RTL-simulated cycles), UART bound, Fmax and resources, vs the CPU backend."""
    samples = samples or (10 if quick else 50)
    bitstreams = tuple(bitstreams if bitstreams is not None else (QUICK_BITSTREAMS if quick else targets))
    title = f"digits example (64-128-10 LIF) on {', '.join(targets)}: cycles from RTL simulation, Fmax from nextpnr"
    missing = fpga.available()
    if missing is not None:
        return report.BenchResult.not_run("fpga", title, missing)
    result = report.BenchResult("fpga", title)
    with np.load(EXAMPLES / "digits_snntorch_test.npz") as npz:
        stimulus = {"input": npz["input"][:samples]}
    with tempfile.TemporaryDirectory() as tmp:
        for target in targets:
            try:
                result.rows += _target_rows(target, stimulus, target in bitstreams, Path(tmp))
            except SpikeMismatch as exc:
                result.rows += exc.rows
                result.fail(str(exc))
    built = [t for t in targets if t in bitstreams]
    result.notes.append(f"bitstreams built: {', '.join(built) or 'none'}; Fmax/resources come from those builds, "
                        "timesteps/s elsewhere from the nominal clock; the CPU baseline is sample-timesteps/s, batched")
    result.notes.append("boards: " + ", ".join(f"{t} = {hw.bundled_hw(registry.get_target(t).hw).fpga.board}"
                                               for t in targets))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 digits instead of 50")
    parser.add_argument("--samples", type=int, default=None, help="test digits to simulate (default 50, --quick 10)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated FPGA targets")
    parser.add_argument("--no-bitstream", action="store_true", help="simulate only: no synthesis, place and route")
    args = parser.parse_args()
    targets = args.targets.split(",")
    bitstreams = () if args.no_bitstream else None
    result = report.timed(lambda: run(args.quick, args.samples, targets, bitstreams))
    print(report.result_table(result))
    return 0 if result.status != report.FAILED else 1


if __name__ == "__main__":
    raise SystemExit(main())
