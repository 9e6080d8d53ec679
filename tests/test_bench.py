"""The benchmark suite's plumbing: results as data, their markdown, the machine description and ``python -m bench``.

The real benchmarks are not run here (they take minutes), except by the one ``slow`` test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from bench import BENCHMARKS, report
from bench import __main__ as cli
from bench.compile_scaling import scaling_exponent
from bench.fpga import FRAME_OVERHEAD, link_bytes

REPO = Path(__file__).resolve().parents[1]
MACHINE = {"cpu": "AMD EPYC", "cores": "2", "ram": "23 GiB", "gpu": "none (no CUDA device)",
           "os": "Debian GNU/Linux 12 (bookworm), kernel 6.1", "python": "3.11.7", "torch": "2.13.0+cpu",
           "numpy": "1.26.4", "snntorch": "1.0.0", "lava-nc": "0.10.0"}


def _result() -> report.BenchResult:
    result = report.BenchResult("cpu_reference", "CPU reference vs snnTorch")
    result.rows.append(report.compare("timesteps/s", 90_000.0, "timesteps/s", "snnTorch no_grad", 6_000.0,
                                      note="2 threads", headline=True))
    result.rows.append(report.Row("synaptic events/s", 6.27e9, "events/s"))
    result.notes.append("spike counts match")
    return result


def test_compare_divides_value_by_baseline_and_has_no_ratio_without_one() -> None:
    assert report.compare("x", 90.0, "s", "b", 6.0).ratio == pytest.approx(15.0)
    assert report.compare("x", 90.0, "s", "b", 0.0).ratio is None
    assert report.compare("x", 90.0, "s", "b", None).ratio is None


@pytest.mark.parametrize(("value", "text"), [(94_857.3, "94,857"), (27.71, "27.7"), (0.1934, "0.193"),
                                             (6.27e9, "6.27e9"), (3, "3"), (1.0, "1"), ("match", "match")])
def test_format_number_uses_separators_or_three_significant_digits(value: float | str, text: str) -> None:
    assert report.format_number(value) == text


@pytest.mark.parametrize(("ratio", "text"), [(184.4, "184×"), (1381.2, "1,381×"), (13.08, "13.1×"), (1.753, "1.75×"),
                                             (0.3984, "0.398×"), (None, "")])
def test_format_ratio(ratio: float | None, text: str) -> None:
    assert report.format_ratio(ratio) == text


def test_cpu_model_and_ram_are_parsed_from_proc_text() -> None:
    cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14\n\nprocessor\t: 1\n"
    assert report.cpu_model(cpuinfo) == "AMD EPYC 9R14"
    assert report.cpu_model("processor\t: 0\n") == "unknown CPU"
    assert report.mem_total_gib("MemTotal:       24605064 kB\nMemFree: 1 kB\n") == pytest.approx(23.47, abs=0.01)
    assert report.mem_total_gib("") is None


def test_machine_describes_the_cpu_and_ram_of_the_given_proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "cuda_device", lambda: "none (no CUDA device)")  # importing torch takes seconds
    (tmp_path / "cpuinfo").write_text("model name\t: Test CPU 3000\n")
    (tmp_path / "meminfo").write_text("MemTotal:       16777216 kB\n")
    info = report.machine(tmp_path)
    assert info["cpu"] == "Test CPU 3000"
    assert info["ram"] == "16 GiB"
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert int(info["cores"]) >= 1
    line = report.machine_line(info)
    assert line.startswith("Test CPU 3000, ") and "16 GiB RAM, no CUDA GPU;" in line
    assert f"Python {info['python']}" in line


def test_machine_line_names_a_cuda_gpu_or_says_there_is_none() -> None:
    assert "no CUDA GPU" in report.machine_line(MACHINE)
    assert "NVIDIA H200 (CUDA 12.4)" in report.machine_line({**MACHINE, "gpu": "NVIDIA H200 (CUDA 12.4)"})


def test_result_table_shows_value_baseline_ratio_and_notes() -> None:
    result = _result()
    result.seconds = 1.25
    text = report.result_table(result)
    assert text.startswith("### cpu_reference: CPU reference vs snnTorch\n\nStatus: ok; 1.2 s.")
    assert ("| timesteps/s | 90,000 timesteps/s | snnTorch no_grad: 6,000 timesteps/s | 15.0× | 2 threads |"
            in text.splitlines())
    assert "| synaptic events/s | 6.27e9 events/s |  |  |  |" in text.splitlines()
    assert text.endswith("- spike counts match")


def test_markdown_table_escapes_pipes_in_cells() -> None:
    table = report.markdown_table(("a", "b"), [("x|y", "z")])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | z |"]


def test_summary_has_headline_rows_and_says_why_a_benchmark_did_not_run() -> None:
    skipped = report.BenchResult.not_run("lava_vs_cpu", "CPU vs Lava", "lava-nc is not installed")
    broken = report.BenchResult("gpu", "GPU vs snnTorch").fail("RuntimeError: boom")
    summary = report.summary_table([_result(), skipped, broken]).splitlines()
    assert summary[0] == "| Benchmark | Metric | Value | Baseline | Ratio |"
    assert summary[2] == "| cpu_reference | timesteps/s | 90,000 timesteps/s | snnTorch no_grad: 6,000 timesteps/s | 15.0× |"
    assert summary[3] == "| lava_vs_cpu | CPU vs Lava | not run: lava-nc is not installed |  |  |"
    assert summary[4] == "| gpu | GPU vs snnTorch | FAILED: RuntimeError: boom |  |  |"
    assert len(summary) == 5  # the events/s row is not a headline


def test_summary_flags_a_failed_benchmark_even_when_it_has_headline_rows() -> None:
    result = _result().fail("spike counts differ")
    summary = report.summary_table([result]).splitlines()
    assert summary[2] == "| cpu_reference | CPU reference vs snnTorch | FAILED: spike counts differ |  |  |"
    assert summary[3].startswith("| cpu_reference | timesteps/s | 90,000 timesteps/s |")


def test_render_has_date_machine_command_total_summary_and_every_table() -> None:
    skipped = report.BenchResult.not_run("fpga", "digits on FPGAs", "yosys not found")
    text = report.render([_result(), skipped], MACHINE, "python -m bench --quick", 123.45, "2025-01-02 03:04 UTC")
    assert "- Date: 2025-01-02 03:04 UTC" in text
    assert "- Machine: AMD EPYC, 2 cores, 23 GiB RAM; GPU: none (no CUDA device)" in text
    assert "- Command: `python -m bench --quick`" in text
    assert "- Total time: 123.5 s" in text
    assert f"Measured on: {report.machine_line(MACHINE)}." in text
    assert text.index("## Summary") < text.index("### cpu_reference") < text.index("### fpga")
    assert "Status: not run: yosys not found" in text


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "results.md"
    report.write_atomic(out, "old\n")
    report.write_atomic(out, "new\n")
    assert out.read_text() == "new\n"
    assert [p.name for p in out.parent.iterdir()] == ["results.md"]


def test_result_to_dict_is_json_serialisable() -> None:
    data = json.loads(json.dumps(_result().to_dict()))
    assert data["rows"][0]["ratio"] == pytest.approx(15.0)
    assert data["status"] == "ok"


def test_only_keeps_suite_order_and_rejects_unknown_names() -> None:
    assert cli.parse_only(None) == BENCHMARKS
    assert cli.parse_only("fpga, cpu_reference") == ("cpu_reference", "fpga")
    with pytest.raises(ValueError, match="unknown benchmark 'lava'"):
        cli.parse_only("lava,gpu")


def test_main_writes_markdown_and_json_and_a_broken_benchmark_does_not_stop_the_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def broken(quick: bool) -> report.BenchResult:
        raise RuntimeError("simulator crashed")

    seen = []

    def working(quick: bool) -> report.BenchResult:
        seen.append(quick)
        return _result()

    monkeypatch.setitem(sys.modules, "bench.cpu_reference", types.SimpleNamespace(run=working))
    monkeypatch.setitem(sys.modules, "bench.gpu", types.SimpleNamespace(run=broken))
    monkeypatch.setattr(report, "machine", lambda: MACHINE)
    out, js = tmp_path / "results.md", tmp_path / "results.json"
    code = cli.main(["--quick", "--only", "gpu,cpu_reference", "--out", str(out), "--json", str(js), "--quiet"])
    assert code == 1
    assert seen == [True]
    text = out.read_text()
    assert "- Command: `python -m bench --quick --only gpu,cpu_reference --out" in text
    assert "| gpu | gpu | FAILED: RuntimeError: simulator crashed |  |  |" in text
    assert "| cpu_reference | timesteps/s | 90,000 timesteps/s |" in text
    data = json.loads(js.read_text())
    assert [r["name"] for r in data["results"]] == ["cpu_reference", "gpu"]
    assert data["machine"] == MACHINE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "[2/2] gpu: failed: RuntimeError: simulator crashed" in captured.err


def test_scaling_exponent_is_one_for_linear_and_two_for_quadratic_growth() -> None:
    small = {"synapses": 1_000_000, "compile_s": 0.2}
    assert scaling_exponent(small, {"synapses": 10_000_000, "compile_s": 2.0}) == pytest.approx(1.0)
    assert scaling_exponent(small, {"synapses": 10_000_000, "compile_s": 20.0}) == pytest.approx(2.0)


def test_link_bytes_counts_spikes_tick_and_reply_frames() -> None:
    inputs = np.array([[0, 0, 0], [1, 1, 0]], dtype=bool)
    fired = np.array([[0, 0], [1, 0]], dtype=bool)
    quiet_step = FRAME_OVERHEAD + FRAME_OVERHEAD + 6
    assert link_bytes(inputs, fired).tolist() == [quiet_step, FRAME_OVERHEAD + 2 * 2 + quiet_step + 2]


@pytest.mark.slow
def test_quick_compile_scaling_writes_a_results_file(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "compile_scaling", "--out", str(out),
                           "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "- Command: `python -m bench --quick --only compile_scaling --out" in text
    assert "### compile_scaling:" in text and "Status: ok" in text
    assert "| compile_scaling | compile time, 100k neurons / 10M synapses |" in text
    assert "| compile_scaling | scaling exponent (1.0 = linear) |" in text
    assert "[1/1] compile_scaling: ok" in done.stderr
