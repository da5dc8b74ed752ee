"""host_comparison (used by the demo): TVM beside torch eager and onnxruntime, outputs checked."""

from __future__ import annotations

import pytest

pytest.importorskip("tvm")
pytest.importorskip("onnxruntime")

from repnext_core import reparameterize  # noqa: E402
from repnext_core.compile.tvm_bench import host_comparison  # noqa: E402
from repnext_core.testing import toy_model  # noqa: E402


def test_host_comparison_on_the_toy(tmp_path):
    model = reparameterize(toy_model(seed=0)).eval()
    result = host_comparison(model, (1, 3, 32, 32), threads=1, variant="toy", db_roots=[tmp_path], repeat=3)
    assert set(result["latency_ms"]) == {"torch", "onnxruntime", "tvm"}
    assert all(ms > 0 for ms in result["latency_ms"].values())
    assert result["outputs_match"], result["max_abs_diff"]
    assert result["tuning_db"] is None and result["threads"] == 1
