"""Differential fuzzing: random quantized networks through every backend, each compared with the CPU reference.

The networks come from hypothesis strategies (:func:`populations`,
:func:`networks`): 1 to 3 populations of 1 to 5 neurons fed by dense
projections (per-synapse delays up to 63 steps), an optional recurrent sparse
projection with repeated pairs, and parameters at the edges of every number
format (decays 0/1/4095/4096, weights -128/127, thresholds at the top of the
state range, 13-bit biases with exponents 0..7, every reset mode, refractory
periods, 8- to 32-bit state). The test suite runs a bounded number of them
(``tests/test_differential_fuzz.py``); :func:`fuzz` (``snnc fuzz``) runs them
for minutes through the same compile path as ``snnc verify``:

    compile(network, target) -> run -> CPU reference on the compiled graph -> exact comparison

A target that refuses a network (it does not fit, or ``unsupported()`` names
what the target lacks) is not a failure, and neither is Lava where the CPU
reference saturates (Lava wraps instead; ``docs/semantics.md``). Anything
else, a spike/u/v mismatch or an exception, is a failure: hypothesis shrinks
the network and stimulus to a small case, which is saved as ``.nir`` (with
the integer parameters, see ``compiler/frontends/nir_export.py``), as an snnc
graph ``.npz`` and as a stimulus ``.npz`` that ``snnc verify`` replays.

hypothesis is a development dependency: it is imported only when a strategy
or :func:`fuzz` is used, so importing this module never fails.
"""

from __future__ import annotations

import contextlib
import shlex
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from snnc import targets as targets_mod
from snnc.compiler import ir

HYPOTHESIS_MISSING = "snnc fuzz needs hypothesis (pip install hypothesis)"
DEFAULT_TARGETS = ("gpu", "loihi2", "fpga-ice40")
"""What :func:`fuzz` checks by default (those ready here): one target per backend besides the CPU."""
ROUND_EXAMPLES = 25
"""Examples per hypothesis run; a timed fuzz runs rounds of this many (each with its own seed) until time is up."""

DECAY_EDGES = (0, 1, 2, 2048, 4094, 4095, 4096)
WEIGHT_EDGES = (0, -1, 1, -128, -127, 126, 127)
STATE_BITS = (8, 12, 16, 24, 32)
FLOAT_PARAMS = {"tau_mem": 1e-3, "r": 1.0, "v_leak": 0.0, "v_threshold": 1.0, "v_reset": 0.0, "bias": 0.0}
"""Placeholder float parameters of the generated populations; only their integer parameters are simulated."""


def _hypothesis() -> tuple[ModuleType, ModuleType]:
    """(hypothesis, hypothesis.strategies), or an ImportError saying how to install it."""
    try:
        import hypothesis
        from hypothesis import strategies
    except ImportError as exc:
        raise ImportError(HYPOTHESIS_MISSING) from exc
    return hypothesis, strategies


# --------------------------------------------------------------------------- builders


def _input_pop(name: str, size: int) -> ir.Population:
    return ir.Population(name, (size,), "input")


def _neuron_pop(name: str, size: int, *, i_decay: Sequence[int] | int, v_decay: Sequence[int] | int,
                vth: Sequence[int], bias_mant: Sequence[int], bias_exp: Sequence[int], spiking: bool, reset: str,
                state_bits: int, vreset: Sequence[int] | None, refractory: int) -> ir.Population:
    """A quantized "lif" (or "li" when not spiking) population; integer parameters broadcast to ``size``."""

    def ints(value: Sequence[int] | int) -> np.ndarray:
        return np.broadcast_to(np.asarray(value, dtype=np.int64), (size,)).copy()

    model = "lif" if spiking else "li"
    params = {key: np.full((size,), FLOAT_PARAMS[key]) for key in ir.NEURON_MODELS[model]}
    quant = ir.IntNeuron(i_decay=ints(i_decay), v_decay=ints(v_decay), vth=ints(vth), bias_mant=ints(bias_mant),
                         bias_exp=ints(bias_exp), spiking=spiking, reset=reset, state_bits=state_bits,
                         vreset=None if vreset is None else ints(vreset), refractory=refractory)
    return ir.Population(name, (size,), model, params, reset=reset, quant=quant, refractory=refractory)


