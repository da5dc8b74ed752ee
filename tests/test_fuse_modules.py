"""Each training module's fuse() against the module itself, in eval, with randomized statistics."""

import pytest
import torch
import torch.nn.functional as F
from conftest import tol
from torch import nn

from repnext_core import (
    ChunkConv,
    Classifier,
    ConvNorm,
    CopyConv,
    Downsample,
    FusedChunkConv,
    FusedCopyConv,
    NormLinear,
    RepDWConvM,
    RepDWConvS,
    RepNeXtBlock,
    count_batchnorms,
    reparameterize,
)
from repnext_core.testing import randomize_batchnorm_


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return randomize_batchnorm_(module, seed).eval()


def _check(module: nn.Module, x: torch.Tensor) -> nn.Module:
    module = _randomize(module)
    fused = reparameterize(module)
    with torch.no_grad():
        ref, out = module(x), fused(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= tol(ref)
    assert count_batchnorms(fused) == 0
    return fused


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(14, 14), (13, 9), (1, 1), (2, 5)])
def test_rep_dwconv_s(stride, size):
    fused = _check(RepDWConvS(6, stride), torch.randn(2, 6, *size))
    assert isinstance(fused, nn.Conv2d) and fused.kernel_size == (3, 3) and fused.stride == (stride, stride)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(14, 14), (13, 9), (3, 3)])
def test_rep_dwconv_m(stride, size):
    fused = _check(RepDWConvM(5, stride), torch.randn(2, 5, *size))
    assert isinstance(fused, nn.Conv2d) and fused.kernel_size == (7, 7) and fused.groups == 5


def test_bias_free_branches_have_no_bias():
    # The stride-2 1x3/3x1 pair and all of RepDWConvM's series pairs carry no bias in the checkpoints.
    assert RepDWConvS(4, 2).conv_3_w.bias is None and RepDWConvS(4, 1).conv_3_w.bias is not None
    assert RepDWConvM(4, 1).conv_7_w.bias is None


@pytest.mark.parametrize("size", [(11, 11), (7, 16), (1, 1), (3, 30)])
def test_chunk_conv_exact_at_border(size):
    fused = _check(ChunkConv(16), torch.randn(2, 16, *size))
    assert isinstance(fused, FusedChunkConv)
    assert fused.conv_l[0].kernel_size == (1, 11) and fused.conv_l[1].kernel_size == (11, 1)


def test_single_11x11_kernel_is_wrong_at_the_border():
    """Why the 1x11 -> 11x1 pair stays a pair: its folded 11x11 form is exact only in the interior."""
    pair = _randomize(ChunkConv(8)).conv_l
    x = torch.randn(1, 2, 16, 16)
    row, col = pair
    w = col.weight * row.weight  # [C,1,11,1] * [C,1,1,11]
    b = col.bias + row.bias * col.weight.sum((1, 2, 3))
    with torch.no_grad():
        ref, single = pair(x), F.conv2d(x, w, b, padding=5, groups=2)
    interior = (ref - single)[..., 5:-5, :].abs().max().item()
    border = (ref - single).abs().max().item()
    assert interior <= tol(ref)
    assert border > 100 * tol(ref)


@pytest.mark.parametrize("size", [(14, 14), (13, 9), (1, 1)])
def test_copy_conv_with_norm(size):
    mod = _randomize(CopyConv(6))
    norm = randomize_batchnorm_(nn.BatchNorm2d(12), 3).eval()
    x = torch.randn(2, 6, *size)
    fused = mod.fuse(norm)
    assert isinstance(fused, FusedCopyConv)
    with torch.no_grad():
        ref, out = norm(mod(x)), fused(x)
    assert out.shape == (2, 12, (size[0] + 1) // 2, (size[1] + 1) // 2)
    assert (out - ref).abs().max().item() <= tol(ref)


@pytest.mark.parametrize("size", [(14, 14), (9, 13)])
def test_block(size):
    _check(RepNeXtBlock(16), torch.randn(2, 16, *size))


@pytest.mark.parametrize("size", [(14, 14), (9, 13)])
def test_downsample(size):
    fused = _check(Downsample(8), torch.randn(2, 8, *size))
    assert isinstance(fused.token_mixer, FusedCopyConv)


def test_conv_norm_and_norm_linear():
    fused = _check(ConvNorm(4, 8, 3, 2, 1), torch.randn(2, 4, 9, 9))
    assert fused.bias is not None and fused.stride == (2, 2)
    assert isinstance(_check(NormLinear(8, 5), torch.randn(3, 8)), nn.Linear)


@pytest.mark.parametrize("distillation", [True, False])
def test_classifier(distillation):
    head = _check(Classifier(8, 5, distillation), torch.randn(3, 8))
    assert isinstance(head, nn.Linear)


def test_classifier_training_returns_both_heads():
    head = Classifier(8, 5, distillation=True).train()
    out = head(torch.randn(4, 8))
    assert isinstance(out, tuple) and len(out) == 2


def test_fuse_leaves_original_untouched():
    block = _randomize(RepNeXtBlock(8))
    before = {k: v.clone() for k, v in block.state_dict().items()}
    reparameterize(block)
    assert count_batchnorms(block) == 3  # the block norm and the two ConvNorms' norms are still there
    assert all(torch.equal(before[k], v) for k, v in block.state_dict().items())
