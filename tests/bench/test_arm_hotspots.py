"""hotspots.py puts executed blocks back into the functions of model.so, whatever base dlopen chose."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from repnext_core.compile.bench.arm import hotspots

SOURCE = """
float hot(const float *x, int n) { float s = 0; for (int i = 0; i < n; i++) s += x[i] * x[i] + 1.0f; return s; }
int cold(int a, int b) { int r = 0; while (a > b) { r += a % 7; a -= 3; } return r * b - 11; }
"""


# The default layout has .text at its file offset; -Ttext-segment moves the addresses away from the offsets.
LAYOUTS = {"default": [], "moved": ["-Wl,-Ttext-segment=0x400000"]}


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def library(request, tmp_path_factory) -> Path:
    """A two-function aarch64 shared library, as model.so is."""
    cc = shutil.which("aarch64-linux-gnu-gcc")
    if cc is None:
        pytest.fail("aarch64-linux-gnu-gcc is missing: `make setup` installs gcc-aarch64-linux-gnu")
    folder = tmp_path_factory.mktemp("so")
    (folder / "lib.c").write_text(SOURCE)
    so = folder / "model.so"
    flags = LAYOUTS[request.param]
    subprocess.run([cc, "-O0", "-shared", "-fPIC", *flags, "-o", str(so), str(folder / "lib.c")], check=True)
    return so


def _block(so: Path, name: str) -> tuple[int, str]:
    """(vma, hexbytes) of the whole function `name`, read from the file."""
    funcs, _ = hotspots.text_symbols(so)
    start, end, _ = next(f for f in funcs if f[2] == name)
    readelf = subprocess.run(["llvm-readelf-19", "-S", "-W", str(so)], capture_output=True, text=True)
    text = next(line.split() for line in readelf.stdout.splitlines() if " .text " in line)
    vma, offset = int(text[-8], 16), int(text[-7], 16)  # Address, Off columns
    data = so.read_bytes()
    return start, data[start - vma + offset : end - vma + offset].hex()


def test_blocks_land_in_their_functions(library):
    base = 0x55_0000_0000  # where a dlopen might have put it
    hot_vma, hot_bytes = _block(library, "hot")
    cold_vma, cold_bytes = _block(library, "cold")
    runner = (0x40_0000, "1f2003d5" * 4)  # four nops elsewhere: the runner, not model.so
    wrong = (base + hot_vma, "1f2003d5" * 4)  # inside hot's range, but not its bytes: not attributed
    delta = {(base + hot_vma, hot_bytes): 100.0, (base + cold_vma, cold_bytes): 2.0, runner: 5.0, wrong: 1.0}
    cycles = {hot_bytes: 10.0, cold_bytes: 3.0, "1f2003d5" * 4: 1.0}
    rows = {r["function"]: r for r in hotspots.by_function(library, delta, cycles)}
    assert rows["hot"]["cycles"] == 1000.0 and rows["hot"]["insns"] == 100 * len(hot_bytes) / 8
    assert rows["cold"]["cycles"] == 6.0
    assert rows["hot"]["fmas"] == 100 * hotspots.vector_fmas(hot_bytes)
    assert rows[hotspots.OUTSIDE]["cycles"] == 6.0
    assert list(rows)[0] == "hot"  # largest first
    text = hotspots.format_hotspots("tvm", list(rows.values()), 1012.0, top=1)
    assert "98.8%" in text and "hot" in text and "cold" not in text


def test_no_unique_block_leaves_everything_outside(library):
    """Without a block long and unique enough to place the file, nothing is attributed by guesswork."""
    rows = hotspots.by_function(library, {(0x1000, "1f2003d5"): 3.0}, {"1f2003d5": 1.0})
    assert [r["function"] for r in rows] == [hotspots.OUTSIDE]


def test_code_without_a_symbol_counts_for_the_function_before_it(library, monkeypatch):
    """TVM's parallel bodies have no symbol: with `hot`'s symbol gone, its code goes to its predecessor."""
    funcs, vma_minus_offset = hotspots.text_symbols(library)
    hot_vma, hot_bytes = _block(library, "hot")
    before = max((f for f in funcs if f[0] < hot_vma), key=lambda f: f[0])[2]
    stripped = [f for f in funcs if f[2] != "hot"]
    monkeypatch.setattr(hotspots, "text_symbols", lambda so: (stripped, vma_minus_offset))
    rows = hotspots.by_function(library, {(0x7000_0000 + hot_vma, hot_bytes): 4.0}, {hot_bytes: 2.0})
    assert [(r["function"], r["cycles"]) for r in rows] == [(before, 8.0)]


def test_vector_fmas_are_told_from_other_arithmetic():
    """Encodings from llvm-mc: FMLA/FMLS of every vector arrangement, by vector or by element, count; a
    multiply, an add, FMULX, a scalar FMADD or FMLA, an integer MLA and FMLAL (a widening op) do not."""
    fmas = [
        "20cc224e",
        "2318a24f",
        "200c424e",
        "2018324f",
        "20cca24e",
        "2018c24f",
        "2010120f",
    ]  # fmla .4s ...
    others = ["20dc226e", "2090a24f", "2090124f", "20d4224e", "200c021f", "2090a26f", "2010a25f", "20fc224e"]
    others += ["2094a24e", "20ec224e"]
    assert [hotspots.vector_fmas(w) for w in fmas] == [1] * len(fmas)
    assert [hotspots.vector_fmas(w) for w in others] == [0] * len(others)
    assert hotspots.vector_fmas("".join(fmas + others)) == len(fmas)
