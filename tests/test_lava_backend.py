"""The Lava backend: Python 3.11 compatibility, exact weight mapping, range checks, artifact, subprocess runner."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from snnc import api, cli
from snnc.backends import cpu, lava
from snnc.backends.lava import lowering, run_lava
from snnc.compiler import hw, ir
from snnc.runtime import execute

from .test_cpu_semantics import conv, dense, input_pop, network, neuron_pop, sparse

pytestmark = pytest.mark.skipif(lava.available() is not None, reason=f"Lava is not installed: {lava.available()}")

LOIHI2 = hw.bundled_hw("loihi2")


def var_model_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("lava")
    return Path(next(iter(spec.submodule_search_locations))) / "magma" / "compiler" / "var_model.py"


# --------------------------------------------------------------------------- Python 3.11 compatibility


def test_compat_patch_turns_the_eight_mutable_defaults_into_factories():
    source = var_model_path().read_text()
    fixed, count = run_lava.patch_var_model(source)
    assert count == 8
    assert fixed.count("field(default_factory=ByteEncoder)") == 8
    assert "= ByteEncoder()" not in fixed
    compile(fixed, "var_model.py", "exec")


def test_compat_patch_leaves_a_fixed_source_alone_and_refuses_an_unknown_one():
    fixed, _ = run_lava.patch_var_model(var_model_path().read_text())
    assert run_lava.patch_var_model(fixed) == (fixed, 0)
    odd = "from dataclasses import dataclass\nclass A:\n    x: ByteEncoder = ByteEncoder()\n"
    with pytest.raises(run_lava.CompatError, match="expected 8 mutable ByteEncoder defaults, found 1"):
        run_lava.patch_var_model(odd)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the incompatibility exists only on Python >= 3.11")
def test_lava_fails_to_import_without_the_hook_and_imports_with_it():
    plain = subprocess.run([sys.executable, "-c", "import lava.magma.compiler.var_model"], capture_output=True,
                           text=True, timeout=120)
    assert plain.returncode != 0 and "mutable default" in plain.stderr
    hooked = subprocess.run([sys.executable, "-c", "import run_lava; run_lava.install_compat(); "
                             "import lava.magma.compiler.var_model as m; print(m.LoihiAddress.__name__)"],
                            capture_output=True, text=True, timeout=120, cwd=Path(run_lava.__file__).parent)
    assert hooked.returncode == 0, hooked.stderr
    assert "= ByteEncoder()" in var_model_path().read_text(), "the installed file must stay untouched"


def test_runner_script_is_standalone():
    tree = ast.parse(Path(run_lava.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    assert imported <= {"__future__", "argparse", "importlib", "json", "re", "sys", "time", "pathlib", "numpy", "scipy",
                        "lava"}, imported


# --------------------------------------------------------------------------- exact weights


@pytest.mark.parametrize(("mode", "bits"), [(m, b) for m in ("mixed", "excitatory", "inhibitory") for b in range(1, 9)
                                            if (m, b) != ("mixed", 1)])  # 1 signed bit holds only -1 and 0
def test_weight_format_survives_lavas_clip_and_truncation_exactly(bits, mode):
    run_lava.install_compat()
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    if mode == "mixed":
        w = np.arange(-(1 << (bits - 1)), 1 << (bits - 1))
    else:
        w = np.arange(0, 1 << bits) * (1 if mode == "excitatory" else -1)
    for exp in range(0, 8):
        lava_w, num_bits, lava_exp = lowering.weight_format(w, exp)
        sign_mode = determine_sign_mode(lava_w)
        kept = truncate_weights(clip_weights(lava_w.astype(np.int32), sign_mode, num_bits=8), sign_mode, num_bits)
        np.testing.assert_array_equal(kept, lava_w)
        assert num_bits <= 8 and -8 <= lava_exp <= 7
        # Lava shifts the summed input by lava_exp (floor for negative): every prefix sum stays exact
        sums = np.cumsum(kept.astype(np.int64))
        shifted = sums << lava_exp if lava_exp >= 0 else sums >> -lava_exp
        np.testing.assert_array_equal(shifted, np.cumsum(w.astype(np.int64) << exp))


# --------------------------------------------------------------------------- range checks


def one_population(**neuron) -> ir.Graph:
    return network([input_pop("in", 3), neuron_pop("layer", 2, **neuron)],
                   [dense("w", "in", "layer", np.ones((2, 3), dtype=np.int64))])


@pytest.mark.parametrize(("neuron", "message"), [
    ({"vth": 200_000}, "population 'layer': vth 200000 is outside Lava's range 0..131071"),
    ({"bias_mant": 5000}, "population 'layer': bias_mant 5000 is outside Lava's range -4095..4095"),
    ({"bias_exp": 8}, "population 'layer': bias_exp 8 is outside Lava's range 0..7"),
    ({"reset": "subtract"}, "population 'layer': reset 'subtract' is not available; Lava's LIF only sets v to 0"),
    ({"refractory": 2}, "population 'layer': refractory 2 steps; Lava's fixed-point LIF has no refractory period"),
    ({"vreset": 3}, "population 'layer': vreset 3, but Lava's LIF resets v to 0"),
    ({"state_bits": 16}, "population 'layer': state_bits 16, but Lava's LIF holds 24-bit u and v"),
])
def test_unsupported_names_the_parameter_its_value_and_the_range(neuron, message):
    reasons = lava.unsupported(one_population(**neuron), LOIHI2)
    assert any(message in r for r in reasons), reasons


def test_unsupported_checks_weights_and_delays():
    graph = network([input_pop("in", 2), neuron_pop("a", 2)],
                    [dense("big", "in", "a", [[-3, 200], [1, 1]]),
                     sparse("late", "in", "a", [0], [1], [5], delay=[64])])
    reasons = lava.unsupported(graph, LOIHI2)
    assert any("projection 'big': weight mantissa 200 is outside Lava's 8-bit mixed-sign range -128..127" in r
               for r in reasons), reasons
    assert any("projection 'late': delay 64 is outside Lava's range 0..63" in r for r in reasons), reasons
    assert lava.unsupported(network([input_pop("in", 2), neuron_pop("a", 2)],
                                    [dense("unsigned", "in", "a", [[255, 0], [3, 9]])]), LOIHI2) == []


def test_out_of_range_graph_is_refused_by_the_cli_before_anything_runs(tmp_path: Path, capsys):
    ir.save(one_population(vth=200_000), tmp_path / "g.npz")
    out = tmp_path / "out"
    assert cli.main(["compile", str(tmp_path / "g.npz"), "--target", "loihi2", "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "vth 200000 is outside loihi2's range 0..131071" in err and "numerics.threshold_bits" in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


# --------------------------------------------------------------------------- lowering and running


def test_population_with_different_thresholds_is_split_into_one_lif_per_value(tmp_path: Path):
    graph = network([input_pop("in", 4), neuron_pop("a", 6, vth=[10, 20, 10, 30, 20, 10], i_decay=2000, v_decay=9)],
                    [dense("w", "in", "a", np.arange(24).reshape(6, 4) - 12)])
    description, arrays = lowering.lower(graph)
    (pop,) = [p for p in description["populations"] if p["name"] == "a"]
    assert [s["vth"] for s in pop["segments"]] == [10, 20, 30]
    assert [list(arrays[s["index"]]) for s in pop["segments"]] == [[0, 2, 5], [1, 4], [3]]
    assert all(s["du"] == 1999 and s["dv"] == 9 for s in pop["segments"])
    stim = {"in": (np.random.default_rng(0).random((30, 4)) < 0.4).astype(np.uint8)}
    got = lava.compile(graph, LOIHI2, tmp_path / "a").run(stim, record_state=True)
    want = cpu.simulate(graph, stim, record_state=True)
    for name in ("spikes", "u", "v"):
        np.testing.assert_array_equal(getattr(got["a"], name), getattr(want["a"], name))


def test_conv_becomes_lava_conv_at_exponent_0_and_plain_synapses_otherwise(tmp_path: Path):
    spec = ir.ConvSpec(in_shape=(2, 5, 4), out_shape=(3, 3, 1), stride=(2, 2), padding=(1, 0), dilation=(1, 1))
    kernel = np.random.default_rng(1).integers(-60, 61, size=(3, 2, 3, 3))
    stim = {"in": (np.random.default_rng(2).random((25, 40)) < 0.5).astype(np.uint8)}
    for exp, kind in ((0, "conv"), (2, "dense")):
        graph = network([input_pop("in", (2, 5, 4)), neuron_pop("c", (3, 3, 1), vth=50, v_decay=500)],
                        [conv("k", "in", "c", kernel, spec, weight_exp=exp)])
        description, _ = lowering.lower(graph)
        assert [c["kind"] for c in description["connections"]] == [kind]
        got = lava.compile(graph, LOIHI2, tmp_path / kind).run(stim, record_state=True)
        want = cpu.simulate(graph, stim, record_state=True)
        assert want["c"].spikes.any()
        np.testing.assert_array_equal(got["c"].spikes, want["c"].spikes)
        np.testing.assert_array_equal(got["c"].v, want["c"].v)


def test_repeated_sparse_pairs_and_large_matrices_use_several_sparse_connections(tmp_path: Path):
    graph = network([input_pop("in", 3), neuron_pop("a", 2, vth=0, v_decay=4096)],
                    [sparse("s", "in", "a", rows=[0, 0, 0, 1], cols=[0, 0, 0, 2], weight=[2, 3, 5, -1],
                            delay=[0, 0, 2, 1])])
    description, _ = lowering.lower(graph, dense_limit=1)
    assert sorted(c["kind"] for c in description["connections"]) == ["delay_sparse", "delay_sparse", "sparse"]
    stim = {"in": np.eye(3, dtype=np.uint8)[[0, 2, 1, 0, 2]]}
    got = lava.compile(graph, LOIHI2, tmp_path / "s").run(stim, record_state=True)
    want = cpu.simulate(graph, stim, record_state=True)
    np.testing.assert_array_equal(got["a"].u, want["a"].u)
    assert want["a"].u.any()


def test_batched_stimulus_runs_every_sample(tmp_path: Path):
    graph = network([input_pop("in", 5), neuron_pop("a", 4, vth=30, i_decay=1024, v_decay=100),
                     neuron_pop("out", 3, vth=0, spiking=False, v_decay=2048)],
                    [dense("w1", "in", "a", np.random.default_rng(3).integers(-90, 91, (4, 5)),
                           delay=np.random.default_rng(9).integers(0, 8, (4, 5))),
                     dense("w2", "a", "out", np.random.default_rng(4).integers(-90, 91, (3, 4)))])
    # spikes late in each sample leave delayed input in flight: the next sample must not see it
    stim = {"in": (np.random.default_rng(5).random((3, 20, 5)) < 0.4).astype(np.uint8)}
    got = lava.compile(graph, LOIHI2, tmp_path / "b").run(stim, record_state=True)
    want = cpu.simulate(graph, stim, record_state=True)
    assert got["a"].spikes.shape == (3, 20, 4)
    for name in ("spikes", "u", "v"):
        np.testing.assert_array_equal(getattr(got["a"], name), getattr(want["a"], name))
    np.testing.assert_array_equal(got["out"].v, want["out"].v)  # non-spiking: its output is v
    assert not got["out"].spikes.any()


# --------------------------------------------------------------------------- the artifact


def test_artifact_can_be_taken_away_and_run_with_the_standalone_script(tmp_path: Path):
    graph = network([input_pop("in", 6), neuron_pop("a", 5, vth=40, bias_mant=7, bias_exp=3, v_decay=300)],
                    [dense("w", "in", "a", np.random.default_rng(6).integers(-128, 128, (5, 6)),
                           delay=np.random.default_rng(7).integers(0, 4, (5, 6)))])
    api.compile(graph, target="loihi2", out_dir=tmp_path / "art")
    files = set(json.loads((tmp_path / "art" / "manifest.json").read_text())["files"])
    assert {"network.json", "network.npz", "run_lava.py", "README.txt", "graph.npz"} <= files
    assert "Loihi2HwCfg" in (tmp_path / "art" / "README.txt").read_text()
    assert "--loihi2-hw" in (tmp_path / "art" / "run_lava.py").read_text()
    stim = (np.random.default_rng(8).random((15, 6)) < 0.5).astype(np.uint8)
    np.savez(tmp_path / "stim.npz", **{"in": stim})
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    for name in ("network.json", "network.npz", "run_lava.py"):
        (copy / name).write_bytes((tmp_path / "art" / name).read_bytes())
    done = subprocess.run([sys.executable, "run_lava.py", ".", "--stimulus", str(tmp_path / "stim.npz"),
                           "--output", "result.npz"], cwd=copy, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with np.load(copy / "result.npz") as result:
        np.testing.assert_array_equal(result["spikes/a"][0], cpu.simulate(graph, {"in": stim})["a"].spikes)
    assert isinstance(execute.load(tmp_path / "art"), lava.LavaArtifact)


def test_runner_errors_come_back_as_one_line(tmp_path: Path):
    graph = network([input_pop("in", 2), neuron_pop("a", 2)], [dense("w", "in", "a", [[1, 2], [3, 4]])])
    artifact = lava.compile(graph, LOIHI2, tmp_path / "art")
    np.savez(tmp_path / "bad.npz", other=np.zeros((3, 2)))
    done = subprocess.run([sys.executable, str(tmp_path / "art" / "run_lava.py"), str(tmp_path / "art"),
                           "--stimulus", str(tmp_path / "bad.npz"), "--output", str(tmp_path / "r.npz")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"run_lava: error: ValueError: {tmp_path / 'bad.npz'}: "
                                                "no array for input population 'in'"]
    with pytest.raises(lava.LavaError, match=r"^Lava run failed: .*no array for input population 'in'$"):
        lava._run_subprocess([sys.executable, str(tmp_path / "art" / "run_lava.py"), str(tmp_path / "art"),
                              "--stimulus", str(tmp_path / "bad.npz"), "--output", str(tmp_path / "r.npz")], 120)
    assert artifact.run({"in": np.ones((3, 2), np.uint8)})["a"].spikes.shape == (3, 2)


def test_a_hanging_lava_is_stopped_at_the_timeout():
    with pytest.raises(lava.LavaError, match=r"did not finish within 1 s and was stopped \(set SNNC_LAVA_TIMEOUT"):
        lava._run_subprocess([sys.executable, "-c", "import time; time.sleep(60)"], timeout=1)


def test_timeout_can_be_set_by_environment(monkeypatch):
    monkeypatch.setenv(lava.TIMEOUT_ENV, "7.5")
    assert lava._timeout(one_population(), 3, 100) == 7.5
