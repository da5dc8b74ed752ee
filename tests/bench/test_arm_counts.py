"""Whole-model counts under qemu (slow): checked outputs, and the per-inference figure repeats."""

from __future__ import annotations

import pytest

pytest.importorskip("tvm")

from repnext_core.compile.bench.arm.bench import count_engines  # noqa: E402

pytestmark = pytest.mark.slow


def test_counts_repeat_and_every_engine_was_checked_first(tmp_path):
    runs = [
        count_engines(
            "repnext_m0", "cortex-a76", ["tvm", "ort"], model_cycles=False, json_out=tmp_path / "r.json"
        )
        for _ in range(2)
    ]
    for result in runs:
        for row in result["rows"]:
            assert "per_inference" in row, row.get("error")
            assert row["max_abs_err"] <= row["tolerance"]  # checked before anything was counted
    for a, b in zip(runs[0]["rows"], runs[1]["rows"]):
        insns = a["per_inference"]["insns"]
        assert abs(insns - b["per_inference"]["insns"]) <= 1e-4 * insns, a["engine"]
    assert (tmp_path / "r.json").is_file()
