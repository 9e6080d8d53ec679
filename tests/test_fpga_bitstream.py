"""Real bitstreams from the open flow: the digits example on iCE40 UP5K and ECP5-85F, and repeatable builds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from snnc import cli
from snnc.backends import fpga
from snnc.compiler import hw as hwmod
from tests.test_cpu_semantics import dense, input_pop, network, neuron_pop

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = pytest.mark.skipif(fpga.available() is not None, reason=f"FPGA tools missing: {fpga.available()}")


@pytest.mark.parametrize("target, clock_mhz, bitstream", [("fpga-ice40", 24, "snn.bin"), ("fpga-ecp5", 25, "snn.bit")])
def test_digits_example_builds_a_bitstream_that_fits_and_runs_10k_timesteps_per_s(target, clock_mhz, bitstream,
                                                                                   tmp_path, capsys):
    out = tmp_path / target
    assert cli.main(["compile", str(EXAMPLES / "digits_snntorch.nir"), "--target", target,
                     "--stimuli", str(EXAMPLES / "digits_snntorch_test.npz"), "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    implementation = report["implementation"]
    for resource, use in implementation["summary"].items():
        assert use["used"] <= use["available"], resource
    assert implementation["summary"]["luts"]["used"] > 500 and implementation["summary"]["bram_blocks"]["used"] > 0
    assert implementation["timing_met"] and implementation["fmax_mhz"] >= clock_mhz
    data = (out / bitstream).read_bytes()
    assert len(data) == 104_090 if target == "fpga-ice40" else len(data) > 100_000
    measured = report["throughput"]["measured"]
    assert measured["samples"] == 10 and measured["timesteps_per_s_at_fmax"] >= 10_000
    assert report["throughput"]["fmax_mhz"] == implementation["fmax_mhz"]
    # the design that was built spikes like the CPU reference on the first 40 test digits
    with np.load(EXAMPLES / "digits_snntorch_test.npz") as npz:
        np.savez(tmp_path / "stim.npz", input=npz["input"][:40])
    capsys.readouterr()
    code = cli.main(["verify", str(out), "--against", "cpu", "--stimuli", str(tmp_path / "stim.npz")])
    text = capsys.readouterr().out
    assert code == 0 and "PASS" in text and " 0 mismatching spikes of " in text, text


def test_repeat_builds_give_the_same_bitstream(tmp_path):
    rng = np.random.default_rng(5)
    graph = network([input_pop("in", 12), neuron_pop("h", 16, vth=50, bias_mant=rng.integers(-20, 20, 16)),
                     neuron_pop("o", 4, vth=40)],
                    [dense("w1", "in", "h", rng.integers(-90, 90, (16, 12))),
                     dense("w2", "h", "o", rng.integers(-90, 90, (4, 16)))])
    hw = hwmod.bundled_hw("ice40_up5k")
    first = fpga.compile(graph, hw, tmp_path / "a")
    second = fpga.compile(graph, hw, tmp_path / "deeper" / "path" / "b")
    assert (first.path / "snn.bin").read_bytes() == (second.path / "snn.bin").read_bytes()
    reports = [json.loads((a.path / "report.json").read_text())["implementation"] for a in (first, second)]
    assert reports[0]["bitstream_sha256"] == reports[1]["bitstream_sha256"] and reports[0]["seed"] == 1
