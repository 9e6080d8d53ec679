"""What every backend provides, and the artifact directory they all write.

A backend is a module in ``backends/`` exposing::

    NAME: str                                   # "cpu", "gpu", "lava", ...
    def available() -> str | None               # None when usable, else why not ("lava-nc not installed")
    def unsupported(graph, hw) -> list[str]     # reasons it cannot run this quantized graph; [] when fine
    def compile(graph, hw, out_dir) -> Artifact # writes out_dir (via write_artifact) and returns it
    def load(out_dir) -> Artifact               # re-open a compiled directory

An artifact is a directory holding ``manifest.json`` (backend, snnc version,
target, graph hash, sha256 of every file) and the backend's files; it is
written to a temporary sibling and renamed into place, so a failed compile
never leaves a half-written directory behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
import tempfile
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from snnc import __version__
from snnc.compiler import ir
from snnc.runtime.raster import Raster

ACTIVITY: Callable[[str], AbstractContextManager[Any]] | None = None
"""Progress indicator for long backend work of unknown length; the CLI installs ``runtime.progress.Activity``."""


def activity(label: str) -> AbstractContextManager[Any]:
    """``with base.activity("place and route"):`` shows ``label`` and the elapsed time while the block runs."""
    return ACTIVITY(label) if ACTIVITY is not None else contextlib.nullcontext()

MANIFEST = "manifest.json"
GRAPH_FILE = "graph.npz"


class ArtifactError(ValueError):
    """An artifact directory is missing, tampered with or from another format."""


class FitError(ValueError):
    """The network does not fit the target's resources (memory blocks, logic); the message says by how much."""


class Artifact(Protocol):
    """A compiled network that can be run."""

    path: Path
    manifest: Mapping[str, Any]
    graph: ir.Graph

    def run(self, stimulus: Mapping[str, np.ndarray], steps: int | None = None,
            record_state: bool = False) -> dict[str, Raster]:
        """Run on ``stimulus`` (input population -> 0/1 array (T, N) or (B, T, N)); a Raster per population."""
        ...


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def replace_directory(tmp: Path, out: Path) -> None:
    """Rename the finished directory ``tmp`` to ``out``, replacing an older ``out`` (two renames, never half)."""
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def write_artifact(out_dir: str | Path, backend: str, graph: ir.Graph, target: str,
                   files: Mapping[str, bytes], extra: Mapping[str, Any] | None = None) -> Path:
    """Atomically create ``out_dir`` with ``graph.npz``, ``files`` and a manifest.

    An existing ``out_dir`` that is an snnc artifact is replaced; any other
    existing non-empty directory is refused.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise ArtifactError(f"{out}: exists and is not an snnc artifact; refusing to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        all_files = {GRAPH_FILE: ir.to_bytes(graph), **files}
        for name, data in all_files.items():
            target_path = tmp / name
            target_path.parent.mkdir(parents=True, exist_ok=True)
            target_path.write_bytes(data)
        manifest = {
            "format": "snnc-artifact",
            "format_version": 1,
            "backend": backend,
            "snnc_version": __version__,
            "target": target,
            "graph_hash": ir.graph_hash(graph),
            "files": {name: _sha256(tmp / name) for name in sorted(all_files)},
            **(extra or {}),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        replace_directory(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_artifact(path: str | Path) -> tuple[dict[str, Any], ir.Graph]:
    """Read and verify an artifact's manifest and graph; checks every file hash."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(f"{path}: not an snnc artifact (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{manifest_path}: not valid JSON ({exc})") from exc
    if manifest.get("format") != "snnc-artifact" or manifest.get("format_version") != 1:
        raise ArtifactError(f"{manifest_path}: artifact format {manifest.get('format_version')!r} is not supported")
    for name, digest in manifest.get("files", {}).items():
        file = path / name
        if not file.is_file():
            raise ArtifactError(f"{path}: file '{name}' listed in the manifest is missing")
        if _sha256(file) != digest:
            raise ArtifactError(f"{path}: file '{name}' does not match its manifest hash (modified after compile?)")
    graph = ir.load(path / GRAPH_FILE)
    return manifest, graph


