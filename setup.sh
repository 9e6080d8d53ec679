#!/usr/bin/env bash
# Create .venv with snnc, its PyTorch/ONNX frontends and everything the tests need. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch is pinned to 2.13.0 (pyproject extra "torch"); numpy stays < 2 for lava-nc
"${PIP[@]}" -e ".[dev,torch]"
# norse 1.1.0 declares torchvision and an unpinned torch; --no-deps keeps torch 2.13.0 (research/nir.md §5)
"${PIP[@]}" --no-deps "norse==1.1.0"
echo "setup: snnc $(.venv/bin/snnc --version | cut -d' ' -f2) installed in .venv"
