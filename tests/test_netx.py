"""lava-dl netx (.net) import and export: lava-dl's own tinynet ground truth, round trips, Lava itself, refusals."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from snnc import api
from snnc.backends import cpu
from snnc.compiler import ir
from snnc.compiler.frontends.load import load_model
from snnc.compiler.frontends.netx_export import NetxExportError, export_netx
from snnc.compiler.frontends.netx_import import NetxImportError, encode_input, import_netx

from .conftest import SHARED_MODELS
from .test_cpu_semantics import conv, dense, input_pop, network, neuron_pop

TINYNET = SHARED_MODELS / "lava_dl_tinynet"


@pytest.fixture
def lava_dl_tinynet() -> Path:
    """../shared/models/lava_dl_tinynet; tests using it skip on a clone without ../shared."""
    if not TINYNET.is_dir():
        pytest.skip("../shared/models/lava_dl_tinynet is not present (CI always has it)")
    return TINYNET


def _ground_truth(folder: Path, name: str) -> np.ndarray:
    """A lava-dl ground-truth array (1, C, H, W, T) as (T, N) with N in snnc's C order."""
    arr = np.load(folder / name)[0]
    return arr.reshape(-1, arr.shape[-1]).T


def _bias_from_step(graph: ir.Graph) -> tuple[ir.Graph, dict[str, np.ndarray]]:
    """Emulate lava-dl's tinynet resets: layer k's u and v are zeroed after Lava time_step k (snnc step k - 1).

    With i_decay 4096, ``bias << 6`` into v equals an input of ``bias`` into u,
    so each bias becomes a projection from a one-neuron input that fires from
    step k - 1 on: layer k then stays silent and at zero state until step k,
    exactly like the reset layer (whose earlier spikes the next resets erase).
    Returns the graph and the extra stimuli for ``steps`` up to 64.
    """
    pops, projs, stimuli = list(graph.populations), list(graph.projections), {}
    for k, pop in enumerate(graph.populations[1:], start=1):
        q = pop.quant
        assert q is not None and np.all(q.i_decay == 4096)
        name = f"bias_on{k}"
        pops.append(input_pop(name, 1))
        projs.append(dense(f"{name}_w", name, pop.name, q.bias_mant[:, None]))
        pops[k] = ir.replace(pop, quant=ir.replace(q, bias_mant=np.zeros_like(q.bias_mant)))
        stimuli[name] = (np.arange(64) >= k - 1).astype(np.uint8)[:, None]
    gated = ir.Graph(tuple(pops), tuple(projs), (*graph.inputs, *stimuli), graph.outputs, graph.dt, graph.meta)
    return ir.check(gated, "quantized"), stimuli


# --------------------------------------------------------------------------- import: lava-dl's tinynet


def test_tinynet_imports_quantized_with_netx_layouts(lava_dl_tinynet):
    graph = import_netx(lava_dl_tinynet / "tiny.net")
    ir.check(graph, "float")
    assert [p.shape for p in graph.populations] == [(3, 16, 16), (24, 6, 6), (36, 1, 1)]
    assert graph.meta["netx"]["layers"] == ["input", "conv", "conv"]
    assert graph.meta["netx"]["input_neuron"] == {"i_decay": 4096, "v_decay": 1024, "vth": 25, "bias_exp": 6}
    conv1 = graph.projections[0]
    effective = conv1.quant.weight << conv1.quant.weight_exp
    # lava-dl's layer1_kernel.npy is Lava's (C_out, kW, kH, C_in) flipped kernel: the true convolution of our kernel
    lava_kernel = np.load(lava_dl_tinynet / "layer1_kernel.npy")
    np.testing.assert_array_equal(effective[:, :, ::-1, ::-1].transpose(0, 3, 2, 1), lava_kernel)
    np.testing.assert_array_equal(graph.populations[1].quant.bias_mant.reshape(24, 36)[:, 0],
                                  np.load(lava_dl_tinynet / "layer1_bias.npy"))
    assert conv1.conv.stride == (2, 2) and graph.dt == 1e-3


def test_encoded_input_equals_lava_dl_input_one_step_later(lava_dl_tinynet):
    graph = import_netx(lava_dl_tinynet / "tiny.net")
    bias = np.load(lava_dl_tinynet / "input_bias.npy").transpose(2, 1, 0)  # Lava's (W, H, C) -> (C, H, W)
    spikes = encode_input(graph, bias, 16)
    expected = _ground_truth(lava_dl_tinynet, "input.npy")
    assert spikes[:15].any()
    np.testing.assert_array_equal(spikes[:15], expected[1:16])


