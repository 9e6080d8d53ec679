"""Typed hardware descriptions: what a target can represent and how much of it there is.

A :class:`HardwareConfig` is loaded from YAML (``hw_configs/<target>.yaml``)
and validated generically: the dataclass fields below are the schema, and
:data:`_RANGES` / :data:`_CHOICES` hold the allowed values. Unknown keys,
wrong types, out-of-range values and missing sections are rejected with one
line naming the file and the dotted key. Only ``yaml.safe_load`` is used.

Units: bits are bit widths, ``*_bytes`` bytes, ``clock_mhz`` MHz; limits are
counts per core unless the field says otherwise.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from snnc.compiler import ir


class HwConfigError(ValueError):
    """A hardware description is missing, unparsable or invalid; the message names the file and key."""


@dataclass(frozen=True)
class Numerics:
    """Number formats of the target's integer neuron (see ``ir.IntNeuron``).

    ``weight_bits`` is the signed weight mantissa; the effective weight is
    ``mantissa << weight_exp`` with ``weight_exp`` in [weight_exp_min,
    weight_exp_max]. ``decay_bits`` must be 12 (decays are 4096ths);
    ``state_bits`` bounds u and v to +-(2**(state_bits-1) - 1);
    ``threshold_bits`` is the unsigned vth mantissa (compared as vth << 6);
    the bias is ``bias_mant << bias_exp`` with a signed ``bias_mant_bits``
    mantissa; per-synapse delays go up to ``2**delay_bits - 1`` steps.
    ``weight_bits`` is also the most a user may ask for (``--weight-bits``).
    ``per_channel_scales`` lets the quantizer choose one scale per output
    channel instead of one per population (``passes/quantize.py``).
    """

    weight_bits: int = 8
    weight_exp_min: int = 0
    weight_exp_max: int = 7
    decay_bits: int = 12
    state_bits: int = 24
    threshold_bits: int = 17
    bias_mant_bits: int = 13
    bias_exp_max: int = 7
    delay_bits: int = 6
    per_channel_scales: bool = False

    @property
    def max_delay(self) -> int:
        """Largest per-synapse delay in steps."""
        return (1 << self.delay_bits) - 1


@dataclass(frozen=True)
class NeuronSupport:
    """Neuron models (``ir.NEURON_MODELS`` names) and reset modes (``ir.RESET_MODES``) the target runs."""

    models: tuple[str, ...]
    reset_modes: tuple[str, ...]
    max_refractory: int = 0   # longest refractory period (steps) the neuron can hold v frozen; 0 = none


@dataclass(frozen=True)
class CoreLimits:
    """Per-core capacity: neurons, synapses in/out per neuron, synapse memory (bytes), input axons."""

    max_neurons: int
    max_fan_in: int
    max_fan_out: int
    synapse_memory_bytes: int
    max_axons: int


@dataclass(frozen=True)
class ChipLayout:
    """Cores per chip arranged as a ``mesh`` (rows, cols); ``link_spikes_per_step`` None means unlimited."""

    cores: int
    mesh: tuple[int, int]
    chips: int = 1
    link_spikes_per_step: int | None = None


@dataclass(frozen=True)
class FpgaTarget:
    """The FPGA part: family (ice40 | ecp5 | generic), device, package, clock (MHz) and resources (bits, counts).

    ``board`` names the pin constraints in ``backends/fpga/boards/``; ``baud``
    is the host UART rate; ``lanes`` is how many synapses the core adds per
    cycle (weights per weight-memory word).
    """

    family: str
    device: str
    package: str
    clock_mhz: float
    luts: int
    bram_bits: int
    spram_bits: int = 0
    dsp: int = 0
    board: str = ""
    baud: int = 115200
    lanes: int = 1


@dataclass(frozen=True)
class HardwareConfig:
    """One target's hardware description.

    ``source`` is where it came from, for error messages: the path given to
    :func:`load_hw`, or ``hw_configs/<name>.yaml`` for a bundled config.
    """

    name: str
    description: str
    backend: str
    numerics: Numerics
    neurons: NeuronSupport
    core: CoreLimits
    chip: ChipLayout
    fpga: FpgaTarget | None = None
    source: str = ""


BACKENDS = ("cpu", "gpu", "lava", "fpga")
FPGA_FAMILIES = ("ice40", "ecp5", "generic")

_RANGES: dict[str, tuple[float, float | None]] = {
    "numerics.weight_bits": (1, 16),
    "numerics.weight_exp_min": (-8, 0),
    "numerics.weight_exp_max": (0, 15),
    # the integer semantics divides decays by 4096; any other width would need a new semantics
    "numerics.decay_bits": (12, 12),
    "numerics.state_bits": (8, 32),
    "numerics.threshold_bits": (1, 24),
    "numerics.bias_mant_bits": (1, 24),
    "numerics.bias_exp_max": (0, 15),
    "numerics.delay_bits": (0, 8),
    "core.max_neurons": (1, None),
    "neurons.max_refractory": (0, 1024),
    "core.max_fan_in": (1, None),
    "core.max_fan_out": (1, None),
    "core.synapse_memory_bytes": (1, None),
    "core.max_axons": (1, None),
    "chip.cores": (1, None),
    "chip.mesh": (1, None),
    "chip.chips": (1, None),
    "chip.link_spikes_per_step": (1, None),
    "fpga.clock_mhz": (1e-3, None),
    "fpga.luts": (1, None),
    "fpga.bram_bits": (0, None),
    "fpga.spram_bits": (0, None),
    "fpga.dsp": (0, None),
}
"""Dotted key -> inclusive (min, max); max None is unbounded. Applies to each element of a tuple."""

_CHOICES: dict[str, tuple[str, ...]] = {
    "backend": BACKENDS,
    "neurons.models": tuple(m for m in ir.NEURON_MODELS if m != "input"),
    "neurons.reset_modes": ir.RESET_MODES,
    "fpga.family": FPGA_FAMILIES,
}
"""Dotted key -> allowed strings. Applies to each element of a tuple."""

_NOTES = {"numerics.decay_bits": " (decays are 4096ths in the integer semantics)"}

_SOURCE_FIELD = "source"


def _show(value: Any) -> str:
    """A config value as the user wrote it: lists as [a, b], strings bare."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{...}"
    return str(value)


