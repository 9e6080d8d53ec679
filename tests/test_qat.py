"""snnc.qat: fake-quantized training views whose weights snnc's quantizer reproduces."""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn
from torch.nn.utils import parametrize

import snnc
from snnc.compiler import hw as hwmod
from snnc.compiler import ir, pipeline
from snnc.compiler.frontends.torch_export import TorchExportError
from snnc.compiler.quant_options import QuantOptions
from snnc.runtime import float_reference

STEPS = 40


def leaky_net(seed: int = 0) -> nn.Sequential:
    """20 inputs -> 32 Leaky -> 4 Leaky, resetting to zero (spike-exact export)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(20, 32),
        snn.Leaky(beta=0.9, reset_mechanism="zero", init_hidden=True),
        nn.Linear(32, 4),
        snn.Leaky(beta=0.9, reset_mechanism="zero", init_hidden=True),
    )
    with torch.no_grad():
        net[0].weight.mul_(2.0)
        net[2].weight.mul_(2.0)
    return net


def mixed_net() -> nn.Sequential:
    """A conv, a recurrent Linear (RLeaky) and a readout Linear: every kind of layer snnc.qat wraps."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), snn.Leaky(beta=0.8, init_hidden=True), nn.Flatten(),
        nn.Linear(4 * 5 * 5, 16), snn.RLeaky(beta=0.8, linear_features=16, init_hidden=True),
        nn.Linear(16, 3), snn.Leaky(beta=0.8, init_hidden=True),
    )


def wrapped_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if parametrize.is_parametrized(m, "weight")]


def reset_states(net: nn.Module) -> None:
    """A new sequence; also drops the autograd graph a trained run leaves in the states (deepcopy refuses it)."""
    for module in net.modules():
        if isinstance(module, snn.SpikingNeuron):
            module.reset_mem()


def run_counts(net: nn.Module, spikes: torch.Tensor) -> torch.Tensor:
    """Output spikes summed over the run; ``spikes`` is (B, T, features)."""
    reset_states(net)
    total = 0
    for t in range(spikes.shape[1]):
        total = total + net(spikes[:, t])
    return total


def random_spikes(shape: tuple[int, ...], p: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < p).astype(np.uint8)


@pytest.mark.parametrize(("bits", "per_channel"), [(2, False), (3, True), (4, False), (4, True), (8, True)])
def test_fake_quantized_weights_take_at_most_2_to_the_bits_values_per_layer_or_channel(bits, per_channel):
    view = snnc.qat(mixed_net(), weight_bits=bits, per_channel=per_channel)
    layers = wrapped_layers(view)
    assert len(layers) == 4  # conv, Linear, the RLeaky's recurrent Linear, readout Linear
    for layer in layers:
        weight = layer.weight.detach()
        original = layer.parametrizations.weight.original.detach()
        groups = list(zip(weight, original)) if per_channel else [(weight, original)]
        for values, float_values in groups:
            assert torch.unique(values).numel() <= 2**bits
            # on the grid k·step, k in [-M-1, M], with step = max|w| / M: the largest float weight lands on ±M
            step = float_values.abs().max() / (2 ** (bits - 1) - 1)
            k = values / step
            torch.testing.assert_close(k, torch.round(k), atol=1e-4, rtol=0)
            assert k.abs().max().round() == 2 ** (bits - 1) - 1
    if not per_channel:
        # per layer, some rows of the 16x16 recurrent Linear cannot use the whole grid
        rows = [torch.unique(row).numel() for row in layers[2].weight.detach()]
        assert max(rows) <= 2**bits


def test_defaults_come_from_the_targets_numerics():
    view = snnc.qat(leaky_net(), target="loihi2")
    quantizer = view[0].parametrizations.weight[0]
    numerics = hwmod.bundled_hw("loihi2").numerics
    assert (quantizer.bits, quantizer.per_channel) == (numerics.weight_bits, numerics.per_channel_scales)
    assert snnc.qat(leaky_net()).get_submodule("2").parametrizations.weight[0].per_channel is True


def test_original_model_is_unchanged():
    net = leaky_net()
    before = {name: value.clone() for name, value in net.state_dict().items()}
    view = snnc.qat(net, weight_bits=3)
    optimiser = torch.optim.SGD(view.parameters(), lr=0.5)
    loss = run_counts(view, torch.from_numpy(random_spikes((4, 10, 20), 0.3, seed=0)).float()).sum()
    loss.backward()
    optimiser.step()
    assert not wrapped_layers(net)
    assert type(net[0]) is nn.Linear
    for name, value in net.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)


def test_straight_through_estimator_passes_the_unquantized_gradient():
    torch.manual_seed(3)
    plain = nn.Linear(12, 5)
    view = snnc.qat(plain, weight_bits=3)
    x = torch.randn(7, 12)
    upstream = torch.randn(7, 5)
    (view(x) * upstream).sum().backward()
    (plain(x) * upstream).sum().backward()
    grad = view.parametrizations.weight.original.grad
    assert grad is not None and torch.count_nonzero(grad) == grad.numel()
    # a Linear's weight gradient does not depend on the weight, so the STE must give the float one exactly
    torch.testing.assert_close(grad, plain.weight.grad)
    assert not torch.equal(view.weight, plain.weight)


