"""Hardware in the loop through the pytest plugin: the ``hil_device`` fixture on the simulated board (or on the
board at ``--hil-port``), the serial link's retries under dropped and corrupted bytes, and ``snnc hil``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from snnc import cli
from snnc.backends import cpu
from snnc.backends.fpga import board_sim, protocol, serial_device
from snnc.runtime import execute, hil

pytestmark = pytest.mark.hil
SAMPLES, STEPS = 2, 12


def stimulus_for(graph, seed: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.random((SAMPLES, STEPS, graph.population(name).size)) < 0.35 for name in graph.inputs}


def assert_spikes_equal_cpu(graph, stimulus, got) -> int:
    reference = cpu.simulate(graph, stimulus)
    fired = 0
    for pop in graph.populations:
        np.testing.assert_array_equal(got[pop.name].spikes, reference[pop.name].spikes, err_msg=pop.name)
        fired += int(reference[pop.name].spikes.sum()) if pop.model != "input" else 0
    return fired


@pytest.fixture
def simulated(hil_board):
    if hil_board.simulated is None:
        pytest.skip("line faults are injected only on the simulated board (no --hil-port)")
    yield hil_board.simulated
    hil_board.simulated.set_faults(None)


def test_hil_device_is_a_device_and_runs_the_artifact_spike_for_spike(hil_device, hil_artifact):
    assert isinstance(hil_device, hil.Device)
    graph = execute.load(hil_artifact).graph
    stimulus = stimulus_for(graph)
    got = hil_device.run(stimulus)
    assert assert_spikes_equal_cpu(graph, stimulus, got) > 20  # the network really fires
    assert hil_device.last_cycles.shape == (SAMPLES, STEPS) and (hil_device.last_cycles > 0).all()


def test_reset_recovers_from_a_half_sent_frame(hil_device, hil_artifact):
    graph = execute.load(hil_artifact).graph
    hil_device._serial.write(protocol.tick(7)[:3])  # a TICK cut short: the board waits for the rest
    hil_device.reset()
    resends = hil_device.stats.resends
    got = hil_device.run(stimulus_for(graph, seed=5))
    assert_spikes_equal_cpu(graph, stimulus_for(graph, seed=5), got)
    assert hil_device.stats.resends == resends  # a clean line after reset: nothing had to be resent


def test_dropped_and_corrupted_bytes_still_give_the_exact_spikes(hil_device, hil_artifact, simulated):
    graph = execute.load(hil_artifact).graph
    stimulus = stimulus_for(graph, seed=6)
    # about 1 in 100 bytes is lost or damaged each way: a 50-byte TICK reply then fails ~40 % of the time
    simulated.set_faults(board_sim.Faults(seed=3, drop_rx=0.005, corrupt_rx=0.005, drop_tx=0.005, corrupt_tx=0.005))
    hil_device.timeout, hil_device.retries, before = 0.2, 12, dict(hil_device.stats.to_json())
    try:
        got = hil_device.run(stimulus)
    finally:
        hil_device.timeout, hil_device.retries = serial_device.DEFAULT_TIMEOUT_S, serial_device.DEFAULT_RETRIES
    after = hil_device.stats.to_json()
    assert after["resends"] > before["resends"]  # the faults hit: requests had to be resent
    assert after["timeouts"] > before["timeouts"] and after["line_naks"] + after["bad_crc_replies"] > \
        before["line_naks"] + before["bad_crc_replies"]  # drops time out, corruption is caught by a CRC
    assert_spikes_equal_cpu(graph, stimulus, got)  # and no TICK ran twice or with lost inputs


def test_a_dead_line_fails_with_one_clear_error_after_the_retries(hil_device, hil_artifact, simulated):
    graph = execute.load(hil_artifact).graph
    simulated.set_faults(board_sim.Faults(seed=1, drop_rx=1.0))
    hil_device.timeout, hil_device.retries = 0.05, 2
    try:
        with pytest.raises(serial_device.SerialDeviceError,
                           match=r"CLEAR \(seq \d+\) got no valid reply after 3 attempts \(last: no whole reply"):
            hil_device.run(stimulus_for(graph))
    finally:
        hil_device.timeout, hil_device.retries = serial_device.DEFAULT_TIMEOUT_S, serial_device.DEFAULT_RETRIES


def test_a_board_running_another_network_is_refused(hil_device, tmp_path):
    from snnc.backends import fpga
    from snnc.compiler import hw as hwmod
    from tests.test_cpu_semantics import dense, input_pop, network, neuron_pop

    other = fpga.compile(network([input_pop("x", 3), neuron_pop("y", 2)], [dense("xy", "x", "y", np.ones((2, 3)))]),
                         hwmod.bundled_hw("ice40_up5k"), tmp_path / "other", bitstream=False)
    with pytest.raises(serial_device.SerialDeviceError, match="runs another network than .*n_neurons 22 .*graph_tag"):
        hil_device.load(other.path)


def test_snnc_hil_verifies_an_artifact_on_the_simulated_board(hil_artifact, tmp_path, capsys):
    out = tmp_path / "hil.json"
    assert cli.main(["hil", str(hil_artifact), "--stimuli", "2", "--steps", "10", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("PASS: ") and "on the simulated board vs cpu: 0 mismatching spikes" in text
    result = json.loads(out.read_text())
    assert result["passed"] and result["samples"] == 2 and result["steps"] == 10 and result["link"]["resends"] == 0


def test_snnc_hil_refuses_a_non_fpga_artifact_in_one_line(tmp_path, capsys):
    from tests.test_cpu_semantics import dense, input_pop, network, neuron_pop

    graph = network([input_pop("x", 3), neuron_pop("y", 2)], [dense("xy", "x", "y", np.ones((2, 3)))])
    from snnc.compiler import hw as hwmod

    cpu.compile(graph, hwmod.bundled_hw("cpu"), tmp_path / "cpu")
    assert cli.main(["hil", str(tmp_path / "cpu")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "compiled for backend 'cpu'; hardware-in-the-loop runs FPGA artifacts" in err
