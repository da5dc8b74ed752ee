"""ONNX export with the dynamo exporter: one self-contained file, checked, and run against PyTorch."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from repnext_core.compile.export.common import (
    TENSOR_NORMALIZATION,
    ExportError,
    build_metadata,
    check_output_path,
    prepare_model,
    quiet_third_party_warnings,
)
from repnext_core.files import atomic_output
from repnext_core.verify import tolerance

# torch's ONNX registry warns about every torchvision op when torchvision is absent (it is optional here).
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

MIN_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "image", "logits"
# Ops that would mean the chunk was lowered as shape arithmetic instead of one Split, or BN survived.
FORBIDDEN_OPS = ("BatchNormalization", "SplitToSequence", "SequenceAt", "Shape", "Gather", "Slice")
PARITY_BATCH = 3  # checked in addition to the exported batch when the batch dimension is dynamic


@dataclass
class OnnxExport:
    """What export_onnx wrote and what was verified about it."""

    path: Path
    opset: int
    dynamic_batch: bool
    auto_fused: bool
    seconds: float
    max_abs_diff: float = float("nan")  # worst ONNX Runtime vs PyTorch difference over the checked batches
    tolerance: float = float("nan")
    batches: tuple[int, ...] = ()
    ops: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def parity_ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def graph_problems(model_proto) -> list[str]:
    """Structural defects of an exported fused RepNeXt: leftover BN, chunk not lowered to Split."""
    ops = Counter(n.op_type for n in model_proto.graph.node)
    problems = [f"{ops[op]} {op} node(s)" for op in FORBIDDEN_OPS if ops[op]]
    if not ops["Split"]:
        problems.append("no Split node (torch.chunk should export as one Split per block)")
    return problems


def to_onnx(model: nn.Module, example: torch.Tensor, opset: int, dynamic_batch: bool):
    """Run the dynamo exporter (torch.export + onnxscript) and return the in-memory ModelProto.

    optimize=True matters: without onnxscript's pass, torch.chunk comes out as SplitToSequence plus one
    SequenceAt per chunk; with it, as a single Split with num_outputs=4.
    """
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    try:
        with quiet_third_party_warnings():
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=dynamic_shapes,
                optimize=True,
                verbose=False,
            )
    except Exception as e:  # noqa: BLE001 - one message that says what was being attempted
        raise ExportError(
            f"torch.onnx.export(dynamo=True) failed (opset={opset}, dynamic_batch={dynamic_batch}): "
            f"{type(e).__name__}: {e}"
        ) from e
    return program.model_proto


def import_onnxruntime():
    """onnxruntime with its telemetry off: the PyPI wheels otherwise start threads that make DNS queries
    during Run() (the API call alone does not stop them; the variable must be set before the import)."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    return onnxruntime


def run_parity(
    model_proto, model: nn.Module, shape: Sequence[int], batches: Sequence[int]
) -> tuple[float, float]:
    """Max |ONNX Runtime - PyTorch| over random inputs of each batch size, and the bound it must meet."""
    ort = import_onnxruntime()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: ORT's notices about unused initializers are noise here
    session = ort.InferenceSession(model_proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(0)
    worst_diff, worst_tol = 0.0, float("inf")
    for n in batches:
        x = torch.randn((n, *shape[1:]), generator=g)
        with torch.no_grad():
            ref = model(x).numpy()
        got = session.run(None, {INPUT_NAME: x.numpy()})[0]
        if got.shape != ref.shape:
            raise ExportError(f"ONNX output shape {got.shape} != PyTorch {ref.shape} at batch {n}")
        worst_diff = max(worst_diff, float(np.abs(got - ref).max()))
        worst_tol = min(worst_tol, tolerance(np.abs(ref).max()))
    return worst_diff, worst_tol


def _set_metadata(model_proto, meta: dict[str, str]) -> None:
    """metadata_props (what onnxruntime's modelmeta.custom_metadata_map reads) and a doc string."""
    import onnx

    onnx.helper.set_model_props(model_proto, meta)
    model_proto.doc_string = f"RepNeXt {meta['variant']} (arXiv 2406.16004), fused inference form, fp32"
    model_proto.graph.input[0].doc_string = meta["input_normalization"]


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    opset: int = MIN_OPSET,
    dynamic_batch: bool = False,
    input_shape: Sequence[int] = (1, 3, 224, 224),
    metadata: dict[str, Any] | None = None,
    verify: bool = True,
) -> OnnxExport:
    """Write the fused model as one .onnx file (weights inside), atomically, after verifying it.

    Verified before writing: onnx.checker (full), no BatchNormalization, chunk as Split (no Shape/Gather/
    Slice), and with `verify` an onnxruntime run that must match PyTorch within 1e-5 + 1e-4 * max|y|
    (also at batch 3 when `dynamic_batch`). Any failure raises and leaves nothing at `path`.
    """
    import onnx

    if int(opset) < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4:
        raise ValueError(f"input_shape must be NCHW (4 numbers), got {shape}")
    out = check_output_path(path, "onnx")
    start = time.perf_counter()

    prepared = prepare_model(model)
    proto = to_onnx(prepared.model, torch.randn(shape), int(opset), dynamic_batch)
    problems = graph_problems(proto)
    if problems:
        raise ExportError("exported ONNX graph is not the fused RepNeXt: " + "; ".join(problems))
    meta = build_metadata(
        prepared.model,
        "onnx",
        TENSOR_NORMALIZATION,
        metadata,
        precision="fp32",
        opset=int(opset),
        input_shape="x".join(map(str, shape)),
        dynamic_batch=dynamic_batch,
    )
    _set_metadata(proto, meta)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"onnx.checker rejected the exported model: {e}") from e

    result = OnnxExport(out, int(opset), dynamic_batch, prepared.auto_fused, 0.0, metadata=meta)
    result.ops = dict(Counter(n.op_type for n in proto.graph.node))
    if verify:
        result.batches = (shape[0], PARITY_BATCH) if dynamic_batch else (shape[0],)
        result.max_abs_diff, result.tolerance = run_parity(proto, prepared.model, shape, result.batches)
        if not result.parity_ok:
            raise ExportError(
                f"onnxruntime output differs from PyTorch by {result.max_abs_diff:.3e} "
                f"(bound {result.tolerance:.3e}, batches {result.batches}); not writing {out}"
            )
    with atomic_output(out) as tmp:
        onnx.save_model(proto, str(tmp), save_as_external_data=False)
    result.seconds = time.perf_counter() - start
    return result
