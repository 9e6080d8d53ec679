"""Benchmark results as data, the machine they ran on, and their markdown (``bench/results.md``).

A :class:`Row` is one figure beside the baseline it was measured against in
the same run; its ``ratio`` is always ``value / baseline_value``, so the
metric's name says which direction is better (timesteps/s: higher; seconds:
lower). A :class:`BenchResult` is one benchmark's rows plus notes, or the
reason it was not run (a missing toolchain is reported, never faked).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

OK, NOT_RUN, FAILED = "ok", "not run", "failed"


@dataclass(frozen=True)
class Row:
    """One measured figure: ``value`` in ``unit``, against ``baseline`` (its name) worth ``baseline_value``.

    ``ratio`` is ``value / baseline_value`` (None without a numeric baseline); ``headline`` rows also
    go into the summary table of ``results.md`` and the README.
    """

    metric: str
    value: float | str
    unit: str = ""
    baseline: str = ""
    baseline_value: float | None = None
    ratio: float | None = None
    note: str = ""
    headline: bool = False


def compare(metric: str, value: float, unit: str, baseline: str, baseline_value: float | None, note: str = "",
            headline: bool = False) -> Row:
    """A row whose ratio is ``value / baseline_value`` (None when the baseline is missing or zero)."""
    ratio = value / baseline_value if baseline_value else None
    return Row(metric, value, unit, baseline, baseline_value, ratio, note, headline)


@dataclass
class BenchResult:
    """One benchmark's outcome: ``status`` is "ok", "not run" (``reason`` says why) or "failed"."""

    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    status: str = OK
    reason: str = ""
    seconds: float = 0.0

    @classmethod
    def not_run(cls, name: str, title: str, reason: str) -> BenchResult:
        """A benchmark skipped because its toolchain is missing: ``reason`` says what to install."""
        return cls(name, title, status=NOT_RUN, reason=reason)

    def fail(self, reason: str) -> BenchResult:
        """Mark this result failed (spikes differ, an exception), keeping whatever rows were measured."""
        self.status = FAILED
        self.reason = reason
        return self

    def to_dict(self) -> dict:
        """JSON-friendly form (``--json``)."""
        return dataclasses.asdict(self)


def timed(call: Callable[[], BenchResult]) -> BenchResult:
    """Run one benchmark and record its wall time in ``seconds``."""
    start = time.perf_counter()
    result = call()
    result.seconds = time.perf_counter() - start
    return result


# -- the machine ---------------------------------------------------------------------------------------------------


def cpu_model(cpuinfo: str) -> str:
    """The first ``model name`` of a /proc/cpuinfo text ("unknown CPU" when there is none)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return "unknown CPU"


def mem_total_gib(meminfo: str) -> float | None:
    """``MemTotal`` of a /proc/meminfo text in GiB (None when absent)."""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 2**20  # the figure is in KiB
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _os_name() -> str:
    for line in _read(Path("/etc/os-release")).splitlines():
        if line.startswith("PRETTY_NAME="):
            return f"{line.split('=', 1)[1].strip().strip(chr(34))}, kernel {platform.release()}"
    return platform.platform()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cuda_device() -> str:
    """The CUDA device torch would use, or why there is none (imports torch, which takes seconds)."""
    if importlib.util.find_spec("torch") is None:
        return "none (torch not installed)"
    import torch

    if not torch.cuda.is_available():
        return "none (no CUDA device)"
    return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"


def machine(proc: Path = Path("/proc")) -> dict[str, str]:
    """What the benchmarks ran on: CPU model, cores, RAM, OS, Python, key package versions, the CUDA GPU if any."""
    ram = mem_total_gib(_read(proc / "meminfo"))
    return {
        "cpu": cpu_model(_read(proc / "cpuinfo")) if (proc / "cpuinfo").exists() else platform.processor() or "unknown CPU",
        "cores": str(os.cpu_count() or "?"),
        "ram": f"{ram:.0f} GiB" if ram is not None else "unknown",
        "gpu": cuda_device(),
        "os": _os_name(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "snntorch": _version("snntorch"),
        "lava-nc": _version("lava-nc"),
    }


def machine_line(info: dict[str, str]) -> str:
    """One sentence naming the machine, for the README under the summary table."""
    gpu = "no CUDA GPU" if info["gpu"].startswith("none") else info["gpu"]
    return (f"{info['cpu']}, {info['cores']} cores, {info['ram']} RAM, {gpu}; {info['os']}; "
            f"Python {info['python']}, torch {info['torch']}")


# -- formatting ----------------------------------------------------------------------------------------------------


def format_number(value: float) -> str:
    """A figure with thousands separators or three significant digits: 94,857 / 27.7 / 0.193 / 6.27e9."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 1e7:
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    if magnitude >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def format_ratio(ratio: float | None) -> str:
    """``184×``, ``18.4×``, ``1.75×``, ``0.193×``; empty without a ratio."""
    if ratio is None:
        return ""
    if ratio >= 100:
        return f"{ratio:,.0f}×"
    if ratio >= 10:
        return f"{ratio:.1f}×"
    return f"{ratio:.3g}×" if ratio < 1 else f"{ratio:.2f}×"


