"""The RepNeXt network (M0-M5), in its training form or built directly in its fused inference form."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .backend import check_backend
from .fused import FusedBlock, FusedDownsample
from .layers import Classifier, Downsample, RepNeXtBlock, Stem


@dataclass(frozen=True)
class VariantSpec:
    """One published variant: its shape and the paper's reference figures."""

    embed_dim: tuple[int, int, int, int]
    depth: tuple[int, int, int, int]
    params_fused_m: float  # published, millions
    macs_g: float  # published, GMACs
    iphone12_ms: float  # paper: Core ML on iPhone 12, iOS 16
    top1_distill: float
    top1_plain: float


VARIANTS: dict[str, VariantSpec] = {
    "repnext_m0": VariantSpec((40, 80, 160, 320), (2, 2, 9, 1), 2.3, 0.4, 0.59, 74.2, 72.6),
    "repnext_m1": VariantSpec((48, 96, 192, 384), (3, 3, 15, 2), 4.8, 0.8, 0.86, 78.8, 77.5),
    "repnext_m2": VariantSpec((56, 112, 224, 448), (3, 3, 15, 2), 6.5, 1.1, 1.00, 80.1, 78.9),
    "repnext_m3": VariantSpec((64, 128, 256, 512), (3, 3, 13, 2), 7.8, 1.3, 1.11, 80.7, 79.4),
    "repnext_m4": VariantSpec((64, 128, 256, 512), (5, 5, 25, 4), 13.3, 2.3, 1.48, 82.3, 81.2),
    "repnext_m5": VariantSpec((80, 160, 320, 640), (7, 7, 35, 2), 21.7, 4.5, 2.20, 83.3, 82.4),
}


# The input normalization the authors' checkpoints were trained with (ImageNet RGB mean and std).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_input(x: torch.Tensor, in_chans: int) -> None:
    """Refuse an input the network cannot take, with a message that says what it expects."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"RepNeXt expects a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"RepNeXt expects a 4-D NCHW batch [N, {in_chans}, H, W], got shape {tuple(x.shape)}"
        )
    if x.shape[1] != in_chans:
        raise ValueError(
            f"RepNeXt expects {in_chans} input channels (NCHW), got {x.shape[1]} in shape {tuple(x.shape)}; "
            "for an NHWC image use x.permute(0, 3, 1, 2)"
        )
    if not x.is_floating_point():
        raise TypeError(f"RepNeXt expects a floating-point input, got {x.dtype}; convert with x.float()")


class Stage(nn.Module):
    """Optional downsample, then a sequence of blocks at one resolution."""

    def __init__(self, downsample: nn.Module, blocks: list[nn.Module]):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class RepNeXt(nn.Module):
    """RepNeXt backbone and classifier; `fused=True` builds the inference form without BatchNorm.

    `features_only=True` returns the stage outputs picked by `out_indices` (strides 4, 8, 16, 32), for
    detection and segmentation necks.
    """

    def __init__(
        self,
        embed_dim: Sequence[int] = (48, 96, 192, 384),
        depth: Sequence[int] = (3, 3, 15, 2),
        mlp_ratio: int = 2,
        in_chans: int = 3,
        num_classes: int = 1000,
        distillation: bool = True,
        drop_rate: float = 0.0,
        features_only: bool = False,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        fused: bool = False,
        backend: str = "auto",
    ):
        super().__init__()
        if len(embed_dim) != len(depth):
            raise ValueError(f"embed_dim {tuple(embed_dim)} and depth {tuple(depth)} differ in length")
        for i, d in enumerate(embed_dim):
            if d % 4:
                raise ValueError(f"embed_dim[{i}] = {d} is not divisible by 4 (the token mixer splits in 4)")
            if i and d != 2 * embed_dim[i - 1]:
                raise ValueError(f"each stage doubles the channels: embed_dim {tuple(embed_dim)}")
        bad = [i for i in out_indices if not 0 <= i < len(depth)]
        if bad:
            raise ValueError(f"out_indices {tuple(out_indices)} must lie in 0..{len(depth) - 1}")
        check_backend(backend)
        self.embed_dim, self.depth = tuple(embed_dim), tuple(depth)
        self.in_chans, self.num_classes = in_chans, num_classes
        self.distillation, self.drop_rate = distillation, drop_rate
        self.features_only, self.out_indices = features_only, tuple(out_indices)
        self.fused = fused
        self.feature_info = [
            {"num_chs": d, "reduction": 4 * 2**i, "module": f"stages.{i}"} for i, d in enumerate(embed_dim)
        ]

        self.stem = Stem(in_chans, embed_dim[0])
        if fused:
            s = self.stem.stem
            s[0], s[2] = (nn.Conv2d(c.conv.in_channels, c.conv.out_channels, 3, 2, 1) for c in (s[0], s[2]))
        stages = []
        for i, (dim, n) in enumerate(zip(embed_dim, depth)):
            if i == 0:
                down = nn.Identity()
            elif fused:
                down = FusedDownsample(embed_dim[i - 1], mlp_ratio, backend)
            else:
                down = Downsample(embed_dim[i - 1], mlp_ratio)
            if fused:
                blocks = [FusedBlock(dim, mlp_ratio, backend) for _ in range(n)]
            else:
                blocks = [RepNeXtBlock(dim, mlp_ratio) for _ in range(n)]
            stages.append(Stage(down, blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = embed_dim[-1]
        if features_only:
            return
        self.head_drop = nn.Dropout(drop_rate)
        if num_classes <= 0:
            self.head = nn.Identity()
        elif fused:
            self.head = nn.Linear(self.num_features, num_classes)
        else:
            self.head = Classifier(self.num_features, num_classes, distillation)

    @property
    def variant(self) -> str | None:
        """The published variant this model's widths and depths are (e.g. 'repnext_m1'), else None."""
        return next(
            (n for n, v in VARIANTS.items() if (v.embed_dim, v.depth) == (self.embed_dim, self.depth)), None
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Backbone output at 1/32, or the selected stage outputs when `features_only`."""
        check_input(x, self.in_chans)
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if self.features_only and i in self.out_indices:
                outs.append(x)
        return outs if self.features_only else x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pool, then the classifier."""
        x = x.mean((2, 3))
        return self.head(self.head_drop(x))

    def forward(self, x: torch.Tensor):
        x = self.forward_features(x)
        return x if self.features_only else self.forward_head(x)

    def reparameterize(self) -> RepNeXt:
        """Fuse this model in place into its inference form and return it."""
        from .reparam import reparameterize

        return reparameterize(self, inplace=True)
