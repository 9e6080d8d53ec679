"""The resource model and `snnc check`: hand-computed numbers, one test per rule, and the bundled models."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from snnc.cli import main
from snnc.compiler import hw as hwmod
from snnc.compiler import ir, resources

from .conftest import REPO

SNNTORCH = REPO / "examples" / "digits_snntorch.nir"
CNN_ONNX = REPO / "examples" / "digits_cnn.onnx"
CNN_CALIBRATION = REPO / "examples" / "digits_calibration.npz"


def small_hw(**core: int) -> hwmod.HardwareConfig:
    """loihi2's numerics (8-bit weights, 6-bit delays) with tiny cores: 16 neurons, 4 cores in a 2x2 mesh."""
    limits = {"max_neurons": 16, "max_fan_in": 64, "max_fan_out": 64, "synapse_memory_bytes": 4096, "max_axons": 64}
    limits.update(core)
    chip_cores = limits.pop("cores", 4)
    base = hwmod.bundled_hw("loihi2")
    return dataclasses.replace(base, core=hwmod.CoreLimits(**limits),
                               chip=hwmod.ChipLayout(cores=chip_cores, mesh=(1, chip_cores)), source="small.yaml")


def if_pop(name: str, shape: tuple[int, ...]) -> ir.Population:
    params = {k: np.full(shape, v) for k, v in (("r", 1.0), ("v_threshold", 1.0), ("v_reset", 0.0), ("bias", 0.0))}
    return ir.Population(name, shape, "if", params)


def graph_of(pops: list[ir.Population], projs: list[ir.Projection]) -> ir.Graph:
    return ir.Graph(tuple(pops), tuple(projs), inputs=(pops[0].name,), outputs=(pops[-1].name,), dt=1e-3)


def identity(name: str, src: str, dst: str, n: int) -> ir.Projection:
    index = np.arange(n)
    return ir.Projection(name, src, dst, "sparse", np.ones(n), rows=index, cols=index)


def dense(name: str, src: str, dst: str, n_dst: int, n_src: int) -> ir.Projection:
    # a broadcast view: the resource model reads shapes, never weights, so no memory is spent
    return ir.Projection(name, src, dst, "dense", np.broadcast_to(np.float64(0.1), (n_dst, n_src)))


def docs_example() -> ir.Graph:
    """The worked example of docs/resources.md: conv 'c' -> dense 'fc' -> sparse 'sp'."""
    spec = ir.ConvSpec(in_shape=(1, 4, 4), out_shape=(2, 4, 4), padding=(1, 1))
    return graph_of(
        [ir.Population("in", (1, 4, 4), "input"), if_pop("c", (2, 4, 4)), if_pop("f", (5,)), if_pop("o", (3,))],
        [ir.Projection("conv", "in", "c", "conv", np.ones((2, 1, 3, 3)), conv=spec),
         dense("fc", "c", "f", 5, 32),
         ir.Projection("sp", "f", "o", "sparse", np.ones(4), rows=np.array([0, 0, 1, 2]), cols=np.array([0, 1, 1, 4]))],
    )


def test_demand_matches_the_worked_example_in_the_docs():
    demand = resources.population_demand(docs_example(), small_hw())
    got = {n: (d.neurons, d.fan_in, d.synapses, d.synapse_bytes, d.axons, d.fan_out) for n, d in demand.items()}
    assert got == {
        "in": (16, 0, 0, 0, 0, 2),
        "c": (32, 9, 288, 18, 16, 1),   # kernel 2 x 9 x 8 bits = 18 B; receptive field = all 16 inputs
        "f": (5, 32, 160, 160, 32, 1),  # 5 x 32 x 8 bits
        "o": (3, 2, 4, 9, 3, 0),        # 4 x (8 + 6 + 4) bits = 72 bits; sources 0, 1, 4
    }
    assert [resources.min_cores(demand[n], small_hw()) for n in ("in", "c", "f", "o")] == [0, 2, 1, 1]


