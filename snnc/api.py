"""The Python API: a thin facade over the frontends, the pipeline and the backends."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from snnc import targets
from snnc.backends import base
from snnc.compiler import hw as hwmod
from snnc.compiler import ir, pipeline, resources
from snnc.compiler.frontends.load import load_model
from snnc.compiler.passes import partition, place
from snnc.compiler.quant_options import QuantOptions, load_overrides
from snnc.runtime import execute, quant_report


def _import(model: str | Path | ir.Graph, dt: float | None, reset: str | None,
            calibration: np.ndarray | str | Path | None) -> ir.Graph:
    """``model`` as a float IR graph (imported unless it already is one)."""
    if not isinstance(model, ir.Graph):
        return load_model(model, dt=dt, reset=reset, calibration=calibration)
    if calibration is not None:
        raise ValueError("calibration applies to .onnx model files, not to an already imported graph")
    return model


def _options(weight_bits: int | None, per_channel: bool | None, quant_config: str | Path | None) -> QuantOptions:
    """The quantization options of ``quant_config`` (YAML), overridden by the two explicit arguments."""
    options = load_overrides(quant_config) if quant_config is not None else QuantOptions()
    if weight_bits is not None:
        options = dataclasses.replace(options, weight_bits=weight_bits)
    if per_channel is not None:
        options = dataclasses.replace(options, per_channel=per_channel)
    return options


def compile(  # noqa: A001 - the natural name for users: snnc.compile(...)
    model: str | Path | ir.Graph,
    target: str = "cpu",
    hw: str | Path | None = None,
    out_dir: str | Path | None = None,
    dt: float | None = None,
    reset: str | None = None,
    dump_ir: str | Path | None = None,
    calibration: np.ndarray | str | Path | None = None,
    weight_bits: int | None = None,
    per_channel: bool | None = None,
    quant_config: str | Path | None = None,
    stimuli: Mapping[str, np.ndarray] | str | Path | None = None,
    bitstream: bool = True,
) -> base.Artifact:
    """Import ``model`` (a path or a float IR graph), run the pipeline for ``target`` and emit an artifact.

    ``hw`` overrides the target's bundled hardware description; ``out_dir``
    defaults to a fresh temporary directory; ``dt`` (seconds) and ``reset``
    apply to NIR and ONNX files, which carry neither; ``calibration`` (inputs
    or an ``.npz`` holding them) sets the scales of an ONNX conversion.
    ``weight_bits`` (1..8, at most the target's) and ``per_channel`` override
    the target's numerics; ``quant_config`` is a YAML file of the same
    options plus per-layer ones (``compiler/quant_options.py``), which the
    two arguments override.
    ``stimuli`` (input spikes, or a stimulus ``.npz`` with optional
    ``labels``; for ONNX, rate-coded ``calibration`` inputs by default)
    calibrate the quantizer (``graph.meta["calibration"]``) and are run on
    both graphs for ``quant_report.json`` in the artifact directory
    (``runtime/quant_report.py``; not covered by the manifest's hashes).
    ``bitstream=False`` stops FPGA targets after the Verilog and memory
    images (no synthesis, place and route); with ``stimuli`` they also
    measure cycles per timestep in RTL simulation for ``report.json``.
    """
    tgt = targets.get_target(target)
    backend = targets.usable_backend(tgt)
    hw_config = hwmod.load_hw(hw) if hw is not None else hwmod.bundled_hw(tgt.hw)
    graph = _import(model, dt, reset, calibration)
    options = _options(weight_bits, per_channel, quant_config)
    stimulus, labels = quant_report.resolve_stimuli(graph, stimuli, calibration)
    quantized = pipeline.compile_graph(graph, hw_config, dump_ir, options, calibration=stimulus)
    reasons = backend.unsupported(quantized, hw_config)
    if reasons:
        raise targets.TargetError(f"target '{tgt.name}' cannot run this network: {'; '.join(reasons)}")
    if out_dir is None:
        out_dir = Path(tempfile.mkdtemp(prefix="snnc-")) / tgt.name
    report = None
    if stimulus is not None:
        report = quant_report.quant_report(graph, quantized, stimulus, labels, quant_report.default_readout(graph))
    options: dict[str, object] = {}
    if tgt.backend == "fpga":
        options = {"bitstream": bitstream, "stimulus": stimulus}
    artifact = backend.compile(quantized, hw_config, out_dir, **options)
    if report is not None:
        quant_report.write_report(report, Path(artifact.path) / quant_report.REPORT_FILE)
    return artifact


def check(
    model: str | Path | ir.Graph,
    target: str = "cpu",
    hw: str | Path | None = None,
    dt: float | None = None,
    reset: str | None = None,
    calibration: np.ndarray | str | Path | None = None,
    weight_bits: int | None = None,
    per_channel: bool | None = None,
    quant_config: str | Path | None = None,
) -> resources.CheckResult:
    """Whether ``model`` fits ``target``: import, normalize and quantize as :func:`compile` does, count resources,
    then partition and place (real cores, fan-out and the traffic report replace the estimates).

    Needs only the target's hardware description, not its backend, so it
    works for targets whose backend is not implemented yet. Arguments as in
    :func:`compile`; nothing is written. See ``docs/resources.md``.
    """
    tgt = targets.get_target(target)
    hw_config = hwmod.load_hw(hw) if hw is not None else hwmod.bundled_hw(tgt.hw)
    graph = _import(model, dt, reset, calibration)
    options = _options(weight_bits, per_channel, quant_config)
    quantized = pipeline.compile_graph(graph, hw_config, options=options, until="quantize")
    hw_config = options.apply(hw_config)
    result = resources.check(quantized, hw_config)
    if any(f.rule not in resources.ESTIMATED_RULES for f in result.errors):
        return result
    try:
        result = resources.placed(result, place.run(partition.run(quantized, hw_config), hw_config), hw_config)
    except resources.ResourceError as exc:
        return resources.refused(result, exc.finding)
    return _fpga_memory_check(result, quantized, tgt, hw_config)


def _fpga_memory_check(result: resources.CheckResult, quantized: ir.Graph, tgt: targets.Target,
                       hw_config: hwmod.HardwareConfig) -> resources.CheckResult:
    """For FPGA targets whose backend is installed, add the block-RAM map compile checks before synthesis."""
    module = targets.backend_module(tgt.backend) if tgt.backend == "fpga" else None
    if module is None or module.available() is not None or not result.fits:
        return result
    findings = tuple(
        resources.Finding("error", s["field"], f"{s['largest']} memory", s["required"], s["available"],
                          hint=f"the FPGA core needs {s['required']:,} {s['unit']} of {s['resource']} "
                               f"(largest: {s['largest']}); shrink the network or choose a bigger part (docs/fpga.md)",
                          source=hw_config.source)
        for s in module.memory_shortfalls(quantized, hw_config))
    if not findings:
        return result
    return resources.CheckResult(result.target, result.source, result.rows, result.errors + findings,
                                 result.warnings, result.cores)


def export(
    model: object,
    sample_input: object,
    dt: float | None = None,
    reset: str | None = None,
    path: str | Path | None = None,
) -> ir.Graph:
    """The float IR graph of a trained PyTorch spiking network; with ``path``, also written there as NIR.

    Norse models go to ``frontends.norse_export``; everything else (snnTorch,
    plain torch with :mod:`snnc.nn` neurons) to ``frontends.torch_export``.
    ``sample_input`` is one time step with a batch dimension, (B, *features).
    ``dt`` (seconds per step) defaults to the frontend's (snnc.nn modules'
    own, else 1e-4 s for snnTorch; Norse cells' own). ``reset`` ("zero",
    "subtract", "none") is a check that every neuron resets that way, never
    an override. The ``.nir`` file records reset modes NIR cannot state in
    metadata and warns (``NirExportWarning``).
    """
    try:
        from snnc.compiler.frontends import norse_export
    except ImportError:  # the Norse frontend is optional
        norse_export = None
    options = {} if dt is None else {"dt": dt}
    if norse_export is not None and norse_export.is_norse_model(model):
        graph = norse_export.export_norse(model, sample_input, reset=reset, **options)
    else:
        from snnc.compiler.frontends.torch_export import export_torch

        graph = export_torch(model, sample_input, reset=reset, **options)
    if path is not None:
        from snnc.compiler.frontends.nir_export import export_nir

        export_nir(graph, path)
    return graph


def qat(model: object, target: str = "cpu", weight_bits: int | None = None,
        per_channel: bool | None = None) -> object:
    """A deep copy of a torch ``model`` with fake-quantized weights for fine-tuning; see :mod:`snnc.qat`.

    ``snnc.qat.freeze`` turns the result into plain layers for :func:`export`.
    """
    from snnc.qat import qat as _qat

    return _qat(model, target=target, weight_bits=weight_bits, per_channel=per_channel)


def load(path: str | Path) -> base.Artifact:
    """Open a compiled artifact directory; ``.run(stimulus, steps)`` runs it."""
    return execute.load(path)
