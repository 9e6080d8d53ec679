"""ONNX ANN-to-SNN import: the converted graph computes the ANN, bad models fail in one line, the digits CNN converts."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import scipy.sparse as sp
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import snnc
from snnc.cli import main
from snnc.compiler import ir
from snnc.compiler.conv import conv_matrix
from snnc.compiler.frontends.load import ModelFormatError, load_model
from snnc.compiler.frontends.onnx_import import OnnxImportError, OnnxImportNote, import_onnx
from snnc.runtime import float_reference
from snnc.runtime.encode import rate_code

from .conftest import REPO

EXAMPLES = REPO / "examples"
DIGITS_ONNX = EXAMPLES / "digits_cnn.onnx"
OPSET = 17


# --------------------------------------------------------------------------- building and running ANNs


def weights(name: str, rng: np.random.Generator, *shape: int, fan_in: int | None = None) -> onnx.TensorProto:
    scale = 1.0 / np.sqrt(fan_in if fan_in is not None else shape[-1])
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def constant(name: str, values: np.ndarray | list) -> onnx.TensorProto:
    arr = np.asarray(values)
    return numpy_helper.from_array(arr.astype(np.int64 if arr.dtype.kind == "i" else np.float32), name)


def batch_norm_params(prefix: str, rng: np.random.Generator, channels: int) -> list[onnx.TensorProto]:
    return [constant(f"{prefix}_scale", rng.uniform(0.5, 1.5, channels)),
            constant(f"{prefix}_bias", rng.normal(0, 0.2, channels)),
            constant(f"{prefix}_mean", rng.normal(0, 0.2, channels)),
            constant(f"{prefix}_var", rng.uniform(0.5, 2.0, channels))]


def model_of(nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto], input_shape: tuple[int, ...],
             output: str = "y", domains: tuple[tuple[str, int], ...] = ()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "test", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *input_shape])],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", "classes"])],
                              initializer=initializers)
    opsets = [helper.make_opsetid("", OPSET), *(helper.make_opsetid(d, v) for d, v in domains)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="snnc-tests")
    model.ir_version = 8
    return model


def onnx_outputs(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x.astype(np.float32)})[0]


def projection_matrix(graph: ir.Graph, proj: ir.Projection) -> sp.csr_matrix:
    if proj.kind == "conv":
        return conv_matrix(proj.conv, np.asarray(proj.weight, dtype=np.float64))
    if proj.kind == "dense":
        return sp.csr_matrix(proj.weight)
    shape = (graph.population(proj.dst).size, graph.population(proj.src).size)
    return sp.csr_matrix((proj.weight, (proj.rows, proj.cols)), shape=shape)


def analog_outputs(graph: ir.Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Each population's rate in the infinite-time limit: the converted graph evaluated as the ANN it encodes."""
    out = {"input": x.reshape(len(x), -1) / graph.meta["input_scale"]}
    for pop in graph.populations[1:]:
        total = np.zeros((len(x), pop.size)) + np.asarray(pop.params["bias"]).ravel()
        for proj in graph.projections_into(pop.name):
            total += np.asarray((projection_matrix(graph, proj) @ out[proj.src].T).T)
        out[pop.name] = np.maximum(total, 0.0) if pop.model == "if" else total
    return out


def converted(model: onnx.ModelProto, calibration: np.ndarray | None, **options) -> ir.Graph:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OnnxImportNote)
        return import_onnx(model, calibration=calibration, **options)


def gemm_mlp(rng: np.random.Generator) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    """Gemm (transB) -> Relu -> Dropout -> Gemm (plain B, alpha, beta) -> Softmax."""
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"], name="fc1", transB=1),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("Dropout", ["a1"], ["d1"], name="drop"),
        helper.make_node("Gemm", ["d1", "w2", "b2"], ["logits"], name="fc2", alpha=0.5, beta=2.0),
        helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=1),
    ]
    inits = [weights("w1", rng, 24, 12), weights("b1", rng, 24, fan_in=100), weights("w2", rng, 24, 5, fan_in=24),
             weights("b2", rng, 5, fan_in=100)]
    return model_of(nodes, inits, (12,)), (12,)


