"""The hardware description loader: bundled configs load, bad files fail with one line naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from snnc.compiler import hw, ir

BUNDLED = ["cpu", "ecp5_85f", "fpga_generic", "ice40_up5k", "loihi2", "mesh_study"]


def _cpu_yaml() -> dict:
    return yaml.safe_load((Path(hw.__file__).resolve().parents[1] / "hw_configs" / "cpu.yaml").read_text())


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "target.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _error(path: Path) -> str:
    with pytest.raises(hw.HwConfigError) as info:
        hw.load_hw(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    return message


def test_bundled_names_lists_every_shipped_config() -> None:
    assert hw.bundled_names() == BUNDLED


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_config_loads_and_is_consistent(name: str) -> None:
    config = hw.bundled_hw(name)
    assert config.name == name
    assert config.source == f"hw_configs/{name}.yaml"
    assert config.chip.mesh[0] * config.chip.mesh[1] == config.chip.cores
    assert set(config.neurons.models) <= set(ir.NEURON_MODELS) - {"input"}
    assert (config.fpga is not None) == (config.backend == "fpga")
    assert config.numerics.decay_bits == 12


def test_loihi2_figures_match_the_research_notes() -> None:
    config = hw.bundled_hw("loihi2")
    assert config.backend == "lava"
    assert config.neurons.reset_modes == ("zero",)
    assert config.core.max_neurons == 8192
    assert config.chip.cores == 128
    assert config.core.max_fan_in == config.core.max_fan_out == 4096
    assert config.core.synapse_memory_bytes == 131072
    assert config.numerics.max_delay == 63
    assert config.numerics.threshold_bits == 17


def test_fpga_configs_carry_their_device() -> None:
    up5k, ecp5 = hw.bundled_hw("ice40_up5k"), hw.bundled_hw("ecp5_85f")
    assert up5k.fpga is not None and ecp5.fpga is not None
    assert (up5k.fpga.family, up5k.fpga.luts, up5k.fpga.spram_bits, up5k.fpga.dsp) == ("ice40", 5280, 1 << 20, 8)
    assert (ecp5.fpga.family, ecp5.fpga.luts, ecp5.fpga.bram_bits, ecp5.fpga.dsp) == ("ecp5", 83640, 3744 * 1024, 156)
    assert up5k.core.synapse_memory_bytes == 131072


def test_a_copy_of_a_bundled_config_loads_from_a_path(tmp_path: Path) -> None:
    config = hw.load_hw(_write(tmp_path, _cpu_yaml()))
    assert config.source == str(tmp_path / "target.yaml")
    assert config.numerics == hw.bundled_hw("cpu").numerics


def test_unknown_bundled_name_lists_the_available_ones() -> None:
    with pytest.raises(hw.HwConfigError, match="available: cpu, ecp5_85f, fpga_generic, ice40_up5k, loihi2"):
        hw.bundled_hw("loihi3")


def test_unknown_key_is_named_with_its_dotted_path(tmp_path: Path) -> None:
    data = _cpu_yaml()
    data["core"]["max_neuron"] = 5
    message = _error(_write(tmp_path, data))
    assert "unknown key 'core.max_neuron'" in message
    assert "max_neurons" in message


def test_unknown_top_level_key_is_rejected(tmp_path: Path) -> None:
    data = _cpu_yaml()
    data["source"] = "elsewhere.yaml"
    assert "unknown key 'source'" in _error(_write(tmp_path, data))


def test_out_of_range_value_names_key_value_and_range(tmp_path: Path) -> None:
    data = _cpu_yaml()
    data["numerics"]["weight_bits"] = 17
    assert "numerics.weight_bits = 17 is out of range [1, 16]" in _error(_write(tmp_path, data))


def test_decay_bits_other_than_12_are_refused(tmp_path: Path) -> None:
    data = _cpu_yaml()
    data["numerics"]["decay_bits"] = 10
    message = _error(_write(tmp_path, data))
    assert "numerics.decay_bits = 10 is out of range [12, 12]" in message
    assert "4096ths" in message


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("numerics", "state_bits", True, "numerics.state_bits = True must be an integer"),
        ("numerics", "weight_bits", "eight", "numerics.weight_bits = eight must be an integer"),
        ("numerics", "per_channel_scales", 1, "numerics.per_channel_scales = 1 must be true or false"),
        ("chip", "mesh", [4], "chip.mesh = [4] must be a list of 2"),
        ("chip", "mesh", [1, True], "chip.mesh[1] = True must be an integer"),
        ("neurons", "models", "lif", "neurons.models = lif must be a list"),
        ("neurons", "models", ["lif", "izhikevich"], "neurons.models[1] = izhikevich is not one of [lif, cuba_lif"),
        ("neurons", "reset_modes", [], "neurons.reset_modes must not be empty"),
        ("core", "max_axons", 0, "core.max_axons = 0 is out of range >= 1"),
    ],
)
def test_wrong_types_and_values_name_the_key(tmp_path: Path, section: str, key: str, value: object,
                                             expected: str) -> None:
    data = _cpu_yaml()
    data[section][key] = value
    assert expected in _error(_write(tmp_path, data))


def test_input_model_is_not_a_target_model(tmp_path: Path) -> None:
    data = _cpu_yaml()
    data["neurons"]["models"] = ["input", "lif"]
    assert "neurons.models[0] = input is not one of" in _error(_write(tmp_path, data))


def test_section_that_is_not_a_mapping_is_named(tmp_path: Path) -> None:
    data = _cpu_yaml()
    data["numerics"] = [8, 0, 7]
    assert "numerics must be a mapping, got list" in _error(_write(tmp_path, data))


def test_missing_sections_are_all_named(tmp_path: Path) -> None:
    data = _cpu_yaml()
    del data["core"], data["chip"]
    assert "missing required key(s) core, chip" in _error(_write(tmp_path, data))


def test_missing_key_inside_a_section_is_named(tmp_path: Path) -> None:
    data = _cpu_yaml()
    del data["core"]["max_fan_in"]
    assert "missing required key(s) core.max_fan_in" in _error(_write(tmp_path, data))


def test_mesh_must_hold_every_core(tmp_path: Path) -> None:
    data = _cpu_yaml()
    data["chip"] = {"cores": 128, "mesh": [8, 8]}
    assert "chip.mesh = [8, 8] holds 64 cores but chip.cores = 128" in _error(_write(tmp_path, data))


def test_fpga_backend_needs_an_fpga_section(tmp_path: Path) -> None:
    data = _cpu_yaml()
    data["backend"] = "fpga"
    assert "backend fpga needs an 'fpga' section" in _error(_write(tmp_path, data))


def test_unknown_backend_is_rejected(tmp_path: Path) -> None:
    data = _cpu_yaml()
    data["backend"] = "spinnaker"
    assert "backend = spinnaker is not one of [cpu, gpu, lava, fpga]" in _error(_write(tmp_path, data))


@pytest.mark.parametrize("text", ["name: cpu\nnumerics: {weight_bits: 8", "name: [unclosed\n", "a: b: c\n"])
def test_unparsable_yaml_names_the_file(tmp_path: Path, text: str) -> None:
    assert "cannot parse YAML" in _error(_write(tmp_path, text))


@pytest.mark.parametrize(("text", "kind"), [("- 1\n- 2\n", "list"), ("just a string\n", "str"), ("", "NoneType")])
def test_non_mapping_yaml_names_the_file(tmp_path: Path, text: str, kind: str) -> None:
    assert f"top level must be a mapping of sections, got {kind}" in _error(_write(tmp_path, text))


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    message = _error(tmp_path / "nope.yaml")
    assert "cannot read hardware description" in message


def test_python_object_tags_are_refused_by_safe_load(tmp_path: Path) -> None:
    text = "name: !!python/object/apply:os.system ['echo pwned']\n"
    assert "cannot parse YAML" in _error(_write(tmp_path, text))
