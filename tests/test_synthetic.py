"""The synthetic graph generators: requested sizes, determinism, topographic wiring, valid IR."""

from __future__ import annotations

import numpy as np
import pytest

from snnc.compiler import ir, synthetic


def test_layered_sparse_has_the_requested_neurons_and_synapses():
    graph = synthetic.layered_sparse(1_003, 20_007, layers=4)
    sizes = [pop.size for pop in graph.populations]
    assert len(sizes) == 5 and sum(sizes) == 1_003 and max(sizes) - min(sizes) <= 1
    assert [pop.model for pop in graph.populations] == ["input"] + ["lif"] * 4
    assert sum(proj.synapse_count for proj in graph.projections) == 20_007
    for proj in graph.projections:
        dst = graph.population(proj.dst)
        fan_in = np.bincount(proj.rows, minlength=dst.size)
        assert fan_in.max() - fan_in.min() <= 1
        assert np.all(np.diff(proj.rows) >= 0)


def test_layered_sparse_is_lean_and_passes_the_ir_check():
    graph = synthetic.layered_sparse(2_000, 50_000, delays=True)
    ir.check(graph, "float")
    for proj in graph.projections:
        assert proj.kind == "sparse"
        assert proj.rows.dtype == proj.cols.dtype == np.int32 and proj.weight.dtype == np.float32
        assert proj.delay.dtype == np.int8 and 0 <= proj.delay.min() <= proj.max_delay <= synthetic.MAX_DELAY
        assert (proj.weight < 0).mean() > 0.3 and (proj.weight > 0).mean() > 0.3


def test_layered_sparse_is_deterministic_per_seed():
    a, b = synthetic.layered_sparse(1_000, 10_000, seed=3), synthetic.layered_sparse(1_000, 10_000, seed=3)
    c = synthetic.layered_sparse(1_000, 10_000, seed=4)
    assert ir.graph_hash(a) == ir.graph_hash(b)
    assert ir.graph_hash(a) != ir.graph_hash(c)


@pytest.mark.parametrize("locality", [0.02, 0.1])
def test_layered_sparse_sources_lie_in_the_window_around_the_topographic_centre(locality):
    graph = synthetic.layered_sparse(11_000, 200_000, locality=locality)
    for proj in graph.projections:
        n, m = graph.population(proj.src).size, graph.population(proj.dst).size
        centre = proj.rows.astype(np.int64) * n // m
        offset = (proj.cols - centre) % n
        distance = np.minimum(offset, n - offset)
        assert distance.max() <= synthetic.window_half_width(n, locality)


def test_layered_sparse_without_locality_draws_sources_across_the_whole_layer():
    graph = synthetic.layered_sparse(11_000, 200_000, locality=None)
    for proj in graph.projections:
        n = graph.population(proj.src).size
        centre = proj.rows.astype(np.int64) * n // graph.population(proj.dst).size
        offset = (proj.cols - centre) % n
        assert (np.minimum(offset, n - offset) > 0.1 * n).mean() > 0.5


def test_layered_dense_builds_a_checked_chain():
    graph = synthetic.layered_dense([20, 10, 5], seed=1)
    ir.check(graph, "float")
    assert [proj.weight.shape for proj in graph.projections] == [(10, 20), (5, 10)]


def test_layered_sparse_refuses_a_non_spiking_model():
    with pytest.raises(ValueError, match="does not spike"):
        synthetic.layered_sparse(100, 1_000, model="li")
