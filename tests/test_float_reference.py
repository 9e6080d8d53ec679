"""The float64 reference: hand-computed traces, both timing modes, delays, layouts, snnTorch's equations."""

from __future__ import annotations

import time

import numpy as np
import pytest

from snnc.compiler import ir
from snnc.runtime.float_reference import latency, simulate

# dt/tau = 1e-3/2e-3 is exactly 0.5 in binary floating point, so hand traces compare exactly
DT = 1e-3
TAU = 2e-3
NEVER = 1e9
"""A threshold no test input reaches: a ``threshold`` population with it records x as v."""


def params(model: str, shape: int | tuple[int, ...] = 1, **values: float | np.ndarray) -> dict[str, np.ndarray]:
    """Full per-neuron params of ``model``; unspecified ones take harmless defaults."""
    chosen: dict[str, float | np.ndarray] = {
        "tau_mem": TAU, "tau_syn": TAU, "r": 1.0, "v_leak": 0.0, "v_threshold": 1.0,
        "v_reset": 0.0, "w_in": 1.0, "bias": 0.0,
    }
    chosen.update(values)
    shape = (shape,) if isinstance(shape, int) else shape
    return {k: np.broadcast_to(np.asarray(chosen[k], dtype=np.float64), shape).copy()
            for k in ir.NEURON_MODELS[model]}


def one_neuron(model: str, weight: list[float] | float, reset: str = "zero", dt: float = DT,
               **values: float) -> ir.Graph:
    """Input population of len(weight) neurons -> one neuron ``n`` of ``model``."""
    w = np.atleast_1d(np.asarray(weight, dtype=np.float64))[None, :]
    return ir.Graph(
        populations=(ir.Population("in", (w.shape[1],), "input"),
                     ir.Population("n", (1,), model, params(model, **values), reset=reset)),
        projections=(ir.Projection("w", "in", "n", "dense", w),),
        inputs=("in",), outputs=("n",), dt=dt,
    )


def chain(models: list[str], weight: float = 1.0, **values: float) -> ir.Graph:
    """in -> l1 -> l2 -> ... one neuron per population, every projection ``weight``."""
    names = ["in"] + [f"l{k}" for k in range(1, len(models) + 1)]
    pops = [ir.Population("in", (1,), "input")]
    pops += [ir.Population(name, (1,), model, params(model, **values)) for name, model in zip(names[1:], models)]
    projs = [ir.Projection(f"{a}_{b}", a, b, "dense", np.full((1, 1), weight)) for a, b in zip(names, names[1:])]
    return ir.Graph(tuple(pops), tuple(projs), ("in",), (names[-1],), DT)


def spike_train(steps: int, *times: int) -> np.ndarray:
    """(steps, 1) 0/1 stimulus of one input neuron spiking at ``times``."""
    s = np.zeros((steps, 1), dtype=np.uint8)
    s[list(times), 0] = 1
    return s


def spike_times(raster_spikes: np.ndarray) -> list[int]:
    return [int(t) for t in np.nonzero(raster_spikes[:, 0])[0]]


# --------------------------------------------------------------------------- single-neuron traces


@pytest.mark.parametrize(("reset", "v_reset", "spikes", "v"), [
    ("zero", 0.0, [2, 5], [0.5, 0.75, 0.0, 0.5, 0.75, 0.0]),
    ("zero", 0.25, [2, 4], [0.5, 0.75, 0.25, 0.625, 0.25, 0.625]),
    ("subtract", 0.0, [2, 5], [0.5, 0.75, 0.075, 0.5375, 0.76875, 0.084375]),
])
def test_lif_charges_toward_v_leak_and_resets(reset, v_reset, spikes, v):
    # b = 1 - dt/tau = 0.5: v = 0.5*v + 0.5*v_leak with v_leak = 1 and no input: 0.5, 0.75, 0.875 > 0.8 ...
    graph = one_neuron("lif", 1.0, reset=reset, v_leak=1.0, v_threshold=0.8, v_reset=v_reset)
    out = simulate(graph, {"in": spike_train(6)}, record_state=True)["n"]
    assert spike_times(out.spikes) == spikes
    np.testing.assert_allclose(out.v[:, 0], v, rtol=1e-12)
    assert out.u is None


