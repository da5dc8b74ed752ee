"""`make test` installs every extra: a missing one must fail here, not hide behind the suite's skips."""

import importlib.util
import shutil

import pytest

# The optional dependencies that other test modules skip without (so a plain `pip install repnext` can run
# the core tests); under `make test` and CI they are all installed.
EXTRAS = ["triton", "tvm", "onnx", "onnxscript", "onnxruntime", "coremltools", "pytest_benchmark"]


@pytest.mark.parametrize("module", EXTRAS)
def test_extra_is_installed(module):
    assert importlib.util.find_spec(module) is not None, f"{module} missing: run `make setup`"


def test_native_tools_are_installed():
    assert shutil.which("cmake"), "cmake missing: apt-get install cmake (the Makefile does this as root)"
