"""Make a real run and screenshot its HTML report for the README (docs/report.png).

    python benchmarks/report_screenshot.py [--out docs/report.png] [--keep RUN_DIR]

Trains the small CNN on scikit-learn digits (~20 s), optimizes it (int8, float16, prune+int8,
structured pruning within 1 point + int8), writes the report and captures the summary and the first trade-off plots in headless
Chromium (Debian: apt-get install chromium). The PNG is reduced to 256 colours to stay small.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

RECIPES = ["int8", "float16", "prune,int8", "prune-structured,int8"]
OPTIONS = {"sparsity": 0.5, "epochs": 6, "prune-structured.max_accuracy_drop": 1.0}


def make_run(workdir: Path):
    import keras

    from edgeopt import api
    from edgeopt.data import load_data
    from edgeopt.zoo import compile_classifier, small_cnn

    digits = load_data("digits")
    keras.utils.set_random_seed(0)
    model = compile_classifier(small_cnn(input_shape=(8, 8, 1), width=8), lr=3e-3)
    model.fit(digits.x_train, digits.y_train, epochs=15, batch_size=32, verbose=0)
    model_path = workdir / "digits_cnn.keras"
    model.save(model_path)
    run = api.optimize(model_path, "digits", recipes=RECIPES, out=workdir / "digits_cnn", runs=100,
                       options=OPTIONS, log=lambda msg: print(msg, file=sys.stderr))
    return run.path


def screenshot(report: Path, out: Path, width: int = 1280, height: int = 1400) -> int:
    """Capture the report's first screen, as a 256-colour PNG; returns its size in bytes."""
    from PIL import Image

    from edgeopt.report.browser import is_blank, open_report

    page = open_report(report, width=width, height=height,
                       probe="document.getElementById('plot-latency').getBoundingClientRect().bottom")
    problems = page.console_errors + [f"network request: {u}" for u in page.network_requests]
    if page.rendered < page.plots:
        problems.append(f"only {page.rendered} of {page.plots} plots rendered")
    if problems or is_blank(page.screenshot):
        raise SystemExit("report did not render cleanly: " + "; ".join(problems or ["blank screenshot"]))
    img = Image.open(io.BytesIO(page.screenshot)).convert("RGB")
    img = img.crop((0, 0, img.width, min(img.height, int(page.probe) + 24)))  # summary + first plot row
    img = img.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, format="PNG", optimize=True)
    return out.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "report.png")
    parser.add_argument("--keep", type=Path, help="make the run here (kept) instead of a temporary folder")
    args = parser.parse_args()
    from edgeopt.report.html import render_report

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        report = render_report(make_run(workdir).path)
        size = screenshot(report, args.out)
    print(f"wrote {args.out} ({size / 1024:.0f} KB) from {report}")


if __name__ == "__main__":
    main()
