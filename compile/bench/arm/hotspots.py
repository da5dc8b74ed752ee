"""Where our build's modeled cycles go: each executed block of the TB dumps attributed to the function of
model.so that holds its bytes, summed per function (one line per TVM kernel). A profile, not time.

QEMU reports guest virtual addresses and dlopen picks model.so's load base, so the base is found once from
the longest executed block whose bytes occur exactly once in the file; every other block is then placed by
its address and kept only if its bytes match the file there. A kernel's parallel body has no symbol (TVM
makes it a private function right after the kernel), so code up to the next symbol counts for the kernel
before it. Blocks outside model.so (the runner, libc, the TVM runtime) are summed as one line.
"""

from __future__ import annotations

import bisect
import re
import subprocess
from collections import defaultdict
from pathlib import Path

from repnext_core.compile.bench.arm.common import EmulationError
from repnext_core.compile.device.tools import require_tool

OUTSIDE = "(outside model.so: runner, runtime, libc)"

# Floating-point multiply-accumulate vector instructions (FMLA/FMLS, any arrangement, vector or by element) as
# (mask, value) of the instruction word: a kernel's FMAs / 2 is its floor on a core with two FP pipes.
_FMAS = (
    (0xBF20FC00, 0x0E20CC00),  # FMLA/FMLS (vector), .2s/.4s/.2d
    (0xBF60FC00, 0x0E400C00),  # FMLA/FMLS (vector), .4h/.8h
    (0xBF80B400, 0x0F801000),  # FMLA/FMLS (by element), .2s/.4s/.2d
    (0xBFC0B400, 0x0F001000),  # FMLA/FMLS (by element), .4h/.8h
)


def vector_fmas(hexbytes: str) -> int:
    """How many of a block's instructions (little-endian hex, as the plugin dumps it) are vector FMAs."""
    raw = bytes.fromhex(hexbytes)
    words = (int.from_bytes(raw[i : i + 4], "little") for i in range(0, len(raw) - 3, 4))
    return sum(any(w & mask == value for mask, value in _FMAS) for w in words)


_TEXT = re.compile(r"\]\s+\.text\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s")  # llvm-readelf -S: address, offset


def text_symbols(so: Path) -> tuple[list[tuple[int, int, str]], int]:
    """The functions of `so` as sorted (start vaddr, end vaddr, name), and vaddr - file offset of .text."""
    nm = require_tool("llvm-nm-19")
    readelf = require_tool("llvm-readelf-19")
    out = subprocess.run(
        [nm, "--defined-only", "--print-size", "--numeric-sort", str(so)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    funcs = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW":
            start, size = int(parts[0], 16), int(parts[1], 16)
            if size:
                funcs.append((start, start + size, parts[3]))
    headers = subprocess.run([readelf, "-S", "-W", str(so)], capture_output=True, text=True, check=True)
    text = _TEXT.search(headers.stdout)
    if text is None:
        raise EmulationError(f"{so} has no .text section")
    vma, offset = int(text.group(1), 16), int(text.group(2), 16)
    return funcs, vma - offset


def load_base(blocks: dict[tuple[int, str], int], data: bytes, vma_minus_offset: int) -> int | None:
    """Where dlopen put the file: from the longest block found exactly once in it; None if none is."""
    for vaddr, hexbytes in sorted(blocks, key=lambda b: -len(b[1])):
        raw = bytes.fromhex(hexbytes)
        at = data.find(raw)
        if len(raw) >= 32 and at >= 0 and data.find(raw, at + 1) < 0:
            return vaddr - (at + vma_minus_offset)
    return None


def by_function(
    so: Path, delta: dict[tuple[int, str], float], cycles: dict[str, float | None], top: int = 40
) -> list[dict]:
    """Per function of `so`: modeled cycles, instructions and vector FMAs of the blocks in `delta` ((vaddr, hexbytes) ->
    executions per inference) with `cycles` per pass of each block's bytes; the `top` largest first."""
    funcs, vma_minus_offset = text_symbols(so)
    data = so.read_bytes()
    base = load_base(delta, data, vma_minus_offset)
    starts = [f[0] for f in funcs]
    # TVM emits a kernel's parallel body as a private function right after it, with no symbol of its own:
    # code up to the next symbol belongs to the kernel before it.
    ends = [*starts[1:], funcs[-1][1]] if funcs else []
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for (vaddr, hexbytes), execs in delta.items():
        name = OUTSIDE
        if base is not None:
            vma = vaddr - base
            i = bisect.bisect_right(starts, vma) - 1
            offset = vma - vma_minus_offset
            raw = bytes.fromhex(hexbytes)
            if i >= 0 and vma < ends[i] and data[offset : offset + len(raw)] == raw:
                name = funcs[i][2]
        cyc = cycles.get(hexbytes)
        totals[name][0] += execs * (cyc if cyc is not None else len(hexbytes) / 8)
        totals[name][1] += execs * len(hexbytes) / 8
        totals[name][2] += execs * vector_fmas(hexbytes)
    rows = [{"function": k, "cycles": v[0], "insns": v[1], "fmas": v[2]} for k, v in totals.items()]
    return sorted(rows, key=lambda r: -r["cycles"])[:top]


def format_hotspots(engine: str, rows: list[dict], total_cycles: float, top: int) -> str:
    """The top functions of one engine's profile as text lines."""
    lines = [
        f"{engine}: modeled cycles per function of model.so (llvm-mca, per inference; a proxy), with its"
        " vector FMAs (two FP pipes: FMAs / 2 is a kernel's floor)"
    ]
    for r in rows[:top]:
        share = r["cycles"] / total_cycles if total_cycles else 0.0
        fmas = f"{r['fmas'] / 1e6:8.2f}M FMAs  " if "fmas" in r else ""  # rows recorded before the column
        lines.append(
            f"  {r['cycles'] / 1e6:8.2f}M cycles {share:6.1%}  {r['insns'] / 1e6:8.2f}M insns  {fmas}{r['function']}"
        )
    return "\n".join(lines)
