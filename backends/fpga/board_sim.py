"""A simulated snnc FPGA board: the compiled RTL, Verilated, behind a pseudo-terminal.

Hardware-in-the-loop code talks to a board through pyserial on a tty. :class:`SimulatedBoard` gives it one
without hardware: it Verilates the artifact's ``snn_top`` with ``rtl/board_sim.cpp``, a harness that clocks the
model and bridges the master side of a pty to the UART pins bit-exactly (8N1, ``clks_per_bit`` clock cycles per
bit), and hands out the slave side as :attr:`~SimulatedBoard.port`::

    with SimulatedBoard(artifact.path) as board:
        link = serial.Serial(board.port, baudrate=board.baudrate, timeout=2)
        link.write(protocol.status(0))

Like an iCE40 board whose weights live in SPRAM, the board starts with a zeroed weight memory (``blank_weights``),
so the host must load the weights with WRITE_MEM (``FpgaArtifact.weights_frames``).

The harness is controlled over its stdin/stdout (one line each way, see ``board_sim.cpp``): :meth:`reset` pulses
rst like a reset button and returns once the board is out of reset; :meth:`set_faults` changes fault injection
(dropped or bit-flipped bytes in either direction, deterministic for a seed) while the board runs. When nothing
is left to compute, the harness sleeps in ``poll()`` instead of clocking (no CPU while idle). Builds are cached by
the hash of harness, RTL sources, config, ``clks_per_bit`` and the Verilator version under
``$XDG_CACHE_HOME/snnc/verilator`` (``~/.cache`` by default), like ``sim.py``'s; the ``$readmemh`` images are read
at run time from the RTL copy and are not part of the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import threading
import time
import tty
import weakref
from dataclasses import dataclass
from pathlib import Path

from snnc.backends.fpga import sim

RTL_DIR = Path(__file__).parent / "rtl"
HARNESS = "board_sim.cpp"
SOURCES = ("snn_top.v", "snn_core.v", "snn_ram.v", "uart_rx.v", "uart_tx.v")
BINARY = "Vboard_sim"
BAUDRATE = 115_200
"""Nominal baud rate for pyserial; a pty ignores it. The simulated line is faster (see :attr:`SimulatedBoard.baudrate`)."""
MIN_IDLE_CYCLES = 50_000
"""Floor of the quiet cycles after which the harness stops clocking and sleeps (see :func:`idle_cycles`)."""
START_TIMEOUT = 30.0
"""Seconds to wait for the harness to come out of reset, and for a control command's answer."""


class BoardSimError(RuntimeError):
    """The simulated board could not be built, started or controlled; the message is one line."""


