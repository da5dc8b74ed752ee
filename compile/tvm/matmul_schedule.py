"""Schedule for the classifier head's matrix-vector product (before any tuning record: it is its own).

Legalized, `x[1, K] @ W[K, N] + b` reduces each output over K with W read down a column (a stride of N
floats) and one scalar multiply-add per weight: untuned (an ARM build without a board) the head cost
~2 instructions per MAC, 1.1% of M1's modeled cycles on cortex-a76 for 0.02% of its MACs. Tiled over N,
each step of K multiplies one broadcast input by a few contiguous weight vectors into accumulators that
stay in registers, and the epilogue (bias) runs once per tile. Constant weights are packed as one
contiguous panel per tile, [N / width, K, width]: the head reads every weight once per inference, from
memory, and a panel streams where a column of tiles strides N floats a row (M0's 320 x 1000 head on Zen
4, weights flushed: MetaSchedule's record 0.077 ms, the tiles on [K, N] 0.104 ms, on panels 0.034 ms).
"""

from __future__ import annotations

from dataclasses import dataclass

from repnext_core.compile.tvm.conv_schedule import (
    VECTORIZE_MARK,
    constant_weight_kernels,
    pack_weights,
    schedule_unscheduled,
    vector_unit,
    vectorize_marked,
)

_MAX_VECTORS = 8  # accumulators per tile: well inside both register files (32 NEON / 32 AVX-512)


@dataclass(frozen=True)
class MatVec:
    """A matched head: `reduce` x `outputs` weights of `dtype`, batch 1."""

    reduce: int
    outputs: int
    dtype: str


def match_matvec(func) -> MatVec | None:
    """The MatVec when `func` is a batch-1 `x[1, K] @ W[K, N]` followed by elementwise steps, else None."""
    from tvm import tirx
    from tvm.s_tir import Schedule

    sch = Schedule(func)
    blocks = [sch.get(b) for b in sch.get_child_blocks(sch.get_sblock("root"))]
    reductions = [b for b in blocks if any(iv.iter_type == tirx.IterVar.CommReduce for iv in b.iter_vars)]
    if len(reductions) != 1 or not blocks[0].same_as(reductions[0]):
        return None
    block = reductions[0]
    kinds = [iv.iter_type for iv in block.iter_vars]
    if (
        kinds != [tirx.IterVar.DataPar, tirx.IterVar.DataPar, tirx.IterVar.CommReduce]
        or len(block.reads) != 2
    ):
        return None
    batch, outputs, reduce = (int(iv.dom.extent) for iv in block.iter_vars)
    _, n, k = (iv.var for iv in block.iter_vars)
    weight = block.reads[1]
    if batch != 1 or len(weight.region) != 2:
        return None
    rows, cols = (r.min for r in weight.region)
    if not (rows.same_as(k) and cols.same_as(n)):
        return None  # W stored [K, N]: the contiguous axis is the outputs' one, which the tile vectorizes
    return MatVec(reduce, outputs, str(block.writes[0].source.dtype))


def tile_width(outputs: int, lanes: int) -> tuple[int, int]:
    """(vectors, lanes) of the output tile: the widest vector that divides `outputs`, then the most
    vectors (up to _MAX_VECTORS) that divide what is left, so no tile needs a remainder."""
    while lanes > 1 and outputs % lanes:
        lanes //= 2
    vectors = max(v for v in range(1, _MAX_VECTORS + 1) if (outputs // lanes) % v == 0)
    return vectors, lanes


def schedule_matvec(func, vectors: int, lanes: int, weights: str = "keep"):
    """`func` (matched by match_matvec) tiled over its outputs: `vectors` x `lanes` accumulators per tile.

    `weights` as in schedule_conv: "pack-step" (constant weights: a packing step the build folds into
    them), "packed" (the kernel takes [N / width, K, width] panels) or "keep" ([K, N])."""
    from tvm.s_tir import Schedule

    sch = Schedule(func)
    mm, *epilogue = sch.get_child_blocks(sch.get_sblock("root"))
    for block in epilogue[:-1]:
        sch.compute_inline(block)
    if weights != "keep":
        pack_weights(sch, mm, 1, vectors * lanes, weights == "pack-step")
    batch, n, k = sch.get_loops(mm)
    tile, vecs, within = sch.split(n, [None, vectors, lanes])
    sch.reorder(batch, tile, k, vecs, within)
    if epilogue:
        sch.set_scope(mm, 0, "local")
        out = epilogue[-1]
        sch.reverse_compute_at(out, tile)
        if lanes > 1:
            _, lane = sch.split(sch.get_loops(out)[-1], [None, lanes])
            sch.vectorize(lane)
    sch.unroll(vecs)
    init = sch.decompose_reduction(mm, k)
    if lanes == 1:  # outputs of odd count: scalar accumulators, still in registers across K
        return sch.mod["main"].with_attr("tirx.is_scheduled", True)
    sch.annotate(within, VECTORIZE_MARK, 1)
    sch.vectorize(sch.get_loops(init)[-1])
    return vectorize_marked(sch.mod["main"]).with_attr("tirx.is_scheduled", True)


def apply_matvec_schedules(mod, target) -> tuple[object, int]:
    """Schedule every still-unscheduled batch-1 matrix-vector head of `mod` (constant weights packed, see
    the module docstring); returns (module, kernels)."""
    constant = constant_weight_kernels(mod)

    def schedule_one(func, name):
        found = match_matvec(func)
        if found is None or found.dtype not in ("float32", "float16"):
            return None
        width = tile_width(found.outputs, vector_unit(target, found.dtype).lanes)
        return schedule_matvec(func, *width, "pack-step" if name in constant else "keep")

    return schedule_unscheduled(mod, schedule_one)