@pytest.mark.parametrize(("reset", "v"), [("zero", [1.0, 0.0, 0.0]), ("subtract", [1.0, 0.5, 0.25])])
def test_lif_threshold_is_strict(reset, v):
    # v = 0.5*v + 0.5*(r*x), r = 2, x = 1: t0 v = 1.0 equals the threshold (no spike), t1 v = 1.5 spikes
    graph = one_neuron("lif", 1.0, reset=reset, r=2.0)
    out = simulate(graph, {"in": spike_train(3, 0, 1)}, record_state=True)["n"]
    assert spike_times(out.spikes) == [1]
    np.testing.assert_array_equal(out.v[:, 0], v)


@pytest.mark.parametrize(("weight", "w_in"), [(3.0, 1.0), (1.5, 2.0)])
@pytest.mark.parametrize(("reset", "v"), [("zero", [0.0, 0.75, 0.75]), ("subtract", [0.5, 1.0, 0.875])])
def test_cuba_lif_uses_the_new_current_in_the_same_step(weight, w_in, reset, v):
    # I = 0.5*I + w_in*0.5*x: 1.5, 0.75, 0.375; v = 0.5*v + 0.5*(2*I): t0 1.5 spikes;
    # subtract: t1 0.25 + 0.75 = 1.0 is not above the threshold
    graph = one_neuron("cuba_lif", weight, reset=reset, r=2.0, w_in=w_in)
    out = simulate(graph, {"in": spike_train(3, 0)}, record_state=True)["n"]
    assert spike_times(out.spikes) == [0]
    np.testing.assert_array_equal(out.u[:, 0], [1.5, 0.75, 0.375])
    np.testing.assert_array_equal(out.v[:, 0], v)


def test_cuba_li_is_cuba_lif_without_threshold():
    graph = one_neuron("cuba_li", 3.0, r=2.0)
    out = simulate(graph, {"in": spike_train(3, 0)})["n"]
    assert not out.spikes.any()
    np.testing.assert_array_equal(out.v[:, 0], [1.5, 1.5, 1.125])
    assert out.u is None
    assert simulate(graph, {"in": spike_train(3, 0)}, record_state=True)["n"].u[:, 0].tolist() == [1.5, 0.75, 0.375]


@pytest.mark.parametrize("dt", [1e-4, 1.0])
@pytest.mark.parametrize(("reset", "spikes", "v"), [
    ("zero", [2], [0.5, 1.0, 0.0, 0.5, 1.0]),
    ("subtract", [2, 4], [0.5, 1.0, 0.5, 1.0, 0.5]),
])
def test_if_adds_r_times_input_without_dt(dt, reset, spikes, v):
    graph = one_neuron("if", 1.0, reset=reset, dt=dt, r=0.5)
    out = simulate(graph, {"in": spike_train(5, 0, 1, 2, 3, 4)}, record_state=True)["n"]
    assert spike_times(out.spikes) == spikes
    np.testing.assert_array_equal(out.v[:, 0], v)


def test_li_outputs_v_without_record_state():
    # v = 0.5*v + 0.5*(v_leak + r*x), v_leak = 0.5, r = 2, x = 1 at t0: 1.25, 0.875, 0.6875
    out = simulate(one_neuron("li", 1.0, v_leak=0.5, r=2.0), {"in": spike_train(3, 0)})["n"]
    assert out.spikes.dtype == bool and not out.spikes.any()
    np.testing.assert_array_equal(out.v[:, 0], [1.25, 0.875, 0.6875])


@pytest.mark.parametrize("dt", [DT, 1.0])
def test_i_integrates_input_and_bias_without_dt(dt):
    # v = v + r*(w*s + bias) = v + 0.5*(2*s + 0.25)
    out = simulate(one_neuron("i", 2.0, dt=dt, r=0.5, bias=0.25), {"in": spike_train(3, 0)})["n"]
    np.testing.assert_array_equal(out.v[:, 0], [1.125, 1.25, 1.375])


@pytest.mark.parametrize(("reset", "v"), [("zero", [1.0, 0.0, 0.0, 0.0]), ("subtract", [1.0, 0.5, 0.25, 0.0])])
def test_threshold_fires_when_input_exceeds_it(reset, v):
    graph = one_neuron("threshold", [1.0, 0.5, -0.25], reset=reset)
    stim = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1], [0, 0, 0]])
    out = simulate(graph, {"in": stim}, record_state=True)["n"]
    # x = 1.0 (equal: no spike), 1.5, 1.25, 0
    assert spike_times(out.spikes) == [1, 2]
    np.testing.assert_array_equal(out.v[:, 0], v)


