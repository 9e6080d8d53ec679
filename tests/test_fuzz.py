"""``snnc.runtime.fuzz``: a short run finds nothing on sound backends, a broken backend is caught and shrunk, and
the saved ``.nir`` + stimulus replays through ``snnc verify``."""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import snnc
from snnc import cli, targets
from snnc.compiler import ir
from snnc.compiler.frontends.nir_export import export_nir
from snnc.compiler.frontends.nir_import import import_nir
from snnc.runtime import fuzz

FAST_TARGETS = ("gpu", "fpga-ice40")


def ready(name: str) -> bool:
    return targets.status(targets.get_target(name)) == "ready"


needs_gpu_backend = pytest.mark.skipif(not ready("gpu"), reason="the gpu backend needs torch")


@needs_gpu_backend
def test_short_fuzz_run_on_sound_backends_finds_nothing_and_counts_every_network(tmp_path: Path) -> None:
    result = fuzz.fuzz(max_examples=10, targets=FAST_TARGETS, out_dir=tmp_path / "failures", progress=False)
    assert result.passed and result.examples == 10
    assert set(result.per_target) == {name for name in FAST_TARGETS if ready(name)}
    for counts in result.per_target.values():
        assert counts.compared + counts.refused + counts.skipped == 10
    assert result.per_target["gpu"].compared > 0
    assert not (tmp_path / "failures").exists()
    report = fuzz.format_result(result)
    assert "fuzzed 10 networks" in report and "PASS" in report


@needs_gpu_backend
def test_fuzz_catches_a_broken_backend_and_saves_a_small_case_that_snnc_verify_replays(tmp_path: Path,
                                                                                         monkeypatch) -> None:
    from snnc.backends.gpu import program

    real_build = program.build

    def spikes_at_equality(graph: ir.Graph, device: object) -> program.Program:
        built = real_build(graph, device)
        return dataclasses.replace(built, vth=built.vth - 1)  # v > vth - 1: the classic ">=" threshold bug

    monkeypatch.setattr(program, "build", spikes_at_equality)
    result = fuzz.fuzz(max_examples=50, targets=("gpu",), out_dir=tmp_path, progress=False)
    failure = result.failure
    assert failure is not None and failure.target == "gpu"
    assert "threshold met with equality" in failure.message
    assert failure.reproduced is True
    assert failure.model_path.suffix == ".nir" and failure.model_path.is_file()
    assert failure.stimulus_path.is_file() and failure.graph_path.is_file()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))
    shrunk = ir.load(failure.graph_path)
    neurons = [p for p in shrunk.populations if p.model != "input"]
    assert len(neurons) == 1 and neurons[0].size == 1
    assert f"--targets gpu --stimuli {failure.stimulus_path}" in failure.replay_command
    assert "FAIL: gpu" in fuzz.format_result(result)

    replay = ["verify", str(failure.model_path), "--targets", "gpu", "--stimuli", str(failure.stimulus_path)]
    assert cli.main(replay) == 1
    monkeypatch.undo()
    assert cli.main(replay) == 0


@settings(max_examples=15, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=fuzz.networks(compilable=True))
def test_a_fuzzed_network_saved_as_nir_compiles_to_the_identical_quantized_graph(case) -> None:
    graph, _ = case
    with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="snnc-test-fuzz-") as name:
        warnings.simplefilter("ignore")
        tmp = Path(name)
        export_nir(graph, tmp / "case.nir")
        assert ir.graph_hash(ir.replace(import_nir(tmp / "case.nir"), meta={})) == ir.graph_hash(graph)
        direct = snnc.compile(graph, target="cpu", out_dir=tmp / "direct").graph
        replayed = snnc.compile(tmp / "case.nir", target="cpu", out_dir=tmp / "replayed").graph
    assert ir.graph_hash(ir.replace(replayed, meta={})) == ir.graph_hash(ir.replace(direct, meta={}))


def test_unready_targets_are_left_out_with_a_note(monkeypatch, tmp_path: Path) -> None:
    real_status = targets.status
    monkeypatch.setattr(targets, "status", lambda t: "not installed: lava-nc" if t.name == "loihi2" else real_status(t))
    result = fuzz.fuzz(max_examples=2, targets=("cpu", "loihi2"), out_dir=tmp_path, progress=False)
    assert list(result.per_target) == ["cpu"] and result.per_target["cpu"].compared == 2
    assert result.notes == ["loihi2 left out: not installed: lava-nc"]
    assert "note: loihi2 left out" in fuzz.format_result(result)
    with pytest.raises(targets.TargetError, match="no target to fuzz"):
        fuzz.fuzz(max_examples=1, targets=("loihi2",), out_dir=tmp_path)
    with pytest.raises(targets.TargetError, match="unknown target"):
        fuzz.fuzz(max_examples=1, targets=("tpu",), out_dir=tmp_path)


def test_fuzz_needs_a_budget() -> None:
    with pytest.raises(ValueError, match="time budget"):
        fuzz.fuzz()


def test_without_hypothesis_fuzz_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    with pytest.raises(ImportError, match=r"pip install hypothesis"):
        fuzz.fuzz(max_examples=1, targets=("cpu",))
    with pytest.raises(ImportError, match=r"snnc fuzz needs hypothesis"):
        fuzz.networks()
