"""The GPU backend: snnc's integer semantics in PyTorch, batched over stimuli, on CUDA when present.

It is how a user evaluates a quantized network on a whole data set before
touching hardware, so it is exact by construction (``program.py``: float32
only where every sum is an exactly representable integer, float64 or int64
beyond) and batched: state is (batch, neurons), each step is a handful of
elementwise int64 ops plus one matmul (dense), sparse matmul or conv2d per
projection and delay. A batch is split across every visible CUDA device
(plain torch, one thread per device); without CUDA it runs on the CPU. The
device list can be set per artifact (``GpuArtifact.devices``) or with
``SNNC_GPU_DEVICES`` ("cuda:0,cuda:1", "cpu").

Results are bit-identical to ``backends/cpu.py`` (spikes, u, v and the
saturation counts), which the tests check on the conformance cases and on
hundreds of random networks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from snnc.backends import base
from snnc.compiler import ir
from snnc.runtime.raster import Raster

NAME = "gpu"
CPU_CHUNK = 128
"""On a CPU device a shard runs in chunks of this many samples: the state then stays in cache (2x at batch 1024)."""
DEVICES_ENV = "SNNC_GPU_DEVICES"
"""Comma-separated torch devices to shard batches over (default: every CUDA device, else the CPU)."""


def available() -> str | None:
    """None when torch is installed (CUDA is used when present, the CPU otherwise)."""
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (bash setup.sh installs torch==2.13.0)"
    return None


def unsupported(graph: ir.Graph, hw: Any) -> list[str]:
    """Reasons this backend cannot run ``graph`` (the CPU reference's int64 limits); [] when it can."""
    return base.quantized_reasons(graph) or base.int64_reasons(graph, "the GPU backend")


def default_devices() -> list[str]:
    """``SNNC_GPU_DEVICES``, else every CUDA device, else ["cpu"]."""
    import torch

    if os.environ.get(DEVICES_ENV):
        return [d.strip() for d in os.environ[DEVICES_ENV].split(",") if d.strip()]
    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


SMALL_CPU_BATCH = 16
"""Up to this many samples a CPU run uses one torch thread: as fast on an idle machine (measured: 11.3k vs 11.8k
sample-steps/s at batch 1, 81k vs 80k at 16), and 2x faster on a busy one, where torch's threads wait for cores."""


@contextlib.contextmanager
def _one_thread_for_small_cpu_batches(device: str, samples: int) -> Iterator[None]:
    import torch

    if device != "cpu" or samples > SMALL_CPU_BATCH or torch.get_num_threads() == 1:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class GpuArtifact:
    """A compiled GPU artifact; :meth:`run` simulates in torch on :attr:`devices`."""

    path: Path
    manifest: Mapping[str, Any]
    graph: ir.Graph
    devices: list[str] = field(default_factory=default_devices)
    last_saturations: dict[str, dict[str, int]] | None = None
    _programs: dict[str, Any] = field(default_factory=dict, repr=False)

    def _program(self, device: str) -> Any:
        import torch

        from snnc.backends.gpu import program

        if device not in self._programs:
            self._programs[device] = program.build(self.graph, torch.device(device))
        return self._programs[device]

    def run(self, stimulus: Mapping[str, np.ndarray], steps: int | None = None,
            record_state: bool = False) -> dict[str, Raster]:
        """Run on ``stimulus`` (shapes as for the CPU backend); the batch is split across :attr:`devices`."""
        from snnc.backends.gpu import program

        arrays, t, batched = base.normalize_stimulus(self.graph, stimulus, steps)
        stim = np.concatenate([arrays[name] for name in self.graph.inputs], axis=2)
        first = self._program(self.devices[0])
        v_columns = self._v_columns(first, record_state)
        shards = [s for s in np.array_split(np.arange(stim.shape[0]), len(self.devices)) if s.size]
        jobs = list(zip(self.devices, shards))

        def work(job: tuple[str, np.ndarray]) -> Any:
            device, rows = job
            chunk = CPU_CHUNK if device == "cpu" else rows.size
            with _one_thread_for_small_cpu_batches(device, rows.size):
                parts = [program.simulate(self._program(device), stim[rows[k:k + chunk]], record_state, v_columns)
                         for k in range(0, rows.size, chunk)]
            return program.Run.concatenate(parts)

        if len(jobs) == 1:
            runs = [work(jobs[0])]
        else:
            with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
                runs = list(pool.map(work, jobs))
        spikes = np.concatenate([r.spikes for r in runs])
        u = np.concatenate([r.u for r in runs]) if record_state else None
        v = np.concatenate([r.v for r in runs]) if v_columns is not None else None
        clipped = sum(r.clipped for r in runs)
        self.last_saturations = {p.name: {"u": int(clipped[i, 0]), "v": int(clipped[i, 1])}
                                 for i, p in enumerate(self.graph.populations)}
        return self._rasters(first, arrays, spikes, u, v, v_columns, record_state, batched)

    def _v_columns(self, prog: Any, record_state: bool) -> np.ndarray | None:
        """Neuron ids whose v is kept: all with ``record_state``, else those of non-spiking populations."""
        if record_state:
            return np.arange(prog.n_neurons)
        ids = [np.arange(prog.neuron_offsets[p.name], prog.neuron_offsets[p.name] + p.size)
               for p in self.graph.populations if p.quant is not None and not p.quant.spiking]
        return np.concatenate(ids) if ids else None

    def _rasters(self, prog: Any, arrays: Mapping[str, np.ndarray], spikes: np.ndarray, u: np.ndarray | None,
                 v: np.ndarray | None, v_columns: np.ndarray | None, record_state: bool,
                 batched: bool) -> dict[str, Raster]:
        v_at = {} if v_columns is None else {int(n): k for k, n in enumerate(v_columns)}
        rasters = {}
        for pop in self.graph.populations:
            if pop.model == "input":
                raster = base.input_raster(arrays[pop.name], record_state)
            else:
                start = prog.neuron_offsets[pop.name]
                keep_v = v is not None and start in v_at
                raster = Raster(spikes=spikes[:, :, start:start + pop.size],
                                v=v[:, :, v_at[start]:v_at[start] + pop.size] if keep_v else None,
                                u=u[:, :, start:start + pop.size] if u is not None else None)
            rasters[pop.name] = raster if batched else raster.sample(0)
        return rasters


def _checked(graph: ir.Graph) -> ir.Graph:
    reasons = unsupported(graph, None)
    if reasons:
        raise ValueError("the GPU backend cannot run this graph: " + "; ".join(reasons))
    return graph


def compile(graph: ir.Graph, hw: Any, out_dir: str | Path) -> GpuArtifact:  # noqa: A001 - the backend contract
    """Write ``out_dir`` (manifest + quantized graph.npz) and return the artifact; tensors are built on first run."""
    path = base.write_artifact(out_dir, NAME, _checked(graph), hw.name, files={})
    manifest = json.loads((path / base.MANIFEST).read_text())
    return GpuArtifact(path=path, manifest=manifest, graph=graph)


def load(out_dir: str | Path) -> GpuArtifact:
    """Re-open a compiled directory; every file hash is verified (``base.ArtifactError`` on tampering)."""
    manifest, graph = base.read_artifact(out_dir)
    if manifest.get("backend") != NAME:
        raise base.ArtifactError(f"{out_dir}: compiled for backend '{manifest.get('backend')}', not '{NAME}'")
    return GpuArtifact(path=Path(out_dir), manifest=manifest, graph=_checked(graph))


__all__ = ["DEVICES_ENV", "NAME", "GpuArtifact", "available", "compile", "default_devices", "load", "unsupported"]