def test_non_spiking_population_projects_its_v():
    graph = chain(["li", "threshold"], weight=2.0, v_leak=0.0, r=2.0, v_threshold=NEVER)
    out = simulate(graph, {"in": spike_train(3, 0)}, record_state=True)
    # li: v = 0.5*v + 0.5*(r*x) with r = 2 and x = 2 at t0: 2, 1, 0.5; the probe sees 2*v in the same step
    np.testing.assert_array_equal(out["l1"].v[:, 0], [2.0, 1.0, 0.5])
    np.testing.assert_array_equal(out["l2"].v[:, 0], [4.0, 2.0, 1.0])


def test_input_rasters_are_the_stimulus_and_carry_no_state():
    stim = spike_train(4, 1, 3)
    out = simulate(one_neuron("lif", 1.0), {"in": stim}, record_state=True)["in"]
    np.testing.assert_array_equal(out.spikes, stim.astype(bool))
    assert out.v is None and out.u is None


# --------------------------------------------------------------------------- timing


def test_nir_timing_delivers_feed_forward_projections_in_the_same_step():
    graph = chain(["threshold", "threshold"], v_threshold=0.5)
    out = simulate(graph, {"in": spike_train(6, 3)})
    assert spike_times(out["l1"].spikes) == [3]
    assert spike_times(out["l2"].spikes) == [3]


def test_per_projection_timing_delays_layer_k_by_k_steps():
    graph = chain(["threshold"] * 3, v_threshold=0.5)
    out = simulate(graph, {"in": spike_train(6, 1)}, timing="per_projection")
    assert [spike_times(out[f"l{k}"].spikes) for k in (1, 2, 3)] == [[2], [3], [4]]
    assert latency(graph) == {"in": 0, "l1": 1, "l2": 2, "l3": 3}


@pytest.mark.parametrize(("timing", "first"), [("nir", 2), ("per_projection", 3)])
def test_self_recurrent_projection_arrives_one_step_later(timing, first):
    graph = chain(["threshold"], v_threshold=0.5)
    graph = ir.replace(graph, projections=graph.projections + (
        ir.Projection("rec", "l1", "l1", "dense", np.ones((1, 1))),))
    out = simulate(graph, {"in": spike_train(7, 2)}, timing=timing)
    # the self-excitation keeps it firing every step; a two-step loop would fire every other step
    assert spike_times(out["l1"].spikes) == list(range(first, 7))


def test_projection_closing_a_cycle_arrives_one_step_later():
    # in -> a -> b is feed-forward; b -> a closes the cycle. b's spike alone (1.0) cannot make a fire again.
    pops = (ir.Population("in", (1,), "input"),
            ir.Population("a", (1,), "threshold", params("threshold", v_threshold=1.5)),
            ir.Population("b", (1,), "threshold", params("threshold", v_threshold=0.5)))
    projs = (ir.Projection("in_a", "in", "a", "dense", np.full((1, 1), 2.0)),
             ir.Projection("b_a", "b", "a", "dense", np.ones((1, 1))),
             ir.Projection("a_b", "a", "b", "dense", np.ones((1, 1))))
    graph = ir.Graph(pops, projs, ("in",), ("b",), DT)
    out = simulate(graph, {"in": spike_train(5, 1)}, record_state=True)
    assert spike_times(out["a"].spikes) == [1]
    assert spike_times(out["b"].spikes) == [1]
    np.testing.assert_array_equal(out["a"].v[:, 0], [0.0, 0.0, 1.0, 0.0, 0.0])


def test_latency_counts_the_shortest_path():
    pops = (ir.Population("in", (1,), "input"),
            *(ir.Population(n, (1,), "threshold", params("threshold")) for n in ("a", "b", "island")))
    projs = (ir.Projection("in_a", "in", "a", "dense", np.ones((1, 1))),
             ir.Projection("a_b", "a", "b", "dense", np.ones((1, 1))),
             ir.Projection("in_b", "in", "b", "dense", np.ones((1, 1))),
             ir.Projection("b_a", "b", "a", "dense", np.ones((1, 1))))
    graph = ir.Graph(pops, projs, ("in",), ("b",), DT)
    assert latency(graph) == {"in": 0, "a": 1, "b": 1, "island": 0}


