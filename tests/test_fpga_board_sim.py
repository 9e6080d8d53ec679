"""The simulated board: a compiled network's snn_top in Verilator behind a pty, driven with pyserial.

Only protocol.py's builders and parsers are used on the host side, over the same pyserial-on-a-tty path a real
board is reached by. The board starts with a zeroed weight memory (like SPRAM), so every check that the network
computes correctly is also a check that WRITE_MEM carried the weights over the UART.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import serial  # pyserial, a dependency of snnc (hardware in the loop)

from snnc.backends import cpu, fpga
from snnc.backends.fpga import protocol as P
from snnc.backends.fpga.board_sim import BoardSimError, Faults, SimulatedBoard
from snnc.compiler import hw as hwmod
from snnc.compiler import ir
from tests.test_fpga_uart import uart_network

pytestmark = pytest.mark.skipif(shutil.which("verilator") is None, reason="Verilator is not installed (bash setup.sh)")

SAMPLES, STEPS, UNLOADED_STEPS = 2, 12, 4
REPLY_TIMEOUT = 2.0
SILENCE = 0.5
"""Seconds without a reply that count as "no reply": thousands of the simulated link's frame timeouts."""


@dataclass
class Case:
    """The compiled network and what the board must answer: per sample, per step (input indices, fired ids)."""

    graph: ir.Graph
    artifact: fpga.FpgaArtifact
    steps: list[list[tuple[list[int], list[int]]]]


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> Case:
    graph = uart_network()
    artifact = fpga.compile(graph, hwmod.bundled_hw("ice40_up5k"), tmp_path_factory.mktemp("board") / "fpga",
                            bitstream=False)
    rng = np.random.default_rng(4)
    stimulus = {name: rng.random((SAMPLES, STEPS, 8)) < 0.35 for name in graph.inputs}
    reference = cpu.simulate(graph, stimulus)
    mapping = artifact.neuron_map
    steps = []
    for b in range(SAMPLES):
        sample = []
        for t in range(STEPS):
            inputs = sorted(mapping["inputs"][name] + int(i)
                            for name in graph.inputs for i in np.flatnonzero(stimulus[name][b, t]))
            fired = sorted(mapping["neurons"][pop.name] + int(i) for pop in graph.populations if pop.model != "input"
                           for i in np.flatnonzero(reference[pop.name].spikes[b, t]))
            sample.append((inputs, fired))
        steps.append(sample)
    return Case(graph=graph, artifact=artifact, steps=steps)


class Host:
    """A pyserial host speaking the protocol strictly request/response, with fresh sequence numbers."""

    def __init__(self, port: str, baudrate: int) -> None:
        self.link = serial.Serial(port, baudrate=baudrate, timeout=REPLY_TIMEOUT)
        self.decoder = P.FrameDecoder()
        self.seq = 0

    def next_seq(self) -> int:
        seq = self.seq
        self.seq = (self.seq + 1) % 256
        return seq

    def request(self, frame: bytes, timeout: float = REPLY_TIMEOUT) -> P.Frame | None:
        """Send ``frame``; the first whole reply frame, or None when none arrives within ``timeout`` seconds."""
        self.link.reset_input_buffer()  # a late reply to an earlier request must not pass for this one's
        self.link.write(frame)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.link.timeout = max(deadline - time.monotonic(), 0.001)
            data = self.link.read(1)
            data += self.link.read(self.link.in_waiting)
            frames = list(self.decoder.feed(data))
            if frames:
                assert len(frames) == 1, f"one request, several replies: {frames}"
                return frames[0]
        self.decoder.reset()
        return None

    def ack(self, frame: bytes) -> None:
        reply = self.request(frame)
        assert reply is not None and reply.crc_ok and reply.op == frame[1] | P.ACK_FLAG and reply.seq == frame[2], \
            f"request op 0x{frame[1]:02x} seq {frame[2]} answered {reply}"

    def step(self, inputs: list[int]) -> list[int]:
        """SPIKES (if any input fires) then TICK; the fired neuron ids."""
        for frame in P.spikes(self.next_seq(), inputs):
            self.ack(frame)
        return self.tick(P.tick(self.next_seq()))

    def tick(self, frame: bytes) -> list[int]:
        reply = self.request(frame)
        assert reply is not None and reply.crc_ok and reply.op == P.OP_OUT_SPIKES and reply.seq == frame[2], \
            f"TICK answered {reply}"
        return P.parse_out_spikes(reply.payload)[1].tolist()

    def sample(self, steps: list[tuple[list[int], list[int]]]) -> list[list[int]]:
        """CLEAR, then every step's inputs; the fired ids per step."""
        self.ack(P.clear(self.next_seq()))
        return [self.step(inputs) for inputs, _ in steps]

    def load_weights(self, artifact: fpga.FpgaArtifact) -> None:
        frames = artifact.weights_frames(first_seq=self.seq)
        for frame in frames:
            self.ack(frame)
        self.seq = (self.seq + len(frames)) % 256


