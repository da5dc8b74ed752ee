"""Depthwise 1xK conv then Kx1 conv, both biased, exact at the border: Triton kernel and reference."""

from __future__ import annotations

import torch

from . import _common as common
from ._common import jit, tl, triton


@jit
def sep_taps(
    xp, wr, br, wc, bc, oh, ow, H, W, sxh, sxw, K: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr
):
    """fp32 tile of colconv(pad0(rowconv(x) + br)) + bc, the exact 1xK -> Kx1 pair.

    The row conv runs on the BLOCK_H + K - 1 rows the column conv needs (rounded up to a power of two);
    rows outside the image are forced to zero *after* the bias, which is the second conv's zero padding.
    The column conv then shifts that tile along its rows with tl.gather.
    """
    P: tl.constexpr = K // 2
    BLOCK_T: tl.constexpr = triton.next_power_of_2(BLOCK_H + K - 1)
    th = tl.program_id(1) * BLOCK_H - P + tl.arange(0, BLOCK_T)[:, None]
    row_ok = (th >= 0) & (th < H)
    row_ptr = xp + th * sxh
    t = tl.zeros((BLOCK_T, BLOCK_W), tl.float32)
    for kw in tl.static_range(K):
        iw = ow + (kw - P)
        v = tl.load(row_ptr + iw * sxw, mask=row_ok & (iw >= 0) & (iw < W), other=0.0).to(tl.float32)
        t += v * tl.load(wr + kw).to(tl.float32)
    t = tl.where(row_ok, t + br, 0.0)
    # Output row r of the tile reads intermediate rows r .. r + K - 1.
    r = (oh - tl.program_id(1) * BLOCK_H) + tl.zeros((BLOCK_H, BLOCK_W), tl.int32)
    acc = tl.zeros((BLOCK_H, BLOCK_W), tl.float32)
    for kh in tl.static_range(K):
        acc += tl.gather(t, r + kh, 0) * tl.load(wc + kh).to(tl.float32)
    return acc + bc


