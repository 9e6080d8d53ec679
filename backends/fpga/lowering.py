"""Lower a quantized graph onto the event-driven LIF core (``rtl/snn_core.v``).

The RTL is fixed, readable Verilog; what a network changes is numbers:
``snnc_config.vh`` (widths, sizes and the parameters every neuron shares)
and ``$readmemh`` images of the core's memories. This module computes both
from the placed, quantized graph and the target's ``fpga`` section.

Neuron ids: the non-input populations, in graph order, own consecutive ids
0 .. N_NEURONS-1 (the core's state addresses); input populations, in
``graph.inputs`` order, are inputs 0 .. N_INPUTS-1 and event sources
N_NEURONS + i.

Fan-out: every synapse (source, target, mantissa w, delay d, projection
weight_exp e) lands in lane ``target % LANES`` of accumulator word
``target // LANES``. A source's synapses are grouped by (e, d, repeat) into
*segments*: runs of consecutive words, each word holding LANES mantissas
(0 in lanes no synapse uses). Repeated (source, target, d, e) synapses go
to separate segments ("repeat" counts them) so each one adds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from snnc.backends import base
from snnc.compiler import ir


def signed_bits(lo: int, hi: int) -> int:
    """Fewest two's-complement bits holding every integer in [lo, hi] (at least 2)."""
    bits = 2
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def unsigned_bits(hi: int) -> int:
    """Fewest bits holding 0 .. hi (at least 1)."""
    return max(1, int(hi).bit_length())


@dataclass(frozen=True)
class Memory:
    """One memory image: ``words`` (int, non-negative, < 2**width) for ``$readmemh``."""

    name: str
    width: int
    words: np.ndarray
    kind: str = "ram"  # "ram" (block RAM) or "spram" (iCE40 SPRAM candidate); "state" memories have no image
    image: bool = True

    @property
    def depth(self) -> int:
        return int(self.words.size)

    def hex_text(self) -> str:
        digits = max(1, math.ceil(self.width / 4))
        return "".join(f"{int(w):0{digits}x}\n" for w in self.words.tolist())


@dataclass
class Design:
    """The numbers that specialise ``snn_core.v`` for one network."""

    config: dict[str, int]
    memories: list[Memory]
    neuron_offsets: dict[str, int]          # population -> first neuron id
    input_offsets: dict[str, int]           # input population -> first input index
    n_neurons: int
    n_inputs: int
    synapse_words: int
    segments: int
    source_segments: np.ndarray = field(repr=False)  # per source: number of segments
    source_words: np.ndarray = field(repr=False)     # per source: weight words


def _neuron_table(graph: ir.Graph, n_neurons: int, offsets: dict[str, int]) -> dict[str, np.ndarray]:
    """Per-neuron parameter fields under the core's names (see snn_core.v's header and ``base.neuron_parameters``)."""
    p = base.neuron_parameters(graph, offsets, n_neurons)
    return {"keep_u": p["keep_u"], "keep_v": p["keep_v"], "vth": p["vth"], "bias": p["bias"], "rmode": p["reset_keep"],
            "radd": p["reset_add"], "spiking": p["spiking"], "refr": p["refractory"], "limit": p["limit"]}


def _synapses(graph: ir.Graph, offsets: dict[str, int], input_source: dict[str, int]) -> tuple[np.ndarray, ...]:
    """(source, target, mantissa, delay, exp) of every non-zero synapse, as int64 arrays."""
    cols: list[list[np.ndarray]] = [[], [], [], [], []]
    for proj in graph.projections:
        q = proj.quant
        assert q is not None
        mant = np.asarray(q.weight, dtype=np.int64)
        if proj.kind == "dense":
            dst, src = np.nonzero(mant)
            w = mant[dst, src]
            delay = np.zeros(w.size, np.int64) if proj.delay is None else np.asarray(proj.delay, np.int64)[dst, src]
        elif proj.kind == "sparse":
            assert proj.rows is not None and proj.cols is not None
            keep = mant != 0
            dst = np.asarray(proj.rows, np.int64)[keep]
            src = np.asarray(proj.cols, np.int64)[keep]
            w = mant[keep]
            delay = np.zeros(w.size, np.int64) if proj.delay is None else np.asarray(proj.delay, np.int64)[keep]
        else:
            assert proj.conv is not None
            src, dst, w = base.conv_synapses(proj.conv, mant)
            delay = np.zeros(w.size, np.int64)
        src_base = input_source[proj.src] if proj.src in input_source else offsets[proj.src]
        for column, values in zip(cols, (src + src_base, dst + offsets[proj.dst], w, delay,
                                         np.full(w.size, q.weight_exp, np.int64))):
            column.append(np.asarray(values, dtype=np.int64))
    return tuple(np.concatenate(c) if c else np.zeros(0, np.int64) for c in cols)


