"""Test helpers for the TVM-built artifacts that several test modules need."""

from pathlib import Path

import torch

SHAPE = (1, 3, 32, 32)


def make_toy_artifact(out_dir: Path, target: str) -> tuple[Path, torch.nn.Module]:
    """A fused toy RepNeXt built for `target` with the project's TVM path; returns (artifact, model)."""
    from repnext_core import reparameterize
    from repnext_core.compile.tvm.artifact import ArtifactMeta, export_artifact
    from repnext_core.compile.tvm.build import build
    from repnext_core.compile.tvm.importer import import_model, main_signature
    from repnext_core.compile.tvm.targets import resolve_target
    from repnext_core.testing import toy_model

    model = reparameterize(toy_model(seed=0)).eval()
    mod = import_model(model, SHAPE)
    spec = resolve_target(target)
    _, _, out_shape = main_signature(mod)
    export_artifact(
        build(mod, spec), out_dir, ArtifactMeta(spec, SHAPE, output_shape=out_shape, variant="toy")
    )
    return out_dir, model