def test_qat_fine_tuning_at_4_bits_reduces_the_loss():
    net = leaky_net(seed=4)
    view = snnc.qat(net, weight_bits=4)
    rng = np.random.default_rng(5)
    labels = torch.from_numpy(rng.integers(0, 4, 32)).long()
    # class c fires inputs 5c..5c+4 more often, so the task is learnable
    rates = np.full((32, 20), 0.05)
    for i, c in enumerate(labels.numpy()):
        rates[i, 5 * c:5 * c + 5] = 0.5
    spikes = torch.from_numpy((rng.random((32, 15, 20)) < rates[:, None, :]).astype(np.float32))
    optimiser = torch.optim.Adam(view.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(0.5 * run_counts(view, spikes), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_frozen_qat_weights_survive_compilation_at_4_bits():
    view = snnc.qat(leaky_net(seed=6), weight_bits=4)
    optimiser = torch.optim.Adam(view.parameters(), lr=5e-3)
    spikes = torch.from_numpy(random_spikes((8, 15, 20), 0.3, seed=7)).float()
    for _ in range(5):
        loss = (run_counts(view, spikes) - 4.0).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    fake = [view[0].weight.detach().clone(), view[2].weight.detach().clone()]
    frozen = snnc.qat.freeze(view)
    reset_states(frozen)
    assert frozen is view and not wrapped_layers(frozen) and type(frozen[0]) is nn.Linear
    torch.testing.assert_close(frozen[0].weight.detach(), fake[0], rtol=0, atol=0)
    torch.testing.assert_close(frozen[2].weight.detach(), fake[1], rtol=0, atol=0)

    graph = snnc.export(frozen, torch.zeros(1, 20))
    # snnc's quantizer needs no rounding of its own: every mantissa·2**exp is S·w for a per-row S
    quantized = pipeline.compile_graph(graph, hwmod.bundled_hw("cpu"), options=QuantOptions(weight_bits=4))
    floats = {proj.name: np.asarray(proj.weight, dtype=np.float64) for proj in graph.projections}
    row_scale = {}
    for proj in quantized.projections:
        weight = floats[proj.name]
        integer = proj.quant.weight * 2.0**proj.quant.weight_exp
        assert np.unique(proj.quant.weight).size <= 16
        for w_row, i_row in zip(weight, integer):
            used = w_row != 0
            ratio = i_row[used] / w_row[used]
            np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)
        row_scale[proj.dst] = np.abs(integer).max(axis=1) / np.abs(weight).max(axis=1)

    stimulus = random_spikes((8, STEPS, 20), 0.3, seed=8)
    latency = max(float_reference.latency(graph).values())
    padded = {"input": np.concatenate([stimulus, np.zeros((8, latency, 20), dtype=np.uint8)], axis=1)}
    compiled = snnc.compile(graph, target="cpu", weight_bits=4).run(padded)
    reference = float_reference.simulate(graph, padded, timing="per_projection")
    spiking = [pop for pop in graph.populations if pop.model != "input"]
    same = [reference[pop.name].spikes == compiled[pop.name].spikes for pop in spiking]
    for pop in spiking:
        assert reference[pop.name].spikes.sum() > 0, f"population '{pop.name}' never fires"
    agreement = sum(int(s.sum()) for s in same) / sum(s.size for s in same)
    assert agreement >= 0.95, f"spike agreement {agreement:.3f}"
    # what is left is the threshold's rounding, vth = round(S·v_threshold) at S ≈ 7 / max|w| per row; with the
    # thresholds the target holds, every population agrees
    held = {pop.name: pop.quant.vth / row_scale[pop.name] for pop in quantized.populations if pop.model != "input"}
    rounded = ir.replace(graph, populations=tuple(
        pop if pop.model == "input" else ir.replace(pop, params={**pop.params, "v_threshold": held[pop.name]})
        for pop in graph.populations))
    reference = float_reference.simulate(rounded, padded, timing="per_projection")
    for pop in spiking:
        per_population = float((reference[pop.name].spikes == compiled[pop.name].spikes).mean())
        assert per_population >= 0.95, f"population '{pop.name}': spike agreement {per_population:.3f}"


def test_export_takes_the_frozen_view_with_its_fake_quantized_weights():
    view = snnc.qat(leaky_net(), weight_bits=4)
    with pytest.raises(TorchExportError, match="ParametrizedLinear"):
        snnc.export(view, torch.zeros(1, 20))
    fake = view[0].weight.detach().double().numpy()
    graph = snnc.export(snnc.qat.freeze(view), torch.zeros(1, 20))
    (first,) = [proj for proj in graph.projections if proj.src == "input"]
    np.testing.assert_array_equal(first.weight, fake)


def test_api_facade_and_lazy_module_agree():
    from snnc import api

    net = leaky_net()
    a = api.qat(net, weight_bits=5, per_channel=False)
    b = snnc.qat(net, weight_bits=5, per_channel=False)
    torch.testing.assert_close(a[0].weight, b[0].weight, rtol=0, atol=0)
    assert callable(snnc.qat) and callable(snnc.qat.freeze)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"weight_bits": 9}, "out of range"),
    ({"target": "loihi2", "per_channel": True}, "one scale per layer"),
    ({"target": "cray"}, "unknown target"),
])
def test_options_the_target_cannot_honour_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        snnc.qat(leaky_net(), **kwargs)


def test_a_model_without_weights_is_refused():
    with pytest.raises(ValueError, match="no nn.Linear or nn.Conv2d"):
        snnc.qat(nn.Sequential(nn.Flatten()))
