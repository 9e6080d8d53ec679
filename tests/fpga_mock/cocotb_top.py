"""cocotb tests of rtl/snn_top.v with the mock core (tests/fpga_mock/snn_core.v), run by tests/test_fpga_protocol.py.

The testbench talks to the device only through its UART pins, bit by bit, exactly as a host would: it drives
``uart_rx`` with 8N1 bytes and decodes ``uart_tx`` at the bit level, so the UARTs, the frame parser, the executor
and the reply path are all exercised. Expected OUT_SPIKES ids come from :class:`MockModel`, the Python twin of the
mock core's documented rule.
"""

from __future__ import annotations

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge

from snnc.backends.fpga import protocol as P

CPB = 4  # CLKS_PER_BIT the test builds snn_top with
BYTE_CYCLES = 10 * CPB
TIMEOUT_CYCLES = 32 * BYTE_CYCLES  # the device's frame timeout
# tests/fpga_mock/snnc_config.vh
N_NEURONS, N_INPUTS, WMEM_DEPTH, WMEM_WIDTH, LANES, GRAPH_TAG = 20, 12, 40, 16, 2, 0x1234ABCD
WORD_BYTES = P.word_bytes(WMEM_WIDTH)
MOCK_STEP_CYCLES = N_NEURONS + 4


class MockModel:
    """What the mock core fires (see the comment block of tests/fpga_mock/snn_core.v)."""

    def __init__(self) -> None:
        self.step = 0
        self.wsum = 0
        self.pending: set[int] = set()

    def write(self, addr: int, words: list[int]) -> None:
        for i, w in enumerate(words):
            self.wsum = (self.wsum + addr + i + w) & 0xFFFF

    def spikes(self, indices: list[int]) -> None:
        self.pending |= {i % N_NEURONS for i in indices}

    def tick(self) -> list[int]:
        fired = sorted(self.pending | {(7 * self.step + 3) % N_NEURONS, self.wsum % N_NEURONS})
        self.pending = set()
        self.step += 1
        return fired

    def clear(self) -> None:
        self.step = 0
        self.pending = set()


class Host:
    """Bit-level UART host: sends bytes on uart_rx, decodes uart_tx into frames in the background."""

    def __init__(self, dut) -> None:
        self.dut = dut
        self.rx_bytes: list[int] = []
        self.decoder = P.FrameDecoder()
        self.frames: list[P.Frame] = []

    async def monitor(self) -> None:
        """Decode every byte the device sends; a bad stop bit fails the test."""
        dut = self.dut
        while True:
            await FallingEdge(dut.uart_tx)
            await ClockCycles(dut.clk, CPB // 2)
            if int(dut.uart_tx.value) != 0:
                continue  # glitch, not a start bit
            byte = 0
            for i in range(8):
                await ClockCycles(dut.clk, CPB)
                byte |= int(dut.uart_tx.value) << i
            await ClockCycles(dut.clk, CPB)
            assert int(dut.uart_tx.value) == 1, "device sent a byte with a low stop bit"
            self.rx_bytes.append(byte)
            self.frames.extend(self.decoder.feed([byte]))

    async def send(self, data: bytes) -> None:
        for byte in data:
            self.dut.uart_rx.value = 0
            await ClockCycles(self.dut.clk, CPB)
            for i in range(8):
                self.dut.uart_rx.value = (byte >> i) & 1
                await ClockCycles(self.dut.clk, CPB)
            self.dut.uart_rx.value = 1
            await ClockCycles(self.dut.clk, CPB)

    async def recv(self, max_cycles: int = 60 * BYTE_CYCLES) -> P.Frame:
        """The next reply frame; fails if none arrives within max_cycles."""
        waited = 0
        while not self.frames:
            assert waited < max_cycles, "no reply from the device"
            await ClockCycles(self.dut.clk, BYTE_CYCLES)
            waited += BYTE_CYCLES
        frame = self.frames.pop(0)
        assert frame.crc_ok, "device sent a frame with a bad CRC"
        return frame

    async def expect_silence(self, cycles: int) -> None:
        await ClockCycles(self.dut.clk, cycles)
        assert not self.frames and not self.decoder._buf, f"unexpected reply {self.frames}"

    async def request(self, frame: bytes) -> P.Frame:
        await self.send(frame)
        reply = await self.recv()
        assert reply.seq == frame[2], f"reply seq {reply.seq} != request seq {frame[2]}"
        return reply

    async def ack(self, frame: bytes) -> None:
        reply = await self.request(frame)
        assert reply.op == frame[1] | P.ACK_FLAG and reply.payload == b"", f"expected ACK, got {reply}"

    async def nak(self, frame: bytes, code: int) -> None:
        reply = await self.request(frame)
        assert reply.op == P.OP_NAK and P.parse_nak(reply.payload) == code, f"expected NAK {code}, got {reply}"

    async def tick(self, seq: int) -> tuple[P.Frame, list[int]]:
        reply = await self.request(P.tick(seq))
        assert reply.op == P.OP_OUT_SPIKES
        cycles, ids = P.parse_out_spikes(reply.payload)
        assert cycles == MOCK_STEP_CYCLES
        return reply, ids.tolist()


async def start(dut, host_class: type[Host] = Host) -> Host:
    """Clock, idle line, reset; returns a host (of ``host_class``) with its receive monitor running."""
    cocotb.start_soon(Clock(dut.clk, 10, "ns").start())
    dut.uart_rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 5)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 5)
    host = host_class(dut)
    cocotb.start_soon(host.monitor())
    return host


