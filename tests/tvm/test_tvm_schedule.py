"""The host fast path: vectorizable GELU, channels-last layout and the hand-scheduled conv kernels."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("tvm")

import tvm  # noqa: E402

from repnext_core.compile.tune.tile_search import search_tiles  # noqa: E402
from repnext_core.compile.tvm.artifact import VMRunner  # noqa: E402
from repnext_core.compile.tvm.conv_schedule import (  # noqa: E402
    PARALLEL_TASKS,
    ConvKernel,
    ConvTile,
    VectorUnit,
    candidate_tiles,
    default_tile,
    epilogue_lanes,
    flat_epilogue_width,
    match_conv,
    schedule_conv,
    vector_unit,
)
from repnext_core.compile.tvm.conv_tiles import (  # noqa: E402
    apply_conv_schedules,
    conv_kernels,
    finish_packing,
    workload_key,
)
from repnext_core.compile.tvm.fast_math import (  # noqa: E402
    ERF_MAX_ABS_ERROR,
    HALF_GELU_MAX_ERROR,
    fast_gelu_te,
    neon_gelu_te,
)
from repnext_core.compile.tvm.importer import import_model  # noqa: E402
from repnext_core.compile.tvm.pipeline import prepare  # noqa: E402
from repnext_core.compile.tvm.targets import resolve_target  # noqa: E402

HOST = resolve_target("host")


@pytest.mark.parametrize("gelu", [fast_gelu_te, neon_gelu_te], ids=["host-horner", "neon-factored"])
def test_fast_gelu_stays_within_its_erf_bound(gelu):
    """Both float32 forms of the (5, 3) rational erf: Horner's (host) and quadratic factors (aarch64's, built
    here with a division in place of the NEON reciprocal)."""
    from tvm import te

    n = 1 << 16
    x = te.placeholder((n,), name="x")
    lib = tvm.tirx.build(tvm.IRModule({"main": te.create_prim_func([x, gelu(x)])}), target=HOST.tvm_target())
    xs = np.linspace(-10, 10, n).astype("float32")
    out = tvm.runtime.tensor(np.zeros(n, "float32"))
    lib["main"](tvm.runtime.tensor(xs), out)
    exact = xs.astype(np.float64) * 0.5 * (1 + np.vectorize(math.erf)(xs.astype(np.float64) / math.sqrt(2)))
    # GELU's error is |x|/2 times erf's; the clamp at |x/sqrt2| = 3.48 is where |x| is largest among the errors.
    assert np.max(np.abs(out.numpy() - exact) / np.maximum(np.abs(xs) / 2, 1)) <= ERF_MAX_ABS_ERROR


def exact_gelu(xs: np.ndarray) -> np.ndarray:
    x = xs.astype(np.float64)
    return x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def half_gelu_error(out: np.ndarray, xs: np.ndarray) -> float:
    """max |out - GELU(x)| / max(1, |x|) over float16 inputs xs (what HALF_GELU_MAX_ERROR bounds)."""
    return float(np.max(np.abs(out.astype(np.float64) - exact_gelu(xs)) / np.maximum(np.abs(xs), 1)))


def test_half_gelu_stays_within_its_bound():
    """float16 GELU (A&S erf in half arithmetic, a division off aarch64) against float64's, |x| up to 12."""
    from tvm import te

    n = 1 << 16
    x = te.placeholder((n,), name="x", dtype="float16")
    lib = tvm.tirx.build(
        tvm.IRModule({"main": te.create_prim_func([x, fast_gelu_te(x)])}), target=HOST.tvm_target()
    )
    xs = np.linspace(-12, 12, n).astype("float16")
    out = tvm.runtime.tensor(np.zeros(n, "float16"))
    lib["main"](tvm.runtime.tensor(xs), out)
    err = half_gelu_error(out.numpy(), xs)
    # float16 rounding alone is up to ~4.9e-4 of max(1, |x|): the bound leaves the approximation the rest
    assert 4e-4 < err <= HALF_GELU_MAX_ERROR


def test_prepared_model_is_channels_last_without_libm_erf(mod):
    prepared = prepare(mod, HOST)
    text = prepared.script()
    assert "T.erf(" not in text and "horner_gelu" in text
    assert 'data_layout="NCHW"' not in text
    assert conv_kernels(prepared), "the toy's convs should all match the hand schedule"


