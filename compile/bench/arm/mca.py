"""Modeled cycles from the plugin's TB dumps: llvm-mc disassembles each block, llvm-mca models it.

Method (a proxy, not time): each executed translation block is analysed by llvm-mca as its own code region,
repeated ITERATIONS times back to back; its cost is Total Cycles / Iterations (steady-state cycles of one pass,
the pipeline fill spread over the iterations). A run's modeled cycles are the sum over blocks of that cost
times the block's executions. Per inference, only blocks whose executions differ between the k-run and the
1-run are modeled (the others cancel exactly in (k - 1) differencing). Cache misses, branch mispredictions and
the overlap between consecutive blocks are not modeled; blocks qemu split where the code has no branch (at a
page boundary) are joined again first (`stitch`), so that a kernel's figure does not depend on where the
linker put it. Words llvm-mc cannot decode become `nop`; instructions without scheduling data in the model
(LSE atomics such as ldadd on neoverse-n1) are skipped by llvm-mca (-skip-unsupported-instructions=lack-sched);
regions llvm-mca still rejects are costed at one cycle per instruction and reported as unmodeled.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from repnext_core.compile.bench.arm.common import EmulationError, arm_dir
from repnext_core.compile.device.tools import require_tool
from repnext_core.files import write_text_atomic

ITERATIONS = 100
CHUNK = 400  # regions per llvm-mca process
MEMO_VERSION = "v3"  # bump when the disassembly or modeling options change: the memo is keyed on bytes only
_REGION = re.compile(r"^\[(\d+)\] Code Region - (b\d+)")
_CYCLES = re.compile(r"^Total Cycles:\s+(\d+)")
_INVALID = re.compile(r":(\d+):\d+: warning: invalid instruction encoding")


@dataclass
class Modeled:
    """Modeled cycles of one difference of runs, with how much of it llvm-mca could not model."""

    cycles: float
    blocks: int
    unmodeled_insns: float
    invalid_words: list[str]


def read_tbdump(path: Path) -> dict[tuple[int, str], int]:
    """The plugin's TB dump as {(vaddr, hexbytes): executions}, re-translations of one block merged."""
    blocks: dict[tuple[int, str], int] = defaultdict(int)
    for line in Path(path).read_text().splitlines():
        vaddr, hexbytes, execs = line.split()
        blocks[(int(vaddr, 16), hexbytes)] += int(execs)
    return dict(blocks)