def test_latency_aligns_per_projection_runs_with_nir_runs():
    rng = np.random.default_rng(3)
    sizes = {"in": 12, "h1": 20, "h2": 16, "h3": 6}
    names = list(sizes)
    pops = [ir.Population("in", (12,), "input")]
    pops += [ir.Population(n, (sizes[n],), "lif", params("lif", sizes[n], r=5.0, tau_mem=5e-3), reset="subtract")
             for n in names[1:]]
    projs = [ir.Projection(f"{a}_{b}", a, b, "dense", rng.normal(0.1, 0.5, (sizes[b], sizes[a])))
             for a, b in zip(names, names[1:])]
    graph = ir.Graph(tuple(pops), tuple(projs), ("in",), ("h3",), DT)
    stim = rng.random((2, 40, 12)) < 0.4
    nir_run = simulate(graph, {"in": stim}, record_state=True)
    late = simulate(graph, {"in": stim}, steps=43, timing="per_projection", record_state=True)
    for name, shift in latency(graph).items():
        np.testing.assert_array_equal(late[name].spikes[:, shift:shift + 40], nir_run[name].spikes)
        if name != "in":
            np.testing.assert_array_equal(late[name].v[:, shift:shift + 40], nir_run[name].v)
    assert nir_run["h3"].spikes.any()


# --------------------------------------------------------------------------- delays


@pytest.mark.parametrize(("timing", "extra"), [("nir", 0), ("per_projection", 1)])
def test_dense_per_synapse_delays(timing, extra):
    pops = (ir.Population("in", (2,), "input"),
            ir.Population("out", (2,), "threshold", params("threshold", 2, v_threshold=0.5)))
    delay = np.array([[0, 2], [1, 3]])
    projs = (ir.Projection("w", "in", "out", "dense", np.ones((2, 2)), delay=delay),)
    graph = ir.Graph(pops, projs, ("in",), ("out",), DT)
    stim = np.zeros((10, 2), dtype=bool)
    stim[0, 0] = stim[4, 1] = True
    out = simulate(graph, {"in": stim}, timing=timing)["out"].spikes
    assert [int(t) for t in np.nonzero(out[:, 0])[0]] == [0 + extra, 6 + extra]
    assert [int(t) for t in np.nonzero(out[:, 1])[0]] == [1 + extra, 7 + extra]


def test_sparse_repeated_pairs_sum_within_a_delay_and_split_across_delays():
    pops = (ir.Population("in", (1,), "input"),
            ir.Population("out", (2,), "threshold", params("threshold", 2, v_threshold=0.4)))
    projs = (ir.Projection("w", "in", "out", "sparse", np.array([0.5, 0.5, 0.3, 0.3]),
                           rows=np.array([0, 0, 1, 1]), cols=np.array([0, 0, 0, 0]),
                           delay=np.array([0, 3, 1, 1])),)
    graph = ir.Graph(pops, projs, ("in",), ("out",), DT)
    out = simulate(graph, {"in": spike_train(5, 0)}, record_state=True)["out"]
    # neuron 0 gets 0.5 at t0 and t3; neuron 1 gets 0.3 + 0.3 at t1 (0.3 alone stays below 0.4)
    assert [int(t) for t in np.nonzero(out.spikes[:, 0])[0]] == [0, 3]
    assert [int(t) for t in np.nonzero(out.spikes[:, 1])[0]] == [1]


def test_recurrent_delays_add_to_the_back_edge_step():
    graph = chain(["threshold"], v_threshold=0.5)
    graph = ir.replace(graph, projections=graph.projections + (
        ir.Projection("rec", "l1", "l1", "sparse", np.array([1.0]), rows=np.array([0]), cols=np.array([0]),
                      delay=np.array([2])),))
    out = simulate(graph, {"in": spike_train(10, 1)})["l1"]
    assert spike_times(out.spikes) == [1, 4, 7]


# --------------------------------------------------------------------------- layouts


def probe_graph(src_shape: tuple[int, ...], dst_size: int, proj: ir.Projection) -> ir.Graph:
    """input ``in`` -> ``proj`` -> a threshold population that never fires, so its v is the input x."""
    pops = (ir.Population("in", src_shape, "input"),
            ir.Population("probe", (dst_size,), "threshold", params("threshold", dst_size, v_threshold=NEVER)))
    return ir.Graph(pops, (proj,), ("in",), ("probe",), DT)


