"""The quantization report: weight error, saturations, spike agreement, accuracy, file and CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from snnc import cli
from snnc.compiler import ir, pipeline
from snnc.compiler.hw import bundled_hw
from snnc.runtime import quant_report

from .conftest import REPO


def if_graph(weight: np.ndarray, reset: str = "zero", threshold: float = 2.0) -> ir.Graph:
    """Inputs -> one IF layer; weights of ±1 and a threshold of 2 are exact at the scale S = 127."""
    n_out, n_in = weight.shape
    params = {"r": np.ones(n_out), "v_threshold": np.full(n_out, threshold), "v_reset": np.zeros(n_out),
              "bias": np.zeros(n_out)}
    pops = (ir.Population("in", (n_in,), "input"), ir.Population("out", (n_out,), "if", params, reset=reset))
    return ir.Graph(pops, (ir.Projection("fc", "in", "out", "dense", weight),), ("in",), ("out",), 1e-3)


def two_samples() -> tuple[ir.Graph, dict[str, np.ndarray]]:
    """Sample 0 drives output 0, sample 1 output 1 (identity weights)."""
    stimulus = np.zeros((2, 12, 2), dtype=np.uint8)
    stimulus[0, :, 0] = 1
    stimulus[1, ::2, 1] = 1
    return if_graph(np.eye(2)), {"in": stimulus}


def test_exact_quantization_gives_no_weight_error_and_full_spike_agreement() -> None:
    graph = if_graph(np.array([[1.0, -1.0, 0.0], [-1.0, 1.0, 1.0]]))
    stimulus = {"in": (np.random.default_rng(0).random((4, 30, 3)) < 0.5).astype(np.uint8)}
    quantized = pipeline.compile_graph(graph, bundled_hw("cpu"))
    report = quant_report.quant_report(graph, quantized, stimulus)
    assert report["projections"]["fc"]["weight_rms_error"] == 0.0
    assert report["projections"]["fc"]["weight_max_error"] == 0.0
    assert report["projections"]["fc"]["zeroed"] == 0.0
    assert report["spike_agreement"] == 1.0
    assert report["populations"]["out"]["rate_change"] == 0.0
    assert report["populations"]["out"]["rate_float"] > 0
    assert report["saturations"] == 0
    assert report["steps"] == 31  # one silent step: the projection delays by one
    json.dumps(report)


def test_weight_error_is_relative_to_the_largest_weight_and_counts_weights_rounded_to_zero() -> None:
    # S = 127: 0.5 becomes 63.5 -> 64 (error 0.5/127), 0.001 becomes 0.127 -> 0 (zeroed)
    graph = if_graph(np.array([[1.0, 0.5, 0.001]]))
    quantized = pipeline.compile_graph(graph, bundled_hw("cpu"))
    report = quant_report.quant_report(graph, quantized, {"in": np.zeros((3, 3), dtype=np.uint8)})
    fc = report["projections"]["fc"]
    assert fc["weight_max_error"] == pytest.approx(0.5 / 127)
    assert fc["weight_rms_error"] == pytest.approx(np.sqrt(((0.5 / 127) ** 2 + 0.001**2) / 3))
    assert fc["zeroed"] == pytest.approx(1 / 3)


def test_a_network_built_to_saturate_reports_its_saturations() -> None:
    # reset "none": v never comes down and climbs by 6·127·64 per step, past 2**23 after ~172 steps
    graph = if_graph(np.ones((1, 6)), reset="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the quantizer rightly warns that v is unbounded
        quantized = pipeline.compile_graph(graph, bundled_hw("cpu"))
    report = quant_report.quant_report(graph, quantized, {"in": np.ones((300, 6), dtype=np.uint8)})
    assert report["populations"]["out"]["saturations_v"] > 0
    assert report["saturations"] == report["populations"]["out"]["saturations_v"]
    assert "sat v" in quant_report.format_table(report)


@pytest.mark.parametrize(("labels", "accuracy"), [([0, 1], 1.0), ([1, 1], 0.5)])
def test_accuracy_of_both_graphs_from_labels(labels: list[int], accuracy: float) -> None:
    graph, stimulus = two_samples()
    quantized = pipeline.compile_graph(graph, bundled_hw("cpu"))
    report = quant_report.quant_report(graph, quantized, stimulus, np.array(labels))
    assert report["accuracy"] == {"float": accuracy, "quantized": accuracy}
    assert quant_report.quant_report(graph, quantized, stimulus)["accuracy"] is None


def test_v_readout_takes_the_largest_final_v() -> None:
    graph, stimulus = two_samples()
    quantized = pipeline.compile_graph(graph, bundled_hw("cpu"))
    report = quant_report.quant_report(graph, quantized, stimulus, np.array([0, 1]), readout="v")
    assert report["readout"] == "v"
    assert set(report["accuracy"]) == {"float", "quantized"}
    with pytest.raises(ValueError, match="readout 'rate'"):
        quant_report.quant_report(graph, quantized, stimulus, readout="rate")


def test_write_report_writes_json_atomically(tmp_path: Path) -> None:
    path = quant_report.write_report({"saturations": 0}, tmp_path / "sub" / "report.json")
    assert json.loads(path.read_text()) == {"saturations": 0}
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]


def test_cli_compile_with_stimuli_writes_the_report_with_both_accuracies(tmp_path: Path, capsys) -> None:
    out = tmp_path / "artifact"
    code = cli.main(["compile", str(REPO / "examples" / "digits_snntorch.nir"),
                     "--stimuli", str(REPO / "examples" / "digits_snntorch_test.npz"), "-o", str(out)])
    assert code == 0
    report = json.loads((out / "quant_report.json").read_text())
    assert report["accuracy"]["float"] > 0.9
    assert report["accuracy"]["quantized"] > 0.9
    assert report["saturations"] == 0
    printed = capsys.readouterr().out
    assert "spike agreement" in printed
    assert "accuracy (spikes readout)" in printed


def test_cli_rate_codes_onnx_calibration_inputs_into_the_report(tmp_path: Path, capsys) -> None:
    out = tmp_path / "artifact"
    code = cli.main(["compile", str(REPO / "examples" / "digits_cnn.onnx"),
                     "--calibration", str(REPO / "examples" / "digits_calibration.npz"), "-o", str(out)])
    assert code == 0
    report = json.loads((out / "quant_report.json").read_text())
    assert report["samples"] == 300
    assert report["readout"] == "v"
    assert report["accuracy"] is None
    assert "spike agreement" in capsys.readouterr().out