def disassemble(blocks: list[str], llvm_mc: str, mcpu: str) -> tuple[list[list[str]], list[str]]:
    """Each block's instructions as assembly text (one llvm-mc call for all) and the words it could not decode.

    The words are decoded for mcpu (so its extensions, e.g. dotprod and rcpc, are known), plus neon and fp16;
    undecodable words become nop.
    """
    words = [hexbytes[i : i + 8] for hexbytes in blocks for i in range(0, len(hexbytes), 8)]
    lines = [" ".join(f"0x{w[j : j + 2]}" for j in range(0, 8, 2)) for w in words]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(lines) + "\n")
        src = f.name
    try:
        proc = subprocess.run(
            [llvm_mc, "--disassemble", "-triple=aarch64", f"-mcpu={mcpu}", "-mattr=+neon,+fullfp16", src],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        Path(src).unlink(missing_ok=True)
    invalid = {int(m.group(1)) - 1 for m in _INVALID.finditer(proc.stderr)}
    decoded = [
        ln.strip() for ln in proc.stdout.splitlines() if ln.startswith("\t") and not ln.startswith("\t.")
    ]
    if len(decoded) != len(words) - len(invalid):
        raise EmulationError(
            f"llvm-mc decoded {len(decoded)} of {len(words)} words with {len(invalid)} invalid"
        )
    it = iter(decoded)
    flat = ["nop" if i in invalid else next(it).replace("\t", " ") for i in range(len(words))]
    out, pos = [], 0
    for hexbytes in blocks:
        n = len(hexbytes) // 8
        out.append(flat[pos : pos + n])
        pos += n
    return out, [f"0x{int.from_bytes(bytes.fromhex(words[i]), 'little'):08x}" for i in sorted(invalid)]


def _mca(regions: list[list[str]], llvm_mca: str, mcpu: str) -> list[float] | None:
    """Per-pass cycles of each region from one llvm-mca run, or None when llvm-mca rejects the input."""
    text = []
    for i, insns in enumerate(regions):
        text += [f"# LLVM-MCA-BEGIN b{i}", *insns, f"# LLVM-MCA-END b{i}"]
    proc = subprocess.run(
        [
            llvm_mca,
            "-mtriple=aarch64",
            f"-mcpu={mcpu}",
            "-mattr=+neon,+fullfp16",
            f"-iterations={ITERATIONS}",
            "-skip-unsupported-instructions=lack-sched",
            "-instruction-info=0",
            "-resource-pressure=0",
            "-",
        ],
        input="\n".join(text) + "\n",
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        return None
    cycles: dict[int, float] = {}
    current = None
    for line in proc.stdout.splitlines():
        if m := _REGION.match(line):
            current = int(m.group(2)[1:])
        elif (m := _CYCLES.match(line)) and current is not None:
            cycles[current] = int(m.group(1)) / ITERATIONS
            current = None
    if len(regions) == 1 and not cycles:  # one region and no markers echoed: llvm-mca names it differently
        m = re.search(r"Total Cycles:\s+(\d+)", proc.stdout)
        return [int(m.group(1)) / ITERATIONS] if m else None
    if len(cycles) != len(regions):
        return None
    return [cycles[i] for i in range(len(regions))]


def model_regions(regions: list[list[str]], llvm_mca: str, mcpu: str) -> list[float | None]:
    """Cycles per pass for each region; a chunk llvm-mca rejects is split until the culprit is alone (None)."""
    if not regions:
        return []
    got = _mca(regions, llvm_mca, mcpu)
    if got is not None:
        return got
    if len(regions) == 1:
        return [None]
    half = len(regions) // 2
    return model_regions(regions[:half], llvm_mca, mcpu) + model_regions(regions[half:], llvm_mca, mcpu)


def block_cycles(cache_root: Path, blocks: list[str], mcpu: str) -> tuple[dict[str, float | None], list[str]]:
    """Cycles per pass of each block's bytes, memoised on disk per mcpu, and the words llvm-mc could not decode.

    Only blocks not yet in the memo are disassembled, so the invalid words are those of this call's new blocks.
    """
    llvm_mc = require_tool("llvm-mc-19")
    llvm_mca = require_tool("llvm-mca-19")
    memo_path = arm_dir(cache_root) / "mca" / f"{mcpu}-it{ITERATIONS}-{MEMO_VERSION}.json"
    memo: dict[str, float | None] = json.loads(memo_path.read_text()) if memo_path.is_file() else {}
    key = {b: hashlib.sha1(b.encode()).hexdigest() for b in blocks}
    todo = sorted({b for b in blocks if key[b] not in memo})
    invalid: list[str] = []
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start : start + CHUNK]
        insns, bad = disassemble(chunk, llvm_mc, mcpu)
        invalid += bad
        for b, cyc in zip(chunk, model_regions(insns, llvm_mca, mcpu)):
            memo[key[b]] = cyc
        write_text_atomic(memo_path, json.dumps(memo))
    return {b: memo[key[b]] for b in blocks}, invalid


def block_deltas(many: Path, one: Path) -> dict[tuple[int, str], int]:
    """Executions of each block in the k-run minus those in the 1-run (blocks that cancel are left out),
    with the blocks qemu split where the code has no branch joined again (`stitch`)."""
    a, b = read_tbdump(many), read_tbdump(one)
    delta = {key: a.get(key, 0) - b.get(key, 0) for key in set(a) | set(b)}
    return stitch({key: d for key, d in delta.items() if d})


# A64 branches and exception-generating instructions, as (mask, value) of the instruction word.
_BRANCHES = (
    (0x7C000000, 0x14000000),  # B, BL
    (0xFF000010, 0x54000000),  # B.cond
    (0x7E000000, 0x34000000),  # CBZ, CBNZ
    (0x7E000000, 0x36000000),  # TBZ, TBNZ
    (0xFE000000, 0xD6000000),  # BR, BLR, RET
    (0xFF000000, 0xD4000000),  # SVC, BRK, ...
)


def ends_in_branch(hexbytes: str) -> bool:
    """Whether a block's last instruction (little-endian hex, as the plugin dumps it) is a branch."""
    word = int.from_bytes(bytes.fromhex(hexbytes[-8:]), "little")
    return any(word & mask == value for mask, value in _BRANCHES)


def stitch(delta: dict[tuple[int, str], int]) -> dict[tuple[int, str], int]:
    """Blocks that qemu ended without a branch (at a page boundary or its instruction limit per block) joined
    to the block that follows them in memory, wherever that block is entered only by falling through.

    llvm-mca models each region alone, so a loop body split in two lost the overlap between its halves: M1's
    1x1 kernels modeled ~4% high on cortex-a76 where their loops crossed a page. A block is joined where the
    executions of its branch-free predecessors sum to its own (one predecessor with equal executions, or a loop
    head and its first pass from the preheader, which qemu translates as two blocks): then a copy of it is
    appended to each predecessor. A block also entered by a branch is left alone.
    """
    starts: dict[int, list[tuple[int, str]]] = defaultdict(list)
    into: dict[int, list[tuple[int, str]]] = defaultdict(
        list
    )  # branch-free predecessors by the address they reach
    for key in delta:
        vaddr, hexbytes = key
        starts[vaddr].append(key)
        if not ends_in_branch(hexbytes):
            into[vaddr + len(hexbytes) // 2].append(key)
    follower: dict[tuple[int, str], tuple[int, str]] = {}
    for at, preds in into.items():
        here = starts.get(at, [])
        if len(here) == 1 and sum(delta[p] for p in preds) == delta[here[0]]:
            follower.update((p, here[0]) for p in preds)
            continue
        for p in preds:  # several blocks at one address (re-translated with other lengths): match one by one
            same = [k for k in here if delta[k] == delta[p]]
            if len(same) == 1:
                follower[p] = same[0]
    followed = set(follower.values())
    joined: dict[tuple[int, str], int] = {}
    for key, execs in delta.items():
        if key in followed:
            continue
        parts, at = [key[1]], key
        while at in follower:
            at = follower[at]
            parts.append(at[1])
        joined[(key[0], "".join(parts))] = execs
    return joined


def modeled_per_inference(
    cache_root: Path, many: Path, one: Path, k: int, mcpu: str = "neoverse-n1"
) -> Modeled:
    """(modeled cycles of the k-run - those of the 1-run) / (k - 1), from the two TB dumps."""
    delta = block_deltas(many, one)
    cycles, invalid = block_cycles(cache_root, [hexbytes for _, hexbytes in delta], mcpu)
    total = unmodeled = 0.0
    for (_, hexbytes), d in delta.items():
        cyc = cycles[hexbytes]
        if cyc is None:
            cyc = len(hexbytes) / 8  # one cycle per instruction: llvm-mca could not model this block
            unmodeled += d * cyc
        total += d * cyc
    return Modeled(total / (k - 1), len(delta), unmodeled / (k - 1), invalid)