def matmul_bn_mlp(rng: np.random.Generator) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    """MatMul + Add -> BatchNormalization -> Relu -> Identity -> MatMul + Add (Constant bias)."""
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"], name="mm1"),
        helper.make_node("Add", ["b1", "m1"], ["h1"], name="add1"),
        helper.make_node("BatchNormalization", ["h1", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["n1"], name="bn1"),
        helper.make_node("Relu", ["n1"], ["a1"], name="relu1"),
        helper.make_node("Identity", ["a1"], ["i1"], name="same"),
        helper.make_node("MatMul", ["i1", "w2"], ["m2"], name="mm2"),
        helper.make_node("Constant", [], ["b2"], name="bias2",
                         value=numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32))),
        helper.make_node("Add", ["m2", "b2"], ["y"], name="add2"),
    ]
    inits = [weights("w1", rng, 10, 16, fan_in=10), weights("b1", rng, 16, fan_in=100), *batch_norm_params("bn", rng, 16),
             weights("w2", rng, 16, 4, fan_in=16)]
    return model_of(nodes, inits, (10,)), (10,)


def conv_cnn(rng: np.random.Generator) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    """Conv + BN -> Relu -> AveragePool -> grouped Conv -> Relu -> Reshape (0, -1) -> Gemm."""
    nodes = [
        helper.make_node("Conv", ["x", "k1", "c1"], ["h1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["h1", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["n1"], name="bn1"),
        helper.make_node("Relu", ["n1"], ["a1"], name="relu1"),
        helper.make_node("AveragePool", ["a1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "k2", "c2"], ["h2"], name="conv2", pads=[1, 1, 1, 1], group=2),
        helper.make_node("Relu", ["h2"], ["a2"], name="relu2"),
        helper.make_node("Reshape", ["a2", "flat"], ["f2"], name="flatten"),
        helper.make_node("Gemm", ["f2", "w3", "b3"], ["y"], name="fc3", transB=1),
    ]
    inits = [weights("k1", rng, 4, 2, 3, 3, fan_in=18), weights("c1", rng, 4, fan_in=100), *batch_norm_params("bn", rng, 4),
             weights("k2", rng, 6, 2, 3, 3, fan_in=18), weights("c2", rng, 6, fan_in=100), constant("flat", [0, -1]),
             weights("w3", rng, 5, 6 * 3 * 3, fan_in=54), weights("b3", rng, 5, fan_in=100)]
    return model_of(nodes, inits, (2, 6, 6)), (2, 6, 6)


def global_pool_cnn(rng: np.random.Generator) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    """Strided dilated Conv -> Relu -> Conv 1x1 -> GlobalAveragePool -> Flatten -> Gemm (one composed projection)."""
    nodes = [
        helper.make_node("Conv", ["x", "k1", "c1"], ["h1"], name="conv1", strides=[2, 2], dilations=[2, 2], pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("Conv", ["a1", "k2"], ["h2"], name="conv2"),
        helper.make_node("GlobalAveragePool", ["h2"], ["g2"], name="gap"),
        helper.make_node("Flatten", ["g2"], ["f2"], name="flatten"),
        helper.make_node("Gemm", ["f2", "w3", "b3"], ["y"], name="fc3", transB=1),
    ]
    inits = [weights("k1", rng, 8, 3, 3, 3, fan_in=27), weights("c1", rng, 8, fan_in=100),
             weights("k2", rng, 6, 8, 1, 1, fan_in=8), weights("w3", rng, 4, 6, fan_in=6), weights("b3", rng, 4, fan_in=100)]
    return model_of(nodes, inits, (3, 7, 7)), (3, 7, 7)


def conv1d_net(rng: np.random.Generator) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    """1-d Conv (dilation 2) -> Relu -> Relu -> padded AveragePool (count_include_pad 0) -> Flatten -> Gemm."""
    nodes = [
        helper.make_node("Conv", ["x", "k1", "c1"], ["h1"], name="conv1", dilations=[2]),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("Relu", ["a1"], ["r1"], name="relu_again"),
        helper.make_node("AveragePool", ["r1"], ["p1"], name="pool1", kernel_shape=[3], strides=[2], pads=[1, 1]),
        helper.make_node("Flatten", ["p1"], ["f1"], name="flatten"),
        helper.make_node("Gemm", ["f1", "w2", "b2"], ["y"], name="fc2", transB=1),
    ]
    inits = [weights("k1", rng, 5, 2, 3, fan_in=6), weights("c1", rng, 5, fan_in=100), weights("w2", rng, 3, 5 * 4, fan_in=20),
             weights("b2", rng, 3, fan_in=100)]
    return model_of(nodes, inits, (2, 12)), (2, 12)


def stacked_convs(rng: np.random.Generator) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    """Conv (pad 1) -> Conv (pad 1, stride 2) -> Relu -> Flatten -> Gemm: the padded pair is no single conv."""
    nodes = [
        helper.make_node("Conv", ["x", "k1", "c1"], ["h1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["h1", "k2", "c2"], ["h2"], name="conv2", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["h2"], ["a2"], name="relu2"),
        helper.make_node("Flatten", ["a2"], ["f2"], name="flatten"),
        helper.make_node("Gemm", ["f2", "w3"], ["y"], name="fc3", transB=1),
    ]
    inits = [weights("k1", rng, 3, 1, 3, 3, fan_in=9), weights("c1", rng, 3, fan_in=4), weights("k2", rng, 4, 3, 3, 3, fan_in=27),
             weights("c2", rng, 4, fan_in=100), weights("w3", rng, 3, 4 * 3 * 3, fan_in=36)]
    return model_of(nodes, inits, (1, 6, 6)), (1, 6, 6)


MODELS = {"gemm_mlp": gemm_mlp, "matmul_bn_mlp": matmul_bn_mlp, "conv_cnn": conv_cnn, "global_pool_cnn": global_pool_cnn,
          "conv1d_net": conv1d_net, "stacked_convs": stacked_convs}


# --------------------------------------------------------------------------- (a) the SNN computes the ANN


@pytest.mark.parametrize("build", MODELS.values(), ids=MODELS.keys())
def test_converted_graph_evaluated_as_an_ann_equals_onnxruntime(build):
    rng = np.random.default_rng(1)
    model, shape = build(rng)
    calibration = rng.random((200, *shape))
    graph = converted(model, calibration)
    x = rng.random((64, *shape))
    logits = analog_outputs(graph, x)[graph.outputs[0]]
    expected = onnx_outputs(model, x)
    if build is gemm_mlp:
        # the Softmax is dropped: compare what is left of it
        expected = np.log(expected)
        logits = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
    assert graph.population(graph.outputs[0]).model == "i"


@pytest.mark.parametrize("build", MODELS.values(), ids=MODELS.keys())
def test_rate_coded_snn_agrees_with_the_ann_argmax(build):
    rng = np.random.default_rng(2)
    model, shape = build(rng)
    graph = converted(model, rng.random((200, *shape)))
    x = rng.random((100, *shape))
    v = float_reference.simulate(graph, {"input": rate_code(x, 300)})[graph.outputs[0]].v
    agreement = float((v[:, -1].argmax(axis=1) == onnx_outputs(model, x).argmax(axis=1)).mean())
    assert agreement >= 0.9, agreement


def test_gemm_batch_norm_folding_and_normalisation_are_exact():
    rng = np.random.default_rng(3)
    model, _ = matmul_bn_mlp(rng)
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    bias2 = numpy_helper.to_array(model.graph.node[6].attribute[0].t).astype(np.float64)
    calibration = rng.random((300, 10)) * 0.8
    graph = converted(model, calibration, percentile=99.0)

    gain = inits["bn_scale"] / np.sqrt(inits["bn_var"] + 1e-5)
    w1 = inits["w1"].T * gain[:, None]
    b1 = (inits["b1"] - inits["bn_mean"]) * gain + inits["bn_bias"]
    hidden = np.maximum(calibration @ w1.T + b1, 0.0)
    lam0, lam1 = calibration.max(), np.percentile(hidden[hidden > 0], 99.0)
    layer1, layer2 = graph.projections
    assert (layer1.kind, layer2.kind) == ("dense", "dense")
    np.testing.assert_allclose(layer1.weight, w1 * lam0 / lam1, rtol=1e-12)
    np.testing.assert_allclose(graph.population("relu1").params["bias"], b1 / lam1, rtol=1e-12)
    np.testing.assert_allclose(layer2.weight, inits["w2"].T * lam1, rtol=1e-12)
    np.testing.assert_allclose(graph.population("logits").params["bias"], bias2, rtol=1e-12)
    assert graph.meta["input_scale"] == pytest.approx(lam0)
    assert graph.meta["activation_scales"] == {"relu1": pytest.approx(lam1)}


def test_conv_batch_norm_and_pool_conv_compositions_stay_convolutions():
    rng = np.random.default_rng(4)
    model, shape = conv_cnn(rng)
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    graph = converted(model, rng.random((100, *shape)))
    layer1, layer2, layer3 = graph.projections
    gain = inits["bn_scale"] / np.sqrt(inits["bn_var"] + 1e-5)
    lam0, lam1 = graph.meta["input_scale"], graph.meta["activation_scales"]["relu1"]
    assert layer1.kind == "conv" and layer1.conv.padding == (1, 1)
    np.testing.assert_allclose(layer1.weight, inits["k1"] * gain[:, None, None, None] * lam0 / lam1, rtol=1e-12)
    # 2x2 average pool then 3x3 conv (pad 1, 2 groups): one 6x6 conv, stride 2, pad 2, still 2 groups
    assert layer2.kind == "conv"
    assert (layer2.weight.shape, layer2.conv.stride, layer2.conv.padding, layer2.conv.groups) == ((6, 2, 6, 6), (2, 2), (2, 2), 2)
    assert layer3.kind == "dense" and graph.population("relu2").shape == (6, 3, 3)
    assert graph.meta["onnx_nodes"]["layer2"] == ["pool1", "conv2", "relu2"]


def test_global_pool_after_conv_is_composed_into_the_dense_readout():
    rng = np.random.default_rng(5)
    model, shape = global_pool_cnn(rng)
    graph = converted(model, rng.random((100, *shape)))
    assert [p.name for p in graph.populations] == ["input", "relu1", "logits"]
    assert [p.kind for p in graph.projections] == ["conv", "dense"]
    assert graph.population("relu1").shape == (8, 4, 4)


def test_padded_convs_that_are_no_single_conv_become_a_matrix():
    rng = np.random.default_rng(6)
    model, shape = stacked_convs(rng)
    graph = converted(model, rng.random((100, *shape)))
    assert [p.kind for p in graph.projections] == ["dense", "dense"]
    assert graph.meta["onnx_nodes"]["layer1"] == ["conv1", "conv2", "relu2"]


def test_relu_of_a_population_output_adds_no_population():
    rng = np.random.default_rng(6)
    model, shape = conv1d_net(rng)
    graph = converted(model, rng.random((100, *shape)))
    assert [(p.name, p.shape) for p in graph.populations] == [("input", (2, 12)), ("relu1", (5, 8)), ("logits", (3,))]
    assert graph.projections[0].kind == "conv" and graph.projections[0].conv.dilation == (1, 2)


def test_without_calibration_scales_are_worst_case_bounds_and_a_note_says_so():
    rng = np.random.default_rng(7)
    model, shape = conv_cnn(rng)
    with pytest.warns(OnnxImportNote, match="no calibration data"):
        graph = import_onnx(model)
    x = rng.random((200, *shape))
    for name, rate in analog_outputs(graph, x).items():
        if graph.population(name).model == "if":
            assert 0.0 < rate.max() <= 1.0, name


def test_import_options_are_applied_and_checked():
    rng = np.random.default_rng(8)
    model, shape = gemm_mlp(rng)
    graph = converted(model, rng.random((50, *shape)), dt=2e-3, reset="zero")
    assert graph.dt == 2e-3 and graph.population("relu1").reset == "zero"
    for options, fragment in (({"reset": "none"}, "reset"), ({"percentile": 0}, "percentile"), ({"dt": -1.0}, "dt")):
        with pytest.raises(OnnxImportError, match=fragment):
            import_onnx(model, **options)


def test_calibration_files_are_read_by_the_onnx_input_name_or_input(tmp_path):
    rng = np.random.default_rng(14)
    model, shape = gemm_mlp(rng)
    data = rng.random((40, *shape))
    expected = converted(model, data)
    for key in ("x", "input"):
        path = tmp_path / f"{key}.npz"
        np.savez(path, **{key: data})
        graph = converted(model, path)
        assert graph.meta["activation_scales"] == expected.meta["activation_scales"]
    np.savez(tmp_path / "other.npz", data=data)
    with pytest.raises(OnnxImportError, match=r"no array 'x' or 'input'.*\['data'\]"):
        import_onnx(model, calibration=tmp_path / "other.npz")


def test_calibration_arrays_of_the_wrong_shape_or_with_nan_are_refused():
    rng = np.random.default_rng(9)
    model, _ = conv_cnn(rng)
    with pytest.raises(OnnxImportError, match=r"expected \(B, 2, 6, 6\) or \(B, 72\)"):
        import_onnx(model, calibration=rng.random((10, 3, 6, 6)))
    bad = rng.random((10, 72))
    bad[3, 5] = np.nan
    with pytest.raises(OnnxImportError, match="NaN"):
        import_onnx(model, calibration=bad)


# --------------------------------------------------------------------------- (b) what cannot be converted


def small_conv_then(extra: list[onnx.NodeProto], last: str, rng: np.random.Generator,
                    extra_inits: tuple[onnx.TensorProto, ...] = (), domains: tuple[tuple[str, int], ...] = ()) -> onnx.ModelProto:
    """Conv -> Relu -> ``extra`` nodes (reading 'a1', ending in ``last``) -> Flatten -> Gemm."""
    nodes = [
        helper.make_node("Conv", ["x", "k1"], ["h1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        *extra,
        helper.make_node("Flatten", [last], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w"], ["y"], name="fc", transB=1),
    ]
    size = 4 * 2 * 2 if any(n.op_type == "MaxPool" for n in extra) else 4 * 4 * 4
    return model_of(nodes, [weights("k1", rng, 4, 1, 3, 3, fan_in=9), weights("w", rng, 3, size), *extra_inits], (1, 4, 4),
                    domains=domains)


def unsupported_cases() -> dict[str, tuple[onnx.ModelProto, tuple[str, ...]]]:
    rng = np.random.default_rng(10)
    return {
        "max_pool": (small_conv_then([helper.make_node("MaxPool", ["a1"], ["p"], name="pool1", kernel_shape=[2, 2],
                                                       strides=[2, 2])], "p", rng),
                     ("unsupported ONNX op 'MaxPool'", "node 'pool1'", "supported: Add")),
        "softmax_in_the_middle": (small_conv_then([helper.make_node("Softmax", ["a1"], ["s"], name="sm1", axis=1)], "s", rng),
                                  ("'Softmax'", "node 'sm1'", "'Flatten' node 'flatten'")),
        "unknown_op": (small_conv_then([helper.make_node("Frobnicate", ["a1"], ["u"], name="odd1", domain="com.example")],
                                       "u", rng, domains=(("com.example", 1),)),
                       ("unsupported ONNX op 'com.example.Frobnicate'", "node 'odd1'")),
        "sigmoid": (small_conv_then([helper.make_node("Sigmoid", ["a1"], ["s"], name="sig")], "s", rng),
                    ("unsupported ONNX op 'Sigmoid'", "node 'sig'")),
        "residual_add": (small_conv_then([helper.make_node("Add", ["a1", "a1"], ["r"], name="skip")], "r", rng),
                         ("'Add' (node 'skip')", "residual")),
        "asymmetric_pads": (small_conv_then([helper.make_node("Conv", ["a1", "k2"], ["c"], name="conv2", pads=[0, 0, 1, 1])],
                                            "c", rng, (weights("k2", rng, 4, 4, 2, 2, fan_in=16),)),
                            ("'Conv' (node 'conv2')", "asymmetric pads [0, 0, 1, 1]")),
        "nan_initializer": (small_conv_then([helper.make_node("Add", ["a1", "offset"], ["o"], name="shift")], "o", rng,
                                            (constant("offset", np.array([np.nan, 0.0, 0.0, 0.0]).reshape(4, 1, 1)),)),
                            ("initializer 'offset'", "NaN")),
    }


UNSUPPORTED = unsupported_cases()


@pytest.mark.parametrize("case", UNSUPPORTED, ids=UNSUPPORTED.keys())
def test_unconvertible_models_fail_with_one_line_naming_the_op_and_node(case, tmp_path):
    model, fragments = UNSUPPORTED[case]
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    with pytest.raises(OnnxImportError) as info:
        import_onnx(path, calibration=np.random.default_rng(0).random((20, 1, 4, 4)))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_a_truncated_file_fails_with_one_line_naming_the_file(tmp_path):
    data = gemm_mlp(np.random.default_rng(11))[0].SerializeToString()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(OnnxImportError) as info:
        import_onnx(path)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"{path}: not a ")


# --------------------------------------------------------------------------- (c) the final Softmax


def test_a_final_softmax_is_dropped_with_a_note():
    rng = np.random.default_rng(12)
    model, shape = gemm_mlp(rng)
    with pytest.warns(OnnxImportNote, match=r"final Softmax \(node 'softmax'\) is dropped"):
        graph = import_onnx(model, calibration=rng.random((50, *shape)))
    assert graph.meta["dropped_ops"] == ["Softmax 'softmax'"]
    assert graph.outputs == ("logits",)


# --------------------------------------------------------------------------- rate code


def test_rate_code_spreads_floor_of_p_times_steps_spikes_evenly():
    x = np.array([[0.0, 0.25, 0.5, 1.0, 1.7, -0.3, 0.1]])
    spikes = rate_code(x, 40)
    assert spikes.shape == (1, 40, 7) and spikes.dtype == np.uint8
    np.testing.assert_array_equal(spikes.sum(axis=1)[0], [0, 10, 20, 40, 40, 0, 4])
    np.testing.assert_array_equal(np.flatnonzero(spikes[0, :, 1]), np.arange(3, 40, 4))
    with pytest.raises(ValueError, match="NaN"):
        rate_code(np.array([[0.5, np.nan]]), 10)


def test_rate_code_keeps_the_feature_shape():
    x = np.random.default_rng(13).random((3, 2, 4, 5))
    spikes = rate_code(x, 16)
    assert spikes.shape == (3, 16, 2, 4, 5)
    np.testing.assert_array_equal(spikes.sum(axis=1), np.floor(16 * x + 1e-9))


# --------------------------------------------------------------------------- (d) the shipped digits CNN


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    images = (digits.images[:, None] / 16.0).astype(np.float32)
    return train_test_split(images, digits.target, test_size=0.3, random_state=0, stratify=digits.target)


def test_shipped_digits_cnn_converts_within_two_points_of_the_ann(tmp_path):
    x_train, x_test, y_train, y_test = digits_split()
    session = ort.InferenceSession(str(DIGITS_ONNX), providers=["CPUExecutionProvider"])
    ann = float((session.run(None, {"input": x_test})[0].argmax(axis=1) == y_test).mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the dropped Softmax, IF range warnings
        artifact = snnc.compile(DIGITS_ONNX, target="cpu", out_dir=tmp_path / "art", calibration=x_train)
    graph = artifact.graph
    assert [(p.name, p.model, p.shape) for p in graph.populations] == [
        ("input", "input", (1, 8, 8)), ("relu1", "if", (8, 8, 8)), ("relu2", "if", (16, 4, 4)), ("logits", "i", (10,))]
    assert [p.kind for p in graph.projections] == ["conv", "conv", "dense"]
    steps = 64
    v = artifact.run({"input": rate_code(x_test / graph.meta["input_scale"], steps)})["logits"].v
    snn = float((v[:, -1].argmax(axis=1) == y_test).mean())
    assert ann >= 0.95
    assert snn >= ann - 0.02, (ann, snn)
    assert all(s == {"u": 0, "v": 0} for s in artifact.last_saturations.values())


def test_example_script_trains_exports_and_converts(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "digits_onnx.py"), "--out-dir", str(tmp_path), "--epochs", "1",
                           "--steps", "16", "--test-samples", "40"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("ANN (onnxruntime) test accuracy:") for line in lines)
    assert any(line.startswith("SNN quantized (cpu), T=16 steps:") for line in lines)
    graph = converted(onnx.load(tmp_path / "digits_cnn.onnx"), None)
    assert graph.population("logits").shape == (10,)


# --------------------------------------------------------------------------- (e) command line


def test_cli_compiles_the_digits_cnn_with_calibration(tmp_path, capsys):
    x_train = digits_split()[0]
    calibration = tmp_path / "calibration.npz"
    np.savez(calibration, input=x_train[:300], labels=np.zeros(300))
    out = tmp_path / "art"
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # pytest's configuration hides snnc's own warnings
        code = main(["compile", str(DIGITS_ONNX), "--calibration", str(calibration), "--target", "cpu", "-o", str(out)])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    notes = [line for line in stderr.splitlines() if "Softmax" in line]
    assert len(notes) == 1 and notes[0].startswith("snnc: warning: "), stderr
    assert f"compiled {DIGITS_ONNX} for cpu: 4 populations" in stdout
    assert ir.load(out / "graph.npz").meta["calibration_samples"] == 300


@pytest.mark.parametrize("model", [DIGITS_ONNX, EXAMPLES / "digits_if.nir"], ids=["onnx", "nir"])
def test_cli_calibration_errors_are_one_line(model, tmp_path, capsys):
    calibration = tmp_path / "calibration.npz"
    np.savez(calibration, images=np.zeros((4, 1, 8, 8)))
    code = main(["compile", str(model), "--calibration", str(calibration), "-o", str(tmp_path / "art")])
    _, stderr = capsys.readouterr()
    errors = [line for line in stderr.splitlines() if not line.startswith("snnc: warning:")]
    assert code == 1 and len(errors) == 1 and errors[0].startswith("snnc: error: "), stderr
    if model.suffix == ".onnx":
        expected = (f"{calibration}: calibration file has no array 'input'", "['images']")
    else:
        expected = (f"{model}: calibration data applies to .onnx models only",)
    for fragment in expected:
        assert fragment in errors[0], (fragment, errors[0])
    assert not (tmp_path / "art").exists()


def test_load_model_dispatches_onnx_and_refuses_calibration_elsewhere():
    x_train = digits_split()[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OnnxImportNote)
        graph = load_model(DIGITS_ONNX, calibration=x_train[:100])
    assert graph.meta["format"] == "onnx" and graph.population("relu1").reset == "subtract"
    with pytest.raises(ModelFormatError, match="calibration"):
        load_model(EXAMPLES / "digits_if.nir", calibration=x_train[:10])