def test_tinynet_reproduces_lava_dl_ground_truth_spikes_and_currents(lava_dl_tinynet):
    graph = import_netx(lava_dl_tinynet / "tiny.net")
    bias = np.load(lava_dl_tinynet / "input_bias.npy").transpose(2, 1, 0)
    gated, stimuli = _bias_from_step(graph)
    steps = 19
    stimuli = {name: s[:steps] for name, s in stimuli.items()}
    rasters = cpu.simulate(gated, {"input": encode_input(graph, bias, steps).astype(np.uint8), **stimuli},
                           record_state=True)
    output = rasters["layer2"].spikes
    # lava-dl's test: Lava rows 2..16 == output.npy time 1..15; snnc step t is Lava row t
    truth = _ground_truth(lava_dl_tinynet, "output.npy")
    assert output[2:17].sum() > 50
    np.testing.assert_array_equal(output[2:17], truth[1:16])
    layer1 = rasters["layer1"]
    np.testing.assert_array_equal(layer1.spikes[2:16], _ground_truth(lava_dl_tinynet, "layer1.npy")[2:16])
    # current.npy is layer 1's synaptic input a_in = u >> 6 (i_decay 4096), without the bias we routed through u
    current = _ground_truth(lava_dl_tinynet, "current.npy")
    np.testing.assert_array_equal((layer1.u[2:16] >> 6) - graph.populations[1].quant.bias_mant, current[2:16])


def test_tinynet_reproduces_lava_dl_ground_truth_on_the_lava_backend(lava_dl_tinynet, tmp_path):
    from snnc.backends import lava
    from snnc.backends.lava import lowering

    graph = import_netx(lava_dl_tinynet / "tiny.net")
    bias = np.load(lava_dl_tinynet / "input_bias.npy").transpose(2, 1, 0)
    gated, stimuli = _bias_from_step(graph)
    steps = 19
    stimulus = {"input": encode_input(graph, bias, steps).astype(np.uint8),
                **{name: s[:steps] for name, s in stimuli.items()}}
    art = api.compile(gated, target="loihi2", out_dir=tmp_path / "tiny-loihi2")
    assert isinstance(art, lava.LavaArtifact)
    assert [c["kind"] for c in lowering.lower(art.graph)[0]["connections"]][:2] == ["conv", "conv"]
    output = art.run(stimulus)["layer2"].spikes
    truth = _ground_truth(lava_dl_tinynet, "output.npy")
    assert output[2:17].sum() > 50
    np.testing.assert_array_equal(output[2:17], truth[1:16])


def test_tinynet_compiles_for_cpu_from_the_file(lava_dl_tinynet, tmp_path):
    path = lava_dl_tinynet / "tiny.net"
    graph = load_model(path)
    spikes = encode_input(graph, np.load(lava_dl_tinynet / "input_bias.npy").transpose(2, 1, 0), 17).astype(np.uint8)
    art = api.compile(path, target="cpu", out_dir=tmp_path / "tiny")
    rasters = art.run({"input": spikes})
    expected = cpu.simulate(graph, {"input": spikes})
    np.testing.assert_array_equal(rasters["layer2"].spikes, expected["layer2"].spikes)
    assert rasters["layer2"].spikes.any()


# --------------------------------------------------------------------------- export and round trip


def _dense_chain(seed: int) -> ir.Graph:
    rng = np.random.default_rng(seed)
    sizes = [int(n) for n in rng.integers(4, 12, size=4)]
    pops = [input_pop("in", sizes[0])]
    projs = []
    for k in range(1, 4):
        n = sizes[k]
        pops.append(neuron_pop(f"l{k}", n, i_decay=int(rng.integers(1, 4097)), v_decay=int(rng.integers(0, 4097)),
                               vth=int(rng.integers(20, 200)), bias_mant=rng.integers(-10, 20, size=n), bias_exp=6))
        weight = rng.integers(-128, 128, size=(n, sizes[k - 1])) * 2
        delay = np.repeat(rng.integers(0, 5, size=(n, 1)), sizes[k - 1], axis=1)
        projs.append(dense(f"w{k}", pops[k - 1].name, f"l{k}", weight, delay=delay))
    return network(pops, projs)


