"""copy_dwconv (the downsample token mixer): reference, argument checks, plane and channels_last kernels."""

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
    copy_params,
    needs_kernels,
    needs_triton,
    poisoned,
    rand,
    rand_cl,
)

from repnext_core.kernels import copy_dwconv, copy_dwconv_reference
from repnext_core.kernels._common import launch
from repnext_core.kernels.copy_conv import plan_copy


def test_copy_reference_shape():
    x = torch.randn(2, 3, 7, 10)
    ws = [torch.randn(3, 1, 3, 3), torch.randn(3), torch.randn(3, 1, 7, 7), torch.randn(3)]
    assert copy_dwconv_reference(x, *ws).shape == (2, 6, 4, 5)


@needs_triton
@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda: copy_dwconv(
                torch.randn(1, 2, 5, 5),
                torch.randn(2, 1, 7, 7),
                torch.randn(2),
                torch.randn(2, 1, 3, 3),
                torch.randn(2),
            ),
            "must not be larger",
        ),
        (
            lambda: copy_dwconv(
                torch.randn(1, 2, 5, 5),
                torch.randn(2, 1, 3, 3),
                None,
                torch.randn(2, 1, 7, 7),
                torch.randn(2),
            ),
            "required",
        ),
    ],
)
def test_argument_checks(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


COPY_CASES = [
    ((2, 3, 13, 9), F32, True, None),
    ((1, 2, 1, 1), F32, False, None),
    ((1, 2, 13, 9), F32, True, SMALL),
    ((1, 5, 7, 7), F16, False, None),
    ((1, 3, 5, 12), BF16, True, None),
]


@needs_kernels
@pytest.mark.parametrize("shape,dtype,strided,tile", COPY_CASES)
def test_copy_dwconv(shape, dtype, strided, tile):
    c = shape[1]
    x = rand(*shape, dtype=dtype, strided=strided)
    params = copy_params(c, dtype)
    out = copy_dwconv(x, *params) if tile is None else launch(plan_copy(x, *params), tile)
    assert out.shape == (shape[0], 2 * c, (shape[2] + 1) // 2, (shape[3] + 1) // 2)
    check(out, copy_dwconv_reference(x, *params))


CL_CASES = [
    ((2, 12, 13, 9), F32, True, SMALL_CL),
    ((1, 2, 1, 1), F32, False, None),
    ((1, 20, 13, 9), F32, False, None),
    ((1, 10, 7, 7), F16, True, SMALL_CL),
    ((1, 3, 5, 12), BF16, True, None),
]


@needs_kernels
@pytest.mark.parametrize("shape,dtype,strided,tile", CL_CASES)
def test_copy_dwconv_nhwc_kernel(shape, dtype, strided, tile):
    n, c, h, w = shape
    x = rand_cl(n, c, h, w, dtype=dtype, strided=strided)
    params = copy_params(c, dtype)
    plan = plan_copy(x, *params)
    assert plan.channels_last
    out = poisoned(plan, tile)
    assert out.shape == (n, 2 * c, (h + 1) // 2, (w + 1) // 2)
    check_channels_last(out, copy_dwconv_reference(x, *params))
