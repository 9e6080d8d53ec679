"""``snnc report DIR``: one self-contained HTML page (plus PNGs) about a compiled artifact.

The page answers "what did compiling cost, and does the target spike like
the reference?" in seven sections, each a ``<section id=...>`` so tools and
tests can find them (``SECTIONS``):

- ``summary``: model, target, neurons, synapses, dt, graph hash, stimuli;
- ``rasters``: the first sample's input raster and every population's spikes
  in three runs: the float network (``float_reference``, the quantized
  graph's float fields, per-projection timing so differences are
  quantization only), the quantized graph on the CPU reference, and the
  artifact's own backend (when that is the CPU, two columns and a note);
- ``quantization``: weight error per projection and saturations per
  population (``quant_report.json`` of the artifact when it has one, else
  computed on the report's stimuli);
- ``rates``: spikes per neuron per step of every spiking population, three runs;
- ``placement``: the cores the neurons sit on, drawn on the chip mesh, with
  spikes per step between cores measured on the report's stimuli (a spike
  counts once per destination core holding a target, as the mapping report
  counts it);
- ``fpga``: utilisation, Fmax vs the board clock and timesteps/s from the
  artifact's ``report.json`` (FPGA artifacts only);
- ``verification``: the target against the CPU reference on the report's
  stimuli (``verify.compare``, exact mode), and the matrix of a
  ``snnc verify MODEL --json`` file when given.

Every run uses the same stimulus, padded with as many silent steps as the
longest input-to-population path, as ``quant_report`` does. The page has
no JavaScript and no external URL: images are PNGs beside ``index.html``
referenced by relative paths, the CSS is inline, so it opens from the file
system anywhere. The directory is built in a temporary sibling and renamed
into place, so a failure leaves no half-written report.
"""

from __future__ import annotations

import html
import json
import math
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from snnc import __version__, targets
from snnc.backends import base, cpu
from snnc.compiler import conv, ir, mapping_report
from snnc.compiler import hw as hwmod
from snnc.runtime import execute, float_reference, quant_report, verify
from snnc.runtime import report_plots as plots
from snnc.runtime.progress import Progress
from snnc.runtime.raster import Raster

REPORT_DIR = "report"
"""Default report directory inside the artifact directory."""
INDEX = "index.html"
SECTIONS = ("summary", "rasters", "quantization", "rates", "placement", "fpga", "verification")
"""The ``id`` of every section, in page order."""
FPGA_REPORT = "report.json"

_CSS = """
body { font-family: sans-serif; margin: 0 auto; max-width: 1250px; padding: 0 1.2em 3em; color: #222; background: #fff; }
h1 { border-bottom: 3px solid #2ca02c; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: .6em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 3px 9px; text-align: left; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #ddd; margin: .5em 0; }
pre { background: #f7f7f7; padding: .7em; overflow-x: auto; font-size: 13px; }
.pass { color: #fff; background: #2ca02c; font-weight: bold; }
.fail { color: #fff; background: #d62728; font-weight: bold; }
.other { color: #fff; background: #7f7f7f; font-weight: bold; }
.note { color: #555; font-style: italic; }
"""


@dataclass
class _Runs:
    """The three runs of one stimulus (every raster batched: (B, T, N)) and where the stimulus came from."""

    stimulus: dict[str, np.ndarray]
    labels: np.ndarray | None
    source: str
    steps: int
    padding: int
    float: dict[str, Raster]
    quantized: dict[str, Raster]
    saturations: dict[str, dict[str, int]]
    target: dict[str, Raster] | None
    target_error: str | None
    cycles: np.ndarray | None


