"""Norse export: every exported cell spikes exactly as the Norse 1.1.0 model does, step for step.

Both sides run in float64: the Norse model via ``.double()`` and float64
parameters, the IR via the float64 reference. Rounding then stays near 1e-16,
far below any membrane's distance from its threshold, so a rounding
difference cannot flip a spike and any differing spike is a mapping error.
"""

from __future__ import annotations

from collections.abc import Callable

import norse.torch as snn
import numpy as np
import pytest
import torch
from norse.torch.functional.leaky_integrator import LIParameters
from norse.torch.functional.leaky_integrator_box import LIBoxParameters
from norse.torch.functional.lif import LIFParameters
from norse.torch.functional.lif_box import LIFBoxParameters
from norse.torch.functional.reset import reset_subtract
from torch import nn

from snnc.compiler import ir
from snnc.compiler.frontends.norse_export import NorseExportError, export_norse, is_norse_model
from snnc.runtime.float_reference import simulate

STEPS = 50
BATCH = 100
SPIKE_PROBABILITY = 0.3
CELL_TYPES = (snn.LIFBoxCell, snn.LIFCell, snn.LICell, snn.LIBoxCell)
SPIKING_TYPES = (snn.LIFBoxCell, snn.LIFCell)


def f64(value: float | list[float] | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(value, dtype=torch.float64)


def spike_input(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """BATCH random binary spike trains of STEPS steps, (B, T, *shape)."""
    rng = np.random.default_rng(seed)
    return rng.random((BATCH, STEPS, *shape)) < SPIKE_PROBABILITY


def run_norse(model: nn.Module, spikes: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every cell's output (spikes, or v for LI cells) as (B, T, N) by module path, and the model's output."""
    model = model.double().eval()
    outputs: dict[str, list[np.ndarray]] = {}
    handles = []
    for path, module in model.named_modules():
        if isinstance(module, CELL_TYPES):
            outputs[path] = []

            def record(module: nn.Module, args: tuple, out: tuple, path: str = path) -> None:
                outputs[path].append(out[0].reshape(out[0].shape[0], -1).numpy().copy())

            handles.append(module.register_forward_hook(record))
    final = []
    state = None
    with torch.no_grad():
        for t in range(spikes.shape[1]):
            out, state = model(torch.as_tensor(spikes[:, t], dtype=torch.float64), state)
            final.append(out.reshape(out.shape[0], -1).numpy().copy())
    for handle in handles:
        handle.remove()
    return {path: np.stack(trace, axis=1) for path, trace in outputs.items()}, np.stack(final, axis=1)


def sample(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.zeros((1, *shape), dtype=torch.float64)


def assert_same_as_norse(model: nn.Module, input_shape: tuple[int, ...], seed: int = 0, **options: object) -> ir.Graph:
    """Export ``model``, run both on random spikes, and require identical spikes and LI v within 1e-9."""
    model = model.double().eval()
    graph = export_norse(model, sample(input_shape), **options)
    spikes = spike_input(input_shape, seed)
    expected, _ = run_norse(model, spikes)
    rasters = simulate(graph, {"input": spikes}, timing="nir")
    for path, module in model.named_modules():
        if not isinstance(module, CELL_TYPES):
            continue
        got = rasters[path]
        if isinstance(module, SPIKING_TYPES):
            differing = int(np.count_nonzero(got.spikes != (expected[path] > 0)))
            assert differing == 0, f"cell '{path}': {differing} of {got.spikes.size} spike entries differ from Norse"
            rate = float(got.spikes.mean())
            # a silent or saturated cell would agree with almost any mapping
            assert 0.05 <= rate <= 0.95, f"cell '{path}' fires at rate {rate:.3f}; the comparison would prove little"
        else:
            assert got.v is not None
            assert np.max(np.abs(got.v - expected[path])) < 1e-9, f"cell '{path}': v differs from Norse"
            assert np.std(expected[path]) > 0.05, f"cell '{path}' output barely moves"
    return graph


def drive(n_in: int, n_out: int, mean: float, spread: float) -> nn.Linear:
    """A Linear with weights around ``mean`` > 0, so that most neurons it feeds fire now and then."""
    layer = nn.Linear(n_in, n_out)
    with torch.no_grad():
        layer.weight.normal_(mean, spread)
        layer.bias.normal_(0.0, spread)
    return layer


def lif_params(**values: object) -> LIFParameters:
    chosen: dict[str, object] = {"tau_syn_inv": f64(200.0), "tau_mem_inv": f64(100.0), "v_leak": f64(0.0),
                                 "v_th": f64(1.0), "v_reset": f64(0.0)}
    chosen.update(values)
    return LIFParameters(**chosen)


def box_params(**values: object) -> LIFBoxParameters:
    chosen: dict[str, object] = {"tau_mem_inv": f64(100.0), "v_leak": f64(0.0), "v_th": f64(1.0), "v_reset": f64(0.0)}
    chosen.update(values)
    return LIFBoxParameters(**chosen)


# --------------------------------------------------------------------------- models


def box_net() -> nn.Module:
    torch.manual_seed(1)
    return snn.SequentialState(drive(20, 30, 0.4, 0.15), snn.LIFBoxCell(box_params()),
                               drive(30, 10, 0.6, 0.2), snn.LIFBoxCell(box_params()))


def lif_net() -> nn.Module:
    torch.manual_seed(2)
    return snn.SequentialState(drive(20, 30, 0.08, 0.05), snn.LIFCell(lif_params()),
                               drive(30, 10, 0.15, 0.05), snn.LIFCell(lif_params()))


def lif_li_net() -> nn.Module:
    torch.manual_seed(3)
    li = LIParameters(tau_syn_inv=f64(200.0), tau_mem_inv=f64(100.0), v_leak=f64(0.0))
    return snn.SequentialState(drive(20, 30, 0.08, 0.05), snn.LIFCell(lif_params()),
                               drive(30, 10, 0.04, 0.1), snn.LICell(li))


def conv_net() -> nn.Module:
    torch.manual_seed(4)
    conv = nn.Conv2d(2, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(4.0)
    per_channel = lif_params(v_th=f64([0.8, 0.9, 1.0, 1.1]).reshape(4, 1, 1),
                             tau_mem_inv=f64([100.0, 150.0, 200.0, 250.0]).reshape(4, 1, 1))
    return snn.SequentialState(conv, snn.LIFCell(per_channel), nn.AvgPool2d(2), nn.Flatten(),
                               drive(64, 10, 0.02, 0.05), snn.LIFCell(lif_params()))


def nondefault_net() -> nn.Module:
    """Per-neuron tensors, v_leak and v_reset away from 0, reset by subtraction and an LIBoxCell readout."""
    torch.manual_seed(5)
    gen = torch.Generator().manual_seed(6)
    first = lif_params(tau_syn_inv=f64(150.0 + 100.0 * torch.rand(30, generator=gen, dtype=torch.float64)),
                       tau_mem_inv=f64(80.0 + 80.0 * torch.rand(30, generator=gen, dtype=torch.float64)),
                       v_leak=f64(0.3), v_th=f64(0.9 + 0.3 * torch.rand(30, generator=gen, dtype=torch.float64)),
                       v_reset=f64(-0.4), method="triangle")
    second = box_params(tau_mem_inv=f64(150.0), v_leak=f64(-0.2 + 0.1 * torch.rand(20, generator=gen, dtype=torch.float64)),
                        v_th=f64(0.7), v_reset=f64(0.25))
    third = box_params(tau_mem_inv=f64(120.0), v_leak=f64(0.15), v_th=f64(0.8), v_reset=f64(0.5),
                       reset_method=reset_subtract)
    readout = LIBoxParameters(tau_mem_inv=f64(50.0), v_leak=f64(0.0))
    return snn.SequentialState(drive(20, 30, 0.08, 0.05), snn.LIFCell(first),
                               drive(30, 20, 0.5, 0.2), nn.Dropout(0.5), snn.LIFBoxCell(second),
                               drive(20, 15, 0.6, 0.2), snn.LIFBoxCell(third),
                               drive(15, 5, 0.1, 0.1), snn.LIBoxCell(readout))


NETS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "lifbox-lifbox": (box_net, (20,)),
    "lif-lif": (lif_net, (20,)),
    "lif-li": (lif_li_net, (20,)),
    "conv-pool-flatten-linear": (conv_net, (2, 8, 8)),
    "nondefault-params": (nondefault_net, (20,)),
}


# --------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("name", list(NETS))
def test_exported_cells_spike_exactly_as_norse(name: str) -> None:
    build, input_shape = NETS[name]
    assert_same_as_norse(build(), input_shape)


def test_lif_cell_maps_to_cuba_lif_without_delay() -> None:
    graph = assert_same_as_norse(lif_net(), (20,))
    first = graph.population("1")
    assert first.model == "cuba_lif" and first.reset == "zero"
    np.testing.assert_allclose(first.params["tau_syn"], 1 / 200.0)
    np.testing.assert_allclose(first.params["tau_mem"], 1 / 100.0)
    np.testing.assert_allclose(first.params["w_in"] * 1e-3 / first.params["tau_syn"], 1.0)
    assert all(proj.delay is None for proj in graph.projections)
    # Norse adds the input to the current before v reads it: a one-step delay would be wrong
    delayed = ir.replace(graph, projections=tuple(
        ir.replace(p, delay=np.ones(p.weight.shape, dtype=np.int64)) if p.dst == "1" else p for p in graph.projections))
    spikes = spike_input((20,), 0)
    expected, _ = run_norse(lif_net(), spikes)
    moved = simulate(delayed, {"input": spikes}, timing="nir")["1"].spikes
    assert np.count_nonzero(moved != (expected["1"] > 0)) > 0


def test_lif_box_cell_maps_to_lif() -> None:
    graph = assert_same_as_norse(box_net(), (20,))
    pop = graph.population("3")
    assert pop.model == "lif" and pop.reset == "zero"
    np.testing.assert_allclose(pop.params["tau_mem"], 1 / 100.0)
    np.testing.assert_array_equal(pop.params["r"], 1.0)
    assert [p.kind for p in graph.projections] == ["dense", "dense"]
    np.testing.assert_array_equal(pop.params["bias"], box_net()[2].bias.detach().double().numpy())


def test_v_leak_is_exported_as_a_shift_of_threshold_and_reset() -> None:
    graph = export_norse(nondefault_net().double(), sample((20,)))
    first, third = graph.population("1"), graph.population("6")
    np.testing.assert_array_equal(first.params["v_leak"], 0.0)
    np.testing.assert_allclose(first.params["v_reset"], -0.4 - 0.3)
    assert third.reset == "subtract"
    # Norse subtracts v_th itself on a spike
    np.testing.assert_allclose(third.params["v_threshold"] - third.params["v_reset"], 0.8)
    assert graph.population("8").model == "li"


def test_conv_layers_keep_their_geometry() -> None:
    graph = assert_same_as_norse(conv_net(), (2, 8, 8))
    kinds = {p.name: p.kind for p in graph.projections}
    assert kinds == {"0": "conv", "2+4": "dense"}
    conv = graph.projections[0].conv
    assert conv is not None and conv.padding == (1, 1) and conv.in_shape == (2, 8, 8)
    assert graph.population("1").shape == (4, 8, 8)


def test_layers_after_the_last_cell_become_an_exact_readout() -> None:
    torch.manual_seed(7)
    model = snn.SequentialState(drive(20, 30, 0.08, 0.05), snn.LIFCell(lif_params()), nn.Linear(30, 6)).double()
    graph = assert_same_as_norse(model, (20,))
    assert graph.outputs == ("output",) and graph.population("output").model == "li"
    spikes = spike_input((20,), 1)
    _, final = run_norse(model, spikes)
    readout = simulate(graph, {"input": spikes}, timing="nir")["output"].v
    assert np.max(np.abs(readout - final)) < 1e-9


def test_pool_then_linear_on_the_last_axis_composes_into_one_sparse_projection() -> None:
    torch.manual_seed(8)
    conv = nn.Conv2d(1, 2, 3, stride=2, padding=1)
    per_column = nn.Linear(4, 3)
    with torch.no_grad():
        conv.weight.normal_(0.2, 0.1)
        per_column.weight.normal_(2.0, 0.2)
    model = snn.SequentialState(conv, snn.LIFCell(lif_params()), nn.AvgPool2d(2, stride=1), per_column,
                                snn.LIFCell(lif_params()))
    graph = assert_same_as_norse(model, (1, 10, 10))
    assert [p.kind for p in graph.projections] == ["conv", "sparse"]
    assert graph.population("4").shape == (2, 4, 3)


def test_nested_and_repeated_modules_become_one_population_per_place() -> None:
    torch.manual_seed(9)
    cell, hidden = snn.LIFCell(lif_params()), drive(10, 10, 0.3, 0.05)
    # SequentialState keeps one state per index, so the repeated cell is two populations sharing parameters
    model = snn.SequentialState(drive(20, 10, 0.08, 0.05), cell, hidden, cell,
                                snn.SequentialState(hidden, snn.LIFCell(lif_params())), nn.Flatten()).double().eval()
    graph = export_norse(model, sample((20,)))
    assert [p.name for p in graph.populations] == ["input", "1", "3", "4.1"]
    assert [p.name for p in graph.projections] == ["0", "2", "4.0"]
    assert graph.outputs == ("4.1",)
    spikes = spike_input((20,), 2)
    model.return_hidden = True
    hidden_outputs = []
    state = None
    with torch.no_grad():
        for t in range(STEPS):
            outputs, state = model(torch.as_tensor(spikes[:, t], dtype=torch.float64), state)
            hidden_outputs.append(outputs)
    rasters = simulate(graph, {"input": spikes}, timing="nir")
    for index, name in ((1, "1"), (3, "3"), (4, "4.1")):
        expected = np.stack([outputs[index].numpy() for outputs in hidden_outputs], axis=1) > 0
        assert np.count_nonzero(rasters[name].spikes != expected) == 0
        assert 0.05 <= rasters[name].spikes.mean() <= 0.95


def test_scalar_and_zero_d_parameters_broadcast_to_the_population() -> None:
    model = snn.SequentialState(nn.Linear(3, 5), snn.LIFCell(LIFParameters(v_th=torch.tensor(0.5))))
    graph = export_norse(model, torch.zeros(2, 3))
    np.testing.assert_array_equal(graph.population("1").params["v_threshold"], np.full(5, 0.5))


# --------------------------------------------------------------------------- reset and dt


def test_reset_option_must_agree_with_norse() -> None:
    assert export_norse(lif_net(), sample((20,)).float(), reset="zero").population("1").reset == "zero"
    for reset in ("subtract", "none"):
        with pytest.raises(NorseExportError, match=r"reset '.*' disagrees with module '1' \(LIFCell\)"):
            export_norse(lif_net(), sample((20,)).float(), reset=reset)
    subtracting = snn.SequentialState(nn.Linear(4, 3), snn.LIFBoxCell(box_params(reset_method=reset_subtract)))
    with pytest.raises(NorseExportError, match=r"disagrees with module '1' \(LIFBoxCell\)"):
        export_norse(subtracting.double(), sample((4,)), reset="zero")
    assert export_norse(subtracting.double(), sample((4,)), reset="subtract").population("1").reset == "subtract"
    with pytest.raises(NorseExportError, match="not one of"):
        export_norse(lif_net(), sample((20,)).float(), reset="sometimes")


def test_dt_must_match_every_cell() -> None:
    model = snn.SequentialState(nn.Linear(4, 3), snn.LIFCell(dt=1e-4))
    with pytest.raises(NorseExportError, match=r"module '1' \(LIFCell\) integrates with dt = 0.0001 s"):
        export_norse(model, torch.zeros(1, 4))
    assert export_norse(model, torch.zeros(1, 4), dt=1e-4).dt == 1e-4


# --------------------------------------------------------------------------- refusals


def refusal(model: nn.Module, shape: tuple[int, ...], **options: object) -> str:
    with pytest.raises(NorseExportError) as caught:
        export_norse(model, torch.zeros((2, *shape)), **options)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_unsupported_layers_and_cells_are_named() -> None:
    pooled = snn.SequentialState(nn.Conv2d(1, 2, 3), snn.LIFCell(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(18, 2))
    assert "module '2' (MaxPool2d) is not supported" in refusal(pooled, (1, 8, 8))
    adaptive = snn.SequentialState(nn.Linear(4, 3), snn.LSNNCell())
    assert "module '1' (LSNNCell) is not supported" in refusal(adaptive, (4,))
    nested = snn.SequentialState(nn.Linear(4, 3), nn.Sequential(nn.ReLU()), snn.LIFCell())
    assert "module '1.0' (ReLU) is not supported" in refusal(nested, (4,))


def test_cells_in_a_plain_sequential_are_refused() -> None:
    model = nn.Sequential(nn.Linear(4, 3), snn.LIFCell())
    assert "module '1' (LIFCell) sits in a plain nn.Sequential" in refusal(model, (4,))


def test_leaky_integrators_need_zero_v_leak() -> None:
    model = snn.SequentialState(nn.Linear(4, 3), snn.LICell(LIParameters(v_leak=torch.tensor(0.5))))
    assert "module '1' (LICell) has v_leak != 0" in refusal(model, (4,))


def test_parameters_that_do_not_fit_the_population_are_refused() -> None:
    model = snn.SequentialState(nn.Linear(4, 3), snn.LIFCell(LIFParameters(v_th=torch.ones(2, 3))))
    assert "parameter 'v_th' has shape [2, 3]" in refusal(model, (4,))
    unbounded = snn.SequentialState(nn.Linear(4, 3), snn.LIFBoxCell(LIFBoxParameters(tau_mem_inv=torch.tensor(0.0))))
    assert "parameter 'tau_mem_inv' must be > 0" in refusal(unbounded, (4,))


def test_geometry_a_convolution_cannot_express_is_refused() -> None:
    ceil = snn.SequentialState(nn.AvgPool2d(2, ceil_mode=True), snn.LIFCell())
    assert "module '0' (AvgPool2d)" in refusal(ceil, (1, 5, 5))
    excluding = snn.SequentialState(nn.AvgPool2d(3, padding=1, count_include_pad=False), snn.LIFCell())
    assert "count_include_pad=False" in refusal(excluding, (1, 6, 6))
    batch_flat = snn.SequentialState(nn.Flatten(0), snn.LIFCell())
    assert "module '0' (Flatten)" in refusal(batch_flat, (3,))


def test_sample_input_needs_a_batch_dimension() -> None:
    with pytest.raises(NorseExportError, match="sample_input"):
        export_norse(lif_net(), torch.zeros(20))


def test_is_norse_model() -> None:
    assert is_norse_model(lif_net())
    assert is_norse_model(nn.Sequential(nn.Linear(2, 2), snn.LIFCell()))
    assert not is_norse_model(nn.Sequential(nn.Linear(2, 2)))
    assert not is_norse_model("model.nir")
