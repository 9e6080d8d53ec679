"""The quantized graph as torch tensors, and the batched time loop (the semantics of ``backends/cpu.py``).

Neuron order: the non-input populations, in graph order, are state neurons
0 .. N-1; the inputs, in ``graph.inputs`` order, follow as sources
N .. N+I-1. State (u, v, refractory counters, pending input) is int64,
shaped (batch, N). Each step runs the reference's update elementwise, then
adds every spiking source's synapses into the accumulator slot they arrive
in: ``acc[(t + 1 + d) % slots]``.

Exactness by construction (research/perf.md §2): a projection is split into
*links*, one per distinct delay, and each link multiplies the 0/1 spike
vector by its integer weights in the cheapest exact arithmetic:

- float32 matmul / sparse matmul / conv2d while the link's largest sum of
  |w << weight_exp| into one neuron is below 2**24 (every partial sum of 0/1
  times integers is then an exactly representable integer, whatever order
  the BLAS adds in);
- float64 below 2**53;
- otherwise int64 gather + ``index_add_``;
- on the CPU, a dense link whose mantissas fit int8 uses ``torch._int_mm``
  (int8 x int8 -> int32, exact while a sum stays below 2**31; VNNI makes it
  about 6x faster than float32) and shifts by weight_exp afterwards.

The state is float64 when every value provably stays below 2**50 (then
every sum, product and comparison is exact, and float64 ops vectorise
better than int64 ones on CPUs) and int64 otherwise. Decay in float64 is
``(state * keep / 4096).long()``: the conversion truncates toward zero,
which is rz. TF32 is switched off while a run uses CUDA: it would round.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from snnc.backends import base
from snnc.compiler import ir

F32_EXACT = 1 << 24
F64_EXACT = 1 << 53


def _dtype_for(bound: float) -> torch.dtype:
    if bound < F32_EXACT:
        return torch.float32
    if bound < F64_EXACT:
        return torch.float64
    return torch.int64


@dataclass
class Link:
    """Synapses of one projection with one delay: ``acc[slot + delay][dst] += W @ spikes[src]``.

    ``kind``: "dense" (``weight`` (n_src, n_dst)), "int8" (the same with int8 mantissas, shifted by
    ``shift`` after the product), "sparse" (``weight`` a (n_dst, n_src) sparse COO matrix), "conv"
    (``weight`` the kernel, ``conv`` the spec), "scatter" (``src``, ``dst``, ``values`` int64).
    """

    kind: str
    src: slice
    dst: slice
    delay: int
    dtype: torch.dtype
    weight: torch.Tensor | None = None
    conv: ir.ConvSpec | None = None
    src_index: torch.Tensor | None = None
    dst_index: torch.Tensor | None = None
    values: torch.Tensor | None = None
    shift: int = 0
    overwrites: bool = False
    """Without delays, the first link into a population writes its slot instead of adding (no zeroing pass)."""

    def contribution(self, spikes: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        """(B, n_dst) input of this link, in ``out_dtype``, for 0/1 ``spikes`` (B, n_sources) int8."""
        s = spikes[:, self.src]
        if self.kind == "scatter":
            assert self.src_index is not None and self.dst_index is not None and self.values is not None
            picked = s.index_select(1, self.src_index).to(torch.int64) * self.values
            out = torch.zeros((s.shape[0], self.dst.stop - self.dst.start), dtype=torch.int64, device=s.device)
            return out.index_add_(1, self.dst_index, picked).to(out_dtype)
        assert self.weight is not None
        if self.kind == "int8":
            out = torch._int_mm(s, self.weight).to(out_dtype)
            if self.shift:
                out = out * (1 << self.shift) if out_dtype.is_floating_point else out << self.shift
            return out
        s = s.to(self.dtype)
        if self.kind == "dense":
            out = s @ self.weight
        elif self.kind == "sparse":
            out = torch.sparse.mm(self.weight, s.t()).t()
        else:
            assert self.conv is not None
            spec = self.conv
            out = F.conv2d(s.reshape(s.shape[0], *spec.in_shape), self.weight, stride=spec.stride,
                           padding=spec.padding, dilation=spec.dilation, groups=spec.groups).reshape(s.shape[0], -1)
        return out.to(out_dtype)


@dataclass
class Program:
    """Everything the time loop needs, on one device."""

    device: torch.device
    n_neurons: int
    n_inputs: int
    neuron_offsets: dict[str, int]
    input_offsets: dict[str, int]
    keep_u: torch.Tensor | int
    keep_v: torch.Tensor | int
    bias: torch.Tensor | int
    vth: torch.Tensor | int
    reset_keep: torch.Tensor | int
    reset_add: torch.Tensor | int
    refractory: torch.Tensor | int
    limit: torch.Tensor | int
    spiking: torch.Tensor
    links: list[Link]
    n_slots: int
    pop_of_neuron: torch.Tensor
    n_pops: int
    has_refractory: bool
    all_spiking: bool
    float_state: bool  # every value stays below 2**50: float64 state is exact (and faster on CPUs)
    reset_can_clip: bool  # False when every reset sets v to a constant inside the state range


def _neuron_params(graph: ir.Graph, offsets: dict[str, int], n: int) -> dict[str, np.ndarray]:
    """``base.neuron_parameters`` plus each neuron's population index (for the saturation counts)."""
    p = base.neuron_parameters(graph, offsets, n)
    p["pop"] = np.zeros(n, dtype=np.int64)
    for index, pop in enumerate(graph.populations):
        if pop.model != "input":
            p["pop"][offsets[pop.name]:offsets[pop.name] + pop.size] = index
    return p


