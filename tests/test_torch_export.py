"""PyTorch/snnTorch export: snnc's float reference spikes exactly like the framework, layer for layer.

Every equivalence test runs the framework model and the exported graph on
100 random 0/1 input sequences of 50 steps and requires 0 differing spike
entries in every neuron layer. Both sides compute in float64 (``.double()``
on the model, the float reference always): the two compute the same real
numbers in a different order (e.g. snnTorch's ``beta*v + x`` against the
reference's ``(1 - dt/tau)*v + (dt/tau)*r*x``), which can differ in the last
bits; in float32 such a difference flips a spike whose membrane lands within
~1e-7 of the threshold every few thousand entries, in float64 within ~1e-16,
which random inputs never hit. A layer must fire in 5-95 % of its entries so
that a wrong export cannot pass by silence or saturation.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

import snnc
from snnc import nn as snnc_nn
from snnc.compiler import ir
from snnc.compiler.frontends.nir_export import NirExportWarning
from snnc.compiler.frontends.nir_import import import_nir
from snnc.compiler.frontends.torch_export import TorchExportError, export_torch
from snnc.runtime import float_reference

from .conftest import REPO

BATCH, STEPS = 100, 50
EXAMPLES = REPO / "examples"


def heaviside(u: torch.Tensor) -> torch.Tensor:
    """snnTorch's forward spike in the input's dtype: its ATan surrogate returns float32 even for float64
    membranes, which a ``.double()`` network cannot feed to its next layer."""
    return (u > 0).to(u.dtype)


def bernoulli(shape: tuple[int, ...], p: float = 0.3, seed: int = 0) -> np.ndarray:
    """(BATCH, STEPS, *shape) 0/1 input spikes."""
    return (np.random.default_rng(seed).random((BATCH, STEPS, *shape)) < p).astype(np.uint8)


def neuron_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules()
            if isinstance(m, snn.SpikingNeuron | snnc_nn.LIF | snnc_nn.IF)}


def framework_spikes(model: nn.Module, spikes: np.ndarray) -> dict[str, np.ndarray]:
    """Run ``model`` (float64) one step per call on ``spikes`` (B, T, *shape); each neuron module's
    spikes as (B, T, N) bool, keyed by module path."""
    model = model.double().eval()  # deployment is inference: dropout off, as in the exported graph
    recorded: dict[str, list[np.ndarray]] = {name: [] for name in neuron_modules(model)}

    def keep(name: str):
        def hook(_module: nn.Module, _inputs: tuple, out: torch.Tensor | tuple) -> None:
            spk = out[0] if isinstance(out, tuple) else out
            recorded[name].append(spk.detach().reshape(spk.shape[0], -1).numpy() > 0)
        return hook

    for module in neuron_modules(model).values():
        if isinstance(module, snn.SpikingNeuron):
            module.reset_mem()
        else:
            module.reset_state()
    handles = [m.register_forward_hook(keep(name)) for name, m in neuron_modules(model).items()]
    try:
        with torch.no_grad():
            for t in range(spikes.shape[1]):
                model(torch.from_numpy(spikes[:, t]).double())
    finally:
        for handle in handles:
            handle.remove()
    return {name: np.stack(steps, axis=1) for name, steps in recorded.items()}


def assert_spikes_match(model: nn.Module, spikes: np.ndarray, graph: ir.Graph | None = None) -> ir.Graph:
    """0 differing spike entries in every neuron layer, each layer firing in 5-95 % of its entries."""
    if graph is None:
        graph = export_torch(model, torch.zeros(4, *spikes.shape[2:]))
    expected = framework_spikes(model, spikes)
    got = float_reference.simulate(graph, {"input": spikes}, timing="nir")
    for name, want in expected.items():
        have = got[name].spikes
        assert have.shape == want.shape, name
        assert 0.05 <= want.mean() <= 0.95, f"layer '{name}' fires in {want.mean():.1%} of entries; retune the test"
        differing = int((have != want).sum())
        assert differing == 0, f"layer '{name}': {differing} of {want.size} spike entries differ"
    return graph


# --------------------------------------------------------------------------- snnTorch feed-forward


def per_neuron(n: int, low: float, high: float, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).uniform(low, high, n)).float()


FEED_FORWARD = [
    # (class, reset_mechanism, reset_delay)
    ("Leaky", "subtract", True),
    ("Leaky", "zero", True),
    ("Leaky", "zero", False),
    ("Leaky", "none", True),
    ("Synaptic", "subtract", True),
    ("Synaptic", "zero", False),
    ("Synaptic", "zero", True),
    ("Synaptic", "none", True),
]


def refractory_steps(cls: str, reset: str, delay: bool) -> int:
    """What the export should set: snnTorch's delayed reset to zero clears a whole step in all but Leaky."""
    return int(reset == "zero" and delay and cls != "Leaky")


