"""The figures of ``snnc report``: each function draws one PNG with matplotlib's Agg canvas.

No pyplot: figures are plain ``matplotlib.figure.Figure`` objects saved
directly, so drawing a report never touches matplotlib's global backend or
opens a window. Colours are fixed per run kind (float, quantized, target) so
every figure reads the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

RUN_COLOURS = {"float": "#1f77b4", "quantized": "#ff7f0e", "target": "#2ca02c"}
DPI = 100
MAX_RASTER_POINTS = 200_000
"""Spikes drawn per raster panel; beyond it, neurons are subsampled evenly."""


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def spike_rasters(path: Path, populations: Sequence[str], runs: Mapping[str, Mapping[str, np.ndarray]],
                  inputs: Mapping[str, np.ndarray], titles: Mapping[str, str]) -> Path:
    """Input rasters, then one row per population with a column per run; arrays are (T, N) of one sample.

    ``runs`` maps a run kind ("float", "quantized", "target") to population
    -> (T, N) bool spikes or, for non-spiking populations, v traces (float
    arrays, drawn as a heatmap); ``titles`` labels the columns.
    """
    kinds = list(runs)
    rows = len(inputs) + len(populations)
    cols = max(1, len(kinds))
    fig = Figure(figsize=(4.2 * cols, 2.4 * rows + 0.4), layout="constrained")
    grid = fig.add_gridspec(rows, cols)
    for r, (name, spikes) in enumerate(inputs.items()):
        ax = fig.add_subplot(grid[r, :])
        _raster(ax, spikes, "#444444")
        ax.set_title(f"input '{name}' ({spikes.shape[1]:,} neurons), identical for every run", fontsize=10)
    for i, name in enumerate(populations):
        r = len(inputs) + i
        for c, kind in enumerate(kinds):
            ax = fig.add_subplot(grid[r, c])
            data = runs[kind][name]
            label = name
            if data.dtype == bool:
                _raster(ax, data, RUN_COLOURS.get(kind, "#333333"))
            else:
                ax.imshow(np.asarray(data, dtype=np.float64).T, aspect="auto", origin="lower", cmap="viridis",
                          interpolation="nearest")
                ax.set_xlabel("step")
                ax.set_ylabel("neuron")
                label = f"{name} (v)"
            ax.set_title(f"{label}: {titles.get(kind, kind)}", fontsize=10, color=RUN_COLOURS.get(kind, "black"))
    return _save(fig, path)


def _raster(ax, spikes: np.ndarray, colour: str) -> None:
    """Dots at (step, neuron) for every spike of a (T, N) array."""
    spikes = np.asarray(spikes)
    steps, neurons = spikes.shape
    keep = np.arange(neurons)
    if int(spikes.sum()) > MAX_RASTER_POINTS:
        keep = np.linspace(0, neurons - 1, max(1, neurons * MAX_RASTER_POINTS // int(spikes.sum()))).astype(int)
    t, n = np.nonzero(spikes[:, keep])
    ax.scatter(t, keep[n], s=4 if neurons <= 256 else 1, marker="s", c=colour, linewidths=0)
    ax.set_xlim(-0.5, steps - 0.5)
    ax.set_ylim(-0.5, neurons - 0.5)
    ax.set_xlabel("step")
    ax.set_ylabel("neuron")
    ax.text(0.99, 0.97, f"{int(spikes.sum()):,} spikes", transform=ax.transAxes, ha="right", va="top", fontsize=8,
            bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0})


def grouped_bars(path: Path, labels: Sequence[str], series: Mapping[str, Sequence[float]], ylabel: str, title: str,
                 colours: Mapping[str, str] | None = None, percent: bool = False) -> Path:
    """Bars per label, one colour per series (e.g. firing rate per population for float/quantized/target)."""
    colours = colours or {}
    fig = Figure(figsize=(max(6.0, 0.9 * len(labels) * max(1, len(series)) + 2), 3.6), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(series))
    for k, (name, values) in enumerate(series.items()):
        offset = (k - (len(series) - 1) / 2) * width
        bars = ax.bar(x + offset, values, width, label=name, color=colours.get(name, RUN_COLOURS.get(name)))
        ax.bar_label(bars, fmt="%.1f%%" if percent else "%.3g", fontsize=7, padding=1)
    ax.set_xticks(x, labels, rotation=30 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8)
    ax.margins(y=0.15)
    return _save(fig, path)


def quantization(path: Path, projections: Mapping[str, Mapping[str, float]],
                 populations: Mapping[str, Mapping[str, float]]) -> Path:
    """Two panels: weight error per projection (RMS and max, % of the largest weight) and saturations per population."""
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    names = list(projections)
    x = np.arange(len(names))
    rms = [100 * projections[n]["weight_rms_error"] for n in names]
    top = [100 * projections[n]["weight_max_error"] for n in names]
    left.bar(x - 0.2, rms, 0.4, label="RMS error", color="#9467bd")
    left.bar(x + 0.2, top, 0.4, label="max error", color="#d62728")
    left.set_xticks(x, names)
    left.set_xlabel("projection")
    left.set_ylabel("% of the largest |weight|")
    left.set_title("weight quantization error", fontsize=11)
    left.legend(fontsize=8)
    pops = list(populations)
    x = np.arange(len(pops))
    sat_u = [populations[p]["saturations_u"] for p in pops]
    sat_v = [populations[p]["saturations_v"] for p in pops]
    right.bar(x - 0.2, sat_u, 0.4, label="u saturations", color="#8c564b")
    right.bar(x + 0.2, sat_v, 0.4, label="v saturations", color="#e377c2")
    right.set_xticks(x, pops)
    right.set_xlabel("population")
    right.set_ylabel("clipped neuron-steps")
    right.set_title("saturation counts" + (" (none)" if not any(sat_u) and not any(sat_v) else ""), fontsize=11)
    if not any(sat_u) and not any(sat_v):
        right.set_ylim(0, 1)
    right.legend(fontsize=8)
    return _save(fig, path)


def core_map(path: Path, cores: Sequence[Mapping], traffic: np.ndarray, mesh: tuple[int, int], chips: Sequence[int],
             title: str) -> Path:
    """Cores as boxes on each used chip's mesh (colour: neurons held), arrows for spikes per step between cores,
    and, for more than one core, the core-to-core traffic matrix.

    ``cores``: dicts with ``core``, ``chip``, ``row``, ``col``, ``neurons`` and
    ``populations`` ({name: neurons}); ``traffic`` (C, C) spikes per step from
    ``cores[i]`` to ``cores[j]`` (the diagonal stays on the core); ``mesh``
    (rows, cols) is the drawn block of each chip.
    """
    rows, cols = mesh
    several = len(cores) > 1
    width = min(12.0, 2.2 + 1.8 * len(chips) * cols) if several else 5.0
    fig = Figure(figsize=(width + (5.0 if several else 0.0), max(3.2, 1.6 * rows + 1.2)), layout="constrained")
    grid = fig.add_gridspec(1, 2 if several else 1, width_ratios=[width, 5.0] if several else None)
    ax = fig.add_subplot(grid[0, 0])
    slot = {chip: k for k, chip in enumerate(chips)}
    most = max((c["neurons"] for c in cores), default=1) or 1
    shades = colormaps["Blues"]
    small = len(cores) > 16
    for chip in chips:
        x0 = slot[chip] * (cols + 1)
        ax.add_patch(Rectangle((x0 - 0.55, -0.55), cols + 0.1, rows + 0.1, fill=False, linestyle="--", linewidth=0.8,
                               edgecolor="#888888"))
        ax.text(x0 + cols / 2 - 0.5, -0.6, f"chip {chip}", ha="center", va="bottom", fontsize=9, color="#555555")
        for r in range(rows):
            for c in range(cols):
                ax.add_patch(Rectangle((x0 + c - 0.42, r - 0.42), 0.84, 0.84, facecolor="#f4f4f4", edgecolor="#cccccc"))
    centres = []
    for core in cores:
        x, y = slot[core["chip"]] * (cols + 1) + core["col"], core["row"]
        centres.append((x, y))
        ax.add_patch(Rectangle((x - 0.42, y - 0.42), 0.84, 0.84, facecolor=shades(0.12 + 0.4 * core["neurons"] / most),
                               edgecolor="#08306b", linewidth=1.2))
        held = list(core["populations"].items())
        lines = [f"core {core['core']}"] + [f"{name}: {n:,}" for name, n in held[:3]]
        if len(held) > 3:
            lines.append(f"+{len(held) - 3} more")
        ax.text(x, y - 0.38, "\n".join(lines), ha="center", va="top", fontsize=5 if small else 8)
    off_core = traffic.astype(np.float64, copy=True)
    if off_core.size:
        np.fill_diagonal(off_core, 0.0)
    peak = float(off_core.max(initial=0.0))
    pairs = list(zip(*np.nonzero(off_core > 0)))
    for i, j in pairs:
        share = off_core[i, j] / peak
        arrow = FancyArrowPatch(centres[i], centres[j], arrowstyle="-|>", mutation_scale=12,
                                connectionstyle="arc3,rad=0.3", linewidth=0.8 + 4.0 * share, color="#d62728",
                                alpha=0.4 + 0.5 * share, shrinkA=8, shrinkB=8)
        ax.add_patch(arrow)
        if len(pairs) <= 12:
            (x1, y1), (x2, y2) = centres[i], centres[j]
            # the midpoint of arc3's Bezier curve (rad 0.3) on this y-down axis
            mx, my = (x1 + x2) / 2 - 0.15 * (y2 - y1), (y1 + y2) / 2 + 0.15 * (x2 - x1)
            ax.text(mx, my, f"{off_core[i, j]:.2f}", fontsize=7, color="#a01010", ha="center", va="center",
                    bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0, "pad": 1})
    ax.set_xlim(-0.8, len(chips) * (cols + 1) - 1.2)
    ax.set_ylim(rows - 0.2, -0.9)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    if several:
        heat = fig.add_subplot(grid[0, 1])
        image = heat.imshow(traffic, cmap="Reds", interpolation="nearest")
        fig.colorbar(image, ax=heat, shrink=0.8, label="spikes per step")
        labels = [str(c["core"]) for c in cores]
        if len(labels) <= 24:
            heat.set_xticks(range(len(labels)), labels, fontsize=7)
            heat.set_yticks(range(len(labels)), labels, fontsize=7)
        if len(labels) <= 8:
            for (i, j), value in np.ndenumerate(traffic):
                heat.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                          color="white" if value > 0.6 * float(traffic.max()) else "black")
        heat.set_xlabel("to core")
        heat.set_ylabel("from core")
        heat.set_title("spikes per step (diagonal: stays on the core)", fontsize=10)
    return _save(fig, path)


def fpga_utilisation(path: Path, resources: Mapping[str, tuple[float, float]], title: str) -> Path:
    """Horizontal bars of used vs available per FPGA resource (``resources``: name -> (used, available))."""
    names = list(resources)
    fig = Figure(figsize=(8, 0.6 * len(names) + 1.4), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(names))
    share = [100.0 * used / available if available else 0.0 for used, available in resources.values()]
    colours = ["#d62728" if s > 100 else "#ff7f0e" if s > 80 else "#2ca02c" for s in share]
    ax.barh(y, [100.0] * len(names), color="#eeeeee", edgecolor="#bbbbbb")
    ax.barh(y, share, color=colours)
    for k, (used, available) in enumerate(resources.values()):
        ax.text(min(share[k], 100) + 1, k, f"{used:,.0f} / {available:,.0f} ({share[k]:.1f}%)", va="center", fontsize=8)
    ax.set_yticks(y, names)
    ax.set_xlim(0, 140)
    ax.set_xlabel("% of the device")
    ax.invert_yaxis()
    ax.set_title(title, fontsize=11, loc="left")
    return _save(fig, path)