def _projection_links(proj: ir.Projection, src: slice, dst: slice, n_dst: int, device: torch.device) -> list[Link]:
    """The links of one projection: one per distinct delay, each in its cheapest exact arithmetic."""
    q = proj.quant
    assert q is not None
    scale = 2.0 ** q.weight_exp
    mant = np.asarray(q.weight, dtype=np.int64)
    if proj.kind == "conv":
        assert proj.conv is not None
        kernel = mant.astype(np.float64) * scale
        bound = float(np.abs(kernel).reshape(kernel.shape[0], -1).sum(axis=1).max(initial=0.0))
        dtype = _dtype_for(bound)
        if dtype != torch.int64:
            weight = torch.as_tensor(kernel, dtype=dtype, device=device)
            return [Link("conv", src, dst, 0, dtype, weight=weight, conv=proj.conv)]
        s_idx, d_idx, w = base.conv_synapses(proj.conv, np.left_shift(mant, q.weight_exp))
        delays = np.zeros(w.size, dtype=np.int64)
    elif proj.kind == "dense" and proj.max_delay == 0:
        magnitude_sum = float(np.abs(mant).sum(axis=1).max(initial=0))
        if device.type == "cpu" and mant.size and -128 <= mant.min() and mant.max() <= 127 and magnitude_sum < 2**31:
            weight8 = torch.as_tensor(mant.T.astype(np.int8).copy(), device=device)
            return [Link("int8", src, dst, 0, torch.int8, weight=weight8, shift=q.weight_exp)]
        weight = mant.astype(np.float64) * scale  # (dst, src)
        bound = float(np.abs(weight).sum(axis=1).max(initial=0.0))
        dtype = _dtype_for(bound)
        if dtype != torch.int64:
            return [Link("dense", src, dst, 0, dtype, weight=torch.as_tensor(weight.T.copy(), dtype=dtype, device=device))]
        d_idx, s_idx = np.nonzero(mant)
        w = np.left_shift(mant[d_idx, s_idx], q.weight_exp)
        delays = np.zeros(w.size, dtype=np.int64)
    elif proj.kind == "dense":
        d_idx, s_idx = np.nonzero(mant)
        w = np.left_shift(mant[d_idx, s_idx], q.weight_exp)
        delays = np.asarray(proj.delay, dtype=np.int64)[d_idx, s_idx]
    else:
        assert proj.rows is not None and proj.cols is not None
        keep = mant != 0
        d_idx = np.asarray(proj.rows, dtype=np.int64)[keep]
        s_idx = np.asarray(proj.cols, dtype=np.int64)[keep]
        w = np.left_shift(mant[keep], q.weight_exp)
        delays = (np.zeros(w.size, dtype=np.int64) if proj.delay is None
                  else np.asarray(proj.delay, dtype=np.int64)[keep])
    links = []
    for delay in np.unique(delays):
        pick = delays == delay
        rows, cols, values = d_idx[pick], s_idx[pick], w[pick]
        bound = float(np.bincount(rows, weights=np.abs(values).astype(np.float64), minlength=n_dst).max(initial=0.0))
        dtype = _dtype_for(bound)
        if dtype == torch.int64:
            links.append(Link("scatter", src, dst, int(delay), dtype,
                              src_index=torch.as_tensor(cols, device=device), dst_index=torch.as_tensor(rows, device=device),
                              values=torch.as_tensor(values, device=device)))
            continue
        index = torch.as_tensor(np.stack([rows, cols]), device=device)
        matrix = torch.sparse_coo_tensor(index, torch.as_tensor(values, dtype=dtype, device=device),
                                         (n_dst, src.stop - src.start), check_invariants=True).coalesce()  # repeated pairs add
        links.append(Link("sparse", src, dst, int(delay), dtype, weight=matrix))
    return links


