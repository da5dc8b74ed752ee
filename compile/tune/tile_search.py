"""Measuring register tiles for the hand-scheduled conv kernels, on this machine or on a board behind an RPC
tracker, recorded in conv_tiles.json beside the MetaSchedule records (read back at build time by
repnext_core.compile.tvm.conv_tiles).

Both places time a candidate the same way (KernelTimer): the kernel is built standalone for the target,
loaded where it runs (in-process, or cross-linked, uploaded and loaded by the board's RPC server) and timed
there by TVM's time evaluator with the weights and outputs flushed from the caches before each call."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repnext_core.compile.device.tracker import Tracker, TrackerError
from repnext_core.compile.tune.measure import RUN_TIMEOUT_S, export_candidate
from repnext_core.compile.tvm.conv_schedule import (
    candidate_tiles,
    default_tile,
    schedule_conv,
    vector_unit,
)
from repnext_core.compile.tvm.conv_tiles import (
    FORMAT,
    TILES_FILE,
    conv_kernels,
    kernel_epilogue_lanes,
    workload_key,
)
from repnext_core.compile.tvm.inplace_concat import concat_fed_kernels
from repnext_core.compile.tvm.targets import TargetSpec, require_cross_compiler
from repnext_core.files import write_text_atomic

logger = logging.getLogger(__name__)

# Flushes every argument but the first (the input) from the CPU caches before each timed call, so the
# weights and outputs arrive cold as they do inside the model. TVM's runtime has it on x86 and aarch64.
FLUSH = "cache_flush_cpu_non_first_arg"
KERNEL_SO = "repnext_tile.so"

Timer = Callable[[object], float]  # scheduled PrimFunc -> median seconds per call


def search_tiles(
    mod,
    target,
    db_dir: str | os.PathLike,
    limit: int = 12,
    progress: bool = True,
    budget_s: float = 0.02,
    *,
    runner: str | Tracker = "local",
    timer: Timer | None = None,
) -> int:
    """Time up to `limit` candidate tiles of each conv kernel of `mod` and record the fastest in
    `db_dir`/conv_tiles.json (after each kernel, so an interrupted search keeps its results).

    `target` is a TargetSpec (or a tvm Target, for the local runner). runner "local" times the candidates
    on this machine; a Tracker times them on a board behind it (see make_timer); `timer` replaces both.
    Kernels already on record are skipped; returns how many were measured now. When the board goes away
    mid-run, a TrackerError says so and how many kernels are kept (the next run resumes after them).
    """
    from tqdm import tqdm

    tvm_target = target.tvm_target() if isinstance(target, TargetSpec) else target
    timer = timer or make_timer(target, runner, budget_s)
    path = Path(db_dir) / TILES_FILE
    data = json.loads(path.read_text()) if path.is_file() else {"format": FORMAT, "kernels": {}}
    todo = pending_kernels(mod, data)
    windowed = concat_fed_kernels(mod)
    bar = tqdm(total=len(todo), desc="conv tiles", unit="kernel", disable=not progress, dynamic_ncols=True)
    done = 0
    try:
        for key, (name, kernel, func) in todo.items():
            unit = vector_unit(tvm_target, kernel.dtype)
            try:
                timed = [
                    (timer(schedule_conv(func, t, "packed", kernel_epilogue_lanes(unit, name, windowed))), t)
                    for t in candidate_tiles(kernel, unit, limit)
                ]
            except TrackerError as e:
                raise TrackerError(
                    f"the conv tile search lost the board at kernel {name}: {e}. The tiles measured so far "
                    f"({done} of {len(todo)} kernels in this run) are kept in {path}; run the same command "
                    "again to resume after them"
                ) from e
            data["kernels"][key] = tile_record(name, timed, default_tile(kernel, unit))
            write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True))
            done += 1
            bar.update(1)
    finally:
        bar.close()
    return len(todo)


def pending_kernels(mod, data: dict) -> dict:
    """Workload key -> (name, ConvKernel, PrimFunc) of the conv kernels of `mod` not on record in `data`."""
    todo = {}
    for gv, (kernel, func) in conv_kernels(mod).items():
        key = workload_key(func)
        if key not in data["kernels"] and key not in todo:
            todo[key] = (gv.name_hint, kernel, func)
    return todo


def tile_record(name: str, timed: list[tuple[float, object]], default) -> dict:
    """The conv_tiles.json entry for one kernel from its (seconds, ConvTile) timings: the fastest tile,
    its time and the heuristic's (`default`, which is always among the candidates)."""
    best_s, best = min(timed, key=lambda r: r[0])
    default_s = next(s for s, t in timed if t == default)
    return {
        "name": name,
        "tile": best.to_json(),
        "ms": best_s * 1e3,
        "heuristic_ms": default_s * 1e3,
        "candidates": len(timed),
    }