def _field_layout(table: dict[str, np.ndarray], widths: dict[str, int]) -> tuple[dict[str, int], np.ndarray, int]:
    """Parameter sets and the packing of the fields that differ between them.

    Returns (config entries, per-neuron set index, number of sets).
    """
    order = ("keep_u", "keep_v", "vth", "bias", "rmode", "radd", "spiking", "refr", "limit")
    rows = np.stack([table[name] for name in order], axis=1)
    sets, index = np.unique(rows, axis=0, return_inverse=True)
    index = index.ravel()
    names = {"keep_u": "KEEP_U", "keep_v": "KEEP_V", "vth": "VTH", "bias": "BIAS", "rmode": "RMODE",
             "radd": "RADD", "spiking": "SPIKING", "refr": "REFR", "limit": "LIMIT"}
    config: dict[str, int] = {}
    lsb = 0
    for column, name in enumerate(order):
        values = sets[:, column]
        vary = bool(values.size > 1 and np.any(values != values[0]))
        key = names[name]
        config[f"{key}_VARY"] = int(vary)
        config[f"{key}_CONST"] = int(values[0]) if values.size else 0
        config[f"{key}_LSB"] = lsb if vary else 0
        if vary:
            lsb += widths[name]
    config["PARAM_VARY"] = int(lsb > 0)
    config["PARAM_WIDTH"] = max(1, lsb)
    return config, index, int(sets.shape[0])


