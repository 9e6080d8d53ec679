"""The numba time loop of the CPU reference; the semantics it implements is in ``backends/cpu.py``.

The graph arrives flattened by ``cpu._flatten``. Every neuron of every
population has one global index n in [0, N). Per population p (length P):
``pop_start``/``pop_size`` (its neurons), ``pop_in_col`` (first stimulus
column of an input population, -1 otherwise), ``pop_spiking``,
``pop_limit`` (2**(state_bits-1) - 1), ``pop_u_col`` /
``pop_v_col`` (first column of its recorded u/v, -1 when not recorded).
Per neuron (length N, int64): ``keep_u = 4096 - i_decay``, ``keep_v = 4096 -
v_decay``, ``bias = bias_mant << bias_exp``, ``vth = vth << 6``, and the reset
as an affine map of v, ``v = reset_keep * v + reset_add``: reset "zero" is
(0, vreset << 6), "subtract" (1, -((vth - vreset) << 6)), "none" (1, 0);
``refractory`` (steps v stays frozen after a spike).

Synapses come in two forms:

- dense rows (dense projections without delays): projection k adds row i of
  its transposed effective weight matrix, ``rows_w[rows_w_off[k] + i*width :
  ... + width]`` with width = ``rows_dst_n[k]``, to its destination range when
  its source neuron i spikes. The row is contiguous, so the add vectorises;
- a CSR fan-out table (sparse, conv and delayed dense synapses): source
  neuron j owns entries ``fan_ptr[j]:fan_ptr[j+1]`` of ``fan_target`` and
  ``fan_w``, where ``fan_target = delay * N + destination``.

The accumulator is a ring of ``n_slots`` rows of N: a spike at step t with
delay d lands in row ``(t + 1 + d) % n_slots``; step t reads and clears row
``t % n_slots`` before anything is scattered, so ``n_slots = max delay + 1``
rows never collide.

Integer widths: the accumulator and weights are int32 only when the sum of
|effective weight| into every neuron is below 2**31 (``cpu._flatten``), so no
partial sum can overflow; otherwise int64, where ``cpu.unsupported`` keeps
that sum below 2**55. u, v and every product are int64: |u|, |v| <= 2**31 - 1
(state_bits <= 32), so ``u * keep`` < 2**43; ``a_in << 6`` < 2**61; bias and
``vth << 6`` < 2**61 (also checked), hence ``decay + u + bias`` < 2**62.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _decay(state: np.int64, keep: np.int64) -> np.int64:
    """``rz(state * keep / 4096)``, rounding toward zero without a branch.

    For negative p, adding 4095 before the floor shift turns floor into
    ceiling, i.e. toward zero: -10240 -> (-10240 + 4095) >> 12 = -2, not -3.
    """
    p = state * keep
    return (p + ((p >> 63) & 4095)) >> 12


@njit(cache=True)
def _run_sample(b, stim, pop_start, pop_size, pop_in_col, pop_spiking, pop_limit,
                pop_u_col, pop_v_col, keep_u, keep_v, bias, vth, reset_keep, reset_add, refractory,
                rows_src_off, rows_src_n, rows_dst_off, rows_dst_n, rows_w_off, rows_w,
                fan_ptr, fan_target, fan_w, n_slots,
                spikes, u_out, v_out, saturations):
    """Run sample ``b`` for ``spikes.shape[1]`` steps, writing its rows of the output arrays."""
    n_total = keep_u.size
    steps = spikes.shape[1]
    u = np.zeros(n_total, dtype=np.int64)
    v = np.zeros(n_total, dtype=np.int64)
    frozen = np.zeros(n_total, dtype=np.int64)
    ring = n_slots * n_total
    acc = np.zeros(ring, dtype=rows_w.dtype)
    active = np.empty(n_total, dtype=np.int64)
    for t in range(steps):
        now = (t % n_slots) * n_total
        fired_now = spikes[b, t]
        for p in range(pop_start.size):
            start = pop_start[p]
            stop = start + pop_size[p]
            if pop_in_col[p] >= 0:
                fired_now[start:stop] = stim[b, t, pop_in_col[p]:pop_in_col[p] + pop_size[p]]
                continue
            limit = pop_limit[p]
            spiking = pop_spiking[p]
            clipped_u = 0
            clipped_v = 0
            # views indexed from 0 and a straight-line body (selects, no branches) let LLVM vectorise
            a_in = acc[now + start:now + stop]
            u_p = u[start:stop]
            v_p = v[start:stop]
            keep_u_p = keep_u[start:stop]
            keep_v_p = keep_v[start:stop]
            bias_p = bias[start:stop]
            vth_p = vth[start:stop]
            reset_keep_p = reset_keep[start:stop]
            reset_add_p = reset_add[start:stop]
            refractory_p = refractory[start:stop]
            frozen_p = frozen[start:stop]
            fired_p = fired_now[start:stop]
            for n in range(stop - start):
                un = _decay(u_p[n], keep_u_p[n]) + (np.int64(a_in[n]) << 6)
                a_in[n] = 0
                clipped_u += (un > limit) | (un < -limit)
                un = min(max(un, -limit), limit)
                # a refractory neuron keeps its v (no decay, no input) and cannot spike; u integrated above
                resting = frozen_p[n] > 0
                vn = _decay(v_p[n], keep_v_p[n]) + un + bias_p[n]
                clipped_v += (~resting) & ((vn > limit) | (vn < -limit))
                vn = v_p[n] if resting else min(max(vn, -limit), limit)
                fired = spiking & (~resting) & (vn > vth_p[n])
                frozen_p[n] = refractory_p[n] if fired else max(frozen_p[n] - 1, 0)
                # reset as one affine map: zero (keep 0, add vreset<<6), subtract (1, -(vth-vreset)<<6), none (1, 0)
                vr = reset_keep_p[n] * vn + reset_add_p[n]
                clipped_v += fired & ((vr > limit) | (vr < -limit))
                vr = min(max(vr, -limit), limit)
                u_p[n] = un
                v_p[n] = vr if fired else vn
                fired_p[n] = fired
            saturations[b, p, 0] += clipped_u
            saturations[b, p, 1] += clipped_v
            if pop_u_col[p] >= 0:
                u_out[b, t, pop_u_col[p]:pop_u_col[p] + pop_size[p]] = u[start:stop]
            if pop_v_col[p] >= 0:
                v_out[b, t, pop_v_col[p]:pop_v_col[p] + pop_size[p]] = v[start:stop]
        n_active = 0
        for n in range(n_total):
            if fired_now[n]:
                active[n_active] = n
                n_active += 1
        if n_active == 0:
            continue
        nxt = ((t + 1) % n_slots) * n_total
        for p in range(rows_src_off.size):
            src_off = rows_src_off[p]
            width = rows_dst_n[p]
            # slice views (not base + k indexing) let LLVM drop the negative-index checks and vectorise
            target = acc[nxt + rows_dst_off[p]:nxt + rows_dst_off[p] + width]
            for i in range(rows_src_n[p]):
                if fired_now[src_off + i]:
                    row = rows_w[rows_w_off[p] + i * width:rows_w_off[p] + (i + 1) * width]
                    for k in range(width):
                        target[k] += row[k]
        for k in range(n_active):
            j = active[k]
            targets = fan_target[fan_ptr[j]:fan_ptr[j + 1]]
            weights = fan_w[fan_ptr[j]:fan_ptr[j + 1]]
            for e in range(targets.size):
                # one conditional wrap instead of a modulo per synapse: nxt + d * N < 2 * ring
                index = nxt + targets[e]
                if index >= ring:
                    index -= ring
                acc[index] += weights[e]


@njit(parallel=True, cache=True)
def run_batch(stim, pop_start, pop_size, pop_in_col, pop_spiking, pop_limit,
              pop_u_col, pop_v_col, keep_u, keep_v, bias, vth, reset_keep, reset_add, refractory,
              rows_src_off, rows_src_n, rows_dst_off, rows_dst_n, rows_w_off, rows_w,
              fan_ptr, fan_target, fan_w, n_slots,
              spikes, u_out, v_out, saturations):
    """Run every sample of the batch (samples in parallel; each owns its state and output rows).

    Shapes: stim (B, T, N_inputs) bool (inputs side by side); spikes (B, T, N)
    bool; u_out/v_out (B, T, recorded columns) int64; saturations (B, P, 2)
    int64, incremented by the number of clipped u (index 0) and v (index 1).
    """
    for b in prange(stim.shape[0]):
        _run_sample(b, stim, pop_start, pop_size, pop_in_col, pop_spiking, pop_limit,
                    pop_u_col, pop_v_col, keep_u, keep_v, bias, vth, reset_keep, reset_add, refractory,
                    rows_src_off, rows_src_n, rows_dst_off, rows_dst_n, rows_w_off, rows_w,
                    fan_ptr, fan_target, fan_w, n_slots,
                    spikes, u_out, v_out, saturations)