def normalize_stimulus(graph: ir.Graph, stimulus: Mapping[str, np.ndarray],
                       steps: int | None = None) -> tuple[dict[str, np.ndarray], int, bool]:
    """Check and reshape a stimulus to {input: bool (B, T, N)}; returns (stimulus, T, batched).

    Each input population needs an array of 0/1 values shaped (T, *shape),
    (T, N), (B, T, *shape) or (B, T, N). ``steps`` may extend (zero spikes)
    or cut the run.
    """
    unknown = sorted(set(stimulus) - set(graph.inputs))
    if unknown:
        raise ValueError(f"stimulus has arrays {unknown} that are not inputs of the network (inputs: {list(graph.inputs)})")
    missing = [name for name in graph.inputs if name not in stimulus]
    if missing:
        raise ValueError(f"stimulus lacks arrays for input(s) {missing}")
    out: dict[str, np.ndarray] = {}
    batched_flags = set()
    lengths = set()
    for name in graph.inputs:
        pop = graph.population(name)
        arr = np.asarray(stimulus[name])
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"stimulus '{name}': dtype {arr.dtype} is not numeric")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError(f"stimulus '{name}': contains NaN or infinite values")
        if arr.size and not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"stimulus '{name}': values must be 0/1 spikes")
        shape_variants = {tuple(pop.shape): False, (pop.size,): False}
        tail = None
        for n_lead in (1, 2):
            if arr.ndim >= n_lead and tuple(arr.shape[n_lead:]) in shape_variants:
                tail = n_lead
        if tail is None:
            raise ValueError(f"stimulus '{name}': shape {arr.shape} must be (T, {', '.join(map(str, pop.shape))}) "
                             f"or (T, {pop.size}), optionally with a leading batch dimension")
        batched = tail == 2
        arr = arr.reshape((arr.shape[0] if batched else 1, arr.shape[tail - 1], pop.size)).astype(bool)
        batched_flags.add(batched)
        lengths.add((arr.shape[0], arr.shape[1]))
        out[name] = arr
    if len(batched_flags) > 1 or len({b for b, _ in lengths}) > 1:
        raise ValueError("stimulus arrays disagree on the batch dimension")
    t_given = max(t for _, t in lengths)
    t = t_given if steps is None else int(steps)
    if t <= 0:
        raise ValueError(f"number of steps must be positive, got {t}")
    for name, arr in out.items():
        if arr.shape[1] < t:
            pad = np.zeros((arr.shape[0], t - arr.shape[1], arr.shape[2]), dtype=bool)
            arr = np.concatenate([arr, pad], axis=1)
        out[name] = np.ascontiguousarray(arr[:, :t])
    return out, t, batched_flags.pop()


def input_raster(spikes: np.ndarray, record_state: bool) -> Raster:
    """An input population's raster: its stimulus, with all-zero u and v when state is recorded (inputs have none)."""
    zeros = np.zeros(spikes.shape, np.int64) if record_state else None
    return Raster(spikes=spikes, v=zeros, u=zeros)


def quantized_reasons(graph: ir.Graph) -> list[str]:
    """[] when ``graph`` is a valid quantized graph, else why not (the missing integer parameters, or the check)."""
    if not graph.is_quantized:
        missing = [f"population '{p.name}'" for p in graph.populations if p.model != "input" and p.quant is None]
        missing += [f"projection '{p.name}'" for p in graph.projections if p.quant is None]
        return [f"graph is not quantized (run the quantize pass first): {', '.join(missing)} "
                "has no integer parameters"]
    try:
        ir.check(graph, "quantized")
    except ir.IRError as exc:
        return [str(exc)]
    return []


def neuron_numbering(graph: ir.Graph) -> tuple[dict[str, int], int, dict[str, int], int]:
    """(first id of each non-input population, N, first index of each input population, I).

    Non-input populations, in graph order, are neurons 0 .. N-1; inputs, in ``graph.inputs`` order, are
    indices 0 .. I-1 (hardware-style backends make them event sources N .. N+I-1).
    """
    offsets: dict[str, int] = {}
    n = 0
    for pop in graph.populations:
        if pop.model != "input":
            offsets[pop.name] = n
            n += pop.size
    input_offsets: dict[str, int] = {}
    n_inputs = 0
    for name in graph.inputs:
        input_offsets[name] = n_inputs
        n_inputs += graph.population(name).size
    return offsets, n, input_offsets, n_inputs


