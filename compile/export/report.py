"""The export part of `make demo`: one variant to Core ML and ONNX, with the census and the parity."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from repnext_core.compile.export.coreml_export import CoreMLExport, export_coreml
from repnext_core.compile.export.inspect.census import ModelReport
from repnext_core.compile.export.onnx_export import OnnxExport, export_onnx


@dataclass
class ExportReport:
    """Both exports of one model, the Core ML census, and the text that `make demo` prints."""

    coreml: CoreMLExport
    onnx: OnnxExport
    census: ModelReport
    seconds: float
    text: str

    def __str__(self) -> str:
        return self.text


def export_report(
    model: nn.Module | None,
    out_dir: str | os.PathLike,
    variant: str = "repnext_m1",
    input_size: int = 224,
    checkpoint: str | None = None,
) -> ExportReport:
    """Export `model` (default: `variant` with random weights) to fp16 Core ML and fp32 ONNX in `out_dir`.

    Returns the Core ML op census and the onnxruntime-vs-PyTorch parity (batch 1 and 3); the iPhone
    latency line is the paper's figure, quoted as a reference.
    """
    from repnext_core.compile.export.inspect.coreml_inspect import inspect_coreml

    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if model is None:
        from repnext_core import create_model

        model = create_model(variant, fused=True, pretrained=checkpoint)
    meta = {"variant": variant, "checkpoint": checkpoint or "none (random weights)"}
    shape = (1, 3, input_size, input_size)
    cm = export_coreml(model, out / f"{variant}.mlpackage", "fp16", input_shape=shape, metadata=meta)
    ox = export_onnx(model, out / f"{variant}.onnx", dynamic_batch=True, input_shape=shape, metadata=meta)
    census = inspect_coreml(cm.path)
    seconds = time.perf_counter() - start
    lines = [
        f"Export of {variant} at {input_size}x{input_size} ({seconds:.1f} s on this machine)",
        f"Core ML fp16 ML program: {cm.path} ({cm.seconds:.1f} s)",
        census.render(),
        f"ONNX opset {ox.opset}, dynamic batch: {ox.path} ({ox.seconds:.1f} s)",
        f"  ops: {', '.join(f'{k} {v}' for k, v in sorted(ox.ops.items(), key=lambda kv: -kv[1]))}",
        f"  onnxruntime vs PyTorch, batch {' and '.join(map(str, ox.batches))}: max |diff| = "
        f"{ox.max_abs_diff:.2e} (bound {ox.tolerance:.2e}) {'OK' if ox.parity_ok else 'FAILED'}",
        "  Core ML cannot run on Linux: its numbers come from an iPhone (Xcode performance report).",
    ]
    return ExportReport(cm, ox, census, seconds, "\n".join(lines))