def build(graph: ir.Graph, device: torch.device) -> Program:
    """Flatten a checked quantized graph onto ``device``."""
    offsets, n, input_offsets, n_inputs = base.neuron_numbering(graph)
    params = _neuron_params(graph, offsets, n)
    source = {**offsets, **{name: n + off for name, off in input_offsets.items()}}
    links: list[Link] = []
    for proj in graph.projections:
        src_pop, dst_pop = graph.population(proj.src), graph.population(proj.dst)
        src = slice(source[proj.src], source[proj.src] + src_pop.size)
        dst = slice(offsets[proj.dst], offsets[proj.dst] + dst_pop.size)
        links += _projection_links(proj, src, dst, dst_pop.size, device)
    n_slots = 1 + max((link.delay for link in links), default=0)
    if n_slots == 1:  # every step rewrites each fed population's input: its first link assigns, the others add
        fed: set[int] = set()
        for link in links:
            link.overwrites = link.dst.start not in fed
            fed.add(link.dst.start)

    def tensor(name: str) -> torch.Tensor | int:
        """A Python int when every neuron shares the value (cheaper elementwise ops), else a tensor."""
        values = params[name]
        if values.size and np.all(values == values[0]):
            return int(values[0])
        return torch.as_tensor(values, dtype=torch.int64, device=device)

    return Program(device=device, n_neurons=n, n_inputs=n_inputs, neuron_offsets=offsets, input_offsets=input_offsets,
                   keep_u=tensor("keep_u"), keep_v=tensor("keep_v"), bias=tensor("bias"), vth=tensor("vth"),
                   reset_keep=tensor("reset_keep"), reset_add=tensor("reset_add"), refractory=tensor("refractory"),
                   limit=tensor("limit"), all_spiking=bool(params["spiking"].all()),
                   spiking=torch.as_tensor(params["spiking"].astype(bool), device=device), links=links, n_slots=n_slots,
                   pop_of_neuron=torch.as_tensor(params["pop"], device=device), n_pops=len(graph.populations),
                   has_refractory=bool(params["refractory"].any()), float_state=_float_state_is_exact(graph, params),
                   reset_can_clip=bool(np.any(params["reset_keep"] != 0)
                                       or np.any(np.abs(params["reset_add"]) > params["limit"])))


