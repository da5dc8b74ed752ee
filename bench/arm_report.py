"""Turn the counted ARM bench's JSON (`repnext bench MODEL --target CORE --json F`) into bench/ARM_RESULTS.md
and a plot of the figures per engine.

python bench/arm_report.py bench/arm/*.json [--out bench/ARM_RESULTS.md] [--plot bench/arm_counts.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from repnext_core.compile.bench.arm.bench import TITLE, format_counts
from repnext_core.compile.bench.arm.hotspots import format_hotspots

HOTSPOTS = 12  # kernels listed per profiled engine


def markdown(results: list[dict]) -> str:
    """One table per (model, core), as `repnext bench --target` prints it."""
    lines = [
        "# ARM results without a board: counted, not timed",
        "",
        f"**{TITLE}.** Each engine ran one thread under qemu-user with the project's TCG plugin "
        "(compile/bench/arm/insn_count.c); per inference = (count of k inferences - count of 1) / (k - 1), "
        "which cancels start-up and repeats to within a few thousand instructions. cortex-a76 cycles come from "
        "llvm-mca's Neoverse-N1 model (the A76's server twin) over every executed block (blocks qemu split at a "
        "page boundary joined again), with no caches and no "
        "branch prediction; the in-order cortex-a53 gets counts only. The peers' figures include their Python "
        "call per inference (numpy in, numpy out); ours is the native runner repnext-run. Every output was "
        "checked against fused PyTorch on the same weights and input before anything was counted (fp32: "
        "1e-5 + 1e-4 max|y|; fp16 paths: 3e-2 max|y|). What these figures are not: milliseconds on a phone.",
        "",
        "Made by `make bench-arm` (`repnext bench MODEL --target CORE --json bench/arm/MODEL-CORE.json`, then "
        "`python bench/arm_report.py bench/arm/*.json`).",
        "",
    ]
    for result in sorted(results, key=lambda r: (r["model"], r["target"])):
        lines += [f"## {result['model']} on {result['target']}", "", format_counts(result), ""]
        if result.get("note"):
            lines += [f"Note: {result['note']}.", ""]
        for row in result["rows"]:
            if row.get("hotspots"):
                text = format_hotspots(row["engine"], row["hotspots"], row["modeled_cycles"], HOTSPOTS)
                lines += [
                    f"Where {row['engine']}'s modeled cycles go (`--hotspots {HOTSPOTS}`):",
                    "",
                    "```",
                    text,
                    "```",
                    "",
                ]
    return "\n".join(lines)


def plot(results: list[dict], path: str | Path) -> None:
    """Instructions (and modeled cycles where there are any) per inference, one panel per (model, core)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = sorted(results, key=lambda r: (r["model"], r["target"]))
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, result in zip(axes[0], results):
        rows = [r for r in result["rows"] if "per_inference" in r]
        names = [r["engine"] for r in rows]
        x = range(len(rows))
        ax.bar(
            [i - 0.2 for i in x], [r["per_inference"]["insns"] / 1e6 for r in rows], 0.4, label="instructions"
        )
        if any("modeled_cycles" in r for r in rows):
            cycles = [r.get("modeled_cycles", 0) / 1e6 for r in rows]
            ax.bar([i + 0.2 for i in x], cycles, 0.4, label="modeled cycles (N1)")
        ax.set_xticks(list(x), names, rotation=30, fontsize=8)
        ax.set_ylabel("millions per inference (proxies, not time)")
        ax.set_title(f"{result['model']} on {result['target']}", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", nargs="+", help="JSON written by `repnext bench MODEL --target CORE --json F`")
    p.add_argument("--out", default=str(Path(__file__).with_name("ARM_RESULTS.md")))
    p.add_argument("--plot", default=str(Path(__file__).with_name("arm_counts.png")))
    args = p.parse_args(argv)
    results = [json.loads(Path(f).read_text()) for f in args.json]
    Path(args.out).write_text(markdown(results) + "\n")
    plot(results, args.plot)
    print(f"wrote {args.out} and {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
