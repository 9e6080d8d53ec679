"""FPGA throughput for the digits example: cycles per timestep measured in RTL simulation, timesteps/s at Fmax.

    python bench/fpga.py [--samples 50] [--targets fpga-ice40,fpga-ecp5]

For each target the bundled snnTorch digits SNN (64-128-10 LIF) is compiled
with a real bitstream (yosys + nextpnr + pack), then ``--samples`` test digits
run through the generated RTL in Verilator or Icarus. The core's per-step
cycle counts come from the simulation itself (``step_cycles``); timesteps/s
is Fmax (nextpnr's final figure, report.json) divided by the mean. The host
link is reported separately: at the board's UART rate, the bytes one step
needs (SPIKES + TICK frames in, OUT_SPIKES out) bound what a board attached
to a PC can sustain. Spikes are checked against the CPU backend.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

import snnc
from snnc.runtime import verify

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FRAME_OVERHEAD = 6  # 0xA5, op, seq, len (2), crc


def link_bytes(inputs: np.ndarray, fired: np.ndarray) -> np.ndarray:
    """UART bytes per step: SPIKES frame (if any input spikes), TICK frame, OUT_SPIKES reply (8 N 1: 10 bits/byte)."""
    n_in = inputs.sum(axis=-1)
    n_out = fired.sum(axis=-1)
    return np.where(n_in > 0, FRAME_OVERHEAD + 2 * n_in, 0) + FRAME_OVERHEAD + FRAME_OVERHEAD + 6 + 2 * n_out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50, help="test digits to simulate (default 50)")
    parser.add_argument("--targets", default="fpga-ice40,fpga-ecp5", help="comma-separated FPGA targets")
    args = parser.parse_args()
    with np.load(EXAMPLES / "digits_snntorch_test.npz") as npz:
        stimulus = {"input": npz["input"][: args.samples]}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for target in args.targets.split(","):
            artifact = snnc.compile(EXAMPLES / "digits_snntorch.nir", target=target, out_dir=f"{tmp}/{target}")
            report = json.loads((artifact.path / "report.json").read_text())
            result = artifact.run(stimulus)
            reference = verify.reference_artifact(artifact.graph, "cpu", Path(tmp) / f"{target}-cpu").run(stimulus)
            mismatches = sum(int((result[p].spikes != reference[p].spikes).sum()) for p in reference)
            cycles = artifact.last_cycles
            implementation = report["implementation"] or {}
            fmax = implementation.get("fmax_mhz") or report["throughput"]["clock_mhz"]
            fired = np.concatenate([result[p.name].spikes for p in artifact.graph.populations if p.model != "input"],
                                   axis=-1)
            per_step_bytes = link_bytes(stimulus["input"].astype(bool), fired)
            link_rate = report["design"]["uart_baud"] / 10 / float(per_step_bytes.mean())
            summary = implementation.get("summary", {})
            rows.append({
                "target": target, "part": report["part"], "fmax_mhz": fmax,
                "luts": summary.get("luts"), "bram": summary.get("bram_blocks"), "spram": summary.get("spram_blocks"),
                "mean_cycles": float(cycles.mean()), "max_cycles": int(cycles.max()),
                "worst_case_cycles": report["throughput"]["worst_case_cycles"],
                "timesteps_per_s_at_fmax": fmax * 1e6 / float(cycles.mean()),
                "uart_timesteps_per_s": link_rate, "mismatching_spikes": mismatches,
            })
    print(f"digits example (64-128-10 LIF), {args.samples} test digits x {stimulus['input'].shape[1]} steps, "
          "cycles measured in RTL simulation\n")
    header = ("target", "Fmax MHz", "LUTs", "BRAM", "SPRAM", "cycles/step mean (max, worst case)",
              "timesteps/s at Fmax", "UART-bound timesteps/s", "vs cpu")
    table = [header]
    for r in rows:
        table.append((r["target"], f"{r['fmax_mhz']:.1f}", _use(r["luts"]), _use(r["bram"]), _use(r["spram"]),
                      f"{r['mean_cycles']:.0f} ({r['max_cycles']}, {r['worst_case_cycles']})",
                      f"{r['timesteps_per_s_at_fmax']:,.0f}", f"{r['uart_timesteps_per_s']:,.0f}",
                      "0 mismatches" if r["mismatching_spikes"] == 0 else f"{r['mismatching_spikes']} MISMATCHES"))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return 1 if any(r["mismatching_spikes"] for r in rows) else 0


def _use(entry: dict | None) -> str:
    return "-" if not entry else f"{entry['used']}/{entry['available']}"


if __name__ == "__main__":
    sys.exit(main())
