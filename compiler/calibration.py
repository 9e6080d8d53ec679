"""Calibration: the state ranges a float network reaches on typical stimuli, and the scale cap they imply.

:func:`measure_ranges` runs the float reference (``timing="per_projection"``,
the integer model's timing) and records, per non-input population::

    v     largest |v| over neurons, steps and samples, including v just before
          a reset (what the integer v saturates on, though the float
          reference records v after the reset)
    u     largest |I|: the synaptic current of cuba_lif/cuba_li; for the other
          models the step's summed projection input x - bias, which is what
          the integer u carries for them (i_decay = 4096)
    u_v   largest |gain·I|, u in the units of v: (dt/tau_mem)·r for cuba and
          lif/li, r for if/i, 1 for threshold; the integer u is 64·S·u_v
    rate  spikes per neuron per step (0 for non-spiking models)
    rate_profile  the same per chunk of neurons (at most RATE_PROFILE_POINTS chunks, C order)

``compile_graph(..., calibration=stimulus)`` stores this dict as
``graph.meta["calibration"]`` before the passes run. :func:`scale_cap` turns
one population's entry into the largest scale S that keeps
``64·S·v`` and ``64·S·u_v`` inside the signed ``state_bits`` range.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from snnc.backends.base import normalize_stimulus
from snnc.compiler import ir
from snnc.compiler.neuron_gains import current_gain
from snnc.compiler.neuron_gains import param as _param
from snnc.runtime import float_reference

HEADROOM = 2.0
"""The cap leaves this factor of the state range unused: test data may reach beyond the calibration data."""

_CURRENT_MODELS = frozenset({"cuba_lif", "cuba_li"})


def _projection_inputs(graph: ir.Graph, rasters: Mapping[str, object], batch: int, steps: int) -> dict[str, np.ndarray]:
    """Per non-input population, the summed projection input x - bias (B, T, N) with per-projection timing."""
    pops = {pop.name: pop for pop in graph.populations}
    inputs = {name: np.zeros((batch, steps, pop.size)) for name, pop in pops.items() if pop.model != "input"}
    for proj in graph.projections:
        src = pops[proj.src]
        raster = rasters[proj.src]
        out = raster.v if src.model in float_reference.NON_SPIKING_MODELS else raster.spikes  # type: ignore[attr-defined]
        flat = np.asarray(out, dtype=np.float64).reshape(batch * steps, src.size)
        # the float reference's own per-synapse-delay split, so timing and delays match it exactly
        for group in float_reference.delay_groups(proj, src.size, pops[proj.dst].size, 1):
            arrived = group.deliver(flat).reshape(batch, steps, -1)
            if group.delay < steps:
                inputs[proj.dst][:, group.delay:] += arrived[:, : steps - group.delay]
    return inputs


def _pre_reset_v(pop: ir.Population, v: np.ndarray, current: np.ndarray, dt: float) -> np.ndarray:
    """v after integrating and before the reset, from the recorded post-reset v of the step before (B, T, N)."""
    before = np.concatenate([np.zeros_like(v[:, :1]), v[:, :-1]], axis=1)
    if pop.model == "threshold":
        return current + _param(pop, "bias")
    if pop.model == "if":
        return before + _param(pop, "r") * (current + _param(pop, "bias"))
    mem = dt / _param(pop, "tau_mem")
    drive = current if pop.model in _CURRENT_MODELS else current + _param(pop, "bias")
    return (1.0 - mem) * before + mem * (_param(pop, "v_leak") + _param(pop, "r") * drive)


RATE_PROFILE_POINTS = 256
"""Neurons' spike rates are kept as the means of at most this many equal chunks (the partitioner's traffic weights)."""


def _rate_profile(spikes: np.ndarray | None, size: int) -> list[float]:
    if spikes is None or not spikes.size:
        return [0.0]
    per_neuron = spikes.reshape(-1, size).mean(axis=0)
    chunks = min(size, RATE_PROFILE_POINTS)
    bounds = np.arange(chunks) * size // chunks
    counts = np.diff(np.append(bounds, size))
    return [round(float(r), 6) for r in np.add.reduceat(per_neuron, bounds) / counts]


def measure_ranges(graph: ir.Graph, stimulus: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """``{population: {"v", "u", "u_v", "rate", "rate_profile"}}`` of the float ``graph`` on ``stimulus`` (module docstring).

    ``stimulus`` maps each input population to 0/1 spikes (T, N), (T, *shape)
    or (B, T, ...). Values are plain floats (JSON-friendly).
    """
    stim, steps, _ = normalize_stimulus(graph, stimulus)
    batch = next(iter(stim.values())).shape[0]
    rasters = float_reference.simulate(graph, stim, timing="per_projection", record_state=True)
    inputs = _projection_inputs(graph, rasters, batch, steps)
    dt = float(graph.dt)
    ranges: dict[str, dict[str, float]] = {}
    for pop in graph.populations:
        if pop.model == "input":
            continue
        raster = rasters[pop.name]
        current = raster.u if pop.model in _CURRENT_MODELS else inputs[pop.name]
        v_peak = float(np.abs(raster.v).max(initial=0.0))
        spiking = pop.model in ir.SPIKING_MODELS
        if spiking and raster.spikes.any():
            pre = _pre_reset_v(pop, raster.v, current, dt)
            v_peak = max(v_peak, float(np.abs(pre[raster.spikes]).max()))
        ranges[pop.name] = {
            "v": v_peak,
            "u": float(np.abs(current).max(initial=0.0)),
            "u_v": float(np.abs(current_gain(pop, dt) * current).max(initial=0.0)),
            "rate": float(raster.spikes.mean()) if spiking and raster.spikes.size else 0.0,
            "rate_profile": _rate_profile(raster.spikes if spiking else None, pop.size),
        }
    return ranges


def scale_cap(pop_range: Mapping[str, float], state_bits: int) -> float:
    """Largest S with ``HEADROOM·64·S·max(v, u_v)`` inside ±(2**(state_bits-1) - 1); inf when both are 0.

    ``pop_range`` is one population's entry of ``graph.meta["calibration"]``.
    """
    peak = max(float(pop_range["v"]), float(pop_range["u_v"]))
    if peak <= 0:
        return float("inf")
    limit = (1 << (state_bits - 1)) - 1
    return limit / (HEADROOM * (1 << ir.ACT_SHIFT) * peak)
