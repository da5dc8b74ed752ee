"""Which implementation runs the fused token mixers: plain PyTorch or the Triton kernels."""

from __future__ import annotations

import torch
from torch import nn

BACKENDS = ("auto", "torch", "triton")


def check_backend(backend: str) -> str:
    """Validate a backend name early, where the user typed it."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def triton_usable() -> bool:
    """True when the Triton kernels can be imported (the `triton` extra is installed)."""
    try:
        from repnext_core.kernels import triton_available
    except ImportError:
        return False
    return triton_available()


def use_triton(backend: str, x: torch.Tensor) -> bool:
    """Resolve a module's backend for this input: 'auto' means Triton on CUDA tensors when installed."""
    if backend == "torch":
        return False
    if backend == "triton":
        return True
    return x.is_cuda and triton_usable()


def set_backend(model: nn.Module, backend: str) -> nn.Module:
    """Switch every fused token mixer in `model` to `backend`; returns the model."""
    check_backend(backend)
    for module in model.modules():
        if hasattr(module, "backend"):
            module.backend = backend
    return model
