"""The ``snnc`` command line.

Every error is one line on stderr (``snnc: error: ...``) and a non-zero exit
code; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from snnc import __version__

EXIT_ERROR = 1
EXIT_USAGE = 2


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
    print(f"snnc: warning: {_one_line(message)}", file=sys.stderr)


class Output:
    """Where a command's results go: text on stdout, or JSON (``--json``: stdout, ``--json FILE``: a file).

    ``--quiet`` drops the text (and progress bars); errors still reach stderr. With JSON on stdout the text is
    dropped too, so the output parses.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.quiet = bool(getattr(args, "quiet", False))
        self.json_target = getattr(args, "json", None)
        self.payload: dict[str, Any] = {}

    def text(self, message: str) -> None:
        if not self.quiet and self.json_target != "-":
            print(message)

    def result(self, **fields: Any) -> None:
        """Add ``fields`` to the JSON result."""
        self.payload.update(fields)

    def finish(self) -> None:
        if not self.json_target:
            return
        text = json.dumps(self.payload, indent=2, default=_jsonable) + "\n"
        if self.json_target == "-":
            sys.stdout.write(text)
            return
        out = Path(self.json_target)
        out.parent.mkdir(parents=True, exist_ok=True)
        staged = out.with_name(f".{out.name}.partial")
        staged.write_text(text)
        staged.replace(out)
        self.text(f"wrote {out}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _cmd_targets(args: argparse.Namespace, out: Output) -> int:
    from snnc import targets

    rows = [(t.name, t.backend, t.hw, targets.status(t), t.summary) for t in targets.TARGETS.values()]
    header = ("target", "backend", "hw config", "status", "what")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    out.text("\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]))
    out.result(targets=[dict(zip(("target", "backend", "hw", "status", "summary"), row)) for row in rows])
    return 0


def _cmd_compile(args: argparse.Namespace, out: Output) -> int:
    from snnc import api
    from snnc.runtime import quant_report

    artifact = api.compile(args.model, target=args.target, hw=args.hw, out_dir=args.output,
                           dt=args.dt, reset=args.reset, dump_ir=args.dump_ir, calibration=args.calibration,
                           weight_bits=args.weight_bits, per_channel=args.per_channel, quant_config=args.quant_config,
                           stimuli=args.stimuli, bitstream=not args.no_bitstream)
    graph = artifact.graph
    neurons = sum(p.size for p in graph.populations if p.model != "input")
    synapses = sum(p.synapse_count for p in graph.projections)
    out.text(f"compiled {args.model} for {args.target}: {len(graph.populations)} populations, "
             f"{neurons:,} neurons, {synapses:,} synapses, dt={graph.dt:g} s -> {artifact.path}")
    out.result(model=str(args.model), target=args.target, artifact=str(artifact.path),
               populations=len(graph.populations), neurons=neurons, synapses=synapses, dt=graph.dt)
    if args.dump_ir:
        out.text(f"IR dumps after every pass in {args.dump_ir}")
    report_path = Path(artifact.path) / quant_report.REPORT_FILE
    if args.stimuli or args.calibration:
        report = json.loads(report_path.read_text())
        out.text(quant_report.format_table(report))
        out.text(f"quantization report in {report_path}")
        out.result(quant_report=report)
    return 0


def _cmd_check(args: argparse.Namespace, out: Output) -> int:
    from snnc import api
    from snnc.compiler import resources

    result = api.check(args.model, target=args.target, hw=args.hw, dt=args.dt, reset=args.reset,
                       calibration=args.calibration, weight_bits=args.weight_bits, per_channel=args.per_channel,
                       quant_config=args.quant_config)
    out.text(resources.format_check(result))
    for finding in result.errors:
        print(f"snnc: does not fit: {finding.message()}", file=sys.stderr)
    out.result(target=result.target, fits=result.fits,
               resources=[{"resource": r.resource, "used": r.used, "available": r.available} for r in result.rows],
               errors=[f.message() for f in result.errors], warnings=[f.message() for f in result.warnings])
    return 0 if result.fits else EXIT_ERROR


def _cmd_run(args: argparse.Namespace, out: Output) -> int:
    from snnc.runtime import execute, quant_report

    artifact = execute.load(args.artifact)
    stimulus = execute.read_stimulus(args.input)
    graph = artifact.graph
    if args.batch_size is not None:
        result = execute.run_batches(artifact, stimulus, args.batch_size, steps=args.steps,
                                     record_state=args.record_state)
    else:
        result = artifact.run(stimulus, steps=args.steps, record_state=args.record_state)
    if args.output:
        execute.write_result(args.output, result)
    outputs = {}
    for name in graph.outputs:
        raster = result[name]
        kind = "spikes" if raster.v is None or raster.spikes.any() else "v trace"
        out.text(f"{name}: {int(raster.spikes.sum()):,} spikes over {raster.steps} steps ({kind})")
        outputs[name] = {"spikes": int(raster.spikes.sum()), "steps": raster.steps}
    out.result(artifact=str(args.artifact), outputs=outputs)
    labels = execute.read_labels(args.input)
    if labels is not None:
        readout = quant_report.default_readout(graph)
        predicted = quant_report.predictions(result, graph.outputs[0], readout)
        if predicted.shape != labels.shape:
            raise ValueError(f"{args.input}: {labels.shape[0]} labels for {predicted.size} samples")
        accuracy = float((predicted == labels).mean())
        out.text(f"accuracy: {accuracy:.1%} on {labels.size:,} samples "
                 f"({'most output spikes' if readout == 'spikes' else 'largest final output v'})")
        out.result(accuracy=accuracy, samples=int(labels.size))
    if args.output:
        out.text(f"wrote {args.output}")
        out.result(output=str(args.output))
    return 0


def _stimuli_option(spec: str | None) -> tuple[dict[str, np.ndarray] | None, np.ndarray | None, int]:
    """``--stimuli N|FILE`` -> (stimulus and labels from FILE, or None for random ones; N, default 4)."""
    from snnc.runtime import execute, verify

    if spec is None or spec.isdigit():
        return None, None, verify.DEFAULT_SAMPLES if spec is None else int(spec)
    return execute.read_stimulus(spec), execute.read_labels(spec), verify.DEFAULT_SAMPLES


def _cmd_verify(args: argparse.Namespace, out: Output) -> int:
    """An artifact directory: compare it with ``--against``; a model file: the pass/fail matrix over ``--targets``."""
    from snnc.runtime import verify

    stimulus, labels, samples = _stimuli_option(args.stimuli)
    path = Path(args.artifact)
    if (path / "manifest.json").is_file():
        if args.targets is not None:
            raise ValueError(f"{path} is a compiled artifact: --targets applies to model files (use --against)")
        if args.workers != 1 or args.address:
            raise ValueError(f"{path} is a compiled artifact: --workers and --address apply to model files (the matrix)")
        comparison = verify.verify_artifact(path, against=args.against, stimulus=stimulus, steps=args.steps,
                                            samples=samples, seed=args.seed, mode=args.mode, tolerance=args.tolerance,
                                            labels=labels)
        out.text(verify.format_comparison(comparison, str(args.artifact), args.against))
        out.result(artifact=str(path), against=args.against, passed=comparison.passed,
                   comparison=comparison.to_json())
        return 0 if comparison.passed else EXIT_ERROR
    if path.is_dir():
        raise ValueError(f"{path}: a directory without manifest.json is not a compiled artifact")
    if not path.is_file():
        raise ValueError(f"{path}: no such model file or artifact directory")
    names = verify.parse_targets(args.targets)
    rows = verify.verify_matrix(path, names, stimulus=stimulus, steps=args.steps, samples=samples, seed=args.seed,
                                mode=args.mode, tolerance=args.tolerance, labels=labels, bitstream=args.bitstream,
                                workers=args.workers, address=args.address)
    out.text(verify.format_matrix(rows))
    out.result(model=str(path), mode=args.mode, tolerance=args.tolerance, targets=[row.to_json() for row in rows])
    return EXIT_ERROR if any(row.failed for row in rows) else 0


def _cmd_fuzz(args: argparse.Namespace, out: Output) -> int:
    from snnc.runtime import fuzz, verify

    minutes = args.minutes if args.minutes is not None or args.max_examples is not None else 1.0
    names = None if args.targets is None else verify.parse_targets(args.targets)
    try:
        result = fuzz.fuzz(minutes, max_examples=args.max_examples, targets=names, seed=args.seed, out_dir=args.out)
    except ImportError as exc:  # hypothesis missing: a user error, not an internal one
        raise ValueError(str(exc)) from exc
    out.text(fuzz.format_result(result))
    failure = result.failure
    out.result(passed=result.passed, examples=result.examples, seconds=result.seconds, seed=result.seed,
               targets={name: counts.__dict__ for name, counts in result.per_target.items()}, notes=result.notes,
               failure=None if failure is None else {
                   "target": failure.target, "message": failure.message, "model": str(failure.model_path),
                   "stimulus": str(failure.stimulus_path), "graph": str(failure.graph_path),
                   "replay": failure.replay_command, "reproduced": failure.reproduced})
    return 0 if result.passed else EXIT_ERROR


def _cmd_report(args: argparse.Namespace, out: Output) -> int:
    from snnc.runtime import report

    path = report.write_report(args.artifact, args.output, stimuli=args.stimuli, samples=args.samples,
                               steps=args.steps, seed=args.seed, verify_json=args.verify_json)
    out.text(f"wrote {path}")
    out.result(artifact=str(args.artifact), html=str(path))
    return 0


def _cmd_hil(args: argparse.Namespace, out: Output) -> int:
    from snnc.runtime import hil

    stimulus, _, samples = _stimuli_option(args.stimuli)
    with hil.open_board(args.artifact, args.port, baudrate=args.baud, timeout=args.timeout,
                        retries=args.retries) as board:
        result = hil.verify_on_board(board, stimulus, samples=samples, steps=args.steps, seed=args.seed)
    out.text(hil.format_hil(result, str(args.artifact)))
    out.result(artifact=str(args.artifact), **result.to_json())
    return 0 if result.comparison.passed else EXIT_ERROR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="snnc", description="Compile trained SNNs for neuromorphic targets.")
    parser.add_argument("--version", action="version", version=f"snnc {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors (no progress bars)")
    common.add_argument("--json", nargs="?", const="-", metavar="FILE",
                        help="write the result as JSON: to stdout (no text then), or to FILE")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    sub = _Subcommands(parser.add_subparsers(dest="command", metavar="COMMAND"), common)

    p = sub.add_parser("targets", help="list the targets and whether they are usable here")
    p.set_defaults(func=_cmd_targets)

    p = sub.add_parser("compile", help="compile a model for a target")
    p.add_argument("model", help="model file (.nir, .onnx, or an snnc graph .npz)")
    p.add_argument("--target", "-t", default="cpu", help="target name (see `snnc targets`), default cpu")
    p.add_argument("--hw", help="hardware description YAML overriding the target's bundled one")
    p.add_argument("--output", "-o", required=True, help="artifact directory to write")
    p.add_argument("--dt", type=float,
                   help="time step in seconds (NIR: default file metadata, else 1e-4; ONNX: default 1e-3)")
    p.add_argument("--reset", choices=("zero", "subtract", "none"),
                   help="reset mode of spiking neurons (NIR: default file metadata, else zero; ONNX: default subtract)")
    p.add_argument("--dump-ir", metavar="DIR", help="write a readable IR dump after every pass into DIR")
    p.add_argument("--calibration", metavar="FILE",
                   help="for .onnx models: .npz with typical inputs (B, ...) named like the ONNX input, or 'input'; "
                        "sets each layer's firing-rate scale (without it, worst-case scales cost accuracy)")
    p.add_argument("--weight-bits", type=int, metavar="N",
                   help="weight mantissa bits, 1..8 and at most the target's numerics.weight_bits (default: that)")
    p.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=None,
                   help="one scale per output channel instead of per layer (default: the target's "
                        "numerics.per_channel_scales)")
    p.add_argument("--quant-config", metavar="FILE",
                   help="YAML with weight_bits, per_channel and per-layer overrides "
                        "(layers: {fc1: {weight_bits: 4}, conv2: {per_channel: false}})")
    p.add_argument("--stimuli", metavar="FILE",
                   help="stimulus .npz (0/1 spikes per input population, optional labels) to calibrate state "
                        "ranges and write DIR/quant_report.json (for .onnx, --calibration inputs are rate-coded instead)")
    p.add_argument("--no-bitstream", action="store_true",
                   help="FPGA targets: stop after the Verilog and memory images (no synthesis, place and route)")
    p.set_defaults(func=_cmd_compile)

    p = sub.add_parser("check", help="check whether a model fits a target's cores, memory and axons")
    p.add_argument("model", help="model file (.nir, .onnx, or an snnc graph .npz)")
    p.add_argument("--target", "-t", default="cpu", help="target name (see `snnc targets`), default cpu")
    p.add_argument("--hw", help="hardware description YAML overriding the target's bundled one")
    p.add_argument("--dt", type=float, help="time step in seconds, as for compile")
    p.add_argument("--reset", choices=("zero", "subtract", "none"), help="reset mode of spiking neurons, as for compile")
    p.add_argument("--calibration", metavar="FILE", help="for .onnx models: typical inputs, as for compile")
    p.add_argument("--weight-bits", type=int, metavar="N", help="weight mantissa bits, as for compile")
    p.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=None,
                   help="one scale per output channel, as for compile")
    p.add_argument("--quant-config", metavar="FILE", help="quantization YAML, as for compile")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("run", help="run a compiled artifact on a stimulus")
    p.add_argument("artifact", help="artifact directory from `snnc compile`")
    p.add_argument("--input", "-i", required=True, help="stimulus .npz: one 0/1 array per input population")
    p.add_argument("--output", "-o", help="result .npz (spikes/<population>, v/<population>); omit to only evaluate")
    p.add_argument("--steps", type=int, help="number of steps (default: the stimulus length)")
    p.add_argument("--record-state", action="store_true", help="also record u and v of every population")
    p.add_argument("--batch-size", "-b", type=int, metavar="B",
                   help="run a data set (B, T, ...) in chunks of B samples, with a progress bar")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("verify", help="prove compiled targets spike like the CPU reference (one artifact, or a "
                                      "model across targets as a pass/fail matrix)")
    p.add_argument("artifact", metavar="MODEL_OR_DIR",
                   help="artifact directory from `snnc compile` (checked against --against), or a model file "
                        "(.nir, .onnx, .npz graph) compiled for every --targets entry")
    p.add_argument("--against", default="cpu", help="artifact directory: reference target (default cpu)")
    p.add_argument("--targets", metavar="T1,T2",
                   help="model file: comma-separated targets (default: every target `snnc targets` lists as ready)")
    p.add_argument("--stimuli", metavar="N|FILE",
                   help="number of random stimuli (default 4) or a stimulus .npz (its labels feed statistical mode)")
    p.add_argument("--steps", type=int, help="steps per stimulus (default: the file's length, or 50 for random)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random stimuli (default 0)")
    p.add_argument("--mode", choices=("exact", "bounded", "statistical"), default="exact",
                   help="exact: every spike, u and v; bounded: each spike within +-TOLERANCE steps; statistical: "
                        "firing rates within a relative TOLERANCE (and accuracy within 1 point with labels)")
    p.add_argument("--tolerance", type=float, metavar="K",
                   help="bounded: steps (default 1); statistical: relative rate difference (default 0.05)")
    p.add_argument("--bitstream", action="store_true",
                   help="model file: FPGA targets also synthesize a bitstream (slow; off by default since the RTL "
                        "simulation runs the Verilog either way)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="model file: verify the targets in parallel on a local Dask cluster of N worker processes")
    p.add_argument("--address", metavar="tcp://HOST:PORT",
                   help="model file: run on an existing Dask scheduler instead of a local cluster")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("fuzz", help="run random networks through every target against the CPU reference; save a "
                                    "shrunk failing case (.nir + stimulus) that `snnc verify` replays")
    p.add_argument("--minutes", type=float, metavar="M", help="time budget (default 1 unless --max-examples is given)")
    p.add_argument("--max-examples", type=int, metavar="N", help="stop after N networks")
    p.add_argument("--targets", metavar="T1,T2", help="comma-separated targets (default: gpu, loihi2, fpga-ice40, "
                                                      "those ready)")
    p.add_argument("--seed", type=int, default=0, help="seed of the search (default 0): same seed, same networks")
    p.add_argument("--out", default="fuzz-failures", metavar="DIR",
                   help="where a failing case is saved (default fuzz-failures)")
    p.set_defaults(func=_cmd_fuzz)

    p = sub.add_parser("report", help="write a self-contained HTML report (plus PNGs) of a compiled artifact")
    p.add_argument("artifact", help="artifact directory from `snnc compile`")
    p.add_argument("--output", "-o", help="report directory (default: ARTIFACT/report)")
    p.add_argument("--stimuli", metavar="FILE", help="stimulus .npz (optional labels); default: random spikes")
    p.add_argument("--samples", type=int, default=8, help="random samples to run (default 8)")
    p.add_argument("--steps", type=int, help="steps per sample (default: the file's length, or 50 for random)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random stimuli (default 0)")
    p.add_argument("--verify-json", metavar="FILE", help="a matrix from `snnc verify MODEL --json FILE` to include")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("hil", help="run an FPGA artifact on a board (or the simulated board) and verify it against "
                                   "the CPU reference")
    p.add_argument("artifact", metavar="DIR", help="FPGA artifact directory from `snnc compile --target fpga-*`")
    p.add_argument("--port", "-p", default="sim",
                   help="serial port of the board running DIR's bitstream (default 'sim': the simulated board, "
                        "the artifact's RTL in Verilator behind a pseudo-terminal)")
    p.add_argument("--baud", type=int, help="baud rate (default: the artifact's)")
    p.add_argument("--stimuli", metavar="N|FILE", help="number of random stimuli (default 4) or a stimulus .npz")
    p.add_argument("--steps", type=int, help="steps per stimulus (default: the file's length, or 50 for random)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random stimuli (default 0)")
    p.add_argument("--timeout", type=float, help="seconds to wait for each reply before resending (default 1)")
    p.add_argument("--retries", type=int, help="resends of one request before giving up (default 5)")
    p.set_defaults(func=_cmd_hil)
    return parser


class _Subcommands:
    """``add_parser`` that gives every command the common options (--quiet, --json, --debug)."""

    def __init__(self, action: Any, common: argparse.ArgumentParser) -> None:
        self.action = action
        self.common = common

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return self.action.add_parser(name, parents=[self.common], **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    warnings.showwarning = _show_warning
    np.seterr(all="ignore")
    out = Output(args)
    from snnc.backends import base
    from snnc.runtime import progress

    base.ACTIVITY = progress.Activity  # tool runs and simulations show their elapsed time on a terminal
    progress.QUIET = out.quiet or out.json_target == "-"
    try:
        code = int(args.func(args, out))
        out.finish()
        return code
    except KeyboardInterrupt:
        print("snnc: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the CLI promise: one line, no traceback, unless --debug
        if args.debug:
            raise
        known = isinstance(exc, ValueError | OSError | KeyError)
        prefix = "error" if known else f"internal error ({type(exc).__name__})"
        hint = "" if known else " (rerun with --debug for the traceback)"
        print(f"snnc: {prefix}: {_one_line(exc)}{hint}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
