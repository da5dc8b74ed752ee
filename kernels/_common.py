"""Launcher plumbing shared by the depthwise Triton ops: guarded import, checks, tile configs, launch."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

try:  # Triton is an optional extra; the references and the checks work without it.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised in a subprocess that hides triton
    triton = None
    tl = None

INSTALL_HINT = "the Triton kernels need the `triton` package: pip install repnext[triton]"
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
K_RANGE = range(3, 14, 2)
# Grid axes 1 and 2 (tile rows / tile columns) are limited to 65535 programs by CUDA.
MAX_GRID_YZ = 65535
INT32_MAX = 2**31 - 1
# Triton 3.9's default (FMA contraction on), stated so it does not warn on every compile; aot uses it too.
FP_FUSION = {"enable_fp_fusion": True}


def triton_available() -> bool:
    """True when `triton` imported, i.e. the kernels can be compiled (or interpreted)."""
    return triton is not None


def jit(fn: Callable) -> Any:
    """`triton.jit` when Triton is installed, else the bare function, so that this package always imports."""
    return fn if triton is None else triton.jit(fn)


def is_interpreted(kernel: Any) -> bool:
    """True when `kernel` was built under TRITON_INTERPRET=1 (runs on CPU tensors, for tests)."""
    return type(kernel).__name__ == "InterpretedFunction"


@dataclass(frozen=True)
class TileConfig:
    """One autotune candidate: an output tile of block_h x block_w pixels of one (n, channel) plane.

    The channels_last (NHWC) kernels tile channels too: block_c > 0 contiguous channels per pixel.
    """

    block_h: int
    block_w: int
    num_warps: int
    block_c: int = 0

    @property
    def meta(self) -> dict[str, int]:
        meta = {"BLOCK_H": self.block_h, "BLOCK_W": self.block_w}
        return meta | {"BLOCK_C": self.block_c} if self.block_c else meta

    @property
    def name(self) -> str:
        c = f"x{self.block_c}" if self.block_c else ""
        return f"{self.block_h}x{self.block_w}{c}/w{self.num_warps}"


# Row tiles: BLOCK_W spans a whole stage row where it can (56 -> 64, 28 -> 32, 14 -> 16, 7 -> 8), so a
# warp reads contiguous row segments; BLOCK_H trades parallelism against halo re-reads. At most 4 pixels
# per thread: with 8 (1024-pixel tiles on 4 warps) sm_90's ptxas spills the chunk and 7x7 kernels, and a
# 32-row tile (a 64-row 11x1 halo buffer) spills the chunk kernel on sm_90 even on 8 warps.
TILE_CONFIGS: tuple[TileConfig, ...] = (
    TileConfig(4, 64, 2),
    TileConfig(8, 64, 4),
    TileConfig(16, 64, 8),
    TileConfig(8, 32, 2),
    TileConfig(16, 32, 4),
    TileConfig(8, 16, 1),
    TileConfig(16, 16, 2),
    TileConfig(8, 8, 1),
)


# channels_last tiles: BLOCK_H x BLOCK_W pixels x BLOCK_C contiguous channels, 4 elements per thread as above.
# A thread's elements run along the channels, so loads and stores vectorize across channels; the pixel
# tile stays small because every tap of the large kernels re-reads it (from L1) at a shifted position.
# No 8-warp tile: sm_80's ptxas held an 8x8x16 tile on 8 warps to 64-80 registers and spilled.
CL_TILE_CONFIGS: tuple[TileConfig, ...] = (
    TileConfig(4, 8, 4, 16),
    TileConfig(4, 4, 4, 32),
    TileConfig(2, 8, 4, 32),
    TileConfig(2, 4, 4, 64),
    TileConfig(4, 8, 2, 8),
    TileConfig(4, 4, 2, 16),
)


def cl_candidate_configs(
    ho: int, wo: int, channels: int, configs: Sequence[TileConfig] = CL_TILE_CONFIGS
) -> list[TileConfig]:
    """The channels_last configs for an output plane whose channel groups have `channels` channels."""
    bc = max(8, triton_next_pow2(channels))
    bw, bh = max(4, triton_next_pow2(wo)), max(2, triton_next_pow2(ho))
    picked = [c for c in configs if c.block_c <= bc and c.block_w <= bw and c.block_h <= bh]
    return picked or [min(configs, key=lambda c: c.block_h * c.block_w * c.block_c)]


def tile_width(w: int) -> int:
    """The BLOCK_W matched to an output width: its power-of-two cover, clamped to [8, 64]."""
    return min(64, max(8, triton_next_pow2(w)))


def triton_next_pow2(n: int) -> int:
    """Smallest power of two >= n (host-side twin of triton.next_power_of_2)."""
    return 1 << max(0, (n - 1).bit_length())


def candidate_configs(ho: int, wo: int, configs: Sequence[TileConfig] = TILE_CONFIGS) -> list[TileConfig]:
    """The configs the autotuner may pick for an output plane: matched width, no taller than needed."""
    bw = tile_width(wo)
    tall = max(8, triton_next_pow2(ho))
    picked = [c for c in configs if c.block_w == bw and c.block_h <= tall]
    return picked or [min(configs, key=lambda c: abs(c.block_w - bw) + c.block_h)]


def _prune(configs: list, named_args: dict, **kwargs: Any) -> list:
    """Autotune early pruning: keep only the candidate tiles for this launch's output plane."""
    args = {**named_args, **kwargs}
    keep = candidate_configs(args["HO"], args["WO"])
    names = {(c.block_h, c.block_w, c.num_warps) for c in keep}
    return [c for c in configs if (c.kwargs["BLOCK_H"], c.kwargs["BLOCK_W"], c.num_warps) in names]


