"""pytest plugin for hardware-in-the-loop tests (registered as ``snnc`` through the ``pytest11`` entry point).

Options::

    --hil-port PORT       the board's serial port (default: the simulated board, which runs the artifact's RTL)
    --hil-artifact DIR    the FPGA artifact the board runs (or override the ``hil_artifact`` fixture)
    --hil-baud N          baud rate (default: the artifact's)
    --hil-timeout S       seconds per request attempt        --hil-retries N   resends before a request fails

Fixtures: ``hil_artifact`` (session: the artifact directory), ``hil_board`` (session: the opened, loaded
:class:`snnc.runtime.hil.Board`) and ``hil_device`` (the board's ``Device``, reset before every test). Tests that
use them should carry the ``hil`` marker; ``-m hil`` selects them, ``-m 'not hil'`` leaves them out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("snnc-hil", "snnc hardware in the loop")
    group.addoption("--hil-port", default=None, metavar="PORT",
                    help="serial port of a board running the artifact (default: start the simulated board)")
    group.addoption("--hil-artifact", default=None, metavar="DIR", help="FPGA artifact directory the board runs")
    group.addoption("--hil-baud", type=int, default=None, metavar="N", help="baud rate (default: the artifact's)")
    group.addoption("--hil-timeout", type=float, default=None, metavar="S", help="seconds per request attempt")
    group.addoption("--hil-retries", type=int, default=None, metavar="N", help="resends before a request fails")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hil: hardware-in-the-loop test; runs on the simulated board unless "
                                       "--hil-port names a real one")


@pytest.fixture(scope="session")
def hil_artifact(request: pytest.FixtureRequest) -> Path:
    """The FPGA artifact on the board: ``--hil-artifact DIR``; a conftest may override this fixture."""
    option = request.config.getoption("--hil-artifact")
    if option is None:
        raise pytest.UsageError("hil tests need --hil-artifact DIR (an FPGA artifact from `snnc compile`) or a "
                                "hil_artifact fixture in conftest.py")
    return Path(option)


@pytest.fixture(scope="session")
def hil_board(request: pytest.FixtureRequest, hil_artifact: Path) -> Iterator[Any]:
    """The board for this session: the one at ``--hil-port``, else a simulated board; opened and loaded once."""
    from snnc.runtime import hil

    config = request.config
    board = hil.open_board(hil_artifact, config.getoption("--hil-port") or hil.SIMULATED,
                           baudrate=config.getoption("--hil-baud"), timeout=config.getoption("--hil-timeout"),
                           retries=config.getoption("--hil-retries"))
    yield board
    board.close()


@pytest.fixture
def hil_device(hil_board: Any) -> Any:
    """The board's device, reset before the test (hardware reset where wired, then CLEAR)."""
    hil_board.device.reset()
    return hil_board.device
