"""Splitting a placed graph into per-core pieces never changes what the network computes (compiler/core_split.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from snnc.backends import cpu
from snnc.compiler import conv as conv_lib
from snnc.compiler import core_split, ir
from snnc.runtime import float_reference

from .test_cpu_semantics import conv, dense, input_pop, network, neuron_pop, random_network, sparse


def random_placement(graph: ir.Graph, rng: np.random.Generator) -> ir.Graph:
    """Place every on-chip neuron on a core drawn from a small pool shared by all populations.

    Per population: scattered (non-contiguous), contiguous blocks, or one core.
    """
    pool = rng.choice(16, size=int(rng.integers(2, 6)), replace=False)
    placed = []
    for pop in graph.populations:
        if pop.model == "input":
            placed.append(pop)
            continue
        style = rng.choice(["scattered", "blocks", "one"])
        if style == "scattered":
            cores = rng.choice(pool, size=pop.size)
        elif style == "blocks":
            cores = np.sort(rng.choice(pool, size=pop.size))
        else:
            cores = np.full(pop.size, rng.choice(pool))
        placed.append(ir.replace(pop, placement=cores.astype(np.int32)))
    return ir.check(ir.replace(graph, populations=tuple(placed)), "quantized")


def placed_random_network(seed: int) -> ir.Graph:
    rng = np.random.default_rng(1000 + seed)
    return random_placement(random_network(rng), rng)


def random_stimulus(graph: ir.Graph, seed: int, steps: int = 25) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: (rng.random((2, steps, graph.population(name).size)) < 0.35).astype(np.uint8)
            for name in graph.inputs}


def assert_split_computes_the_same(graph: ir.Graph, stimulus: dict[str, np.ndarray]) -> None:
    """Spikes, u and v of every original population equal the reassembled ones of its pieces."""
    split, pieces = core_split.split(graph)
    want = cpu.simulate(graph, stimulus, record_state=True)
    got = cpu.simulate(split, stimulus, record_state=True)
    assert set(pieces) == {p.name for p in graph.populations}
    for field in ("spikes", "u", "v"):
        merged = core_split.merge({name: getattr(r, field) for name, r in got.items()}, pieces)
        for name, raster in want.items():
            np.testing.assert_array_equal(merged[name], getattr(raster, field), err_msg=f"{name} {field}")


@pytest.mark.parametrize("seed", range(40))
def test_split_graph_spikes_exactly_like_the_original_on_random_networks(seed):
    graph = placed_random_network(seed)
    assert_split_computes_the_same(graph, random_stimulus(graph, seed))


def test_random_placed_networks_exercise_every_feature():
    """The differential test is only as good as its networks: check they cover what it claims."""
    graphs = [placed_random_network(seed) for seed in range(40)]
    projections = [p for g in graphs for p in g.projections]
    pops = [p for g in graphs for p in g.populations if p.model != "input"]
    assert sum(p.kind == "conv" and np.unique(g.population(p.dst).placement).size > 1
               for g in graphs for p in g.projections) >= 3  # convs cut across cores
    assert {p.kind for p in projections} == {"dense", "sparse", "conv"}
    assert any(p.max_delay > 0 and p.kind == "dense" for p in projections)
    assert any(p.max_delay > 0 and p.kind == "sparse" for p in projections)
    assert any(p.src == p.dst for p in projections)
    assert any(p.quant.weight.min() < 0 < p.quant.weight.max() for p in projections)
    assert any(p.quant.bias_mant.any() for p in pops)
    assert any(np.any(np.diff(p.placement) < 0) for p in pops)  # scattered: a core's neurons are not contiguous
    assert any(np.unique(p.placement).size == 1 for p in pops)
    # pieces of every population of a network on one shared core
    assert any(set.intersection(*[set(p.placement.tolist()) for p in g.populations if p.placement is not None])
               for g in graphs)


def small_placed_graph() -> ir.Graph:
    """in (3) -> a (4, placed 3 1 3 0) -> b (2, placed on core 1), a recurrent sparse a -> a."""
    graph = network([input_pop("in", 3), neuron_pop("a", 4, vth=2, bias_mant=[0, 30, 0, 0]),
                     neuron_pop("b", 2, vth=3)],
                    [dense("fc1", "in", "a", [[1, 0, 2], [0, 0, 0], [3, -4, 0], [0, 5, 0]],
                           delay=[[0, 0, 1], [0, 0, 0], [2, 0, 0], [0, 3, 0]]),
                     sparse("rec", "a", "a", rows=[1, 0, 3, 2], cols=[0, 2, 2, 1], weight=[7, -1, 2, 0],
                            delay=[1, 0, 2, 0]),
                     dense("fc2", "a", "b", [[1, 2, 0, 0], [0, 0, 0, 4]])])
    placed = {"a": [3, 1, 3, 0], "b": [1, 1]}
    pops = tuple(p if p.name not in placed else ir.replace(p, placement=np.asarray(placed[p.name], dtype=np.int32))
                 for p in graph.populations)
    return ir.check(ir.replace(graph, populations=pops), "quantized")


def test_pieces_are_named_by_core_and_list_their_original_neurons():
    split, pieces = core_split.split(small_placed_graph())
    listed = {name: [(piece, members.tolist()) for piece, members in parts] for name, parts in pieces.items()}
    assert listed == {"in": [("in", [0, 1, 2])],
                      "a": [("a@c0", [3]), ("a@c1", [1]), ("a@c3", [0, 2])],
                      "b": [("b@c1", [0, 1])]}
    assert [p.name for p in split.populations] == ["in", "a@c0", "a@c1", "a@c3", "b@c1"]
    assert split.inputs == ("in",)
    assert split.outputs == ("b@c1",)
    a3 = split.population("a@c3")
    assert a3.shape == (2,) and a3.placement.tolist() == [3, 3] and a3.placement.dtype == np.int32
    a1 = split.population("a@c1")
    assert a1.quant.bias_mant.tolist() == [30] and a1.params["bias"].shape == (1,)


def test_projections_split_into_joined_piece_pairs_keeping_weights_and_delays():
    split, _ = core_split.split(small_placed_graph())
    projections = {p.name: p for p in split.projections}
    # fc1 row a1 is all zeros: no projection reaches core 1 from the input
    assert [n for n in projections if n.startswith("fc1")] == ["fc1@in>0", "fc1@in>3"]
    fc1 = projections["fc1@in>3"]
    assert fc1.kind == "dense" and fc1.src == "in" and fc1.dst == "a@c3"
    assert fc1.quant.weight.tolist() == [[1, 0, 2], [3, -4, 0]]
    assert fc1.delay.tolist() == [[0, 0, 1], [2, 0, 0]]
    assert fc1.quant.weight_exp == 0 and fc1.quant.weight_bits == 4
    # rec synapses (dst, src): (1, 0) 3>1, (0, 2) 3>3, (3, 2) 3>0, (2, 1) 1>3 with a zero weight: still a synapse
    assert sorted(n for n in projections if n.startswith("rec")) == ["rec@1>3", "rec@3>0", "rec@3>1", "rec@3>3"]
    rec = projections["rec@3>3"]
    assert rec.kind == "sparse" and rec.rows.tolist() == [0] and rec.cols.tolist() == [1]
    assert rec.quant.weight.tolist() == [-1] and rec.delay.tolist() == [0]
    rec = projections["rec@1>3"]
    assert rec.rows.tolist() == [1] and rec.cols.tolist() == [0] and rec.quant.weight.tolist() == [0]
    assert rec.delay.tolist() == [0]
    assert sorted(n for n in projections if n.startswith("fc2")) == ["fc2@0>1", "fc2@1>1", "fc2@3>1"]
    assert projections["fc2@3>1"].quant.weight.tolist() == [[1, 0], [0, 0]]


def test_small_graph_computes_the_same_after_splitting():
    graph = small_placed_graph()
    assert_split_computes_the_same(graph, random_stimulus(graph, seed=7, steps=40))


def test_conv_becomes_sparse_pieces_with_float_and_integer_taps_in_step():
    # float and integer kernels disagree on which taps are zero: the pieces must still pair them up
    spec = ir.ConvSpec(in_shape=(2, 4, 4), out_shape=(2, 3, 3), padding=(1, 1), stride=(1, 1))
    ints = np.array([[[[0, 3], [-2, 1]], [[4, 0], [0, -5]]], [[[1, 1], [0, 2]], [[-3, 0], [2, 0]]]])
    floats = ints.astype(np.float64)
    floats[0, 0, 0, 0] = 0.5   # integer 0, float not
    floats[0, 1, 0, 1] = -0.25
    floats[1, 0, 1, 1] = 0.0   # float 0, integer 2
    spec = ir.replace(spec, out_shape=(2, *ir.conv_output_shape(spec, (2, 2))))
    proj = ir.replace(conv("c", "in", "n", ints, spec), weight=floats)
    n_out = int(np.prod(spec.out_shape))
    graph = network([input_pop("in", spec.in_shape), neuron_pop("n", spec.out_shape, vth=1, v_decay=1024)], [proj])
    placement = np.random.default_rng(0).choice([2, 5, 9], size=n_out).astype(np.int32)
    graph = ir.replace(graph, populations=(graph.populations[0], ir.replace(graph.populations[1], placement=placement)))
    split, pieces = core_split.split(ir.check(graph, "quantized"))
    assert all(p.kind == "sparse" and p.delay is None for p in split.projections)
    float_matrix = np.zeros((n_out, 32))
    int_matrix = np.zeros((n_out, 32), dtype=np.int64)
    for p in split.projections:
        members = dict(pieces["n"])[p.dst]
        np.add.at(float_matrix, (members[p.rows], p.cols), p.weight)
        np.add.at(int_matrix, (members[p.rows], p.cols), p.quant.weight)
    np.testing.assert_array_equal(float_matrix, conv_lib.conv_matrix(spec, floats).toarray())
    np.testing.assert_array_equal(int_matrix, conv_lib.conv_matrix(spec, ints).toarray())
    assert_split_computes_the_same(graph, random_stimulus(graph, seed=3))


def test_split_graph_survives_save_and_load(tmp_path: Path):
    graph = placed_random_network(4)
    split, _ = core_split.split(graph)
    ir.save(split, tmp_path / "split.npz")
    loaded = ir.check(ir.load(tmp_path / "split.npz"), "quantized")
    assert ir.graph_hash(loaded) == ir.graph_hash(split)
    assert ir.dump(loaded) == ir.dump(split)


def test_on_chip_population_without_placement_is_refused_by_name():
    graph = small_placed_graph()
    unplaced = tuple(ir.replace(p, placement=None) if p.name == "b" else p for p in graph.populations)
    with pytest.raises(ValueError, match="population 'b' has no placement"):
        core_split.split(ir.replace(graph, populations=unplaced))


@pytest.mark.parametrize("seed", range(5))
def test_float_graph_splits_too_and_the_float_reference_agrees(seed):
    # the float reference's per-projection timing does not depend on the population graph's cycles
    quantized = placed_random_network(seed)
    graph = ir.check(ir.replace(
        quantized,
        populations=tuple(ir.replace(p, quant=None) for p in quantized.populations),
        projections=tuple(ir.replace(p, quant=None) for p in quantized.projections)), "float")
    split, pieces = core_split.split(graph)
    assert all(p.quant is None for p in split.projections)
    stimulus = random_stimulus(graph, seed)
    want = float_reference.simulate(graph, stimulus, timing="per_projection", record_state=True)
    got = float_reference.simulate(split, stimulus, timing="per_projection", record_state=True)
    spikes = core_split.merge({name: r.spikes for name, r in got.items()}, pieces)
    on_chip = {name: parts for name, parts in pieces.items() if name not in graph.inputs}  # inputs carry no v
    v = core_split.merge({name: r.v for name, r in got.items()}, on_chip)
    for name, raster in want.items():
        np.testing.assert_array_equal(spikes[name], raster.spikes, err_msg=f"{name} spikes")
        if name in on_chip:
            np.testing.assert_allclose(v[name], raster.v, err_msg=f"{name} v")