class ConvBlock(nn.Module):
    """conv -> bias -> (GELU) -> (+ residual): the kernel shapes the fused RepNeXt hands to TVM."""

    def __init__(self, cin, cout, k, stride, groups, gelu, residual):
        super().__init__()
        pad = (k[0] // 2, k[1] // 2)
        self.conv = nn.Conv2d(cin, cout, k, stride, pad, groups=groups)
        self.gelu, self.residual = gelu, residual

    def forward(self, x):
        y = self.conv(x)
        y = nn.functional.gelu(y) if self.gelu else y
        return y + x if self.residual else y


CASES = {
    "1x1+gelu": ((48, 96, (1, 1), 1, 1, True, False), (1, 48, 14, 14)),
    "1x1+residual": ((96, 96, (1, 1), 1, 1, False, True), (1, 96, 7, 7)),
    "depthwise 7x7": ((12, 12, (7, 7), 1, 12, False, False), (1, 12, 10, 10)),
    "depthwise 1x11": ((40, 40, (1, 11), 1, 40, False, True), (1, 40, 6, 12)),
    "stem 3x3/2": ((3, 24, (3, 3), 2, 1, True, False), (1, 3, 18, 18)),
    "M0 stem, 20 channels": ((3, 20, (3, 3), 2, 1, True, False), (1, 3, 16, 16)),
    "depthwise 3x3/2": ((20, 20, (3, 3), 2, 20, False, False), (1, 20, 14, 14)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_candidate_tile_computes_the_same_conv(case):
    args, shape = CASES[case]
    torch.manual_seed(0)
    block = ConvBlock(*args).eval()
    prepared = prepare(import_model(block, shape), HOST)
    ((gv, (kernel, func)),) = conv_kernels(prepared).items()
    unit = vector_unit(HOST.tvm_target())
    tiles = candidate_tiles(kernel, unit, limit=6)
    assert default_tile(kernel, unit) == tiles[0]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = block(x).numpy()
    tol = 1e-5 * float(np.abs(ref).max())
    for tile in tiles:
        scheduled = prepared.clone()
        scheduled[gv] = schedule_conv(func, tile, epilogue_lanes=epilogue_lanes(unit))
        out = VMRunner(tvm.relax.build(scheduled, HOST.tvm_target()))(x.numpy())
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=tol, err_msg=str(tile))
    # As builds do it: packed constant weights, the packing folded into them at build time.
    packed, scheduled, _ = apply_conv_schedules(prepared, HOST.tvm_target(), {workload_key(func): tiles[-1]})
    packed = finish_packing(packed)
    weights = [f.params[1] for g, f in packed.functions.items() if g.name_hint.startswith(gv.name_hint)]
    assert scheduled == 1 and len(weights[0].ty.shape) == 5  # [Cout / width, kh, kw, Cin, width]
    out = VMRunner(tvm.relax.build(packed, HOST.tvm_target()))(x.numpy())
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=tol)


def test_packed_kernel_reads_the_panel_layout():
    """The kernel the tile search times takes weights as [Cout / width, kh, kw, Cin, width]."""
    torch.manual_seed(0)
    shape = (1, 16, 4, 4)
    prepared = prepare(import_model(ConvBlock(16, 64, (1, 1), 1, 1, False, False).eval(), shape), HOST)
    ((kernel, func),) = conv_kernels(prepared).values()
    tile = candidate_tiles(kernel, VectorUnit(8, 16), limit=1)[0]
    width = tile.cv * tile.vec
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal([int(d) for d in p.ty.shape]).astype("float32") for p in func.params[:3])
    panels = w.reshape(1, 1, 16, 64 // width, width).transpose(3, 0, 1, 2, 4).copy()
    outs = []
    for weights, mode in ((w, "keep"), (panels, "packed")):
        lib = tvm.tirx.build(
            tvm.IRModule({"main": schedule_conv(func, tile, mode).with_attr("global_symbol", "main")}),
            target=HOST.tvm_target(),
        )
        out = tvm.runtime.tensor(np.zeros([int(d) for d in func.params[-1].ty.shape], "float32"))
        lib["main"](*(tvm.runtime.tensor(a) for a in (x, weights, b)), out)
        outs.append(out.numpy())
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-6, atol=1e-6)
    expected = np.einsum("nhwc,cf->nhwf", x, w[0, 0]) + b.reshape(1, 1, 1, -1)
    np.testing.assert_allclose(outs[0], expected, rtol=1e-5, atol=1e-4)


