"""Checking a fused model against its training form, the way every test and the CLI do it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def tolerance(max_abs_ref: float) -> float:
    """The fp32 parity bound used everywhere: 1e-5 absolute plus 1e-4 of the largest reference magnitude."""
    return 1e-5 + 1e-4 * float(max_abs_ref)


@dataclass
class Parity:
    """max |fused - reference| against the tolerance 1e-5 + 1e-4 * max |reference|."""

    max_abs_diff: float
    max_abs_ref: float

    @property
    def tolerance(self) -> float:
        return tolerance(self.max_abs_ref)

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def parity(reference: torch.Tensor, candidate: torch.Tensor) -> Parity:
    """Compare two outputs (or lists of feature maps) in float32."""
    if isinstance(reference, (list, tuple)):
        results = [parity(r, c) for r, c in zip(reference, candidate, strict=True)]
        return Parity(max(r.max_abs_diff for r in results), max(r.max_abs_ref for r in results))
    reference, candidate = torch.as_tensor(reference).float(), torch.as_tensor(candidate).float()
    if reference.shape != candidate.shape:
        raise ValueError(f"output shapes differ: {tuple(reference.shape)} vs {tuple(candidate.shape)}")
    return Parity((reference - candidate).abs().max().item(), reference.abs().max().item())


@torch.no_grad()
def verify_fusion(
    model: nn.Module,
    fused: nn.Module,
    input_size: tuple[int, int] = (224, 224),
    batch: int = 1,
    seed: int = 0,
) -> Parity:
    """Run both forms in eval on one seeded random input and compare."""
    p = next(fused.parameters())
    x = torch.randn(batch, 3, *input_size, generator=torch.Generator().manual_seed(seed))
    x = x.to(p.device, p.dtype)
    return parity(model.eval()(x), fused.eval()(x))
