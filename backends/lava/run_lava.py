#!/usr/bin/env python3
"""Rebuild an snnc network as a Lava process graph and run it (standalone: needs only numpy, scipy and lava-nc).

This file is copied verbatim into every ``--target loihi2`` artifact, next to
``network.json`` and ``network.npz``, which describe the processes. snnc
runs it in a subprocess (so a hanging Lava cannot hang snnc); a Loihi user
can run it in their own Lava environment::

    python run_lava.py ARTIFACT_DIR --stimulus stim.npz --output result.npz [--steps T] [--record-state]
    python run_lava.py ARTIFACT_DIR --stimulus stim.npz --output result.npz --loihi2-hw   # needs lava-loihi

The stimulus holds one 0/1 array per input population, (T, N) or (B, T, N),
neurons in C order. The result holds ``spikes/<population>`` (B, T, N) and,
where recorded, ``v/<population>`` and ``u/<population>``; row t is Lava's
``time_step`` t + 1. Errors print one line, ``run_lava: error: ...``, and
exit 1.

Processes: ``io.source.RingBuffer`` per input population, ``LIF`` per
segment of a population (a population is split where its du, dv or vth
differ, since Lava's LIF holds them as scalars), ``Dense`` / ``DelayDense`` /
``Sparse`` / ``DelaySparse`` / ``Conv`` per connection, a ``Monitor`` per
probed port or variable. Run configuration: ``Loihi2SimCfg(select_tag="fixed_pt")``
(bit-accurate CPU models), or ``Loihi2HwCfg()`` with ``--loihi2-hw``.

Python 3.11: lava-nc 0.10.0 declares Python < 3.11 and its
``lava/magma/compiler/var_model.py`` has eight dataclass fields whose default
is a mutable ``ByteEncoder()`` instance, which Python 3.11 rejects at import.
:func:`install_compat` registers an import hook that compiles that one module
with ``field(default_factory=ByteEncoder)`` instead; the installed files are
never modified. On Python 3.10 (or a fixed Lava) the hook does nothing.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import importlib.util
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

VAR_MODEL = "lava.magma.compiler.var_model"
_MUTABLE_DEFAULT = re.compile(r"^(\s+\w+: ByteEncoder) = ByteEncoder\(\)\s*$", re.MULTILINE)
EXPECTED_FIXES = 8


class CompatError(RuntimeError):
    """The Lava sources do not look like the lava-nc 0.10.0 this fix was written for."""


def patch_var_model(source: str) -> tuple[str, int]:
    """``source`` of var_model.py with the mutable ByteEncoder defaults turned into default factories.

    Returns (new source, number of fields fixed): 8 on lava-nc 0.10.0, 0 on a
    source that is already fixed; anything else raises CompatError.
    """
    fixed, count = _MUTABLE_DEFAULT.subn(r"\1 = field(default_factory=ByteEncoder)", source)
    if count == 0:
        return source, 0
    if count != EXPECTED_FIXES:
        raise CompatError(f"{VAR_MODEL}: expected {EXPECTED_FIXES} mutable ByteEncoder defaults, found {count}")
    fixed, imports = re.subn(r"^from dataclasses import (.*)$", r"from dataclasses import field, \1", fixed,
                             count=1, flags=re.MULTILINE)
    if imports != 1:
        raise CompatError(f"{VAR_MODEL}: no 'from dataclasses import ...' line to extend")
    return fixed, count


class _PatchedLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname):  # noqa: ANN001 - importlib's signature
        source = self.get_data(self.path).decode("utf-8")
        return compile(patch_var_model(source)[0], self.path, "exec", dont_inherit=True)


class _VarModelFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):  # noqa: ANN001 - importlib's signature
        if fullname != VAR_MODEL:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None:
            return None
        return importlib.util.spec_from_file_location(fullname, spec.origin,
                                                      loader=_PatchedLoader(fullname, spec.origin))


def install_compat() -> None:
    """Make ``import lava`` work on Python 3.11 (idempotent; no-op before 3.11)."""
    if sys.version_info < (3, 11) or any(isinstance(f, _VarModelFinder) for f in sys.meta_path):
        return
    if VAR_MODEL in sys.modules:
        return
    sys.meta_path.insert(0, _VarModelFinder())


# --------------------------------------------------------------------------- building the process graph


def _load_description(artifact: Path) -> tuple[dict, dict[str, np.ndarray]]:
    description = json.loads((artifact / "network.json").read_text())
    if description.get("format") != "snnc-lava-network" or description.get("version") != 1:
        raise ValueError(f"{artifact / 'network.json'}: not an snnc Lava network description (version 1)")
    with np.load(artifact / "network.npz", allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    return description, arrays


def _flat_view(port, segment: dict):
    """An out port as a flat vector in snnc's C order (3-D segments are (W, H, C) in Lava)."""
    return port.transpose([2, 1, 0]).flatten() if len(segment["lava_shape"]) == 3 else port


