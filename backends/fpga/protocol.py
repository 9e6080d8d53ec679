"""Host <-> FPGA wire protocol of the snnc FPGA backend (the Python side of ``rtl/snn_top.v``).

The FPGA image built by snnc talks to the host over one 8N1 UART. Everything on the wire is a *frame*; the host
sends a request frame and waits for exactly one reply frame (strictly request/response). This docstring is the
specification; ``rtl/snn_top.v`` implements the device side of it and this module the host side (pure Python and
numpy, so it can be used without any simulator or board attached).

Frame format (both directions)
------------------------------
::

    0xA5 | op (1) | seq (1) | len (2, little endian) | payload (len bytes) | crc8 (1)

* ``0xA5`` is the sync byte. Outside a frame the device ignores every byte that is not 0xA5.
* ``op`` says what the frame is (see below). ``seq`` is chosen by the host; the device copies it into its reply.
  The host increments it (mod 256) for every *new* request and reuses it only when it resends a request.
* All multi-byte fields, here and in payloads, are little endian.
* ``crc8`` is CRC-8 with polynomial 0x07, initial value 0x00, no reflection and no final xor (the CRC-8/SMBUS
  variant; check value 0xF4 for ``b"123456789"``), computed over ``op, seq, len[0], len[1]`` and the payload --
  not over the 0xA5.

Host -> device requests
-----------------------
=======  ===========  ======================================================  ===========================
op       name         payload                                                 reply
=======  ===========  ======================================================  ===========================
0x01     WRITE_MEM    ``space(1) addr(3) data...``                            ACK (0x81)
0x10     SPIKES       ``n x index(2)``                                        ACK (0x90, empty payload)
0x20     TICK         empty                                                   OUT_SPIKES (0xA0)
0x30     CLEAR        empty                                                   ACK (0xB0)
0x31     STATUS       empty                                                   STATUS reply (0xB1)
=======  ===========  ======================================================  ===========================

* **WRITE_MEM** writes ``k`` words into a device memory. ``space`` 0 is the weight memory (the only one so far).
  ``data`` is ``k`` words of ``WMEM_BYTES = ceil(WMEM_WIDTH / 8)`` bytes each, little endian, written at word
  addresses ``addr, addr+1, ..., addr+k-1``. The host sends at most 256 data bytes per frame (:func:`write_mem`
  chunks for it). An unknown space, a data length that is not a multiple of WMEM_BYTES, or ``addr + k >
  WMEM_DEPTH`` is refused with NAK 4 and nothing is written. Reply: ACK.
* **SPIKES** queues input spikes for the next TICK: each 2-byte entry is an input neuron index. Several SPIKES
  frames may precede one TICK. Any index ``>= N_INPUTS`` (or an odd payload length) is refused with NAK 4 and
  none of the frame's spikes is queued. Reply: ACK.
* **TICK** runs one timestep of the network with the queued input spikes. Reply op 0xA0 (OUT_SPIKES), payload
  ``cycles(4) count(2) id(2) x count``: the clock cycles the core took for the step and the ids of the neurons
  that fired, in the order the core reported them (ascending within a step).
* **CLEAR** zeroes all neuron state (start of a new sample). Reply: ACK, sent once the core has finished.
* **STATUS** reply op 0xB1, 18-byte payload: ``"SNNC"(4 ASCII) version(1)=1 n_neurons(2) n_inputs(2)
  wmem_depth(3) wmem_width(1) lanes(1) graph_tag(4)``. ``graph_tag`` (sent little endian, like every field) is
  the integer whose hex digits are the first 8 of the compiled graph's hash (``int(graph_hash[:8], 16)``),
  so the host can check the board runs the network it expects.

Replies
-------
* ACK: ``op = request op | 0x80``, the request's ``seq``, empty payload -- except that STATUS answers 0xB1 with its
  payload and TICK answers 0xA0 (OUT_SPIKES) with the fired ids. (SPIKES is acknowledged with 0x90.)
* NAK: op 0xEE, the ``seq`` as received, payload ``code(1)``:

  ====  =====================================================================================
  code  meaning
  ====  =====================================================================================
  1     bad CRC (the frame was received whole but its CRC did not match; nothing was done)
  2     unknown op
  3     payload longer than the device's receive buffer (``RX_MAX = max(2*N_INPUTS, 260)``)
  4     bad address / space / length / index (nothing was done)
  ====  =====================================================================================

Robustness rules (why the host may simply retry)
------------------------------------------------
* The device receives the whole frame into a buffer and checks its CRC before executing it, so a corrupted frame
  never changes device state.
* Replay: the device remembers ``(op, seq)`` of the last *executed* frame and keeps its reply. A good frame with
  the same op and seq is not executed again; the stored reply is sent again. So a host that lost a reply resends
  the same request (same seq) safely: a TICK is never run twice. NAKed frames are not "executed" and do not
  replace the stored reply. After reset no frame counts as executed.
* A frame whose bytes stop arriving for 32 byte times (``32 * 10 * CLKS_PER_BIT`` clock cycles) is abandoned; the
  device then looks for 0xA5 again. No reply is sent for it; the host's timeout covers it.
* A ``len`` above RX_MAX is answered at once with NAK 3; the device then ignores the line until it has been idle
  for the same 32 byte times and resynchronises on the next 0xA5.
* The device keeps receiving while it transmits a reply, but a frame whose payload arrives while the previous
  request is still being executed is dropped without a reply (only a host that does not wait for replies can
  cause that).

Host recipe: send a request, wait for its reply with a timeout of a few hundred byte times (plus the step time for
TICK); on timeout, NAK 1 or a reply with the wrong seq, resend the same bytes (same seq).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

SYNC = 0xA5
HEADER_BYTES = 5  # sync, op, seq, len(2)
PROTOCOL_VERSION = 1
MAGIC = b"SNNC"

# request ops
OP_WRITE_MEM = 0x01
OP_SPIKES = 0x10
OP_TICK = 0x20
OP_CLEAR = 0x30
OP_STATUS = 0x31

# reply ops
ACK_FLAG = 0x80
OP_OUT_SPIKES = OP_TICK | ACK_FLAG  # 0xA0, TICK's reply (SPIKES' ACK is 0x90)
OP_STATUS_REPLY = OP_STATUS | ACK_FLAG  # 0xB1
OP_NAK = 0xEE

# NAK codes
NAK_CRC = 1
NAK_UNKNOWN_OP = 2
NAK_TOO_LONG = 3
NAK_BAD_ARG = 4

NAK_NAMES = {NAK_CRC: "bad CRC", NAK_UNKNOWN_OP: "unknown op", NAK_TOO_LONG: "payload too long", NAK_BAD_ARG: "bad argument"}

SPACE_WEIGHTS = 0
MAX_DATA_BYTES = 256  # per WRITE_MEM / SPIKES frame; the device's receive buffer holds at least 4 + 256 bytes
STATUS_PAYLOAD_BYTES = 18


def _crc8_table() -> list[int]:
    """Byte-wise table for polynomial 0x07: keeps crc8() fast on the host, where whole memories are streamed."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return table


