"""`repnext build-runtime` from a regular (non-editable) install: the wheel carries the CMake project."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from repnext_core.compile.device import runtime_build
from repnext_core.compile.device.tools import DeviceError

ROOT = Path(__file__).resolve().parents[2]
NATIVE = "repnext_core/compile/device/sources/"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        str(ROOT),
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(out),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    (found,) = out.glob("repnext-*.whl")
    return found


def test_the_wheel_carries_every_native_source_and_the_shipped_databases(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(
        ["git", "ls-files", "CMakeLists.txt", "cmake", "native"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert tracked and {NATIVE + path for path in tracked} <= names
    assert any(
        n.startswith("repnext_core/compile/tune/databases/") and n.endswith("db_meta.json") for n in names
    )


def test_an_installed_copy_builds_from_its_own_sources_into_the_cache(wheel, tmp_path, monkeypatch):
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    sources = tmp_path / "site" / NATIVE
    monkeypatch.setattr(runtime_build, "SOURCES", sources)
    monkeypatch.setenv("REPNEXT_CACHE", str(tmp_path / "cache"))
    assert runtime_build.source_root() == sources
    assert not (sources / "CMakeLists.txt").is_symlink()  # copies, not links back to a checkout
    assert runtime_build.default_build_dir("aarch64") == tmp_path / "cache" / "native" / "aarch64"


def test_a_checkout_builds_into_its_build_folder():
    assert runtime_build.default_build_dir("host") == ROOT / "build" / "native-host"


def test_missing_sources_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime_build, "SOURCES", tmp_path / "sources")
    with pytest.raises(DeviceError, match="reinstall from a repnext checkout"):
        runtime_build.source_root()
