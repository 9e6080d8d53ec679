"""Turn analog inputs into input spike trains for converted (rate-coded) networks."""

from __future__ import annotations

import numpy as np

_FLOOR_SLACK = 1e-9
"""Added before flooring so that t·p a hair below an integer (0.1·10 = 0.9999...·10) still counts."""


def rate_code(x: np.ndarray, steps: int) -> np.ndarray:
    """Deterministic rate code of a batch ``x`` (B, *feature_shape) over ``steps`` steps.

    Each value, clipped to the spike probability p in [0, 1], spikes
    ``floor((t + 1)·p) - floor(t·p)`` times at step t: evenly spread, about
    p·steps spikes in all (exactly ``floor(steps·p)``), the first (p > 0) at
    step ``ceil(1/p) - 1``. No randomness, so SNN accuracy is reproducible. Inputs
    of a network converted with a calibration maximum λ_0 other than 1
    (``graph.meta["input_scale"]``) are coded as ``rate_code(x / λ_0, steps)``.

    Returns uint8 0/1 spikes (B, steps, *feature_shape), the stimulus layout
    of ``float_reference.simulate`` and ``Artifact.run``. Raises ValueError
    for NaN values, a 0-d ``x`` or ``steps`` < 1.
    """
    values = np.asarray(x, dtype=np.float64)
    if values.ndim == 0:
        raise ValueError("rate_code: x must have a batch dimension, (B, *feature_shape); got a scalar")
    if steps < 1:
        raise ValueError(f"rate_code: steps must be at least 1, got {steps}")
    if np.isnan(values).any():
        raise ValueError(f"rate_code: x contains {int(np.isnan(values).sum())} NaN value(s); a rate needs a number")
    p = np.clip(values, 0.0, 1.0)[:, None]
    t = np.arange(steps + 1, dtype=np.float64).reshape((1, steps + 1) + (1,) * (values.ndim - 1))
    counts = np.floor(t * p + _FLOOR_SLACK)
    return np.diff(counts, axis=1).astype(np.uint8)