def _int_weights(weight: np.ndarray, weight_exp: int) -> ir.IntWeights:
    """The narrowest signed width holding ``weight`` (at least 2 bits)."""
    bits = max(2, int(np.abs(weight).max(initial=0)).bit_length() + 1)
    return ir.IntWeights(weight=weight, weight_exp=weight_exp, weight_bits=bits)


def _dense(name: str, src: str, dst: str, weight: np.ndarray, weight_exp: int, delay: np.ndarray | None) -> ir.Projection:
    weight = np.asarray(weight, dtype=np.int64)
    return ir.Projection(name, src, dst, "dense", weight.astype(np.float64), delay=delay,
                         quant=_int_weights(weight, weight_exp))


def _sparse(name: str, src: str, dst: str, rows: Sequence[int], cols: Sequence[int], weight: Sequence[int],
            delay: Sequence[int]) -> ir.Projection:
    weight = np.asarray(weight, dtype=np.int64)
    return ir.Projection(name, src, dst, "sparse", weight.astype(np.float64), rows=np.asarray(rows, dtype=np.int64),
                         cols=np.asarray(cols, dtype=np.int64), delay=np.asarray(delay, dtype=np.int64),
                         quant=_int_weights(weight, 0))


def _network(populations: list[ir.Population], projections: list[ir.Projection]) -> ir.Graph:
    inputs = tuple(p.name for p in populations if p.model == "input")
    graph = ir.Graph(populations=tuple(populations), projections=tuple(projections), inputs=inputs,
                     outputs=(populations[-1].name,), dt=1e-3)
    return ir.check(graph, "quantized")


# --------------------------------------------------------------------------- strategies


