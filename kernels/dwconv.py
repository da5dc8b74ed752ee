"""Depthwise KxK convolution with 'same' padding (K // 2), stride 1 or 2: Triton kernel and reference."""

from __future__ import annotations

import torch

from . import _common as common
from ._common import jit, tl


@jit
def dw_taps(
    xp,
    wa,
    wb,
    oh,
    ow,
    H,
    W,
    sxh,
    sxw,
    STRIDE: tl.constexpr,
    KA: tl.constexpr,
    KB: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """fp32 KAxKA depthwise taps over a tile, plus a centred KBxKB conv (KB > 0) from the same loads."""
    PA: tl.constexpr = KA // 2
    OFF: tl.constexpr = (KA - KB) // 2  # where the smaller kernel's taps sit inside the larger one
    acc_a = tl.zeros((BLOCK_H, BLOCK_W), tl.float32)
    acc_b = tl.zeros((BLOCK_H, BLOCK_W), tl.float32)
    ih0 = oh * STRIDE - PA
    iw0 = ow * STRIDE - PA
    for kh in tl.static_range(KA):
        ih = ih0 + kh
        row_ok = (ih >= 0) & (ih < H)
        row_ptr = xp + ih * sxh
        for kw in tl.static_range(KA):
            iw = iw0 + kw
            v = tl.load(row_ptr + iw * sxw, mask=row_ok & (iw >= 0) & (iw < W), other=0.0).to(tl.float32)
            acc_a += v * tl.load(wa + kh * KA + kw).to(tl.float32)
            if KB > 0:
                if (kh >= OFF) and (kh < OFF + KB) and (kw >= OFF) and (kw < OFF + KB):
                    acc_b += v * tl.load(wb + (kh - OFF) * KB + (kw - OFF)).to(tl.float32)
    return acc_a, acc_b


@jit
def dw_taps_cl(
    xp, wa, wb, c_ok, oh, ow, H, W, sxh, sxw, STRIDE: tl.constexpr, KA: tl.constexpr, KB: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """`dw_taps` on a channels_last tile: xp, wa, wb are [1, 1, BLOCK_C] pointers (one per channel).

    Every tap loads BLOCK_C contiguous channels per pixel (vectorized), and a per-channel weight vector.
    The rows are a rolled loop: unrolled, sm_90's ptxas hoists every row's loads ahead of the FMAs and
    spills (kernels/RESOURCES.md); so the KBxKB kernel's rows are chosen by a mask on its weights.
    """
    PA: tl.constexpr = KA // 2
    OFF: tl.constexpr = (KA - KB) // 2
    acc_a = tl.zeros((BLOCK_H, BLOCK_W, BLOCK_C), tl.float32)
    acc_b = tl.zeros((BLOCK_H, BLOCK_W, BLOCK_C), tl.float32)
    ih0 = oh * STRIDE - PA
    iw0 = ow * STRIDE - PA
    for kh in tl.range(KA):
        ih = ih0 + kh
        row_ok = (ih >= 0) & (ih < H) & c_ok
        row_ptr = xp + ih * sxh
        for kw in tl.static_range(KA):
            iw = iw0 + kw
            v = tl.load(row_ptr + iw * sxw, mask=row_ok & (iw >= 0) & (iw < W), other=0.0).to(tl.float32)
            acc_a += v * tl.load(wa + kh * KA + kw, mask=c_ok, other=0.0).to(tl.float32)
            if KB > 0:
                if (kw >= OFF) and (kw < OFF + KB):
                    b_ok = c_ok & (kh >= OFF) & (kh < OFF + KB)
                    wt = tl.load(wb + (kh - OFF) * KB + (kw - OFF), mask=b_ok, other=0.0).to(tl.float32)
                    acc_b += v * wt
    return acc_a, acc_b


@jit
def _dwconv_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr, C, H, W, HO, WO, sxn, sxc, sxh, sxw, K: tl.constexpr, STRIDE: tl.constexpr,
    X_ALIGN: tl.constexpr, Y_ALIGN: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """One (n, c) plane tile of a depthwise KxK conv."""
    pid, n, c, xp, oh, ow, W, sxh = common.program_tile(x_ptr, C, W, sxn, sxc, sxh, X_ALIGN, BLOCK_H, BLOCK_W)
    acc, _ = dw_taps(xp, w_ptr + c * K * K, w_ptr, oh, ow, H, W, sxh, sxw, STRIDE, K, 0, BLOCK_H, BLOCK_W)
    acc += tl.load(b_ptr + c).to(tl.float32)
    common.store_tile(y_ptr, pid, acc, oh, ow, HO, WO, Y_ALIGN)


_dwconv_tuned = common.autotuned(_dwconv_kernel)


@jit
def _dwconv_cl_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr, C, H, W, HO, WO, sxn, sxh, sxw, K: tl.constexpr, STRIDE: tl.constexpr,
    X_ALIGN: tl.constexpr, Y_ALIGN: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
    BLOCK_C: tl.constexpr,
):  # fmt: skip
    """One [BLOCK_H, BLOCK_W, BLOCK_C] tile of a depthwise KxK conv, channels_last in and out."""
    Ca = common.aligned(C, X_ALIGN)
    n, _, _, c_ok, c, oh, ow, xp = common.cl_program(x_ptr, C, 1, sxn, Ca, X_ALIGN, BLOCK_H, BLOCK_W, BLOCK_C)
    sxh, sxw = common.aligned(sxh, X_ALIGN), common.aligned(sxw, X_ALIGN)
    acc, _ = dw_taps_cl(
        xp, w_ptr + c * K * K, w_ptr, c_ok, oh, ow, H, W, sxh, sxw, STRIDE, K, 0, BLOCK_H, BLOCK_W, BLOCK_C
    )
    acc += tl.load(b_ptr + c, mask=c_ok, other=0.0).to(tl.float32)
    common.store_tile_cl(y_ptr, n, c, c_ok, acc, oh, ow, HO, WO, C, Y_ALIGN)


_dwconv_cl_tuned = common.autotuned(_dwconv_cl_kernel, channels_last=True)


def out_size(n: int, stride: int) -> int:
    """Output length of a 'same'-padded odd kernel: ceil(n / stride)."""
    return (n + stride - 1) // stride


def plan_dwconv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: int = 1
) -> common.Launch:
    """Check arguments and lay out the launch of `dwconv2d` (shared by the op and the AOT sweep)."""
    common.check_input(x)
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    n, c, h, w = x.shape
    k = common.kernel_size(weight, "weight")
    weight = common.check_param(x, weight, "weight", (c, 1, k, k))
    bias = common.bias_or_zeros(x, common.check_param(x, bias, "bias", (c,)), c)
    out = common.new_output(x, (n, c, out_size(h, stride), out_size(w, stride)))
    args = {"w_ptr": weight, "b_ptr": bias, "C": c}
    constexprs = {"K": k, "STRIDE": stride}
    cl = (_dwconv_cl_kernel, _dwconv_cl_tuned)
    return common.new_launch(_dwconv_kernel, _dwconv_tuned, x, out, args, constexprs, cl)


def dwconv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: int = 1
) -> torch.Tensor:
    """Depthwise KxK conv (K odd 3..13, padding K // 2, stride 1 or 2) in one Triton launch.

    Runs as the custom op `torch.ops.repnext.dwconv2d`; a channels_last input gives a channels_last output.
    """
    common.require_triton()
    return torch.ops.repnext.dwconv2d(x, weight, bias, stride)


def dwconv2d_reference(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: int = 1
) -> torch.Tensor:
    """Plain PyTorch twin of `dwconv2d`: fp32 math, result in the input dtype."""
    return common.depthwise_reference(x, weight, bias, stride).to(x.dtype)
