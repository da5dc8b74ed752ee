"""Shared by the kernel tests: devices, NaN canaries, tolerances, parameter factories.

Every input and weight of the interpreter tests is a view into a larger NaN-filled buffer, so a missing or
wrong mask reads NaN and shows up in the output; `poisoned` launches write into a NaN-filled output, so a
missing store shows up too. Triton runs in its CPU interpreter without CUDA (tests/conftest.py sets
TRITON_INTERPRET=1 before anything imports triton).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from repnext_core.kernels import triton_available
from repnext_core.kernels._common import Launch, TileConfig, is_interpreted, launch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
# One rounding of an fp32 result to the output dtype, plus fp32 summation-order noise.
EPS = {F32: 2e-6, F16: 2**-10, BF16: 2**-7}
SMALL = TileConfig(4, 8, 1)
# channels_last: 8 channels per program, so channel counts that are not multiples of 8 exercise the mask.
SMALL_CL = TileConfig(2, 4, 1, 8)

needs_triton = pytest.mark.skipif(not triton_available(), reason="triton is not installed")


def kernels_runnable() -> bool:
    """Triton installed, and either CUDA or the interpreter (TRITON_INTERPRET=1) to run it on."""
    if not triton_available():
        return False
    from repnext_core.kernels.dwconv import _dwconv_kernel

    return DEVICE == "cuda" or is_interpreted(_dwconv_kernel)


needs_kernels = pytest.mark.skipif(
    not kernels_runnable(), reason="needs Triton, on CUDA or in its interpreter (TRITON_INTERPRET=1)"
)


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


def rand_cl(n: int, c: int, h: int, w: int, dtype: torch.dtype, strided: bool = False) -> torch.Tensor:
    """An NCHW-shaped input with NHWC strides (channels innermost), inside a NaN buffer."""
    x = rand(n, h, w, c, dtype=dtype, strided=strided).permute(0, 3, 1, 2)
    assert x.stride(1) == 1
    return x


def poisoned(plan: Launch, tile: TileConfig | None = None) -> torch.Tensor:
    """Launch `plan` into its output pre-filled with NaN: an element no program writes stays NaN."""
    plan.out.fill_(float("nan"))
    return launch(plan, tile)


def check(out: torch.Tensor, ref: torch.Tensor) -> None:
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert torch.isfinite(out).all(), "NaN/inf in the output: a load read outside its mask"
    scale = ref.float().abs().max().item() + 1.0
    err = (out.float() - ref.float()).abs().max().item()
    assert err <= 2 * EPS[ref.dtype] * scale, f"max error {err} > {2 * EPS[ref.dtype] * scale}"


def check_channels_last(out: torch.Tensor, ref: torch.Tensor) -> None:
    """The channels_last kernels write a channels_last output, with the reference's values."""
    assert out.is_contiguous(memory_format=torch.channels_last), out.stride()
    check(out, ref)


def chunk_params(cq: int, dtype: torch.dtype) -> list[torch.Tensor]:
    """chunk_dwconv's eight weights and biases for cq channels per chunk, each in a NaN canary."""
    shapes = [(cq, 1, 3, 3), (cq,), (cq, 1, 7, 7), (cq,), (cq, 1, 1, 11), (cq,), (cq, 1, 11, 1), (cq,)]
    return [rand(*s, dtype=dtype) for s in shapes]


def plain_chunk_params(cq: int, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """The same on CPU without canaries (argument-check tests)."""
    shapes = [(cq, 1, 3, 3), (cq,), (cq, 1, 7, 7), (cq,), (cq, 1, 1, 11), (cq,), (cq, 1, 11, 1), (cq,)]
    return [torch.randn(s, dtype=dtype) for s in shapes]


def copy_params(c: int, dtype: torch.dtype) -> list[torch.Tensor]:
    return [
        rand(c, 1, 3, 3, dtype=dtype),
        rand(c, dtype=dtype),
        rand(c, 1, 7, 7, dtype=dtype),
        rand(c, dtype=dtype),
    ]


def separable_params(c: int, k: int, dtype: torch.dtype) -> list[torch.Tensor]:
    return [
        rand(c, 1, 1, k, dtype=dtype),
        rand(c, dtype=dtype),
        rand(c, 1, k, 1, dtype=dtype),
        rand(c, dtype=dtype),
    ]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | env
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=300)
