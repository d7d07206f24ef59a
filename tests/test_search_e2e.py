"""`edgeopt search` end to end on the digits CNN: bad input, a host + microcontroller search with
its winner exported and its history in run.json, and kill-and-resume keeping finished trials."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edgeopt.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"
NANO = "arduino-nano-33-ble-sense"


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "edgeopt.cli", *map(str, args)]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize("args, message", [
    (["--target", "no-such-board"], "unknown device 'no-such-board'"),
    (["--time-budget", "soon"], "--time-budget 'soon' is not a duration"),
    (["--storage", "http://db"], "is not a database URL"),
    (["--objectives", "latency,speed"], "unknown objective 'speed'"),
    (["--objectives", "energy"], "energy objective needs a device with a power figure"),
    (["--workers", "0"], "--workers must be at least 1"),
])
def test_bad_input_is_one_line_and_exit_2_before_loading_the_model(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    code = main(["search", str(tmp_path / "missing.keras"), "--data", "digits", "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()  # nothing half-written


@pytest.mark.slow
def test_search_host_and_mcu_hands_back_winner_front_history_and_exports(tmp_path, digits_cnn_path):
    out = tmp_path / "run"
    proc = subprocess.run(_cli("search", digits_cnn_path, "--data", "digits", "--target", "host-cpu",
                               "--target", NANO, "--trials", 3, "--post-training", "--runs", 10,
                               "--out", out, "--json"), env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert set(result["targets"]) == {"host-cpu", NANO}
    for name, tr in result["targets"].items():
        assert tr["accounting"]["counted"] == 3
        if tr["met"]:  # a winner within budget, on the front
            best = tr["best"]
            assert best["constraints"]["accuracy"] <= 0 and best["number"] in tr["front"]
            assert "meets the constraints" in tr["sentence"]
        else:  # the closest, said in a plain sentence
            assert "no variant met the constraints" in tr["sentence"]
        assert result["exports"][name], f"{name}: nothing exported"
    nano = result["targets"][NANO]
    assert all(t["metrics"]["latency_ms"]["provenance"] == "estimated" for t in nano["trials"] if t["status"] == "done")
    host = result["targets"]["host-cpu"]
    assert all(t["metrics"]["latency_ms"]["provenance"] == "measured" for t in host["trials"] if t["status"] == "done")
    nano_files = {Path(p).name for p in result["exports"][NANO]}
    if nano["met"]:  # the winner fits: its C array and sketch are exported
        assert {"model.h", "model.cc", "model.ino"} <= nano_files
        assert (out / "deploy" / NANO / "model.ino").is_file()
    assert (out / "deploy" / "host-cpu").is_dir()

    record = json.loads((out / "run.json").read_text())
    from edgeopt.report.view import search_history

    hist = search_history(record)
    assert hist["objectives"][0] == "accuracy" and "latency_ms" in hist["objectives"]
    assert len(hist["trials"]) == 6 and {t["state"] for t in hist["trials"]} <= {"complete", "pruned", "failed"}
    names = {v["name"] for v in record["variants"]}
    assert {"float32", "search-host-cpu", f"search-{NANO}"} <= names


@pytest.mark.slow
def test_killed_search_resumes_keeping_finished_trials(tmp_path, digits_cnn_path):
    out = tmp_path / "run"
    args = _cli("search", digits_cnn_path, "--data", "digits", "--trials", 3, "--post-training", "--runs", 10,
                "--out", out)
    proc = subprocess.Popen(args, env=_env(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in proc.stderr:  # trial lines go to stderr; kill once trial 0 is done
        if "trial 0 (1/3) done" in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    from edgeopt.tuner import collect

    url = f"sqlite:///{out / 'search.db'}"
    before = collect(url, "run").targets["host-cpu"]
    assert before.accounting.done >= 1
    again = subprocess.run(args + ["--json"], env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    after = json.loads(again.stdout)["targets"]["host-cpu"]
    assert after["accounting"]["counted"] == 3
    kept = {t["number"]: t for t in after["trials"]}
    for t in before.trials:
        if t.status == "done":
            assert kept[t.number]["status"] == "done" and kept[t.number]["accuracy"] == t.accuracy
            assert (out / ".artifacts" / t.artifact_id).is_file()  # reopening the run keeps finished artifacts


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("30m", 1800), ("1h30m", 5400), (45, 45)])
def test_time_budget_parses(text, seconds):
    from edgeopt.tuner.options import parse_duration

    assert parse_duration(text) == seconds


def test_history_is_what_the_report_reads(tmp_path):
    import search_synthetic  # tests/ is on sys.path (conftest's folder)
    from edgeopt.report.view import search_history
    from edgeopt.tuner import Heartbeat, Objective, default_space, run_search
    from edgeopt.tuner.searching import history

    result = run_search(default_space(), search_synthetic.evaluate, ["host-cpu"], run_dir=tmp_path,
                        baseline_accuracy=0.9, n_trials=4, objectives=[Objective("latency_ms")],
                        heartbeat=Heartbeat(**search_synthetic.HEARTBEAT_FOR_TESTS))
    record = history(result)
    parsed = search_history({"search": record})
    assert parsed["objectives"] == ["accuracy", "latency_ms"] and parsed["directions"] == ["max", "min"]
    assert [t["number"] for t in parsed["trials"]] == [0, 1, 2, 3]
    assert record["targets"]["host-cpu"]["winner"] == result.targets["host-cpu"].best.number
