"""`repnext build-runtime`: CMake-build repnext-run and repnext-rpc-server for this machine or an ARM board."""

from __future__ import annotations

import argparse
import sys

NEXT_STEPS = """\
copy {install} to the board (e.g. scp -r {install} pi@board:repnext), then on the board:
  repnext/bin/repnext-run ARTIFACT_DIR [--input x.npy --output y.npy]
  repnext/bin/repnext-rpc-server --tracker TRACKER_HOST:9190 --key KEY   (for `repnext tune --tracker`)"""


def build_runtime(args: argparse.Namespace) -> int:
    from repnext_core.compile.device import QEMU_TIMING_NOTE, DeviceError, qemu_prefix
    from repnext_core.compile.device import build_runtime as build_native

    def say(line: str) -> None:
        print(f"build-runtime: {line}", flush=True)

    try:
        native = build_native(args.target, args.build_dir, args.prefix, args.jobs, log=say)
    except DeviceError as e:
        print(f"repnext build-runtime: error: {e}", file=sys.stderr)
        return 2
    print(f"built {native.arch} programs in {native.build_dir}; deployable folder {native.install_dir}:")
    for path in sorted(p for p in native.install_dir.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(native.install_dir)}")
    if args.target == "host":
        print(f"run: {native.run_exe} ARTIFACT_DIR")
        return 0
    print(NEXT_STEPS.format(install=native.install_dir))
    try:
        prefix = qemu_prefix(native.arch)
    except DeviceError as e:
        print(f"note: cannot try it here under emulation: {e}")
        return 0
    print(f"try it here: {' '.join(prefix)} {native.run_exe} ARTIFACT_DIR")
    print(f"note: {QEMU_TIMING_NOTE}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `build-runtime` subcommand to the `repnext` parser."""
    p = subparsers.add_parser(
        "build-runtime",
        help="build the native runner and RPC server (no Python needed on the board) for host or aarch64",
        description="Configure, build and install repnext-run and repnext-rpc-server with CMake, linked "
        "against the TVM runtime of the matching pip wheels (for aarch64 they are downloaded once with pip "
        "download and cached under ~/.cache/repnext). The install folder (bin/ + lib/) runs wherever it is "
        "copied. Needs cmake; aarch64 also needs g++-aarch64-linux-gnu, and qemu-user to try it here.",
    )
    p.add_argument(
        "--target", choices=("host", "aarch64"), default="host", help="host or aarch64 (default host)"
    )
    p.add_argument(
        "--build-dir",
        help="CMake build folder (default build/native-TARGET in a checkout, else CACHE/native/TARGET)",
    )
    p.add_argument("--prefix", help="install (deployable) folder (default BUILD_DIR/install)")
    p.add_argument("-j", "--jobs", type=int, help="parallel compile jobs (default: all cores)")
    p.set_defaults(func=build_runtime)
