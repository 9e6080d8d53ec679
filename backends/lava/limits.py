"""What Lava's bit-accurate LIF and Dense can represent exactly (research/lava_loihi.md §1 and §7).

:func:`reasons` lists every parameter outside those ranges, naming the
population or projection, the parameter, its value and the allowed range, so
a graph is refused before anything runs.
"""

from __future__ import annotations

import numpy as np

from snnc.backends import base
from snnc.compiler import ir

STATE_BITS = 24
VTH_MAX = (1 << 17) - 1
BIAS_MANT_MAX = (1 << 12) - 1
"""13-bit signed mantissa; Lava stores it as int16 and wraps beyond, so keep |bias_mant| <= 4095."""
BIAS_EXP_RANGE = (0, 7)
MAX_DELAY = 63
"""DelayDense / DelaySparse (bit-accurate): "Loihi 2 has a maximum of 6 bits for delays"."""
WEIGHT_EXP_MAX = 7


def _population_reasons(pop: ir.Population) -> list[str]:
    q = pop.quant
    assert q is not None
    where = f"population '{pop.name}'"
    out = []
    if q.state_bits != STATE_BITS:
        out.append(f"{where}: state_bits {q.state_bits}, but Lava's LIF holds 24-bit u and v (allowed: 24)")
    if q.spiking and q.reset != "zero":
        out.append(f"{where}: reset '{q.reset}' is not available; Lava's LIF only sets v to 0 after a spike "
                   "(allowed: zero)")
    if q.spiking and q.vreset is not None and np.any(q.vreset != 0):
        out.append(f"{where}: vreset {int(np.abs(q.vreset).max())}, but Lava's LIF resets v to 0 (allowed: 0)")
    if q.refractory:
        out.append(f"{where}: refractory {q.refractory} steps; Lava's fixed-point LIF has no refractory period "
                   "(LIFRefractory is float only; allowed: 0)")
    checks = [
        ("vth", q.vth if q.spiking else np.zeros(1, np.int64), 0, VTH_MAX, "17-bit threshold mantissa"),
        ("bias_mant", q.bias_mant, -BIAS_MANT_MAX, BIAS_MANT_MAX, "13-bit signed mantissa"),
        ("bias_exp", q.bias_exp, *BIAS_EXP_RANGE, "3-bit exponent"),
        ("i_decay", q.i_decay, 0, 4096, "Lava du = i_decay - 1 in -1..4095"),
        ("v_decay", q.v_decay, 0, 4096, "Lava dv"),
    ]
    for name, values, lo, hi, why in checks:
        values = np.asarray(values, dtype=np.int64)
        if values.size and (values.min() < lo or values.max() > hi):
            bad = int(values.min()) if values.min() < lo else int(values.max())
            out.append(f"{where}: {name} {bad} is outside Lava's range {lo}..{hi} ({why})")
    return out


def _projection_reasons(proj: ir.Projection) -> list[str]:
    q = proj.quant
    assert q is not None
    where = f"projection '{proj.name}'"
    out = []
    w = np.asarray(q.weight, dtype=np.int64)
    if w.size and (w.min() < 0 < w.max()) and (w.min() < -128 or w.max() > 127):
        bad = int(w.min()) if w.min() < -128 else int(w.max())
        out.append(f"{where}: weight mantissa {bad} is outside Lava's 8-bit mixed-sign range -128..127")
    elif w.size and (w.min() < -255 or w.max() > 255):
        bad = int(w.min()) if w.min() < -255 else int(w.max())
        out.append(f"{where}: weight mantissa {bad} is outside Lava's 8-bit single-sign range -255..255")
    if not 0 <= q.weight_exp <= WEIGHT_EXP_MAX:
        out.append(f"{where}: weight_exp {q.weight_exp} is outside 0..{WEIGHT_EXP_MAX}")
    if proj.delay is not None and np.asarray(proj.delay).size and int(np.max(proj.delay)) > MAX_DELAY:
        out.append(f"{where}: delay {int(np.max(proj.delay))} is outside Lava's range 0..{MAX_DELAY} (6-bit delays)")
    return out


def reasons(graph: ir.Graph) -> list[str]:
    """Every reason Lava cannot run ``graph`` bit-exactly; [] when it can."""
    invalid = base.quantized_reasons(graph)
    if invalid:
        return invalid
    out: list[str] = []
    for pop in graph.populations:
        if pop.model != "input":
            out += _population_reasons(pop)
    for proj in graph.projections:
        out += _projection_reasons(proj)
    return out
