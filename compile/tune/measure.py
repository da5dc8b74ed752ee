"""MetaSchedule builder and runners: fast candidate builds, (cross-)linked .so files, local or RPC timing."""

from __future__ import annotations

import os
import tempfile

from repnext_core.compile.device.tracker import Tracker
from repnext_core.compile.tvm.targets import TargetSpec, require_cross_compiler

# One candidate's build is ~1-3 s; the default 30 s only trips on a loaded machine, so allow more.
BUILD_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 60.0
# Build workers are reused across batches (starting one imports TVM, 5-10 s), but recycled now and
# then because TVM's pool workers leak memory over many builds.
WORKER_USES = 64


def build_candidate(mod, target, _params=None):
    """Compile one scheduled TIR candidate.

    MetaSchedule's default build function imports tvm.s_tir.tensor_intrin in every worker (30-80 s,
    mostly CUDA intrinsics), which exceeds the build timeout; CPU candidates need none of it.
    """
    import tvm
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm.tirx.build(mod, target=target)


def export_candidate(rt_mod, cross_cc: str | None = None) -> str:
    """Link a candidate into a .so (with the cross compiler for ARM), so runners load it without linking."""
    from tvm.support import cc

    fcompile = cc.cross_compiler(cross_cc) if cross_cc else cc.create_shared
    path = os.path.join(tempfile.mkdtemp(prefix="repnext_ms_"), "candidate.so")
    rt_mod.export_library(path, fcompile=fcompile)
    return path


def build_job(job: tuple) -> str:
    """Worker entry point: build one (mod, target, cross_cc) candidate and return the .so path."""
    mod, target, cross_cc = job
    return export_candidate(build_candidate(mod, target), cross_cc)


def make_builder(spec: TargetSpec, max_workers: int | None = None):
    """A MetaSchedule builder with the fast build function, the target's linker and long-lived workers.

    TVM's LocalBuilder starts fresh workers for every batch, which costs more than the builds themselves
    when batches are small.
    """
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

    cross_cc = require_cross_compiler(spec)
    pool = PopenPoolExecutor(
        max_workers=max_workers or os.cpu_count() or 1,
        timeout=BUILD_TIMEOUT_S,
        maximum_process_uses=WORKER_USES,
    )

    def result(outcome) -> BuilderResult:
        if outcome.status == StatusKind.COMPLETE:
            return BuilderResult(outcome.value, None)
        if outcome.status == StatusKind.TIMEOUT:
            return BuilderResult(None, f"build timed out after {BUILD_TIMEOUT_S:g} s")
        return BuilderResult(None, f"build failed: {outcome.value}")

    @derived_object
    class PooledBuilder(PyBuilder):
        def build(self, build_inputs):
            jobs = [(i.mod, i.target, cross_cc) for i in build_inputs]
            return [result(outcome) for outcome in pool.map_with_error_catching(build_job, jobs)]

    return PooledBuilder()


def make_runner(spec: TargetSpec, runner: str | Tracker = "local"):
    """'local' times candidates on this machine; a Tracker times them on the board behind the tracker."""
    from tvm.s_tir import meta_schedule as ms

    config = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=50, enable_cpu_cache_flush=False)
    if isinstance(runner, Tracker):
        runner.check()
        rpc_config = ms.runner.RPCConfig(
            tracker_host=runner.host,
            tracker_port=runner.port,
            tracker_key=runner.key,
            session_timeout_sec=int(RUN_TIMEOUT_S),
        )
        return ms.runner.RPCRunner(rpc_config, config)
    if runner != "local":
        raise ValueError(f"runner must be 'local' or a Tracker, got {runner!r}")
    if not spec.is_host:
        raise ValueError(
            f"candidates for {spec.name} cannot run on this machine: tune through an RPC tracker with a "
            "server on the board (--tracker HOST:PORT --key KEY)"
        )
    return ms.runner.LocalRunner(timeout_sec=RUN_TIMEOUT_S, evaluator_config=config)
