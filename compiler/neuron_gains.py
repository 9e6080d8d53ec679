"""How strongly a population's float input moves its v per step: the one table the quantizer,
calibration and the quantization report share (equations in ``compiler/ir.py``)."""

from __future__ import annotations

import numpy as np

from snnc.compiler import ir

_CUBA = ("cuba_lif", "cuba_li")
_LEAKY = ("lif", "li")
_INTEGRATORS = ("if", "i")


def param(pop: ir.Population, key: str) -> np.ndarray:
    """Float parameter ``key`` of ``pop``, flattened to (N,) float64."""
    return np.asarray(pop.params[key], dtype=np.float64).ravel()


def current_gain(pop: ir.Population, dt: float) -> np.ndarray:
    """Per neuron, the factor from the current I (cuba) or input x (others) to the step's v increment."""
    if pop.model in _LEAKY + _CUBA:
        return dt / param(pop, "tau_mem") * param(pop, "r")
    if pop.model in _INTEGRATORS:
        return param(pop, "r")
    return np.ones(pop.size)


def input_gain(pop: ir.Population, dt: float) -> np.ndarray:
    """Per neuron, the gain g from the float input x to v per step: a weight w moves v by g·w."""
    gain = current_gain(pop, dt)
    if pop.model in _CUBA:
        return gain * param(pop, "w_in") * (dt / param(pop, "tau_syn"))
    return gain


def per_channel(values: np.ndarray, channels: int) -> np.ndarray:
    """Per output channel, the value of largest magnitude among its neurons (conv kernels are shared per channel)."""
    grouped = values.reshape(channels, -1)
    return grouped[np.arange(channels), np.argmax(np.abs(grouped), axis=1)]
