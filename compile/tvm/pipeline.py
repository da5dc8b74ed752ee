"""The one pass pipeline from an imported Relax module to scheduled kernels, in its named steps:
prepare (precision, channels-last layout, fast-math GELU, fusion into TIR kernels) -> conv schedules
(measured or heuristic register tiles), vector copies for the channel splits and concats and a
register-tiled classifier head -> MetaSchedule records for the other kernels -> weight packing -> the
token mixers' concats written in place.

Tuning extracts its tasks from prepare()'s output and builds apply records to it, so both must run
exactly these passes, or the structural keys of the database would not match.
"""

from __future__ import annotations

from dataclasses import dataclass

from repnext_core.compile.tvm.concat_schedule import apply_concat_schedules
from repnext_core.compile.tvm.conv_schedule import ConvTile, is_scheduled
from repnext_core.compile.tvm.conv_tiles import apply_conv_schedules, finish_packing
from repnext_core.compile.tvm.fast_math import legalize_map
from repnext_core.compile.tvm.inplace_concat import write_concats_in_place
from repnext_core.compile.tvm.layout import to_channels_last_pass
from repnext_core.compile.tvm.matmul_schedule import apply_matvec_schedules
from repnext_core.compile.tvm.targets import TargetError, TargetSpec

PRECISIONS = ("fp32", "fp16")
# The stated accuracy of fp16 builds (fp16 weights, activations and accumulation), tested on M0-M5 with
# randomized BatchNorm statistics under qemu: max |y_fp16 - y_fp32| <= FP16_BOUND * max |y_fp32|.
FP16_BOUND = 1e-2


def check_precision(precision: str, target: TargetSpec) -> str:
    """`precision` if `target` can run it; fp16 needs ARMv8.2-A half-precision arithmetic."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and not target.has_fp16:
        raise TargetError(
            f"target {target.name} has no fp16 arithmetic (ARMv8.2-A +fullfp16): build it with --precision "
            "fp32, or pick an fp16 core (cortex-a55, cortex-a76/rpi5, apple-arm64, or a JSON target whose "
            'mattr has "+fullfp16")'
        )
    return precision


def compute_dtype(precision: str) -> str:
    """The dtype the kernels compute in; tuning databases are kept apart by it."""
    return {"fp32": "float32", "fp16": "float16"}[precision]


@dataclass
class ScheduleCounts:
    """Which kernels of a module got which schedule."""

    kernels: int = 0
    conv_kernels: int = 0
    measured_tiles: int = 0
    tuned_kernels: int = 0
    concat_kernels: int = 0  # channel splits and concats, scheduled by concat_schedule (always, see there)
    matvec_kernels: int = 0  # the head, scheduled by matmul_schedule (always, see there)
    concats_in_place: int = 0  # concat calls assembled in place by their producers (inplace_concat)


def prepare(mod, target: TargetSpec, precision: str = "fp32"):
    """Precision (fp16: weights, activations and arithmetic in half precision, the model's input and
    output stay float32), channels-last layout, legalize (GELU with a vectorizable erf), fuse into TIR."""
    import tvm
    from tvm import relax

    check_precision(precision, target)
    half = [relax.transform.ToMixedPrecision(out_dtype="float16")] if precision == "fp16" else []
    passes = tvm.transform.Sequential(
        [
            *half,
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
    heuristic's elsewhere), the channel splits and concats as vector copies, the head as register tiles, the
    rest with `db`'s MetaSchedule records (an opened tvm Database, or None), the constant weights packed
    in the order the conv and head kernels read them, and the concats that can be assembled in place by
    their producers (their copies then unused and removed)."""
    import tvm
    from tvm import relax

    counts = ScheduleCounts(kernels=count_kernels(mod))
    mod, counts.conv_kernels, counts.measured_tiles = apply_conv_schedules(mod, target.tvm_target(), tiles)
    mod, counts.concat_kernels = apply_concat_schedules(mod, target.tvm_target())
    mod, counts.matvec_kernels = apply_matvec_schedules(mod, target.tvm_target())
    own = counts.conv_kernels + counts.concat_kernels + counts.matvec_kernels
    if db is not None:
        with target.tvm_target(), db, tvm.transform.PassContext(opt_level=3):
            mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
    counts.tuned_kernels = count_kernels(mod, scheduled_only=True) - own
    mod, counts.concats_in_place = write_concats_in_place(finish_packing(mod), target.tvm_target())
    return mod, counts


def count_kernels(mod, scheduled_only: bool = False) -> int:
    """TIR kernels in the module; with scheduled_only, those that carry a schedule."""
    from tvm import tirx

    return sum(
        1
        for func in mod.functions.values()
        if isinstance(func, tirx.PrimFunc) and (not scheduled_only or is_scheduled(func))
    )
