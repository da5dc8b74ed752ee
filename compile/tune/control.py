"""Interrupt handling and progress for MetaSchedule runs: Ctrl-C keeps every measured trial, tqdm shows them.

MetaSchedule commits a batch of trials to the database only when its task scheduler "joins" the task,
which for the first round over all tasks happens after every task was dispatched. So an interrupt must
not tear the scheduler down mid-flight: the first Ctrl-C only asks to stop, the next build or runner
call raises at a point where no record is half-handled, and commit_pending() then joins (commits) every
batch already measured. A second Ctrl-C aborts at once; each record is one appended line, so the
database stays valid either way.
"""

from __future__ import annotations

import contextlib
import signal
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class TuneState:
    """Shared by the wrappers below: stop request, per-task best latency, and the progress bar."""

    bar: object
    names: list[str]
    weights: list[float]
    stop_requested: bool = False
    aborted: bool = False
    failed_builds: int = 0  # of the batch in flight; counted as done once the batch is measured
    best_ms: dict[str, float] = field(default_factory=dict)

    def check_stop(self) -> None:
        """Raise KeyboardInterrupt at a safe point once a stop was asked for."""
        if self.stop_requested:
            raise KeyboardInterrupt

    @property
    def est_latency_ms(self) -> float | None:
        """Weighted sum of the best latencies of the kernels measured so far (a lower bound for the model)."""
        if not self.best_ms:
            return None
        weight = dict(zip(self.names, self.weights))
        return sum(weight[name] * ms for name, ms in self.best_ms.items())


@contextlib.contextmanager
def stop_on_sigint(state: TuneState) -> Iterator[None]:
    """First Ctrl-C: request a stop; second: abort now. Only the main thread can own SIGINT."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if state.stop_requested:
            state.aborted = True
            raise KeyboardInterrupt
        state.stop_requested = True
        print("\nstopping: keeping the trials measured so far (Ctrl-C again to abort now)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def checked_builder(inner, state: TuneState):
    """Builder that stops at a safe point on request and notes failed builds (trials nonetheless)."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import PyBuilder

    @derived_object
    class CheckedBuilder(PyBuilder):
        def build(self, build_inputs):
            state.check_stop()
            results = inner.build(build_inputs)
            state.failed_builds = sum(1 for r in results if r.error_msg is not None)
            return results

    return CheckedBuilder()


def synchronous_runner(inner, state: TuneState):
    """Runner that waits for its measurements before returning, so that what the scheduler holds
    unjoined is always fully measured (and commit_pending can keep it), and advances the bar."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.runner import PyRunner, RunnerFuture

    @derived_object
    class SynchronousRunner(PyRunner):
        def run(self, runner_inputs):
            state.check_stop()
            futures = inner.run(runner_inputs)
            while not all(f.done() for f in futures):
                state.check_stop()
                time.sleep(0.02)
            results = [f.result() for f in futures]
            state.bar.update(len(results) + state.failed_builds)
            state.failed_builds = 0
            return [RunnerFuture(lambda: True, lambda r=r: r) for r in results]

    return SynchronousRunner()


def callbacks(state: TuneState) -> list:
    """MetaSchedule's default callbacks (commit, clean up, train the cost model) plus progress; the cost
    model is not trained once a stop was asked for (it only matters to trials that will not happen)."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    update_cost_model = ms.measure_callback.UpdateCostModel()

    @derived_object
    class TrainUnlessStopping(PyMeasureCallback):
        def apply(self, task_scheduler, task_id, candidates, builder_results, runner_results) -> None:
            if not state.stop_requested:
                update_cost_model.apply(task_scheduler, task_id, candidates, builder_results, runner_results)

    @derived_object
    class Progress(PyMeasureCallback):
        def apply(self, task_scheduler, task_id, candidates, builder_results, runner_results) -> None:
            name = state.names[task_id]
            for result in runner_results:
                if result.error_msg is None and result.run_secs:
                    ms_ = statistics.median(float(s) for s in result.run_secs) * 1e3
                    state.best_ms[name] = min(ms_, state.best_ms.get(name, float("inf")))
            state.bar.set_postfix_str(
                f"best {state.est_latency_ms:.3f} ms over {len(state.best_ms)}/{len(state.names)} kernels"
            )

    return [
        ms.measure_callback.AddToDatabase(),
        ms.measure_callback.RemoveBuildArtifact(),
        TrainUnlessStopping(),
        Progress(),
    ]


def commit_pending(scheduler) -> None:
    """Join every task that holds measured but uncommitted trials (after an interrupt)."""
    for task_id, record in enumerate(scheduler.tasks_):
        if record.runner_futures is not None and not record.is_terminated:
            scheduler.join_running_task(task_id)
