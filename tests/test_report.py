"""``snnc report``: a self-contained HTML page whose plots render in a real browser, from the file system."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import snnc
from snnc.backends.fpga import sim
from snnc.runtime import report

from .conftest import REPO

MODEL = REPO / "examples" / "digits_snntorch.nir"
TEST_SET = REPO / "examples" / "digits_snntorch_test.npz"
MESH = REPO / "hw_configs" / "mesh_study.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def stimuli(tmp_path_factory) -> Path:
    """The first 20 test digits and their labels."""
    path = tmp_path_factory.mktemp("stimuli") / "digits20.npz"
    with np.load(TEST_SET) as data:
        np.savez(path, input=data["input"][:20], labels=data["labels"][:20])
    return path


@pytest.fixture(scope="module")
def mesh_report(tmp_path_factory, stimuli) -> Path:
    """The digits MLP on the mesh study hardware (64-neuron cores, so it spreads over several), with its report."""
    out = tmp_path_factory.mktemp("mesh") / "art"
    snnc.compile(MODEL, target="cpu", hw=MESH, out_dir=out, stimuli=stimuli)
    return report.write_report(out, stimuli=stimuli, samples=4, progress=False)


def sections(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="(\w+)">(.*?)</section>', page, flags=re.S))


def images(index: Path) -> list[Path]:
    return [index.parent / src for src in re.findall(r'<img src="([^"]+)"', index.read_text())]


def assert_real_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    with Image.open(path) as image:
        assert image.width > 200 and image.height > 150, (path, image.size)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20, f"{path.name}: {len(colours or [])} colours, looks blank"


def test_report_has_every_section_with_its_plots_and_nothing_external(mesh_report):
    page = mesh_report.read_text()
    found = sections(page)
    assert list(found) == list(report.SECTIONS)
    assert mesh_report.parent.name == report.REPORT_DIR
    pngs = images(mesh_report)
    assert {p.name for p in pngs} == {"rasters.png", "quantization.png", "rates.png", "placement.png"}
    for png in pngs:
        assert png.parent == mesh_report.parent
        assert_real_png(png)
    assert "http" not in page and "<script" not in page.lower() and "<link" not in page.lower()
    assert not [p for p in mesh_report.parent.parent.iterdir() if p.name.startswith(".report")]


def test_report_tells_cores_traffic_quantization_and_verification(mesh_report):
    found = sections(mesh_report.read_text())
    graph = snnc.runtime.execute.load(mesh_report.parent.parent).graph
    cores = np.unique(np.concatenate([p.placement for p in graph.populations if p.placement is not None]))
    assert cores.size > 1
    assert f"{cores.size} cores on 1 chip(s)" in found["placement"]
    assert "spikes per step between cores" in found["placement"]
    assert "From quant_report.json" in found["quantization"] and "weight bits" in found["quantization"]
    assert "Not an FPGA artifact" in found["fpga"]
    assert '<td class="pass">PASS</td>' in found["verification"]
    assert "the CPU reference itself" in found["rasters"]
    assert "accuracy" in found["summary"] and "digits_snntorch.nir" in found["summary"]


def test_core_traffic_counts_each_spike_once_per_destination_core(mesh_report):
    artifact = snnc.runtime.execute.load(mesh_report.parent.parent)
    graph = artifact.graph
    with np.load(TEST_SET) as data:
        result = artifact.run({"input": data["input"][:3]})
    layout = report.core_traffic(graph, "mesh_study", result)
    assert layout is not None and layout.hw is not None and layout.hw.name == "mesh_study"
    hidden, output = graph.populations[1], graph.populations[2]
    rate = result[hidden.name].spikes.reshape(-1, hidden.size).mean(axis=0)
    out_core = {int(c) for c in output.placement}
    index = {c["core"]: k for k, c in enumerate(layout.cores)}
    # the dense hidden -> output projection: every hidden spike reaches the output's one core exactly once
    assert len(out_core) == 1
    column = layout.traffic[:, index[out_core.pop()]]
    np.testing.assert_allclose(column.sum(), rate.sum())
    assert layout.from_host.sum() > 0


def test_report_with_random_stimuli_and_an_existing_report_replaced(tmp_path, stimuli):
    art = tmp_path / "art"
    snnc.compile(MODEL, target="cpu", out_dir=art)
    first = report.write_report(art, progress=False)
    again = report.write_report(art, samples=2, steps=12, seed=3, progress=False)
    assert first == again
    found = sections(again.read_text())
    assert "random Bernoulli spikes" in found["summary"] and "2 samples x 12 steps" in found["summary"]
    assert "Computed now on the report" in found["quantization"]
    assert "Single core (the CPU reference does not partition)" in found["placement"]


def test_verification_matrix_from_json(tmp_path, mesh_report):
    matrix = {"model": str(MODEL), "mode": "exact", "tolerance": None, "targets": [
        {"target": "cpu", "status": "PASS", "message": "", "seconds": 0.4,
         "comparison": {"mode": "exact", "spikes_compared": 1000, "spike_mismatches": 0, "state_mismatches": 0}},
        {"target": "loihi2", "status": "FAIL", "message": "first divergence: population '1' spikes, sample 0",
         "seconds": 2.5, "comparison": {"mode": "exact", "spikes_compared": 1000, "spike_mismatches": 3,
                                        "state_mismatches": 4, "divergence": {"hint": "saturation"}}},
        {"target": "fpga-ice40", "status": "DOES NOT FIT", "message": "needs 40 BRAM, has 30", "seconds": 1.0,
         "comparison": None}]}
    path = tmp_path / "matrix.json"
    path.write_text(json.dumps(matrix))
    out = report.write_report(mesh_report.parent.parent, tmp_path / "out", verify_json=path, samples=1, progress=False)
    found = sections(out.read_text())["verification"]
    assert '<td class="fail">FAIL</td>' in found and '<td class="other">DOES NOT FIT</td>' in found
    assert "[hint: saturation]" in found and ">7<" in found and "matrix.json" in found


@pytest.mark.parametrize("make, fragment", [
    (lambda d: d, "not an snnc artifact directory"),
])
def test_not_an_artifact_is_a_one_line_value_error(tmp_path, make, fragment):
    with pytest.raises(ValueError, match=fragment) as info:
        report.write_report(make(tmp_path))
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("content, fragment", [
    (b"not a zip", "not a readable .npz file"),
    ("wrong_name", "not inputs of the network"),
    ("bad_labels", "3 labels for 2 samples"),
])
def test_bad_stimuli_name_the_file(tmp_path, mesh_report, content, fragment):
    bad = tmp_path / "bad.npz"
    if content == "wrong_name":
        np.savez(bad, retina=np.zeros((2, 5, 64), np.uint8))
    elif content == "bad_labels":
        np.savez(bad, input=np.zeros((2, 5, 64), np.uint8), labels=np.arange(3))
    else:
        bad.write_bytes(content)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=fragment) as info:
        report.write_report(mesh_report.parent.parent, out, stimuli=bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    assert not out.exists()


def test_bad_inputs_and_failures_leave_nothing_behind(tmp_path, mesh_report, monkeypatch):
    art = mesh_report.parent.parent
    with pytest.raises(ValueError, match="not a verification matrix"):
        report.write_report(art, tmp_path / "out", verify_json=mesh_report.parent.parent / "manifest.json")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an snnc report; refusing"):
        report.write_report(art, tmp_path / "taken")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"

    def broken(*args, **kwargs):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(report.plots, "core_map", broken)
    with pytest.raises(RuntimeError, match="plotting failed"):
        report.write_report(art, tmp_path / "out", samples=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_a_target_that_fails_to_run_still_gets_a_report_saying_why(tmp_path, mesh_report, monkeypatch):
    load = report.execute.load

    def broken_target(path):
        artifact = load(path)

        def run(*args, **kwargs):
            raise RuntimeError("the board is unplugged")

        monkeypatch.setattr(artifact, "run", run)
        return artifact

    monkeypatch.setattr(report.execute, "load", broken_target)
    out = report.write_report(mesh_report.parent.parent, tmp_path / "out", samples=1, progress=False)
    found = sections(out.read_text())
    assert '<td class="fail">ERROR</td>' in found["verification"] and "the board is unplugged" in found["verification"]
    assert "The target run failed" in found["rasters"]
    assert "the quantized CPU run" in found["placement"]


@pytest.mark.skipif(not sim.available_simulators(), reason="no HDL simulator (bash setup.sh installs them)")
def test_fpga_report_shows_memory_and_throughput(tmp_path, stimuli):
    art = tmp_path / "ice40"
    snnc.compile(MODEL, target="fpga-ice40", out_dir=art, bitstream=False)
    out = report.write_report(art, stimuli=stimuli, samples=2, steps=10, progress=False)
    found = sections(out.read_text())
    assert "fpga.png" in found["fpga"] and "BRAM (SB_RAM40_4K)" in found["fpga"] and "SPRAM" in found["fpga"]
    assert "not measured (no place and route)" in found["fpga"] and "24 MHz" in found["fpga"]
    assert "timesteps/s, report stimuli" in found["fpga"]
    assert "Single core (the FPGA design is one time-multiplexed core)" in found["placement"]
    assert "target fpga-ice40" in found["rates"] and '<td class="pass">PASS</td>' in found["verification"]
    for png in images(out):
        assert_real_png(png)


def test_fpga_section_with_place_and_route_results(tmp_path):
    implementation = {"family": "ice40", "device": "up5k", "fmax_mhz": 31.5, "clock_mhz": 24.0, "timing_met": True,
                      "summary": {"luts": {"used": 3900, "available": 5280}, "bram_blocks": {"used": 14, "available": 30},
                                  "spram_blocks": {"used": 1, "available": 4}, "dsp": {"used": 0, "available": 8}}}
    fpga_report = {"target": "ice40_up5k", "part": "iCE40 UP5K", "board": "icebreaker", "implementation": implementation,
                   "memory_estimate": {}, "throughput": {"clock_mhz": 24.0, "fmax_mhz": 31.5, "idle_cycles": 148,
                                                         "worst_case_cycles": 5874, "worst_case_timesteps_per_s": 4085.8}}
    html = "\n".join(report.fpga_parts(fpga_report, np.full((2, 5), 300), tmp_path))
    assert "31.5 MHz" in html and '<td class="pass">PASS</td>' in html
    assert "LUT" in html and "3,900" in html and "73.9%" in html
    assert "80,000 at the clock, 105,000 at Fmax" in html
    assert_real_png(tmp_path / "fpga.png")


# ---------------------------------------------------------------------------------------------------- in a browser


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium (Debian: apt-get install chromium; bash setup.sh installs it)")


def browse(page: Path, tmp_path: Path, *mode: str) -> subprocess.CompletedProcess:
    """Headless Chromium on ``file://page``; new headless mode, no sandbox (CI runs as root), fresh profile."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={profile}", *mode, page.resolve().as_uri()]
    return subprocess.run(argv, capture_output=True, text=True, timeout=90, check=True)


