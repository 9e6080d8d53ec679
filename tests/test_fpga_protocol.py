"""The FPGA host protocol: the Python codec (protocol.py) and the device side (rtl/snn_top.v) in simulation.

The codec tests pin the wire format (CRC variant, framing, resynchronisation). The simulation test runs
snn_top with a mock core under Icarus + cocotb and drives it bit by bit through its UART pins
(tests/fpga_mock/cocotb_top.py), so the two sides are checked against each other, not each against itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from snnc.backends.fpga import protocol as P

REPO = Path(__file__).resolve().parents[1]
RTL = REPO / "backends" / "fpga" / "rtl"
MOCK = Path(__file__).resolve().parent / "fpga_mock"


def test_crc8_is_smbus_variant():
    assert P.crc8(b"123456789") == 0xF4
    assert P.crc8(b"") == 0
    assert P.crc8(b"6789", P.crc8(b"12345")) == 0xF4  # running CRC


def test_encode_decode_round_trip():
    payload = bytes(range(256)) + b"\xa5\xa5"
    frame = P.encode_frame(P.OP_WRITE_MEM, 200, payload)
    assert frame[:5] == bytes([0xA5, 0x01, 200, len(payload) & 0xFF, len(payload) >> 8])
    assert frame[-1] == P.crc8(frame[1:-1])
    dec = P.FrameDecoder()
    got = [f for i in range(0, len(frame), 7) for f in dec.feed(frame[i:i + 7])]  # arbitrary byte chunks
    assert got == [P.Frame(P.OP_WRITE_MEM, 200, payload)]
    assert P.decode_frames(P.tick(3) + P.clear(4)) == [P.Frame(P.OP_TICK, 3, b""), P.Frame(P.OP_CLEAR, 4, b"")]


def test_decoder_resyncs_after_garbage():
    dec = P.FrameDecoder(max_len=300)
    too_long = bytes([0xA5, 0x10, 1, 0xFF, 0xFF])  # length above max_len: dropped, parsing resumes
    frames = list(dec.feed(b"\x00\x12\xff" + too_long + P.status(9)))
    assert frames == [P.Frame(P.OP_STATUS, 9, b"")]
    assert dec.skipped == 3 + 5


def test_decoder_flags_crc_errors():
    bad = bytearray(P.spikes(1, [3])[0])
    bad[5] ^= 0x40
    frames = P.decode_frames(bytes(bad) + P.tick(2))
    assert [f.crc_ok for f in frames] == [False, True]
    with pytest.raises(P.CrcError):
        list(P.FrameDecoder(raise_on_crc=True).feed(bytes(bad)))


def test_builders_and_parsers():
    words = np.arange(300, dtype=np.int64) * 3
    frames = P.write_mem(250, 10, words, word_bytes=3)
    assert [f[2] for f in frames] == [250, 251, 252, 253]  # seq wraps at 256
    decoded = [P.decode_frames(f)[0] for f in frames]
    assert all(len(f.payload) - 4 <= P.MAX_DATA_BYTES and (len(f.payload) - 4) % 3 == 0 for f in decoded)
    assert [int.from_bytes(f.payload[1:4], "little") for f in decoded] == [10, 95, 180, 265]
    data = b"".join(f.payload[4:] for f in decoded)
    assert [int.from_bytes(data[i:i + 3], "little") for i in range(0, len(data), 3)] == words.tolist()
    assert P.spikes(0, []) == []
    sp = [P.decode_frames(f)[0] for f in P.spikes(0, range(200))]
    assert [len(f.payload) for f in sp] == [256, 144]
    cycles, ids = P.parse_out_spikes((1234).to_bytes(4, "little") + (2).to_bytes(2, "little") + b"\x05\x00\x07\x01")
    assert cycles == 1234 and ids.tolist() == [5, 263]
    with pytest.raises(ValueError):
        P.parse_out_spikes(b"\x00" * 4 + b"\x02\x00\x01\x00")


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog (iverilog) is not installed")
@pytest.mark.filterwarnings("ignore:Python runners and associated APIs are an experimental feature")
def test_snn_top_protocol_in_simulation(tmp_path):
    """snn_top + mock core under Icarus: every cocotb test in tests/fpga_mock/cocotb_top.py must pass."""
    from cocotb.runner import get_runner

    runner = get_runner("icarus")
    runner.build(
        sources=[RTL / "uart_rx.v", RTL / "uart_tx.v", RTL / "snn_top.v", MOCK / "snn_core.v"],
        includes=[MOCK],
        hdl_toplevel="snn_top",
        parameters={"CLKS_PER_BIT": 4},
        build_dir=tmp_path,
        timescale=("1ns", "1ps"),
    )
    # runner.test raises under pytest when a cocotb test fails; the results file is checked too for clarity
    results = runner.test(hdl_toplevel="snn_top", test_module="tests.fpga_mock.cocotb_top", build_dir=tmp_path,
                          test_dir=tmp_path)
    from cocotb.runner import get_results

    total, failed = get_results(results)
    assert total >= 8 and failed == 0
