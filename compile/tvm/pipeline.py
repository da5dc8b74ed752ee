"""The one pass pipeline from an imported Relax module to scheduled kernels, in its named steps:
prepare (channels-last layout, fast-math GELU, fusion into TIR kernels) -> conv schedules (measured or
heuristic register tiles) -> MetaSchedule records for the other kernels -> weight packing.

Tuning extracts its tasks from prepare()'s output and builds apply records to it, so both must run
exactly these passes, or the structural keys of the database would not match.
"""

from __future__ import annotations

from dataclasses import dataclass

from repnext_core.compile.tvm.conv_schedule import ConvTile, is_scheduled
from repnext_core.compile.tvm.conv_tiles import apply_conv_schedules, finish_packing
from repnext_core.compile.tvm.fast_math import legalize_map
from repnext_core.compile.tvm.layout import to_channels_last_pass
from repnext_core.compile.tvm.targets import TargetSpec


@dataclass
class ScheduleCounts:
    """Which kernels of a module got which schedule."""

    kernels: int = 0
    conv_kernels: int = 0
    measured_tiles: int = 0
    tuned_kernels: int = 0


def prepare(mod, target: TargetSpec):
    """Channels-last layout, legalize (GELU with a vectorizable erf) and fuse into TIR kernels."""
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


def schedule(
    mod, target: TargetSpec, db=None, tiles: dict[str, ConvTile] | None = None
) -> tuple[object, ScheduleCounts]:
    """prepare()'d module -> conv kernels hand-scheduled (`tiles`: workload key -> measured tile, the
    heuristic's elsewhere), the rest with `db`'s MetaSchedule records (an opened tvm Database, or None),
    and the constant weights packed in the order the conv kernels read them."""
    import tvm
    from tvm import relax

    counts = ScheduleCounts(kernels=count_kernels(mod))
    mod, counts.conv_kernels, counts.measured_tiles = apply_conv_schedules(mod, target.tvm_target(), tiles)
    if db is not None:
        with target.tvm_target(), db, tvm.transform.PassContext(opt_level=3):
            mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
    counts.tuned_kernels = count_kernels(mod, scheduled_only=True) - counts.conv_kernels
    return finish_packing(mod), counts


def count_kernels(mod, scheduled_only: bool = False) -> int:
    """TIR kernels in the module; with scheduled_only, those that carry a schedule."""
    from tvm import tirx

    return sum(
        1
        for func in mod.functions.values()
        if isinstance(func, tirx.PrimFunc) and (not scheduled_only or is_scheduled(func))
    )
