"""snnc's own PyTorch spiking neurons: one time step of snnc's float semantics per call.

``LIF`` and ``IF`` compute, per step and per neuron, exactly what
:mod:`snnc.runtime.float_reference` computes for a ``"lif"`` / ``"if"``
population (forward Euler at ``dt``; ``x`` is the module's input, i.e. the
weighted spikes of the layer before plus its bias)::

    lif:  v' = (1 - dt/tau_mem)*v + (dt/tau_mem)*(v_leak + r*x)
    if:   v' = v + r*x
    z = v' > v_threshold (strict)
    reset "zero":     where z, v' = v_reset
          "subtract": where z, v' = v' - (v_threshold - v_reset)
          "none":     v' unchanged

so :func:`snnc.export` maps them to the IR without any approximation. Like
snnTorch's ``init_hidden=True`` neurons they keep their state: ``forward(x)``
returns the spikes (0/1, dtype of ``x``) of one step, and
:meth:`reset_state` starts a new sequence (so does a change of batch size).
The spike's backward pass is the ATan surrogate gradient of snnTorch,
``dz/dv = (alpha/2) / (1 + (pi/2 * alpha * (v - v_threshold))**2)``, so the
modules train with backpropagation through time; the reset is detached from
the graph, as in snnTorch.

Time constants are in seconds, like everywhere in snnc; ``dt`` (seconds per
step) is part of the module because the discrete dynamics depend on
``dt / tau_mem``. Parameters are scalars or tensors broadcastable to
``shape`` and are stored per neuron as buffers (they move with ``.double()``
and ``.to()``, but are not trained).

Example::

    net = torch.nn.Sequential(torch.nn.Linear(64, 32), snnc.nn.LIF(32, tau_mem=5e-3),
                              torch.nn.Linear(32, 10), snnc.nn.LIF(10, tau_mem=5e-3))
    graph = snnc.export(net, torch.zeros(1, 64))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from snnc.compiler.ir import RESET_MODES


class _ATanSpike(torch.autograd.Function):
    """Heaviside step ``u > 0`` forward, ATan surrogate gradient backward (snnTorch's ``surrogate.atan``)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, u: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.alpha = alpha
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (u,) = ctx.saved_tensors
        alpha = ctx.alpha
        return grad * (alpha / 2) / (1 + (math.pi / 2 * alpha * u) ** 2), None


def _shape_of(shape: int | Sequence[int]) -> tuple[int, ...]:
    dims = (int(shape),) if isinstance(shape, int) else tuple(int(n) for n in shape)
    if not dims or any(n <= 0 for n in dims):
        raise ValueError(f"shape must be a positive size or a tuple of them, got {shape!r}")
    return dims


class _Neuron(torch.nn.Module):
    """Shared state handling, reset and spike function of :class:`LIF` and :class:`IF`."""

    def __init__(self, shape: int | Sequence[int], r: float | torch.Tensor, v_threshold: float | torch.Tensor,
                 v_reset: float | torch.Tensor, reset: str, surrogate_alpha: float) -> None:
        super().__init__()
        if reset not in RESET_MODES:
            raise ValueError(f"reset must be one of {RESET_MODES}, got {reset!r}")
        self.shape = _shape_of(shape)
        self.reset = reset
        self.surrogate_alpha = float(surrogate_alpha)
        self._param("r", r)
        self._param("v_threshold", v_threshold)
        self._param("v_reset", v_reset)
        self.register_buffer("v", torch.zeros(0), persistent=False)

    def _param(self, name: str, value: float | torch.Tensor) -> None:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            tensor = value.detach().clone()  # keep float64 values float64
        else:
            tensor = torch.as_tensor(value, dtype=torch.get_default_dtype())
        try:
            tensor = torch.broadcast_to(tensor, self.shape).clone()
        except RuntimeError as exc:
            raise ValueError(f"{name} of shape {tuple(tensor.shape)} does not broadcast to {self.shape}") from exc
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{name} must be finite")
        self.register_buffer(name, tensor)

    def reset_state(self) -> None:
        """Forget the membrane potential: the next call starts a new sequence at v = 0."""
        self.v = torch.zeros(0, dtype=self.v.dtype, device=self.v.device)

    def _integrate(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The membrane before threshold and reset, from the last step's ``v`` and this step's input ``x``."""
        raise NotImplementedError(f"{type(self).__name__} must define its membrane update")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One time step on input ``x`` (batch, *shape); returns the spikes (batch, *shape), 0/1 in x's dtype."""
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"{type(self).__name__} of shape {self.shape} got input of shape {tuple(x.shape)}; "
                             f"expected (batch, {', '.join(map(str, self.shape))})")
        if self.v.shape != x.shape:
            self.v = torch.zeros_like(x)
        v = self._integrate(self.v, x)
        z = _ATanSpike.apply(v - self.v_threshold, self.surrogate_alpha)
        fired = z.detach()
        if self.reset == "zero":
            v = torch.where(fired > 0, self.v_reset.to(v.dtype).expand_as(v), v)
        elif self.reset == "subtract":
            v = v - fired * (self.v_threshold - self.v_reset)
        self.v = v
        return z

    def extra_repr(self) -> str:
        return f"shape={self.shape}, reset={self.reset!r}"


class LIF(_Neuron):
    """Leaky integrate-and-fire neurons: snnc's ``"lif"`` model, one forward-Euler step per call.

    ``shape``: neurons per sample (int or tuple, without the batch dim);
    ``tau_mem`` and ``dt`` in seconds (``dt < tau_mem`` keeps the decay
    ``1 - dt/tau_mem`` positive); ``r`` multiplies the input; ``v_threshold``,
    ``v_reset``, ``v_leak`` in the units of ``v``; ``reset`` is "zero",
    "subtract" or "none" (see the module docstring for the equations);
    ``surrogate_alpha`` is the ATan surrogate's slope.
    """

    def __init__(self, shape: int | Sequence[int], tau_mem: float | torch.Tensor, r: float | torch.Tensor = 1.0,
                 v_threshold: float | torch.Tensor = 1.0, v_reset: float | torch.Tensor = 0.0,
                 v_leak: float | torch.Tensor = 0.0, reset: str = "zero", dt: float = 1e-3,
                 surrogate_alpha: float = 2.0) -> None:
        super().__init__(shape, r, v_threshold, v_reset, reset, surrogate_alpha)
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a positive number of seconds, got {dt!r}")
        self.dt = float(dt)
        self._param("tau_mem", tau_mem)
        if bool((self.tau_mem <= 0).any()):
            raise ValueError("tau_mem must be > 0 seconds")
        self._param("v_leak", v_leak)

    def _integrate(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # the float reference's coefficient order, so that float64 runs agree to the last bit
        gain = self.dt / self.tau_mem
        decay = 1.0 - gain
        return decay * v + gain * (self.v_leak + self.r * x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dt={self.dt:g}"


class IF(_Neuron):
    """Integrate-and-fire neurons (no leak): snnc's ``"if"`` model, ``v' = v + r*x`` per call.

    Arguments as :class:`LIF`, without ``tau_mem``, ``v_leak`` and ``dt``.
    """

    def __init__(self, shape: int | Sequence[int], r: float | torch.Tensor = 1.0,
                 v_threshold: float | torch.Tensor = 1.0, v_reset: float | torch.Tensor = 0.0,
                 reset: str = "zero", surrogate_alpha: float = 2.0) -> None:
        super().__init__(shape, r, v_threshold, v_reset, reset, surrogate_alpha)

    def _integrate(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return v + self.r * x
