"""A small progress bar for work longer than a couple of seconds (data-set evaluation, simulation sweeps).

It redraws one line on a terminal and stays silent otherwise (logs and CI get
the final summary from the caller instead), so scripts parsing stdout are
never disturbed: it writes to stderr.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

QUIET = False
"""Set by ``snnc --quiet`` (and ``--json`` to stdout): no bar is drawn anywhere."""


class Progress:
    """``with Progress(total, "evaluating") as bar: bar.update(n)``; draws ``label [####....] done/total rate eta``."""

    def __init__(self, total: int, label: str, unit: str = "samples", stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        self.total = max(int(total), 1)
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = (self.stream.isatty() and not QUIET) if enabled is None else enabled
        self.done = 0
        self.start = time.perf_counter()

    def __enter__(self) -> Progress:
        self._draw()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def update(self, n: int) -> None:
        self.done = min(self.done + int(n), self.total)
        self._draw()

    def line(self, width: int = 30) -> str:
        """The bar as text (what is drawn)."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rate = self.done / elapsed
        filled = int(width * self.done / self.total)
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta_text = f"eta {eta:.0f} s" if self.done < self.total and rate > 0 else f"{elapsed:.1f} s"
        return (f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done:,}/{self.total:,} {self.unit} "
                f"{rate:,.0f}/s {eta_text}")

    def _draw(self) -> None:
        if self.enabled:
            self.stream.write("\r" + self.line())
            self.stream.flush()


class Activity:
    """``with Activity("place and route"):`` one line with the elapsed seconds, for work of unknown length.

    A background thread redraws it every ``interval`` seconds; like :class:`Progress` it draws only on a terminal
    (and never under ``--quiet``). A step shorter than ``interval`` draws nothing at all.
    """

    def __init__(self, label: str, stream: TextIO | None = None, enabled: bool | None = None,
                 interval: float = 1.0) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = (self.stream.isatty() and not QUIET) if enabled is None else enabled
        self.interval = interval
        self.start = time.perf_counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn = False

    def __enter__(self) -> Activity:
        self.start = time.perf_counter()
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._drawn:
            self.stream.write(f"\r{self.line()}\n")
            self.stream.flush()

    def line(self) -> str:
        return f"{self.label} ... {time.perf_counter() - self.start:.0f} s"

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._drawn = True
            self.stream.write("\r" + self.line())
            self.stream.flush()
