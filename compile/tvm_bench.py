"""host_comparison: the TVM host build timed beside torch eager and onnxruntime, outputs checked."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import torch
from torch import nn

from . import tuning_db
from .engines import make_engine, pin_threads
from .targets import host_spec


def host_comparison(
    model: nn.Module,
    input_shape: Sequence[int],
    threads: int = 1,
    *,
    variant: str = "model",
    db: str | os.PathLike | None = None,
    db_roots: Sequence[str | os.PathLike] | None = None,
    repeat: int = 20,
) -> dict:
    """Build the (fused) model for this CPU, tuned from a database when one exists for it, and time it
    against torch eager and onnxruntime in interleaved rounds at `threads` threads; outputs checked."""
    from repnext_core.timing import compare_latency
    from repnext_core.verify import parity

    model = model.eval()
    shape = tuple(int(d) for d in input_shape)
    db = db or tuning_db.find_db(tuning_db.key_for(variant, shape, "float32", host_spec()), db_roots)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    pin_threads(threads)
    t0 = time.perf_counter()
    engines = {"torch": make_engine("torch-fused", variant, model, model, x, threads)}
    engines["onnxruntime"] = make_engine("ort", variant, model, model, x, threads)
    t1 = time.perf_counter()
    engines["tvm"] = make_engine("tvm-tuned" if db else "tvm", variant, model, model, x, threads, db=db)
    t2 = time.perf_counter()
    outputs = {name: engine.run() for name, engine in engines.items()}  # also TVM's LLVM code generation
    tvm_ready_s = time.perf_counter() - t1
    latency = compare_latency({name: engine.run for name, engine in engines.items()}, repeat=repeat)
    reference = torch.from_numpy(outputs["torch"])
    checks = {
        name: parity(reference, torch.from_numpy(out)) for name, out in outputs.items() if name != "torch"
    }
    return {
        "input_shape": list(shape),
        "threads": threads,
        "latency_ms": {name: stats["median_ms"] for name, stats in latency.items()},
        "latency": latency,
        "max_abs_diff": {name: check.max_abs_diff for name, check in checks.items()},
        "outputs_match": all(check.ok for check in checks.values()),
        "tvm_note": engines["tvm"].note,
        "tuning_db": str(db) if db else None,
        "seconds": {
            "torch_and_ort_setup": t1 - t0,
            "tvm_import_and_build": t2 - t1,
            "tvm_ready": tvm_ready_s,
        },
    }
