"""Export a quantized snnc graph as a lava-dl netx HDF5 (``.net``) file that ``netx.hdf5.Network`` loads.

Only what netx can express exactly is written; anything else is refused with
a one-line :class:`NetxExportError` naming the population or projection:

- a chain ``input -> (dense | conv)*``, each projection from the previous
  population to the next, the last population being the output;
- spiking populations with reset "zero", no ``vreset``, no refractory period,
  24-bit states, one ``i_decay``/``v_decay``/``vth`` per population and
  ``bias_exp = 6`` everywhere (netx hard-codes it); ``bias_mant`` may differ
  per neuron (a per-neuron ``bias`` dataset; a 3-d layer stores it in Lava's
  (W, H, C) order, the order netx compares it in);
- dense weights that survive netx's ``optimize_weight_bits`` plus Lava's
  Dense clipping and truncation unchanged (checked by replaying both with
  :func:`netx_import.lava_dense_effective`); conv weights are written as
  effective integers, since Lava's Conv applies them raw;
- dense delays that are one value per output neuron (netx's axonal delay),
  at most 62; conv projections have no delays in snnc.

Layer 0 is an ``input`` layer of the input population's shape whose neuron
(iDecay 4096, vDecay 4096, vThMant 0) repeats its input spikes in the same
step when a spike source is connected straight to ``net.in_layer.neuron.a_in``
(u = 1 << 6 > 0); a ``flatten`` layer is inserted wherever a dense layer
follows a 3-d one. Shapes are (C, H, W) as netx expects; conv kernels are
PyTorch's (C_out, C_in/groups, kH, kW) with a trailing 1, stride, padding and
dilation in (y, x) order. See :mod:`netx_import` for how netx reads them.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from snnc.compiler import ir
from snnc.compiler.frontends.netx_import import BIAS_EXP, MAX_DELAY, STATE_BITS, lava_dense_effective

PASS_THROUGH_NEURON = {"type": "CUBA", "iDecay": 4096, "vDecay": 4096, "vThMant": 0, "refDelay": 1, "gradedSpike": False}
"""The input layer's neuron: no memory, fires whenever it receives a spike (64 > 0)."""


class NetxExportError(ValueError):
    """The graph cannot be written as a netx file; the one-line message names the node and the reason."""


def export_netx(graph: ir.Graph, path: str | Path) -> None:
    """Write the quantized ``graph`` to ``path`` as a netx ``.net`` file (atomically: temporary file, then rename)."""
    try:
        ir.check(graph, "quantized")
    except ir.IRError as exc:
        raise NetxExportError(f"graph is not a valid quantized graph: {exc}") from exc
    chain = _chain(graph)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with h5py.File(tmp, "w") as handle:
            _write(graph, chain, handle)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _chain(graph: ir.Graph) -> list[ir.Projection]:
    """The projections from the input to the output, in order; refuses anything but one straight chain."""
    if len(graph.inputs) != 1:
        raise NetxExportError(f"graph has {len(graph.inputs)} inputs; netx describes one input layer")
    chain: list[ir.Projection] = []
    current = graph.inputs[0]
    seen = {current}
    while True:
        outgoing = graph.projections_from(current)
        if not outgoing:
            break
        if len(outgoing) > 1:
            raise NetxExportError(f"population '{current}' feeds {len(outgoing)} projections; netx describes a chain")
        proj = outgoing[0]
        if len(graph.projections_into(proj.dst)) > 1 or proj.dst in seen:
            raise NetxExportError(f"population '{proj.dst}' has more than one incoming projection; netx describes a chain")
        seen.add(proj.dst)
        chain.append(proj)
        current = proj.dst
    missing = [p.name for p in graph.populations if p.name not in seen]
    if missing:
        raise NetxExportError(f"population '{missing[0]}' is not on the chain from the input; netx describes a chain")
    if not chain:
        raise NetxExportError("graph has no projection; netx needs at least one layer after the input")
    return chain


def _uniform(pop: ir.Population, key: str, values: np.ndarray) -> int:
    if np.any(values != values[0]):
        raise NetxExportError(f"population '{pop.name}': {key} differs between neurons; netx takes one value per layer")
    return int(values[0])


def _neuron(pop: ir.Population) -> tuple[dict[str, object], np.ndarray]:
    """The netx neuron group and the per-neuron bias mantissas (flat, C order) of ``pop``."""
    q = pop.quant
    assert q is not None
    reasons = []
    if not q.spiking:
        reasons.append("it does not spike (netx's LIF always does)")
    if q.reset != "zero" or pop.refractory or q.refractory or (q.vreset is not None and np.any(q.vreset)):
        reasons.append("Lava's LIF only resets to zero, without refractory period")
    if q.state_bits != STATE_BITS:
        reasons.append(f"state_bits is {q.state_bits}, Lava's LIF has {STATE_BITS}")
    if np.any((q.bias_exp != BIAS_EXP) & (q.bias_mant != 0)):
        reasons.append(f"bias_exp must be {BIAS_EXP} (netx hard-codes it), got {np.unique(q.bias_exp).tolist()}")
    if reasons:
        raise NetxExportError(f"population '{pop.name}': {'; '.join(reasons)}")
    group = {"type": "CUBA", "iDecay": _uniform(pop, "i_decay", q.i_decay), "vDecay": _uniform(pop, "v_decay", q.v_decay),
             "vThMant": _uniform(pop, "vth", q.vth), "refDelay": 1, "gradedSpike": False}
    return group, q.bias_mant.astype(np.int64)


