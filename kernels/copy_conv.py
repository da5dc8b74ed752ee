"""RepNeXt downsample token mixer in one launch: stride-2 3x3 and 7x7 depthwise convs of one input."""

from __future__ import annotations

import torch

from . import _common as common
from ._common import jit, tl
from .dwconv import dw_taps, dw_taps_cl, dwconv2d_reference, out_size


@jit
def _copy_kernel(
    x_ptr, ws_ptr, bs_ptr, wm_ptr, bm_ptr, y_ptr, C, H, W, HO, WO, sxn, sxc, sxh, sxw, KS: tl.constexpr,
    KM: tl.constexpr, X_ALIGN: tl.constexpr, Y_ALIGN: tl.constexpr, BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):  # fmt: skip
    """One (n, c) input plane tile -> output channels c (small kernel) and C + c (large kernel).

    Each input element of the tile's window is loaded once, by the large kernel's taps, and also feeds
    the small kernel's taps that sit at the same place (same stride, both 'same'-padded and centred).
    """
    pid, n, c, xp, oh, ow, W, sxh = common.program_tile(x_ptr, C, W, sxn, sxc, sxh, X_ALIGN, BLOCK_H, BLOCK_W)
    acc_m, acc_s = dw_taps(
        xp, wm_ptr + c * KM * KM, ws_ptr + c * KS * KS, oh, ow, H, W, sxh, sxw, 2, KM, KS, BLOCK_H, BLOCK_W
    )
    acc_s += tl.load(bs_ptr + c).to(tl.float32)
    acc_m += tl.load(bm_ptr + c).to(tl.float32)
    common.store_tile(y_ptr, n * 2 * C + c, acc_s, oh, ow, HO, WO, Y_ALIGN)
    common.store_tile(y_ptr, n * 2 * C + C + c, acc_m, oh, ow, HO, WO, Y_ALIGN)


_copy_tuned = common.autotuned(_copy_kernel)


@jit
def _copy_cl_kernel(
    x_ptr, ws_ptr, bs_ptr, wm_ptr, bm_ptr, y_ptr, C, H, W, HO, WO, sxn, sxh, sxw, KS: tl.constexpr,
    KM: tl.constexpr, X_ALIGN: tl.constexpr, Y_ALIGN: tl.constexpr, BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """One [BLOCK_H, BLOCK_W, BLOCK_C] tile, channels_last: channels c (small kernel) and C + c (large)."""
    Ca = common.aligned(C, X_ALIGN)
    n, _, _, c_ok, c, oh, ow, xp = common.cl_program(x_ptr, C, 1, sxn, Ca, X_ALIGN, BLOCK_H, BLOCK_W, BLOCK_C)
    sxh, sxw = common.aligned(sxh, X_ALIGN), common.aligned(sxw, X_ALIGN)
    acc_m, acc_s = dw_taps_cl(
        xp, wm_ptr + c * KM * KM, ws_ptr + c * KS * KS, c_ok, oh, ow, H, W, sxh, sxw, 2, KM, KS, BLOCK_H,
        BLOCK_W, BLOCK_C,
    )  # fmt: skip
    acc_s += tl.load(bs_ptr + c, mask=c_ok, other=0.0).to(tl.float32)
    acc_m += tl.load(bm_ptr + c, mask=c_ok, other=0.0).to(tl.float32)
    C2 = 2 * common.aligned(C, Y_ALIGN)
    common.store_tile_cl(y_ptr, n, c, c_ok, acc_s, oh, ow, HO, WO, C2, Y_ALIGN)
    common.store_tile_cl(y_ptr, n, C + c, c_ok, acc_m, oh, ow, HO, WO, C2, Y_ALIGN)


_copy_cl_tuned = common.autotuned(_copy_cl_kernel, channels_last=True)


def plan_copy(x: torch.Tensor, *params: torch.Tensor) -> common.Launch:
    """Check `copy_dwconv`'s arguments and lay out its launch."""
    common.check_input(x)
    n, c, h, w = x.shape
    w3, b3, w7, b7 = params
    ks, km = common.kernel_size(w3, "w3"), common.kernel_size(w7, "w7")
    if ks > km:
        raise ValueError(f"w3 ({ks}x{ks}) must not be larger than w7 ({km}x{km}): its taps reuse w7's loads")
    if b3 is None or b7 is None:
        raise ValueError("b3 and b7 are required (the fused downsample mixer has both biases)")
    args = {
        "ws_ptr": common.check_param(x, w3, "w3", (c, 1, ks, ks)),
        "bs_ptr": common.check_param(x, b3, "b3", (c,)),
    }
    args |= {
        "wm_ptr": common.check_param(x, w7, "w7", (c, 1, km, km)),
        "bm_ptr": common.check_param(x, b7, "b7", (c,)),
    }
    out = common.new_output(x, (n, 2 * c, out_size(h, 2), out_size(w, 2)))
    cl = (_copy_cl_kernel, _copy_cl_tuned)
    constexprs = {"KS": ks, "KM": km}
    return common.new_launch(_copy_kernel, _copy_tuned, x, out, {**args, "C": c}, constexprs, cl)


def copy_dwconv(
    x: torch.Tensor, w3: torch.Tensor, b3: torch.Tensor, w7: torch.Tensor, b7: torch.Tensor
) -> torch.Tensor:
    """Downsample token mixer in one launch: [3x3/s2 (x) | 7x7/s2 (x)] -> [N, 2C, ceil(H/2), ceil(W/2)].

    Runs as the custom op `torch.ops.repnext.copy_dwconv`; channels_last in gives channels_last out.
    """
    common.require_triton()
    return torch.ops.repnext.copy_dwconv(x, w3, b3, w7, b7)


def copy_dwconv_reference(x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
    """Plain PyTorch twin of `copy_dwconv` (same arguments): two stride-2 convs in fp32, concat, input dtype."""
    w3, b3, w7, b7 = params
    return torch.cat((dwconv2d_reference(x, w3, b3, 2), dwconv2d_reference(x, w7, b7, 2)), dim=1)
