"""Hardware in the loop: run a compiled artifact on a device and check it spikes like the CPU reference.

A :class:`Device` is anything with ``open``, ``reset``, ``load(artifact)``, ``run(stimulus) -> rasters`` and
``close``. The FPGA backend provides one over a serial port (``snnc.backends.fpga.serial_device``); the port is a
real board's tty, or ``"sim"``: the simulated board (``snnc.backends.fpga.board_sim``), which runs the artifact's
own RTL in Verilator behind a pseudo-terminal, so the very same serial code path is exercised without hardware.

``snnc hil DIR --port PORT`` and the pytest plugin (``runtime/pytest_plugin.py``) are built on :func:`open_board`
and :func:`verify_on_board`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from snnc.runtime import verify
from snnc.runtime.raster import Raster

SIMULATED = "sim"
"""The ``port`` that means: start the simulated board for this artifact."""


@runtime_checkable
class Device(Protocol):
    """A board that runs compiled artifacts: what hardware-in-the-loop tests talk to."""

    def open(self) -> None:
        """Connect (open the port)."""

    def reset(self) -> None:
        """Bring the board to a known state: no neuron state, no half-received request."""

    def load(self, artifact: Any) -> None:
        """Check the board holds ``artifact``'s network and load what the bitstream does not carry (weights)."""

    def run(self, stimulus: Mapping[str, np.ndarray], steps: int | None = None) -> dict[str, Raster]:
        """Input population -> 0/1 spikes (B, T, N) in, population -> spike raster out."""

    def close(self) -> None:
        """Disconnect."""


@dataclass
class Board:
    """An open, loaded device, and the simulator process behind it when the board is simulated."""

    device: Any
    artifact: Path
    port: str
    simulated: Any = None

    def close(self) -> None:
        self.device.close()
        if self.simulated is not None:
            self.simulated.stop()

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _backend(artifact: Path) -> str:
    manifest = artifact / "manifest.json"
    if not manifest.is_file():
        raise ValueError(f"{artifact}: not a compiled artifact (no manifest.json)")
    backend = json.loads(manifest.read_text()).get("backend")
    if backend != "fpga":
        raise ValueError(f"{artifact}: compiled for backend '{backend}'; hardware-in-the-loop runs FPGA artifacts "
                         "(compile for fpga-ice40, fpga-ecp5 or fpga-verilog)")
    return backend


def open_board(artifact: str | Path, port: str = SIMULATED, *, baudrate: int | None = None, timeout: float | None = None,
               retries: int | None = None, faults: Any = None) -> Board:
    """Open the board at ``port`` (``"sim"``: start a simulated one), reset it and load ``artifact``.

    ``baudrate`` defaults to the artifact's (``report.json``); ``timeout`` (s per attempt) and ``retries`` to the
    serial device's defaults; ``faults`` (``board_sim.Faults``) makes the simulated board drop and corrupt bytes.
    """
    artifact = Path(artifact)
    _backend(artifact)
    from snnc.backends.fpga import serial_device

    options: dict[str, Any] = {}
    if timeout is not None:
        options["timeout"] = timeout
    if retries is not None:
        options["retries"] = retries
    simulated = None
    if port == SIMULATED:
        from snnc.backends.fpga import board_sim

        simulated = board_sim.SimulatedBoard(artifact, faults=faults)
        tty = simulated.start()
        device = serial_device.FpgaSerialDevice(tty, baudrate=simulated.baudrate, hardware_reset=simulated.reset,
                                                **options)
    else:
        if faults is not None:
            raise ValueError("fault injection needs the simulated board (port 'sim')")
        if baudrate is None:
            baudrate = json.loads((artifact / "report.json").read_text())["design"]["uart_baud"]
        device = serial_device.FpgaSerialDevice(port, baudrate=baudrate, **options)
    board = Board(device=device, artifact=artifact, port=port, simulated=simulated)
    try:
        device.open()
        device.reset()
        device.load(artifact)
    except BaseException:
        board.close()
        raise
    return board


@dataclass
class HilResult:
    """A board run compared with the CPU reference (spikes of every population)."""

    comparison: verify.Comparison
    port: str
    samples: int
    steps: int
    cycles: np.ndarray | None = None
    link: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"port": self.port, "samples": self.samples, "steps": self.steps, "passed": self.comparison.passed,
                "comparison": self.comparison.to_json(), "link": self.link,
                "mean_cycles_per_step": None if self.cycles is None else float(self.cycles.mean())}


def spikes_only(rasters: Mapping[str, Raster]) -> dict[str, Raster]:
    """The rasters without u and v: what a board reports over its UART."""
    return {name: Raster(spikes=r.spikes) for name, r in rasters.items()}


def verify_on_board(board: Board, stimulus: Mapping[str, np.ndarray] | None = None, *, samples: int = 4,
                    steps: int | None = None, seed: int = 0) -> HilResult:
    """Run ``stimulus`` (default: random, as ``snnc verify``) on ``board`` and on the CPU; compare spikes exactly."""
    from snnc.runtime import execute

    graph = execute.load(board.artifact).graph
    if stimulus is None:
        stimulus = verify.random_stimulus(graph, samples=samples, steps=steps or verify.DEFAULT_STEPS, seed=seed)
    board.device.reset()
    got = board.device.run(stimulus, steps=steps)
    with tempfile.TemporaryDirectory(prefix="snnc-hil-") as tmp:
        reference = verify.reference_artifact(graph, "cpu", Path(tmp) / "cpu").run(stimulus, steps=steps)
    comparison = verify.compare(graph, spikes_only(got), spikes_only(reference))
    first = next(iter(got.values()))
    stats = getattr(board.device, "stats", None)
    return HilResult(comparison=comparison, port=board.port, samples=first.spikes.shape[0] if first.batched else 1,
                     steps=first.steps, cycles=getattr(board.device, "last_cycles", None),
                     link=stats.to_json() if stats is not None else {})


def format_hil(result: HilResult, artifact: str) -> str:
    """A few lines for the terminal: verdict, what was compared, the line's resends."""
    where = "the simulated board" if result.port == SIMULATED else f"the board on {result.port}"
    lines = [verify.format_comparison(result.comparison, f"{artifact} on {where}", "cpu")]
    if result.cycles is not None:
        lines.append(f"board cycles per step: mean {result.cycles.mean():,.0f}, max {int(result.cycles.max()):,}")
    if result.link:
        link = result.link
        lines.append(f"serial link: {link['requests']:,} requests, {link['resends']} resent "
                     f"({link['timeouts']} timeouts, {link['bad_crc_replies']} bad replies, {link['line_naks']} NAKs)")
    return "\n".join(lines)
