"""Turn pytest-benchmark JSON from bench/test_kernels.py into a short Markdown table.

python bench/kernels_report.py kernels.json [--out bench/KERNELS.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from repnext_core.table import format_table

BASELINE = "torch-multi-branch"


def load(path: str | Path) -> dict[tuple, dict[str, float]]:
    """Median ms of one call per layer (op, device, dtype, batch, channels, size) and form."""
    table: dict[tuple, dict[str, float]] = {}
    for b in json.loads(Path(path).read_text())["benchmarks"]:
        i = b["extra_info"]
        key = (i["op"], i["device"], i["dtype"], i["batch"], i["channels"], i["size"])
        table.setdefault(key, {})[i["form"]] = b["stats"]["median"] * 1e3 / i.get("repeat", 1)
    return table


def markdown(table: dict[tuple, dict[str, float]]) -> str:
    """One row per layer: median ms of every form, and each form's speed-up over the multi-branch path."""
    forms = sorted({f for row in table.values() for f in row}, key=lambda f: (f != "triton", f))
    headers = ["op", "device", "dtype", "N", "C", "HxW"] + [f"{f} ms" for f in forms]
    headers += [f"{f} vs {BASELINE}" for f in forms if f != BASELINE]
    rows = []
    for (op, dev, dt, n, c, s), ms in sorted(table.items()):
        row = [op, dev, dt, n, c, f"{s}x{s}"] + [f"{ms[f]:.3f}" if f in ms else "-" for f in forms]
        base = ms.get(BASELINE)
        row += [f"{base / ms[f]:.2f}x" if base and f in ms else "-" for f in forms if f != BASELINE]
        rows.append(row)
    return format_table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    """CLI: print the table, or write it with --out."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", help="pytest-benchmark --benchmark-json output of bench/test_kernels.py")
    p.add_argument("--out", help="write the Markdown here instead of printing it")
    a = p.parse_args(argv)
    text = markdown(load(a.json))
    if a.out:
        Path(a.out).write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