def test_sparse_projection_matches_numpy():
    rng = np.random.default_rng(1)
    n_src, n_dst, nnz = 30, 25, 200
    rows, cols = rng.integers(0, n_dst, nnz), rng.integers(0, n_src, nnz)
    weight = rng.normal(size=nnz)
    dense = np.zeros((n_dst, n_src))
    np.add.at(dense, (rows, cols), weight)
    proj = ir.Projection("w", "in", "probe", "sparse", weight, rows=rows, cols=cols)
    stim = rng.random((3, 8, n_src)) < 0.5
    got = simulate(probe_graph((n_src,), n_dst, proj), {"in": stim}, record_state=True)["probe"].v
    np.testing.assert_allclose(got, stim @ dense.T, rtol=1e-12, atol=1e-12)


def conv2d_numpy(x: np.ndarray, kernel: np.ndarray, stride: tuple[int, int], padding: tuple[int, int],
                 dilation: tuple[int, int], groups: int) -> np.ndarray:
    """PyTorch's conv2d of one (C_in, H, W) image, written as the textbook loop."""
    c_out, c_per_group, k_h, k_w = kernel.shape
    padded = np.pad(x, ((0, 0), (padding[0], padding[0]), (padding[1], padding[1])))
    h_out = (x.shape[1] + 2 * padding[0] - dilation[0] * (k_h - 1) - 1) // stride[0] + 1
    w_out = (x.shape[2] + 2 * padding[1] - dilation[1] * (k_w - 1) - 1) // stride[1] + 1
    out = np.zeros((c_out, h_out, w_out))
    for co in range(c_out):
        group = co // (c_out // groups)
        channels = padded[group * c_per_group:(group + 1) * c_per_group]
        for oh in range(h_out):
            for ow in range(w_out):
                top, left = oh * stride[0], ow * stride[1]
                patch = channels[:, top:top + dilation[0] * (k_h - 1) + 1:dilation[0],
                                 left:left + dilation[1] * (k_w - 1) + 1:dilation[1]]
                out[co, oh, ow] = np.sum(patch * kernel[co])
    return out