@pytest.fixture
def board(case: Case) -> Iterator[SimulatedBoard]:
    with SimulatedBoard(case.artifact.path) as simulated:
        yield simulated


@pytest.fixture
def host(board: SimulatedBoard) -> Iterator[Host]:
    connection = Host(board.port, board.baudrate)
    yield connection
    connection.link.close()


def expected_fired(case: Case, b: int) -> list[list[int]]:
    return [fired for _, fired in case.steps[b]]


def design(case: Case) -> dict:
    return json.loads((case.artifact.path / "report.json").read_text())["design"]


def word_bytes(case: Case) -> int:
    return P.word_bytes(design(case)["weight_word_bits"])


def test_status_reports_the_compiled_network(case, board, host):
    reply = host.request(P.status(host.next_seq()))
    assert reply is not None and reply.crc_ok and reply.op == P.OP_STATUS_REPLY
    status = P.parse_status(reply.payload)
    mapping = case.artifact.neuron_map
    report = design(case)
    assert status == {"magic": "SNNC", "version": P.PROTOCOL_VERSION, "n_neurons": mapping["n_neurons"],
                      "n_inputs": mapping["n_inputs"], "wmem_depth": report["synapse_words"],
                      "wmem_width": report["weight_word_bits"], "lanes": report["lanes"],
                      "graph_tag": int(ir.graph_hash(case.graph)[:8], 16)}
    assert board.port.startswith("/dev/pts/")


def test_blank_weight_memory_fires_nothing_until_write_mem_loads_it(case, host):
    # the reference does fire in these steps, so silence means the weights really are missing
    assert any(expected_fired(case, 0)[:UNLOADED_STEPS])
    assert host.sample(case.steps[0][:UNLOADED_STEPS]) == [[]] * UNLOADED_STEPS


def test_loaded_board_matches_the_cpu_reference_step_by_step(case, host):
    host.load_weights(case.artifact)
    fired = [host.sample(case.steps[b]) for b in range(SAMPLES)]
    assert sum(len(ids) for sample in fired for ids in sample) > 20  # both layers are exercised
    assert fired == [expected_fired(case, b) for b in range(SAMPLES)]


def test_reset_forgets_the_replay_memory_but_keeps_weights(case, board, host):
    frames = case.artifact.weights_frames(first_seq=1)
    zero_word = P.write_mem(1, 0, np.zeros(1, dtype=np.int64), word_bytes(case))[0]  # same op and seq as frames[0]
    host.seq = 1 + len(frames)

    # without reset, frames[0] repeats the op and seq of the frame executed last: it is replayed, not executed,
    # so the first weight chunk stays zero and the network computes something else
    host.ack(zero_word)
    for frame in frames:
        host.ack(frame)
    assert host.sample(case.steps[0]) != expected_fired(case, 0)

    # after a reset no frame counts as executed: the same frames load every weight
    host.ack(zero_word)
    board.reset()
    for frame in frames:
        host.ack(frame)
    assert host.sample(case.steps[0]) == expected_fired(case, 0)

    # rst does not touch the weight memory: after another reset the network runs without a reload
    board.reset()
    assert host.sample(case.steps[1]) == expected_fired(case, 1)


def test_reset_discards_a_half_received_frame(host, board):
    host.link.write(P.status(host.next_seq())[:3])
    board.reset()
    reply = host.request(P.status(host.next_seq()))
    assert reply is not None and reply.crc_ok and reply.op == P.OP_STATUS_REPLY and reply.seq == 1


def test_corrupted_request_is_naked_and_not_executed(case, board, host):
    host.load_weights(case.artifact)
    wipe = P.write_mem(host.next_seq(), 0, np.zeros(64, dtype=np.int64), word_bytes(case))[0]
    board.set_faults(Faults(corrupt_rx_at=(20,)))  # a data byte of the next frame
    reply = host.request(wipe)
    assert reply is not None and reply.op == P.OP_NAK and reply.seq == wipe[2] and P.parse_nak(reply.payload) == P.NAK_CRC
    board.set_faults(None)
    assert board.stats()["rx_corrupted"] == 1
    assert host.sample(case.steps[0]) == expected_fired(case, 0)  # the weights were not wiped


