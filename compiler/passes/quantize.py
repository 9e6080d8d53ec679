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

S is chosen so that the incoming projection with the smallest weights uses
the whole mantissa at exponent 0; projections with larger weights get a
larger exponent and the same relative precision. S is capped so the largest
projection still fits at ``weight_exp_max`` and the largest threshold fits in
``threshold_bits``. A worst-case range analysis warns where u or v could
leave ``state_bits``.

Where the target has ``numerics.per_channel_scales``, S is chosen per
destination channel instead of per population: per neuron behind dense and
sparse projections, per output channel behind conv projections (a kernel is
shared by all positions of its channel). Every neuron already has its own
vth, bias and vreset, so the integer model is unchanged: a neuron's weight
row, threshold, bias and reset level are all scaled by its own S_c. The
weight exponent stays one per projection, set by its largest S_c·|g·w| row.
``meta["quantization"]["scales"][population]`` is S (a float) when uniform,
else ``{"min": ..., "max": ...}``.

Options: ``run(graph, hw)`` takes the target's numerics as they are; global
user options (``compiler.quant_options.QuantOptions``: weight bits, per
channel) arrive already applied to ``hw`` by ``pipeline.compile_graph``.
Per-layer overrides arrive as ``graph.meta["quant_overrides"]``, a JSON
dict ``{projection: {"weight_bits": n}, population: {"per_channel": bool}}``.

QuantizeError reports what the target cannot represent: a decay that rounds
to 0 although the float model leaks, and a projection whose weights collapse
to fewer than 2 distinct non-zero mantissas (because of too few bits, or
because the weight exponent range or the threshold width caps S).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from snnc.compiler import ir, neuron_gains, quant_options
from snnc.compiler.calibration import scale_cap
from snnc.compiler.hw import HardwareConfig
from snnc.compiler.neuron_gains import param as _param

_UNITY = ir.DECAY_UNITY
_SHIFT = 1 << ir.ACT_SHIFT
CHUNK = 1 << 22
"""Sparse projections are processed this many synapses at a time, so no float64 copy of a large
projection's weights is ever whole."""


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


def _dynamics(pop: ir.Population, dt: float) -> _Dynamics:
    """Decays, input gain and bias of ``pop`` (see the table in the module docstring)."""
    if pop.model not in ir.NEURON_MODELS or pop.model == "input":
        raise QuantizeError(f"population '{pop.name}': no integer mapping for model '{pop.model}'")
    ones = np.ones(pop.size)
    bias = _param(pop, "bias")
    into_v = neuron_gains.current_gain(pop, dt)
    leak = np.zeros(pop.size)
    i_decay = v_decay = _UNITY * ones
    if "tau_mem" in pop.params:
        mem = dt / _param(pop, "tau_mem")
        v_decay = _UNITY * mem
        leak = mem * _param(pop, "v_leak")
    elif pop.model in ("if", "i"):
        v_decay = np.zeros(pop.size)
    if "tau_syn" in pop.params:
        i_decay = _UNITY * (dt / _param(pop, "tau_syn"))
        into_v = into_v * _param(pop, "w_in")
        if np.any(bias != 0):
            _warn(f"population '{pop.name}': a {pop.model} bias enters the current in float but v in the "
                  f"integer model; only the steady state matches, the first ~tau_syn/dt steps differ")
    return _Dynamics(i_decay, v_decay, neuron_gains.input_gain(pop, dt), into_v * bias + leak)


def _decay(fraction: np.ndarray, pop: ir.Population, which: str, tau: str, dt: float) -> np.ndarray:
    """Round a decay (4096ths, from dt/``tau``) to the 12-bit integer; a leak that rounds away is an error."""
    rounded = np.rint(fraction)
    lost = (fraction > 0) & (rounded == 0)
    if np.any(lost):
        # rint(4096·dt/tau) is 0 up to 4096·dt/tau = 0.5 (half to even): tau must stay below 8192·dt
        raise QuantizeError(f"population '{pop.name}': {which} = dt/{tau} = {fraction[lost].min() / _UNITY:.3g} rounds "
                            f"to 0/4096 (no leak); the target's 12-bit decay needs {tau} < 8192·dt = {8192 * dt:g} s")
    if np.any(fraction > _UNITY):
        _warn(f"population '{pop.name}': {which} {fraction.max():.6g}/4096 is clipped to 4096 "
              f"(time constant below dt; forward Euler overshoots in float)")
    return np.clip(rounded, 0, _UNITY).astype(np.int64)


