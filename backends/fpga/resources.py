"""Memory-to-block-RAM estimates and the fit check that runs before synthesis and place-and-route.

Why: place and route of a design that cannot fit fails only after minutes, with an error about a cell
type ("no BELs remaining ... ICESTORM_RAM") that does not say which network memory is too big. This
module counts the block RAMs each memory of the generated design needs, in the same geometries yosys
maps to, and fails early with one line naming the resource, required vs available, and the largest
memories, pointing at the hardware config field that sets the limit.

Geometries (fpga.md §1.1, §6):
- iCE40 SB_RAM40_4K (EBR): 4 Kbit, 256x16, 512x8, 1024x4 or 2048x2.
- iCE40 SB_SPRAM256KA: 256 Kbit, 16K x 16, single port, not initialisable from the bitstream. Yosys
  packs 8-bit words into the 16-bit word with the nibble write mask (a 32K x 8 memory fits one SPRAM,
  measured), so memories up to 8 bits wide are counted as 32K words per SPRAM; wider ones as 16-bit
  columns of 16K words. Narrower-than-8 memories are counted like 8-bit ones (conservative: whether yosys
  packs four 4-bit words per SPRAM word was not measured).
- ECP5 DP16KD: 18 Kbit, 16Kx1, 8Kx2, 4Kx4, 2Kx9, 1Kx18, or 512x36 in pseudo dual-port mode (one write,
  one read port: what the core's 1R1W memories need).
- Generic: no block geometry is known, so the estimate is the memory's bit count against
  ``fpga.bram_bits``.

Memories of 64 bits or fewer count as 0 blocks: yosys maps such tiny memories to LUTs/FFs (or LUT-RAM)
rather than spend a whole block RAM on them. Anything larger counts at least one block; yosys may map a
few small memories (up to a few hundred bits) to logic as well, so the estimate errs on the safe side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from snnc.backends import base
from snnc.compiler.hw import FpgaTarget

#: Memories at or below this size (bits) are assumed to be mapped to logic, not a block RAM.
LOGIC_MEMORY_BITS = 64

#: iCE40 SB_RAM40_4K configurations (depth, width).
ICE40_EBR_GEOMETRIES: tuple[tuple[int, int], ...] = ((256, 16), (512, 8), (1024, 4), (2048, 2))
ICE40_EBR_BITS = 4096
#: iCE40 SB_SPRAM256KA: 16K words of 16 bits.
ICE40_SPRAM_DEPTH = 16384
ICE40_SPRAM_WIDTH = 16
ICE40_SPRAM_BITS = ICE40_SPRAM_DEPTH * ICE40_SPRAM_WIDTH
#: ECP5 DP16KD configurations (depth, width); 512x36 is the pseudo dual-port mode.
ECP5_DP16KD_GEOMETRIES: tuple[tuple[int, int], ...] = (
    (16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36),
)
ECP5_DP16KD_BITS = 18432

MEMORY_KINDS = ("ram", "spram", "rom")

_FAMILY_NAMES = {"ice40": "iCE40", "ecp5": "ECP5", "generic": "generic FPGA"}


class FitError(base.FitError):
    """The design's memories need more block RAM than the part has (one line, names the resource).

    ``shortfalls`` holds the same facts as data: one ``{"resource", "unit", "required", "available",
    "field", "largest"}`` per short resource (``largest``: the biggest memory's name).
    """

    def __init__(self, message: str, shortfalls: list[dict] | None = None) -> None:
        super().__init__(message)
        self.shortfalls = shortfalls or []


@dataclass(frozen=True)
class Memory:
    """One memory of the generated design.

    ``kind``: "ram" (one write and one read port, block RAM), "spram" (a single-port memory the RTL
    marks for iCE40 SPRAM; on other families it is an ordinary block RAM), "rom" (read-only, initialised
    from the bitstream: block RAM too).
    """

    name: str
    width: int
    depth: int
    kind: str = "ram"

    def __post_init__(self) -> None:
        if self.kind not in MEMORY_KINDS:
            raise ValueError(f"memory {self.name}: kind must be one of {', '.join(MEMORY_KINDS)}, not '{self.kind}'")
        if self.width < 1 or self.depth < 1:
            raise ValueError(f"memory {self.name}: width and depth must be >= 1 (got {self.width}x{self.depth})")

    @property
    def bits(self) -> int:
        """Total bits (width x depth)."""
        return self.width * self.depth


def _tiled(width: int, depth: int, geometries: tuple[tuple[int, int], ...]) -> int:
    """Fewest blocks over the geometries, tiling width columns by depth rows (what yosys' memory_libmap does)."""
    return min(math.ceil(width / gw) * math.ceil(depth / gd) for gd, gw in geometries)


def uses_spram(memory: Memory, family: str) -> bool:
    """True when the memory goes to iCE40 SPRAM rather than EBR (only "spram" memories on iCE40)."""
    return family == "ice40" and memory.kind == "spram"


def blocks(memory: Memory, family: str) -> int:
    """Blocks the memory needs on ``family``.

    iCE40: SB_SPRAM256KA count for "spram" memories, SB_RAM40_4K count otherwise. ECP5: DP16KD count.
    Generic: the bit count (block RAM is counted in bits there). 0 for memories of <= 64 bits
    (:data:`LOGIC_MEMORY_BITS`), which yosys maps to logic.
    """
    if memory.bits <= LOGIC_MEMORY_BITS:
        return 0
    if family == "ice40":
        if memory.kind == "spram":
            if memory.width <= 8:
                # Two 8-bit words per 16-bit SPRAM word through the nibble write mask (fpga.md §1.1, measured).
                return math.ceil(memory.depth / (2 * ICE40_SPRAM_DEPTH))
            return math.ceil(memory.width / ICE40_SPRAM_WIDTH) * math.ceil(memory.depth / ICE40_SPRAM_DEPTH)
        return _tiled(memory.width, memory.depth, ICE40_EBR_GEOMETRIES)
    if family == "ecp5":
        return _tiled(memory.width, memory.depth, ECP5_DP16KD_GEOMETRIES)
    if family == "generic":
        return memory.bits
    raise ValueError(f"unknown FPGA family '{family}' (ice40, ecp5 or generic)")


def part_name(fpga: FpgaTarget) -> str:
    """Human name of the part for messages, e.g. "iCE40 UP5K", "ECP5 85K"."""
    family = _FAMILY_NAMES.get(fpga.family, fpga.family)
    if fpga.family == "generic" or not fpga.device or fpga.device == "generic":
        return family
    return f"{family} {fpga.device.upper()}"


def _contributors(by_memory: dict[str, int], top: int = 3) -> str:
    """ "weights 32, state 6, fifo 2, …": the largest users, so the message says what to shrink."""
    ranked = sorted(((n, name) for name, n in by_memory.items() if n > 0), key=lambda t: (-t[0], t[1]))
    text = ", ".join(f"{name} {n:,}" for n, name in ranked[:top])
    if len(ranked) > top:
        text += ", …"
    return text


def check_fit(memories: list[Memory], fpga: FpgaTarget, source: str = "") -> dict:
    """Block-RAM needs of ``memories`` against the part; raises :class:`FitError` when something is over.

    Returns ``{resource: {"required", "available", "unit", "by_memory": {name: blocks}}}`` with resource
    "bram" (and "spram" on iCE40). The error names the first resource over its limit, required vs
    available, the largest memories and the config field (``source: fpga.bram_bits``).
    """
    family = fpga.family
    if family == "ice40":
        resources = {
            "bram": ("block RAM", "SB_RAM40_4K", fpga.bram_bits // ICE40_EBR_BITS, "bram_bits"),
            "spram": ("SPRAM", "SB_SPRAM256KA", fpga.spram_bits // ICE40_SPRAM_BITS, "spram_bits"),
        }
    elif family == "ecp5":
        resources = {"bram": ("block RAM", "DP16KD", fpga.bram_bits // ECP5_DP16KD_BITS, "bram_bits")}
    elif family == "generic":
        resources = {"bram": ("block RAM", "bits", fpga.bram_bits, "bram_bits")}
    else:
        raise FitError(f"unknown FPGA family '{family}' (ice40, ecp5 or generic)"
                       f" ({source + ': ' if source else ''}fpga.family)")

    result: dict[str, dict] = {}
    for key, (_label, unit, available, _field) in resources.items():
        result[key] = {"required": 0, "available": available, "unit": unit, "by_memory": {}}
    for memory in memories:
        key = "spram" if uses_spram(memory, family) else "bram"
        entry = result[key]
        n = blocks(memory, family)
        entry["by_memory"][memory.name] = entry["by_memory"].get(memory.name, 0) + n
        entry["required"] += n

    over = []
    fields = []
    shortfalls = []
    for key, (label, unit, available, field) in resources.items():
        entry = result[key]
        if entry["required"] > available:
            over.append(f"{label} needs {entry['required']:,} of {available:,} {unit} ({_contributors(entry['by_memory'])})")
            fields.append(f"fpga.{field}")
            shortfalls.append({"resource": label, "unit": unit, "required": entry["required"], "available": available,
                               "field": f"fpga.{field}", "largest": max(entry["by_memory"], key=entry["by_memory"].get)})
    if over:  # every resource that is short, so the user sees the whole gap at once
        where = f"{source}: {', '.join(fields)}" if source else ", ".join(fields)
        raise FitError(f"does not fit {part_name(fpga)}: {'; '.join(over)} ({where})", shortfalls)
    return result
