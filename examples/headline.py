"""The headline: every bundled trained network compiled for every installed target and checked
spike for spike against the CPU integer reference, ending in a one-line verdict.

    .venv/bin/python examples/headline.py [--samples 200]

Bundled networks (all trained on scikit-learn's 8x8 digits, no downloads):

- ``digits_snntorch.nir``: an snnTorch Leaky SNN (examples/digits_snntorch.py)
- ``digits_cnn.onnx``: a ReLU CNN converted to IF neurons (examples/digits_onnx.py)
- ``digits_if.nir``: a scikit-learn ReLU MLP converted to IF neurons (examples/digits_mlp_to_snn.py)

Exit code 0 only when every usable target matches the CPU reference exactly.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import snnc
from snnc import targets
from snnc.backends.base import FitError
from snnc.compiler import hw as hwmod
from snnc.compiler import ir
from snnc.compiler.frontends.load import load_model
from snnc.runtime import float_reference, verify
from snnc.runtime.encode import rate_code
from snnc.runtime.raster import Raster

HERE = Path(__file__).resolve().parent
ONNX_STEPS = 64


@dataclass(frozen=True)
class Bundled:
    """A shipped network, how to feed it and how to read its answer."""

    name: str
    origin: str
    load: Callable[[str | None], tuple[ir.Graph, dict[str, np.ndarray], np.ndarray]]  # argument: reset override
    readout: str  # "spikes": most output spikes; "v": largest output v at the last step


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    return train_test_split(digits.images / 16.0, digits.target, test_size=0.3, random_state=0, stratify=digits.target)


def from_npz(model: str, stimuli: str) -> Callable[[str | None], tuple[ir.Graph, dict[str, np.ndarray], np.ndarray]]:
    def load(reset: str | None = None) -> tuple[ir.Graph, dict[str, np.ndarray], np.ndarray]:
        with np.load(HERE / stimuli) as data:
            return load_model(HERE / model, reset=reset), {"input": data["input"]}, data["labels"]
    return load


def onnx_cnn(reset: str | None = None) -> tuple[ir.Graph, dict[str, np.ndarray], np.ndarray]:
    x_train, x_test, _, y_test = digits_split()
    graph = load_model(HERE / "digits_cnn.onnx", calibration=x_train[:, None].astype(np.float32), reset=reset)
    stimulus = {"input": rate_code(x_test[:, None] / graph.meta["input_scale"], ONNX_STEPS)}
    return graph, stimulus, y_test


BUNDLED = (
    Bundled("digits_snntorch.nir", "snnTorch Leaky SNN", from_npz("digits_snntorch.nir", "digits_snntorch_test.npz"),
            "spikes"),
    Bundled("digits_cnn.onnx", "ONNX ReLU CNN -> IF", onnx_cnn, "v"),
    Bundled("digits_if.nir", "sklearn ReLU MLP -> IF", from_npz("digits_if.nir", "digits_test.npz"), "spikes"),
)


def predictions(rasters: dict[str, Raster], output: str, readout: str) -> np.ndarray:
    """Class per sample: most output spikes (ties: lower index), or largest final v."""
    if readout == "v":
        return rasters[output].v[:, -1].argmax(axis=1)
    return rasters[output].spikes.sum(axis=1).argmax(axis=1)


def padded(stimulus: dict[str, np.ndarray], extra: int) -> dict[str, np.ndarray]:
    """Append ``extra`` silent steps: each projection delays by one step on integer targets."""
    return {k: np.concatenate([v, np.zeros((v.shape[0], extra, *v.shape[2:]), v.dtype)], axis=1)
            for k, v in stimulus.items()}


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def main() -> int:
    parser = argparse.ArgumentParser(description="compile the bundled SNNs for every installed target and verify them")
    parser.add_argument("--samples", type=int, default=200, help="test digits per network")
    parser.add_argument("--out-dir", default="build/headline")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # range warnings for IF neurons are expected; saturations are counted below

    usable = [t for t in targets.TARGETS.values() if targets.status(t) == "ready"]
    missing = [f"{t.name} ({targets.status(t)})" for t in targets.TARGETS.values() if t not in usable]
    print(f"targets: {', '.join(t.name for t in usable)} installed; not here: {', '.join(missing) or 'none'}\n")

    rows = []
    unfit: list[str] = []
    mismatched = 0
    runs = 0
    worst_drop = 0.0
    for model in BUNDLED:
        loaded = {None: model.load(None)}
        for target in usable:
            reset_modes = hwmod.bundled_hw(target.hw).neurons.reset_modes
            spiking = [p for p in loaded[None][0].populations if p.model in ir.SPIKING_MODELS]
            reset = None if all(p.reset in reset_modes for p in spiking) else "zero"
            if reset not in loaded:  # the target cannot reset this way: the same network with reset to zero
                loaded[reset] = model.load(reset)
            graph, stimulus, labels = loaded[reset]
            stimulus = {k: v[: args.samples] for k, v in stimulus.items()}
            labels = labels[: args.samples]
            output = graph.outputs[0]
            float_acc = float((predictions(float_reference.simulate(graph, stimulus), output, model.readout)
                               == labels).mean())
            integer_stimulus = padded(stimulus, float_reference.latency(graph)[output])
            start = time.perf_counter()
            out = Path(args.out_dir) / model.name / target.name
            try:
                artifact = snnc.compile(graph, target=target.name, out_dir=out)
            except FitError as exc:  # a refusal that names the resource, not a wrong answer
                unfit.append(f"{model.name} on {target.name}: {exc}")
                rows.append((model.name, model.origin, target.name, f"{float_acc:.1%}", "-",
                             f"{time.perf_counter() - start:.2f} s", "-", "does not fit (see below)"))
                continue
            compiled = time.perf_counter() - start
            start = time.perf_counter()
            result = artifact.run(integer_stimulus)
            ran = time.perf_counter() - start
            # the reference: the CPU backend on the very graph this target was compiled from
            reference = verify.reference_artifact(artifact.graph, "cpu", out.with_name(f"{target.name}-cpu-reference"))
            expected = reference.run(integer_stimulus)
            acc = float((predictions(result, output, model.readout) == labels).mean())
            worst_drop = max(worst_drop, float_acc - acc)
            runs += 1
            diff = sum(int((result[p].spikes != expected[p].spikes).sum()) for p in expected)
            mismatched += diff
            verdict = "spike-equivalent" if diff == 0 else f"MISMATCH: {diff} spikes differ"
            rows.append((model.name, model.origin + (" (reset zero)" if reset else ""), target.name,
                         f"{float_acc:.1%}", f"{acc:.1%}", f"{compiled:.2f} s", f"{ran:.2f} s", verdict))
    table(rows, ("model", "from", "target", "float acc", "quantized acc", "compile", "run", "vs cpu"))
    print()
    for line in unfit:
        print(f"does not fit: {line}")
    if mismatched:
        print(f"FAIL: {mismatched} spikes differ from the CPU reference")
        return 1
    print(f"OK: {len(BUNDLED)} bundled networks x {len(usable)} installed target(s) = {runs} runs on "
          f"{args.samples} test digits each; every run spike-equivalent to the CPU reference (0 mismatching spikes); "
          f"quantization costs at most {max(worst_drop, 0.0) * 100:.1f} accuracy points"
          + (f"; {len(unfit)} network/target pair(s) refused as too big (listed above)" if unfit else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
