"""The main job on built-in defaults: build, fuse, verify and time a RepNeXt, all offline."""

from __future__ import annotations

import torch

from .profile import count_macs, count_params
from .reparam import count_batchnorms, reparameterize
from .table import format_table
from .testing import random_model
from .timing import compare_latency
from .verify import parity, verify_fusion


def fusion_report(
    variant: str = "repnext_m1", input_size: int = 224, repeat: int = 10, threads: int | None = None
) -> str:
    """Training vs fused form of `variant` with seeded weights and random BatchNorm statistics, as a table."""
    if threads:
        torch.set_num_threads(threads)
    model = random_model(variant, seed=0)
    fused = reparameterize(model, backend="torch")
    check = verify_fusion(model, fused, (input_size, input_size))
    x = torch.randn(1, 3, input_size, input_size)
    with torch.inference_mode():
        ms = compare_latency({"train": lambda: model(x), "fused": lambda: fused(x)}, repeat=repeat)
    rows = [
        [
            form,
            f"{count_params(m) / 1e6:.3f}M",
            f"{count_macs(m, (input_size, input_size)) / 1e9:.3f}G",
            count_batchnorms(m),
            f"{ms[key]['median_ms']:.2f}",
            "-" if key == "train" else f"{check.max_abs_diff:.2e}",
        ]
        for form, key, m in (
            ("training (multi-branch)", "train", model),
            ("fused (no BatchNorm)", "fused", fused),
        )
    ]
    speedup = ms["train"]["median_ms"] / ms["fused"]["median_ms"]
    table = format_table(["form", "params", "MACs", "BatchNorms", "eager ms (median)", "max abs diff"], rows)
    verdict = "OK" if check.ok else "FAILED"
    return (
        f"{variant} at 1x3x{input_size}x{input_size}, seeded random weights, randomized BatchNorm statistics, "
        f"{torch.get_num_threads()} thread(s)\n{table}\n"
        f"fusion check: max |fused - train| = {check.max_abs_diff:.2e} <= {check.tolerance:.2e}: {verdict}; "
        f"fused is {speedup:.2f}x the training form's eager speed (timed side by side, {repeat} rounds)"
    )


def host_build_report(variant: str = "repnext_m1", input_size: int = 224, threads: int = 1) -> str:
    """The TVM host build (tuned from the shipped database when there is one) beside torch eager and ORT."""
    from .compile.bench.harness import compare_engines, format_comparison
    from .compile.tune.database import find_for

    db = find_for(variant, (1, 3, input_size, input_size), "host")
    tvm = "tvm-tuned" if db else "tvm"
    result = compare_engines(
        variant, ("torch-fused", "ort", tvm), threads=threads, input_size=input_size, db=db
    )
    source = f"tuning database {db}" if db else "no tuning database: heuristic tiles (see `repnext tune`)"
    return f"TVM host build, timed side by side with torch and onnxruntime ({source}):\n{format_comparison(result)}"


def arm_build_report(
    variant: str = "repnext_m1", out_dir: str = "out/demo", target: str = "cortex-a76"
) -> str:
    """Cross-build for an ARM core; check it under qemu when the aarch64 runner has been built."""
    from pathlib import Path

    import numpy as np

    from .compile.device import default_build_dir, elf_arch, run_artifact_native
    from .compile.tvm.build import build_artifact
    from .registry import create_model

    fused = create_model(variant, fused=True, backend="torch")
    out, report = build_artifact(fused, Path(out_dir) / f"{variant}-{target}", target, variant=variant)
    lines = [f"{target} artifact: {out} ({elf_arch(out / 'model.so')} ELF; {report.summary()})"]
    if not (default_build_dir("aarch64") / "install" / "bin" / "repnext-run").exists():
        lines.append(
            "to check it here under qemu: `repnext build-runtime --target aarch64`, then "
            f"`repnext run {out} --qemu` (emulated outputs are exact, emulated timings mean nothing)"
        )
        return "\n".join(lines)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    y = run_artifact_native(out, x, qemu=True)
    with torch.no_grad():
        check = parity(fused(torch.from_numpy(x)), torch.from_numpy(y))
    lines.append(
        f"under qemu-aarch64: max |diff| vs torch = {check.max_abs_diff:.1e} ({'OK' if check.ok else 'FAILED'})"
    )
    return "\n".join(lines)


def run_demo(
    variant: str = "repnext_m1", input_size: int = 224, threads: int | None = None, out_dir: str = "out/demo"
) -> None:
    """Everything `make demo` shows, section by section, each printed as soon as it is ready."""
    import os
    import time

    from repnext_core.compile.export.report import export_report

    t0 = time.perf_counter()
    print(fusion_report(variant, input_size, threads=threads), flush=True)
    print(flush=True)
    print(host_build_report(variant, input_size, threads or 1), flush=True)
    print(flush=True)
    print(arm_build_report(variant, out_dir), flush=True)
    print(flush=True)
    os.makedirs(out_dir, exist_ok=True)
    print(export_report(None, out_dir, variant, input_size), flush=True)
    print(f"\ndemo done in {time.perf_counter() - t0:.0f} s; artifacts in {out_dir}/")
