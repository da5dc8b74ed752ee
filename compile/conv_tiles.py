"""Measured register tiles for the hand-scheduled conv kernels, kept in conv_tiles.json beside the
MetaSchedule records of a tuning database, and applying them (or the heuristic's) to a prepared module."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from repnext_core.atomic import atomic_output

from .conv_schedule import ConvTile, candidate_tiles, default_tile, match_conv, schedule_conv, vector_unit

TILES_FILE = "conv_tiles.json"
FORMAT = "repnext-conv-tiles/1"


def workload_key(func) -> str:
    """Structural hash of the unscheduled kernel, independent of its name in the model."""
    from tvm_ffi import structural_hash

    return f"{structural_hash(func.without_attr('global_symbol')) & 0xFFFFFFFFFFFFFFFF:016x}"


def load_tiles(db_dir: str | os.PathLike | None) -> dict[str, ConvTile]:
    """Workload key -> measured tile from `db_dir`/conv_tiles.json ({} when there is none)."""
    if db_dir is None or not (Path(db_dir) / TILES_FILE).is_file():
        return {}
    path = Path(db_dir) / TILES_FILE
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is damaged ({e}); delete it and run `repnext tune` to re-measure") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file; delete it and run `repnext tune` to re-measure")
    return {key: ConvTile(**entry["tile"]) for key, entry in data["kernels"].items()}


def conv_kernels(mod) -> dict:
    """GlobalVar -> (ConvKernel, PrimFunc) for every kernel of `mod` the hand schedule applies to."""
    from tvm import tirx

    found = {}
    for gv, func in mod.functions.items():
        if isinstance(func, tirx.PrimFunc) and not _is_scheduled(func):
            kernel = match_conv(func)
            if kernel is not None:
                found[gv] = (kernel, func)
    return found


def apply_conv_schedules(mod, target, tiles: dict[str, ConvTile] | None = None) -> tuple[object, int, int]:
    """Schedule every matching conv kernel of `mod`; returns (module, kernels scheduled, of those with a
    measured tile). Kernels without a measured tile get the heuristic's tile. Constant weights get a
    packing step; finish_packing() folds it into the constants."""
    unit = vector_unit(target)
    tiles = tiles or {}
    constant_weights = _constant_weight_kernels(mod)
    mod = mod.clone()
    scheduled = measured = 0
    for gv, (kernel, func) in conv_kernels(mod).items():
        tile = tiles.get(workload_key(func))
        measured += tile is not None
        weights = "pack-step" if gv.name_hint in constant_weights else "keep"
        mod[gv] = schedule_conv(func, tile or default_tile(kernel, unit), weights)
        scheduled += 1
    return mod, scheduled, measured


def _constant_weight_kernels(mod) -> set[str]:
    """Kernels whose every call passes a constant as argument 1 (the conv weight).

    relax's AttachAttrLayoutFreeBuffers answers the same question but renames the kernels it annotates."""
    from tvm import relax
    from tvm.ir.expr import GenericConst

    constant, variable = set(), set()
    for func in mod.functions.values():
        if not isinstance(func, relax.Function):
            continue
        for block in func.body.blocks:
            for binding in block.bindings:
                call = binding.value
                if not (isinstance(call, relax.Call) and getattr(call.op, "name", "") == "relax.call_tir"):
                    continue
                name, args = call.args[0].name_hint, call.args[1].fields
                is_const = len(args) > 1 and isinstance(args[1], GenericConst)
                (constant if is_const else variable).add(name)
    return constant - variable


def finish_packing(mod):
    """Split the weight-packing steps out of the conv kernels and apply them to the constant weights."""
    from tvm import relax, transform

    steps = [
        relax.transform.SplitLayoutRewritePreproc(),
        relax.transform.FoldConstant(),
        relax.transform.DeadCodeElimination(),
    ]
    return transform.Sequential(steps)(mod)


def search_tiles(
    mod, target, db_dir: str | os.PathLike, limit: int = 12, progress: bool = True, budget_s: float = 0.02
) -> int:
    """Time up to `limit` candidate tiles of each conv kernel of `mod` on this machine and record the
    fastest in `db_dir`/conv_tiles.json (after each kernel, so an interrupted search keeps its results).
    Kernels already on record are skipped; returns how many were measured now."""
    from tqdm import tqdm

    path = Path(db_dir) / TILES_FILE
    data = json.loads(path.read_text()) if path.is_file() else {"format": FORMAT, "kernels": {}}
    unit = vector_unit(target)
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
                for t in candidate_tiles(kernel, unit, limit)
            ]
            best_s, best = min(timed, key=lambda r: r[0])
            default = default_tile(kernel, unit)
            default_s = next(s for s, t in timed if t == default)
            data["kernels"][key] = {
                "name": name,
                "tile": best.to_json(),
                "ms": best_s * 1e3,
                "heuristic_ms": default_s * 1e3,
                "candidates": len(timed),
            }
            _write(path, data)
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


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))


def _is_scheduled(func) -> bool:
    return bool(func.attrs is not None and func.attrs.get("tirx.is_scheduled", False))