def feed_forward_net(cls: str, reset: str, delay: bool, per_neuron_params: bool) -> nn.Module:
    torch.manual_seed(1)
    sizes = (40, 32, 16)
    layers: list[nn.Module] = []
    for i, n in enumerate(sizes[1:]):
        if per_neuron_params:
            beta, threshold = per_neuron(n, 0.5, 0.95, seed=i), per_neuron(n, 0.6, 1.4, seed=10 + i)
            alpha = per_neuron(n, 0.1, 0.8, seed=20 + i)
        else:
            beta, threshold, alpha = 0.8, 1.0, 0.5
        kwargs = dict(beta=beta, threshold=threshold, reset_mechanism=reset, reset_delay=delay, init_hidden=True,
                      spike_grad=heaviside, learn_beta=per_neuron_params, learn_threshold=per_neuron_params)
        linear = nn.Linear(sizes[i], n)
        # a "none" reset lets v run away: lower the drive, and raise the threshold where the current builds up too
        gain = {"none": 0.5}.get(reset, 1.0) * (0.6 if cls == "Synaptic" else 1.0) * (2.0 if i == 0 else 4.0)
        with torch.no_grad():
            linear.weight.mul_(gain)
        if cls == "Synaptic":
            layers += [linear, snn.Synaptic(alpha=alpha, **kwargs)]
        else:
            layers += [linear, snn.Leaky(**kwargs)]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("per_neuron_params", [False, True], ids=["scalar", "per-neuron"])
@pytest.mark.parametrize("cls, reset, delay", FEED_FORWARD, ids=[f"{c}-{r}-delay{d}" for c, r, d in FEED_FORWARD])
def test_snntorch_feed_forward_spikes_match_exactly(cls, reset, delay, per_neuron_params):
    net = feed_forward_net(cls, reset, delay, per_neuron_params)
    graph = assert_spikes_match(net, bernoulli((40,)))
    expected_model = "cuba_lif" if cls == "Synaptic" else "lif"
    assert [p.model for p in graph.populations] == ["input", expected_model, expected_model]
    assert all(p.reset == reset for p in graph.populations[1:])
    assert all(p.refractory == refractory_steps(cls, reset, delay) for p in graph.populations[1:])


NON_LEAKING = [
    # (class, reset_mechanism, reset_delay)
    ("Leaky", "subtract", True),
    ("Leaky", "zero", True),
    ("Synaptic", "subtract", True),
    ("Synaptic", "zero", False),
    ("Synaptic", "zero", True),
]


@pytest.mark.parametrize("cls, reset, delay", NON_LEAKING, ids=[f"{c}-{r}-delay{d}" for c, r, d in NON_LEAKING])
def test_non_leaking_snntorch_neurons_export_as_if_and_match_exactly(cls, reset, delay):
    torch.manual_seed(21)
    kwargs = dict(beta=1.0, threshold=per_neuron(20, 0.5, 1.5, seed=22), reset_mechanism=reset, reset_delay=delay,
                  init_hidden=True, spike_grad=heaviside)
    if cls == "Synaptic":
        # alpha = 0: the current is this step's input, so the neuron is v' = v + x
        kwargs.update(alpha=0.0)
    neuron = getattr(snn, cls)(**kwargs)
    net = nn.Sequential(nn.Linear(30, 20), neuron)
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    graph = assert_spikes_match(net, bernoulli((30,), seed=23))
    pop = graph.population("1")
    assert pop.model == "if" and np.all(pop.params["r"] == 1.0) and np.all(pop.params["v_reset"] == 0.0)
    assert pop.refractory == refractory_steps(cls, reset, delay)


