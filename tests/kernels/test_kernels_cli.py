"""`repnext kernels`: the subcommand the main CLI registers through register(subparsers) / handle(args)."""

from __future__ import annotations

import argparse

import pytest

from repnext_core.kernels import triton_available


def test_cli_registers_kernels_subcommand(monkeypatch, capsys):
    from repnext_core.cli import kernels as cli
    from repnext_core.kernels import aot

    parser = argparse.ArgumentParser(prog="repnext")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["kernels", "--arch", "sm_80,sm_90", "--quick", "--json", "-"])
    assert (args.command, args.arch, args.quick, args.json) == ("kernels", "sm_80,sm_90", True, "-")
    assert args.func is cli.handle
    row = {k: 0 for k, _ in aot.COLUMNS} | {"op": "x", "arch": "sm_80", "layers": "40@56", "regs": 32}
    monkeypatch.setattr(aot, "resource_table", lambda archs, quick: [row])
    if not triton_available():
        assert args.func(args) == 2
        return
    assert args.func(args) == 0
    assert '"regs": 32' in capsys.readouterr().out
    monkeypatch.setattr(aot, "resource_table", lambda archs, quick: [row | {"spill_stores": 8}])
    assert args.func(parser.parse_args(["kernels", "--quick"])) == 1
    with pytest.raises(ValueError, match="unknown arch"):
        aot.parse_archs("sm_70")


def test_markdown_has_a_layout_column():
    from repnext_core.kernels import aot

    row = {k: 0 for k, _ in aot.COLUMNS} | {"op": "chunk_dwconv", "layout": "nhwc", "arch": "sm_90"}
    table = aot.format_markdown([row])
    assert "layout" in table.splitlines()[0]
    assert "nhwc" in table
    assert "chunk_dwconv         nhwc sm_90" in aot.summarize([row | {"regs": 40, "layers": "x"}])
