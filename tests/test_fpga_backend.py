"""The FPGA backend: the generated RTL, simulated in Icarus/Verilator, spikes exactly like the CPU reference."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from snnc import cli
from snnc.backends import cpu, fpga
from snnc.backends.fpga import lowering, resources, sim
from snnc.compiler import hw as hwmod
from snnc.compiler import ir
from tests.test_cpu_semantics import dense, input_pop, network, neuron_pop, random_network, sparse
from tests.test_lava_equivalence import lava_network

pytestmark = pytest.mark.skipif(not sim.available_simulators(), reason="no HDL simulator (bash setup.sh installs them)")

ICE40 = hwmod.bundled_hw("ice40_up5k")
ECP5 = hwmod.bundled_hw("ecp5_85f")


def with_lanes(hw: hwmod.HardwareConfig, lanes: int) -> hwmod.HardwareConfig:
    return dataclasses.replace(hw, fpga=dataclasses.replace(hw.fpga, lanes=lanes))


def assert_rtl_matches_cpu(graph: ir.Graph, stimulus: dict[str, np.ndarray], hw: hwmod.HardwareConfig,
                           out: Path, simulator: str | None = None) -> fpga.FpgaArtifact:
    artifact = fpga.compile(graph, hw, out, bitstream=False)
    artifact.simulator = simulator
    got = artifact.run(stimulus, record_state=True)
    expected = cpu.simulate(graph, stimulus, record_state=True)
    for pop in graph.populations:
        for quantity in ("spikes", "u", "v"):
            np.testing.assert_array_equal(getattr(got[pop.name], quantity), getattr(expected[pop.name], quantity),
                                          err_msg=f"{pop.name} {quantity}")
    return artifact


@pytest.mark.parametrize("seed", range(30))
def test_rtl_matches_cpu_on_random_networks_with_every_neuron_feature(seed, tmp_path):
    # reset zero/subtract/none, vreset, refractory, state_bits 12..32, dense/sparse/conv, recurrence; lanes 1, 2, 4
    rng = np.random.default_rng(seed)
    graph = random_network(rng)
    stimulus = {name: rng.random((2, 25, graph.population(name).size)) < 0.35 for name in graph.inputs}
    assert_rtl_matches_cpu(graph, stimulus, with_lanes(ICE40, (1, 2, 4)[seed % 3]), tmp_path / "fpga")


@pytest.mark.parametrize("seed", range(30))
def test_random_network_compiles_for_fpga_and_verifies_against_cpu(seed, tmp_path, capsys):
    # delays up to 63, single-sign 8-bit and mixed-sign weights, biases with every exponent, conv: through the CLI
    graph, stimulus = lava_network(1000 + seed)
    ir.save(graph, tmp_path / "graph.npz")
    np.savez(tmp_path / "stim.npz", **stimulus)
    # 64 delay slots of accumulators outgrow the UP5K's 30 block RAMs: long delays go to the ECP5
    long_delays = max(p.max_delay for p in graph.projections) > 15
    target = "fpga-ice40" if seed % 2 and not long_delays else "fpga-ecp5"
    out = tmp_path / target
    assert cli.main(["compile", str(tmp_path / "graph.npz"), "--target", target, "--no-bitstream", "-o", str(out)]) == 0
    code = cli.main(["verify", str(out), "--against", "cpu", "--stimuli", str(tmp_path / "stim.npz")])
    report = capsys.readouterr().out
    assert code == 0, report
    assert "PASS" in report and " 0 mismatching spikes of " in report and " 0 mismatching u/v values of " in report


def test_random_fpga_networks_exercise_what_the_suite_claims():
    graphs = [random_network(np.random.default_rng(seed)) for seed in range(30)]
    graphs += [lava_network(1000 + seed)[0] for seed in range(30)]
    projections = [p for g in graphs for p in g.projections]
    pops = [p for g in graphs for p in g.populations if p.quant is not None]
    assert {p.kind for p in projections} == {"dense", "sparse", "conv"}
    assert any(p.src == p.dst for p in projections)  # recurrent
    assert max(p.max_delay for p in projections) == 63
    weights = [np.asarray(p.quant.weight) for p in projections]
    assert any(w.min() < 0 < w.max() for w in weights)
    assert any(w.min() >= 0 and w.max() > 127 for w in weights)
    assert {p.quant.reset for p in pops if p.quant.spiking} == {"zero", "subtract", "none"}
    assert any(p.quant.refractory > 0 for p in pops) and any(not p.quant.spiking for p in pops)
    assert {p.quant.state_bits for p in pops} >= {12, 24, 32}
    assert len(graphs) >= 50


def test_cycle_model_in_report_is_exact(tmp_path):
    rng = np.random.default_rng(7)
    graph = random_network(rng)
    stimulus = {name: rng.random((2, 20, graph.population(name).size)) < 0.3 for name in graph.inputs}
    artifact = assert_rtl_matches_cpu(graph, stimulus, ICE40, tmp_path / "fpga")
    design = lowering.lower(graph, ICE40.fpga, ir.graph_hash(graph))
    rasters = cpu.simulate(graph, stimulus)
    mapping = artifact.neuron_map
    sources = np.zeros((2, 20, design.n_neurons + design.n_inputs), dtype=bool)
    for pop in graph.populations:
        if pop.model == "input":
            start = design.n_neurons + mapping["inputs"][pop.name]
        else:
            start = mapping["neurons"][pop.name]
        sources[:, :, start:start + pop.size] = rasters[pop.name].spikes.reshape(2, 20, -1)
    per_source = 3 + 2 * design.source_segments + design.source_words
    model = design.n_neurons + 10 + (sources * per_source).sum(axis=2)
    np.testing.assert_array_equal(artifact.last_cycles, model)
    assert json.loads((artifact.path / "report.json").read_text())["throughput"]["idle_cycles"] == design.n_neurons + 10


def test_repeated_sparse_pairs_and_same_word_bursts_accumulate_exactly(tmp_path):
    # the same target hit back to back (read-modify-write bypass), repeated pairs with and without delays
    graph = network([input_pop("in", 3), neuron_pop("n", 4, i_decay=4096, vth=10_000)],
                    [sparse("s", "in", "n", rows=[0, 0, 0, 1, 0, 1, 3], cols=[0, 0, 0, 0, 1, 1, 2],
                            weight=[2, 3, 5, -1, 7, 7, 9], delay=[0, 0, 2, 1, 0, 0, 0])])
    stimulus = {"in": np.ones((6, 3), dtype=bool)}
    assert_rtl_matches_cpu(graph, stimulus, with_lanes(ICE40, 1), tmp_path / "l1")
    assert_rtl_matches_cpu(graph, stimulus, with_lanes(ICE40, 2), tmp_path / "l2")


def test_verilator_and_icarus_give_the_same_result(tmp_path):
    rng = np.random.default_rng(3)
    graph = random_network(rng)
    stimulus = {name: rng.random((1, 15, graph.population(name).size)) < 0.4 for name in graph.inputs}
    if "verilator" not in sim.available_simulators():
        pytest.skip("verilator is not installed (bash setup.sh installs it)")
    assert_rtl_matches_cpu(graph, stimulus, ECP5, tmp_path / "v", simulator="verilator")
    assert_rtl_matches_cpu(graph, stimulus, ECP5, tmp_path / "i", simulator="icarus")


def test_network_too_big_for_up5k_fails_naming_the_resource(tmp_path, capsys):
    rng = np.random.default_rng(0)
    graph = network([input_pop("in", 784), neuron_pop("h", 400, vth=100), neuron_pop("o", 10, vth=100)],
                    [dense("w1", "in", "h", rng.integers(-100, 100, (400, 784))),
                     dense("w2", "h", "o", rng.integers(-100, 100, (10, 400)))])
    with pytest.raises(resources.FitError, match=r"does not fit iCE40 UP5K: block RAM needs \d+ of 30 SB_RAM40_4K .*; "
                       r"SPRAM needs 10 of 4 SB_SPRAM256KA \(weights 10\)"):
        fpga.compile(graph, ICE40, tmp_path / "big", bitstream=False)
    assert not (tmp_path / "big").exists()
    ir.save(graph, tmp_path / "graph.npz")
    assert cli.main(["compile", str(tmp_path / "graph.npz"), "--target", "fpga-ice40", "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    # through the pipeline, the partition pass already refuses it on the config's synapse memory
    assert len(err) == 1 and "core.synapse_memory_bytes" in err[0] and "hw_configs/ice40_up5k.yaml" in err[0]
    assert not (tmp_path / "o").exists()


def test_unsupported_lists_what_the_core_cannot_do():
    graph = network([input_pop("in", 2), neuron_pop("n", 2, refractory=40)], [dense("d", "in", "n", [[1, 1], [1, 1]])])
    assert any("refractory 40 > 15" in r for r in fpga.unsupported(graph, ICE40))


def test_artifact_at_a_relative_path_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    graph = network([input_pop("in", 2), neuron_pop("n", 2, vth=1)], [dense("d", "in", "n", [[1, 0], [0, 1]])])
    assert_rtl_matches_cpu(graph, {"in": np.eye(2, dtype=bool)[[0, 1, 0]]}, ICE40, Path("relative") / "fpga")


def test_non_spiking_readout_carries_v_without_record_state(tmp_path):
    graph = network([input_pop("in", 3), neuron_pop("h", 4, vth=20), neuron_pop("out", 2, spiking=False, v_decay=100)],
                    [dense("a", "in", "h", [[30, 0, 5], [0, 30, 5], [10, 10, 10], [-5, 40, 0]]),
                     dense("b", "h", "out", [[3, -2, 1, 4], [-1, 5, 2, 0]])])
    stimulus = {"in": np.random.default_rng(1).random((2, 12, 3)) < 0.5}
    artifact = fpga.compile(graph, ICE40, tmp_path / "fpga", bitstream=False)
    got = artifact.run(stimulus)
    expected = cpu.simulate(graph, stimulus)
    np.testing.assert_array_equal(got["out"].v, expected["out"].v)
    assert np.abs(got["out"].v).max() > 0 and got["h"].v is None and got["out"].u is None
    np.testing.assert_array_equal(got["h"].spikes, expected["h"].spikes)
