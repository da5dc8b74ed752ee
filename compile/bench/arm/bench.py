"""The counted ARM bench: each engine's aarch64 instructions per inference under qemu-user (and, for
cortex-a76, cycles modeled by llvm-mca), outputs checked against fused PyTorch before anything is counted.

Per engine: build or convert once, run once without the plugin and check the output (refused above its
tolerance), then run k inferences and 1 under the plugin and difference the two. Proxies, not time.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from repnext_core.compile.bench.arm import count, engines, hotspots, mca, plugin, userland
from repnext_core.compile.bench.arm.common import EmulationError
from repnext_core.compile.bench.conversions import reference
from repnext_core.compile.tvm.artifact import LIBRARY_FILE
from repnext_core.files import cache_root as default_cache_root
from repnext_core.files import write_text_atomic
from repnext_core.table import format_table

TITLE = "aarch64 instructions counted under emulation, cycles modeled by llvm-mca: proxies, not time"
MODELED_TARGETS = {"cortex-a76": "neoverse-n1"}  # llvm-mca has no A76 model; Neoverse-N1 is its server twin
TARGETS = ("cortex-a76", "cortex-a55", "cortex-a53")
FP16_CORES = ("cortex-a76", "cortex-a55")  # ARMv8.2-A: fp16 arithmetic; cortex-a53 has none
PY_WHEELS = {"ort": ["numpy", "onnxruntime"], "ncnn": ["numpy", "ncnn"], "mnn": ["numpy", "MNN"]}


def default_engines(target: str) -> tuple[str, ...]:
    """Every engine that can run on `target`: the fp16 paths only where the core has fp16 arithmetic."""
    return tuple(n for n, e in engines.ENGINES.items() if not e.fp16 or target in FP16_CORES)


def measure(
    variant: str,
    target: str,
    name: str,
    root: Path,
    so: Path,
    out_dir: Path,
    k: int,
    seed: int,
    model_cycles: bool,
    timeout: float,
) -> dict:
    """Prepare, check and count one engine; its row."""
    engine = engines.ENGINES[name]
    row: dict = {"engine": name}
    t0 = time.monotonic()
    qemu_cpu = count.qemu_cpu_for(target)
    guest_root = userland.core_root(root, target)
    prepared = engines.prepare(root, engine, variant, seed, target)
    env = engines.host_python_env(engines.site_dir(root, PY_WHEELS[engine.wheel])) if engine.wheel else {}
    x, ref = reference(variant, seed)
    python = userland.python_argv(guest_root)
    row["setup_s"] = round(time.monotonic() - t0, 1)

    # 1. correctness first, without the plugin (this run also leaves the guest's .pyc files in place)
    t0 = time.monotonic()
    check_out = out_dir / f"{name}-check.npy"
    count.run_plain(prepared.argv(python, x, 1, check_out), qemu_cpu, guest_root, env, timeout)
    row["max_abs_err"] = engines.check_output(engine, check_out, ref)
    row["tolerance"] = engines.tolerance(engine, ref)
    row["check_s"] = round(time.monotonic() - t0, 1)

    # 2. k inferences vs 1 under the plugin; bytecode is not rewritten so both runs start up identically
    t0 = time.monotonic()
    env = {**env, "PYTHONDONTWRITEBYTECODE": "1"} if engine.wheel else env
    dump = model_cycles and target in MODELED_TARGETS
    runs = {}
    for n in (1, k):
        argv = prepared.argv(python, x, n, out_dir / f"{name}-k{n}.npy")
        runs[n] = count.run_counted(
            argv,
            qemu_cpu,
            so,
            out_dir,
            f"{name}-k{n}",
            root=guest_root,
            env=env,
            tbdump=dump,
            timeout=timeout,
        )
    row["per_inference"] = count.per_inference(runs[k], runs[1], k)
    row["guest_threads"] = max(runs[n].values.get("threads", 1) for n in runs)
    if row["guest_threads"] > 1:  # the plugin's inline counters are shared, non-atomic adds
        print(
            f"{name}: {row['guest_threads']} guest threads ran: counts may be slightly low", file=sys.stderr
        )
    row["count_s"] = round(time.monotonic() - t0, 1)
    row["qemu_cpu"] = qemu_cpu

    # 3. modeled cycles from the two TB dumps
    if dump:
        t0 = time.monotonic()
        mcpu = MODELED_TARGETS[target]
        modeled = mca.modeled_per_inference(root, runs[k].tbdump, runs[1].tbdump, k, mcpu)
        row["modeled_cycles"] = modeled.cycles
        row["mca"] = {
            "blocks": modeled.blocks,
            "unmodeled_insns": modeled.unmodeled_insns,
            "invalid_words": modeled.invalid_words[:50],
            "mcpu": mcpu,
            "iterations": mca.ITERATIONS,
        }
        row["mca_s"] = round(time.monotonic() - t0, 1)
        if prepared.runner is not None:
            row["hotspots"] = _profile(root, prepared.model, runs[k].tbdump, runs[1].tbdump, k, mcpu)
        for n in (1, k):
            runs[n].tbdump.unlink(missing_ok=True)  # large; the per-block cycles are memoised in the cache
    return row


def _profile(root: Path, artifact: Path, many: Path, one: Path, k: int, mcpu: str) -> list[dict]:
    """Our build's modeled cycles per kernel of model.so, per inference (the block cycles are memoised)."""
    delta = {key: d / (k - 1) for key, d in mca.block_deltas(many, one).items()}
    cycles, _ = mca.block_cycles(root, sorted({hexbytes for _, hexbytes in delta}), mcpu)
    return hotspots.by_function(artifact / LIBRARY_FILE, delta, cycles)


