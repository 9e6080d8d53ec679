"""The compile targets: which backend runs each, and which hardware description it uses."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Target:
    name: str
    backend: str
    hw: str
    summary: str


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("cpu", "cpu", "cpu", "integer golden reference (numba)"),
        Target("gpu", "gpu", "cpu", "batched integer simulation in torch"),
        Target("loihi2", "lava", "loihi2", "Lava process graph, Loihi 2 bit-accurate simulation"),
        Target("fpga-ice40", "fpga", "ice40_up5k", "Verilog + iCE40 UP5K bitstream, RTL simulation"),
        Target("fpga-ecp5", "fpga", "ecp5_85f", "Verilog + ECP5-85F bitstream, RTL simulation"),
        Target("fpga-verilog", "fpga", "fpga_generic", "Verilog only (any vendor's tools), RTL simulation"),
    )
}


class TargetError(ValueError):
    """Unknown target, or its backend is not usable here."""


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise TargetError(f"unknown target '{name}' (known: {', '.join(TARGETS)})")
    return TARGETS[name]


def backend_module(backend: str) -> ModuleType | None:
    """Import ``snnc.backends.<backend>`` lazily; None when it does not exist in this version."""
    try:
        return importlib.import_module(f"snnc.backends.{backend}")
    except ModuleNotFoundError as exc:
        if exc.name == f"snnc.backends.{backend}":
            return None
        raise


def status(target: Target) -> str:
    """'ready', or why the target cannot be used on this machine."""
    module = backend_module(target.backend)
    if module is None:
        return "not implemented yet"
    reason = module.available()
    return "ready" if reason is None else f"not installed: {reason}"


def usable_backend(target: Target) -> ModuleType:
    """The backend module for ``target``; TargetError when it cannot run here."""
    module = backend_module(target.backend)
    if module is None:
        raise TargetError(f"target '{target.name}': backend '{target.backend}' is not implemented in this snnc")
    reason = module.available()
    if reason is not None:
        raise TargetError(f"target '{target.name}': backend '{target.backend}' is not installed ({reason})")
    return module
