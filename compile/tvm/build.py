"""Relax IRModule -> VM executable, applying a MetaSchedule tuning database when one is given."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repnext_core.compile.tune import database as tuning_db
from repnext_core.compile.tvm.conv_tiles import load_tiles
from repnext_core.compile.tvm.importer import main_signature
from repnext_core.compile.tvm.kernel_profile import kernel_macs
from repnext_core.compile.tvm.pipeline import check_precision, compute_dtype, prepare, schedule
from repnext_core.compile.tvm.targets import OBJECT_FILES, TargetSpec, resolve_target

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
    concat_kernels: int = 0
    concats_in_place: int = 0
    matvec_kernels: int = 0
    precision: str = "fp32"
    db: dict | None = None
    kernel_macs: dict[str, int] = field(default_factory=dict)  # per call, for `repnext profile`
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: which kernels got which schedule."""
        return (
            f"{self.precision}, {self.conv_kernels} conv kernels hand-scheduled ({self.measured_tiles} with measured tiles), "
            f"{self.tuned_kernels}/{self.kernels - self.conv_kernels - self.concat_kernels - self.matvec_kernels}"
            " others tuned"
            + (
                f", {self.concat_kernels} channel splits/concats as vector copies"
                + (
                    f" ({self.concats_in_place} concat calls assembled in place instead)"
                    if self.concats_in_place
                    else ""
                )
                if self.concat_kernels
                else ""
            )
            + (f", {self.matvec_kernels} head(s) register-tiled" if self.matvec_kernels else "")
        )


def build_with_report(mod, target: TargetLike, db=None, precision: str = "fp32") -> tuple[Any, BuildReport]:
    """Like build(), also returning a BuildReport (kernels tuned out of all, database used, time)."""
    from tvm import relax

    t0 = time.perf_counter()
    spec = resolve_target(target)
    check_precision(precision, spec)
    report = BuildReport(spec, precision=precision)
    database = _open_db(mod, spec, db, report)
    tiles = load_tiles(db) if isinstance(db, str | os.PathLike) else {}
    prepared, counts = schedule(prepare(mod, spec, precision), spec, database, tiles)
    report.kernels, report.conv_kernels = counts.kernels, counts.conv_kernels
    report.measured_tiles, report.tuned_kernels = counts.measured_tiles, counts.tuned_kernels
    report.concat_kernels, report.matvec_kernels = counts.concat_kernels, counts.matvec_kernels
    report.concats_in_place = counts.concats_in_place
    report.kernel_macs = kernel_macs(prepared)
    # Object files are linked into someone else's binary, so their kernels must self-register (system lib).
    exe = relax.build(prepared, spec.tvm_target(), system_lib=spec.artifact_kind == OBJECT_FILES)
    report.seconds = time.perf_counter() - t0
    logger.info("built for %s in %.1f s: %s", spec.name, report.seconds, report.summary())
    return exe, report


def build(mod, target: TargetLike, db=None, precision: str = "fp32"):
    """Compile a Relax IRModule for `target` into a relax.VMExecutable; `db` is a tuning database dir (or None)."""
    return build_with_report(mod, target, db, precision)[0]


def _open_db(mod, spec: TargetSpec, db, report: BuildReport):
    """Open and check the database dir `db` (None: untuned); a database for another setup is refused."""
    if db is None:
        return None
    if not isinstance(db, str | os.PathLike):
        return db  # an already opened tvm Database, the caller vouches for it
    shape, _, _ = main_signature(mod)
    key = tuning_db.key_for("", shape, compute_dtype(report.precision), spec)
    database = tuning_db.open_for(Path(db), key, create=False, check_variant=False)
    report.db = tuning_db.summary(db)
    return database


def build_artifact(
    model,
    out_dir: str | os.PathLike,
    target: TargetLike = "host",
    *,
    variant: str = "model",
    input_size: int = 224,
    checkpoint: str | os.PathLike | None = None,
    db_roots: Sequence[str | os.PathLike] | None = None,
    use_db: bool = True,
    precision: str = "fp32",
) -> tuple[Path, BuildReport]:
    """Fused torch model -> artifact directory (model.so or objects, meta.json), written atomically.

    The tuning database for (variant, input size, target) is applied when one exists under `db_roots`
    (default: the user's, then the shipped ones); `checkpoint` is only recorded (its sha256) in meta.json.
    `precision` "fp16" computes in half precision (ARMv8.2-A targets; within FP16_BOUND of fp32). The
    report's notes say what the build could not use.
    """
    from repnext_core.compile.tvm.artifact import ArtifactMeta, export_artifact
    from repnext_core.compile.tvm.importer import import_model
    from repnext_core.files import file_sha256

    if input_size < 32:
        raise ValueError(f"input size must be at least 32 (the network downsamples 32x), got {input_size}")
    spec = resolve_target(target)
    check_precision(precision, spec)
    mod = import_model(model, (1, 3, input_size, input_size))
    shape, dtype, out_shape = main_signature(mod)
    db = None
    if use_db:
        key = tuning_db.key_for(variant, shape, compute_dtype(precision), spec)
        db = tuning_db.find_db(key, db_roots)
    exe, report = build_with_report(mod, spec, db, precision)
    if use_db and db is None:
        report.notes.append(
            f"no tuning database for {key.dirname()}: heuristic conv tiles, default schedules for the "
            "other kernels (see `repnext tune`)"
        )
    meta = ArtifactMeta(
        spec,
        shape,
        dtype,
        out_shape,
        variant=variant,
        checkpoint_sha256=file_sha256(checkpoint) if checkpoint else None,
        tuning_db=report.db,
        kernels=report.kernels,
        tuned_kernels=report.tuned_kernels,
        precision=precision,
        kernel_macs=report.kernel_macs,
    )
    return export_artifact(exe, out_dir, meta), report
