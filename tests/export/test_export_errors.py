"""Export failure modes: bad paths and formats, unfused input, and failed or interrupted writes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from repnext_core import count_batchnorms
from repnext_core.compile.export.common import ExportError, check_format, check_output_path
from repnext_core.compile.export.dispatch import export_model
from repnext_core.compile.export.inspect.dispatch import detect_format, inspect_model
from repnext_core.files import atomic_output, replace_path
from repnext_core.testing import toy_model

SHAPE = (1, 3, 64, 64)


def _listing(d) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# -- paths and formats --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,name", [("onnx", "model.onnx"), ("coreml", "model.mlpackage")])
def test_missing_parent_directory(tmp_path, fmt, name):
    with pytest.raises(ValueError, match="does not exist"):
        check_output_path(tmp_path / "no" / "such" / name, fmt)


@pytest.mark.parametrize(
    "fmt,name,suffix",
    [("onnx", "model.onnx.tmp", ".onnx"), ("coreml", "model.mlmodel", ".mlpackage"), ("onnx", "m", ".onnx")],
)
def test_wrong_suffix(tmp_path, fmt, name, suffix):
    with pytest.raises(ValueError, match=f"must end with '{suffix}'"):
        check_output_path(tmp_path / name, fmt)


def test_bad_path_fails_before_the_model_is_touched(tmp_path):
    class Untouchable(nn.Module):
        def forward(self, x):
            raise AssertionError("the model must not run when the path is bad")

    for fmt, name in (("onnx", "x/m.onnx"), ("coreml", "x/m.mlpackage"), ("onnx", "m.pb")):
        with pytest.raises(ValueError):
            export_model(Untouchable(), tmp_path / name, fmt)
    assert _listing(tmp_path) == []


def test_unknown_format_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'tflite'; valid formats: coreml, onnx"):
        export_model(nn.Identity(), tmp_path / "m.tflite", "tflite")
    with pytest.raises(ValueError, match="coreml, onnx"):
        check_format("torchscript")
    f = tmp_path / "m.tflite"
    f.write_bytes(b"")
    with pytest.raises(ValueError, match=r"\.mlpackage \(coreml\), \.onnx \(onnx\)"):
        inspect_model(f)
    assert detect_format("a/b.onnx") == "onnx" and detect_format("a/b.mlpackage") == "coreml"
    with pytest.raises(FileNotFoundError):
        inspect_model(tmp_path / "absent.onnx")


# -- unfused input ------------------------------------------------------------------------------------


def test_unfused_model_is_fused_with_a_warning_and_left_untouched(tmp_path, caplog):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    model = toy_model(seed=1).train()  # training form, training mode
    n_bn = count_batchnorms(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="repnext_core.compile.export"):
        result = export_model(model, tmp_path / "m.onnx", "onnx", input_shape=SHAPE)
    assert result.auto_fused and result.parity_ok
    assert any(
        "not fused" in r.getMessage() and f"{n_bn} BatchNorm" in r.getMessage() for r in caplog.records
    )
    assert model.training and count_batchnorms(model) == n_bn  # the caller's model is as it was
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # The file computes the training form's eval output: the fusion is exact.
    x = torch.randn(SHAPE)
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    got = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"]).run(
        None, {"image": x.numpy()}
    )
    assert abs(got[0] - ref).max() <= 1e-5 + 1e-4 * abs(ref).max()


def test_unfused_model_to_coreml_census_has_no_batchnorm(tmp_path, caplog):
    pytest.importorskip("coremltools")
    with caplog.at_level(logging.WARNING, logger="repnext_core.compile.export"):
        result = export_model(toy_model(seed=2), tmp_path / "m.mlpackage", "coreml", input_shape=SHAPE)
    assert result.auto_fused and "not fused" in caplog.text
    report = inspect_model(result.path)
    assert report.batchnorm_ops == 0 and len(report.blocks) == 4


def test_a_model_that_cannot_be_fused_is_refused(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)).eval()  # BN but no fuse(): not RepNeXt
    with pytest.raises(ExportError, match="1 BatchNorm modules are left"):
        export_model(model, tmp_path / "m.onnx", "onnx", input_shape=SHAPE)
    assert _listing(tmp_path) == []


# -- failed and interrupted writes ---------------------------------------------------------------------


def test_failed_coreml_conversion_names_the_op_and_leaves_nothing(tmp_path, monkeypatch):
    ct = pytest.importorskip("coremltools")

    def boom(*args, **kwargs):
        raise NotImplementedError("PyTorch convert function for op 'fancy_mixer' not implemented.")

    monkeypatch.setattr(ct, "convert", boom)
    with pytest.raises(ExportError, match=r"at op 'fancy_mixer' \(precision=fp16, min_target=iOS16"):
        export_model(toy_model(), tmp_path / "m.mlpackage", "coreml", input_shape=SHAPE)
    assert _listing(tmp_path) == []


def test_interrupted_coreml_save_leaves_nothing_and_keeps_the_old_package(tmp_path, monkeypatch):
    pytest.importorskip("coremltools")
    import repnext_core.compile.export.coreml_export as coreml

    out = tmp_path / "m.mlpackage"
    out.mkdir()
    (out / "old.txt").write_text("previous export")

    class HalfSaved:  # stands in for the converted MLModel (the conversion is not what is tested here)
        def __init__(self):
            self.user_defined_metadata, self.input_description, self.output_description = {}, {}, {}

        def save(self, path):
            Path(path, "Data").mkdir(parents=True)  # half a package, then Ctrl-C
            raise KeyboardInterrupt

    monkeypatch.setattr(coreml, "convert_to_mlprogram", lambda *a, **k: HalfSaved())
    with pytest.raises(KeyboardInterrupt):
        export_model(toy_model(), out, "coreml", input_shape=SHAPE)
    assert _listing(tmp_path) == ["m.mlpackage"]
    assert _listing(out) == ["old.txt"]


def test_failed_onnx_write_leaves_nothing_and_keeps_the_old_file(tmp_path, monkeypatch):
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous export")

    def disk_full(proto, path, **kwargs):
        with open(path, "wb") as f:
            f.write(b"\x08partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx, "save_model", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export_model(toy_model(), out, "onnx", input_shape=SHAPE, verify=False)
    assert _listing(tmp_path) == ["m.onnx"] and out.read_bytes() == b"previous export"


def test_atomic_output_replaces_a_directory_whole(tmp_path):
    out = tmp_path / "pkg.mlpackage"
    out.mkdir()
    (out / "old").write_text("1")
    with atomic_output(out) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".pkg.tmp-") and tmp.suffix == ".mlpackage"
        tmp.mkdir()
        (tmp / "new").write_text("2")
        assert _listing(out) == ["old"]  # nothing visible until the writer is done
    assert _listing(out) == ["new"] and _listing(tmp_path) == ["pkg.mlpackage"]


def test_atomic_output_requires_the_writer_to_produce_something(tmp_path):
    with pytest.raises(FileNotFoundError, match="produced nothing"):
        with atomic_output(tmp_path / "m.onnx"):
            pass
    assert _listing(tmp_path) == []


def test_replace_path_restores_the_old_output_if_the_final_rename_fails(tmp_path, monkeypatch):
    import os

    import repnext_core.files as files

    dst, src = tmp_path / "m.onnx", tmp_path / "new.onnx"
    dst.write_text("old")
    src.write_text("new")
    real = os.replace
    calls = []

    def flaky(a, b):
        calls.append((a, b))
        if len(calls) == 2:  # the rename of the new output into place
            raise OSError("rename failed")
        return real(a, b)

    monkeypatch.setattr(files.os, "replace", flaky)
    with pytest.raises(OSError, match="rename failed"):
        replace_path(src, dst)
    assert dst.read_text() == "old"


def test_untraceable_model_fails_with_the_stage_named_and_leaves_nothing(tmp_path):
    pytest.importorskip("coremltools")

    class DataDependent(nn.Module):  # a branch on tensor values: torch.export cannot trace it
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x) if x.sum() > 0 else self.conv(-x)

    for fmt, name, stage in (
        ("coreml", "m.mlpackage", "torch.export"),
        ("onnx", "m.onnx", "torch.onnx.export"),
    ):
        with pytest.raises(ExportError, match=stage.replace(".", r"\.") + r".*failed"):
            export_model(DataDependent().eval(), tmp_path / name, fmt, input_shape=SHAPE)
    assert _listing(tmp_path) == []
