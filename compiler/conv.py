"""Convolutions as sparse matrices, shared by the NIR importer and the float reference."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

from snnc.compiler import ir


def conv_taps(spec: ir.ConvSpec, kernel_shape: tuple[int, ...]) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
    """Every kernel tap (u, v) of a convolution: ``(u, v, ok, rows, cols)``, no values.

    ``ok`` masks the (C_out, H_out, W_out, C_in / groups) grid where the tap
    reads inside the input (PyTorch zero padding); ``rows`` and ``cols`` are
    the C-order output and input indices of those synapses.
    """
    c_out, cin_g, kh, kw = kernel_shape
    c_in, height, width = spec.in_shape
    _, h_out, w_out = spec.out_shape
    (sh, sw), (ph, pw), (dh, dw) = spec.stride, spec.padding, spec.dilation
    o = np.arange(c_out).reshape(-1, 1, 1, 1)
    y = np.arange(h_out).reshape(1, -1, 1, 1)
    x = np.arange(w_out).reshape(1, 1, -1, 1)
    c = np.arange(cin_g).reshape(1, 1, 1, -1)
    full = (c_out, h_out, w_out, cin_g)
    rows_all = np.broadcast_to((o * h_out + y) * w_out + x, full)
    channel = np.broadcast_to((o // (c_out // spec.groups)) * cin_g + c, full)
    for u in range(kh):
        for v in range(kw):
            iy = np.broadcast_to(y * sh - ph + u * dh, full)
            ix = np.broadcast_to(x * sw - pw + v * dw, full)
            ok = (iy >= 0) & (iy < height) & (ix >= 0) & (ix < width)
            yield u, v, ok, rows_all[ok], (channel[ok] * height + iy[ok]) * width + ix[ok]


def conv_matrix(spec: ir.ConvSpec, kernel: np.ndarray) -> sp.csr_matrix:
    """The convolution as a sparse (prod(out_shape), prod(in_shape)) matrix, C-order indices.

    ``kernel`` is (C_out, C_in / groups, kH, kW); PyTorch semantics (zero
    padding, cross-correlation). One vectorised pass per kernel tap (u, v)
    over all output neurons and input channels keeps memory near the result's.
    """
    c_out, cin_g = kernel.shape[:2]
    full = (c_out, *spec.out_shape[1:], cin_g)
    rows, cols, vals = [], [], []
    for u, v, ok, tap_rows, tap_cols in conv_taps(spec, kernel.shape):
        tap = np.broadcast_to(kernel[:, :, u, v].reshape(c_out, 1, 1, cin_g), full)[ok]
        nonzero = tap != 0
        rows.append(tap_rows[nonzero])
        cols.append(tap_cols[nonzero])
        vals.append(tap[nonzero].astype(np.float64))
    shape = (math.prod(spec.out_shape), math.prod(spec.in_shape))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape)


def merge_pool_conv(pool_spec: ir.ConvSpec, pool_kernel: np.ndarray, conv_spec: ir.ConvSpec,
                    conv_kernel: np.ndarray) -> tuple[np.ndarray, ir.ConvSpec] | None:
    """A sum/average pool (kernel == stride p, no padding, tiling its input) then a conv, as one conv; else None.

    ``pool_kernel`` is the pool as a depthwise conv with one constant c
    (1, or 1/(p·p) for an average). The pooled input is
    c·sum_ab x[ch, p·i + a, p·j + b], so W'[o, ch, p·u + a, p·v + b] = c·W[o, ch, u, v];
    padding ``pad`` on the pooled input is padding ``p·pad`` on x, and stride s becomes p·s.
    """
    p = pool_kernel.shape[2:]
    if (pool_spec.stride != p or pool_spec.padding != (0, 0) or pool_spec.dilation != (1, 1)
            or pool_spec.in_shape[1] % p[0] or pool_spec.in_shape[2] % p[1]
            or conv_spec.dilation != (1, 1) or tuple(conv_spec.in_shape) != tuple(pool_spec.out_shape)):
        return None
    merged = np.repeat(np.repeat(conv_kernel, p[0], axis=2), p[1], axis=3) * pool_kernel[0, 0, 0, 0]
    spec = ir.ConvSpec(pool_spec.in_shape, conv_spec.out_shape,
                       stride=(p[0] * conv_spec.stride[0], p[1] * conv_spec.stride[1]),
                       padding=(p[0] * conv_spec.padding[0], p[1] * conv_spec.padding[1]), groups=conv_spec.groups)
    if ir.conv_output_shape(spec, merged.shape[2:]) != tuple(conv_spec.out_shape[1:]):
        return None
    return merged, spec


def merge_conv_pool(conv_spec: ir.ConvSpec, conv_kernel: np.ndarray, pool_spec: ir.ConvSpec,
                    pool_kernel: np.ndarray) -> tuple[np.ndarray, ir.ConvSpec] | None:
    """A conv (stride 1, no dilation) then a sum/average pool with kernel == stride p, as one conv; else None.

    y[o, i, j] = c·sum_{a,b < p} conv(x)[o, p·i + a, p·j + b], so the merged
    kernel is the conv kernel convolved with a p x p box of value c, with
    stride p and the conv's padding.
    """
    p = pool_kernel.shape[2:]
    if (conv_spec.stride != (1, 1) or conv_spec.dilation != (1, 1) or pool_spec.stride != p
            or pool_spec.padding != (0, 0) or pool_spec.dilation != (1, 1)):
        return None
    c_out, c_in_g, kh, kw = conv_kernel.shape
    merged = np.zeros((c_out, c_in_g, kh + p[0] - 1, kw + p[1] - 1))
    for a in range(p[0]):
        for b in range(p[1]):
            merged[:, :, a:a + kh, b:b + kw] += conv_kernel
    merged *= pool_kernel[0, 0, 0, 0]
    spec = ir.ConvSpec(conv_spec.in_shape, pool_spec.out_shape, stride=(p[0], p[1]), padding=conv_spec.padding,
                       groups=conv_spec.groups)
    if ir.conv_output_shape(spec, merged.shape[2:]) != tuple(pool_spec.out_shape[1:]):
        return None
    return merged, spec
