"""Deployable TVM artifacts: model.so (or Mach-O objects) plus meta.json, written atomically; host loading."""

from __future__ import annotations

import json
import logging
import os
import tarfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from repnext_core.compile.tvm.targets import OBJECT_FILES, TargetSpec, linker
from repnext_core.files import atomic_output

logger = logging.getLogger(__name__)

META_FILE = "meta.json"
LIBRARY_FILE = "model.so"
FORMAT = "repnext-tvm-artifact/1"


class ArtifactError(ValueError):
    """An artifact that is missing, damaged, or cannot run here; the message says why."""


@dataclass
class ArtifactMeta:
    """What meta.json records: enough to run the model and to know how it was made."""

    target: TargetSpec
    input_shape: Sequence[int]
    dtype: str = "float32"
    output_shape: Sequence[int] | None = None
    variant: str = "model"
    checkpoint_sha256: str | None = None
    tuning_db: dict | None = None
    kernels: int | None = None
    tuned_kernels: int | None = None
    precision: str = "fp32"  # of the arithmetic; input and output are float32 either way
    kernel_macs: dict[str, int] | None = None  # conv/matmul kernels' MACs per call (`repnext profile`)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """meta.json content, less the file list that export_artifact adds."""
        import tvm

        data = asdict(self)
        data.update(
            format=FORMAT,
            target=self.target.to_json(),
            input_shape=list(self.input_shape),
            output_shape=list(self.output_shape) if self.output_shape is not None else None,
            tvm_version=tvm.__version__,
            artifact_kind=self.target.artifact_kind,
        )
        return data


def export_artifact(exe, out_dir: str | os.PathLike, meta: ArtifactMeta) -> Path:
    """Write model.so (objects/*.o for Apple) and meta.json into `out_dir`, all or nothing."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_dir) as tmp:
        tmp.mkdir()
        if meta.target.artifact_kind == OBJECT_FILES:
            files = {"objects": _export_objects(exe, tmp)}
        else:
            exe.export_library(str(tmp / LIBRARY_FILE), fcompile=linker(meta.target))
            files = {"library": LIBRARY_FILE}
        (tmp / META_FILE).write_text(json.dumps({**meta.to_json(), "files": files}, indent=2) + "\n")
    logger.info("wrote %s", out_dir)
    return out_dir


def _export_objects(exe, tmp: Path) -> list[str]:
    """Mach-O objects for a foreign linker: TVM packs kernels and VM bytecode into a tar of .o files."""
    from tvm.support import tar

    archive = tmp / "model.tar"
    exe.export_library(str(archive), fcompile=tar.tar)
    objects = tmp / "objects"
    objects.mkdir()
    names = []
    with tarfile.open(archive) as tf:
        for member in tf.getmembers():
            if member.isfile() and member.name.endswith(".o"):
                name = os.path.basename(member.name)
                (objects / name).write_bytes(tf.extractfile(member).read())
                names.append(f"objects/{name}")
    archive.unlink()
    return sorted(names)


def read_meta(artifact_dir: str | os.PathLike) -> dict[str, Any]:
    """meta.json of an artifact, with a clear error when the directory is not one."""
    path = Path(artifact_dir) / META_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(
            f"{artifact_dir} is not a TVM artifact (no {META_FILE}); make one with repnext build"
        ) from None
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path} is damaged: {e}") from None
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"{path}: unknown artifact format {meta.get('format')!r} (expected {FORMAT})")
    return meta


def check_input(meta: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """The input as a contiguous array of the artifact's dtype; its shape must be the one built for."""
    x = np.ascontiguousarray(x, dtype=meta["dtype"])
    if list(x.shape) != list(meta["input_shape"]):
        raise ArtifactError(
            f"input shape {list(x.shape)} does not match the artifact's {meta['input_shape']}"
        )
    return x


class VMRunner:
    """A Relax VM on this CPU over a VMExecutable or a loaded model.so; call it with a numpy array."""

    # TVM's kernels assume (and tvm_ffi's DLPack import enforces) tensors aligned to this many bytes.
    ALIGNMENT = 64

    def __init__(self, exe_or_lib) -> None:
        import tvm
        from tvm import relax

        self._tensor = tvm.runtime.tensor
        self._from_dlpack = tvm.runtime.from_dlpack
        self.vm = relax.VirtualMachine(exe_or_lib, tvm.cpu())
        self._main = self.vm["main"]
        self._input = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """One inference of `main`; the output comes back as a numpy array of its own.

        The VM reads a writable C-contiguous input aligned to ALIGNMENT bytes (torch's allocations are) in
        place; any other input is copied into a tensor kept from the last call of the same shape and dtype.
        Both the input copy and `Tensor.numpy()` on the output cost M1 about 1% of its time at 1 thread: the
        input is 600 KB that a run has evicted, and numpy() is a long Python path run cold after a run."""
        x = np.ascontiguousarray(x)
        try:  # tvm_ffi refuses a misaligned array, numpy to export a read-only one; asking is the cheap test
            arg = self._from_dlpack(x)
        except (RuntimeError, BufferError):
            arg = self._input
            if arg is None or tuple(arg.shape) != x.shape or arg.dtype != str(x.dtype):
                arg = self._input = self._tensor(x)
            else:
                arg.copyfrom(x)
        return np.from_dlpack(self._main(arg)).copy()


@dataclass
class LoadedArtifact:
    """A host artifact loaded into a Relax VM; call run(x)."""

    path: Path
    meta: dict[str, Any]
    runner: VMRunner

    def run(self, x: np.ndarray) -> np.ndarray:
        """One inference on `x`, whose shape and dtype must be the artifact's."""
        return self.runner(check_input(self.meta, x))


def load_artifact(artifact_dir: str | os.PathLike) -> LoadedArtifact:
    """Load a host artifact (model.so built for this machine) into a Relax VM on the CPU."""
    import tvm

    artifact_dir = Path(artifact_dir)
    meta = read_meta(artifact_dir)
    target = meta["target"]
    if "library" not in meta["files"] or "mtriple" in target["target"] or target.get("cross_cc"):
        raise ArtifactError(
            f"{artifact_dir} was built for {target['name']} and cannot run on this machine; run it on the "
            "board (RPC, or the native runner from the on-device runner issue)"
        )
    host_cpu = tvm.target.codegen.llvm_get_system_cpu()
    if target["target"].get("mcpu") not in (None, host_cpu):
        logger.warning(
            "%s was built for CPU %s, this is %s", artifact_dir, target["target"]["mcpu"], host_cpu
        )
    lib = tvm.runtime.load_module(str(artifact_dir / meta["files"]["library"]))
    return LoadedArtifact(artifact_dir, meta, VMRunner(lib))


def run_artifact(artifact_dir: str | os.PathLike, x: np.ndarray) -> np.ndarray:
    """Load a host artifact and run it once on `x`."""
    return load_artifact(artifact_dir).run(x)