def _check_scalar(value: Any, hint: Any, key: str, source: str, table_key: str | None = None) -> Any:
    """Type-check and range-check one scalar against its annotation and the tables.

    ``key`` names the value in messages (``chip.mesh[1]`` for a list element);
    ``table_key`` (default ``key``) looks up its range and choices.
    """
    table_key = table_key or key
    if hint is bool:
        ok = isinstance(value, bool)
        kind = "true or false"
    elif hint is int:
        # bool is an int subclass in Python; `true` for a bit width is a typo, not a 1
        ok = isinstance(value, int) and not isinstance(value, bool)
        kind = "an integer"
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        kind = "a number"
    elif hint is str:
        ok = isinstance(value, str)
        kind = "a string"
    else:
        raise TypeError(f"hw schema: unsupported field type {hint!r} for {key}")
    if not ok:
        raise HwConfigError(f"{source}: {key} = {_show(value)} must be {kind}")
    if table_key in _RANGES:
        lo, hi = _RANGES[table_key]
        if value < lo or (hi is not None and value > hi):
            where = f"[{lo:g}, {hi:g}]" if hi is not None else f">= {lo:g}"
            raise HwConfigError(f"{source}: {key} = {_show(value)} is out of range {where}{_NOTES.get(table_key, '')}")
    if table_key in _CHOICES and value not in _CHOICES[table_key]:
        raise HwConfigError(f"{source}: {key} = {_show(value)} is not one of {_show(_CHOICES[table_key])}")
    return float(value) if hint is float else value