def test_a_one_pixel_wide_tile_runs_its_flat_epilogue_over_its_channels():
    """A 1x1 output (a small input's last stage) in half vectors: the tile holds all 32 channels of one pixel,
    whose epilogue has no pixel loop to fuse (the tile search of a 32x32 toy model failed there)."""
    shape = (1, 32, 1, 1)
    torch.manual_seed(0)
    block = ConvBlock(32, 32, (3, 3), 1, 32, True, False).eval()
    prepared = prepare(import_model(block, shape), HOST)
    ((kernel, func),) = conv_kernels(prepared).values()
    tile = ConvTile(1, 1, 4, 8)
    assert flat_epilogue_width(tile, 32, 16) == 16
    assert_scheduled_matches_torch(block, shape, prepared, schedule_conv(func, tile, epilogue_lanes=16))


def assert_scheduled_matches_torch(block: nn.Module, shape: tuple, prepared, kernel) -> None:
    """`prepared` (the block's one conv kernel) with `kernel` in its place computes what torch does."""
    ((gv, _),) = conv_kernels(prepared).items()
    scheduled = prepared.clone()
    scheduled[gv] = kernel
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = block(x).numpy()
    out = VMRunner(tvm.relax.build(scheduled, HOST.tvm_target()))(x.numpy())
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))


def test_few_pixel_tiles_share_out_their_channel_blocks_to_the_threads():
    """A 7x7 stage's 7 rows of pixel tiles split 4 + 3 over 2 threads; with the channel blocks in 3 parts the
    parallel loop has 21 tasks (at least PARALLEL_TASKS), and the conv is the same."""
    shape = (1, 96, 7, 7)
    torch.manual_seed(0)
    block = ConvBlock(96, 384, (1, 1), 1, 1, True, False).eval()
    prepared = prepare(import_model(block, shape), HOST)
    ((kernel, func),) = conv_kernels(prepared).values()

    def parallel_extents(tile: ConvTile) -> list[int]:
        text = tvm.IRModule({"main": schedule_conv(func, tile)}).script()
        return [int(n) for n in re.findall(r"in T\.parallel\(T\.int64\((\d+)\)", text)]

    few = ConvTile(7, 1, 2, 16)  # 7 pixel tiles, 12 channel blocks
    assert parallel_extents(few) == [21] and 21 >= PARALLEL_TASKS > 7
    assert parallel_extents(ConvTile(1, 1, 2, 16)) == [49]  # enough pixel tiles: as before
    # channel blocks by pixel rows: as before
    assert parallel_extents(ConvTile(7, 1, 2, 16, order="fp")) == [12 * 7]
    assert_scheduled_matches_torch(block, shape, prepared, schedule_conv(func, few))


def test_a_chunk_narrower_than_a_vector_is_also_measured_as_one_odd_vector():
    """M1's 12-channel stage-1 chunks: besides quarter-vector window tiles, one 12-lane window tile (pf and
    fp) is a candidate on AVX-512, and it computes the same conv; widths that are vectors already, and
    narrower units, get none."""
    shape = (1, 12, 14, 14)
    torch.manual_seed(0)
    block = ConvBlock(12, 12, (7, 7), 1, 12, False, False).eval()
    prepared = prepare(import_model(block, shape), HOST)
    ((kernel, func),) = conv_kernels(prepared).values()
    avx512, avx2 = VectorUnit(16, 32), VectorUnit(8, 16)
    tiles = candidate_tiles(kernel, avx512, limit=12)
    odd = [t for t in tiles if t.vec == 12]
    assert len(tiles) == 12 and [t.order for t in odd] == ["pf", "fp"]
    assert all(t.window and t.cv == 1 for t in odd) and {t.vec for t in tiles} == {4, 12}
    assert all((t.accumulators + 1) * 2 + 1 <= 32 for t in odd)  # 8 + 4 lanes: two registers a vector
    assert not [t for t in candidate_tiles(kernel, avx2, limit=12) if t.vec == 12]
    assert {t.vec for t in candidate_tiles(replace(kernel, channels=16), avx512, limit=12)} <= {16, 8, 4}
    assert_scheduled_matches_torch(block, shape, prepared, schedule_conv(func, odd[0]))


