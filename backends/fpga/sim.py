"""Run the generated RTL in a real HDL simulator (Icarus Verilog or Verilator), driven from Python.

``simulate`` writes the stimulus as a command file for ``rtl/tb_core.v``,
runs the simulator in the artifact's ``rtl/`` directory (where the
``$readmemh`` images are) and parses the log back into per-step spikes,
state and cycle counts. Icarus compiles instantly and suits small runs;
Verilator compiles for ~10 s and then runs about 30x faster, so it is picked
for long runs. Verilator builds are cached by the hash of their sources under
``$XDG_CACHE_HOME/snnc/verilator`` (``~/.cache`` by default).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIM_ENV = "SNNC_FPGA_SIM"
"""Environment variable forcing the simulator: ``icarus`` or ``verilator``."""
CORE_SOURCES = ("tb_core.v", "snn_core.v", "snn_ram.v")
VERILATOR_ABOVE_CYCLES = 1_500_000
"""Estimated cycles above which Verilator's compile time pays for itself."""


class SimulationError(RuntimeError):
    """The simulator is missing, failed or produced an unreadable log; the message is one line."""


@dataclass
class SimResult:
    """What the core did: spikes (B, T, N) bool, u/v (B, T, N) int64 or None, cycles (B, T) int64."""

    spikes: np.ndarray
    u: np.ndarray | None
    v: np.ndarray | None
    cycles: np.ndarray
    simulator: str


def available_simulators() -> list[str]:
    """Simulators on this machine, preferred first for small runs."""
    found = []
    if shutil.which("iverilog") and shutil.which("vvp"):
        found.append("icarus")
    if shutil.which("verilator"):
        found.append("verilator")
    return found


def choose_simulator(estimated_cycles: float) -> str:
    """The simulator for a run of about ``estimated_cycles`` clock cycles (``SNNC_FPGA_SIM`` overrides)."""
    found = available_simulators()
    forced = os.environ.get(SIM_ENV)
    if forced:
        if forced not in ("icarus", "verilator"):
            raise SimulationError(f"{SIM_ENV}={forced!r}: use 'icarus' or 'verilator'")
        if forced not in found:
            raise SimulationError(f"{SIM_ENV}={forced} but {forced} is not installed (bash setup.sh installs it)")
        return forced
    if not found:
        raise SimulationError("no HDL simulator found: install iverilog or verilator (bash setup.sh does)")
    if "verilator" in found and (estimated_cycles > VERILATOR_ABOVE_CYCLES or "icarus" not in found):
        return "verilator"
    return found[0]


def command_file(stimulus: np.ndarray) -> str:
    """tb_core commands for input spikes ``stimulus`` (B, T, N_INPUTS) bool: clear, then inputs + tick per step."""
    lines = []
    for sample in stimulus:
        lines.append("0 0")
        for step in sample:
            lines.extend(f"1 {i}" for i in np.flatnonzero(step))
            lines.append("2 0")
    return "\n".join(lines) + "\n"


def _run(command: list[str], cwd: Path, timeout: float, what: str) -> None:
    try:
        proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SimulationError(f"{what} did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if "rror" in line]
        raise SimulationError(f"{what} failed: {(errors or lines or ['exit status ' + str(proc.returncode)])[0].strip()}")


def cached_verilator_build(key: str, binary_name: str, argv: Callable[[Path], list[str]], timeout: float,
                           what: str) -> Path:
    """The executable ``binary_name`` cached under ``key``; built by ``verilator`` with ``argv(obj_dir)`` if missing.

    The cache is ``$XDG_CACHE_HOME/snnc/verilator/<key>`` (``~/.cache`` by default); builds run in a private
    directory and are renamed into place, so concurrent builders never see half a binary.
    """
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "snnc" / "verilator"
    cache = root / key
    binary = cache / binary_name
    if binary.is_file():
        return binary
    root.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix="build-", dir=root))
    try:
        _run(["verilator", *argv(build / "obj")], cwd=build, timeout=timeout, what=what)
        staged = build / "staged"
        staged.mkdir()
        shutil.copy2(build / "obj" / binary_name, staged / binary_name)
        try:
            staged.rename(cache)
        except OSError:  # another process built it first
            pass
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return binary


