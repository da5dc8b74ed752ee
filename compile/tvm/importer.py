"""PyTorch module -> Relax IRModule through torch.export (the importer TVM maintains for PyTorch 2)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn


def import_model(model: nn.Module, input_shape: Sequence[int], dtype: str = "float32"):
    """torch.export the eval-mode model at a static input shape and convert it to a Relax IRModule.

    Weights become constants of `main`, so the IRModule is self-contained and `main(x)` returns one tensor.
    """
    from tvm.relax.frontend.torch import from_exported_program

    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 4:
        raise ValueError(f"input shape must be N,C,H,W; got {shape}")
    example = torch.zeros(shape, dtype=getattr(torch, dtype))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # torch.export's pytree pickling warns about its own deprecated LeafSpec; nothing to act on.
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            program = torch.export.export(model, (example,))
            return from_exported_program(program, unwrap_unit_return_tuple=True)
    finally:
        model.train(was_training)


def main_signature(mod) -> tuple[tuple[int, ...], str, tuple[int, ...]]:
    """(input shape, input dtype, output shape) of the IRModule's `main`, for metadata and input checks."""
    func = mod["main"]
    if len(func.params) != 1:
        raise ValueError(f"expected a single-input model, `main` takes {len(func.params)} inputs")
    arg, out = func.params[0].ty, func.ret_ty
    return tuple(int(d) for d in arg.shape), str(arg.dtype), tuple(int(d) for d in out.shape)
