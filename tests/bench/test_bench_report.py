"""bench/report.py: the host results table races our build against the fastest fp32 peer of the same run."""

import importlib.util
import json
from pathlib import Path

import pytest

REPORT = Path(__file__).resolve().parents[2] / "bench" / "report.py"


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("bench_report", REPORT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bench(engine: str, ms: float, note: str = "", error: float = 2e-6, bench_pass: int = 1) -> dict:
    info = {"variant": "repnext_m1", "engine": engine, "threads": 1, "macs": 10**9, "note": note}
    info["max_abs_diff"] = error
    info["bench_pass"] = bench_pass
    info["host_mcpu"] = "znver4"
    return {"extra_info": info, "stats": {"median": ms / 1e3, "min": ms / 1e3}}


def _results(tmp_path: Path, rows: list[dict]) -> Path:
    sgemm = {
        "extra_info": {"engine": "sgemm", "threads": 1, "flops": 2 * 1024**3},
        "stats": {"min": 0.02, "median": 0.02},
    }
    path = tmp_path / "results-1.json"
    path.write_text(json.dumps({"benchmarks": [sgemm, *rows], "machine_info": {"cpu": {"count": 2}}}))
    return path


def test_best_peer_ignores_reduced_precision_and_our_engines(report):
    engines = {"openvino-bf16": 5.0, "openvino": 20.0, "ort": 25.0, "ncnn": 18.0, "tvm-tuned": 16.0}
    assert report.best_peer(engines) == ("ncnn", 18.0)
    assert report.best_peer({"tvm": 1.0, "torch-fused": 2.0}) is None


def test_markdown_states_the_goal_per_row(report, tmp_path):
    rows = [
        _bench("openvino", 20.0, "OpenVINO 2026.4, f32"),
        _bench("ort", 24.0, "onnxruntime 1.32"),
        _bench("tvm-tuned", 16.0),
        _bench("torch-fused", 40.0),
    ]
    text = report.markdown(report.load(_results(tmp_path, rows)))
    assert "tvm-tuned vs the best fp32 peer timed here (openvino): 1.25x (goal >= 1.15x: met)" in text
    assert "| tvm-tuned | 16.00 " in text.replace("  ", " ").replace("  ", " ")
    assert "LLVM host CPU znver4" in text
    assert "openvino: OpenVINO 2026.4, f32" in text

    slower = [_bench("openvino", 20.0), _bench("tvm-tuned", 19.0)]
    text = report.markdown(report.load(_results(tmp_path, slower)))
    assert "1.05x (goal >= 1.15x: not met, gap 0.10)" in text


def test_markdown_shows_each_engines_error(report, tmp_path):
    """openvino-bf16 misses fp32 parity: the table shows its error beside the fp32 engines' (issue 14)."""
    rows = [
        _bench("openvino-bf16", 6.0, "OpenVINO 2026.4, bf16", error=3.1e-2),
        _bench("openvino", 20.0, error=2.4e-6),
        _bench("tvm-tuned", 16.0, error=3.6e-6),
    ]
    text = report.markdown(report.load(_results(tmp_path, rows)))
    table = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "max abs diff" in table["engine"]
    assert table["openvino-bf16"].rstrip(" |").endswith("3.1e-02")
    assert table["tvm-tuned"].rstrip(" |").endswith("3.6e-06")


def test_each_engine_keeps_its_faster_pass(report, tmp_path):
    """Two passes over all engines: a burst of load that slowed tvm-tuned's first block and openvino's second
    does not decide the race; each row is the engine's faster pass, and the text says so."""
    rows = [
        _bench("openvino", 20.0, bench_pass=1),
        _bench("tvm-tuned", 24.0, bench_pass=1),
        _bench("openvino", 26.0, bench_pass=2),
        _bench("tvm-tuned", 16.0, bench_pass=2),
    ]
    results = report.load(_results(tmp_path, rows))
    assert results["models"][("repnext_m1", 1)] == {"openvino": 20.0, "tvm-tuned": 16.0}
    text = report.markdown(results)
    assert "(openvino): 1.25x (goal >= 1.15x: met)" in text
    assert "timed in 2 passes" in text
    assert "timed in 2 passes" not in report.markdown(report.load(_results(tmp_path, rows[:2])))
