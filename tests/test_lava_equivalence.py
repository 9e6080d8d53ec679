"""Differential test: random networks compiled for loihi2 and run in Lava spike exactly like the CPU reference.

Each network goes through the user's path: ``snnc compile graph.npz --target loihi2 -o DIR`` and
``snnc verify DIR --against cpu --stimuli stim.npz``. The count is ``--lava-networks`` (40 by default, in CI;
``pytest tests/test_lava_equivalence.py --lava-networks 200`` runs the full suite).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from snnc import cli
from snnc.backends import cpu, lava
from snnc.compiler import ir

from .test_cpu_semantics import conv, dense, input_pop, network, neuron_pop, sparse

pytestmark = pytest.mark.skipif(lava.available() is not None, reason=f"Lava is not installed: {lava.available()}")

LAVA_V_MAX = ((1 << 17) - 1) << 6
"""A non-spiking population runs as a LIF with the largest threshold: v must stay at or below it."""
STEPS = 40


def pytest_generate_tests(metafunc):
    if "network_seed" in metafunc.fixturenames:
        metafunc.parametrize("network_seed", range(metafunc.config.getoption("--lava-networks")))


def _shape(rng: np.random.Generator) -> tuple[int, int, int]:
    return int(rng.integers(1, 4)), int(rng.integers(2, 6)), int(rng.integers(2, 6))


def _weights(rng: np.random.Generator, shape) -> np.ndarray:
    """Mixed-sign up to 8 bits, or single-sign up to 255 (Lava's unsigned 8-bit modes)."""
    mode = rng.choice(["mixed", "mixed", "excitatory", "inhibitory"])
    bits = int(rng.integers(2, 9))
    if mode == "mixed":
        return rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=shape)
    magnitude = rng.integers(0, 1 << bits, size=shape)
    return magnitude if mode == "excitatory" else -magnitude


def _delays(rng: np.random.Generator, shape):
    if rng.random() < 0.5:
        return None
    top = 63 if rng.random() < 0.3 else 6
    return rng.integers(0, top + 1, size=shape)