def _shaped_for(port, segment: dict):
    """A flat out port reshaped to feed a 3-D (W, H, C) segment."""
    if len(segment["lava_shape"]) != 3:
        return port
    w, h, c = segment["lava_shape"]
    return port.reshape((c, h, w)).transpose([2, 1, 0])


def _to_lava_layout(flat: np.ndarray, segment: dict) -> np.ndarray:
    """Per-neuron values in snnc order (N, ...) -> the segment's Lava shape (+ trailing dims)."""
    if len(segment["lava_shape"]) != 3:
        return flat
    w, h, c = segment["lava_shape"]
    return flat.reshape((c, h, w) + flat.shape[1:]).transpose((2, 1, 0) + tuple(range(3, flat.ndim + 2)))


def _from_lava_layout(data: np.ndarray, segment: dict) -> np.ndarray:
    """Monitor data (T, *lava_shape) -> (T, n) in snnc order."""
    data = np.asarray(data)
    if len(segment["lava_shape"]) == 3:
        data = data.transpose(0, 3, 2, 1)
    return data.reshape(data.shape[0], -1)


def _build(description: dict, arrays: dict[str, np.ndarray], stimulus: dict[str, np.ndarray], steps: int,
           record_state: bool, probe_steps: int):
    """Create every process, fed the first sample; returns (processes by segment id, probes, state Vars)."""
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import DelayDense, Dense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    from lava.proc.monitor.process import Monitor
    from lava.proc.sparse.process import DelaySparse, Sparse
    from scipy.sparse import csr_matrix

    procs = {}
    segments = {}
    probes = []
    state = []  # (segment id, Var) of every state a new sample must start from zero: u, v and synaptic buffers
    for pop in description["populations"]:
        for seg in pop["segments"]:
            segments[seg["id"]] = seg
            if pop["kind"] == "input":
                data = stimulus[pop["name"]][0, :steps].T.astype(np.int32)  # (N, T) of sample 0
                procs[seg["id"]] = RingBuffer(data=_to_lava_layout(data, seg))
                continue
            bias_mant = _to_lava_layout(arrays[seg["bias_mant"]], seg)
            bias_exp = _to_lava_layout(arrays[seg["bias_exp"]], seg)
            lif = LIF(shape=tuple(seg["lava_shape"]), du=seg["du"], dv=seg["dv"], vth=seg["vth"],
                      bias_mant=bias_mant, bias_exp=bias_exp, name=seg["id"])
            procs[seg["id"]] = lif
            state += [(seg["id"], lif.u), (seg["id"], lif.v)]
            wanted = ["s_out"]
            if record_state:
                wanted += ["u", "v"]
            elif not pop["spiking"]:
                wanted += ["v"]
            for var in wanted:
                monitor = Monitor()
                target = lif.s_out if var == "s_out" else getattr(lif, var)
                monitor.probe(target=target, num_steps=probe_steps)
                probes.append((pop["name"], seg, var, monitor, target))
    for conn in description["connections"]:
        src, dst = segments[conn["src"]], segments[conn["dst"]]
        kind = conn["kind"]
        common = {"name": conn["id"]}
        if kind == "conv":
            proc = Conv(weight=arrays[conn["weight"]], input_shape=tuple(src["lava_shape"]),
                        stride=tuple(conn["stride"]), padding=tuple(conn["padding"]),
                        dilation=tuple(conn["dilation"]), groups=conn["groups"], **common)
            procs[conn["src"]].s_out.connect(proc.s_in)
            proc.a_out.connect(procs[conn["dst"]].a_in)
            state.append((conn["dst"], proc.a_buf))
            continue
        params = {"weight_exp": conn["weight_exp"], "num_weight_bits": conn["num_weight_bits"], **common}
        if kind in ("dense", "delay_dense"):
            weights = arrays[conn["weight"]]
            if kind == "dense":
                proc = Dense(weights=weights, **params)
            else:
                proc = DelayDense(weights=weights, delays=arrays[conn["delay"]], max_delay=conn["max_delay"],
                                  **params)
        else:
            shape = (conn["n_dst"], conn["n_src"])
            rows, cols = arrays[conn["rows"]], arrays[conn["cols"]]
            weights = csr_matrix((arrays[conn["weight"]], (rows, cols)), shape=shape)
            if kind == "sparse":
                proc = Sparse(weights=weights, **params)
            else:
                delays = csr_matrix((arrays[conn["delay"]], (rows, cols)), shape=shape)
                proc = DelaySparse(weights=weights, delays=delays, max_delay=conn["max_delay"], **params)
        _flat_view(procs[conn["src"]].s_out, src).connect(proc.s_in)
        _shaped_for(proc.a_out, dst).connect(procs[conn["dst"]].a_in)
        state.append((conn["dst"], proc.a_buff))
    return procs, probes, state


