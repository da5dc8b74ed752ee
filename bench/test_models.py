"""Whole-model latency per engine on this CPU (pytest-benchmark): `pytest bench/test_models.py --benchmark-only`.

Every engine sees the same seeded input and its output is checked against eager fused PyTorch before it is
timed. `bench/report.py` turns the JSON (`--benchmark-json`) into bench/RESULTS.md and a plot.
TVM's runtime sizes its thread pool once per process, from TVM_NUM_THREADS at its first call: for exact TVM
thread counts, run one thread count per process (REPNEXT_BENCH_THREADS=1, then =2).
Engines are timed in blocks, all of a variant's engines one after another, in REPNEXT_BENCH_PASSES passes
(default 2; each engine built and checked once): on a shared machine a burst of another tenant's load slows
whichever block it falls on, and the report keeps each engine's faster pass.
"""

import os
import time

import pytest
import torch

from repnext_core.compile.bench.engines import ENGINES, make_engine, pin_threads
from repnext_core.compile.bench.harness import check_engine
from repnext_core.compile.tvm.targets import resolve_target
from repnext_core.profile import count_macs
from repnext_core.reparam import reparameterize
from repnext_core.testing import random_model

VARIANTS = os.environ.get("REPNEXT_BENCH_VARIANTS", "repnext_m0,repnext_m1,repnext_m4").split(",")
THREADS = [int(t) for t in os.environ.get("REPNEXT_BENCH_THREADS", "1,2").split(",")]
FAST_ENGINES = [e for e in ENGINES if e != "torch-compile"]
PASSES = int(os.environ.get("REPNEXT_BENCH_PASSES", "2"))
# Every engine of a variant in one pass, then the next pass: (variant, threads, pass, engine) in that order.
CASES = [(v, t, n, e) for v in VARIANTS for t in THREADS for n in range(1, PASSES + 1) for e in FAST_ENGINES]
# LLVM's name for this CPU: the tuning databases are keyed on it, so the report says which kind ran.
HOST_MCPU = resolve_target("host").target.get("mcpu", "")

_models: dict = {}
_engines: dict = {}  # (variant, engine, threads) -> (Engine, Parity) or the reason it was skipped


def _setup(variant: str):
    if variant not in _models:
        model = random_model(variant, seed=0)
        fused = reparameterize(model, backend="torch")
        x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            ref = fused(x)
        _models[variant] = (model, fused, x, ref, count_macs(fused))
    return _models[variant]


def _engine(variant: str, engine_name: str, threads: int):
    """The engine and its parity check, built once per process; the previous variant's engines are let go."""
    key = (variant, engine_name, threads)
    if engine_name.startswith("tvm") and threads != THREADS[0]:
        pytest.skip(
            f"TVM's thread pool was sized for {THREADS[0]} thread(s) when this process started it: time "
            f"{threads} thread(s) in a process of its own (REPNEXT_BENCH_THREADS={threads}, as `make bench` does)"
        )
    if key not in _engines:
        for old in [k for k in _engines if k[0] != variant]:
            del _engines[old]
        model, fused, x, ref, _ = _setup(variant)
        try:
            engine = make_engine(engine_name, variant, model, fused, x, threads)
        except (ImportError, FileNotFoundError) as e:  # tvm-tuned without a database, a peer not installed
            _engines[key] = str(e)
        else:
            _engines[key] = (engine, check_engine(engine, ref))
    if isinstance(_engines[key], str):
        pytest.skip(_engines[key])
    return _engines[key]


def _bench(benchmark, variant: str, engine_name: str, threads: int, bench_pass: int = 1) -> None:
    pin_threads(threads)
    engine, check = _engine(variant, engine_name, threads)
    benchmark.group = f"{variant} {threads}t"
    benchmark.extra_info.update(
        variant=variant,
        engine=engine_name,
        threads=threads,
        bench_pass=bench_pass,
        macs=_setup(variant)[4],
        max_abs_diff=check.max_abs_diff,
        note=engine.note,
        host_mcpu=HOST_MCPU,
    )
    benchmark.pedantic(engine.run, rounds=15, warmup_rounds=3, iterations=1)


@pytest.mark.parametrize("threads", THREADS)
def test_sgemm_peak(benchmark, threads):
    """The machine's single-precision reference rate in this same run (1024^3 sgemm)."""
    pin_threads(threads)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    benchmark.group = f"sgemm {threads}t"
    benchmark.extra_info.update(engine="sgemm", threads=threads, flops=2 * 1024**3)
    benchmark.pedantic(torch.mm, args=(a, b), rounds=10, warmup_rounds=2, iterations=1)
    assert benchmark.stats.stats.min > 0


@pytest.mark.parametrize(
    ("variant", "threads", "bench_pass", "engine_name"),
    CASES,
    ids=[f"{v}-{e}-{t}-pass{n}" for v, t, n, e in CASES],
)
def test_model(benchmark, variant, threads, bench_pass, engine_name):
    _bench(benchmark, variant, engine_name, threads, bench_pass)


@pytest.mark.slow
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_model_torch_compile(benchmark, variant, threads):
    t0 = time.perf_counter()
    _bench(benchmark, variant, "torch-compile", threads)
    benchmark.extra_info["compile_s"] = time.perf_counter() - t0