def _conv_chain(seed: int) -> ir.Graph:
    rng = np.random.default_rng(seed)
    spec1 = ir.ConvSpec((2, 8, 8), (4, 4, 4), stride=(2, 2), padding=(1, 1))
    spec2 = ir.ConvSpec((4, 4, 4), (6, 3, 2), stride=(1, 2), padding=(0, 1), dilation=(1, 1), groups=2)
    pops = [input_pop("in", (2, 8, 8)),
            neuron_pop("c1", (4, 4, 4), i_decay=1024, v_decay=512, vth=60, bias_mant=rng.integers(-5, 10, 64),
                       bias_exp=6),
            neuron_pop("c2", (6, 3, 2), i_decay=4096, v_decay=256, vth=40, bias_mant=3, bias_exp=6),
            neuron_pop("fc", 5, i_decay=2048, v_decay=128, vth=50)]
    projs = [conv("k1", "in", "c1", rng.integers(-20, 40, size=(4, 2, 3, 3)), spec1),
             conv("k2", "c1", "c2", rng.integers(-30, 40, size=(6, 2, 2, 3)), spec2),
             dense("w3", "c2", "fc", rng.integers(-100, 100, size=(5, 36)),
                   delay=np.repeat(np.arange(5)[:, None], 36, axis=1))]
    return network(pops, projs)


def _stimulus(graph: ir.Graph, steps: int, seed: int) -> np.ndarray:
    size = graph.population(graph.inputs[0]).size
    return (np.random.default_rng(seed).random((steps, size)) < 0.4).astype(np.uint8)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("make", [_dense_chain, _conv_chain])
def test_export_then_import_spikes_identically(make, seed, tmp_path):
    graph = make(seed)
    path = tmp_path / "net.net"
    export_netx(graph, path)
    back = import_netx(path)
    stimulus = _stimulus(graph, 40, seed)
    before = cpu.simulate(graph, {graph.inputs[0]: stimulus})
    after = cpu.simulate(back, {"input": stimulus})
    assert before[graph.outputs[0]].spikes.any()
    np.testing.assert_array_equal(after[back.outputs[0]].spikes, before[graph.outputs[0]].spikes)
    assert back.meta["netx"]["layers"][0] == "input"


LAVA_SCRIPT = """
import sys, types
import numpy as np
for name in ("torchvision", "torchvision.ops", "torchvision.transforms", "cv2"):
    sys.modules[name] = types.ModuleType(name)
sys.path.insert(0, {lava_dir!r})
import run_lava
run_lava.install_compat()
from lava.lib.dl import netx
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.io.source import RingBuffer as Source

data = np.load({stimulus!r})  # (N, T) in snnc's C order of (C, H, W) or (N,)
steps = data.shape[1]
net = netx.hdf5.Network(net_config={net!r})
lava_shape = net.in_layer.neuron.a_in.shape  # (W, H, C) for a 3-d input
if len(lava_shape) == 3:
    data = data.reshape(*lava_shape[::-1], -1).transpose(2, 1, 0, 3)
source = Source(data=data)
source.s_out.connect(net.in_layer.neuron.a_in)
sink = Sink(shape=net.out_layer.out.shape, buffer=steps)
net.out_layer.out.connect(sink.a_in)
net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
out = sink.data.get()
net.stop()
np.save({out!r}, out)
"""


def _run_in_lava(net: Path, stimulus: np.ndarray, tmp_path: Path) -> np.ndarray:
    """Lava's output spikes (T, N) for (T, N) input spikes, in a subprocess (Lava forks workers and may hang)."""
    if importlib.util.find_spec("lava") is None:
        pytest.skip("lava-nc / lava-dl are not installed")
    import snnc.backends.lava as lava_backend

    lava_dir = str(Path(lava_backend.__file__).resolve().parent)
    np.save(tmp_path / "stimulus.npy", stimulus.T.astype(np.int64))
    script = tmp_path / "run_netx.py"
    script.write_text(textwrap.dedent(LAVA_SCRIPT).format(lava_dir=lava_dir, stimulus=str(tmp_path / "stimulus.npy"),
                                                          net=str(net), out=str(tmp_path / "out.npy")))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return np.load(tmp_path / "out.npy")


@pytest.mark.parametrize("make", [_dense_chain, _conv_chain])
def test_exported_file_runs_in_lava_netx_like_the_cpu_backend(make, tmp_path):
    graph = make(3)
    path = tmp_path / "net.net"
    export_netx(graph, path)
    stimulus = _stimulus(graph, 30, 3)
    expected = cpu.simulate(graph, {graph.inputs[0]: stimulus})[graph.outputs[0]].spikes
    lava = _run_in_lava(path, stimulus, tmp_path)
    out = graph.population(graph.outputs[0])
    if len(out.shape) == 3:  # Lava's (W, H, C) -> snnc's C order
        lava = lava.reshape(*out.shape[::-1], -1).transpose(2, 1, 0, 3).reshape(out.size, -1)
    assert expected.any()
    np.testing.assert_array_equal(lava.T.astype(bool), expected)


