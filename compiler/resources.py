"""The resource model: what a network needs from a target, and whether it fits.

Every formula is in ``docs/resources.md`` so a user can redo it by hand.
A population is cut into equal contiguous slices of ``ceil(n / k)`` neurons
(C order), one per core; :func:`min_cores` finds the smallest ``k`` whose
slices meet every per-core limit of ``hw.core``, and :func:`check` adds the
slices up against ``hw.chip`` (cores x chips). Input populations live off
chip (the host or the FPGA's input port sends their spikes), so they take
no core, but their neurons are axons of the cores they reach.

Everything is numpy over whole projections; the only Python loops are per
population, per projection, per slice and per kernel tap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from snnc.compiler import hw as hwmod
from snnc.compiler import ir

WARN_FRACTION = 0.9
"""A limit used to at least this fraction is reported as a warning."""


class ResourceError(ValueError):
    """A population cannot fit a core however it is split; ``finding`` says which rule and by how much."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message())
        self.finding = finding


@dataclass(frozen=True)
class Finding:
    """One rule broken (``error``) or nearly broken (``warning``): required vs available, and a fix."""

    level: str
    rule: str
    layer: str
    required: int
    available: int
    hint: str
    source: str = ""

    def message(self) -> str:
        """``rule 'core.max_fan_in', layer 'fc2': needs 5,000, available 4,096 (hw_configs/loihi2.yaml) — hint: ...``."""
        where = f" ({self.source})" if self.source else ""
        return (f"rule '{self.rule}', layer '{self.layer}': needs {self.required:,}, "
                f"available {self.available:,}{where} — hint: {self.hint}")


@dataclass(frozen=True)
class Incoming:
    """One projection into a population, reduced to what slicing needs.

    ``bits`` is the storage of one synapse (dense, sparse) or one kernel
    weight (conv); sparse keeps ``rows``/``cols`` (views, not copies) and
    ``row_counts`` (synapses per destination neuron).
    """

    name: str
    src: str
    kind: str
    src_size: int
    bits: int
    rows: np.ndarray | None = field(default=None, repr=False)
    cols: np.ndarray | None = field(default=None, repr=False)
    row_counts: np.ndarray | None = field(default=None, repr=False)
    conv: ir.ConvSpec | None = None
    kernel_shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class Demand:
    """What one population asks of the hardware before it is split.

    ``fan_in``: most synapses into one neuron; ``synapse_bytes`` and
    ``axons`` are for the whole population on one core (a conv kernel once);
    ``fan_out``: destination slices one of its neurons sends to (filled in
    by :func:`population_demand` from the destinations' :func:`min_cores`,
    which it records as ``slices_without_fan_out``).
    """

    name: str
    neurons: int
    on_chip: bool
    fan_in: int
    synapses: int
    synapse_bytes: int
    axons: int
    fan_out: int = 0
    incoming: tuple[Incoming, ...] = field(default=(), repr=False)
    slices_without_fan_out: int = 1
    """:func:`min_cores` before fan-out was known: a lower bound that saves searching twice."""


@dataclass(frozen=True)
class SliceNeeds:
    """What the worst slice of a ``k``-way split needs from its core, and every slice's needs."""

    cores: int
    neurons: int
    synapse_bytes: int
    axons: int
    fan_out: int
    total_bytes: int
    total_axons: int
    per_slice: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 4), dtype=np.int64))
    """(k, 4): neurons, synapse bytes, input axons, fan-out entries of each slice."""


@dataclass(frozen=True)
class Usage:
    """One row of the table: ``used`` of ``available`` (``percent`` = 100 used / available)."""

    resource: str
    used: int
    available: int

    @property
    def percent(self) -> float:
        return 100.0 * self.used / self.available


@dataclass(frozen=True)
class CheckResult:
    """The whole network against the whole target: table rows, findings and cores per population."""

    target: str
    source: str
    rows: tuple[Usage, ...]
    errors: tuple[Finding, ...]
    warnings: tuple[Finding, ...]
    cores: dict[str, int]
    placement: dict | None = None
    """Partition and place report (``graph.meta["partition"]`` and ``["placement"]``) when placement ran."""

    @property
    def fits(self) -> bool:
        return not self.errors


# --------------------------------------------------------------------------- demand


