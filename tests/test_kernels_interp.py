"""The Triton kernels against their PyTorch references: on CUDA when present, else in Triton's interpreter.

Every input and weight is a view into a larger NaN-filled buffer, so a missing or wrong mask reads NaN
and shows up in the output. The interpreter is slow: shapes are small, and most cases use one tile per
plane; a few force small tiles so that tile edges (and the 11x1 conv's halo across tiles) are exercised.
"""

from __future__ import annotations

import pytest
import torch

from repnext_core.kernels import (
    chunk_dwconv,
    chunk_dwconv_reference,
    copy_dwconv,
    copy_dwconv_reference,
    dwconv2d,
    dwconv2d_reference,
    separable_dwconv2d,
    separable_dwconv2d_reference,
    triton_available,
)

if not triton_available():
    pytest.skip("triton is not installed", allow_module_level=True)

from repnext_core.kernels._common import TileConfig, is_interpreted, launch  # noqa: E402
from repnext_core.kernels.chunk_conv import plan_chunk  # noqa: E402
from repnext_core.kernels.copy_conv import plan_copy  # noqa: E402
from repnext_core.kernels.dwconv import _dwconv_kernel, plan_dwconv  # noqa: E402
from repnext_core.kernels.separable import plan_separable  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and not is_interpreted(_dwconv_kernel):
    pytest.skip(
        "no CUDA and Triton was imported without TRITON_INTERPRET=1 (tests/conftest.py sets it)",
        allow_module_level=True,
    )

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
# One rounding of an fp32 result to the output dtype, plus fp32 summation-order noise.
EPS = {F32: 2e-6, F16: 2**-10, BF16: 2**-7}
SMALL = TileConfig(4, 8, 1)


def canary(t: torch.Tensor, strided: bool = False) -> torch.Tensor:
    """Copy of `t` living inside a NaN buffer: contiguous with NaN before/after, or a padded 4-D view."""
    if strided:
        big = torch.full([s + 3 for s in t.shape], float("nan"), dtype=t.dtype, device=t.device)
        view = big[tuple(slice(1, 1 + s) for s in t.shape)]
    else:
        flat = torch.full((t.numel() + 64,), float("nan"), dtype=t.dtype, device=t.device)
        view = flat[32 : 32 + t.numel()].view(t.shape)
    view.copy_(t)
    return view


def rand(*shape: int, dtype: torch.dtype, strided: bool = False) -> torch.Tensor:
    return canary(torch.randn(*shape, device=DEVICE).to(dtype), strided)


def check(out: torch.Tensor, ref: torch.Tensor) -> None:
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert torch.isfinite(out).all(), "NaN/inf in the output: a load read outside its mask"
    scale = ref.float().abs().max().item() + 1.0
    err = (out.float() - ref.float()).abs().max().item()
    assert err <= 2 * EPS[ref.dtype] * scale, f"max error {err} > {2 * EPS[ref.dtype] * scale}"


def chunk_params(cq: int, dtype: torch.dtype) -> list[torch.Tensor]:
    shapes = [(cq, 1, 3, 3), (cq,), (cq, 1, 7, 7), (cq,), (cq, 1, 1, 11), (cq,), (cq, 1, 11, 1), (cq,)]
    return [rand(*s, dtype=dtype) for s in shapes]


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


@pytest.mark.parametrize("shape,dtype,strided,tile", CHUNK_CASES)
def test_chunk_dwconv(shape, dtype, strided, tile):
    x = rand(*shape, dtype=dtype, strided=strided)
    params = chunk_params(shape[1] // 4, dtype)
    out = chunk_dwconv(x, *params) if tile is None else launch(plan_chunk(x, *params), tile)
    check(out, chunk_dwconv_reference(x, *params))


def test_chunk_dwconv_channels_last():
    x = torch.randn(1, 8, 6, 5, device=DEVICE).to(memory_format=torch.channels_last)
    params = chunk_params(2, F32)
    out = chunk_dwconv(x, *params)
    assert out.is_contiguous()
    check(out, chunk_dwconv_reference(x, *params))


COPY_CASES = [
    ((2, 3, 13, 9), F32, True, None),
    ((1, 2, 1, 1), F32, False, None),
    ((1, 2, 13, 9), F32, True, SMALL),
    ((1, 5, 7, 7), F16, False, None),
    ((1, 3, 5, 12), BF16, True, None),
]


@pytest.mark.parametrize("shape,dtype,strided,tile", COPY_CASES)
def test_copy_dwconv(shape, dtype, strided, tile):
    c = shape[1]
    x = rand(*shape, dtype=dtype, strided=strided)
    params = [
        rand(c, 1, 3, 3, dtype=dtype),
        rand(c, dtype=dtype),
        rand(c, 1, 7, 7, dtype=dtype),
        rand(c, dtype=dtype),
    ]
    out = copy_dwconv(x, *params) if tile is None else launch(plan_copy(x, *params), tile)
    assert out.shape == (shape[0], 2 * c, (shape[2] + 1) // 2, (shape[3] + 1) // 2)
    check(out, copy_dwconv_reference(x, *params))


DW_CASES = [
    # shape, K, stride, dtype, bias, strided
    ((2, 3, 13, 9), 3, 1, F32, True, True),
    ((1, 3, 13, 9), 7, 2, F32, True, True),
    ((1, 2, 5, 12), 5, 1, F16, False, False),
    ((1, 3, 7, 7), 3, 2, F16, True, True),
    ((1, 2, 5, 12), 13, 1, BF16, True, True),
    ((1, 1, 1, 1), 7, 2, BF16, True, False),
]


@pytest.mark.parametrize("shape,k,stride,dtype,bias,strided", DW_CASES)
def test_dwconv2d(shape, k, stride, dtype, bias, strided):
    c = shape[1]
    x = rand(*shape, dtype=dtype, strided=strided)
    w = rand(c, 1, k, k, dtype=dtype)
    b = rand(c, dtype=dtype) if bias else None
    check(dwconv2d(x, w, b, stride=stride), dwconv2d_reference(x, w, b, stride=stride))


def test_dwconv2d_small_tiles():
    x = rand(1, 2, 13, 9, dtype=F32, strided=True)
    w, b = rand(2, 1, 5, 5, dtype=F32), rand(2, dtype=F32)
    check(launch(plan_dwconv(x, w, b, 1), SMALL), dwconv2d_reference(x, w, b))


SEP_CASES = [
    ((2, 3, 13, 9), 11, F32, True, None),
    ((1, 2, 13, 9), 11, F32, True, SMALL),
    ((1, 3, 7, 7), 3, F16, False, None),
    ((1, 2, 5, 12), 13, BF16, True, None),
]


@pytest.mark.parametrize("shape,k,dtype,strided,tile", SEP_CASES)
def test_separable_dwconv2d(shape, k, dtype, strided, tile):
    c = shape[1]
    x = rand(*shape, dtype=dtype, strided=strided)
    params = [
        rand(c, 1, 1, k, dtype=dtype),
        rand(c, dtype=dtype),
        rand(c, 1, k, 1, dtype=dtype),
        rand(c, dtype=dtype),
    ]
    out = separable_dwconv2d(x, *params) if tile is None else launch(plan_separable(x, *params), tile)
    check(out, separable_dwconv2d_reference(x, *params))


def test_empty_batch_launches_nothing():
    x = torch.empty(0, 4, 5, 5, device=DEVICE)
    assert chunk_dwconv(x, *chunk_params(1, F32)).shape == (0, 4, 5, 5)