def test_a_tile_holding_every_channel_runs_its_epilogue_in_full_vectors():
    """M0's stem: 20 channels divide only into 4-lane vectors; a tile holding all 20 channels of 4 pixels
    writes 80 contiguous outputs, and its GELU runs over them in 16-lane vectors."""
    shape = (1, 3, 16, 16)
    prepared = prepare(import_model(ConvBlock(3, 20, (3, 3), 2, 1, True, False).eval(), shape), HOST)
    ((kernel, func),) = conv_kernels(prepared).values()
    avx512 = VectorUnit(16, 32)
    spanning = [t for t in candidate_tiles(kernel, avx512, limit=12) if t.cv * t.vec == 20]
    assert spanning and all(flat_epilogue_width(t, 20, 16) == 16 for t in spanning)
    assert epilogue_lanes(avx512) == 16 and epilogue_lanes(NEON) == 0

    def vector_widths(lanes: int) -> set[int]:
        text = tvm.IRModule({"main": schedule_conv(func, spanning[0], epilogue_lanes=lanes)}).script()
        return {int(w) for w in re.findall(r"in T\.vectorized\(T\.int64\((\d+)\)", text)}

    assert vector_widths(16) == {4, 16} and vector_widths(0) == {4}
    # NEON's tiles and any tile with full vectors keep their epilogue as it was
    assert flat_epilogue_width(ConvTile(4, 1, 1, 16), 16, 16) == 0
    assert not [t for t in candidate_tiles(kernel, NEON, limit=12) if t.cv * t.vec == 20 and t.cv > 4]


def test_candidate_tiles_divide_the_output_and_fit_the_registers():
    kernel = ConvKernel(height=14, width=14, channels=384)
    for unit in (VectorUnit(16, 32), VectorUnit(8, 16), VectorUnit(4, 32)):
        tiles = candidate_tiles(kernel, unit, limit=12)
        assert len(tiles) == 12 and {t.order for t in tiles} == {"pf", "fp"}
        for t in tiles:
            assert kernel.width % t.tx == 0 and kernel.height % t.ty == 0
            assert kernel.channels % (t.cv * t.vec) == 0 and t.accumulators + t.cv < unit.registers
        assert tiles[0].vec == unit.lanes
    # Channel counts that no full vector divides still get an exact tiling (M0's 40, the chunks' 10).
    for channels in (40, 10, 3):
        tile = default_tile(ConvKernel(7, 7, channels), VectorUnit(16, 32))
        assert channels % (tile.cv * tile.vec) == 0


NEON = VectorUnit(4, 32, by_element=True)


