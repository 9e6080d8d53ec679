"""Verification modes, first-divergence reports and the ``snnc verify`` target matrix.

A backend with a deliberately broken threshold must be caught at exactly the
first spike that differs, with a hint a backend author can act on; bounded and
statistical modes must accept the jitter they are meant for and nothing more.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from snnc.cli import main
from snnc.compiler import ir
from snnc.runtime import verify
from snnc.runtime.raster import Raster
from tests.test_cpu_semantics import dense, input_pop, network, neuron_pop

STEPS = 20


def bias_network(bias, vth=10, state_bits: int = 24, v_decay: int = 0, spiking: bool = True) -> ir.Graph:
    """Input (4) -> LIF (len(bias)); u forgets every step, so v integrates bias plus 64 per input spike."""
    n = len(bias)
    return network([input_pop("in", 4),
                    neuron_pop("n", n, i_decay=4096, v_decay=v_decay, vth=vth, bias_mant=bias, state_bits=state_bits,
                               spiking=spiking)],
                   [dense("w", "in", "n", np.ones((n, 4), dtype=np.int64))])


def run_cpu(graph: ir.Graph, stimulus: dict[str, np.ndarray], tmp: Path) -> dict[str, Raster]:
    return verify.reference_artifact(graph, "cpu", tmp).run(stimulus, record_state=True)


def with_quant(graph: ir.Graph, name: str, **changes) -> ir.Graph:
    """A copy of ``graph`` whose population ``name`` has ``changes`` in its quantized parameters."""
    pops = tuple(ir.replace(p, quant=ir.replace(p.quant, **changes)) if p.name == name else p
                 for p in graph.populations)
    return ir.replace(graph, populations=pops)


def stimulus_for(graph: ir.Graph, samples: int = 3, seed: int = 1) -> dict[str, np.ndarray]:
    return verify.random_stimulus(graph, samples=samples, steps=STEPS, rate=0.2, seed=seed)


def first_spike_difference(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int]:
    """(step, sample, neuron) of the earliest differing spike, computed independently of verify."""
    diff = np.argwhere(a != b)  # rows (sample, step, neuron)
    best = min(diff.tolist(), key=lambda r: (r[1], r[0], r[2]))
    return best[1], best[0], best[2]


@pytest.mark.parametrize("delta", [1, -1])
def test_threshold_off_by_one_is_caught_at_the_first_divergence(tmp_path, delta):
    graph = bias_network([100, 640, 200, 30])
    stimulus = stimulus_for(graph)
    reference = run_cpu(graph, stimulus, tmp_path / "ref")
    broken_graph = with_quant(graph, "n", vth=graph.population("n").quant.vth + delta)
    broken = run_cpu(broken_graph, stimulus, tmp_path / "broken")

    comparison = verify.compare(graph, broken, reference)
    assert not comparison.passed and comparison.mode == "exact"
    d = comparison.divergence
    step, sample, neuron = first_spike_difference(broken["n"].spikes, reference["n"].spikes)
    assert (d.population, d.quantity, d.step, d.sample, d.neuron) == ("n", "spikes", step, sample, neuron)
    if delta == -1:  # bias 640 = vth << 6: the reference's v meets the threshold with equality at step 0
        assert (step, neuron) == (0, 1)
        assert d.hint == verify.HINT_THRESHOLD
    assert d.trace_steps[0] == max(0, step - 3) and d.trace_steps[-1] == min(STEPS - 1, step + 2)
    assert d.v_reference == tuple(int(x) for x in reference["n"].v[sample, d.trace_steps[0]:d.trace_steps[-1] + 1, neuron])
    text = verify.format_comparison(comparison, "broken", "cpu")
    assert text.startswith("FAIL") and "v ref" in text and "first divergence" in text


def test_saturation_hint(tmp_path):
    graph = bias_network([100, 20], vth=10**4, state_bits=8, spiking=False)  # v clips at 127 at step 1
    stimulus = {"in": np.zeros((1, 6, 4), dtype=np.uint8)}
    reference = run_cpu(graph, stimulus, tmp_path / "ref")
    wider = run_cpu(with_quant(graph, "n", state_bits=12), stimulus, tmp_path / "wide")
    d = verify.compare(graph, wider, reference).divergence
    assert (d.quantity, d.step, d.neuron) == ("v", 1, 0)
    assert d.hint == verify.HINT_SATURATION
    assert 127 in d.v_reference and 200 in d.v


def shifted(raster: Raster, by: int = 1) -> Raster:
    """The spikes delayed by ``by`` steps (states dropped), like a backend one step late."""
    spikes = np.zeros_like(raster.spikes)
    spikes[:, by:] = raster.spikes[:, :-by]
    return Raster(spikes=spikes)


def test_one_step_offset_hint_and_bounded_mode(tmp_path):
    graph = bias_network([300, 300, 250], vth=10)
    stimulus = {"in": np.zeros((2, STEPS, 4), dtype=np.uint8)}
    reference = run_cpu(graph, stimulus, tmp_path / "ref")
    assert not reference["n"].spikes[:, -1].any()  # nothing is shifted out of the run
    late = {"n": shifted(reference["n"]), "in": reference["in"]}
    d = verify.compare(graph, late, reference).divergence
    assert (d.step, d.sample, d.neuron) == (2, 0, 0)
    assert d.hint == verify.HINT_OFFSET

    bounded = verify.compare(graph, late, reference, mode="bounded", tolerance=1)
    assert bounded.passed and bounded.unmatched == 0 and bounded.spike_mismatches > 0
    strict = verify.compare(graph, late, reference, mode="bounded", tolerance=0)
    assert not strict.passed
    assert (strict.divergence.step, strict.divergence.sample, strict.divergence.neuron) == (2, 0, 0)
    assert "FAIL (bounded" in strict.verdict


def test_bounded_requires_equal_counts(tmp_path):
    graph = bias_network([300], vth=10)
    reference = run_cpu(graph, {"in": np.zeros((1, STEPS, 4), dtype=np.uint8)}, tmp_path / "ref")
    extra = reference["n"].spikes.copy()
    extra[0, 3, 0] = True  # one spike more, within +-1 of the reference's spike at step 2
    result = verify.compare(graph, {"n": Raster(spikes=extra)}, reference, mode="bounded", tolerance=1)
    assert not result.passed and result.unmatched == 1


def test_statistical_mode_accepts_small_rate_changes_only():
    graph = network([input_pop("in", 2), neuron_pop("out", 50)], [dense("w", "in", "out", np.ones((50, 2)))])
    rng = np.random.default_rng(0)
    ref_spikes = rng.random((4, 100, 50)) < 0.2
    reference = {"out": Raster(spikes=ref_spikes)}

    def thinned(fraction: float) -> dict[str, Raster]:
        keep = rng.random(ref_spikes.shape) >= fraction
        return {"out": Raster(spikes=ref_spikes & keep)}

    labels = ref_spikes.sum(axis=1).argmax(axis=1)
    small = verify.compare(graph, thinned(0.01), reference, mode="statistical", labels=labels)
    assert small.passed, small.verdict
    assert small.accuracy is not None and small.accuracy[1] == 1.0
    big = verify.compare(graph, thinned(0.5), reference, mode="statistical")
    assert not big.passed and big.failures and "out rate" in big.failures[0]
    assert big.verdict.startswith("FAIL (statistical")


def test_matrix_cli_passes_on_cpu_gpu_and_verilog(tmp_path, capsys):
    model = tmp_path / "net.npz"
    ir.save(bias_network([100, 640, 200, 30]), model)
    out = tmp_path / "out.json"
    code = main(["verify", str(model), "--targets", "cpu,gpu,fpga-verilog", "--stimuli", "2", "--steps", "20",
                 "--json", str(out)])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stdout + stderr
    result = json.loads(out.read_text())
    assert [row["target"] for row in result["targets"]] == ["cpu", "gpu", "fpga-verilog"]
    assert all(row["status"] == "PASS" for row in result["targets"]), stdout
    for target in ("cpu", "gpu", "fpga-verilog"):
        assert any(line.startswith(target) and "PASS" in line for line in stdout.splitlines())


def test_matrix_cli_unknown_target_is_one_line_error(tmp_path, capsys):
    model = tmp_path / "net.npz"
    ir.save(bias_network([100]), model)
    code = main(["verify", str(model), "--targets", "cpu,tpu9000"])
    _, stderr = capsys.readouterr()
    assert code == 1
    lines = [line for line in stderr.splitlines() if not line.startswith("snnc: warning:")]
    assert len(lines) == 1 and lines[0].startswith("snnc: error: ") and "tpu9000" in lines[0]


def test_matrix_with_two_dask_workers_gives_the_same_result_as_one(tmp_path, capsys):
    from tests.test_lava_equivalence import lava_network

    graph, _ = lava_network(7)
    model = tmp_path / "net.npz"
    ir.save(graph, model)
    results = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}.json"
        code = main(["verify", str(model), "--targets", "cpu,gpu,fpga-verilog", "--stimuli", "3", "--steps", "30",
                     "--workers", workers, "--json", str(out)])
        assert code == 0, capsys.readouterr()
        rows = json.loads(out.read_text())["targets"]
        for row in rows:
            row.pop("seconds", None)
        results.append(rows)
    assert results[0] == results[1]
    assert [row["status"] for row in results[0]] == ["PASS"] * 3
    assert all(row["comparison"]["spikes_compared"] > 0 for row in results[0])


def test_workers_on_an_artifact_directory_is_one_line_error(tmp_path, capsys):
    model = tmp_path / "net.npz"
    ir.save(bias_network([100]), model)
    assert main(["compile", str(model), "--target", "cpu", "-o", str(tmp_path / "art")]) == 0
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "art"), "--workers", "2"]) == 1
    assert "--workers and --address apply to model files" in capsys.readouterr().err
