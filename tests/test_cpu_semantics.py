"""The quantized semantics, rule by rule, pinned against hand-computed values (backends/cpu.py docstring).

Every expected number below is worked out by hand from the rules; the last
tests compare the numba kernel with a slow per-synapse Python reference on
random networks.
"""

from __future__ import annotations

import numpy as np
import pytest

from snnc.backends import cpu
from snnc.compiler import ir

M23 = (1 << 23) - 1  # the 24-bit saturation limit


# --------------------------------------------------------------------------- tiny graph builders


def input_pop(name: str, shape: tuple[int, ...] | int) -> ir.Population:
    return ir.Population(name, (shape,) if isinstance(shape, int) else tuple(shape), "input")


def neuron_pop(name: str, shape: tuple[int, ...] | int, *, i_decay=4096, v_decay=0, vth=1000, bias_mant=0,
               bias_exp=0, spiking: bool = True, reset: str = "zero", state_bits: int = 24,
               vreset=None, refractory: int = 0) -> ir.Population:
    """A quantized LIF ("lif", or "li" when not spiking); integer params broadcast to the population."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    n = int(np.prod(shape))

    def ints(value) -> np.ndarray:
        return np.broadcast_to(np.asarray(value, dtype=np.int64), (n,)).copy()

    model = "lif" if spiking else "li"
    floats = {"tau_mem": 1e-3, "r": 1.0, "v_leak": 0.0, "v_threshold": 1.0, "v_reset": 0.0, "bias": 0.0}
    params = {k: np.full(shape, floats[k]) for k in ir.NEURON_MODELS[model]}
    quant = ir.IntNeuron(i_decay=ints(i_decay), v_decay=ints(v_decay), vth=ints(vth), bias_mant=ints(bias_mant),
                         bias_exp=ints(bias_exp), spiking=spiking, reset=reset, state_bits=state_bits,
                         vreset=None if vreset is None else ints(vreset), refractory=refractory)
    return ir.Population(name, shape, model, params, reset=reset, quant=quant, refractory=refractory)


def _quant(weight: np.ndarray, weight_exp: int, weight_bits: int | None) -> ir.IntWeights:
    weight = np.asarray(weight, dtype=np.int64)
    if weight_bits is None:
        weight_bits = max(2, int(np.abs(weight).max(initial=0)).bit_length() + 1)
    return ir.IntWeights(weight=weight, weight_exp=weight_exp, weight_bits=weight_bits)


def dense(name: str, src: str, dst: str, weight, *, weight_exp: int = 0, delay=None,
          weight_bits: int | None = None) -> ir.Projection:
    weight = np.asarray(weight, dtype=np.int64)
    return ir.Projection(name, src, dst, "dense", weight.astype(np.float64),
                         delay=None if delay is None else np.asarray(delay, dtype=np.int64),
                         quant=_quant(weight, weight_exp, weight_bits))


def sparse(name: str, src: str, dst: str, rows, cols, weight, *, weight_exp: int = 0, delay=None) -> ir.Projection:
    weight = np.asarray(weight, dtype=np.int64)
    return ir.Projection(name, src, dst, "sparse", weight.astype(np.float64), rows=np.asarray(rows, dtype=np.int64),
                         cols=np.asarray(cols, dtype=np.int64),
                         delay=None if delay is None else np.asarray(delay, dtype=np.int64),
                         quant=_quant(weight, weight_exp, None))


def conv(name: str, src: str, dst: str, kernel, spec: ir.ConvSpec, *, weight_exp: int = 0) -> ir.Projection:
    kernel = np.asarray(kernel, dtype=np.int64)
    return ir.Projection(name, src, dst, "conv", kernel.astype(np.float64), conv=spec,
                         quant=_quant(kernel, weight_exp, None))


def network(populations, projections) -> ir.Graph:
    inputs = tuple(p.name for p in populations if p.model == "input")
    graph = ir.Graph(populations=tuple(populations), projections=tuple(projections), inputs=inputs,
                     outputs=(populations[-1].name,), dt=1e-3)
    return ir.check(graph, "quantized")


def spikes_at(steps: int, size: int, events: list[tuple[int, int]]) -> np.ndarray:
    """A (steps, size) 0/1 stimulus with a spike at each (t, neuron)."""
    out = np.zeros((steps, size), dtype=np.uint8)
    for t, n in events:
        out[t, n] = 1
    return out


def spike_steps(raster, neuron: int = 0) -> list[int]:
    return [int(t) for t in np.flatnonzero(raster.spikes[:, neuron])]


def bias_only(steps: int = 8, **neuron) -> dict:
    """Run one bias-driven population (the input is silent) with states recorded."""
    graph = network([input_pop("in", 1), neuron_pop("n", len(np.atleast_1d(neuron.get("bias_mant", 0))), **neuron)],
                    [])
    return cpu.simulate(graph, {"in": np.zeros((steps, 1))}, record_state=True)


# --------------------------------------------------------------------------- decays


def test_voltage_decay_rounds_negative_values_toward_zero():
    # step 0: v = bias. step 1: v = rz(bias * (4096 - v_decay) / 4096) + bias
    out = bias_only(steps=2, bias_mant=[-5, -1, -4097, 7, -3, 5], v_decay=[2048, 2048, 1, 2048, 1024, 3072],
                    vth=10**6, spiking=False)
    assert out["n"].v[0].tolist() == [-5, -1, -4097, 7, -3, 5]
    # -5/2 = -2.5 -> -2 (floor would give -3); -1/2 -> 0; -4097*4095/4096 = -4095.9998 -> -4095;
    # 7/2 -> 3; -3*3/4 = -2.25 -> -2; 5/4 = 1.25 -> 1
    assert out["n"].v[1].tolist() == [-5 - 2, -1 + 0, -4097 - 4095, 7 + 3, -3 - 2, 5 + 1]


def test_voltage_decay_converges_like_round_toward_zero():
    # v = rz(v / 2) - 5: -5, -7, -8, -9, -9 (floor would reach -10)
    out = bias_only(steps=6, bias_mant=-5, v_decay=2048, vth=10**6, spiking=False)
    assert out["n"].v[:, 0].tolist() == [-5, -7, -8, -9, -9, -9]


def test_current_decay_rounds_negative_values_toward_zero():
    graph = network([input_pop("in", 1), neuron_pop("n", 1, i_decay=2048, v_decay=4096, vth=10**6, spiking=False)],
                    [dense("w", "in", "n", [[-1]])])
    out = cpu.simulate(graph, {"in": spikes_at(10, 1, [(0, 0)])}, record_state=True)
    # u = -1 << 6 at step 1, then halves toward zero; floor would stick at -1
    assert out["n"].u[:, 0].tolist() == [0, -64, -32, -16, -8, -4, -2, -1, 0, 0]
    assert out["n"].v[:, 0].tolist() == out["n"].u[:, 0].tolist()  # v_decay 4096 keeps only this step's u


def test_i_decay_4096_makes_u_the_input_alone_and_0_accumulates():
    graph = network([input_pop("in", 1), neuron_pop("n", 2, i_decay=[4096, 0], v_decay=4096, vth=10**6)],
                    [dense("w", "in", "n", [[5], [5]])])
    out = cpu.simulate(graph, {"in": spikes_at(5, 1, [(0, 0), (2, 0)])}, record_state=True)
    assert out["n"].u[:, 0].tolist() == [0, 320, 0, 320, 0]
    assert out["n"].u[:, 1].tolist() == [0, 320, 320, 640, 640]


# --------------------------------------------------------------------------- threshold, reset, bias


def test_threshold_is_strict():
    # vth 10 compares against 640: v == 640 stays silent, 641 spikes (and is reset to 0)
    out = bias_only(steps=3, bias_mant=[640, 641], vth=10, v_decay=4096)
    assert out["n"].spikes.tolist() == [[False, True]] * 3
    assert out["n"].v.tolist() == [[640, 0]] * 3


def test_reset_zero_and_subtract():
    out_zero = bias_only(steps=9, bias_mant=400, vth=10, reset="zero")
    out_sub = bias_only(steps=9, bias_mant=400, vth=10, reset="subtract")
    assert spike_steps(out_zero["n"]) == [1, 3, 5, 7]
    assert out_zero["n"].v[:, 0].tolist() == [400, 0, 400, 0, 400, 0, 400, 0, 400]
    # subtract keeps the excess: 400, 800-640=160, 560, 960-640=320, 720-640=80, 480, 880-640=240, 640 (silent), ...
    assert out_sub["n"].v[:, 0].tolist() == [400, 160, 560, 320, 80, 480, 240, 640, 400]
    assert spike_steps(out_sub["n"]) == [1, 3, 4, 6, 8]


def test_reset_to_vreset_subtract_relative_to_vreset_and_none():
    # vth 10 -> 640; vreset 2 -> 128
    to_vreset = bias_only(steps=4, bias_mant=400, vth=10, reset="zero", vreset=2)
    assert to_vreset["n"].v[:, 0].tolist() == [400, 128, 528, 128]
    # subtract lowers v by (vth - vreset) << 6 = 512: 400, 800-512=288, 688-512=176, 576
    relative = bias_only(steps=4, bias_mant=400, vth=10, reset="subtract", vreset=2)
    assert relative["n"].v[:, 0].tolist() == [400, 288, 176, 576]
    assert spike_steps(relative["n"]) == [1, 2]
    never = bias_only(steps=4, bias_mant=400, vth=10, reset="none")
    assert never["n"].v[:, 0].tolist() == [400, 800, 1200, 1600]
    assert spike_steps(never["n"]) == [1, 2, 3]


def test_refractory_freezes_v_blocks_spikes_and_lets_u_integrate():
    # bias 400, vth 10 (640), reset to 0, 2 refractory steps: v 400, 800 -> spike -> 0, held 0, 0, then 400, 800 ...
    out = bias_only(steps=8, bias_mant=400, vth=10, reset="zero", refractory=2)
    assert out["n"].v[:, 0].tolist() == [400, 0, 0, 0, 400, 0, 0, 0]
    assert spike_steps(out["n"]) == [1, 5]
    # u keeps integrating through the refractory steps (i_decay 0 accumulates the input)
    graph = network([input_pop("in", 1), neuron_pop("n", 1, i_decay=0, v_decay=4096, vth=1, refractory=2)],
                    [dense("w", "in", "n", [[2]])])
    out = cpu.simulate(graph, {"in": spikes_at(6, 1, [(0, 0), (2, 0)])}, record_state=True)
    assert out["n"].u[:, 0].tolist() == [0, 128, 128, 256, 256, 256]
    assert spike_steps(out["n"]) == [1, 4]  # frozen at 2-3 and 5-6


def test_u_is_not_reset_by_a_spike():
    # i_decay 0 keeps u = 2 << 6 = 128 > 64 = vth << 6 forever; only v is reset
    graph = network([input_pop("in", 1), neuron_pop("n", 1, i_decay=0, v_decay=4096, vth=1)],
                    [dense("w", "in", "n", [[2]])])
    out = cpu.simulate(graph, {"in": spikes_at(4, 1, [(0, 0)])}, record_state=True)
    assert spike_steps(out["n"]) == [1, 2, 3]
    assert out["n"].u[:, 0].tolist() == [0, 128, 128, 128]


def test_bias_is_added_every_step_and_not_shifted_by_6():
    out = bias_only(steps=4, bias_mant=[3, 3], bias_exp=[0, 2], vth=10**6, v_decay=0)
    assert out["n"].v.tolist() == [[3, 12], [6, 24], [9, 36], [12, 48]]
    assert out["n"].u.tolist() == [[0, 0]] * 4


def test_bias_only_neuron_spikes_at_step_0():
    # 5 << 7 = 640 is not above vth << 6 = 640 (a bias shifted by 6 more would spike)
    out = bias_only(steps=2, bias_mant=5, bias_exp=7, vth=10, v_decay=4096)
    assert not out["n"].spikes.any()
    out = bias_only(steps=2, bias_mant=641, vth=10)
    assert spike_steps(out["n"]) == [0, 1]


def test_non_spiking_population_never_spikes_and_reports_v():
    graph = network([input_pop("in", 1), neuron_pop("li", 2, bias_mant=[5000, -7], vth=0, spiking=False),
                     neuron_pop("lif", 1, bias_mant=1, vth=10**6)], [])
    out = cpu.simulate(graph, {"in": np.zeros((3, 1))})
    assert not out["li"].spikes.any()
    assert out["li"].v.tolist() == [[5000, -7], [10000, -14], [15000, -21]]
    assert out["li"].u is None
    assert out["lif"].v is None and out["in"].v is None  # spiking populations report v only with record_state


# --------------------------------------------------------------------------- timing and delays


def test_input_spike_reaches_layer_1_at_t_plus_1_and_layer_2_at_t_plus_2():
    # research/lava_loihi.md §2 timing probe: W1 = 100, W2 = 50, vth1 = 99, vth2 = 10, full decays
    graph = network([input_pop("in", 1), neuron_pop("l1", 1, i_decay=4096, v_decay=4096, vth=99),
                     neuron_pop("l2", 1, i_decay=4096, v_decay=4096, vth=10)],
                    [dense("w1", "in", "l1", [[100]]), dense("w2", "l1", "l2", [[50]])])
    out = cpu.simulate(graph, {"in": spikes_at(6, 1, [(2, 0)])}, record_state=True)
    assert spike_steps(out["in"]) == [2]
    assert spike_steps(out["l1"]) == [3]
    assert spike_steps(out["l2"]) == [4]
    assert out["l1"].u[:, 0].tolist() == [0, 0, 0, 6400, 0, 0]
    assert out["l2"].u[:, 0].tolist() == [0, 0, 0, 0, 3200, 0]
    assert out["l1"].v[3, 0] == 0  # recorded after the reset


def test_recurrent_loop_takes_one_step_per_projection():
    # in -> r0; r0 -> r1 -> r0 (a two-neuron ring inside one population)
    graph = network([input_pop("in", 1), neuron_pop("r", 2, i_decay=4096, v_decay=4096, vth=1)],
                    [dense("drive", "in", "r", [[2], [0]]),
                     sparse("ring", "r", "r", rows=[1, 0], cols=[0, 1], weight=[2, 2])])
    out = cpu.simulate(graph, {"in": spikes_at(8, 1, [(0, 0)])})
    assert spike_steps(out["r"], 0) == [1, 3, 5, 7]
    assert spike_steps(out["r"], 1) == [2, 4, 6]


def test_per_synapse_delay_arrives_at_t_plus_1_plus_d():
    # lava_loihi.md §1.3: delays 0, 2, 5 put a spike from step 3 into u at steps 4, 6 and 9
    graph = network([input_pop("in", 1), neuron_pop("n", 3, i_decay=4096, v_decay=4096, vth=1),
                     neuron_pop("m", 3, i_decay=4096, v_decay=4096, vth=1)],
                    [sparse("s", "in", "n", rows=[0, 1, 2], cols=[0, 0, 0], weight=[2, 2, 2], delay=[0, 2, 5]),
                     dense("d", "in", "m", [[2], [2], [2]], delay=[[0], [2], [5]])])
    out = cpu.simulate(graph, {"in": spikes_at(11, 1, [(3, 0)])}, record_state=True)
    for name in ("n", "m"):
        assert [spike_steps(out[name], k) for k in range(3)] == [[4], [6], [9]]
        assert [int(np.flatnonzero(out[name].u[:, k])[0]) for k in range(3)] == [4, 6, 9]


def test_sparse_repeated_pairs_with_different_delays_all_count():
    # (row, col) = (0, 0) three times: w 2 and 3 without delay, 5 with delay 2; (1, 0) with w -1, delay 1
    graph = network([input_pop("in", 1), neuron_pop("n", 2, i_decay=4096, v_decay=4096, vth=10**6)],
                    [sparse("s", "in", "n", rows=[0, 0, 0, 1], cols=[0, 0, 0, 0], weight=[2, 3, 5, -1],
                            delay=[0, 0, 2, 1])])
    out = cpu.simulate(graph, {"in": spikes_at(5, 1, [(0, 0)])}, record_state=True)
    assert out["n"].u.tolist() == [[0, 0], [(2 + 3) * 64, 0], [0, -64], [5 * 64, 0], [0, 0]]


def test_weight_exp_shifts_the_mantissa():
    graph = network([input_pop("in", 2), neuron_pop("n", 1, i_decay=4096, v_decay=4096, vth=10**6)],
                    [dense("w", "in", "n", [[3, -2]], weight_exp=4)])
    out = cpu.simulate(graph, {"in": spikes_at(3, 2, [(0, 0), (1, 0), (1, 1)])}, record_state=True)
    assert out["n"].u[:, 0].tolist() == [0, (3 << 4) << 6, ((3 - 2) << 4) << 6]


# --------------------------------------------------------------------------- saturation


def test_u_and_v_saturate_at_24_bits_and_are_counted():
    # +-2**17 << 6 = +-2**23, one past the limit, arrives at steps 1..4
    graph = network([input_pop("in", 1), neuron_pop("n", 2, i_decay=4096, v_decay=0, spiking=False)],
                    [dense("w", "in", "n", [[1 << 17], [-(1 << 17)]], weight_bits=19)])
    rasters, saturations = cpu.simulate_with_stats(graph, {"in": spikes_at(6, 1, [(t, 0) for t in range(4)])},
                                                   record_state=True)
    assert rasters["n"].u.tolist() == [[0, 0]] + [[M23, -M23]] * 4 + [[0, 0]]
    assert rasters["n"].v.tolist() == [[0, 0]] + [[M23, -M23]] * 5
    # u clips at steps 1-4 in both neurons; v reaches the limit exactly at step 1 and clips at steps 2-4
    assert saturations["n"] == {"u": 8, "v": 6}
    assert saturations["in"] == {"u": 0, "v": 0}


def test_saturation_follows_state_bits():
    out, saturations = cpu.simulate_with_stats(
        network([input_pop("in", 1), neuron_pop("n", 1, bias_mant=1500, v_decay=0, spiking=False, state_bits=12)],
                []),
        {"in": np.zeros((3, 1))}, record_state=True)
    assert out["n"].v[:, 0].tolist() == [1500, 2047, 2047]
    assert saturations["n"] == {"u": 0, "v": 2}


def test_summed_input_beyond_int32_is_exact():
    # effective weights 2**31 and -(2**31 - 2**11): together 2**11, alone far beyond 32 bits
    graph = network([input_pop("in", 2), neuron_pop("n", 1, i_decay=4096, v_decay=4096, vth=10**6, spiking=False,
                                                    state_bits=32)],
                    [dense("w", "in", "n", [[1 << 20, -((1 << 20) - 1)]], weight_exp=11, weight_bits=22)])
    out, saturations = cpu.simulate_with_stats(graph, {"in": spikes_at(3, 2, [(0, 0), (0, 1), (1, 0)])},
                                               record_state=True)
    assert out["n"].u[:, 0].tolist() == [0, (1 << 11) << 6, (1 << 31) - 1]
    assert saturations["n"] == {"u": 1, "v": 0}  # v = u exactly at the limit is not clipped


# --------------------------------------------------------------------------- conv


def conv_direct(x: np.ndarray, kernel: np.ndarray, spec: ir.ConvSpec) -> np.ndarray:
    """PyTorch conv2d on one (C, H, W) input with numpy: pad, then one strided slice per kernel offset."""
    c_in = spec.in_shape[0]
    c_out, cin_g, k_h, k_w = kernel.shape
    _, h_out, w_out = spec.out_shape
    (sy, sx), (py, px), (dy, dx) = spec.stride, spec.padding, spec.dilation
    padded = np.pad(x, ((0, 0), (py, py), (px, px)))
    out = np.zeros(spec.out_shape, dtype=np.int64)
    cout_g = c_out // spec.groups
    for ky in range(k_h):
        for kx in range(k_w):
            window = padded[:, ky * dy:ky * dy + sy * (h_out - 1) + 1:sy, kx * dx:kx * dx + sx * (w_out - 1) + 1:sx]
            for g in range(spec.groups):
                w = kernel[g * cout_g:(g + 1) * cout_g, :, ky, kx]  # (Cout_g, Cin_g)
                part = window[g * cin_g:(g + 1) * cin_g].reshape(cin_g, -1)
                out[g * cout_g:(g + 1) * cout_g] += (w @ part).reshape(cout_g, h_out, w_out)
    assert c_in == spec.groups * cin_g
    return out


@pytest.mark.parametrize("in_shape, c_out, kernel_hw, stride, padding, dilation, groups", [
    ((1, 5, 5), 2, (3, 3), (1, 1), (0, 0), (1, 1), 1),
    ((2, 6, 7), 4, (3, 2), (2, 1), (1, 2), (1, 1), 2),
    ((3, 7, 6), 3, (2, 3), (1, 2), (2, 1), (2, 2), 3),
    ((4, 1, 9), 2, (1, 4), (1, 3), (0, 2), (1, 2), 2),  # conv1d as H = 1
])
def test_conv_projection_matches_a_direct_conv(in_shape, c_out, kernel_hw, stride, padding, dilation, groups):
    rng = np.random.default_rng(sum(in_shape) + c_out)
    kernel = rng.integers(-20, 21, size=(c_out, in_shape[0] // groups, *kernel_hw))
    spec = ir.ConvSpec(in_shape=in_shape, out_shape=(c_out, 1, 1), stride=stride, padding=padding,
                       dilation=dilation, groups=groups)
    spec = ir.replace(spec, out_shape=(c_out, *ir.conv_output_shape(spec, kernel_hw)))
    out_size = int(np.prod(spec.out_shape))
    graph = network([input_pop("in", in_shape),
                     neuron_pop("out", (out_size,), i_decay=4096, v_decay=4096, vth=10**6, spiking=False)],
                    [conv("c", "in", "out", kernel, spec, weight_exp=1)])
    x = (rng.random((2, *in_shape)) < 0.5).astype(np.uint8)
    out = cpu.simulate(graph, {"in": x}, steps=3, record_state=True)
    for t in range(2):
        expected = conv_direct(x[t].astype(np.int64), kernel, spec) << 1 << 6
        assert out["out"].u[t + 1].tolist() == expected.ravel().tolist()


# --------------------------------------------------------------------------- batches


def test_batched_run_equals_per_sample_runs():
    graph = random_network(np.random.default_rng(7))
    rng = np.random.default_rng(8)
    stimulus = {name: (rng.random((4, 20, graph.population(name).size)) < 0.3).astype(np.uint8)
                for name in graph.inputs}
    batched = cpu.simulate(graph, stimulus, record_state=True)
    for b in range(4):
        single = cpu.simulate(graph, {k: v[b] for k, v in stimulus.items()}, record_state=True)
        for name, raster in batched.items():
            assert raster.spikes.shape == (4, 20, graph.population(name).size)
            np.testing.assert_array_equal(raster.spikes[b], single[name].spikes)
            np.testing.assert_array_equal(raster.u[b], single[name].u)
            np.testing.assert_array_equal(raster.v[b], single[name].v)


# --------------------------------------------------------------------------- differential test


def reference_synapses(proj: ir.Projection, src_size: int) -> list[tuple[int, int, int, int]]:
    """Every synapse of ``proj`` as (src, dst, effective weight, delay), by plain loops."""
    assert proj.quant is not None
    w = proj.quant.weight
    shift = proj.quant.weight_exp
    out = []
    if proj.kind == "dense":
        for n in range(w.shape[0]):
            for i in range(w.shape[1]):
                d = 0 if proj.delay is None else int(proj.delay[n, i])
                out.append((i, n, int(w[n, i]) << shift, d))
    elif proj.kind == "sparse":
        for k in range(w.size):
            d = 0 if proj.delay is None else int(proj.delay[k])
            out.append((int(proj.cols[k]), int(proj.rows[k]), int(w[k]) << shift, d))
    else:
        spec = proj.conv
        c_in, h_in, w_in = spec.in_shape
        c_out, h_out, w_out = spec.out_shape
        cin_g, cout_g = c_in // spec.groups, c_out // spec.groups
        for co in range(c_out):
            for y in range(h_out):
                for x in range(w_out):
                    for cg in range(cin_g):
                        for ky in range(w.shape[2]):
                            for kx in range(w.shape[3]):
                                iy = y * spec.stride[0] - spec.padding[0] + ky * spec.dilation[0]
                                ix = x * spec.stride[1] - spec.padding[1] + kx * spec.dilation[1]
                                if 0 <= iy < h_in and 0 <= ix < w_in:
                                    ci = (co // cout_g) * cin_g + cg
                                    src = (ci * h_in + iy) * w_in + ix
                                    out.append((src, (co * h_out + y) * w_out + x, int(w[co, cg, ky, kx]) << shift, 0))
    assert all(0 <= s < src_size for s, _, _, _ in out)
    return out


def rz_div_4096(p: int) -> int:
    return p // 4096 if p >= 0 else -((-p) // 4096)


def reference_run(graph: ir.Graph, stimulus: dict[str, np.ndarray], steps: int):
    """The semantics of backends/cpu.py, one neuron and one synapse at a time, in Python ints.

    Returns ({population: (spikes, u, v) lists of shape (T, N)}, {population: {"u": n, "v": n}}).
    """
    pops = {p.name: p for p in graph.populations}
    synapses = [(p, reference_synapses(p, pops[p.src].size)) for p in graph.projections]
    spikes = {name: [] for name in pops}
    trace = {name: ([], []) for name in pops}
    u = {name: [0] * pops[name].size for name in pops}
    v = {name: [0] * pops[name].size for name in pops}
    frozen = {name: [0] * pops[name].size for name in pops}
    clipped = {name: {"u": 0, "v": 0} for name in pops}
    for t in range(steps):
        a_in = {name: [0] * pops[name].size for name in pops}
        for proj, syns in synapses:
            for src, dst, w, d in syns:
                if t - 1 - d >= 0 and spikes[proj.src][t - 1 - d][src]:
                    a_in[proj.dst][dst] += w
        for name, pop in pops.items():
            if pop.model == "input":
                spikes[name].append([bool(s) for s in stimulus[name][t]])
            else:
                q = pop.quant
                limit = (1 << (q.state_bits - 1)) - 1
                fired = []
                for n in range(pop.size):
                    un = rz_div_4096(u[name][n] * (4096 - int(q.i_decay[n]))) + a_in[name][n] * 64
                    if abs(un) > limit:
                        clipped[name]["u"] += 1
                        un = max(-limit, min(limit, un))
                    if frozen[name][n] > 0:
                        frozen[name][n] -= 1
                        u[name][n] = un
                        fired.append(False)
                        continue
                    vn = rz_div_4096(v[name][n] * (4096 - int(q.v_decay[n]))) + un
                    vn += int(q.bias_mant[n]) * 2 ** int(q.bias_exp[n])
                    if abs(vn) > limit:
                        clipped[name]["v"] += 1
                        vn = max(-limit, min(limit, vn))
                    s = q.spiking and vn > int(q.vth[n]) * 64
                    if s:
                        frozen[name][n] = q.refractory
                    if s:
                        vr = int(q.vreset_or_zeros()[n]) * 64
                        if q.reset == "zero":
                            vn = vr
                        elif q.reset == "subtract":
                            vn = vn - (int(q.vth[n]) * 64 - vr)
                        if abs(vn) > limit:
                            clipped[name]["v"] += 1
                            vn = max(-limit, min(limit, vn))
                    u[name][n], v[name][n] = un, vn
                    fired.append(s)
                spikes[name].append(fired)
            trace[name][0].append(list(u[name]))
            trace[name][1].append(list(v[name]))
    return {name: (spikes[name], *trace[name]) for name in pops}, clipped


def _random_shape(rng: np.random.Generator) -> tuple[int, int, int]:
    return int(rng.integers(1, 4)), int(rng.integers(1, 5)), int(rng.integers(2, 6))


def _random_projection(rng: np.random.Generator, name: str, src: ir.Population, dst_shape, allow_conv: bool):
    """A dense, sparse or (if allowed) conv projection from ``src``; returns (projection, dst shape)."""
    kind = rng.choice(["dense", "sparse", "conv"] if allow_conv else ["dense", "sparse"])
    bits = int(rng.integers(3, 10))
    exp = int(rng.integers(0, 4))
    hi = (1 << (bits - 1)) - 1

    def weights(shape):
        return rng.integers(-hi - 1, hi + 1, size=shape)

    if kind == "conv":
        c_in = src.shape[0]
        groups = int(rng.choice([g for g in (1, 2, 3) if c_in % g == 0]))
        c_out = groups * int(rng.integers(1, 3))
        k = (int(rng.integers(1, min(3, src.shape[1]) + 1)), int(rng.integers(1, min(3, src.shape[2]) + 1)))
        spec = ir.ConvSpec(in_shape=tuple(src.shape), out_shape=(c_out, 1, 1),
                           stride=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
                           padding=(int(rng.integers(0, 2)), int(rng.integers(0, 2))), groups=groups)
        spec = ir.replace(spec, out_shape=(c_out, *ir.conv_output_shape(spec, k)))
        kernel = weights((c_out, c_in // groups, *k))
        return conv(name, src.name, "", kernel, spec, weight_exp=exp), spec.out_shape
    n_dst = int(np.prod(dst_shape))
    delay_of = (lambda shape: rng.integers(0, 5, size=shape)) if rng.random() < 0.5 else (lambda shape: None)
    if kind == "dense":
        w = weights((n_dst, src.size)) * (rng.random((n_dst, src.size)) < 0.7)
        return dense(name, src.name, "", w, weight_exp=exp, delay=delay_of(w.shape), weight_bits=bits), dst_shape
    nnz = int(rng.integers(1, 3 * n_dst + 1))
    rows = rng.integers(0, n_dst, size=nnz)
    cols = rng.integers(0, src.size, size=nnz)
    return sparse(name, src.name, "", rows, cols, weights(nnz), weight_exp=exp, delay=delay_of(nnz)), dst_shape


def _random_neurons(rng: np.random.Generator, name: str, shape) -> ir.Population:
    n = int(np.prod(shape))

    def decay(size):
        edge = rng.choice([0, 4096], size=size)
        return np.where(rng.random(size) < 0.25, edge, rng.integers(0, 4097, size=size))

    spiking = bool(rng.random() < 0.8)
    return neuron_pop(name, shape, i_decay=decay(n), v_decay=decay(n), vth=rng.integers(0, 120, size=n),
                      bias_mant=rng.integers(-80, 81, size=n), bias_exp=rng.integers(0, 5, size=n),
                      spiking=spiking, reset=str(rng.choice(["zero", "subtract", "none"])),
                      state_bits=int(rng.choice([12, 16, 24, 32])),
                      vreset=rng.integers(-40, 41, size=n) if rng.random() < 0.5 else None,
                      refractory=int(rng.choice([0, 0, 1, 3])) if spiking else 0)


def random_network(rng: np.random.Generator) -> ir.Graph:
    """1-2 inputs, 2-4 neuron populations fed by earlier populations, optional recurrent projections."""
    pops = [input_pop(f"in{i}", _random_shape(rng)) for i in range(int(rng.integers(1, 3)))]
    projs: list[ir.Projection] = []
    for k in range(int(rng.integers(2, 5))):
        name = f"p{k}"
        first, shape = _random_projection(rng, f"{name}_a", pops[int(rng.integers(len(pops)))], _random_shape(rng),
                                          allow_conv=True)
        incoming = [first]
        if rng.random() < 0.5:
            second, _ = _random_projection(rng, f"{name}_b", pops[int(rng.integers(len(pops)))], shape,
                                           allow_conv=False)
            incoming.append(second)
        pops.append(_random_neurons(rng, name, shape))
        projs += [ir.replace(p, dst=name) for p in incoming]
    neuron_pops = [p for p in pops if p.model != "input"]
    for k in range(int(rng.integers(0, 3))):  # recurrent or backward projections
        src = neuron_pops[int(rng.integers(len(neuron_pops)))]
        dst = neuron_pops[int(rng.integers(len(neuron_pops)))]
        proj, _ = _random_projection(rng, f"rec{k}", src, dst.shape, allow_conv=False)
        projs.append(ir.replace(proj, dst=dst.name))
    return network(pops, projs)


def assert_matches_reference(graph: ir.Graph, stimulus: dict[str, np.ndarray], steps: int) -> None:
    """Spikes, u, v and saturation counts of the kernel equal the per-synapse reference exactly."""
    got, saturations = cpu.simulate_with_stats(graph, stimulus, record_state=True)
    expected, clipped = reference_run(graph, stimulus, steps)
    for name, (spikes, u, v) in expected.items():
        np.testing.assert_array_equal(got[name].spikes, np.array(spikes, dtype=bool), err_msg=f"{name} spikes")
        np.testing.assert_array_equal(got[name].u, np.array(u, dtype=np.int64), err_msg=f"{name} u")
        np.testing.assert_array_equal(got[name].v, np.array(v, dtype=np.int64), err_msg=f"{name} v")
    assert saturations == clipped


@pytest.mark.parametrize("seed", range(30))
def test_cpu_matches_per_synapse_reference_on_random_networks(seed):
    rng = np.random.default_rng(seed)
    graph = random_network(rng)
    steps = 25
    stimulus = {name: (rng.random((steps, graph.population(name).size)) < 0.35).astype(np.uint8)
                for name in graph.inputs}
    assert_matches_reference(graph, stimulus, steps)


@pytest.mark.parametrize("seed", range(5))
def test_cpu_matches_reference_when_sums_need_int64(seed):
    # weight_exp + 24 pushes the summed |weights| into some neuron past 2**31, so the kernel accumulates in int64
    rng = np.random.default_rng(100 + seed)
    graph = random_network(rng)
    graph = ir.replace(graph, projections=tuple(
        ir.replace(p, quant=ir.replace(p.quant, weight_exp=p.quant.weight_exp + 24)) for p in graph.projections))
    assert cpu._flatten(graph).arrays["fan_w"].dtype == np.int64
    stimulus = {name: (rng.random((15, graph.population(name).size)) < 0.35).astype(np.uint8)
                for name in graph.inputs}
    assert_matches_reference(graph, stimulus, 15)


def test_random_networks_exercise_every_feature():
    """The differential test above is only as good as its networks: check they cover what it claims."""
    graphs = [random_network(np.random.default_rng(seed)) for seed in range(30)]
    projections = [p for g in graphs for p in g.projections]
    pops = [p for g in graphs for p in g.populations if p.quant is not None]
    assert {p.kind for p in projections} == {"dense", "sparse", "conv"}
    assert any(p.max_delay > 0 and p.kind == "dense" for p in projections)
    assert any(p.max_delay > 0 and p.kind == "sparse" for p in projections)
    assert any(p.src == p.dst for p in projections)
    assert any(p.quant.weight.min() < 0 < p.quant.weight.max() for p in projections)
    assert {p.quant.reset for p in pops} == {"zero", "subtract", "none"}
    assert any(p.quant.vreset is not None and p.quant.vreset.any() for p in pops)
    assert {p.quant.refractory for p in pops} >= {0, 1, 3}
    assert {p.quant.spiking for p in pops} == {True, False}
    decays = np.concatenate([np.concatenate([p.quant.i_decay, p.quant.v_decay]) for p in pops])
    assert decays.min() == 0 and decays.max() == 4096 and ((decays > 0) & (decays < 4096)).any()
