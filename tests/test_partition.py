"""Partition and place (compiler/atoms.py, compiler/partitioner.py, passes/partition.py, passes/place.py).

Every core meets every per-core limit, the binding limit really shapes the
result, errors name rule, layer and numbers, and partitioning never changes
what the network computes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from snnc.backends import cpu
from snnc.compiler import atoms as atomsmod
from snnc.compiler import core_split, ir, partitioner, pipeline, resources, synthetic
from snnc.compiler import hw as hwmod
from snnc.compiler.passes import partition, place

from .test_core_split import random_stimulus
from .test_cpu_semantics import random_network
from .test_resources import dense, graph_of, identity, if_pop, small_hw


def chip_hw(chips: int = 1, cores: int = 4, link: int | None = None, **core: int) -> hwmod.HardwareConfig:
    """small_hw with ``chips`` chips of ``cores`` cores each and an optional per-link spike limit."""
    hw = small_hw(cores=cores, **core)
    return dataclasses.replace(hw, chip=dataclasses.replace(hw.chip, chips=chips, link_spikes_per_step=link))


def compiled(graph: ir.Graph, hw: hwmod.HardwareConfig, placer: str | None = None) -> ir.Graph:
    if placer is not None:
        graph = ir.replace(graph, meta={**graph.meta, "placer": placer})
    return pipeline.compile_graph(graph, hw)


def core_usage(graph: ir.Graph, hw: hwmod.HardwareConfig) -> tuple[atomsmod.Atoms, np.ndarray]:
    """Atoms of the placed graph and the (cores, 4) usage of the physical cores its placement names."""
    atoms = atomsmod.build(graph, hw)
    core = np.concatenate([graph.population(p).placement[atoms.start[atoms.atoms_of(p)]] for p in atoms.pops])
    # every atom sits on exactly one core: all its neurons share the placement of its first neuron
    for p in atoms.pops:
        mine = atoms.atoms_of(p)
        np.testing.assert_array_equal(graph.population(p).placement, np.repeat(core[mine], atoms.size[mine]))
    return atoms, atomsmod.usage(atoms, core.astype(np.int64))


def assert_fits(graph: ir.Graph, hw: hwmod.HardwareConfig) -> np.ndarray:
    atoms, use = core_usage(graph, hw)
    np.testing.assert_array_equal(atoms.limits, atomsmod.limits_of(hw))
    over = np.argwhere(use > atoms.limits)
    assert not over.size, f"cores over a limit (core, resource): {over.tolist()}"
    return use


def cores_of(graph: ir.Graph, name: str | None = None) -> int:
    pops = [graph.population(name)] if name else [p for p in graph.populations if p.placement is not None]
    return int(np.unique(np.concatenate([p.placement for p in pops])).size)


# --------------------------------------------------------------------------- one test per per-core limit


def test_neurons_per_core_bind():
    graph = graph_of([ir.Population("in", (100,), "input"), if_pop("h", (100,))], [identity("p", "in", "h", 100)])
    hw = small_hw(cores=8)
    placed = compiled(graph, hw)
    use = assert_fits(placed, hw)
    assert cores_of(placed) == 7  # ceil(100 / 16)
    assert use[:, 0].max() == 16
    assert placed.meta["partition"]["cores"] == placed.meta["placement"]["cores_used"] == 7
    loose = compiled(graph, small_hw(cores=8, max_neurons=128, max_axons=128))
    assert cores_of(loose) == 1


def test_synapse_memory_binds():
    graph = graph_of([ir.Population("in", (64,), "input"), if_pop("h", (128,))], [dense("p", "in", "h", 128, 64)])
    hw = small_hw(max_neurons=1024)
    placed = compiled(graph, hw)
    use = assert_fits(placed, hw)
    assert cores_of(placed) == 2  # 8,192 B of weights, 4,096 B per core
    assert use[:, 1].max() > 0.9 * 8 * 4096  # memory nearly full, neurons far from 1,024
    assert use[:, 0].max() <= 128
    loose = compiled(graph, small_hw(max_neurons=1024, synapse_memory_bytes=16384))
    assert cores_of(loose) == 1


def test_input_axons_bind():
    graph = graph_of([ir.Population("in", (128,), "input"), if_pop("h", (128,))], [identity("p", "in", "h", 128)])
    hw = small_hw(max_neurons=1024, max_fan_in=1000)
    placed = compiled(graph, hw)
    use = assert_fits(placed, hw)
    assert cores_of(placed) == 2  # 128 distinct sources, 64 axons per core
    assert use[:, 2].max() == 64
    assert use[:, 1].max() < 8 * 4096 // 4
    loose = compiled(graph, small_hw(max_neurons=1024, max_fan_in=1000, max_axons=256))
    assert cores_of(loose) == 1


def fan_out_graph(a: int = 16) -> ir.Graph:
    """'a' feeds all 128 neurons of 'b', which needs 8 cores of 16 neurons: 8 fan-out entries per neuron of 'a'."""
    return graph_of([ir.Population("in", (a,), "input"), if_pop("a", (a,)), if_pop("b", (128,))],
                    [identity("p", "in", "a", a), dense("q", "a", "b", 128, a)])


def test_fan_out_entries_bind():
    hw = small_hw(max_fan_out=64, cores=16)
    placed = compiled(fan_out_graph(), hw)
    use = assert_fits(placed, hw)
    assert cores_of(placed, "b") == 8
    # 8 entries per neuron of 'a', 64 per core: at most 8 neurons of 'a' per core
    assert cores_of(placed, "a") == 2
    assert use[:, 3].max() == 64
    assert placed.meta["placement"]["max_per_core"]["fan_out_entries"] == 64
    loose = compiled(fan_out_graph(), small_hw(max_fan_out=128, cores=16))
    assert cores_of(loose, "a") == 1


def test_fan_out_of_one_neuron_too_big_names_rule_layer_and_numbers():
    with pytest.raises(pipeline.PassError) as info:
        compiled(fan_out_graph(), small_hw(max_fan_out=4, cores=16))
    message = str(info.value)
    assert message.startswith("pass 'partition' (after import, normalize, quantize): ")
    assert "rule 'core.max_fan_out', layer 'a': needs 8, available 4 (small.yaml)" in message
    assert isinstance(info.value.__cause__, resources.ResourceError)


def test_fan_out_limit_met_exactly_when_a_placement_exists():
    # 'a' (4 neurons) -> 'b' (128): b on exactly 8 cores and each neuron of 'a' alone fits max_fan_out=8,
    # and resources.min_cores agrees; greedy packs 'a' with 12 neurons of 'b', spreading 'b' over 9 cores
    graph, hw = fan_out_graph(4), small_hw(max_fan_out=8, cores=16)
    quantized = pipeline.compile_graph(graph, hw, until="quantize")
    atoms = atomsmod.build(quantized, hw)
    feasible = np.zeros(atoms.count, dtype=np.int64)
    feasible[atoms.atoms_of("a")] = atoms.start[atoms.atoms_of("a")]  # one core per neuron of 'a': 0..3
    feasible[atoms.atoms_of("b")] = 4 + atoms.start[atoms.atoms_of("b")] // 16  # 'b' on cores 4..11
    assert (atomsmod.usage(atoms, feasible) <= atoms.limits).all()
    assert resources.check(quantized, hw).fits
    placed = compiled(graph, hw)
    assert_fits(placed, hw)


def test_fan_in_cannot_be_split_names_rule_layer_and_numbers():
    graph = graph_of([ir.Population("in", (100,), "input"), if_pop("fc2", (5,))], [dense("p", "in", "fc2", 5, 100)])
    with pytest.raises(pipeline.PassError) as info:
        compiled(graph, small_hw())
    assert "pass 'partition'" in str(info.value)
    assert "rule 'core.max_fan_in', layer 'fc2': needs 100, available 64 (small.yaml)" in str(info.value)
    # the resources alone raise the same finding from atoms.build
    quantized = pipeline.compile_graph(graph, small_hw(), until="quantize")
    with pytest.raises(resources.ResourceError) as direct:
        partition.run(quantized, small_hw())
    assert (direct.value.finding.rule, direct.value.finding.layer, direct.value.finding.required,
            direct.value.finding.available) == ("core.max_fan_in", "fc2", 100, 64)


def test_synapse_memory_of_one_neuron_too_big_names_rule_layer_and_numbers():
    graph = graph_of([ir.Population("in", (64,), "input"), if_pop("h", (128,))], [dense("p", "in", "h", 128, 64)])
    with pytest.raises(pipeline.PassError, match=r"rule 'core.synapse_memory_bytes', layer 'h': needs 64, "
                                                 r"available 32 \(small.yaml\)"):
        compiled(graph, small_hw(max_neurons=1024, synapse_memory_bytes=32))


def test_too_few_cores_on_all_chips_names_rule_layer_and_numbers():
    graph = graph_of([ir.Population("in", (100,), "input"), if_pop("h", (100,))], [identity("p", "in", "h", 100)])
    with pytest.raises(pipeline.PassError) as info:
        compiled(graph, small_hw())
    assert "rule 'chip.cores', layer 'h': needs 7, available 4 (small.yaml)" in str(info.value)
    assert "across 2 chips" in str(info.value)
    # and `snnc check` reports the same finding instead of the estimate
    quantized = pipeline.compile_graph(graph, small_hw(), until="quantize")
    with pytest.raises(resources.ResourceError) as direct:
        partition.run(quantized, small_hw())
    refused = resources.refused(resources.check(quantized, small_hw()), direct.value.finding)
    assert [(f.rule, f.layer, f.required, f.available) for f in refused.errors] == [("chip.cores", "h", 7, 4)]


def test_single_core_target_names_the_binding_limit():
    graph = graph_of([ir.Population("in", (100,), "input"), if_pop("h", (100,))], [identity("p", "in", "h", 100)])
    with pytest.raises(pipeline.PassError, match=r"rule 'core.max_neurons', layer 'h': needs 100, available 16 "
                                                 r"\(small.yaml\) — hint: .* has a single core"):
        compiled(graph, small_hw(cores=1))
    placed = compiled(graph, small_hw(cores=1, max_neurons=128, max_axons=128))
    assert cores_of(placed) == 1 and placed.meta["placement"]["cores_used"] == 1


def test_placed_check_result_uses_real_cores():
    hw = small_hw(cores=8)
    graph = graph_of([ir.Population("in", (100,), "input"), if_pop("h", (100,))], [identity("p", "in", "h", 100)])
    quantized = pipeline.compile_graph(graph, hw, until="quantize")
    result = resources.placed(resources.check(quantized, hw), place.run(partition.run(quantized, hw), hw), hw)
    assert result.cores == {"h": 7}
    assert {r.resource: (r.used, r.available) for r in result.rows}["cores"] == (7, 8)
    assert result.placement["cores_used"] == 7 and result.fits


# --------------------------------------------------------------------------- capacity repair


def layered(neurons: int = 400, synapses: int = 4000, layers: int = 4, locality: float = 0.05,
            **core: int) -> tuple[ir.Graph, hwmod.HardwareConfig]:
    hw = small_hw(cores=64, max_fan_in=128, max_axons=128, **core)
    graph = synthetic.layered_sparse(neurons, synapses, layers, locality=locality)
    return pipeline.compile_graph(graph, hw, until="quantize"), hw


def test_repair_empties_an_overfull_core():
    graph, hw = layered()
    atoms = atomsmod.build(graph, hw)
    everything = np.zeros(atoms.count, dtype=np.int64)
    assert (atomsmod.usage(atoms, everything)[0] > atoms.limits).any()
    core = partitioner._repair(atoms, everything, partitioner._adjacency(atoms), hw)
    use = atomsmod.usage(atoms, core)
    assert (use <= atoms.limits).all()
    assert core.max() + 1 >= -(-int(atoms.size.sum()) // 16)  # at least the neuron bound
    assert sorted(np.unique(core).tolist()) == list(range(core.max() + 1))  # renumbered 0..n-1


def test_repair_makes_an_overshooting_metis_result_feasible():
    graph, hw = layered()
    atoms = atomsmod.build(graph, hw)
    adjacency = partitioner._adjacency(atoms)
    cores = int(partitioner._repair(atoms, partitioner._greedy(atoms), adjacency, hw).max()) + 1
    assert (1.0, 1000) in partitioner.METIS_TRIALS
    start = partitioner._metis(atoms, adjacency, cores, 1000)
    assert (atomsmod.usage(atoms, start) > atoms.limits).any(axis=1).sum() > 0  # METIS overshoots
    refined = partitioner._refine(atoms, start, adjacency)
    for assignment in (start, refined):
        core = partitioner._repair(atoms, assignment, adjacency, hw)
        assert (atomsmod.usage(atoms, core) <= atoms.limits).all()


def test_refine_never_overfills_a_core_it_moves_to():
    graph, hw = layered()
    atoms = atomsmod.build(graph, hw)
    adjacency = partitioner._adjacency(atoms)
    start = partitioner._repair(atoms, partitioner._greedy(atoms), adjacency, hw)
    refined = partitioner._refine(atoms, start, adjacency)
    assert (atomsmod.usage(atoms, refined)[:, :3] <= atoms.limits[:3]).all()
    assert partitioner.inter_core_spikes(atoms, refined) <= partitioner.inter_core_spikes(atoms, start) + 1e-9


# --------------------------------------------------------------------------- spikes unchanged


def unplaced(graph: ir.Graph, meta: dict) -> ir.Graph:
    return ir.replace(graph, meta=meta, populations=tuple(ir.replace(p, placement=None) for p in graph.populations))


@pytest.mark.parametrize("seed", range(24))
def test_partitioned_random_network_spikes_exactly_like_the_original(seed):
    graph = random_network(np.random.default_rng(5000 + seed))
    hw = small_hw(cores=64, max_neurons=4, max_fan_in=256, max_axons=256, max_fan_out=256)
    placed = ir.check(place.run(partition.run(graph, hw), hw), "quantized")
    assert_fits(placed, hw)
    on_chip = [p for p in placed.populations if p.model != "input"]
    assert all(p.placement is not None and p.placement.dtype == np.int32 for p in on_chip)
    assert all(p.placement is None for p in placed.populations if p.model == "input")
    assert cores_of(placed) >= -(-sum(p.size for p in on_chip) // 4)  # really spread
    # nothing but placement and meta changed
    assert ir.graph_hash(unplaced(placed, graph.meta)) == ir.graph_hash(graph)
    assert ir.dump(unplaced(placed, graph.meta)) == ir.dump(graph)
    split, pieces = core_split.split(placed)
    assert len(split.populations) > len(placed.populations)
    stimulus = random_stimulus(graph, seed)
    want = cpu.simulate(graph, stimulus)
    got = core_split.merge({name: r.spikes for name, r in cpu.simulate(split, stimulus).items()}, pieces)
    for name, raster in want.items():
        np.testing.assert_array_equal(got[name], raster.spikes, err_msg=f"{name} spikes")


# --------------------------------------------------------------------------- placement stored


def test_placement_round_trips_through_save_load_and_the_cpu_artifact(tmp_path):
    graph = synthetic.layered_sparse(300, 3000, 3, locality=0.1)
    hw = small_hw(cores=64, max_fan_in=128, max_axons=128)
    placed = pipeline.compile_graph(graph, hw)
    assert cores_of(placed) > 1
    ir.save(placed, tmp_path / "g.npz")
    loaded = ir.load(tmp_path / "g.npz")
    artifact = cpu.compile(placed, hw, tmp_path / "art")
    from_artifact = ir.load(artifact.path / "graph.npz")
    for other in (loaded, from_artifact):
        for pop, got in zip(placed.populations, other.populations):
            if pop.placement is None:
                assert got.placement is None
            else:
                assert got.placement.dtype == np.int32
                np.testing.assert_array_equal(got.placement, pop.placement)
    assert ir.graph_hash(loaded) == ir.graph_hash(placed)


def test_check_rejects_bad_placements_by_name():
    graph = pipeline.compile_graph(synthetic.layered_sparse(60, 300, 2), small_hw(max_fan_in=128, max_axons=128))
    pop = graph.population("l1")

    def with_pop(new: ir.Population) -> ir.Graph:
        return ir.replace(graph, populations=tuple(new if p.name == new.name else p for p in graph.populations))

    with pytest.raises(ValueError, match=rf"'l1'.*placement must be a non-negative integer core per neuron, "
                                         rf"shape \({pop.size},\), got int32\({pop.size + 1},\)"):
        ir.check(with_pop(ir.replace(pop, placement=np.zeros(pop.size + 1, dtype=np.int32))), "quantized")
    with pytest.raises(ValueError, match="placement must be a non-negative integer"):
        ir.check(with_pop(ir.replace(pop, placement=np.full(pop.size, -1, dtype=np.int32))), "quantized")
    source = graph.population("in")
    with pytest.raises(ValueError, match="'in'.*input populations live off chip and take no placement"):
        ir.check(with_pop(ir.replace(source, placement=np.zeros(source.size, dtype=np.int32))), "quantized")


# --------------------------------------------------------------------------- multi-chip


def two_layers() -> ir.Graph:
    """72 + 72 neurons, 'h1' dense into 'h2': 9 cores of 16 neurons, spikes between all of them."""
    return graph_of([ir.Population("in", (72,), "input"), if_pop("h1", (72,)), if_pop("h2", (72,))],
                    [identity("p", "in", "h1", 72), dense("q", "h1", "h2", 72, 72)])


def test_network_of_nine_cores_spreads_over_three_chips():
    hw = chip_hw(chips=3, cores=4, max_fan_in=128, max_axons=128, max_fan_out=256)
    placed = compiled(two_layers(), hw)
    assert_fits(placed, hw)
    report = placed.meta["placement"]
    assert report["cores_used"] == cores_of(placed) == 9
    assert report["chips_used"] == 3
    cores = np.unique(np.concatenate([placed.population(n).placement for n in ("h1", "h2")]))
    assert cores.max() < 12 and set((cores // 4).tolist()) == {0, 1, 2}
    assert 0 < report["inter_chip_spikes_per_step"] <= report["inter_core_spikes_per_step"]


def test_two_chips_are_not_enough_for_nine_cores():
    with pytest.raises(pipeline.PassError, match=r"pass 'partition'.*rule 'chip.cores', layer 'h1': needs 9, "
                                                 r"available 8 \(small.yaml\)"):
        compiled(two_layers(), chip_hw(chips=2, cores=4, max_fan_in=128, max_axons=128, max_fan_out=256))


# --------------------------------------------------------------------------- greedy vs metis


def test_metis_sends_fewer_spikes_between_cores_than_greedy_on_a_topographic_network():
    graph = synthetic.layered_sparse(600, 3000, 3, locality=0.01)
    hw = chip_hw(cores=64, max_neurons=64, max_fan_in=128, max_axons=128)
    greedy = compiled(graph, hw, "greedy")
    metis = compiled(graph, hw)
    for placed in (greedy, metis):
        assert_fits(placed, hw)
    assert greedy.meta["placement"]["placer"] == "greedy"
    assert metis.meta["placement"]["placer"] == "metis"
    summary = metis.meta["partition"]
    assert summary["metis_inter_core_spikes_per_step"] < summary["greedy_inter_core_spikes_per_step"]
    assert (metis.meta["placement"]["inter_core_spikes_per_step"]
            < greedy.meta["placement"]["inter_core_spikes_per_step"])
    for key in ("mean_hops", "max_hops", "max_link_spikes_per_step", "links_over_limit", "chips_used"):
        assert key in metis.meta["placement"] and key in greedy.meta["placement"]
    assert metis.meta["placement"]["links_over_limit"] == 0  # no limit given


def test_metis_keeps_greedy_when_greedy_sends_fewer_spikes():
    graph = synthetic.layered_sparse(400, 4000, 4, locality=0.05)
    hw = small_hw(cores=64, max_fan_in=128, max_axons=128)
    greedy = compiled(graph, hw, "greedy")
    metis = compiled(graph, hw)
    summary = metis.meta["partition"]
    assert summary["metis_inter_core_spikes_per_step"] > summary["greedy_inter_core_spikes_per_step"]
    assert summary["placer"] == "greedy"
    assert (metis.meta["placement"]["inter_core_spikes_per_step"]
            == greedy.meta["placement"]["inter_core_spikes_per_step"])


def test_tiny_link_limit_is_reported_over():
    graph = synthetic.layered_sparse(300, 3000, 3, locality=0.1)
    hw = chip_hw(cores=64, link=1, max_fan_in=128, max_axons=128)
    report = compiled(graph, hw).meta["placement"]
    assert report["link_spikes_per_step_limit"] == 1
    assert report["max_link_spikes_per_step"] > 1
    assert report["links_over_limit"] > 0
    assert report["mean_hops"] > 0 and report["max_hops"] >= 1
