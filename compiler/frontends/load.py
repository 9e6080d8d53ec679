"""Pick the frontend for a model file by its extension."""

from __future__ import annotations

from pathlib import Path

from snnc.compiler import ir

SUPPORTED = {".nir": "NIR graph", ".npz": "snnc graph (ir.save)"}


class ModelFormatError(ValueError):
    """The model file's format is unknown or the file is missing."""


def load_model(path: str | Path, dt: float | None = None, reset: str | None = None) -> ir.Graph:
    """Import the model at ``path`` into a float IR graph (dt in seconds, reset 'zero'|'subtract')."""
    path = Path(path)
    if not path.exists():
        raise ModelFormatError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".nir":
        from snnc.compiler.frontends.nir_import import import_nir

        return import_nir(path, dt=dt, reset=reset)
    if suffix == ".npz":
        graph = ir.load(path)
        if dt is not None:
            graph = ir.replace(graph, dt=float(dt))
        if reset is not None:
            graph = ir.replace(graph, populations=tuple(ir.replace(p, reset=reset) for p in graph.populations))
        return ir.check(graph, "quantized" if graph.is_quantized else "float")
    known = ", ".join(f"{k} ({v})" for k, v in SUPPORTED.items())
    raise ModelFormatError(f"{path}: unsupported model format '{suffix}' (supported: {known})")