def test_check_table_matches_the_worked_example_in_the_docs():
    result = resources.check(docs_example(), small_hw())
    rows = {r.resource: (r.used, r.available) for r in result.rows}
    assert rows == {
        "neurons": (40, 64),
        "synapse memory (bytes)": (9 + 9 + 160 + 9, 4 * 4096),  # each conv slice stores one channel's kernel
        "cores": (3, 4),                                       # 'f' and 'o' share a core
        "input axons": (16 + 16 + 32 + 3, 4 * 64),
        "max fan-in (per neuron)": (32, 64),
        "max fan-out (cores per neuron)": (1, 64),
    }
    assert result.cores == {"c": 2, "f": 1, "o": 1}
    assert result.fits and not result.warnings


def test_rule_neurons_per_core_sets_min_cores():
    graph = graph_of([ir.Population("in", (100,), "input"), if_pop("h", (100,))], [identity("p", "in", "h", 100)])
    demand = resources.population_demand(graph, small_hw(cores=8))
    assert resources.min_cores(demand["h"], small_hw(cores=8)) == 7  # ceil(100 / 16)


def test_rule_fan_in_cannot_be_split():
    graph = graph_of([ir.Population("in", (100,), "input"), if_pop("fc2", (5,))], [dense("p", "in", "fc2", 5, 100)])
    hw = small_hw()
    with pytest.raises(resources.ResourceError) as info:
        resources.min_cores(resources.population_demand(graph, hw)["fc2"], hw)
    assert info.value.finding.rule == "core.max_fan_in"
    assert str(info.value) == (
        "rule 'core.max_fan_in', layer 'fc2': needs 100, available 64 (small.yaml) — hint: fan-in 100 of "
        "neuron(s) in 'fc2' exceeds the per-core limit 64: no split can fix it; reduce the layer's inputs")


def test_rule_fan_in_near_the_limit_warns():
    graph = graph_of([ir.Population("in", (60,), "input"), if_pop("h", (5,))], [dense("p", "in", "h", 5, 60)])
    result = resources.check(graph, small_hw())
    assert result.fits
    assert [(f.rule, f.layer, f.required, f.available) for f in result.warnings] == [("core.max_fan_in", "h", 60, 64)]


def test_rule_fan_out_counts_destination_slices():
    graph = graph_of([ir.Population("in", (4,), "input"), if_pop("a", (4,)), if_pop("b", (128,))],
                     [identity("p", "in", "a", 4), dense("q", "a", "b", 128, 4)])
    hw = small_hw(max_fan_out=4, cores=16)
    result = resources.check(graph, hw)
    assert [f.message() for f in result.errors] == [
        "rule 'core.max_fan_out', layer 'a': needs 8, available 4 (small.yaml) — hint: each neuron of 'a' sends "
        "to 8 destination cores, more than a core's 4 fan-out entries: no split can fix it; make the next layers "
        "smaller"]
    eight = small_hw(max_fan_out=8, cores=16)
    # 8 entries per neuron, 8 per core: one neuron of 'a' per core
    assert resources.min_cores(resources.population_demand(graph, eight)["a"], eight) == 4


def test_rule_synapse_memory_splits_then_fails_for_one_neuron():
    graph = graph_of([ir.Population("in", (64,), "input"), if_pop("h", (128,))], [dense("p", "in", "h", 128, 64)])
    roomy = small_hw(max_neurons=1024)
    assert resources.min_cores(resources.population_demand(graph, roomy)["h"], roomy) == 2  # 8,192 B / 4,096 B
    tight = small_hw(max_neurons=1024, synapse_memory_bytes=32)
    with pytest.raises(resources.ResourceError) as info:
        resources.min_cores(resources.population_demand(graph, tight)["h"], tight)
    assert str(info.value) == (
        "rule 'core.synapse_memory_bytes', layer 'h': needs 64, available 32 (small.yaml) — hint: the synapses of "
        "one neuron of 'h' need 64 bytes, more than a core holds: no split can fix it; reduce weight bits to 4 "
        "(--weight-bits 4) to halve synapse memory")


