"""Spike equivalence between a compiled artifact and a reference backend, with the first divergence.

``verify_artifact(dir, against="cpu")`` runs the artifact and the same
quantized graph compiled for ``against`` on identical stimuli, recording u
and v, and compares every non-input population exactly: spikes everywhere,
u and v wherever both runs recorded them. A mismatch is reported at its
first divergence (earliest step, then sample, population order, neuron).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snnc import targets
from snnc.backends import base
from snnc.compiler import hw as hwmod
from snnc.compiler import ir
from snnc.runtime import execute
from snnc.runtime.raster import Raster

DEFAULT_SAMPLES = 4
DEFAULT_STEPS = 50
DEFAULT_RATE = 0.2


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

    def describe(self) -> str:
        return (f"first divergence: population '{self.population}' {self.quantity}, sample {self.sample}, "
                f"step {self.step}, neuron {self.neuron}: {self.value} vs reference {self.reference}")


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

    @property
    def equal(self) -> bool:
        return self.spike_mismatches == 0 and self.state_mismatches == 0


def _batched(array: np.ndarray, batched: bool) -> np.ndarray:
    return array if batched else array[None]


def compare(graph: ir.Graph, result: Mapping[str, Raster], reference: Mapping[str, Raster]) -> Comparison:
    """Compare two runs of ``graph`` (rasters of every population) exactly."""
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
        out.divergence = min(candidates, key=lambda d: (d.step, d.sample))
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
                    steps: int | None = None, samples: int = DEFAULT_SAMPLES, seed: int = 0) -> Comparison:
    """Run artifact ``path`` and ``against`` on ``stimulus`` and compare.

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
    comparison = compare(graph, got, expected)
    comparison.saturations = {name: counts for name, counts in saturations.items() if any(counts.values())}
    return comparison


def format_comparison(comparison: Comparison, label: str, against: str) -> str:
    """A short human summary: PASS/FAIL, counts, the first divergence and saturation notes."""
    verdict = "PASS" if comparison.equal else "FAIL"
    lines = [f"{verdict}: {label} vs {against}: {comparison.spike_mismatches:,} mismatching spikes of "
             f"{comparison.spikes_compared:,} compared; {comparison.state_mismatches:,} mismatching u/v values of "
             f"{comparison.states_compared:,}"]
    if comparison.divergence is not None:
        lines.append(comparison.divergence.describe())
    for name, counts in comparison.saturations.items():
        lines.append(f"note: the {against} reference saturated population '{name}' ({counts}); targets that wrap "
                     "instead (Lava, Loihi) may differ there")
    return "\n".join(lines)
