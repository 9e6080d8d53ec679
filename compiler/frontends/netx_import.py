"""Import lava-dl "netx" HDF5 network descriptions (``.net`` files) as already-quantized snnc graphs.

A netx file (written by lava-dl SLAYER's ``export_hdf5``) is a list of
layers ``/layer/0 .. /layer/{n-1}``, each a synapse plus a neuron group,
connected in order. What lava-dl's ``netx.hdf5.Network`` builds from it, and
so what this importer reproduces bit for bit:

- **Shapes** are stored (C, H, W) (``shape`` = [3, 16, 16]); netx reverses
  them to Lava's (W, H, C). snnc keeps (C, H, W), neurons in C order.
- **Conv** ``weight`` is (C_out, C_in/groups, kH, kW, 1); netx flips and
  transposes it for Lava's true convolution on (W, H, C) data, which makes the
  file kernel exactly PyTorch's cross-correlation kernel, our IR layout.
  ``stride``/``padding``/``dilation`` are (y, x), our (H, W) order. Lava's Conv
  ignores ``weight_exp``: the effective weight is the file weight.
- **Dense** ``weight`` is (out, in) (or flat); netx passes it through
  ``optimize_weight_bits`` and Lava's bit-accurate Dense clips and truncates
  it; :func:`lava_dense_effective` replays both to get the exact per-synapse
  weight. A ``flatten`` layer before it is C order of (C, H, W), which is
  snnc's flat order already, so it imports as nothing.
- **Pool** (SLAYER sum pooling; netx itself refuses it) stores one
  (1, 1, kH, kW) kernel shared by every channel: a depthwise conv here.
- **Delays** (dense only): per output neuron (axonal), per input neuron or
  one scalar, broadcast to every synapse; netx clips them at 62 silently,
  snnc refuses larger ones.
- **Bias**: per neuron or per channel, added as ``bias_mant`` with
  ``bias_exp = 6``; a per-neuron bias of a 3-d layer is in Lava's (W, H, C)
  order, as netx compares it with the reversed shape.
- **Neurons** (``CUBA``/``LOIHI``): ``du = iDecay - 1`` in Lava cancels its
  hidden +1, so ``i_decay = iDecay``, ``v_decay = vDecay``, ``vth = vThMant``.
- **Input layer**: an encoder neuron driven only by its bias (its ``a_in`` is
  never connected by netx). snnc treats *its spikes* as the network input
  (population "input"); :func:`encode_input` runs it to make them. A spike it
  emits at step t reaches layer 1 at t + 1, like every snnc projection, so
  snnc step t is Lava ``time_step`` t + 1 throughout.

The graph carries float parameters only so that ``ir.check(graph, "float")``
passes; they approximate the integer neuron with scale 1 (v_float = v / 64,
one float time unit = ``dt``). The integer parameters are what runs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from snnc.compiler import ir

BIAS_EXP = 6
"""netx always sets ``bias_exp = 6``, aligning the bias with the ``<< 6`` of input and threshold."""
MAX_DELAY = 62
"""Largest delay netx passes to Lava's DelayDense (it clips larger ones; snnc refuses them)."""
NO_NEURON_VTH = 1 << 17
"""netx's default threshold for a dense layer without neurons: ``1 << 18 - 1`` is 1 << 17 in Python."""
STATE_BITS = 24
SPIKING_TYPES = ("CUBA", "LOIHI")
DEFAULT_DT = 1e-3
"""Seconds per step when the file has no ``simulation/Ts`` (SLAYER's Ts is in milliseconds by convention)."""


class NetxImportError(ValueError):
    """A netx file cannot be imported; the one-line message names the file and, where known, the layer."""


def import_netx(path: str | Path, dt: float | None = None) -> ir.Graph:
    """Import the netx ``.net`` file at ``path`` as a quantized :class:`ir.Graph`.

    ``dt`` (seconds) overrides ``simulation/Ts`` (milliseconds) of the file,
    else :data:`DEFAULT_DT`. Raises :class:`NetxImportError`.
    """
    path = Path(path)
    label = str(path)
    try:
        handle = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise NetxImportError(f"{label}: not a netx HDF5 file ({' '.join(str(exc).split())})") from exc
    with handle:
        try:
            graph = _Importer(label, handle, dt).run()
        except NetxImportError:
            raise
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise NetxImportError(f"{label}: malformed netx file ({type(exc).__name__}: {' '.join(str(exc).split())})") \
                from exc
    try:
        ir.check(graph, "float")
        return ir.check(graph, "quantized")
    except ir.IRError as exc:
        raise NetxImportError(f"{label}: {exc}") from exc


