"""Quantize a float graph onto the integer neuron of ``ir.IntNeuron`` for one target.

Each non-input population gets a scale S (integer state per float state, over
64) so that ``v_int ≈ 64·S·v_float``. Writing ``x`` for the float input (sum
of projections plus bias) and ``g`` for the per-neuron gain from x to v, the
float model maps onto the integer one as::

    model        i_decay          v_decay          g                              bias_int / (64·S)
    lif, li      4096             4096·dt/tau_mem  (dt/tau_mem)·r                 g·bias + (dt/tau_mem)·v_leak
    cuba_lif,    4096·dt/tau_syn  4096·dt/tau_mem  (dt/tau_mem)·r·w_in·(dt/tau_syn)  (dt/tau_mem)·(r·w_in·bias + v_leak)
      cuba_li
    if, i        4096             0                r                              r·bias
    threshold    4096             4096             1                              bias

and ``weight << weight_exp ≈ S·g·w``, ``vth = round(S·v_threshold)``. CUBA
biases enter v directly, not the current, so only their steady state
matches (a QuantizeWarning says so).

S is chosen per population so that the incoming projection with the
smallest weights uses the whole mantissa at exponent 0; projections with
larger weights get a larger exponent and the same relative precision. S is
capped so the largest projection still fits at ``weight_exp_max`` and the
largest threshold fits in ``threshold_bits``. A worst-case range analysis
warns where u or v could leave ``state_bits``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from snnc.compiler import ir
from snnc.compiler.hw import HardwareConfig

_UNITY = ir.DECAY_UNITY
_SHIFT = 1 << ir.ACT_SHIFT


class QuantizeError(ValueError):
    """A float parameter has no integer representation on the target."""


class QuantizeWarning(UserWarning):
    """The integer model will differ from the float one more than rounding explains."""


def _warn(message: str) -> None:
    warnings.warn(message, QuantizeWarning, stacklevel=2)


@dataclass(frozen=True)
class _Dynamics:
    """One population's float model in integer terms, per neuron (flat float arrays of length size).

    Decays are in 4096ths before rounding; ``gain`` maps the float input x
    to float v per step; ``bias`` is the constant float v increment per step.
    """

    i_decay: np.ndarray
    v_decay: np.ndarray
    gain: np.ndarray
    bias: np.ndarray


def _param(pop: ir.Population, key: str) -> np.ndarray:
    return np.asarray(pop.params[key], dtype=np.float64).ravel()


def _dynamics(pop: ir.Population, dt: float) -> _Dynamics:
    """Decays, input gain and bias of ``pop`` (see the table in the module docstring)."""
    ones = np.ones(pop.size)
    bias = _param(pop, "bias")
    if pop.model in ("lif", "li"):
        mem = dt / _param(pop, "tau_mem")
        gain = mem * _param(pop, "r")
        return _Dynamics(_UNITY * ones, _UNITY * mem, gain, gain * bias + mem * _param(pop, "v_leak"))
    if pop.model in ("cuba_lif", "cuba_li"):
        mem = dt / _param(pop, "tau_mem")
        syn = dt / _param(pop, "tau_syn")
        into_v = mem * _param(pop, "r") * _param(pop, "w_in")
        if np.any(bias != 0):
            _warn(f"population '{pop.name}': a {pop.model} bias enters the current in float but v in the "
                  f"integer model; only the steady state matches, the first ~tau_syn/dt steps differ")
        return _Dynamics(_UNITY * syn, _UNITY * mem, into_v * syn, into_v * bias + mem * _param(pop, "v_leak"))
    if pop.model in ("if", "i"):
        r = _param(pop, "r")
        return _Dynamics(_UNITY * ones, np.zeros(pop.size), r, r * bias)
    if pop.model == "threshold":
        return _Dynamics(_UNITY * ones, _UNITY * ones, ones, bias)
    raise QuantizeError(f"population '{pop.name}': no integer mapping for model '{pop.model}'")


def _decay(fraction: np.ndarray, pop: ir.Population, which: str) -> np.ndarray:
    """Round a decay (4096ths) to the 12-bit integer, warning where rounding changes its meaning."""
    rounded = np.rint(fraction)
    if np.any((fraction > 0) & (rounded == 0)):
        _warn(f"population '{pop.name}': {which} {fraction[fraction > 0].min():.3g}/4096 rounds to 0, so the "
              f"integer state never decays (time constant above 8192·dt)")
    if np.any(fraction > _UNITY):
        _warn(f"population '{pop.name}': {which} {fraction.max():.6g}/4096 is clipped to 4096 "
              f"(time constant below dt; forward Euler overshoots in float)")
    return np.clip(rounded, 0, _UNITY).astype(np.int64)


def _synapse_gain(proj: ir.Projection, gain: np.ndarray) -> np.ndarray:
    """The destination gain broadcast against ``proj.weight`` (per row, per synapse or per output channel)."""
    if proj.kind == "dense":
        return gain[:, None]
    if proj.kind == "sparse":
        assert proj.rows is not None
        return gain[proj.rows]
    assert proj.conv is not None
    per_neuron = gain.reshape(proj.conv.out_shape[0], -1)
    # conv kernels are shared by a whole output channel, so one gain per channel is all they can carry
    picked = per_neuron[np.arange(per_neuron.shape[0]), np.argmax(np.abs(per_neuron), axis=1)]
    if not np.allclose(per_neuron, picked[:, None], rtol=1e-12, atol=0):
        _warn(f"projection '{proj.name}': the gain of '{proj.dst}' varies within an output channel "
              f"(tau_mem, r or w_in differ per neuron); using the largest per channel")
    return picked[:, None, None, None]


def _scale(pop: ir.Population, magnitudes: list[float], hw: HardwareConfig) -> float:
    """S for ``pop`` from the largest |g·w| of each incoming projection (zero ones ignored)."""
    num = hw.numerics
    full = max((1 << (num.weight_bits - 1)) - 1, 1)
    used = [m for m in magnitudes if m > 0]
    caps = []
    if used:
        caps.append(full / min(used))
        caps.append(full * 2.0**num.weight_exp_max / max(used))
    if pop.model in ir.SPIKING_MODELS:
        theta = _param(pop, "v_threshold")
        if np.any(theta < 0):
            raise QuantizeError(f"population '{pop.name}': v_threshold = {theta.min():g} is negative; "
                                f"integer thresholds are unsigned")
        if theta.max() > 0:
            caps.append(((1 << num.threshold_bits) - 1) / theta.max())
    return float(min(caps)) if caps else 1.0


def _quantize_weights(proj: ir.Projection, syn_gain: np.ndarray, scale: float, hw: HardwareConfig) -> ir.IntWeights:
    """Mantissas and the smallest exponent at which the largest |S·g·w| fits the signed mantissa."""
    num = hw.numerics
    full = (1 << (num.weight_bits - 1)) - 1
    target = scale * syn_gain * np.asarray(proj.weight, dtype=np.float64)
    largest = float(np.abs(target).max()) if target.size else 0.0
    exp = max(0, num.weight_exp_min)
    # the smallest exponent whose rounded mantissa fits; equals ceil(log2(largest / full)) without its
    # floating-point edge (a ratio of 8.000000001 must give 3, not 4)
    while exp < num.weight_exp_max and round(largest / 2.0**exp) > full:
        exp += 1
    mantissa = np.clip(np.rint(target / 2.0**exp), -full - 1, full).astype(np.int64)
    return ir.IntWeights(weight=mantissa, weight_exp=exp, weight_bits=num.weight_bits)


def _quantize_bias(bias_int: np.ndarray, pop: ir.Population, hw: HardwareConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron, the smallest bias_exp at which round(bias_int / 2**exp) fits the signed mantissa."""
    num = hw.numerics
    full = (1 << (num.bias_mant_bits - 1)) - 1
    exp = np.full(bias_int.shape, num.bias_exp_max, dtype=np.int64)
    # from the largest exponent down, so the last one that fits (the smallest) wins
    for e in reversed(range(num.bias_exp_max + 1)):
        exp = np.where(np.abs(np.rint(bias_int / 2.0**e)) <= full, e, exp)
    mant = np.rint(bias_int / 2.0**exp)
    if np.any(np.abs(mant) > full):
        worst = float(np.abs(bias_int).max())
        _warn(f"population '{pop.name}': bias {worst:.3g} exceeds {full} << {num.bias_exp_max}; clipped "
              f"({hw.source}: numerics.bias_mant_bits = {num.bias_mant_bits}, bias_exp_max = {num.bias_exp_max})")
    return np.clip(mant, -full, full).astype(np.int64), exp


