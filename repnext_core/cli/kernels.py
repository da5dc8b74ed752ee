"""`repnext kernels`: the ahead-of-time resource table of the Triton kernels (no GPU needed)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `kernels` subcommand."""
    p = subparsers.add_parser(
        "kernels",
        help="compile the Triton kernels for sm_80/sm_90 and print registers, spills, smem, vector loads",
        description="Ahead-of-time compile every kernel configuration RepNeXt M0-M5 use at 224x224 (NCHW and "
        "channels_last) and print its resources; exits 1 if any configuration spills.",
    )
    p.add_argument("--arch", default="sm_80,sm_90", help="comma list of sm_80, sm_90 (default: both)")
    p.add_argument("--quick", action="store_true", help="3 representative compiles per arch instead of all")
    p.add_argument("--json", metavar="OUT", help="also write the rows as JSON ('-' prints only JSON)")
    p.add_argument("--markdown", metavar="OUT", help="also write the RESOURCES.md document")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the sweep with the parsed options."""
    from repnext_core.kernels import triton_available
    from repnext_core.kernels._common import INSTALL_HINT
    from repnext_core.kernels.aot import run_cli

    if not triton_available():
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    return run_cli(args.arch, args.quick, args.json, args.markdown)