def _per_synapse(proj: ir.Projection, per_neuron: np.ndarray) -> np.ndarray:
    """A per-destination-neuron array broadcast against ``proj.weight``; conv takes one value per output channel."""
    if proj.kind == "dense":
        return per_neuron[:, None]
    if proj.kind == "sparse":
        assert proj.rows is not None
        return per_neuron[proj.rows]
    assert proj.conv is not None
    return neuron_gains.per_channel(per_neuron, proj.conv.out_shape[0])[:, None, None, None]


def _chunks(proj: ir.Projection) -> list[slice]:
    """Pieces of a sparse projection's synapses of at most CHUNK each (one piece for the other kinds)."""
    if proj.kind != "sparse":
        return [slice(None)]
    size = int(np.asarray(proj.weight).size)
    return [slice(start, start + CHUNK) for start in range(0, size, CHUNK)] or [slice(0, 0)]


def _synapse_gain(proj: ir.Projection, gain: np.ndarray) -> np.ndarray:
    """The destination gain against ``proj.weight``; conv kernels can carry only one gain per output channel.

    Sparse projections keep it per destination neuron (see :func:`_targets`).
    """
    if proj.kind == "sparse":
        return gain
    if proj.kind == "conv":
        assert proj.conv is not None
        picked = neuron_gains.per_channel(gain, proj.conv.out_shape[0])
        if not np.allclose(gain.reshape(picked.size, -1), picked[:, None], rtol=1e-12, atol=0):
            _warn(f"projection '{proj.name}': the gain of '{proj.dst}' varies within an output channel "
                  f"(tau_mem, r or w_in differ per neuron); using the largest per channel")
    return _per_synapse(proj, gain)


def _targets(proj: ir.Projection, syn_gain: np.ndarray,
             scale: np.ndarray | None = None) -> Iterator[tuple[slice, np.ndarray]]:
    """``scale · g · w`` (``g · w`` without scale) in float64, piece by piece of :func:`_chunks`.

    The arithmetic is elementwise, so each piece equals that slice of the whole product.
    """
    weight = np.asarray(proj.weight)
    # per destination neuron, (S·g)[rows] is S[rows]·g[rows] to the bit, one gather instead of two
    per_neuron = syn_gain if scale is None or proj.kind != "sparse" else scale * syn_gain
    for part in _chunks(proj):
        if proj.kind == "sparse":
            assert proj.rows is not None
            gain = per_neuron[proj.rows[part]]
        else:
            gain = syn_gain if scale is None else _per_synapse(proj, scale) * syn_gain
        yield part, gain * np.asarray(weight[part], dtype=np.float64)


def _full(bits: int) -> int:
    """Largest positive signed mantissa of ``bits`` bits (1 for 1-bit weights, whose range is [-1, 0])."""
    return max((1 << (bits - 1)) - 1, 1)


