"""compare_latency: every engine gets its samples, slow ones read slower, nothing else is counted."""

import time

from repnext_core.timing import compare_latency


def test_each_engine_gets_repeat_samples_and_its_own_speed():
    calls = {"fast": 0, "slow": 0}

    def fast():
        calls["fast"] += 1

    def slow():
        calls["slow"] += 1
        time.sleep(0.003)

    result = compare_latency({"fast": fast, "slow": slow}, repeat=7, warmup=2, block=3)
    # warmup + timed calls + one uncounted lead-in call per block (3 blocks for 7 samples)
    assert calls == {"fast": 2 + 7 + 3, "slow": 2 + 7 + 3}
    assert result["slow"]["min_ms"] >= 3.0 > result["fast"]["max_ms"]
    for stats in result.values():
        assert stats["min_ms"] <= stats["median_ms"] <= stats["max_ms"]
