"""The fused model on the Triton kernels (CPU interpreter here) against the torch backend."""

import os

import pytest
import torch
from conftest import tol

from repnext_core import create_model, reparameterize, set_backend
from repnext_core.backend import use_triton
from repnext_core.kernels import triton_available
from repnext_core.testing import toy_model

needs_triton = pytest.mark.skipif(
    not triton_available() or (not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1"),
    reason="needs Triton, on CUDA or in its interpreter (TRITON_INTERPRET=1, set by conftest without CUDA)",
)


@needs_triton
def test_fused_toy_model_on_triton_matches_torch():
    fused = reparameterize(toy_model(seed=3), backend="torch")
    x = torch.randn(1, 3, 40, 36)
    with torch.no_grad():
        ref = fused(x)
        out = set_backend(fused, "triton")(x)
    assert (out - ref).abs().max().item() <= tol(ref)


@needs_triton
def test_create_model_triton_backend_runs_the_kernels(monkeypatch):
    import repnext_core.kernels as kernels

    calls = []
    real = kernels.chunk_dwconv
    monkeypatch.setattr(kernels, "chunk_dwconv", lambda *a: calls.append(1) or real(*a))
    model = create_model("repnext_m0", fused=True, backend="triton", num_classes=10)
    with torch.no_grad():
        model.stages[0].blocks(torch.randn(1, 40, 9, 9))
    assert len(calls) == 2  # two blocks in M0's first stage, each one launch


def test_auto_backend_uses_torch_on_cpu():
    assert not use_triton("auto", torch.zeros(1))
    assert use_triton("triton", torch.zeros(1)) and not use_triton("torch", torch.zeros(1))
