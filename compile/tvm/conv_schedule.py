"""Hand-written CPU schedule for the NHWC convolutions (1x1, depthwise, strided) and their fused epilogues.

Every conv kernel of the fused RepNeXt, MLP 1x1s and token-mixer depthwise alike, has the loop nest
(n, y, x, f | ry, rx, rc). The schedule keeps a register tile of ty x tx output pixels by cv vectors of
output channels, runs the whole reduction over it, then applies bias/GELU/residual to the tile while it is
still in registers: the sgemm micro-kernel shape, reaching the machine's sgemm rate on the MLP 1x1s.
MetaSchedule's CPU search space cannot express it: its vectorize primitive refuses a loop nested in the
reduction, so the schedule marks that loop and `vectorize_marked` sets the loop kind directly.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace

# Loops marked with this annotation become vectorized loops after scheduling (see module docstring).
VECTORIZE_MARK = "repnext_vectorize"
# Fewer parallel pixel tiles than this and the tile's channel blocks are shared out too (see schedule_conv).
PARALLEL_TASKS = 16
_MARKED_LOOP = re.compile(
    r'T\.serial\(([^,()]+(?:\([^()]*\))?), annotations=\{"' + VECTORIZE_MARK + r'": 1\}\)'
)
_CONV_BLOCK = re.compile(r"^(group_)?conv2d_nhwc")


@dataclass(frozen=True)
class ConvTile:
    """Register tile: ty x tx output pixels by cv vectors of vec channels; `order` puts pixel tiles ("pf")
    or channel blocks ("fp") outermost.

    The NEON forms (ARM targets only; x86 tiles keep the defaults, so host kernels are unchanged):
    `rcv` > 1 loads rcv input channels of each pixel as one vector and multiplies the weight vectors by
    its lanes (by-element FMAs) instead of broadcasting one input scalar per channel; `window` unrolls the
    kernel's horizontal taps so that neighbouring pixels share their input vector loads (depthwise);
    `padded` writes the zero-padded input once before the conv, so that its loads carry no bounds test
    (inlined padding puts one on every load of a kernel with taps)."""

    tx: int
    ty: int
    cv: int
    vec: int
    order: str = "pf"
    rcv: int = 1
    window: bool = False
    padded: bool = False

    @property
    def accumulators(self) -> int:
        """Vector registers the tile holds across the reduction."""
        return self.tx * self.ty * self.cv

    def to_json(self) -> dict:
        """As stored in conv_tiles.json (the NEON fields only where set: x86 records read as before)."""
        data = asdict(self)
        for name, default in (("rcv", 1), ("window", False), ("padded", False)):
            if data[name] == default:
                del data[name]
        return data


@dataclass(frozen=True)
class ConvKernel:
    """The shape facts of a matched NHWC conv kernel that tiling depends on."""

    height: int
    width: int
    channels: int
    dtype: str = "float32"  # of the accumulation, which sets the lanes per vector register
    taps: tuple[int, int] = (1, 1)  # kernel height and width
    reduce_channels: int = 0  # input channels summed per output (1: depthwise; 0: not recorded)
    stride: int = 1  # horizontal


@dataclass(frozen=True)
class VectorUnit:
    """What the target's SIMD unit offers: lanes per register (of the kernel's dtype) and the register count."""

    lanes: int
    registers: int
    by_element: bool = False  # FMAs by vector lane (NEON's fmla v.4s, v.4s, v.s[i])


def vector_unit(target, dtype: str = "float32") -> VectorUnit:
    """AVX-512 (512-bit, 32 registers), AVX2 (256-bit, 16), NEON (128-bit, 32), from a tvm.target.Target;
    a register holds 4 float32 or 8 float16 lanes per 128 bits."""
    from tvm.target.codegen import target_has_features

    bits = {"float32": 32, "float16": 16}[dtype]
    triple = str(target.attrs.get("mtriple", ""))
    if triple.startswith(("aarch64", "arm")):
        return VectorUnit(128 // bits, 32, by_element=True)
    if target_has_features("avx512f", target):
        return VectorUnit(512 // bits, 32)
    return VectorUnit(256 // bits, 16)


def epilogue_lanes(unit: VectorUnit) -> int:
    """The widest vector a conv epilogue may use over a tile's contiguous outputs (flat_epilogue_width): the
    x86 unit's lanes; 0 on NEON, whose measured tiles keep their kernels as they are."""
    return 0 if unit.by_element else unit.lanes


