"""The Python API: a thin facade over the frontends, the pipeline and the backends."""

from __future__ import annotations

import tempfile
from pathlib import Path

from snnc import targets
from snnc.backends import base
from snnc.compiler import hw as hwmod
from snnc.compiler import ir, pipeline
from snnc.compiler.frontends.load import load_model
from snnc.runtime import execute


def compile(  # noqa: A001 - the natural name for users: snnc.compile(...)
    model: str | Path | ir.Graph,
    target: str = "cpu",
    hw: str | Path | None = None,
    out_dir: str | Path | None = None,
    dt: float | None = None,
    reset: str | None = None,
    dump_ir: str | Path | None = None,
) -> base.Artifact:
    """Import ``model`` (a path or a float IR graph), run the pipeline for ``target`` and emit an artifact.

    ``hw`` overrides the target's bundled hardware description; ``out_dir``
    defaults to a fresh temporary directory; ``dt`` (seconds) and ``reset``
    apply to NIR files, which carry neither.
    """
    tgt = targets.get_target(target)
    backend = targets.usable_backend(tgt)
    hw_config = hwmod.load_hw(hw) if hw is not None else hwmod.bundled_hw(tgt.hw)
    graph = model if isinstance(model, ir.Graph) else load_model(model, dt=dt, reset=reset)
    quantized = pipeline.compile_graph(graph, hw_config, dump_ir)
    reasons = backend.unsupported(quantized, hw_config)
    if reasons:
        raise targets.TargetError(f"target '{tgt.name}' cannot run this network: {'; '.join(reasons)}")
    if out_dir is None:
        out_dir = Path(tempfile.mkdtemp(prefix="snnc-")) / tgt.name
    return backend.compile(quantized, hw_config, out_dir)


def load(path: str | Path) -> base.Artifact:
    """Open a compiled artifact directory; ``.run(stimulus, steps)`` runs it."""
    return execute.load(path)
