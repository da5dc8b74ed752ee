"""`repnext kernels`: the ahead-of-time resource table of the Triton kernels (no GPU needed)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `kernels` subcommand to the `repnext` parser; its handler returns the exit code."""
    from .aot import add_arguments

    p = subparsers.add_parser(
        "kernels",
        help="compile the Triton kernels for sm_80/sm_90 and print registers, spills, smem, vector loads",
        description="Ahead-of-time compile every kernel configuration RepNeXt M0-M5 use at 224x224 and "
        "print its resources; exits 1 if any configuration spills.",
    )
    add_arguments(p)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the sweep with the parsed options."""
    from ._common import INSTALL_HINT, triton_available
    from .aot import run_cli

    if not triton_available():
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    return run_cli(args.arch, args.quick, args.json, args.markdown)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point, `python -m repnext_core.kernels.cli kernels ...` (`repnext kernels` is the same)."""
    parser = argparse.ArgumentParser(prog="repnext")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
