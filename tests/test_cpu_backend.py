"""The CPU backend as a backend: artifacts, support checks, stimulus validation, result shapes."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from snnc.backends import base, cpu
from snnc.compiler import ir
from snnc.runtime import execute

from .test_cpu_semantics import dense, input_pop, network, neuron_pop, random_network, spikes_at

HW = SimpleNamespace(name="cpu")  # the backend only records the hardware description's name


def two_layer() -> ir.Graph:
    return network([input_pop("in", (2, 3)), neuron_pop("hid", 4, vth=5, v_decay=512),
                    neuron_pop("readout", 2, spiking=False, v_decay=1024)],
                   [dense("fc1", "in", "hid", np.arange(24).reshape(4, 6) - 8),
                    dense("fc2", "hid", "readout", [[3, -1, 2, 0], [-2, 4, 0, 1]])])


def stimulus(steps: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    return {"in": (np.random.default_rng(seed).random((steps, 2, 3)) < 0.5).astype(np.uint8)}


def test_available_needs_only_numba():
    assert cpu.available() is None
    assert cpu.NAME == "cpu"


def test_compile_writes_manifest_and_graph(tmp_path: Path):
    art = cpu.compile(two_layer(), HW, tmp_path / "out")
    assert sorted(p.name for p in art.path.iterdir()) == ["graph.npz", "manifest.json"]
    manifest = json.loads((art.path / "manifest.json").read_text())
    assert manifest["backend"] == "cpu" and manifest["target"] == "cpu"
    assert manifest["graph_hash"] == ir.graph_hash(two_layer())
    assert list(manifest["files"]) == ["graph.npz"]
    assert art.manifest == manifest


def test_loaded_artifact_runs_like_simulate(tmp_path: Path):
    graph = random_network(np.random.default_rng(3))
    cpu.compile(graph, HW, tmp_path / "out")
    art = cpu.load(tmp_path / "out")
    stim = {name: (np.random.default_rng(1).random((3, 30, graph.population(name).size)) < 0.4).astype(np.uint8)
            for name in graph.inputs}
    got = art.run(stim, record_state=True)
    want, saturations = cpu.simulate_with_stats(graph, stim, record_state=True)
    assert got.keys() == want.keys() == {p.name for p in graph.populations}
    for name in want:
        np.testing.assert_array_equal(got[name].spikes, want[name].spikes)
        np.testing.assert_array_equal(got[name].u, want[name].u)
        np.testing.assert_array_equal(got[name].v, want[name].v)
    assert art.last_saturations == saturations


def test_runtime_execute_opens_cpu_artifacts(tmp_path: Path):
    cpu.compile(two_layer(), HW, tmp_path / "out")
    art = execute.load(tmp_path / "out")
    assert isinstance(art, cpu.CpuArtifact)
    assert art.run(stimulus())["hid"] == cpu.simulate(two_layer(), stimulus())["hid"]


def test_tampered_graph_is_detected(tmp_path: Path):
    cpu.compile(two_layer(), HW, tmp_path / "out")
    graph_file = tmp_path / "out" / "graph.npz"
    data = bytearray(graph_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph_file.write_bytes(bytes(data))
    with pytest.raises(base.ArtifactError, match="graph.npz' does not match its manifest hash"):
        cpu.load(tmp_path / "out")


def test_artifact_of_another_backend_is_refused(tmp_path: Path):
    base.write_artifact(tmp_path / "lava", "lava", two_layer(), "loihi2", files={})
    with pytest.raises(base.ArtifactError, match="compiled for backend 'lava', not 'cpu'"):
        cpu.load(tmp_path / "lava")


def test_unquantized_graph_is_unsupported(tmp_path: Path):
    graph = two_layer()
    graph = ir.replace(graph, populations=tuple(ir.replace(p, quant=None) if p.name == "hid" else p
                                                for p in graph.populations))
    reasons = cpu.unsupported(graph, HW)
    assert len(reasons) == 1
    assert "not quantized" in reasons[0] and "population 'hid'" in reasons[0]
    with pytest.raises(ValueError, match="not quantized"):
        cpu.compile(graph, HW, tmp_path / "out")
    with pytest.raises(ValueError, match="not quantized"):
        cpu.simulate(graph, stimulus())
    assert not (tmp_path / "out").exists()


def test_state_bits_beyond_32_are_unsupported():
    graph = two_layer()
    wide = ir.replace(graph.population("hid"), quant=ir.replace(graph.population("hid").quant, state_bits=40))
    graph = ir.replace(graph, populations=tuple(wide if p.name == "hid" else p for p in graph.populations))
    assert any("state_bits 40" in r for r in cpu.unsupported(graph, HW))


def test_integers_beyond_int64_headroom_are_unsupported():
    big_bias = network([input_pop("in", 1), neuron_pop("n", 1, bias_mant=3, bias_exp=60)], [])
    assert any("bias 3 << 60" in r for r in cpu.unsupported(big_bias, HW))
    big_input = network([input_pop("in", 2), neuron_pop("n", 1)],
                        [dense("w", "in", "n", [[1 << 20, 1 << 20]], weight_exp=34, weight_bits=22)])
    assert any("population 'n': summed |weight << weight_exp|" in r for r in cpu.unsupported(big_input, HW))
    assert cpu.unsupported(two_layer(), HW) == []


@pytest.mark.parametrize("bad, message", [
    ({"in": np.zeros((5, 7))}, r"shape \(5, 7\) must be \(T, 2, 3\) or \(T, 6\)"),
    ({"in": np.full((5, 6), 2)}, "values must be 0/1 spikes"),
    ({"in": np.full((5, 6), np.nan)}, "contains NaN"),
    ({"in": np.zeros((5, 6)), "retina": np.zeros((5, 6))}, r"\['retina'\] that are not inputs"),
    ({}, r"lacks arrays for input\(s\) \['in'\]"),
])
def test_bad_stimuli_raise_clear_errors(tmp_path: Path, bad, message):
    art = cpu.compile(two_layer(), HW, tmp_path / "out")
    with pytest.raises(ValueError, match=message):
        art.run(bad)
    with pytest.raises(ValueError, match=message):
        cpu.simulate(two_layer(), bad)


def test_every_population_gets_a_raster_shaped_like_the_stimulus():
    single = cpu.simulate(two_layer(), stimulus())
    assert {name: r.spikes.shape for name, r in single.items()} == {"in": (12, 6), "hid": (12, 4),
                                                                    "readout": (12, 2)}
    np.testing.assert_array_equal(single["in"].spikes, stimulus()["in"].reshape(12, 6).astype(bool))
    batch = {"in": np.stack([stimulus(seed=s)["in"] for s in range(3)])}
    batched = cpu.simulate(two_layer(), batch)
    assert {name: r.spikes.shape for name, r in batched.items()} == {"in": (3, 12, 6), "hid": (3, 12, 4),
                                                                     "readout": (3, 12, 2)}
    assert batched["readout"].v.shape == (3, 12, 2) and batched["readout"].v.dtype == np.int64
    assert batched["hid"].v is None and batched["hid"].u is None


def test_record_state_gives_every_population_int64_u_and_v():
    out = cpu.simulate(two_layer(), stimulus(), record_state=True)
    for raster in out.values():
        assert raster.u.dtype == raster.v.dtype == np.int64
        assert raster.u.shape == raster.v.shape == raster.spikes.shape
    assert not out["in"].u.any() and not out["in"].v.any()  # inputs have no state


def test_steps_extends_with_silence_or_cuts():
    stim = {"in": spikes_at(4, 6, [(0, 0), (3, 5)])}
    longer = cpu.simulate(two_layer(), stim, steps=9, record_state=True)
    assert longer["in"].spikes.shape == (9, 6) and not longer["in"].spikes[4:].any()
    shorter = cpu.simulate(two_layer(), stim, steps=2, record_state=True)
    np.testing.assert_array_equal(shorter["hid"].v, longer["hid"].v[:2])


def test_last_saturations_are_per_run(tmp_path: Path):
    graph = network([input_pop("in", 1), neuron_pop("n", 1, bias_mant=1 << 22, spiking=False)], [])
    art = cpu.compile(graph, HW, tmp_path / "out")
    assert art.last_saturations is None
    art.run({"in": np.zeros((4, 1))})
    # v = 2**22, then 2**23 and more clip to 2**23 - 1 at steps 1, 2, 3
    assert art.last_saturations == {"in": {"u": 0, "v": 0}, "n": {"u": 0, "v": 3}}
    art.run({"in": np.zeros((2, 3, 1))})
    assert art.last_saturations["n"] == {"u": 0, "v": 4}  # summed over the two samples of the batch