def _pack(columns: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """Pack (values, width) fields into words, the first field in the lowest bits (two's complement)."""
    words = np.zeros(columns[0][0].size, dtype=object)
    shift = 0
    for values, width in columns:
        mask = (1 << width) - 1
        words = words + np.array([(int(v) & mask) << shift for v in values.tolist()], dtype=object)
        shift += width
    return words


def lower(graph: ir.Graph, fpga: Any, graph_hash: str) -> Design:
    """The config and memory images of ``graph`` on the core described by ``fpga`` (an ``hw.FpgaTarget``)."""
    lanes = int(fpga.lanes)
    if lanes < 1 or lanes & (lanes - 1):
        raise ValueError(f"fpga.lanes must be a power of two, got {lanes}")
    offsets, n_neurons, input_offsets, n_inputs = base.neuron_numbering(graph)
    if n_neurons == 0 or n_inputs == 0:
        raise ValueError("the FPGA core needs at least one input and one non-input neuron")
    n_sources = n_neurons + n_inputs
    input_source = {name: n_neurons + off for name, off in input_offsets.items()}

    # ---- neuron parameters
    table = _neuron_table(graph, n_neurons, offsets)
    state_bits = max(p.quant.state_bits for p in graph.populations if p.quant is not None)
    widths = {"keep_u": 14, "keep_v": 14, "rmode": 1, "spiking": 1, "limit": state_bits,
              "vth": signed_bits(0, int(table["vth"].max())),
              "bias": signed_bits(int(table["bias"].min()), int(table["bias"].max())),
              "radd": signed_bits(int(table["radd"].min()), int(table["radd"].max())),
              "refr": unsigned_bits(int(table["refr"].max()))}
    field_config, pset_index, n_psets = _field_layout(table, widths)
    if n_psets == 1:
        pset_mode, pset_bits = 0, 1
    elif n_psets == n_neurons:
        pset_mode, pset_bits = 1, unsigned_bits(n_neurons - 1)
    else:
        pset_mode, pset_bits = 2, unsigned_bits(n_psets - 1)
    if pset_mode == 1:  # every neuron its own set: store the sets in neuron order, no index memory
        set_of_neuron = np.arange(n_neurons)
        set_rows = np.arange(n_neurons)
    else:
        set_rows = np.array([int(np.flatnonzero(pset_index == k)[0]) for k in range(n_psets)], dtype=np.int64)
        set_of_neuron = pset_index

    # ---- synapses into segments
    src, dst, mant, delay, exp = _synapses(graph, offsets, input_source)
    word = dst // lanes
    lane = dst % lanes
    # a synapse repeating an earlier (source, target, delay, exp) goes to the next "repeat" layer
    key_order = np.lexsort((exp, delay, dst, src))
    keys = np.stack([src, dst, delay, exp], axis=1)[key_order]
    new_key = np.ones(keys.shape[0], dtype=bool)
    if keys.shape[0] > 1:
        new_key[1:] = np.any(keys[1:] != keys[:-1], axis=1)
    group_start = np.maximum.accumulate(np.where(new_key, np.arange(keys.shape[0]), 0))
    repeat = np.empty(keys.shape[0], dtype=np.int64)
    repeat[key_order] = np.arange(keys.shape[0]) - group_start
    # one weight word per distinct (source, exp, delay, repeat, word)
    order = np.lexsort((lane, word, repeat, delay, exp, src))
    s_src, s_word, s_lane = src[order], word[order], lane[order]
    s_mant, s_delay, s_exp, s_rep = mant[order], delay[order], exp[order], repeat[order]
    head = np.ones(order.size, dtype=bool)
    if order.size > 1:
        head[1:] = ((s_src[1:] != s_src[:-1]) | (s_exp[1:] != s_exp[:-1]) | (s_delay[1:] != s_delay[:-1])
                    | (s_rep[1:] != s_rep[:-1]) | (s_word[1:] != s_word[:-1]))
    word_id = np.cumsum(head) - 1
    n_words = int(word_id[-1]) + 1 if order.size else 0
    w_src, w_word = s_src[head], s_word[head]
    w_exp, w_delay, w_rep = s_exp[head], s_delay[head], s_rep[head]
    weight_bits = signed_bits(int(mant.min()), int(mant.max())) if mant.size else 2
    lane_values = np.zeros((max(n_words, 1), lanes), dtype=np.int64)
    lane_values[word_id, s_lane] = s_mant
    # a segment starts where the run of consecutive words of one (source, exp, delay, repeat) breaks
    seg_head = np.ones(n_words, dtype=bool)
    if n_words > 1:
        seg_head[1:] = ((w_src[1:] != w_src[:-1]) | (w_exp[1:] != w_exp[:-1]) | (w_delay[1:] != w_delay[:-1])
                        | (w_rep[1:] != w_rep[:-1]) | (w_word[1:] != w_word[:-1] + 1))
    seg_first = np.flatnonzero(seg_head)
    seg_count = np.diff(np.append(seg_first, n_words))
    seg_src = w_src[seg_first]
    n_segments = int(seg_first.size)
    source_segments = np.bincount(seg_src, minlength=n_sources).astype(np.int64)
    source_words = np.bincount(w_src, minlength=n_sources).astype(np.int64) if n_words else np.zeros(n_sources, np.int64)
    seg_start = np.concatenate([[0], np.cumsum(source_segments)[:-1]])
    word_start = np.concatenate([[0], np.cumsum(source_words)[:-1]])

    # ---- exact accumulator width: the largest sum of |w << e| any neuron can receive in one slot
    bound = np.zeros(n_neurons, dtype=np.float64)
    np.add.at(bound, dst, np.abs(mant).astype(np.float64) * np.exp2(exp.astype(np.float64)))
    acc_bits = signed_bits(-int(bound.max(initial=0)), int(bound.max(initial=0)))
    max_delay = int(delay.max(initial=0))
    slots = 1 << unsigned_bits(max_delay) if max_delay > 0 else 1
    word_bits = unsigned_bits(max(1, math.ceil(n_neurons / lanes)) - 1)
    exp_bits = unsigned_bits(int(exp.max(initial=0)))
    delay_bits = unsigned_bits(max_delay)
    cnt_bits = unsigned_bits(int(seg_count.max(initial=1)))
    segn_bits = unsigned_bits(int(source_segments.max(initial=0)))
    seg_depth = max(1, n_segments)
    wmem_depth = max(1, n_words)
    seg_addr_bits = unsigned_bits(seg_depth - 1)
    wmem_addr_bits = unsigned_bits(wmem_depth - 1)

    vth_bits, bias_bits, radd_bits = widths["vth"], widths["bias"], widths["radd"]
    pu_w = state_bits + 14
    a6_w = acc_bits + ir.ACT_SHIFT
    vd_w = max(pu_w, bias_bits) + 1
    config: dict[str, int] = {
        "N_NEURONS": n_neurons, "NEURON_BITS": unsigned_bits(n_neurons - 1),
        "N_INPUTS": n_inputs, "IN_BITS": unsigned_bits(n_inputs - 1),
        "N_SOURCES": n_sources, "SRC_BITS": unsigned_bits(n_sources - 1),
        "STATE_BITS": state_bits, "ACC_BITS": acc_bits, "LANES": lanes, "LANE_BITS": unsigned_bits(lanes - 1),
        "WORD_BITS": word_bits, "ACC_WORDS_PAD": 1 << word_bits, "SLOTS": slots,
        "SLOT_BITS": unsigned_bits(slots - 1), "ACC_DEPTH": slots << word_bits,
        "ACC_ADDR_BITS": unsigned_bits((slots << word_bits) - 1),
        "WEIGHT_BITS": weight_bits, "WMEM_WIDTH": lanes * weight_bits, "WMEM_DEPTH": wmem_depth,
        "WMEM_ADDR_BITS": wmem_addr_bits, "WMEM_SPRAM": 0,
        "SEG_DEPTH": seg_depth, "SEG_ADDR_BITS": seg_addr_bits, "SEGN_BITS": segn_bits,
        "CNT_BITS": cnt_bits, "DELAY_BITS": delay_bits, "EXP_BITS": exp_bits,
        "N_PSETS": n_psets, "PSET_MODE": pset_mode, "PSET_BITS": pset_bits,
        "VTH_BITS": vth_bits, "BIAS_BITS": bias_bits, "RADD_BITS": radd_bits, "REF_BITS": widths["refr"],
        "PU_W": pu_w, "A6_W": a6_w, "UN_W": max(pu_w, a6_w) + 1, "VD_W": vd_w,
        "VS_W": max(vd_w, state_bits, vth_bits, radd_bits) + 2,
        "UART_CLKS_PER_BIT": max(4, round(fpga.clock_mhz * 1e6 / fpga.baud)),
        "GRAPH_TAG": int(graph_hash[:8], 16),
        **field_config,
    }

    # ---- memory images
    param_cols = [(table[name][set_rows], widths[name]) for name in
                  ("keep_u", "keep_v", "vth", "bias", "rmode", "radd", "spiking", "refr", "limit")
                  if config[{"keep_u": "KEEP_U", "keep_v": "KEEP_V", "vth": "VTH", "bias": "BIAS", "rmode": "RMODE",
                             "radd": "RADD", "spiking": "SPIKING", "refr": "REFR", "limit": "LIMIT"}[name] + "_VARY"]]
    memories = []
    if param_cols:
        memories.append(Memory("params", config["PARAM_WIDTH"], _pack(param_cols)))
    if pset_mode == 2:
        memories.append(Memory("pset", pset_bits, set_of_neuron.astype(object)))
    ptr_words = _pack([(word_start, wmem_addr_bits), (source_segments, segn_bits), (seg_start, seg_addr_bits)])
    memories.append(Memory("ptr", wmem_addr_bits + segn_bits + seg_addr_bits, ptr_words))
    if n_segments:
        seg_words = _pack([(w_exp[seg_first], exp_bits), (w_delay[seg_first], delay_bits), (seg_count, cnt_bits),
                           (w_word[seg_first], word_bits)])
    else:
        seg_words = np.zeros(1, dtype=object)
    memories.append(Memory("seg", word_bits + cnt_bits + delay_bits + exp_bits, seg_words))
    weight_words = _pack([(lane_values[:, k], weight_bits) for k in range(lanes)])
    memories.append(Memory("weights", lanes * weight_bits, weight_words))
    return Design(config=config, memories=memories, neuron_offsets=offsets, input_offsets=input_offsets,
                  n_neurons=n_neurons, n_inputs=n_inputs, synapse_words=n_words, segments=n_segments,
                  source_segments=source_segments, source_words=source_words)


def config_text(config: dict[str, int], description: str) -> str:
    """``snnc_config.vh``: one ``localparam`` per entry (64-bit signed for the parameter constants)."""
    lines = [f"// {description}", "// Generated by snnc: the numbers that specialise snn_core.v for one network.", ""]
    for key, value in config.items():
        if key == "GRAPH_TAG":
            lines.append(f"localparam [31:0] {key} = 32'h{value:08x};")
        elif key.endswith("_CONST"):
            literal = f"-64'sd{-value}" if value < 0 else f"64'sd{value}"
            lines.append(f"localparam signed [63:0] {key} = {literal};")
        else:
            lines.append(f"localparam integer {key} = {value};")
    return "\n".join(lines) + "\n"
