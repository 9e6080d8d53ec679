"""The pytest plugin as a user meets it: a test file of theirs, run by pytest with ``--hil-port`` naming a board.

The "board" is a simulated one started here, so the port is a real tty and the plugin takes the same path as
for hardware (no simulator of its own, no hardware reset line; protocol-level reset only).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from snnc.backends.fpga import board_sim

USER_TESTS = '''
import numpy as np
import pytest

from snnc.backends import cpu
from snnc.runtime import execute

@pytest.mark.hil
def test_board_spikes_like_the_reference(hil_device, hil_artifact):
    graph = execute.load(hil_artifact).graph
    rng = np.random.default_rng(1)
    stimulus = {name: rng.random((1, 10, graph.population(name).size)) < 0.4 for name in graph.inputs}
    got, ref = hil_device.run(stimulus), cpu.simulate(graph, stimulus)
    assert all((got[p.name].spikes == ref[p.name].spikes).all() for p in graph.populations)

@pytest.mark.hil
def test_second_test_gets_a_reset_board(hil_board, hil_device):
    assert hil_board.simulated is None  # --hil-port was given: the plugin did not start a simulator
    assert hil_device.stats.resends == 0

def test_not_hil():
    pass
'''


def run_pytest(tmp_path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_user_board.py").write_text(USER_TESTS)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                           str(tmp_path / "test_user_board.py"), *args], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)


@pytest.mark.hil
def test_hil_port_option_runs_user_tests_on_the_board_at_that_port(hil_artifact, tmp_path):
    with board_sim.SimulatedBoard(hil_artifact) as board:
        port = board.start()
        proc = run_pytest(tmp_path, "--hil-port", port, "--hil-artifact", str(hil_artifact),
                          "--hil-baud", str(board.baudrate), "-m", "hil")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed, 1 deselected" in proc.stdout


def test_hil_tests_without_an_artifact_stop_with_a_usage_error(tmp_path):
    proc = run_pytest(tmp_path, "-m", "hil")
    assert proc.returncode != 0
    assert "hil tests need --hil-artifact DIR" in proc.stdout + proc.stderr
