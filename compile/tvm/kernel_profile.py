"""Where a built model's time goes: each kernel call of the Relax VM timed through the VM's instrument hook.

The hook wraps every call the VM makes (TIR kernels and builtins alike), so the per-call Python cost of the
hook is left out of each kernel's time but not of the whole run; `instrumented_ms` against `plain_ms`
says how much it adds. With more than one thread, the hook's pause between calls lets TVM's pool workers
sleep, so a short parallel kernel's time includes waking them (M4 on 2 threads of an AMD Zen 4: the
channel splits 3x their 1-thread time in the profile, while running them on one thread changed the whole
model's time by under 1%): read short kernels at 1 thread.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

# Blocks whose reduction is multiply-accumulates: the legalized convs (conv2d_nhwc, group_conv2d_nhwc for
# depthwise) and the head's matmul; pooling's reduction is not.
_MAC_BLOCK = re.compile(r"^((group_)?conv2d|matmul)")


def kernel_macs(mod) -> dict[str, int]:
    """Multiply-accumulates per call of each TIR kernel of `mod` that has a conv or matmul block: the
    product of that block's iteration extents, which scheduling keeps, so it can be read after it."""
    from tvm import tirx
    from tvm.s_tir import Schedule

    macs = {}
    for gv, func in mod.functions.items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        sch = Schedule(func)
        total = 0
        for ref in sch.get_child_blocks(sch.get_sblock("root")):
            block = sch.get(ref)
            if _MAC_BLOCK.match(block.name_hint) and any(
                iv.iter_type == tirx.IterVar.CommReduce for iv in block.iter_vars
            ):
                total += int(np.prod([int(iv.dom.extent) for iv in block.iter_vars]))
        if total:
            macs[gv.name_hint] = total
    return macs


@dataclass
class KernelTime:
    """One kernel's calls and time per inference (median over the profiled runs); `macs` per call where
    the kernel is a conv or matmul (from the artifact's meta.json)."""

    name: str
    calls: int
    ms: float
    macs: int | None = None

    @property
    def gflops(self) -> float | None:
        """Its arithmetic rate, 2 x MACs per second, in GFLOP/s."""
        return 2 * self.macs * self.calls / (self.ms * 1e6) if self.macs and self.ms > 0 else None


@dataclass
class KernelProfile:
    """Per-kernel times of one model run, slowest first, and the run's own times."""

    kernels: list[KernelTime]
    plain_ms: float  # median of uninstrumented runs
    instrumented_ms: float  # median of the profiled runs, hook included
    runs: int
    threads: int = 1
    builtins: list[KernelTime] = field(default_factory=list)  # VM builtins (allocation, shape checks)

    @property
    def kernel_ms(self) -> float:
        """Time inside the model's kernels per inference."""
        return sum(k.ms for k in self.kernels)


def profile_vm(
    vm,
    x: np.ndarray,
    runs: int = 10,
    kernel_names: set[str] | None = None,
    threads: int = 1,
    macs: dict[str, int] | None = None,
) -> KernelProfile:
    """Time every call `vm["main"](x)` makes, `runs` times after a warm-up, and the uninstrumented run.

    `kernel_names` (the module's TIR kernels) sets the model's kernels apart from VM builtins; without it,
    every symbol not starting with "vm." counts as a kernel. `threads` (the pool's size) is recorded only;
    `macs` (kernel name -> MACs per call, see kernel_macs) gives the kernels their GFLOP/s.
    """
    import tvm

    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    arg = tvm.runtime.tensor(np.ascontiguousarray(x))
    main = vm["main"]
    main(arg)
    plain = []
    for _ in range(runs):
        t0 = time.perf_counter()
        main(arg)
        plain.append(time.perf_counter() - t0)

    per_run: list[dict[str, float]] = []
    calls: dict[str, int] = defaultdict(int)
    started: list[float] = []
    current: dict[str, float] = defaultdict(float)

    def instrument(func, symbol, before_run, ret_value, *args):
        if before_run:
            started.append(time.perf_counter())
        else:
            current[symbol] += time.perf_counter() - started.pop()
            calls[symbol] += 1
        return 0

    vm.set_instrument(instrument)
    whole = []
    try:
        for _ in range(runs):
            current.clear()
            t0 = time.perf_counter()
            main(arg)
            whole.append(time.perf_counter() - t0)
            per_run.append(dict(current))
    finally:
        vm.set_instrument(None)

    def is_kernel(name: str) -> bool:
        return name in kernel_names if kernel_names is not None else not name.startswith("vm.")

    macs = macs or {}
    rows = [
        KernelTime(
            name,
            calls[name] // runs,
            float(np.median([r.get(name, 0.0) for r in per_run])) * 1e3,
            macs.get(name),
        )
        for name in calls
    ]
    rows.sort(key=lambda k: -k.ms)
    return KernelProfile(
        kernels=[k for k in rows if is_kernel(k.name)],
        builtins=[k for k in rows if not is_kernel(k.name)],
        plain_ms=float(np.median(plain)) * 1e3,
        instrumented_ms=float(np.median(whole)) * 1e3,
        runs=runs,
        threads=threads,
    )


def format_profile(profile: KernelProfile, top: int | None = None, sgemm_gflops: float | None = None) -> str:
    """The table `repnext profile` prints: slowest kernels first, with their share of kernel time and, for
    convs and matmuls, their GFLOP/s (and its fraction of `sgemm_gflops`, a same-run sgemm rate, not the FMA peak: see bench/fma_peak.c)."""
    from repnext_core.table import format_table

    total = profile.kernel_ms or float("nan")
    shown = profile.kernels if top is None else profile.kernels[:top]

    def rate(gflops: float | None) -> list[str]:
        cells = ["-" if gflops is None else f"{gflops:.1f}"]
        if sgemm_gflops:
            cells.append("-" if gflops is None else f"{gflops / sgemm_gflops:.2f}")
        return cells

    rows = [[k.name, str(k.calls), f"{k.ms:.3f}", f"{k.ms / total:.1%}", *rate(k.gflops)] for k in shown]
    rest = profile.kernels[len(shown) :]
    if rest:
        ms = sum(k.ms for k in rest)
        calls = sum(k.calls for k in rest)
        rows.append(
            [f"({len(rest)} more kernels)", str(calls), f"{ms:.3f}", f"{ms / total:.1%}", *rate(None)]
        )
    builtin_ms = sum(k.ms for k in profile.builtins)
    head = (
        f"{len(profile.kernels)} kernels, {sum(k.calls for k in profile.kernels)} calls per inference; "
        f"kernels {profile.kernel_ms:.3f} ms, VM builtins {builtin_ms:.3f} ms; "
        f"whole run {profile.plain_ms:.3f} ms ({profile.instrumented_ms:.3f} ms with the hook); "
        f"medians of {profile.runs} runs"
    )
    if sgemm_gflops:
        head += f"; same-run sgemm: {sgemm_gflops:.1f} GFLOP/s"
    if profile.threads > 1:
        head += "; with several threads, short kernels include waking the pool after the hook's pause"
    columns = ["kernel", "calls", "ms", "share", "GFLOP/s"] + (["of sgemm"] if sgemm_gflops else [])
    return head + "\n" + format_table(columns, rows)