_CRC8_TABLE = _crc8_table()


def crc8(data: bytes | bytearray | Iterable[int], crc: int = 0) -> int:
    """CRC-8, polynomial 0x07, init 0, no reflection, no final xor; pass ``crc`` to continue a running CRC."""
    for byte in data:
        crc = _CRC8_TABLE[crc ^ byte]
    return crc


@dataclass(frozen=True)
class Frame:
    """One decoded frame; ``crc_ok`` is False for a frame received whole whose CRC did not match."""

    op: int
    seq: int
    payload: bytes
    crc_ok: bool = True


def encode_frame(op: int, seq: int, payload: bytes = b"") -> bytes:
    """The bytes of one frame: sync, header, payload and CRC over everything after the sync byte."""
    if not 0 <= op <= 0xFF or not 0 <= seq <= 0xFF:
        raise ValueError(f"op and seq are single bytes, got op={op}, seq={seq}")
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes does not fit the 2-byte length field")
    body = bytes([op, seq, len(payload) & 0xFF, len(payload) >> 8]) + bytes(payload)
    return bytes([SYNC]) + body + bytes([crc8(body)])


class FrameDecoder:
    """Incremental frame parser: feed it whatever bytes arrived, get whole frames back.

    It mirrors the device's parser so the host sees the same resynchronisation behaviour: bytes outside a frame
    that are not 0xA5 are skipped (counted in ``skipped``), a frame with a length above ``max_len`` is dropped and
    parsing resumes at the next 0xA5, and a frame with a bad CRC is returned with ``crc_ok=False`` (or raises
    :class:`CrcError` when ``raise_on_crc`` is set) and counted in ``crc_errors``.
    """

    def __init__(self, max_len: int = 0xFFFF, raise_on_crc: bool = False) -> None:
        self.max_len = max_len
        self.raise_on_crc = raise_on_crc
        self.skipped = 0
        self.crc_errors = 0
        self._buf = bytearray()

    def reset(self) -> None:
        """Forget a partly received frame (the host calls this after a timeout, as the device does)."""
        self._buf.clear()

    def feed(self, data: bytes | bytearray | Iterable[int]) -> Iterator[Frame]:
        """Consume ``data``; yield every frame it completes (a partial frame is kept for the next call)."""
        for byte in bytes(data):
            if not self._buf:
                if byte == SYNC:
                    self._buf.append(byte)
                else:
                    self.skipped += 1
                continue
            self._buf.append(byte)
            if len(self._buf) == HEADER_BYTES:
                length = self._buf[3] | self._buf[4] << 8
                if length > self.max_len:
                    self.skipped += len(self._buf)
                    self._buf.clear()
                continue
            if len(self._buf) < HEADER_BYTES:
                continue
            length = self._buf[3] | self._buf[4] << 8
            if len(self._buf) < HEADER_BYTES + length + 1:
                continue
            body = bytes(self._buf[1:-1])
            ok = crc8(body) == self._buf[-1]
            self._buf.clear()
            frame = Frame(op=body[0], seq=body[1], payload=body[4:], crc_ok=ok)
            if not ok:
                self.crc_errors += 1
                if self.raise_on_crc:
                    raise CrcError(frame)
            yield frame


