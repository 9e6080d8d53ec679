"""The GPU backend against snnTorch on the same device, 784-512-512-10 LIF, batch 1 / 64 / 1024, in one run.

    python bench/gpu.py [--steps 100] [--batches 1,64,1024] [--device cuda|cpu] [--repeats 3]

The network and input statistics are ``bench/cpu_reference.py``'s
(research/perf.md §1: int8 weights, 8 % input spikes). snnc runs the
quantized network with the GPU backend (``GpuArtifact.run``: stimulus to the
device, the integer time loop, spikes of every population back to the host).
snnTorch runs the same layer sizes as ``nn.Linear`` + ``snn.Leaky`` under
``torch.no_grad()`` on the same device, also returning its spikes to the host.
Each figure is sample-timesteps/s = batch x steps / median wall time, with
``torch.cuda.synchronize()`` around every timed run on CUDA. The snnc spikes
are also checked against the CPU backend at the smallest batch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace

import numpy as np
import snntorch as snn
import torch
from cpu_reference import INPUT_RATE, SIZES, V_DECAY, VTH, workload

from snnc.backends import cpu, gpu


def timed(run, device: str, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up."""
    run()
    samples = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def snntorch_net(graph, device: str) -> torch.nn.Sequential:
    """The same layers in snnTorch, with the quantized weights in v units (so activity is comparable)."""
    layers: list[torch.nn.Module] = []
    for proj in graph.projections:
        linear = torch.nn.Linear(*reversed(proj.weight.shape), bias=False)
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(proj.weight * 64.0, dtype=torch.float32))
        layers += [linear, snn.Leaky(beta=1 - V_DECAY / 4096, threshold=float(VTH * 64), init_hidden=True)]
    return torch.nn.Sequential(*layers).to(device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batches", default="1,64,1024")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = args.device
    graph, _ = workload(args.steps)
    rng = np.random.default_rng(1)
    net = snntorch_net(graph, device)
    print(f"784-512-512-10 LIF, {args.steps} steps, {INPUT_RATE:.0%} input spikes, device {device} "
          f"({torch.cuda.get_device_name() if device.startswith('cuda') else f'{torch.get_num_threads()} CPU threads'}), "
          f"torch {torch.__version__}, snntorch {snn.__version__}\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        artifact = gpu.compile(graph, SimpleNamespace(name="gpu"), f"{tmp}/gpu")
        artifact.devices = [device]
        reference = cpu.compile(graph, SimpleNamespace(name="cpu"), f"{tmp}/cpu")
        for index, batch in enumerate(int(b) for b in args.batches.split(",")):
            stimulus = rng.random((batch, args.steps, SIZES[0])) < INPUT_RATE
            if index == 0:
                got, expected = artifact.run({"in": stimulus}), reference.run({"in": stimulus})
                same = all(np.array_equal(got[n].spikes, expected[n].spikes) for n in expected)
                print(f"spikes at batch {batch}: {'identical to' if same else 'DIFFERENT FROM'} the CPU backend")
                if not same:
                    return 1
            snnc_s = timed(lambda stimulus=stimulus: artifact.run({"in": stimulus}), device, args.repeats)
            x = torch.as_tensor(stimulus, dtype=torch.float32, device=device).transpose(0, 1).contiguous()

            def snntorch_run(x: torch.Tensor = x) -> np.ndarray:
                with torch.no_grad():
                    for layer in net:
                        if isinstance(layer, snn.Leaky):
                            layer.reset_mem()
                    out = torch.stack([net(x[t]) for t in range(x.shape[0])])
                return out.cpu().numpy()

            snntorch_s = timed(snntorch_run, device, args.repeats)
            work = batch * args.steps
            rows.append((batch, work / snnc_s, work / snntorch_s))
    print(f"{'batch':>6}  {'snnc gpu backend':>20}  {'snnTorch no_grad':>20}  {'ratio':>6}   (sample-timesteps/s)")
    for batch, ours, theirs in rows:
        print(f"{batch:>6}  {ours:>20,.0f}  {theirs:>20,.0f}  {ours / theirs:>5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
