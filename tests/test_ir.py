"""The IR: invariants, text dump, versioned save/load."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from snnc.compiler import ir


def lif_params(shape: tuple[int, ...], tau: float = 1e-3) -> dict[str, np.ndarray]:
    full = lambda v: np.full(shape, v, dtype=np.float64)  # noqa: E731
    return {"tau_mem": full(tau), "r": full(10.0), "v_leak": full(0.0), "v_threshold": full(1.0),
            "v_reset": full(0.0), "bias": full(0.0)}


def small_graph(weight: np.ndarray | None = None) -> ir.Graph:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 4)) if weight is None else weight
    return ir.Graph(
        populations=(
            ir.Population("in", (4,), "input"),
            ir.Population("hid", (3,), "lif", lif_params((3,))),
            ir.Population("conv_out", (2, 2, 2), "if", {k: v for k, v in lif_params((2, 2, 2)).items()
                                                       if k in ir.NEURON_MODELS["if"]}),
        ),
        projections=(
            ir.Projection("fc", "in", "hid", "dense", w),
            ir.Projection("rec", "hid", "hid", "sparse", np.array([0.5, -0.5]), rows=np.array([0, 1]),
                          cols=np.array([1, 0]), delay=np.array([0, 3])),
            ir.Projection("conv", "in", "conv_out", "conv", rng.normal(size=(2, 1, 1, 1)),
                          conv=ir.ConvSpec(in_shape=(1, 2, 2), out_shape=(2, 2, 2))),
        ),
        inputs=("in",),
        outputs=("hid", "conv_out"),
        dt=1e-4,
        meta={"source": "test"},
    )


def test_check_accepts_a_valid_graph():
    graph = small_graph()
    assert ir.check(graph) is graph


def test_check_names_projection_with_nan_weights():
    w = np.ones((3, 4))
    w[1, 2] = np.nan
    with pytest.raises(ir.IRError, match="projection 'fc': weights contain NaN"):
        ir.check(small_graph(w))


def test_check_rejects_wrong_dense_shape():
    with pytest.raises(ir.IRError, match=r"projection 'fc': dense weight shape \(4, 3\)"):
        ir.check(small_graph(np.ones((4, 3))))


def test_check_rejects_missing_param_and_unknown_model():
    graph = small_graph()
    hid = graph.populations[1]
    params = dict(hid.params)
    del params["tau_mem"]
    broken = ir.replace(graph, populations=(graph.populations[0], ir.replace(hid, params=params), graph.populations[2]))
    with pytest.raises(ir.IRError, match=r"population 'hid': model 'lif' needs params .* missing \['tau_mem'\]"):
        ir.check(broken)
    unknown = ir.replace(graph, populations=(graph.populations[0], ir.replace(hid, model="hh"), graph.populations[2]))
    with pytest.raises(ir.IRError, match="unknown neuron model 'hh'"):
        ir.check(unknown)


def test_check_rejects_projection_into_input_and_dangling_names():
    graph = small_graph()
    bad = ir.replace(graph, projections=graph.projections + (ir.Projection("back", "hid", "in", "dense", np.ones((4, 3))),))
    with pytest.raises(ir.IRError, match="projection 'back': targets input population 'in'"):
        ir.check(bad)
    bad = ir.replace(graph, projections=(ir.Projection("x", "nowhere", "hid", "dense", np.ones((3, 4))),))
    with pytest.raises(ir.IRError, match="refers to unknown population 'nowhere'"):
        ir.check(bad)


def test_check_quantized_stage_requires_quant_fields():
    with pytest.raises(ir.IRError, match="has no quantized"):
        ir.check(small_graph(), "quantized")


def test_dump_is_readable_and_deterministic():
    text = ir.dump(small_graph())
    assert text == ir.dump(small_graph())
    assert "population hid lif shape=(3,) n=3 reset=zero" in text
    assert "projection rec hid -> hid sparse weight[2]" in text
    assert "delay=[0 .. 3]" in text
    assert "groups=1" in text


def test_save_load_round_trip(tmp_path):
    graph = small_graph()
    path = tmp_path / "g.npz"
    ir.save(graph, path)
    loaded = ir.load(path)
    assert ir.dump(loaded) == ir.dump(graph)
    assert ir.graph_hash(loaded) == ir.graph_hash(graph)
    np.testing.assert_array_equal(loaded.projections[1].delay, [0, 3])
    assert loaded.projections[2].conv == graph.projections[2].conv
    assert not list(tmp_path.glob("*.tmp"))


def test_hash_changes_with_any_weight():
    w = np.random.default_rng(0).normal(size=(3, 4))
    w2 = w.copy()
    w2[0, 0] = np.nextafter(w2[0, 0], 10)
    assert ir.graph_hash(small_graph(w)) != ir.graph_hash(small_graph(w2))


def _rewrite_header(path, change):
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays["__header__"].tobytes())
    change(header)
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


def test_load_refuses_unknown_format_version(tmp_path):
    path = tmp_path / "g.npz"
    ir.save(small_graph(), path)
    _rewrite_header(path, lambda h: h.update(format_version=99))
    with pytest.raises(ir.IRError, match="graph format version 99 is not supported; this snnc reads version 1"):
        ir.load(path)


def test_load_reports_truncated_and_foreign_files(tmp_path):
    path = tmp_path / "g.npz"
    ir.save(small_graph(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ir.IRError, match="cannot read graph file"):
        ir.load(path)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(ir.IRError, match="not an snnc graph file"):
        ir.load(other)
    assert zipfile.is_zipfile(other)