def _with_unit(value: float | str, unit: str) -> str:
    text = format_number(value) if isinstance(value, (int, float)) else str(value)
    return f"{text} {unit}".strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table; pipes inside cells are escaped."""
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _status_line(result: BenchResult) -> str:
    if result.status == NOT_RUN:
        return f"not run: {result.reason}"
    if result.status == FAILED:
        return f"FAILED: {result.reason}"
    return "ok"


def result_table(result: BenchResult) -> str:
    """One benchmark's markdown: heading, status, the rows (metric, value, baseline, ratio, notes) and notes."""
    parts = [f"### {result.name}: {result.title}", "",
             f"Status: {_status_line(result)}; {result.seconds:.1f} s."]
    if result.rows:
        rows = [(r.metric, _with_unit(r.value, r.unit),
                 f"{r.baseline}: {_with_unit(r.baseline_value, r.unit)}" if r.baseline_value is not None else r.baseline,
                 format_ratio(r.ratio), r.note) for r in result.rows]
        parts += ["", markdown_table(("Metric", "Value", "Baseline", "Ratio", "Notes"), rows)]
    if result.notes:
        parts += [""] + [f"- {note}" for note in result.notes]
    return "\n".join(parts)


def summary_table(results: Sequence[BenchResult]) -> str:
    """The headline rows of every benchmark in one table (what the README shows); skipped or failed ones say why."""
    rows = []
    for result in results:
        if result.status != OK:
            rows.append((result.name, result.title, _status_line(result), "", ""))
        for r in (r for r in result.rows if r.headline):
            baseline = f"{r.baseline}: {_with_unit(r.baseline_value, r.unit)}" if r.baseline_value is not None else r.baseline
            rows.append((result.name, r.metric, _with_unit(r.value, r.unit), baseline, format_ratio(r.ratio)))
    return markdown_table(("Benchmark", "Metric", "Value", "Baseline", "Ratio"), rows)


def render(results: Sequence[BenchResult], info: dict[str, str], command: str, total_s: float, date: str) -> str:
    """The whole ``results.md``: header (date, machine, command, total time), summary, one table per benchmark."""
    header = [
        "# snnc benchmarks",
        "",
        "Written by `python -m bench`. Every ratio is value / baseline; a baseline that is another implementation "
        "(snnTorch, Lava, greedy placement, the CPU backend) was measured in this same run.",
        "",
        f"- Date: {date}",
        f"- Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM; GPU: {info['gpu']}",
        f"- OS: {info['os']}",
        f"- Software: Python {info['python']}, torch {info['torch']}, numpy {info['numpy']}, "
        f"snntorch {info['snntorch']}, lava-nc {info['lava-nc']}",
        f"- Command: `{command}`",
        f"- Total time: {total_s:.1f} s",
        "",
        "## Summary",
        "",
        summary_table(results),
        "",
        f"Measured on: {machine_line(info)}.",
        "",
        "## Benchmarks",
    ]
    body = [result_table(result) for result in results]
    return "\n".join(header) + "\n\n" + "\n\n".join(body) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the results from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
