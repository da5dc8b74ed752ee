"""Relax IRModule -> VM executable, applying a MetaSchedule tuning database when one is given."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import tuning_db
from .conv_tiles import apply_conv_schedules, finish_packing, load_tiles
from .fast_math import legalize_map
from .layout import to_channels_last_pass
from .relax_import import main_signature
from .targets import OBJECT_FILES, TargetSpec, resolve_target

logger = logging.getLogger(__name__)

TargetLike = str | Mapping[str, Any] | TargetSpec


@dataclass
class BuildReport:
    """What a build did: where the schedules came from and how long it took."""

    target: TargetSpec
    kernels: int = 0
    tuned_kernels: int = 0
    conv_kernels: int = 0
    measured_tiles: int = 0
    db: dict | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: which kernels got which schedule."""
        return (
            f"{self.conv_kernels} conv kernels hand-scheduled ({self.measured_tiles} with measured tiles), "
            f"{self.tuned_kernels}/{self.kernels - self.conv_kernels} others tuned"
        )


def prepare(mod, target: TargetSpec):
    """Channels-last layout, legalize (GELU with a vectorizable erf) and fuse into TIR kernels; tuning
    extracts tasks from this and builds apply records to it.

    Both sides must run exactly these passes, or the structural keys of the database would not match.
    """
    import tvm
    from tvm import relax

    passes = tvm.transform.Sequential(
        [
            to_channels_last_pass(),
            relax.transform.DecomposeOpsForInference(),
            relax.transform.CanonicalizeBindings(),
            relax.transform.LegalizeOps(customize_legalize_map=legalize_map()),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
        ]
    )
    with target.tvm_target(), tvm.transform.PassContext(opt_level=3):
        return passes(mod)


def schedule(mod, target: TargetSpec, db=None, tiles=None, report: BuildReport | None = None):
    """prepare()'d module -> conv kernels hand-scheduled (`tiles`: workload key -> measured tile, the
    heuristic's elsewhere), the rest with `db`'s MetaSchedule records (an opened tvm Database, or None)."""
    import tvm
    from tvm import relax

    report = report or BuildReport(target)
    mod, report.conv_kernels, report.measured_tiles = apply_conv_schedules(mod, target.tvm_target(), tiles)
    if db is not None:
        with target.tvm_target(), db, tvm.transform.PassContext(opt_level=3):
            mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
    report.tuned_kernels = _count_kernels(mod, scheduled_only=True) - report.conv_kernels
    return finish_packing(mod)


def build_with_report(mod, target: TargetLike, db=None) -> tuple[Any, BuildReport]:
    """Like build(), also returning a BuildReport (kernels tuned out of all, database used, time)."""
    from tvm import relax

    t0 = time.perf_counter()
    spec = resolve_target(target)
    report = BuildReport(spec)
    database = _open_db(mod, spec, db, report)
    prepared = prepare(mod, spec)
    report.kernels = _count_kernels(prepared)
    tiles = load_tiles(db) if isinstance(db, str | os.PathLike) else {}
    prepared = schedule(prepared, spec, database, tiles, report)
    # Object files are linked into someone else's binary, so their kernels must self-register (system lib).
    exe = relax.build(prepared, spec.tvm_target(), system_lib=spec.artifact_kind == OBJECT_FILES)
    report.seconds = time.perf_counter() - t0
    logger.info("built for %s in %.1f s: %s", spec.name, report.seconds, report.summary())
    return exe, report


def build(mod, target: TargetLike, db=None):
    """Compile a Relax IRModule for `target` into a relax.VMExecutable; `db` is a tuning database dir (or None)."""
    return build_with_report(mod, target, db)[0]


def _open_db(mod, spec: TargetSpec, db, report: BuildReport):
    """Open and check the database dir `db` (None: untuned); a database for another setup is refused."""
    if db is None:
        return None
    if not isinstance(db, str | os.PathLike):
        return db  # an already opened tvm Database, the caller vouches for it
    shape, dtype, _ = main_signature(mod)
    key = tuning_db.key_for("", shape, dtype, spec)
    database = tuning_db.open_for(Path(db), key, create=False, check_variant=False)
    report.db = tuning_db.summary(db)
    return database


def _count_kernels(mod, scheduled_only: bool = False) -> int:
    """TIR kernels in the module; with scheduled_only, those that carry a tuned schedule."""
    from tvm import tirx

    count = 0
    for func in mod.functions.values():
        if not isinstance(func, tirx.PrimFunc):
            continue
        if not scheduled_only or (func.attrs is not None and func.attrs.get("tirx.is_scheduled", False)):
            count += 1
    return count
