"""chunk_dwconv (the block token mixer): reference, argument checks, plane and channels_last kernels."""

from __future__ import annotations

import pytest
import torch
from kernel_helpers import (
    BF16,
    DEVICE,
    F16,
    F32,
    SMALL,
    SMALL_CL,
    check,
    check_channels_last,
    chunk_params,
    needs_kernels,
    needs_triton,
    plain_chunk_params,
    poisoned,
    rand,
    rand_cl,
)
from torch import nn

from repnext_core.kernels import chunk_dwconv, chunk_dwconv_reference
from repnext_core.kernels._common import launch
from repnext_core.kernels.chunk_conv import plan_chunk


def test_chunk_reference_is_the_training_branches():
    """The reference equals the nn.Conv2d multi-branch mixer, 1x11 -> 11x1 as two biased convs."""
    torch.manual_seed(0)
    c = 5
    x = torch.randn(2, 4 * c, 9, 13)
    convs = [
        nn.Conv2d(c, c, 3, padding=1, groups=c),
        nn.Conv2d(c, c, 7, padding=3, groups=c),
        nn.Conv2d(c, c, (1, 11), padding=(0, 5), groups=c),
        nn.Conv2d(c, c, (11, 1), padding=(5, 0), groups=c),
    ]
    i, s, m, l = torch.chunk(x, 4, dim=1)
    with torch.no_grad():
        expect = torch.cat((i, convs[0](s), convs[1](m), convs[3](convs[2](l))), dim=1)
        params = [t for conv in convs for t in (conv.weight, conv.bias)]
        torch.testing.assert_close(chunk_dwconv_reference(x, *params), expect, rtol=1e-5, atol=1e-5)


@needs_triton
@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: chunk_dwconv(torch.randn(1, 6, 5, 5), *plain_chunk_params(1)), "divisible by 4"),
        (lambda: chunk_dwconv(torch.randn(1, 8, 5, 5), *plain_chunk_params(1)), r"must be \[2, 1, 1, K\]"),
        (lambda: chunk_dwconv(torch.randn(1, 4, 5, 5), *plain_chunk_params(1)[:7], None), "required"),
        (
            lambda: chunk_dwconv(
                torch.randn(1, 8, 5, 5).to(memory_format=torch.channels_last), *plain_chunk_params(1)
            ),
            r"must be \[2, 1, 1, K\]",
        ),
    ],
)
def test_argument_checks(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


CHUNK_CASES = [
    # (N, C, H, W), dtype, strided input, forced tile
    ((2, 8, 13, 9), F32, True, None),
    ((1, 4, 1, 1), F32, False, None),
    ((1, 12, 5, 12), F32, True, None),
    ((1, 4, 13, 9), F32, True, SMALL),
    ((2, 8, 13, 9), F16, True, None),
    ((1, 12, 7, 7), F16, False, None),
    ((1, 8, 13, 9), BF16, True, None),
    ((1, 4, 1, 1), BF16, False, None),
]


@needs_kernels
@pytest.mark.parametrize("shape,dtype,strided,tile", CHUNK_CASES)
def test_chunk_dwconv(shape, dtype, strided, tile):
    x = rand(*shape, dtype=dtype, strided=strided)
    params = chunk_params(shape[1] // 4, dtype)
    out = chunk_dwconv(x, *params) if tile is None else launch(plan_chunk(x, *params), tile)
    check(out, chunk_dwconv_reference(x, *params))


@needs_kernels
def test_chunk_dwconv_channels_last():
    """A channels_last input takes the NHWC kernel and gives a channels_last output (was: contiguous)."""
    x = torch.randn(1, 8, 6, 5, device=DEVICE).to(memory_format=torch.channels_last)
    params = chunk_params(2, F32)
    out = chunk_dwconv(x, *params)
    assert out.is_contiguous(memory_format=torch.channels_last)
    check(out, chunk_dwconv_reference(x, *params))


CL_CASES = [
    # (N, C, H, W), dtype, strided NHWC view, forced tile; C // 4 = 5 and 10 straddle 8-channel blocks
    ((2, 20, 13, 9), F32, True, SMALL_CL),
    ((1, 40, 6, 7), F32, False, SMALL_CL),
    ((1, 8, 13, 9), F32, True, None),
    ((1, 4, 1, 1), F32, False, None),
    ((2, 20, 9, 13), F16, True, SMALL_CL),
    ((1, 64, 7, 7), F16, False, None),
    ((1, 20, 5, 12), BF16, True, SMALL_CL),
]


@needs_kernels
@pytest.mark.parametrize("shape,dtype,strided,tile", CL_CASES)
def test_chunk_dwconv_nhwc_kernel(shape, dtype, strided, tile):
    n, c, h, w = shape
    x = rand_cl(n, c, h, w, dtype=dtype, strided=strided)
    params = chunk_params(c // 4, dtype)
    plan = plan_chunk(x, *params)
    assert plan.channels_last and plan.groups == 4
    check_channels_last(poisoned(plan, tile), chunk_dwconv_reference(x, *params))
    if tile is None:
        check_channels_last(chunk_dwconv(x, *params), chunk_dwconv_reference(x, *params))
