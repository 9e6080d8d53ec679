"""Benchmarks of snnc, each a ratio against a baseline measured in the same run.

    python -m bench [--quick] [--only cpu_reference,gpu] [--out bench/results.md] [--json PATH] [--quiet]
    python -m bench.<name> [options]      one benchmark, its table on stdout

Every module named in :data:`BENCHMARKS` exposes ``run(quick: bool) -> report.BenchResult``;
``bench/__main__.py`` runs them in order and writes ``bench/results.md``
(``report.py``: the machine, the tables, a summary for the README).
"""

from __future__ import annotations

BENCHMARKS = ("cpu_reference", "lava_vs_cpu", "gpu", "compile_scaling", "fpga", "placement_traffic")
"""Module names under ``bench/``, in the order ``python -m bench`` runs them."""
