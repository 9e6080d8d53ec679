"""One test body for every backend: the semantic edge cases of docs/semantics.md, each checked against the CPU reference.

Each case is a small quantized network and a stimulus built to hit one rule (timing, delays, repeated pairs,
round-toward-zero, the strict threshold, bias shifts, reset modes, refractory periods, weight_exp, saturation,
conv geometry, recurrence, non-spiking readouts). A backend joins the suite by being listed in ``BACKENDS``; it
must give the CPU backend's spikes, u and v exactly, or say in ``unsupported()`` that it cannot run the case.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pytest

from snnc.backends import cpu
from snnc.compiler import hw as hwmod
from snnc.compiler import ir
from tests.test_cpu_semantics import conv, dense, input_pop, network, neuron_pop, sparse, spikes_at


def _chain() -> tuple[ir.Graph, dict]:
    graph = network([input_pop("in", 1), neuron_pop("l1", 1, vth=99), neuron_pop("l2", 1, vth=10)],
                    [dense("a", "in", "l1", [[100]]), dense("b", "l1", "l2", [[50]])])
    return graph, {"in": spikes_at(8, 1, [(2, 0)])}


def _delays() -> tuple[ir.Graph, dict]:
    graph = network([input_pop("in", 2), neuron_pop("n", 3, vth=10_000), neuron_pop("m", 3, vth=10_000)],
                    [sparse("s", "in", "n", rows=[0, 1, 2, 0], cols=[0, 0, 0, 1], weight=[2, 2, 2, -3], delay=[0, 2, 5, 1]),
                     dense("d", "in", "m", [[2, 1], [2, 0], [2, 5]], delay=[[0, 3], [2, 0], [5, 1]])])
    return graph, {"in": spikes_at(12, 2, [(3, 0), (4, 1), (5, 0)])}


def _repeated_pairs() -> tuple[ir.Graph, dict]:
    graph = network([input_pop("in", 1), neuron_pop("n", 2, vth=10_000)],
                    [sparse("s", "in", "n", rows=[0, 0, 0, 1], cols=[0, 0, 0, 0], weight=[2, 3, 5, -1], delay=[0, 0, 2, 1])])
    return graph, {"in": spikes_at(6, 1, [(0, 0), (1, 0)])}


def _rounding() -> tuple[ir.Graph, dict]:
    graph = network([input_pop("in", 1), neuron_pop("n", 4, i_decay=2048, v_decay=[2048, 1, 3072, 2048],
                                                    bias_mant=[-5, -4097, 5, 0], vth=100_000)],
                    [dense("d", "in", "n", [[-1], [0], [0], [-1]])])
    return graph, {"in": spikes_at(10, 1, [(0, 0)])}


def _threshold_and_bias() -> tuple[ir.Graph, dict]:
    graph = network([input_pop("in", 1), neuron_pop("n", 4, v_decay=4096, vth=10, bias_mant=[640, 641, 5, 3],
                                                    bias_exp=[0, 0, 7, 2])], [])
    return graph, {"in": np.zeros((6, 1))}


def _resets() -> tuple[ir.Graph, dict]:
    pops = [input_pop("in", 1)]
    for mode in ("zero", "subtract", "none"):
        pops.append(neuron_pop(mode, 2, vth=10, bias_mant=400, reset=mode, vreset=[0, -3]))
    return network(pops, []), {"in": np.zeros((9, 1))}


def _refractory() -> tuple[ir.Graph, dict]:
    graph = network([input_pop("in", 1), neuron_pop("n", 2, i_decay=1024, vth=10, bias_mant=300, refractory=3)],
                    [dense("d", "in", "n", [[20], [-20]])])
    return graph, {"in": spikes_at(12, 1, [(1, 0), (4, 0), (5, 0)])}


def _weight_exp_and_saturation() -> tuple[ir.Graph, dict]:
    graph = network([input_pop("in", 1), neuron_pop("big", 2, vth=131_071), neuron_pop("narrow", 2, state_bits=12, vth=20)],
                    [dense("w", "in", "big", [[1 << 17], [-(1 << 17)]]), dense("e", "in", "narrow", [[3], [-5]], weight_exp=4)])
    return graph, {"in": np.ones((5, 1))}


def _conv_geometry() -> tuple[ir.Graph, dict]:
    spec = ir.ConvSpec(in_shape=(2, 5, 5), out_shape=(4, 3, 3), stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=2)
    kernel = np.arange(4 * 1 * 3 * 3).reshape(4, 1, 3, 3) % 7 - 3
    graph = network([input_pop("in", (2, 5, 5)), neuron_pop("c", (4, 3, 3), vth=5, i_decay=2048)],
                    [conv("k", "in", "c", kernel, spec, weight_exp=1)])
    rng = np.random.default_rng(0)
    return graph, {"in": rng.random((2, 6, 2, 5, 5)) < 0.4}


def _recurrence_and_readout() -> tuple[ir.Graph, dict]:
    graph = network([input_pop("in", 3), neuron_pop("h", 4, vth=30, v_decay=500), neuron_pop("out", 2, spiking=False,
                                                                                               v_decay=200)],
                    [dense("a", "in", "h", [[40, 0, 10], [0, 40, 10], [20, 20, 0], [-10, 30, 30]]),
                     dense("r", "h", "h", [[0, -20, 5, 0], [10, 0, 0, -5], [0, 0, 0, 30], [5, 5, 5, 0]]),
                     dense("o", "h", "out", [[3, -2, 1, 4], [-1, 5, 2, 0]])])
    rng = np.random.default_rng(1)
    return graph, {"in": rng.random((2, 15, 3)) < 0.5}


CASES: dict[str, Callable[[], tuple[ir.Graph, dict]]] = {
    "one_step_per_projection": _chain, "per_synapse_delays": _delays, "repeated_sparse_pairs": _repeated_pairs,
    "round_toward_zero": _rounding, "strict_threshold_and_bias_exp": _threshold_and_bias,
    "reset_zero_subtract_none_vreset": _resets, "refractory": _refractory,
    "weight_exp_and_saturation": _weight_exp_and_saturation, "conv_stride_padding_groups": _conv_geometry,
    "recurrence_and_non_spiking_readout": _recurrence_and_readout,
}


def _gpu(graph: ir.Graph, tmp):
    from snnc.backends import gpu

    return gpu.compile(graph, SimpleNamespace(name="gpu"), tmp / "gpu")


def _fpga(graph: ir.Graph, tmp):
    from snnc.backends import fpga

    return fpga.compile(graph, hwmod.bundled_hw("ice40_up5k"), tmp / "fpga", bitstream=False)


def _lava(graph: ir.Graph, tmp):
    from snnc.backends import lava

    return lava.compile(graph, hwmod.bundled_hw("loihi2"), tmp / "lava")


BACKENDS = {"gpu": _gpu, "fpga": _fpga, "lava": _lava}


HW = {"gpu": None, "fpga": "ice40_up5k", "lava": "loihi2"}


def _runs(backend: str, case: str) -> bool:
    """Whether ``backend`` can run ``case`` exactly; only Lava may refuse (its LIF lacks some features)."""
    module = importlib.import_module(f"snnc.backends.{backend}")
    graph, stimulus = CASES[case]()
    hw = hwmod.bundled_hw(HW[backend]) if HW[backend] else None
    if module.unsupported(graph, hw):
        return False
    # Lava wraps u where the reference saturates, so it is exact only while nothing saturates (docs/semantics.md)
    _, saturations = cpu.simulate_with_stats(graph, stimulus)
    return backend != "lava" or not any(any(c.values()) for c in saturations.values())


def _pairs() -> list[tuple[str, str]]:
    pairs = []
    for backend in BACKENDS:
        if importlib.import_module(f"snnc.backends.{backend}").available() is None:
            pairs += [(backend, case) for case in CASES if _runs(backend, case)]
    return pairs


@pytest.mark.parametrize(("backend", "case"), _pairs())
def test_backend_matches_cpu_reference(backend, case, tmp_path):
    graph, stimulus = CASES[case]()
    expected = cpu.simulate(graph, stimulus, record_state=True)
    got = BACKENDS[backend](graph, tmp_path).run(stimulus, record_state=True)
    for pop in graph.populations:
        for quantity in ("spikes", "u", "v"):
            np.testing.assert_array_equal(np.asarray(getattr(got[pop.name], quantity)),
                                          np.asarray(getattr(expected[pop.name], quantity)),
                                          err_msg=f"{backend}, {case}: {pop.name} {quantity}")


@pytest.mark.parametrize("backend", ["gpu", "fpga"])
def test_gpu_and_fpga_run_every_case(backend):
    if importlib.import_module(f"snnc.backends.{backend}").available() is not None:
        pytest.skip(f"backend {backend} is not installed here")
    assert all(_runs(backend, case) for case in CASES)


def test_cases_fire_and_saturate_where_they_should():
    """The cases are not vacuous: they spike, and the saturation case does saturate in the reference."""
    for name, build in CASES.items():
        graph, stimulus = build()
        rasters, saturations = cpu.simulate_with_stats(graph, stimulus, record_state=True)
        moved = any(np.any(np.asarray(rasters[p.name].v) != 0) or np.any(np.asarray(rasters[p.name].u) != 0)
                    for p in graph.populations if p.model != "input")
        assert moved, name
    assert cpu.simulate(*_chain())["l2"].spikes.any()
    _, saturations = cpu.simulate_with_stats(*_weight_exp_and_saturation())
    assert saturations["big"]["u"] > 0 and saturations["narrow"]["v"] > 0
