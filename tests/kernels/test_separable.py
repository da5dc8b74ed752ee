"""separable_dwconv2d (1xK -> Kx1, both biased): border semantics, checks, plane and channels_last kernels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from kernel_helpers import (
    BF16,
    F16,
    F32,
    SMALL,
    SMALL_CL,
    check,
    check_channels_last,
    needs_kernels,
    needs_triton,
    plain_chunk_params,
    poisoned,
    rand,
    rand_cl,
    separable_params,
)

from repnext_core.kernels import separable_dwconv2d, separable_dwconv2d_reference
from repnext_core.kernels._common import launch
from repnext_core.kernels.separable import plan_separable


def test_separable_pair_is_not_one_kernel_at_the_border():
    """Folding 1x11 -> 11x1 into one 11x11 kernel is exact inside, wrong on the border rows."""
    torch.manual_seed(0)
    x, wr, br, wc, bc = (
        torch.randn(1, 2, 16, 16),
        torch.randn(2, 1, 1, 11),
        torch.randn(2),
        torch.randn(2, 1, 11, 1),
        torch.randn(2),
    )
    pair = separable_dwconv2d_reference(x, wr, br, wc, bc)
    folded = F.conv2d(x, wc * wr, bc + br * wc.sum((1, 2, 3)), padding=5, groups=2)
    torch.testing.assert_close(pair[..., 5:-5, :], folded[..., 5:-5, :], rtol=1e-4, atol=1e-4)
    assert (pair[..., :5, :] - folded[..., :5, :]).abs().max() > 1e-2


@needs_triton
@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda: separable_dwconv2d(
                torch.randn(1, 2, 5, 5), *plain_chunk_params(2)[4:6], torch.randn(2, 1, 9, 1), None
            ),
            "same K",
        ),
        (
            lambda: separable_dwconv2d(
                torch.randn(1, 2, 5, 5), torch.randn(2, 1, 3, 3), None, torch.randn(2, 1, 3, 1), None
            ),
            "kernel shape",
        ),
    ],
)
def test_argument_checks(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


SEP_CASES = [
    ((2, 3, 13, 9), 11, F32, True, None),
    ((1, 2, 13, 9), 11, F32, True, SMALL),
    ((1, 3, 7, 7), 3, F16, False, None),
    ((1, 2, 5, 12), 13, BF16, True, None),
]


@needs_kernels
@pytest.mark.parametrize("shape,k,dtype,strided,tile", SEP_CASES)
def test_separable_dwconv2d(shape, k, dtype, strided, tile):
    c = shape[1]
    x = rand(*shape, dtype=dtype, strided=strided)
    params = separable_params(c, k, dtype)
    out = separable_dwconv2d(x, *params) if tile is None else launch(plan_separable(x, *params), tile)
    check(out, separable_dwconv2d_reference(x, *params))


CL_CASES = [
    # the 11x1 halo across tile rows (SMALL_CL: 2 rows) and channel masks (10 channels, blocks of 8)
    ((2, 10, 13, 9), 11, F32, True, SMALL_CL),
    ((1, 3, 13, 9), 11, F32, False, None),
    ((1, 12, 7, 7), 3, F16, True, SMALL_CL),
    ((1, 5, 5, 12), 13, BF16, True, None),
]


@needs_kernels
@pytest.mark.parametrize("shape,k,dtype,strided,tile", CL_CASES)
def test_separable_dwconv2d_nhwc_kernel(shape, k, dtype, strided, tile):
    n, c, h, w = shape
    x = rand_cl(n, c, h, w, dtype=dtype, strided=strided)
    params = separable_params(c, k, dtype)
    plan = plan_separable(x, *params)
    assert plan.channels_last
    check_channels_last(poisoned(plan, tile), separable_dwconv2d_reference(x, *params))