def _components(description: dict) -> list[list[str]]:
    """Segment ids grouped by connected component (Lava compiles only what ``run`` can reach)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for pop in description["populations"]:
        for seg in pop["segments"]:
            parent[seg["id"]] = seg["id"]
    for conn in description["connections"]:
        parent[find(conn["src"])] = find(conn["dst"])
    groups: dict[str, list[str]] = {}
    for seg_id in parent:
        groups.setdefault(find(seg_id), []).append(seg_id)
    return list(groups.values())


def _run_config(hardware: bool):
    if hardware:
        from lava.magma.core.run_configs import Loihi2HwCfg

        return Loihi2HwCfg()
    from lava.magma.core.run_configs import Loihi2SimCfg

    return Loihi2SimCfg(select_tag="fixed_pt")


def run_samples(description: dict, arrays: dict[str, np.ndarray], stimulus: dict[str, np.ndarray], steps: int,
                record_state: bool, hardware: bool = False) -> dict[str, np.ndarray]:
    """Run every sample of ``stimulus`` ({input: (B, T, N)}) through one process graph.

    The graph is built and compiled once; before each later sample, u, v and
    every synaptic buffer are set back to 0 and the RingBuffers get the
    sample's spikes, so each sample starts from the same state as a fresh
    graph. Returns {"spikes/<pop>"/"u/<pop>"/"v/<pop>": (B, T, N)} in snnc's
    neuron order, plus "time/run_s" (seconds inside Lava's ``run()``).
    """
    from lava.magma.core.run_conditions import RunSteps

    batch = next(iter(stimulus.values())).shape[0] if stimulus else 1
    procs, probes, state = _build(description, arrays, stimulus, steps, record_state, probe_steps=batch * steps)
    sizes = {pop["name"]: pop["size"] for pop in description["populations"]}
    out: dict[str, np.ndarray] = {}
    for pop in description["populations"]:
        if pop["kind"] == "input":
            out[f"spikes/{pop['name']}"] = stimulus[pop["name"]][:, :steps].astype(bool)
        else:
            out[f"spikes/{pop['name']}"] = np.zeros((batch, steps, pop["size"]), dtype=bool)
    run_s = 0.0
    data: dict[int, np.ndarray] = {}
    inputs = {seg["id"]: (pop["name"], seg) for pop in description["populations"] if pop["kind"] == "input"
              for seg in pop["segments"]}
    probed = {p[1]["id"] for p in probes}
    for component in _components(description):
        members = set(component)
        lif_ids = [seg_id for seg_id in component if seg_id in probed]
        if not lif_ids:  # inputs that feed nothing: nothing to simulate
            continue
        anchor = procs[lif_ids[0]]
        try:
            for b in range(batch):
                if b:
                    for owner, var in state:
                        if owner in members:
                            var.set(np.zeros(var.shape, dtype=np.int32))
                    for seg_id in members & set(inputs):
                        name, seg = inputs[seg_id]
                        sample = stimulus[name][b, :steps].T.astype(np.int32)
                        procs[seg_id].data.set(_to_lava_layout(sample, seg))
                start = time.perf_counter()
                anchor.run(condition=RunSteps(num_steps=steps), run_cfg=_run_config(hardware))
                run_s += time.perf_counter() - start
            for index, (_, seg, _, monitor, target) in enumerate(probes):
                if seg["id"] in members:
                    data[index] = monitor.get_data()[target.process.name][target.name]
        finally:
            anchor.stop()
    for index, (name, seg, var, _, _) in enumerate(probes):
        values = _from_lava_layout(data[index], seg).reshape(batch, steps, -1)
        key = f"{'spikes' if var == 's_out' else var}/{name}"
        if key not in out:
            out[key] = np.zeros((batch, steps, sizes[name]), dtype=np.int64)
        index_key = seg.get("index")
        columns = arrays[index_key] if index_key else slice(None)
        out[key][:, :, columns] = values != 0 if var == "s_out" else np.rint(values).astype(np.int64)
    for pop in description["populations"]:
        spikes = out[f"spikes/{pop['name']}"]
        if pop["kind"] != "input" and not pop["spiking"] and spikes.any():
            b, t, n = np.argwhere(spikes)[0]
            raise RuntimeError(f"population '{pop['name']}' is non-spiking, but its Lava LIF spiked (sample {b}, "
                               f"neuron {n}, step {t}): v exceeded the largest threshold 131071 << 6")
    out["time/run_s"] = np.array(run_s)
    return out


def run(artifact: Path, stimulus: dict[str, np.ndarray], steps: int, record_state: bool,
        hardware: bool = False) -> dict[str, np.ndarray]:
    """Run every sample of ``stimulus`` (arrays (B, T, N)) from ``artifact``; see :func:`run_samples`."""
    install_compat()
    description, arrays = _load_description(artifact)
    return run_samples(description, arrays, {name: np.asarray(arr) for name, arr in stimulus.items()}, steps,
                       record_state, hardware)


def _read_stimulus(path: Path, description: dict) -> tuple[dict[str, np.ndarray], int]:
    """The stimulus as {input: bool (B, T, N)} and its length; (T, N) arrays become one sample."""
    with np.load(path, allow_pickle=False) as npz:
        stimulus = {key: npz[key] for key in npz.files if key != "labels"}
    lengths = set()
    for pop in description["populations"]:
        if pop["kind"] != "input":
            continue
        if pop["name"] not in stimulus:
            raise ValueError(f"{path}: no array for input population '{pop['name']}'")
        arr = stimulus[pop["name"]]
        if arr.ndim not in (2, 3) or arr.shape[-1] != pop["size"]:
            raise ValueError(f"{path}: '{pop['name']}' has shape {arr.shape}, expected (T, {pop['size']}) "
                             f"or (B, T, {pop['size']})")
        stimulus[pop["name"]] = (arr[None] if arr.ndim == 2 else arr) != 0
        lengths.add(arr.shape[-2])
    return stimulus, max(lengths) if lengths else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_lava", description="Run an snnc network in Lava.")
    parser.add_argument("artifact", type=Path, help="directory holding network.json and network.npz")
    parser.add_argument("--stimulus", type=Path, required=True, help=".npz with one 0/1 array per input population")
    parser.add_argument("--output", type=Path, required=True, help="result .npz to write")
    parser.add_argument("--steps", type=int, help="number of steps (default: the stimulus length)")
    parser.add_argument("--record-state", action="store_true", help="also record u and v of every population")
    parser.add_argument("--loihi2-hw", action="store_true", help="run on Loihi 2 (Loihi2HwCfg; needs lava-loihi)")
    args = parser.parse_args(argv)
    try:
        description, _ = _load_description(args.artifact)
        stimulus, length = _read_stimulus(args.stimulus, description)
        steps = args.steps or length
        for name, arr in stimulus.items():
            if arr.shape[1] < steps:
                stimulus[name] = np.concatenate(
                    [arr, np.zeros((arr.shape[0], steps - arr.shape[1], arr.shape[2]), dtype=bool)], axis=1)
        result = run(args.artifact, stimulus, steps, args.record_state, args.loihi2_hw)
        tmp = args.output.with_name(args.output.name + ".tmp.npz")
        np.savez_compressed(tmp, **result)
        tmp.replace(args.output)
    except Exception as exc:  # one line for whoever called us
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"run_lava: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