def _input_bounds(proj: ir.Projection, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per destination neuron, the largest positive and negative a_in one step of spikes can bring."""
    assert proj.quant is not None
    w = proj.quant.weight.astype(np.float64) * 2.0**proj.quant.weight_exp
    pos, neg = np.clip(w, 0, None), np.clip(-w, 0, None)
    if proj.kind == "dense":
        return pos.sum(axis=1), neg.sum(axis=1)
    if proj.kind == "sparse":
        assert proj.rows is not None
        return np.bincount(proj.rows, pos, size), np.bincount(proj.rows, neg, size)
    # every output neuron of a channel sees at most all taps of its kernel (fewer at padded borders)
    per_out = size // pos.shape[0]
    return (np.repeat(pos.reshape(pos.shape[0], -1).sum(axis=1), per_out),
            np.repeat(neg.reshape(neg.shape[0], -1).sum(axis=1), per_out))


def _leaky_bound(step: np.ndarray, decay: np.ndarray) -> np.ndarray:
    """Sup of |x| for x' = rz(x·(4096 - decay)/4096) + e with |e| <= step, from x = 0."""
    bound = np.where(decay > 0, step * _UNITY / np.maximum(decay, 1), np.inf)
    return np.where(step > 0, bound, 0.0)


def _warn_range(pop: ir.Population, state: str, high: float, low: float, bits: int) -> None:
    """Warn when the worst case above (``high``) or below (``-low``) zero leaves the signed state range."""
    limit = (1 << (bits - 1)) - 1
    if max(high, low) <= limit:
        return
    bound = max(high, low)
    if math.isinf(bound):
        direction, sign = {(True, False): ("rise", "positive"), (False, True): ("fall", "negative")}.get(
            (math.isinf(high), math.isinf(low)), ("rise or fall", "one-sided"))
        _warn(f"population '{pop.name}': state {state} has no decay and could {direction} without bound under "
              f"sustained {sign} input, past the {bits}-bit range ±{limit}")
        return
    direction = "rise" if high >= low else "fall"
    margin = (limit - bound) / limit * 100
    _warn(f"population '{pop.name}': state {state} could {direction} to {'' if direction == 'rise' else '-'}{bound:.2g}, "
          f"beyond the {bits}-bit range ±{limit} (margin {margin:.0f}%)")


def _check_ranges(pop: ir.Population, q: ir.IntNeuron, pos_in: np.ndarray, neg_in: np.ndarray) -> None:
    """Warn (once per state) where the worst case of u or v could saturate."""
    u_pos = _leaky_bound(_SHIFT * pos_in, q.i_decay)
    u_neg = _leaky_bound(_SHIFT * neg_in, q.i_decay)
    bias = (q.bias_mant << q.bias_exp).astype(np.float64)
    step_pos = u_pos + np.clip(bias, 0, None)
    step_neg = u_neg + np.clip(-bias, 0, None)
    v_pos = _leaky_bound(step_pos, q.v_decay)
    if q.spiking:
        # v' is compared before saturating further: it tops out one step above the threshold, provided the
        # reset brings it back under (always for reset to 0; for subtraction only if a step is below vth; never for reset "none")
        thr = (q.vth * _SHIFT).astype(np.float64)
        capped = (q.reset == "zero") | ((q.reset == "subtract") & (step_pos <= thr))
        v_pos = np.where(capped, np.minimum(v_pos, thr + step_pos), v_pos)
    v_neg = _leaky_bound(step_neg, q.v_decay)
    _warn_range(pop, "u", float(u_pos.max()), float(u_neg.max()), q.state_bits)
    _warn_range(pop, "v", float(v_pos.max()), float(v_neg.max()), q.state_bits)


def _neuron(pop: ir.Population, dyn: _Dynamics, scale: float, hw: HardwareConfig) -> ir.IntNeuron:
    """The integer parameters of ``pop`` at scale S."""
    spiking = pop.model in ir.SPIKING_MODELS
    vreset = None
    if spiking:
        top = (1 << hw.numerics.threshold_bits) - 1
        vth = np.clip(np.rint(scale * _param(pop, "v_threshold")), 0, top).astype(np.int64)
        if "v_reset" in pop.params and np.any(_param(pop, "v_reset") != 0):
            # v_reset shares the threshold's units and width: reset "zero" lands on it, "subtract" lowers v
            # by (v_threshold - v_reset)
            vreset = np.rint(scale * _param(pop, "v_reset"))
            if np.abs(vreset).max() > top:
                worst = float(_param(pop, "v_reset")[np.argmax(np.abs(vreset))])
                raise QuantizeError(f"population '{pop.name}': v_reset = {worst:g} becomes {np.abs(vreset).max():.0f} "
                                    f"at scale {scale:.3g}, beyond the {hw.numerics.threshold_bits}-bit range "
                                    f"±{top} ({hw.source}: numerics.threshold_bits)")
            vreset = vreset.astype(np.int64)
    else:
        vth = np.zeros(pop.size, dtype=np.int64)
    bias_mant, bias_exp = _quantize_bias(_SHIFT * scale * dyn.bias, pop, hw)
    return ir.IntNeuron(
        i_decay=_decay(dyn.i_decay, pop, "i_decay"),
        v_decay=_decay(dyn.v_decay, pop, "v_decay"),
        vth=vth, bias_mant=bias_mant, bias_exp=bias_exp, spiking=spiking, reset=pop.reset,
        state_bits=hw.numerics.state_bits, vreset=vreset, refractory=pop.refractory,
    )


def run(graph: ir.Graph, hw: HardwareConfig) -> ir.Graph:
    """Return ``graph`` with integer parameters for target ``hw`` on every population and projection.

    Records ``meta["quantization"] = {"target", "weight_bits", "scales": {population: S}}``.
    Raises QuantizeError for parameters the integer model cannot express;
    warns (QuantizeWarning) where it will deviate from the float model.
    """
    dynamics = {p.name: _dynamics(p, graph.dt) for p in graph.populations if p.model != "input"}
    syn_gain = {j.name: _synapse_gain(j, dynamics[j.dst].gain) for j in graph.projections}
    scales: dict[str, float] = {}
    for pop in graph.populations:
        if pop.model == "input":
            continue
        magnitudes = [float(np.abs(syn_gain[j.name] * np.asarray(j.weight)).max(initial=0.0))
                      for j in graph.projections_into(pop.name)]
        scales[pop.name] = _scale(pop, magnitudes, hw)
    projections = tuple(
        ir.replace(j, quant=_quantize_weights(j, syn_gain[j.name], scales[j.dst], hw)) for j in graph.projections
    )
    populations = []
    for pop in graph.populations:
        if pop.model == "input":
            populations.append(pop)
            continue
        q = _neuron(pop, dynamics[pop.name], scales[pop.name], hw)
        pos_in, neg_in = np.zeros(pop.size), np.zeros(pop.size)
        for proj in projections:
            if proj.dst == pop.name:
                pos, neg = _input_bounds(proj, pop.size)
                pos_in += pos
                neg_in += neg
        _check_ranges(pop, q, pos_in, neg_in)
        populations.append(ir.replace(pop, quant=q))
    meta = {**graph.meta, "quantization": {"target": hw.name, "weight_bits": hw.numerics.weight_bits,
                                           "scales": scales}}
    new_graph = ir.replace(graph, populations=tuple(populations), projections=projections, meta=meta)
    return ir.check(new_graph, "quantized")
