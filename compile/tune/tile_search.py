"""Measuring register tiles for the hand-scheduled conv kernels on this machine, recorded in conv_tiles.json
beside the MetaSchedule records (read back at build time by repnext_core.compile.tvm.conv_tiles)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from repnext_core.compile.tvm.conv_schedule import candidate_tiles, default_tile, schedule_conv, vector_unit
from repnext_core.compile.tvm.conv_tiles import FORMAT, TILES_FILE, conv_kernels, workload_key
from repnext_core.files import write_text_atomic


def search_tiles(
    mod, target, db_dir: str | os.PathLike, limit: int = 12, progress: bool = True, budget_s: float = 0.02
) -> int:
    """Time up to `limit` candidate tiles of each conv kernel of `mod` on this machine and record the
    fastest in `db_dir`/conv_tiles.json (after each kernel, so an interrupted search keeps its results).
    Kernels already on record are skipped; returns how many were measured now."""
    from tqdm import tqdm

    path = Path(db_dir) / TILES_FILE
    data = json.loads(path.read_text()) if path.is_file() else {"format": FORMAT, "kernels": {}}
    todo = {}
    for gv, (kernel, func) in conv_kernels(mod).items():
        key = workload_key(func)
        if key not in data["kernels"]:
            todo[key] = (gv.name_hint, kernel, func)
    bar = tqdm(total=len(todo), desc="conv tiles", unit="kernel", disable=not progress, dynamic_ncols=True)
    try:
        for key, (name, kernel, func) in todo.items():
            timed = [
                (_time(schedule_conv(func, t, weights="packed"), target, budget_s), t)
                for t in candidate_tiles(kernel, vector_unit(target, kernel.dtype), limit)
            ]
            best_s, best = min(timed, key=lambda r: r[0])
            default = default_tile(kernel, vector_unit(target, kernel.dtype))
            default_s = next(s for s, t in timed if t == default)
            data["kernels"][key] = {
                "name": name,
                "tile": best.to_json(),
                "ms": best_s * 1e3,
                "heuristic_ms": default_s * 1e3,
                "candidates": len(timed),
            }
            write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True))
            bar.update(1)
    finally:
        bar.close()
    return len(todo)


def _time(func, target, budget_s: float) -> float:
    """Median seconds per call of the standalone kernel on random inputs, with the weights and outputs
    flushed from the caches before each call as they are in the model (only the input arrives warm)."""
    import tvm

    lib = tvm.tirx.build(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)
    rng = np.random.default_rng(0)
    args = [
        tvm.runtime.tensor(rng.standard_normal([int(d) for d in p.shape]).astype(p.dtype))
        for p in func.params
    ]
    lib["main"](*args)
    t0 = time.perf_counter()
    lib["main"](*args)
    repeat = int(min(50, max(5, budget_s / max(time.perf_counter() - t0, 1e-7))))
    flush = "cache_flush_cpu_non_first_arg"
    timer = lib.time_evaluator("main", tvm.cpu(), number=1, repeat=repeat, f_preproc=flush)
    return float(np.median(timer(*args).results))
