"""Partition pass: give every on-chip neuron a core so that each core meets every limit and few spikes cross cores.

The algorithms are in ``compiler/partitioner.py``; ``graph.meta["placer"]``
selects one ("metis", the default, or "greedy"). The pass writes each
population's ``placement`` as logical core numbers 0..cores-1 (the place
pass maps them onto the mesh) and records the cores used and the traffic of
both partitioners in ``graph.meta["partition"]``. It fails with the rule,
the layer and required vs available when the cores of all chips are not
enough.
"""

from __future__ import annotations

import numpy as np

from snnc.compiler import atoms as atomsmod
from snnc.compiler import hw as hwmod
from snnc.compiler import ir, partitioner, resources


def _check_total(atoms: atomsmod.Atoms, core: np.ndarray, hw: hwmod.HardwareConfig) -> None:
    used, total = int(core.max(initial=-1)) + 1, hw.chip.cores * hw.chip.chips
    per_pop = np.bincount(atoms.pop_index, weights=atoms.size, minlength=len(atoms.pops))
    largest = atoms.pops[int(np.argmax(per_pop))] if atoms.pops else ""
    if total == 1:  # every atom is on the one core: whichever total exceeds a limit is the error
        need = atomsmod.usage(atoms, core, n_cores=1)[0]
        if np.all(need <= atoms.limits):
            return
        rule, required, available = atomsmod.binding_limit(need, atoms.limits)
        raise resources.ResourceError(resources.Finding(
            "error", rule, largest, required, available,
            f"{hw.name} has a single core; shrink the network (its largest layer is '{largest}') or reduce weight "
            "bits", hw.source))
    if used <= total:
        return
    chips = -(-used // hw.chip.cores)
    raise resources.ResourceError(resources.Finding(
        "error", "chip.cores", largest, used, total,
        f"split layer '{largest}' across {chips:,} chips (needs {used:,} cores, a chip has {hw.chip.cores:,}; "
        "set chip.chips in a copy of the hardware description, --hw) or reduce weight bits", hw.source))


def run(graph: ir.Graph, hw: hwmod.HardwareConfig) -> ir.Graph:
    """Every on-chip population gets ``placement``: a logical core per neuron, each core within every limit."""
    atoms = atomsmod.build(graph, hw)
    core, summary = partitioner.partition(atoms, hw, str(graph.meta.get("placer", "metis")))
    _check_total(atoms, core, hw)
    pops = []
    for pop in graph.populations:
        if pop.name not in atoms.pops:
            pops.append(pop)
            continue
        mine = atoms.atoms_of(pop.name)
        placement = np.repeat(core[mine], atoms.size[mine]).astype(np.int32)
        pops.append(ir.replace(pop, placement=placement))
    return ir.replace(graph, populations=tuple(pops), meta={**graph.meta, "partition": summary})
