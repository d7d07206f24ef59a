"""The four case studies in examples/ at full size, one after another, each in its own process.

Writes benchmarks/results/examples.md (the "Examples" section of BENCHMARKS.md) and copies the
pictures each example made into examples/images/ (the ones examples/README.md shows).
`--small` runs each example's reduced size (what CI runs) into runs/examples_small/ and writes
runs/examples_small/examples.md instead, copying no pictures.
Run: .venv/bin/python benchmarks/examples.py [--small] [kws gesture detection waste_sorter]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
IMAGES = ROOT / "examples" / "images"
EXAMPLES = {
    "kws": "Voice activation (keyword spotting) on an Arduino Nano 33 BLE Sense",
    "gesture": "Gesture recognition (IMU, Conv1D) on a Cortex-M4 board (STM32L4R5)",
    "detection": "Object detection (single-shot, full int8): Edge TPU readiness and Raspberry Pi 4",
    "waste_sorter": "Waste sorter: classifier + app (CLI and local web page)",
}
MAX_PICTURE_BYTES = 200_000


def run_one(name: str, runs: Path, small: bool) -> tuple[dict, str, float]:
    out = runs / name
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "examples" / name / "run.py"), "--out", str(out),
                    *(["--small"] if small else [])], check=True, cwd=ROOT)
    seconds = time.perf_counter() - t0
    return json.loads((out / "results.json").read_text()), (out / "results.md").read_text().strip(), seconds


def copy_pictures(results: dict) -> list[str]:
    IMAGES.mkdir(parents=True, exist_ok=True)
    copied = []
    for picture in results.get("pictures", []):
        src = Path(picture)
        if src.stat().st_size > MAX_PICTURE_BYTES:
            raise SystemExit(f"error: {src} is {src.stat().st_size} bytes; keep pictures under {MAX_PICTURE_BYTES}")
        shutil.copyfile(src, IMAGES / src.name)
        copied.append(src.name)
    return copied


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", metavar="EXAMPLE",
                    help=f"examples to run (default all): {', '.join(EXAMPLES)}")
    ap.add_argument("--small", action="store_true",
                    help="each example's reduced size; results under runs/examples_small/, no pictures copied")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in EXAMPLES]
    if unknown:
        ap.error(f"unknown example {unknown[0]!r}; choose from {', '.join(EXAMPLES)}")
    runs = ROOT / "runs" / ("examples_small" if args.small else "examples")
    out = runs / "examples.md" if args.small else RESULTS / "examples.md"
    size = "reduced size (--small)" if args.small else "full size"
    parts = ["# Examples", "",
             f"The case studies in `examples/` (see examples/README.md) at {size}, each one command on data "
             "made on this machine, on a 2-core machine shared with other work (so wall times are loose). "
             "Accuracy and host latency are measured by edgeopt in LiteRT; device figures are edgeopt's "
             "estimates.", ""]
    for name in args.names or EXAMPLES:
        results, table, seconds = run_one(name, runs, args.small)
        if not args.small:
            copy_pictures(results)
        flag = " --small" if args.small else ""
        parts += [f"## {EXAMPLES[name]}", "",
                  f"`python examples/{name}/run.py{flag} --out {(runs / name).relative_to(ROOT)}` "
                  f"({seconds:.0f} s wall, training included)", "", table, ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
