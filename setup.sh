#!/usr/bin/env bash
# Create .venv with snnc and everything its tests need. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
echo "setup: snnc $(.venv/bin/snnc --version | cut -d' ' -f2) installed in .venv"
