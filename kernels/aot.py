"""Ahead-of-time compilation of every kernel configuration RepNeXt M0-M5 use at 224x224, without a GPU.

For each layer shape the model runs, the same planner as the real launch lays out the arguments (on
meta tensors), Triton's own JIT binder derives the exact specialization a GPU launch would get, and
`triton.compile` builds PTX and cubin for sm_80 / sm_90. ptxas' verbose log gives registers and spills;
the metadata gives shared memory; the PTX gives the count of (vectorized) global loads and stores.
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import torch

from repnext_core.model import VARIANTS

from ._common import FP_FUSION, Launch, TileConfig, is_interpreted, require_triton

ARCHS = {"sm_80": 80, "sm_90": 90}
DTYPE_NAMES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Input layouts: NCHW runs the plane kernels, NHWC (channels_last) the channel-vectorized ones.
LAYOUTS = ("nchw", "nhwc")
# Stage widths of the published variants, from the model's own table ("m0".."m5"; M3 and M4 differ in
# depth only); stage i runs at 56 / 2**i.
VARIANT_DIMS = {name.removeprefix("repnext_"): spec.embed_dim for name, spec in VARIANTS.items()}
RESOLUTIONS = (56, 28, 14, 7)
STANDALONE_VARIANT = "m0"
PTXAS_RE = {
    "regs": re.compile(r"Used (\d+) registers"),
    "spill_stores": re.compile(r"(\d+) bytes spill stores"),
    "spill_loads": re.compile(r"(\d+) bytes spill loads"),
    "stack": re.compile(r"(\d+) bytes stack frame"),
}


@dataclass(frozen=True)
class Case:
    """One op at one layer shape of the model (batch does not change the compiled kernel)."""

    op: str
    channels: int
    size: int
    dtype: str
    layout: str = "nchw"

    @property
    def label(self) -> str:
        return f"{self.channels}@{self.size}"


def _param(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=dtype, device="meta")


def plan_case(case: Case) -> Launch:
    """The launch plan of `case`, built by the op's own planner on meta tensors."""
    from .chunk_conv import plan_chunk
    from .copy_conv import plan_copy
    from .dwconv import plan_dwconv
    from .separable import plan_separable

    dt = DTYPE_NAMES[case.dtype]
    c, s = case.channels, case.size
    x = _param((1, c, s, s), dt)
    if case.layout == "nhwc":
        x = _param((1, s, s, c), dt).permute(0, 3, 1, 2)
    if case.op == "chunk_dwconv":
        q = c // 4
        kernels = ((q, 1, 3, 3), (q,), (q, 1, 7, 7), (q,), (q, 1, 1, 11), (q,), (q, 1, 11, 1), (q,))
        return plan_chunk(x, *(_param(k, dt) for k in kernels))
    if case.op == "copy_dwconv":
        return plan_copy(
            x, _param((c, 1, 3, 3), dt), _param((c,), dt), _param((c, 1, 7, 7), dt), _param((c,), dt)
        )
    if case.op == "separable_dwconv2d":
        return plan_separable(
            x, _param((c, 1, 1, 11), dt), _param((c,), dt), _param((c, 1, 11, 1), dt), _param((c,), dt)
        )
    k, stride = {
        "dwconv2d_3x3": (3, 1),
        "dwconv2d_7x7": (7, 1),
        "dwconv2d_3x3s2": (3, 2),
        "dwconv2d_7x7s2": (7, 2),
    }[case.op]
    return plan_dwconv(x, _param((c, 1, k, k), dt), _param((c,), dt), stride)