def test_neon_tiles_load_input_vectors_and_fit_the_registers():
    # Convs summing over input channels: lanes-wide input vectors and by-element FMAs; registers hold the
    # accumulators, one input vector per pixel and one weight vector per channel vector.
    kernel = ConvKernel(14, 14, 384, taps=(1, 1), reduce_channels=192)
    tiles = candidate_tiles(kernel, NEON, limit=8)
    assert tiles[0] == ConvTile(7, 1, 3, 4, rcv=4)
    for t in tiles:
        assert t.rcv == 4 and t.accumulators + t.tx * t.ty + t.cv <= 32
    # Depthwise convs with horizontal taps: an input row per kernel row, shared by the taps (window).
    depthwise = ConvKernel(14, 14, 48, taps=(7, 7), reduce_channels=1)
    tile = default_tile(depthwise, NEON)
    assert tile.window and tile.rcv == 1
    assert tile.padded  # 7 kernel rows: the input padded once, not each row copied per kernel row
    assert not default_tile(ConvKernel(14, 14, 48, taps=(1, 11), reduce_channels=1), NEON).padded
    assert tile.accumulators + tile.ty * (tile.tx + 6) * tile.cv + tile.cv <= 32
    # x86 units: broadcast tiles for dense convs; depthwise ones with horizontal taps get window tiles
    # measured after the broadcast ones, which keep the default (untuned host builds as before). An x86 FMA
    # reads its input from memory: a window tile needs registers for its accumulators and weights only.
    assert all(t.rcv == 1 and not t.window for t in candidate_tiles(kernel, VectorUnit(16, 32), limit=8))
    for unit in (VectorUnit(16, 32), VectorUnit(8, 16)):
        x86 = candidate_tiles(depthwise, unit, limit=12)
        assert len(x86) == 12 and not x86[0].window and x86[0] == default_tile(depthwise, unit)
        window = [t for t in x86 if t.window]
        assert window and all(t.rcv == 1 and t.accumulators + t.cv < unit.registers for t in window)
    # chunks of 12 channels (M1's stage 1) on AVX2: windows of 4-lane vectors
    assert any(
        t.window and t.vec == 4
        for t in candidate_tiles(
            ConvKernel(56, 56, 12, taps=(7, 7), reduce_channels=1), VectorUnit(8, 16), 12
        )
    )
    assert not default_tile(ConvKernel(14, 14, 48, taps=(11, 1), reduce_channels=1), NEON).window


NEON_CASES = ["1x1+gelu", "1x1+residual", "dense 3x3/2", "depthwise 7x7", "depthwise 1x11", "depthwise 3x3/2"]
NEON_CASES += ["stem 3x3/2", "depthwise 11x1"]


@pytest.mark.parametrize("case", NEON_CASES)
def test_neon_tiles_compute_the_same_conv(case):
    """The NEON forms (vector inputs with by-element FMAs, depthwise windows) are target-independent TIR:
    checked on the host."""
    args, shape = {
        **CASES,
        "dense 3x3/2": ((8, 24, (3, 3), 2, 1, False, False), (1, 8, 14, 14)),
        "depthwise 11x1": ((12, 12, (11, 1), 1, 12, False, True), (1, 12, 14, 6)),
    }[case]
    torch.manual_seed(0)
    block = ConvBlock(*args).eval()
    prepared = prepare(import_model(block, shape), HOST)
    ((gv, (kernel, func)),) = conv_kernels(prepared).items()
    tiles = candidate_tiles(kernel, NEON, limit=4)
    assert tiles and all(t.rcv == 4 or t.window or t.padded for t in tiles)
    # kernels with taps read a padded copy of the input (no bounds test per load), except the windowed ones
    # of a single kernel row, which pad their row per tile
    assert all(t.padded == (kernel.taps != (1, 1) and (not t.window or kernel.taps[0] > 1)) for t in tiles)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = block(x).numpy()
    for tile in tiles:
        scheduled = prepared.clone()
        scheduled[gv] = schedule_conv(func, tile)
        out = VMRunner(tvm.relax.build(scheduled, HOST.tvm_target()))(x.numpy())
        np.testing.assert_allclose(
            out, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()), err_msg=str(tile)
        )


def test_vector_unit_follows_the_target():
    def unit(**target):
        return vector_unit(tvm.target.Target({"kind": "llvm", **target}))

    assert unit(mcpu="sapphirerapids") == VectorUnit(16, 32)
    assert unit(mcpu="znver3") == VectorUnit(8, 16)
    assert unit(mtriple="aarch64-linux-gnu", mcpu="cortex-a72") == VectorUnit(4, 32, by_element=True)


def test_only_conv_kernels_match(mod):
    prepared = prepare(mod, HOST)
    names = {gv.name_hint for gv in conv_kernels(prepared)}
    others = [
        f
        for gv, f in prepared.functions.items()
        if isinstance(f, tvm.tirx.PrimFunc) and gv.name_hint not in names
    ]
    assert others and all(match_conv(f) is None for f in others)
    assert all("conv2d" in name for name in names)


