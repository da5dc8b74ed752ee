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


def to_ncnn(model, folder: Path, input_shape=(1, 3, 224, 224)) -> Path:
    """`model` as ncnn param/bin with fp32 weights in `folder` (replaced whole), via pnnx from a TorchScript
    trace (GELU stays one layer); returns the stem (folder/model)."""
    import pnnx
    import torch

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log = folder.with_name(f"{folder.name}.pnnx.log")
    cwd = os.getcwd()
    os.chdir(tmp)  # pnnx drops its side files next to the trace
    try:
        with captured_fds(log):
            pnnx.export(
                model.eval(),
                str(tmp / "model.pt"),
                (torch.randn(*input_shape),),
                ncnnparam=str(tmp / "model.param"),
                ncnnbin=str(tmp / "model.bin"),
                fp16=False,
            )
    finally:
        os.chdir(cwd)
    if not (tmp / "model.param").is_file():
        raise ConversionError(f"pnnx wrote no model.param in {tmp}; its log is {log}")
    for side in [*tmp.glob("model.pnnx*"), *tmp.glob("model_*.py"), tmp / "model.pt"]:
        side.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder / "model"


def to_mnn(onnx_path: Path, out: Path) -> Path:
    """An ONNX file converted to .mnn by MNN's converter function (never the `mnnconvert` script, which
    pip-installs a package and sends usage data)."""
    out = Path(out)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.mnn")
    code = (
        "import sys, _tools; sys.exit(_tools.mnnconvert(['mnnconvert', '-f', 'ONNX', '--modelFile', "
        f"{str(onnx_path)!r}, '--MNNModel', {str(tmp)!r}, '--bizCode', 'repnext']) or 0)"
    )
    # a child process: the converter prints a lot, calls exit() on some errors, and its return value is not
    # an exit status (it is non-zero on success), so success is "Converted Success" plus the file
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    if not tmp.is_file() or "Converted Success" not in proc.stdout + proc.stderr:
        tmp.unlink(missing_ok=True)
        raise ConversionError(
            f"MNN's converter failed on {onnx_path}:\n{(proc.stdout + proc.stderr)[-2000:]}"
        )
    os.replace(tmp, out)
    return out


def convert_ncnn(variant: str, seed: int) -> Path:
    """The cached ncnn model of `variant` (see to_ncnn); returns the stem."""
    folder = models_dir(variant, seed) / "ncnn"
    if not (folder / "model.param").is_file():
        to_ncnn(fused_model(variant, seed)[0], folder)
    return folder / "model"


def convert_mnn(variant: str, seed: int) -> Path:
    """The cached .mnn model of `variant`, from its ONNX file."""
    out = models_dir(variant, seed) / "model.mnn"
    if not out.is_file():
        to_mnn(convert_onnx(variant, seed), out)
    return out
