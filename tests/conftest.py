"""Shared test fixtures: where the real trained models of ../shared live."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MODELS = REPO.parent / "shared" / "models"
NIR_PAPER = SHARED_MODELS / "nir_paper"
NIR_PAPER_FILES = sorted(NIR_PAPER.glob("*.nir")) if NIR_PAPER.is_dir() else []


@pytest.fixture
def nir_paper_dir() -> Path:
    """../shared/models/nir_paper; tests using it skip on a clone without ../shared."""
    if not NIR_PAPER.is_dir():
        pytest.skip("../shared/models/nir_paper is not present (CI always has it)")
    return NIR_PAPER