def _projection(rng: np.random.Generator, name: str, src: ir.Population, dst_shape, allow_conv: bool):
    kind = rng.choice(["dense", "sparse", "conv"] if allow_conv and min(src.shape[1:]) >= 2 else ["dense", "sparse"])
    exp = int(rng.integers(0, 4)) if rng.random() < 0.6 else 0
    if kind == "conv":
        c_in = src.shape[0]
        groups = int(rng.choice([g for g in (1, 2, 3) if c_in % g == 0]))
        c_out = groups * int(rng.integers(1, 3))
        k = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        spec = ir.ConvSpec(in_shape=tuple(src.shape), out_shape=(c_out, 1, 1),
                           stride=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
                           padding=(int(rng.integers(0, 2)), int(rng.integers(0, 2))),
                           dilation=(1, int(rng.integers(1, 3))) if k[1] > 1 and src.shape[2] >= 3 else (1, 1),
                           groups=groups)
        spec = ir.replace(spec, out_shape=(c_out, *ir.conv_output_shape(spec, k)))
        return conv(name, src.name, "", _weights(rng, (c_out, c_in // groups, *k)), spec, weight_exp=exp), spec.out_shape
    n_dst = int(np.prod(dst_shape))
    if kind == "dense":
        w = _weights(rng, (n_dst, src.size)) * (rng.random((n_dst, src.size)) < 0.6)
        return dense(name, src.name, "", w, weight_exp=exp, delay=_delays(rng, w.shape)), dst_shape
    nnz = int(rng.integers(1, 3 * n_dst + 1))
    rows, cols = rng.integers(0, n_dst, size=nnz), rng.integers(0, src.size, size=nnz)
    return sparse(name, src.name, "", rows, cols, _weights(rng, nnz), weight_exp=exp, delay=_delays(rng, nnz)), dst_shape


def _neurons(rng: np.random.Generator, name: str, shape) -> ir.Population:
    n = int(np.prod(shape))
    groups = 1 if rng.random() < 0.7 else int(rng.integers(2, 4))
    which = rng.integers(0, groups, size=n)

    def per_group(values) -> np.ndarray:
        return np.asarray(values)[which]

    def decays() -> np.ndarray:
        return per_group([int(rng.choice([0, 1, 4095, 4096])) if rng.random() < 0.3 else int(rng.integers(0, 4097))
                          for _ in range(groups)])

    spiking = bool(rng.random() < 0.85)
    vth = per_group([int(rng.choice([0, 1, 200, 3000])) if rng.random() < 0.7 else int(rng.integers(0, 1 << 17))
                     for _ in range(groups)])
    bias_mant = rng.integers(-4095, 4096, size=n) * (rng.random(n) < 0.5)
    return neuron_pop(name, shape, i_decay=decays(), v_decay=decays(), vth=vth, bias_mant=bias_mant,
                      bias_exp=rng.integers(0, 8, size=n) * (rng.random() < 0.5), spiking=spiking)


def _candidate(rng: np.random.Generator) -> ir.Graph:
    pops = [input_pop(f"in{i}", _shape(rng)) for i in range(int(rng.integers(1, 3)))]
    projs: list[ir.Projection] = []
    def sources() -> list[ir.Population]:  # only spikes travel (a non-spiking population's v does not)
        return [p for p in pops if p.quant is None or p.quant.spiking]

    for k in range(int(rng.integers(2, 5))):
        name = f"p{k}"
        first, shape = _projection(rng, f"{name}_a", rng.choice(sources()), _shape(rng), True)
        incoming = [first]
        if rng.random() < 0.4:
            incoming.append(_projection(rng, f"{name}_b", rng.choice(sources()), shape, False)[0])
        pops.append(_neurons(rng, name, shape))
        projs += [ir.replace(p, dst=name) for p in incoming]
    neuron_pops = [p for p in pops if p.model != "input"]
    spiking_pops = [p for p in neuron_pops if p.quant.spiking]
    for k in range(int(rng.integers(0, 3)) if spiking_pops else 0):
        src = spiking_pops[int(rng.integers(len(spiking_pops)))]
        dst = neuron_pops[int(rng.integers(len(neuron_pops)))]
        proj, _ = _projection(rng, f"rec{k}", src, dst.shape, False)
        projs.append(ir.replace(proj, dst=dst.name))
    return network(pops, projs)


def _stimulus(graph: ir.Graph, rng: np.random.Generator, samples: int) -> dict[str, np.ndarray]:
    return {name: (rng.random((samples, STEPS, graph.population(name).size)) < 0.3).astype(np.uint8)
            for name in graph.inputs}


def _in_lava_range(graph: ir.Graph, stimulus: dict[str, np.ndarray]) -> bool:
    """No state saturates in the CPU reference (Lava wraps u instead), and non-spiking v stays under Lava's top."""
    rasters, saturations = cpu.simulate_with_stats(graph, stimulus, record_state=True)
    if any(any(counts.values()) for counts in saturations.values()):
        return False
    return all(np.abs(rasters[p.name].v).max() <= LAVA_V_MAX for p in graph.populations
               if p.quant is not None and not p.quant.spiking)


def lava_network(seed: int) -> tuple[ir.Graph, dict[str, np.ndarray]]:
    """A random network within Lava's exact range, and a stimulus (1 or 2 samples)."""
    rng = np.random.default_rng(seed)
    for _ in range(50):
        graph = _candidate(rng)
        stimulus = _stimulus(graph, rng, samples=int(rng.integers(1, 3)))
        if not lava.unsupported(graph, None) and _in_lava_range(graph, stimulus):
            return graph, stimulus
    raise AssertionError(f"seed {seed}: no network within Lava's range in 50 tries")


def test_random_network_compiles_for_loihi2_and_verifies_against_cpu(network_seed, tmp_path: Path, capsys):
    graph, stimulus = lava_network(network_seed)
    ir.save(graph, tmp_path / "graph.npz")
    np.savez(tmp_path / "stim.npz", **stimulus)
    out = tmp_path / "loihi2"
    assert cli.main(["compile", str(tmp_path / "graph.npz"), "--target", "loihi2", "-o", str(out)]) == 0
    code = cli.main(["verify", str(out), "--against", "cpu", "--stimuli", str(tmp_path / "stim.npz")])
    report = capsys.readouterr().out
    assert code == 0, report
    assert "PASS" in report and " 0 mismatching spikes of " in report and " 0 mismatching u/v values of " in report
    spikes = int(report.split(" mismatching spikes of ")[1].split()[0].replace(",", ""))
    assert spikes == sum(p.size for p in graph.populations if p.model != "input") * STEPS * len(
        next(iter(stimulus.values())))


def test_random_lava_networks_exercise_what_the_suite_claims():
    """The suite is only as good as its networks: feed-forward and recurrent, delays up to 63, every sign mode,
    biases with every exponent, decays over their whole range, split populations, both Conv lowerings."""
    from snnc.backends.lava import lowering

    graphs = [lava_network(seed)[0] for seed in range(40)]
    projections = [p for g in graphs for p in g.projections]
    pops = [p for g in graphs for p in g.populations if p.quant is not None]
    assert {p.kind for p in projections} == {"dense", "sparse", "conv"}
    assert any(p.src == p.dst for p in projections)
    assert max(p.max_delay for p in projections) == 63
    weights = [np.asarray(p.quant.weight) for p in projections]
    assert any(w.min() < 0 < w.max() for w in weights)
    assert any(w.min() >= 0 and w.max() > 127 for w in weights)
    assert any(w.max() <= 0 and w.min() < -127 for w in weights)
    assert {int(e) for p in pops for e in p.quant.bias_exp} == set(range(8))
    assert max(abs(int(b)) for p in pops for b in p.quant.bias_mant) > 4000
    decays = np.concatenate([np.concatenate([p.quant.i_decay, p.quant.v_decay]) for p in pops])
    assert {0, 1, 4095, 4096} <= set(decays.tolist()) and ((decays > 1) & (decays < 4095)).any()
    assert {p.quant.spiking for p in pops} == {True, False}
    descriptions = [lowering.lower(g)[0] for g in graphs]
    kinds = {c["kind"] for d in descriptions for c in d["connections"]}
    assert kinds >= {"dense", "delay_dense", "conv"}
    assert any(p["kind"] == "lif" and len(p["segments"]) > 1 for d in descriptions for p in d["populations"])
    assert any(p.kind == "conv" for p in projections if p.quant.weight_exp > 0)  # lowered as sparse
