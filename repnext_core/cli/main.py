"""The `repnext` parser: every command registered from its module, and the one place errors become
exit codes. Registration imports only argparse-level code, so `repnext --help` needs no extra."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from repnext_core.checkpoint import CheckpointError
from repnext_core.cli import bench, device, export, kernels, model, tvm
from repnext_core.compile.device.tracker import TrackerError

COMMAND_MODULES = (model, bench, tvm, export, device, kernels)
# Expected failures (bad input, missing file or tool, unreachable board): one stderr line, exit 2.
USER_ERRORS = (CheckpointError, ValueError, TypeError, FileNotFoundError, TrackerError)


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="repnext",
        description="RepNeXt: fuse training checkpoints exactly, check them, and build them for GPUs, "
        "ARM CPUs and iPhones. Every command works offline.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `repnext` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        print(f"repnext {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"repnext {args.command}: interrupted; nothing partial was written", file=sys.stderr)
        return 130
