"""dwconv2d (one depthwise KxK conv): argument checks, plane and channels_last kernels."""

from __future__ import annotations

import pytest
import torch
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
    poisoned,
    rand,
    rand_cl,
)

from repnext_core.kernels import dwconv2d, dwconv2d_reference
from repnext_core.kernels._common import launch
from repnext_core.kernels.dwconv import plan_dwconv


@needs_triton
@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: dwconv2d(torch.randn(3, 5, 5), torch.randn(3, 1, 3, 3)), "4-D"),
        (lambda: dwconv2d(torch.randn(1, 3, 5, 5).double(), torch.randn(3, 1, 3, 3).double()), "dtype"),
        (lambda: dwconv2d(torch.randn(1, 3, 5, 5), torch.randn(3, 1, 3, 3).half()), "dtype"),
        (lambda: dwconv2d(torch.randn(1, 3, 5, 5), torch.randn(2, 1, 3, 3)), "shape"),
        (lambda: dwconv2d(torch.randn(1, 3, 5, 5), torch.randn(3, 1, 4, 4)), "odd sizes 3..13"),
        (lambda: dwconv2d(torch.randn(1, 3, 5, 5), torch.randn(3, 1, 15, 15)), "odd sizes 3..13"),
        (lambda: dwconv2d(torch.randn(1, 3, 5, 5), torch.randn(3, 1, 3, 5)), "kernel shape"),
        (lambda: dwconv2d(torch.randn(1, 3, 5, 5), torch.randn(3, 1, 3, 3), stride=3), "stride"),
        (lambda: dwconv2d(torch.randn(1, 3, 5, 5), torch.randn(3, 1, 3, 3), torch.randn(4)), "bias"),
        (lambda: dwconv2d(torch.randn(1, 3, 5, 5), torch.randn(3, 1, 3, 3, device="meta")), "device|on meta"),
        (lambda: dwconv2d(torch.randn(1, 3, 0, 5), torch.randn(3, 1, 3, 3)), "H, W >= 1"),
        (
            lambda: dwconv2d(
                torch.empty(1, 1, 2**16, 2**16, device="meta"), torch.empty(1, 1, 3, 3, device="meta")
            ),
            r"2\*\*31",
        ),
        (
            lambda: dwconv2d(
                torch.randn(1, 3, 5, 5).to(memory_format=torch.channels_last).double(),
                torch.randn(3, 1, 3, 3).double(),
            ),
            "dtype",
        ),
    ],
)
def test_argument_checks(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


DW_CASES = [
    # shape, K, stride, dtype, bias, strided
    ((2, 3, 13, 9), 3, 1, F32, True, True),
    ((1, 3, 13, 9), 7, 2, F32, True, True),
    ((1, 2, 5, 12), 5, 1, F16, False, False),
    ((1, 3, 7, 7), 3, 2, F16, True, True),
    ((1, 2, 5, 12), 13, 1, BF16, True, True),
    ((1, 1, 1, 1), 7, 2, BF16, True, False),
]


@needs_kernels
@pytest.mark.parametrize("shape,k,stride,dtype,bias,strided", DW_CASES)
def test_dwconv2d(shape, k, stride, dtype, bias, strided):
    c = shape[1]
    x = rand(*shape, dtype=dtype, strided=strided)
    w = rand(c, 1, k, k, dtype=dtype)
    b = rand(c, dtype=dtype) if bias else None
    check(dwconv2d(x, w, b, stride=stride), dwconv2d_reference(x, w, b, stride=stride))


@needs_kernels
def test_dwconv2d_small_tiles():
    x = rand(1, 2, 13, 9, dtype=F32, strided=True)
    w, b = rand(2, 1, 5, 5, dtype=F32), rand(2, dtype=F32)
    check(launch(plan_dwconv(x, w, b, 1), SMALL), dwconv2d_reference(x, w, b))


CL_CASES = [
    # shape, K, stride, dtype, bias, strided, forced tile
    ((2, 10, 13, 9), 3, 1, F32, True, True, SMALL_CL),
    ((1, 12, 13, 9), 7, 2, F32, True, False, SMALL_CL),
    ((1, 9, 5, 12), 5, 1, F16, False, True, None),
    ((1, 16, 7, 7), 3, 2, F16, True, False, None),
    ((1, 6, 5, 12), 13, 1, BF16, True, True, SMALL_CL),
]


@needs_kernels
@pytest.mark.parametrize("shape,k,stride,dtype,bias,strided,tile", CL_CASES)
def test_dwconv2d_nhwc_kernel(shape, k, stride, dtype, bias, strided, tile):
    n, c, h, w = shape
    x = rand_cl(n, c, h, w, dtype=dtype, strided=strided)
    wt = rand(c, 1, k, k, dtype=dtype)
    b = rand(c, dtype=dtype) if bias else None
    plan = plan_dwconv(x, wt, b, stride)
    assert plan.channels_last
    check_channels_last(poisoned(plan, tile), dwconv2d_reference(x, wt, b, stride=stride))
