"""Model-level structural reparameterization: swap every training module for its `fuse()` result."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .backend import set_backend


def _fuse_children(module: nn.Module) -> None:
    for name, child in module.named_children():
        if callable(getattr(child, "fuse", None)):
            setattr(module, name, child.fuse())
        else:
            _fuse_children(child)


def count_batchnorms(model: nn.Module) -> int:
    """Number of BatchNorm modules in `model` (zero after a full reparameterization)."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def is_fused(model: nn.Module) -> bool:
    """True for an inference-form model: no BatchNorm and no module left with a `fuse()`."""
    return count_batchnorms(model) == 0 and not any(
        callable(getattr(m, "fuse", None)) for m in model.modules()
    )


@torch.no_grad()
def reparameterize(model: nn.Module, inplace: bool = False, backend: str | None = None) -> nn.Module:
    """Return the exact inference form of `model` (eval mode, no BatchNorm left).

    Works on a whole RepNeXt or on any submodule; the input model is left untouched unless `inplace`.
    """
    if not inplace:
        model = copy.deepcopy(model)
    if callable(getattr(model, "fuse", None)):
        model = model.fuse()
    else:
        _fuse_children(model)
    if hasattr(model, "fused"):
        model.fused = True
    if backend is not None:
        set_backend(model, backend)
    return model.eval()
