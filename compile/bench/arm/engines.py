"""The engines compared under emulation: their aarch64 wheels, models (converted on the host, shared with the
host bench through conversions.py), and each engine's guest command line."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repnext_core.compile.bench.arm.common import EmulationError, arm_dir, run_checked
from repnext_core.compile.bench.conversions import convert_mnn, convert_ncnn, convert_onnx, fused_model
from repnext_core.verify import tolerance as fp32_tolerance

# pip does not widen manylinux tags by itself: list every tag the wheels we need are published with.
AARCH64_PLATFORMS = (
    "manylinux_2_28_aarch64",
    "manylinux_2_27_aarch64",
    "manylinux_2_24_aarch64",
    "manylinux_2_17_aarch64",
    "manylinux2014_aarch64",
)
FP16_TOLERANCE = 3e-2  # of max|y|: the peers' fp16 paths (ncnn default, MNN "low") are checked against it
WHEELS = {"numpy": "numpy", "ort": "onnxruntime", "ncnn": "ncnn", "mnn": "MNN"}
PEER_SCRIPT = Path(__file__).resolve().parent.parent / "peer_runtimes.py"  # runs inside the guest python


@dataclass(frozen=True)
class Engine:
    """An engine: its wheel (None for our native runner), whether it computes in fp16, and its model format."""

    name: str
    wheel: str | None
    fp16: bool
    model_format: str


ENGINES = {
    "tvm": Engine("tvm", None, False, "tvm"),
    "tvm-fp16": Engine("tvm-fp16", None, True, "tvm"),
    "ncnn": Engine("ncnn", "ncnn", False, "ncnn"),
    "ncnn-fp16": Engine("ncnn-fp16", "ncnn", True, "ncnn"),
    "ort": Engine("ort", "ort", False, "onnx"),
    "mnn": Engine("mnn", "mnn", False, "mnn"),
    "mnn-fp16": Engine("mnn-fp16", "mnn", True, "mnn"),
}


def tolerance(engine: Engine, ref: np.ndarray) -> float:
    """Largest |error| accepted against fused PyTorch: the fp32 parity bound, or 3e-2 max|y| for fp16."""
    peak = float(np.abs(ref).max())
    return FP16_TOLERANCE * peak if engine.fp16 else fp32_tolerance(peak)


def fetch_wheels(cache_root: Path, names: list[str], python_version: str = "3.11") -> list[Path]:
    """cp311 aarch64 wheels of the named packages, downloaded once with `pip download --no-deps`."""
    folder = arm_dir(cache_root) / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    found = []
    for name in names:
        have = [p for p in folder.glob("*.whl") if p.name.split("-")[0].lower() == name.lower()]
        if not have:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                str(folder),
                "--python-version",
                python_version,
            ]
            for plat in AARCH64_PLATFORMS:
                cmd += ["--platform", plat]
            run_checked([*cmd, name], f"pip download {name} (aarch64)", 900)
            have = [p for p in folder.glob("*.whl") if p.name.split("-")[0].lower() == name.lower()]
            if not have:
                raise EmulationError(f"pip download {name} left no wheel in {folder}")
        found.append(sorted(have)[-1])
    return found


def site_dir(cache_root: Path, names: list[str]) -> Path:
    """A folder with the wheels unzipped into it, for the guest's PYTHONPATH (built aside, then renamed)."""
    wheels = fetch_wheels(cache_root, names)
    key = hashlib.sha256("\n".join(sorted(w.name for w in wheels)).encode()).hexdigest()[:12]
    site = arm_dir(cache_root) / "site" / key
    if (site / ".complete").is_file():
        return site
    tmp = site.with_name(f".{key}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmp)
    (tmp / ".complete").write_text("\n".join(w.name for w in wheels) + "\n")
    shutil.rmtree(site, ignore_errors=True)
    os.replace(tmp, site)
    return site


def build_tvm(cache_root: Path, variant: str, seed: int, target: str, precision: str) -> Path:
    """Our TVM artifact (model.so + meta.json) for target from the same fused weights, built anew each run:
    the build is what is measured, so a cached one could be stale."""
    from repnext_core.compile.tvm.build import build_artifact

    out = arm_dir(cache_root) / "tvm" / f"{variant}-seed{seed}-{target}-{precision}"
    model, ckpt = fused_model(variant, seed)
    return build_artifact(model, out, target, variant=variant, checkpoint=ckpt, precision=precision)[0]


def native_runner() -> Path:
    """repnext-run cross-built for aarch64 (`repnext build-runtime --target aarch64`, done when missing)."""
    from repnext_core.compile.device import ensure_runtime

    return ensure_runtime("aarch64").run_exe


@dataclass(frozen=True)
class Prepared:
    """An engine ready to run: its model file/folder and, for our engine, the native runner."""

    engine: Engine
    model: Path  # TVM artifact folder, .onnx, ncnn stem (.param/.bin beside it) or .mnn
    runner: Path | None = None  # repnext-run for tvm; None: the guest python runs peer_runtimes.py

    def argv(self, python: list[str], x: Path, k: int, out: Path) -> list[str]:
        """The guest command that runs k inferences on x and saves the last output to out."""
        if self.runner is not None:
            return [
                str(self.runner),
                str(self.model),
                "--input",
                str(x),
                "--output",
                str(out),
                "--warmup",
                "0",
                "--repeat",
                str(k),
            ]
        return [*python, str(PEER_SCRIPT), self.engine.name, str(self.model), str(x), str(k), str(out)]


def prepare(cache_root: Path, engine: Engine, variant: str, seed: int, target: str) -> Prepared:
    """Everything the engine needs for this variant and target core, built or fetched once."""
    if engine.name == "tvm":
        return Prepared(engine, build_tvm(cache_root, variant, seed, target, "fp32"), native_runner())
    if engine.name == "tvm-fp16":
        return Prepared(engine, build_tvm(cache_root, variant, seed, target, "fp16"), native_runner())
    if engine.model_format == "onnx":
        return Prepared(engine, convert_onnx(variant, seed))
    if engine.model_format == "ncnn":
        return Prepared(engine, convert_ncnn(variant, seed))
    return Prepared(engine, convert_mnn(variant, seed))


def host_python_env(site: Path) -> dict[str, str]:
    """Environment for the guest python: our site folder only, fixed hash seed so runs are repeatable."""
    return {"PYTHONPATH": str(site), "PYTHONHASHSEED": "0", "PYTHONNOUSERSITE": "1"}


def check_output(engine: Engine, out: Path, ref: np.ndarray) -> float:
    """Max |error| of an engine's saved output vs fused PyTorch; EmulationError when above tolerance."""
    y = np.load(out).reshape(ref.shape)
    err = float(np.abs(y.astype(np.float64) - ref).max())
    tol = tolerance(engine, ref)
    if not np.isfinite(err) or err > tol:
        raise EmulationError(
            f"{engine.name}: max |err| {err:.3g} vs fused PyTorch exceeds {tol:.3g}: refused"
        )
    return err