def screenshot(page: Path, tmp_path: Path, name: str) -> np.ndarray:
    out = tmp_path / name
    browse(page, tmp_path, f"--screenshot={out}", "--window-size=1200,3000")
    with Image.open(out) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


def test_report_renders_in_headless_chromium_from_the_file_system(mesh_report, tmp_path):
    page = tmp_path / "report"
    shutil.copytree(mesh_report.parent, page)
    blank = tmp_path / "blank"
    shutil.copytree(mesh_report.parent, blank)
    for png in blank.glob("*.png"):  # same layout, images white: what differs is what the plots drew
        with Image.open(png) as image:
            Image.new("RGB", image.size, "white").save(png)

    dom = browse(page / report.INDEX, tmp_path, "--dump-dom").stdout
    for section in report.SECTIONS:
        assert f'<section id="{section}">' in dom
    assert dom.count("<img ") == 4

    shot = screenshot(page / report.INDEX, tmp_path, "report.png")
    empty = screenshot(blank / report.INDEX, tmp_path, "blank.png")
    assert shot.shape == empty.shape == (3000, 1200, 3)
    colours = np.unique(shot.reshape(-1, 3), axis=0)
    assert len(colours) > 500, f"{len(colours)} colours: the page looks blank"
    changed = np.abs(shot - empty).sum(axis=2) > 30
    assert changed.mean() > 0.05, f"only {changed.mean():.1%} of the page changed when the plots were blanked"
    # the raster dots of the quantized run are orange (report_plots.RUN_COLOURS): present only when images load
    orange = (np.abs(shot - np.array([0xFF, 0x7F, 0x0E])).sum(axis=2) < 40).sum()
    orange_blank = (np.abs(empty - np.array([0xFF, 0x7F, 0x0E])).sum(axis=2) < 40).sum()
    assert orange > 200 and orange_blank == 0
