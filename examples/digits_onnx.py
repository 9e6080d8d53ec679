"""Train a small ReLU CNN on scikit-learn's bundled 8x8 digits, export it to ONNX and convert it to an IF SNN.

Writes ``digits_cnn.onnx`` (the trained ANN, ending in a Softmax) next to
this script, then converts it with ``import_onnx`` (training images as
calibration data) and prints the test accuracy of the ANN (onnxruntime), of
the SNN in the float reference and of the SNN compiled for the CPU integer
target, on rate-coded test digits. Needs torch, onnx and onnxruntime
(``pip install -e .[torch]``); trains in seconds on two CPU cores, no
downloads. The same conversion from the command line::

    snnc compile examples/digits_cnn.onnx --calibration calibration.npz --target cpu -o build/digits_cnn

where ``calibration.npz`` holds an array ``input`` of images (B, 1, 8, 8) in [0, 1].
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import snnc
from snnc.compiler import ir
from snnc.compiler.frontends.onnx_import import OnnxImportNote, import_onnx
from snnc.compiler.passes.quantize import QuantizeWarning
from snnc.runtime import float_reference
from snnc.runtime.encode import rate_code

HERE = Path(__file__).resolve().parent
STEPS = 64
SEED = 0


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images (B, 1, 8, 8) in [0, 1] and labels: the 70/30 split of ``digits_mlp_to_snn.py``."""
    digits = load_digits()
    images = (digits.images[:, None] / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(images, digits.target, test_size=0.3, random_state=0,
                                                        stratify=digits.target)
    return x_train, x_test, y_train.astype(np.int64), y_test.astype(np.int64)


def digits_cnn() -> nn.Sequential:
    """1x8x8 -> conv 3x3 (8) -> BN -> ReLU -> avg pool 2 -> conv 3x3 (16) -> ReLU -> flatten -> dropout -> linear 10."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Dropout(0.2), nn.Linear(16 * 4 * 4, 10),
    )


def train(x: np.ndarray, y: np.ndarray, epochs: int) -> nn.Sequential:
    """Adam on cross-entropy, fixed seeds: the same weights on every run of the same torch build."""
    torch.manual_seed(SEED)
    model = digits_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)
    order = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(inputs), generator=order).split(32):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs[batch]), labels[batch]).backward()
            optimizer.step()
    return model.eval()


def export(model: nn.Sequential, path: Path) -> None:
    """The trained model plus a final Softmax as ONNX.

    ``TrainingMode.PRESERVE`` on a model in eval mode keeps BatchNormalization
    as its own (inference) node, so the import's folding is exercised.
    """
    with_softmax = nn.Sequential(*model, nn.Softmax(dim=1)).eval()
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated, but the dynamo one needs onnxscript, which is not a dependency
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(with_softmax, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False,
                          input_names=["input"], output_names=["probabilities"],
                          dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)


def ann_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the ONNX model itself, run by onnxruntime."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probabilities = session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]
    return float((probabilities.argmax(axis=1) == y).mean())


def snn_accuracy(v: np.ndarray, y: np.ndarray) -> float:
    """Accuracy from the output population's v (B, T, classes): argmax at the last step."""
    return float((v[:, -1].argmax(axis=1) == y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=str(HERE), help="where digits_cnn.onnx goes (default: examples/)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--steps", type=int, default=STEPS, help="SNN time steps per digit")
    parser.add_argument("--test-samples", type=int, help="evaluate on the first N test digits (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    x_train, x_test, y_train, y_test = digits_split()
    if args.test_samples is not None:
        x_test, y_test = x_test[:args.test_samples], y_test[:args.test_samples]
    model = train(x_train, y_train, args.epochs)
    path = Path(args.out_dir) / "digits_cnn.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    export(model, path)
    print(f"trained and wrote {path} in {time.perf_counter() - start:.1f} s")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OnnxImportNote)  # the dropped final Softmax, expected here
        graph = import_onnx(path, calibration=x_train)
    print("\n".join(line for line in ir.dump(graph).splitlines() if not line.startswith("  meta")))
    stimulus = {"input": rate_code(x_test / graph.meta["input_scale"], args.steps)}
    output = graph.outputs[0]
    float_v = float_reference.simulate(graph, stimulus)[output].v
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # IF neurons have no leak, so the range analysis always warns; the saturation count below is the real check
        warnings.simplefilter("ignore", QuantizeWarning)
        artifact = snnc.compile(graph, target="cpu", out_dir=Path(tmp) / "digits_cnn")
        quantized_v = artifact.run(stimulus)[output].v
        saturated = sum(s["u"] + s["v"] for s in artifact.last_saturations.values())
    print(f"ANN (onnxruntime) test accuracy:       {ann_accuracy(path, x_test, y_test):.4f}  ({len(y_test)} digits)")
    print(f"SNN float reference, T={args.steps} steps:     {snn_accuracy(float_v, y_test):.4f}")
    print(f"SNN quantized (cpu), T={args.steps} steps:     {snn_accuracy(quantized_v, y_test):.4f}  "
          f"({saturated} saturated neuron-steps)")


if __name__ == "__main__":
    main()