def _prune_cl(configs: list, named_args: dict, **kwargs: Any) -> list:
    """Early pruning for the channels_last kernels (channel groups: CQ for the chunk op, else C)."""
    args = {**named_args, **kwargs}
    keep = {
        (c.block_h, c.block_w, c.block_c, c.num_warps)
        for c in cl_candidate_configs(args["HO"], args["WO"], args.get("CQ", args["C"]))
    }
    return [
        c
        for c in configs
        if (c.kwargs["BLOCK_H"], c.kwargs["BLOCK_W"], c.kwargs["BLOCK_C"], c.num_warps) in keep
    ]


def autotuned(kernel: Any, channels_last: bool = False) -> Any:
    """Wrap a raw kernel in `triton.autotune`, keyed on channels, output size and (implicitly) dtype."""
    if triton is None or is_interpreted(kernel):
        return None  # the interpreter cannot time configs; launch() picks one instead
    tiles, prune = (CL_TILE_CONFIGS, _prune_cl) if channels_last else (TILE_CONFIGS, _prune)
    configs = [triton.Config(c.meta, num_warps=c.num_warps) for c in tiles]
    # Triton appends every tensor argument's dtype to this key, so fp32/fp16/bf16 tune separately.
    return triton.autotune(configs, key=["C", "HO", "WO"], prune_configs_by={"early_config_prune": prune})(
        kernel
    )


@dataclass
class Launch:
    """Everything one kernel launch needs; built by an op's planner, run by `launch`, compiled by aot."""

    kernel: Any
    tuned: Any
    args: dict[str, Any]
    constexprs: dict[str, Any]
    planes: int
    out: torch.Tensor
    # channels_last kernels: grid axis 0 runs over (n, channel group, block of BLOCK_C channels)
    channels_last: bool = False
    groups: int = 1

    @property
    def out_hw(self) -> tuple[int, int]:
        return self.args["HO"], self.args["WO"]

    @property
    def group_channels(self) -> int:
        """Channels per group: a block of channels never straddles two of them (the chunk op's chunks)."""
        return self.args.get("CQ", self.args["C"])

    def candidates(self) -> list[TileConfig]:
        """The configs the autotuner may pick for this launch."""
        if self.channels_last:
            return cl_candidate_configs(*self.out_hw, self.group_channels)
        return candidate_configs(*self.out_hw)

    def grid(self, meta: dict[str, Any]) -> tuple[int, int, int]:
        ho, wo = self.out_hw
        planes = self.planes
        if self.channels_last:
            planes = self.out.shape[0] * self.groups * math.ceil(self.group_channels / meta["BLOCK_C"])
        return (planes, math.ceil(ho / meta["BLOCK_H"]), math.ceil(wo / meta["BLOCK_W"]))


