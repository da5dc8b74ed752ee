"""The fused model in the formats peer runtimes load (ONNX, ncnn, MNN), with its seeded input and fused
PyTorch's output on it, converted once and cached under CACHE_ROOT/models/<variant>-seed<N>/.

Used by the host engines and by the counted ARM bench alike, so every runtime sees the same weights and input.
Conversions need the `peers` extra (pnnx for ncnn, MNN for its converter); torch and onnx come with the project.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from repnext_core.compile.device.tools import DeviceError
from repnext_core.files import atomic_output, cache_root


class ConversionError(DeviceError):
    """A converter that failed or wrote nothing; the message carries its log."""


def models_dir(variant: str, seed: int) -> Path:
    """Where the fused checkpoint, the input, the reference output and the converted models of a variant go."""
    path = cache_root() / "models" / f"{variant}-seed{seed}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fused_model(variant: str, seed: int):
    """The fused eval-mode model with seeded random weights, its checkpoint saved once in the cache."""
    import torch

    import repnext_core

    ckpt = models_dir(variant, seed) / "fused.pth"
    if not ckpt.is_file():
        torch.manual_seed(seed)
        model = repnext_core.create_model(variant, fused=True).eval()
        tmp = ckpt.with_suffix(".tmp")
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, ckpt)
    return repnext_core.create_model(variant, fused=True, pretrained=str(ckpt)).eval(), ckpt


def reference(variant: str, seed: int, size: int = 224) -> tuple[Path, np.ndarray]:
    """The seeded input x.npy and fused PyTorch's output on it (the ground truth every engine must match)."""
    import torch

    folder = models_dir(variant, seed)
    x_path, y_path = folder / "x.npy", folder / "ref.npy"
    if not (x_path.is_file() and y_path.is_file()):
        model, _ = fused_model(variant, seed)
        x = np.random.default_rng(seed).standard_normal((1, 3, size, size)).astype(np.float32)
        with torch.no_grad():
            y = model(torch.from_numpy(x)).numpy()
        _save_npy(x_path, x)
        _save_npy(y_path, y)
    return x_path, np.load(y_path)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def convert_onnx(variant: str, seed: int) -> Path:
    """The fused model as ONNX, through the repnext exporter (dynamo, chunk as one Split)."""
    out = models_dir(variant, seed) / "model.onnx"
    if not out.is_file():
        from repnext_core.compile.export.onnx_export import export_onnx

        model, _ = fused_model(variant, seed)
        export_onnx(model, out, verify=False)
    return out


@contextlib.contextmanager
def captured_fds(log: Path):
    """Send this process's stdout/stderr file descriptors to log (pnnx's C++ side prints pages of passes)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log, "w") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def convert_ncnn(variant: str, seed: int) -> Path:
    """The fused model as ncnn param/bin with fp32 weights, via pnnx from a TorchScript trace; returns the stem."""
    folder = models_dir(variant, seed) / "ncnn"
    stem = folder / "model"
    if not (folder / "model.param").is_file():
        import pnnx
        import torch

        model, _ = fused_model(variant, seed)
        tmp = folder.with_name(f".ncnn.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        x = torch.randn(1, 3, 224, 224)
        cwd = os.getcwd()
        log = folder.with_name("pnnx.log")
        os.chdir(tmp)  # pnnx drops its side files next to the trace
        try:
            with captured_fds(log):
                pnnx.export(
                    model,
                    str(tmp / "model.pt"),
                    (x,),
                    ncnnparam=str(tmp / "model.param"),
                    ncnnbin=str(tmp / "model.bin"),
                    fp16=False,
                )
        finally:
            os.chdir(cwd)
        if not (tmp / "model.param").is_file():
            raise ConversionError(f"pnnx wrote no model.param in {tmp}; its log is {log}")
        for side in [*tmp.glob("model.pnnx*"), *tmp.glob("model_*.py")]:
            side.unlink()
        (tmp / "model.pt").unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    return stem


def convert_mnn(variant: str, seed: int) -> Path:
    """The ONNX model converted to .mnn by MNN's converter called in-process (never the mnnconvert script)."""
    out = models_dir(variant, seed) / "model.mnn"
    if not out.is_file():
        onnx_path = convert_onnx(variant, seed)
        tmp = out.with_name(f".model.{os.getpid()}.mnn")
        code = (
            "import sys, _tools; sys.exit(_tools.mnnconvert(['mnnconvert', '-f', 'ONNX', '--modelFile', "
            f"{str(onnx_path)!r}, '--MNNModel', {str(tmp)!r}, '--bizCode', 'repnext']) or 0)"
        )
        # a child process: the converter prints a lot, calls exit() on some errors, and its return value is
        # not an exit status (it is non-zero on success), so success is "Converted Success" plus the file
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
        if not tmp.is_file() or "Converted Success" not in proc.stdout + proc.stderr:
            tmp.unlink(missing_ok=True)
            raise ConversionError(
                f"MNN's converter failed on {onnx_path}:\n{(proc.stdout + proc.stderr)[-2000:]}"
            )
        os.replace(tmp, out)
    return out
