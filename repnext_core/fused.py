"""Inference-form modules: what RepNeXt is after exact reparameterization (no BatchNorm left)."""

from __future__ import annotations

import torch
from torch import nn

from .backend import check_backend, use_triton
from .fuse_ops import depthwise_conv


class FusedChunkConv(nn.Module):
    """Block token mixer: channels in 4 chunks -> (identity | 3x3 | 7x7 | 1x11 then 11x1) -> concat.

    The 1x11/11x1 pair stays a pair: both convs carry a bias, and folding them into one 11x11 kernel
    would be wrong at the image border, where the second conv zero-pads the first one's biased output.
    """

    def __init__(self, dim: int, backend: str = "auto"):
        super().__init__()
        if dim % 4:
            raise ValueError(f"FusedChunkConv needs a channel count divisible by 4, got {dim}")
        self.dim = dim
        c = dim // 4
        self.conv_s = depthwise_conv(c, 3)
        self.conv_m = depthwise_conv(c, 7)
        self.conv_l = nn.Sequential(depthwise_conv(c, (1, 11)), depthwise_conv(c, (11, 1)))
        self.backend = check_backend(backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if use_triton(self.backend, x):
            from repnext_core.kernels import chunk_dwconv

            row, col = self.conv_l
            return chunk_dwconv(
                x,
                self.conv_s.weight,
                self.conv_s.bias,
                self.conv_m.weight,
                self.conv_m.bias,
                row.weight,
                row.bias,
                col.weight,
                col.bias,
            )
        i, s, m, l = torch.chunk(x, 4, dim=1)
        return torch.cat((i, self.conv_s(s), self.conv_m(m), self.conv_l(l)), dim=1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, backend={self.backend!r}"


class FusedCopyConv(nn.Module):
    """Downsample token mixer: one input through stride-2 3x3 and 7x7 depthwise convs -> concat (2C)."""

    def __init__(self, dim: int, backend: str = "auto"):
        super().__init__()
        self.dim = dim
        self.conv_s = depthwise_conv(dim, 3, stride=2)
        self.conv_m = depthwise_conv(dim, 7, stride=2)
        self.backend = check_backend(backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if use_triton(self.backend, x):
            from repnext_core.kernels import copy_dwconv

            return copy_dwconv(x, self.conv_s.weight, self.conv_s.bias, self.conv_m.weight, self.conv_m.bias)
        return torch.cat((self.conv_s(x), self.conv_m(x)), dim=1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, backend={self.backend!r}"


def conv_mlp(dim: int, hidden: int, bias: bool = True) -> nn.Sequential:
    """1x1 conv -> GELU -> 1x1 conv, keyed 0/1/2 like the training form's channel mixer."""
    return nn.Sequential(
        nn.Conv2d(dim, hidden, 1, bias=bias), nn.GELU(), nn.Conv2d(hidden, dim, 1, bias=bias)
    )


class FusedBlock(nn.Module):
    """y = x + mlp(mixer(x)); the block's BatchNorm is folded into the MLP's first conv."""

    def __init__(self, dim: int, mlp_ratio: int = 2, backend: str = "auto"):
        super().__init__()
        self.token_mixer = FusedChunkConv(dim, backend)
        self.channel_mixer = conv_mlp(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.channel_mixer(self.token_mixer(x))


class FusedDownsample(nn.Module):
    """x = mixer(x); y = x + mlp(x); the BatchNorm is folded into the stride-2 mixer's kernels."""

    def __init__(self, dim: int, mlp_ratio: int = 2, backend: str = "auto"):
        super().__init__()
        self.token_mixer = FusedCopyConv(dim, backend)
        self.channel_mixer = conv_mlp(2 * dim, 2 * dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.token_mixer(x)
        return x + self.channel_mixer(x)
