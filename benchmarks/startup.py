"""CLI start-up and foundation figures: `edgeopt --help` wall time (median of 10 process starts),
and `edgeopt profile` on the MLPerf Tiny KWS model (MACs vs the reference count, measured arena).

Writes benchmarks/results/startup.md. Run: .venv/bin/python benchmarks/startup.py
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EDGEOPT = str(Path(sys.executable).with_name("edgeopt"))
KWS = ROOT.parent / "shared" / "mlperf_tiny" / "kws_ref_model.tflite"
KWS_REFERENCE_MACS = 2_656_768


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    help_times = [wall([EDGEOPT, "--help"]) for _ in range(10)]
    lines = ["# CLI start-up and profile", "",
             f"`edgeopt --help`: median {statistics.median(help_times):.3f} s over 10 process starts "
             f"(min {min(help_times):.3f}, max {max(help_times):.3f}); target < 1.5 s.", ""]
    if KWS.exists():
        t0 = time.perf_counter()
        out = subprocess.run([EDGEOPT, "profile", str(KWS), "--json"], check=True, capture_output=True,
                             text=True).stdout
        seconds = time.perf_counter() - t0
        prof = json.loads(out)
        err = (prof["total_macs"] - KWS_REFERENCE_MACS) / KWS_REFERENCE_MACS * 100
        lines += [f"`edgeopt profile kws_ref_model.tflite --json`: {prof['total_macs']:,} MACs "
                  f"({err:+.3f}% vs the reference {KWS_REFERENCE_MACS:,}), TFLite Micro arena "
                  f"{prof['arena_bytes']:,} bytes (measured), peak activations estimated "
                  f"{prof['peak_activation_bytes']:,} bytes; {seconds:.2f} s wall.", ""]
    out_file = ROOT / "benchmarks" / "results" / "startup.md"
    out_file.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
