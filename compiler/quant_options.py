"""Quantization options a user sets on top of the target's hardware description.

Global options (``weight_bits``, ``per_channel``) narrow the target's
``numerics`` (:meth:`QuantOptions.apply`); per-layer overrides travel to the
quantize pass in ``graph.meta["quant_overrides"]`` (:meth:`QuantOptions.meta`),
so every pass keeps the signature ``run(graph, hw) -> Graph``.

A quantization config file is YAML::

    weight_bits: 6                 # every projection (at most the target's numerics.weight_bits)
    per_channel: false             # every population (true only where numerics.per_channel_scales)
    layers:
      fc1: {weight_bits: 4}        # a projection: its weight mantissa width
      conv2: {per_channel: false}  # a population: one scale instead of one per channel
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from snnc.compiler.hw import HardwareConfig

MAX_WEIGHT_BITS = 8
"""Widest weight mantissa any option may ask for (Loihi's Dense: num_weight_bits <= 8)."""

_TOP_KEYS = ("weight_bits", "per_channel", "layers")
_LAYER_KEYS = ("weight_bits", "per_channel")


class QuantOptionsError(ValueError):
    """A quantization option or config file is invalid; the message names the key or layer."""


@dataclass(frozen=True)
class LayerOverride:
    """Options for one layer: ``weight_bits`` for a projection, ``per_channel`` for a population."""

    weight_bits: int | None = None
    per_channel: bool | None = None


@dataclass(frozen=True)
class QuantOptions:
    """Global quantization options (None: the target's own) and per-layer overrides by layer name."""

    weight_bits: int | None = None
    per_channel: bool | None = None
    overrides: Mapping[str, LayerOverride] = field(default_factory=dict)

    def apply(self, hw: HardwareConfig) -> HardwareConfig:
        """``hw`` with the global options applied to its numerics, or QuantOptionsError if it cannot hold them."""
        numerics = hw.numerics
        if self.weight_bits is not None:
            check_weight_bits(self.weight_bits, hw, "weight_bits")
            numerics = dataclasses.replace(numerics, weight_bits=self.weight_bits)
        if self.per_channel is not None:
            check_per_channel(self.per_channel, hw, "per_channel")
            numerics = dataclasses.replace(numerics, per_channel_scales=self.per_channel)
        return dataclasses.replace(hw, numerics=numerics)

    def meta(self) -> dict[str, dict[str, Any]]:
        """The per-layer overrides as ``graph.meta["quant_overrides"]``: {layer: {key: value}}, unset keys left out."""
        return {name: {k: v for k, v in dataclasses.asdict(o).items() if v is not None}
                for name, o in sorted(self.overrides.items())}


def check_weight_bits(bits: object, hw: HardwareConfig, what: str) -> int:
    """``bits`` if it is a width in [1, 8] that ``hw`` can hold, else QuantOptionsError naming ``what``."""
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= MAX_WEIGHT_BITS:
        raise QuantOptionsError(f"{what} = {bits} is out of range [1, {MAX_WEIGHT_BITS}]")
    if bits > hw.numerics.weight_bits:
        raise QuantOptionsError(f"{what} = {bits} is more than target '{hw.name}' holds "
                                f"({hw.source}: numerics.weight_bits = {hw.numerics.weight_bits})")
    return bits


def check_per_channel(per_channel: object, hw: HardwareConfig, what: str) -> bool:
    """``per_channel`` if it is a bool ``hw`` supports, else QuantOptionsError naming ``what``."""
    if not isinstance(per_channel, bool):
        raise QuantOptionsError(f"{what} = {per_channel} must be true or false")
    if per_channel and not hw.numerics.per_channel_scales:
        raise QuantOptionsError(f"{what} = true, but target '{hw.name}' has one scale per layer "
                                f"({hw.source}: numerics.per_channel_scales = false)")
    return per_channel


def _check_types(data: Mapping[str, Any], where: str) -> None:
    bits = data.get("weight_bits")
    if bits is not None and (not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= MAX_WEIGHT_BITS):
        raise QuantOptionsError(f"{where}weight_bits = {bits} is out of range [1, {MAX_WEIGHT_BITS}]")
    per_channel = data.get("per_channel")
    if per_channel is not None and not isinstance(per_channel, bool):
        raise QuantOptionsError(f"{where}per_channel = {per_channel} must be true or false")


def load_overrides(path: str | Path) -> QuantOptions:
    """Read a quantization config file (YAML, see the module docstring); errors name the file and key."""
    source = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise QuantOptionsError(f"{source}: cannot read quantization config ({reason})") from exc
    except yaml.YAMLError as exc:
        raise QuantOptionsError(f"{source}: cannot parse YAML ({' '.join(str(exc).split())})") from exc
    if data is None:
        return QuantOptions()
    if not isinstance(data, dict):
        raise QuantOptionsError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    for key in data:
        if key not in _TOP_KEYS:
            raise QuantOptionsError(f"{source}: unknown key '{key}' (known: {', '.join(_TOP_KEYS)})")
    try:
        _check_types(data, "")
    except QuantOptionsError as exc:
        raise QuantOptionsError(f"{source}: {exc}") from None
    layers = data.get("layers") or {}
    if not isinstance(layers, dict):
        raise QuantOptionsError(f"{source}: layers must be a mapping of layer names, got {type(layers).__name__}")
    overrides = {}
    for name, layer in layers.items():
        if not isinstance(layer, dict) or not layer:
            raise QuantOptionsError(f"{source}: layers.{name} must be a mapping with "
                                    f"{' and/or '.join(_LAYER_KEYS)}")
        for key in layer:
            if key not in _LAYER_KEYS:
                raise QuantOptionsError(f"{source}: unknown key 'layers.{name}.{key}' (known: {', '.join(_LAYER_KEYS)})")
        try:
            _check_types(layer, f"layers.{name}.")
        except QuantOptionsError as exc:
            raise QuantOptionsError(f"{source}: {exc}") from None
        overrides[str(name)] = LayerOverride(weight_bits=layer.get("weight_bits"), per_channel=layer.get("per_channel"))
    return QuantOptions(weight_bits=data.get("weight_bits"), per_channel=data.get("per_channel"), overrides=overrides)
