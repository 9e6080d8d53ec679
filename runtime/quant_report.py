"""What quantization cost on a stimulus: weight error, saturations, firing rates, spike agreement, accuracy.

Both graphs run on the same stimulus, padded with as many silent steps as the
longest input-to-population path (every projection delays by one step), the
float one in ``float_reference`` with ``timing="per_projection"`` (the integer
timing, so differences are quantization only), the quantized one on the CPU
backend, which also counts saturations.

Weight error, per projection of the quantized graph (whose ``weight`` field
still holds the float weights, in the normalized layout): with ``g`` the
destination's input gain (the quantize pass's table: (dt/tau_mem)·r for lif,
(dt/tau_mem)·r·w_in·(dt/tau_syn) for cuba, r for if, 1 for threshold; largest
per conv output channel) and ``S`` the destination's scale from
``meta["quantization"]["scales"]``, the error of a synapse is
``|w·g - (w_int << weight_exp) / S|``; ``weight_rms_error`` and
``weight_max_error`` are the RMS and largest error over the synapses, divided
by the largest ``|w·g|``. Where scales are per channel, the meta holds only
their range, so each destination neuron (conv: output channel) uses the S
that fits its synapses best (least squares). ``zeroed`` is the fraction of
non-zero float weights whose mantissa is 0.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from snnc.backends import cpu
from snnc.backends.base import normalize_stimulus
from snnc.compiler import ir, neuron_gains
from snnc.runtime import float_reference
from snnc.runtime.raster import Raster

READOUTS = ("spikes", "v")
REPORT_FILE = "quant_report.json"
"""Name of the report in an artifact directory (written by ``snnc.compile`` when given stimuli)."""


def _row_ids(proj: ir.Projection, dst_size: int) -> tuple[np.ndarray, int]:
    """Per synapse (flattened weight layout), the destination neuron or conv output channel it belongs to."""
    weight = np.asarray(proj.weight)
    if proj.kind == "dense":
        return np.repeat(np.arange(weight.shape[0]), weight.shape[1]), dst_size
    if proj.kind == "sparse":
        assert proj.rows is not None
        return np.asarray(proj.rows, dtype=np.int64), dst_size
    return np.repeat(np.arange(weight.shape[0]), weight[0].size), weight.shape[0]


def _weight_error(proj: ir.Projection, dst: ir.Population, scale: float | Mapping[str, float],
                  dt: float) -> dict[str, float]:
    assert proj.quant is not None
    weight = np.asarray(proj.weight, dtype=np.float64).ravel()
    rows, n_rows = _row_ids(proj, dst.size)
    gain = neuron_gains.input_gain(dst, dt)
    if proj.kind == "conv":
        gain = neuron_gains.per_channel(gain, n_rows)
    target = weight * gain[rows]
    integer = np.asarray(proj.quant.weight, dtype=np.float64).ravel() * 2.0**proj.quant.weight_exp
    if isinstance(scale, Mapping):
        fit = np.bincount(rows, integer * target, n_rows) / np.maximum(np.bincount(rows, target * target, n_rows), 1e-300)
        s = np.where(fit > 0, fit, 1.0)[rows]
    else:
        s = np.full(weight.size, float(scale))
    error = np.abs(target - integer / s)
    top = float(np.abs(target).max(initial=0.0))
    nonzero = weight != 0
    return {
        "weight_rms_error": float(np.sqrt(np.mean(error**2)) / top) if top > 0 else 0.0,
        "weight_max_error": float(error.max() / top) if top > 0 else 0.0,
        "zeroed": float((nonzero & (integer == 0)).sum() / nonzero.sum()) if nonzero.any() else 0.0,
        "weight_bits": int(proj.quant.weight_bits),
        "weight_exp": int(proj.quant.weight_exp),
    }


def predictions(rasters: Mapping[str, Raster], output: str, readout: str) -> np.ndarray:
    """Class per sample (B,): most spikes of ``output`` (ties: lower index), or its largest v at the last step."""
    if readout == "v":
        v = rasters[output].v
        assert v is not None
        return np.asarray(v)[:, -1].argmax(axis=1)
    return np.asarray(rasters[output].spikes).sum(axis=1).argmax(axis=1)


def quant_report(float_graph: ir.Graph, quantized_graph: ir.Graph, stimulus: Mapping[str, np.ndarray],
                 labels: np.ndarray | None = None, readout: str = "spikes") -> dict[str, Any]:
    """The JSON-friendly report (keys below) of ``quantized_graph`` against ``float_graph`` on ``stimulus``.

    ``stimulus``: input population -> 0/1 spikes (T, ...) or (B, T, ...);
    ``labels`` (B,) adds accuracies read out from ``graph.outputs[0]`` by
    ``readout``: "spikes" (argmax spike count) or "v" (argmax final v).

    Keys: ``target``, ``samples``, ``steps`` (padded), ``projections``
    ({name: weight_rms_error, weight_max_error, zeroed, weight_bits,
    weight_exp}), ``populations`` ({name: saturations_u, saturations_v,
    rate_float, rate_quantized, rate_change}; rates in spikes per neuron per
    step), ``saturations`` (total), ``spike_agreement`` (fraction of equal
    entries over every spiking non-input population), ``accuracy``
    ({"float", "quantized"} or None), ``readout``.
    """
    if readout not in READOUTS:
        raise ValueError(f"readout '{readout}' is not one of {READOUTS}")
    stim, steps, _ = normalize_stimulus(float_graph, stimulus)
    extra = max(float_reference.latency(float_graph).values(), default=0)
    output = float_graph.outputs[0]
    spiking_output = float_graph.population(output).model in ir.SPIKING_MODELS
    record = readout == "v" and spiking_output
    reference = float_reference.simulate(float_graph, stim, steps + extra, timing="per_projection", record_state=record)
    quantized, saturations = cpu.simulate_with_stats(quantized_graph, stim, steps + extra, record_state=record)

    scales = dict(quantized_graph.meta.get("quantization", {}).get("scales", {}))
    projections = {}
    for proj in quantized_graph.projections:
        dst = quantized_graph.population(proj.dst)
        projections[proj.name] = _weight_error(proj, dst, scales.get(proj.dst, 1.0), float(quantized_graph.dt))

    populations = {}
    equal = total = 0
    for pop in float_graph.populations:
        if pop.model == "input":
            continue
        spikes_float, spikes_int = reference[pop.name].spikes, quantized[pop.name].spikes
        rate_float = float(spikes_float.mean()) if spikes_float.size else 0.0
        rate_int = float(spikes_int.mean()) if spikes_int.size else 0.0
        populations[pop.name] = {
            "saturations_u": saturations[pop.name]["u"], "saturations_v": saturations[pop.name]["v"],
            "rate_float": rate_float, "rate_quantized": rate_int, "rate_change": rate_int - rate_float,
        }
        if pop.model in ir.SPIKING_MODELS:
            equal += int((spikes_float == spikes_int).sum())
            total += spikes_float.size

    accuracy = None
    if labels is not None:
        truth = np.asarray(labels).ravel()
        accuracy = {"float": float((predictions(reference, output, readout) == truth).mean()),
                    "quantized": float((predictions(quantized, output, readout) == truth).mean())}
    return {
        "target": quantized_graph.meta.get("quantization", {}).get("target"),
        "samples": int(next(iter(stim.values())).shape[0]),
        "steps": steps + extra,
        "readout": readout,
        "projections": projections,
        "populations": populations,
        "saturations": int(sum(p["saturations_u"] + p["saturations_v"] for p in populations.values())),
        "spike_agreement": equal / total if total else 1.0,
        "accuracy": accuracy,
    }


def write_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``report`` as JSON to ``path`` atomically (a temporary file renamed over it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]


def format_table(report: Mapping[str, Any]) -> str:
    """A compact text summary of ``report`` for the CLI: one table of projections, one of populations."""
    lines = _table([(name, f"{p['weight_bits']}", f"{p['weight_exp']}", f"{p['weight_rms_error']:.2%}",
                     f"{p['weight_max_error']:.2%}", f"{p['zeroed']:.1%}")
                    for name, p in report["projections"].items()],
                   ("projection", "bits", "exp", "rms err", "max err", "zeroed"))
    lines.append("")
    lines += _table([(name, f"{p['rate_float']:.4f}", f"{p['rate_quantized']:.4f}", f"{p['rate_change']:+.4f}",
                      f"{p['saturations_u']}", f"{p['saturations_v']}")
                     for name, p in report["populations"].items()],
                    ("population", "rate float", "rate quant", "change", "sat u", "sat v"))
    lines.append("")
    lines.append(f"{report['samples']} samples x {report['steps']} steps: spike agreement "
                 f"{report['spike_agreement']:.2%}, {report['saturations']} saturations")
    if report["accuracy"] is not None:
        lines.append(f"accuracy ({report['readout']} readout): float {report['accuracy']['float']:.1%}, "
                     f"quantized {report['accuracy']['quantized']:.1%}")
    return "\n".join(lines)


ONNX_STEPS = 64
"""Steps of the rate code that turns ONNX calibration inputs into calibration stimuli."""


def resolve_stimuli(graph: ir.Graph, stimuli: Mapping[str, np.ndarray] | str | Path | None,
                    calibration: np.ndarray | str | Path | None = None,
                    ) -> tuple[dict[str, np.ndarray] | None, np.ndarray | None]:
    """The calibration stimulus and labels for ``graph``: from ``stimuli``, else rate-coded ONNX ``calibration``.

    ``stimuli`` is a stimulus ``.npz`` (its optional ``labels`` array gives
    the labels) or a mapping (a ``labels`` key likewise). Without it, ONNX
    calibration inputs (B, ...) or an ``.npz`` holding them (the array named
    like the input population, else its only array) become
    ``rate_code(x / graph.meta["input_scale"], 64)``. (None, None) when there
    is neither.
    """
    from snnc.runtime import execute
    from snnc.runtime.encode import rate_code

    if isinstance(stimuli, str | Path):
        return execute.read_stimulus(stimuli), execute.read_labels(stimuli)
    if stimuli is not None:
        spikes = {k: np.asarray(v) for k, v in stimuli.items() if k != execute.LABELS_KEY}
        labels = stimuli.get(execute.LABELS_KEY)
        return spikes, None if labels is None else np.asarray(labels)
    if calibration is None:
        return None, None
    if isinstance(calibration, str | Path):
        with np.load(calibration, allow_pickle=False) as npz:
            names = [graph.inputs[0]] if graph.inputs[0] in npz.files else npz.files
            if len(names) != 1:
                raise ValueError(f"{calibration}: cannot tell which array holds the inputs "
                                 f"(no '{graph.inputs[0]}' among {', '.join(npz.files)})")
            calibration = npz[names[0]]
    scale = float(graph.meta.get("input_scale", 1.0))
    return {graph.inputs[0]: rate_code(np.asarray(calibration) / scale, ONNX_STEPS)}, None


def default_readout(graph: ir.Graph) -> str:
    """"spikes" when the first output population spikes, else "v" (its final value)."""
    return "spikes" if graph.population(graph.outputs[0]).model in ir.SPIKING_MODELS else "v"