@cocotb.test()
async def status_reply(dut) -> None:
    """STATUS reports the config; garbage bytes before the frame are ignored."""
    host = await start(dut)
    await host.send(b"\x00\x13\xff")
    reply = await host.request(P.status(7))
    assert reply.op == P.OP_STATUS_REPLY
    assert P.parse_status(reply.payload) == {
        "magic": "SNNC", "version": 1, "n_neurons": N_NEURONS, "n_inputs": N_INPUTS, "wmem_depth": WMEM_DEPTH,
        "wmem_width": WMEM_WIDTH, "lanes": LANES, "graph_tag": GRAPH_TAG,
    }


@cocotb.test()
async def write_mem_reaches_core(dut) -> None:
    """WRITE_MEM words reach the core at the right addresses; refused writes write nothing."""
    host, model = await start(dut), MockModel()
    words = [100, 201, 0xBEEF]
    for frame in P.write_mem(1, 5, words, WORD_BYTES):
        await host.ack(frame)
    model.write(5, words)
    assert (await host.tick(2))[1] == model.tick()
    # refused: past the end, other space, data not whole words, too short
    await host.nak(P.write_mem(3, WMEM_DEPTH - 1, [1, 2], WORD_BYTES)[0], P.NAK_BAD_ARG)
    await host.nak(P.write_mem(4, 0, [7], WORD_BYTES, space=1)[0], P.NAK_BAD_ARG)
    await host.nak(P.encode_frame(P.OP_WRITE_MEM, 5, b"\x00\x00\x00\x00\x01\x02\x03"), P.NAK_BAD_ARG)
    await host.nak(P.encode_frame(P.OP_WRITE_MEM, 6, b"\x00\x00"), P.NAK_BAD_ARG)
    assert (await host.tick(7))[1] == model.tick()
    # the last word of the memory is writable; a big write is chunked into several frames
    await host.ack(P.write_mem(8, WMEM_DEPTH - 1, [9], WORD_BYTES)[0])
    model.write(WMEM_DEPTH - 1, [9])
    many = [(i * 37) & 0xFFFF for i in range(WMEM_DEPTH)]
    frames = P.write_mem(9, 0, many, WORD_BYTES)
    assert len(frames) == 1  # 40 words x 2 bytes fit one frame
    await host.ack(frames[0])
    model.write(0, many)
    assert (await host.tick(10))[1] == model.tick()


@cocotb.test()
async def spikes_tick_clear(dut) -> None:
    """SPIKES + TICK fire the mock's ids in ascending order; a bad index pushes nothing; CLEAR resets the step."""
    host, model = await start(dut), MockModel()
    for seq, idx in ((1, [11, 3, 3]), (2, [0, 7])):
        for frame in P.spikes(seq, idx):
            await host.ack(frame)
        model.spikes(idx)
    reply, ids = await host.tick(3)
    assert ids == model.tick() and len(ids) >= 4
    assert len(reply.payload) == 6 + 2 * len(ids)
    await host.nak(P.spikes(4, [1, N_INPUTS])[0], P.NAK_BAD_ARG)
    await host.nak(P.encode_frame(P.OP_SPIKES, 5, b"\x01\x00\x02"), P.NAK_BAD_ARG)
    assert (await host.tick(6))[1] == model.tick()
    assert (await host.tick(7))[1] == model.tick()
    await host.ack(P.clear(8))
    model.clear()
    assert (await host.tick(9))[1] == model.tick()
    await host.nak(P.encode_frame(P.OP_TICK, 10, b"\x00"), P.NAK_BAD_ARG)


