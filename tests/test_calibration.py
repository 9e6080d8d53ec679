"""Calibration ranges, their scale cap, the pipeline hook and the shipped-example acceptance check."""

from __future__ import annotations

import functools
import json
import warnings

import numpy as np
import pytest

from snnc.backends import cpu
from snnc.compiler import calibration, ir, pipeline
from snnc.compiler.frontends.load import load_model
from snnc.compiler.hw import bundled_hw
from snnc.runtime import float_reference
from snnc.runtime.encode import rate_code

from .conftest import REPO

DT = 1e-3


def lif_graph(model: str = "lif", reset: str = "none") -> ir.Graph:
    rng = np.random.default_rng(3)
    params = {"tau_mem": 0.01, "r": 1.0, "v_leak": 0.0, "v_threshold": 0.5, "v_reset": 0.0, "bias": 0.1,
              "tau_syn": 0.005, "w_in": 1.0}
    pop = ir.Population("hid", (3,), model, {k: np.full(3, params[k]) for k in ir.NEURON_MODELS[model]}, reset=reset)
    proj = ir.Projection("fc", "in", "hid", "dense", rng.normal(0, 2.0, (3, 4)))
    return ir.Graph((ir.Population("in", (4,), "input"), pop), (proj,), ("in",), ("hid",), DT)


def random_spikes(batch: int = 5, steps: int = 20, n: int = 4) -> dict[str, np.ndarray]:
    return {"in": (np.random.default_rng(7).random((batch, steps, n)) < 0.4).astype(np.uint8)}


def test_ranges_of_a_lif_population_equal_a_direct_float_reference_computation() -> None:
    graph = lif_graph("lif", reset="none")
    stim = random_spikes()
    raster = float_reference.simulate(graph, stim, timing="per_projection", record_state=True)["hid"]
    # per-projection timing: the input of step t is W . s[t - 1]
    x = np.zeros((5, 20, 3))
    x[:, 1:] = stim["in"][:, :-1] @ graph.projections[0].weight.T
    ranges = calibration.measure_ranges(graph, stim)["hid"]
    assert ranges["v"] == pytest.approx(np.abs(raster.v).max(), rel=1e-12)
    assert ranges["u"] == pytest.approx(np.abs(x).max(), rel=1e-12)
    assert ranges["u_v"] == pytest.approx(np.abs(x).max() * DT / 0.01, rel=1e-12)
    assert ranges["rate"] == pytest.approx(raster.spikes.mean())


def test_ranges_of_a_cuba_population_report_the_synaptic_current() -> None:
    graph = lif_graph("cuba_lif", reset="subtract")
    stim = random_spikes()
    raster = float_reference.simulate(graph, stim, timing="per_projection", record_state=True)["hid"]
    ranges = calibration.measure_ranges(graph, stim)["hid"]
    assert ranges["u"] == pytest.approx(np.abs(raster.u).max(), rel=1e-12)
    assert ranges["u_v"] == pytest.approx(np.abs(raster.u).max() * DT / 0.01, rel=1e-12)
    # subtract: v just before each reset is the recorded v plus the threshold
    pre = np.abs(raster.v + 0.5 * raster.spikes).max()
    assert raster.spikes.any()
    assert ranges["v"] == pytest.approx(max(pre, np.abs(raster.v).max()), rel=1e-12)


def test_v_before_a_reset_to_zero_counts_although_the_reference_records_v_after_it() -> None:
    pop = ir.Population("hid", (1,), "if", {"r": np.ones(1), "v_threshold": np.ones(1), "v_reset": np.zeros(1),
                                            "bias": np.zeros(1)})
    graph = ir.Graph((ir.Population("in", (1,), "input"), pop),
                     (ir.Projection("fc", "in", "hid", "dense", np.full((1, 1), 5.0)),), ("in",), ("hid",), DT)
    stim = {"in": np.array([[1], [0], [0]], dtype=np.uint8)}
    raster = float_reference.simulate(graph, stim, timing="per_projection", record_state=True)["hid"]
    assert np.abs(raster.v).max() == 0.0
    assert calibration.measure_ranges(graph, stim)["hid"]["v"] == pytest.approx(5.0)


