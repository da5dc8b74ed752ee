"""The `repnext` command line: argparse here only, each command a thin handler over a library function."""

from repnext_core.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