def test_rule_axons_split_sparse_but_not_dense():
    sparse = graph_of([ir.Population("in", (128,), "input"), if_pop("h", (128,))], [identity("p", "in", "h", 128)])
    hw = small_hw(max_neurons=1024, max_fan_in=1000)
    assert resources.min_cores(resources.population_demand(sparse, hw)["h"], hw) == 2  # 64 distinct sources each
    full = graph_of([ir.Population("in", (100,), "input"), if_pop("h", (8,))], [dense("p", "in", "h", 8, 100)])
    with pytest.raises(resources.ResourceError) as info:
        resources.min_cores(resources.population_demand(full, hw)["h"], hw)
    assert str(info.value) == (
        "rule 'core.max_axons', layer 'h': needs 100, available 64 (small.yaml) — hint: a single neuron of 'h' "
        "listens to 100 source neurons, more than a core's 64 input axons: no split can fix it; reduce the "
        "layer's inputs")


def test_rule_conv_axons_are_the_receptive_field():
    spec = ir.ConvSpec(in_shape=(1, 16, 16), out_shape=(1, 16, 16), padding=(1, 1))
    graph = graph_of([ir.Population("in", (1, 16, 16), "input"), if_pop("c", (1, 16, 16))],
                     [ir.Projection("k", "in", "c", "conv", np.ones((1, 1, 3, 3)), conv=spec)])
    hw = small_hw(max_neurons=1024, max_axons=128)
    # 256 inputs > 128: two slices of 8 rows read 9 input rows each = 144 > 128; three (6 rows) read 7 x 16 = 112
    assert resources.min_cores(resources.population_demand(graph, hw)["c"], hw) == 3


def test_rule_total_cores_suggests_more_chips():
    graph = graph_of([ir.Population("in", (100,), "input"), if_pop("h", (100,))], [identity("p", "in", "h", 100)])
    result = resources.check(graph, small_hw())
    assert [f.message() for f in result.errors] == [
        "rule 'chip.cores', layer 'h': needs 7, available 4 (small.yaml) — hint: split layer 'h' (7 slices) "
        "across 2 chips (needs 7 cores, a chip has 4)"]


def test_hundred_million_dense_synapses_are_counted_quickly():
    graph = graph_of([ir.Population("in", (10_000,), "input"), if_pop("h", (10_000,))],
                     [dense("p", "in", "h", 10_000, 10_000)])
    hw = hwmod.bundled_hw("cpu")
    start = time.perf_counter()
    demand = resources.population_demand(graph, hw)["h"]
    assert (demand.synapses, demand.synapse_bytes) == (10**8, 10**8)
    assert time.perf_counter() - start < 5


def test_ten_million_sparse_synapses_are_sliced_quickly():
    rng = np.random.default_rng(0)
    n = 10_000_000
    rows, cols = rng.integers(0, 50_000, n), rng.integers(0, 4_000, n)
    graph = graph_of([ir.Population("in", (4_000,), "input"), if_pop("h", (50_000,))],
                     [ir.Projection("p", "in", "h", "sparse", np.ones(n, dtype=np.float32), rows=rows, cols=cols)])
    hw = hwmod.bundled_hw("loihi2")
    start = time.perf_counter()
    result = resources.check(graph, hw)
    assert time.perf_counter() - start < 10
    # 10M x (8 + 6 + 13) bits = 33,750,000 bytes; 128 KiB per core sets the split
    assert result.cores["h"] >= 33_750_000 // 131_072


def run_check(capsys, *argv: object) -> tuple[int, str, str]:
    code = main(["check", *(str(a) for a in argv)])
    out, err = capsys.readouterr()
    return code, out, err


MODELS = {
    "digits_snntorch": ((SNNTORCH,), {"loihi2": 0, "fpga-ice40": 0, "fpga-ecp5": 0}),
    # ONNX ReLU nets become IF neurons with reset subtract, which Lava's LIF cannot do
    # the CNN's conv fan-out tables outgrow the UP5K's block RAM (the FPGA backend's memory map, docs/fpga.md)
    "digits_cnn": ((CNN_ONNX, "--calibration", CNN_CALIBRATION), {"loihi2": "reset", "fpga-ice40": 1, "fpga-ecp5": 0}),
    "cnn_sinabs": ((), {"loihi2": 0, "fpga-ice40": 1, "fpga-ecp5": 1}),
}


