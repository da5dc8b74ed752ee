"""Inference engines for one RepNeXt variant on the host CPU, built alike so they can be timed side by side."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

# The runtimes a user would pick instead (the `peers` extra): fp32 unless the name says otherwise.
PEERS = ("openvino", "openvino-bf16", "ncnn", "mnn", "litert")
ENGINES = ("torch-train", "torch-fused", "torch-fused-cl", "torch-compile", "ort", *PEERS, "tvm", "tvm-tuned")
DEFAULT_ENGINES = ("torch-train", "torch-fused", "torch-fused-cl", "ort", "tvm", "tvm-tuned")
# Output bound of engines that compute in reduced precision by design (checked, and reported with the error).
REDUCED_PRECISION_BOUND = 3e-2  # of max|y|


@dataclass
class Engine:
    """A ready-to-call engine: `run()` does one inference on the fixed input and returns the output."""

    name: str
    run: Callable[[], np.ndarray]
    note: str = ""
    reduced_precision: bool = False  # bf16/fp16 arithmetic: held to REDUCED_PRECISION_BOUND, not fp32 parity


def _torch_engine(name: str, model: nn.Module, x: torch.Tensor, note: str = "") -> Engine:
    def run() -> np.ndarray:
        with torch.inference_mode():
            return model(x).float().numpy()

    return Engine(name, run, note)


def _ort_engine(fused: nn.Module, x: torch.Tensor, threads: int) -> Engine:
    from repnext_core.compile.export.onnx_export import INPUT_NAME, import_onnxruntime, to_onnx

    ort = import_onnxruntime()

    proto = to_onnx(fused, x, opset=18, dynamic_batch=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed = {INPUT_NAME: x.numpy()}
    return Engine("ort", lambda: session.run(None, feed)[0], f"onnxruntime {ort.__version__}")


def _tvm_engine(name: str, fused: nn.Module, x: torch.Tensor, db: Path | None) -> Engine:
    from repnext_core.compile.tvm.artifact import VMRunner
    from repnext_core.compile.tvm.build import build_with_report
    from repnext_core.compile.tvm.importer import import_model

    exe, report = build_with_report(import_model(fused, tuple(x.shape)), "host", db)
    runner = VMRunner(exe)
    data = x.numpy()
    note = report.summary() if db else f"no database: {report.conv_kernels} conv kernels on heuristic tiles"
    return Engine(name, lambda: runner(data), note)


def _peer_engine(name: str, fused: nn.Module, x: torch.Tensor, threads: int, work: Path) -> Engine:
    """A peer runtime on the fused model, converted into `work` (ONNX for OpenVINO and MNN, pnnx for ncnn, our
    own TFLite writer for LiteRT)."""
    from repnext_core.compile.bench import conversions, peer_runtimes
    from repnext_core.compile.export.onnx_export import export_onnx

    data = x.numpy()
    if name == "litert":
        import ai_edge_litert

        from repnext_core.compile.bench.tflite_writer import to_tflite

        run = peer_runtimes.litert_interpreter(
            str(to_tflite(fused, work / "model.tflite", tuple(x.shape))), threads
        )
        return Engine(name, lambda: run(data), f"LiteRT {ai_edge_litert.__version__}, fp32 (XNNPACK)")
    onnx_path = work / "model.onnx"
    if name != "ncnn":
        export_onnx(fused, onnx_path, input_shape=tuple(x.shape), verify=False)
    if name.startswith("openvino"):
        import openvino

        precision = "bf16" if name == "openvino-bf16" else "f32"
        run = peer_runtimes.openvino_model(str(onnx_path), precision, threads)
        note = f"OpenVINO {openvino.__version__.split('-')[0]}, {precision}"
        return Engine(name, lambda: run(data), note, reduced_precision=precision != "f32")
    if name == "ncnn":
        import ncnn

        run = peer_runtimes.ncnn_net(
            str(conversions.to_ncnn(fused, work / "ncnn", tuple(x.shape))), False, threads
        )
        return Engine(name, lambda: run(data).reshape(1, -1), f"ncnn {ncnn.__version__}, fp32 (pnnx)")
    import MNN

    run = peer_runtimes.mnn_session(str(conversions.to_mnn(onnx_path, work / "model.mnn")), False, threads)
    return Engine(name, lambda: run(data), f"MNN {MNN.version()}, fp32")


def make_engine(
    name: str, variant: str, model: nn.Module, fused: nn.Module, x: torch.Tensor, threads: int, db=None
) -> Engine:
    """Build engine `name` for the training-form `model` / its `fused` form on input `x`."""
    torch.set_num_threads(threads)
    if name == "torch-train":
        return _torch_engine(name, model.eval(), x, "eager, multi-branch training form")
    if name == "torch-fused":
        return _torch_engine(name, fused, x, "eager, fused")
    if name == "torch-fused-cl":
        cl = fused.to(memory_format=torch.channels_last)
        return _torch_engine(
            name, cl, x.contiguous(memory_format=torch.channels_last), "eager, channels_last"
        )
    if name == "torch-compile":
        return _torch_engine(name, torch.compile(fused), x, "torch.compile (inductor)")
    if name == "ort":
        return _ort_engine(fused, x, threads)
    if name in PEERS:
        import tempfile

        from repnext_core.files import cache_root

        (cache_root() / "bench").mkdir(parents=True, exist_ok=True)
        return _peer_engine(name, fused, x, threads, Path(tempfile.mkdtemp(dir=cache_root() / "bench")))
    if name == "tvm":
        return _tvm_engine(name, fused, x, None)
    if name == "tvm-tuned":
        from repnext_core.compile.tune.database import find_for

        db = db or find_for(variant, tuple(x.shape), "host")
        if db is None:
            raise FileNotFoundError(
                f"no host tuning database for {variant} at {tuple(x.shape)}; run `repnext tune {variant} "
                "--target host` first, or leave tvm-tuned out"
            )
        return _tvm_engine(name, fused, x, Path(db))
    raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")


def pin_threads(threads: int) -> None:
    """Pin every engine's thread pool to `threads` (TVM reads its variable when its pool starts)."""
    os.environ["TVM_NUM_THREADS"] = str(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