def test_scale_cap_keeps_v_and_u_inside_the_state_range_with_headroom() -> None:
    cap = calibration.scale_cap({"v": 10.0, "u": 3.0, "u_v": 20.0, "rate": 0.1}, 24)
    assert cap == pytest.approx((2**23 - 1) / (calibration.HEADROOM * 64 * 20.0))
    assert calibration.scale_cap({"v": 0.0, "u": 0.0, "u_v": 0.0, "rate": 0.0}, 16) == float("inf")


def test_compile_graph_records_the_ranges_in_meta_before_the_passes() -> None:
    graph = lif_graph()
    stim = random_spikes()
    quantized = pipeline.compile_graph(graph, bundled_hw("cpu"), calibration=stim)
    assert quantized.meta["calibration"] == calibration.measure_ranges(graph, stim)
    json.dumps(quantized.meta["calibration"])
    assert "calibration" not in pipeline.compile_graph(graph, bundled_hw("cpu")).meta


@functools.cache
def shipped(name: str) -> tuple[ir.Graph, dict[str, np.ndarray]]:
    """A bundled network and its calibration stimulus (ONNX: the calibration inputs, rate-coded)."""
    examples = REPO / "examples"
    if name == "digits_cnn.onnx":
        inputs = np.load(examples / "digits_calibration.npz")["input"]
        graph = load_model(examples / name, calibration=inputs)
        return graph, {"input": rate_code(inputs / graph.meta["input_scale"], 64)}
    stimuli = {"digits_snntorch.nir": "digits_snntorch_test.npz", "digits_if.nir": "digits_test.npz"}[name]
    with np.load(examples / stimuli) as data:
        return load_model(examples / name), {"input": data["input"]}


@pytest.mark.parametrize("hw_name", ["cpu", "loihi2", "ice40_up5k", "ecp5_85f"])
@pytest.mark.parametrize("model", ["digits_snntorch.nir", "digits_if.nir", "digits_cnn.onnx"])
def test_no_state_overflows_on_the_calibration_data_of_any_shipped_example_and_target(model: str,
                                                                                      hw_name: str) -> None:
    graph, stimulus = shipped(model)
    if model == "digits_cnn.onnx" and hw_name == "loihi2":
        # the converted CNN resets by subtraction, which Lava's LIF cannot do: refused by design
        with pytest.raises(pipeline.PassError, match="reset 'subtract'"):
            pipeline.compile_graph(graph, bundled_hw(hw_name), calibration=stimulus)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # worst-case range warnings of IF neurons; the counts below are what matters
        quantized = pipeline.compile_graph(graph, bundled_hw(hw_name), calibration=stimulus)
    _, saturations = cpu.simulate_with_stats(quantized, stimulus)
    assert {name: counts for name, counts in saturations.items() if counts["u"] or counts["v"]} == {}
    assert set(quantized.meta["calibration"]) == {p.name for p in graph.populations if p.model != "input"}


def test_calibrated_scale_keeps_a_saturating_population_in_range():
    # 1000 inputs firing every step into a leaky readout: v settles at 10,000 input units, which the
    # weight-driven scale (S = 127) would put at 64 * 127 * 1e4 = 8.1e7, far beyond the 24-bit range
    n_in = 1000
    params = {"tau_mem": np.full(1, 1e-2), "r": np.full(1, 10.0), "v_leak": np.zeros(1), "bias": np.zeros(1)}
    graph = ir.Graph(populations=(ir.Population("in", (n_in,), "input"), ir.Population("out", (1,), "li", params)),
                     projections=(ir.Projection("w", "in", "out", "dense", np.ones((1, n_in))),),
                     inputs=("in",), outputs=("out",), dt=1e-3)
    stimulus = {"in": np.ones((1, 60, n_in), dtype=np.uint8)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = pipeline.compile_graph(graph, bundled_hw("cpu"))
        calibrated = pipeline.compile_graph(graph, bundled_hw("cpu"), calibration=stimulus)
    _, clipped = cpu.simulate_with_stats(plain, stimulus)
    assert clipped["out"]["v"] > 0
    _, clipped = cpu.simulate_with_stats(calibrated, stimulus)
    assert clipped["out"] == {"u": 0, "v": 0}
