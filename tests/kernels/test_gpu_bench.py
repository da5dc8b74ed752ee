"""The GPU benchmark's plumbing, on CPU: row builders, output checks, report, no-CUDA exit."""

from __future__ import annotations

import pytest
import torch

from repnext_core.kernels import gpu_bench


def test_layer_shapes_cover_the_variants():
    shapes = gpu_bench.layer_shapes(["m0"])
    assert ("chunk", 40, 56) in shapes and ("copy", 160, 14) in shapes and ("chunk", 320, 7) in shapes
    assert len(shapes) == 7 and not any(op == "copy" and s == 7 for op, _, s in shapes)


def test_mixer_row_checks_outputs(monkeypatch):
    row = gpu_bench.mixer_row("chunk", 8, 8, 1, "fp32", "nchw", "cpu", ours=False)
    assert row[:6] == ["chunk", 8, "8x8", "fp32", "nchw", 1] and row[-1] == "ok"
    assert float(row[7]) > 0 and float(row[8]) > 0 and row[6] == "-"
    # a wrong kernel is reported, not timed as if it were right
    monkeypatch.setitem(gpu_bench.OURS, "copy", lambda x, w: gpu_bench.REFERENCE["copy"](x, w) + 1)
    bad = gpu_bench.mixer_row("copy", 4, 8, 1, "fp32", "channels_last", "cpu", ours=True)
    assert bad[-1].startswith("FAIL") and gpu_bench.failures([bad]) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_without_cuda_says_so_checks_plumbing_and_exits_0(tmp_path, capsys):
    out = tmp_path / "GPU_RESULTS.md"
    assert gpu_bench.run_gpu_benchmark(out, quick=True) == 0
    text = capsys.readouterr().out
    assert "no CUDA device" in text and "plumbing ok" in text
    assert "| chunk" in text and "| copy" in text and "repnext_m0" in text and "channels_last" in text
    assert not out.exists()


def test_repnext_bench_device_cuda_runs_it(monkeypatch, tmp_path):
    from repnext_core.cli import main

    seen = []
    monkeypatch.setattr(gpu_bench, "run_gpu_benchmark", lambda out, quick: seen.append((out, quick)) or 0)
    assert main(["bench", "--device", "cuda", "--quick", "--out", str(tmp_path / "x.md")]) == 0
    assert seen == [(tmp_path / "x.md", True)]
