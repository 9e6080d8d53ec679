"""NIR import: the paper's real files, every primitive, composition, metadata and malformed input."""

from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest

from snnc.compiler import ir
from snnc.compiler.frontends.nir_import import (
    DEFAULT_DT,
    DEFAULT_RESET,
    NirImportError,
    NirImportWarning,
    conv_matrix,
    import_nir,
)

PAPER_FILES = [
    "braille_noDelay_bias_zero.nir",
    "braille_noDelay_noBias_subtract.nir",
    "cnn_sinabs.nir",
    "lif_norse.nir",
    "lif_rockpool.nir",
    "two_lif_neurons.nir",
]


# --------------------------------------------------------------------------- helpers shared with test_nir_export


def import_quietly(source: object, **options: object) -> ir.Graph:
    """import_nir, failing on any NirImportWarning (only lif_rockpool.nir deserves one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", NirImportWarning)
        return import_nir(source, **options)


def import_paper(path: Path) -> ir.Graph:
    if path.name == "lif_rockpool.nir":
        with pytest.warns(NirImportWarning):
            return import_nir(path)
    return import_quietly(path)


def dump_without_meta(graph: ir.Graph) -> str:
    return "".join(line for line in ir.dump(graph).splitlines(True) if not line.startswith("  meta "))


def _same_array(a: np.ndarray | None, b: np.ndarray | None, what: str) -> None:
    if a is None or b is None:
        assert a is None and b is None, what
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    assert np.array_equal(a, b), f"{what}: values differ"


def assert_same_ir(a: ir.Graph, b: ir.Graph) -> None:
    """Same IR up to graph.meta: identical dump text and every array exactly equal."""
    assert dump_without_meta(a) == dump_without_meta(b)
    assert a.dt == b.dt
    assert (a.inputs, a.outputs) == (b.inputs, b.outputs)
    assert [p.name for p in a.populations] == [p.name for p in b.populations]
    for pa, pb in zip(a.populations, b.populations):
        assert (pa.shape, pa.model, pa.reset) == (pb.shape, pb.model, pb.reset), pa.name
        assert set(pa.params) == set(pb.params), pa.name
        for key in pa.params:
            _same_array(pa.params[key], pb.params[key], f"{pa.name}.{key}")
    assert [p.name for p in a.projections] == [p.name for p in b.projections]
    for ja, jb in zip(a.projections, b.projections):
        assert (ja.src, ja.dst, ja.kind, ja.conv) == (jb.src, jb.dst, jb.kind, jb.conv), ja.name
        for key in ("weight", "rows", "cols", "delay"):
            _same_array(getattr(ja, key), getattr(jb, key), f"{ja.name}.{key}")


def projection_matrix(proj: ir.Projection, n_dst: int, n_src: int) -> np.ndarray:
    """Dense (dst, src) matrix of a projection, delays ignored; conv via the reference loops below."""
    if proj.kind == "dense":
        return np.asarray(proj.weight)
    if proj.kind == "sparse":
        out = np.zeros((n_dst, n_src))
        np.add.at(out, (proj.rows, proj.cols), proj.weight)
        return out
    c = proj.conv
    return reference_conv(proj.weight, c.in_shape, c.stride, c.padding, c.dilation, c.groups)


def reference_conv(kernel: np.ndarray, in_shape: tuple[int, int, int], stride: tuple[int, int],
                   padding: tuple[int, int], dilation: tuple[int, int] = (1, 1), groups: int = 1) -> np.ndarray:
    """PyTorch conv2d as a dense matrix, straight from the definition (slow loops, tiny inputs only)."""
    c_out, cin_g, kh, kw = kernel.shape
    c_in, h, w = in_shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((c_out * ho * wo, c_in * h * w))
    for o, y, x, c, u, v in itertools.product(range(c_out), range(ho), range(wo), range(cin_g), range(kh), range(kw)):
        iy = y * stride[0] - padding[0] + u * dilation[0]
        ix = x * stride[1] - padding[1] + v * dilation[1]
        if 0 <= iy < h and 0 <= ix < w:
            ci = (o // (c_out // groups)) * cin_g + c
            out[(o * ho + y) * wo + x, (ci * h + iy) * w + ix] += kernel[o, c, u, v]
    return out


def reference_sum_pool(in_shape: tuple[int, int, int], k: int, s: int) -> np.ndarray:
    c_in, h, w = in_shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    out = np.zeros((c_in * ho * wo, c_in * h * w))
    for c, y, x, a, b in itertools.product(range(c_in), range(ho), range(wo), range(k), range(k)):
        out[(c * ho + y) * wo + x, (c * h + y * s + a) * w + x * s + b] += 1.0
    return out


def lif(n: int | tuple[int, ...], **kw: float) -> nir.LIF:
    shape = (n,) if isinstance(n, int) else n
    return nir.LIF(tau=np.full(shape, kw.get("tau", 0.01)), r=np.full(shape, kw.get("r", 1.0)),
                   v_leak=np.full(shape, kw.get("v_leak", 0.0)), v_threshold=np.full(shape, 1.0),
                   v_reset=np.zeros(shape))


def small_graph(weight: np.ndarray | None = None, metadata: dict | None = None) -> nir.NIRGraph:
    """Input(4) -> Affine -> LIF(3) -> Output."""
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(3, 4)) if weight is None else weight
    nodes = {"in": nir.Input(np.array([4])), "fc": nir.Affine(weight=weight, bias=np.arange(3.0)),
             "lif": lif(3), "out": nir.Output(np.array([3]))}
    return nir.NIRGraph(nodes=nodes, edges=[("in", "fc"), ("fc", "lif"), ("lif", "out")],
                        metadata=metadata or {}, type_check=False)


def write(graph: nir.NIRGraph, path: Path) -> Path:
    nir.write(path, graph, compression=None)
    return path


# --------------------------------------------------------------------------- the paper's files


@pytest.mark.parametrize("name", PAPER_FILES)
def test_every_paper_file_imports_and_passes_the_float_check(nir_paper_dir: Path, name: str) -> None:
    graph = import_paper(nir_paper_dir / name)
    assert ir.check(graph, "float") is graph
    assert graph.dt == DEFAULT_DT
    assert graph.meta["format"] == "nir" and graph.meta["source"].endswith(name)
    assert graph.meta["dt_from"] == "default" and graph.meta["reset_from"] == "default"
    assert graph.meta["nir_version"] in ("0.1.1", "0.2.0")
    assert graph.outputs and graph.inputs


def test_lif_rockpool_output_shape_mismatch_is_a_warning_naming_node_and_shapes(nir_paper_dir: Path) -> None:
    with pytest.warns(NirImportWarning) as record:
        graph = import_nir(nir_paper_dir / "lif_rockpool.nir")
    message = str(record[0].message)
    assert "'output'" in message and "'1_LIFNeuronTorch'" in message
    assert "[1, 1, 1]" in message and "[1]" in message
    assert graph.outputs == ("1_LIFNeuronTorch",)
    assert graph.population("1_LIFNeuronTorch").params["r"][0] == pytest.approx(24.0197, abs=1e-4)


def test_cnn_sinabs_becomes_convs_a_merged_pool_conv_and_two_dense_layers(nir_paper_dir: Path) -> None:
    graph = import_quietly(nir_paper_dir / "cnn_sinabs.nir")
    assert graph.inputs == ("input",) and graph.population("input").shape == (2, 34, 34)
    assert graph.outputs == ("12",)
    assert {p.model for p in graph.populations if p.name != "input"} == {"if"}
    assert graph.population("6").shape == (8, 8, 8)
    proj = {p.name: p for p in graph.projections}
    assert set(proj) == {"0", "2", "4+5", "7+9", "11"}
    assert proj["0"].kind == "conv" and proj["0"].conv.stride == (2, 2) and proj["0"].conv.in_shape == (2, 34, 34)
    merged = proj["4+5"]
    assert (merged.src, merged.dst, merged.kind) == ("3", "6", "conv")
    assert merged.weight.shape == (8, 16, 6, 6)
    assert merged.conv.stride == (2, 2) and merged.conv.padding == (2, 2)
    # the merged kernel equals the pool matrix followed by the conv matrix
    source = nir.read(nir_paper_dir / "cnn_sinabs.nir", type_check=False)
    conv5 = source.nodes["5"]
    pool = conv_matrix(ir.ConvSpec((16, 16, 16), (16, 8, 8), (2, 2), groups=16), np.ones((16, 1, 2, 2)))
    conv = conv_matrix(ir.ConvSpec((16, 8, 8), (8, 8, 8), (1, 1), (1, 1)), conv5.weight.astype(np.float64))
    np.testing.assert_allclose(conv_matrix(merged.conv, merged.weight).toarray(), (conv @ pool).toarray(), atol=1e-12)
    # SumPool2d "7" folds into the 128 -> 256 Affine "9": dense over the 512 neurons of "6"
    assert (proj["7+9"].src, proj["7+9"].dst, proj["7+9"].kind) == ("6", "10", "dense")
    assert proj["7+9"].weight.shape == (256, 512)
    pool7 = reference_sum_pool((8, 8, 8), 2, 2)
    np.testing.assert_allclose(proj["7+9"].weight, source.nodes["9"].weight @ pool7, rtol=1e-6)
    assert proj["11"].kind == "dense" and proj["11"].weight.shape == (10, 256)


def test_braille_has_a_recurrent_projection_and_folds_fc_biases_into_population_bias(nir_paper_dir: Path) -> None:
    path = nir_paper_dir / "braille_noDelay_bias_zero.nir"
    graph = import_quietly(path)
    source = nir.read(path, type_check=False)
    rec = [p for p in graph.projections if p.src == "lif1.lif" and p.dst == "lif1.lif"]
    assert len(rec) == 1 and rec[0].name == "lif1.w_rec" and rec[0].kind == "dense"
    lif1 = graph.population("lif1.lif")
    assert lif1.model == "cuba_lif" and lif1.shape == (38,)
    expected = source.nodes["fc1"].bias.astype(np.float64) + source.nodes["lif1.w_rec"].bias.astype(np.float64)
    np.testing.assert_array_equal(lif1.params["bias"], expected)
    np.testing.assert_array_equal(graph.population("lif2").params["bias"], source.nodes["fc2"].bias.astype(np.float64))
    subtract = import_quietly(nir_paper_dir / "braille_noDelay_noBias_subtract.nir")
    assert any(p.src == p.dst == "lif1.lif" for p in subtract.projections)
    assert not np.any(subtract.population("lif1.lif").params["bias"])


def test_two_lif_neurons_keeps_v_leak(nir_paper_dir: Path) -> None:
    graph = import_quietly(nir_paper_dir / "two_lif_neurons.nir")
    assert graph.population("lif1").params["v_leak"][0] == 1.2
    assert graph.inputs == ("in",) and graph.outputs == ("lif2",)
    assert [(p.name, p.src, p.dst) for p in graph.projections] == [("linear1", "in", "lif1"), ("linear2", "lif1", "lif2")]


# --------------------------------------------------------------------------- primitives and composition


def test_every_neuron_type_maps_to_its_model_with_bias_and_v_reset_defaults() -> None:
    shape = (2,)
    nodes = {
        "in": nir.Input(np.array([2])),
        "lif": lif(2), "if": nir.IF(r=np.ones(shape), v_threshold=np.ones(shape)),
        "li": nir.LI(tau=np.full(shape, 0.02), r=np.ones(shape), v_leak=np.zeros(shape)),
        "cuba_lif": nir.CubaLIF(tau_syn=np.full(shape, 0.005), tau_mem=np.full(shape, 0.02), r=np.ones(shape),
                                v_leak=np.zeros(shape), v_threshold=np.ones(shape), w_in=2.0),
        "cuba_li": nir.CubaLI(tau_syn=np.full(shape, 0.005), tau_mem=np.full(shape, 0.02), r=np.ones(shape),
                              v_leak=np.zeros(shape)),
        "i": nir.I(r=np.full(shape, 3.0)), "thr": nir.Threshold(threshold=np.full(shape, 0.5)),
    }
    edges = [("in", n) for n in nodes if n != "in"]
    graph = import_quietly(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    models = {p.name: p.model for p in graph.populations}
    assert models == {"in": "input", "lif": "lif", "if": "if", "li": "li", "cuba_lif": "cuba_lif",
                      "cuba_li": "cuba_li", "i": "i", "thr": "threshold"}
    for pop in graph.populations:
        assert set(pop.params) == set(ir.NEURON_MODELS[pop.model])
    assert graph.population("lif").params["tau_mem"][0] == 0.01
    assert graph.population("cuba_lif").params["w_in"].tolist() == [2.0, 2.0]
    assert graph.population("thr").params["v_threshold"].tolist() == [0.5, 0.5]
    assert not np.any(graph.population("if").params["v_reset"])
    # straight edges are identity projections named after both ends
    direct = graph.projections_into("lif")[0]
    assert (direct.name, direct.kind) == ("in->lif", "sparse")
    assert direct.rows.tolist() == [0, 1] and direct.cols.tolist() == [0, 1] and direct.weight.tolist() == [1.0, 1.0]


def test_scalar_neuron_parameters_are_broadcast_to_the_upstream_shape() -> None:
    scalar = nir.LIF(tau=np.array(0.01), r=np.array(2.0), v_leak=np.array(0.0), v_threshold=np.array(1.0))
    nodes = {"in": nir.Input(np.array([4])), "fc": nir.Linear(weight=np.ones((3, 4))), "lif": scalar,
             "out": nir.Output(np.array([3]))}
    graph = import_quietly(nir.NIRGraph(nodes=nodes, edges=[("in", "fc"), ("fc", "lif"), ("lif", "out")],
                                        type_check=False))
    pop = graph.population("lif")
    assert pop.shape == (3,)
    assert pop.params["r"].tolist() == [2.0] * 3 and pop.params["v_reset"].tolist() == [0.0] * 3


def test_flatten_without_input_type_takes_the_shape_arriving_from_upstream() -> None:
    scalar = nir.I(r=np.array(1.0))
    nodes = {"in": nir.Input(np.array([2, 2, 3])), "flat": nir.Flatten(input_type=None, start_dim=1, end_dim=-1),
             "i": scalar}
    graph = import_quietly(nir.NIRGraph(nodes=nodes, edges=[("in", "flat"), ("flat", "i")], type_check=False))
    assert graph.population("i").shape == (2, 6)
    (proj,) = graph.projections
    assert (proj.name, proj.kind, proj.weight.size) == ("flat", "sparse", 12)


def test_unsupported_parameters_are_errors_naming_the_node() -> None:
    batched = nir.Affine(weight=np.ones((2, 3, 4)), bias=np.zeros(3))
    graph = nir.NIRGraph(nodes={"in": nir.Input(np.array([4])), "fc": batched, "lif": lif(3)},
                         edges=[("in", "fc"), ("fc", "lif")], type_check=False)
    with pytest.raises(NirImportError, match=r"node 'fc' weight has shape \(2, 3, 4\)"):
        import_nir(graph)
    same = nir.Conv2d(input_shape=(4, 4), weight=np.ones((1, 1, 2, 2)), stride=1, padding="same", dilation=1,
                      groups=1, bias=np.zeros(1))
    graph = nir.NIRGraph(nodes={"in": nir.Input(np.array([1, 4, 4])), "c": same, "lif": lif((1, 4, 4))},
                         edges=[("in", "c"), ("c", "lif")], type_check=False)
    with pytest.raises(NirImportError, match="node 'c' padding 'same' with an even kernel"):
        import_nir(graph)


def reference_pool_conv_graph(pool_kernel: int, pool_stride: int, seed: int,
                              average: bool = False) -> tuple[nir.NIRGraph, np.ndarray]:
    """Input(2,6,6) -> SumPool2d/AvgPool2d -> Conv2d(3x3, pad 1) -> IF, and the dense product of its maps by loops."""
    rng = np.random.default_rng(seed)
    pooled = (6 - pool_kernel) // pool_stride + 1
    weight = rng.normal(size=(3, 2, 3, 3))
    nodes = {
        "in": nir.Input(np.array([2, 6, 6])),
        "pool": (nir.AvgPool2d if average else nir.SumPool2d)(
            kernel_size=np.array([pool_kernel] * 2), stride=np.array([pool_stride] * 2), padding=np.array([0, 0])),
        "conv": nir.Conv2d(input_shape=None, weight=weight, stride=1, padding=1, dilation=1, groups=1,
                           bias=np.zeros(3)),
        "if": nir.IF(r=np.ones((3, pooled, pooled)), v_threshold=np.ones((3, pooled, pooled))),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=[("in", "pool"), ("pool", "conv"), ("conv", "if")], type_check=False)
    pool = reference_sum_pool((2, 6, 6), pool_kernel, pool_stride) / (pool_kernel**2 if average else 1)
    return graph, reference_conv(weight, (2, pooled, pooled), (1, 1), (1, 1)) @ pool


@pytest.mark.parametrize(("seed", "average"), [(0, False), (1, False), (2, True)])
def test_pool_then_conv_merges_into_one_conv_equal_to_the_product_of_the_maps(seed: int, average: bool) -> None:
    graph, expected = reference_pool_conv_graph(2, 2, seed, average)
    result = import_quietly(graph)
    (proj,) = result.projections
    assert (proj.name, proj.kind, proj.weight.shape) == ("pool+conv", "conv", (3, 2, 6, 6))
    assert proj.conv.stride == (2, 2) and proj.conv.padding == (2, 2)
    np.testing.assert_allclose(projection_matrix(proj, 27, 72), expected, atol=1e-12)


def test_pool_with_overlapping_windows_and_conv_compose_to_the_product_of_the_maps() -> None:
    graph, expected = reference_pool_conv_graph(2, 1, 3)
    (proj,) = import_quietly(graph).projections
    assert proj.kind in ("dense", "sparse")
    np.testing.assert_allclose(projection_matrix(proj, expected.shape[0], 72), expected, atol=1e-12)


def test_conv_matrix_matches_the_reference_loops_with_groups_stride_padding_and_dilation() -> None:
    rng = np.random.default_rng(4)
    kernel = rng.normal(size=(4, 2, 3, 2))
    spec = ir.ConvSpec((4, 7, 6), (4, 4, 4), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    assert ir.conv_output_shape(spec, (3, 2)) == (4, 4)
    np.testing.assert_allclose(conv_matrix(spec, kernel).toarray(),
                               reference_conv(kernel, (4, 7, 6), (2, 1), (1, 0), (1, 2), 2), atol=1e-12)


def test_avgpool_alone_is_a_depthwise_conv_and_conv1d_is_a_height_one_conv() -> None:
    rng = np.random.default_rng(5)
    w1 = rng.normal(size=(3, 2, 3))
    nodes = {
        "in": nir.Input(np.array([2, 4, 4])),
        "avg": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "if": nir.IF(r=np.ones((2, 2, 2)), v_threshold=np.ones((2, 2, 2))),
        "in1": nir.Input(np.array([2, 8])),
        "c1": nir.Conv1d(input_shape=8, weight=w1, stride=2, padding=1, dilation=1, groups=1, bias=np.array([1., 2, 3])),
        "i1": nir.I(r=np.ones((3, 4))),
    }
    edges = [("in", "avg"), ("avg", "if"), ("in1", "c1"), ("c1", "i1")]
    graph = import_quietly(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    avg, c1 = graph.projections_into("if")[0], graph.projections_into("i1")[0]
    assert avg.kind == "conv" and avg.conv.groups == 2 and np.all(avg.weight == 0.25)
    assert c1.kind == "conv" and c1.conv.in_shape == (2, 1, 8) and c1.conv.out_shape == (3, 1, 4)
    assert c1.conv.stride == (1, 2) and c1.conv.padding == (0, 1)
    np.testing.assert_array_equal(c1.weight[:, :, 0, :], w1)
    np.testing.assert_array_equal(graph.population("i1").params["bias"], np.repeat([[1.0], [2.0], [3.0]], 4, axis=1))


def test_delays_become_per_synapse_steps_split_by_value() -> None:
    dt = 1e-3
    weight = np.array([[1.0, 2.0, 0.0], [0.0, 3.0, 4.0]])
    nodes = {"in": nir.Input(np.array([3])), "d": nir.Delay(delay=np.array([0.0, 2e-3, 5e-3])),
             "fc": nir.Linear(weight=weight), "lif": lif(2), "s": nir.Scale(scale=np.array([2.0, -1.0])),
             "d2": nir.Delay(delay=np.array([1e-3, 0.0]))}
    edges = [("in", "d"), ("d", "fc"), ("fc", "s"), ("s", "d2"), ("d2", "lif")]
    graph = import_quietly(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), dt=dt)
    (proj,) = graph.projections
    # 4 of 6 synapses: dense, with a delay per synapse
    assert (proj.name, proj.kind) == ("d+fc+s+d2", "dense")
    assert proj.weight.tolist() == [[2.0, 4.0, 0.0], [0.0, -3.0, -4.0]]
    assert proj.delay.tolist() == [[1, 3, 0], [0, 2, 5]]


def test_one_synapse_reached_with_two_delays_is_a_sparse_projection_repeating_the_pair() -> None:
    nodes = {"in": nir.Input(np.array([1])), "fan": nir.Linear(weight=np.ones((2, 1))),
             "d": nir.Delay(delay=np.array([0.0, 3e-4])), "sum": nir.Linear(weight=np.array([[1.0, 2.0]])), "lif": lif(1)}
    edges = [("in", "fan"), ("fan", "d"), ("d", "sum"), ("sum", "lif")]
    (proj,) = import_quietly(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)).projections
    assert proj.kind == "sparse"
    assert proj.rows.tolist() == [0, 0] and proj.cols.tolist() == [0, 0]
    assert proj.weight.tolist() == [1.0, 2.0] and proj.delay.tolist() == [0, 3]


def test_delay_that_is_not_a_whole_number_of_steps_is_an_error_naming_the_node() -> None:
    nodes = {"in": nir.Input(np.array([2])), "late": nir.Delay(delay=np.array([1.5e-4, 0.0])), "lif": lif(2)}
    graph = nir.NIRGraph(nodes=nodes, edges=[("in", "late"), ("late", "lif")], type_check=False)
    with pytest.raises(NirImportError, match="node 'late' delay 0.00015 s"):
        import_nir(graph)


def test_nested_graphs_are_flattened_with_dotted_names_and_pass_through_ports() -> None:
    inner = nir.NIRGraph(nodes={"i": nir.Input(np.array([3])), "fc": nir.Linear(weight=np.eye(3) * 2),
                                "lif": lif(3), "o": nir.Output(np.array([3]))},
                         edges=[("i", "fc"), ("fc", "lif"), ("lif", "o")], type_check=False)
    nodes = {"in": nir.Input(np.array([3])), "sub": inner, "out": nir.Output(np.array([3])), "if": nir.IF(
        r=np.ones(3), v_threshold=np.ones(3))}
    graph = import_quietly(nir.NIRGraph(nodes=nodes, edges=[("in", "sub"), ("sub", "out"), ("sub", "if")],
                                        type_check=False))
    assert [p.name for p in graph.populations] == ["in", "sub.lif", "if"]
    assert graph.outputs == ("sub.lif",)
    names = {p.name: (p.src, p.dst, p.kind) for p in graph.projections}
    assert names == {"sub.fc": ("in", "sub.lif", "dense"), "sub.lif->if": ("sub.lif", "if", "sparse")}


def test_output_behind_linear_nodes_gets_an_li_readout_that_copies_its_input() -> None:
    nodes = {"in": nir.Input(np.array([4])), "lif": lif(4), "fc": nir.Affine(weight=np.ones((2, 4)), bias=np.array([1., 2])),
             "readout": nir.Output(np.array([2]))}
    graph = import_quietly(nir.NIRGraph(nodes=nodes, edges=[("in", "lif"), ("lif", "fc"), ("fc", "readout")],
                                        type_check=False), dt=5e-4)
    pop = graph.population("readout")
    assert pop.model == "li" and graph.outputs == ("readout",)
    assert pop.params["tau_mem"].tolist() == [5e-4, 5e-4] and pop.params["r"].tolist() == [1.0, 1.0]
    assert pop.params["v_leak"].tolist() == [0.0, 0.0] and pop.params["bias"].tolist() == [1.0, 2.0]
    assert graph.projections_into("readout")[0].name == "fc"


def test_biases_are_pushed_through_later_maps_and_fan_in_counts_them_once() -> None:
    nodes = {"a": nir.Input(np.array([2])), "b": nir.Input(np.array([2])),
             "fc": nir.Affine(weight=np.eye(2), bias=np.array([1.0, 2.0])), "s": nir.Scale(scale=np.array([3.0, 5.0])),
             "lif": lif(2)}
    edges = [("a", "fc"), ("b", "fc"), ("fc", "s"), ("s", "lif")]
    graph = import_quietly(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    assert graph.population("lif").params["bias"].tolist() == [3.0, 10.0]
    assert [p.name for p in graph.projections] == ["fc+s", "fc+s#2"]


# --------------------------------------------------------------------------- dt and reset


@pytest.mark.parametrize(("option", "metadata", "expected", "source"), [
    (2e-3, {"dt": 1e-3}, 2e-3, "option"),
    (None, {"dt": 1e-3}, 1e-3, "metadata"),
    (None, {}, DEFAULT_DT, "default"),
])
def test_dt_comes_from_option_then_metadata_then_default(tmp_path: Path, option: float | None, metadata: dict,
                                                         expected: float, source: str) -> None:
    path = write(small_graph(metadata=metadata), tmp_path / "m.nir")
    graph = import_quietly(path, dt=option)
    assert graph.dt == expected and graph.meta["dt_from"] == source


@pytest.mark.parametrize(("option", "metadata", "expected", "source"), [
    ("zero", {"reset_mechanism": "subtract"}, "zero", "option"),
    (None, {"reset_mechanism": "subtract"}, "subtract", "metadata"),
    (None, {"reset": "subtract"}, "subtract", "metadata"),
    (None, {}, DEFAULT_RESET, "default"),
])
def test_reset_comes_from_option_then_metadata_then_default(tmp_path: Path, option: str | None, metadata: dict,
                                                            expected: str, source: str) -> None:
    path = write(small_graph(metadata=metadata), tmp_path / "m.nir")
    graph = import_quietly(path, reset=option)
    assert graph.population("lif").reset == expected and graph.meta["reset_from"] == source


def test_node_reset_metadata_beats_graph_metadata() -> None:
    graph = small_graph(metadata={"reset_mechanism": "subtract"})
    graph.nodes["lif"].metadata = {"reset_mechanism": "zero"}
    assert import_quietly(graph).population("lif").reset == "zero"


# --------------------------------------------------------------------------- malformed input


def test_truncated_file_is_a_one_line_error_naming_the_file(tmp_path: Path) -> None:
    real = write(small_graph(), tmp_path / "real.nir")
    broken = tmp_path / "broken.nir"
    broken.write_bytes(real.read_bytes()[:100])
    with pytest.raises(NirImportError, match=r"broken\.nir: not a readable NIR file \(truncated or not HDF5\)") as exc:
        import_nir(broken)
    assert "\n" not in str(exc.value)


def test_text_file_and_missing_file_are_errors_naming_the_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.nir"
    text.write_text("this is not HDF5\n")
    with pytest.raises(NirImportError, match=r"notes\.nir: not a readable NIR file"):
        import_nir(text)
    with pytest.raises(NirImportError, match=r"absent\.nir: file not found"):
        import_nir(tmp_path / "absent.nir")


def test_unknown_node_type_in_a_file_names_type_and_node(tmp_path: Path) -> None:
    path = write(small_graph(), tmp_path / "model.nir")
    with h5py.File(path, "r+") as f:
        del f["node/nodes/lif/type"]
        f["node/nodes/lif"].create_dataset("type", data="Foo", dtype=h5py.string_dtype())
    with pytest.raises(NirImportError) as exc:
        import_nir(path)
    assert str(exc.value) == f"{path}: unknown NIR node type 'Foo' (node 'lif')"


def test_unknown_node_type_in_a_graph_object_names_the_node() -> None:
    graph = small_graph()
    graph.nodes["odd"] = nir.ir.graph.Identity(input_type={"input": np.array([3])})
    with pytest.raises(NirImportError, match="unknown NIR node type 'Identity' \\(node 'odd'\\)"):
        import_nir(graph)


def test_nan_weights_are_an_error_naming_node_and_parameter(tmp_path: Path) -> None:
    weight = np.ones((3, 4))
    weight[1, 2] = np.nan
    path = write(small_graph(weight=weight), tmp_path / "nan.nir")
    with pytest.raises(NirImportError, match=r"nan\.nir: node 'fc' parameter 'weight' contains NaN"):
        import_nir(path)


def test_shapes_that_disagree_are_an_error_naming_both_nodes_and_shapes(tmp_path: Path) -> None:
    nodes = {"in": nir.Input(np.array([4])), "lif": lif(12), "fc": nir.Affine(weight=np.ones((2, 10)), bias=np.zeros(2)),
             "if": nir.IF(r=np.ones(2), v_threshold=np.ones(2))}
    graph = nir.NIRGraph(nodes=nodes, edges=[("in", "lif"), ("lif", "fc"), ("fc", "if")], type_check=False)
    path = write(graph, tmp_path / "shapes.nir")
    with pytest.raises(NirImportError) as exc:
        import_nir(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: ") and "'in'" in message and "'lif'" in message
    assert "[4]" in message and "[12]" in message


def test_a_cycle_of_linear_nodes_is_an_error_naming_them() -> None:
    nodes = {"in": nir.Input(np.array([2])), "a": nir.Linear(weight=np.eye(2)), "b": nir.Scale(scale=np.ones(2)),
             "lif": lif(2)}
    graph = nir.NIRGraph(nodes=nodes, edges=[("in", "a"), ("a", "b"), ("b", "a"), ("b", "lif")], type_check=False)
    with pytest.raises(NirImportError, match=r"cycle made only of linear nodes \['a', 'b'\]"):
        import_nir(graph)


def test_recurrence_through_a_population_is_an_ordinary_projection() -> None:
    nodes = {"in": nir.Input(np.array([2])), "lif": lif(2), "rec": nir.Linear(weight=-np.eye(2))}
    graph = import_quietly(nir.NIRGraph(nodes=nodes, edges=[("in", "lif"), ("lif", "rec"), ("rec", "lif")],
                                        type_check=False))
    rec = graph.projections_from("lif")[0]
    assert (rec.name, rec.dst, rec.kind) == ("rec", "lif", "dense")
    assert math.isclose(rec.weight[0, 0], -1.0)


def test_bad_options_are_rejected() -> None:
    with pytest.raises(NirImportError, match="reset must be one of"):
        import_nir(small_graph(), reset="hard")
    with pytest.raises(NirImportError, match="dt must be a positive number"):
        import_nir(small_graph(), dt=0.0)