# --------------------------------------------------------------------------- snnTorch recurrent


RECURRENT = [
    # (class, all_to_all, reset_mechanism, reset_delay)
    ("RLeaky", True, "subtract", True),
    ("RLeaky", True, "zero", False),
    ("RLeaky", False, "subtract", True),
    ("RLeaky", False, "zero", False),
    ("RLeaky", True, "zero", True),
    ("RLeaky", False, "zero", True),
    ("RSynaptic", True, "subtract", True),
    ("RSynaptic", True, "none", True),
    ("RSynaptic", True, "zero", True),
    ("RSynaptic", False, "subtract", True),
    ("RSynaptic", False, "none", True),
    ("RSynaptic", False, "zero", True),
]


def recurrent_net(cls: str, all_to_all: bool, reset: str, delay: bool) -> nn.Module:
    torch.manual_seed(2)
    n = 24
    kwargs = dict(beta=per_neuron(n, 0.6, 0.95, seed=3), threshold=1.0, reset_mechanism=reset, reset_delay=delay,
                  init_hidden=True, spike_grad=heaviside)
    if cls == "RSynaptic":
        kwargs["alpha"] = 0.4
    if all_to_all:
        kwargs["linear_features"] = n
    else:
        kwargs.update(all_to_all=False, V=per_neuron(n, -0.8, 0.4, seed=4))
    neuron = getattr(snn, cls)(**kwargs)
    if all_to_all:
        with torch.no_grad():
            neuron.recurrent.weight.mul_(1.5)
    scale = 0.6 if cls == "RSynaptic" and reset == "none" else 1.0
    first, second = nn.Linear(30, n), nn.Linear(n, 10)
    with torch.no_grad():
        first.weight.mul_(2.5 * scale)
        second.weight.mul_(2.0)
    # output=True makes the last module return (spikes, membrane); only the spikes are exported
    readout = snn.Leaky(beta=0.7, threshold=0.3, reset_mechanism="subtract", init_hidden=True, spike_grad=heaviside,
                        output=True)
    return nn.Sequential(first, neuron, second, readout)


@pytest.mark.parametrize("cls, all_to_all, reset, delay", RECURRENT,
                         ids=[f"{c}-{'all' if a else 'one'}-{r}-delay{d}" for c, a, r, d in RECURRENT])
def test_snntorch_recurrent_spikes_match_exactly(cls, all_to_all, reset, delay):
    net = recurrent_net(cls, all_to_all, reset, delay)
    graph = assert_spikes_match(net, bernoulli((30,), seed=5))
    assert graph.population("1").refractory == refractory_steps(cls, reset, delay)
    (loop,) = [p for p in graph.projections if p.src == p.dst]
    assert loop.name == "1.recurrent" and loop.src == "1"
    expected_kind = "dense" if all_to_all else "sparse"
    assert loop.kind == expected_kind
    # the recurrent Linear's bias arrives every step, from the first one on, like snnTorch's recurrent(0)
    if all_to_all:
        np.testing.assert_allclose(graph.population("1").params["bias"],
                                   (net[0].bias + net[1].recurrent.bias).detach().double().numpy())


def test_rleaky_with_a_conv_recurrent_layer_matches_exactly():
    torch.manual_seed(6)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        snn.RLeaky(beta=0.8, conv2d_channels=3, kernel_size=3, init_hidden=True, spike_grad=heaviside),
        nn.Flatten(), nn.Linear(3 * 6 * 6, 10),
        snn.Leaky(beta=0.8, threshold=0.5, init_hidden=True, spike_grad=heaviside),
    )
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    graph = assert_spikes_match(net, bernoulli((2, 6, 6), seed=7))
    loop = next(p for p in graph.projections if p.src == p.dst)
    assert loop.kind == "conv" and loop.conv.in_shape == loop.conv.out_shape == (3, 6, 6)


# --------------------------------------------------------------------------- convolutions and pooling