@cocotb.test()
async def corrupted_frame_changes_nothing(dut) -> None:
    """A flipped payload byte gives NAK 1 and no spikes; resending the good frame (same seq) works."""
    host, model = await start(dut), MockModel()
    good = P.spikes(1, [5])[0]
    bad = bytearray(good)
    bad[5] ^= 0x02  # index 5 -> 7, CRC no longer matches
    await host.nak(bytes(bad), P.NAK_CRC)
    assert (await host.tick(2))[1] == model.tick()  # neither 5 nor 7 queued
    await host.ack(good)
    model.spikes([5])
    assert (await host.tick(3))[1] == model.tick()
    await host.nak(P.encode_frame(0x55, 4), P.NAK_UNKNOWN_OP)


@cocotb.test()
async def replayed_tick_runs_once(dut) -> None:
    """A TICK resent with the same seq gets the identical stored reply and does not run another step."""
    host, model = await start(dut), MockModel()
    await host.ack(P.spikes(1, [2])[0])
    model.spikes([2])
    first, ids = await host.tick(2)
    assert ids == model.tick()
    again, _ = await host.tick(2)
    assert again == first
    await host.ack(P.spikes(2, [9])[0])  # new op with the same seq is a new frame
    model.spikes([9])
    assert (await host.tick(3))[1] == model.tick()  # the step counter advanced by one per distinct TICK


@cocotb.test()
async def truncated_and_oversized_frames(dut) -> None:
    """A frame cut short is abandoned after the timeout; a too-long length is NAKed at once and drained."""
    host, model = await start(dut), MockModel()
    await host.send(P.spikes(1, [4])[0][:6])
    await host.expect_silence(TIMEOUT_CYCLES + 4 * BYTE_CYCLES)
    assert (await host.tick(2))[1] == model.tick()
    # len = 1000 > RX_MAX: NAK 3 right after the header, the rest (even a whole frame inside it) is ignored
    header = bytes([P.SYNC, P.OP_SPIKES, 3, 1000 & 0xFF, 1000 >> 8])
    await host.send(header)
    reply = await host.recv()
    assert reply.op == P.OP_NAK and reply.seq == 3 and P.parse_nak(reply.payload) == P.NAK_TOO_LONG
    await host.send(P.spikes(4, [6])[0])
    await host.expect_silence(TIMEOUT_CYCLES + 4 * BYTE_CYCLES)
    assert (await host.tick(5))[1] == model.tick()


@cocotb.test()
async def request_during_reply(dut) -> None:
    """A frame that arrives while the previous reply is still being sent is not lost."""
    host, model = await start(dut), MockModel()
    await host.send(P.status(1))
    await ClockCycles(dut.clk, 8 * BYTE_CYCLES)  # the 24-byte STATUS reply is under way
    assert host.rx_bytes, "STATUS reply did not start"
    await host.send(P.tick(2))
    status = await host.recv()
    assert status.op == P.OP_STATUS_REPLY and status.seq == 1
    reply = await host.recv()
    assert reply.op == P.OP_OUT_SPIKES and reply.seq == 2
    assert P.parse_out_spikes(reply.payload)[1].tolist() == model.tick()


@cocotb.test()
async def line_glitches_and_framing_errors(dut) -> None:
    """A 0xA5 with a low stop bit is dropped (it starts no frame); a glitch shorter than half a bit is no start bit."""
    host = await start(dut)
    dut.uart_rx.value = 0  # start bit + 0xA5 + low stop bit
    await ClockCycles(dut.clk, CPB)
    for i in range(8):
        dut.uart_rx.value = (P.SYNC >> i) & 1
        await ClockCycles(dut.clk, CPB)
    dut.uart_rx.value = 0
    await ClockCycles(dut.clk, 3 * CPB)
    dut.uart_rx.value = 1
    await ClockCycles(dut.clk, 2 * CPB)
    for _ in range(2):  # each glitch is followed one bit time later by a real frame: taken as a start bit, it
        dut.uart_rx.value = 0  # would swallow the frame's 0xA5 and the request would go unanswered
        await ClockCycles(dut.clk, 1)
        dut.uart_rx.value = 1
        await ClockCycles(dut.clk, CPB)
        reply = await host.request(P.status(1))
        assert reply.op == P.OP_STATUS_REPLY
    await host.expect_silence(4 * BYTE_CYCLES)
