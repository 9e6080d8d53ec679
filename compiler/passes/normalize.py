"""Normalize a float graph for a target: prune, pick storage, and refuse what the target cannot run.

- projections whose weights are all exactly zero are dropped (they cost
  synapse memory and change nothing);
- dense projections with more than :data:`SPARSE_MIN_SIZE` weights and fewer
  than :data:`SPARSE_MAX_DENSITY` of them non-zero become sparse (delays
  follow their weights);
- a population whose model or (spiking) reset mode the target lacks, a
  delay beyond ``2**delay_bits - 1`` steps, or a projection out of a
  non-spiking population (integer targets send only binary spikes; a
  non-spiking population is a readout) raises ``ir.IRError``.
"""

from __future__ import annotations

import numpy as np

from snnc.compiler import ir
from snnc.compiler.hw import HardwareConfig

SPARSE_MAX_DENSITY = 0.10
"""Dense projections with a smaller non-zero fraction are stored sparse."""
SPARSE_MIN_SIZE = 4096
"""Dense projections with at most this many weights stay dense whatever their density."""


def _listed(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(values) + "]"


def _check_population(pop: ir.Population, hw: HardwareConfig) -> None:
    if pop.model == "input":
        return
    if pop.model not in hw.neurons.models:
        raise ir.IRError(f"population '{pop.name}' uses model '{pop.model}', which target '{hw.name}' cannot run "
                         f"({hw.source}: neurons.models = {_listed(hw.neurons.models)})")
    if pop.refractory > hw.neurons.max_refractory:
        raise ir.IRError(f"population '{pop.name}' has a refractory period of {pop.refractory} steps, target "
                         f"'{hw.name}' allows at most {hw.neurons.max_refractory} "
                         f"({hw.source}: neurons.max_refractory = {hw.neurons.max_refractory})")
    if pop.model in ir.SPIKING_MODELS and pop.reset not in hw.neurons.reset_modes:
        raise ir.IRError(f"population '{pop.name}' uses reset '{pop.reset}', which target '{hw.name}' cannot do "
                         f"({hw.source}: neurons.reset_modes = {_listed(hw.neurons.reset_modes)})")


def _check_delays(proj: ir.Projection, hw: HardwareConfig) -> None:
    limit = hw.numerics.max_delay
    if proj.max_delay > limit:
        raise ir.IRError(f"projection '{proj.name}' has a delay of {proj.max_delay} steps, target '{hw.name}' "
                         f"allows at most {limit} ({hw.source}: numerics.delay_bits = {hw.numerics.delay_bits})")


def _check_source(proj: ir.Projection, graph: ir.Graph, hw: HardwareConfig) -> None:
    src = graph.population(proj.src)
    if not src.spiking:
        raise ir.IRError(f"projection '{proj.name}' carries the graded output of non-spiking population "
                         f"'{src.name}' ({src.model}); target '{hw.name}' sends only binary spikes")


def _to_sparse(proj: ir.Projection) -> ir.Projection:
    """The same synapses as a sparse projection (row-major order of the non-zeros)."""
    rows, cols = np.nonzero(proj.weight)
    delay = None if proj.delay is None else proj.delay[rows, cols]
    quant = None if proj.quant is None else ir.replace(proj.quant, weight=np.asarray(proj.quant.weight)[rows, cols])
    return ir.replace(proj, kind="sparse", weight=proj.weight[rows, cols], rows=rows.astype(np.int64),
                      cols=cols.astype(np.int64), delay=delay, quant=quant)


def _normalize_projection(proj: ir.Projection) -> ir.Projection | None:
    """None when the projection can be dropped, else it in its storage form."""
    weight = np.asarray(proj.weight)
    nonzero = int(np.count_nonzero(weight))
    if nonzero == 0:
        return None
    if proj.kind == "dense" and weight.size > SPARSE_MIN_SIZE and nonzero / weight.size < SPARSE_MAX_DENSITY:
        return _to_sparse(proj)
    return proj


def run(graph: ir.Graph, hw: HardwareConfig) -> ir.Graph:
    """Return a normalized copy of the float ``graph`` for target ``hw``; raises ir.IRError on what it cannot run."""
    for pop in graph.populations:
        _check_population(pop, hw)
    projections = []
    for proj in graph.projections:
        _check_delays(proj, hw)
        _check_source(proj, graph, hw)
        kept = _normalize_projection(proj)
        if kept is not None:
            projections.append(kept)
    return ir.check(ir.replace(graph, projections=tuple(projections)), "float")
