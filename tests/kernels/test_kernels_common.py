"""Kernel package plumbing: public API, tile configs, layout choice, import without Triton, CPU refusal."""

from __future__ import annotations

import torch
from kernel_helpers import DEVICE, F32, chunk_params, needs_kernels, needs_triton, run_python

import repnext_core.kernels as K
from repnext_core.kernels import chunk_dwconv, triton_available
from repnext_core.kernels._common import (
    CL_TILE_CONFIGS,
    TILE_CONFIGS,
    candidate_configs,
    cl_candidate_configs,
    is_channels_last,
    new_output,
    pow2_divisor,
)


def test_public_api():
    for name in ("dwconv2d", "separable_dwconv2d", "chunk_dwconv", "copy_dwconv", "triton_available"):
        assert callable(getattr(K, name))
        if name != "triton_available":
            assert callable(getattr(K, f"{name}_reference"))
    assert isinstance(triton_available(), bool)


def test_candidate_configs_cover_every_stage():
    for size in (112, 56, 28, 14, 7, 4, 1, 13):
        picked = candidate_configs(size, size)
        assert picked and all(c in TILE_CONFIGS for c in picked)
    assert {c.block_w for c in candidate_configs(56, 56)} == {64}
    assert {c.block_w for c in candidate_configs(7, 7)} == {8}
    assert (
        pow2_divisor(56) == 8
        and pow2_divisor(3136, 56) == 8
        and pow2_divisor(7) == 1
        and pow2_divisor(64) == 16
    )


def test_channels_last_configs_cover_every_stage():
    """Every stage shape gets channels_last candidates, at most 4 elements per thread, none too wide."""
    for size in (56, 28, 14, 7, 1):
        for channels in (1, 10, 20, 80, 160, 640):
            picked = cl_candidate_configs(size, size, channels)
            assert picked and all(c in CL_TILE_CONFIGS for c in picked)
    assert all(c.block_h * c.block_w * c.block_c == 4 * 32 * c.num_warps for c in CL_TILE_CONFIGS)
    assert max(c.block_c for c in cl_candidate_configs(56, 56, 10)) == 16
    assert max(c.block_c for c in cl_candidate_configs(7, 7, 80)) == 64
    (tiny,) = cl_candidate_configs(1, 1, 10)  # nothing fits a 1x1 plane: the smallest tile
    assert tiny.block_h * tiny.block_w * tiny.block_c == 256
    assert CL_TILE_CONFIGS[0].name == "4x8x16/w4" and TILE_CONFIGS[0].name == "4x64/w2"
    assert "BLOCK_C" in CL_TILE_CONFIGS[0].meta and "BLOCK_C" not in TILE_CONFIGS[0].meta


def test_layout_choice_and_output_format():
    x = torch.randn(2, 8, 5, 6)
    cl = x.to(memory_format=torch.channels_last)
    assert not is_channels_last(x) and is_channels_last(cl)
    assert is_channels_last(torch.randn(2, 5, 6, 8).permute(0, 3, 1, 2)[:, :, 1:, 2:])  # an NHWC view
    assert not is_channels_last(torch.randn(2, 1, 5, 6).to(memory_format=torch.channels_last))  # C = 1
    assert not is_channels_last(torch.randn(2, 8, 1, 1))  # both layouts at once: the plane kernels
    assert new_output(x, (2, 16, 3, 3)).is_contiguous()
    out = new_output(cl.half(), (2, 16, 3, 3))
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert out.dtype == torch.float16 and out.shape == (2, 16, 3, 3)


def test_import_and_clear_error_without_triton():
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch\n"
        "from repnext_core.kernels import chunk_dwconv, copy_dwconv_reference, triton_available\n"
        "assert not triton_available()\n"
        "x = torch.randn(1, 2, 5, 5)\n"
        "w = [torch.randn(2, 1, 3, 3), torch.randn(2), torch.randn(2, 1, 7, 7), torch.randn(2)]\n"
        "assert copy_dwconv_reference(x, *w).shape == (1, 4, 3, 3)\n"
        "assert hasattr(torch.ops.repnext, 'chunk_dwconv')\n"
        "try:\n"
        "    chunk_dwconv(x, *w, *w)\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert "pip install repnext[triton]" in done.stdout


@needs_triton
def test_cpu_tensor_without_interpreter_is_refused():
    code = (
        "import torch\n"
        "from repnext_core.kernels import dwconv2d\n"
        "try:\n"
        "    dwconv2d(torch.randn(1, 2, 5, 5), torch.randn(2, 1, 3, 3))\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert "CUDA tensors" in done.stdout and "TRITON_INTERPRET=1" in done.stdout


@needs_kernels
def test_empty_batch_launches_nothing():
    x = torch.empty(0, 4, 5, 5, device=DEVICE)
    assert chunk_dwconv(x, *chunk_params(1, F32)).shape == (0, 4, 5, 5)
    cl = x.to(memory_format=torch.channels_last)
    assert chunk_dwconv(cl, *chunk_params(1, F32)).shape == (0, 4, 5, 5)
