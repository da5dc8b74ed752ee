"""`repnext export` / `repnext inspect` on the real repnext_m0 (at 64x64), and the export demo."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from repnext_core.cli import main
from repnext_core.compile.export.common import ExportError

M0_BLOCKS = 2 + 2 + 9 + 1


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def m0_files(tmp_path_factory):
    """repnext_m0 exported once per format through the CLI entry point."""
    pytest.importorskip("coremltools")
    pytest.importorskip("onnxruntime")
    d = tmp_path_factory.mktemp("cli")
    common = ["--input-size", "64", "64"]
    onnx_rc = main(
        ["export", "repnext_m0", "--format", "onnx", "--dynamic-batch", *common, "--out", str(d / "m0.onnx")]
    )
    cm_rc = main(["export", "repnext_m0", "--format", "coreml", *common, "--out", str(d / "m0.mlpackage")])
    return {"onnx": (onnx_rc, d / "m0.onnx"), "coreml": (cm_rc, d / "m0.mlpackage")}


def test_export_onnx_then_inspect(m0_files, capsys):
    rc, path = m0_files["onnx"]
    assert rc == 0 and path.is_file()
    rc, out, _ = _run(capsys, "inspect", str(path))
    assert rc == 0
    assert "BatchNorm ops: 0" in out and "Split 14" in out
    assert "published reference (paper, not measured here): repnext_m0 0.59 ms" in out
    rc, out, _ = _run(capsys, "inspect", str(path), "--json")
    data = json.loads(out)
    assert data["batchnorm_ops"] == 0 and data["metadata"]["variant"] == "repnext_m0"
    assert data["inputs"][0]["shape"] == ["batch", 3, 64, 64]
    assert len(data["blocks"]) == M0_BLOCKS


def test_export_coreml_census_of_repnext_m0(m0_files, capsys):
    rc, path = m0_files["coreml"]
    assert rc == 0 and (path / "Manifest.json").is_file()
    from repnext_core.compile.export.inspect.census import block_signature
    from repnext_core.compile.export.inspect.coreml_inspect import inspect_coreml

    report = inspect_coreml(path)
    assert report.batchnorm_ops == 0 and report.precision == "fp16"
    assert set(report.ops) == {"conv", "split", "concat", "gelu", "add", "reduce_mean", "linear"}
    sigs = {block_signature(b) for b in report.blocks}
    assert len(report.blocks) == M0_BLOCKS and len(sigs) == 1
    assert report.metadata["variant"] == "repnext_m0"
    assert report.metadata["checkpoint"] == "none (random weights)"
    assert "0.59 ms on iPhone 12" in report.render()


def test_unknown_format_is_an_argparse_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "repnext_m0", "--format", "tflite", "--out", str(tmp_path / "m.tflite")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'tflite'" in err and "coreml" in err and "onnx" in err


@pytest.mark.parametrize(
    "out,message",
    [("missing/m0.onnx", "does not exist"), ("m0.pb", "must end with '.onnx'")],
)
def test_bad_output_path(tmp_path, capsys, out, message):
    rc, _, err = _run(capsys, "export", "repnext_m0", "--format", "onnx", "--out", str(tmp_path / out))
    assert rc == 2 and message in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "fmt,flag,message",
    [
        ("onnx", ["--precision", "fp16"], "--precision fp16 is Core ML only"),
        ("onnx", ["--image-input"], "--image-input is Core ML only"),
        ("coreml", ["--dynamic-batch"], "--dynamic-batch is ONNX only"),
    ],
)
def test_options_of_the_other_format_are_refused(tmp_path, capsys, fmt, flag, message):
    suffix = ".onnx" if fmt == "onnx" else ".mlpackage"
    rc, _, err = _run(
        capsys, "export", "repnext_m0", "--format", fmt, *flag, "--out", str(tmp_path / f"m{suffix}")
    )
    assert rc == 2 and message in err


def test_bad_min_target_is_refused_before_building_the_model(tmp_path, capsys):
    pytest.importorskip("coremltools")
    out = str(tmp_path / "m.mlpackage")
    rc, stdout, err = _run(
        capsys, "export", "repnext_m0", "--format", "coreml", "--min-target", "iOS14", "--out", out
    )
    assert rc == 2 and "min_target 'iOS14' is not an ML program target; valid: iOS15, iOS16" in err
    assert "random weights" not in stdout  # refused before any model was built


def test_failed_export_exit_code_and_message(tmp_path, capsys, monkeypatch):
    import repnext_core.compile.export.dispatch as dispatch

    def fail(*args, **kwargs):
        raise ExportError("coremltools conversion failed at op 'x'")

    monkeypatch.setattr(dispatch, "export_model", fail)
    out = tmp_path / "m0.mlpackage"
    rc, _, err = _run(capsys, "export", "repnext_m0", "--format", "coreml", "--out", str(out))
    assert rc == 1 and "failed at op 'x'" in err and "nothing was written" in err
    assert not out.exists()


def test_inspect_of_a_missing_file(tmp_path, capsys):
    rc, _, err = _run(capsys, "inspect", str(tmp_path / "absent.onnx"))
    assert rc == 2 and "no such file" in err


def test_registering_the_commands_imports_neither_coremltools_nor_onnx():
    code = (
        "import argparse, sys\n"
        "from repnext_core.cli import export as export_cli\n"
        "p = argparse.ArgumentParser(prog='repnext')\n"
        "export_cli.register(p.add_subparsers(dest='command'))\n"
        "p.format_help()\n"
        "print(sorted(m for m in ('coremltools', 'onnx', 'onnxruntime', 'onnxscript') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_export_report_for_the_demo(tmp_path):
    pytest.importorskip("coremltools")
    from repnext_core import reparameterize
    from repnext_core.compile.export.report import export_report
    from repnext_core.testing import toy_model

    demo = export_report(reparameterize(toy_model()), tmp_path, variant="toy", input_size=64)
    assert demo.onnx.parity_ok and demo.onnx.batches == (1, 3)
    assert demo.census.batchnorm_ops == 0 and len(demo.census.blocks) == 4
    assert "max |diff|" in demo.text and "OK" in demo.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.mlpackage", "toy.onnx"]


@pytest.mark.slow
def test_export_report_repnext_m1_at_224(tmp_path):
    pytest.importorskip("coremltools")
    from repnext_core.compile.export.report import export_report

    demo = export_report(None, tmp_path, "repnext_m1")
    assert demo.onnx.parity_ok
    assert demo.census.batchnorm_ops == 0 and len(demo.census.blocks) == 3 + 3 + 15 + 2
    assert "repnext_m1 0.86 ms on iPhone 12" in demo.text