class CrcError(ValueError):
    """A frame arrived whole but its CRC did not match; ``frame`` holds what was received."""

    def __init__(self, frame: Frame) -> None:
        super().__init__(f"bad CRC in frame op=0x{frame.op:02x} seq={frame.seq}")
        self.frame = frame


def decode_frames(data: bytes) -> list[Frame]:
    """All whole frames in ``data`` (convenience wrapper around :class:`FrameDecoder`)."""
    return list(FrameDecoder().feed(data))


# ---------------------------------------------------------------------------------------------- request builders


def word_bytes(width_bits: int) -> int:
    """Bytes per weight-memory word on the wire: ceil(WMEM_WIDTH / 8)."""
    return (int(width_bits) + 7) // 8


def write_mem_payloads(addr: int, words: np.ndarray, word_bytes: int, space: int = SPACE_WEIGHTS) -> list[bytes]:
    """WRITE_MEM payloads storing ``words`` at ``addr, addr+1, ...``: at most 256 data bytes (whole words) each."""
    if not 1 <= word_bytes <= 8:
        raise ValueError(f"word_bytes must be 1..8, got {word_bytes}")
    values = np.asarray(words).astype(np.int64).ravel()
    mask = (1 << (8 * word_bytes)) - 1
    data = b"".join(int(v & mask).to_bytes(word_bytes, "little") for v in values.tolist())
    per_frame = MAX_DATA_BYTES // word_bytes
    payloads = []
    for start in range(0, len(values), per_frame):
        chunk = data[start * word_bytes:(start + per_frame) * word_bytes]
        where = addr + start
        if not 0 <= where < 1 << 24:
            raise ValueError(f"word address {where} does not fit the 3-byte address field")
        payloads.append(bytes([space]) + where.to_bytes(3, "little") + chunk)
    return payloads


