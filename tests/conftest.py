"""Shared fixtures; Triton runs in its CPU interpreter here, since CI has no GPU."""

import json
import os
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

DATA = Path(__file__).parent / "data"
SHARED_SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "upstream_state_dict_keys.json"


@pytest.fixture(scope="session")
def upstream_keys() -> dict:
    """Every key and shape of the authors' checkpoints, per variant (a copy of shared/spec's list)."""
    return json.loads((DATA / "upstream_state_dict_keys.json").read_text())


def tol(reference: torch.Tensor) -> float:
    """The project's float32 parity bound: 1e-5 + 1e-4 * max |reference|."""
    return 1e-5 + 1e-4 * reference.abs().max().item()


@pytest.fixture(scope="module")
def toy():
    """The fused toy RepNeXt that the TVM tests compile."""
    from repnext_core import reparameterize
    from repnext_core.testing import toy_model

    return reparameterize(toy_model(seed=0)).eval()


@pytest.fixture(scope="module")
def mod(toy):
    """The toy imported into Relax at the TVM tests' input shape."""
    from tvm_helpers import SHAPE

    from repnext_core.compile.tvm.importer import import_model

    return import_model(toy, SHAPE)
