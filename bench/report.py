"""Turn pytest-benchmark JSON from bench/test_models.py into bench/RESULTS.md and a latency plot.

python bench/report.py results.json [--out bench/RESULTS.md] [--plot bench/latency.png]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from repnext_core.compile.bench.engines import PEERS
from repnext_core.table import format_table

# fp32 runtimes a user would pick instead of ours; reduced-precision variants (openvino-bf16) are shown, not raced.
FP32_PEERS = ("ort", *(p for p in PEERS if not p.endswith(("-bf16", "-fp16"))))
COLUMNS = ("engine", "median ms", "vs torch-fused", "vs best peer", "GFLOP/s", "of peak", "max abs diff")
GOAL = 1.15  # issue 14: the tuned build at least this much faster than the best fp32 peer


def load(*paths: str | Path) -> dict:
    """Median ms and max abs error per (variant, threads, engine), sgemm peak per thread count, and the machine.

    Several files merge (e.g. one pytest process per thread count, since TVM sizes its pool once per process).
    An engine timed in several passes (bench/test_models.py) keeps its faster pass's median: a burst of another
    tenant's load on the shared machine slows the block it falls on, and every engine gets the same passes.
    """
    runs = [json.loads(Path(p).read_text()) for p in paths]
    data = {
        "benchmarks": [b for r in runs for b in r["benchmarks"]],
        "machine_info": runs[0].get("machine_info"),
    }
    models: dict = defaultdict(dict)
    errors: dict = defaultdict(dict)  # max abs difference from eager fused PyTorch, as checked before timing
    peak: dict[int, float] = {}
    macs: dict[str, int] = {}
    notes: dict[str, str] = {}
    mcpu = None
    passes = 1
    for b in data["benchmarks"]:
        info = b["extra_info"]
        median = b["stats"]["median"]
        if info.get("engine") == "sgemm":
            peak[info["threads"]] = info["flops"] / b["stats"]["min"] / 1e9
            continue
        timed = models[(info["variant"], info["threads"])]
        timed[info["engine"]] = min(median * 1e3, timed.get(info["engine"], float("inf")))
        passes = max(passes, info.get("bench_pass", 1))
        if "max_abs_diff" in info:
            errors[(info["variant"], info["threads"])][info["engine"]] = info["max_abs_diff"]
        macs[info["variant"]] = info["macs"]
        mcpu = info.get("host_mcpu") or mcpu
        if info.get("note") and info["engine"] not in ("tvm", "tvm-tuned"):
            notes[info["engine"]] = info["note"]
    return {
        "models": dict(models),
        "errors": dict(errors),
        "peak": peak,
        "macs": macs,
        "notes": notes,
        "mcpu": mcpu,
        "passes": passes,
        "machine": data.get("machine_info", {}),
    }


def best_peer(engines: dict[str, float]) -> tuple[str, float] | None:
    """(name, median ms) of the fastest fp32 peer runtime timed in this table, or None."""
    peers = [(ms, name) for name, ms in engines.items() if name in FP32_PEERS]
    return (min(peers)[1], min(peers)[0]) if peers else None


def _passes_text(passes: int) -> str:
    if passes < 2:
        return "Each engine was timed in one block of 15 runs. "
    return (
        f"Each engine was timed in {passes} passes over all engines (blocks of 15 runs); its row is its faster "
        "pass's median, so that a burst of another tenant's load on this shared machine, which slows the block "
        "it falls on, does not decide the race. "
    )


def markdown(results: dict) -> str:
    """The RESULTS.md text: the machine, then one table per variant and thread count."""
    m = results["machine"]
    cpu = m.get("cpu", {}).get("brand_raw") or m.get("processor") or m.get("machine", "unknown CPU")
    kind = f" (LLVM host CPU {results['mcpu']})" if results.get("mcpu") else ""
    lines = [
        "# Host CPU results",
        "",
        f"Machine: {cpu}{kind}, {m.get('cpu', {}).get('count', '?')} logical cores, "
        f"Python {m.get('python_version', '?')}.",
        "These are this machine's numbers (shared and noisy, so compare engines within one table: they were "
        "measured in the same run). iPhone latencies in this project are the paper's published figures, "
        "never measured here.",
        "",
        "Made by `make bench`, which runs `REPNEXT_BENCH_THREADS=T pytest bench/test_models.py --benchmark-only "
        "--benchmark-json results-T.json` for T = 1 and 2 (one process each), then `python bench/report.py "
        "results-*.json`. Every engine's output was checked against eager fused PyTorch before timing. "
        + _passes_text(results.get("passes", 1))
        + "`tvm-tuned` appears only where a host tuning database is committed "
        "(compile/tune/databases/); `vs best peer` is the fastest fp32 runtime a user would pick instead (ort, "
        "openvino, ncnn, mnn, litert) over the engine; `of peak` is GFLOP/s (2 x MACs / latency) over a 1024^3 sgemm in the same run; `max abs diff` is the "
        "output's largest difference from eager fused PyTorch (reduced-precision variants such as openvino-bf16 are "
        "shown with it, not raced).",
        "",
    ]
    for (variant, threads), engines in sorted(results["models"].items()):
        peak = results["peak"].get(threads, float("nan"))
        macs = results["macs"][variant]
        fused = engines.get("torch-fused")
        peer = best_peer(engines)
        errors = results.get("errors", {}).get((variant, threads), {})
        rows = []
        for name, ms in sorted(engines.items(), key=lambda kv: kv[1]):
            gflops = 2 * macs / (ms / 1e3) / 1e9
            rows.append(
                [
                    name,
                    f"{ms:.2f}",
                    f"{fused / ms:.2f}x" if fused else "-",
                    f"{peer[1] / ms:.2f}x" if peer else "-",
                    f"{gflops:.1f}",
                    f"{gflops / peak:.2f}",
                    f"{errors[name]:.1e}" if name in errors else "-",
                ]
            )
        lines += [
            f"## {variant}, batch 1, 224x224, {threads} thread(s) (sgemm peak {peak:.1f} GFLOP/s)",
            "",
            format_table(list(COLUMNS), rows),
            "",
        ]
        ours = engines.get("tvm-tuned", engines.get("tvm"))
        if peer and ours:
            name = "tvm-tuned" if "tvm-tuned" in engines else "tvm"
            verdict = "met" if peer[1] / ours >= GOAL else f"not met, gap {GOAL - peer[1] / ours:.2f}"
            lines += [
                f"{name} vs the best fp32 peer timed here ({peer[0]}): {peer[1] / ours:.2f}x (goal >= {GOAL}x: {verdict})",
                "",
            ]
    if results["notes"]:
        lines += [
            "Versions: " + "; ".join(f"{k}: {v}" for k, v in sorted(results["notes"].items())) + ".",
            "",
        ]
    return "\n".join(lines)


def plot(results: dict, path: str | Path) -> None:
    """Latency vs variant, one line per engine, one panel per thread count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = sorted({t for _, t in results["models"]})
    variants = sorted({v for v, _ in results["models"]})
    fig, axes = plt.subplots(1, len(threads), figsize=(6 * len(threads), 4), squeeze=False)
    for ax, t in zip(axes[0], threads):
        series = defaultdict(list)
        for v in variants:
            for engine, ms in results["models"].get((v, t), {}).items():
                series[engine].append((variants.index(v), ms))
        for engine, pts in sorted(series.items()):
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=engine)
        ax.set_xticks(range(len(variants)), [v.replace("repnext_", "") for v in variants])
        ax.set_ylabel("median latency (ms), batch 1, 224x224")
        ax.set_title(f"{t} thread(s)")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "json", nargs="+", help="pytest-benchmark --benchmark-json output(s) of bench/test_models.py"
    )
    p.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    p.add_argument("--plot", default=str(Path(__file__).with_name("latency.png")))
    args = p.parse_args(argv)
    results = load(*args.json)
    if not results["models"]:
        p.error(f"{args.json} holds no model benchmarks")
    Path(args.out).write_text(markdown(results) + "\n")
    plot(results, args.plot)
    print(f"wrote {args.out} and {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
