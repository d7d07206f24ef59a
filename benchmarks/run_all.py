"""Run every benchmark script and assemble BENCHMARKS.md from their result files.

Each script writes benchmarks/results/<name>.md; this file stitches them together in a fixed order
with the machine they were measured on. Run: make bench  (or .venv/bin/python benchmarks/run_all.py [names]);
`--assemble-only` rebuilds BENCHMARKS.md from the result files without running anything.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# script name -> result file; order is the order in BENCHMARKS.md
SCRIPTS = {
    "startup": "startup.md",
    "ptq": "ptq.md",
    "compression": "compression.md",
    "qat_distill": "qat_distill.md",
    "compare": "compare.md",
    "calibrate_mcu": "hardware.md",
    "examples": "examples.md",
    "search": "search.md",
    "peers": "peers.md",
}


def assemble() -> None:
    parts = ["# Benchmarks", "",
             "Every number here was measured by the scripts in `benchmarks/` (named in each section) on the "
             "artifact that ships, in the runtime that runs it. These machines are shared and noisy: "
             "latencies are medians, and variants are compared as ratios measured in the same run.", ""]
    for script, result in SCRIPTS.items():
        path = RESULTS / result
        if not path.exists():
            continue
        if script == "calibrate_mcu":  # the script rewrites its block in place between these markers
            parts += ["# Hardware estimator: MLPerf Tiny calibration", "", "<!-- calibrate_mcu:begin -->",
                      path.read_text().strip(), "<!-- calibrate_mcu:end -->", "",
                      "_Produced by `benchmarks/calibrate_mcu.py` (the block between the markers is rewritten "
                      "on every run)._", ""]
        else:
            parts += [f"<!-- from benchmarks/{script}.py -->", path.read_text().strip(), "",
                      f"_Produced by `benchmarks/{script}.py`._", ""]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(parts))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", metavar="SCRIPT",
                    help=f"benchmark scripts to run, in this order (default all): {', '.join(SCRIPTS)}")
    ap.add_argument("--assemble-only", action="store_true",
                    help="only rebuild BENCHMARKS.md from benchmarks/results/*.md")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in SCRIPTS]
    if unknown:
        ap.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(SCRIPTS)}")
    for script in [] if args.assemble_only else args.names or SCRIPTS:
        t0 = time.perf_counter()
        print(f"== {script}", flush=True)
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py")], check=True, cwd=ROOT)
        print(f"== {script}: {time.perf_counter() - t0:.0f} s", flush=True)
    assemble()
    return 0


if __name__ == "__main__":
    sys.exit(main())
