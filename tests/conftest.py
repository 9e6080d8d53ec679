"""Shared test fixtures: where the real trained models of ../shared live, and the CI rule on skips."""

from __future__ import annotations

import os
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


def pytest_addoption(parser):
    parser.addoption("--lava-networks", type=int, default=40,
                     help="random networks in the Lava-vs-CPU equivalence suite (default 40; the full suite is 200)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI (env CI set) a skip is a failure: CI installs every toolchain and has ../shared beside the clone.

    Skips exist only for a user's clone that lacks them.
    """
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where nothing may be missing: {reason}"


@pytest.fixture(scope="session")
def hil_artifact(request, tmp_path_factory) -> Path:
    """The FPGA artifact of the hil tests: ``--hil-artifact DIR`` (the network on a real board), else a small
    recurrent network compiled for the iCE40 here; the simulated board then runs its RTL."""
    option = request.config.getoption("--hil-artifact")
    if option is not None:
        return Path(option)
    from snnc.backends import fpga
    from snnc.compiler import hw as hwmod
    from tests.test_fpga_uart import uart_network

    return fpga.compile(uart_network(), hwmod.bundled_hw("ice40_up5k"), tmp_path_factory.mktemp("hil") / "fpga",
                        bitstream=False).path
