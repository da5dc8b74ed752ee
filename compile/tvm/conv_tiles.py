"""Register tiles of the hand-scheduled conv kernels: reading the measured ones from conv_tiles.json beside
the MetaSchedule records of a tuning database, and applying them (or the heuristic's) to a prepared module.
The search that measures them is repnext_core.compile.tune.tile_search."""

from __future__ import annotations

import json
import os
from pathlib import Path

from repnext_core.compile.tvm.conv_schedule import (
    ConvTile,
    constant_weight_kernels,
    default_tile,
    epilogue_lanes,
    is_scheduled,
    match_conv,
    schedule_conv,
    vector_unit,
)
from repnext_core.compile.tvm.inplace_concat import concat_fed_kernels

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
        if isinstance(func, tirx.PrimFunc) and not is_scheduled(func):
            kernel = match_conv(func)
            if kernel is not None:
                found[gv] = (kernel, func)
    return found


def apply_conv_schedules(mod, target, tiles: dict[str, ConvTile] | None = None) -> tuple[object, int, int]:
    """Schedule every matching conv kernel of `mod`; returns (module, kernels scheduled, of those with a
    measured tile). Kernels without a measured tile get the heuristic's tile. Constant weights get a
    packing step; finish_packing() folds it into the constants."""
    tiles = tiles or {}
    constant_weights = constant_weight_kernels(mod)
    windowed = concat_fed_kernels(mod)
    mod = mod.clone()
    scheduled = measured = 0
    for gv, (kernel, func) in conv_kernels(mod).items():
        tile = tiles.get(workload_key(func))
        measured += tile is not None
        weights = "pack-step" if gv.name_hint in constant_weights else "keep"
        unit = vector_unit(target, kernel.dtype)
        lanes = kernel_epilogue_lanes(unit, gv.name_hint, windowed)
        mod[gv] = schedule_conv(func, tile or default_tile(kernel, unit), weights, lanes)
        scheduled += 1
    return mod, scheduled, measured


def kernel_epilogue_lanes(unit, name: str, windowed: set[str]) -> int:
    """The conv kernel's epilogue_lanes: 0 (channel vectors) where its output becomes a window of a concat
    (`windowed`, see inplace_concat.concat_fed_kernels), whose pixels are not contiguous."""
    return 0 if name in windowed else epilogue_lanes(unit)


def finish_packing(mod):
    """Split the weight-packing steps out of the conv and head kernels and apply them to the constant weights."""
    from tvm import relax, transform

    steps = [
        relax.transform.SplitLayoutRewritePreproc(),
        relax.transform.FoldConstant(),
        relax.transform.DeadCodeElimination(),
    ]
    return transform.Sequential(steps)(mod)