def _index_bits(hw: hwmod.HardwareConfig) -> int:
    """Bits of a target neuron index inside one core: ceil(log2(core.max_neurons)), at least 1."""
    return max(1, math.ceil(math.log2(hw.core.max_neurons)))


def _incoming(proj: ir.Projection, src: ir.Population, hw: hwmod.HardwareConfig) -> Incoming:
    weight_bits = proj.quant.weight_bits if proj.quant is not None else hw.numerics.weight_bits
    if proj.kind == "dense":
        bits = weight_bits + (hw.numerics.delay_bits if proj.delay is not None else 0)
        return Incoming(proj.name, proj.src, "dense", src.size, bits)
    if proj.kind == "sparse":
        assert proj.rows is not None and proj.cols is not None
        bits = weight_bits + hw.numerics.delay_bits + _index_bits(hw)
        return Incoming(proj.name, proj.src, "sparse", src.size, bits, rows=proj.rows, cols=proj.cols)
    return Incoming(proj.name, proj.src, "conv", src.size, weight_bits, conv=proj.conv,
                    kernel_shape=tuple(int(n) for n in proj.weight.shape))


def _with_row_counts(inc: Incoming, size: int) -> Incoming:
    if inc.kind != "sparse":
        return inc
    assert inc.rows is not None
    counts = np.bincount(inc.rows, minlength=size).astype(np.int64)
    return Incoming(inc.name, inc.src, inc.kind, inc.src_size, inc.bits, inc.rows, inc.cols, counts)


def _conv_taps(inc: Incoming) -> int:
    """Synapses into one conv neuron (border neurons of a padded conv have fewer): C_in/groups x kH x kW."""
    return int(math.prod(inc.kernel_shape[1:]))


def _demand_of(pop: ir.Population, graph: ir.Graph, hw: hwmod.HardwareConfig) -> Demand:
    fan_in = np.zeros(pop.size, dtype=np.int64)
    incoming = []
    synapses = 0
    for proj in graph.projections_into(pop.name):
        inc = _with_row_counts(_incoming(proj, graph.population(proj.src), hw), pop.size)
        incoming.append(inc)
        synapses += proj.synapse_count
        if inc.kind == "dense":
            fan_in += inc.src_size
        elif inc.kind == "sparse":
            assert inc.row_counts is not None
            fan_in += inc.row_counts
        else:
            fan_in += _conv_taps(inc)
    demand = Demand(pop.name, pop.size, pop.model != "input", int(fan_in.max(initial=0)), synapses, 0, 0,
                    incoming=tuple(incoming))
    whole = slice_needs(demand, 1, hw)
    return Demand(demand.name, demand.neurons, demand.on_chip, demand.fan_in, synapses, whole.synapse_bytes,
                  whole.axons, incoming=demand.incoming)


def population_demand(graph: ir.Graph, hw: hwmod.HardwareConfig) -> dict[str, Demand]:
    """Demand of every population of ``graph`` on ``hw``, fan-out included.

    Fan-out of a source neuron is estimated before placement as the sum, over
    its outgoing projections, of the destination's slice count (its
    :func:`min_cores` ignoring fan-out, since fan-out depends on the
    destinations' split and not the other way round).
    """
    demands = {pop.name: _demand_of(pop, graph, hw) for pop in graph.populations}
    slices: dict[str, int] = {}
    for name, demand in demands.items():
        try:
            slices[name] = min_cores(demand, hw)
        except ResourceError:
            slices[name] = 1  # reported again by check(); one slice is the optimistic fan-out
    result = {}
    for name, demand in demands.items():
        fan_out = sum(slices[p.dst] for p in graph.projections_from(name))
        result[name] = Demand(demand.name, demand.neurons, demand.on_chip, demand.fan_in, demand.synapses,
                              demand.synapse_bytes, demand.axons, fan_out, demand.incoming, max(1, slices[name]))
    return result


# --------------------------------------------------------------------------- slicing


