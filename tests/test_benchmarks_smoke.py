"""The benchmark scripts most likely to rot still run on today's code: the cheapest path of each
(``--smoke``: a few hundred rows, one epoch), in this process, results written under tmp_path. A
crash fails the test; the written tables are checked for their rows. Marked slow (tens of seconds)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
pytestmark = pytest.mark.slow


@pytest.fixture
def bench(monkeypatch):
    """Load benchmarks/<name>.py as a module; sys.path and the modules the scripts import from
    benchmarks/ (machine, ptq) are restored afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("machine", "ptq"):
        monkeypatch.delitem(sys.modules, name, raising=False)

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


def test_ptq_smoke(bench, tmp_path):
    assert bench("ptq").main(["--smoke", "--models", "slide_mlp", "--work", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "results" / "ptq.json").read_text())
    assert [r["mode"] for r in saved["rows"]] == ["float32", "int8"]
    assert all(r["p50_us"] > 0 and 0 <= r["accuracy"] <= 1 for r in saved["rows"])
    assert "| int8 |" in (tmp_path / "results" / "ptq.md").read_text()


def test_compression_smoke(bench, tmp_path):
    out = tmp_path / "compression.md"
    assert bench("compression").main(["--smoke", "--baseline", str(tmp_path / "base.keras"),
                                      "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["results"][0]["rows"]
    assert [r["variant"].split("-", 2)[-1] for r in rows] == [
        "float32", "structured0.5", "prune0.8+cluster16-float32", "prune0.8+cluster16+int8"]
    assert rows[1]["bytes"] < rows[0]["bytes"]  # structured pruning rebuilt a smaller model
    assert "Issue 4 targets" in out.read_text()
