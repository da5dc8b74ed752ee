"""The benchmark harness (repnext bench, the demo): engines side by side on one model, outputs checked."""

from __future__ import annotations

import pytest

pytest.importorskip("tvm")
pytest.importorskip("onnxruntime")

from repnext_core.compile.bench.harness import compare_engines, format_comparison  # noqa: E402
from repnext_core.testing import toy_model  # noqa: E402


def test_compare_engines_on_the_toy():
    engines = ("torch-fused", "ort", "tvm", "tvm-tuned")
    result = compare_engines("toy", engines, threads=1, input_size=32, repeat=3, model=toy_model())
    assert set(result["engines"]) == {"torch-fused", "ort", "tvm"}
    assert "no host tuning database for toy" in result["skipped"]["tvm-tuned"]
    for name, row in result["engines"].items():
        assert row["median_ms"] > 0, name
        assert row["max_abs_diff"] < 1e-3, name  # checked against fused torch before timing
    assert result["threads"] == 1 and result["input"] == [1, 3, 32, 32]
    table = format_comparison(result)
    assert "skipped tvm-tuned" in table and "ort" in table


def test_peer_runtimes_run_the_same_model_checked():
    """OpenVINO (f32 and its bf16 default), ncnn (fp32 via pnnx), MNN and LiteRT (XNNPACK, our TFLite
    writer), each checked before timing."""
    engines = ("torch-fused", "openvino", "openvino-bf16", "ncnn", "mnn", "litert")
    result = compare_engines("toy", engines, threads=1, input_size=32, repeat=2, model=toy_model())
    assert set(result["engines"]) == set(engines), result["skipped"]
    rows = result["engines"]
    for name in ("openvino", "ncnn", "mnn", "litert"):
        assert rows[name]["max_abs_diff"] < 1e-4, name  # fp32 parity
        assert any(ch.isdigit() for ch in rows[name]["note"]), "the runtime's version is in the table"
    assert (
        "bf16" in rows["openvino-bf16"]["note"]
        and rows["openvino-bf16"]["max_abs_diff"] >= rows["openvino"]["max_abs_diff"]
    )
