"""Kernel package: API, argument checks, references, import without Triton, AOT compile and CLI."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import repnext_core.kernels as K
from repnext_core.kernels import (
    chunk_dwconv,
    chunk_dwconv_reference,
    copy_dwconv,
    copy_dwconv_reference,
    dwconv2d,
    separable_dwconv2d,
    separable_dwconv2d_reference,
    triton_available,
)
from repnext_core.kernels._common import TILE_CONFIGS, candidate_configs, pow2_divisor

needs_triton = pytest.mark.skipif(not triton_available(), reason="triton is not installed")


def chunk_params(cq: int, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    shapes = [(cq, 1, 3, 3), (cq,), (cq, 1, 7, 7), (cq,), (cq, 1, 1, 11), (cq,), (cq, 1, 11, 1), (cq,)]
    return [torch.randn(s, dtype=dtype) for s in shapes]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | env
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=300)


def test_public_api():
    for name in ("dwconv2d", "separable_dwconv2d", "chunk_dwconv", "copy_dwconv", "triton_available"):
        assert callable(getattr(K, name))
        if name != "triton_available":
            assert callable(getattr(K, f"{name}_reference"))
    assert isinstance(triton_available(), bool)


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


def test_copy_reference_shape():
    x = torch.randn(2, 3, 7, 10)
    ws = [torch.randn(3, 1, 3, 3), torch.randn(3), torch.randn(3, 1, 7, 7), torch.randn(3)]
    assert copy_dwconv_reference(x, *ws).shape == (2, 6, 4, 5)


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
        (lambda: chunk_dwconv(torch.randn(1, 6, 5, 5), *chunk_params(1)), "divisible by 4"),
        (lambda: chunk_dwconv(torch.randn(1, 8, 5, 5), *chunk_params(1)), r"must be \[2, 1, 1, K\]"),
        (lambda: chunk_dwconv(torch.randn(1, 4, 5, 5), *chunk_params(1)[:7], None), "required"),
        (
            lambda: separable_dwconv2d(
                torch.randn(1, 2, 5, 5), *chunk_params(2)[4:6], torch.randn(2, 1, 9, 1), None
            ),
            "same K",
        ),
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
    ],
)
def test_argument_checks(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


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


def test_import_and_clear_error_without_triton():
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch\n"
        "from repnext_core.kernels import chunk_dwconv, copy_dwconv_reference, triton_available\n"
        "assert not triton_available()\n"
        "x = torch.randn(1, 2, 5, 5)\n"
        "w = [torch.randn(2, 1, 3, 3), torch.randn(2), torch.randn(2, 1, 7, 7), torch.randn(2)]\n"
        "assert copy_dwconv_reference(x, *w).shape == (1, 4, 3, 3)\n"
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


@needs_triton
def test_aot_quick_no_spills_and_vector_loads():
    """A few shipped configs compile for sm_80 and sm_90 without a GPU, spill-free, with v2/v4 loads."""
    from repnext_core.kernels.aot import resource_table, spills

    rows = resource_table(("sm_80", "sm_90"), quick=True)
    assert {r["arch"] for r in rows} == {"sm_80", "sm_90"}
    assert {r["op"] for r in rows} == {"chunk_dwconv", "copy_dwconv", "separable_dwconv2d"}
    assert spills(rows) == []
    assert all(0 < r["regs"] <= 255 for r in rows)
    chunk = [r for r in rows if r["op"] == "chunk_dwconv"]
    assert all(r["ld_vec"] > 0 and r["st_vec"] > 0 for r in chunk)


@needs_triton
@pytest.mark.slow
def test_aot_full_sweep_no_spills():
    """Every configuration the autotuner may pick for M0-M5 at 224, every dtype, sm_80 and sm_90."""
    from repnext_core.kernels.aot import resource_table, spills

    rows = resource_table(("sm_80", "sm_90"))
    assert len(rows) > 100
    assert spills(rows) == [], spills(rows)


def test_cli_registers_kernels_subcommand(monkeypatch, capsys):
    from repnext_core.kernels import aot, cli

    parser = argparse.ArgumentParser(prog="repnext")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["kernels", "--arch", "sm_80,sm_90", "--quick", "--json", "-"])
    assert (args.command, args.arch, args.quick, args.json) == ("kernels", "sm_80,sm_90", True, "-")
    row = {k: 0 for k, _ in aot.COLUMNS} | {"op": "x", "arch": "sm_80", "layers": "40@56", "regs": 32}
    monkeypatch.setattr(aot, "resource_table", lambda archs, quick: [row])
    if not triton_available():
        assert args.func(args) == 2
        return
    assert args.func(args) == 0
    assert '"regs": 32' in capsys.readouterr().out
    monkeypatch.setattr(aot, "resource_table", lambda archs, quick: [row | {"spill_stores": 8}])
    assert args.func(parser.parse_args(["kernels", "--quick"])) == 1
    with pytest.raises(ValueError, match="unknown arch"):
        aot.parse_archs("sm_70")