# --------------------------------------------------------------------------- refusals


def _write_net(path: Path, layers: list[dict]) -> Path:
    with h5py.File(path, "w") as handle:
        for i, layer in enumerate(layers):
            for key, value in layer.items():
                if key == "type":
                    handle.create_dataset(f"layer/{i}/type", (1,), "S10", [value.encode()])
                else:
                    handle.create_dataset(f"layer/{i}/{key}", data=value)
    return path


def test_unsupported_layer_type_is_refused_naming_file_layer_and_type(tmp_path):
    path = _write_net(tmp_path / "rec.net", [{"type": "input", "shape": np.array([4])},
                                            {"type": "dense_rec", "shape": np.array([3])}])
    with pytest.raises(NetxImportError, match=r"rec\.net: layer 1 \('dense_rec'\): layer type is not supported"):
        import_netx(path)


def test_sdnn_neuron_and_large_delay_are_refused(tmp_path):
    layers = [{"type": "input", "shape": np.array([4])},
              {"type": "dense", "shape": np.array([3]), "weight": np.ones((3, 4)), "neuron/type": np.bytes_("SDNN"),
               "neuron/iDecay": 0, "neuron/vDecay": 0, "neuron/vThMant": 10}]
    with pytest.raises(NetxImportError, match=r"layer 1 \('dense'\): neuron type 'SDNN' is not supported"):
        import_netx(_write_net(tmp_path / "sdnn.net", layers))
    layers[1] = {**layers[1], "neuron/type": np.bytes_("CUBA"), "delay": np.array([0, 63, 1])}
    with pytest.raises(NetxImportError, match=r"delays \[0, 63\] leave 0\.\.62"):
        import_netx(_write_net(tmp_path / "delay.net", layers))


def test_dense_layer_without_neuron_becomes_a_silent_readout(tmp_path):
    path = _write_net(tmp_path / "readout.net", [{"type": "input", "shape": np.array([4])},
                                                 {"type": "dense", "shape": np.array([3]), "weight": np.ones((3, 4))}])
    graph = import_netx(path)
    out = graph.population("layer1")
    assert out.model == "cuba_li" and not out.quant.spiking and out.quant.vth[0] == 1 << 17


def test_malformed_files_are_refused_naming_the_file(tmp_path):
    text = tmp_path / "text.net"
    text.write_text("not hdf5")
    with pytest.raises(NetxImportError, match=r"text\.net: not a netx HDF5 file"):
        import_netx(text)
    with h5py.File(tmp_path / "empty.net", "w") as handle:
        handle.create_group("simulation")
    with pytest.raises(NetxImportError, match=r"empty\.net: malformed netx file \(no '/layer' group\)"):
        import_netx(tmp_path / "empty.net")
    path = _write_net(tmp_path / "noweight.net", [{"type": "input", "shape": np.array([4])},
                                                  {"type": "dense", "shape": np.array([3])}])
    with pytest.raises(NetxImportError, match=r"noweight\.net: malformed netx file \(KeyError"):
        import_netx(path)


def test_export_refuses_non_chains_and_other_bias_exponents(tmp_path):
    branch = network([input_pop("in", 2), neuron_pop("a", 2), neuron_pop("b", 2)],
                     [dense("wa", "in", "a", np.eye(2) * 8), dense("wb", "in", "b", np.eye(2) * 8)])
    with pytest.raises(NetxExportError, match="population 'in' feeds 2 projections; netx describes a chain"):
        export_netx(branch, tmp_path / "branch.net")
    biased = network([input_pop("in", 2), neuron_pop("a", 2, bias_mant=3, bias_exp=2)],
                     [dense("wa", "in", "a", np.eye(2) * 8)])
    with pytest.raises(NetxExportError, match=r"population 'a': bias_exp must be 6 \(netx hard-codes it\), got \[2\]"):
        export_netx(biased, tmp_path / "biased.net")
    wide = network([input_pop("in", 2), neuron_pop("a", 2)], [dense("wa", "in", "a", [[300, -2], [0, 4]])])
    with pytest.raises(NetxExportError, match="projection 'wa': netx's optimize_weight_bits and Lava's Dense"):
        export_netx(wide, tmp_path / "wide.net")
    assert not list(tmp_path.glob("*.net*"))