@pytest.mark.parametrize("target", ["loihi2", "fpga-ice40", "fpga-ecp5"])
@pytest.mark.parametrize("model", list(MODELS))
def test_check_prints_the_table_for_the_bundled_models(model, target, capsys, nir_paper_dir):
    args, codes = MODELS[model]
    if model == "cnn_sinabs":
        args = (nir_paper_dir / "cnn_sinabs.nir",)
    code, out, err = run_check(capsys, *args, "--target", target)
    if codes[target] == "reset":
        assert code == 1
        assert ("snnc: error: pass 'normalize' (after import): population 'relu1' uses reset 'subtract', which "
                "target 'loihi2' cannot do (hw_configs/loihi2.yaml: neurons.reset_modes = [zero])") in err
        return
    assert code == codes[target], (out, err)
    for resource in ("neurons", "synapse memory (bytes)", "cores", "input axons", "max fan-in", "max fan-out"):
        assert resource in out
    assert ("fits" if code == 0 else "does not fit") == out.splitlines()[-1]
    errors = [line for line in err.splitlines() if line.startswith("snnc: does not fit: ")]
    assert len(errors) == int(out.split("errors: ")[1].split()[0])


def test_check_applies_the_fpga_block_ram_map(capsys):
    code, out, err = run_check(capsys, CNN_ONNX, "--calibration", CNN_CALIBRATION, "--target", "fpga-ice40")
    assert code == 1 and out.splitlines()[-1] == "does not fit"
    assert ("snnc: does not fit: rule 'fpga.bram_bits', layer 'seg memory': needs 96, available 30 "
            "(hw_configs/ice40_up5k.yaml) — hint: the FPGA core needs 96 SB_RAM40_4K of block RAM") in err


def test_check_too_many_neurons_for_loihi2_exits_1_with_the_numbers(tmp_path, capsys):
    n = 128 * 8192 + 1
    # one input neuron feeds every neuron, so axons (4,096 per core) never bind: neurons do
    one_to_all = ir.Projection("p", "in", "big", "sparse", np.ones(n), rows=np.arange(n), cols=np.zeros(n, dtype=np.int64))
    graph = graph_of([ir.Population("in", (1,), "input"), if_pop("big", (n,))], [one_to_all])
    path = tmp_path / "big.npz"
    ir.save(graph, path)
    code, out, err = run_check(capsys, path, "--target", "loihi2")
    assert code == 1
    assert ("snnc: does not fit: rule 'chip.cores', layer 'big': needs 129, available 128 (hw_configs/loihi2.yaml) "
            "— hint: split layer 'big' across 2 chips (needs 129 cores, a chip has 128;") in err
    assert next(line for line in out.splitlines() if "neurons" in line).split() == [
        "neurons", "1,048,577", "1,048,576", "100.0"]


def test_check_dense_too_wide_for_ice40_exits_1(tmp_path, capsys):
    graph = graph_of([ir.Population("in", (2000,), "input"), if_pop("fc", (300,))],
                     [ir.Projection("p", "in", "fc", "dense", np.full((300, 2000), 0.01))])
    path = tmp_path / "wide.npz"
    ir.save(graph, path)
    code, _, err = run_check(capsys, path, "--target", "fpga-ice40")
    assert code == 1
    assert ("snnc: does not fit: rule 'core.max_fan_in', layer 'fc': needs 2,000, available 1,024 "
            "(hw_configs/ice40_up5k.yaml) — hint: fan-in 2,000 of neuron(s) in 'fc' exceeds the per-core limit "
            "1,024: no split can fix it; reduce the layer's inputs") in err


def test_check_weight_bits_halve_synapse_memory(capsys):
    _, out8, _ = run_check(capsys, SNNTORCH, "--target", "loihi2")
    _, out4, _ = run_check(capsys, SNNTORCH, "--target", "loihi2", "--weight-bits", "4")
    memory = [next(line for line in out.splitlines() if "synapse memory" in line).split()[3] for out in (out8, out4)]
    assert memory == ["9,472", "4,736"]
