"""Raster: dense bool (T, N) plus an event view, and conversion to/from NIR's data types."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from snnc.runtime.raster import Raster


def random_raster(seed: int = 0, steps: int = 20, size: int = 7) -> Raster:
    return Raster(spikes=np.random.default_rng(seed).random((steps, size)) < 0.3)


def test_events_round_trip():
    raster = random_raster()
    t, n = raster.events()
    assert t.size == raster.spikes.sum()
    assert np.all(np.diff(t) >= 0)
    assert Raster.from_events(t, n, raster.steps, raster.size) == raster


def test_from_events_rejects_events_outside_the_raster():
    with pytest.raises(ValueError, match="outside a raster of 5 steps x 3 neurons"):
        Raster.from_events(np.array([5]), np.array([0]), steps=5, size=3)


def test_nir_time_gridded_round_trip():
    raster = random_raster(1)
    data = raster.to_nir(dt=1e-3)
    assert isinstance(data, nir.TimeGriddedData)
    assert data.data.shape == (1, raster.steps, raster.size)
    assert Raster.from_nir(data) == raster


def test_nir_event_data_is_gridded_at_dt():
    raster = random_raster(2, steps=10, size=4)
    t, n = raster.events()
    dt = 1e-3
    events = nir.EventData(idx=n[None], time=((t + 0.5) * dt)[None], n_neurons=4, t_max=10 * dt)
    assert Raster.from_nir(events, dt=dt) == raster
    with pytest.raises(ValueError, match="needs dt"):
        Raster.from_nir(events)


def test_batched_raster_samples():
    spikes = np.random.default_rng(3).random((3, 8, 5)) < 0.5
    raster = Raster(spikes=spikes, v=spikes.astype(np.int64) * 7)
    assert raster.batched and raster.steps == 8 and raster.size == 5
    assert raster.sample(1) == Raster(spikes=spikes[1])
    np.testing.assert_array_equal(raster.sample(2).v, spikes[2] * 7)
    with pytest.raises(ValueError):
        raster.events()


def test_equality_compares_spikes():
    raster = random_raster(4)
    flipped = raster.spikes.copy()
    flipped[3, 2] = ~flipped[3, 2]
    assert raster != Raster(spikes=flipped)