def test_dropped_request_byte_gets_no_reply_and_nothing_executes(case, board, host):
    host.load_weights(case.artifact)
    board.set_faults(Faults(drop_rx_at=(6,)))
    wipe = P.write_mem(host.next_seq(), 0, np.zeros(64, dtype=np.int64), word_bytes(case))[0]
    assert host.request(wipe, timeout=SILENCE) is None  # the device abandons the short frame after 32 byte times
    board.set_faults(None)
    assert host.sample(case.steps[0]) == expected_fired(case, 0)  # nothing was written


def test_corrupted_reply_is_recovered_by_resending_the_same_tick(case, board, host):
    host.load_weights(case.artifact)
    expected = expected_fired(case, 0)
    host.ack(P.clear(host.next_seq()))
    fired = [host.step(case.steps[0][0][0])]
    for frame in P.spikes(host.next_seq(), case.steps[0][1][0]):
        host.ack(frame)
    tick = P.tick(host.next_seq())
    board.set_faults(Faults(corrupt_tx_at=(7,)))  # a payload byte of the OUT_SPIKES reply
    reply = host.request(tick)
    assert reply is not None and not reply.crc_ok
    board.set_faults(None)
    fired.append(host.tick(tick))  # replayed: the step is not run twice, so the rest still matches
    fired += [host.step(inputs) for inputs, _ in case.steps[0][2:]]
    assert fired == expected


def test_random_rx_corruption_only_gives_naks_or_silence_deterministically(board, host):
    def outcomes() -> list[str]:
        board.reset()
        board.set_faults(Faults(seed=7, corrupt_rx=0.1))  # restarts the byte count and the generator
        host.seq = 0
        seen = []
        for _ in range(12):
            frame = P.status(host.next_seq())
            reply = host.request(frame, timeout=SILENCE)
            if reply is None:
                seen.append("silence")
            elif reply.op == P.OP_NAK:
                seen.append(f"nak {P.parse_nak(reply.payload)}")
            else:
                assert reply.crc_ok and reply.op == P.OP_STATUS_REPLY and reply.seq == frame[2], reply
                seen.append("status")
        return seen

    first = outcomes()
    assert set(first) <= {"status", "nak 1", "nak 3", "silence"} and "status" in first and len(set(first)) > 1, first
    assert outcomes() == first
    assert board.stats()["rx_corrupted"] > 0


def test_idle_board_sleeps_instead_of_clocking(board, host):
    assert host.request(P.status(host.next_seq())) is not None
    deadline = time.monotonic() + 5
    before = board.stats()["cycles"]
    while True:  # the harness clocks on for its quiet window after the reply, then sleeps in poll()
        time.sleep(0.05)
        now = board.stats()["cycles"]
        if now == before:
            break
        assert time.monotonic() < deadline, "the harness never stopped clocking"
        before = now
    ticks = os.sysconf("SC_CLK_TCK")
    stat = Path(f"/proc/{board.pid}/stat")
    cpu_before = sum(int(x) for x in stat.read_text().rsplit(")", 1)[1].split()[11:13])
    time.sleep(0.5)
    cpu_after = sum(int(x) for x in stat.read_text().rsplit(")", 1)[1].split()[11:13])
    assert board.stats()["cycles"] == before
    assert (cpu_after - cpu_before) / ticks < 0.05  # under 10 % of a core


def test_board_process_exits_after_stop(case):
    board = SimulatedBoard(case.artifact.path)
    board.start()
    pid = board.pid
    assert pid is not None and Path(f"/proc/{pid}").exists()
    board.stop()
    assert board.pid is None and not Path(f"/proc/{pid}").exists()
    with pytest.raises(BoardSimError, match="not running"):
        _ = board.port
    with pytest.raises(BoardSimError, match="not running"):
        board.reset()


def test_board_without_blank_weights_runs_from_the_memory_images(case):
    with SimulatedBoard(case.artifact.path, blank_weights=False) as board:
        host = Host(board.port, board.baudrate)
        try:
            assert host.sample(case.steps[1]) == expected_fired(case, 1)
        finally:
            host.link.close()


def test_rtl_that_does_not_build_is_a_one_line_error(case, tmp_path):
    broken = tmp_path / "fpga"
    shutil.copytree(case.artifact.path, broken)
    top = broken / "rtl" / "snn_top.v"
    top.write_text(top.read_text().replace("endmodule", "endmodul", 1))
    with pytest.raises(BoardSimError, match="verilator build") as error:
        SimulatedBoard(broken).start()
    assert "\n" not in str(error.value)
    with pytest.raises(BoardSimError, match="compile the graph"):
        SimulatedBoard(tmp_path)
