"""Quantization-aware training: a torch view of a model whose weights are fake-quantized as snnc will quantize them.

    qmodel = snnc.qat(model, target="cpu", weight_bits=4)   # a deep copy; ``model`` is untouched
    ...fine-tune qmodel with any optimizer...
    plain = snnc.qat.freeze(qmodel)                          # ordinary layers holding the quantized values
    graph = snnc.export(plain, sample_input)
    art = snnc.compile(graph, target="cpu", weight_bits=4)

Every ``nn.Linear`` and ``nn.Conv2d`` weight (the recurrent ``Linear`` or
``Conv2d`` of an snnTorch RLeaky/RSynaptic included) gets a
``torch.nn.utils.parametrize`` parametrization: the trainable parameter
stays the float weight ``w`` (``layer.parametrizations.weight.original``) and
every forward pass sees::

    M    = 2**(bits - 1) - 1                       (1 for 1-bit weights)
    step = max|w| / M                              per layer, or per output channel (dim 0)
    w_q  = clamp(round(w / step), -M - 1, M) * step

with a straight-through estimator: ``w_q.detach() + (w - w.detach())`` has
the value ``w_q`` and the gradient of ``w`` (as ``step`` comes from max|w|, no
weight is ever outside the clamp range). ``step`` is what snnc's quantizer
(``compiler/passes/quantize.py``) uses at exponent 0, where the scale S is
``1 / step``: its mantissa ``round(S * w)`` times ``step`` is ``w_q``. That
holds exactly for a projection that is a single Linear or Conv2d, in
snnTorch units (``g * w`` is the torch weight), and the only one into its
population, or the one with the smallest weights there; other projections
into the same population get a larger exponent and a coarser grid. Layers
that the exporter composes into one projection (a Linear after a Linear, a
conv and a pool whose windows do not tile) are quantized after composing,
so QAT approximates them. Biases, thresholds, decays and the one-to-one
recurrent ``V`` stay float.

The module is callable: ``snnc.qat(...)`` is :func:`qat`.
"""

from __future__ import annotations

import copy
import sys
import types

import torch
from torch import nn
from torch.nn.utils import parametrize

from snnc import targets
from snnc.compiler import hw as hwmod
from snnc.compiler.quant_options import check_per_channel, check_weight_bits

_LAYERS = (nn.Linear, nn.Conv2d)


class FakeQuantize(nn.Module):
    """The parametrization ``w -> w_q`` (module docstring) with a straight-through gradient.

    ``bits``: signed mantissa width; ``per_channel``: one step per index of
    dim 0 (a Linear's output features, a Conv2d's output channels).
    """

    def __init__(self, bits: int, per_channel: bool) -> None:
        super().__init__()
        self.bits = bits
        self.per_channel = per_channel

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        # w_q + (w - w) is exactly w_q in value (not so w + (w_q - w)), with the gradient of w
        return fake_quantize(weight, self.bits, self.per_channel) + (weight - weight.detach())

    def extra_repr(self) -> str:
        return f"bits={self.bits}, per_channel={self.per_channel}"


def fake_quantize(weight: torch.Tensor, bits: int, per_channel: bool) -> torch.Tensor:
    """``w_q`` of the module docstring, without a gradient; same shape and dtype as ``weight``."""
    high = max((1 << (bits - 1)) - 1, 1)
    low = -(1 << (bits - 1))
    with torch.no_grad():
        magnitude = weight.abs()
        if per_channel and weight.ndim > 1:
            largest = magnitude.flatten(1).amax(dim=1).reshape(-1, *([1] * (weight.ndim - 1)))
        else:
            largest = magnitude.amax()
        # an all-zero layer or channel has nothing to scale; any step keeps its zeros
        step = torch.where(largest > 0, largest / high, torch.ones_like(largest))
        return torch.clamp(torch.round(weight / step), low, high) * step


def qat(model: nn.Module, target: str = "cpu", weight_bits: int | None = None,
        per_channel: bool | None = None) -> nn.Module:
    """A deep copy of ``model`` whose Linear and Conv2d weights are fake-quantized for ``target``.

    ``weight_bits`` (1..8, at most the target's) and ``per_channel`` default
    to the target's numerics (``numerics.weight_bits``,
    ``numerics.per_channel_scales``), as in :func:`snnc.compile`; pass the
    same values to both. Raises ValueError when ``model`` has no such layer
    or an option does not fit the target.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    hw = hwmod.bundled_hw(targets.get_target(target).hw)
    bits = hw.numerics.weight_bits if weight_bits is None else check_weight_bits(weight_bits, hw, "weight_bits")
    channels = (hw.numerics.per_channel_scales if per_channel is None
                else check_per_channel(per_channel, hw, "per_channel"))
    view = copy.deepcopy(model)
    layers = [module for module in view.modules() if isinstance(module, _LAYERS)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no nn.Linear or nn.Conv2d layer to fake-quantize")
    for layer in layers:
        if parametrize.is_parametrized(layer, "weight"):
            raise ValueError(f"{type(layer).__name__} weight is already parametrized; pass the model before "
                             f"snnc.qat, or snnc.qat.freeze it first")
        parametrize.register_parametrization(layer, "weight", FakeQuantize(bits, channels))
    return view


def freeze(model: nn.Module) -> nn.Module:
    """``model`` (changed in place and returned) with every fake-quantized weight replaced by its quantized values.

    The layers become plain ``nn.Linear`` / ``nn.Conv2d`` again, so the
    result exports, saves and loads like the original model; ``snnc.export``
    refuses the parametrized layers of an unfrozen view. Reset snnTorch
    states after training (``reset_mem()``) before exporting: a state still
    holding an autograd graph cannot be copied for tracing.
    """
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight") and any(
                isinstance(p, FakeQuantize) for p in module.parametrizations["weight"]):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


class _CallableModule(types.ModuleType):
    """Lets ``snnc.qat(...)`` call :func:`qat` while ``snnc.qat.freeze`` stays reachable.

    Importing this submodule binds ``snnc.qat`` to the module itself, so a
    function of that name in ``snnc/__init__.py`` could not survive it.
    """

    def __call__(self, model: nn.Module, target: str = "cpu", weight_bits: int | None = None,
                 per_channel: bool | None = None) -> nn.Module:
        return qat(model, target=target, weight_bits=weight_bits, per_channel=per_channel)


sys.modules[__name__].__class__ = _CallableModule
