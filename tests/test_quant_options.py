"""Quantization options: the config file, the global options and their path through the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from snnc import cli
from snnc.compiler import ir
from snnc.compiler.hw import bundled_hw
from snnc.compiler.quant_options import LayerOverride, QuantOptions, QuantOptionsError, load_overrides

from .conftest import REPO

DIGITS = str(REPO / "examples" / "digits_snntorch.nir")  # projections '0' (64 -> 128) and '2' (128 -> 10)
CPU = bundled_hw("cpu")


def compile_cli(capsys, tmp_path, *options: str) -> tuple[int, str, ir.Graph | None]:
    out_dir = tmp_path / "artifact"
    code = cli.main(["compile", DIGITS, "-o", str(out_dir), *options])
    err = capsys.readouterr().err
    graph = ir.load(out_dir / "graph.npz") if code == 0 else None
    return code, err, graph


def write(tmp_path, text: str) -> str:
    path = tmp_path / "quant.yaml"
    path.write_text(text)
    return str(path)


# --------------------------------------------------------------------------- the config file


def test_config_file_parses_the_documented_schema(tmp_path) -> None:
    path = write(tmp_path, "weight_bits: 6\nlayers:\n  fc1: {weight_bits: 4}\n  conv2: {per_channel: false}\n")
    options = load_overrides(path)
    assert options == QuantOptions(weight_bits=6, overrides={"fc1": LayerOverride(weight_bits=4),
                                                             "conv2": LayerOverride(per_channel=False)})
    assert options.meta() == {"conv2": {"per_channel": False}, "fc1": {"weight_bits": 4}}
    assert load_overrides(write(tmp_path, "")) == QuantOptions()


@pytest.mark.parametrize(("text", "message"), [
    ("weight_bit: 6\n", "unknown key 'weight_bit' (known: weight_bits, per_channel, layers)"),
    ("layers:\n  fc1: {bits: 4}\n", "unknown key 'layers.fc1.bits' (known: weight_bits, per_channel)"),
    ("layers:\n  fc1: {weight_bits: 0}\n", "layers.fc1.weight_bits = 0 is out of range [1, 8]"),
    ("weight_bits: true\n", "weight_bits = True is out of range [1, 8]"),
    ("per_channel: 1\n", "per_channel = 1 must be true or false"),
    ("layers: [fc1]\n", "layers must be a mapping of layer names, got list"),
    ("layers:\n  fc1: 4\n", "layers.fc1 must be a mapping with weight_bits and/or per_channel"),
    ("- 6\n", "top level must be a mapping, got list"),
])
def test_config_file_errors_name_the_file_and_key(tmp_path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(QuantOptionsError) as info:
        load_overrides(path)
    assert str(info.value) == f"{path}: {message}"


# --------------------------------------------------------------------------- global options narrow the target


def test_options_replace_the_targets_numerics_within_its_limits() -> None:
    hw = QuantOptions(weight_bits=4).apply(CPU)
    assert hw.numerics.weight_bits == 4 and hw.numerics.per_channel_scales is True
    ice40 = bundled_hw("ice40_up5k")
    assert QuantOptions(per_channel=False).apply(ice40).numerics.per_channel_scales is False
    assert QuantOptions().apply(CPU) == CPU
    with pytest.raises(QuantOptionsError, match=r"^weight_bits = 9 is out of range \[1, 8\]$"):
        QuantOptions(weight_bits=9).apply(CPU)


# --------------------------------------------------------------------------- through the CLI


def test_cli_weight_bits_4_gives_4_bit_mantissas(capsys, tmp_path) -> None:
    code, err, graph = compile_cli(capsys, tmp_path, "--weight-bits", "4")
    assert code == 0, err
    assert graph is not None
    for proj in graph.projections:
        assert proj.quant.weight_bits == 4
        assert -8 <= proj.quant.weight.min() and proj.quant.weight.max() <= 7
        assert np.abs(proj.quant.weight).max() == 7
    assert graph.meta["quantization"]["weight_bits"] == 4


def test_cli_refuses_9_weight_bits_in_one_line(capsys, tmp_path) -> None:
    code, err, _ = compile_cli(capsys, tmp_path, "--weight-bits", "9")
    assert code == cli.EXIT_ERROR
    assert err == "snnc: error: weight_bits = 9 is out of range [1, 8]\n"


def test_cli_refuses_more_weight_bits_than_the_target_holds(capsys, tmp_path) -> None:
    text = (REPO / "hw_configs" / "cpu.yaml").read_text().replace("weight_bits: 8", "weight_bits: 6")
    hw = tmp_path / "narrow.yaml"
    hw.write_text(text)
    code, err, _ = compile_cli(capsys, tmp_path, "--hw", str(hw), "--weight-bits", "7")
    assert code == cli.EXIT_ERROR
    assert err == f"snnc: error: weight_bits = 7 is more than target 'cpu' holds ({hw}: numerics.weight_bits = 6)\n"
    code, err, graph = compile_cli(capsys, tmp_path, "--hw", str(hw), "--weight-bits", "5")
    assert code == 0, err
    assert {p.quant.weight_bits for p in graph.projections} == {5}


def test_cli_refuses_per_channel_on_a_per_layer_target(capsys, tmp_path) -> None:
    loihi2 = Path(bundled_hw("loihi2").source).name
    hw_file = Path(__file__).resolve().parents[1] / "hw_configs" / loihi2
    code, err, _ = compile_cli(capsys, tmp_path, "--per-channel", "--hw", str(hw_file))
    assert code == cli.EXIT_ERROR
    assert err == (f"snnc: error: per_channel = true, but target 'loihi2' has one scale per layer "
                   f"({hw_file}: numerics.per_channel_scales = false)\n")


def test_cli_quant_config_gives_one_projection_4_bits(capsys, tmp_path) -> None:
    code, err, graph = compile_cli(capsys, tmp_path, "--quant-config", write(tmp_path, "layers:\n  0: {weight_bits: 4}\n"))
    assert code == 0, err
    bits = {p.name: p.quant.weight_bits for p in graph.projections}
    assert bits == {"0": 4, "2": 8}
    (first,) = [p for p in graph.projections if p.name == "0"]
    assert np.abs(first.quant.weight).max() == 7
    assert graph.meta["quant_overrides"] == {"0": {"weight_bits": 4}}


def test_cli_weight_bits_option_overrides_the_config_file(capsys, tmp_path) -> None:
    config = write(tmp_path, "weight_bits: 4\nlayers:\n  '2': {weight_bits: 3}\n")
    code, err, graph = compile_cli(capsys, tmp_path, "--quant-config", config, "--weight-bits", "6")
    assert code == 0, err
    assert {p.name: p.quant.weight_bits for p in graph.projections} == {"0": 6, "2": 3}


def test_cli_reports_malformed_quant_config_in_one_line(capsys, tmp_path) -> None:
    config = write(tmp_path, "layers: {0: {weight_bits: 4}\n")
    code, err, _ = compile_cli(capsys, tmp_path, "--quant-config", config)
    assert code == cli.EXIT_ERROR
    assert err.startswith(f"snnc: error: {config}: cannot parse YAML (") and err.count("\n") == 1


def test_cli_reports_an_unknown_layer_in_one_line(capsys, tmp_path) -> None:
    code, err, _ = compile_cli(capsys, tmp_path, "--quant-config", write(tmp_path, "layers:\n  fc9: {weight_bits: 4}\n"))
    assert code == cli.EXIT_ERROR
    assert err == ("snnc: error: pass 'quantize' (after import, normalize): quantization override for layer 'fc9': "
                   "no such projection or population (projections: 0, 2; populations: 1, 3)\n")