def launch(plan: Launch, config: TileConfig | None = None) -> torch.Tensor:
    """Run a planned kernel: autotuned on GPU, or with one fixed config (interpreter, tests, AOT parity)."""
    if plan.out.numel() == 0:
        return plan.out
    x = plan.args["x_ptr"]
    interpreted = is_interpreted(plan.kernel)
    if x.device.type == "cpu" and not interpreted:
        raise RuntimeError(
            "the Triton kernels run on CUDA tensors; got a CPU tensor (set TRITON_INTERPRET=1 before "
            "importing triton to run them in Triton's CPU interpreter, or use the *_reference function)"
        )
    if config is None and interpreted:
        config = plan.candidates()[-1]
    if config is not None:
        meta = config.meta
        check_grid(plan.grid(meta))
        options = (
            {"num_warps": config.num_warps} if interpreted else {"num_warps": config.num_warps, **FP_FUSION}
        )
        plan.kernel[plan.grid(meta)](**plan.args, **plan.constexprs, **meta, **options)
    else:
        for candidate in plan.candidates():  # the autotuner may pick any of them
            check_grid(plan.grid(candidate.meta))
        with torch.cuda.device(x.device):
            plan.tuned[plan.grid](**plan.args, **plan.constexprs, **FP_FUSION)
    return plan.out


def check_grid(grid: tuple[int, int, int]) -> None:
    """Refuse grids CUDA cannot launch instead of failing with an opaque driver error."""
    if grid[0] > INT32_MAX or grid[1] > MAX_GRID_YZ or grid[2] > MAX_GRID_YZ:
        raise ValueError(f"input too large for the kernels' grid {grid}")


def require_triton() -> None:
    """Raise the install hint when Triton is missing."""
    if triton is None:
        raise RuntimeError(INSTALL_HINT)


def check_input(x: torch.Tensor, name: str = "x") -> None:
    """Validate the activation: a 4-D float tensor of a supported dtype with a non-empty plane."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must be 4-D [N, C, H, W], got shape {tuple(x.shape)}")
    if x.dtype not in DTYPES:
        raise TypeError(f"{name} dtype must be one of float32/float16/bfloat16, got {x.dtype}")
    if x.shape[1] < 1 or x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{name} needs C, H, W >= 1, got shape {tuple(x.shape)}")
    _, _, h, w = x.shape
    _, _, sh, sw = x.stride()
    # Plane starts are int64; offsets inside one plane (halo rows included) are int32.
    if (h + 16) * sh + (w + 16) * sw > INT32_MAX or h * w > INT32_MAX:
        raise ValueError(
            f"{name}: one HxW plane spans more than 2**31 elements; the kernels index it in int32"
        )


def check_param(
    x: torch.Tensor, t: torch.Tensor | None, name: str, shape: tuple[int, ...]
) -> torch.Tensor | None:
    """Validate a weight or bias against the input: exact shape, same dtype, same device."""
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(t.shape)}")
    if t.dtype != x.dtype:
        raise TypeError(f"{name} dtype {t.dtype} differs from the input's {x.dtype}")
    if t.device != x.device:
        raise ValueError(f"{name} is on {t.device} but the input is on {x.device}")
    # Parameters are tiny; a dense copy keeps the kernels' weight indexing trivial.
    return t.detach().contiguous()


def kernel_size(w: torch.Tensor, name: str, square: bool = True) -> int:
    """Read K from a depthwise weight [c, 1, K, K] (or its 1xK / Kx1 halves) and check its range."""
    if not isinstance(w, torch.Tensor) or w.dim() != 4:
        raise ValueError(f"{name} must be a 4-D depthwise weight [c, 1, kh, kw]")
    kh, kw = w.shape[-2:]
    k = max(kh, kw)
    if (square and kh != kw) or (not square and min(kh, kw) != 1):
        raise ValueError(f"{name} has an unexpected kernel shape {kh}x{kw}")
    if k not in K_RANGE:
        raise ValueError(f"{name}: kernel size {k} not supported; odd sizes 3..13 only")
    return k


def bias_or_zeros(x: torch.Tensor, b: torch.Tensor | None, c: int) -> torch.Tensor:
    """The kernels always add a bias; a missing one becomes zeros."""
    return b if b is not None else x.new_zeros(c)


def pow2_divisor(*values: int, cap: int = 16) -> int:
    """Largest power of two (<= cap) dividing every value: an alignment hint that lets loads vectorize."""
    g = 0
    for v in values:
        g = math.gcd(g, int(v))
    if g == 0:
        return cap
    return min(cap, g & -g)


def input_args(x: torch.Tensor) -> dict[str, Any]:
    """Pointer and strides of the activation; strides let views and channels_last run without a copy."""
    sn, sc, sh, sw = x.stride()
    return {"x_ptr": x, "sxn": sn, "sxc": sc, "sxh": sh, "sxw": sw}


def input_align(x: torch.Tensor) -> int:
    """Alignment hint for the input's plane and row starts and its width (only when rows are contiguous)."""
    sn, sc, sh, sw = x.stride()
    return pow2_divisor(sn, sc, sh, x.shape[3]) if sw == 1 else 1


