"""Spike equivalence between a compiled artifact and a reference backend, with the first divergence.

``verify_artifact(dir, against="cpu")`` runs the artifact and the same
quantized graph compiled for ``against`` on identical stimuli, recording u
and v, and compares every non-input population in one of three modes:

- ``exact`` (integer targets): spikes everywhere, u and v wherever both runs
  recorded them. A mismatch is reported at its first divergence (earliest
  step, then sample, population order, neuron) with both runs' u/v traces
  around it and a hint read off the states (saturation, a threshold met with
  equality, a one-step timing offset), because the raw step number alone
  rarely tells a backend author what went wrong.
- ``bounded`` (float or approximately timed targets): every spike of a neuron
  must be matched by one of the reference within +-``tolerance`` steps.
- ``statistical``: per-population firing rates within a relative tolerance
  and, with labels, the readout accuracy within a number of points.

:func:`verify_matrix` compiles one model for several targets and checks each
against the CPU backend run on that target's own quantized graph.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from snnc import targets
from snnc.backends import base
from snnc.compiler import hw as hwmod
from snnc.compiler import ir
from snnc.runtime import execute
from snnc.runtime.progress import Progress
from snnc.runtime.raster import Raster

DEFAULT_SAMPLES = 4
DEFAULT_STEPS = 50
DEFAULT_RATE = 0.2
MODES = ("exact", "bounded", "statistical")
DEFAULT_RATE_TOLERANCE = 0.05  # statistical: relative firing-rate difference
DEFAULT_ACCURACY_TOLERANCE = 1.0  # statistical: accuracy difference in percentage points
TRACE_BEFORE, TRACE_AFTER = 3, 2  # the u/v trace window around a divergence: t-3 .. t+2

HINT_SATURATION = "saturation"
HINT_THRESHOLD = "threshold met with equality"
HINT_OFFSET = "one-step timing offset"


@dataclass(frozen=True)
class Divergence:
    """Where two runs first differ."""

    population: str
    quantity: str  # "spikes", "u" or "v"
    sample: int
    step: int
    neuron: int
    value: int
    reference: int
    # exact mode: the steps of the trace window and both runs' states there (None where not recorded)
    trace_steps: tuple[int, ...] = ()
    u: tuple[int, ...] | None = None
    u_reference: tuple[int, ...] | None = None
    v: tuple[int, ...] | None = None
    v_reference: tuple[int, ...] | None = None
    hint: str | None = None

    def describe(self) -> str:
        return (f"first divergence: population '{self.population}' {self.quantity}, sample {self.sample}, "
                f"step {self.step}, neuron {self.neuron}: {self.value} vs reference {self.reference}")

    def trace_table(self) -> str:
        """Both runs' u and v around the divergence as a small table (empty when nothing was recorded)."""
        rows = [(name, values) for name, values in (("u", self.u), ("u ref", self.u_reference), ("v", self.v),
                                                     ("v ref", self.v_reference)) if values is not None]
        if not self.trace_steps or not rows:
            return ""
        cells = [["step", *(f"{t}*" if t == self.step else str(t) for t in self.trace_steps)]]
        cells += [[name, *(str(x) for x in values)] for name, values in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
        return "\n".join("  " + "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Comparison:
    """Counts over all compared populations; ``divergence`` is None when the runs agree."""

    spikes_compared: int = 0
    spike_mismatches: int = 0
    states_compared: int = 0
    state_mismatches: int = 0
    divergence: Divergence | None = None
    populations: list[str] = field(default_factory=list)
    saturations: dict[str, dict[str, int]] = field(default_factory=dict)
    mode: str = "exact"
    tolerance: float | None = None  # bounded: steps; statistical: relative rate tolerance
    unmatched: int = 0  # bounded: spikes (of either run) without a partner within the tolerance
    rates: dict[str, tuple[float, float]] = field(default_factory=dict)  # statistical: population -> (run, reference)
    accuracy: tuple[float, float] | None = None  # statistical with labels: (run, reference), fractions
    accuracy_tolerance: float | None = None  # percentage points
    failures: list[str] = field(default_factory=list)  # statistical: what is out of tolerance

    @property
    def equal(self) -> bool:
        """Exact equality of every compared spike and state, whatever the mode."""
        return self.spike_mismatches == 0 and self.state_mismatches == 0

    @property
    def passed(self) -> bool:
        """Whether the runs agree under this comparison's mode."""
        if self.mode == "bounded":
            return self.unmatched == 0
        if self.mode == "statistical":
            return not self.failures
        return self.equal

    @property
    def mismatches(self) -> int:
        """The mode's mismatch count: differing spikes and states, unmatched spikes, or out-of-tolerance figures."""
        if self.mode == "bounded":
            return self.unmatched
        if self.mode == "statistical":
            return len(self.failures)
        return self.spike_mismatches + self.state_mismatches

    @property
    def verdict(self) -> str:
        """One line: PASS/FAIL, the mode and the figures that decided it."""
        head = f"{'PASS' if self.passed else 'FAIL'} ({self.mode}"
        if self.mode == "bounded":
            return (f"{head}, +-{int(self.tolerance or 0)} steps): {self.unmatched:,} unmatched spikes; "
                    f"{self.spikes_compared:,} spike slots compared")
        if self.mode == "statistical":
            parts = [f"{name} rate {got:.4f} vs {ref:.4f}" for name, (got, ref) in self.rates.items()]
            if self.accuracy is not None:
                parts.append(f"accuracy {self.accuracy[0]:.1%} vs {self.accuracy[1]:.1%}")
            tol = f", rates +-{(self.tolerance or 0):.0%}"
            if self.accuracy_tolerance is not None and self.accuracy is not None:
                tol += f", accuracy +-{self.accuracy_tolerance:g} points"
            return f"{head}{tol}): " + "; ".join(parts)
        return (f"{head}): {self.spike_mismatches:,} mismatching spikes of {self.spikes_compared:,} compared; "
                f"{self.state_mismatches:,} mismatching u/v values of {self.states_compared:,}")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (the matrix's ``--json`` file)."""
        return {"mode": self.mode, "passed": self.passed, "verdict": self.verdict, "tolerance": self.tolerance,
                "spikes_compared": self.spikes_compared, "spike_mismatches": self.spike_mismatches,
                "states_compared": self.states_compared, "state_mismatches": self.state_mismatches,
                "unmatched": self.unmatched, "rates": {k: list(v) for k, v in self.rates.items()},
                "accuracy": None if self.accuracy is None else list(self.accuracy),
                "accuracy_tolerance": self.accuracy_tolerance, "failures": list(self.failures),
                "divergence": None if self.divergence is None else self.divergence.to_json(),
                "saturations": self.saturations}


def _batched(array: np.ndarray, batched: bool) -> np.ndarray:
    return array if batched else array[None]


def compare(graph: ir.Graph, result: Mapping[str, Raster], reference: Mapping[str, Raster], mode: str = "exact",
            tolerance: float | None = None, labels: np.ndarray | None = None,
            accuracy_tolerance: float = DEFAULT_ACCURACY_TOLERANCE) -> Comparison:
    """Compare two runs of ``graph`` (rasters of every population) in ``mode``.

    ``tolerance`` is the step window of ``bounded`` (default 1) or the relative
    rate tolerance of ``statistical`` (default 5 %); ``labels`` (one per
    sample) add an accuracy check to ``statistical``.
    """
    if mode == "bounded":
        return compare_bounded(graph, result, reference, 1 if tolerance is None else int(tolerance))
    if mode == "statistical":
        return compare_statistical(graph, result, reference, DEFAULT_RATE_TOLERANCE if tolerance is None else tolerance,
                                   labels, accuracy_tolerance)
    if mode != "exact":
        raise ValueError(f"unknown comparison mode '{mode}' (known: {', '.join(MODES)})")
    return compare_exact(graph, result, reference)


def compare_exact(graph: ir.Graph, result: Mapping[str, Raster], reference: Mapping[str, Raster]) -> Comparison:
    """Compare two runs of ``graph`` exactly; the first divergence carries traces and a hint."""
    out = Comparison()
    candidates: list[Divergence] = []
    for pop in graph.populations:
        if pop.model == "input":
            continue
        got, ref = result[pop.name], reference[pop.name]
        out.populations.append(pop.name)
        pairs = [("spikes", got.spikes, ref.spikes)]
        pairs += [(name, getattr(got, name), getattr(ref, name)) for name in ("u", "v")
                  if getattr(got, name) is not None and getattr(ref, name) is not None]
        for quantity, a, b in pairs:
            a, b = _batched(np.asarray(a), got.batched), _batched(np.asarray(b), ref.batched)
            if a.shape != b.shape:
                raise ValueError(f"population '{pop.name}' {quantity}: shapes {a.shape} and {b.shape} differ")
            differ = a != b
            count = int(differ.sum())
            if quantity == "spikes":
                out.spikes_compared += a.size
                out.spike_mismatches += count
            else:
                out.states_compared += a.size
                out.state_mismatches += count
            if count:
                sample, step, neuron = (int(x) for x in np.argwhere(differ.transpose(1, 0, 2))[0][[1, 0, 2]])
                candidates.append(Divergence(pop.name, quantity, sample, step, neuron,
                                             int(a[sample, step, neuron]), int(b[sample, step, neuron])))
    if candidates:
        out.divergence = _explain(graph, result, reference, min(candidates, key=lambda d: (d.step, d.sample)))
    return out


def _neuron_trace(raster: Raster, name: str, sample: int, neuron: int) -> np.ndarray | None:
    """One neuron's recorded ``name`` ("u", "v" or "spikes") over all steps of ``sample``; None when absent."""
    array = getattr(raster, name)
    if array is None:
        return None
    return _batched(np.asarray(array), raster.batched)[sample, :, neuron].astype(np.int64)


def _shifted_by_one(got: np.ndarray, ref: np.ndarray, lo: int, hi: int) -> bool:
    """Whether ``got`` equals ``ref`` delayed or advanced by one step over steps lo..hi-1 (both must spike there)."""
    for shift in (1, -1):
        steps = [t for t in range(lo, hi) if 0 <= t - shift < ref.size]
        if steps and ref[[t - shift for t in steps]].any() and np.array_equal(got[steps], ref[[t - shift for t in steps]]):
            return True
    return False


def _hint(graph: ir.Graph, d: Divergence, got: Mapping[str, np.ndarray | None],
          ref: Mapping[str, np.ndarray | None], lo: int, hi: int) -> str | None:
    """What the states around the divergence suggest; the first matching of saturation, equality, offset."""
    quant = graph.population(d.population).quant
    if quant is not None:
        limit = (1 << (quant.state_bits - 1)) - 1
        before = [t for t in (d.step - 1, d.step) if t >= 0]
        for name in ("u", "v"):
            trace = ref[name]
            if trace is not None and (np.abs(trace[before]) >= limit).any():
                return HINT_SATURATION
        threshold = int(quant.vth[d.neuron]) << 6
        if any(trace is not None and int(trace[d.step]) == threshold for trace in (got["v"], ref["v"])):
            return HINT_THRESHOLD
    spikes, spikes_ref = got["spikes"], ref["spikes"]
    if spikes is not None and spikes_ref is not None and (
            _shifted_by_one(spikes, spikes_ref, lo, hi) or _shifted_by_one(spikes, spikes_ref, 1, spikes.size - 1)):
        return HINT_OFFSET
    return None


def _explain(graph: ir.Graph, result: Mapping[str, Raster], reference: Mapping[str, Raster],
             d: Divergence) -> Divergence:
    """``d`` with both runs' u/v traces over t-3..t+2 and a hint, so a report says more than a step number."""
    got = {name: _neuron_trace(result[d.population], name, d.sample, d.neuron) for name in ("spikes", "u", "v")}
    ref = {name: _neuron_trace(reference[d.population], name, d.sample, d.neuron) for name in ("spikes", "u", "v")}
    steps = got["spikes"].size if got["spikes"] is not None else d.step + 1
    lo, hi = max(0, d.step - TRACE_BEFORE), min(steps, d.step + TRACE_AFTER + 1)

    def window(trace: np.ndarray | None) -> tuple[int, ...] | None:
        return None if trace is None else tuple(int(x) for x in trace[lo:hi])

    return dataclasses.replace(d, trace_steps=tuple(range(lo, hi)), u=window(got["u"]), u_reference=window(ref["u"]),
                               v=window(got["v"]), v_reference=window(ref["v"]),
                               hint=_hint(graph, d, got, ref, lo, hi))


def _match_times(got: np.ndarray, ref: np.ndarray, k: int) -> tuple[list[int], list[int]]:
    """Greedy in-order matching of two sorted spike-time lists within +-k; the unmatched times of each."""
    i = j = 0
    lost_got: list[int] = []
    lost_ref: list[int] = []
    while i < got.size and j < ref.size:
        if abs(int(got[i]) - int(ref[j])) <= k:
            i, j = i + 1, j + 1
        elif got[i] < ref[j]:
            lost_got.append(int(got[i]))
            i += 1
        else:
            lost_ref.append(int(ref[j]))
            j += 1
    lost_got += [int(t) for t in got[i:]]
    lost_ref += [int(t) for t in ref[j:]]
    return lost_got, lost_ref


def compare_bounded(graph: ir.Graph, result: Mapping[str, Raster], reference: Mapping[str, Raster],
                    tolerance: int) -> Comparison:
    """Match each neuron's spikes to the reference's within +-``tolerance`` steps (float targets jitter in time)."""
    if tolerance < 0:
        raise ValueError(f"bounded tolerance must be >= 0 steps, got {tolerance}")
    out = Comparison(mode="bounded", tolerance=tolerance)
    first: tuple[tuple[int, int, int, int], Divergence] | None = None
    for order, pop in enumerate(p for p in graph.populations if p.model != "input"):
        got_r, ref_r = result[pop.name], reference[pop.name]
        out.populations.append(pop.name)
        a = _batched(np.asarray(got_r.spikes), got_r.batched).astype(bool)
        b = _batched(np.asarray(ref_r.spikes), ref_r.batched).astype(bool)
        if a.shape != b.shape:
            raise ValueError(f"population '{pop.name}' spikes: shapes {a.shape} and {b.shape} differ")
        out.spikes_compared += a.size
        out.spike_mismatches += int((a != b).sum())
        for sample, neuron in np.argwhere((a != b).any(axis=1)):
            lost_got, lost_ref = _match_times(np.flatnonzero(a[sample, :, neuron]), np.flatnonzero(b[sample, :, neuron]),
                                              tolerance)
            out.unmatched += len(lost_got) + len(lost_ref)
            lost = sorted(lost_got + lost_ref)
            if lost:
                key = (lost[0], int(sample), order, int(neuron))
                if first is None or key < first[0]:
                    t = lost[0]
                    first = (key, Divergence(pop.name, "spikes", int(sample), t, int(neuron),
                                             int(a[sample, t, neuron]), int(b[sample, t, neuron])))
    out.divergence = None if first is None else first[1]
    return out


def _rate(raster: Raster) -> float:
    spikes = np.asarray(raster.spikes)
    return float(spikes.sum()) / spikes.size if spikes.size else 0.0


def _most_spikes(raster: Raster) -> np.ndarray:
    """Predicted class per sample: the output neuron with the most spikes (first on ties)."""
    return _batched(np.asarray(raster.spikes), raster.batched).sum(axis=1).argmax(axis=1)


def compare_statistical(graph: ir.Graph, result: Mapping[str, Raster], reference: Mapping[str, Raster],
                        tolerance: float = DEFAULT_RATE_TOLERANCE, labels: np.ndarray | None = None,
                        accuracy_tolerance: float = DEFAULT_ACCURACY_TOLERANCE) -> Comparison:
    """Firing rates per population (relative ``tolerance``) and, with labels, accuracy within points.

    For targets whose spikes are not meant to be reproduced one by one; a
    silent reference population only accepts a silent run.
    """
    out = Comparison(mode="statistical", tolerance=tolerance)
    for pop in graph.populations:
        if pop.model == "input":
            continue
        out.populations.append(pop.name)
        got, ref = _rate(result[pop.name]), _rate(reference[pop.name])
        out.spikes_compared += int(np.asarray(result[pop.name].spikes).size)
        out.rates[pop.name] = (got, ref)
        off = abs(got - ref) / ref if ref > 0 else (0.0 if got == 0 else float("inf"))
        if off > tolerance:
            out.failures.append(f"{pop.name} rate {got:.4f} vs {ref:.4f} ({off:.1%} off)")
    if labels is not None:
        output = graph.outputs[0]
        labels = np.asarray(labels).reshape(-1)
        acc = float((_most_spikes(result[output]) == labels).mean())
        acc_ref = float((_most_spikes(reference[output]) == labels).mean())
        out.accuracy, out.accuracy_tolerance = (acc, acc_ref), accuracy_tolerance
        if abs(acc - acc_ref) * 100 > accuracy_tolerance + 1e-9:
            out.failures.append(f"accuracy {acc:.1%} vs {acc_ref:.1%}")
    return out


def random_stimulus(graph: ir.Graph, samples: int = DEFAULT_SAMPLES, steps: int = DEFAULT_STEPS,
                    rate: float = DEFAULT_RATE, seed: int = 0) -> dict[str, np.ndarray]:
    """Bernoulli spikes (samples, steps, N) for every input population."""
    rng = np.random.default_rng(seed)
    return {name: (rng.random((samples, steps, graph.population(name).size)) < rate).astype(np.uint8)
            for name in graph.inputs}


def reference_artifact(graph: ir.Graph, target: str, out_dir: str | Path) -> base.Artifact:
    """``graph`` compiled for target ``target`` (its backend and bundled hardware description) into ``out_dir``."""
    tgt = targets.get_target(target)
    module = targets.usable_backend(tgt)
    reasons = module.unsupported(graph, hwmod.bundled_hw(tgt.hw))
    if reasons:
        raise ValueError(f"target '{target}' cannot run this graph: {'; '.join(reasons)}")
    return module.compile(graph, hwmod.bundled_hw(tgt.hw), out_dir)


def verify_artifact(path: str | Path, against: str = "cpu", stimulus: Mapping[str, np.ndarray] | None = None,
                    steps: int | None = None, samples: int = DEFAULT_SAMPLES, seed: int = 0, mode: str = "exact",
                    tolerance: float | None = None, labels: np.ndarray | None = None) -> Comparison:
    """Run artifact ``path`` and ``against`` on ``stimulus`` and compare in ``mode`` (see :func:`compare`).

    Without ``stimulus``, :func:`random_stimulus` draws ``samples`` of ``steps`` (default 50) steps from ``seed``.
    """
    artifact = execute.load(path)
    graph = artifact.graph
    if stimulus is None:
        stimulus = random_stimulus(graph, samples=samples, steps=steps or DEFAULT_STEPS, seed=seed)
    with tempfile.TemporaryDirectory(prefix="snnc-verify-") as tmp:
        reference = reference_artifact(graph, against, Path(tmp) / against)
        expected = reference.run(stimulus, steps=steps, record_state=True)
        saturations = getattr(reference, "last_saturations", None) or {}
    got = artifact.run(stimulus, steps=steps, record_state=True)
    comparison = compare(graph, got, expected, mode=mode, tolerance=tolerance, labels=labels)
    comparison.saturations = {name: counts for name, counts in saturations.items() if any(counts.values())}
    return comparison


def format_comparison(comparison: Comparison, label: str, against: str) -> str:
    """A short human summary: PASS/FAIL, counts, the first divergence and saturation notes."""
    if comparison.mode == "exact":
        verdict = "PASS" if comparison.equal else "FAIL"
        states = (f"; {comparison.state_mismatches:,} mismatching u/v values of {comparison.states_compared:,}"
                  if comparison.states_compared else " (spikes only: no u/v to compare)")
        lines = [f"{verdict}: {label} vs {against}: {comparison.spike_mismatches:,} mismatching spikes of "
                 f"{comparison.spikes_compared:,} compared{states}"]
    else:
        lines = [f"{label} vs {against}: {comparison.verdict}"]
        lines += [f"out of tolerance: {failure}" for failure in comparison.failures]
    if comparison.divergence is not None:
        d = comparison.divergence
        lines.append(d.describe() if comparison.mode != "bounded"
                     else f"first unmatched spike: population '{d.population}', sample {d.sample}, step {d.step}, "
                          f"neuron {d.neuron} ({'run' if d.value else 'reference'} spike without a partner within "
                          f"+-{int(comparison.tolerance or 0)} steps)")
        table = d.trace_table()
        if table:
            lines.append(f"states of neuron {d.neuron} around step {d.step} (* = divergence):")
            lines.append(table)
        if d.hint is not None:
            lines.append(f"hint: {d.hint}")
    for name, counts in comparison.saturations.items():
        lines.append(f"note: the {against} reference saturated population '{name}' ({counts}); targets that wrap "
                     "instead (Lava, Loihi) may differ there")
    return "\n".join(lines)


@dataclass
class MatrixRow:
    """One target of a verification matrix: its status and, when it ran, the comparison."""

    target: str
    status: str  # "PASS", "FAIL", "ERROR" (did not compile or run) or "DOES NOT FIT"
    comparison: Comparison | None = None
    message: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status in ("FAIL", "ERROR")

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "status": self.status, "message": self.message,
                "seconds": round(self.seconds, 3),
                "comparison": None if self.comparison is None else self.comparison.to_json()}


def parse_targets(spec: str | None) -> list[str]:
    """Target names from ``cpu,gpu,...``; None means every target usable here. Unknown names raise TargetError."""
    if spec is None:
        return [name for name, tgt in targets.TARGETS.items() if targets.status(tgt) == "ready"]
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise targets.TargetError("--targets lists no target")
    for name in names:
        targets.get_target(name)
    return list(dict.fromkeys(names))


def verify_matrix(model: str | Path, target_names: list[str], stimulus: Mapping[str, np.ndarray] | None = None,
                  steps: int | None = None, samples: int = DEFAULT_SAMPLES, seed: int = 0, mode: str = "exact",
                  tolerance: float | None = None, labels: np.ndarray | None = None, bitstream: bool = False,
                  work_dir: str | Path | None = None, workers: int = 1, address: str | None = None) -> list[MatrixRow]:
    """Compile ``model`` for each target, run the same stimuli, and compare each with the CPU reference.

    Each target may quantize differently, so the reference of a target is the
    CPU backend on that target's own quantized graph. A target that fails to
    compile or run is an "ERROR" row and one that is too big (``FitError``)
    a "DOES NOT FIT" row; the others still run. ``bitstream`` is off by
    default: FPGA targets stop at Verilog, which is what their RTL simulation
    runs, so synthesis would only cost minutes. Random stimuli are drawn from
    the model's input shapes, so every target sees the same ones.

    ``workers`` > 1 fans the targets out over a local Dask cluster of that many
    worker processes; ``address`` ("tcp://host:8786") uses an existing Dask
    scheduler instead. Rows come back in ``target_names`` order either way.
    """
    from snnc.compiler.frontends.load import load_model

    if mode not in MODES:
        raise ValueError(f"unknown comparison mode '{mode}' (known: {', '.join(MODES)})")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if stimulus is None:
        graph = model if isinstance(model, ir.Graph) else load_model(model)
        stimulus = random_stimulus(graph, samples=samples, steps=steps or DEFAULT_STEPS, seed=seed)
    with tempfile.TemporaryDirectory(prefix="snnc-verify-") as tmp:
        root = Path(work_dir) if work_dir is not None else Path(tmp)
        jobs = [(model, name, stimulus, steps, mode, tolerance, labels, bitstream, root) for name in target_names]
        if workers == 1 and address is None:
            rows = []
            with Progress(len(jobs), "verifying", unit="targets") as bar:
                for job in jobs:
                    rows.append(_matrix_row(*job))
                    bar.update(1)
            return rows
        return _on_dask(jobs, workers, address)


def _on_dask(jobs: list[tuple], workers: int, address: str | None) -> list[MatrixRow]:
    """Run matrix rows on Dask: a local cluster of ``workers`` processes, or the scheduler at ``address``."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ValueError("--workers/--address need dask.distributed (bash setup.sh installs it)") from exc
    if address is not None:
        with Client(address) as client:
            return client.gather([client.submit(_matrix_row, *job, pure=False) for job in jobs])
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        return client.gather([client.submit(_matrix_row, *job, pure=False) for job in jobs])


def _matrix_row(model: str | Path, name: str, stimulus: Mapping[str, np.ndarray], steps: int | None, mode: str,
                tolerance: float | None, labels: np.ndarray | None, bitstream: bool, root: Path) -> MatrixRow:
    """One target of the matrix: compile, run, run the CPU reference on its graph, compare (picklable for Dask)."""
    import time

    import snnc

    start = time.perf_counter()
    try:
        artifact = snnc.compile(model, target=name, out_dir=root / name, bitstream=bitstream)
        graph = artifact.graph
        reference = reference_artifact(graph, "cpu", root / f"{name}-cpu-reference")
        expected = reference.run(stimulus, steps=steps, record_state=True)
        got = artifact.run(stimulus, steps=steps, record_state=True)
        comparison = compare(graph, got, expected, mode=mode, tolerance=tolerance, labels=labels)
    except base.FitError as exc:
        return MatrixRow(name, "DOES NOT FIT", message=" ".join(str(exc).split()), seconds=time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - one broken target must not hide the others' results
        return MatrixRow(name, "ERROR", message=f"{type(exc).__name__}: {' '.join(str(exc).split())}",
                         seconds=time.perf_counter() - start)
    d = comparison.divergence
    return MatrixRow(name, "PASS" if comparison.passed else "FAIL", comparison,
                     message="" if d is None else d.describe(), seconds=time.perf_counter() - start)


def format_matrix(rows: list[MatrixRow]) -> str:
    """The pass/fail matrix: target, status, spikes compared, mismatches, first divergence or error."""
    cells = [["target", "status", "spikes", "mismatches", "seconds", "first divergence / note"]]
    for row in rows:
        c = row.comparison
        note = row.message
        if c is not None and c.divergence is not None and c.divergence.hint:
            note += f" [hint: {c.divergence.hint}]"
        cells.append([row.target, row.status, "-" if c is None else f"{c.spikes_compared:,}",
                      "-" if c is None else f"{c.mismatches:,}", f"{row.seconds:.1f}", note])
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]) - 1)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in cells]
    failed = [row.target for row in rows if row.failed]
    lines.append(f"{'FAIL' if failed else 'PASS'}: {len(rows) - len(failed)} of {len(rows)} targets agree with "
                 f"the CPU reference" + (f" (failing: {', '.join(failed)})" if failed else ""))
    return "\n".join(line.rstrip() for line in lines)