def _row_magnitudes(proj: ir.Projection, syn_gain: np.ndarray, size: int) -> np.ndarray:
    """Per destination neuron, the largest |g·w| of ``proj`` onto it (0 where it has no synapse)."""
    if proj.kind == "sparse":
        assert proj.rows is not None
        rows = np.zeros(size)
        for part, target in _targets(proj, syn_gain):
            np.maximum.at(rows, proj.rows[part], np.abs(target, out=target))
        return rows
    [(_, target)] = _targets(proj, syn_gain)
    target = np.abs(target)
    if proj.kind == "dense":
        return target.max(axis=1, initial=0.0)
    per_channel = target.reshape(target.shape[0], -1).max(axis=1, initial=0.0)
    return np.repeat(per_channel, size // target.shape[0])


@dataclass(frozen=True)
class _Scale:
    """S per neuron of one population, and the caps that bound it (per neuron, inf where none)."""

    value: np.ndarray
    weight_cap: np.ndarray
    threshold_cap: np.ndarray

    @property
    def uniform(self) -> bool:
        return bool(np.all(self.value == self.value[0]))

    def record(self) -> float | dict[str, float]:
        """JSON-friendly S for meta: a float when uniform, else its range."""
        if self.uniform:
            return float(self.value[0])
        return {"min": float(self.value.min()), "max": float(self.value.max())}


def _scale(pop: ir.Population, rows: list[tuple[np.ndarray, int]], hw: HardwareConfig, per_channel: bool,
           channels: list[int], state_cap: float = np.inf) -> _Scale:
    """S for ``pop`` from each incoming projection's per-neuron largest |g·w| and weight bits (zero rows ignored).

    Per layer, every neuron sees the population-wide maxima, so S is uniform.
    Per channel, each neuron gets its own S, made uniform over each group
    of ``channels`` (the output channels of conv projections into ``pop``).
    """
    num = hw.numerics
    size = pop.size
    desired = np.zeros(size)
    weight_cap = np.full(size, np.inf)
    for magnitude, bits in rows:
        if not per_channel:
            magnitude = np.full(size, magnitude.max(initial=0.0))
        used = magnitude > 0
        safe = np.where(used, magnitude, 1.0)
        full = _full(bits)
        desired = np.where(used, np.maximum(desired, full / safe), desired)
        weight_cap = np.where(used, np.minimum(weight_cap, full * 2.0**num.weight_exp_max / safe), weight_cap)
    threshold_cap = np.full(size, np.inf)
    if pop.model in ir.SPIKING_MODELS:
        theta = _param(pop, "v_threshold")
        if np.any(theta < 0):
            raise QuantizeError(f"population '{pop.name}': v_threshold = {theta.min():g} is negative; "
                                f"integer thresholds are unsigned")
        if not per_channel:
            theta = np.full(size, theta.max())
        top = (1 << num.threshold_bits) - 1
        threshold_cap = np.where(theta > 0, top / np.where(theta > 0, theta, 1.0), np.inf)
    value = np.minimum(np.where(desired > 0, desired, np.inf), np.minimum(weight_cap, threshold_cap))
    # calibration: the largest float |v| and |u| seen on the stimuli must stay inside the state width
    value = np.minimum(value, state_cap)
    if per_channel:
        # a neuron without incoming weights takes the scale it would get per layer
        layer = _scale(pop, rows, hw, False, [], state_cap).value
        value = np.where(np.isinf(value), layer, value)
        for count in channels:
            value = np.repeat(value.reshape(count, -1).min(axis=1), size // count)
    value = np.where(np.isinf(value), 1.0, value)
    return _Scale(value, weight_cap, threshold_cap)


def _mantissa_dtype(bits: int) -> type[np.signedinteger]:
    """The narrowest signed integer type holding ``bits``-bit mantissas (they are 1 to 16 bits wide)."""
    return next(t for t in (np.int8, np.int16, np.int32, np.int64) if np.iinfo(t).bits >= bits)


def _quantize_weights(proj: ir.Projection, syn_gain: np.ndarray, scale: np.ndarray, bits: int,
                      hw: HardwareConfig) -> ir.IntWeights:
    """Mantissas and the smallest exponent at which the largest |S·g·w| fits the signed mantissa.

    ``scale`` is S per destination neuron; the mantissas take the narrowest integer type of ``bits``.
    """
    num = hw.numerics
    full = _full(bits)
    largest = 0.0
    for _, target in _targets(proj, syn_gain, scale):
        if target.size:
            largest = max(largest, float(target.max()), -float(target.min()))
    exp = max(0, num.weight_exp_min)
    # the smallest exponent whose rounded mantissa fits; equals ceil(log2(largest / full)) without its
    # floating-point edge (a ratio of 8.000000001 must give 3, not 4)
    while exp < num.weight_exp_max and round(largest / 2.0**exp) > full:
        exp += 1
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    mantissa = np.empty(np.shape(proj.weight), dtype=_mantissa_dtype(bits))
    for part, target in _targets(proj, syn_gain, scale):
        np.divide(target, 2.0**exp, out=target)
        mantissa[part] = np.clip(np.rint(target, out=target), low, high, out=target)
    return ir.IntWeights(weight=mantissa, weight_exp=exp, weight_bits=bits)


def _distinct_nonzero(values: np.ndarray) -> int:
    """How many distinct non-zero values ``values`` holds, counting no further than 2."""
    flat = values.reshape(-1)
    first = int(np.argmax(flat != 0)) if flat.size else 0
    if flat.size == 0 or flat[first] == 0:
        return 0
    seen = flat[first]
    for start in range(0, flat.size, CHUNK):
        part = flat[start:start + CHUNK]
        if np.any((part != 0) & (part != seen)):
            return 2
    return 1


def _check_resolution(proj: ir.Projection, quant: ir.IntWeights, scale: _Scale, dst: ir.Population,
                      hw: HardwareConfig) -> None:
    """Refuse a projection whose distinct non-zero float weights collapse to fewer than 2 mantissa values."""
    weight = np.asarray(proj.weight)
    if _distinct_nonzero(weight) < 2:
        return
    left = _distinct_nonzero(quant.weight)
    if left >= 2:
        return
    num = hw.numerics
    message = (f"projection '{proj.name}': {quant.weight_bits}-bit weights with exponent "
               f"{max(0, num.weight_exp_min)}..{num.weight_exp_max} leave {left} distinct non-zero value"
               f"{'' if left == 1 else 's'} for weights in [{float(weight.min()):.3g}, {float(weight.max()):.3g}]")
    worst = int(np.argmin(scale.value))
    if scale.threshold_cap[worst] <= scale.value[worst]:
        theta = float(_param(dst, "v_threshold")[worst])
        message += (f"; the scale of '{dst.name}' is capped at {scale.value[worst]:.3g} so that v_threshold = "
                    f"{theta:g} fits {num.threshold_bits} bits ({hw.source}: numerics.threshold_bits)")
    elif scale.weight_cap[worst] <= scale.value[worst]:
        message += (f"; the scale of '{dst.name}' is capped at {scale.value[worst]:.3g} so that its largest "
                    f"incoming weights fit at exponent {num.weight_exp_max} ({hw.source}: numerics.weight_exp_max)")
    elif quant.weight_bits == 1:
        message += "; a 1-bit signed mantissa holds only -1 and 0 (numerics.weight_bits)"
    else:
        message += f"; the small weights need more than {quant.weight_bits} bits (numerics.weight_bits)"
    raise QuantizeError(message)


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
    step = 2.0**proj.quant.weight_exp
    if proj.kind == "sparse":
        assert proj.rows is not None
        # every term is an integer times a power of 2 and every sum stays far below 2**53, so the
        # float sums are exact and summing piece by piece changes nothing
        pos_sum, neg_sum = np.zeros(size), np.zeros(size)
        for part in _chunks(proj):
            w = proj.quant.weight[part].astype(np.float64) * step
            rows = proj.rows[part].astype(np.intp)
            pos_sum += np.bincount(rows, np.clip(w, 0, None), size)
            neg_sum += np.bincount(rows, np.clip(-w, 0, None), size)
        return pos_sum, neg_sum
    w = proj.quant.weight.astype(np.float64) * step
    pos, neg = np.clip(w, 0, None), np.clip(-w, 0, None)
    if proj.kind == "dense":
        return pos.sum(axis=1), neg.sum(axis=1)
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


def _neuron(pop: ir.Population, dyn: _Dynamics, scale: np.ndarray, hw: HardwareConfig, dt: float) -> ir.IntNeuron:
    """The integer parameters of ``pop`` at per-neuron scale S."""
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
                worst = int(np.argmax(np.abs(vreset)))
                raise QuantizeError(f"population '{pop.name}': v_reset = {_param(pop, 'v_reset')[worst]:g} becomes "
                                    f"{abs(vreset[worst]):.0f} at scale {scale[worst]:.3g}, beyond the "
                                    f"{hw.numerics.threshold_bits}-bit range ±{top} ({hw.source}: numerics.threshold_bits)")
            vreset = vreset.astype(np.int64)
    else:
        vth = np.zeros(pop.size, dtype=np.int64)
    bias_mant, bias_exp = _quantize_bias(_SHIFT * scale * dyn.bias, pop, hw)
    return ir.IntNeuron(
        i_decay=_decay(dyn.i_decay, pop, "i_decay", "tau_syn", dt),
        v_decay=_decay(dyn.v_decay, pop, "v_decay", "tau_mem", dt),
        vth=vth, bias_mant=bias_mant, bias_exp=bias_exp, spiking=spiking, reset=pop.reset,
        state_bits=hw.numerics.state_bits, vreset=vreset, refractory=pop.refractory,
    )


def _overrides(graph: ir.Graph, hw: HardwareConfig) -> tuple[dict[str, int], dict[str, bool]]:
    """Per-projection weight bits and per-population per-channel choices from ``meta["quant_overrides"]``."""
    bits: dict[str, int] = {}
    per_channel: dict[str, bool] = {}
    projections = {j.name for j in graph.projections}
    populations = {p.name for p in graph.populations if p.model != "input"}
    for name, layer in dict(graph.meta.get("quant_overrides", {})).items():
        if name not in projections | populations:
            raise QuantizeError(f"quantization override for layer '{name}': no such projection or population "
                                f"(projections: {', '.join(sorted(projections))}; "
                                f"populations: {', '.join(sorted(populations))})")
        for key, value in layer.items():
            where = f"layers.{name}.{key}"
            if key == "weight_bits" and name in projections:
                bits[name] = quant_options.check_weight_bits(value, hw, where)
            elif key == "per_channel" and name in populations:
                per_channel[name] = quant_options.check_per_channel(value, hw, where)
            else:
                kind = "projection" if name in projections else "population"
                raise QuantizeError(f"quantization override {where}: a {kind} has no option '{key}' "
                                    f"(projections take weight_bits, populations per_channel)")
    return bits, per_channel


def _range_error(where: str, name: str, values: np.ndarray, lo: int, hi: int, hw: HardwareConfig, field: str) -> None:
    values = np.asarray(values, dtype=np.int64)
    if values.size and (values.min() < lo or values.max() > hi):
        bad = int(values.min()) if values.min() < lo else int(values.max())
        raise QuantizeError(f"{where}: {name} {bad} is outside {hw.name}'s range {lo}..{hi} "
                            f"({hw.source}: numerics.{field})")


def _check_prequantized(graph: ir.Graph, hw: HardwareConfig) -> ir.Graph:
    """A graph that arrived quantized (e.g. a lava-dl netx file) is kept as is, if every integer fits ``hw``."""
    num = hw.numerics
    for pop in graph.populations:
        q = pop.quant
        if q is None:
            continue
        where = f"population '{pop.name}'"
        if q.state_bits > num.state_bits:
            raise QuantizeError(f"{where}: state_bits {q.state_bits} is outside {hw.name}'s range 8..{num.state_bits} "
                                f"({hw.source}: numerics.state_bits)")
        if q.spiking:
            _range_error(where, "vth", q.vth, 0, (1 << num.threshold_bits) - 1, hw, "threshold_bits")
        top = (1 << (num.bias_mant_bits - 1)) - 1
        _range_error(where, "bias_mant", q.bias_mant, -top, top, hw, "bias_mant_bits")
        _range_error(where, "bias_exp", q.bias_exp, 0, num.bias_exp_max, hw, "bias_exp_max")
    for proj in graph.projections:
        assert proj.quant is not None
        where = f"projection '{proj.name}'"
        w = np.asarray(proj.quant.weight, dtype=np.int64)
        if w.size and w.min() < 0 < w.max():
            top = (1 << (num.weight_bits - 1)) - 1
            _range_error(where, "weight mantissa", w, -top - 1, top, hw, "weight_bits")
        else:  # one sign: the sign bit holds magnitude (Lava's excitatory/inhibitory sign modes)
            top = (1 << num.weight_bits) - 1
            _range_error(where, "single-sign weight mantissa", w, -top, top, hw, "weight_bits")
        _range_error(where, "weight_exp", np.array([proj.quant.weight_exp]), max(0, num.weight_exp_min),
                     num.weight_exp_max, hw, "weight_exp_max")
    meta = {**graph.meta, "quantization": {"target": hw.name, "weight_bits": num.weight_bits, "prequantized": True,
                                           "scales": {}}}
    return ir.check(ir.replace(graph, meta=meta), "quantized")


def run(graph: ir.Graph, hw: HardwareConfig) -> ir.Graph:
    """Return ``graph`` with integer parameters for target ``hw`` on every population and projection.

    Records ``meta["quantization"] = {"target", "weight_bits", "scales": {population: S}}``.
    Honours ``meta["quant_overrides"]`` (see the module docstring).
    Raises QuantizeError for parameters the integer model cannot express;
    warns (QuantizeWarning) where it will deviate from the float model.
    A graph that is already quantized (every population and projection has
    integer parameters, as a lava-dl netx import does) is kept unchanged
    once each integer is checked against ``hw``'s numerics.
    """
    if graph.is_quantized:
        return _check_prequantized(graph, hw)
    try:
        bits, per_channel = _overrides(graph, hw)
    except quant_options.QuantOptionsError as exc:
        raise QuantizeError(str(exc)) from None
    dynamics = {p.name: _dynamics(p, graph.dt) for p in graph.populations if p.model != "input"}
    syn_gain = {j.name: _synapse_gain(j, dynamics[j.dst].gain) for j in graph.projections}
    weight_bits = {j.name: bits.get(j.name, hw.numerics.weight_bits) for j in graph.projections}
    scales: dict[str, _Scale] = {}
    for pop in graph.populations:
        if pop.model == "input":
            continue
        into = graph.projections_into(pop.name)
        rows = [(_row_magnitudes(j, syn_gain[j.name], pop.size), weight_bits[j.name]) for j in into]
        channels = [j.conv.out_shape[0] for j in into if j.conv is not None]
        chosen = per_channel.get(pop.name, hw.numerics.per_channel_scales)
        ranges = graph.meta.get("calibration", {}).get(pop.name)
        state_cap = np.inf if ranges is None else scale_cap(ranges, hw.numerics.state_bits)
        scales[pop.name] = _scale(pop, rows, hw, chosen, channels, state_cap)
    projections = []
    for j in graph.projections:
        quant = _quantize_weights(j, syn_gain[j.name], scales[j.dst].value, weight_bits[j.name], hw)
        _check_resolution(j, quant, scales[j.dst], graph.population(j.dst), hw)
        projections.append(ir.replace(j, quant=quant))
    populations = []
    for pop in graph.populations:
        if pop.model == "input":
            populations.append(pop)
            continue
        q = _neuron(pop, dynamics[pop.name], scales[pop.name].value, hw, graph.dt)
        pos_in, neg_in = np.zeros(pop.size), np.zeros(pop.size)
        for proj in projections:
            if proj.dst == pop.name:
                pos, neg = _input_bounds(proj, pop.size)
                pos_in += pos
                neg_in += neg
        _check_ranges(pop, q, pos_in, neg_in)
        populations.append(ir.replace(pop, quant=q))
    record = {name: scale.record() for name, scale in scales.items()}
    meta = {**graph.meta, "quantization": {"target": hw.name, "weight_bits": hw.numerics.weight_bits,
                                           "scales": record}}
    new_graph = ir.replace(graph, populations=tuple(populations), projections=tuple(projections), meta=meta)
    return ir.check(new_graph, "quantized")
