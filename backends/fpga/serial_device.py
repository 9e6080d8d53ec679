"""An snnc FPGA image on a serial port: the host side of the UART protocol, with timeouts, CRC checks and retries.

:class:`FpgaSerialDevice` implements the hardware-in-the-loop ``Device`` protocol (``snnc.runtime.hil``):
``open`` the port, ``reset`` the board, ``load`` an artifact (check that the board runs that network, then write
its weights), ``run`` a stimulus into a spike raster, ``close``. It speaks to a real board (iCEBreaker, ULX3S) and
to the simulated board of :mod:`.board_sim` through the very same pyserial code.

Every request goes through :meth:`FpgaSerialDevice.exchange`, which relies on the protocol's robustness rules
(``protocol.py``): a frame executes only after its CRC checks, and a repeated op+seq is answered from the stored
reply without executing again. So whenever a reply does not arrive in time, arrives with a bad CRC, or the
device answers NAK 1 (bad CRC) or NAK 3 (length mangled on the line), the host waits for the line to go quiet,
drops what it has received and resends the *same* bytes: a TICK is never run twice. After ``retries`` resends the
request fails with one line naming the port, the request and what went wrong last. NAK 2 and NAK 4 cannot come
from line noise (the CRC passed) and fail at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from snnc.backends import base
from snnc.compiler import ir
from snnc.runtime.raster import Raster

from . import FpgaArtifact, protocol

DEFAULT_BAUD = 3_000_000
DEFAULT_TIMEOUT_S = 1.0
DEFAULT_RETRIES = 5
QUIET_BYTE_TIMES = 64
"""Silence before a resend: twice the device's 32-byte-time frame timeout, so it has dropped any partial frame."""
OP_NAMES = {protocol.OP_WRITE_MEM: "WRITE_MEM", protocol.OP_SPIKES: "SPIKES", protocol.OP_TICK: "TICK",
            protocol.OP_CLEAR: "CLEAR", protocol.OP_STATUS: "STATUS"}
REPLY_OPS = {protocol.OP_WRITE_MEM: protocol.OP_WRITE_MEM | protocol.ACK_FLAG,
             protocol.OP_SPIKES: protocol.OP_SPIKES | protocol.ACK_FLAG,
             protocol.OP_TICK: protocol.OP_OUT_SPIKES,
             protocol.OP_CLEAR: protocol.OP_CLEAR | protocol.ACK_FLAG,
             protocol.OP_STATUS: protocol.OP_STATUS_REPLY}
LINE_NAKS = (protocol.NAK_CRC, protocol.NAK_TOO_LONG)
"""NAK codes that line noise can cause; the request is resent."""


class SerialDeviceError(RuntimeError):
    """The board did not answer correctly; the message is one line naming the port and the request."""


