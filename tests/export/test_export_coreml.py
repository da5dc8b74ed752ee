"""Core ML export of the fused RepNeXt, checked on Linux from the saved package (no Core ML runtime here)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("coremltools")

from repnext_core import VARIANTS, reparameterize  # noqa: E402
from repnext_core.compile.export.common import ExportError  # noqa: E402
from repnext_core.compile.export.coreml_export import check_std_fold, export_coreml, fold_input_std  # noqa: E402
from repnext_core.compile.export.inspect.census import ModelReport, block_signature  # noqa: E402
from repnext_core.compile.export.inspect.coreml_inspect import coreml_weights, inspect_coreml  # noqa: E402
from repnext_core.model import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from repnext_core.testing import toy_model  # noqa: E402

SHAPE = (1, 3, 64, 64)
# What coremltools 9 emits for one fused block: nothing else (no batch_norm, no cast, no reshape).
BLOCK_OPS = {
    "split": 1,
    "conv dw 3x3 s1": 1,
    "conv dw 7x7 s1": 1,
    "conv dw 1x11 s1": 1,
    "conv dw 11x1 s1": 1,
    "concat": 1,
    "conv 1x1 s1": 2,
    "gelu": 1,
    "add": 1,
}
# The toy (depth 1,1,1,1): 2 stem convs, 3 downsamples (3x3 + 7x7 stride 2, two 1x1), 4 blocks.
TOY_KERNELS = {
    "3x3 s2": 2,
    "dw 3x3 s2": 3,
    "dw 7x7 s2": 3,
    "1x1 s1": 2 * 3 + 2 * 4,
    "dw 3x3 s1": 4,
    "dw 7x7 s1": 4,
    "dw 1x11 s1": 4,
    "dw 11x1 s1": 4,
}
TENSOR_OPS = {"conv", "split", "concat", "gelu", "add", "reduce_mean", "linear"}


@pytest.fixture(scope="module")
def fused_toy() -> nn.Module:
    return reparameterize(toy_model(seed=0))


@pytest.fixture(scope="module")
def packages(tmp_path_factory, fused_toy):
    """One conversion per setting, shared by the tests below (each costs seconds)."""
    d = tmp_path_factory.mktemp("coreml")
    settings = {
        "fp16": {},
        "fp32": {"precision": "fp32"},
        "image": {"precision": "fp32", "image_input": True},
        "ios15": {"min_target": "iOS15"},
    }
    meta = {"variant": "toy", "checkpoint": "seed-0 random"}
    return {
        k: export_coreml(fused_toy, d / f"{k}.mlpackage", input_shape=SHAPE, metadata=meta, **kw)
        for k, kw in settings.items()
    }


@pytest.mark.parametrize("key", ["fp16", "fp32"])
def test_fused_census_is_blocks_of_split_dwconv_concat_mlp(packages, key):
    report = inspect_coreml(packages[key].path)
    assert report.batchnorm_ops == 0 and "batch_norm" not in report.ops
    assert set(report.ops) == TENSOR_OPS  # iOS16: no cast at either end, fp16 included
    blocks = report.blocks
    assert len(blocks) == 4
    for block in blocks:
        assert dict(block_signature(block)) == BLOCK_OPS
    assert dict(report.conv_kernels) == TOY_KERNELS
    assert report.details["gelu mode"] == "EXACT x8"  # nn.GELU() is the erf form, not tanh


def test_precision_and_io_types(packages):
    fp16, fp32 = inspect_coreml(packages["fp16"].path), inspect_coreml(packages["fp32"].path)
    assert fp16.precision == "fp16" and set(fp16.weight_dtypes) == {"fp16"}
    assert fp32.precision == "fp32" and set(fp32.weight_dtypes) == {"fp32"}
    assert [(t.name, t.dtype, t.shape) for t in fp16.inputs] == [("image", "fp16", SHAPE)]
    assert [(t.name, t.dtype, t.shape) for t in fp16.outputs] == [("logits", "fp16", (1, 10))]
    assert [(t.dtype, t.shape) for t in fp32.inputs] == [("fp32", SHAPE)]
    assert fp16.details["cast ops"] == "0"


def test_ios15_fp16_has_exactly_two_boundary_casts(packages):
    report = inspect_coreml(packages["ios15"].path)
    assert report.details["cast ops"] == "2 (fp32->fp16, fp16->fp32)"
    assert report.nodes[0].op == "cast" and report.nodes[-1].op == "cast"  # only at the two ends
    assert [t.dtype for t in report.inputs + report.outputs] == ["fp32", "fp32"]
    assert all(dict(block_signature(b)) == BLOCK_OPS for b in report.blocks)


def _torch_weights(model: nn.Module) -> list[np.ndarray]:
    return [m.weight.detach().numpy() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _multiset(arrays) -> Counter:
    return Counter((a.shape, a.tobytes()) for a in arrays)


@pytest.mark.parametrize("key,dtype", [("fp32", np.float32), ("fp16", np.float16)])
def test_saved_weights_are_the_fused_weights(packages, fused_toy, key, dtype):
    saved = [w for name, w in coreml_weights(packages[key].path).items() if "bias" not in name]
    expected = [w.astype(dtype) for w in _torch_weights(fused_toy)]
    assert saved and all(w.dtype == dtype for w in saved)
    assert _multiset(saved) == _multiset(expected)  # bit-exact, after fp16 rounding for fp16


def test_image_input_bakes_in_imagenet_normalization(packages, fused_toy):
    report = inspect_coreml(packages["image"].path)
    (inp,) = report.inputs
    assert (inp.kind, inp.dtype, inp.shape) == ("image", "RGB", SHAPE[2:])
    pre = report.details["image preprocessing"]
    assert "0.003922" in pre and "-0.485, -0.456, -0.406" in pre  # scale 1/255, bias -mean
    first_weight = next(iter(coreml_weights(packages["image"].path).values()))
    stem = fused_toy.stem.stem[0].weight.detach()
    expected = (stem / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)).numpy()
    np.testing.assert_array_equal(first_weight, expected)  # 1/std folded into the stem conv
    assert all(dict(block_signature(b)) == BLOCK_OPS for b in report.blocks)


def test_std_fold_is_exact_and_refuses_a_model_that_does_not_start_with_the_conv(fused_toy):
    folded = fold_input_std(fused_toy)
    assert check_std_fold(fused_toy, folded, SHAPE) < 1e-4
    assert not torch.equal(folded.stem.stem[0].weight, fused_toy.stem.stem[0].weight)

    class Shifted(nn.Module):  # an op before the conv: folding 1/std into it would be wrong
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return self.conv(x + 1.0)

    m = Shifted().eval()
    with pytest.raises(ExportError, match="not the first op"):
        check_std_fold(m, fold_input_std(m), SHAPE)


def test_metadata_round_trip(packages):
    import coremltools as ct

    spec = ct.utils.load_spec(str(packages["fp16"].path))
    md = spec.description.metadata
    assert md.userDefined["variant"] == "toy"
    assert md.userDefined["checkpoint"] == "seed-0 random"
    assert md.userDefined["precision"] == "fp16"
    assert str(list(IMAGENET_MEAN)) in md.userDefined["input_normalization"]
    assert "RepNeXt" in md.author and "toy" in md.shortDescription
    assert "0-255" in inspect_coreml(packages["image"].path).metadata["input_normalization"]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_published_latency_is_quoted_as_a_reference(variant):
    line = ModelReport("coreml", "x.mlpackage", metadata={"variant": variant}).published_latency()
    assert f"{variant} {VARIANTS[variant].iphone12_ms:.2f} ms on iPhone 12" in line
    assert line.startswith("published reference (paper, not measured here)")


def test_unknown_variant_gets_no_latency_figure():
    line = ModelReport("coreml", "x.mlpackage", metadata={"variant": "toy"}).published_latency()
    assert "none for variant 'toy'" in line and "ms" not in line


def test_bad_settings_fail_before_any_work(tmp_path, fused_toy):
    with pytest.raises(ValueError, match="precision"):
        export_coreml(fused_toy, tmp_path / "m.mlpackage", precision="int8")
    with pytest.raises(ValueError, match="min_target 'iOS14'"):
        export_coreml(fused_toy, tmp_path / "m.mlpackage", min_target="iOS14")
    with pytest.raises(ValueError, match="image_input needs"):
        export_coreml(fused_toy, tmp_path / "m.mlpackage", image_input=True, input_shape=(2, 3, 64, 64))
    assert list(tmp_path.iterdir()) == []
