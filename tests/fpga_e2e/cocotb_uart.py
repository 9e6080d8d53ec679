"""cocotb test of a compiled snnc image end to end: snn_top + the REAL snn_core, driven through the UART pins.

Run by tests/test_fpga_uart.py, which compiles a small network, zeroes its weight image (so only WRITE_MEM over the
UART can make the weights right) and writes the expected behaviour, computed by the CPU reference, into a JSON file
named by the environment variable ``SNNC_UART_CASE``:

    n_neurons, n_inputs, wmem_depth, wmem_width, lanes, graph_tag   what STATUS must report
    clks_per_bit         the CLKS_PER_BIT snn_top was built with (must be the host's, tests/fpga_mock CPB)
    weight_frames        hex strings: the WRITE_MEM frames (artifact.weights_frames) that load the real weights
    next_seq             the first sequence number after those frames
    unloaded_steps       how many steps of samples[0] to run BEFORE the load; the zeroed image must fire nothing
    samples              per sample, per step: {"inputs": [input indices], "fired": [neuron ids], "cycles": int}

The host side is the bit-level UART host of the protocol tests (tests/fpga_mock/cocotb_top.py), so the UARTs,
parser, executor, reply path and the core's write port are all in the loop; nothing is poked through hierarchy.
"""

from __future__ import annotations

import json
import os

import cocotb

from snnc.backends.fpga import protocol as P
from tests.fpga_mock import cocotb_top as mock

CASE_ENV = "SNNC_UART_CASE"
REPLY_CYCLES = 400 * mock.BYTE_CYCLES  # an OUT_SPIKES of every neuron is far longer than the mock test's 60 bytes


class Host(mock.Host):
    """The protocol tests' UART host with a reply timeout long enough for a real core's TICK replies."""

    async def recv(self, max_cycles: int = REPLY_CYCLES) -> P.Frame:
        return await super().recv(max_cycles)


async def start(dut) -> Host:
    """Clock, idle line, reset; returns a host with its receive monitor running (as the protocol tests do)."""
    return await mock.start(dut, Host)


class Seq:
    """Sequence numbers: a new one for every request (the device replays a frame whose op and seq repeat)."""

    def __init__(self, first: int) -> None:
        self.value = first % 256

    def next(self) -> int:
        value = self.value
        self.value = (self.value + 1) % 256
        return value


async def run_step(host: Host, seq: Seq, inputs: list[int]) -> tuple[int, list[int]]:
    """SPIKES (when any input fires) then TICK; returns (cycles, fired neuron ids)."""
    for frame in P.spikes(seq.next(), inputs):
        await host.ack(frame)
    reply = await host.request(P.tick(seq.next()))
    assert reply.op == P.OP_OUT_SPIKES, f"TICK answered {reply}"
    cycles, ids = P.parse_out_spikes(reply.payload)
    return cycles, ids.tolist()


@cocotb.test()
async def network_through_uart(dut) -> None:
    """STATUS, a run on the zeroed weights, WRITE_MEM of the real weights, then every step equals the CPU reference."""
    with open(os.environ[CASE_ENV], encoding="utf-8") as fh:
        case = json.load(fh)
    assert case["clks_per_bit"] == mock.CPB, "snn_top must be built with the CLKS_PER_BIT the host uses"
    host = await start(dut)
    seq = Seq(0)

    reply = await host.request(P.status(seq.next()))
    assert reply.op == P.OP_STATUS_REPLY
    status = P.parse_status(reply.payload)
    expected_status = {key: case[key] for key in ("n_neurons", "n_inputs", "wmem_depth", "wmem_width", "lanes",
                                                  "graph_tag")}
    assert status == {"magic": "SNNC", "version": P.PROTOCOL_VERSION, **expected_status}, status

    # the image holds zero weights: with no bias nothing can reach threshold, whatever the inputs
    first = case["samples"][0]
    await host.ack(P.clear(seq.next()))
    for t, step in enumerate(first[:case["unloaded_steps"]]):
        _, fired = await run_step(host, seq, step["inputs"])
        assert fired == [], f"zeroed weights, step {t}: the core fired {fired}"

    frames = [bytes.fromhex(f) for f in case["weight_frames"]]
    # the frames bring their own seqs (artifact.weights_frames numbers them consecutively); restarting there is safe
    # because only a repeat of the last executed frame's op AND seq is replayed, and that one was a TICK
    seq.value = frames[0][2]
    for frame in frames:
        assert frame[2] == seq.next(), "weight frames must carry consecutive sequence numbers"
        await host.ack(frame)
    assert seq.value == case["next_seq"] % 256

    for b, sample in enumerate(case["samples"]):
        await host.ack(P.clear(seq.next()))
        for t, step in enumerate(sample):
            cycles, fired = await run_step(host, seq, step["inputs"])
            assert fired == step["fired"], f"sample {b} step {t}: device fired {fired}, CPU reference {step['fired']}"
            assert cycles == step["cycles"], f"sample {b} step {t}: {cycles} cycles, RTL simulation took {step['cycles']}"
    dut._log.info("%d samples x %d steps matched the CPU reference", len(case["samples"]), len(case["samples"][0]))
