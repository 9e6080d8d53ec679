"""Wall-clock timing that survives a noisy shared machine: a warm-up, then interleaved medians of batched samples."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median and the best of ``repeats`` samples, each the mean of ``inner`` calls."""

    median_s: float
    best_s: float
    repeats: int
    inner: int
    warmup_s: float


def _clocked(call: Callable[[], object], times: int, sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    for _ in range(times):
        call()
    sync()
    return (time.perf_counter() - start) / times


def time_interleaved(calls: Sequence[Callable[[], object]], repeats: int, min_sample_s: float = 0.1,
                     sync: Callable[[], None] | None = None) -> list[Timing]:
    """Time each of ``calls`` after one warm-up call each (numba or torch first-call costs are not counted).

    Samples alternate between the calls (a, b, a, b, ...), so a co-tenant's burst of load on a shared
    machine hits a measurement and its baseline alike and their ratio stays meaningful. Each sample
    runs enough back-to-back calls to last about ``min_sample_s`` seconds; ``sync`` (for example
    ``torch.cuda.synchronize``) runs before the clock is read on either side.
    """
    sync = sync or (lambda: None)
    warmups = [_clocked(call, 1, sync) for call in calls]
    inners = [max(1, math.ceil(min_sample_s / max(_clocked(call, 1, sync), 1e-9))) for call in calls]
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, inner, taken in zip(calls, inners, samples):
            taken.append(_clocked(call, inner, sync))
    return [Timing(statistics.median(taken), min(taken), repeats, inner, warmup)
            for taken, inner, warmup in zip(samples, inners, warmups)]


def time_calls(call: Callable[[], object], repeats: int, min_sample_s: float = 0.1,
               sync: Callable[[], None] | None = None) -> Timing:
    """:func:`time_interleaved` for a single call."""
    return time_interleaved([call], repeats, min_sample_s, sync)[0]
