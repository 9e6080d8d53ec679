"""What a placement costs: per-core utilisation, spikes between cores and chips, hops and per-link load.

Physical cores are numbered ``chip * chip.cores + row * mesh_cols + col``.
Spikes between two cores of one chip follow dimension-order (XY) routing
on the mesh: along the source's row to the target's column, then along
that column. A spike's hops are the links it crosses. Spikes between chips
are counted separately (the chip-to-chip network is not modelled), and
their hops inside the chips are not counted. Rates are those of
``compiler/atoms.py`` (measured on calibration stimuli, else estimated).
"""

from __future__ import annotations

import numpy as np

from snnc.compiler import atoms as atomsmod
from snnc.compiler import hw as hwmod

_PERCENT = 100.0


def position(core: np.ndarray, hw: hwmod.HardwareConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(chip, row, col) of physical cores."""
    chip, local = np.divmod(core, hw.chip.cores)
    row, col = np.divmod(local, hw.chip.mesh[1])
    return chip, row, col


def link_loads(a: np.ndarray, b: np.ndarray, spikes: np.ndarray, hw: hwmod.HardwareConfig) -> np.ndarray:
    """Spikes per step on every directed mesh link of every chip: (chips, rows, cols, 4) for east, west, south, north.

    Only flows inside one chip are routed (XY: columns first, then rows).
    """
    rows, cols = hw.chip.mesh
    load = np.zeros((hw.chip.chips, rows, cols, 4))
    chip_a, r0, c0 = position(a, hw)
    chip_b, r1, c1 = position(b, hw)
    for k in np.flatnonzero((chip_a == chip_b) & (spikes > 0)).tolist():
        chip, w = chip_a[k], spikes[k]
        if c1[k] > c0[k]:
            load[chip, r0[k], c0[k]:c1[k], 0] += w
        elif c1[k] < c0[k]:
            load[chip, r0[k], c1[k] + 1:c0[k] + 1, 1] += w
        if r1[k] > r0[k]:
            load[chip, r0[k]:r1[k], c1[k], 2] += w
        elif r1[k] < r0[k]:
            load[chip, r1[k] + 1:r0[k] + 1, c1[k], 3] += w
    return load


def summarize(atoms: atomsmod.Atoms, core: np.ndarray, hw: hwmod.HardwareConfig) -> dict:
    """The placement report (plain JSON-ready numbers) of atoms sitting on physical cores ``core``."""
    use = atomsmod.usage(atoms, core)
    used = np.flatnonzero(use[:, 0] > 0)
    share = use[used] / atoms.limits * _PERCENT
    a, b, spikes = atomsmod.flows(atoms, core)
    chip_a, r0, c0 = position(a, hw)
    chip_b, r1, c1 = position(b, hw)
    inside = chip_a == chip_b
    hops = np.abs(r1 - r0) + np.abs(c1 - c0)
    local = spikes[inside]
    load = link_loads(a, b, spikes, hw)
    limit = hw.chip.link_spikes_per_step
    report = {
        "cores_used": int(used.size),
        "chips_used": int(np.unique(position(used, hw)[0]).size),
        "utilisation_percent": {
            name: {"max": round(float(share[:, j].max(initial=0.0)), 1), "mean": round(float(share[:, j].mean()), 1)
                   if used.size else 0.0}
            for j, name in enumerate(atomsmod.RESOURCES)
        },
        "max_per_core": {"neurons": int(use[:, 0].max(initial=0)), "synapse_bytes": int(-(-use[:, 1].max(initial=0) // 8)),
                         "input_axons": int(use[:, 2].max(initial=0)), "fan_out_entries": int(use[:, 3].max(initial=0))},
        "inter_core_spikes_per_step": round(float(spikes.sum()), 4),
        "inter_chip_spikes_per_step": round(float(spikes[~inside].sum()), 4),
        "mean_hops": round(float((hops[inside] * local).sum() / local.sum()), 3) if local.sum() > 0 else 0.0,
        "max_hops": int(hops[inside][local > 0].max(initial=0)),
        "max_link_spikes_per_step": round(float(load.max(initial=0.0)), 4),
        "link_spikes_per_step_limit": limit,
        "links_over_limit": int((load > limit).sum()) if limit is not None else 0,
        "rates": atoms.rates_source,
    }
    return report


def per_core(atoms: atomsmod.Atoms, core: np.ndarray, hw: hwmod.HardwareConfig) -> list[dict]:
    """One row per used core: where it is and what it uses (synapse memory in bytes)."""
    use = atomsmod.usage(atoms, core)
    rows = []
    for c in np.flatnonzero(use[:, 0] > 0).tolist():
        chip, row, col = (int(x[0]) for x in position(np.array([c]), hw))
        pops = sorted({atoms.pops[i] for i in atoms.pop_index[core == c].tolist()})
        rows.append({"core": c, "chip": chip, "row": row, "col": col, "populations": pops,
                     "neurons": int(use[c, 0]), "synapse_bytes": int(-(-use[c, 1] // 8)),
                     "input_axons": int(use[c, 2]), "fan_out_entries": int(use[c, 3])})
    return rows