def is_channels_last(x: torch.Tensor) -> bool:
    """True when the channels are x's innermost dimension (NHWC strides, views included).

    Such an input runs the channels_last kernels and gets a channels_last output; anything else runs the
    plane kernels and gets a contiguous (NCHW) output. With one channel both layouts are the same.
    """
    return x.shape[1] > 1 and x.stride(1) == 1 and x.stride(3) != 1


def new_output(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The op's output: `shape`, x's dtype and device, channels_last exactly when x is (see above).

    The real kernels and the fake (meta) implementations both allocate through here, so the strides that
    torch.compile / export propagate are the ones the kernels write.
    """
    fmt = torch.channels_last if is_channels_last(x) else torch.contiguous_format
    return torch.empty(tuple(shape), dtype=x.dtype, device=x.device, memory_format=fmt)


def new_launch(
    kernel: Any,
    tuned: Any,
    x: torch.Tensor,
    out: torch.Tensor,
    args: dict,
    constexprs: dict,
    cl: tuple[Any, Any] | None = None,
    groups: int = 1,
) -> Launch:
    """An op's launch: its own args plus the input's pointer, strides, sizes and both alignment hints.

    `cl` is the op's (kernel, tuned) pair for channels_last input; it is used when x is channels_last.
    """
    ho, wo = out.shape[-2:]
    sizes = {"y_ptr": out, "H": x.shape[2], "W": x.shape[3], "HO": ho, "WO": wo}
    if cl is not None and is_channels_last(x):
        sn, _, sh, sw = x.stride()
        args = {"x_ptr": x, "sxn": sn, "sxh": sh, "sxw": sw, **args, **sizes}
        channels = args.get("CQ", args["C"])
        x_align = pow2_divisor(sn, sh, sw, channels)
        constexprs = {**constexprs, "X_ALIGN": x_align, "Y_ALIGN": pow2_divisor(out.shape[1], channels)}
        return Launch(*cl, args, constexprs, 0, out, channels_last=True, groups=groups)
    args = {**input_args(x), **args, **sizes}
    constexprs = {**constexprs, "X_ALIGN": input_align(x), "Y_ALIGN": pow2_divisor(wo)}
    return Launch(kernel, tuned, args, constexprs, x.shape[0] * x.shape[1], out)


def depthwise_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int = 1,
    padding: tuple[int, int] | None = None,
) -> torch.Tensor:
    """One depthwise conv in float32 (what the kernels accumulate in), result left in float32."""
    kh, kw = weight.shape[-2:]
    pad = padding if padding is not None else (kh // 2, kw // 2)
    b = None if bias is None else bias.float()
    return F.conv2d(x.float(), weight.float(), b, stride=stride, padding=pad, groups=x.shape[1])


# ---- device-side helpers shared by every kernel (inlined by Triton) ----


@jit
def tile_coords(BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """Output rows [BLOCK_H, 1] and columns [1, BLOCK_W] of this program's tile."""
    oh = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
    ow = tl.program_id(2) * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
    return oh, ow


@jit
def aligned(v, A: tl.constexpr):
    """`v`, known by the host to be a multiple of A, spelled so that Triton's alignment analysis sees it.

    tl.multiple_of does not stick to scalar arguments; (v // A) * A does, and it is what makes the
    row loads and stores vectorize when the width allows (56 -> 8 elements, 28 -> 4, ...).
    """
    return (v // A) * A


@jit
def plane_ptr(x_ptr, n, c, sxn, sxc, X_ALIGN: tl.constexpr):
    """Start of input plane (n, c), offset in int64 since N*C*H*W may pass 2**31 elements."""
    return x_ptr + n.to(tl.int64) * aligned(sxn, X_ALIGN) + c.to(tl.int64) * aligned(sxc, X_ALIGN)


@jit
def program_tile(
    x_ptr, C, W, sxn, sxc, sxh, X_ALIGN: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr
):
    """This program's plane pid = n * C + c, its input start, tile coords, and hinted width / row stride."""
    pid = tl.program_id(0)
    n = pid // C
    c = pid % C
    oh, ow = tile_coords(BLOCK_H, BLOCK_W)
    xp = plane_ptr(x_ptr, n, c, sxn, sxc, X_ALIGN)
    return pid, n, c, xp, oh, ow, aligned(W, X_ALIGN), aligned(sxh, X_ALIGN)


@jit
def store_tile(y_ptr, plane, acc, oh, ow, HO, WO, Y_ALIGN: tl.constexpr):
    """Write one fp32 tile into plane `plane` of the contiguous output, cast to the output dtype."""
    WO = aligned(WO, Y_ALIGN)
    yp = y_ptr + plane.to(tl.int64) * HO * WO
    tl.store(yp + oh * WO + ow, acc.to(y_ptr.dtype.element_ty), mask=(oh < HO) & (ow < WO))


# ---- channels_last (NHWC) helpers: tiles are [BLOCK_H, BLOCK_W, BLOCK_C], channels innermost ----


@jit
def cl_program(
    x_ptr, CG, GROUPS: tl.constexpr, sxn, GC_ALIGNED, X_ALIGN: tl.constexpr, BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """This program's image n, channel group g, channels of the group cc [1, 1, BLOCK_C] (+ mask),
    absolute channels c, tile rows oh [BLOCK_H, 1, 1] / columns ow [1, BLOCK_W, 1] and input pointers.

    Axis 0 runs over (n, group, block of BLOCK_C channels); a block never straddles two groups, so the
    chunk op's branch is uniform over the program. GC_ALIGNED is CG spelled with its alignment hint.
    """
    CB = tl.cdiv(CG, BLOCK_C)
    pid = tl.program_id(0)
    n = pid // (GROUPS * CB)
    gb = pid % (GROUPS * CB)
    g = gb // CB
    cc = (gb % CB) * BLOCK_C + tl.arange(0, BLOCK_C)[None, None, :]
    c_ok = cc < CG
    c = g * GC_ALIGNED + cc
    oh = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)[:, None, None]
    ow = tl.program_id(2) * BLOCK_W + tl.arange(0, BLOCK_W)[None, :, None]
    xp = x_ptr + n.to(tl.int64) * aligned(sxn, X_ALIGN) + c
    return n, g, cc, c_ok, c, oh, ow, xp


@jit
def store_tile_cl(y_ptr, n, c, c_ok, acc, oh, ow, HO, WO, CY, Y_ALIGN: tl.constexpr):
    """Write one fp32 [BLOCK_H, BLOCK_W, BLOCK_C] tile into channels c of the channels_last output."""
    CY = aligned(CY, Y_ALIGN)
    yp = y_ptr + n.to(tl.int64) * HO * WO * CY
    mask = (oh < HO) & (ow < WO) & c_ok
    tl.store(yp + (oh * WO + ow) * CY + c, acc.to(y_ptr.dtype.element_ty), mask=mask)