def test_tile_search_records_and_builds_use_the_tiles(mod, tmp_path):
    prepared = prepare(mod, HOST)
    target = HOST.tvm_target()
    assert search_tiles(prepared, target, tmp_path, limit=2, progress=False, budget_s=0.005) == len(
        conv_kernels(prepared)
    )
    assert search_tiles(prepared, target, tmp_path, limit=2, progress=False) == 0  # all on record
    from repnext_core.compile.tvm.conv_tiles import load_tiles

    tiles = load_tiles(tmp_path)
    _, scheduled, measured = apply_conv_schedules(prepared, target, tiles)
    assert scheduled == measured == len(tiles) > 0
    _, scheduled, measured = apply_conv_schedules(prepared, target, {})
    assert scheduled == len(tiles) and measured == 0


@pytest.mark.parametrize("variant", ["repnext_m0", "repnext_m1", "repnext_m4"])
def test_the_shipped_tile_databases_cover_every_conv_kernel_of_their_model(variant):
    """Every committed host database has a measured tile for each conv kernel as the pipeline now writes it:
    a change to a kernel's computation (its epilogue's GELU, say) changes its workload key, and a database
    keyed on the old form would silently fall back to heuristic tiles."""
    import json

    import repnext_core
    from repnext_core.compile.tune.database import PACKAGED_ROOT
    from repnext_core.compile.tvm.conv_tiles import load_tiles

    dirs = sorted(PACKAGED_ROOT.glob(f"{variant}_224x224_host-*"))
    assert dirs, f"no shipped host database for {variant}"
    torch.manual_seed(0)
    prepared = prepare(import_model(repnext_core.create_model(variant, fused=True), (1, 3, 224, 224)), HOST)
    keys = {workload_key(func): gv.name_hint for gv, (_, func) in conv_kernels(prepared).items()}
    for db in dirs:
        assert "mtriple" not in json.loads((db / "db_meta.json").read_text())["target"]["target"]
        tiles = load_tiles(db)
        missing = sorted(name for key, name in keys.items() if key not in tiles)
        assert not missing and len(tiles) == len(keys), f"{db.name}: no measured tile for {missing}"


def test_a_damaged_tiles_file_says_what_to_do(tmp_path):
    from repnext_core.compile.tvm.conv_tiles import TILES_FILE, load_tiles

    (tmp_path / TILES_FILE).write_text('{"format": "repnext-conv-ti')
    with pytest.raises(ValueError, match="damaged.*repnext tune"):
        load_tiles(tmp_path)
    (tmp_path / TILES_FILE).write_text("[]")
    with pytest.raises(ValueError, match="not a repnext-conv-tiles/1 file"):
        load_tiles(tmp_path)


def gelu_of_copies(channels: int = 12) -> nn.Module:
    """1x1 conv 3 -> channels whose output channel j is input channel j % 3, then GELU: the MLP's expand-conv
    epilogue (vectorized by the conv schedule) on known inputs."""
    block = ConvBlock(3, channels, (1, 1), 1, 1, True, False).eval()
    with torch.no_grad():
        block.conv.weight.zero_()
        block.conv.bias.zero_()
        for j in range(channels):
            block.conv.weight[j, j % 3] = 1.0
    return block


@pytest.fixture(scope="module")
def arm_gelu(tmp_path_factory):
    from repnext_core.compile.tvm.build import build_artifact

    out = tmp_path_factory.mktemp("gelu") / "a76"
    return build_artifact(gelu_of_copies(), out, "cortex-a76", input_size=32)[0]


