"""NIR export: export -> import gives the same IR; files are valid NIR; metadata carries dt and reset."""

from __future__ import annotations

import warnings
from pathlib import Path

import nir
import numpy as np
import pytest

from snnc.compiler import ir
from snnc.compiler.frontends.nir_export import NirExportError, NirExportWarning, export_nir
from snnc.compiler.frontends.nir_import import NirImportWarning, import_nir

from .test_nir_import import PAPER_FILES, assert_same_ir, import_paper, import_quietly, lif

FEED_FORWARD = ["cnn_sinabs.nir", "lif_norse.nir", "lif_rockpool.nir", "two_lif_neurons.nir"]


def round_trip(graph: ir.Graph, path: Path) -> ir.Graph:
    """Export to ``path`` and import again, failing on any import warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NirExportWarning)
        export_nir(graph, path)
    return import_quietly(path)


# --------------------------------------------------------------------------- the paper's files


@pytest.mark.parametrize("name", PAPER_FILES)
def test_paper_files_survive_export_and_import_exactly(nir_paper_dir: Path, tmp_path: Path, name: str) -> None:
    original = import_paper(nir_paper_dir / name)
    again = round_trip(original, tmp_path / name)
    assert_same_ir(original, again)
    assert again.meta["dt_from"] == "metadata" and again.meta["nir_version"] == nir.version


@pytest.mark.parametrize("name", FEED_FORWARD)
def test_exported_feed_forward_files_pass_nirs_own_type_check(nir_paper_dir: Path, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    export_nir(import_paper(nir_paper_dir / name), path)
    graph = nir.read(path, type_check=True)
    assert set(graph.inputs) and set(graph.outputs)


def test_exported_nodes_use_full_arrays_input_shape_and_unbatched_flatten(nir_paper_dir: Path) -> None:
    exported = export_nir(import_paper(nir_paper_dir / "cnn_sinabs.nir"))
    neurons = [n for n in exported.nodes.values() if isinstance(n, nir.IF)]
    assert neurons and all(n.r.ndim >= 1 and n.v_reset.shape == n.v_threshold.shape for n in neurons)
    assert all(n.metadata == {"reset_mechanism": "zero"} for n in neurons)
    convs = [n for n in exported.nodes.values() if isinstance(n, nir.Conv2d)]
    assert len(convs) == 3 and all(n.input_shape is not None for n in convs)
    (flatten,) = [n for n in exported.nodes.values() if isinstance(n, nir.Flatten)]
    assert (flatten.start_dim, flatten.end_dim) == (0, 2) and flatten.output_type["output"].tolist() == [512]
    assert exported.metadata["dt"] == 1e-4 and exported.metadata["reset_mechanism"] == "zero"
    assert exported.metadata["spike_convention"] == "unit-per-step"


# --------------------------------------------------------------------------- every primitive, hand-built


def zoo(dt: float = 1e-3) -> nir.NIRGraph:
    """One graph with every NIR 1.0 primitive, a nested graph, scalar parameters, delays and recurrence."""
    rng = np.random.default_rng(7)
    sub = nir.NIRGraph(nodes={"i": nir.Input(np.array([3])), "thr": nir.Threshold(threshold=np.full(3, 0.5)),
                              "o": nir.Output(np.array([3]))}, edges=[("i", "thr"), ("thr", "o")], type_check=False)
    scalar_lif = nir.LIF(tau=np.array(0.01), r=np.array(1.5), v_leak=np.array(0.0), v_threshold=np.array(1.0))
    nodes = {
        "in": nir.Input(np.array([2, 6, 6])),
        "conv": nir.Conv2d(input_shape=(6, 6), weight=rng.normal(size=(3, 2, 3, 3)), stride=1, padding=1, dilation=1,
                           groups=1, bias=rng.normal(size=3)),
        "lif": scalar_lif,
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "conv2": nir.Conv2d(input_shape=(3, 3), weight=rng.normal(size=(4, 3, 3, 3)), stride=1, padding=1, dilation=1,
                            groups=1, bias=np.zeros(4)),
        "if": nir.IF(r=np.ones((4, 3, 3)), v_threshold=np.ones((4, 3, 3)), metadata={"reset_mechanism": "zero"}),
        "avg": nir.AvgPool2d(kernel_size=np.array([3, 3]), stride=np.array([3, 3]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type=np.array([4, 1, 1]), start_dim=0, end_dim=-1),
        "aff": nir.Affine(weight=rng.normal(size=(5, 4)), bias=rng.normal(size=5)),
        "cuba": nir.CubaLIF(tau_syn=np.full(5, 0.005), tau_mem=np.full(5, 0.02), r=np.ones(5), v_leak=np.zeros(5),
                            v_threshold=np.ones(5), w_in=np.full(5, 2.0)),
        "rec": nir.Affine(weight=rng.normal(size=(5, 5)) * 0.1, bias=np.zeros(5)),
        "scale": nir.Scale(scale=rng.normal(size=5)),
        "delay": nir.Delay(delay=np.array([0, 1, 2, 1, 3]) * dt),
        "lin": nir.Linear(weight=rng.normal(size=(3, 5))),
        "li": nir.LI(tau=np.full(3, 0.03), r=np.ones(3), v_leak=np.full(3, 0.1)),
        "sub": sub,
        "integ": nir.I(r=np.full(3, 2.0)),
        "lin2": nir.Linear(weight=rng.normal(size=(3, 3))),
        "cubali": nir.CubaLI(tau_syn=np.full(3, 0.004), tau_mem=np.full(3, 0.01), r=np.ones(3), v_leak=np.zeros(3)),
        "lin3": nir.Linear(weight=rng.normal(size=(2, 3))),
        "readout": nir.Output(np.array([2])),
        "spikes": nir.Output(np.array([5])),
        "in1d": nir.Input(np.array([2, 8])),
        "c1": nir.Conv1d(input_shape=8, weight=rng.normal(size=(3, 2, 3)), stride=1, padding=1, dilation=1, groups=1,
                         bias=rng.normal(size=3)),
        "if1d": nir.IF(r=np.ones((3, 8)), v_threshold=np.ones((3, 8))),
    }
    edges = [("in", "conv"), ("conv", "lif"), ("lif", "pool"), ("pool", "conv2"), ("conv2", "if"), ("if", "avg"),
             ("avg", "flat"), ("flat", "aff"), ("aff", "cuba"), ("cuba", "rec"), ("rec", "cuba"), ("cuba", "spikes"),
             ("cuba", "scale"), ("scale", "delay"), ("delay", "lin"), ("lin", "li"), ("li", "sub"), ("sub", "integ"),
             ("integ", "lin2"), ("lin2", "cubali"), ("cubali", "lin3"), ("lin3", "readout"), ("in1d", "c1"),
             ("c1", "if1d")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": dt, "reset_mechanism": "subtract"}, type_check=False)


def test_zoo_of_every_primitive_imports_as_expected(tmp_path: Path) -> None:
    path = tmp_path / "zoo.nir"
    nir.write(path, zoo(), compression=None)
    graph = import_quietly(path)
    assert graph.dt == 1e-3 and graph.meta["dt_from"] == "metadata" and graph.meta["reset_from"] == "metadata"
    models = {p.name: p.model for p in graph.populations}
    assert models["lif"] == "lif" and graph.population("lif").shape == (3, 6, 6)
    assert models["sub.thr"] == "threshold" and models["readout"] == "li" and models["cubali"] == "cuba_li"
    assert graph.population("lif").reset == "subtract" and graph.population("if").reset == "zero"
    assert set(graph.outputs) == {"cuba", "readout"} and set(graph.inputs) == {"in", "in1d"}
    kinds = {p.name: p.kind for p in graph.projections}
    assert kinds["conv"] == kinds["pool+conv2"] == kinds["c1"] == "conv"
    assert kinds["li->sub.thr"] == kinds["sub.thr->integ"] == "sparse"
    delayed = next(p for p in graph.projections if p.name == "scale+delay+lin")
    assert delayed.max_delay == 3


def test_zoo_survives_export_and_import_exactly_and_warns_about_subtract(tmp_path: Path) -> None:
    original = import_quietly(zoo())
    with pytest.warns(NirExportWarning, match="reset by subtraction: NIR cannot represent that; recorded in metadata only"):
        export_nir(original, tmp_path / "zoo.nir")
    again = import_quietly(tmp_path / "zoo.nir")
    assert_same_ir(original, again)
    assert again.population("lif").reset == "subtract" and again.population("if").reset == "zero"
    assert again.meta["reset_from"] == "metadata" and again.meta["dt_from"] == "metadata"


def test_exported_metadata_dt_and_reset_are_honoured_and_options_still_win(tmp_path: Path) -> None:
    original = import_quietly(zoo(dt=2e-3))
    round_trip(original, tmp_path / "zoo.nir")
    again = import_quietly(tmp_path / "zoo.nir")
    assert again.dt == 2e-3 and again.population("cuba").reset == "subtract"
    forced = import_quietly(tmp_path / "zoo.nir", dt=1e-3, reset="zero")
    assert forced.dt == 1e-3 and forced.meta["dt_from"] == "option"
    assert all(p.reset == "zero" for p in forced.populations)
    # delays are stored in seconds, so another dt rescales them into steps
    delayed = next(p for p in forced.projections if p.name == "scale+delay+lin")
    assert delayed.max_delay == 6


# --------------------------------------------------------------------------- hand-built IR graphs


def hand_built() -> ir.Graph:
    """IR graph with sparse and dense delays, a repeated sparse pair, flat conv sources and odd biases."""
    rng = np.random.default_rng(11)

    def pop(name: str, shape: tuple[int, ...], model: str, reset: str = "zero", bias: np.ndarray | None = None,
            **values: float) -> ir.Population:
        params = {k: np.full(shape, values.get(k, 1.0 if k != "v_reset" else 0.0)) for k in ir.NEURON_MODELS[model]}
        if "tau_mem" in params:
            params["tau_mem"] = np.full(shape, 0.02)
        if "tau_syn" in params:
            params["tau_syn"] = np.full(shape, 0.005)
        if "bias" in params:
            params["bias"] = np.zeros(shape) if bias is None else bias.reshape(shape)
        return ir.Population(name=name, shape=shape, model=model, params=params, reset=reset)

    pops = (
        pop("in", (4,), "input"),
        pop("grid", (2, 2, 2), "lif", reset="subtract", bias=rng.normal(size=8)),
        pop("flat", (50,), "if"),
        pop("conv_dst", (3, 3, 3), "cuba_lif", bias=np.repeat([0.5, -1.0, 2.0], 9)),
        pop("seq", (2, 6), "i"),
        pop("seq_out", (3, 6), "threshold"),
        pop("leaky", (3,), "cuba_li", bias=np.array([0.1, 0.2, 0.3])),
    )
    rows = np.array([0, 0, 1, 5, 5, 7])
    cols = np.array([1, 1, 3, 0, 2, 3])
    sparse_delay = np.array([0, 4, 2, 1, 1, 0])
    dense_delay = rng.integers(0, 3, size=(50, 8))
    projs = (
        ir.Projection("to_grid", "in", "grid", "sparse", rng.normal(size=6), rows=rows, cols=cols, delay=sparse_delay),
        ir.Projection("grid_to_flat", "grid", "flat", "dense", rng.normal(size=(50, 8)), delay=dense_delay),
        ir.Projection("flat_conv", "flat", "conv_dst", "conv", rng.normal(size=(3, 2, 3, 3)),
                      conv=ir.ConvSpec((2, 5, 5), (3, 3, 3), stride=(2, 2), padding=(1, 1))),
        ir.Projection("seq_conv", "seq", "seq_out", "conv", rng.normal(size=(3, 2, 1, 3)),
                      conv=ir.ConvSpec((2, 1, 6), (3, 1, 6), padding=(0, 1))),
        ir.Projection("to_leaky", "seq_out", "leaky", "sparse", np.array([1.0, -2.0]), rows=np.array([0, 2]),
                      cols=np.array([4, 17])),
        ir.Projection("grid->grid", "grid", "grid", "sparse", np.ones(8), rows=np.arange(8), cols=np.arange(8)),
    )
    graph = ir.Graph(populations=pops, projections=projs, inputs=("in",), outputs=("leaky", "grid", "in"), dt=5e-4)
    return ir.check(graph)


def test_hand_built_ir_graph_survives_export_and_import_exactly(tmp_path: Path) -> None:
    graph = hand_built()
    with pytest.warns(NirExportWarning, match=r"\['grid'\]"):
        export_nir(graph, tmp_path / "hand.nir")
    with warnings.catch_warnings():
        warnings.simplefilter("error", NirImportWarning)
        again = import_nir(tmp_path / "hand.nir")
    assert_same_ir(graph, again)


def test_exported_conv1d_and_delay_branches_look_like_nir(tmp_path: Path) -> None:
    with pytest.warns(NirExportWarning):
        exported = export_nir(hand_built())
    conv1d = exported.nodes["seq_conv"]
    assert isinstance(conv1d, nir.Conv1d) and conv1d.weight.shape == (3, 2, 3)
    delays = sorted(float(n.delay[0]) for n in exported.nodes.values() if isinstance(n, nir.Delay))
    assert delays == pytest.approx([5e-4, 5e-4, 1e-3, 1e-3, 2e-3])
    assert exported.nodes["to_grid"].metadata == {"snnc_projection": "to_grid", "snnc_kind": "sparse"}


def test_export_without_a_path_writes_nothing_and_with_one_leaves_no_temporary_files(tmp_path: Path) -> None:
    graph = import_quietly(zoo())
    with pytest.warns(NirExportWarning):
        assert isinstance(export_nir(graph), nir.NIRGraph)
    assert list(tmp_path.iterdir()) == []
    with pytest.warns(NirExportWarning):
        export_nir(graph, tmp_path / "zoo.nir")
    assert [p.name for p in tmp_path.iterdir()] == ["zoo.nir"]


def test_a_bias_no_nir_node_can_carry_is_an_export_error() -> None:
    graph = hand_built()
    pops = tuple(ir.replace(p, params={**p.params, "bias": np.arange(27.0).reshape(3, 3, 3)})
                 if p.name == "conv_dst" else p for p in graph.populations)
    with pytest.raises(NirExportError, match="population 'conv_dst' has a non-zero bias"):
        export_nir(ir.replace(graph, populations=pops))


def test_a_name_hdf5_cannot_hold_is_an_export_error() -> None:
    inp = ir.Population("a/b", (1,), "input")
    graph = ir.Graph(populations=(inp,), projections=(), inputs=("a/b",), outputs=(), dt=1e-3)
    with pytest.raises(NirExportError, match="'a/b'"):
        export_nir(graph)


def test_li_readout_exports_as_li_and_comes_back_as_the_same_output(tmp_path: Path) -> None:
    nodes = {"in": nir.Input(np.array([2])), "lif": lif(2), "fc": nir.Linear(weight=np.ones((1, 2))),
             "out": nir.Output(np.array([1]))}
    graph = import_quietly(nir.NIRGraph(nodes=nodes, edges=[("in", "lif"), ("lif", "fc"), ("fc", "out")],
                                        type_check=False))
    exported = export_nir(graph, tmp_path / "r.nir")
    assert isinstance(exported.nodes["out"], nir.LI)
    assert_same_ir(graph, import_quietly(tmp_path / "r.nir"))


def test_refractory_and_reset_none_survive_a_nir_round_trip(tmp_path):
    params = {"tau_mem": np.full(3, 1e-3), "r": np.ones(3), "v_leak": np.zeros(3), "v_threshold": np.ones(3),
              "v_reset": np.full(3, 0.25), "bias": np.zeros(3)}
    graph = ir.Graph(
        populations=(ir.Population("in", (2,), "input"),
                     ir.Population("a", (3,), "lif", params, reset="none", refractory=4)),
        projections=(ir.Projection("w", "in", "a", "dense", np.ones((3, 2))),),
        inputs=("in",), outputs=("a",), dt=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_nir(graph, tmp_path / "g.nir")
    back = import_nir(tmp_path / "g.nir")
    assert back.population("a").reset == "none"
    assert back.population("a").refractory == 4
    np.testing.assert_array_equal(back.population("a").params["v_reset"], 0.25)


# --------------------------------------------------------------------------- quantized graphs


def quantized_edge_cases() -> ir.Graph:
    """Integers NIR's float matrices cannot hold: repeated sparse pairs, a zero weight's delay, vreset, refractory."""
    from .test_cpu_semantics import dense, input_pop, network, neuron_pop, sparse

    return network(
        [input_pop("in", 2),
         neuron_pop("a", 3, i_decay=[0, 1, 4096], v_decay=4095, vth=[0, 1, 131_071], bias_mant=[-4095, 0, 4095],
                    bias_exp=[0, 3, 7], reset="subtract", vreset=[-3, 0, 3], refractory=2, state_bits=16),
         neuron_pop("out", 2, spiking=False, v_decay=2048)],
        [dense("w", "in", "a", [[1, 0], [-128, 127], [0, 5]], weight_exp=3, delay=[[0, 7], [1, 0], [63, 2]]),
         sparse("rec", "a", "a", rows=[0, 0, 2, 1], cols=[1, 1, 1, 0], weight=[2, -2, 5, 7], delay=[1, 1, 0, 3]),
         dense("o", "a", "out", [[3, -1, 0], [0, 0, 2]])])


def test_a_quantized_graph_survives_nir_export_and_import_exactly(tmp_path: Path) -> None:
    graph = quantized_edge_cases()
    again = round_trip(graph, tmp_path / "q.nir")
    assert again.is_quantized
    assert ir.graph_hash(ir.replace(again, meta={})) == ir.graph_hash(graph)


def test_quantize_pass_output_keeps_its_integers_and_dtypes_through_nir(nir_paper_dir: Path, tmp_path: Path) -> None:
    from snnc.compiler import hw as hwmod
    from snnc.compiler import pipeline

    float_graph = import_paper(nir_paper_dir / "cnn_sinabs.nir")
    quantized = pipeline.compile_graph(float_graph, hwmod.bundled_hw("cpu"), until="quantize")
    again = round_trip(quantized, tmp_path / "cnn_q.nir")
    for pa, pb in zip(quantized.projections, again.projections, strict=True):
        assert pa.quant is not None and pb.quant is not None
        assert pb.quant.weight.dtype == pa.quant.weight.dtype
        np.testing.assert_array_equal(pb.quant.weight, pa.quant.weight)
    stripped = ir.replace(quantized, meta={})
    assert ir.graph_hash(ir.replace(again, meta={})) == ir.graph_hash(stripped)


def test_float_graphs_are_exported_without_integer_metadata(nir_paper_dir: Path) -> None:
    exported = export_nir(import_paper(nir_paper_dir / "two_lif_neurons.nir"))
    assert not any("snnc_quant" in (node.metadata or {}) for node in exported.nodes.values())


def test_integers_that_disagree_with_edited_nir_weights_are_dropped_with_a_warning(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NirExportWarning)
        exported = export_nir(quantized_edge_cases())
    exported.nodes["o"].weight[0, 0] = 4.0  # another tool edits the float weights and keeps the metadata
    nir.write(tmp_path / "edited.nir", exported, compression=None)
    with pytest.warns(NirImportWarning, match="projection 'o': the stored weights disagree"):
        graph = import_nir(tmp_path / "edited.nir")
    assert not graph.is_quantized and all(p.quant is None for p in graph.populations)
