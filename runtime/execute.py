"""Load any compiled artifact and run it."""

from __future__ import annotations

import importlib
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from snnc.backends import base
from snnc.runtime.raster import Raster


def load(path: str | Path) -> base.Artifact:
    """Open the artifact directory ``path`` with the backend named in its manifest."""
    manifest, _ = base.read_artifact(path)
    backend = manifest["backend"]
    try:
        module = importlib.import_module(f"snnc.backends.{backend}")
    except ModuleNotFoundError as exc:
        raise base.ArtifactError(f"{path}: compiled for backend '{backend}', which this snnc does not have") from exc
    return module.load(path)


def run_batches(artifact: base.Artifact, stimulus: Mapping[str, np.ndarray], batch_size: int,
                steps: int | None = None, record_state: bool = False, progress: bool | None = None) -> dict[str, Raster]:
    """Run a batched stimulus (B, T, ...) in chunks of ``batch_size`` samples; rasters (B, T, N) as one run gives.

    A progress bar goes to stderr when it is a terminal (``progress`` forces it on or off).
    """
    from snnc.runtime.progress import Progress

    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    total = {np.asarray(v).shape[0] for v in stimulus.values()}
    if len(total) != 1:
        raise ValueError("stimulus arrays disagree on the number of samples")
    samples = total.pop()
    parts: list[dict[str, Raster]] = []
    with Progress(samples, "running", enabled=progress) as bar:
        for start in range(0, samples, batch_size):
            chunk = {name: np.asarray(arr)[start:start + batch_size] for name, arr in stimulus.items()}
            parts.append(artifact.run(chunk, steps=steps, record_state=record_state))
            bar.update(next(iter(chunk.values())).shape[0])
    return {name: _concatenate([p[name] for p in parts]) for name in parts[0]}


def _concatenate(rasters: list[Raster]) -> Raster:
    def join(field: str) -> np.ndarray | None:
        values = [getattr(r, field) for r in rasters]
        return None if values[0] is None else np.concatenate(values)

    spikes = join("spikes")
    assert spikes is not None
    return Raster(spikes=spikes, v=join("v"), u=join("u"))


LABELS_KEY = "labels"
"""Optional array in a stimulus file: one class label per sample (not fed to the network)."""


def read_stimulus(path: str | Path) -> dict[str, np.ndarray]:
    """Read a stimulus ``.npz``: one 0/1 array per input population, (T, ...) or (B, T, ...).

    An optional ``labels`` array is left out (see :func:`read_labels`).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files if key != LABELS_KEY}
    except FileNotFoundError as exc:
        raise ValueError(f"{path}: no such file") from exc
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({str(exc).splitlines()[0]})") from exc


def write_result(path: str | Path, result: Mapping[str, Raster]) -> None:
    """Write rasters to ``path`` (.npz): ``spikes/<pop>`` and, where recorded, ``v/<pop>``, ``u/<pop>``."""
    arrays: dict[str, np.ndarray] = {}
    for name, raster in result.items():
        arrays[f"spikes/{name}"] = raster.spikes
        if raster.v is not None:
            arrays[f"v/{name}"] = raster.v
        if raster.u is not None:
            arrays[f"u/{name}"] = raster.u
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def read_labels(path: str | Path) -> np.ndarray | None:
    """The ``labels`` array of a stimulus file, or None."""
    with np.load(path, allow_pickle=False) as npz:
        return npz[LABELS_KEY] if LABELS_KEY in npz.files else None
