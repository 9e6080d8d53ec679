"""Spike trains of one population: a dense boolean raster plus an event view."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Raster:
    """Spikes of one population over time.

    ``spikes`` is bool, (T, N) for one sample or (B, T, N) for a batch; N is
    the flattened population size. ``v``/``u`` are optional state traces of
    the same shape (integers for quantized runs, floats for the float
    reference), recorded after the step's update and reset.
    """

    spikes: np.ndarray
    v: np.ndarray | None = None
    u: np.ndarray | None = None

    @property
    def steps(self) -> int:
        return int(self.spikes.shape[-2])

    @property
    def size(self) -> int:
        return int(self.spikes.shape[-1])

    @property
    def batched(self) -> bool:
        return self.spikes.ndim == 3

    def sample(self, b: int) -> Raster:
        """The raster of sample ``b`` of a batch."""
        if not self.batched:
            raise ValueError("raster is not batched")
        return Raster(
            spikes=self.spikes[b],
            v=None if self.v is None else self.v[b],
            u=None if self.u is None else self.u[b],
        )

    def events(self) -> tuple[np.ndarray, np.ndarray]:
        """(timestep, neuron) index arrays of every spike, sorted by time then neuron."""
        if self.batched:
            raise ValueError("events() needs one sample; use sample(b) first")
        t, n = np.nonzero(self.spikes)
        return t.astype(np.int64), n.astype(np.int64)

    @classmethod
    def from_events(cls, t: np.ndarray, n: np.ndarray, steps: int, size: int) -> Raster:
        """Build a raster from (timestep, neuron) events."""
        t = np.asarray(t, dtype=np.int64)
        n = np.asarray(n, dtype=np.int64)
        if t.size and (t.min() < 0 or t.max() >= steps or n.min() < 0 or n.max() >= size):
            raise ValueError(f"events fall outside a raster of {steps} steps x {size} neurons")
        spikes = np.zeros((steps, size), dtype=bool)
        spikes[t, n] = True
        return cls(spikes=spikes)

    def to_nir(self, dt: float):
        """This raster as ``nir.TimeGriddedData`` (samples, T, neurons) at ``dt`` seconds."""
        import nir

        data = self.spikes if self.batched else self.spikes[None]
        return nir.TimeGriddedData(data=data.astype(np.float32), dt=dt)

    @classmethod
    def from_nir(cls, data, dt: float | None = None) -> Raster:
        """Read ``nir.TimeGriddedData``, or ``nir.EventData`` gridded at ``dt`` (non-zero = spike)."""
        import nir

        if isinstance(data, nir.EventData):
            if dt is None:
                raise ValueError("converting nir.EventData to a raster needs dt")
            data = data.to_time_gridded(dt=dt)
        if not isinstance(data, nir.TimeGriddedData):
            raise TypeError(f"cannot build a Raster from {type(data).__name__}")
        spikes = np.asarray(data.data) != 0
        if spikes.ndim == 3 and spikes.shape[0] == 1:
            spikes = spikes[0]
        return cls(spikes=spikes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Raster):
            return NotImplemented
        return self.spikes.shape == other.spikes.shape and bool(np.array_equal(self.spikes, other.spikes))

    __hash__ = None  # type: ignore[assignment]
