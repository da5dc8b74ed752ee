"""Training-form RepNeXt modules, named exactly as the authors' checkpoints name them.

Each module's `fuse()` returns its exact inference-form replacement (in eval mode, up to float rounding).
"""

from __future__ import annotations

import torch
from torch import nn

from .fuse_ops import (
    bias_or_zero,
    bn_affine,
    conv_from,
    dilate_kernel,
    outer_kernel,
    pad_kernel,
    scale_conv_input,
    scale_conv_output,
)
from .fused import FusedBlock, FusedChunkConv, FusedCopyConv, FusedDownsample


def _dw(c: int, kh: int, kw: int, stride=(1, 1), dilation: int = 1, padding=None, bias: bool = True):
    pad = padding if padding is not None else (kh // 2, kw // 2)
    return nn.Conv2d(c, c, (kh, kw), stride=stride, padding=pad, dilation=dilation, groups=c, bias=bias)


class ConvNorm(nn.Sequential):
    """Conv2d without bias then BatchNorm2d; fuses to one Conv2d with bias."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, pad: int = 0, groups: int = 1
    ):
        super().__init__()
        self.add_module("conv", nn.Conv2d(in_ch, out_ch, kernel, stride, pad, groups=groups, bias=False))
        self.add_module("norm", nn.BatchNorm2d(out_ch))

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        conv = self.conv
        scale, shift = bn_affine(self.norm)
        fused = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            groups=conv.groups,
            bias=True,
        ).to(conv.weight.device, conv.weight.dtype)
        fused.weight.copy_(conv.weight)
        fused.bias.zero_()
        return scale_conv_output(fused, scale, shift)


class NormLinear(nn.Sequential):
    """BatchNorm1d then Linear; fuses to one Linear."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.add_module("norm", nn.BatchNorm1d(in_features))
        self.add_module("linear", nn.Linear(in_features, out_features))

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        scale, shift = bn_affine(self.norm)
        lin = self.linear
        fused = nn.Linear(lin.in_features, lin.out_features).to(lin.weight.device, lin.weight.dtype)
        fused.weight.copy_(lin.weight * scale[None, :])
        fused.bias.copy_(lin.bias + lin.weight @ shift)
        return fused


class RepDWConvS(nn.Module):
    """Small-kernel multi-branch depthwise conv (3x3, 1x3, 3x1, dilated 2x2); fuses to one 3x3 conv."""

    def __init__(self, dim: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.conv_3_3 = _dw(dim, 3, 3, stride=stride)
        self.conv_3_w = _dw(dim, 1, 3, stride=(1, stride), bias=stride == 1)
        self.conv_3_h = _dw(dim, 3, 1, stride=(stride, 1), bias=stride == 1)
        self.conv_2_2 = _dw(dim, 2, 2, stride=stride, dilation=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_3_3(x) + self.conv_2_2(x)
        if self.stride == 1:
            return y + self.conv_3_h(x) + self.conv_3_w(x)
        return y + self.conv_3_h(self.conv_3_w(x))

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        w = self.conv_3_3.weight + dilate_kernel(self.conv_2_2.weight, 2)
        b = self.conv_3_3.bias + self.conv_2_2.bias
        if self.stride == 1:
            w = w + pad_kernel(self.conv_3_h.weight, 3) + pad_kernel(self.conv_3_w.weight, 3)
            b = b + bias_or_zero(self.conv_3_h) + bias_or_zero(self.conv_3_w)
        else:
            w = w + outer_kernel(self.conv_3_w.weight, self.conv_3_h.weight)
        return conv_from(w, b, self.conv_3_3)


class RepDWConvM(nn.Module):
    """Medium-kernel multi-branch depthwise conv (7x7, 5x3, 3x5, 1x7.7x1, 1x5.5x1); fuses to one 7x7."""

    def __init__(self, dim: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.conv_7_7 = _dw(dim, 7, 7, stride=stride)
        self.conv_5_3 = _dw(dim, 5, 3, stride=stride)
        self.conv_3_5 = _dw(dim, 3, 5, stride=stride)
        self.conv_7_w = _dw(dim, 1, 7, stride=(1, stride), bias=False)
        self.conv_7_h = _dw(dim, 7, 1, stride=(stride, 1), bias=False)
        self.conv_5_w = _dw(dim, 1, 5, stride=(1, stride), bias=False)
        self.conv_5_h = _dw(dim, 5, 1, stride=(stride, 1), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (
            self.conv_7_7(x)
            + self.conv_5_3(x)
            + self.conv_3_5(x)
            + self.conv_7_h(self.conv_7_w(x))
            + self.conv_5_h(self.conv_5_w(x))
        )

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        w = (
            self.conv_7_7.weight
            + pad_kernel(self.conv_5_3.weight, 7)
            + pad_kernel(self.conv_3_5.weight, 7)
            + outer_kernel(self.conv_7_w.weight, self.conv_7_h.weight)
            + pad_kernel(outer_kernel(self.conv_5_w.weight, self.conv_5_h.weight), 7)
        )
        b = self.conv_7_7.bias + self.conv_5_3.bias + self.conv_3_5.bias
        return conv_from(w, b, self.conv_7_7)


class ChunkConv(nn.Module):
    """Block token mixer: 4 channel chunks through identity, RepDWConvS, RepDWConvM, 1x11 -> 11x1."""

    def __init__(self, dim: int):
        super().__init__()
        if dim % 4:
            raise ValueError(f"ChunkConv needs a channel count divisible by 4, got {dim}")
        c = dim // 4
        self.conv_s = RepDWConvS(c)
        self.conv_m = RepDWConvM(c)
        self.conv_l = nn.Sequential(_dw(c, 1, 11), _dw(c, 11, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i, s, m, l = torch.chunk(x, 4, dim=1)
        return torch.cat((i, self.conv_s(s), self.conv_m(m), self.conv_l(l)), dim=1)

    @torch.no_grad()
    def fuse(self) -> FusedChunkConv:
        c = self.conv_s.conv_3_3.in_channels
        p = self.conv_s.conv_3_3.weight
        fused = FusedChunkConv(4 * c).to(p.device, p.dtype)
        fused.conv_s = self.conv_s.fuse()
        fused.conv_m = self.conv_m.fuse()
        fused.conv_l.load_state_dict(self.conv_l.state_dict())
        return fused


class CopyConv(nn.Module):
    """Downsample token mixer: the same input through stride-2 RepDWConvS and RepDWConvM, concatenated."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv_s = RepDWConvS(dim, stride=2)
        self.conv_m = RepDWConvM(dim, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.conv_s(x), self.conv_m(x)), dim=1)

    @torch.no_grad()
    def fuse(self, norm: nn.BatchNorm2d | None = None) -> FusedCopyConv:
        """Fuse the branches; a BatchNorm that follows the concat folds into each output channel's kernel."""
        p = self.conv_s.conv_3_3.weight
        fused = FusedCopyConv(p.shape[0]).to(p.device, p.dtype)
        fused.conv_s = self.conv_s.fuse()
        fused.conv_m = self.conv_m.fuse()
        if norm is not None:
            scale, shift = bn_affine(norm)
            halves = zip(scale.chunk(2), shift.chunk(2))
            for conv, (sc, sh) in zip((fused.conv_s, fused.conv_m), halves):
                scale_conv_output(conv, sc, sh)
        return fused


def channel_mixer(dim: int, hidden: int) -> nn.Sequential:
    """ConvNorm(1x1) -> GELU -> ConvNorm(1x1), keyed 0/1/2 as in the checkpoints."""
    return nn.Sequential(ConvNorm(dim, hidden), nn.GELU(), ConvNorm(hidden, dim))


def _fuse_mlp(mlp: nn.Sequential, norm: nn.BatchNorm2d | None = None) -> tuple[nn.Conv2d, nn.Conv2d]:
    fc1, fc2 = mlp[0].fuse(), mlp[2].fuse()
    if norm is not None:
        scale_conv_input(fc1, *bn_affine(norm))
    return fc1, fc2


class RepNeXtBlock(nn.Module):
    """y = x + channel_mixer(norm(token_mixer(x)))."""

    def __init__(self, dim: int, mlp_ratio: int = 2):
        super().__init__()
        self.token_mixer = ChunkConv(dim)
        self.norm = nn.BatchNorm2d(dim)
        self.channel_mixer = channel_mixer(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.channel_mixer(self.norm(self.token_mixer(x)))

    @torch.no_grad()
    def fuse(self) -> FusedBlock:
        dim = self.norm.num_features
        p = self.norm.weight
        fused = FusedBlock(dim, self.channel_mixer[0].conv.out_channels // dim).to(p.device, p.dtype)
        fused.token_mixer = self.token_mixer.fuse()
        # The norm feeds only the MLP's first 1x1 conv, so it folds into that conv's input side.
        fused.channel_mixer[0], fused.channel_mixer[2] = _fuse_mlp(self.channel_mixer, self.norm)
        return fused


class Downsample(nn.Module):
    """x = norm(CopyConv(x)); y = x + channel_mixer(x): C -> 2C channels at half resolution."""

    def __init__(self, dim: int, mlp_ratio: int = 2):
        super().__init__()
        self.token_mixer = CopyConv(dim)
        self.norm = nn.BatchNorm2d(2 * dim)
        self.channel_mixer = channel_mixer(2 * dim, 2 * dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.token_mixer(x))
        return x + self.channel_mixer(x)

    @torch.no_grad()
    def fuse(self) -> FusedDownsample:
        dim = self.norm.num_features // 2
        p = self.norm.weight
        fused = FusedDownsample(dim, self.channel_mixer[0].conv.out_channels // (2 * dim))
        fused = fused.to(p.device, p.dtype)
        # The norm feeds both the residual and the MLP, so it folds into the mixer's output side.
        fused.token_mixer = self.token_mixer.fuse(self.norm)
        fused.channel_mixer[0], fused.channel_mixer[2] = _fuse_mlp(self.channel_mixer)
        return fused


class Stem(nn.Module):
    """Two stride-2 3x3 ConvNorms with a GELU between: 1/4 resolution, C0 channels."""

    def __init__(self, in_chans: int, dim: int):
        super().__init__()
        self.stem = nn.Sequential(
            ConvNorm(in_chans, dim // 2, 3, 2, 1), nn.GELU(), ConvNorm(dim // 2, dim, 3, 2, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)


class Classifier(nn.Module):
    """Two NormLinear heads; eval returns their mean, training with distillation returns both."""

    def __init__(self, dim: int, num_classes: int, distillation: bool = True):
        super().__init__()
        self.distillation = distillation
        self.head = NormLinear(dim, num_classes)
        if distillation:
            self.head_dist = NormLinear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if not self.distillation:
            return self.head(x)
        y, y_dist = self.head(x), self.head_dist(x)
        if self.training:
            return y, y_dist
        return (y + y_dist) / 2

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        head = self.head.fuse()
        if self.distillation:
            dist = self.head_dist.fuse()
            head.weight.add_(dist.weight).div_(2)
            head.bias.add_(dist.bias).div_(2)
        return head
