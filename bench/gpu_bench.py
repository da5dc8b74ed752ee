"""`make bench-gpu`: token mixers and fused models on one GPU, written to bench/GPU_RESULTS.md.

python bench/gpu_bench.py [--quick] [--out bench/GPU_RESULTS.md]   (the body: repnext_core.kernels.gpu_bench)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from repnext_core.kernels.gpu_bench import run_gpu_benchmark


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="M0 shapes and model only (about 90 s)")
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("GPU_RESULTS.md"))
    a = p.parse_args(argv)
    return run_gpu_benchmark(a.out, quick=a.quick)


if __name__ == "__main__":
    raise SystemExit(main())