def slice_bounds(neurons: int, k: int) -> np.ndarray:
    """Slice boundaries [0, s, 2s, ..., neurons] of a k-way split into slices of s = ceil(neurons / k)."""
    size = -(-neurons // k)
    return np.minimum(np.arange(0, k + 1, dtype=np.int64) * size, neurons)


def sparse_axons(inc: Incoming, bounds: np.ndarray) -> np.ndarray:
    """Distinct source neurons per slice; a (slice, source) bitmap when it is small, else a sort."""
    assert inc.rows is not None and inc.cols is not None
    k = len(bounds) - 1
    slice_of = inc.rows // max(1, int(bounds[1]))  # slices are equal: bounds[1] is the slice size
    if k * inc.src_size <= 1 << 27:
        seen = np.zeros((k, inc.src_size), dtype=bool)
        seen[slice_of, inc.cols] = True
        return seen.sum(axis=1)
    keys = np.unique(slice_of.astype(np.int64) * inc.src_size + inc.cols)
    return np.bincount(keys // inc.src_size, minlength=k)


def slice_positions(start: int, stop: int, plane: int) -> np.ndarray:
    """Positions (a bool mask over one channel plane) that C-order neurons [start, stop) cover in any channel."""
    first, last = start // plane, (stop - 1) // plane
    positions = np.zeros(plane, dtype=bool)
    if last == first:
        positions[start - first * plane:stop - first * plane] = True
    elif last == first + 1:
        positions[start - first * plane:] = True
        positions[:stop - last * plane] = True
    else:
        positions[:] = True
    return positions


def conv_slice(inc: Incoming, start: int, stop: int) -> tuple[int, int]:
    """(kernel bits, input axons) of output neurons [start, stop) of a conv: its channels' kernels, its receptive field.

    The receptive field is the input channels of the touched groups times the
    union of input positions any touched output position reads (an upper
    bound when the slice covers different positions in different channels).
    """
    spec = inc.conv
    assert spec is not None
    c_out, cin_g, kh, kw = inc.kernel_shape
    _, h_out, w_out = spec.out_shape
    _, h_in, w_in = spec.in_shape
    plane = h_out * w_out
    first, last = start // plane, (stop - 1) // plane
    kernel_bits = (last - first + 1) * cin_g * kh * kw * inc.bits
    per_group = c_out // spec.groups
    groups = (last // per_group) - (first // per_group) + 1
    positions = slice_positions(start, stop, plane)
    ys, xs = np.divmod(np.flatnonzero(positions), w_out)
    field_mask = np.zeros((h_in, w_in), dtype=bool)
    (sh, sw), (ph, pw), (dh, dw) = spec.stride, spec.padding, spec.dilation
    for u in range(kh):
        for v in range(kw):
            iy = ys * sh - ph + u * dh
            ix = xs * sw - pw + v * dw
            ok = (iy >= 0) & (iy < h_in) & (ix >= 0) & (ix < w_in)
            field_mask[iy[ok], ix[ok]] = True
    return kernel_bits, min(groups, spec.groups) * cin_g * int(field_mask.sum())


def slice_needs(demand: Demand, k: int, hw: hwmod.HardwareConfig, axons_too: bool = True) -> SliceNeeds:
    """The worst core of ``demand`` cut into ``k`` equal slices: neurons, synapse bytes, input axons, fan-out entries.

    Dense rows cost ``bits`` per synapse for every source neuron, and every
    source neuron is an axon; sparse entries cost ``bits`` each and only
    distinct sources are axons; conv stores the kernels of the slice's output
    channels once and needs its receptive field as axons. ``axons_too``
    False skips the axon count of sparse projections (reported as 0), the
    only part that costs a pass over the entries.
    """
    bounds = slice_bounds(demand.neurons, k)
    sizes = np.diff(bounds)
    bits = np.zeros(k, dtype=np.int64)
    axons = np.zeros(k, dtype=np.int64)
    for inc in demand.incoming:
        if inc.kind == "dense":
            bits += sizes * inc.src_size * inc.bits
            axons += np.where(sizes > 0, inc.src_size, 0)
        elif inc.kind == "sparse":
            assert inc.row_counts is not None
            per_slice = np.add.reduceat(inc.row_counts, np.minimum(bounds[:-1], demand.neurons - 1))
            bits += np.where(sizes > 0, per_slice, 0) * inc.bits
            if axons_too:
                axons += sparse_axons(inc, bounds)
        else:
            for i in np.flatnonzero(sizes):
                kernel_bits, field_axons = conv_slice(inc, int(bounds[i]), int(bounds[i + 1]))
                bits[i] += kernel_bits
                axons[i] += field_axons
    slice_bytes = (bits + 7) // 8
    return SliceNeeds(cores=k, neurons=int(sizes.max()), synapse_bytes=int(slice_bytes.max()),
                      axons=int(axons.max()), fan_out=int(sizes.max()) * demand.fan_out,
                      total_bytes=int(slice_bytes.sum()), total_axons=int(axons.sum()),
                      per_slice=np.stack([sizes, slice_bytes, axons, sizes * demand.fan_out], axis=1))


def _fits(needs: SliceNeeds, demand: Demand, hw: hwmod.HardwareConfig) -> bool:
    core = hw.core
    return (needs.neurons <= core.max_neurons and needs.synapse_bytes <= core.synapse_memory_bytes
            and needs.axons <= core.max_axons and (not demand.on_chip or needs.fan_out <= core.max_fan_out))


def unsplittable(demand: Demand, hw: hwmod.HardwareConfig) -> None:
    """Raise ResourceError for what no split can fix: one neuron's fan-in, fan-out, synapse bytes or axons."""
    core = hw.core
    if demand.fan_in > core.max_fan_in:
        raise ResourceError(Finding(
            "error", "core.max_fan_in", demand.name, demand.fan_in, core.max_fan_in,
            f"fan-in {demand.fan_in:,} of neuron(s) in '{demand.name}' exceeds the per-core limit "
            f"{core.max_fan_in:,}: no split can fix it; reduce the layer's inputs", hw.source))
    if demand.on_chip and demand.fan_out > core.max_fan_out:
        raise ResourceError(Finding(
            "error", "core.max_fan_out", demand.name, demand.fan_out, core.max_fan_out,
            f"each neuron of '{demand.name}' sends to {demand.fan_out:,} destination cores, more than a core's "
            f"{core.max_fan_out:,} fan-out entries: no split can fix it; make the next layers smaller", hw.source))
    # a neuron's axons are at most its fan-in, so counting them is needed only above the axon limit
    single = slice_needs(demand, demand.neurons, hw, axons_too=demand.fan_in > core.max_axons)
    if single.synapse_bytes > core.synapse_memory_bytes:
        raise ResourceError(Finding(
            "error", "core.synapse_memory_bytes", demand.name, single.synapse_bytes, core.synapse_memory_bytes,
            f"the synapses of one neuron of '{demand.name}' need {single.synapse_bytes:,} bytes, more than a "
            f"core holds: no split can fix it; {_weight_bits_hint(demand, hw)}", hw.source))
    if single.axons > core.max_axons:
        raise ResourceError(Finding(
            "error", "core.max_axons", demand.name, single.axons, core.max_axons,
            f"a single neuron of '{demand.name}' listens to {single.axons:,} source neurons, more than a core's "
            f"{core.max_axons:,} input axons: no split can fix it; reduce the layer's inputs", hw.source))


def min_cores(demand: Demand, hw: hwmod.HardwareConfig) -> int:
    """The fewest equal slices of ``demand`` that each fit one core of ``hw``; 0 for input populations.

    Raises :class:`ResourceError` when even one neuron per core breaks a
    limit (fan-in, fan-out, synapse memory or axons of a single neuron).
    Starts at the bound set by neurons, fan-out entries and synapse bytes,
    then doubles and bisects (what one slice needs shrinks as slices do).
    """
    if not demand.on_chip:
        return 0
    unsplittable(demand, hw)
    core = hw.core
    per_core = core.max_neurons if demand.fan_out == 0 else min(core.max_neurons, core.max_fan_out // demand.fan_out)
    low = max(1, -(-demand.neurons // per_core), -(-demand.synapse_bytes // core.synapse_memory_bytes))
    low = min(max(low, demand.slices_without_fan_out), demand.neurons)
    if _fits(slice_needs(demand, low, hw), demand, hw):
        return low
    high = low
    while True:
        high = min(2 * high, demand.neurons)
        if _fits(slice_needs(demand, high, hw), demand, hw):
            break
        low = high
    while high - low > 1:
        middle = (low + high) // 2
        if _fits(slice_needs(demand, middle, hw), demand, hw):
            high = middle
        else:
            low = middle
    return high


# --------------------------------------------------------------------------- check


def pack(slices: np.ndarray, hw: hwmod.HardwareConfig) -> int:
    """Cores that hold ``slices`` (rows: neurons, bytes, axons, fan-out entries) packed first-fit decreasing.

    Slices of different populations may share a core when the sums of all
    four needs stay within the core's limits (a time-multiplexed FPGA core
    sweeping a layer table is the extreme case: every layer on one core).
    """
    core = hw.core
    limits = np.array([core.max_neurons, core.synapse_memory_bytes, core.max_axons, core.max_fan_out], dtype=np.int64)
    slices = slices[np.argsort(-(slices / limits).max(axis=1), kind="stable")]
    used = np.zeros((0, 4), dtype=np.int64)
    for need in slices:
        room = np.flatnonzero(np.all(used + need <= limits, axis=1))
        if room.size:
            used[room[0]] += need
        else:
            used = np.vstack([used, need[None, :]])
    return len(used)


def _weight_bits_hint(demand: Demand, hw: hwmod.HardwareConfig) -> str:
    bits = max((inc.bits for inc in demand.incoming), default=hw.numerics.weight_bits)
    weight_bits = min(hw.numerics.weight_bits, max(1, bits))
    half = max(1, weight_bits // 2)
    return f"reduce weight bits to {half} (--weight-bits {half}) to halve synapse memory"


def _level(used: int, available: int) -> str | None:
    if used > available:
        return "error"
    if used >= WARN_FRACTION * available:
        return "warning"
    return None


def check(graph: ir.Graph, hw: hwmod.HardwareConfig) -> CheckResult:
    """Whether ``graph`` fits ``hw``: the resource table for all chips and the findings, errors first."""
    demands = population_demand(graph, hw)
    core, chip = hw.core, hw.chip
    total_cores = chip.cores * chip.chips
    findings: list[Finding] = []
    cores: dict[str, int] = {}
    synapse_bytes = 0
    axons = 0
    slices = [np.zeros((0, 4), dtype=np.int64)]
    memory_bound: list[str] = []
    for name, demand in demands.items():
        if not demand.on_chip:
            continue
        try:
            k = min_cores(demand, hw)
        except ResourceError as exc:
            findings.append(exc.finding)
            k = max(1, -(-demand.neurons // core.max_neurons))
        cores[name] = k
        needs = slice_needs(demand, k, hw)
        synapse_bytes += needs.total_bytes
        slices.append(needs.per_slice)
        axons += needs.total_axons
        by_memory = -(-demand.synapse_bytes // core.synapse_memory_bytes)
        if by_memory > 1 and by_memory >= -(-demand.neurons // core.max_neurons):
            memory_bound.append(name)
        for rule, used, limit in (("core.max_fan_in", demand.fan_in, core.max_fan_in),
                                  ("core.max_fan_out", demand.fan_out, core.max_fan_out)):
            if used <= limit and _level(used, limit) == "warning":
                findings.append(Finding("warning", rule, name, used, limit,
                                        f"'{name}' is within {100 - 100 * used // limit}% of the limit", hw.source))
    used_cores = pack(np.concatenate(slices), hw)
    level = _level(used_cores, total_cores)
    if level == "warning" and total_cores == 1:
        level = None  # one time-multiplexed core is always 100 % "used"; its own limits are the other rows
    if level is not None:
        largest = max(cores, key=lambda n: cores[n])
        if level == "error":
            chips = -(-used_cores // chip.cores)
            spread = (f"split layer '{largest}' ({cores[largest]:,} slices)" if cores[largest] > 1
                      else "spread the network")
            hint = f"{spread} across {chips:,} chips (needs {used_cores:,} cores, a chip has {chip.cores:,})"
            if memory_bound:
                hint += f"; or {_weight_bits_hint(demands[memory_bound[0]], hw)}"
        else:
            hint = f"'{largest}' takes {cores[largest]:,} cores; little room is left for placement"
        findings.append(Finding(level, "chip.cores", largest, used_cores, total_cores, hint, hw.source))
    neurons = sum(d.neurons for d in demands.values() if d.on_chip)
    rows = (
        Usage("neurons", neurons, core.max_neurons * total_cores),
        Usage("synapse memory (bytes)", synapse_bytes, core.synapse_memory_bytes * total_cores),
        Usage("cores", used_cores, total_cores),
        Usage("input axons", axons, core.max_axons * total_cores),
        Usage("max fan-in (per neuron)", max((d.fan_in for d in demands.values()), default=0), core.max_fan_in),
        Usage("max fan-out (cores per neuron)",
              max((d.fan_out for d in demands.values() if d.on_chip), default=0), core.max_fan_out),
    )
    return CheckResult(
        target=hw.name, source=hw.source, rows=rows,
        errors=tuple(f for f in findings if f.level == "error"),
        warnings=tuple(f for f in findings if f.level == "warning"),
        cores=cores,
    )


ESTIMATED_RULES = ("chip.cores", "core.max_fan_out")
"""Rules :func:`check` judges from estimates (fan-out as if every neuron reached every destination slice);
partition and place settle them with real numbers (:func:`placed`)."""


def placed(result: CheckResult, graph: ir.Graph, hw: hwmod.HardwareConfig) -> CheckResult:
    """``result`` after partition and place: real cores and fan-out entries replace the estimates, report attached."""
    report = {**graph.meta.get("partition", {}), **graph.meta.get("placement", {})}
    total = hw.chip.cores * hw.chip.chips
    errors = tuple(f for f in result.errors if f.rule not in ESTIMATED_RULES)
    warnings = [f for f in result.warnings if f.rule not in ESTIMATED_RULES]
    used, fan_out = report["cores_used"], report["max_per_core"]["fan_out_entries"]
    if total > 1 and _level(used, total) == "warning":
        warnings.append(Finding("warning", "chip.cores", "network", used, total,
                                "little room is left on the chips; a bigger network needs another chip", hw.source))
    if _level(fan_out, hw.core.max_fan_out) == "warning":
        warnings.append(Finding("warning", "core.max_fan_out", "network", fan_out, hw.core.max_fan_out,
                                "a core is within 10% of its fan-out entries", hw.source))
    rows = tuple(
        Usage("cores", used, total) if row.resource == "cores"
        else Usage("max fan-out entries (per core)", fan_out, hw.core.max_fan_out)
        if row.resource.startswith("max fan-out") else row
        for row in result.rows)
    cores = {pop.name: int(np.unique(pop.placement).size) for pop in graph.populations if pop.placement is not None}
    return CheckResult(result.target, result.source, rows, errors, tuple(warnings), cores, report)


def refused(result: CheckResult, finding: Finding) -> CheckResult:
    """``result`` when partitioning failed with ``finding``: it replaces the estimated errors."""
    errors = tuple(f for f in result.errors if f.rule not in ESTIMATED_RULES) + (finding,)
    return CheckResult(result.target, result.source, result.rows, errors, result.warnings, result.cores)


def _format_placement(report: dict) -> list[str]:
    greedy = report.get("greedy_inter_core_spikes_per_step", 0.0)
    traffic = report["inter_core_spikes_per_step"]
    versus = f", greedy {greedy:,.4g} ({100 * (traffic - greedy) / greedy:+.0f}%)" if greedy else ""
    limit = report["link_spikes_per_step_limit"]
    link = f"{report['max_link_spikes_per_step']:,.4g}" + (f" of {limit:,} ({report['links_over_limit']} links over)"
                                                           if limit is not None else " (no limit given)")
    share = report["utilisation_percent"]
    return [
        f"placement ({report['placer']}, rates {report['rates']}): {report['cores_used']:,} cores on "
        f"{report['chips_used']:,} chip(s)",
        f"  inter-core spikes/step {traffic:,.4g}{versus}; inter-chip {report['inter_chip_spikes_per_step']:,.4g}",
        f"  hops mean {report['mean_hops']:g}, max {report['max_hops']}; busiest link {link} spikes/step",
        "  per-core use max/mean: " + ", ".join(f"{name} {v['max']:g}/{v['mean']:g}%" for name, v in share.items()),
    ]


def format_check(result: CheckResult) -> str:
    """The table of resources used vs available, then errors and warnings as separate sections."""
    header = ("resource", "used", "available", "%")
    body = [(r.resource, f"{r.used:,}", f"{r.available:,}", f"{r.percent:.1f}") for r in result.rows]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(4)]
    lines = [f"resources on {result.target} ({result.source}):"]
    for row in [header, *body]:
        lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    lines.append("cores per population: " + ", ".join(f"{n} {k:,}" for n, k in result.cores.items()))
    if result.placement is not None:
        lines.extend(_format_placement(result.placement))
    for title, findings in (("errors", result.errors), ("warnings", result.warnings)):
        lines.append(f"{title}: {len(findings)}")
        prefix = "does not fit: " if title == "errors" else "warning: "
        lines.extend(f"  {prefix}{f.message()}" for f in findings)
    lines.append("fits" if result.fits else "does not fit")
    return "\n".join(lines)