def write_report(artifact_dir: str | Path, out_dir: str | Path | None = None, *, stimuli: str | Path | None = None,
                 samples: int = 8, steps: int | None = None, seed: int = 0, verify_json: str | Path | None = None,
                 progress: bool | None = None) -> Path:
    """Write the HTML report of artifact ``artifact_dir`` into ``out_dir`` (default ``DIR/report``); the index.html path.

    ``stimuli``: a stimulus ``.npz`` (0/1 spikes per input population, optional
    ``labels``), of which the first ``samples`` samples run; without it,
    ``samples`` random Bernoulli stimuli from ``seed``. ``steps`` cuts or
    extends the stimulus (random default: 50). ``verify_json``: the file of
    ``snnc verify MODEL --json`` to show as the verification matrix.
    ``progress`` forces the stderr progress bar on or off (default: on a
    terminal). Raises ValueError naming the file for anything unreadable.
    """
    path = Path(artifact_dir)
    if not (path / base.MANIFEST).is_file():
        raise ValueError(f"{path}: not an snnc artifact directory (no {base.MANIFEST}); `snnc compile` writes one")
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    out = Path(out_dir) if out_dir is not None else path / REPORT_DIR
    _check_replaceable(out)
    matrix = _read_matrix(Path(verify_json)) if verify_json is not None else None
    artifact = execute.load(path)
    fpga_report = _read_fpga_report(path) if artifact.manifest.get("backend") == "fpga" else None
    with Progress(len(SECTIONS), "report", unit="sections", enabled=progress) as bar:
        runs = _run(artifact, stimuli, samples, steps, seed)
        bar.update(1)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            body = [_summary(artifact, runs)]
            for build in (_rasters, _quantization, _rates, _placement):
                body.append(build(artifact, runs, tmp))
                bar.update(1)
            body.append(_fpga(artifact, runs, fpga_report, tmp))
            bar.update(1)
            body.append(_verification(artifact, runs, matrix, verify_json))
            bar.update(1)
            (tmp / INDEX).write_text(_page(artifact, body), encoding="utf-8")
            _publish(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out / INDEX


# ---------------------------------------------------------------------------------------------------- inputs and runs


def _check_replaceable(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / INDEX).is_file())):
        raise ValueError(f"{out}: exists and is not an snnc report; refusing to overwrite it")