def model_cases(
    quick: bool = False, dtypes: Sequence[str] = tuple(DTYPE_NAMES), layouts: Sequence[str] = LAYOUTS
) -> list[Case]:
    """Every (op, channels, size, dtype, layout) the fused M0-M5 run at 224x224, plus the standalone ops.

    chunk_dwconv runs on every stage's width at its resolution; copy_dwconv on each downsample's input
    (stages 1-3). The model does not call the standalone dwconv2d / separable ops; they are swept at
    M0's chunk and downsample shapes (every resolution, hence every tile config), which is where an
    unfused 4-branch path would call them.
    """
    if quick:
        return [
            Case("chunk_dwconv", 40, 56, "fp16"),
            Case("copy_dwconv", 80, 28, "bf16"),
            Case("separable_dwconv2d", 20, 14, "fp32"),
            Case("chunk_dwconv", 64, 56, "fp32", "nhwc"),
        ]
    cases: set[Case] = set()
    for variant, dims in VARIANT_DIMS.items():
        for i, (c, s) in enumerate(zip(dims, RESOLUTIONS)):
            for dt in dtypes:
                for lay in layouts:
                    cases.add(Case("chunk_dwconv", c, s, dt, lay))
                    if i < 3:
                        cases.add(Case("copy_dwconv", c, s, dt, lay))
                    if variant != STANDALONE_VARIANT:
                        continue
                    for op in ("dwconv2d_3x3", "dwconv2d_7x7", "separable_dwconv2d"):
                        cases.add(Case(op, c // 4, s, dt, lay))
                    if i < 3:
                        for op in ("dwconv2d_3x3s2", "dwconv2d_7x7s2"):
                            cases.add(Case(op, c, s, dt, lay))
    return sorted(cases, key=lambda k: (k.op, k.layout, k.dtype, -k.size, k.channels))


def specialize(plan: Launch, config: TileConfig, arch: int) -> tuple:
    """(ASTSource, target, options, key) exactly as the JIT would build them when launching `plan`."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.compiler.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    kernel = plan.kernel
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    kwargs = {**plan.args, **plan.constexprs, **config.meta, "num_warps": config.num_warps, **FP_FUSION}
    bound, specialization, options = binder(**kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    key = (kernel.__name__, arch, repr(sorted(signature.items())), repr(sorted(constexprs.items())))
    key += (repr(sorted(attrs.items())), config.num_warps)
    return ASTSource(kernel, signature, constexprs, attrs), target, options, key


def _ptxas_numbers(log: str) -> dict[str, int]:
    out = {}
    for name, rx in PTXAS_RE.items():
        m = rx.search(log)
        out[name] = int(m.group(1)) if m else -1
    return out


def _count(ptx: str, what: str) -> tuple[int, int]:
    total = len(re.findall(rf"\b{what}\.global\b", ptx))
    vec = len(re.findall(rf"\b{what}\.global(?:\.\w+)*\.v[248]\b", ptx))
    return total, vec


def compile_job(job: tuple[Case, TileConfig, int]) -> dict:
    """Compile one (case, config, arch) and read its resources; runs in a worker process."""
    import triton
    from triton import knobs

    case, config, arch = job
    src, target, options, _ = specialize(plan_case(case), config, arch)
    log = io.StringIO()
    t0 = time.time()
    # ptxas' -v log is printed only when asked and only on a real compile, hence both knobs.
    with knobs.nvidia.scope(), knobs.compilation.scope(), contextlib.redirect_stdout(log):
        knobs.nvidia.dump_ptxas_log = True
        knobs.compilation.always_compile = True
        compiled = triton.compile(src, target=target, options=options.__dict__)
    ptx = compiled.asm["ptx"]
    ld, ld_vec = _count(ptx, "ld")
    st, st_vec = _count(ptx, "st")
    return {
        "op": case.op,
        "layout": case.layout,
        "dtype": case.dtype,
        "arch": f"sm_{arch}",
        "config": config.name,
        "kernel": compiled.metadata.name,
        **_ptxas_numbers(log.getvalue()),
        "smem": compiled.metadata.shared,
        "ld_global": ld,
        "ld_vec": ld_vec,
        "st_global": st,
        "st_vec": st_vec,
        "cubin_bytes": len(compiled.asm["cubin"]),
        "compile_s": round(time.time() - t0, 2),
    }


def _jobs(cases: Sequence[Case], archs: Sequence[int], quick: bool = False) -> tuple[list, dict]:
    """Unique compiles (deduplicated on the JIT's own key) and the layer labels each one serves."""
    jobs, users = {}, {}
    for case in cases:
        plan = plan_case(case)
        configs = plan.candidates()
        for config in configs[-1:] if quick else configs:
            for arch in archs:
                key = specialize(plan, config, arch)[3]
                jobs.setdefault(key, (case, config, arch))
                users.setdefault(key, []).append(case.label)
    return list(jobs.items()), users


def parse_archs(archs: str | Sequence[str]) -> list[int]:
    """'sm_80,sm_90' or ['sm_80', 'sm_90'] -> [80, 90]."""
    names = archs.split(",") if isinstance(archs, str) else list(archs)
    try:
        return [ARCHS[a.strip()] for a in names]
    except KeyError as e:
        raise ValueError(f"unknown arch {e.args[0]!r}; choose from {', '.join(ARCHS)}") from None


def resource_table(
    archs: Sequence[str] = ("sm_80", "sm_90"), quick: bool = False, workers: int | None = None
) -> list[dict]:
    """Compile every shipped configuration for `archs` and return one row of resources per compile."""
    require_triton()
    from .dwconv import _dwconv_kernel

    arch_nums = parse_archs(archs)
    if is_interpreted(_dwconv_kernel):
        return _in_subprocess(archs, quick)
    keyed, users = _jobs(model_cases(quick), arch_nums, quick)
    workers = workers or min(len(keyed), os.cpu_count() or 1)
    if workers <= 1:
        rows = [compile_job(job) for _, job in keyed]
    else:
        # spawn: fresh interpreters, so no Triton / torch state is shared through fork.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            rows = list(pool.map(compile_job, [job for _, job in keyed]))
    for (key, _), row in zip(keyed, rows):
        row["layers"] = " ".join(
            sorted(set(users[key]), key=lambda s: (-int(s.split("@")[1]), int(s.split("@")[0])))
        )
    return sorted(
        rows,
        key=lambda r: (r["op"], r.get("layout", "nchw"), r["dtype"], r["arch"], r["config"], r["layers"]),
    )


def _in_subprocess(archs: Sequence[str], quick: bool) -> list[dict]:
    """Kernels built under TRITON_INTERPRET=1 cannot be compiled; redo the sweep in a clean process."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cmd = [sys.executable, "-m", "repnext_core.cli", "kernels", "--arch", ",".join(archs), "--json", "-"]
    done = subprocess.run(
        cmd + (["--quick"] if quick else []), env=env, capture_output=True, text=True, check=False
    )
    if done.returncode not in (0, 1):
        raise RuntimeError(f"AOT sweep failed in a subprocess:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


COLUMNS = (
    ("op", "op"),
    ("layout", "layout"),
    ("dtype", "dtype"),
    ("arch", "arch"),
    ("config", "tile/warps"),
    ("regs", "regs"),
    ("spill_stores", "spill st B"),
    ("spill_loads", "spill ld B"),
    ("smem", "smem B"),
    ("ld_global", "ld.global"),
    ("ld_vec", "ld vec"),
    ("st_global", "st.global"),
    ("st_vec", "st vec"),
    ("layers", "layers (C@HxW)"),
)


def format_markdown(rows: Sequence[dict]) -> str:
    """The table as Markdown, one row per compiled configuration."""
    from repnext_core.table import format_table

    return format_table([h for _, h in COLUMNS], [[r[k] for k, _ in COLUMNS] for r in rows])


def summarize(rows: Sequence[dict]) -> str:
    """One line per (op, layout, arch): compile count, register range, worst spills and shared memory."""
    out = []
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["op"], r.get("layout", "nchw"), r["arch"]), []).append(r)
    for (op, layout, arch), rs in sorted(groups.items()):
        regs = [r["regs"] for r in rs]
        spills = max(r["spill_stores"] + r["spill_loads"] for r in rs)
        smem = max(r["smem"] for r in rs)
        out.append(
            f"{op:20s} {layout} {arch}: {len(rs):3d} configs, regs {min(regs)}-{max(regs)}, "
            f"max spill {spills} B, max smem {smem} B"
        )
    return "\n".join(out)


def spills(rows: Sequence[dict]) -> list[dict]:
    """Rows whose kernel spills (or whose ptxas log could not be read)."""
    return [r for r in rows if r["spill_stores"] != 0 or r["spill_loads"] != 0 or r["regs"] < 0]


def run_cli(archs: str, quick: bool, json_out: str | None, markdown_out: str | None) -> int:
    """The body of `repnext kernels`: print (and optionally write) the table; 1 if anything spills."""
    rows = resource_table(parse_archs_names(archs), quick=quick)
    if json_out == "-":
        print(json.dumps(rows))
    else:
        print(format_markdown(rows))
        print()
        print(summarize(rows))
        if json_out:
            with open(json_out, "w") as f:
                json.dump(rows, f, indent=1)
    if markdown_out:
        with open(markdown_out, "w") as f:
            f.write(resources_document(rows, archs, quick))
    return 1 if spills(rows) else 0


def parse_archs_names(archs: str) -> list[str]:
    """Validate a comma list of arch names and return it as a list."""
    names = [a.strip() for a in archs.split(",") if a.strip()]
    parse_archs(names)
    return names


def resources_document(rows: Sequence[dict], archs: str, quick: bool) -> str:
    """RESOURCES.md: how it was made, the per-op summary, then the full table."""
    import triton

    cmd = f"repnext kernels --arch {archs}{' --quick' if quick else ''} --markdown kernels/RESOURCES.md"
    bad = spills(rows)
    return "\n".join(
        [
            "# Kernel resources (ahead-of-time, no GPU needed)",
            "",
            f"Generated by `{cmd}`",
            f"(Triton {triton.__version__}): every configuration the autotuner may pick for the layer shapes",
            "of RepNeXt M0-M5 at 224x224, for fp32/fp16/bf16 and NCHW / NHWC (channels_last) input, compiled with",
            "`triton.compile` for each arch exactly as a launch would specialize it. Registers and spills",
            "are ptxas' own figures (`-v`); smem is the dynamic shared memory Triton requests; ld/st",
            "columns count `ld.global` / `st.global` instructions in the PTX and how many are vectorized",
            "(`.v2`/`.v4`). Layers are `channels@size` of the op's input.",
            "",
            f"Spilling configurations: **{len(bad)}** of {len(rows)}.",
            "",
            "Reading it: vectorized loads are the taps whose column offset is 0 (the centre column of each",
            "kernel, the identity chunk) on widths divisible by the vector (56, 28); shifted taps are scalar",
            "but coalesced across the warp, and stride-2 taps (copy_dwconv) are never contiguous. Stores are",
            "vectorized wherever the output width allows. smem is the staging buffer of the 11x1 conv's",
            "tl.gather. sm_90's ptxas uses far more registers than sm_80's for the same code (up to ~184):",
            "capping them (maxnreg 128) makes it spill, so they are left uncapped; whether the lower",
            "occupancy costs time is for a GPU benchmark to say (bench/test_kernels.py, `make bench-gpu`).",
            "The nhwc rows are the channels_last kernels: tiles of BLOCK_H x BLOCK_W pixels x BLOCK_C channels",
            "(tile/warps `HxWxC`), loads and stores vectorized across the contiguous channels where the channel",
            "count and strides allow it (a chunk of 10 channels gives 2-wide vectors, 16 or more 4-wide).",
            "Their tap rows (and the 1x11 / 11x1 taps) are rolled loops: fully unrolled, sm_90's ptxas hoisted",
            "every tap's loads ahead of the FMAs and spilled 54 of the nhwc configurations (up to 2 KB), so",
            "their ld/st columns count one row's instructions, not every tap's.",
            "",
            "```",
            summarize(rows),
            "```",
            "",
            format_markdown(rows),
            "",
        ]
    )