@dataclass(frozen=True)
class Faults:
    """Fault injection on the simulated UART link, deterministic for ``seed``.

    rx is host -> board, tx is board -> host. ``drop_*`` and ``corrupt_*`` are per-byte probabilities in [0, 1];
    a corrupted byte has one random bit flipped. ``*_at`` list byte indices (0-based, counted per direction from
    the moment the faults are set, i.e. board start or :meth:`SimulatedBoard.set_faults`) that are always dropped
    or corrupted. A byte both dropped and corrupted is dropped.
    """

    drop_rx: float = 0.0
    corrupt_rx: float = 0.0
    drop_tx: float = 0.0
    corrupt_tx: float = 0.0
    seed: int = 0
    drop_rx_at: tuple[int, ...] = ()
    corrupt_rx_at: tuple[int, ...] = ()
    drop_tx_at: tuple[int, ...] = ()
    corrupt_tx_at: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("drop_rx", "corrupt_rx", "drop_tx", "corrupt_tx"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Faults.{name} is a probability per byte, got {value}")
        for name in ("drop_rx_at", "corrupt_rx_at", "drop_tx_at", "corrupt_tx_at"):
            indices = tuple(int(i) for i in getattr(self, name))
            if any(i < 0 for i in indices):
                raise ValueError(f"Faults.{name} holds byte indices >= 0, got {indices}")
            object.__setattr__(self, name, indices)
        if not 0 <= self.seed < 1 << 64:
            raise ValueError(f"Faults.seed must fit 64 bits, got {self.seed}")

    def words(self) -> list[str]:
        """The settings as the harness reads them: seed, 4 probabilities, 4 index lists ("-" for none)."""
        lists = [",".join(map(str, indices)) or "-"
                 for indices in (self.drop_rx_at, self.corrupt_rx_at, self.drop_tx_at, self.corrupt_tx_at)]
        return [str(self.seed), *(repr(float(p)) for p in (self.drop_rx, self.corrupt_rx, self.drop_tx,
                                                           self.corrupt_tx)), *lists]


def _config_value(config: str, name: str) -> int:
    match = re.search(rf"localparam integer {name} = (\d+);", config)
    if match is None:
        raise BoardSimError(f"snnc_config.vh has no {name}: not an snnc FPGA artifact")
    return int(match.group(1))


def idle_cycles(rtl_dir: Path, clks_per_bit: int, worst_step_cycles: int | None = None) -> int:
    """Quiet clock cycles after which the design has certainly finished all work, so the harness may sleep.

    The pins being quiet (no byte in either direction) for this long means: any frame timeout (or NAK 3 drain) of
    32 byte times has expired, and the longest job -- a TICK with every source spiking (``worst_step_cycles``,
    report.json's worst case), a CLEAR, a WRITE_MEM or SPIKES of a full receive buffer -- would have started its
    reply. Twice their sum, and at least ``MIN_IDLE_CYCLES``.
    """
    config = (rtl_dir / "snnc_config.vh").read_text()
    n_neurons = _config_value(config, "N_NEURONS")
    n_inputs = _config_value(config, "N_INPUTS")
    acc_depth = _config_value(config, "ACC_DEPTH")
    rx_max = max(2 * n_inputs, 260)
    frame_timeout = 32 * 10 * clks_per_bit
    step = worst_step_cycles if worst_step_cycles is not None else 64 * (n_neurons + 10) + 64 * rx_max
    clear = max(n_neurons, acc_depth) + 16
    return max(MIN_IDLE_CYCLES, 2 * (frame_timeout + step + clear + 8 * rx_max))


def _verilator_version() -> str:
    if shutil.which("verilator") is None:
        raise BoardSimError("verilator not found: the simulated board needs Verilator 5 (bash setup.sh installs it)")
    try:
        text = subprocess.run(["verilator", "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BoardSimError(f"verilator --version failed: {exc}") from None
    match = re.match(r"Verilator (\d+)\.", text)
    if match is None or int(match.group(1)) < 5:
        raise BoardSimError(f"the simulated board needs Verilator 5, found {text or 'an unknown version'} "
                            "(bash setup.sh installs it)")
    return text


def board_binary(rtl_dir: Path, clks_per_bit: int, timeout: float = 600.0) -> Path:
    """Build (or reuse from the cache) the harness executable for the RTL in ``rtl_dir``."""
    version = _verilator_version()
    digest = hashlib.sha256(f"{version}\0cpb={clks_per_bit}\0".encode())
    for path in (RTL_DIR / HARNESS, *(rtl_dir / name for name in (*SOURCES, "snnc_config.vh"))):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    try:
        return sim.cached_verilator_build(
            f"board-{digest.hexdigest()[:20]}", BINARY,
            lambda obj: ["--cc", "--exe", "--build", "-j", "2", "-Wno-fatal", "-Wno-lint", "-Wno-style",
                         "--top-module", "snn_top", f"-GCLKS_PER_BIT={clks_per_bit}", f"-I{rtl_dir}",
                         "--Mdir", str(obj), "-o", BINARY, "-CFLAGS", "-O2",
                         str(RTL_DIR / HARNESS), *(str(rtl_dir / name) for name in SOURCES)],
            timeout, "verilator build of the simulated board")
    except sim.SimulationError as exc:
        raise BoardSimError(str(exc)) from None


def _cleanup(proc: subprocess.Popen | None, slave_fd: int | None, workdir: Path | None) -> None:
    """Stop the harness, close the pty and remove the RTL copy (also run at interpreter exit)."""
    if proc is not None and proc.poll() is None:
        try:
            if proc.stdin is not None:
                proc.stdin.close()  # EOF on the control pipe: the harness exits by itself
            proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
    if proc is not None:
        for stream in (proc.stdin, proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()
    if slave_fd is not None:
        try:
            os.close(slave_fd)
        except OSError:
            pass
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


class SimulatedBoard:
    """The artifact's ``snn_top`` in Verilator, reachable as a serial port (:attr:`port`) until :meth:`stop`.

    ``artifact_dir`` is a compiled FPGA artifact (``fpga.compile(..., bitstream=False)`` is enough).
    ``clks_per_bit`` sets the simulated UART's clock cycles per bit (>= 4; small is fast). With ``blank_weights``
    the weight memory starts zeroed, as SPRAM does on a real board. ``faults`` is the initial fault injection.
    """

    def __init__(self, artifact_dir: str | Path, *, clks_per_bit: int = 4, blank_weights: bool = True,
                 faults: Faults | None = None, build_timeout: float = 600.0) -> None:
        self.artifact_dir = Path(artifact_dir)
        if not (self.artifact_dir / "rtl" / "snn_top.v").is_file():
            raise BoardSimError(f"{self.artifact_dir} has no rtl/snn_top.v: compile the graph for an FPGA target first")
        if clks_per_bit < 4:
            raise BoardSimError(f"clks_per_bit must be >= 4 (the RTL's uart_rx needs it), got {clks_per_bit}")
        self.clks_per_bit = int(clks_per_bit)
        self.blank_weights = blank_weights
        self.build_timeout = build_timeout
        self._faults = faults
        self._proc: subprocess.Popen | None = None
        self._port: str | None = None
        self._lock = threading.Lock()
        self._reply_buf = b""
        self._finalizer: weakref.finalize | None = None
        self._log: Path | None = None

    # ------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> str:
        """Build (cached) and launch the simulated board; returns the serial port (the pty's slave path)."""
        if self._proc is not None and self._proc.poll() is None:
            assert self._port is not None
            return self._port
        self.stop()
        workdir = Path(tempfile.mkdtemp(prefix="snnc-board-"))
        slave_fd: int | None = None
        proc: subprocess.Popen | None = None
        try:
            rtl = workdir / "rtl"
            shutil.copytree(self.artifact_dir / "rtl", rtl)
            if self.blank_weights and (rtl / "weights.mem").is_file():
                words = (rtl / "weights.mem").read_text().split()
                (rtl / "weights.mem").write_text("".join("0" * len(w) + "\n" for w in words))
            binary = board_binary(rtl, self.clks_per_bit, self.build_timeout)
            master_fd, slave_fd = os.openpty()
            tty.setraw(slave_fd)  # no echo, no line editing, no CR/LF translation: bytes pass unchanged
            command = [str(binary), "--fd", str(master_fd), "--cpb", str(self.clks_per_bit),
                       "--idle-cycles", str(idle_cycles(rtl, self.clks_per_bit, self._worst_step_cycles()))]
            faults = self._faults or Faults()
            command += ["--seed", faults.words()[0]]
            for flag, word in zip(("--drop-rx", "--corrupt-rx", "--drop-tx", "--corrupt-tx", "--drop-rx-at",
                                   "--corrupt-rx-at", "--drop-tx-at", "--corrupt-tx-at"), faults.words()[1:]):
                command += [flag, word]
            with open(workdir / "board_sim.log", "wb") as log:
                try:
                    proc = subprocess.Popen(command, cwd=rtl, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=log, pass_fds=(master_fd,), bufsize=0)
                finally:
                    os.close(master_fd)  # the harness holds the only master: its exit hangs up the port
            self._proc = proc
            self._reply_buf = b""
            self._log = workdir / "board_sim.log"
            self._finalizer = weakref.finalize(self, _cleanup, proc, slave_fd, workdir)
            self._read_line("ready")
        except BaseException:
            if self._finalizer is not None:
                self._finalizer()
            else:
                _cleanup(proc, slave_fd, workdir)
            self._proc = None
            self._finalizer = None
            raise
        self._port = os.ttyname(slave_fd)
        return self._port

    def stop(self) -> None:
        """End the harness (closing its control pipe, killing it if it does not exit), close the pty, clean up."""
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer = None
        self._proc = None
        self._port = None

    def __enter__(self) -> SimulatedBoard:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------- properties

    @property
    def port(self) -> str:
        """The serial port to open (the pty's slave side, e.g. ``/dev/pts/7``)."""
        if self._port is None:
            raise BoardSimError("the simulated board is not running: call start() first")
        return self._port

    @property
    def baudrate(self) -> int:
        """Nominal baud rate to pass to pyserial (a pty ignores it).

        The simulated line runs at ``clks_per_bit`` clock cycles per bit of simulated time, which is well above
        115,200 baud in wall-clock time for small designs, so host timeouts derived from this value are safe.
        """
        return BAUDRATE

    @property
    def pid(self) -> int | None:
        """Process id of the harness while it runs, else None."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    # ------------------------------------------------------------------------------------------- control

    def reset(self) -> None:
        """Press the reset button: rst pulses for 8 cycles; returns once the board is out of reset.

        What the RTL does on rst: parser, executor and UARTs restart, the replay memory is forgotten (no frame
        counts as executed) and queued input spikes are lost; the weight memory and neuron state RAM keep their
        contents, so a host sends CLEAR before the next sample but need not reload weights. Bytes the host wrote
        before the call and the board had not yet received are discarded, so is a byte half sent by the board.
        """
        self._command("reset")

    def set_faults(self, faults: Faults | None) -> None:
        """Change fault injection now (None: none); byte indices and the random generator restart from here."""
        self._faults = faults
        if self._proc is not None and self._proc.poll() is None:
            self._command("faults " + " ".join((faults or Faults()).words()))

    def stats(self) -> dict[str, int]:
        """Harness counters: cycles, rx / tx bytes, dropped and corrupted bytes per direction, idle sleeps."""
        reply = self._command("stats")
        return {key: int(value) for key, value in (item.split("=") for item in reply.split()[2:])}

    def _worst_step_cycles(self) -> int | None:
        try:
            report = json.loads((self.artifact_dir / "report.json").read_text())
            return int(report["throughput"]["worst_case_cycles"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _command(self, line: str) -> str:
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None or proc.stdin is None:
                raise BoardSimError("the simulated board is not running: call start() first")
            try:
                proc.stdin.write(line.encode() + b"\n")
            except OSError:
                raise BoardSimError(f"the simulated board exited before '{line}' (exit status {proc.poll()})") from None
            return self._read_line("ok " + line.split()[0])

    def _read_line(self, expected: str) -> str:
        """The harness's next control line; BoardSimError unless it starts with ``expected``."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        while b"\n" not in self._reply_buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([proc.stdout], [], [], max(left, 0.0))
            chunk = os.read(proc.stdout.fileno(), 4096) if ready else b""
            if not chunk:
                if ready:  # EOF: the harness exited; give it a moment to be reaped for its status
                    try:
                        proc.wait(timeout=1)
                    except subprocess.TimeoutExpired:
                        pass
                why = f"exit status {proc.poll()}" if ready else f"no answer within {START_TIMEOUT:.0f} s"
                detail = ""
                if self._log is not None and self._log.is_file():
                    lines = [x for x in self._log.read_text(errors="replace").splitlines() if x.strip()]
                    detail = f": {lines[-1].strip()}" if lines else ""
                raise BoardSimError(f"simulated board did not answer '{expected}' ({why}){detail}")
            self._reply_buf += chunk
        line, _, self._reply_buf = self._reply_buf.partition(b"\n")
        text = line.decode(errors="replace").strip()
        if not text.startswith(expected):
            raise BoardSimError(f"simulated board answered '{text}' instead of '{expected}'")
        return text


__all__ = ["BAUDRATE", "BoardSimError", "Faults", "SimulatedBoard", "board_binary", "idle_cycles"]