FLOAT_STATE_LIMIT = 1 << 50


def _float_state_is_exact(graph: ir.Graph, params: dict[str, np.ndarray]) -> bool:
    """True when synaptic input << 6, bias, threshold and reset values all stay below 2**50."""
    inputs = max((float(b.max()) for b in base.input_bounds(graph).values() if b.size), default=0.0)
    biggest = max([inputs * 64] + [float(np.abs(params[k]).max(initial=0)) for k in ("bias", "vth", "reset_add")])
    return biggest < FLOAT_STATE_LIMIT


def _decayed_plus(state: torch.Tensor, keep: torch.Tensor | int, add: torch.Tensor) -> torch.Tensor:
    """``rz(state * keep / 4096) + add``, exact in the state's dtype.

    The common decays cost nothing: keep 0 (i_decay 4096) drops the state, keep 4096 keeps it. Otherwise
    int64 divides truncating toward zero (rz); float64 multiplies by keep / 4096 (exact: a dyadic factor and
    a product below 2**53) and truncates through an int64 conversion, which also rounds toward zero.
    """
    if isinstance(keep, int) and keep == 0:
        return add
    if isinstance(keep, int) and keep == ir.DECAY_UNITY:
        return state + add
    if state.dtype == torch.float64:
        factor = keep / ir.DECAY_UNITY
        return (state * factor).to(torch.int64).to(torch.float64) + add
    return torch.div(state * keep, ir.DECAY_UNITY, rounding_mode="trunc") + add


@dataclass
class Run:
    """Outputs of :func:`simulate`, on the CPU: spikes (B, T, N + I) bool, u/v (B, T, N) or None, clips (pops, 2)."""

    spikes: np.ndarray
    u: np.ndarray | None
    v: np.ndarray | None
    clipped: np.ndarray

    @staticmethod
    def concatenate(runs: list[Run]) -> Run:
        """Runs of consecutive sample ranges as one run."""
        if len(runs) == 1:
            return runs[0]
        return Run(spikes=np.concatenate([r.spikes for r in runs]),
                   u=None if runs[0].u is None else np.concatenate([r.u for r in runs]),
                   v=None if runs[0].v is None else np.concatenate([r.v for r in runs]),
                   clipped=sum(r.clipped for r in runs))


class _ExactMath:
    """While a run uses CUDA, no TF32: cuBLAS/cuDNN would round float32 products to 10-bit mantissas."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __enter__(self) -> None:
        if self.cuda:
            self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


def _in(value: torch.Tensor | int, dtype: torch.dtype) -> torch.Tensor | int | float:
    """A parameter in the state's dtype (Python numbers stay scalars)."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype)
    return float(value) if dtype.is_floating_point else value


@torch.no_grad()
def simulate(program: Program, stimulus: np.ndarray, record_u: bool, v_columns: np.ndarray | None) -> Run:
    """Run ``stimulus`` (B, T, I) bool through ``program``; every sample starts from zero state.

    ``record_u`` keeps u of every neuron; ``v_columns`` (neuron ids) keeps v of those neurons (``Run.v`` has
    one column per id, in that order).
    """
    with _ExactMath(program.device):
        return _simulate(program, stimulus, record_u, v_columns)


