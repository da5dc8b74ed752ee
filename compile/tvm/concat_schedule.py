"""Schedules for the token mixer's channel copies on every target: the split into its chunks and the concat
of their results.

Legalized, a channels-last concat is one loop over every output channel whose body picks its source with
a chain of if_then_else: untuned (an ARM build without a board), it ran per element with its branches,
~19 instructions a float on cortex-a76 and 5% of M1's modeled cycles. Split into (input, channel) loops
with the input loop unrolled, each piece is a contiguous vector copy (NEON ldp/stp of q registers).
MetaSchedule's records do worse: on AMD Zen 3 (AVX2) the best of 64 trials left M1's concats at 2.7 ms
of 30 ms, the copies take 0.3 ms; so this schedule comes before the records and tuning skips them.
The split, one copy block per chunk, gets the same treatment: its blocks' pixel loops merged into one
parallel loop (one thread-pool launch, not one per chunk), each chunk's channels a vector copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from repnext_core.compile.tvm.conv_schedule import schedule_unscheduled, vector_unit

# Set on the kernels scheduled here: the number of equal channel parts they join or split (inplace_concat
# reads them).
CONCAT_ATTR = "repnext.channel_concat"
SPLIT_ATTR = "repnext.channel_split"


@dataclass(frozen=True)
class Concat:
    """A matched concatenation: `inputs` tensors of `channels` channels each, of `dtype`."""

    inputs: int
    channels: int
    dtype: str


def match_concat(func) -> Concat | None:
    """The Concat when `func` concatenates equal inputs along its last axis, else None."""
    from tvm import ir, tirx
    from tvm.s_tir import Schedule

    sch = Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    if len(blocks) != 1:
        return None
    block = sch.get(blocks[0])
    if any(iv.iter_type != tirx.IterVar.DataPar for iv in block.iter_vars):
        return None
    store, last = block.body, block.iter_vars[-1]
    if not isinstance(store, tirx.BufferStore):
        return None
    cuts, value = [], store.value
    while isinstance(value, ir.Call) and value.op.name.endswith("if_then_else"):
        cond = value.args[0]
        if not (isinstance(cond, tirx.LE) and isinstance(cond.a, tirx.IntImm) and cond.b.same_as(last.var)):
            return None
        cuts.append(int(cond.a.value))
        value = value.args[2]
    if not cuts:
        return None
    channels = int(last.dom.extent)
    per_input = channels // (len(cuts) + 1)
    if (
        sorted(cuts) != [per_input * k for k in range(1, len(cuts) + 1)]
        or per_input * (len(cuts) + 1) != channels
    ):
        return None
    return Concat(len(cuts) + 1, per_input, str(block.writes[0].source.dtype))


def schedule_concat(func, inputs: int, lanes: int):
    """`func` (matched by match_concat) as one unrolled vector copy per input; pixel rows in parallel."""
    from tvm.s_tir import Schedule

    sch = Schedule(func)
    block = sch.get_child_blocks(sch.get_sblock("root"))[0]
    *pixels, channels = sch.get_loops(block)
    if len(pixels) >= 2:
        sch.parallel(sch.fuse(*pixels[:2]))
    part, within = sch.split(channels, [inputs, None])
    lanes = copy_lanes(int(sch.get(within).extent), lanes)
    if lanes > 1:
        _, vector = sch.split(within, [None, lanes])
        sch.vectorize(vector)
    sch.unroll(part)
    return sch.mod["main"].with_attrs({"tirx.is_scheduled": True, CONCAT_ATTR: inputs})


def match_split(func) -> Concat | None:
    """The Concat it inverts when `func` splits its input into equal parts along the last axis (one
    plain copy block per part, in order), else None."""
    from tvm import tirx
    from tvm.ir.expr import TensorLoad
    from tvm.s_tir import Schedule

    sch = Schedule(func)
    blocks = [sch.get(b) for b in sch.get_child_blocks(sch.get_sblock("root"))]
    if len(blocks) < 2:
        return None
    sources, offsets, widths = set(), [], set()
    for block in blocks:
        store = block.body
        if any(iv.iter_type != tirx.IterVar.DataPar for iv in block.iter_vars) or not (
            isinstance(store, tirx.BufferStore) and isinstance(store.value, TensorLoad)
        ):
            return None
        load, names = store.value, [iv.var for iv in block.iter_vars]
        if len(load.indices) != len(names) or not all(
            i.same_as(v) for i, v in zip(load.indices[:-1], names[:-1])
        ):
            return None
        last = load.indices[-1]
        if last.same_as(names[-1]):
            offsets.append(0)
        elif isinstance(last, tirx.Add) and last.a.same_as(names[-1]) and isinstance(last.b, tirx.IntImm):
            offsets.append(int(last.b.value))
        else:
            return None
        sources.add(load.source.name)
        widths.add(int(block.iter_vars[-1].dom.extent))
    if len(sources) != 1 or len(widths) != 1:
        return None
    width = widths.pop()
    if offsets != [width * k for k in range(len(blocks))]:
        return None
    return Concat(len(blocks), width, str(blocks[0].writes[0].source.dtype))


def schedule_split(func, lanes: int):
    """`func` (matched by match_split) as one parallel loop over pixel rows copying every part's channels
    as vectors."""
    from tvm.s_tir import Schedule

    sch = Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    nests = [sch.get_loops(b) for b in blocks]
    depth = len(nests[0]) - 1  # the pixel loops; the last one is the channels
    lanes = copy_lanes(int(sch.get(nests[0][-1]).extent), lanes)
    for loops in nests:
        if lanes > 1:
            vectors, vector = sch.split(loops[-1], [None, lanes])
            sch.vectorize(vector)
            sch.unroll(vectors)
    merged = [sch.merge(*(loops[level] for loops in nests)) for level in range(depth)]
    if depth >= 2:
        sch.parallel(sch.fuse(*merged[:2]))
    return sch.mod["main"].with_attrs({"tirx.is_scheduled": True, SPLIT_ATTR: len(blocks)})


def copy_lanes(width: int, lanes: int) -> int:
    """The widest vector of at most `lanes` (halving) that divides a copy of `width` channels; 1: scalars."""
    while lanes > 1 and width % lanes:
        lanes //= 2
    return lanes


def apply_concat_schedules(mod, target) -> tuple[object, int]:
    """Schedule every still-unscheduled channel concatenation and split of `mod`; returns (module, kernels
    scheduled)."""

    def schedule_one(func, _name):
        found = match_concat(func)
        split = None if found else match_split(func)
        if found is None and split is None:
            return None
        dtype = (found or split).dtype
        lanes = vector_unit(target, dtype if dtype in ("float32", "float16") else "float32").lanes
        return schedule_concat(func, found.inputs, lanes) if found else schedule_split(func, lanes)

    return schedule_unscheduled(mod, schedule_one)