def disassembly(artifact) -> str:
    """model.so of an aarch64 artifact as objdump prints it (instructions without their bytes)."""
    import subprocess

    return subprocess.run(
        ["aarch64-linux-gnu-objdump", "-d", "--no-show-raw-insn", str(artifact / "model.so")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_aarch64_gelu_divides_by_refined_reciprocal(arm_gelu):
    """NEON's vector divide is slow: the erf's one division is FRECPE + two FRECPS steps on aarch64."""
    asm = disassembly(arm_gelu).splitlines()
    assert any("frecpe" in line and ".4s" in line for line in asm)
    assert sum("frecps" in line and ".4s" in line for line in asm) >= 2
    assert not any("fdiv" in line for line in asm)


def constant_copies(kernel: str) -> list[str]:
    """The `mov vN.16b, vM.16b` lines of an objdump listing whose source register last held a constant (written
    by dup, movi or fmov): what NEON's destructive FMLA costs where a constant is an addend."""
    last: dict[str, str] = {}
    copies = []
    for line in kernel.splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        op, args = parts[1].strip(), parts[2]
        copy = re.match(r"v(\d+)\.16b, v(\d+)\.16b", args)
        if op == "mov" and copy and last.get(copy.group(2)) in ("dup", "movi", "fmov"):
            copies.append(line.strip())
        written = re.match(r"[vqd](\d+)", args)
        if written and not op.startswith("st"):
            last[written.group(1)] = op
    return copies


def test_constant_copies_are_found():
    listing = "\n".join(
        [
            "  0:\tdup\tv1.4s, w0",
            "  4:\tmov\tv2.16b, v1.16b",
            "  8:\tldr\tq3, [x0]",
            "  c:\tmov\tv4.16b, v3.16b",
        ]
    )
    assert constant_copies(listing) == ["4:\tmov\tv2.16b, v1.16b"]


def test_aarch64_gelu_factors_need_no_register_copies(arm_gelu):
    """The quadratic factors are FADD + FMLA into a temporary (t^2 by FMULX, which LLVM does not fuse into
    the add): Horner's form made LLVM copy each constant addend (20 `mov v.16b` in this kernel)."""
    kernel = disassembly(arm_gelu).split("<fused_conv2d_add_gelu_prepacked_compute_>:")[1].split("\n\n")[0]
    assert "fmulx" in kernel
    assert constant_copies(kernel) == []


@pytest.fixture(scope="module")
def arm_half_gelu(tmp_path_factory):
    from repnext_core.compile.tvm.build import build_artifact

    out = tmp_path_factory.mktemp("gelu16") / "a76"
    return build_artifact(gelu_of_copies(16), out, "cortex-a76", input_size=32, precision="fp16")[0]


def test_aarch64_fp16_gelu_is_half_arithmetic_with_a_reciprocal(arm_half_gelu):
    """Half builds run GELU 8 lanes a register in float16: FRECPE.8h + one FRECPS, no division, no float32."""
    import subprocess

    asm = subprocess.run(
        ["aarch64-linux-gnu-objdump", "-d", str(arm_half_gelu / "model.so")], capture_output=True, text=True
    ).stdout.splitlines()
    assert any("frecpe" in line and ".8h" in line for line in asm)
    assert any("frecps" in line and ".8h" in line for line in asm)
    assert not any("fdiv" in line for line in asm)
    # float32 appears only where the model's input and output are cast (fcvtn / fcvtl), never in between
    assert not any(
        ".4s" in line and line.split("\t")[-2].strip().startswith(("fmla", "fmul")) for line in asm
    )


@pytest.mark.slow
def test_aarch64_gelu_stays_within_its_erf_bound_under_qemu(arm_gelu):
    from repnext_core.compile import device

    x = np.linspace(-10, 10, 3 * 32 * 32).astype("float32").reshape(1, 3, 32, 32)
    out = device.run_artifact_native(arm_gelu, x, qemu=True)
    xs = np.concatenate([x] * 4, axis=1).reshape(-1)  # output channel j is input channel j % 3
    out = out.reshape(-1)
    exact = xs.astype(np.float64) * 0.5 * (1 + np.vectorize(math.erf)(xs.astype(np.float64) / math.sqrt(2)))
    assert np.max(np.abs(out - exact) / np.maximum(np.abs(xs) / 2, 1)) <= ERF_MAX_ABS_ERROR


@pytest.mark.slow
def test_aarch64_fp16_gelu_stays_within_its_bound_under_qemu(arm_half_gelu):
    from repnext_core.compile import device

    x = np.linspace(-10, 10, 3 * 32 * 32).astype("float32").reshape(1, 3, 32, 32)
    out = device.run_artifact_native(arm_half_gelu, x, qemu=True)
    # output channel j is input channel j % 3, rounded to float16 on the way in
    xs = np.concatenate([x] * 6, axis=1)[:, :16].reshape(-1).astype(np.float16)
    assert half_gelu_error(out.reshape(-1), xs) <= HALF_GELU_MAX_ERROR