@dataclass
class LinkStats:
    """What the line cost: requests sent, resends, and why they were needed."""

    requests: int = 0
    resends: int = 0
    timeouts: int = 0
    bad_crc_replies: int = 0
    line_naks: int = 0

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class FpgaSerialDevice:
    """An FPGA board running an snnc image, reached through ``port`` (a tty path or a pyserial URL).

    ``timeout`` is seconds per attempt (the reply to one request), ``retries`` the resends before giving up.
    ``hardware_reset``, when given, is called by :meth:`reset` first (a simulated board's reset line, or a
    board-specific GPIO); the protocol-level reset runs either way.
    """

    port: str
    baudrate: int = DEFAULT_BAUD
    timeout: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    hardware_reset: Callable[[], None] | None = None
    stats: LinkStats = field(default_factory=LinkStats)
    last_cycles: np.ndarray | None = None
    """Clock cycles the board reported for every timestep of the latest :meth:`run`, (samples, steps)."""
    _serial: Any = None
    _seq: int = 0
    _decoder: protocol.FrameDecoder = field(default_factory=protocol.FrameDecoder)
    _graph: ir.Graph | None = None
    _map: dict[str, Any] | None = None

    # ------------------------------------------------------------------------------------------- Device protocol

    def open(self) -> None:
        """Open the serial port (8N1, no flow control)."""
        try:
            import serial
        except ImportError:
            raise SerialDeviceError("hardware-in-the-loop needs pyserial (pip install pyserial; bash setup.sh does)") \
                from None
        try:
            self._serial = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=0.01, write_timeout=5)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise SerialDeviceError(f"cannot open serial port {self.port}: {' '.join(str(exc).split())}") from None
        self._seq = int(time.monotonic_ns()) & 0xFF  # never collide with the replay memory of a previous session

    def close(self) -> None:
        if self._serial is not None:
            self._serial.close()
            self._serial = None

    def reset(self) -> None:
        """Bring the board to a known state: hardware reset if wired, a quiet line, a STATUS and a CLEAR."""
        if self.hardware_reset is not None:
            self.hardware_reset()
        self._quiet()
        self.status()
        self.exchange(protocol.OP_CLEAR)

    def load(self, artifact: Any) -> None:
        """Check the board runs ``artifact``'s network (STATUS: sizes and graph tag), then write its weights.

        ``artifact`` is an FPGA artifact directory or a loaded ``FpgaArtifact``; the bitstream itself is
        programmed by the board's own tool (iceprog, openFPGALoader) beforehand.
        """
        path = Path(getattr(artifact, "path", artifact))
        manifest, graph = base.read_artifact(path)
        if manifest.get("backend") != "fpga":
            raise SerialDeviceError(f"{path}: compiled for backend '{manifest.get('backend')}'; hardware-in-the-loop "
                                    "runs FPGA artifacts (compile for an fpga-* target)")
        fpga_artifact = FpgaArtifact(path=path, manifest=manifest, graph=graph)
        mapping = fpga_artifact.neuron_map
        info = self.status()
        expected = {"n_neurons": mapping["n_neurons"], "n_inputs": mapping["n_inputs"],
                    "graph_tag": int(ir.graph_hash(graph)[:8], 16)}
        wrong = [f"{key} {info[key]} (artifact: {value})" for key, value in expected.items() if info[key] != value]
        if wrong:
            raise SerialDeviceError(f"board on {self.port} runs another network than {path}: {', '.join(wrong)}; "
                                    "program its bitstream first")
        for payload in fpga_artifact.weights_payloads():
            self.exchange(protocol.OP_WRITE_MEM, payload)
        self._graph, self._map = graph, mapping

    def run(self, stimulus: Mapping[str, np.ndarray], steps: int | None = None) -> dict[str, Raster]:
        """Run ``stimulus`` (input population -> 0/1 (B, T, N) or (T, N)) on the board; spikes of every population.

        Each sample starts with CLEAR; each step sends its input spikes and a TICK. Over the UART the board reports
        spikes only, so rasters carry no u/v (non-spiking readouts show no spikes).
        """
        if self._graph is None or self._map is None:
            raise SerialDeviceError(f"board on {self.port}: load an artifact before run")
        graph, mapping = self._graph, self._map
        arrays, t, batched = base.normalize_stimulus(graph, stimulus, steps)
        batch = next(iter(arrays.values())).shape[0]
        stim = np.concatenate([arrays[name] for name in graph.inputs], axis=2)
        fired = np.zeros((batch, t, mapping["n_neurons"]), dtype=bool)
        cycles = np.zeros((batch, t), dtype=np.int64)
        for b in range(batch):
            self.exchange(protocol.OP_CLEAR)
            for step in range(t):
                for payload in protocol.spikes_payloads(np.flatnonzero(stim[b, step])):
                    self.exchange(protocol.OP_SPIKES, payload)
                cycles[b, step], ids = protocol.parse_out_spikes(self.exchange(protocol.OP_TICK))
                if ids.size and int(ids.max()) >= mapping["n_neurons"]:
                    raise SerialDeviceError(f"board on {self.port} reported neuron {int(ids.max())} of "
                                            f"{mapping['n_neurons']}")
                fired[b, step, ids.astype(np.int64)] = True
        self.last_cycles = cycles
        rasters = {}
        for pop in graph.populations:
            if pop.model == "input":
                raster = base.input_raster(arrays[pop.name], False)
            else:
                first = mapping["neurons"][pop.name]
                raster = Raster(spikes=fired[:, :, first:first + pop.size])
            rasters[pop.name] = raster if batched else raster.sample(0)
        return rasters

    # ------------------------------------------------------------------------------------------------ requests

    def status(self) -> dict[str, int | str]:
        """The board's STATUS: sizes, protocol version and the graph tag of the network it holds."""
        payload = self.exchange(protocol.OP_STATUS)
        try:
            info = protocol.parse_status(payload)
        except ValueError as exc:
            raise SerialDeviceError(f"board on {self.port}: {exc} (is it an snnc image?)") from None
        if info["version"] != protocol.PROTOCOL_VERSION:
            raise SerialDeviceError(f"board on {self.port} speaks protocol version {info['version']}, "
                                    f"this host {protocol.PROTOCOL_VERSION}")
        return info

    def exchange(self, op: int, payload: bytes = b"") -> bytes:
        """Send one request and return its reply's payload, resending the same frame on line errors."""
        if self._serial is None:
            raise SerialDeviceError(f"serial port {self.port} is not open")
        seq = self._seq
        self._seq = (self._seq + 1) & 0xFF
        frame = protocol.encode_frame(op, seq, payload)
        what = f"{OP_NAMES.get(op, hex(op))} (seq {seq})"
        problem = "no reply"
        self.stats.requests += 1
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.resends += 1
                self._quiet()
            self._serial.write(frame)
            reply = self._read_reply(seq)
            if reply is None:
                self.stats.timeouts += 1
                problem = f"no whole reply within {self.timeout:g} s"
                continue
            if not reply.crc_ok:
                self.stats.bad_crc_replies += 1
                problem = "the reply had a bad CRC"
                continue
            if reply.op == protocol.OP_NAK:
                code = reply.payload[0] if len(reply.payload) == 1 else -1
                name = protocol.NAK_NAMES.get(code, f"code {code}")
                if code in LINE_NAKS:
                    self.stats.line_naks += 1
                    problem = f"the board answered NAK {code} ({name})"
                    continue
                raise SerialDeviceError(f"board on {self.port} refused {what}: NAK {code} ({name})")
            if reply.op != REPLY_OPS[op]:
                problem = f"unexpected reply op 0x{reply.op:02x}"
                continue
            return reply.payload
        raise SerialDeviceError(f"board on {self.port}: {what} got no valid reply after {self.retries + 1} attempts "
                                f"(last: {problem})")

    def _read_reply(self, seq: int) -> protocol.Frame | None:
        """The reply to request ``seq``, a bad-CRC frame, a line NAK, or None when ``timeout`` passes first."""
        self._decoder.reset()
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            data = self._serial.read(max(1, self._serial.in_waiting))
            for frame in self._decoder.feed(data):
                if not frame.crc_ok or frame.seq == seq:
                    return frame
                if frame.op == protocol.OP_NAK and frame.payload[:1] and frame.payload[0] in LINE_NAKS:
                    return frame  # a mangled request's NAK carries the mangled seq
                # a late reply to an earlier request: ignore it
        return None

    def _quiet(self) -> None:
        """Wait until the device has dropped any partial frame, then forget what arrived meanwhile."""
        time.sleep(max(QUIET_BYTE_TIMES * 10 / self.baudrate, 0.005))
        self._serial.reset_input_buffer()
        self._decoder.reset()
