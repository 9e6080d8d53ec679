"""Pick the frontend for a model file by its extension."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snnc.compiler import ir

SUPPORTED = {".nir": "NIR graph", ".onnx": "ONNX ReLU network, converted to IF neurons", ".npz": "snnc graph (ir.save)",
             ".net": "lava-dl netx HDF5 network, imported quantized"}


class ModelFormatError(ValueError):
    """The model file's format is unknown or the file is missing."""


def load_model(path: str | Path, dt: float | None = None, reset: str | None = None,
               calibration: np.ndarray | str | Path | None = None) -> ir.Graph:
    """Import the model at ``path`` into a float IR graph (dt in seconds, reset 'zero'|'subtract').

    ``calibration`` (inputs (B, ...) or an ``.npz`` holding them) applies to
    ``.onnx`` files only; see ``onnx_import.import_onnx``.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFormatError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from snnc.compiler.frontends import onnx_import

        return onnx_import.import_onnx(path, calibration=calibration,
                                       dt=onnx_import.DEFAULT_DT if dt is None else dt,
                                       reset=onnx_import.DEFAULT_RESET if reset is None else reset)
    if calibration is not None:
        raise ModelFormatError(f"{path}: calibration data applies to .onnx models only, not '{suffix}' files")
    if suffix == ".nir":
        from snnc.compiler.frontends.nir_import import import_nir

        return import_nir(path, dt=dt, reset=reset)
    if suffix == ".net":
        from snnc.compiler.frontends.netx_import import import_netx

        return import_netx(path, dt=dt)
    if suffix == ".npz":
        graph = ir.load(path)
        if dt is not None:
            graph = ir.replace(graph, dt=float(dt))
        if reset is not None:
            graph = ir.replace(graph, populations=tuple(ir.replace(p, reset=reset) for p in graph.populations))
        return ir.check(graph, "quantized" if graph.is_quantized else "float")
    known = ", ".join(f"{k} ({v})" for k, v in SUPPORTED.items())
    raise ModelFormatError(f"{path}: unsupported model format '{suffix}' (supported: {known})")
