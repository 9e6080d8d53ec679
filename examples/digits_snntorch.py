"""Train an snnTorch spiking network on scikit-learn's 8x8 digits, export it with snnc, compile it, compare.

    .venv/bin/python examples/digits_snntorch.py [--out-dir examples] [--epochs 40]

Writes ``digits_snntorch.nir`` (the trained SNN, exported by ``snnc.export``)
and ``digits_snntorch_test.npz`` (the rate-coded test stimuli it is scored
on: ``input`` (B, T, 64) uint8 spikes and ``labels`` (B,)), then prints the
snnTorch, float-reference and 8-bit CPU accuracies. No downloads; seeds are
fixed (one machine writes bit-identical files run after run); under a minute on 2 CPU cores.

Network: 64 input spikes -> Linear -> 128 Leaky -> Linear -> 10 Leaky, every
Leaky with ``reset_mechanism="zero"`` (reset to zero is what every snnc
target, Loihi 2 included, implements; snnTorch's delayed zero reset of a
Leaky is exactly snnc's immediate one, so the export is spike-exact).
Input: the deterministic rate code of ``digits_mlp_to_snn.py`` over T = 30
steps (an 8x8 intensity p in [0, 1] spikes at rate p). Prediction: the
output neuron with the most spikes over the run; ties go to the lowest
index (``argmax``). The quantized CPU artifact delivers every projection one
step later than the float reference (``docs/float_reference.md``), so it
runs ``T + latency`` steps to see the same input.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import snntorch as snn
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import snnc
from snnc.compiler.frontends.nir_import import import_nir
from snnc.runtime import float_reference

HERE = Path(__file__).resolve().parent
STEPS = 30
HIDDEN = 128
BETA = 0.9
SEED = 0


def rate_code(images: np.ndarray, steps: int) -> np.ndarray:
    """Deterministic rate code: intensity p in [0, 1] spikes floor((t+1)p) - floor(tp) times at step t."""
    t = np.arange(steps + 1)[None, :, None]
    counts = np.floor(t * images[:, None, :] + 1e-9)
    return np.diff(counts, axis=1).astype(np.uint8)


def build() -> nn.Sequential:
    """64 -> 128 -> 10 Leaky neurons (snnTorch defaults: threshold 1, ATan surrogate) resetting to zero."""
    return nn.Sequential(
        nn.Linear(64, HIDDEN),
        snn.Leaky(beta=BETA, reset_mechanism="zero", init_hidden=True),
        nn.Linear(HIDDEN, 10),
        snn.Leaky(beta=BETA, reset_mechanism="zero", init_hidden=True),
    )


def spike_counts(net: nn.Sequential, spikes: torch.Tensor) -> torch.Tensor:
    """Output spikes summed over the run; ``spikes`` is (B, T, 64)."""
    for module in net:
        if isinstance(module, snn.SpikingNeuron):
            module.reset_mem()  # a new sequence; with a new batch size snnTorch re-creates the state itself
    total = torch.zeros(spikes.shape[0], 10)
    for t in range(spikes.shape[1]):
        total = total + net(spikes[:, t])
    return total


def train(x_train: np.ndarray, y_train: np.ndarray, epochs: int) -> nn.Sequential:
    """Backpropagation through time on cross-entropy of the output spike counts (Adam, mini-batches of 64)."""
    torch.manual_seed(SEED)
    net = build()
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-3)
    inputs = torch.from_numpy(rate_code(x_train, STEPS)).float()
    labels = torch.from_numpy(y_train).long()
    order = np.random.default_rng(SEED)
    for _ in range(epochs):
        for batch in np.array_split(order.permutation(len(labels)), max(len(labels) // 64, 1)):
            # a count of 30 spikes against 0 is a confident logit; 0.5 keeps the softmax from saturating early
            loss = nn.functional.cross_entropy(0.5 * spike_counts(net, inputs[batch]), labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return net


def accuracy(counts: np.ndarray, labels: np.ndarray) -> float:
    """Fraction where the output with the most spikes (ties: lowest index) is the label."""
    return float((counts.argmax(axis=1) == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=str(HERE))
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    digits = load_digits()
    x = digits.data / 16.0
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.3, random_state=0,
                                                        stratify=digits.target)
    start = time.perf_counter()
    net = train(x_train, y_train, args.epochs)
    trained = time.perf_counter() - start
    test_spikes = rate_code(x_test, STEPS)
    with torch.no_grad():
        torch_acc = accuracy(spike_counts(net, torch.from_numpy(test_spikes).float()).numpy(), y_test)
    print(f"trained {args.epochs} epochs in {trained:.1f} s; snnTorch test accuracy {torch_acc:.1%}")

    nir_path = out / "digits_snntorch.nir"
    snnc.export(net, torch.zeros(1, 64), path=nir_path)
    np.savez_compressed(out / "digits_snntorch_test.npz", input=test_spikes, labels=y_test.astype(np.int64))
    print(f"wrote {nir_path} and {out / 'digits_snntorch_test.npz'} ({len(y_test)} samples x {STEPS} steps)")

    graph = import_nir(nir_path)
    output = graph.outputs[0]
    stimulus = {"input": test_spikes}
    float_acc = accuracy(float_reference.simulate(graph, stimulus)[output].spikes.sum(axis=1), y_test)
    with tempfile.TemporaryDirectory() as tmp:
        artifact = snnc.compile(nir_path, target="cpu", out_dir=Path(tmp) / "cpu")
        steps = STEPS + float_reference.latency(graph)[output]
        int_acc = accuracy(artifact.run(stimulus, steps=steps)[output].spikes.sum(axis=1), y_test)
    print(f"float reference accuracy {float_acc:.1%}; 8-bit CPU artifact {int_acc:.1%} "
          f"({100 * (int_acc - float_acc):+.1f} points)")


if __name__ == "__main__":
    main()
