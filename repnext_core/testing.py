"""Seeded models with randomized BatchNorm statistics, so that a wrong fusion shows in the outputs."""

from __future__ import annotations

import torch
from torch import nn

from .model import RepNeXt
from .registry import create_model


@torch.no_grad()
def randomize_batchnorm_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial affine parameters and running statistics (in place)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.weight.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model


def random_model(name: str | None = None, seed: int = 0, **kwargs) -> RepNeXt:
    """A training-form variant (or a custom RepNeXt from kwargs when name is None), seeded, in eval."""
    torch.manual_seed(seed)
    model = create_model(name, **kwargs) if name else RepNeXt(**kwargs)
    return randomize_batchnorm_(model, seed).eval()


def toy_model(seed: int = 0, num_classes: int = 10) -> RepNeXt:
    """A 4-stage, 1-block-per-stage RepNeXt small enough for compiler tests in CI."""
    return random_model(None, seed, embed_dim=(16, 32, 64, 128), depth=(1, 1, 1, 1), num_classes=num_classes)
