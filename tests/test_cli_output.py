"""--quiet and --json on every command: scripts get JSON or silence, people get text; errors stay one line."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from snnc import cli
from snnc.compiler import ir
from tests.test_cpu_semantics import dense, input_pop, network, neuron_pop


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_takes_quiet_and_json():
    commands = subcommands()
    assert {"targets", "compile", "check", "run", "verify", "fuzz", "report", "hil"} <= set(commands)
    for name, sub in commands.items():
        options = {opt for action in sub._actions for opt in action.option_strings}
        assert {"--quiet", "--json", "--debug"} <= options, name


@pytest.fixture
def model(tmp_path):
    graph = network([input_pop("x", 4), neuron_pop("y", 3, vth=20)], [dense("xy", "x", "y", np.full((3, 4), 30))])
    path = tmp_path / "tiny.npz"
    ir.save(graph, path)
    np.savez(tmp_path / "stim.npz", x=np.ones((2, 6, 4), dtype=np.uint8), labels=np.array([0, 1]))
    return path


def test_json_on_stdout_is_the_only_output_and_parses(model, tmp_path, capsys):
    assert cli.main(["compile", str(model), "-o", str(tmp_path / "art"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["target"] == "cpu" and result["neurons"] == 3 and result["artifact"] == str(tmp_path / "art")
    assert cli.main(["run", str(tmp_path / "art"), "-i", str(tmp_path / "stim.npz"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["outputs"]["y"]["steps"] == 6 and result["outputs"]["y"]["spikes"] > 0 and result["samples"] == 2
    assert cli.main(["verify", str(tmp_path / "art"), "--stimuli", "2", "--steps", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["passed"] is True and result["comparison"]["spike_mismatches"] == 0


def test_json_to_a_file_keeps_the_text(model, tmp_path, capsys):
    out = tmp_path / "targets.json"
    assert cli.main(["targets", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("target ") and f"wrote {out}" in text
    assert {"cpu", "gpu"} <= {row["target"] for row in json.loads(out.read_text())["targets"]}


def test_quiet_prints_nothing_but_errors_still_reach_stderr(model, tmp_path, capsys):
    assert cli.main(["compile", str(model), "-o", str(tmp_path / "art"), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert (tmp_path / "art" / "manifest.json").is_file()
    assert cli.main(["run", str(tmp_path / "nowhere"), "-i", str(tmp_path / "stim.npz"), "-q"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("snnc: error: ")


def test_fuzz_reports_json(capsys):
    assert cli.main(["fuzz", "--max-examples", "3", "--targets", "gpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["passed"] and result["examples"] == 3 and result["failure"] is None
    assert result["targets"]["gpu"]["compared"] + result["targets"]["gpu"]["refused"] == 3
