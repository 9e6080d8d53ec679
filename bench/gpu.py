"""The GPU backend against snnTorch on the same device, 784-512-512-10 LIF, batch 1 / 64 / 1024, in one run.

    python -m bench.gpu [--quick] [--steps 100] [--batches 1,64,1024] [--device cuda|cpu] [--repeats 3]

The network and input statistics are ``bench/cpu_reference.py``'s
(research/perf.md §1: int8 weights, 8 % input spikes). snnc runs the
quantized network with the GPU backend (``GpuArtifact.run``: stimulus to the
device, the integer time loop, spikes of every population back to the host).
snnTorch runs the same layer sizes as ``nn.Linear`` + ``snn.Leaky`` under
``torch.no_grad()`` on the same device, also returning its spikes to the host.
Each figure is sample-timesteps/s = batch x steps / median wall time, with
``torch.cuda.synchronize()`` around every timed run on CUDA. The snnc spikes
are also checked against the CPU backend at the smallest batch. Without CUDA
both run on the CPU, and the result says so. ``--quick``: batches 1 and 64.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np

from bench import report, timing
from bench.cpu_reference import INPUT_RATE, SIZES, snntorch_net, snntorch_runner, workload
from snnc.backends import cpu, gpu

BATCHES = (1, 64, 1024)
QUICK_BATCHES = (1, 64)
HEADLINE_BATCH = 64


def run(quick: bool = False, steps: int = 100, batches: Sequence[int] | None = None, device: str | None = None,
        repeats: int = 5) -> report.BenchResult:
    """Sample-timesteps/s of the GPU backend and of snnTorch on one device, per batch size."""
    batches = tuple(batches or (QUICK_BATCHES if quick else BATCHES))
    title = f"GPU backend vs snnTorch on the same device, 784-512-512-10 LIF, T={steps}, batch {'/'.join(map(str, batches))}"
    missing = gpu.available() or ("snntorch is not installed (pip install -e .[torch])"
                                  if importlib.util.find_spec("snntorch") is None else None)
    if missing:
        return report.BenchResult.not_run("gpu", title, missing)
    import snntorch as snn
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if on_cuda else None
    where = (torch.cuda.get_device_name(device) if on_cuda
             else f"CPU, {torch.get_num_threads()} threads (no CUDA device on this machine)")
    result = report.BenchResult("gpu", f"{title}; device {device}: {where}")
    graph, _ = workload(steps)
    rng = np.random.default_rng(1)
    net = snntorch_net(graph, device)
    with tempfile.TemporaryDirectory() as tmp:
        artifact = gpu.compile(graph, SimpleNamespace(name="gpu"), f"{tmp}/gpu")
        artifact.devices = [device]
        reference = cpu.compile(graph, SimpleNamespace(name="cpu"), f"{tmp}/cpu")
        for index, batch in enumerate(batches):
            stimulus = rng.random((batch, steps, SIZES[0])) < INPUT_RATE
            if index == 0:
                got, expected = artifact.run({"in": stimulus}), reference.run({"in": stimulus})
                same = all(np.array_equal(got[n].spikes, expected[n].spikes) for n in expected)
                result.rows.append(report.Row(f"spikes at batch {batch}", "identical" if same else "DIFFERENT",
                                              baseline="CPU backend"))
                if not same:
                    return result.fail(f"GPU backend spikes differ from the CPU backend at batch {batch}")
            ours, theirs = timing.time_interleaved(
                [lambda stimulus=stimulus: artifact.run({"in": stimulus}), snntorch_runner(net, stimulus, device)],
                repeats, sync=sync)
            work = batch * steps
            result.rows.append(report.compare(
                f"sample-timesteps/s, batch {batch}", work / ours.median_s, "sample-timesteps/s", "snnTorch no_grad",
                work / theirs.median_s, note=f"device {device}", headline=batch == HEADLINE_BATCH))
    result.notes.append(f"torch {torch.__version__}, snntorch {snn.__version__}; {INPUT_RATE:.0%} input spikes; "
                        f"median of {repeats} samples after a warm-up, "
                        "snnc and snnTorch samples interleaved")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batches 1 and 64 only")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batches", default=None, help="comma-separated (default 1,64,1024)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")] if args.batches else None
    result = report.timed(lambda: run(args.quick, args.steps, batches, args.device, args.repeats))
    print(report.result_table(result))
    return 0 if result.status != report.FAILED else 1


if __name__ == "__main__":
    raise SystemExit(main())
