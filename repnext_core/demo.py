"""The main job on built-in defaults: build, fuse, verify and time a RepNeXt, all offline."""

from __future__ import annotations

import torch

from .profile import count_macs, count_params
from .reparam import count_batchnorms, reparameterize
from .table import format_table
from .testing import random_model
from .timing import compare_latency
from .verify import verify_fusion


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