def _draw_population(draw: Callable[[Any], Any], name: str, compilable: bool, loihi: bool) -> ir.Population:
    """One population: ``compilable`` keeps state within 24 bits, ``loihi`` within what Lava's LIF represents."""
    _, st = _hypothesis()
    size = draw(st.integers(1, 5))
    spiking = draw(st.booleans()) or name == "p0"
    if loihi:
        state_bits = 24
    else:
        state_bits = draw(st.sampled_from([b for b in STATE_BITS if b <= 24 or not compilable]))
    vth_top = (1 << min(17, state_bits - 7)) - 1  # vth << 6 stays inside the state range
    return _neuron_pop(
        name, size, i_decay=draw(st.sampled_from(DECAY_EDGES)), v_decay=draw(st.sampled_from(DECAY_EDGES)),
        spiking=spiking, state_bits=state_bits,
        vth=draw(st.lists(st.sampled_from([0, 1, vth_top, vth_top // 3]), min_size=size, max_size=size)),
        bias_mant=draw(st.lists(st.integers(-4095, 4095), min_size=size, max_size=size)),
        bias_exp=draw(st.lists(st.integers(0, 7), min_size=size, max_size=size)),
        reset="zero" if loihi else draw(st.sampled_from(["zero", "subtract", "none"])),
        vreset=None if loihi else draw(st.none() | st.lists(st.integers(-3, 3), min_size=size, max_size=size)),
        refractory=draw(st.sampled_from([0, 0, 1, 3])) if spiking and not loihi else 0)


def populations(name: str, *, compilable: bool = False, loihi: bool = False) -> Any:
    """A hypothesis strategy of one quantized population named ``name`` (see :func:`networks` for the flags)."""
    _, st = _hypothesis()
    return st.composite(lambda draw: _draw_population(draw, name, compilable, loihi))()


def networks(*, compilable: bool = False) -> Any:
    """A hypothesis strategy of ``(graph, stimulus)``: a random quantized network and 2 samples of 1..12 steps.

    ``compilable`` keeps to what the compile pipeline accepts for some integer
    target (state within 24 bits, only spiking populations project) and makes
    a drawn share of the networks representable by Lava's LIF (24-bit state,
    reset to zero, no refractory period). Without it the networks also
    exercise what only the backends themselves take (32-bit state, graded
    sources), for tests that call backends directly.
    """
    _, st = _hypothesis()

    @st.composite
    def network_and_stimulus(draw: Callable[[Any], Any]) -> tuple[ir.Graph, dict[str, np.ndarray]]:
        loihi = compilable and draw(st.booleans())
        n_in = draw(st.integers(1, 4))
        pops: list[ir.Population] = [_input_pop("in", n_in)]
        projections: list[ir.Projection] = []
        for k in range(draw(st.integers(1, 3))):
            pop = _draw_population(draw, f"p{k}", compilable, loihi)
            sources = [p for p in pops if p.spiking or not compilable]
            src = sources[draw(st.integers(0, len(sources) - 1))]
            count = pop.size * src.size
            weight = np.array(draw(st.lists(_weights(st), min_size=count, max_size=count)), dtype=np.int64)
            delay_top = draw(st.sampled_from([0, 1, 5, 63]))
            delay = None if delay_top == 0 else np.array(
                draw(st.lists(st.integers(0, delay_top), min_size=count, max_size=count)), dtype=np.int64)
            projections.append(_dense(f"d{k}", src.name, pop.name, weight.reshape(pop.size, src.size),
                                      weight_exp=draw(st.integers(0, 7)),
                                      delay=None if delay is None else delay.reshape(pop.size, src.size)))
            pops.append(pop)
        recurrent = [p for p in pops[1:] if p.spiking or not compilable]
        if draw(st.booleans()):  # a recurrent sparse projection with repeated pairs
            target = recurrent[draw(st.integers(0, len(recurrent) - 1))]
            count = draw(st.integers(1, 6))
            rows = draw(st.lists(st.integers(0, target.size - 1), min_size=count, max_size=count))
            cols = draw(st.lists(st.integers(0, target.size - 1), min_size=count, max_size=count))
            weights = draw(st.lists(_weights(st), min_size=count, max_size=count))
            delays = draw(st.lists(st.integers(0, 3), min_size=count, max_size=count))
            projections.append(_sparse("rec", target.name, target.name, rows, cols, weights, delays))
        steps = draw(st.integers(1, 12))
        spikes = np.array(draw(st.lists(st.booleans(), min_size=2 * steps * n_in, max_size=2 * steps * n_in)))
        return _network(pops, projections), {"in": spikes.reshape(2, steps, n_in).astype(np.uint8)}

    return network_and_stimulus()


def _weights(st: ModuleType) -> Any:
    """8-bit weight mantissas, the format's edges drawn often."""
    return st.one_of(st.sampled_from(WEIGHT_EDGES), st.integers(-128, 127))


# --------------------------------------------------------------------------- results


@dataclass
class TargetCounts:
    """What happened to the fuzzed networks on one target."""

    compared: int = 0  # ran and matched the CPU reference exactly
    refused: int = 0  # the target said it cannot run the network (does not fit, unsupported): not a failure
    skipped: int = 0  # ran but is not comparable (Lava where the reference saturates)


@dataclass
class FuzzFailure:
    """A shrunk failing case, saved so that ``replay_command`` (``snnc verify``) reproduces it."""

    target: str
    message: str  # the first divergence, or the exception a backend raised
    model_path: Path  # .nir (integer parameters in its metadata)
    stimulus_path: Path  # .npz, one (B, T, N) 0/1 array per input population
    graph_path: Path  # the same network as an snnc graph .npz (also a model file for snnc verify)
    replay_command: str
    network: str  # a one-line size summary of the shrunk network
    reproduced: bool | None = None  # whether replaying the saved files through snnc verify fails too (None: not tried)


@dataclass
class FuzzResult:
    """What a fuzz run did: how many networks, per-target counts, and the failure it stopped at (if any)."""

    examples: int
    seconds: float
    per_target: dict[str, TargetCounts]
    failure: FuzzFailure | None = None
    notes: list[str] = field(default_factory=list)  # targets left out and why
    seed: int = 0

    @property
    def passed(self) -> bool:
        return self.failure is None


# --------------------------------------------------------------------------- one example on one target


class _Divergence(Exception):
    """A target disagrees with the CPU reference, or raised; hypothesis shrinks on this exception."""

    def __init__(self, target: str, message: str) -> None:
        super().__init__(f"{target}: {message}")
        self.target = target
        self.message = message


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _is_refusal(exc: BaseException) -> bool:
    """Whether ``exc`` is a target's documented refusal of a network rather than a bug."""
    from snnc.backends import base
    from snnc.compiler import pipeline, resources
    from snnc.compiler.passes import quantize

    if isinstance(exc, base.FitError | targets_mod.TargetError):
        return True
    return isinstance(exc, pipeline.PassError) and isinstance(
        exc.__cause__, ir.IRError | quantize.QuantizeError | resources.ResourceError | base.FitError)


def _check_target(target: str, graph: ir.Graph, stimulus: Mapping[str, np.ndarray], work: Path) -> str:
    """Compile and run ``graph`` for ``target`` as ``snnc verify`` does; "compared", "refused" or "skipped".

    Raises :class:`_Divergence` on a mismatch or an unexpected exception.
    """
    import snnc
    from snnc.backends import cpu
    from snnc.runtime import verify

    try:
        artifact = snnc.compile(graph, target=target, out_dir=work / target, bitstream=False)
    except Exception as exc:  # noqa: BLE001 - every exception is either a refusal or a finding
        if _is_refusal(exc):
            return "refused"
        raise _Divergence(target, f"compile raised {_one_line(exc)}") from exc
    compiled = artifact.graph
    if cpu.unsupported(compiled, None):
        return "refused"  # the reference itself cannot run it (int64 limits), so there is nothing to compare with
    try:
        expected, saturations = cpu.simulate_with_stats(compiled, stimulus, record_state=True)
    except Exception as exc:  # noqa: BLE001
        raise _Divergence("cpu", f"the CPU reference raised {_one_line(exc)}") from exc
    if target == "loihi2" and any(any(counts.values()) for counts in saturations.values()):
        return "skipped"  # Lava wraps where the reference saturates (docs/semantics.md)
    try:
        got = artifact.run(stimulus, record_state=True)
    except Exception as exc:  # noqa: BLE001
        raise _Divergence(target, f"run raised {_one_line(exc)}") from exc
    comparison = verify.compare(compiled, got, expected)
    if not comparison.equal:
        d = comparison.divergence
        assert d is not None
        raise _Divergence(target, d.describe() + (f" [hint: {d.hint}]" if d.hint else ""))
    return "compared"


# --------------------------------------------------------------------------- the search


@dataclass
class _Search:
    """State shared by the hypothesis rounds of one fuzz run."""

    targets: list[str]
    work: Path
    deadline: float
    counts: dict[str, TargetCounts]
    examples: int = 0
    failing_target: str | None = None  # set at the first failure: shrinking then runs only this target
    case: tuple[ir.Graph, dict[str, np.ndarray], _Divergence] | None = None  # the latest failing example
    on_example: Callable[[], None] = lambda: None

    def check(self, case: tuple[ir.Graph, dict[str, np.ndarray]]) -> None:
        graph, stimulus = case
        shrinking = self.failing_target is not None
        if not shrinking and time.monotonic() >= self.deadline:
            return  # time is up: let hypothesis finish its round without work
        for target in [self.failing_target] if shrinking else self.targets:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    outcome = _check_target(target, graph, stimulus, self.work)
            except _Divergence as exc:
                if not shrinking:
                    self.examples += 1
                self.failing_target = target
                self.case = (graph, stimulus, exc)
                raise
            if not shrinking:
                counts = self.counts[target]
                setattr(counts, outcome, getattr(counts, outcome) + 1)
        if not shrinking:
            self.examples += 1
            self.on_example()


def _resolve_targets(names: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(targets to fuzz, notes on those left out); unknown names raise TargetError."""
    wanted = list(DEFAULT_TARGETS if names is None else dict.fromkeys(names))
    ready, notes = [], []
    for name in wanted:
        status = targets_mod.status(targets_mod.get_target(name))
        if status == "ready":
            ready.append(name)
        else:
            notes.append(f"{name} left out: {status}")
    if not ready:
        raise targets_mod.TargetError(f"no target to fuzz: {'; '.join(notes)}")
    return ready, notes


def fuzz(minutes: float | None = None, *, max_examples: int | None = None, targets: Sequence[str] | None = None,
         seed: int = 0, out_dir: str | Path = "fuzz-failures", progress: bool | None = None) -> FuzzResult:
    """Fuzz ``targets`` against the CPU reference for ``minutes`` and/or ``max_examples`` networks.

    ``targets`` defaults to every ready one of :data:`DEFAULT_TARGETS`; unready
    ones are left out with a note. Runs are reproducible from ``seed``. At the
    first failure hypothesis shrinks the case, which is saved in ``out_dir``
    (``<stem>.nir``, ``<stem>.graph.npz``, ``<stem>.stimulus.npz``) and the run
    stops. ``progress`` draws a bar on stderr (default: when it is a terminal).
    """
    if minutes is None and max_examples is None:
        raise ValueError("fuzz needs a time budget (minutes) or a number of examples (max_examples)")
    if minutes is not None and minutes <= 0:
        raise ValueError(f"minutes must be positive, got {minutes}")
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples must be at least 1, got {max_examples}")
    hypothesis, _ = _hypothesis()
    names, notes = _resolve_targets(targets)
    start = time.monotonic()
    deadline = start + minutes * 60 if minutes is not None else float("inf")
    limit = max_examples if max_examples is not None else float("inf")
    strategy = networks(compilable=True)
    with tempfile.TemporaryDirectory(prefix="snnc-fuzz-") as tmp, _progress(minutes, max_examples, progress) as bar:
        search = _Search(names, Path(tmp), deadline, {name: TargetCounts() for name in names})
        search.on_example = lambda: bar(search.examples, time.monotonic() - start)
        round_number = 0
        while search.examples < limit and time.monotonic() < deadline:
            budget = int(min(ROUND_EXAMPLES, limit - search.examples))
            before = search.examples

            def run_case(case: tuple[ir.Graph, dict[str, np.ndarray]]) -> None:
                search.check(case)

            test = hypothesis.given(case=strategy)(run_case)
            test = hypothesis.settings(
                max_examples=budget, database=None, deadline=None, report_multiple_bugs=False, print_blob=False,
                verbosity=hypothesis.Verbosity.quiet, suppress_health_check=list(hypothesis.HealthCheck))(test)
            test = hypothesis.seed(seed * 1_000_003 + round_number)(test)
            try:
                test()
            except Exception:
                if search.case is None:
                    raise
                break
            round_number += 1
            if search.examples == before:
                break  # hypothesis generated nothing new (the time ran out inside the round)
        failure = None
        if search.case is not None:
            graph, stimulus, divergence = search.case
            failure = save_case(graph, stimulus, divergence.target, divergence.message, out_dir)
    return FuzzResult(examples=search.examples, seconds=time.monotonic() - start, per_target=search.counts,
                      failure=failure, notes=notes, seed=seed)


@contextlib.contextmanager
def _progress(minutes: float | None, max_examples: int | None, enabled: bool | None) -> Iterator[Callable[[int, float], None]]:
    """A callback (examples, elapsed s) that redraws the bar: seconds of the budget when timed, else examples."""
    from snnc.runtime.progress import Progress

    timed = minutes is not None
    total = int(round(minutes * 60)) if timed else int(max_examples or 1)
    with Progress(total, "fuzzing", unit="s" if timed else "examples", enabled=enabled) as bar:

        def draw(examples: int, elapsed: float) -> None:
            bar.label = f"fuzzing ({examples:,} networks)"
            done = min(int(elapsed), total) if timed else examples
            bar.update(done - bar.done)

        yield draw


# --------------------------------------------------------------------------- saving a case


def _network_summary(graph: ir.Graph, stimulus: Mapping[str, np.ndarray]) -> str:
    neurons = [p for p in graph.populations if p.model != "input"]
    synapses = sum(p.synapse_count for p in graph.projections)
    batch, steps = next(iter(stimulus.values())).shape[:2]
    return (f"{len(neurons)} neuron population(s) of {sum(p.size for p in neurons)} neuron(s), "
            f"{len(graph.projections)} projection(s) of {synapses} synapse(s), {batch} sample(s) x {steps} step(s)")


def _save_stimulus(stimulus: Mapping[str, np.ndarray], path: Path) -> None:
    """Write ``stimulus`` as a 0/1 uint8 ``.npz`` atomically (a temporary file, then rename), like ``ir.save``."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        np.savez(handle, **{name: np.asarray(value, dtype=np.uint8) for name, value in stimulus.items()})
    tmp.replace(path)


def save_case(graph: ir.Graph, stimulus: Mapping[str, np.ndarray], target: str, message: str,
              out_dir: str | Path, check_replay: bool = True) -> FuzzFailure:
    """Write a failing case to ``out_dir`` as ``.nir`` + snnc graph ``.npz`` + stimulus ``.npz``, atomically.

    The stem names the target and the graph hash. ``check_replay`` replays the
    saved files the way ``snnc verify`` does and records whether it fails too.
    """
    from snnc.compiler.frontends.nir_export import export_nir

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"fuzz-{target}-{ir.graph_hash(graph)[:12]}"
    graph_path = stem.with_name(stem.name + ".graph.npz")
    stimulus_path = stem.with_name(stem.name + ".stimulus.npz")
    model_path = stem.with_name(stem.name + ".nir")
    ir.save(graph, graph_path)
    _save_stimulus(stimulus, stimulus_path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # reset modes NIR cannot state are recorded in metadata
            export_nir(graph, model_path)
    except ValueError:
        model_path = graph_path  # not expressible as NIR: the graph file replays just as well
    command = f"snnc verify {shlex.quote(str(model_path))} --targets {target} --stimuli {shlex.quote(str(stimulus_path))}"
    failure = FuzzFailure(target=target, message=message, model_path=model_path, stimulus_path=stimulus_path,
                          graph_path=graph_path, replay_command=command, network=_network_summary(graph, stimulus))
    if check_replay:
        failure.reproduced = replay_fails(failure)
    return failure


def replay_fails(failure: FuzzFailure) -> bool:
    """Whether ``snnc verify`` on the saved model and stimulus reports the target as failing."""
    from snnc.runtime import execute, verify

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = verify.verify_matrix(failure.model_path, [failure.target],
                                    stimulus=execute.read_stimulus(failure.stimulus_path))
    return rows[0].failed


# --------------------------------------------------------------------------- report


def format_result(result: FuzzResult) -> str:
    """A short human report: networks fuzzed, per-target counts, and the saved failure with its replay command."""
    lines = [f"fuzzed {result.examples:,} networks in {result.seconds:.1f} s (seed {result.seed})"]
    cells = [["target", "compared", "refused", "skipped"]]
    cells += [[name, f"{c.compared:,}", f"{c.refused:,}", f"{c.skipped:,}"] for name, c in result.per_target.items()]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines += [f"note: {note}" for note in result.notes]
    failure = result.failure
    if failure is None:
        lines.append("PASS: every compared run matched the CPU reference exactly (spikes, u and v)")
        return "\n".join(lines)
    lines.append(f"FAIL: {failure.target} disagrees with the CPU reference; shrunk to {failure.network}")
    lines.append(f"  {failure.message}")
    lines.append(f"saved {failure.model_path}, {failure.stimulus_path} and {failure.graph_path}")
    lines.append(f"replay: {failure.replay_command}")
    if failure.reproduced is False:
        lines.append("warning: replaying the saved files did not fail (a nondeterministic backend?); "
                     f"try the graph file: snnc verify {shlex.quote(str(failure.graph_path))} "
                     f"--targets {failure.target} --stimuli {shlex.quote(str(failure.stimulus_path))}")
    return "\n".join(lines)
