"""MetaSchedule tuning into a persistent per-(variant, shape, target) database, resumable and interruptible."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from repnext_core.compile.device.tracker import Tracker
from repnext_core.compile.tune import control
from repnext_core.compile.tune import database as tuning_db
from repnext_core.compile.tune.measure import make_builder, make_runner
from repnext_core.compile.tune.tile_search import search_tiles
from repnext_core.compile.tvm.build import TargetLike
from repnext_core.compile.tvm.concat_schedule import match_concat, match_split
from repnext_core.compile.tvm.conv_schedule import match_conv
from repnext_core.compile.tvm.importer import import_model, main_signature
from repnext_core.compile.tvm.matmul_schedule import match_matvec
from repnext_core.compile.tvm.pipeline import check_precision, compute_dtype, prepare
from repnext_core.compile.tvm.targets import TargetSpec, resolve_target

logger = logging.getLogger(__name__)

MS_LOGGER = "tvm.s_tir.meta_schedule"


@dataclass
class TuneReport:
    """What a tuning run did and where its records are."""

    db_dir: Path
    trials_requested: int
    records_before: int
    records_after: int
    tasks: int
    interrupted: bool = False
    est_latency_ms: float | None = None
    seconds: float = 0.0
    task_best_ms: dict[str, float] = field(default_factory=dict)
    conv_tiles_measured: int = 0

    @property
    def trials_run(self) -> int:
        """Trials measured (and committed) by this run."""
        return self.records_after - self.records_before


def tune(
    model_or_mod: nn.Module | object,
    target: TargetLike,
    trials: int,
    work_dir: str | os.PathLike,
    *,
    input_shape: Sequence[int] | None = None,
    variant: str = "model",
    runner: str | Tracker = "local",
    num_trials_per_iter: int | None = None,
    max_workers: int | None = None,
    population: int | None = None,
    seed: int | None = None,
    progress: bool = True,
    tile_candidates: int = 12,
    precision: str = "fp32",
) -> TuneReport:
    """Tune `trials` more candidates for the model on `target`, extending its database under `work_dir`.

    First the conv kernels' register tiles: up to `tile_candidates` each, timed where the runner times
    (this machine, or the board behind the tracker), kernels already on record skipped. Then MetaSchedule
    on the other kernels: the gradient-based task scheduler spends trials on those whose tuning cuts the weighted
    model latency most. Records are appended to the database as the scheduler collects each measured batch;
    on Ctrl-C every batch measured so far is collected first (the report then says interrupted=True).
    """
    from tvm.s_tir import meta_schedule as ms

    t0 = time.perf_counter()
    spec = resolve_target(target)
    check_precision(precision, spec)
    # Both check their setup (cross compiler, tracker, runnable here), so bad setups fail before the work.
    builder, measurer = make_builder(spec, max_workers), make_runner(spec, runner)
    mod = _as_module(model_or_mod, input_shape)
    shape, _, _ = main_signature(mod)
    key = tuning_db.key_for(variant, shape, compute_dtype(precision), spec)
    path = tuning_db.db_dir(work_dir, key)
    database = tuning_db.open_for(path, key, create=True)
    before = tuning_db.count_records(path)

    prepared = prepare(mod, spec, precision)
    report = TuneReport(path, trials, before, before, 0)
    if tile_candidates > 0:  # on this machine (host) or on the board behind the tracker
        report.conv_tiles_measured = search_tiles(
            prepared, spec, path, limit=tile_candidates, progress=progress, runner=runner
        )
    tasks = _heaviest_first(tunable(ms.relax_integration.extract_tasks(prepared, spec.tvm_target())))
    report.tasks = len(tasks)
    if trials <= 0 or not tasks:
        report.seconds = time.perf_counter() - t0
        return report
    per_iter = num_trials_per_iter or _trials_per_iter(trials, len(tasks))
    logger.info("tuning %d trials over %d kernels, %d per step, into %s", trials, len(tasks), per_iter, path)
    register_cpu_intrinsics(spec)
    # MetaSchedule prints its statistics tables at INFO; keep them in the log files, not on the console.
    logging.getLogger(MS_LOGGER).setLevel(logging.WARNING)
    _drop_ms_log_handlers()
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
        tasks, work_dir=str(path), strategy=_search_strategy(per_iter, population), seed=seed
    )
    names = [str(c.task_name) for c in contexts]
    weights = [float(w) for w in weights]
    state = control.TuneState(_progress_bar(trials, spec.name, progress), names, weights)
    scheduler = ms.task_scheduler.TaskScheduler.create("gradient")
    with control.stop_on_sigint(state):
        try:
            ms.tune.tune_tasks(
                tasks=contexts,
                task_weights=weights,
                work_dir=str(path),
                max_trials_global=trials,
                num_trials_per_iter=per_iter,
                builder=control.checked_builder(builder, state),
                runner=control.synchronous_runner(measurer, state),
                database=database,
                measure_callbacks=control.callbacks(state),
                task_scheduler=scheduler,
            )
        except BaseException:
            # The FFI re-raises a KeyboardInterrupt from inside a Python callback as a bare RuntimeError,
            # so the stop request, not the exception type, says whether this was Ctrl-C.
            if not state.stop_requested:
                raise
            report.interrupted = True
            if not state.aborted:
                with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C while committing
                    control.commit_pending(scheduler)
        finally:
            state.bar.close()
            _drop_ms_log_handlers()
    report.task_best_ms = dict(state.best_ms)
    report.est_latency_ms = state.est_latency_ms
    report.records_after = tuning_db.count_records(path)
    report.seconds = time.perf_counter() - t0
    return report


def _as_module(model_or_mod, input_shape: Sequence[int] | None):
    """The Relax IRModule to tune: given as is, or imported from a torch model at input_shape."""
    if not isinstance(model_or_mod, nn.Module):
        return model_or_mod
    if input_shape is None:
        raise ValueError("tuning a torch model needs input_shape")
    return import_model(model_or_mod, input_shape)


def register_cpu_intrinsics(spec: TargetSpec) -> None:
    """Register only the CPU tensor intrinsics that MetaSchedule's CPU schedule rules refer to.

    TuneContext imports tvm.s_tir.tensor_intrin, whose CUDA/ROCm/Hexagon parts take 30-90 s to parse
    and are never used for CPU targets; entering the package as already imported (its submodules stay
    importable) skips them.
    """
    import importlib
    import importlib.util
    import sys

    name = "tvm.s_tir.tensor_intrin"
    if name not in sys.modules:
        package = importlib.util.module_from_spec(importlib.util.find_spec(name))
        sys.modules[name] = package
        sys.modules["tvm.s_tir"].tensor_intrin = package
    triple = str(spec.target.get("mtriple", ""))
    importlib.import_module(f"{name}.{'arm_cpu' if triple.startswith(('aarch64', 'arm')) else 'x86'}")


def _drop_ms_log_handlers() -> None:
    """Close MetaSchedule's per-run log files (one per task) and handlers.

    Each run configures its loggers with logging.config.dictConfig, which keeps the files open for the
    life of the process and chokes on handlers it did not name (pytest's, a previous run's leftovers).
    """
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith(MS_LOGGER) and isinstance(logger, logging.Logger):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
                handler.close()


_OWN_SCHEDULES = (match_conv, match_concat, match_split, match_matvec)


def tunable(tasks: list) -> list:
    """The extracted tasks MetaSchedule tunes: not the conv kernels, the channel splits and concats or the
    head, which have their own schedules (conv_schedule, concat_schedule, matmul_schedule) that the build
    applies before any record."""
    return [t for t in tasks if not any(match(t.dispatched[0]["main"]) for match in _OWN_SCHEDULES)]


def _heaviest_first(tasks: list) -> list:
    """Order tasks by weighted FLOPs: the scheduler's first round goes in task order, so with a small
    budget the trials land on the kernels that dominate the model's time."""
    from tvm.s_tir.analysis import estimate_tir_flops

    return sorted(tasks, key=lambda t: -float(t.weight) * float(estimate_tir_flops(t.dispatched[0])))


def _trials_per_iter(trials: int, n_tasks: int) -> int:
    """Batch size per scheduler step: small budgets are spread over many tasks, large ones use TVM's 64."""
    return max(4, min(64, trials // max(1, n_tasks)))


def _search_strategy(per_iter: int, population: int | None):
    """Evolutionary search sized to the batch: scoring TVM's 512-candidate population costs ~10-30 s a
    batch on 2 cores, which dwarfs the measurements when only a few trials per task are asked for."""
    from tvm.s_tir import meta_schedule as ms

    size = population or max(64, min(512, 16 * per_iter))
    return ms.search_strategy.EvolutionarySearch(population_size=size, init_min_unmeasured=min(50, size // 2))


def _progress_bar(total: int, target_name: str, enabled: bool):
    """tqdm over trials; the postfix shows the best weighted latency of the kernels measured so far."""
    from tqdm import tqdm

    return tqdm(
        total=total, desc=f"tuning for {target_name}", unit="trial", disable=not enabled, dynamic_ncols=True
    )