def encode_input(graph: ir.Graph, bias: np.ndarray, steps: int) -> np.ndarray:
    """Spikes (steps, N) bool of the netx input neuron driven by a constant ``bias`` (bias_mant, bias_exp 6).

    ``bias`` is (C, H, W) or flat in C order; no synaptic input. The neuron
    follows the integer LIF of ``docs/semantics.md`` with 24-bit saturation.
    """
    params = graph.meta.get("netx", {}).get("input_neuron")
    if params is None:
        raise ValueError("graph has no netx input neuron (import it with import_netx from a file whose input layer has one)")
    size = graph.population(graph.inputs[0]).size
    bias = np.asarray(bias)
    if bias.size != size:
        raise ValueError(f"bias has {bias.size} entries, the input population has {size}")
    bias_term = np.trunc(bias).astype(np.int64).ravel() << int(params["bias_exp"])
    limit = (1 << (STATE_BITS - 1)) - 1
    v = np.zeros(size, dtype=np.int64)  # u stays 0: the input neuron has no synaptic input
    keep_v = 4096 - int(params["v_decay"])
    threshold = int(params["vth"]) << ir.ACT_SHIFT
    spikes = np.zeros((steps, size), dtype=bool)
    for t in range(steps):
        v = np.clip(_rz_4096(v * keep_v) + bias_term, -limit, limit)
        spikes[t] = v > threshold
        v[spikes[t]] = 0
    return spikes


def _rz_4096(product: np.ndarray) -> np.ndarray:
    return np.sign(product) * (np.abs(product) >> 12)


def lava_dense_effective(weight: np.ndarray) -> np.ndarray | None:
    """The per-synapse integer weight Lava applies to a netx dense ``weight``; None where it is not one integer.

    Replays ``netx.utils.optimize_weight_bits`` (clip mixed weights to
    [-256, 254], scale into 8 bits by a power of two, count trailing zero
    bits) and Lava's bit-accurate Dense (clip to 8 bits, truncate the low
    ``8 - num_weight_bits + mixed`` bits, shift the summed input by
    ``weight_exp``, flooring when negative). None also when netx itself
    would fail (an all-zero matrix).
    """
    w = np.asarray(weight, dtype=np.int64)
    if w.size == 0 or not np.any(w):
        return None
    if (w.max() > 254 and w.min() < 0) or (w.min() < -256 and w.max() > 0):
        w = np.clip(w, -256, 254)
    lo, hi = int(w.min()), int(w.max())
    signed = int(lo < 0 <= hi)  # netx's sign modes: inhibitory only when every weight is negative
    if signed:
        scale = min(127 / hi if hi else math.inf, -128 / lo)
    elif hi < 0:
        scale = -256 / lo
    else:
        scale = 255 / hi
    scale_bits = int(math.floor(math.log2(scale))) + signed
    zeros = 8
    while zeros > 0 and np.any(w % (1 << zeros)):
        zeros -= 1
    num_weight_bits = 8 - scale_bits - (zeros - signed)
    weight_exp = -scale_bits
    if scale_bits < 0:
        return None
    lava = w << scale_bits
    # Lava re-derives the sign mode from the shifted weights, by its own rule
    inhibitory = lo < 0 and hi <= 0
    mixed = int(lo < 0 < hi)
    if inhibitory:
        lava = -lava
    lava = np.clip(lava, -256 if mixed else 0, 255)
    truncate = 8 - num_weight_bits + mixed
    if truncate < 0:
        return None
    lava = (lava >> truncate) << truncate
    if inhibitory:
        lava = -lava
    if weight_exp >= 0:
        return lava << weight_exp
    if np.any(lava % (1 << -weight_exp)):
        return None
    return lava >> -weight_exp


def factor_weights(effective: np.ndarray) -> tuple[np.ndarray, int]:
    """(mantissa, weight_exp): the largest power of two (at most 2**7) that divides every effective weight."""
    exp = 0
    while exp < 7 and np.any(effective) and not np.any(effective % (1 << (exp + 1))):
        exp += 1
    return effective >> exp, exp


def _bits(mantissa: np.ndarray) -> int:
    return max(2, int(np.abs(mantissa).max(initial=0)).bit_length() + 1)


def _text(value: Any) -> str:
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else b""
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


