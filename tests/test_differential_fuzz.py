"""Differential fuzzing with hypothesis: random networks with parameters at the edges of every number format,
through the GPU and FPGA backends, against the CPU reference (spikes, u and v).

The strategies live in ``snnc.runtime.fuzz``. CI runs a bounded number of examples straight through the
backends (so the networks may also use what only the backends take: 32-bit state, graded sources); hypothesis
shrinks any failure to a minimal network and stimulus and prints it. ``snnc fuzz --minutes M`` runs the same
networks for longer through the compile pipeline and saves a shrunk failing case that ``snnc verify`` replays.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from snnc.backends import cpu, fpga, gpu
from snnc.backends.fpga import sim
from snnc.compiler import hw as hwmod
from snnc.compiler import ir
from snnc.runtime.fuzz import networks


def assert_same(graph: ir.Graph, got: dict, expected: dict, backend: str) -> None:
    for pop in graph.populations:
        for quantity in ("spikes", "u", "v"):
            np.testing.assert_array_equal(getattr(got[pop.name], quantity), getattr(expected[pop.name], quantity),
                                          err_msg=f"{backend}: {pop.name} {quantity}")


FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])


@FUZZ
@given(case=networks())
def test_gpu_backend_matches_cpu_on_fuzzed_networks(case, tmp_path):
    graph, stimulus = case
    artifact = gpu.compile(graph, SimpleNamespace(name="gpu"), tmp_path / "gpu")
    assert_same(graph, artifact.run(stimulus, record_state=True), cpu.simulate(graph, stimulus, record_state=True),
                "gpu")


@pytest.mark.skipif(not sim.available_simulators(), reason="no HDL simulator (bash setup.sh installs them)")
@settings(FUZZ, max_examples=20)
@given(case=networks())
def test_fpga_rtl_matches_cpu_on_fuzzed_networks(case, tmp_path):
    graph, stimulus = case
    hw = hwmod.bundled_hw("ecp5_85f")  # 64 delay slots fit its block RAM
    artifact = fpga.compile(graph, hw, tmp_path / "fpga", bitstream=False)
    assert_same(graph, artifact.run(stimulus, record_state=True), cpu.simulate(graph, stimulus, record_state=True),
                "fpga")