def _publish(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` to ``out``, replacing an older report."""
    _check_replaceable(out)
    base.replace_directory(tmp, out)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON file ({_one_line(exc)})") from None


def _read_matrix(path: Path) -> dict[str, Any]:
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("targets"), list):
        raise ValueError(f"{path}: not a verification matrix (no 'targets' list; `snnc verify MODEL --json` writes one)")
    return data


def _read_fpga_report(path: Path) -> dict[str, Any] | None:
    file = path / FPGA_REPORT
    return _read_json(file) if file.is_file() else None


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def _stimulus(graph: ir.Graph, stimuli: str | Path | None, samples: int, steps: int | None,
              seed: int) -> tuple[dict[str, np.ndarray], np.ndarray | None, str, int]:
    """Stimulus {input: bool (B, T, N)}, labels (B,) or None, a description and T."""
    if stimuli is None:
        n_steps = steps or verify.DEFAULT_STEPS
        stim = verify.random_stimulus(graph, samples=samples, steps=n_steps, seed=seed)
        arrays, n_steps, _ = base.normalize_stimulus(graph, stim)
        return arrays, None, f"random Bernoulli spikes, p = {verify.DEFAULT_RATE:g} per input per step, seed {seed}", n_steps
    path = Path(stimuli)
    raw = execute.read_stimulus(path)
    try:
        labels = execute.read_labels(path)
        arrays, n_steps, batched = base.normalize_stimulus(graph, raw, steps)
    except ValueError as exc:
        raise ValueError(f"{path}: {_one_line(exc)}") from None
    total = next(iter(arrays.values())).shape[0]
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.size != total:
            raise ValueError(f"{path}: {labels.size} labels for {total} samples")
        labels = labels[:samples]
    arrays = {name: a[:samples] for name, a in arrays.items()}
    shown = next(iter(arrays.values())).shape[0]
    return arrays, labels, f"{path.name}: the first {shown:,} of {total:,} samples", n_steps


def _run(artifact: base.Artifact, stimuli: str | Path | None, samples: int, steps: int | None, seed: int) -> _Runs:
    """Float, quantized (CPU reference) and target runs on one padded stimulus; a target that fails is reported."""
    graph = artifact.graph
    stim, labels, source, n_steps = _stimulus(graph, stimuli, samples, steps, seed)
    padding = max(float_reference.latency(graph).values(), default=0)
    total = n_steps + padding
    float_run = float_reference.simulate(graph, stim, total, timing="per_projection")
    quantized, saturations = cpu.simulate_with_stats(graph, stim, total, record_state=True)
    target: dict[str, Raster] | None = None
    error = None
    try:
        target = artifact.run(stim, steps=total, record_state=True)
    except Exception as exc:  # noqa: BLE001 - a report of a broken target still shows the rest, and why
        error = f"{type(exc).__name__}: {_one_line(exc)}"
    cycles = getattr(artifact, "last_cycles", None)
    return _Runs(stimulus=stim, labels=labels, source=source, steps=n_steps, padding=padding, float=float_run,
                 quantized=quantized, saturations=saturations, target=target, target_error=error,
                 cycles=None if cycles is None else np.asarray(cycles))


def target_name(manifest: Mapping[str, Any]) -> str:
    """The ``snnc targets`` name of an artifact (backend and hardware description), else its hardware name."""
    for tgt in targets.TARGETS.values():
        if tgt.backend == manifest.get("backend") and tgt.hw == manifest.get("target"):
            return tgt.name
    return str(manifest.get("target"))


def _is_cpu(artifact: base.Artifact) -> bool:
    return artifact.manifest.get("backend") == "cpu"


def _rate(raster: Raster) -> float:
    spikes = np.asarray(raster.spikes)
    return float(spikes.mean()) if spikes.size else 0.0


def _accuracy(graph: ir.Graph, runs: _Runs) -> dict[str, float] | None:
    if runs.labels is None:
        return None
    readout = quant_report.default_readout(graph)
    output = graph.outputs[0]
    if readout == "v" and runs.float[output].v is None:
        return None
    result = {}
    for kind, run in (("float", runs.float), ("quantized", runs.quantized), ("target", runs.target)):
        if run is not None:
            result[kind] = float((quant_report.predictions(run, output, readout) == runs.labels).mean())
    return result


# ---------------------------------------------------------------------------------------------------- HTML helpers


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(header: Sequence[str] | None, rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, tuple):  # (text, css class)
            return f'<td class="{value[1]}">{_esc(value[0])}</td>'
        numeric = isinstance(value, int | float) or (isinstance(value, str) and value[:1].isdigit())
        return f'<td class="num">{_esc(value)}</td>' if numeric else f"<td>{_esc(value)}</td>"

    head = "" if header is None else "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr>"
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _img(name: str, alt: str) -> str:
    return f'<img src="{_esc(name)}" alt="{_esc(alt)}">'


def _section(section_id: str, title: str, *parts: str) -> str:
    return f'<section id="{section_id}">\n<h2>{_esc(title)}</h2>\n' + "\n".join(parts) + "\n</section>"


def _p(text: str, css: str | None = None) -> str:
    return f'<p class="{css}">{_esc(text)}</p>' if css else f"<p>{_esc(text)}</p>"


def _status(text: str) -> tuple[str, str]:
    return text, "pass" if text == "PASS" else "fail" if text in ("FAIL", "ERROR") else "other"


def _page(artifact: base.Artifact, body: Sequence[str]) -> str:
    name = target_name(artifact.manifest)
    nav = " ".join(f'<a href="#{s}">{s}</a>' for s in SECTIONS)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>snnc report: {_esc(Path(artifact.path).name)} ({_esc(name)})</title>\n"
            f"<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<h1>snnc report: {_esc(Path(artifact.path).name)} for {_esc(name)}</h1>\n<nav>{nav}</nav>\n"
            + "\n".join(body) + f'\n<p class="note">written by snnc {_esc(__version__)}</p>\n</body>\n</html>\n')


# ---------------------------------------------------------------------------------------------------- sections


def _summary(artifact: base.Artifact, runs: _Runs) -> str:
    graph, manifest = artifact.graph, artifact.manifest
    neurons = sum(p.size for p in graph.populations if p.model != "input")
    synapses = sum(p.synapse_count for p in graph.projections)
    samples = next(iter(runs.stimulus.values())).shape[0]
    rows = [
        ("model", graph.meta.get("source", "(not recorded)")),
        ("artifact", str(Path(artifact.path).resolve())),
        ("target", f"{target_name(manifest)} (backend {manifest.get('backend')}, hardware {manifest.get('target')})"),
        ("populations", f"{len(graph.populations)} ({', '.join(p.name for p in graph.populations)})"),
        ("neurons", f"{neurons:,} (plus {sum(p.size for p in graph.populations if p.model == 'input'):,} inputs)"),
        ("synapses", f"{synapses:,} in {len(graph.projections)} projections"),
        ("dt", f"{float(graph.dt):g} s"),
        ("graph hash", manifest.get("graph_hash", "")),
        ("compiled by", f"snnc {manifest.get('snnc_version', '?')}"),
        ("stimuli", f"{runs.source}; {samples:,} samples x {runs.steps} steps + {runs.padding} silent steps "
                    "(the longest input-to-population path)"),
    ]
    accuracy = _accuracy(graph, runs)
    if accuracy:
        rows.append(("accuracy", ", ".join(f"{kind} {value:.1%}" for kind, value in accuracy.items())))
    return _section("summary", "Summary", _table(None, rows))


def _kind_titles(artifact: base.Artifact) -> dict[str, str]:
    name = target_name(artifact.manifest)
    if _is_cpu(artifact):
        return {"float": "float (unquantized)", "quantized": f"quantized, CPU = target {name}"}
    return {"float": "float (unquantized)", "quantized": "quantized, CPU reference",
            "target": f"target {name} ({artifact.manifest.get('backend')})"}


def _runs_by_kind(artifact: base.Artifact, runs: _Runs) -> dict[str, dict[str, Raster]]:
    out = {"float": runs.float, "quantized": runs.quantized}
    if runs.target is not None and not _is_cpu(artifact):
        out["target"] = runs.target
    return out


def _rasters(artifact: base.Artifact, runs: _Runs, out: Path) -> str:
    graph = artifact.graph
    pops = [p.name for p in graph.populations if p.model != "input"]
    shown: dict[str, dict[str, np.ndarray]] = {}
    for kind, run in _runs_by_kind(artifact, runs).items():
        shown[kind] = {}
        for name in pops:
            raster = run[name]
            spiking = graph.population(name).model in ir.SPIKING_MODELS
            shown[kind][name] = (np.asarray(raster.spikes[0], dtype=bool) if spiking or raster.v is None
                                 else np.asarray(raster.v[0], dtype=np.float64))
    # the runs' input rasters carry the silent padding steps too, so every panel shares the step axis
    inputs = {name: np.asarray(runs.quantized[name].spikes[0], dtype=bool) for name in graph.inputs}
    plots.spike_rasters(out / "rasters.png", pops, shown, inputs, _kind_titles(artifact))
    notes = ["Sample 0 of the stimulus. Dots are spikes (step, neuron); non-spiking populations show v as a heatmap."]
    if _is_cpu(artifact):
        notes.append("The target is the CPU reference itself, so the quantized run is the target run: two columns.")
    if runs.target_error:
        notes.append(f"The target run failed, so there is no target column: {runs.target_error}")
    return _section("rasters", "Spike rasters: float vs quantized vs target", *(_p(n, "note") for n in notes),
                    _img("rasters.png", "spike rasters of the first sample"))


def _quantization(artifact: base.Artifact, runs: _Runs, out: Path) -> str:
    graph = artifact.graph
    file = Path(artifact.path) / quant_report.REPORT_FILE
    if file.is_file():
        report = _read_json(file)
        origin = (f"From {quant_report.REPORT_FILE}, written at compile time on the compile stimuli "
                  f"({report.get('samples')} samples x {report.get('steps')} steps).")
    else:
        unpadded = {name: a[:, :runs.steps] for name, a in runs.stimulus.items()}
        report = quant_report.quant_report(graph, graph, unpadded, runs.labels, quant_report.default_readout(graph))
        origin = ("Computed now on the report's stimuli (the artifact has no quant_report.json; compile with --stimuli "
                  "for one); the quantized graph's float weights stand in for the float model.")
    plots.quantization(out / "quantization.png", report["projections"], report["populations"])
    proj_rows = [(name, p["weight_bits"], p["weight_exp"], f"{p['weight_rms_error']:.3%}", f"{p['weight_max_error']:.3%}",
                  f"{p['zeroed']:.2%}") for name, p in report["projections"].items()]
    pop_rows = [(name, p["saturations_u"], p["saturations_v"], f"{p['rate_float']:.4f}", f"{p['rate_quantized']:.4f}",
                 f"{p['rate_change']:+.4f}") for name, p in report["populations"].items()]
    line = (f"Spike agreement float vs quantized {report['spike_agreement']:.2%}; {report['saturations']:,} "
            "saturations in all.")
    if report.get("accuracy"):
        line += (f" Accuracy ({report.get('readout')} readout): float {report['accuracy']['float']:.1%}, quantized "
                 f"{report['accuracy']['quantized']:.1%}.")
    return _section("quantization", "Per-layer quantization error and saturation counts", _p(origin, "note"),
                    _img("quantization.png", "quantization error per projection and saturations per population"),
                    _table(("projection", "weight bits", "weight exp", "RMS error", "max error", "zeroed"), proj_rows),
                    _table(("population", "u saturations", "v saturations", "rate float", "rate quantized", "change"),
                           pop_rows),
                    _p(line))


def _rates(artifact: base.Artifact, runs: _Runs, out: Path) -> str:
    graph = artifact.graph
    pops = [p for p in graph.populations if p.model in ir.SPIKING_MODELS]
    by_kind = _runs_by_kind(artifact, runs)
    titles = {"float": "float", "quantized": "quantized (CPU)" if not _is_cpu(artifact) else "quantized = target (CPU)",
              "target": f"target {target_name(artifact.manifest)}"}
    series = {titles[kind]: [_rate(run[p.name]) for p in pops] for kind, run in by_kind.items()}
    colours = {titles[kind]: plots.RUN_COLOURS[kind] for kind in by_kind}
    parts = [_p("Spikes per neuron per step over every sample and step of the report's stimuli.", "note")]
    if pops:
        plots.grouped_bars(out / "rates.png", [p.name for p in pops], series, "spikes / neuron / step",
                           "firing rate per population", colours)
        parts.append(_img("rates.png", "firing rates per population"))
        rows = [(p.name, p.model, f"{p.size:,}", *(f"{values[k]:.4f}" for values in series.values()))
                for k, p in enumerate(pops)]
        parts.append(_table(("population", "model", "neurons", *series), rows))
    else:
        parts.append(_p("The network has no spiking population."))
    accuracy = _accuracy(graph, runs)
    if accuracy:
        parts.append(_p("Accuracy on the labels: " + ", ".join(f"{k} {v:.1%}" for k, v in accuracy.items()) + "."))
    return _section("rates", "Firing rates per layer", *parts)


@dataclass
class CoreTraffic:
    """Used cores (physical numbers, position, populations held) and spikes per step between them."""

    cores: list[dict[str, Any]]
    traffic: np.ndarray  # (C, C) spikes per step from cores[i] to cores[j]; the diagonal stays on its core
    from_host: np.ndarray  # (C,) input spikes per step arriving at each core from off-chip inputs
    mesh: tuple[int, int]  # drawn rows, cols of each chip
    chips: list[int]
    hw: hwmod.HardwareConfig | None


def _connections(proj: ir.Projection, src_size: int, dst_size: int) -> sp.csr_matrix | None:
    """Which source reaches which destination neuron, (dst, src); None for dense (everyone reaches everyone)."""
    if proj.kind == "dense":
        return None
    if proj.kind == "conv":
        assert proj.conv is not None
        matrix = conv.conv_matrix(proj.conv, np.ones_like(np.asarray(proj.weight), dtype=np.float64))
        return (matrix != 0).astype(np.float64).tocsr()
    assert proj.rows is not None and proj.cols is not None
    rows, cols = np.asarray(proj.rows), np.asarray(proj.cols)
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(dst_size, src_size))


def core_traffic(graph: ir.Graph, hw_name: str, rasters: Mapping[str, Raster]) -> CoreTraffic | None:
    """The placement of ``graph`` with spikes per step between cores measured in ``rasters``; None without placement.

    ``hw_name`` names the bundled hardware description giving the mesh; an
    unknown one (a custom ``--hw``) draws the cores on a square grid instead.
    """
    placed = {p.name: np.asarray(p.placement, dtype=np.int64) for p in graph.populations if p.placement is not None}
    if not placed:
        return None
    try:
        hw: hwmod.HardwareConfig | None = hwmod.bundled_hw(hw_name)
    except hwmod.HwConfigError:
        hw = None
    used = np.unique(np.concatenate(list(placed.values())))
    index = {int(c): k for k, c in enumerate(used)}
    if hw is not None:
        chip, row, col = mapping_report.position(used, hw)
    else:
        side = math.ceil(math.sqrt(int(used.max()) + 1))
        chip = np.zeros_like(used)
        row, col = np.divmod(used, side)
    cores = []
    for k, c in enumerate(used.tolist()):
        held = {name: int((where == c).sum()) for name, where in placed.items() if (where == c).any()}
        cores.append({"core": c, "chip": int(chip[k]), "row": int(row[k]), "col": int(col[k]),
                      "neurons": sum(held.values()), "populations": held})
    n = len(cores)
    traffic = np.zeros((n, n))
    from_host = np.zeros(n)
    sizes = {p.name: p.size for p in graph.populations}
    reach: dict[str, np.ndarray] = {}  # source population -> (src neurons, C) bool: which cores each neuron reaches
    for proj in graph.projections:
        if proj.dst not in placed:
            continue
        dst_core = np.array([index[int(c)] for c in placed[proj.dst]], dtype=np.int64)
        onehot = sp.csr_matrix((np.ones(dst_core.size), (np.arange(dst_core.size), dst_core)), shape=(dst_core.size, n))
        links = _connections(proj, sizes[proj.src], sizes[proj.dst])
        if links is None:
            hits = np.repeat((np.asarray(onehot.sum(axis=0)) > 0), sizes[proj.src], axis=0)
        else:
            hits = np.asarray((links.T @ onehot).todense()) > 0
        reach[proj.src] = reach.get(proj.src, np.zeros((sizes[proj.src], n), dtype=bool)) | hits
    for src, hits in reach.items():
        spikes = np.asarray(rasters[src].spikes, dtype=np.float64)
        rate = spikes.reshape(-1, spikes.shape[-1]).mean(axis=0)  # spikes per step of each neuron
        sent = rate[:, None] * hits
        if src in placed:
            src_core = np.array([index[int(c)] for c in placed[src]], dtype=np.int64)
            np.add.at(traffic, src_core, sent)
        else:
            from_host += sent.sum(axis=0)
    chips = sorted({c["chip"] for c in cores})
    mesh = (max(c["row"] for c in cores) + 1, max(c["col"] for c in cores) + 1)
    return CoreTraffic(cores=cores, traffic=traffic, from_host=from_host, mesh=mesh, chips=chips, hw=hw)


def _placement(artifact: base.Artifact, runs: _Runs, out: Path) -> str:
    graph = artifact.graph
    rasters = runs.target if runs.target is not None else runs.quantized
    measured_on = "the target run" if runs.target is not None else "the quantized CPU run"
    layout = core_traffic(graph, str(artifact.manifest.get("target")), rasters)
    backend = artifact.manifest.get("backend")
    if layout is None:
        return _section("placement", "Core placement and traffic",
                        _p("Single core: this graph carries no core placement, so no spike crosses a core."))
    inter = float(layout.traffic.sum() - np.trace(layout.traffic))
    on_core = float(np.trace(layout.traffic))
    hw = layout.hw
    where = (f"{hw.name}: chips of a {hw.chip.mesh[0]} x {hw.chip.mesh[1]} mesh, {hw.chip.cores} cores each"
             if hw is not None else f"hardware '{artifact.manifest.get('target')}' is not bundled: cores drawn on a grid")
    parts = []
    if len(layout.cores) == 1:
        why = {"fpga": "the FPGA design is one time-multiplexed core",
               "cpu": "the CPU reference does not partition", "gpu": "the GPU backend does not partition"}
        reason = why.get(str(backend), f"the network fits one core of {where.split(':')[0]}")
        parts.append(_p(f"Single core ({reason}): no spike crosses a core; {on_core:,.2f} spikes per step are "
                        f"delivered on the core and {float(layout.from_host.sum()):,.2f} arrive from the inputs."))
    else:
        parts.append(_p(f"{len(layout.cores)} cores on {len(layout.chips)} chip(s) ({where}). Measured on {measured_on}: "
                        f"{inter:,.2f} spikes per step between cores, {on_core:,.2f} delivered on their own core, "
                        f"{float(layout.from_host.sum()):,.2f} from the inputs. A spike counts once per destination "
                        "core holding one of its targets."))
    estimate = graph.meta.get("placement", {})
    if estimate and len(layout.cores) > 1:
        parts.append(_p(f"Compile-time estimate ({estimate.get('placer', '?')} placer, rates {estimate.get('rates', '?')}): "
                        f"{estimate.get('inter_core_spikes_per_step', 0):,} spikes per step between cores, mean hops "
                        f"{estimate.get('mean_hops', 0)}, busiest link {estimate.get('max_link_spikes_per_step', 0)} "
                        f"spikes per step (limit {estimate.get('link_spikes_per_step_limit') or 'none'}).", "note"))
    title = (f"{len(layout.cores)} cores used; arrows: spikes per step between cores" if len(layout.cores) > 1
             else "single core: neurons held per population")
    plots.core_map(out / "placement.png", layout.cores, layout.traffic, layout.mesh, layout.chips, title)
    parts.append(_img("placement.png", "core placement map with traffic between cores"))
    rows = [(c["core"], c["chip"], c["row"], c["col"], f"{c['neurons']:,}",
             ", ".join(f"{name} ({n:,})" for name, n in c["populations"].items()),
             f"{float(layout.traffic[k].sum() - layout.traffic[k, k]):,.3f}",
             f"{float(layout.traffic[:, k].sum() - layout.traffic[k, k]):,.3f}", f"{float(layout.from_host[k]):,.3f}")
            for k, c in enumerate(layout.cores)]
    parts.append(_table(("core", "chip", "row", "col", "neurons", "populations (neurons)", "spikes/step out",
                         "spikes/step in", "from inputs"), rows))
    return _section("placement", "Core placement and traffic", *parts)


def _fpga(artifact: base.Artifact, runs: _Runs, report: Mapping[str, Any] | None, out: Path) -> str:
    title = "FPGA utilisation and timing"
    if artifact.manifest.get("backend") != "fpga":
        return _section("fpga", title, _p(f"Not an FPGA artifact (backend {artifact.manifest.get('backend')})."))
    if report is None:
        return _section("fpga", title, _p(f"This FPGA artifact has no {FPGA_REPORT}."))
    return _section("fpga", title, *fpga_parts(report, runs.cycles, out))


def fpga_parts(report: Mapping[str, Any], cycles: np.ndarray | None, out: Path) -> list[str]:
    """HTML of an FPGA ``report.json``: utilisation figure and table, timing, throughput (writes ``fpga.png``)."""
    parts = [_p(f"{report.get('part')} on board {report.get('board')} (hardware {report.get('target')}).")]
    impl = report.get("implementation")
    resources: dict[str, tuple[float, float]] = {}
    if impl:
        names = {"luts": "LUT", "bram_blocks": "BRAM blocks", "spram_blocks": "SPRAM blocks", "dsp": "DSP"}
        for key, label in names.items():
            entry = impl.get("summary", {}).get(key)
            if entry and entry.get("available"):
                resources[label] = (float(entry["used"]), float(entry["available"]))
        origin = f"after place and route ({impl.get('family')} {impl.get('device')})"
    else:
        for key, entry in report.get("memory_estimate", {}).items():
            resources[f"{key.upper()} ({entry.get('unit', 'blocks')})"] = (float(entry["required"]),
                                                                           float(entry["available"]))
        origin = "memory estimate (compiled without a bitstream: no LUT, DSP or timing figures)"
    if resources:
        plots.fpga_utilisation(out / "fpga.png", resources, "FPGA utilisation" + (" (estimate)" if not impl else ""))
        parts.append(_img("fpga.png", "FPGA utilisation"))
        parts.append(_table(("resource", "used", "available", "share"),
                            [(name, f"{used:,.0f}", f"{available:,.0f}", f"{100 * used / available:.1f}%")
                             for name, (used, available) in resources.items()]))
    parts.append(_p(f"Utilisation source: {origin}.", "note"))
    throughput = report.get("throughput", {})
    clock = throughput.get("clock_mhz")
    fmax = throughput.get("fmax_mhz") if throughput.get("fmax_mhz") is not None else (impl or {}).get("fmax_mhz")
    if fmax is not None:
        met = fmax >= clock if clock else None
        verdict = _status("PASS" if met else "FAIL") if met is not None else ("?", "other")
        timing = [("Fmax", f"{fmax:g} MHz"), ("board clock", f"{clock:g} MHz"), ("timing met", verdict)]
        if clock:
            timing.append(("Fmax margin over the clock", f"{100 * (fmax - clock) / clock:+.1f}%"))
    else:
        timing = [("Fmax", "not measured (no place and route)"), ("board clock", f"{clock:g} MHz" if clock else "?")]
    timing += [("cycles per timestep, idle", f"{throughput.get('idle_cycles', '?'):,}"),
               ("cycles per timestep, worst case", f"{throughput.get('worst_case_cycles', '?'):,}"),
               ("timesteps/s, worst case", f"{throughput.get('worst_case_timesteps_per_s', 0):,.0f}")]
    measured = throughput.get("measured")
    if measured:
        at_fmax = f", {measured['timesteps_per_s_at_fmax']:,.0f} at Fmax" if fmax else ""
        timing.append(("timesteps/s, compile stimuli",
                       f"{measured['timesteps_per_s_at_clock']:,.0f} at the clock{at_fmax} (mean "
                       f"{measured['mean_cycles']:,.1f} cycles per step over {measured['samples']} x {measured['steps']} "
                       "steps)"))
    if cycles is not None and cycles.size and clock:
        mean = float(cycles.mean())
        at_fmax = f", {fmax * 1e6 / mean:,.0f} at Fmax" if fmax else ""
        timing.append(("timesteps/s, report stimuli", f"{clock * 1e6 / mean:,.0f} at the clock{at_fmax} (mean "
                       f"{mean:,.1f}, max {int(cycles.max()):,} cycles per step in RTL simulation)"))
    parts.append(_table(("timing and throughput", ""), timing))
    if throughput.get("model"):
        parts.append(_p(f"Throughput model: {throughput['model']}.", "note"))
    return parts


def _verification(artifact: base.Artifact, runs: _Runs, matrix: Mapping[str, Any] | None,
                  matrix_path: str | Path | None) -> str:
    graph = artifact.graph
    name = target_name(artifact.manifest)
    parts = []
    if matrix is not None:
        parts.append(_p(f"Verification matrix from {Path(str(matrix_path)).name}: model {matrix.get('model')}, mode "
                        f"{matrix.get('mode')}, every target against the CPU reference on its own quantized graph."))
        parts.append(_table(("target", "status", "spikes compared", "mismatches", "seconds", "first divergence / note"),
                            [_matrix_row(row) for row in matrix["targets"]]))
    if runs.target is None:
        parts.append(_table(("target", "status", "note"), [(name, _status("ERROR"), runs.target_error or "")]))
        return _section("verification", "Verification", *parts)
    comparison = verify.compare(graph, runs.target, runs.quantized, mode="exact")
    comparison.saturations = {pop: counts for pop, counts in runs.saturations.items() if any(counts.values())}
    status = "PASS" if comparison.passed else "FAIL"
    divergence = comparison.divergence.describe() if comparison.divergence is not None else ""
    heading = (f"This artifact ({name}) against the CPU reference on the report's stimuli, exact mode (every spike, "
               "u and v).")
    parts.append(_p(heading))
    if _is_cpu(artifact):
        parts.append(_p("The artifact is the CPU reference, so this comparison only checks that it loads and runs "
                        "like the reference code.", "note"))
    parts.append(_table(("target", "status", "spikes compared", "mismatches", "first divergence"),
                        [(name, _status(status), f"{comparison.spikes_compared:,}", f"{comparison.mismatches:,}",
                          divergence or "none")]))
    parts.append(f"<pre>{_esc(verify.format_comparison(comparison, name, 'cpu'))}</pre>")
    return _section("verification", "Verification", *parts)


def _matrix_row(row: Mapping[str, Any]) -> tuple[object, ...]:
    comparison = row.get("comparison") or {}
    mode = comparison.get("mode", "exact")
    if not comparison:
        mismatches = "-"
    elif mode == "bounded":
        mismatches = f"{comparison.get('unmatched', 0):,}"
    elif mode == "statistical":
        mismatches = f"{len(comparison.get('failures', [])):,}"
    else:
        mismatches = f"{comparison.get('spike_mismatches', 0) + comparison.get('state_mismatches', 0):,}"
    spikes = f"{comparison['spikes_compared']:,}" if comparison else "-"
    note = row.get("message", "")
    hint = (comparison.get("divergence") or {}).get("hint")
    if hint:
        note += f" [hint: {hint}]"
    return (row.get("target", "?"), _status(str(row.get("status", "?"))), spikes, mismatches,
            f"{float(row.get('seconds', 0.0)):.1f}", note or "none")
