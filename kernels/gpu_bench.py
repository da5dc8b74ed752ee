"""GPU benchmark in one command: `make bench-gpu` (bench/gpu_bench.py) or `run_gpu_benchmark(out_md)`.

Token mixers, at every layer shape of M0-M5 at 224x224 (batch 1 and 64, fp16 and fp32, NCHW and
channels_last): our one-launch kernels against PyTorch's multi-branch path (chunk -> 4 convs -> cat) and
against one PyTorch depthwise conv of the same reach (11x11 for a block, 2 x 7x7 per channel for a
downsample). Whole fused models M0/M1/M4 at 224: eager fp32 / fp16 / fp16 channels_last on both backends,
CUDA graphs of the eager models, torch.compile with and without our ops. Every timed form's output is
checked (kernels against their references, models against the fp32 PyTorch model) and the Markdown table
goes to `out_md`. A time budget keeps the run within 5 minutes on one GPU: rows that do not fit are listed
as skipped. Without CUDA it says so, runs its own plumbing on CPU for one tiny shape, and returns 0.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from repnext_core.table import format_table

from .aot import RESOLUTIONS, VARIANT_DIMS
from .chunk_conv import chunk_dwconv, chunk_dwconv_reference
from .copy_conv import copy_dwconv, copy_dwconv_reference

BUDGET_S = 270.0  # the whole run, models included; 30 s left for start-up and writing
QUICK_BUDGET_S = 90.0
MIXER_SHARE = 0.5  # of the budget, for the token mixers; the models get the rest
MODELS = ("repnext_m0", "repnext_m1", "repnext_m4")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
LAYOUTS = ("nchw", "channels_last")
# (dtype, layout) of the token-mixer rows, in the order they run
MIXER_FORMS = (("fp16", "channels_last"), ("fp16", "nchw"), ("fp32", "nchw"), ("fp32", "channels_last"))


@dataclass
class Clock:
    """Deadline bookkeeping: what ran, what was skipped for time."""

    budget_s: float
    start: float = field(default_factory=time.perf_counter)
    skipped: list[str] = field(default_factory=list)

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)


def layer_shapes(variants: list[str]) -> list[tuple[str, int, int]]:
    """(op, channels, size) of every token mixer of `variants` ("m0".."m5") at 224x224, deduplicated."""
    shapes = set()
    for v in variants:
        for i, (c, s) in enumerate(zip(VARIANT_DIMS[v], RESOLUTIONS)):
            shapes.add(("chunk", c, s))
            if i < 3:
                shapes.add(("copy", c, s))
    return sorted(shapes, key=lambda t: (t[0], -t[2], t[1]))


def make_inputs(op: str, n: int, c: int, s: int, dtype: torch.dtype, device: str, layout: str) -> tuple:
    """Seeded input (in `layout`) and weights of one layer."""
    g = torch.Generator().manual_seed(0)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    x = r(n, c, s, s)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    if op == "chunk":
        q = c // 4
        return x, [r(q, 1, 3, 3), r(q), r(q, 1, 7, 7), r(q), r(q, 1, 1, 11), r(q), r(q, 1, 11, 1), r(q)]
    return x, [r(c, 1, 3, 3), r(c), r(c, 1, 7, 7), r(c)]


def multi_branch(op: str, x: torch.Tensor, w: list) -> torch.Tensor:
    """The unfused PyTorch path: chunk/copy, one conv per branch, torch.cat."""
    if op == "copy":
        c = x.shape[1]
        return torch.cat(
            (F.conv2d(x, w[0], w[1], 2, 1, groups=c), F.conv2d(x, w[2], w[3], 2, 3, groups=c)), 1
        )
    i, s, m, l = torch.chunk(x, 4, dim=1)
    q = s.shape[1]
    l = F.conv2d(F.conv2d(l, w[4], w[5], padding=(0, 5), groups=q), w[6], w[7], padding=(5, 0), groups=q)
    s = F.conv2d(s, w[0], w[1], padding=1, groups=q)
    return torch.cat((i, s, F.conv2d(m, w[2], w[3], padding=3, groups=q), l), 1)


def single_conv(op: str, x: torch.Tensor) -> Callable:
    """One PyTorch depthwise conv of the op's reach: 11x11 over all C (block), 2 x 7x7 per channel (down)."""
    c = x.shape[1]
    g = torch.Generator().manual_seed(1)
    if op == "copy":
        k, b = torch.randn(2 * c, 1, 7, 7, generator=g).to(x), torch.randn(2 * c, generator=g).to(x)
        return lambda x, w: F.conv2d(x, k, b, 2, 3, groups=c)
    k, b = torch.randn(c, 1, 11, 11, generator=g).to(x), torch.randn(c, generator=g).to(x)
    return lambda x, w: F.conv2d(x, k, b, 1, 5, groups=c)