def conv_net(variant: str) -> nn.Module:
    torch.manual_seed(8)

    def leaky(**kw: object) -> snn.Leaky:
        return snn.Leaky(init_hidden=True, spike_grad=heaviside, **{"beta": 0.8, "threshold": 0.8, **kw})

    if variant == "conv-pool-flatten-linear":
        # per-channel beta (C, 1, 1) broadcasts over the feature map as in snnTorch
        layers = [nn.Conv2d(2, 4, 3, padding=1), leaky(beta=per_neuron(4, 0.6, 0.9, seed=9).reshape(4, 1, 1)),
                  nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 10), leaky(threshold=0.3)]
    elif variant == "conv-then-pool-merged":
        layers = [nn.Conv2d(2, 4, 3, padding=1), nn.AvgPool2d(2), leaky(reset_mechanism="zero"),
                  nn.Flatten(), nn.Linear(4 * 4 * 4, 10), leaky(threshold=0.3)]
    elif variant == "pool-then-conv-merged":
        layers = [nn.Conv2d(2, 4, 3, padding=1), leaky(), nn.AvgPool2d(2), nn.Conv2d(4, 6, 3, stride=1, padding=1),
                  leaky(threshold=0.3), nn.Flatten(), nn.Linear(6 * 4 * 4, 10), leaky(threshold=0.3)]
    else:
        # strided conv, a pool with padding, a Synaptic head, Identity and Dropout skipped
        layers = [nn.Conv2d(2, 4, 3, stride=2, padding=1), leaky(), nn.Dropout(0.5),
                  nn.AvgPool2d(3, stride=1, padding=1), nn.Identity(), leaky(threshold=0.2), nn.Flatten(),
                  nn.Linear(4 * 4 * 4, 10),
                  snn.Synaptic(alpha=0.5, beta=0.8, threshold=0.5, init_hidden=True, spike_grad=heaviside)]
    net = nn.Sequential(*layers)
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[-2].weight.mul_(3.0)
        if variant == "pool-then-conv-merged":
            net[3].weight.mul_(2.0)
    return net


@pytest.mark.parametrize("variant", ["conv-pool-flatten-linear", "conv-then-pool-merged", "pool-then-conv-merged",
                                     "strided-padded-synaptic"])
def test_conv_pool_flatten_linear_networks_match_exactly(variant):
    net = conv_net(variant)
    graph = assert_spikes_match(net, bernoulli((2, 8, 8), seed=11))
    assert graph.population("input").shape == (2, 8, 8)
    if variant != "strided-padded-synaptic":
        # a lone conv, or a conv merged with an average pool, stays a conv projection
        assert graph.projections[0].kind == "conv"
    if variant == "conv-then-pool-merged":
        assert graph.projections[0].name == "0+1" and graph.projections[0].conv.stride == (2, 2)
    if variant == "pool-then-conv-merged":
        assert graph.projections[1].name == "2+3" and graph.projections[1].kind == "conv"


# --------------------------------------------------------------------------- plain torch with snnc.nn


def snnc_nn_net(reset: str) -> nn.Module:
    torch.manual_seed(12)
    net = nn.Sequential(
        nn.Linear(40, 32), snnc_nn.LIF(32, tau_mem=4e-3, r=2.0, v_threshold=1.0, v_leak=0.05, reset=reset),
        nn.Linear(32, 16), snnc_nn.IF(16, v_threshold=per_neuron(16, 0.4, 0.8, seed=13), v_reset=-0.1, reset=reset),
    )
    with torch.no_grad():
        net[0].weight.mul_(6.0)
        net[2].weight.mul_(2.0 if reset != "none" else 0.3)
    return net


@pytest.mark.parametrize("reset", ["zero", "subtract", "none"])
def test_snnc_nn_sequential_matches_exactly(reset):
    net = snnc_nn_net(reset)
    graph = assert_spikes_match(net, bernoulli((40,), seed=14))
    assert graph.dt == 1e-3 and graph.meta["dt_from"] == "module"
    assert [(p.model, p.reset) for p in graph.populations[1:]] == [("lif", reset), ("if", reset)]
    np.testing.assert_array_equal(graph.population("3").params["v_reset"], np.full(16, -0.1, dtype=np.float32))


