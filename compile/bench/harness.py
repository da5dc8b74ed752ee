"""The one benchmark harness (`repnext bench`, the demo, bench/): engines built for the same model and
input, outputs checked against eager fused PyTorch, then timed side by side in interleaved rounds."""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from repnext_core.compile.bench.conversions import ConversionError
from repnext_core.compile.bench.engines import (
    DEFAULT_ENGINES,
    REDUCED_PRECISION_BOUND,
    Engine,
    make_engine,
    pin_threads,
)
from repnext_core.profile import count_macs
from repnext_core.reparam import reparameterize
from repnext_core.table import format_table
from repnext_core.testing import random_model
from repnext_core.timing import compare_latency
from repnext_core.verify import Parity, parity


def sgemm_peak_gflops(threads: int, n: int = 1024, repeat: int = 5) -> float:
    """This machine's measured single-precision rate: a large torch sgemm, best of `repeat`."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def check_engine(engine: Engine, reference: torch.Tensor) -> Parity:
    """Run the engine once and compare with fused PyTorch: fp32 parity, or REDUCED_PRECISION_BOUND of
    max|y| for an engine that computes in bf16/fp16 by design; AssertionError when it is off."""
    check = parity(reference, torch.from_numpy(np.asarray(engine.run()).reshape(reference.shape)))
    bound = REDUCED_PRECISION_BOUND * check.max_abs_ref if engine.reduced_precision else check.tolerance
    if check.max_abs_diff > bound:
        raise AssertionError(
            f"{engine.name} output differs from fused PyTorch: {check.max_abs_diff:.2e} > {bound:.2e}"
        )
    return check


def compare_engines(
    variant: str,
    engines: Sequence[str] = DEFAULT_ENGINES,
    threads: int = 1,
    input_size: int = 224,
    repeat: int = 20,
    db=None,
    model: nn.Module | None = None,
) -> dict:
    """Build each engine, check its output against eager fused PyTorch, and time them side by side.

    `model` (training form; default: `variant` with seeded random weights and BatchNorm statistics) is
    fused once for every engine. An engine that cannot be built here (an extra or a tuning database
    missing) is listed under "skipped" with the reason; one whose output is wrong raises.
    """
    pin_threads(threads)
    model = (model or random_model(variant, seed=0)).eval()
    fused = reparameterize(model, backend="torch")
    x = torch.randn(1, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = fused(x)
    built, rows, skipped = {}, {}, {}
    for name in engines:
        try:
            engine = make_engine(name, variant, model, fused, x, threads, db)
        except (ImportError, FileNotFoundError, ConversionError) as e:
            skipped[name] = str(e).splitlines()[0]
            continue
        check = check_engine(engine, reference)
        built[name] = engine
        rows[name] = {"max_abs_diff": check.max_abs_diff, "note": engine.note}
    times = compare_latency({n: e.run for n, e in built.items()}, repeat=repeat)
    macs = count_macs(fused, (input_size, input_size))
    peak = sgemm_peak_gflops(threads)
    base = times.get("torch-fused", {}).get("median_ms")
    for name, t in times.items():
        gflops = 2 * macs / (t["median_ms"] / 1e3) / 1e9
        rows[name].update(t, gflops=gflops, peak_fraction=gflops / peak)
        rows[name]["speedup_vs_fused"] = base / t["median_ms"] if base else float("nan")
    return {
        "variant": variant,
        "threads": threads,
        "input": [1, 3, input_size, input_size],
        "macs": macs,
        "sgemm_peak_gflops": peak,
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "engines": rows,
        "skipped": skipped,
    }


def format_comparison(result: dict) -> str:
    """The table `repnext bench` prints."""
    rows = [
        [
            name,
            f"{r['median_ms']:.2f}",
            "-" if r["speedup_vs_fused"] != r["speedup_vs_fused"] else f"{r['speedup_vs_fused']:.2f}x",
            f"{r['gflops']:.1f}",
            f"{r['peak_fraction']:.2f}",
            f"{r['max_abs_diff']:.1e}",
            r["note"],
        ]
        for name, r in result["engines"].items()
    ]
    head = (
        f"{result['variant']}, batch 1, {result['input'][2]}x{result['input'][3]}, {result['threads']} thread(s); "
        f"{result['macs'] / 1e9:.3f} GMACs; sgemm peak measured now: {result['sgemm_peak_gflops']:.1f} GFLOP/s"
    )
    table = format_table(
        ["engine", "median ms", "vs torch-fused", "GFLOP/s", "of peak", "max abs diff", "note"], rows
    )
    skipped = "".join(f"\nskipped {n}: {why}" for n, why in result["skipped"].items())
    return f"{head}\n{table}{skipped}"
