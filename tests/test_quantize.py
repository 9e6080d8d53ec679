"""The normalize and quantize passes on small hand-built graphs."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from snnc.compiler import ir
from snnc.compiler.hw import bundled_hw
from snnc.compiler.passes import normalize, quantize

DT = 1e-3
# one scale per population unless a test asks for per-channel scales (cpu.yaml allows them)
CPU = dataclasses.replace(bundled_hw("cpu"), numerics=dataclasses.replace(bundled_hw("cpu").numerics,
                                                                          per_channel_scales=False))
LOIHI2 = bundled_hw("loihi2")
M = 127


def population(name: str, n: int, model: str = "lif", reset: str = "zero", **values: float) -> ir.Population:
    defaults = {"tau_mem": 10 * DT, "tau_syn": 5 * DT, "r": 1.0, "v_leak": 0.0, "v_threshold": 1.0,
                "v_reset": 0.0, "w_in": 1.0, "bias": 0.0}
    defaults.update(values)
    params = {k: np.full(n, float(defaults[k])) for k in ir.NEURON_MODELS[model]}
    return ir.Population(name, (n,), model, params, reset=reset)


def graph(pops: list[ir.Population], projs: list[ir.Projection], meta: dict | None = None) -> ir.Graph:
    inputs = tuple(p.name for p in pops if p.model == "input")
    return ir.Graph(tuple(pops), tuple(projs), inputs, (pops[-1].name,), DT, meta or {})


def dense(name: str, src: str, dst: str, weight: np.ndarray, delay: np.ndarray | None = None) -> ir.Projection:
    return ir.Projection(name, src, dst, "dense", np.asarray(weight, dtype=np.float64), delay=delay)


def two_layer(model: str = "lif", n_in: int = 6, n: int = 4, seed: int = 0, **values: float) -> ir.Graph:
    rng = np.random.default_rng(seed)
    return graph([ir.Population("in", (n_in,), "input"), population("fc1", n, model, **values)],
                 [dense("w", "in", "fc1", rng.uniform(-1, 1, (n, n_in)))])


def quantize_quietly(g: ir.Graph, hw=CPU, unbounded_ok: bool = False) -> ir.Graph:
    """quantize.run, failing on any QuantizeWarning (except, if allowed, an integrator's unbounded v)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", quantize.QuantizeWarning)
        if unbounded_ok:
            warnings.filterwarnings("ignore", "population .*: state v has no decay and could .*without bound",
                                    quantize.QuantizeWarning)
        return quantize.run(g, hw)


# --------------------------------------------------------------------------- decays, weights, thresholds


def test_lif_decays_map_exactly() -> None:
    q = quantize_quietly(two_layer("lif")).population("fc1").quant
    assert q is not None
    assert np.all(q.v_decay == 410)  # 4096 / 10
    assert np.all(q.i_decay == 4096)  # u holds only this step's input


def test_cuba_decays_map_exactly() -> None:
    q = quantize_quietly(two_layer("cuba_lif", tau_syn=5 * DT, tau_mem=20 * DT)).population("fc1").quant
    assert q is not None
    assert np.all(q.i_decay == 819)  # round(4096 / 5)
    assert np.all(q.v_decay == 205)  # round(4096 / 20)


def test_if_and_threshold_decays() -> None:
    q_if = quantize_quietly(two_layer("if"), unbounded_ok=True).population("fc1").quant
    q_thr = quantize_quietly(two_layer("threshold")).population("fc1").quant
    assert q_if is not None and q_thr is not None
    assert (q_if.i_decay.tolist(), q_if.v_decay.tolist()) == ([4096] * 4, [0] * 4)
    assert (q_thr.i_decay.tolist(), q_thr.v_decay.tolist()) == ([4096] * 4, [4096] * 4)


def test_smallest_projection_uses_the_full_mantissa_and_larger_ones_a_larger_exponent() -> None:
    rng = np.random.default_rng(1)
    w_small = rng.uniform(-1, 1, (4, 6))
    pops = [ir.Population("a", (6,), "input"), ir.Population("b", (6,), "input"),
            population("fc1", 4, v_threshold=5.0)]
    g = graph(pops, [dense("small", "a", "fc1", w_small), dense("big", "b", "fc1", 8 * w_small)])
    q = quantize_quietly(g)
    small, big = q.projections[0].quant, q.projections[1].quant
    assert small is not None and big is not None
    assert small.weight_exp == 0
    assert np.abs(small.weight).max() == M
    assert small.weight.flat[np.argmax(np.abs(w_small))] == M * np.sign(w_small.flat[np.argmax(np.abs(w_small))])
    assert big.weight_exp == 3
    np.testing.assert_array_equal(big.weight, small.weight)
    assert small.weight_bits == big.weight_bits == 8


def test_threshold_and_bias_scale_with_s() -> None:
    g = two_layer("lif", v_threshold=0.7, bias=0.3, v_leak=0.2)
    q = quantize_quietly(g)
    scale = q.meta["quantization"]["scales"]["fc1"]
    w = q.projections[0]
    expected_scale = M / (0.1 * np.abs(w.weight).max())  # g = dt/tau_mem · r = 0.1
    assert scale == pytest.approx(expected_scale)
    neuron = q.population("fc1").quant
    assert neuron is not None
    assert np.all(neuron.vth == round(scale * 0.7))
    bias_int = 64 * scale * (0.1 * 0.3 + 0.1 * 0.2)
    effective = neuron.bias_mant << neuron.bias_exp
    assert np.all(np.abs(effective - bias_int) <= 2.0 ** neuron.bias_exp)


def test_large_bias_uses_the_smallest_exponent_that_fits() -> None:
    q = quantize_quietly(two_layer("lif", bias=50.0, v_threshold=1.0)).population("fc1").quant
    assert q is not None
    assert np.all(np.abs(q.bias_mant) <= 4095)
    assert np.all(np.abs(q.bias_mant) > 4095 // 2)  # one exponent less would not fit
    assert np.all(q.bias_exp > 0)


def test_threshold_cap_limits_the_scale() -> None:
    # small weights would want a large S; the 17-bit threshold caps it
    g = two_layer("lif", v_threshold=10.0)
    g = ir.replace(g, projections=(ir.replace(g.projections[0], weight=g.projections[0].weight * 1e-2),))
    q = quantize_quietly(g)
    neuron = q.population("fc1").quant
    assert neuron is not None
    assert np.all(neuron.vth == (1 << 17) - 1)


def test_threshold_cap_that_collapses_the_weights_is_an_error() -> None:
    # weights 1e-4 of the threshold: at the capped S every g·w rounds to 0
    g = two_layer("lif", v_threshold=10.0)
    g = ir.replace(g, projections=(ir.replace(g.projections[0], weight=g.projections[0].weight * 1e-4),))
    with pytest.raises(quantize.QuantizeError) as info:
        quantize.run(g, CPU)
    assert str(info.value) == ("projection 'w': 8-bit weights with exponent 0..7 leave 0 distinct non-zero values "
                               "for weights in [-9.95e-05, 8.7e-05]; the scale of 'fc1' is capped at 1.31e+04 so that "
                               "v_threshold = 10 fits 17 bits (hw_configs/cpu.yaml: numerics.threshold_bits)")


@pytest.mark.parametrize("model", ["lif", "cuba_lif", "if", "li", "cuba_li", "i", "threshold"])
def test_every_model_quantizes_to_a_valid_graph(model: str) -> None:
    # mixed-sign input can drive an integrator's v down without bound; that warning is right here
    q = quantize_quietly(two_layer(model), unbounded_ok=model in ("if", "i"))
    assert q.is_quantized
    assert ir.check(q, "quantized") is q
    neuron = q.population("fc1").quant
    assert neuron is not None
    assert neuron.spiking == (model in ir.SPIKING_MODELS)
    assert neuron.state_bits == 24
    if not neuron.spiking:
        assert np.all(neuron.vth == 0)


def test_meta_records_target_and_scales_and_keeps_existing_meta() -> None:
    g = ir.replace(two_layer(), meta={"source": "hand-built"})
    q = quantize_quietly(g, LOIHI2)
    assert q.meta["source"] == "hand-built"
    record = q.meta["quantization"]
    assert record["target"] == "loihi2"
    assert record["weight_bits"] == 8
    assert set(record["scales"]) == {"fc1"} and record["scales"]["fc1"] > 0
    assert g.populations[1].quant is None  # the input graph is untouched


def test_conv_projection_quantizes_per_kernel() -> None:
    rng = np.random.default_rng(2)
    spec = ir.ConvSpec(in_shape=(2, 5, 5), out_shape=(3, 3, 3))
    kernel = rng.uniform(-1, 1, (3, 2, 3, 3))
    pops = [ir.Population("in", (2, 5, 5), "input"), population("conv1", 27, v_threshold=2.0)]
    pops[1] = ir.replace(pops[1], shape=(3, 3, 3),
                         params={k: v.reshape(3, 3, 3) for k, v in pops[1].params.items()})
    q = quantize_quietly(graph(pops, [ir.Projection("c", "in", "conv1", "conv", kernel, conv=spec)]))
    w = q.projections[0].quant
    assert w is not None and w.weight.shape == kernel.shape
    assert np.abs(w.weight).max() == M and w.weight_exp == 0


# --------------------------------------------------------------------------- the integer model tracks the float one


def simulate_float(pop: ir.Population, weight: np.ndarray, spikes: np.ndarray, dt: float) -> np.ndarray:
    """v over time for one population fed by one dense projection (ir.py float semantics, no spiking)."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in pop.params.items()}
    v, cur, out = np.zeros(pop.size), np.zeros(pop.size), []
    prev = np.zeros(spikes.shape[1])
    for s in spikes:
        x = weight @ prev + p["bias"]
        if pop.model in ("lif", "li"):
            v = (1 - dt / p["tau_mem"]) * v + dt / p["tau_mem"] * (p["v_leak"] + p["r"] * x)
        elif pop.model in ("cuba_lif", "cuba_li"):
            cur = (1 - dt / p["tau_syn"]) * cur + p["w_in"] * dt / p["tau_syn"] * x
            v = (1 - dt / p["tau_mem"]) * v + dt / p["tau_mem"] * (p["v_leak"] + p["r"] * cur)
        elif pop.model in ("if", "i"):
            v = v + p["r"] * x
        else:
            v = x
        out.append(v)
        prev = s
    return np.array(out)


def simulate_int(neuron: ir.IntNeuron, weights: ir.IntWeights, spikes: np.ndarray) -> np.ndarray:
    """v over time per the ir.IntNeuron docstring (no spiking: thresholds are out of reach here)."""
    def rz(x: np.ndarray, decay: np.ndarray) -> np.ndarray:
        prod = x * (4096 - decay)
        return np.sign(prod) * (np.abs(prod) >> 12)

    u, v, out = np.zeros(len(neuron.vth), dtype=np.int64), np.zeros(len(neuron.vth), dtype=np.int64), []
    prev = np.zeros(spikes.shape[1], dtype=np.int64)
    w_eff = weights.weight << weights.weight_exp
    for s in spikes:
        u = rz(u, neuron.i_decay) + ((w_eff @ prev) << 6)
        v = rz(v, neuron.v_decay) + u + (neuron.bias_mant << neuron.bias_exp)
        out.append(v.copy())
        prev = s.astype(np.int64)
    return np.array(out)


@pytest.mark.parametrize(("model", "values"), [
    ("lif", {"bias": 0.2, "v_leak": -0.1}),
    ("li", {"tau_mem": 4 * DT}),
    ("cuba_lif", {"tau_syn": 3 * DT, "tau_mem": 8 * DT}),
    ("cuba_li", {"tau_syn": 2 * DT, "tau_mem": 16 * DT, "w_in": 0.5}),
    ("if", {"bias": -0.01, "r": 0.5}),
    ("threshold", {"bias": 0.1}),
])
def test_integer_voltage_tracks_64_s_times_the_float_voltage(model: str, values: dict[str, float]) -> None:
    # keep spikes away (this compares sub-threshold dynamics) without letting the threshold cap S
    values = {"v_threshold": 50.0, **values}
    g = two_layer(model, n_in=20, n=5, seed=3, **values)
    q = quantize_quietly(g, unbounded_ok=model == "if")
    spikes = np.random.default_rng(4).random((60, 20)) < 0.3
    v_float = simulate_float(g.population("fc1"), g.projections[0].weight, spikes, DT)
    neuron, weights = q.population("fc1").quant, q.projections[0].quant
    assert neuron is not None and weights is not None
    v_int = simulate_int(neuron, weights, spikes)
    scale = q.meta["quantization"]["scales"]["fc1"]
    err = np.abs(v_int / (64 * scale) - v_float).max()
    assert err <= 0.02 * np.abs(v_float).max(), f"{model}: max error {err:g} vs max |v| {np.abs(v_float).max():g}"


# --------------------------------------------------------------------------- errors and warnings


def test_nonzero_v_reset_scales_like_the_threshold() -> None:
    g = quantize_quietly(two_layer("lif", v_reset=0.5))
    q, scale = g.population("fc1").quant, g.meta["quantization"]["scales"]["fc1"]
    assert q is not None and q.vreset is not None
    np.testing.assert_array_equal(q.vreset, np.rint(scale * 0.5))
    with pytest.raises(quantize.QuantizeError, match=r"population 'fc1': v_reset = 1e\+06 becomes .* beyond the 17-bit"):
        quantize.run(two_layer("lif", v_reset=1e6), CPU)


def test_v_reset_sets_the_subtracted_amount_under_reset_by_subtraction() -> None:
    g = quantize_quietly(two_layer("lif", reset="subtract", v_reset=0.5))
    q = g.population("fc1").quant
    assert q is not None and q.vreset is not None and q.vreset.min() > 0


def test_negative_threshold_is_refused() -> None:
    with pytest.raises(quantize.QuantizeError, match=r"population 'fc1': v_threshold = -1 is negative"):
        quantize.run(two_layer("lif", v_threshold=-1.0), CPU)


def test_huge_fan_in_warns_about_state_range_naming_the_population() -> None:
    n_in = 200_000
    g = graph([ir.Population("in", (n_in,), "input"), population("fc1", 1)],
              [dense("w", "in", "fc1", np.ones((1, n_in)))])
    with pytest.warns(quantize.QuantizeWarning) as record:
        quantize.run(g, CPU)
    messages = [str(w.message) for w in record]
    assert any(m.startswith("population 'fc1': state u could rise to 1.6e+09, beyond the 24-bit range ±8388607")
               for m in messages), messages
    assert sum("state u" in m for m in messages) == 1


def test_integrator_with_inhibition_warns_that_v_is_unbounded() -> None:
    with pytest.warns(quantize.QuantizeWarning, match=r"population 'fc1': state v has no decay and could fall without "
                                                     r"bound under sustained negative input"):
        quantize.run(two_layer("if"), CPU)


def test_subtractive_reset_bounds_v_only_when_one_step_stays_below_threshold() -> None:
    def excitatory(reset: str) -> ir.Graph:
        g = two_layer("if", reset=reset, v_threshold=0.01)
        return ir.replace(g, projections=(ir.replace(g.projections[0], weight=np.abs(g.projections[0].weight)),))

    assert quantize_quietly(excitatory("zero")).is_quantized  # v tops out one step above vth, then resets to 0
    with pytest.warns(quantize.QuantizeWarning, match=r"population 'fc1': state v has no decay and could rise without"):
        quantize.run(excitatory("subtract"), CPU)


def test_small_network_quantizes_without_warnings() -> None:
    quantize_quietly(two_layer("lif", n_in=100, n=10))


def test_decay_that_rounds_to_zero_is_an_error_naming_the_largest_time_constant() -> None:
    expected = ("population 'fc1': v_decay = dt/tau_mem = 5e-05 rounds to 0/4096 (no leak); "
                "the target's 12-bit decay needs tau_mem < 8192·dt = 8.192 s")
    with pytest.raises(quantize.QuantizeError) as info:
        quantize.run(two_layer("lif", tau_mem=20_000 * DT), CPU)
    assert str(info.value) == expected
    with pytest.raises(quantize.QuantizeError, match=r"i_decay = dt/tau_syn = 0\.000122 rounds to 0/4096"):
        quantize.run(two_layer("cuba_lif", tau_syn=8192 * DT), CPU)
    # just below 8192·dt the decay is 1/4096, a leak the target can hold
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", quantize.QuantizeWarning)
        q = quantize.run(two_layer("lif", tau_mem=8191 * DT), CPU).population("fc1").quant
    assert q is not None and np.all(q.v_decay == 1)


def test_cuba_bias_warns_that_only_the_steady_state_matches() -> None:
    with pytest.warns(quantize.QuantizeWarning, match=r"population 'fc1': a cuba_lif bias"):
        quantize.run(two_layer("cuba_lif", bias=0.1), CPU)


# --------------------------------------------------------------------------- normalize


def test_normalize_drops_all_zero_projections() -> None:
    g = two_layer()
    pops = (*g.populations, ir.Population("in2", (3,), "input"))
    g = ir.replace(g, populations=pops, inputs=("in", "in2"),
                   projections=(*g.projections, dense("dead", "in2", "fc1", np.zeros((4, 3)))))
    out = normalize.run(g, CPU)
    assert [p.name for p in out.projections] == ["w"]
    assert len(g.projections) == 2


def test_normalize_makes_large_sparse_dense_projections_sparse() -> None:
    rng = np.random.default_rng(5)
    weight = np.where(rng.random((100, 100)) < 0.05, rng.uniform(-1, 1, (100, 100)), 0.0)
    delay = rng.integers(0, 5, (100, 100))
    g = graph([ir.Population("in", (100,), "input"), population("fc1", 100)],
              [dense("w", "in", "fc1", weight, delay)])
    proj = normalize.run(g, CPU).projections[0]
    assert proj.kind == "sparse"
    assert proj.rows is not None and proj.cols is not None and proj.delay is not None
    assert proj.weight.size == np.count_nonzero(weight)
    rebuilt = np.zeros((100, 100))
    rebuilt[proj.rows, proj.cols] = proj.weight
    np.testing.assert_array_equal(rebuilt, weight)
    np.testing.assert_array_equal(proj.delay, delay[proj.rows, proj.cols])


def test_normalize_keeps_small_or_dense_enough_projections_dense() -> None:
    small = two_layer(n_in=10, n=10)
    small = ir.replace(small, projections=(ir.replace(small.projections[0], weight=np.eye(10)),))
    assert normalize.run(small, CPU).projections[0].kind == "dense"


def test_normalize_rejects_reset_by_subtraction_on_loihi2() -> None:
    g = two_layer("lif", reset="subtract")
    g = ir.replace(g, populations=(g.populations[0], ir.replace(g.populations[1], name="lif1")),
                   projections=(ir.replace(g.projections[0], dst="lif1"),), outputs=("lif1",))
    expected = ("population 'lif1' uses reset 'subtract', which target 'loihi2' cannot do "
                "(hw_configs/loihi2.yaml: neurons.reset_modes = [zero])")
    with pytest.raises(ir.IRError) as info:
        normalize.run(g, LOIHI2)
    assert str(info.value) == expected
    assert normalize.run(g, CPU).population("lif1").reset == "subtract"


def test_normalize_rejects_models_the_target_lacks() -> None:
    hw = dataclasses.replace(CPU, neurons=dataclasses.replace(CPU.neurons, models=("lif",)))
    with pytest.raises(ir.IRError, match=r"population 'fc1' uses model 'if', which target 'cpu' cannot run"):
        normalize.run(two_layer("if"), hw)


def test_normalize_rejects_delays_beyond_the_target() -> None:
    g = two_layer()
    delay = np.zeros((4, 6), dtype=np.int64)
    delay[1, 2] = 64
    g = ir.replace(g, projections=(ir.replace(g.projections[0], delay=delay),))
    with pytest.raises(ir.IRError, match=r"projection 'w' has a delay of 64 steps, target 'loihi2' allows at most 63"):
        normalize.run(g, LOIHI2)
    delay[1, 2] = 63
    assert normalize.run(g, LOIHI2).projections[0].max_delay == 63


def test_normalize_rejects_projections_out_of_non_spiking_populations():
    n = 2
    li_params = {"tau_mem": np.full(n, 1e-3), "r": np.ones(n), "v_leak": np.zeros(n), "bias": np.zeros(n)}
    if_params = {"r": np.ones(n), "v_threshold": np.ones(n), "v_reset": np.zeros(n), "bias": np.zeros(n)}
    graph = ir.Graph(
        populations=(ir.Population("in", (n,), "input"), ir.Population("readout", (n,), "li", li_params),
                     ir.Population("after", (n,), "if", if_params)),
        projections=(ir.Projection("a", "in", "readout", "dense", np.eye(n)),
                     ir.Projection("graded", "readout", "after", "dense", np.eye(n))),
        inputs=("in",), outputs=("after",), dt=1e-3)
    with pytest.raises(ir.IRError, match="projection 'graded' carries the graded output of non-spiking population 'readout'"):
        normalize.run(graph, bundled_hw("cpu"))


def test_normalize_refuses_a_refractory_period_the_target_lacks() -> None:
    g = two_layer("lif")
    g = ir.replace(g, populations=tuple(ir.replace(p, refractory=2) if p.name == "fc1" else p for p in g.populations))
    with pytest.raises(ir.IRError, match=r"population 'fc1' has a refractory period of 2 steps, target 'loihi2' "
                                         r"allows at most 0 \(hw_configs/loihi2.yaml: neurons.max_refractory = 0\)"):
        normalize.run(g, bundled_hw("loihi2"))
    assert quantize_quietly(normalize.run(g, CPU)).population("fc1").quant.refractory == 2


# --------------------------------------------------------------------------- per-channel scales, weight bits, resolution


def test_projection_whose_weights_collapse_to_one_value_is_an_error() -> None:
    g = graph([ir.Population("in", (2,), "input"), population("lif2", 1)],
              [dense("fc2", "in", "lif2", np.array([[0.9, -0.003]]))])
    with pytest.raises(quantize.QuantizeError) as info:
        quantize.run(g, CPU)
    assert str(info.value) == ("projection 'fc2': 8-bit weights with exponent 0..7 leave 1 distinct non-zero value "
                               "for weights in [-0.003, 0.9]; the small weights need more than 8 bits "
                               "(numerics.weight_bits)")


def test_weight_exponent_cap_that_zeroes_a_small_projection_is_an_error() -> None:
    rng = np.random.default_rng(6)
    w = rng.uniform(-1, 1, (4, 6))
    pops = [ir.Population("a", (6,), "input"), ir.Population("b", (6,), "input"),
            population("fc1", 4)]
    g = graph(pops, [dense("tiny", "a", "fc1", 1e-3 * w), dense("huge", "b", "fc1", 1e3 * w)])
    with pytest.raises(quantize.QuantizeError, match=r"^projection 'tiny': 8-bit weights with exponent 0\.\.7 leave 0 "
                                                     r"distinct non-zero values .*; the scale of 'fc1' is capped at "
                                                     r"\S+ so that its largest incoming weights fit at exponent 7 "
                                                     r"\(hw_configs/cpu\.yaml: numerics\.weight_exp_max\)$"):
        quantize.run(g, CPU)


def rows_of_very_different_magnitude(n_in: int = 40, per_group: int = 8) -> ir.Graph:
    """One LIF layer whose neuron groups have weights and thresholds scaled by 1, 1e-2 and 1e-4.

    Each neuron's weights and threshold move together, so in float every group behaves alike.
    """
    rng = np.random.default_rng(7)
    factor = np.repeat([1.0, 1e-2, 1e-4], per_group)
    weight = rng.uniform(-0.3, 1.0, (3 * per_group, n_in)) * factor[:, None]
    out = population("lif1", 3 * per_group)
    out = ir.replace(out, params={**out.params, "v_threshold": 1.5 * factor})
    return graph([ir.Population("in", (n_in,), "input"), out], [dense("fc1", "in", "lif1", weight)])


def row_relative_error(quant: ir.IntWeights, weight: np.ndarray) -> float:
    """RMS over rows of ||a·q - w|| / ||w||, a the best factor per row (1 where a row quantized to all zeros)."""
    q = (quant.weight << quant.weight_exp).astype(np.float64)
    errors = []
    for q_row, w_row in zip(q, weight):
        fit = (q_row @ w_row) / (q_row @ q_row) if q_row.any() else 0.0
        errors.append(np.linalg.norm(fit * q_row - w_row) / np.linalg.norm(w_row))
    return float(np.sqrt(np.mean(np.square(errors))))


def test_per_channel_scales_beat_per_layer_on_rows_of_very_different_magnitude() -> None:
    from snnc.backends import cpu
    from snnc.runtime import float_reference

    g = rows_of_very_different_magnitude()
    ice40 = bundled_hw("ice40_up5k")
    assert ice40.numerics.per_channel_scales
    per_layer_hw = dataclasses.replace(ice40, numerics=dataclasses.replace(ice40.numerics, per_channel_scales=False))
    per_channel, per_layer = quantize_quietly(g, ice40), quantize_quietly(g, per_layer_hw)

    w = g.projections[0].weight
    err_channel = row_relative_error(per_channel.projections[0].quant, w)
    err_layer = row_relative_error(per_layer.projections[0].quant, w)
    assert err_channel < 0.01
    assert err_layer > 0.5
    assert np.all(np.abs(per_channel.projections[0].quant.weight).max(axis=1) == M)  # every row uses the full mantissa

    stimulus = {"in": np.random.default_rng(8).random((200, 40)) < 0.3}
    reference = float_reference.simulate(g, stimulus, timing="per_projection")["lif1"].spikes
    assert reference[:, 16:].sum() > 100  # the 1e-4 group fires in float
    agreement = {name: float(np.mean(cpu.simulate(q, stimulus)["lif1"].spikes == reference))
                 for name, q in [("channel", per_channel), ("layer", per_layer)]}
    assert agreement["channel"] > 0.98
    assert agreement["channel"] > agreement["layer"] + 0.1, agreement


def test_per_channel_scales_are_recorded_as_a_range_and_uniform_ones_as_a_float() -> None:
    ice40 = bundled_hw("ice40_up5k")
    record = quantize_quietly(rows_of_very_different_magnitude(), ice40).meta["quantization"]["scales"]["lif1"]
    assert set(record) == {"min", "max"} and record["max"] / record["min"] > 1e3
    g = two_layer("lif", v_threshold=50.0)
    same_rows = ir.replace(g, projections=(ir.replace(g.projections[0], weight=np.tile(g.projections[0].weight[:1],
                                                                                         (4, 1))),))
    assert isinstance(quantize_quietly(same_rows, ice40).meta["quantization"]["scales"]["fc1"], float)
    assert isinstance(quantize_quietly(g, CPU).meta["quantization"]["scales"]["fc1"], float)


def test_per_channel_scales_are_uniform_within_a_conv_output_channel() -> None:
    rng = np.random.default_rng(9)
    spec = ir.ConvSpec(in_shape=(2, 5, 5), out_shape=(3, 3, 3))
    kernel = rng.uniform(-1, 1, (3, 2, 3, 3)) * np.array([1.0, 1e-2, 1e-3])[:, None, None, None]
    pop = population("conv1", 27, v_threshold=1e-3)
    pop = ir.replace(pop, shape=(3, 3, 3), params={k: v.reshape(3, 3, 3) for k, v in pop.params.items()})
    g = graph([ir.Population("in", (2, 5, 5), "input"), pop],
              [ir.Projection("c", "in", "conv1", "conv", kernel, conv=spec)])
    q = quantize_quietly(g, bundled_hw("ice40_up5k"))
    w = q.projections[0].quant
    assert w is not None and w.weight_exp == 0
    assert np.abs(w.weight).reshape(3, -1).max(axis=1).tolist() == [M, M, M]
    vth = q.population("conv1").quant.vth.reshape(3, -1)
    assert np.all(vth == vth[:, :1])  # one scale per channel, and vth = S·theta
    assert vth[0, 0] < vth[1, 0] < vth[2, 0]


def test_override_turns_per_channel_off_for_one_population() -> None:
    g = rows_of_very_different_magnitude()
    g = ir.replace(g, meta={"quant_overrides": {"lif1": {"per_channel": False}}})
    q = quantize_quietly(g, bundled_hw("ice40_up5k"))
    assert isinstance(q.meta["quantization"]["scales"]["lif1"], float)


def test_override_sets_one_projections_weight_bits() -> None:
    rng = np.random.default_rng(10)
    pops = [ir.Population("a", (6,), "input"), ir.Population("b", (6,), "input"), population("fc1", 4)]
    g = graph(pops, [dense("small", "a", "fc1", rng.uniform(-1, 1, (4, 6))),
                     dense("big", "b", "fc1", rng.uniform(-1, 1, (4, 6)))],
              meta={"quant_overrides": {"small": {"weight_bits": 4}}})
    q = quantize_quietly(g)
    small, big = q.projections[0].quant, q.projections[1].quant
    assert (small.weight_bits, big.weight_bits) == (4, 8)
    # the shared exponent of 'small' is a power of two, so its largest mantissa lands in (7/2, 7]
    assert 4 <= np.abs(small.weight).max() <= 7 and small.weight.min() >= -8
    assert np.abs(big.weight).max() > 7


@pytest.mark.parametrize(("overrides", "message"), [
    ({"fc9": {"weight_bits": 4}}, "quantization override for layer 'fc9': no such projection or population "
                                  "(projections: w; populations: fc1)"),
    ({"w": {"per_channel": False}}, "quantization override layers.w.per_channel: a projection has no option "
                                    "'per_channel' (projections take weight_bits, populations per_channel)"),
    ({"w": {"weight_bits": 9}}, "layers.w.weight_bits = 9 is out of range [1, 8]"),
    ({"fc1": {"per_channel": True}}, "layers.fc1.per_channel = true, but target 'cpu' has one scale per layer "
                                     "(hw_configs/cpu.yaml: numerics.per_channel_scales = false)"),
])
def test_bad_overrides_are_refused_naming_the_layer(overrides: dict, message: str) -> None:
    g = ir.replace(two_layer(), meta={"quant_overrides": overrides})
    with pytest.raises(quantize.QuantizeError) as info:
        quantize.run(g, CPU)
    assert str(info.value) == message