NEURON_FIELDS = ("keep_u", "keep_v", "bias", "vth", "reset_keep", "reset_add", "refractory", "limit", "spiking")


def neuron_parameters(graph: ir.Graph, offsets: dict[str, int], n: int) -> dict[str, np.ndarray]:
    """Per-neuron integers of the update, int64 arrays of length ``n`` indexed by ``offsets`` (inputs skipped).

    ``keep_* = 4096 - *_decay``; ``bias = bias_mant << bias_exp``; ``vth`` is ``vth << 6``; the reset is one
    affine map ``v := reset_keep * v + reset_add``: zero (0, vreset << 6), subtract (1, (vreset - vth) << 6),
    none (1, 0); ``limit`` is the saturation bound; ``spiking`` 0/1. Non-spiking neurons get vth 0 and the
    identity reset (neither is used), so parameters that are equal across a network stay equal.
    """
    p = {name: np.zeros(n, dtype=np.int64) for name in NEURON_FIELDS}
    for pop in graph.populations:
        if pop.model == "input":
            continue
        q = pop.quant
        assert q is not None
        span = slice(offsets[pop.name], offsets[pop.name] + pop.size)
        p["keep_u"][span] = ir.DECAY_UNITY - np.asarray(q.i_decay, dtype=np.int64)
        p["keep_v"][span] = ir.DECAY_UNITY - np.asarray(q.v_decay, dtype=np.int64)
        p["bias"][span] = np.left_shift(np.asarray(q.bias_mant, np.int64), np.asarray(q.bias_exp, np.int64))
        p["limit"][span] = (1 << (q.state_bits - 1)) - 1
        if not q.spiking:
            p["reset_keep"][span] = 1
            continue
        vth = np.left_shift(np.asarray(q.vth, np.int64), ir.ACT_SHIFT)
        vreset = np.left_shift(q.vreset_or_zeros(), ir.ACT_SHIFT)
        p["vth"][span] = vth
        p["spiking"][span] = 1
        p["refractory"][span] = q.refractory
        if q.reset == "zero":
            p["reset_add"][span] = vreset
        elif q.reset == "subtract":
            p["reset_keep"][span] = 1
            p["reset_add"][span] = vreset - vth
        else:
            p["reset_keep"][span] = 1
    return p


INT64_HEADROOM = 1 << 61
"""Largest |bias| and |vth << 6| accepted: with |u|, |v| < 2**31 no int64 sum can overflow."""
INPUT_LIMIT = 1 << 55
"""Largest sum of |effective weight| into one neuron: (a_in << 6) stays below 2**61."""


def input_bounds(graph: ir.Graph) -> dict[str, np.ndarray]:
    """Per destination neuron, the sum of |effective weight| over every incoming synapse (float64).

    This bounds |a_in| and every partial sum of it. float64 is exact while
    the sums stay below 2**53, far above the limits compared against.
    Conv uses the whole kernel per output neuron: an upper bound at borders.
    """
    bounds = {pop.name: np.zeros(pop.size) for pop in graph.populations}
    for proj in graph.projections:
        assert proj.quant is not None
        scale = 2.0 ** proj.quant.weight_exp
        magnitude = np.abs(np.asarray(proj.quant.weight, dtype=np.float64))
        dst = graph.population(proj.dst)
        if proj.kind == "dense":
            per_dst = magnitude.sum(axis=1)
        elif proj.kind == "sparse":
            assert proj.rows is not None
            per_dst = np.bincount(np.asarray(proj.rows, dtype=np.int64), weights=magnitude, minlength=dst.size)
        else:
            assert proj.conv is not None
            per_channel = magnitude.reshape(magnitude.shape[0], -1).sum(axis=1)
            per_dst = np.repeat(per_channel, math.prod(proj.conv.out_shape[1:]))
        bounds[proj.dst] = bounds[proj.dst] + per_dst * scale
    return bounds


