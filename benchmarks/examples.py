"""The four case studies in examples/ at full size, one after another, each in its own process.

Writes benchmarks/results/examples.md (the "Examples" section of BENCHMARKS.md) and copies the
pictures each example made into examples/images/ (the ones examples/README.md shows).
Run: .venv/bin/python benchmarks/examples.py [kws gesture detection waste_sorter]
"""
from __future__ import annotations

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


def run_one(name: str) -> tuple[dict, str, float]:
    out = ROOT / "runs" / "examples" / name
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "examples" / name / "run.py"), "--out", str(out)],
                   check=True, cwd=ROOT)
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


def main(names: list[str]) -> None:
    parts = ["# Examples", "",
             "The case studies in `examples/` (see examples/README.md) at full size, each one command on data "
             "made on this machine, on a 2-core machine shared with other work (so wall times are loose). "
             "Accuracy and host latency are measured by edgeopt in LiteRT; device figures are edgeopt's "
             "estimates.", ""]
    for name in names or EXAMPLES:
        results, table, seconds = run_one(name)
        copy_pictures(results)
        parts += [f"## {EXAMPLES[name]}", "", f"`python examples/{name}/run.py --out runs/examples/{name}` "
                  f"({seconds:.0f} s wall, training included)", "", table, ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "examples.md").write_text("\n".join(parts))
    print((RESULTS / "examples.md").read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