@jit
def sep_taps_cl(
    xp, wr, br, wc, bc, c_ok, oh, ow, H, W, sxh, sxw, K: tl.constexpr, BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """`sep_taps` on a channels_last tile: xp, wr, wc are [1, 1, BLOCK_C] pointers, br, bc per channel."""
    P: tl.constexpr = K // 2
    BLOCK_T: tl.constexpr = triton.next_power_of_2(BLOCK_H + K - 1)
    th = tl.program_id(1) * BLOCK_H - P + tl.arange(0, BLOCK_T)[:, None, None]
    row_ok = (th >= 0) & (th < H)
    row_ptr = xp + th * sxh
    t = tl.zeros((BLOCK_T, BLOCK_W, BLOCK_C), tl.float32)
    # Rolled loops (tl.range): unrolled, sm_90's ptxas hoists every tap's loads of the tall
    # [BLOCK_T, BLOCK_W, BLOCK_C] tile ahead of the FMAs and spills (kernels/RESOURCES.md).
    for kw in tl.range(K):
        iw = ow + (kw - P)
        v = tl.load(row_ptr + iw * sxw, mask=row_ok & c_ok & (iw >= 0) & (iw < W), other=0.0).to(tl.float32)
        t += v * tl.load(wr + kw, mask=c_ok, other=0.0).to(tl.float32)
    t = tl.where(row_ok, t + br, 0.0)
    r = (oh - tl.program_id(1) * BLOCK_H) + tl.zeros((BLOCK_H, BLOCK_W, BLOCK_C), tl.int32)
    acc = tl.zeros((BLOCK_H, BLOCK_W, BLOCK_C), tl.float32)
    for kh in tl.range(K):
        acc += tl.gather(t, r + kh, 0) * tl.load(wc + kh, mask=c_ok, other=0.0).to(tl.float32)
    return acc + bc


@jit
def _separable_kernel(
    x_ptr, wr_ptr, br_ptr, wc_ptr, bc_ptr, y_ptr, C, H, W, HO, WO, sxn, sxc, sxh, sxw, K: tl.constexpr,
    X_ALIGN: tl.constexpr, Y_ALIGN: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """One (n, c) plane tile of the 1xK -> Kx1 pair."""
    pid, n, c, xp, oh, ow, W, sxh = common.program_tile(x_ptr, C, W, sxn, sxc, sxh, X_ALIGN, BLOCK_H, BLOCK_W)
    br = tl.load(br_ptr + c).to(tl.float32)
    bc = tl.load(bc_ptr + c).to(tl.float32)
    acc = sep_taps(xp, wr_ptr + c * K, br, wc_ptr + c * K, bc, oh, ow, H, W, sxh, sxw, K, BLOCK_H, BLOCK_W)
    common.store_tile(y_ptr, pid, acc, oh, ow, HO, WO, Y_ALIGN)


_separable_tuned = common.autotuned(_separable_kernel)


@jit
def _separable_cl_kernel(
    x_ptr, wr_ptr, br_ptr, wc_ptr, bc_ptr, y_ptr, C, H, W, HO, WO, sxn, sxh, sxw, K: tl.constexpr,
    X_ALIGN: tl.constexpr, Y_ALIGN: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
    BLOCK_C: tl.constexpr,
):  # fmt: skip
    """One [BLOCK_H, BLOCK_W, BLOCK_C] tile of the 1xK -> Kx1 pair, channels_last in and out."""
    Ca = common.aligned(C, X_ALIGN)
    n, _, _, c_ok, c, oh, ow, xp = common.cl_program(x_ptr, C, 1, sxn, Ca, X_ALIGN, BLOCK_H, BLOCK_W, BLOCK_C)
    sxh, sxw = common.aligned(sxh, X_ALIGN), common.aligned(sxw, X_ALIGN)
    br = tl.load(br_ptr + c, mask=c_ok, other=0.0).to(tl.float32)
    bc = tl.load(bc_ptr + c, mask=c_ok, other=0.0).to(tl.float32)
    acc = sep_taps_cl(
        xp, wr_ptr + c * K, br, wc_ptr + c * K, bc, c_ok, oh, ow, H, W, sxh, sxw, K, BLOCK_H, BLOCK_W, BLOCK_C
    )
    common.store_tile_cl(y_ptr, n, c, c_ok, acc, oh, ow, HO, WO, C, Y_ALIGN)


_separable_cl_tuned = common.autotuned(_separable_cl_kernel, channels_last=True)


def separable_params(x: torch.Tensor, c: int, *params: torch.Tensor | None) -> tuple[int, list]:
    """Check (w_row, b_row, w_col, b_col) against c channels; return K and the checked tensors."""
    w_row, b_row, w_col, b_col = params
    k = common.kernel_size(w_row, "w_row", square=False)
    if tuple(w_row.shape) != (c, 1, 1, k) or tuple(getattr(w_col, "shape", ())) != (c, 1, k, 1):
        raise ValueError(
            f"w_row must be [{c}, 1, 1, K] and w_col [{c}, 1, K, 1] with the same K; "
            f"got {list(w_row.shape)} and {list(getattr(w_col, 'shape', []))}"
        )
    params = [
        common.check_param(x, w_row, "w_row", (c, 1, 1, k)),
        common.check_param(x, b_row, "b_row", (c,)),
    ]
    params += [
        common.check_param(x, w_col, "w_col", (c, 1, k, 1)),
        common.check_param(x, b_col, "b_col", (c,)),
    ]
    return k, params


def plan_separable(x: torch.Tensor, *params: torch.Tensor | None) -> common.Launch:
    """Check `separable_dwconv2d`'s arguments and lay out its launch."""
    common.check_input(x)
    c = x.shape[1]
    k, (wr, br, wc, bc) = separable_params(x, c, *params)
    args = {
        "wr_ptr": wr,
        "br_ptr": common.bias_or_zeros(x, br, c),
        "wc_ptr": wc,
        "bc_ptr": common.bias_or_zeros(x, bc, c),
    }
    out = common.new_output(x, x.shape)
    cl = (_separable_cl_kernel, _separable_cl_tuned)
    return common.new_launch(_separable_kernel, _separable_tuned, x, out, {**args, "C": c}, {"K": k}, cl)


def separable_dwconv2d(
    x: torch.Tensor,
    w_row: torch.Tensor,
    b_row: torch.Tensor | None,
    w_col: torch.Tensor,
    b_col: torch.Tensor | None,
) -> torch.Tensor:
    """Depthwise 1xK conv then Kx1 conv (pads K // 2, both biased) in one launch, exact at the border.

    Runs as the custom op `torch.ops.repnext.separable_dwconv2d`; channels_last in gives channels_last out.
    """
    common.require_triton()
    return torch.ops.repnext.separable_dwconv2d(x, w_row, b_row, w_col, b_col)


def separable_dwconv2d_reference(x: torch.Tensor, *params: torch.Tensor | None) -> torch.Tensor:
    """Plain PyTorch twin of `separable_dwconv2d` (same arguments): two convs in fp32, input dtype out.

    The intermediate stays in fp32, as in the kernel, so the only rounding is the final one.
    """
    w_row, b_row, w_col, b_col = params
    k = w_row.shape[-1]
    mid = common.depthwise_reference(x, w_row, b_row, padding=(0, k // 2))
    return common.depthwise_reference(mid, w_col, b_col, padding=(k // 2, 0)).to(x.dtype)
