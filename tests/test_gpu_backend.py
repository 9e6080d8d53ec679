"""The GPU backend (torch; the CPU device here): batched, bit-exact against the CPU reference."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from snnc import cli
from snnc.backends import cpu, gpu
from snnc.backends.gpu import program
from snnc.compiler import ir
from snnc.runtime.progress import Progress
from tests.test_cpu_semantics import conv, dense, input_pop, network, neuron_pop, random_network, sparse
from tests.test_lava_equivalence import lava_network

HW = SimpleNamespace(name="gpu")


def assert_gpu_matches_cpu(graph: ir.Graph, stimulus: dict, tmp_path, devices: list[str] | None = None) -> gpu.GpuArtifact:
    artifact = gpu.compile(graph, HW, tmp_path / "gpu")
    if devices is not None:
        artifact.devices = devices
    got = artifact.run(stimulus, record_state=True)
    expected, saturations = cpu.simulate_with_stats(graph, stimulus, record_state=True)
    for pop in graph.populations:
        for quantity in ("spikes", "u", "v"):
            np.testing.assert_array_equal(getattr(got[pop.name], quantity), getattr(expected[pop.name], quantity),
                                          err_msg=f"{pop.name} {quantity}")
    assert artifact.last_saturations == saturations
    plain = artifact.run(stimulus)  # without record_state: spikes, and v only for non-spiking populations
    reference = cpu.simulate(graph, stimulus)
    for pop in graph.populations:
        np.testing.assert_array_equal(plain[pop.name].spikes, reference[pop.name].spikes)
        assert (plain[pop.name].v is None) == (reference[pop.name].v is None)
        if reference[pop.name].v is not None:
            np.testing.assert_array_equal(plain[pop.name].v, reference[pop.name].v)
    return artifact


@pytest.mark.parametrize("seed", range(200))
def test_gpu_matches_cpu_on_random_networks(seed, tmp_path):
    # every neuron feature (resets, vreset, refractory, state_bits 12..32, non-spiking), dense/sparse/conv, recurrence
    rng = np.random.default_rng(seed)
    graph = random_network(rng)
    stimulus = {name: rng.random((3, 25, graph.population(name).size)) < 0.35 for name in graph.inputs}
    assert_gpu_matches_cpu(graph, stimulus, tmp_path)


@pytest.mark.parametrize("seed", range(40))
def test_gpu_matches_cpu_on_random_networks_with_long_delays(seed, tmp_path):
    graph, stimulus = lava_network(2000 + seed)  # delays up to 63, single-sign 8-bit weights, conv
    assert_gpu_matches_cpu(graph, stimulus, tmp_path)


def test_large_sums_take_the_float64_and_int64_paths_and_stay_exact(tmp_path):
    rng = np.random.default_rng(4)
    w = rng.integers(-120, 120, (6, 5))
    graph = network([input_pop("in", 5), neuron_pop("f32", 6, vth=10**5, state_bits=32),
                     neuron_pop("f64", 6, vth=10**5, state_bits=32), neuron_pop("i64", 6, vth=10**5, state_bits=32)],
                    [dense("a", "in", "f32", w), dense("b", "in", "f64", np.abs(w) + 100, weight_exp=20),  # beyond int8: float64
                     sparse("c", "in", "i64", rows=[0, 1, 2, 0], cols=[0, 1, 2, 3], weight=[3, -5, 7, 1], delay=[0, 1, 0, 2])])
    graph = ir.replace(graph, projections=tuple(
        ir.replace(p, quant=ir.replace(p.quant, weight_exp=51)) if p.name == "c" else p for p in graph.projections))
    built = program.build(graph, torch.device("cpu"))
    assert {link.dst.start: link.dtype for link in built.links if link.delay == 0} == {
        0: torch.int8, 6: torch.float64, 12: torch.int64}  # int8 mantissas on the CPU: torch._int_mm
    assert not built.float_state  # inputs near 2**54: the state is int64
    assert_gpu_matches_cpu(graph, {"in": rng.random((2, 8, 5)) < 0.5}, tmp_path)


def test_small_networks_keep_float64_state_and_float32_sparse_links():
    graph = network([input_pop("in", 3), neuron_pop("n", 2, vth=50, v_decay=100)],
                    [sparse("s", "in", "n", rows=[0, 1], cols=[2, 0], weight=[200, -7], delay=[0, 3])])
    built = program.build(graph, torch.device("cpu"))
    assert built.float_state and {link.dtype for link in built.links} == {torch.float32}


def test_conv_beyond_float32_uses_float64(tmp_path):
    spec = ir.ConvSpec(in_shape=(1, 4, 4), out_shape=(2, 4, 4), padding=(1, 1))
    graph = network([input_pop("in", (1, 4, 4)), neuron_pop("c", (2, 4, 4), vth=10**6, state_bits=32)],
                    [conv("k", "in", "c", np.arange(18).reshape(2, 1, 3, 3) - 9, spec, weight_exp=22)])
    assert program.build(graph, torch.device("cpu")).links[0].dtype == torch.float64
    assert_gpu_matches_cpu(graph, {"in": np.random.default_rng(0).random((2, 6, 1, 4, 4)) < 0.5}, tmp_path)


def test_a_batch_sharded_over_several_devices_gives_the_same_result(tmp_path):
    rng = np.random.default_rng(9)
    graph = random_network(rng)
    stimulus = {name: rng.random((5, 20, graph.population(name).size)) < 0.3 for name in graph.inputs}
    assert_gpu_matches_cpu(graph, stimulus, tmp_path, devices=["cpu", "cpu", "cpu"])


def test_devices_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(gpu.DEVICES_ENV, "cpu, cpu")
    assert gpu.default_devices() == ["cpu", "cpu"]
    monkeypatch.delenv(gpu.DEVICES_ENV)
    assert gpu.default_devices() == (["cuda:0"] if torch.cuda.device_count() == 1 else
                                     [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"])


def test_snnc_run_evaluates_a_data_set_in_batches_and_prints_accuracy(tmp_path, capsys):
    rng = np.random.default_rng(2)
    graph = network([input_pop("in", 4), neuron_pop("out", 3, vth=20)],
                    [dense("d", "in", "out", [[30, 0, 0, 0], [0, 30, 0, 0], [0, 0, 30, 30]])])
    x = np.zeros((10, 6, 4), dtype=np.uint8)
    labels = rng.integers(0, 3, 10)
    for k, label in enumerate(labels):
        x[k, :, [label, label + 1][: 1 + (label == 2)]] = 1  # class c drives output c
    x[0] = 0
    labels[0] = 1  # no spikes: argmax picks 0, so sample 0 is wrong on purpose
    ir.save(graph, tmp_path / "g.npz")
    np.savez(tmp_path / "data.npz", **{"in": x}, labels=labels)
    assert cli.main(["compile", str(tmp_path / "g.npz"), "--target", "gpu", "-o", str(tmp_path / "art")]) == 0
    capsys.readouterr()
    assert cli.main(["run", str(tmp_path / "art"), "--input", str(tmp_path / "data.npz"), "--batch-size", "3",
                     "-o", str(tmp_path / "out.npz")]) == 0
    out = capsys.readouterr().out
    assert "accuracy: 90.0% on 10 samples (most output spikes)" in out
    with np.load(tmp_path / "out.npz") as npz:
        np.testing.assert_array_equal(npz["spikes/out"], cpu.simulate(graph, {"in": x})["out"].spikes)


def test_progress_bar_draws_counts_and_rate():
    stream = io.StringIO()
    with Progress(10, "running", stream=stream, enabled=True) as bar:
        bar.update(4)
        bar.update(6)
    text = stream.getvalue()
    assert "running [" in text and "4/10 samples" in text and "10/10 samples" in text and text.endswith("\n")
    quiet = io.StringIO()
    with Progress(10, "running", stream=quiet) as bar:  # not a terminal: silent
        bar.update(10)
    assert quiet.getvalue() == ""


def test_cpu_runs_in_cache_sized_chunks_with_the_same_result(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu, "CPU_CHUNK", 2)
    rng = np.random.default_rng(12)
    graph = random_network(rng)
    stimulus = {name: rng.random((5, 15, graph.population(name).size)) < 0.3 for name in graph.inputs}
    assert_gpu_matches_cpu(graph, stimulus, tmp_path)