OURS = {"chunk": lambda x, w: chunk_dwconv(x, *w), "copy": lambda x, w: copy_dwconv(x, *w)}
REFERENCE = {
    "chunk": lambda x, w: chunk_dwconv_reference(x, *w),
    "copy": lambda x, w: copy_dwconv_reference(x, *w),
}


def time_ms(fn: Callable[[], object], device: str, rounds: int = 5) -> float:
    """Median ms of one call: CUDA events over a batch of back-to-back calls per round (CPU: perf_counter)."""
    for _ in range(2):
        fn()  # warm-up: JIT compile, autotune, allocator
    if device != "cuda":
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    reps = max(1, min(50, math.ceil(2e-3 / max(time.perf_counter() - t0, 1e-6))))  # about 2 ms a round
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / reps)
    return statistics.median(times)


def max_err_ok(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> tuple[bool, float]:
    """Within one output rounding of the fp32 reference (fp32: the project's 1e-4 relative bound)."""
    if out.shape != ref.shape or not torch.isfinite(out).all():
        return False, float("inf")
    scale = ref.float().abs().max().item() + 1.0
    err = (out.float() - ref.float()).abs().max().item()
    bound = (1e-4 if dtype == torch.float32 else 2e-2) * scale
    return err <= bound, err


def mixer_row(
    op: str, c: int, s: int, n: int, dt: str, layout: str, device: str, ours: bool = True
) -> list[object]:
    """One table row: ms of ours / multi-branch / single-conv, speed-up, output check."""
    dtype = DTYPES[dt]
    x, w = make_inputs(op, n, c, s, dtype, device, layout)
    ref = REFERENCE[op](x, w)
    single_fn = single_conv(op, x)
    forms: dict[str, Callable] = {
        "multi": lambda: multi_branch(op, x, w),
        "single": lambda: single_fn(x, w),
    }
    ok, err = max_err_ok(multi_branch(op, x, w), ref, dtype)
    if ours:
        out = OURS[op](x, w)
        good, e = max_err_ok(out, ref, dtype)
        layout_ok = out.is_contiguous(
            memory_format=torch.channels_last if layout == "channels_last" else torch.contiguous_format
        )
        ok, err = ok and good and layout_ok, max(err, e)
        forms = {"ours": lambda: OURS[op](x, w), **forms}
    with torch.inference_mode():
        ms = {k: time_ms(f, device) for k, f in forms.items()}
    speed = f"{ms['multi'] / ms['ours']:.2f}x" if "ours" in ms else "-"
    cells = [f"{ms[k]:.4f}" if k in ms else "-" for k in ("ours", "multi", "single")]
    return [op, c, f"{s}x{s}", dt, layout, n, *cells, speed, "ok" if ok else f"FAIL ({err:.2e})"]


MIXER_HEADERS = ["op", "C", "HxW", "dtype", "layout", "N", "ours ms", "multi-branch ms", "single-conv ms"]
MIXER_HEADERS += ["ours vs multi-branch", "check"]
MODEL_HEADERS = ["model", "form", "dtype", "layout", "N", "ms", "images/s", "check"]


def model_rows(
    name: str,
    n: int,
    device: str,
    clock: Clock,
    kinds: tuple[str, ...] = ("eager",),
    backends: tuple[str, ...] = ("torch", "triton"),
) -> list[list]:
    """Rows of one fused model, checked against its fp32 PyTorch form. kinds: "eager" (fp32, fp16, fp16
    channels_last), "graphs" (CUDA graphs of the eager fp16 models), "compile" (torch.compile, fp16
    channels_last, with our ops on the triton backend and without them on the torch one)."""
    import copy

    from repnext_core import create_model, set_backend

    size = 224 if device == "cuda" else 32
    torch.manual_seed(0)
    base = create_model(name, fused=True, backend="torch").eval().to(device)
    x32 = torch.randn(n, 3, size, size, device=device)
    with torch.inference_mode():
        ref = base(x32)
    rows = []
    for backend in backends:
        for dt, layout in (("fp32", "nchw"), ("fp16", "nchw"), ("fp16", "channels_last")):
            fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            forms: dict[str, Callable] = {}
            model = set_backend(copy.deepcopy(base).to(device, DTYPES[dt], memory_format=fmt), backend)
            x = x32.to(DTYPES[dt]).contiguous(memory_format=fmt)
            ours = "ours" if backend == "triton" else "torch"
            if "eager" in kinds:
                forms[f"eager {ours}"] = model
            if "graphs" in kinds and dt == "fp16":
                forms[f"CUDA graph {ours}"] = lambda x, model=model: cuda_graph(model, x)
            if "compile" in kinds and layout == "channels_last":
                forms[f"torch.compile {ours}"] = lambda x, model=model: compiled(model, x)
            for form, fn in forms.items():
                label = f"{name} {form} {dt} {layout} N={n}"
                if clock.left() <= 0:
                    clock.skipped.append(label)
                    continue
                if not form.startswith("eager"):
                    fn = fn(x)  # capture / compile now, on this input
                with torch.no_grad():
                    ok, err = max_err_ok(fn(x).float(), ref, DTYPES[dt])
                    ms = time_ms(lambda fn=fn, x=x: fn(x), device)
                check = "ok" if ok else f"FAIL ({err:.2e})"
                rows.append([name, form, dt, layout, n, f"{ms:.3f}", f"{n / ms * 1e3:.0f}", check])
                print(label, f"{ms:.3f} ms", check, file=sys.stderr)
    return rows


def compiled(model: torch.nn.Module, x: torch.Tensor) -> Callable:
    """torch.compile (Inductor, default mode) of the model, compiled on x before it is timed."""
    torch._dynamo.reset()
    fn = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        fn(x)
    return fn


def cuda_graph(model: torch.nn.Module, x: torch.Tensor) -> Callable:
    """The model captured in one CUDA graph (warmed up first, so Triton's autotuning is done)."""
    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.no_grad():
        for _ in range(3):
            model(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        static_y = model(static_x)

    def run(inp: torch.Tensor) -> torch.Tensor:
        static_x.copy_(inp)
        graph.replay()
        return static_y

    return run


def report(mixers: list[list], models: list[list], clock: Clock, device: str) -> str:
    """The Markdown document."""
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU (plumbing check only)"
    lines = [
        "# GPU benchmark: token mixers and fused models",
        "",
        f"Device: {name}; torch {torch.__version__}; generated by `make bench-gpu` "
        f"in {time.perf_counter() - clock.start:.0f} s.",
        "Median ms of one call (CUDA events over back-to-back calls). `ours` is the one-launch Triton",
        "kernel (torch.ops.repnext.*), `multi-branch` PyTorch's chunk -> 4 convs -> cat, `single-conv`",
        "one PyTorch depthwise conv of the same reach (11x11 for a block, 2 x 7x7 for a downsample).",
        "`check`: output within one rounding of the fp32 reference (models: of the fp32 PyTorch model).",
        "",
        "## Token mixers (M0-M5 layer shapes at 224x224)",
        "",
        format_table(MIXER_HEADERS, mixers) if mixers else "(none ran)",
        "",
        "## Fused models at 224x224",
        "",
        format_table(MODEL_HEADERS, models) if models else "(none ran)",
        "",
    ]
    if clock.skipped:
        lines += ["## Skipped for the time budget", "", *[f"- {s}" for s in clock.skipped], ""]
    return "\n".join(lines)


def failures(rows: list[list]) -> int:
    return sum(1 for r in rows if str(r[-1]).startswith("FAIL"))


def kernels_run_here() -> bool:
    """True when our kernels can run on CPU tensors here (Triton installed, interpreter on)."""
    from ._common import is_interpreted, triton_available
    from .dwconv import _dwconv_kernel

    return triton_available() and is_interpreted(_dwconv_kernel)


def plumbing_check() -> tuple[str, int]:
    """Without CUDA: the same row builders and report on CPU for one tiny shape (the torch path, and our
    kernels too when Triton's interpreter is on), so that a GPU run does not fail on its own plumbing.
    Returns the report and the number of failed output checks."""
    clock = Clock(120.0)
    ours = kernels_run_here()
    mixers = [mixer_row(op, 8, 8, 1, "fp32", lay, "cpu", ours) for op in ("chunk", "copy") for lay in LAYOUTS]
    models = model_rows("repnext_m0", 1, "cpu", clock, backends=("torch",))
    return report(mixers, models, clock, "cpu"), failures(mixers) + failures(models)


def run_gpu_benchmark(out_md: Path, quick: bool = False) -> int:
    """Run the benchmark and write `out_md`; 1 if an output check fails, else 0 (also without CUDA, after
    checking the benchmark's own plumbing on CPU)."""
    out_md = Path(out_md)
    if not torch.cuda.is_available():
        print("no CUDA device: the GPU benchmark needs one. Checking its plumbing on CPU instead.")
        text, bad = plumbing_check()
        print(text)
        print(f"plumbing {'FAILED' if bad else 'ok'}; {out_md} left unchanged")
        return 1 if bad else 0
    from ._common import require_triton

    require_triton()
    clock = Clock(QUICK_BUDGET_S if quick else BUDGET_S)
    mixer_clock = Clock(clock.budget_s * MIXER_SHARE, start=clock.start)
    variants = ["m0"] if quick else list(VARIANT_DIMS)
    batches = (1, 64)
    mixers = []
    # What a GPU deployment runs first (fp16 channels_last), so the budget cuts the least used forms; batch
    # 64 before 1: it is what throughput users run, and it autotunes the same keys batch 1 reuses.
    for dt, layout in MIXER_FORMS:
        for op, c, s in layer_shapes(variants):
            for n in sorted(batches, reverse=True):
                label = f"{op} C={c} {s}x{s} {dt} {layout} N={n}"
                if mixer_clock.left() <= 0:
                    clock.skipped.append(label)
                    continue
                mixers.append(mixer_row(op, c, s, n, dt, layout, "cuda"))
                print(label, mixers[-1][6:], file=sys.stderr)
    models = []
    names = MODELS[:1] if quick else MODELS
    for name in names:  # eager everywhere, CUDA graphs at batch 1 (where launches dominate)
        for n in batches:
            models += model_rows(name, n, "cuda", clock, ("eager", "graphs") if n == 1 else ("eager",))
    # compiles last: the slowest to set up, skipped first when time runs out (M1, the middle size, first)
    for name in sorted(names, key=lambda m: m != "repnext_m1"):
        models += model_rows(name, 64, "cuda", clock, ("compile",))
    text = report(mixers, models, clock, "cuda")
    out_md.write_text(text)
    print(text)
    bad = failures(mixers) + failures(models)
    print(f"wrote {out_md}; {bad} output check(s) failed", file=sys.stderr)
    return 1 if bad else 0