class Branchy(nn.Module):
    """A module (not a Sequential) whose forward fx traces to a chain with a sum, torch.flatten and tuple outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.lif1 = snn.Leaky(beta=0.8, spike_grad=heaviside)
        self.skip = nn.Linear(36, 8)
        self.fc = nn.Linear(72, 8)
        self.lif2 = snnc_nn.LIF(8, tau_mem=5e-3, dt=1e-3)
        self.fc_out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spk1, mem1 = self.lif1(self.conv(x))
        cur = self.fc(torch.flatten(spk1, 1)) + self.skip(x.view(x.shape[0], -1))
        spk2 = self.lif2(cur)
        return spk2, self.fc_out(spk2)


def test_traced_module_with_fan_in_flatten_and_a_readout_matches_exactly():
    model = Branchy()
    with torch.no_grad():
        model.conv.weight.mul_(3.0)
        model.fc.weight.mul_(8.0)
        model.skip.weight.mul_(8.0)
    spikes = bernoulli((1, 6, 6), seed=15)
    graph = assert_spikes_match(model, spikes)
    assert graph.outputs == ("lif2", "output")
    into_lif2 = {p.src: p for p in graph.projections if p.dst == "lif2"}
    assert set(into_lif2) == {"lif1", "input"} and into_lif2["input"].name == "skip"
    # the Linear after the last neuron is an li readout whose v is the model's second output, every step
    readout = float_reference.simulate(graph, {"input": spikes})["output"].v
    model = model.double()
    model.lif1.reset_mem()
    model.lif2.reset_state()
    with torch.no_grad():
        want = np.stack([model(torch.from_numpy(spikes[:, t]).double())[1].numpy() for t in range(STEPS)], axis=1)
    np.testing.assert_allclose(readout, want, rtol=1e-12, atol=1e-12)


def test_snnc_nn_neurons_train_with_their_surrogate_gradient():
    torch.manual_seed(16)
    net = snnc_nn_net("zero")
    x = torch.from_numpy(bernoulli((40,), seed=17)[:8]).float()
    counts = sum(net(x[:, t]) for t in range(10))
    counts.sum().backward()
    assert net[0].weight.grad is not None and float(net[0].weight.grad.abs().sum()) > 0


# --------------------------------------------------------------------------- regressions from research/nir.md


def test_regression_affine_bias_is_kept_through_export_and_nir_round_trip(tmp_path: Path):
    # nirtorch 2.6 drops Affine biases on import; here a bias alone drives the first layer
    torch.manual_seed(18)
    net = nn.Sequential(nn.Linear(10, 6), snn.Leaky(beta=0.9, init_hidden=True, spike_grad=heaviside),
                        nn.Linear(6, 4), snn.Leaky(beta=0.9, init_hidden=True, spike_grad=heaviside))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.copy_(torch.linspace(0.05, 0.6, 6))
    graph = snnc.export(net, torch.zeros(2, 10), path=tmp_path / "bias.nir")
    np.testing.assert_array_equal(graph.population("1").params["bias"], net[0].bias.detach().double().numpy())
    again = import_nir(tmp_path / "bias.nir")
    np.testing.assert_array_equal(again.population("1").params["bias"], graph.population("1").params["bias"])
    spikes = np.zeros((BATCH, STEPS, 10), dtype=np.uint8)
    expected = framework_spikes(net, spikes)
    got = float_reference.simulate(again, {"input": spikes})
    assert expected["1"].any() and all(np.array_equal(got[k].spikes, v) for k, v in expected.items())


def test_regression_flatten_keeps_the_batch_dimension_out_of_every_shape():
    net = conv_net("conv-pool-flatten-linear")
    graph = export_torch(net, torch.zeros(8, 2, 8, 8))
    assert [p.shape for p in graph.populations] == [(2, 8, 8), (4, 8, 8), (10,)]
    bad = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(start_dim=0), nn.Linear(8 * 4 * 36, 10),
                        snn.Leaky(beta=0.9, init_hidden=True))
    with pytest.raises(TorchExportError, match=r"'1' \(nn.Flatten\) mixes the batch dimension") as info:
        export_torch(bad, torch.zeros(8, 2, 8, 8))
    assert "\n" not in str(info.value)


def test_regression_scalar_parameters_export_as_full_per_neuron_arrays(tmp_path: Path):
    net = nn.Sequential(nn.Linear(5, 7), snn.Leaky(beta=0.9, threshold=1.5, init_hidden=True))
    graph = snnc.export(net, torch.zeros(1, 5), path=tmp_path / "scalar.nir")
    params = graph.population("1").params
    assert all(np.shape(v) == (7,) for v in params.values())
    np.testing.assert_allclose(params["tau_mem"], 1e-3, rtol=1e-6)  # beta is float32 0.9
    np.testing.assert_array_equal(params["v_threshold"], 1.5)
    node = nir.read(tmp_path / "scalar.nir").nodes["1"]
    assert isinstance(node, nir.LIF) and node.tau.shape == node.v_threshold.shape == (7,)


def test_regression_subtractive_reset_is_exported_as_subtraction_and_survives_nir(tmp_path: Path):
    # snnTorch's own exporter writes reset-to-zero for its default subtract reset
    net = feed_forward_net("Leaky", "subtract", True, per_neuron_params=True)
    graph = export_torch(net, torch.zeros(1, 40))
    pop = graph.population("1")
    beta = net[1].beta.detach().double().numpy()
    theta = net[1].threshold.detach().double().numpy()
    assert pop.reset == "subtract"
    np.testing.assert_allclose(pop.params["v_reset"], theta - theta / beta)
    with pytest.warns(NirExportWarning, match="subtraction"):
        snnc.export(net, torch.zeros(1, 40), path=tmp_path / "subtract.nir")
    again = import_nir(tmp_path / "subtract.nir")
    assert again.meta["reset_from"] == "metadata"
    assert all(p.reset == "subtract" for p in again.populations[1:])
    np.testing.assert_array_equal(again.population("1").params["v_reset"], pop.params["v_reset"])
    assert_spikes_match(net, bernoulli((40,)), graph=again)


def test_delayed_zero_reset_of_synaptic_neurons_needs_its_refractory_step():
    # snnTorch clears the step after a spike: without the refractory step the same graph spikes differently
    net = feed_forward_net("Synaptic", "zero", True, per_neuron_params=False)
    spikes = bernoulli((40,))
    graph = assert_spikes_match(net, spikes)
    eager = ir.replace(graph, populations=tuple(ir.replace(p, refractory=0) for p in graph.populations))
    got = float_reference.simulate(eager, {"input": spikes}, timing="nir")
    assert not np.array_equal(got["1"].spikes, framework_spikes(net, spikes)["1"])


def test_regression_refractory_step_survives_nir_export_and_import(tmp_path: Path):
    # NIR has no refractory period: snnc keeps it in the node metadata
    net = feed_forward_net("Synaptic", "zero", True, per_neuron_params=True)
    snnc.export(net, torch.zeros(1, 40), path=tmp_path / "refractory.nir")
    again = import_nir(tmp_path / "refractory.nir")
    assert [(p.reset, p.refractory) for p in again.populations[1:]] == [("zero", 1), ("zero", 1)]
    assert_spikes_match(net, bernoulli((40,)), graph=again)


def test_regression_dt_is_honoured_and_never_changes_the_spikes(tmp_path: Path):
    net = feed_forward_net("Synaptic", "subtract", True, per_neuron_params=True)
    spikes = bernoulli((40,))
    runs = []
    for dt in (1e-4, 1e-3, 2.5e-2):
        graph = snnc.export(net, torch.zeros(1, 40), dt=dt, path=tmp_path / f"dt{dt}.nir")
        pop = graph.population("1")
        alpha = net[1].alpha.detach().double().numpy()
        beta = net[1].beta.detach().double().numpy()
        assert graph.dt == dt
        np.testing.assert_allclose(pop.params["tau_mem"], dt / (1 - beta))
        np.testing.assert_allclose(pop.params["tau_syn"], dt / (1 - alpha))
        again = import_nir(tmp_path / f"dt{dt}.nir")
        assert again.dt == dt and again.meta["dt_from"] == "metadata"
        runs.append(assert_spikes_match(net, spikes, graph=again))
    assert len(runs) == 3


def test_regression_recurrent_network_survives_nir_export_and_import(tmp_path: Path):
    # snnTorch 1.0.0 cannot import its own RLeaky export (nested-graph bug)
    net = recurrent_net("RLeaky", True, "subtract", True)
    spikes = bernoulli((30,), seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NirExportWarning)
        graph = snnc.export(net, torch.zeros(1, 30), path=tmp_path / "recurrent.nir")
    again = import_nir(tmp_path / "recurrent.nir")
    assert any(p.src == p.dst == "1" for p in again.projections)
    ours = float_reference.simulate(graph, {"input": spikes})
    theirs = float_reference.simulate(again, {"input": spikes})
    assert all(np.array_equal(ours[k].spikes, theirs[k].spikes) for k in ours)
    assert_spikes_match(net, spikes, graph=again)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("layer, type_name", [
    (nn.MaxPool2d(2), "nn.MaxPool2d"),
    (nn.LSTM(8, 8), "nn.LSTM"),
    (snn.Alpha(alpha=0.9, beta=0.8, init_hidden=True), "snntorch.Alpha"),
])
def test_unsupported_layer_is_a_one_line_error_naming_it(layer, type_name):
    net = nn.Sequential(nn.Linear(8, 8), snn.Leaky(beta=0.9, init_hidden=True), nn.Sequential(nn.Identity(), layer))
    with pytest.raises(TorchExportError) as info:
        export_torch(net, torch.zeros(2, 8))
    assert str(info.value) == f"unsupported layer '2.1' ({type_name})"


def test_unsupported_function_in_a_traced_forward_names_it():
    class Relu(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.lif = snn.Leaky(beta=0.9, init_hidden=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lif(torch.relu(self.fc(x)))

    with pytest.raises(TorchExportError, match=r"^unsupported operation torch.relu in the forward of "):
        export_torch(Relu(), torch.zeros(1, 4))


def leaky_net(**kwargs: object) -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), snn.Leaky(init_hidden=True, **{"beta": 0.9, **kwargs}))


REFUSED = {
    "subtract-without-delay": (lambda: leaky_net(reset_mechanism="subtract", reset_delay=False),
                               "reset_delay=False has no exact snnc equivalent"),
    # snnTorch's cleared membrane 0 is above a negative threshold: it fires every step, refractory or not
    "synaptic-zero-with-delay-negative-threshold": (lambda: nn.Sequential(nn.Linear(4, 3), snn.Synaptic(
        alpha=0.5, beta=0.9, threshold=-0.5, reset_mechanism="zero", init_hidden=True)),
        "negative threshold has no exact snnc equivalent"),
    "rleaky-zero-with-delay-negative-threshold": (lambda: nn.Sequential(nn.Linear(4, 3), snn.RLeaky(
        beta=0.9, linear_features=3, threshold=torch.tensor([0.5, -0.1, 0.5]), reset_mechanism="zero",
        init_hidden=True)), "negative threshold has no exact snnc equivalent"),
    "rsynaptic-without-delay": (lambda: nn.Sequential(nn.Linear(4, 3), snn.RSynaptic(
        alpha=0.5, beta=0.9, linear_features=3, reset_delay=False, init_hidden=True)),
        "broken in snnTorch 1.0.0's RSynaptic"),
    "graded-spikes": (lambda: leaky_net(graded_spikes_factor=2.0), "graded_spikes_factor"),
    "inhibition": (lambda: leaky_net(inhibition=True), "inhibition"),
    "sigmoid-spike": (lambda: leaky_net(spike_grad=torch.sigmoid), "not the Heaviside step"),
    "mixed-beta-one": (lambda: leaky_net(beta=torch.tensor([1.0, 0.5, 0.5])), "beta is 1 for some neurons"),
    "alpha-one": (lambda: nn.Sequential(nn.Linear(4, 3), snn.Synaptic(alpha=1.0, beta=0.9, init_hidden=True)),
                  "alpha or beta = 1"),
    # runs with a batch of 2, but a beta per sample is no beta per neuron
    "beta-per-sample": (lambda: leaky_net(beta=torch.full((2, 3), 0.9)), r"beta of shape \[2, 3\] does not broadcast"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_snntorch_features_without_an_exact_equivalent_are_refused_in_one_line(case):
    build, match = REFUSED[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # snnTorch warns about inhibition itself
        module = build()
    with pytest.raises(TorchExportError, match=match) as info:
        export_torch(module, torch.zeros(2, 4))
    assert "\n" not in str(info.value) and str(info.value).startswith("'1' (snntorch.")


def test_reset_argument_checks_and_never_overrides():
    net = leaky_net(reset_mechanism="zero")
    assert export_torch(net, torch.zeros(1, 4), reset="zero").population("1").reset == "zero"
    with pytest.raises(TorchExportError, match="resets with 'zero' but export was asked for reset='subtract'"):
        snnc.export(net, torch.zeros(1, 4), reset="subtract")


def test_snnc_nn_dt_must_agree_with_the_requested_dt():
    net = nn.Sequential(nn.Linear(4, 3), snnc_nn.LIF(3, tau_mem=5e-3, dt=1e-3))
    assert export_torch(net, torch.zeros(1, 4), dt=1e-3).dt == 1e-3
    with pytest.raises(TorchExportError, match=r"steps at dt = 0.001 s but export was asked for dt = 0.0001 s"):
        export_torch(net, torch.zeros(1, 4), dt=1e-4)


def test_a_neuron_called_twice_is_refused():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.lif = snn.Leaky(beta=0.9, init_hidden=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lif(self.fc(self.lif(self.fc(x))))

    with pytest.raises(TorchExportError, match="'lif' .* is called more than once"):
        export_torch(Twice(), torch.zeros(1, 4))


def test_export_leaves_the_model_and_its_neuron_states_untouched():
    net = feed_forward_net("Leaky", "subtract", True, per_neuron_params=False)
    with torch.no_grad():
        for _ in range(3):
            net(torch.ones(5, 40))
    before = {k: v.clone() for k, v in net.state_dict(keep_vars=False).items()}
    mem = net[1].mem.clone()
    export_torch(net, torch.zeros(2, 40))
    assert net[1].mem.shape == (5, 32) and torch.equal(net[1].mem, mem)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_default_atan_surrogate_exports_like_the_heaviside_used_in_these_tests():
    torch.manual_seed(19)
    with_atan = nn.Sequential(nn.Linear(6, 5), snn.Leaky(beta=0.7, init_hidden=True))
    with_step = nn.Sequential(nn.Linear(6, 5), snn.Leaky(beta=0.7, init_hidden=True, spike_grad=heaviside))
    with_step.load_state_dict(with_atan.state_dict())
    a, b = (export_torch(n, torch.zeros(1, 6)) for n in (with_atan, with_step))
    assert ir.graph_hash(a) == ir.graph_hash(b)


# --------------------------------------------------------------------------- the shipped example


def test_shipped_digits_snntorch_model_keeps_its_accuracy_after_8_bit_quantization(tmp_path: Path):
    with np.load(EXAMPLES / "digits_snntorch_test.npz") as data:
        stimulus, labels = {"input": data["input"]}, data["labels"]
    graph = import_nir(EXAMPLES / "digits_snntorch.nir")
    out = graph.outputs[0]
    float_counts = float_reference.simulate(graph, stimulus)[out].spikes.sum(axis=1)
    artifact = snnc.compile(EXAMPLES / "digits_snntorch.nir", target="cpu", out_dir=tmp_path / "art")
    # the integer model delivers each projection one step later: run long enough to see the whole input
    steps = stimulus["input"].shape[1] + float_reference.latency(graph)[out]
    int_counts = artifact.run(stimulus, steps=steps)[out].spikes.sum(axis=1)
    float_acc = float((float_counts.argmax(axis=1) == labels).mean())
    int_acc = float((int_counts.argmax(axis=1) == labels).mean())
    assert len(labels) >= 300 and float_acc >= 0.95
    assert abs(int_acc - float_acc) <= 0.015


def test_digits_example_trains_exports_and_compiles(tmp_path: Path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "digits_snntorch.py"), "--out-dir", str(tmp_path),
                           "--epochs", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "8-bit CPU artifact" in proc.stdout.splitlines()[-1]
    graph = import_nir(tmp_path / "digits_snntorch.nir")
    assert [(p.shape, p.model, p.reset) for p in graph.populations] == [
        ((64,), "input", "zero"), ((128,), "lif", "zero"), ((10,), "lif", "zero")]
    with np.load(tmp_path / "digits_snntorch_test.npz") as data:
        assert data["input"].shape == (540, 30, 64) and data["input"].dtype == np.uint8
        assert set(np.unique(data["input"])) <= {0, 1} and data["labels"].shape == (540,)
