"""Run every benchmark in one process and write bench/results.md: ``python -m bench [--quick] [--only NAME,...]``.

Progress goes to stderr, the tables to stdout (unless ``--quiet``). A
benchmark whose toolchain is missing is reported as "not run: why"; one that
raises is reported as failed (its traceback on stderr) and the others still
run. The exit status is 1 when any benchmark failed.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import shlex
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from bench import BENCHMARKS, report

DEFAULT_OUT = Path(__file__).resolve().parent / "results.md"


def parse_only(text: str | None) -> tuple[str, ...]:
    """The benchmarks ``--only`` names, in suite order; ValueError names any unknown one."""
    if not text:
        return BENCHMARKS
    wanted = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark {', '.join(map(repr, unknown))}; choose from {', '.join(BENCHMARKS)}")
    return tuple(name for name in BENCHMARKS if name in wanted)


def run_one(name: str, quick: bool) -> report.BenchResult:
    """Import ``bench.<name>`` and run it; an exception becomes a failed result instead of ending the suite."""
    start = time.perf_counter()
    try:
        result = importlib.import_module(f"bench.{name}").run(quick)
    except Exception as exc:  # one broken benchmark must not hide the others' numbers
        traceback.print_exc(file=sys.stderr)
        result = report.BenchResult(name, name).fail(f"{type(exc).__name__}: {exc}")
    result.seconds = time.perf_counter() - start
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and sizes, same workloads (< 5 min)")
    parser.add_argument("--only", metavar="NAME[,NAME]", help=f"run only these: {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown results (default bench/results.md)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--quiet", action="store_true", help="do not print the tables to stdout")
    args = parser.parse_args(argv)
    try:
        names = parse_only(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    start = time.perf_counter()
    results = []
    for index, name in enumerate(names, 1):
        print(f"[{index}/{len(names)}] {name} ...", file=sys.stderr, flush=True)
        result = run_one(name, args.quick)
        status = result.status if result.status == report.OK else f"{result.status}: {result.reason}"
        print(f"[{index}/{len(names)}] {name}: {status} ({result.seconds:.1f} s)", file=sys.stderr, flush=True)
        results.append(result)
    total_s = time.perf_counter() - start
    info = report.machine()
    text = report.render(results, info, command.strip(), total_s, date)
    report.write_atomic(args.out, text)
    if args.json is not None:
        payload = {"date": date, "machine": info, "command": command.strip(), "total_s": total_s,
                   "results": [result.to_dict() for result in results]}
        report.write_atomic(args.json, json.dumps(payload, indent=2) + "\n")
    if not args.quiet:
        print(text)
    print(f"wrote {args.out} ({total_s:.1f} s)", file=sys.stderr)
    return 1 if any(result.status == report.FAILED for result in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