class _Importer:
    """Walks the layers in order, keeping the previous population's name and (C, H, W) or (N,) shape."""

    def __init__(self, label: str, handle: h5py.File, dt: float | None) -> None:
        self.label = label
        self.handle = handle
        if dt is None:
            ts = handle.get("simulation/Ts")
            dt = DEFAULT_DT if ts is None else float(np.asarray(ts[()]).reshape(-1)[0]) * 1e-3
        if not (math.isfinite(dt) and dt > 0):
            raise NetxImportError(f"{label}: dt must be a positive number of seconds, got {dt!r}")
        self.dt = float(dt)
        self.populations: list[ir.Population] = []
        self.projections: list[ir.Projection] = []
        self.types: list[str] = []
        self.input_neuron: dict[str, int] | None = None

    def fail(self, index: int, kind: str, message: str) -> NetxImportError:
        return NetxImportError(f"{self.label}: layer {index} ('{kind}'): {message}")

    def run(self) -> ir.Graph:
        if "layer" not in self.handle:
            raise NetxImportError(f"{self.label}: malformed netx file (no '/layer' group)")
        layers = self.handle["layer"]
        count = len(layers)
        if count == 0:
            raise NetxImportError(f"{self.label}: malformed netx file ('/layer' is empty)")
        for index in range(count):
            if str(index) not in layers:
                raise NetxImportError(f"{self.label}: malformed netx file (layers are not numbered 0..{count - 1})")
            layer = layers[str(index)]
            kind = _text(layer["type"][()])
            self.types.append(kind)
            if index == 0 and kind != "input":
                raise self.fail(index, kind, "the first layer must be 'input' (snnc needs the input shape)")
            handler = {"input": self.add_input, "dense": self.add_dense, "conv": self.add_conv,
                       "pool": self.add_pool, "flatten": self.add_flatten}.get(kind)
            if handler is None or (kind == "input" and index):
                raise self.fail(index, kind, "layer type is not supported by snnc's netx import "
                                "(supported: input first, then dense, conv, pool, flatten)")
            handler(index, layer)
        last = self.populations[-1].name
        meta = {"source": self.label, "format": "netx",
                "netx": {"file": self.label, "input_neuron": self.input_neuron, "layers": list(self.types)}}
        return ir.Graph(populations=tuple(self.populations), projections=tuple(self.projections), inputs=("input",),
                        outputs=(last,), dt=self.dt, meta=meta)

    # ------------------------------------------------------------------ layers

    @property
    def previous(self) -> ir.Population:
        return self.populations[-1]

    def add_input(self, index: int, layer: h5py.Group) -> None:
        shape = tuple(int(n) for n in np.asarray(layer["shape"][()]).reshape(-1))
        self.populations.append(ir.Population("input", shape, "input"))
        if "neuron" in layer:
            neuron = layer["neuron"]
            kind = _text(neuron["type"][()])
            if kind not in SPIKING_TYPES:
                raise self.fail(index, "input", f"neuron type '{kind}' is not supported (only {', '.join(SPIKING_TYPES)})")
            self.input_neuron = {"i_decay": self.scalar(index, "input", neuron, "iDecay"),
                                 "v_decay": self.scalar(index, "input", neuron, "vDecay"),
                                 "vth": self.scalar(index, "input", neuron, "vThMant"), "bias_exp": BIAS_EXP}

    def add_flatten(self, index: int, layer: h5py.Group) -> None:
        """netx flattens Lava's (W, H, C) output back to C order of (C, H, W): snnc's flat order, so nothing to do."""

    def add_dense(self, index: int, layer: h5py.Group) -> None:
        size = int(np.prod(np.asarray(layer["shape"][()])))
        src = self.previous
        weight = np.asarray(layer["weight"][()]).astype(np.int64)
        if weight.ndim == 1:
            weight = weight.reshape(size, -1)
        if weight.shape != (size, src.size):
            raise self.fail(index, "dense", f"weight shape {weight.shape} does not fit {src.size} inputs -> {size} neurons")
        effective = lava_dense_effective(weight)
        if effective is None:
            raise self.fail(index, "dense", "Lava's Dense cannot apply these weights as one integer per synapse "
                            "(all zero, or netx's weight exponent floors a partial sum)")
        delay = self.dense_delay(index, layer, weight.shape)
        pop = self.neurons(index, "dense", layer, (size,))
        self.add_projection(index, "dense", pop, effective, delay=delay)

    def add_conv(self, index: int, layer: h5py.Group) -> None:
        weight = np.asarray(layer["weight"][()]).astype(np.int64)
        if weight.ndim == 5:
            weight = weight[..., 0]
        groups = int(np.asarray(layer["groups"][()]).reshape(-1)[0]) if "groups" in layer else 1
        spec = self.conv_spec(index, "conv", layer, weight.shape[2:], groups)
        if "delay" in layer and np.any(np.asarray(layer["delay"][()])):
            raise self.fail(index, "conv", "conv delays are ignored by netx; snnc refuses them rather than guess")
        pop = self.neurons(index, "conv", layer, spec.out_shape)
        self.add_projection(index, "conv", pop, weight, conv=spec)

    def add_pool(self, index: int, layer: h5py.Group) -> None:
        kernel = np.asarray(layer["weight"][()]).astype(np.int64)
        kernel = kernel.reshape(kernel.shape[-2:]) if kernel.ndim >= 2 else kernel.reshape(1, -1)
        channels = self.conv_in_shape(index, "pool")[0]
        spec = self.conv_spec(index, "pool", layer, kernel.shape, channels)
        if spec.out_shape[0] != channels:
            raise self.fail(index, "pool", f"pooling keeps the {channels} channels, the layer shape says {spec.out_shape[0]}")
        if "neuron" not in layer:
            raise self.fail(index, "pool", "a pool layer without neurons is not supported")
        pop = self.neurons(index, "pool", layer, spec.out_shape)
        self.add_projection(index, "pool", pop, np.broadcast_to(kernel, (channels, 1, *kernel.shape)).copy(), conv=spec)

    # ------------------------------------------------------------------ pieces

    def conv_in_shape(self, index: int, kind: str) -> tuple[int, int, int]:
        shape = self.previous.shape
        if len(shape) != 3:
            raise self.fail(index, kind, f"needs a (C, H, W) input, the previous layer has shape {shape}")
        return int(shape[0]), int(shape[1]), int(shape[2])

    def conv_spec(self, index: int, kind: str, layer: h5py.Group, kernel: tuple[int, ...], groups: int) -> ir.ConvSpec:
        def pair(key: str, default: int) -> tuple[int, int]:
            if key not in layer:
                return default, default
            arr = np.asarray(layer[key][()]).astype(np.int64).reshape(-1)
            return (int(arr[0]), int(arr[0])) if arr.size == 1 else (int(arr[0]), int(arr[1]))

        out_shape = tuple(int(n) for n in np.asarray(layer["shape"][()]).reshape(-1))
        if len(out_shape) != 3:
            raise self.fail(index, kind, f"shape {out_shape} is not (C, H, W)")
        stride = pair("stride", 1) if kind == "conv" or "stride" in layer else (int(kernel[0]), int(kernel[1]))
        spec = ir.ConvSpec(in_shape=self.conv_in_shape(index, kind), out_shape=out_shape,  # type: ignore[arg-type]
                           stride=stride, padding=pair("padding", 0), dilation=pair("dilation", 1), groups=groups)
        got = ir.conv_output_shape(spec, (int(kernel[0]), int(kernel[1])))
        if got != out_shape[1:]:
            raise self.fail(index, kind, f"output shape {out_shape} disagrees with the geometry (it gives {got})")
        return spec

    def scalar(self, index: int, kind: str, group: h5py.Group, key: str) -> int:
        arr = np.asarray(group[key][()]).reshape(-1)
        if arr.size != 1 and np.any(arr != arr[0]):
            raise self.fail(index, kind, f"neuron '{key}' must be one value per layer")
        return int(arr[0])

    def dense_delay(self, index: int, layer: h5py.Group, shape: tuple[int, int]) -> np.ndarray | None:
        if "delay" not in layer:
            return None
        delay = np.asarray(layer["delay"][()]).astype(np.int64)
        if delay.size and (delay.min() < 0 or delay.max() > MAX_DELAY):
            raise self.fail(index, "dense", f"delays [{delay.min()}, {delay.max()}] leave 0..{MAX_DELAY} "
                            "(netx would clip them silently)")
        if delay.size == 1:
            return np.full(shape, int(delay.reshape(-1)[0]), dtype=np.int64)
        delay = delay.reshape(-1)
        if delay.size == shape[0]:  # axonal: one delay per output neuron, as netx reads it first
            return np.repeat(delay[:, None], shape[1], axis=1)
        if delay.size == shape[1]:
            return np.repeat(delay[None, :], shape[0], axis=0)
        raise self.fail(index, "dense", f"{delay.size} delays fit neither {shape[0]} outputs nor {shape[1]} inputs")

    def bias(self, index: int, kind: str, layer: h5py.Group, shape: tuple[int, ...]) -> np.ndarray:
        size = int(np.prod(shape))
        if "bias" not in layer:
            return np.zeros(size, dtype=np.int64)
        bias = np.asarray(layer["bias"][()]).astype(np.int64)  # netx reads it with astype(int): truncation
        if bias.size == 1:
            return np.full(size, int(bias.reshape(-1)[0]), dtype=np.int64)
        if len(shape) == 3 and bias.shape == tuple(shape[::-1]):
            return bias.transpose(2, 1, 0).reshape(-1)
        if len(shape) == 3 and bias.ndim == 1 and bias.size == shape[0]:
            return np.repeat(bias, shape[1] * shape[2])
        if len(shape) == 1 and bias.size == size:
            return bias.reshape(-1)
        raise self.fail(index, kind, f"bias of shape {bias.shape} fits neither each neuron nor each channel of {shape}")

    def neurons(self, index: int, kind: str, layer: h5py.Group, shape: tuple[int, ...]) -> ir.Population:
        """The layer's population: integer params as netx gives Lava, float params approximating them."""
        size = int(np.prod(shape))
        bias = self.bias(index, kind, layer, shape)
        if "neuron" in layer:
            neuron = layer["neuron"]
            neuron_type = _text(neuron["type"][()])
            if neuron_type not in SPIKING_TYPES:
                raise self.fail(index, kind, f"neuron type '{neuron_type}' is not supported (only {', '.join(SPIKING_TYPES)})")
            if "gradedSpike" in neuron and bool(np.asarray(neuron["gradedSpike"][()]).reshape(-1)[0]):
                raise self.fail(index, kind, "graded spikes are not supported")
            i_decay, v_decay = self.scalar(index, kind, neuron, "iDecay"), self.scalar(index, kind, neuron, "vDecay")
            vth, spiking = self.scalar(index, kind, neuron, "vThMant"), True
        elif kind == "dense":
            # netx's default: a non-leaky current integrator with threshold 1 << 17. v saturates at 2**23 - 1 =
            # (1 << 17 << 6) - 1, so it never spikes, in Lava or here: a non-spiking readout says so honestly.
            i_decay, v_decay, vth, spiking = 0, 4096, NO_NEURON_VTH, False
        else:
            raise self.fail(index, kind, "a layer without a neuron group is only supported for dense layers")

        def ints(value: int) -> np.ndarray:
            return np.full(size, value, dtype=np.int64)

        quant = ir.IntNeuron(i_decay=ints(i_decay), v_decay=ints(v_decay), vth=ints(vth), bias_mant=bias,
                             bias_exp=ints(BIAS_EXP), spiking=spiking, reset="zero", state_bits=STATE_BITS)
        model, params = self.float_params(i_decay, v_decay, vth, spiking)
        floats = {key: np.full(shape, value, dtype=np.float64) for key, value in params.items()}
        floats["bias"] = bias.astype(np.float64).reshape(shape)
        return ir.Population(f"layer{index}", tuple(shape), model, floats, reset="zero", quant=quant)

    def float_params(self, i_decay: int, v_decay: int, vth: int, spiking: bool) -> tuple[str, dict[str, float]]:
        """A float model with gain 1 from a_in to v / 64: tau = dt * 4096 / decay; a zero decay gets decay 1 (a huge tau)."""
        tau_mem = self.dt * 4096 / max(v_decay, 1)
        r = tau_mem / self.dt
        if i_decay == 4096:
            if v_decay == 0 and spiking:
                return "if", {"r": 1.0, "v_threshold": float(vth), "v_reset": 0.0}
            params = {"tau_mem": tau_mem, "r": r, "v_leak": 0.0}
            return ("lif", {**params, "v_threshold": float(vth), "v_reset": 0.0}) if spiking else ("li", params)
        tau_syn = self.dt * 4096 / max(i_decay, 1)
        params = {"tau_syn": tau_syn, "tau_mem": tau_mem, "r": r, "v_leak": 0.0, "w_in": tau_syn / self.dt}
        if spiking:
            return "cuba_lif", {**params, "v_threshold": float(vth), "v_reset": 0.0}
        return "cuba_li", params

    def add_projection(self, index: int, kind: str, pop: ir.Population, effective: np.ndarray,
                       delay: np.ndarray | None = None, conv: ir.ConvSpec | None = None) -> None:
        mantissa, exp = factor_weights(effective)
        if conv is not None and -128 <= int(effective.min(initial=0)) and int(effective.max(initial=0)) <= 127:
            mantissa, exp = effective, 0  # as netx gives it to Lava's Conv, which has no exponent
        quant = ir.IntWeights(weight=mantissa, weight_exp=exp, weight_bits=_bits(mantissa))
        self.projections.append(ir.Projection(
            f"layer{index}_{kind}", self.previous.name, pop.name, "conv" if conv is not None else "dense",
            effective.astype(np.float64), conv=conv, delay=delay, quant=quant))
        self.populations.append(pop)
