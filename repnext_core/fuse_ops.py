"""Exact algebra of structural reparameterization: BatchNorm folding and depthwise kernel merging."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) such that bn(x) == scale * x + shift in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    return scale, shift


def pad_kernel(weight: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad a [C, 1, kh, kw] kernel, centred, to [C, 1, size, size]; kh, kw odd."""
    kh, kw = weight.shape[-2:]
    ph, pw = (size - kh) // 2, (size - kw) // 2
    return F.pad(weight, (pw, size - kw - pw, ph, size - kh - ph))


def dilate_kernel(weight: torch.Tensor, dilation: int) -> torch.Tensor:
    """Spread a kernel's taps `dilation` apart, the dense kernel that a dilated conv applies."""
    c, g, kh, kw = weight.shape
    out = weight.new_zeros(c, g, (kh - 1) * dilation + 1, (kw - 1) * dilation + 1)
    out[:, :, ::dilation, ::dilation] = weight
    return out


def outer_kernel(row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """The KxK depthwise kernel of a bias-free 1xK conv followed by a Kx1 conv."""
    return col * row  # [C,1,K,1] * [C,1,1,K] -> [C,1,K,K]


def bias_or_zero(conv: nn.Conv2d) -> torch.Tensor:
    """A conv's bias, or zeros when it has none, so that branch biases can be summed."""
    if conv.bias is not None:
        return conv.bias
    return conv.weight.new_zeros(conv.out_channels)


def depthwise_conv(
    channels: int,
    kernel: int | tuple[int, int],
    stride: int = 1,
    bias: bool = True,
) -> nn.Conv2d:
    """A depthwise conv with 'same'-centred padding, the building block of every fused mixer."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    return nn.Conv2d(
        channels, channels, (kh, kw), stride=stride, padding=(kh // 2, kw // 2), groups=channels, bias=bias
    )


def conv_from(weight: torch.Tensor, bias: torch.Tensor, like: nn.Conv2d) -> nn.Conv2d:
    """A Conv2d with the geometry of `like` (stride, groups, ...) and the given weight and bias."""
    kh, kw = weight.shape[-2:]
    conv = nn.Conv2d(
        like.in_channels,
        like.out_channels,
        (kh, kw),
        stride=like.stride,
        padding=(kh // 2, kw // 2),
        groups=like.groups,
        bias=True,
    )
    conv.weight.data.copy_(weight)
    conv.bias.data.copy_(bias)
    return conv.to(device=weight.device, dtype=weight.dtype)


def scale_conv_output(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor) -> nn.Conv2d:
    """Fold an affine map applied after `conv` (scale * conv(x) + shift) into the conv, in place."""
    conv.weight.data.mul_(scale.reshape(-1, 1, 1, 1))
    conv.bias.data.mul_(scale).add_(shift)
    return conv


def scale_conv_input(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor) -> nn.Conv2d:
    """Fold an affine map applied before a 1x1 conv (conv(scale * x + shift)) into it, in place."""
    if conv.kernel_size != (1, 1) or conv.groups != 1:
        raise ValueError("only a dense 1x1 conv can absorb an input-side affine map exactly")
    w = conv.weight.data
    conv.bias.data.add_((w[:, :, 0, 0] * shift[None, :]).sum(1))
    w.mul_(scale.reshape(1, -1, 1, 1))
    return conv
