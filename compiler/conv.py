"""Convolutions as sparse matrices, shared by the NIR importer and the float reference."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from snnc.compiler import ir


def conv_matrix(spec: ir.ConvSpec, kernel: np.ndarray) -> sp.csr_matrix:
    """The convolution as a sparse (prod(out_shape), prod(in_shape)) matrix, C-order indices.

    ``kernel`` is (C_out, C_in / groups, kH, kW); PyTorch semantics (zero
    padding, cross-correlation). One vectorised pass per kernel tap (u, v)
    over all output neurons and input channels keeps memory near the result's.
    """
    c_out, cin_g, kh, kw = kernel.shape
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
    rows, cols, vals = [], [], []
    for u in range(kh):
        for v in range(kw):
            iy = np.broadcast_to(y * sh - ph + u * dh, full)
            ix = np.broadcast_to(x * sw - pw + v * dw, full)
            tap = np.broadcast_to(kernel[:, :, u, v].reshape(c_out, 1, 1, cin_g), full)
            valid = (iy >= 0) & (iy < height) & (ix >= 0) & (ix < width) & (tap != 0)
            rows.append(rows_all[valid])
            cols.append((channel[valid] * height + iy[valid]) * width + ix[valid])
            vals.append(tap[valid].astype(np.float64))
    shape = (c_out * h_out * w_out, c_in * height * width)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape)