def _verilator_binary(rtl_dir: Path, timeout: float) -> Path:
    """Build (or reuse) the Verilator executable for the sources in ``rtl_dir``."""
    digest = hashlib.sha256()
    for name in (*CORE_SOURCES, "snnc_config.vh"):
        digest.update((rtl_dir / name).read_bytes())
    return cached_verilator_build(
        digest.hexdigest()[:20], "Vtb_core",
        lambda obj: ["--binary", "-j", "2", "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", "tb_core",
                     f"-I{rtl_dir}", "--Mdir", str(obj), "-o", "Vtb_core", "-CFLAGS", "-O1",
                     *(str(rtl_dir / name) for name in CORE_SOURCES)],
        timeout, "verilator build")


def simulate(rtl_dir: Path, stimulus: np.ndarray, n_neurons: int, record_state: bool,
             simulator: str | None = None, timeout: float = 3600.0, estimated_cycles: float | None = None,
             v_range: tuple[int, int] | None = None) -> SimResult:
    """Run ``stimulus`` (B, T, N_INPUTS) bool through the core in ``rtl_dir``.

    ``estimated_cycles`` (from the cycle model) picks the simulator; without it a rough guess is used.
    ``v_range`` (first, stop) logs u and v of those neuron ids even without ``record_state``.
    """
    rtl_dir = Path(rtl_dir).resolve()  # the simulator runs inside it; relative paths would break
    batch, steps, _ = stimulus.shape
    if simulator is None:
        if estimated_cycles is None:
            estimated_cycles = batch * steps * (n_neurons + 20) + 10 * float(stimulus.sum())
        simulator = choose_simulator(estimated_cycles)
    with tempfile.TemporaryDirectory(prefix="snnc-sim-") as tmp:
        tmp_path = Path(tmp)
        stim_file, out_file = tmp_path / "stim.txt", tmp_path / "out.txt"
        stim_file.write_text(command_file(stimulus))
        plusargs = [f"+stim={stim_file}", f"+out={out_file}"] + (["+state"] if record_state else [])
        if v_range is not None:
            plusargs += [f"+vlo={v_range[0]}", f"+vhi={v_range[1]}"]
        if simulator == "icarus":
            vvp = tmp_path / "tb_core.vvp"
            _run(["iverilog", "-g2005", "-o", str(vvp), "-I", str(rtl_dir), "-s", "tb_core",
                  *(str(rtl_dir / name) for name in CORE_SOURCES)], cwd=rtl_dir, timeout=timeout, what="iverilog")
            _run(["vvp", "-n", str(vvp), *plusargs], cwd=rtl_dir, timeout=timeout, what="vvp")
        elif simulator == "verilator":
            binary = _verilator_binary(rtl_dir, timeout)
            _run([str(binary), *plusargs], cwd=rtl_dir, timeout=timeout, what="verilator simulation")
        else:
            raise SimulationError(f"unknown simulator {simulator!r}")
        return parse_log(out_file.read_text(), batch, steps, n_neurons, record_state or v_range is not None, simulator)


def parse_log(text: str, batch: int, steps: int, n_neurons: int, record_state: bool, simulator: str) -> SimResult:
    """Turn tb_core's log into arrays; every tick ends with a '3 cycles' record (u, v arrays when ``record_state``)."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    spikes = np.zeros((batch, steps, n_neurons), dtype=bool)
    u = np.zeros((batch, steps, n_neurons), dtype=np.int64) if record_state else None
    v = np.zeros((batch, steps, n_neurons), dtype=np.int64) if record_state else None
    cycles = np.zeros((batch, steps), dtype=np.int64)
    tick = 0
    try:
        for row in rows:
            b, t = divmod(tick, steps)
            kind = row[0]
            if kind == "1":
                spikes[b, t, int(row[1])] = True
            elif kind == "2":
                assert u is not None and v is not None
                n = int(row[1])
                u[b, t, n] = int(row[2])
                v[b, t, n] = int(row[3])
            elif kind == "3":
                cycles[b, t] = int(row[1])
                tick += 1
            else:
                raise ValueError(f"unknown record {row}")
    except (ValueError, IndexError, AssertionError) as exc:
        raise SimulationError(f"{simulator} log is unreadable near tick {tick}: {exc}") from None
    if tick != batch * steps:
        raise SimulationError(f"{simulator} ran {tick} of {batch * steps} timesteps (the log ends early)")
    return SimResult(spikes=spikes, u=u, v=v, cycles=cycles, simulator=simulator)
