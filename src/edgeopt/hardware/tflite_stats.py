"""TFLite Micro memory facts for the hardware estimator: the planner's arena and a measurement.

`tflm_planned_bytes` replays TFLite Micro's greedy memory planner on the tensor lifetimes of a
.tflite file (the non-persistent "head" of the arena); `measure_tflm_arena` asks the host build of
TFLite Micro itself.
"""
from __future__ import annotations

from pathlib import Path

_ALIGN = 16  # TFLM aligns planned buffers to 16 bytes


def _lifetimes(path: Path) -> list[tuple[int, int, int]]:
    """(bytes, first step, last step) of every non-constant tensor of the main subgraph."""
    from edgeopt.core.tflite import read_tflite

    graph = read_tflite(path)  # the stored (batch-1) shapes TFLM plans with
    first: dict[int, int] = {int(t): 0 for t in graph.inputs}
    last: dict[int, int] = {}
    for step, node in enumerate(graph.nodes):
        for t in node.outputs:
            first.setdefault(t, step)
        for t in node.inputs:
            if t >= 0:
                last[t] = step
    for t in graph.outputs:
        last[t] = len(graph.nodes) - 1
    return [(graph.tensors[t].nbytes, start, last.get(t, start)) for t, start in first.items()
            if not graph.tensors[t].is_const]


def tflm_planned_bytes(path: str | Path) -> int:
    """Arena bytes TFLM's GreedyMemoryPlanner needs for the activations of this .tflite file.

    Buffers are placed largest first, each at the lowest offset free over its lifetime. Among equal
    sizes the later-created buffer goes first, which reproduces TFLM's placement on the MLPerf Tiny
    models (vww needs 73,728 bytes this way versus a 55,296-byte lifetime peak).
    """
    buffers = [(-(-size // _ALIGN) * _ALIGN, a, b) for size, a, b in _lifetimes(Path(path))]
    placed: list[tuple[int, int, int, int]] = []
    for size, a, b in sorted(buffers, key=lambda x: (-x[0], -x[1])):
        busy = sorted((off, off + sz) for off, sz, s, e in placed if not (e < a or s > b))
        offset = 0
        for lo, hi in busy:
            if offset + size <= lo:
                break
            offset = max(offset, hi)
        placed.append((offset, size, a, b))
    return max((off + sz for off, sz, _, _ in placed), default=0)


def measure_tflm_arena(path: str | Path) -> dict[str, int]:
    """Arena bytes the TFLite Micro interpreter allocates for this model (host build of TFLM).

    Returns {"total", "head", "tail"}: head is the planned (non-persistent) tensor memory, tail the
    persistent allocations. The numbers come from TFLM's RecordingMicroAllocator, which prints
    them to the C stderr, so file descriptor 2 is redirected while it runs.
    """
    import os
    import re
    import tempfile

    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_file(str(path), arena_size=16 * 1024 * 1024)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            interp.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        text = sink.read().decode(errors="replace")
    found = {k: int(v) for k, v in re.findall(r"allocation (total|head|tail) (\d+) bytes", text)}
    if "total" not in found:
        raise RuntimeError(f"TFLite Micro printed no arena summary for {path}")
    return found
