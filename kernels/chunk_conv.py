"""RepNeXt block token mixer in one launch: identity | 3x3 | 7x7 | 1x11 -> 11x1 over 4 channel chunks."""

from __future__ import annotations

import torch

from . import _common as common
from ._common import jit, tl
from .dwconv import dw_taps, dw_taps_cl, dwconv2d_reference
from .separable import sep_taps, sep_taps_cl, separable_dwconv2d_reference, separable_params


@jit
def _chunk_kernel(
    x_ptr, w3_ptr, b3_ptr, w7_ptr, b7_ptr, wr_ptr, br_ptr, wc_ptr, bc_ptr, y_ptr, C, CQ, H, W, HO, WO, sxn,
    sxc, sxh, sxw, KS: tl.constexpr, KM: tl.constexpr, KL: tl.constexpr, X_ALIGN: tl.constexpr,
    Y_ALIGN: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """One (n, c) plane tile; the channel's chunk picks the branch, the result lands in channel c."""
    pid, n, c, xp, oh, ow, W, sxh = common.program_tile(x_ptr, C, W, sxn, sxc, sxh, X_ALIGN, BLOCK_H, BLOCK_W)
    q = c // CQ  # which chunk: the branch is uniform over the program, so no warp diverges
    cc = c - q * CQ  # channel inside the chunk, indexes that branch's weights
    if q == 0:
        # identity chunk: a copy, widened to fp32 and narrowed back, which is exact
        acc = tl.load(xp + oh * sxh + ow * sxw, mask=(oh < H) & (ow < W), other=0.0).to(tl.float32)
    elif q == 1:
        acc, _ = dw_taps(
            xp, w3_ptr + cc * KS * KS, w3_ptr, oh, ow, H, W, sxh, sxw, 1, KS, 0, BLOCK_H, BLOCK_W
        )
        acc += tl.load(b3_ptr + cc).to(tl.float32)
    elif q == 2:
        acc, _ = dw_taps(
            xp, w7_ptr + cc * KM * KM, w7_ptr, oh, ow, H, W, sxh, sxw, 1, KM, 0, BLOCK_H, BLOCK_W
        )
        acc += tl.load(b7_ptr + cc).to(tl.float32)
    else:
        br = tl.load(br_ptr + cc).to(tl.float32)
        bc = tl.load(bc_ptr + cc).to(tl.float32)
        acc = sep_taps(
            xp, wr_ptr + cc * KL, br, wc_ptr + cc * KL, bc, oh, ow, H, W, sxh, sxw, KL, BLOCK_H, BLOCK_W
        )
    common.store_tile(y_ptr, pid, acc, oh, ow, HO, WO, Y_ALIGN)


_chunk_tuned = common.autotuned(_chunk_kernel)


@jit
def _chunk_cl_kernel(
    x_ptr, w3_ptr, b3_ptr, w7_ptr, b7_ptr, wr_ptr, br_ptr, wc_ptr, bc_ptr, y_ptr, C, CQ, H, W, HO, WO, sxn,
    sxh, sxw, KS: tl.constexpr, KM: tl.constexpr, KL: tl.constexpr, X_ALIGN: tl.constexpr,
    Y_ALIGN: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """One [BLOCK_H, BLOCK_W, BLOCK_C] tile of one chunk, channels_last in and out.

    A block of channels lies inside one chunk (grid axis 0 runs over (n, chunk, channel block)), so the
    branch is uniform over the program, as in the plane kernel.
    """
    CQa = common.aligned(CQ, X_ALIGN)
    n, q, cc, c_ok, c, oh, ow, xp = common.cl_program(
        x_ptr, CQ, 4, sxn, CQa, X_ALIGN, BLOCK_H, BLOCK_W, BLOCK_C
    )
    sxh, sxw = common.aligned(sxh, X_ALIGN), common.aligned(sxw, X_ALIGN)
    if q == 0:
        acc = tl.load(xp + oh * sxh + ow * sxw, mask=(oh < H) & (ow < W) & c_ok, other=0.0).to(tl.float32)
    elif q == 1:
        acc, _ = dw_taps_cl(
            xp, w3_ptr + cc * KS * KS, w3_ptr, c_ok, oh, ow, H, W, sxh, sxw, 1, KS, 0, BLOCK_H, BLOCK_W,
            BLOCK_C,
        )  # fmt: skip
        acc += tl.load(b3_ptr + cc, mask=c_ok, other=0.0).to(tl.float32)
    elif q == 2:
        acc, _ = dw_taps_cl(
            xp, w7_ptr + cc * KM * KM, w7_ptr, c_ok, oh, ow, H, W, sxh, sxw, 1, KM, 0, BLOCK_H, BLOCK_W,
            BLOCK_C,
        )  # fmt: skip
        acc += tl.load(b7_ptr + cc, mask=c_ok, other=0.0).to(tl.float32)
    else:
        br = tl.load(br_ptr + cc, mask=c_ok, other=0.0).to(tl.float32)
        bc = tl.load(bc_ptr + cc, mask=c_ok, other=0.0).to(tl.float32)
        acc = sep_taps_cl(
            xp, wr_ptr + cc * KL, br, wc_ptr + cc * KL, bc, c_ok, oh, ow, H, W, sxh, sxw, KL, BLOCK_H,
            BLOCK_W, BLOCK_C,
        )  # fmt: skip
    common.store_tile_cl(y_ptr, n, c, c_ok, acc, oh, ow, HO, WO, C, Y_ALIGN)


_chunk_cl_tuned = common.autotuned(_chunk_cl_kernel, channels_last=True)
PARAM_NAMES = ("w3", "b3", "w7", "b7", "w1x11", "b1x11", "w11x1", "b11x1")


def plan_chunk(x: torch.Tensor, *params: torch.Tensor) -> common.Launch:
    """Check `chunk_dwconv`'s arguments (same order) and lay out its launch."""
    common.check_input(x)
    c = x.shape[1]
    if c % 4:
        raise ValueError(f"chunk_dwconv needs a channel count divisible by 4, got {c}")
    for name, t in zip(PARAM_NAMES, params):
        if t is None:
            raise ValueError(f"{name} is required (the fused block token mixer has every bias)")
    cq = c // 4
    w3, b3, w7, b7 = params[:4]
    ks, km = common.kernel_size(w3, "w3"), common.kernel_size(w7, "w7")
    kl, (wr, br, wc, bc) = separable_params(x, cq, *params[4:])
    small = {
        "w3_ptr": common.check_param(x, w3, "w3", (cq, 1, ks, ks)),
        "b3_ptr": common.check_param(x, b3, "b3", (cq,)),
    }
    mid = {
        "w7_ptr": common.check_param(x, w7, "w7", (cq, 1, km, km)),
        "b7_ptr": common.check_param(x, b7, "b7", (cq,)),
    }
    args = {**small, **mid, "wr_ptr": wr, "br_ptr": br, "wc_ptr": wc, "bc_ptr": bc, "C": c, "CQ": cq}
    out = common.new_output(x, x.shape)
    constexprs = {"KS": ks, "KM": km, "KL": kl}
    cl = (_chunk_cl_kernel, _chunk_cl_tuned)
    return common.new_launch(_chunk_kernel, _chunk_tuned, x, out, args, constexprs, cl, groups=4)


def chunk_dwconv(
    x: torch.Tensor,
    w3: torch.Tensor,
    b3: torch.Tensor,
    w7: torch.Tensor,
    b7: torch.Tensor,
    w1x11: torch.Tensor,
    b1x11: torch.Tensor,
    w11x1: torch.Tensor,
    b11x1: torch.Tensor,
) -> torch.Tensor:
    """The whole block token mixer in one launch: every chunk written straight into its channels.

    Runs as the custom op `torch.ops.repnext.chunk_dwconv`; channels_last in gives channels_last out.
    """
    common.require_triton()
    return torch.ops.repnext.chunk_dwconv(x, w3, b3, w7, b7, w1x11, b1x11, w11x1, b11x1)


def chunk_dwconv_reference(x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
    """Plain PyTorch twin of `chunk_dwconv` (same arguments): chunk, four branches in fp32, concat."""
    w3, b3, w7, b7 = params[:4]
    i, s, m, l = torch.chunk(x, 4, dim=1)
    branches = (i, dwconv2d_reference(s, w3, b3), dwconv2d_reference(m, w7, b7))
    return torch.cat((*branches, separable_dwconv2d_reference(l, *params[4:])), dim=1)
