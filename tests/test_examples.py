"""The bundled example: the script that makes it works, and quantization keeps its accuracy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

import snnc
from snnc.compiler.frontends.load import load_model
from snnc.runtime import float_reference

from .conftest import REPO

EXAMPLES = REPO / "examples"


def accuracy(rasters, output: str, labels: np.ndarray) -> float:
    return float((rasters[output].spikes.sum(axis=1).argmax(axis=1) == labels).mean())


def test_bundled_digits_snn_keeps_its_accuracy_after_quantization(tmp_path):
    with np.load(EXAMPLES / "digits_test.npz") as data:
        stimulus, labels = {"input": data["input"]}, data["labels"]
    graph = load_model(EXAMPLES / "digits_if.nir")
    float_acc = accuracy(float_reference.simulate(graph, stimulus), graph.outputs[0], labels)
    artifact = snnc.compile(EXAMPLES / "digits_if.nir", target="cpu", out_dir=tmp_path / "art")
    int_acc = accuracy(artifact.run(stimulus), graph.outputs[0], labels)
    assert float_acc >= 0.90
    assert int_acc >= float_acc - 0.02
    assert all(s == {"u": 0, "v": 0} for s in artifact.last_saturations.values())


def test_example_generator_writes_a_loadable_network_and_stimuli(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "digits_mlp_to_snn.py"), "--out-dir", str(tmp_path),
                           "--test-samples", "20"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    graph = load_model(tmp_path / "digits_if.nir")
    assert [p.shape for p in graph.populations] == [(64,), (64,), (10,)]
    with np.load(tmp_path / "digits_test.npz") as data:
        assert data["input"].shape == (20, 40, 64)
        assert set(np.unique(data["input"])) <= {0, 1}
        assert data["labels"].shape == (20,)


def test_headline_ends_with_an_ok_verdict(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "headline.py"), "--samples", "20",
                           "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("OK: ") and "0 mismatching spikes" in last