def int64_reasons(graph: ir.Graph, who: str) -> list[str]:
    """Why int64 arithmetic could overflow on this (checked, quantized) graph; [] when it cannot.

    ``who`` names the backend in the reasons ("the CPU backend").
    """
    reasons = []
    for proj in graph.projections:
        assert proj.quant is not None
        if proj.quant.weight_bits - 1 + proj.quant.weight_exp > 55:
            reasons.append(f"projection '{proj.name}': {proj.quant.weight_bits}-bit weights << "
                           f"{proj.quant.weight_exp} exceed the 56-bit effective weights {who} sums")
    if reasons:
        return reasons
    for name, bound in input_bounds(graph).items():
        if bound.size and bound.max() >= INPUT_LIMIT:
            reasons.append(f"population '{name}': summed |weight << weight_exp| of its inputs reaches "
                           f"{bound.max():.3g}, {who}'s int64 limit is 2**55")
    for pop in graph.populations:
        q = pop.quant
        if pop.model == "input" or q is None:
            continue
        bias_exp = np.asarray(q.bias_exp, dtype=np.int64)
        bias_mant = np.abs(np.asarray(q.bias_mant, dtype=np.int64))
        too_big = (bias_exp > 60) | (bias_mant >= np.right_shift(INT64_HEADROOM, np.minimum(bias_exp, 60)))
        if np.any(too_big):
            n = int(np.flatnonzero(too_big)[0])
            reasons.append(f"population '{pop.name}': bias {int(q.bias_mant[n])} << {int(q.bias_exp[n])} "
                           f"(neuron {n}) reaches 2**61, beyond {who}'s int64 headroom")
        if q.vth.size and int(q.vth.max()) >= INT64_HEADROOM >> ir.ACT_SHIFT:
            reasons.append(f"population '{pop.name}': vth {int(q.vth.max())} << 6 reaches 2**61")
    return reasons



def conv_synapses(spec: ir.ConvSpec, kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(src, dst, weight) of every in-range synapse of a conv projection, by index arithmetic.

    ``kernel`` is (C_out, C_in/groups, kH, kW) effective weights; indices are
    C-order positions in ``spec.in_shape`` / ``spec.out_shape``. Zero kernel
    entries are dropped. Loops only over the kH*kW kernel offsets.
    """
    c_in, h_in, w_in = spec.in_shape
    c_out, h_out, w_out = spec.out_shape
    cin_g = c_in // spec.groups
    cout_g = c_out // spec.groups
    out_ch = np.arange(c_out, dtype=np.int64)
    in_ch = (out_ch // cout_g)[:, None] * cin_g + np.arange(cin_g, dtype=np.int64)[None, :]  # (C_out, Cin_g)
    srcs, dsts, weights = [], [], []
    for ky in range(kernel.shape[2]):
        iy = np.arange(h_out, dtype=np.int64) * spec.stride[0] - spec.padding[0] + ky * spec.dilation[0]
        y_ok = (iy >= 0) & (iy < h_in)
        for kx in range(kernel.shape[3]):
            ix = np.arange(w_out, dtype=np.int64) * spec.stride[1] - spec.padding[1] + kx * spec.dilation[1]
            x_ok = (ix >= 0) & (ix < w_in)
            if not (y_ok.any() and x_ok.any()):
                continue
            pos_out = (np.flatnonzero(y_ok)[:, None] * w_out + np.flatnonzero(x_ok)[None, :]).ravel()
            pos_in = (iy[y_ok][:, None] * w_in + ix[x_ok][None, :]).ravel()
            w = kernel[:, :, ky, kx]  # (C_out, Cin_g)
            co, ci = np.nonzero(w)
            src = in_ch[co, ci][:, None] * (h_in * w_in) + pos_in[None, :]
            dst = co[:, None] * (h_out * w_out) + pos_out[None, :]
            srcs.append(src.ravel())
            dsts.append(dst.ravel())
            weights.append(np.repeat(w[co, ci], pos_in.size))
    if not srcs:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(srcs), np.concatenate(dsts), np.concatenate(weights)