def write_mem(seq: int, addr: int, words: np.ndarray, word_bytes: int, space: int = SPACE_WEIGHTS) -> list[bytes]:
    """WRITE_MEM frames of :func:`write_mem_payloads`.

    Frame i gets sequence number ``(seq + i) % 256``; the caller continues from ``seq + len(result)``.
    """
    return [encode_frame(OP_WRITE_MEM, (seq + i) % 256, payload)
            for i, payload in enumerate(write_mem_payloads(addr, words, word_bytes, space))]


def spikes_payloads(indices: Iterable[int] | np.ndarray) -> list[bytes]:
    """SPIKES payloads queueing the input neurons ``indices`` (128 indices per payload at most; none for none)."""
    idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices, dtype=np.int64).ravel()
    if idx.size and (idx.min() < 0 or idx.max() > 0xFFFF):
        raise ValueError("input indices must be 0..65535")
    data = idx.astype("<u2").tobytes()
    return [data[start:start + MAX_DATA_BYTES] for start in range(0, len(data), MAX_DATA_BYTES)]


def spikes(seq: int, indices: Iterable[int] | np.ndarray) -> list[bytes]:
    """SPIKES frames of :func:`spikes_payloads` for the next TICK.

    Returns no frame for no spikes. Frame i gets sequence number ``(seq + i) % 256``.
    """
    return [encode_frame(OP_SPIKES, (seq + i) % 256, payload) for i, payload in enumerate(spikes_payloads(indices))]


def tick(seq: int) -> bytes:
    """TICK frame: run one timestep; the reply is OUT_SPIKES."""
    return encode_frame(OP_TICK, seq)


def clear(seq: int) -> bytes:
    """CLEAR frame: zero all neuron state before a new sample."""
    return encode_frame(OP_CLEAR, seq)


def status(seq: int) -> bytes:
    """STATUS frame: ask the device what network it holds."""
    return encode_frame(OP_STATUS, seq)


# ------------------------------------------------------------------------------------------------ reply parsers


def parse_out_spikes(payload: bytes) -> tuple[int, np.ndarray]:
    """OUT_SPIKES payload -> (step cycles, fired neuron ids as uint16 array, in the order the core reported them)."""
    if len(payload) < 6:
        raise ValueError(f"OUT_SPIKES payload needs at least 6 bytes, got {len(payload)}")
    cycles = int.from_bytes(payload[0:4], "little")
    count = int.from_bytes(payload[4:6], "little")
    if len(payload) != 6 + 2 * count:
        raise ValueError(f"OUT_SPIKES payload of {len(payload)} bytes does not hold count={count} ids")
    return cycles, np.frombuffer(bytes(payload[6:]), dtype="<u2").astype(np.uint16)


def parse_status(payload: bytes) -> dict[str, int | str]:
    """STATUS reply payload -> dict with magic, version, n_neurons, n_inputs, wmem_depth, wmem_width, lanes, graph_tag."""
    if len(payload) != STATUS_PAYLOAD_BYTES:
        raise ValueError(f"STATUS payload must be {STATUS_PAYLOAD_BYTES} bytes, got {len(payload)}")
    if payload[0:4] != MAGIC:
        raise ValueError(f"STATUS payload does not start with {MAGIC!r}: {bytes(payload[0:4])!r}")
    return {
        "magic": payload[0:4].decode("ascii"),
        "version": payload[4],
        "n_neurons": int.from_bytes(payload[5:7], "little"),
        "n_inputs": int.from_bytes(payload[7:9], "little"),
        "wmem_depth": int.from_bytes(payload[9:12], "little"),
        "wmem_width": payload[12],
        "lanes": payload[13],
        "graph_tag": int.from_bytes(payload[14:18], "little"),
    }


def parse_nak(payload: bytes) -> int:
    """NAK payload -> its code (see ``NAK_NAMES``)."""
    if len(payload) != 1:
        raise ValueError(f"NAK payload must be 1 byte, got {len(payload)}")
    return payload[0]
