"""The snnc command line: the commands work, and bad input gives one clear line and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from snnc import __version__
from snnc.cli import main
from snnc.compiler import ir

from .conftest import NIR_PAPER_FILES, REPO

EXAMPLE = REPO / "examples" / "digits_if.nir"
EXAMPLE_STIMULI = REPO / "examples" / "digits_test.npz"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if not line.startswith("snnc: warning:")]
    assert len(lines) == 1, err
    assert lines[0].startswith("snnc: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_version_and_console_script():
    proc = subprocess.run([str(Path(sys.executable).parent / "snnc"), "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"snnc {__version__}"


def test_targets_lists_cpu_as_ready(capsys):
    code, out, _ = run_cli(capsys, "targets")
    assert code == 0
    cpu_line = next(line for line in out.splitlines() if line.startswith("cpu "))
    assert "ready" in cpu_line
    assert any(line.startswith("loihi2 ") for line in out.splitlines())


def random_stimulus(graph: ir.Graph, steps: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: (rng.random((steps, *graph.population(name).shape)) < 0.2).astype(np.uint8)
            for name in graph.inputs}


@pytest.mark.parametrize("path", NIR_PAPER_FILES, ids=[p.stem for p in NIR_PAPER_FILES])
def test_every_nir_paper_model_compiles_and_runs_on_cpu(path, tmp_path, capsys, nir_paper_dir):
    out_dir, dumps, result = tmp_path / "art", tmp_path / "ir", tmp_path / "out.npz"
    code, out, err = run_cli(capsys, "compile", path, "--target", "cpu", "-o", out_dir, "--dump-ir", dumps)
    assert code == 0, err
    assert (out_dir / "manifest.json").is_file()
    dump_files = sorted(p.name for p in dumps.iterdir())
    assert dump_files == ["00_import.txt", "01_normalize.txt", "02_quantize.txt", "03_partition.txt", "04_place.txt"]
    quantized_dump = (dumps / "02_quantize.txt").read_text()
    assert quantized_dump.startswith("graph dt=")
    assert "quant:" in quantized_dump
    graph = ir.load(out_dir / "graph.npz")
    stim = tmp_path / "stim.npz"
    np.savez(stim, **random_stimulus(graph, 50))
    code, out, err = run_cli(capsys, "run", out_dir, "--input", stim, "-o", result)
    assert code == 0, err
    with np.load(result) as npz:
        for name in graph.outputs:
            assert npz[f"spikes/{name}"].shape == (50, graph.population(name).size)


def test_compile_malformed_nir_is_one_line(tmp_path, capsys, nir_paper_dir):
    truncated = tmp_path / "broken.nir"
    truncated.write_bytes((nir_paper_dir / "lif_norse.nir").read_bytes()[:300])
    code, _, err = run_cli(capsys, "compile", truncated, "-o", tmp_path / "art")
    assert_one_line_error(code, err, "broken.nir")
    assert not (tmp_path / "art").exists()


def test_compile_missing_file_and_unknown_format(tmp_path, capsys):
    code, _, err = run_cli(capsys, "compile", tmp_path / "nope.nir", "-o", tmp_path / "art")
    assert_one_line_error(code, err, "nope.nir", "no such file")
    other = tmp_path / "model.onnx2"
    other.write_text("x")
    code, _, err = run_cli(capsys, "compile", other, "-o", tmp_path / "art")
    assert_one_line_error(code, err, "unsupported model format '.onnx2'")


def test_compile_unknown_target(tmp_path, capsys):
    code, _, err = run_cli(capsys, "compile", EXAMPLE, "--target", "tpu", "-o", tmp_path / "art")
    assert_one_line_error(code, err, "unknown target 'tpu'")


@pytest.mark.parametrize("content, fragment", [
    ("name: [unclosed\n", "bad.yaml"),
    ("- just\n- a list\n", "bad.yaml"),
])
def test_compile_malformed_hw_yaml(tmp_path, capsys, content, fragment):
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    code, _, err = run_cli(capsys, "compile", EXAMPLE, "--hw", bad, "-o", tmp_path / "art")
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "art").exists()


def test_compile_rejects_nan_weights(tmp_path, capsys):
    from snnc.compiler.frontends.load import load_model

    graph = load_model(EXAMPLE)
    proj = graph.projections[0]
    weight = proj.weight.copy()
    weight[0, 0] = np.nan
    broken = ir.Graph(graph.populations, (ir.replace(proj, weight=weight),) + graph.projections[1:],
                      graph.inputs, graph.outputs, graph.dt, graph.meta)
    path = tmp_path / "nan.npz"
    ir.save(broken, path)
    code, _, err = run_cli(capsys, "compile", path, "-o", tmp_path / "art")
    assert_one_line_error(code, err, f"projection '{proj.name}'", "NaN")


@pytest.fixture
def compiled_example(tmp_path, capsys) -> Path:
    out_dir = tmp_path / "digits"
    code, _, err = run_cli(capsys, "compile", EXAMPLE, "--target", "cpu", "-o", out_dir)
    assert code == 0, err
    return out_dir


def test_run_the_bundled_example(compiled_example, tmp_path, capsys):
    result = tmp_path / "out.npz"
    code, out, err = run_cli(capsys, "run", compiled_example, "--input", EXAMPLE_STIMULI, "-o", result)
    assert code == 0, err
    with np.load(result) as npz, np.load(EXAMPLE_STIMULI) as stim:
        batch, steps = stim["input"].shape[:2]
        assert npz["spikes/if2"].shape == (batch, steps, 10)
        assert npz["spikes/if2"].any()


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p.write_bytes(b"PK\x03\x04 truncated"), "not a readable .npz"),
    (lambda p: np.savez(p, input=np.zeros((10, 63))), "shape (10, 63)"),
    (lambda p: np.savez(p, input=np.full((10, 64), np.nan)), "NaN"),
    (lambda p: np.savez(p, input=np.full((10, 64), 2)), "0/1"),
    (lambda p: np.savez(p, retina=np.zeros((10, 64))), "not inputs of the network"),
])
def test_run_malformed_stimulus_is_one_line(compiled_example, tmp_path, capsys, make, fragment):
    stim = tmp_path / "stim.npz"
    make(stim)
    code, _, err = run_cli(capsys, "run", compiled_example, "--input", stim, "-o", tmp_path / "out.npz")
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "out.npz").exists()


def test_run_on_tampered_artifact(compiled_example, tmp_path, capsys):
    (compiled_example / "graph.npz").write_bytes(b"garbage")
    code, _, err = run_cli(capsys, "run", compiled_example, "--input", EXAMPLE_STIMULI, "-o", tmp_path / "o.npz")
    assert_one_line_error(code, err, "does not match its manifest hash")


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError):
        main(["--debug", "compile", str(tmp_path / "nope.nir"), "-o", str(tmp_path / "art")])


def test_ci_runs_exactly_the_readme_commands():
    readme = (REPO / "README.md").read_text()
    ci_commands = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
                   if line and not line.startswith("#") and not line.startswith(("set ", "cd "))]
    assert len(ci_commands) == 2
    for command in ci_commands:
        assert f"```bash\n{command}\n```" in readme


def write_nir(path: Path, weight: np.ndarray, n_in: int = 4) -> Path:
    import nir

    n_out = weight.shape[0]
    graph = nir.NIRGraph(
        nodes={"in": nir.Input(np.array([n_in])), "fc": nir.Affine(weight=weight, bias=np.zeros(n_out)),
               "lif": nir.IF(r=np.ones(n_out), v_threshold=np.ones(n_out)), "out": nir.Output(np.array([n_out]))},
        edges=[("in", "fc"), ("fc", "lif"), ("lif", "out")], type_check=False)
    nir.write(path, graph, compression=None)
    return path


def test_compile_nir_with_nan_weights_wrong_shapes_or_unknown_node_is_one_line(tmp_path, capsys):
    import h5py

    weight = np.ones((3, 4))
    weight[0, 1] = np.nan
    nan_file = write_nir(tmp_path / "nan.nir", weight)
    code, _, err = run_cli(capsys, "compile", nan_file, "-o", tmp_path / "a1")
    assert_one_line_error(code, err, "nan.nir", "'fc'", "NaN")

    shapes_file = write_nir(tmp_path / "shapes.nir", np.ones((3, 5)), n_in=4)
    code, _, err = run_cli(capsys, "compile", shapes_file, "-o", tmp_path / "a2")
    assert_one_line_error(code, err, "shapes.nir", "'fc'")

    odd_file = write_nir(tmp_path / "odd.nir", np.ones((3, 4)))
    with h5py.File(odd_file, "r+") as f:
        del f["node/nodes/lif/type"]
        f["node/nodes/lif"].create_dataset("type", data="Hodgkin", dtype=h5py.string_dtype())
    code, _, err = run_cli(capsys, "compile", odd_file, "-o", tmp_path / "a3")
    assert_one_line_error(code, err, "odd.nir", "unknown NIR node type 'Hodgkin'", "'lif'")
    assert not any((tmp_path / name).exists() for name in ("a1", "a2", "a3"))