def _simulate(program: Program, stimulus: np.ndarray, record_u: bool, v_columns: np.ndarray | None) -> Run:
    device = program.device
    batch, steps, _ = stimulus.shape
    n = program.n_neurons
    dtype = torch.float64 if program.float_state else torch.int64
    stim = torch.as_tensor(np.ascontiguousarray(stimulus), device=device).to(torch.int8)
    u = torch.zeros((batch, n), dtype=dtype, device=device)
    v = torch.zeros_like(u)
    frozen = torch.zeros((batch, n), dtype=torch.int64, device=device)
    acc = torch.zeros((program.n_slots, batch, n), dtype=dtype, device=device)
    clip_u = torch.zeros((batch, n), dtype=torch.int32, device=device)
    clip_v = torch.zeros_like(clip_u)
    spikes = torch.zeros((batch, n + program.n_inputs), dtype=torch.int8, device=device)
    spike_out = torch.zeros((steps, batch, n), dtype=torch.bool, device=device)
    u_out = torch.zeros((steps, batch, n), dtype=dtype, device=device) if record_u else None
    v_index = None if v_columns is None else torch.as_tensor(v_columns, dtype=torch.int64, device=device)
    v_out = None if v_index is None else torch.zeros((steps, batch, v_index.numel()), dtype=dtype, device=device)
    limit = _in(program.limit, dtype)
    neg_limit = -limit
    bias, vth = _in(program.bias, dtype), _in(program.vth, dtype)
    reset_keep, reset_add = _in(program.reset_keep, dtype), _in(program.reset_add, dtype)
    reset_to_zero = isinstance(program.reset_keep, int) and program.reset_keep == 0 and \
        isinstance(program.reset_add, int) and program.reset_add == 0
    for t in range(steps):
        slot = acc[t % program.n_slots]
        un = _decayed_plus(u, program.keep_u, slot * 64)
        if program.n_slots > 1:
            slot.zero_()
        u = torch.clamp(un, neg_limit, limit)
        clip_u += u != un
        vn = _decayed_plus(v, program.keep_v, u)
        if not (isinstance(program.bias, int) and program.bias == 0):
            vn = vn + bias
        vc = torch.clamp(vn, neg_limit, limit)
        if program.has_refractory:
            # a refractory neuron keeps its v (no decay, no input, no clip count) and cannot spike
            resting = frozen > 0
            clip_v += ~resting & (vc != vn)
            vn = torch.where(resting, v, vc)
            fired = program.spiking & ~resting & (vn > vth)
            frozen = torch.where(fired, program.refractory, (frozen - 1).clamp_(min=0))
        else:
            clip_v += vc != vn
            vn = vc
            fired = vn > vth
            if not program.all_spiking:
                fired &= program.spiking
        if reset_to_zero:
            v = vn * ~fired
        else:
            vr = vn * reset_keep + reset_add if not (isinstance(reset_keep, int | float) and reset_keep == 0) \
                else reset_add
            if program.reset_can_clip:
                assert isinstance(vr, torch.Tensor)
                vrc = torch.clamp(vr, neg_limit, limit)
                clip_v += fired & (vrc != vr)
                vr = vrc
            v = torch.where(fired, vr, vn)
        spikes[:, :n] = fired
        spikes[:, n:] = stim[:, t]
        spike_out[t] = fired
        if u_out is not None:
            u_out[t] = u
        if v_out is not None:
            v_out[t] = v.index_select(1, v_index)
        for link in program.links:
            target = acc[(t + 1 + link.delay) % program.n_slots]
            if link.overwrites:
                target[:, link.dst] = link.contribution(spikes, dtype)
            else:
                target[:, link.dst] += link.contribution(spikes, dtype)
    clipped = torch.zeros((program.n_pops, 2), dtype=torch.int64, device=device)
    clipped[:, 0].index_add_(0, program.pop_of_neuron, clip_u.sum(dim=0, dtype=torch.int64))
    clipped[:, 1].index_add_(0, program.pop_of_neuron, clip_v.sum(dim=0, dtype=torch.int64))

    def host(x: torch.Tensor | None) -> np.ndarray | None:
        return None if x is None else x.transpose(0, 1).to(torch.int64).cpu().numpy()

    neuron_spikes = spike_out.transpose(0, 1).cpu().numpy()
    spikes_np = np.concatenate([neuron_spikes, stimulus.astype(bool)], axis=2)
    return Run(spikes=spikes_np, u=host(u_out), v=host(v_out), clipped=clipped.cpu().numpy())
