"""Token-mixer latency on RepNeXt M0-M5 layer shapes (pytest-benchmark).

    pytest bench/test_kernels.py --benchmark-json kernels.json && python bench/kernels_report.py kernels.json

CUDA (skipped without a GPU): our one-launch Triton kernels against the PyTorch multi-branch path
(chunk -> 4 convs -> cat) and against one PyTorch depthwise conv of the same reach, fp16 and fp32, batch 1
and 64, every layer shape of M0-M5 at 224x224.
CPU (always): the PyTorch forms of the same ops, fp32 - multi-branch with cat, one single-branch kernel
(11x11 for a block, depth-multiplier-2 7x7 for a downsample) and the fused-module reference. To stay within
about a minute on a small CPU it runs M0 and M5 only (every stage shape of both), at batch 1 and 64, on one
thread (REPNEXT_BENCH_CPU_VARIANTS=m0,m1,m2,m3,m5, REPNEXT_BENCH_CPU_BATCH and REPNEXT_BENCH_CPU_THREADS widen it).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from repnext_core.kernels import (
    chunk_dwconv,
    chunk_dwconv_reference,
    copy_dwconv,
    copy_dwconv_reference,
    triton_available,
)
from repnext_core.kernels.aot import VARIANT_DIMS
from repnext_core.kernels.gpu_bench import layer_shapes


def make_inputs(op: str, n: int, c: int, s: int, dtype: torch.dtype, device: str) -> tuple:
    """Seeded input and weights for one layer."""
    g = torch.Generator().manual_seed(0)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    x = r(n, c, s, s)
    if op == "chunk":
        q = c // 4
        return x, [r(q, 1, 3, 3), r(q), r(q, 1, 7, 7), r(q), r(q, 1, 1, 11), r(q), r(q, 1, 11, 1), r(q)]
    return x, [r(c, 1, 3, 3), r(c), r(c, 1, 7, 7), r(c)]


def multi_branch(op: str) -> Callable:
    """The unfused PyTorch path: chunk/copy, one conv per branch, torch.cat."""
    if op == "copy":
        return lambda x, w: torch.cat(
            (
                F.conv2d(x, w[0], w[1], 2, 1, groups=x.shape[1]),
                F.conv2d(x, w[2], w[3], 2, 3, groups=x.shape[1]),
            ),
            1,
        )

    def chunk(x: torch.Tensor, w: list) -> torch.Tensor:
        i, s, m, l = torch.chunk(x, 4, dim=1)
        q = s.shape[1]
        l = F.conv2d(F.conv2d(l, w[4], w[5], padding=(0, 5), groups=q), w[6], w[7], padding=(5, 0), groups=q)
        return torch.cat(
            (
                i,
                F.conv2d(s, w[0], w[1], padding=1, groups=q),
                F.conv2d(m, w[2], w[3], padding=3, groups=q),
                l,
            ),
            1,
        )

    return chunk


def single_conv(op: str, x: torch.Tensor, w: list) -> Callable:
    """One PyTorch depthwise conv with the op's reach: 11x11 over all C (block), 2 x 7x7 per channel (downsample)."""
    c = x.shape[1]
    if op == "copy":
        k, b = torch.randn(2 * c, 1, 7, 7).to(x), torch.randn(2 * c).to(x)
        return lambda x, w: F.conv2d(x, k, b, 2, 3, groups=c)
    k, b = torch.randn(c, 1, 11, 11).to(x), torch.randn(c).to(x)
    return lambda x, w: F.conv2d(x, k, b, 1, 5, groups=c)


def run(
    benchmark, op: str, form: str, fn: Callable, x: torch.Tensor, w: list, n: int, c: int, s: int
) -> None:
    """Time fn(x, w) and tag the result for bench/kernels_report.py."""
    device = x.device.type
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    dt = str(x.dtype).removeprefix("torch.")

    # GPU calls take microseconds: time REPEAT back-to-back launches and one synchronize per round, so the
    # sync is amortized; kernels_report.py divides by `repeat`.
    repeat = 10 if device == "cuda" else 1

    def call() -> None:
        for _ in range(repeat):
            fn(x, w)
        sync()

    benchmark.group = f"{op} {device} {dt} N={n} C={c} {s}x{s}"
    info = {"op": op, "form": form, "device": device, "dtype": dt, "batch": n, "channels": c, "size": s}
    benchmark.extra_info.update(info, repeat=repeat, threads=torch.get_num_threads())
    benchmark.pedantic(call, rounds=20 if device == "cuda" else 5, warmup_rounds=2, iterations=1)


OURS = {"chunk": lambda x, w: chunk_dwconv(x, *w), "copy": lambda x, w: copy_dwconv(x, *w)}
REFERENCE = {
    "chunk": lambda x, w: chunk_dwconv_reference(x, *w),
    "copy": lambda x, w: copy_dwconv_reference(x, *w),
}

CUDA_SHAPES = layer_shapes(list(VARIANT_DIMS))
CPU_VARIANTS = os.environ.get("REPNEXT_BENCH_CPU_VARIANTS", "m0,m5").split(",")
CPU_BATCH = [int(b) for b in os.environ.get("REPNEXT_BENCH_CPU_BATCH", "1,64").split(",")]
# One intra-op thread by default: on a small shared CPU, a spinning thread pool turns into scheduler stalls.
CPU_THREADS = int(os.environ.get("REPNEXT_BENCH_CPU_THREADS", "1"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: GPU kernel timings need a GPU")
@pytest.mark.skipif(not triton_available(), reason="triton is not installed")
@pytest.mark.parametrize("form", ["triton", "torch-multi-branch", "torch-single-conv"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=["fp16", "fp32"])
@pytest.mark.parametrize("n", [1, 64])
@pytest.mark.parametrize("op,c,s", CUDA_SHAPES)
def test_cuda(benchmark, op, c, s, n, dtype, form):
    x, w = make_inputs(op, n, c, s, dtype, "cuda")
    if form == "triton":
        torch.testing.assert_close(OURS[op](x, w), REFERENCE[op](x, w), rtol=1e-2, atol=1e-2)
        fn = OURS[op]
    else:
        fn = multi_branch(op) if form == "torch-multi-branch" else single_conv(op, x, w)
    with torch.inference_mode():
        run(benchmark, op, form, fn, x, w, n, c, s)


@pytest.mark.parametrize("form", ["torch-multi-branch", "torch-single-conv", "fused-reference"])
@pytest.mark.parametrize("n", CPU_BATCH)
@pytest.mark.parametrize("op,c,s", layer_shapes(CPU_VARIANTS))
def test_cpu(benchmark, op, c, s, n, form):
    torch.set_num_threads(CPU_THREADS)
    x, w = make_inputs(op, n, c, s, torch.float32, "cpu")
    fn = {"torch-multi-branch": multi_branch(op), "fused-reference": REFERENCE[op]}.get(form)
    with torch.inference_mode():
        run(benchmark, op, form, fn or single_conv(op, x, w), x, w, n, c, s)