def count_engines(
    variant: str,
    target: str = "cortex-a76",
    engine_names: Sequence[str] | None = None,
    k: int = 3,
    seed: int = 0,
    model_cycles: bool = True,
    timeout: float = 1800,
    json_out: str | Path | None = None,
    log=print,
) -> dict:
    """Count every engine on `variant` for `target`; the result (also written to `json_out` after each
    engine, so an interrupted run keeps what it measured). An engine that fails or is refused gets an
    "error" in its row instead of counts."""
    if target not in TARGETS:
        raise ValueError(
            f"--target for the counted bench must be one of {', '.join(TARGETS)}, got {target!r}"
        )
    engine_names = list(engine_names or default_engines(target))
    unknown = [n for n in engine_names if n not in engines.ENGINES]
    if unknown:
        raise ValueError(f"unknown engine(s) {', '.join(unknown)}; known: {', '.join(engines.ENGINES)}")
    if k < 2:
        raise ValueError(f"k must be at least 2 (per inference = (count(k) - count(1)) / (k - 1)), got {k}")
    root = default_cache_root()
    start = time.monotonic()
    so = plugin.build_plugin(root)
    runs = root / "arm" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    # A folder per run: two benches at once (a test beside `make bench-arm`) must not share output files.
    out_dir = Path(tempfile.mkdtemp(prefix=f"{variant}-{target}-", dir=runs))
    result = {"title": TITLE, "model": variant, "target": target, "k": k, "seed": seed, "rows": []}
    for name in engine_names:
        t0 = time.monotonic()
        try:
            row = measure(variant, target, name, root, so, out_dir, k, seed, model_cycles, timeout)
        except EmulationError as e:
            row = {"engine": name, "error": str(e)}
            log(f"{name}: {e}")
        row["total_s"] = round(time.monotonic() - t0, 1)
        result["rows"].append(row)
        log(f"{name}: done in {row['total_s']} s")
        result["elapsed_s"] = round(time.monotonic() - start, 1)
        if json_out:
            write_text_atomic(json_out, json.dumps(result, indent=2))
    shutil.rmtree(out_dir, ignore_errors=True)  # outputs and counts are in `result`; TB dumps are large
    return result


def _is_ours(name: str) -> bool:
    return name.startswith("tvm")


def format_counts(result: dict) -> str:
    """The printed table: one line per engine, figures in millions per inference, ratios to the best peer."""
    rows, target = result["rows"], result["target"]
    counted = [r for r in rows if "per_inference" in r]
    peers = [r for r in counted if not _is_ours(r["engine"])]
    best_insns = min((r["per_inference"]["insns"] for r in peers), default=None)
    best_cyc = min((r["modeled_cycles"] for r in peers if "modeled_cycles" in r), default=None)
    head = ["engine", "insns M", "SIMD ld/st M", "FP/SIMD dp M", "FMA .4s M", "FMA .8h M", "cycles M"]
    head += ["insns/best peer", "cycles/best peer", "max abs err"]
    table = []
    for r in rows:
        if "per_inference" not in r:
            failed = "refused/failed: " + r.get("error", "?").splitlines()[0][:70]
            table.append([r["engine"], failed] + [""] * (len(head) - 2))
            continue
        p, cyc = r["per_inference"], r.get("modeled_cycles")
        table.append(
            [
                r["engine"],
                f"{p['insns'] / 1e6:.1f}",
                f"{(p['simd_load'] + p['simd_store']) / 1e6:.1f}",
                f"{p['fpsimd_dp'] / 1e6:.1f}",
                f"{p['fma_v4s'] / 1e6:.1f}",
                f"{p['fma_v8h'] / 1e6:.1f}",
                f"{cyc / 1e6:.1f}" if cyc is not None else "-",
                f"{p['insns'] / best_insns:.2f}" if best_insns else "-",
                f"{cyc / best_cyc:.2f}" if cyc is not None and best_cyc else "-",
                f"{r['max_abs_err']:.2g}",
            ]
        )
    mcpu = MODELED_TARGETS.get(target)
    cycles = (
        f"llvm-mca -mcpu={mcpu}, per-block steady state, no caches" if mcpu else "not modeled (in-order core)"
    )
    lines = [
        f"{TITLE}",
        f"{result['model']} on {target}, 1 thread, per inference = (count(k={result['k']}) - count(1)) / "
        f"(k - 1); cycles: {cycles}",
        format_table(head, table),
        "best peer = the lowest of the engines other than ours (tvm*) counted here",
    ]
    fp32 = [r for r in peers if not engines.ENGINES[r["engine"]].fp16]
    ours = next((r for r in counted if r["engine"] == "tvm"), None)
    if fp32 and ours:
        best = min(fp32, key=lambda r: r["per_inference"]["insns"])
        note = f"tvm / best fp32 peer ({best['engine']}): insns {ours['per_inference']['insns'] / best['per_inference']['insns']:.2f}"
        with_cyc = [r for r in fp32 if "modeled_cycles" in r]
        if with_cyc and "modeled_cycles" in ours:
            best_c = min(with_cyc, key=lambda r: r["modeled_cycles"])
            note += (
                f"; cycles {ours['modeled_cycles'] / best_c['modeled_cycles']:.2f} (vs {best_c['engine']})"
            )
        lines.append(note)
    return "\n".join(lines)
