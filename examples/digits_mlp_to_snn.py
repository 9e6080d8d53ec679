"""Train a small ReLU MLP on scikit-learn's bundled 8x8 digits and convert it to an IF spiking network.

Writes ``examples/digits_if.nir`` (the trained SNN, NIR) and
``examples/digits_test.npz`` (rate-coded test stimuli ``input`` (B, T, 64)
and ``labels`` (B,)). Runs in a few seconds; no downloads.

Conversion is the classic data-based normalisation (Diehl et al. 2015,
Rueckauer et al. 2017): each layer's weights are rescaled by the 99.9th
percentile of its ReLU activations on the training data, so an IF neuron
with threshold 1 fires at a rate proportional to the ANN activation.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from snnc.compiler import ir
from snnc.compiler.frontends.nir_export import export_nir

HERE = Path(__file__).resolve().parent
STEPS = 40
DT = 1e-3


def rate_code(images: np.ndarray, steps: int) -> np.ndarray:
    """Deterministic rate code: intensity p in [0, 1] spikes floor((t+1)p) - floor(tp) times at step t."""
    t = np.arange(steps + 1)[None, :, None]
    counts = np.floor(t * images[:, None, :] + 1e-9)
    return np.diff(counts, axis=1).astype(np.uint8)


def convert(mlp: MLPClassifier, x_train: np.ndarray) -> ir.Graph:
    """The trained MLP as a float IR graph of IF populations (threshold 1, reset to zero)."""
    acts = x_train
    prev_scale = 1.0
    pops = [ir.Population("input", (x_train.shape[1],), "input")]
    projs = []
    for index, (w, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_), start=1):
        pre = acts @ w + b
        acts = np.maximum(pre, 0.0)
        scale = float(np.percentile(acts[acts > 0], 99.9)) if np.any(acts > 0) else 1.0
        weight = (w.T * prev_scale / scale).astype(np.float64)
        n = w.shape[1]
        name = f"if{index}"
        pops.append(ir.Population(name, (n,), "if", {
            "r": np.ones(n), "v_threshold": np.ones(n), "v_reset": np.zeros(n), "bias": b / scale,
        }))
        projs.append(ir.Projection(f"fc{index}", pops[-2].name, name, "dense", weight))
        prev_scale = scale
    return ir.check(ir.Graph(tuple(pops), tuple(projs), ("input",), (pops[-1].name,), dt=DT,
                             meta={"source": "examples/digits_mlp_to_snn.py"}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=str(HERE))
    parser.add_argument("--test-samples", type=int, default=200)
    args = parser.parse_args()
    digits = load_digits()
    x = digits.data / 16.0
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.3, random_state=0,
                                                        stratify=digits.target)
    mlp = MLPClassifier(hidden_layer_sizes=(64,), max_iter=400, random_state=0).fit(x_train, y_train)
    print(f"ReLU MLP 64-64-10 test accuracy: {mlp.score(x_test, y_test):.3f}")
    graph = convert(mlp, x_train)
    out = Path(args.out_dir)
    export_nir(graph, out / "digits_if.nir")
    n = args.test_samples
    np.savez_compressed(out / "digits_test.npz", input=rate_code(x_test[:n], STEPS), labels=y_test[:n].astype(np.int64))
    print(f"wrote {out / 'digits_if.nir'} and {out / 'digits_test.npz'} ({n} samples x {STEPS} steps)")


if __name__ == "__main__":
    main()
