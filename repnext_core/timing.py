"""Side-by-side latency: engines timed in interleaved blocks so machine noise hits them alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

# Thread pools (TVM's, ONNX Runtime's, OpenMP's) keep spinning for a while after each call; timed right
# after another engine, an engine loses a core to those spinners. So each engine runs in short blocks
# whose first call is not counted, after a pause that lets the previous engine's pool go to sleep.
_SETTLE_S = 0.02


def compare_latency(
    runs: Mapping[str, Callable[[], object]], repeat: int = 20, warmup: int = 3, block: int = 5
) -> dict[str, dict[str, float]]:
    """Median/min/max milliseconds per engine over `repeat` timed calls each, taken in rounds of `block`
    consecutive calls per engine (each after one uncounted call), so drift hits every engine alike."""
    for fn in runs.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    while any(len(s) < repeat for s in samples.values()):
        for name, fn in runs.items():
            time.sleep(_SETTLE_S)
            fn()
            for _ in range(min(block, repeat - len(samples[name]))):
                t0 = time.perf_counter()
                fn()
                samples[name].append((time.perf_counter() - t0) * 1e3)
    return {
        name: {"median_ms": statistics.median(s), "min_ms": min(s), "max_ms": max(s)}
        for name, s in samples.items()
    }