@pytest.mark.parametrize(("in_shape", "kernel_shape", "stride", "padding", "dilation", "groups"), [
    ((1, 5, 5), (2, 1, 3, 3), (1, 1), (0, 0), (1, 1), 1),
    ((4, 7, 6), (6, 2, 3, 2), (2, 1), (1, 2), (2, 1), 2),
    ((3, 1, 9), (4, 3, 1, 3), (1, 2), (0, 1), (1, 1), 1),
    ((4, 6, 6), (4, 1, 3, 3), (1, 1), (1, 1), (1, 1), 4),
])
def test_conv_projection_matches_numpy(in_shape, kernel_shape, stride, padding, dilation, groups):
    rng = np.random.default_rng(2)
    kernel = rng.normal(size=kernel_shape)
    spec = ir.ConvSpec(in_shape=in_shape, out_shape=(0, 0, 0), stride=stride, padding=padding,
                       dilation=dilation, groups=groups)
    out_hw = ir.conv_output_shape(spec, kernel_shape[2:])
    spec = ir.replace(spec, out_shape=(kernel_shape[0], *out_hw))
    n_out = int(np.prod(spec.out_shape))
    proj = ir.Projection("conv", "in", "probe", "conv", kernel, conv=spec)
    stim = rng.random((4, *in_shape)) < 0.5
    got = simulate(probe_graph(in_shape, n_out, proj), {"in": stim}, record_state=True)["probe"].v
    want = [conv2d_numpy(frame.astype(float), kernel, stride, padding, dilation, groups).ravel() for frame in stim]
    np.testing.assert_allclose(got, np.array(want), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- batching


def mixed_graph(rng: np.random.Generator) -> ir.Graph:
    """conv -> cuba_lif with a delayed sparse recurrence -> dense -> lif and li."""
    spec = ir.ConvSpec(in_shape=(2, 5, 5), out_shape=(3, 3, 3), padding=(0, 0))
    rows, cols = rng.integers(0, 27, 60), rng.integers(0, 27, 60)
    pops = (ir.Population("in", (2, 5, 5), "input"),
            ir.Population("c", (3, 3, 3), "cuba_lif", params("cuba_lif", (3, 3, 3), r=2.0, tau_mem=4e-3), reset="subtract"),
            ir.Population("d", (5,), "lif", params("lif", 5, r=2.0, bias=0.1)),
            ir.Population("readout", (5,), "li", params("li", 5)))
    projs = (ir.Projection("conv", "in", "c", "conv", rng.normal(0.3, 0.5, (3, 2, 3, 3)), conv=spec),
             ir.Projection("rec", "c", "c", "sparse", rng.normal(0, 0.5, 60), rows=rows, cols=cols,
                           delay=rng.integers(0, 3, 60)),
             ir.Projection("fc", "c", "d", "dense", rng.normal(0.2, 0.5, (5, 27))),
             ir.Projection("out", "d", "readout", "dense", rng.normal(0, 1, (5, 5))))
    return ir.Graph(pops, projs, ("in",), ("readout",), DT)


@pytest.mark.parametrize("timing", ["nir", "per_projection"])
def test_batched_run_equals_per_sample_runs(timing):
    rng = np.random.default_rng(4)
    graph = mixed_graph(rng)
    stim = rng.random((3, 30, 2, 5, 5)) < 0.3
    batched = simulate(graph, {"in": stim}, timing=timing, record_state=True)
    assert batched["c"].spikes.any() and batched["d"].spikes.any()
    for b in range(3):
        alone = simulate(graph, {"in": stim[b]}, timing=timing, record_state=True)
        for name, raster in alone.items():
            assert raster.spikes.shape == (30, graph.population(name).size)
            assert raster == batched[name].sample(b)
            if name != "in":
                np.testing.assert_allclose(raster.v, batched[name].v[b], rtol=1e-12, atol=1e-12)
    assert batched["c"].u.shape == (3, 30, 27)
    assert batched["d"].u is None


def test_steps_extends_the_stimulus_with_silence():
    out = simulate(one_neuron("li", 1.0, v_leak=0.0), {"in": spike_train(2, 0)}, steps=4)["n"]
    np.testing.assert_array_equal(out.v[:, 0], [0.5, 0.25, 0.125, 0.0625])


def test_unknown_timing_is_rejected():
    with pytest.raises(ValueError, match="timing 'exact' is not one of"):
        simulate(one_neuron("lif", 1.0), {"in": spike_train(2)}, timing="exact")


# --------------------------------------------------------------------------- snnTorch's equations, by hand


def snntorch_params(model: str, beta: np.ndarray, alpha: np.ndarray, dt: float) -> dict[str, np.ndarray]:
    """What snnTorch's NIR export writes: tau = dt/(1 - beta), r = tau_mem/dt, w_in = tau_syn/dt."""
    tau_mem, tau_syn = dt / (1 - beta), dt / (1 - alpha)
    values = {"tau_mem": tau_mem, "tau_syn": tau_syn, "r": tau_mem / dt, "w_in": tau_syn / dt}
    return params(model, beta.size, **values)


def snntorch_reset(mem: np.ndarray, spk: np.ndarray, reset: str) -> np.ndarray:
    """reset_delay=False: the step's membrane is reset right after it spiked."""
    if reset == "subtract":
        return mem - spk * 1.0
    return mem - spk * mem


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("neuron", ["Leaky", "Synaptic"])
def test_matches_snntorch_update_equations_on_a_random_two_layer_network(neuron, reset):
    rng = np.random.default_rng(5)
    dt, sizes, steps = 1e-4, (20, 30, 10), 60
    weights = [rng.normal(0.15, 0.5, (sizes[1], sizes[0])), rng.normal(0.2, 0.6, (sizes[2], sizes[1]))]
    betas = [rng.uniform(0.8, 0.95, n) for n in sizes[1:]]
    alphas = [rng.uniform(0.5, 0.9, n) for n in sizes[1:]]
    stim = rng.random((4, steps, sizes[0])) < 0.3

    # snnTorch Leaky: mem = beta*mem + x; Synaptic: syn = alpha*syn + x; mem = beta*mem + syn;
    # spk = mem > threshold (threshold 1); then the reset
    mem = [np.zeros((4, n)) for n in sizes[1:]]
    syn = [np.zeros((4, n)) for n in sizes[1:]]
    want_spk = [np.zeros((4, steps, n), dtype=bool) for n in sizes[1:]]
    want_mem = [np.zeros((4, steps, n)) for n in sizes[1:]]
    for t in range(steps):
        spk = stim[:, t].astype(float)
        for k in range(2):
            cur = spk @ weights[k].T
            if neuron == "Synaptic":
                syn[k] = alphas[k] * syn[k] + cur
                mem[k] = betas[k] * mem[k] + syn[k]
            else:
                mem[k] = betas[k] * mem[k] + cur
            spk = (mem[k] - 1.0 > 0).astype(float)
            mem[k] = snntorch_reset(mem[k], spk, reset)
            want_spk[k][:, t], want_mem[k][:, t] = spk > 0, mem[k]

    model = "cuba_lif" if neuron == "Synaptic" else "lif"
    pops = (ir.Population("in", (sizes[0],), "input"),
            ir.Population("l1", (sizes[1],), model, snntorch_params(model, betas[0], alphas[0], dt), reset=reset),
            ir.Population("l2", (sizes[2],), model, snntorch_params(model, betas[1], alphas[1], dt), reset=reset))
    projs = (ir.Projection("fc1", "in", "l1", "dense", weights[0]),
             ir.Projection("fc2", "l1", "l2", "dense", weights[1]))
    got = simulate(ir.Graph(pops, projs, ("in",), ("l2",), dt), {"in": stim}, record_state=True)
    for k, name in enumerate(("l1", "l2")):
        assert 0.05 < want_spk[k].mean() < 0.95, "the network must spike for the comparison to mean anything"
        np.testing.assert_array_equal(got[name].spikes, want_spk[k])
        np.testing.assert_allclose(got[name].v, want_mem[k], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_recurrent_cuba_lif_matches_a_hand_written_rsynaptic_loop(reset):
    # like the NIR paper's braille network: input -> cuba_lif with a dense recurrence -> cuba_lif
    rng = np.random.default_rng(6)
    dt, n_in, n_rec, n_out, steps = 1e-4, 12, 16, 7, 80
    w_in, w_rec, w_out = (rng.normal(0.1, 0.5, (n_rec, n_in)), rng.normal(0, 0.4, (n_rec, n_rec)),
                          rng.normal(0.2, 0.6, (n_out, n_rec)))
    beta = [rng.uniform(0.85, 0.95, n) for n in (n_rec, n_out)]
    alpha = [rng.uniform(0.6, 0.9, n) for n in (n_rec, n_out)]
    stim = rng.random((3, steps, n_in)) < 0.25

    # RSynaptic: syn = alpha*syn + x + V.spk(previous step); mem = beta*mem + syn; Synaptic readout, same step
    syn1, mem1, syn2, mem2 = (np.zeros((3, n)) for n in (n_rec, n_rec, n_out, n_out))
    spk1 = np.zeros((3, n_rec))
    want = {"rec": np.zeros((3, steps, n_rec), dtype=bool), "out": np.zeros((3, steps, n_out), dtype=bool)}
    want_syn1 = np.zeros((3, steps, n_rec))
    for t in range(steps):
        syn1 = alpha[0] * syn1 + stim[:, t] @ w_in.T + spk1 @ w_rec.T
        mem1 = beta[0] * mem1 + syn1
        spk1 = (mem1 > 1.0).astype(float)
        mem1 = snntorch_reset(mem1, spk1, reset)
        syn2 = alpha[1] * syn2 + spk1 @ w_out.T
        mem2 = beta[1] * mem2 + syn2
        spk2 = (mem2 > 1.0).astype(float)
        mem2 = snntorch_reset(mem2, spk2, reset)
        want["rec"][:, t], want["out"][:, t], want_syn1[:, t] = spk1 > 0, spk2 > 0, syn1

    pops = (ir.Population("in", (n_in,), "input"),
            ir.Population("rec", (n_rec,), "cuba_lif", snntorch_params("cuba_lif", beta[0], alpha[0], dt), reset=reset),
            ir.Population("out", (n_out,), "cuba_lif", snntorch_params("cuba_lif", beta[1], alpha[1], dt), reset=reset))
    projs = (ir.Projection("fc_in", "in", "rec", "dense", w_in),
             ir.Projection("w_rec", "rec", "rec", "dense", w_rec),
             ir.Projection("fc_out", "rec", "out", "dense", w_out))
    got = simulate(ir.Graph(pops, projs, ("in",), ("out",), dt), {"in": stim}, record_state=True)
    for name in ("rec", "out"):
        assert 0.05 < want[name].mean() < 0.95, "the network must spike for the comparison to mean anything"
        np.testing.assert_array_equal(got[name].spikes, want[name])
    np.testing.assert_allclose(got["rec"].u, want_syn1, rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------- speed


def test_784_512_512_10_network_runs_100_steps_well_under_a_second():
    rng = np.random.default_rng(7)
    sizes = {"in": 784, "h1": 512, "h2": 512, "out": 10}
    names = list(sizes)
    pops = [ir.Population("in", (784,), "input")]
    pops += [ir.Population(n, (sizes[n],), "lif", params("lif", sizes[n], r=2.0)) for n in names[1:]]
    projs = [ir.Projection(f"{a}_{b}", a, b, "dense", rng.normal(0, 0.1, (sizes[b], sizes[a])))
             for a, b in zip(names, names[1:])]
    graph = ir.Graph(tuple(pops), tuple(projs), ("in",), ("out",), DT)
    stim = rng.random((100, 784)) < 0.2
    start = time.perf_counter()
    out = simulate(graph, {"in": stim})
    elapsed = time.perf_counter() - start
    assert out["out"].spikes.shape == (100, 10)
    # measured about 0.02 s; the bound leaves room for a loaded CI machine
    assert elapsed < 0.5, f"took {elapsed:.2f} s"


def _bias_driven_if(reset: str, v_reset: float) -> ir.Graph:
    params = {"r": np.ones(1), "v_threshold": np.ones(1), "v_reset": np.full(1, v_reset), "bias": np.full(1, 0.75)}
    return ir.Graph(populations=(ir.Population("in", (1,), "input"), ir.Population("n", (1,), "if", params, reset=reset)),
                    projections=(), inputs=("in",), outputs=("n",), dt=1e-3)


@pytest.mark.parametrize("reset, v_reset, expected_v, expected_spikes", [
    # v: 0.75, 1.5 -> spike; zero: lands on v_reset
    ("zero", 0.25, [0.75, 0.25, 1.0, 0.25], [False, True, False, True]),
    # subtract lowers v by v_threshold - v_reset = 0.75: 1.5 -> 0.75, 1.5 -> 0.75
    ("subtract", 0.25, [0.75, 0.75, 0.75, 0.75], [False, True, True, True]),
    ("none", 0.0, [0.75, 1.5, 2.25, 3.0], [False, True, True, True]),
])
def test_reset_modes_with_v_reset(reset, v_reset, expected_v, expected_spikes):
    out = simulate(_bias_driven_if(reset, v_reset), {"in": np.zeros((4, 1))}, record_state=True)
    np.testing.assert_allclose(out["n"].v[:, 0], expected_v)
    assert out["n"].spikes[:, 0].tolist() == expected_spikes


def test_refractory_freezes_v_and_blocks_spikes_while_current_integrates():
    params = {"tau_syn": np.full(1, 2e-3), "tau_mem": np.full(1, 1e-3), "r": np.ones(1), "v_leak": np.zeros(1),
              "v_threshold": np.full(1, 0.5), "v_reset": np.zeros(1), "w_in": np.full(1, 2.0), "bias": np.full(1, 1.0)}
    graph = ir.Graph(populations=(ir.Population("in", (1,), "input"),
                                  ir.Population("n", (1,), "cuba_lif", params, refractory=2)),
                     projections=(), inputs=("in",), outputs=("n",), dt=1e-3)
    out = simulate(graph, {"in": np.zeros((7, 1))}, record_state=True)
    # I = 0.5 I + 1: 1, 1.5, 1.75, 1.875, ...; v = I (tau_mem = dt): spikes at 0, frozen at 0 for steps 1-2
    np.testing.assert_allclose(out["n"].u[:, 0], [1, 1.5, 1.75, 1.875, 1.9375, 1.96875, 1.984375])
    assert out["n"].spikes[:, 0].tolist() == [True, False, False, True, False, False, True]
    assert out["n"].v[:, 0].tolist() == [0, 0, 0, 0, 0, 0, 0]
