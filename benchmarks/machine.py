"""One sentence about the machine a benchmark ran on, for the results' headers: CPU model, cores,
SIMD flags, and the 1-minute load average at start and end (this project's 2-core machines are
shared with other jobs, so absolute times are loose; compare ratios measured in one run)."""
from __future__ import annotations

import os


def describe(load_at_start: float) -> str:
    """e.g. "AMD EPYC (x86_64, 2 cores, avx2 fma ..., shared with other jobs: load average 6.1 at
    start, 7.3 at end)"."""
    from edgeopt.runtimes.cpu import cpu_info

    cpu = cpu_info()
    return (f"{cpu['model']} ({cpu['arch']}, {cpu['cores']} cores, flags {' '.join(cpu['flags']) or 'none'}; "
            f"shared with other jobs: 1-min load average {load_at_start:.1f} at start, "
            f"{os.getloadavg()[0]:.1f} at end)")


def command(script: str, argv: list[str] | None) -> str:
    """The command line that reproduces a run: ``.venv/bin/python benchmarks/<script> ARGS``."""
    import shlex
    import sys

    args = sys.argv[1:] if argv is None else argv
    return " ".join([".venv/bin/python", f"benchmarks/{script}", *map(shlex.quote, args)])
