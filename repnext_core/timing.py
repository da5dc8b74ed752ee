"""Side-by-side latency: engines timed in interleaved rounds so machine noise hits them alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping


def compare_latency(
    runs: Mapping[str, Callable[[], object]], repeat: int = 20, warmup: int = 3
) -> dict[str, dict[str, float]]:
    """Median/min/max milliseconds per engine; round r runs every engine once before round r + 1."""
    for fn in runs.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t0) * 1e3)
    return {
        name: {"median_ms": statistics.median(s), "min_ms": min(s), "max_ms": max(s)}
        for name, s in samples.items()
    }