def _dense_weight(proj: ir.Projection) -> np.ndarray:
    q = proj.quant
    assert q is not None
    effective = q.weight.astype(np.int64) << q.weight_exp
    applied = lava_dense_effective(effective)
    if applied is None or not np.array_equal(applied, effective):
        raise NetxExportError(f"projection '{proj.name}': netx's optimize_weight_bits and Lava's Dense would change "
                              f"these weights (effective range [{effective.min()}, {effective.max()}]; "
                              "mixed signs must lie in [-256, 254])")
    return effective


def _axonal_delay(proj: ir.Projection) -> np.ndarray | None:
    if proj.delay is None or not np.any(proj.delay):
        return None
    delay = proj.delay.astype(np.int64)
    if np.any(delay != delay[:, :1]):
        raise NetxExportError(f"projection '{proj.name}': delays differ within a destination neuron; netx's delay "
                              "is one value per output neuron")
    if delay.max() > MAX_DELAY:
        raise NetxExportError(f"projection '{proj.name}': delay {delay.max()} exceeds netx's maximum of {MAX_DELAY}")
    return delay[:, 0]


def _write(graph: ir.Graph, chain: list[ir.Projection], handle: h5py.File) -> None:
    layers = handle.create_group("layer")
    source = graph.population(graph.inputs[0])
    index = 0

    def new_layer(kind: str) -> h5py.Group:
        nonlocal index
        group = layers.create_group(str(index))
        group.create_dataset("type", (1,), "S10", [kind.encode("ascii")])
        index += 1
        return group

    def put_neuron(group: h5py.Group, params: dict[str, object]) -> None:
        for key, value in params.items():
            group.create_dataset(f"neuron/{key}", data=np.bytes_(value) if isinstance(value, str) else value)

    layer = new_layer("input")
    layer.create_dataset("shape", data=np.asarray(source.shape, dtype=np.int64))
    put_neuron(layer, PASS_THROUGH_NEURON)
    previous = source
    for proj in chain:
        pop = graph.population(proj.dst)
        params, bias = _neuron(pop)
        if proj.kind == "dense":
            weight = _dense_weight(proj)
            delay = _axonal_delay(proj)
            if len(previous.shape) == 3:
                new_layer("flatten")
            layer = new_layer("dense")
            layer.create_dataset("shape", data=np.asarray([pop.size], dtype=np.int64))
            layer.create_dataset("weight", data=weight)
            if delay is not None:
                layer.create_dataset("delay", data=delay)
            if np.any(bias):
                layer.create_dataset("bias", data=bias)
        elif proj.kind == "conv":
            spec = proj.conv
            assert spec is not None and proj.quant is not None
            if len(previous.shape) != 3 or tuple(previous.shape) != tuple(spec.in_shape):
                raise NetxExportError(f"projection '{proj.name}': netx convolves a (C, H, W) layer; source "
                                      f"'{previous.name}' has shape {previous.shape}, the conv expects {spec.in_shape}")
            weight = proj.quant.weight.astype(np.int64) << proj.quant.weight_exp
            layer = new_layer("conv")
            layer.create_dataset("shape", data=np.asarray(spec.out_shape, dtype=np.int64))
            layer.create_dataset("weight", data=weight[..., None])
            layer.create_dataset("kernelSize", data=np.asarray(weight.shape[2:], dtype=np.int64))
            for key, value in (("stride", spec.stride), ("padding", spec.padding), ("dilation", spec.dilation)):
                layer.create_dataset(key, data=np.asarray(value, dtype=np.int64))
            layer.create_dataset("groups", data=spec.groups)
            layer.create_dataset("inChannels", data=spec.in_shape[0])
            layer.create_dataset("outChannels", data=spec.out_shape[0])
            if np.any(bias):
                layer.create_dataset("bias", data=bias.reshape(spec.out_shape).transpose(2, 1, 0))
            pop = ir.replace(pop, shape=tuple(spec.out_shape))
        else:
            raise NetxExportError(f"projection '{proj.name}': {proj.kind} projections have no netx layer (dense, conv)")
        put_neuron(layer, params)
        previous = pop
    handle.create_dataset("simulation/Ts", data=graph.dt * 1e3)
