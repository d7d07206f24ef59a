"""Crash points for the kill tests: ``EDGEOPT_TEST_KILL_AT=<phase>`` (or ``<phase>@<n>``, the n-th
time the phase is reached) makes the process SIGKILL itself there, so tests can interrupt a run
at a named place instead of racing a timer. Unset (always, outside tests) it costs one dict lookup.

Phases: ``fine-tune`` (a training step has its model, before the prefix cache stores it),
``conversion`` (the artifact is written, not yet measured), ``measurement`` (between the
variant's own measurement and the paired timing against the baseline), ``run.json`` (the new
run.json is written to its temp file, not yet renamed over the old one).
"""
from __future__ import annotations

import os
import signal

ENV = "EDGEOPT_TEST_KILL_AT"
_seen: dict[str, int] = {}


def crash_point(phase: str) -> None:
    """SIGKILL this process when ``EDGEOPT_TEST_KILL_AT`` names ``phase`` (at its n-th visit)."""
    want = os.environ.get(ENV)
    if not want:
        return
    name, _, nth = want.partition("@")
    if name != phase:
        return
    _seen[phase] = _seen.get(phase, 0) + 1
    if _seen[phase] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