def _convert(value: Any, hint: Any, key: str, source: str) -> Any:
    """Convert a YAML value to the annotated field type, or raise HwConfigError naming ``key``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key, source)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, key, source)
    if origin is tuple:
        variable = len(args) == 2 and args[1] is Ellipsis
        if not isinstance(value, list) or (not variable and len(value) != len(args)):
            length = "a list" if variable else f"a list of {len(args)}"
            raise HwConfigError(f"{source}: {key} = {_show(value)} must be {length}")
        if variable and not value:
            raise HwConfigError(f"{source}: {key} must not be empty")
        hints = [args[0]] * len(value) if variable else list(args)
        return tuple(_check_scalar(v, h, f"{key}[{i}]", source, key) for i, (v, h) in enumerate(zip(value, hints)))
    return _check_scalar(value, hint, key, source)


def _build(cls: type, data: Any, prefix: str, source: str) -> Any:
    """Instantiate dataclass ``cls`` from mapping ``data``; ``prefix`` is its dotted key ('' at top level)."""
    where = prefix or "top level"
    if not isinstance(data, dict):
        raise HwConfigError(f"{source}: {where} must be a mapping, got {type(data).__name__}")
    fields = [f for f in dataclasses.fields(cls) if not (cls is HardwareConfig and f.name == _SOURCE_FIELD)]
    known = [f.name for f in fields]
    dotted = (lambda name: f"{prefix}.{name}") if prefix else (lambda name: name)
    for name in data:
        if name not in known:
            raise HwConfigError(f"{source}: unknown key '{dotted(name)}' (known: {', '.join(known)})")
    required = dataclasses.MISSING
    missing = [f.name for f in fields if f.name not in data
               and f.default is required and f.default_factory is required]
    if missing:
        raise HwConfigError(f"{source}: missing required key(s) {', '.join(dotted(m) for m in missing)}")
    hints = typing.get_type_hints(cls)
    values = {f.name: _convert(data[f.name], hints[f.name], dotted(f.name), source) for f in fields if f.name in data}
    return cls(**values)


def _cross_check(hw: HardwareConfig, source: str) -> None:
    """Rules that involve more than one key."""
    rows, cols = hw.chip.mesh
    if rows * cols != hw.chip.cores:
        raise HwConfigError(f"{source}: chip.mesh = [{rows}, {cols}] holds {rows * cols} cores "
                            f"but chip.cores = {hw.chip.cores}")
    if hw.backend == "fpga" and hw.fpga is None:
        raise HwConfigError(f"{source}: backend fpga needs an 'fpga' section (device, package, clock, resources)")
    if hw.backend != "fpga" and hw.fpga is not None:
        raise HwConfigError(f"{source}: an 'fpga' section only applies to backend fpga, not {hw.backend}")


def _parse(text: str, source: str) -> HardwareConfig:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise HwConfigError(f"{source}: cannot parse YAML ({detail})") from exc
    if not isinstance(data, dict):
        raise HwConfigError(f"{source}: top level must be a mapping of sections, got {type(data).__name__}")
    hw = _build(HardwareConfig, data, "", source)
    _cross_check(hw, source)
    return dataclasses.replace(hw, source=source)


def load_hw(path: str | Path) -> HardwareConfig:
    """Load and validate the hardware description at ``path`` (YAML)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise HwConfigError(f"{source}: cannot read hardware description ({reason})") from exc
    return _parse(text, source)


def bundled_names() -> list[str]:
    """Names of the hardware descriptions shipped in ``snnc.hw_configs``, sorted."""
    root = importlib.resources.files("snnc.hw_configs")
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def bundled_hw(name: str) -> HardwareConfig:
    """Load the bundled hardware description ``name`` (e.g. "loihi2")."""
    names = bundled_names()
    if name not in names:
        raise HwConfigError(f"hw_configs/{name}.yaml: no bundled hardware description '{name}' "
                            f"(available: {', '.join(names)})")
    text = (importlib.resources.files("snnc.hw_configs") / f"{name}.yaml").read_text(encoding="utf-8")
    return _parse(text, f"hw_configs/{name}.yaml")