def match_conv(func) -> ConvKernel | None:
    """The kernel's ConvKernel when `func` is one NHWC conv plus elementwise blocks, else None."""
    from tvm.s_tir import Schedule

    sch = Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    convs = [b for b in blocks if _is_reduction(sch, b)]
    if len(convs) != 1 or not _CONV_BLOCK.match(sch.get(convs[0]).name_hint):
        return None
    block = sch.get(convs[0])
    kinds = "".join("R" if _is_reduce_var(iv) else "S" for iv in block.iter_vars)
    if kinds != "SSSSRRR" or len(sch.get_loops(convs[0])) != 7:
        return None
    _, h, w, c, kh, kw, rc = (int(iv.dom.extent) for iv in block.iter_vars)
    in_width = int(block.reads[0].source.shape[2])  # of the padded input
    stride = max(1, (in_width - kw) // (w - 1)) if w > 1 else 1
    return ConvKernel(h, w, c, str(block.writes[0].source.dtype), (kh, kw), rc, stride)


def candidate_tiles(kernel: ConvKernel, unit: VectorUnit, limit: int = 16) -> list[ConvTile]:
    """Tiles that divide the output exactly and fit the register file, most promising first."""
    if unit.by_element and kernel.reduce_channels > 1 and kernel.reduce_channels % unit.lanes == 0:
        return _by_element_tiles(kernel, unit, limit)
    if unit.by_element and kernel.reduce_channels == 1 and kernel.taps[1] > 1:
        return _window_tiles(kernel, unit, limit) or _broadcast_tiles(kernel, unit, limit)
    if kernel.reduce_channels == 1 and kernel.taps[1] > 1 and limit >= 3:
        # x86 depthwise: the heuristic's broadcast tiles first (the default), window tiles measured beside
        # them (M1's 56x56 7x7 chunk conv of 12 channels on AVX2: 0.29 ms -> 0.10 ms).
        window = _window_tiles(kernel, unit, limit // 3)
        return _broadcast_tiles(kernel, unit, limit - len(window)) + window
    return _broadcast_tiles(kernel, unit, limit)


def _window_tiles(kernel: ConvKernel, unit: VectorUnit, limit: int) -> list[ConvTile]:
    """Tiles for depthwise convs with horizontal taps: per kernel row, the tile's input row of
    (tx - 1) * stride + kw vectors is loaded once and serves every tap. Registers: the accumulators, the
    input row and a weight vector on NEON; on x86, whose FMAs take an input straight from memory, the
    accumulators and a weight vector. Ranked by vector loads per FMA, then by the larger register tile."""
    vecs = [unit.lanes] if unit.by_element else _vector_widths(kernel, unit)
    vecs = [v for v in vecs if kernel.channels % v == 0][:1]
    if not vecs:
        return []
    tiles = _ranked_window_tiles(kernel, unit, vecs[0])
    ranked = tiles[: max(1, limit // 2)]
    tiles = _in_both_orders(ranked, limit)
    if not unit.by_element and vecs[0] < kernel.channels < unit.lanes:
        # A chunk narrower than a vector whose width is not a power of two (M1's 12-channel stage-1 chunks)
        # also as one odd vector, which LLVM splits into 8 + 4 lanes: two FMAs a tap instead of three quarter
        # vectors (M1's 56x56 7x7 chunk conv on Zen 4: 79 -> 61 us; its 1x11 and 11x1 twins are faster in
        # quarter vectors, so both are measured).
        odd = _ranked_window_tiles(kernel, unit, kernel.channels)[:1]
        tiles += _in_both_orders(odd, 2 * len(odd))
    return tiles


def _ranked_window_tiles(kernel: ConvKernel, unit: VectorUnit, vec: int) -> list[ConvTile]:
    """_window_tiles' tiles of `vec`-lane channel vectors, by vector loads per FMA, then the larger tile."""
    kw = kernel.taps[1]
    # With kernel rows, a per-row copy of the padded input would copy each input row once per kernel row of
    # every tile that reads it (7x for 7x7): writing the padded input once is cheaper (M1 cortex-a76: 0.7M
    # fewer modeled cycles). A single kernel row (1 x k) keeps the per-tile copy: it is already one copy.
    padded = kernel.taps[0] > 1
    parts = bin(vec).count("1")  # registers a vector takes: an odd one is split into power-of-two pieces
    tiles = []
    for cv in _divisors(kernel.channels // vec, 4):
        for tx in _divisors(kernel.width, 16):
            for ty in _divisors(kernel.height, 4):
                tile = ConvTile(tx, ty, cv, vec, window=True, padded=padded)
                inputs = _window_row(tile, kernel) if unit.by_element else 1
                if (tile.accumulators + cv) * parts + inputs <= unit.registers:
                    tiles.append(tile)

    def loads_per_fma(t: ConvTile) -> float:
        return (_window_row(t, kernel) + kw * t.cv) / (t.accumulators * kw)

    return sorted(tiles, key=lambda t: (loads_per_fma(t), -t.accumulators, -t.tx))


def _in_both_orders(ranked: list[ConvTile], limit: int) -> list[ConvTile]:
    """`ranked` (their own order, pixel tiles outermost) then as many of them channel blocks outermost ("fp")
    as `limit` leaves room for."""
    return ranked + [replace(t, order="fp") for t in ranked][: limit - len(ranked)]


def _vector_widths(kernel: ConvKernel, unit: VectorUnit) -> list[int]:
    """Full, half and quarter vectors (at least 2 lanes) that divide the kernel's channels, widest first."""
    return [v for v in (unit.lanes, unit.lanes // 2, unit.lanes // 4) if v >= 2 and kernel.channels % v == 0]


def _window_row(tile: ConvTile, kernel: ConvKernel) -> int:
    return tile.ty * ((tile.tx - 1) * kernel.stride + kernel.taps[1]) * tile.cv


def _broadcast_tiles(kernel: ConvKernel, unit: VectorUnit, limit: int) -> list[ConvTile]:
    """The tiles of one broadcast input scalar (or vector, depthwise) per FMA row: x86's, and NEON's rest."""
    budget = unit.registers - 1  # accumulators + one weight vector per channel vector + the broadcast input
    padded = unit.by_element and kernel.taps != (1, 1)  # NEON only: x86 kernels (and their records) as before
    # A NEON depthwise tile's input is cv vectors per pixel, not one broadcast scalar: with the register file
    # full of accumulators LLVM spilled in the taps' loop (M4's 56x56 11x1 kernel: 28 accumulators, 2.3x the
    # modeled cycles of its 1x11 twin). Keep room for them and for two more (the next loads in flight).
    depthwise_inputs = padded and kernel.reduce_channels == 1
    vecs = _vector_widths(kernel, unit)
    if not vecs:
        vecs = [kernel.channels] if kernel.channels <= unit.lanes else [1]
    tiles = []
    for vec in vecs[:2]:
        for cv in _divisors(kernel.channels // vec, 4):
            for tx in _divisors(kernel.width, 16):
                for ty in _divisors(kernel.height, 4):
                    tile = ConvTile(tx, ty, cv, vec, padded=padded)
                    if tile.accumulators + cv + (cv + 2 if depthwise_inputs else 0) <= budget:
                        tiles.append(tile)
    tiles.sort(key=lambda t: _score(t, budget))
    ranked = tiles[: max(1, limit // 2)]
    if limit >= 4 and not unit.by_element:
        spanning = [t for t in _spanning_tiles(kernel, unit, vecs[0], budget) if t not in ranked]
        ranked = ranked[: max(1, limit // 2 - len(spanning))] + spanning
    return _in_both_orders(ranked, limit)


def _spanning_tiles(kernel: ConvKernel, unit: VectorUnit, vec: int, budget: int) -> list[ConvTile]:
    """Where only narrow vectors divide the channels (M0's stem: 20 channels, 4 lanes), the two largest tiles
    that hold every channel of their pixels: their outputs are one contiguous run, whose epilogue (GELU)
    runs in full vectors (see flat_epilogue_width), and each broadcast input feeds every channel vector (M0 on
    Zen 4, weights flushed: the stem 0.457 -> 0.338 ms, the stage-1 reduce 1x1 0.316 -> 0.187 ms)."""
    if vec >= unit.lanes:
        return []
    cv = kernel.channels // vec
    tiles = [
        tile
        for tx in _divisors(kernel.width, 16)
        for ty in _divisors(kernel.height, 4)
        if (tile := ConvTile(tx, ty, cv, vec)).accumulators + cv <= budget
        and flat_epilogue_width(tile, kernel.channels, unit.lanes)
    ]
    return sorted(tiles, key=lambda t: (-t.accumulators, t.ty))[:2]


def _by_element_tiles(kernel: ConvKernel, unit: VectorUnit, limit: int) -> list[ConvTile]:
    """NEON tiles for convs that sum over input channels: per `lanes` channels, each pixel's inputs are one
    vector load and the lanes x cv weight vectors one load each, for lanes x pixels x cv by-element FMAs.
    Registers: the accumulators, one input vector per pixel, one channel vector of weights at a time.
    Ranked by vector loads per FMA, then by the larger register tile."""
    lanes = unit.lanes
    tiles = []
    for cv in _divisors(kernel.channels // lanes, 4):
        for tx in _divisors(kernel.width, 16):
            for ty in _divisors(kernel.height, 4):
                tile = ConvTile(tx, ty, cv, lanes, rcv=lanes, padded=kernel.taps != (1, 1))
                if tile.accumulators + tx * ty + cv <= unit.registers:
                    tiles.append(tile)

    def loads_per_fma(t: ConvTile) -> float:
        pixels = t.tx * t.ty
        return (pixels + lanes * t.cv) / (lanes * pixels * t.cv)

    tiles.sort(key=lambda t: (loads_per_fma(t), -t.accumulators, -t.tx))
    ranked = tiles[: max(1, limit // 2)]
    return _in_both_orders(ranked, limit)


def default_tile(kernel: ConvKernel, unit: VectorUnit) -> ConvTile:
    """The heuristic's first choice, used where no measured tile is on record."""
    return candidate_tiles(kernel, unit, limit=1)[0]


def _score(tile: ConvTile, budget: int) -> tuple:
    # Full vectors first, then a register tile near the budget, two channel vectors (enough independent
    # FMAs per broadcast input), and wide rows of pixels (contiguous input reads).
    return (-tile.vec, -min(tile.accumulators, budget), abs(tile.cv - 2), -tile.tx)


def _divisors(n: int, at_most: int) -> list[int]:
    return [d for d in range(1, min(n, at_most) + 1) if n % d == 0]


def schedule_conv(func, tile: ConvTile, weights: str = "keep", epilogue_lanes: int = 0):
    """`func` (matched by match_conv) scheduled with `tile`; the PrimFunc is marked as scheduled.

    `weights` "packed" or "pack-step" store the weights as contiguous panels of the tile's channels,
    [Cout / (cv*vec), kh, kw, Cin, cv*vec], so each panel streams from memory in order (the 7x7 stage's
    2 MB weight matrices are otherwise read in 128-byte pieces 4 KB apart). "packed": the kernel takes
    packed weights. "pack-step": the packing is a preprocessing block that the build splits out and
    folds into the constant weights (relax SplitLayoutRewritePreproc + FoldConstant). "keep": HWIO.
    `epilogue_lanes` (see epilogue_lanes(); 0 keeps the tile's vectors) lets a tile that holds every output
    channel in narrow vectors run its epilogue in full ones (flat_epilogue_width).
    """
    from tvm.s_tir import Schedule

    sch = Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    conv = next(b for b in blocks if _is_reduction(sch, b))
    weight = sch.get(conv).reads[1].source  # topi's conv blocks read (padded input, weight)
    bias = _fold_bias(sch, conv, blocks, func.params)
    out = blocks[-1]
    pad = None
    for block in blocks:
        if not (sch.get(block).same_as(sch.get(conv)) or sch.get(block).same_as(sch.get(out))):
            if (tile.window or tile.padded) and pad is None and sch.get(block).name_hint.startswith("pad"):
                pad = block  # kept: the padded rows are copied per tile, or the padded input once (below)
                continue
            sch.compute_inline(block)  # input padding and the epilogue's intermediate steps
    if weights != "keep":
        index = next(i for i, r in enumerate(sch.get(conv).reads) if r.source.same_as(weight))
        pack_weights(sch, conv, index, tile.cv * tile.vec, weights == "pack-step")
    n, y, x, f, ry, rx, rc = sch.get_loops(conv)
    channels = int(sch.get(f).extent)
    y_out, y_in = sch.split(y, [None, tile.ty])
    x_out, x_in = sch.split(x, [None, tile.tx])
    f_out, f_vecs, f_lanes = sch.split(f, [None, tile.cv, tile.vec])
    outer = [y_out, x_out, f_out] if tile.order == "pf" else [f_out, y_out, x_out]
    parallel = 2  # the outer loops that make the parallel loop
    if tile.order == "pf":
        # A 7x7 stage has 7 rows of pixel tiles: 4 and 3 for 2 threads (M4's stage-4 MLP convs scaled 1.73x).
        # The channel blocks split in parts make the parallel tasks many enough (M4, 2 threads: 1.010x
        # paired on Zen 4, 1 thread unchanged; all of them in the parallel loop made 1 thread 3% slower).
        tiles = int(sch.get(y_out).extent) * int(sch.get(x_out).extent)
        blocks = channels // (tile.cv * tile.vec)
        parts = next(
            d
            for d in range(1, blocks + 1)
            if blocks % d == 0 and (tiles * d >= PARALLEL_TASKS or d == blocks)
        )
        if parts > 1:
            f_part, f_out = sch.split(f_out, [parts, None])
            outer, parallel = [y_out, x_out, f_part, f_out], 3
    if tile.rcv > 1:
        # rc = (rc_out, rc_in): the tile's inputs for rcv channels are loaded as vectors at rc_out, and
        # rc_in indexes their lanes (LLVM emits by-element FMAs from the constant lane extracts).
        rc_out, rc_in = sch.split(rc, [None, tile.rcv])
        sch.reorder(n, *outer, ry, rx, rc_out, rc_in, y_in, x_in, f_vecs, f_lanes)
        # "global": a stack array that LLVM keeps in registers
        data = next(i for i, r in enumerate(sch.get(conv).reads) if not _any_same(r.source, weight, bias))
        inputs = sch.cache_read(conv, data, "global")
        sch.compute_at(inputs, rc_out)
        loops = sch.get_loops(inputs)
        at = next(i for i, loop in enumerate(loops) if sch.get(loop).same_as(sch.get(rc_out)))
        *copy, lanes = loops[at + 1 :]
        sch.vectorize(lanes)
        for loop in copy:
            sch.unroll(loop)
        sch.unroll(rc_in)
    else:
        sch.reorder(n, *outer, ry, rx, rc, y_in, x_in, f_vecs, f_lanes)
    if tile.window:
        sch.unroll(rx)  # neighbouring pixels' taps read the same input vectors: one load serves them all
        if pad is not None and not tile.padded:
            # The tile's padded input row is copied to a stack array once per kernel row, so the taps read
            # it without the bounds test that inlined padding puts on every load.
            sch.compute_at(pad, ry)
            loops = sch.get_loops(pad)
            at = next(i for i, loop in enumerate(loops) if sch.get(loop).same_as(sch.get(ry)))
            *copy, chans = loops[at + 1 :]
            _, lanes = sch.split(chans, [None, tile.vec])
            sch.vectorize(lanes)
            for loop in copy:
                sch.unroll(loop)
    if pad is not None and tile.padded:
        _schedule_padding(sch, pad, tile.vec)
    if not sch.get(out).same_as(sch.get(conv)):
        sch.set_scope(conv, 0, "global")
        sch.reverse_compute_at(out, outer[-1])
        *_, x_epi, f_epi = sch.get_loops(out)
        width = flat_epilogue_width(tile, channels, epilogue_lanes)
        if width:
            # The tile holds every channel, so its pixels' outputs are one contiguous run: the epilogue
            # (GELU) runs over it in full vectors instead of the tile's narrow channel vectors. A tile one
            # pixel wide has no pixel loop in its epilogue (x_epi is an outer loop then): its run is f_epi.
            run = sch.fuse(x_epi, f_epi) if tile.tx > 1 else f_epi
            _, lanes = sch.split(run, [None, width])
        else:
            _, lanes = sch.split(f_epi, [None, tile.vec])
        sch.vectorize(lanes)
    sch.parallel(sch.fuse(*outer[:parallel]))
    for loop in (y_in, x_in, f_vecs):
        sch.unroll(loop)
    sch.annotate(f_lanes, VECTORIZE_MARK, 1)
    init = sch.decompose_reduction(conv, ry)
    sch.vectorize(sch.get_loops(init)[-1])
    return vectorize_marked(sch.mod["main"]).with_attr("tirx.is_scheduled", True)


def flat_epilogue_width(tile: ConvTile, channels: int, lanes: int) -> int:
    """The epilogue's vector width when it runs over the tile's pixels and channels as one contiguous run:
    `lanes` where the tile holds all `channels` in narrower vectors and its run divides into `lanes`, else 0
    (the epilogue keeps the tile's channel vectors)."""
    if lanes <= tile.vec or tile.cv * tile.vec != channels or (tile.tx * channels) % lanes:
        return 0
    return lanes


def _fold_bias(sch, conv, blocks, params):
    """The epilogue's per-channel bias add moved into the accumulators' initial value: one vector add less per
    output vector (the accumulators start from the bias instead of zero). Returns the bias buffer, or None
    where there is no such add."""
    from tvm import ir, tirx
    from tvm.ir.expr import TensorLoad, TensorRegion
    from tvm.s_tir import SBlock

    block = sch.get(conv)
    init = block.init
    if not isinstance(init, tirx.BufferStore):
        return None
    acc = init.buffer
    for candidate in blocks:
        add = sch.get(candidate)
        store = add.body
        if (
            add.same_as(block)
            or not isinstance(store, tirx.BufferStore)
            or not isinstance(store.value, tirx.Add)
        ):
            continue
        loads = [store.value.a, store.value.b]
        if not all(isinstance(load, TensorLoad) for load in loads):
            continue
        sums = [load for load in loads if load.source.same_as(acc)]
        biases = [load for load in loads if any(load.source.same_as(p) for p in params)]
        if len(sums) != 1 or len(biases) != 1 or str(biases[0].ty) != str(init.value.ty):
            continue
        total, bias = sums[0], biases[0]
        iters = [iv.var for iv in add.iter_vars]
        if len(total.indices) != len(iters) or not all(i.same_as(v) for i, v in zip(total.indices, iters)):
            continue  # the add must read the accumulator element by element, in its own order
        index = []  # the bias's index in the conv block's own variables
        for i in bias.indices:
            at = [k for k, v in enumerate(iters) if i.same_as(v)]
            if at:
                index.append(init.indices[at[0]])
            elif isinstance(i, tirx.IntImm):
                index.append(i)
            else:
                return None
        read = next(r for r in add.reads if r.source.same_as(bias.source))
        region = TensorRegion(bias.source, [ir.Range.from_min_extent(i, 1) for i in index], read.ty)
        started = tirx.BufferStore(acc, tirx.BufferLoad(bias.source, index), init.indices)
        new_conv = SBlock(
            block.iter_vars, [*block.reads, region], block.writes, block.name_hint, block.body, started,
            block.alloc_buffers, block.match_buffers, block.annotations,
        )  # fmt: skip
        copy = tirx.BufferStore(store.buffer, total, store.indices)
        reads = [r for r in add.reads if not r.source.same_as(bias.source)]
        new_add = SBlock(
            add.iter_vars, reads, add.writes, add.name_hint, copy, add.init, add.alloc_buffers,
            add.match_buffers, add.annotations,
        )  # fmt: skip
        sch.state.replace(sch.get_sref(conv), new_conv, {block: new_conv})
        sch.state.replace(sch.get_sref(candidate), new_add, {add: new_add})
        return bias.source
    return None


def _schedule_padding(sch, pad, vec: int) -> None:
    """The whole padded input written once, rows in parallel, channels in vectors where they divide."""
    n, y, x, c = sch.get_loops(pad)
    sch.parallel(sch.fuse(n, y))
    channels = int(sch.get(c).extent)
    if channels % vec == 0:
        _, lanes = sch.split(c, [None, vec])
        sch.vectorize(lanes)


def _any_same(buffer, *others) -> bool:
    return any(other is not None and buffer.same_as(other) for other in others)


def pack_weights(sch, block, index: int, width: int, as_step: bool) -> None:
    """`block`'s read `index` (weights, outputs on the last axis) stored as contiguous panels of `width`
    outputs, [outputs / width, ..., width]: as a packing step that the build folds into constant weights
    (`as_step`), else the kernel takes the panels."""
    from tvm import tirx

    if as_step:
        step = sch.cache_read(block, index, "global")
        sch.annotate(step, "meta_schedule.layout_rewrite_preproc", True)

    def panels(*axes):
        return (axes[-1] // width, *axes[:-1], axes[-1] % width)

    shape = sch.get(block).reads[index].source.shape
    panels_map = tirx.IndexMap.from_func(panels, ndim=len(shape), index_dtype=str(shape[0].ty))
    sch.transform_layout(block, ("read", index), panels_map)


def constant_weight_kernels(mod) -> set[str]:
    """Kernels whose every call passes a constant as argument 1 (the weights of a conv or of the head).

    relax's AttachAttrLayoutFreeBuffers answers the same question but renames the kernels it annotates."""
    from tvm import relax
    from tvm.ir.expr import GenericConst

    constant, variable = set(), set()
    for func in mod.functions.values():
        if not isinstance(func, relax.Function):
            continue
        for block in func.body.blocks:
            for binding in block.bindings:
                call = binding.value
                if not (isinstance(call, relax.Call) and getattr(call.op, "name", "") == "relax.call_tir"):
                    continue
                name, args = call.args[0].name_hint, call.args[1].fields
                is_const = len(args) > 1 and isinstance(args[1], GenericConst)
                (constant if is_const else variable).add(name)
    return constant - variable


def vectorize_marked(func):
    """Turn the marked serial loops into vectorized ones (a round trip through TVMScript: TVM's Python
    API has no statement mutator, and the schedule primitive would refuse these loops)."""
    import tvm
    from tvm.script import from_source

    text = tvm.IRModule({"main": func}).script()
    text, count = _MARKED_LOOP.subn(r"T.vectorized(\1)", text)
    if count == 0:
        raise RuntimeError("conv schedule: no marked loop found to vectorize")
    return from_source(text)["main"]


def _is_reduction(sch, block) -> bool:
    return any(_is_reduce_var(iv) for iv in sch.get(block).iter_vars)


def _is_reduce_var(iv) -> bool:
    from tvm import tirx

    return iv.iter_type == tirx.IterVar.CommReduce


def schedule_unscheduled(mod, schedule_one) -> tuple[object, int]:
    """A copy of `mod` where `schedule_one(func, name)` replaced every not yet scheduled TIR kernel it returns
    a schedule for (None: the kernel is not its kind); returns (module, kernels scheduled)."""
    from tvm import tirx

    mod, scheduled = mod.clone(), 0
    for gv, func in list(mod.functions.items()):
        if not isinstance(func, tirx.PrimFunc) or is_scheduled(func):
            continue
        done = schedule_one(func, gv.name_hint)
        if done is not None:
            mod[gv] = done
            scheduled += 1
    return mod, scheduled


def is_scheduled(func) -> bool:
    """True for a TIR kernel that already carries a schedule (ours or a tuning record's)."""
    return bool(func.attrs is not None and func.attrs.get("tirx.is_scheduled", False))