def make_timer(target, runner: str | Tracker = "local", budget_s: float = 0.02) -> Timer:
    """The timer for `runner`: "local" runs the kernels in this process (host targets); a Tracker
    cross-links each one with the target's compiler, uploads it to a server behind the tracker (one
    session per candidate, like MetaSchedule's RPC runner) and times it there."""
    if isinstance(runner, Tracker):
        if not isinstance(target, TargetSpec):
            raise TypeError("timing conv tiles on a board needs the TargetSpec (for its cross compiler)")
        cross_cc = require_cross_compiler(target)
        return KernelTimer(target.tvm_target(), _on_board(runner, cross_cc), budget_s)
    if runner != "local":
        raise ValueError(f"runner must be 'local' or a Tracker, got {runner!r}")
    if isinstance(target, TargetSpec):
        if not target.is_host:
            raise ValueError(
                f"conv kernels for {target.name} cannot run on this machine: tune through an RPC tracker "
                "with a server on the board (--tracker HOST:PORT --key KEY)"
            )
        target = target.tvm_target()
    return KernelTimer(target, _in_process, budget_s)


# Where a built kernel runs: a context manager taking the built runtime module and yielding
# (module to time, its device, has_function(name) -> bool for the runtime that times it).
Loader = Callable[[object], contextlib.AbstractContextManager]


@dataclass
class KernelTimer:
    """Median seconds per call of a scheduled kernel built standalone, run by `load` on random inputs with
    the weights and outputs flushed from the caches before each call (only the input arrives warm); the
    number of calls fits `budget_s` (5 to 50)."""

    target: object
    load: Loader
    budget_s: float = 0.02
    preproc: str | None = None  # what ran before each timed call last time: FLUSH, or "" where missing

    def __call__(self, func) -> float:
        import tvm

        lib = tvm.tirx.build(
            tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=self.target
        )
        rng = np.random.default_rng(0)
        inputs = [rng.standard_normal([int(d) for d in p.shape]).astype(p.dtype) for p in func.params]
        with self.load(lib) as (module, dev, has_function):
            args = [tvm.runtime.tensor(a, dev) for a in inputs]
            once = module.time_evaluator("main", dev, number=1, repeat=1)(*args).mean  # after a warm-up call
            repeat = int(min(50, max(5, self.budget_s / max(once, 1e-7))))
            timer = module.time_evaluator(
                "main", dev, number=1, repeat=repeat, f_preproc=self._flush(has_function)
            )
            return float(np.median(timer(*args).results))

    def _flush(self, has_function) -> str:
        flush = FLUSH if has_function(FLUSH) else ""
        if not flush and self.preproc is None:  # warn once
            logger.warning(
                "the runtime that times the conv tiles has no %s: timing them with warm caches", FLUSH
            )
        self.preproc = flush
        return flush


@contextlib.contextmanager
def _in_process(lib) -> Iterator[tuple]:
    import tvm

    yield lib, tvm.cpu(), lambda name: tvm.get_global_func(name, allow_missing=True) is not None


def _on_board(tracker: Tracker, cross_cc: str | None) -> Loader:
    """Loader that links the kernel with `cross_cc`, opens a session behind `tracker`, uploads and loads it.
    Failures of the session (the board or its server gone, a session timeout) become a TrackerError."""

    @contextlib.contextmanager
    def load(lib) -> Iterator[tuple]:
        so = export_candidate(lib, cross_cc)
        try:
            remote = tracker.session(int(RUN_TIMEOUT_S))
            remote.upload(so, KERNEL_SO)
            yield remote.load_module(KERNEL_SO), remote.cpu(), lambda name: _remote_has(remote, name)
        except TrackerError:
            raise
        except (RuntimeError, OSError) as e:  # TVM's RPC and FFI errors are RuntimeErrors
            raise TrackerError(
                f"the RPC server behind tracker {tracker} stopped answering while a conv kernel was timed "
                f"({first_line(e)})"
            ) from e
        finally:
            shutil.rmtree(os.path.dirname(so), ignore_errors=True)

    return load


def _remote_has(remote, name: str) -> bool:
    try:
        return remote.get_function(name) is not None
    except AttributeError:  # "Module has no function ..."; a lost session raises a RuntimeError
        return False


def first_line(error: BaseException) -> str:
    """The error's type and first non-empty line (TVM's messages carry a C++ traceback after it)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
