"""The Lava backend: a Lava process graph run under Lava's bit-accurate Loihi 2 simulation.

``compile`` lowers the quantized graph (``lowering.py``) and writes an
artifact a Loihi user can take away: ``network.json`` + ``network.npz`` (the
processes and their integer parameters), ``run_lava.py`` (a standalone
script that rebuilds the process graph in any Lava environment and runs it
under ``Loihi2SimCfg(select_tag="fixed_pt")``, or ``Loihi2HwCfg`` with
``--loihi2-hw``) and ``README.txt``. ``run`` executes that same script in a
subprocess with a timeout, so a Lava hang or crash comes back as one
``LavaError`` line instead of hanging snnc.

The claim is equivalence with Lava's bit-accurate CPU models, proven against
the CPU reference; it is not verified on Loihi 2 silicon, where Lava issues
#322 and #829 report differently scaled parameters.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from snnc import __version__
from snnc.backends import base
from snnc.backends.lava import limits, lowering
from snnc.compiler import ir
from snnc.runtime.raster import Raster

NAME = "lava"
RUNNER = "run_lava.py"
TIMEOUT_ENV = "SNNC_LAVA_TIMEOUT"
"""Environment variable: seconds a Lava run may take before it is killed (default: estimated per run)."""

_README = """\
Lava process graph compiled by snnc {version} (graph {graph_hash}).

  network.json, network.npz   processes and their integer parameters (see run_lava.py's docstring)
  run_lava.py                 rebuilds the process graph and runs it; needs numpy, scipy and lava-nc 0.10

Run in Lava's bit-accurate simulation (Loihi2SimCfg, select_tag="fixed_pt"):
  python run_lava.py . --stimulus stimulus.npz --output result.npz
On Loihi 2 hardware (Loihi2HwCfg; needs Intel's lava-loihi extension):
  python run_lava.py . --stimulus stimulus.npz --output result.npz --loihi2-hw

The stimulus holds one 0/1 array per input population ({inputs}), shaped (T, N) or (B, T, N).
snnc proved this graph spike-equivalent to its CPU reference in Lava's simulation; it has not been
verified on Loihi 2 silicon (Lava issues #322 and #829 report parameter-scaling differences there).
"""


class LavaError(RuntimeError):
    """Lava failed, hung or returned something unreadable; the message is one line."""


def available() -> str | None:
    """None when lava-nc is installed, else why not (``bash setup.sh`` installs it)."""
    spec = importlib.util.find_spec("lava")
    if spec is None or not spec.submodule_search_locations:
        return "lava-nc is not installed (bash setup.sh installs lava-nc 0.10.0)"
    root = Path(next(iter(spec.submodule_search_locations)))
    if not (root / "magma" / "compiler" / "var_model.py").is_file() or not (root / "proc" / "lif").is_dir():
        return f"{root} is not a lava-nc installation"
    return None


def unsupported(graph: ir.Graph, hw: Any) -> list[str]:
    """Why Lava's fixed-point LIF/Dense cannot run ``graph`` exactly; [] when it can (``limits.py``)."""
    return limits.reasons(graph)


def _timeout(graph: ir.Graph, samples: int, steps: int) -> float:
    """Generous seconds for one run: start-up, then about 1 ms per process and step (research/lava_loihi.md §3)."""
    if os.environ.get(TIMEOUT_ENV):
        return float(os.environ[TIMEOUT_ENV])
    processes = 2 * len(graph.populations) + len(graph.projections)
    return 120.0 + samples * (5.0 + steps * processes * 0.02)


@dataclass
class LavaArtifact:
    """A compiled Lava artifact; :meth:`run` runs ``run_lava.py`` in a subprocess."""

    path: Path
    manifest: Mapping[str, Any]
    graph: ir.Graph
    timeout: float | None = None
    last_lava_seconds: float | None = None
    """Seconds the latest :meth:`run` spent inside Lava's ``run()`` (compile, start-up, steps), over all samples."""

    def run(self, stimulus: Mapping[str, np.ndarray], steps: int | None = None,
            record_state: bool = False) -> dict[str, Raster]:
        """Run on ``stimulus`` in Lava; rasters shaped like the CPU backend's (non-spiking populations carry v)."""
        arrays, t, batched = base.normalize_stimulus(self.graph, stimulus, steps)
        samples = next(iter(arrays.values())).shape[0] if arrays else 1
        timeout = self.timeout if self.timeout is not None else _timeout(self.graph, samples, t)
        with tempfile.TemporaryDirectory(prefix="snnc-lava-") as tmp:
            stim_path, out_path = Path(tmp) / "stimulus.npz", Path(tmp) / "result.npz"
            np.savez(stim_path, **{name: arr.astype(np.uint8) for name, arr in arrays.items()})
            command = [sys.executable, str(self.path / RUNNER), str(self.path), "--stimulus", str(stim_path),
                       "--output", str(out_path), "--steps", str(t)]
            if record_state:
                command.append("--record-state")
            with base.activity(f"Lava simulation of {samples} sample(s) x {t} steps"):
                _run_subprocess(command, timeout)
            with np.load(out_path, allow_pickle=False) as npz:
                result = {key: npz[key] for key in npz.files}
        self.last_lava_seconds = float(np.sum(result.get("time/run_s", 0.0)))
        return _rasters(self.graph, result, arrays, record_state, batched)


def _run_subprocess(command: list[str], timeout: float) -> None:
    """Run ``command`` in its own process group; kill the whole group on timeout (Lava forks workers)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise LavaError(f"Lava did not finish within {timeout:.0f} s and was stopped "
                        f"(set {TIMEOUT_ENV} to allow longer)") from None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # stray Lava workers, if any
        except ProcessLookupError:
            pass
    if proc.returncode != 0:
        lines = [line for line in stderr.splitlines() if line.strip()]
        errors = [line.removeprefix("run_lava: error: ") for line in lines if line.startswith("run_lava: error:")]
        detail = errors[-1] if errors else (lines[-1] if lines else f"exit status {proc.returncode}")
        raise LavaError(f"Lava run failed: {detail}")


def _rasters(graph: ir.Graph, result: Mapping[str, np.ndarray], stimulus: Mapping[str, np.ndarray],
             record_state: bool, batched: bool) -> dict[str, Raster]:
    rasters = {}
    for pop in graph.populations:
        if pop.model == "input":
            raster = base.input_raster(stimulus[pop.name], record_state)
        else:
            spikes = result.get(f"spikes/{pop.name}")
            if spikes is None:
                raise LavaError(f"Lava run returned no spikes for population '{pop.name}'")
            raster = Raster(spikes=spikes.astype(bool), v=result.get(f"v/{pop.name}"), u=result.get(f"u/{pop.name}"))
        rasters[pop.name] = raster if batched else raster.sample(0)
    return rasters


def compile(graph: ir.Graph, hw: Any, out_dir: str | Path) -> LavaArtifact:  # noqa: A001 - the backend contract
    """Lower ``graph`` and write the artifact (see the module docstring); LavaError-free: nothing runs here."""
    reasons = unsupported(graph, hw)
    if reasons:
        raise ValueError(f"Lava cannot run this graph: {'; '.join(reasons)}")
    description, arrays = lowering.lower(graph)
    npz = io.BytesIO()
    np.savez_compressed(npz, **arrays)
    files = {
        "network.json": (json.dumps(description, indent=1) + "\n").encode(),
        "network.npz": npz.getvalue(),
        RUNNER: (Path(__file__).parent / RUNNER).read_bytes(),
        "README.txt": _README.format(version=__version__, graph_hash=description["graph_hash"][:12],
                                     inputs=", ".join(graph.inputs)).encode(),
    }
    path = base.write_artifact(out_dir, NAME, graph, hw.name, files=files,
                               extra={"lava": {"processes": _process_counts(description)}})
    manifest = json.loads((path / base.MANIFEST).read_text())
    return LavaArtifact(path=path, manifest=manifest, graph=graph)


def _process_counts(description: Mapping[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for pop in description["populations"]:
        kind = "RingBuffer" if pop["kind"] == "input" else "LIF"
        counts[kind] = counts.get(kind, 0) + len(pop["segments"])
    names = {"dense": "Dense", "delay_dense": "DelayDense", "sparse": "Sparse", "delay_sparse": "DelaySparse",
             "conv": "Conv"}
    for conn in description["connections"]:
        counts[names[conn["kind"]]] = counts.get(names[conn["kind"]], 0) + 1
    return counts


def load(out_dir: str | Path) -> LavaArtifact:
    """Re-open a compiled directory; every file hash is verified (``base.ArtifactError`` on tampering)."""
    manifest, graph = base.read_artifact(out_dir)
    if manifest.get("backend") != NAME:
        raise base.ArtifactError(f"{out_dir}: compiled for backend '{manifest.get('backend')}', not '{NAME}'")
    return LavaArtifact(path=Path(out_dir), manifest=manifest, graph=graph)


__all__ = ["NAME", "LavaArtifact", "LavaError", "available", "compile", "load", "unsupported"]
