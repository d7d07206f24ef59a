"""Issue 12, engine side: nothing half-written, one process per run directory, crash-safe resume,
paired speed ratios, honest budgets, unreadable models as one line."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from edgeopt.engine.analysis import best_within_budget, compare_to_baseline
from edgeopt.engine.runner import failure_record
from edgeopt.engine.store import RUN_FILE, RunDir, json_schema, load_run
from edgeopt.errors import UserError
from edgeopt.recipes import plan

HEADER = {"name": "r", "model": {"path": "m.keras", "sha256": "abc"}, "data": {"source": "d", "fingerprint": "f"},
          "settings": {"threads": 1, "runs": 5}}
CHILD = Path(__file__).with_name("robust_child.py")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                     os.environ.get("PYTHONPATH", "")])}

HOLD_LOCK = """
import sys, time
from edgeopt.engine.store import RunDir
run = RunDir.open(sys.argv[1], {header!r})
print("locked", flush=True)
time.sleep(60)
""".format(header=HEADER)


def _done(run: RunDir, name: str, payload: bytes = b"TFL3model") -> dict:
    work = run.variant_dir(name)
    (work / "model.tflite").write_bytes(payload)
    return {"name": name, "recipe": [name], "status": "done",
            "artifact": str((work / "model.tflite").relative_to(run.path)),
            "metrics": {"accuracy": 0.9, "size_bytes": len(payload), "gzip_bytes": 9, "latency_ms": {"p50_ms": 1.0}}}


def _valid(path: Path) -> dict:
    record = json.loads((path / RUN_FILE).read_text())
    jsonschema.validate(record, json_schema())
    return record


def _converter_error() -> Exception:
    return RuntimeError("ConverterError: conversion failed\n<unknown>:0: error: loc(\"x\"): 'tf.Foo' op is "
                        "neither a custom op nor a flex op\n<unknown>:0: note: see current operation\nmore text")


def test_failed_variant_leaves_no_folder_and_keeps_the_full_reason(tmp_path):
    (chain,) = plan(["int8"], {})
    with RunDir.open(tmp_path, HEADER) as run:
        run.put(_done(run, "float32"))
        work = run.variant_dir("int8")
        (work / "half.tflite").write_bytes(b"half")
        try:
            raise _converter_error()
        except RuntimeError as e:
            run.put(failure_record("int8", chain, e))
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["float32", RUN_FILE]
    failed = _valid(tmp_path)["variants"][1]
    assert failed["status"] == "failed"
    assert failed["error"] == "RuntimeError: loc(\"x\"): 'tf.Foo' op is neither a custom op nor a flex op"
    assert "more text" in failed["error_detail"] and failed["error_detail"].count("\n") >= 3


def test_done_variant_records_its_digest_and_a_remake_is_never_shown_done(tmp_path):
    with RunDir.open(tmp_path, HEADER) as run:
        run.put(_done(run, "float32"))
        run.put(_done(run, "int8"))
        assert run.is_done("float32")
        run.variant_dir("float32")  # being made again: not done until put
        assert [v["name"] for v in run.variants] == ["float32", "int8"] and not run.is_done("float32")
    v = _valid(tmp_path)["variants"][0]
    assert v["status"] == "failed" and v["error"] == "interrupted while being made again"
    v = _valid(tmp_path)["variants"][1]
    assert v["artifact"] == "int8/model.tflite" and len(v["artifact_sha256"]) == 16 and v["finished"]


def test_resume_cleans_up_what_an_interrupted_run_left(tmp_path):
    with RunDir.open(tmp_path, HEADER) as run:
        run.put(_done(run, "float32"))
        run.put(_done(run, "int8", b"TFL3int8"))
        (run.variant_dir("float16") / "model.tflite").write_bytes(b"TFL3ha")  # killed while making it
    (tmp_path / "stray").mkdir()  # a variant folder with no record
    (tmp_path / "int8" / "model.tflite").write_bytes(b"TFL3in")  # a damaged artifact
    (tmp_path / ".run.json.x1.tmp").write_text("{")  # killed while writing run.json
    with RunDir.open(tmp_path, HEADER) as run:
        notes = " | ".join(run.notes)
        assert [v["name"] for v in run.variants] == ["float32"]
        assert run.is_done("float32") and not run.is_done("int8")
    assert "int8: its artifact int8/model.tflite is missing or incomplete" in notes
    assert "removed stray/" in notes and "removed float16/: not a finished variant" in notes
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".lock", "float32", RUN_FILE], left


def _hold_lock(path: Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True,
                             env=ENV)
    assert child.stdout.readline().strip() == "locked"
    return child


def test_second_process_is_refused_and_a_dead_holders_lock_taken_over(tmp_path):
    child = _hold_lock(tmp_path)
    try:
        with pytest.raises(UserError) as err:
            RunDir.open(tmp_path, HEADER)
        msg = str(err.value)
        assert f"in use by edgeopt process {child.pid} on {socket.gethostname()}" in msg
        assert "choose another --out" in msg and "\n" not in msg
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with RunDir.open(tmp_path, HEADER) as run:  # the OS released the dead process's lock
        assert run.notes == [f"took over the run-directory lock of edgeopt process {child.pid} on "
                             f"{socket.gethostname()} (no longer running)"]
    with RunDir.open(tmp_path, HEADER) as run:  # released cleanly: no note
        assert run.notes == []


def test_run_json_is_valid_after_a_kill_during_its_write(tmp_path):
    script = ("import sys\nfrom tests.test_robust import HEADER, _done\nfrom edgeopt.engine.store import RunDir\n"
              "import os\nrun = RunDir.open(sys.argv[1], HEADER)\nrun.put(_done(run, 'float32'))\n"
              "os.environ['EDGEOPT_TEST_KILL_AT'] = 'run.json'\nrun.put(_done(run, 'int8'))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=Path(__file__).parents[1], env=ENV,
                          capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert [v["name"] for v in _valid(tmp_path)["variants"]] == ["float32"]
    with RunDir.open(tmp_path, HEADER) as run:
        assert run.is_done("float32") and run.get("int8") is None
        assert any("removed int8/" in n for n in run.notes)  # complete but never recorded
    assert not list(tmp_path.glob(".run.json.*"))


def _variant(name, delta, size, p50):
    return {"name": name, "status": "done", "vs_baseline": {"accuracy_delta_points": delta},
            "metrics": {"size_bytes": size, "latency_ms": {"p50_ms": p50}}}


def test_over_budget_variants_are_marked_and_never_best():
    variants = [_variant("float32", 0.0, 400, 1.0), _variant("int8", -0.3, 100, 1.6),
                _variant("dynamic", -1.5, 90, 0.8)]
    best = best_within_budget(variants, None)  # no budget given: 1 point
    assert best["smallest"] == "int8" and best["fastest"] == "float32" and best["budget_points"] == 1.0
    assert [v["over_budget"] for v in variants] == [False, False, True]
    assert best["summary"] == "within 1 point of float32's accuracy: smallest int8, fastest float32 " \
                              "(dynamic over the budget)"
    none = best_within_budget(variants[1:], 0.1)
    assert none["smallest"] is None and none["fastest"] is None and none["budget_met"] is False
    assert none["summary"] == ("no variant stays within 0.1 points of float32's accuracy; the closest, "
                               "int8, drops 0.30 points")


def test_run_summary_names_no_variant_over_the_budget(tmp_path):
    from edgeopt.engine.driver import summarize

    with RunDir.open(tmp_path, {**HEADER, "settings": {**HEADER["settings"], "options": {"max_accuracy_drop": 0.2}}}) as run:
        run.put(_done(run, "float32"))
        run.put({**_done(run, "int8"), "vs_baseline": {"accuracy_delta_points": -0.5}})
        verdict = summarize(run)
    assert verdict["smallest"] == "float32" and verdict["points"] == 0.2
    record = _valid(tmp_path)
    assert [v["over_budget"] for v in record["variants"]] == [False, True] and record["budget"] == verdict


def test_exit_code_is_one_when_any_variant_failed():
    from edgeopt.engine.analysis import exit_code

    assert exit_code([_variant("float32", 0, 1, 1), _variant("int8", 0, 1, 1)]) == 0
    assert exit_code([_variant("float32", 0, 1, 1), {"name": "int8", "status": "failed"}]) == 1
    assert exit_code([{"name": "float32", "status": "failed"}]) == 1 and exit_code([]) == 1


def test_speed_ratio_comes_from_the_paired_timing():
    base = {"accuracy": 0.9, "size_bytes": 400, "gzip_bytes": 300, "latency_ms": {"p50_ms": 35.0}}
    var = {"accuracy": 0.9, "size_bytes": 100, "gzip_bytes": 60, "latency_ms": {"p50_ms": 1.0},
           "how": {"runtime": "litert"}}
    paired = {"baseline_us": 300.0, "variant_us": 200.0, "loadavg_1m_before": 1.0, "loadavg_1m_after": 1.2}
    d = compare_to_baseline(var, base, "classification", paired=paired)
    assert d["speedup"] == 1.5 and d["speed_basis"] == "paired" and d["paired_latency"] == paired
    assert d["speed"] == "1.50x faster than float32 on litert"  # not the 35x of two separate timings
    assert compare_to_baseline(var, base, "classification")["speed_basis"] == "separate"


# -- unreadable models: one line each
def test_corrupt_keras_is_one_line(tmp_path, slide_mlp_path):
    from edgeopt.model_io import load_model

    data = bytearray(slide_mlp_path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 64):
        data[i] ^= 0xFF
    bad = tmp_path / "bad.keras"
    bad.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"bad.keras is a damaged .keras archive .*export the model again"):
        load_model(bad)
    truncated = tmp_path / "cut.keras"
    truncated.write_bytes(slide_mlp_path.read_bytes()[:-200])
    with pytest.raises(UserError, match="cut.keras is not a valid .keras file"):
        load_model(truncated)


@pytest.mark.parametrize("name,match", [("m.keras", "is a folder but not a SavedModel"),
                                        ("m.tflite", "is a folder; expected a .tflite file"),
                                        ("m.onnx", "is a folder; expected a .onnx file")])
def test_folder_where_a_model_file_is_expected(tmp_path, name, match):
    from edgeopt.model_io import load_model

    (tmp_path / name).mkdir()
    with pytest.raises(UserError, match=match):
        load_model(tmp_path / name)


def test_huge_declared_input_is_refused_by_name(tmp_path):
    import keras

    from edgeopt.model_io import check_sample_size, load_model

    with pytest.raises(UserError, match=r"input claims shape 100000x100000 \(float32\); one sample would need "
                                        r"37\.3 GiB|40\.0 GB"):
        check_sample_size(Path("m.onnx"), (100000, 100000), "float32")
    check_sample_size(Path("m.onnx"), (224, 224, 3), "float32")  # 588 KiB: fine
    inp = keras.Input((100000, 100000, 1))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inp)))
    model.save(tmp_path / "huge.keras")
    with pytest.raises(UserError, match="huge.keras: the model's input claims shape 100000x100000x1"):
        load_model(tmp_path / "huge.keras")


# -- real processes: a second optimize refused, kill -9 at named phases then resume
WRITER = """
import sys
from tests.test_robust import HEADER, _done
from edgeopt.engine.store import RunDir
with RunDir.open(sys.argv[1], HEADER) as run:
    run.put(_done(run, "float32"))
    print("ready", flush=True)
    sys.stdin.readline()
    run.put(_done(run, "int8", b"TFL3int8"))
"""


@pytest.mark.slow
def test_second_optimize_on_a_run_directory_is_refused_and_nothing_lost(tmp_path, slide_mlp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], cwd=Path(__file__).parents[1], env=ENV,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "ready"
        before = (out / RUN_FILE).read_bytes()
        second = subprocess.run([sys.executable, "-m", "edgeopt.cli", "optimize", str(slide_mlp_path), "--data",
                                 "blobs2d", "--out", str(out), "--runs", "5"], env=ENV, capture_output=True,
                                text=True)
        lines = [ln for ln in second.stderr.splitlines() if ln.startswith("error:")]
        assert second.returncode == 2, second.stderr
        assert len(lines) == 1 and f"in use by edgeopt process {first.pid} on {socket.gethostname()}" in lines[0]
        assert (out / RUN_FILE).read_bytes() == before  # the refused process wrote nothing
        first.communicate("go\n", timeout=60)
    finally:
        first.kill()
    assert first.returncode == 0
    assert [v["name"] for v in _valid(out)["variants"]] == ["float32", "int8"]  # nothing lost


def _child(out: Path, model: Path, kill_at: str | None) -> subprocess.CompletedProcess:
    env = dict(ENV)
    env.pop("EDGEOPT_TEST_KILL_AT", None)
    if kill_at:
        env["EDGEOPT_TEST_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, str(CHILD), str(model), "blobs2d", str(out), "float16", "prune,int8"],
                          env=env, capture_output=True, text=True, timeout=300)


def _intact(out: Path) -> dict[str, int]:
    """run.json valid and every done variant's artifact complete; {name: artifact mtime_ns}."""
    from edgeopt.engine.store import file_digest

    record = _valid(out)
    done = {}
    for v in record["variants"]:
        if v["status"] == "done":
            artifact = out / v["artifact"]
            assert file_digest(artifact) == v["artifact_sha256"], v["name"]
            done[v["name"]] = artifact.stat().st_mtime_ns
    return done


@pytest.mark.slow
def test_kill_at_every_phase_then_resume_loses_and_recomputes_nothing(tmp_path, slide_mlp_path):
    out = tmp_path / "run"
    seen: dict[str, int] = {}
    # measurement@2: float32 done, float16 killed while measured; then fine-tuning (prune), the
    # int8 conversion, and the run.json write that would record prune+int8
    for kill_at, done_after in [("measurement@2", ["float32"]), ("fine-tune", ["float32", "float16"]),
                                ("conversion", ["float32", "float16"]), ("run.json", ["float32", "float16"])]:
        proc = _child(out, slide_mlp_path, kill_at)
        assert proc.returncode == -signal.SIGKILL, (kill_at, proc.stdout, proc.stderr)
        done = _intact(out)
        assert sorted(done) == sorted(done_after), kill_at
        for name, stamp in seen.items():
            assert done[name] == stamp, f"{name} was made again after the kill at {kill_at}"
        seen.update(done)
    proc = _child(out, slide_mlp_path, None)
    assert proc.returncode == 0, proc.stderr
    assert "float32: kept from the earlier run" in proc.stdout and "float16: kept from the earlier run" in proc.stdout
    assert "removed prune+int8/" in proc.stdout  # complete but never recorded: made again
    done = _intact(out)
    assert sorted(done) == ["float16", "float32", "prune+int8"]
    assert all(done[n] == seen[n] for n in ("float32", "float16"))
    record = load_run(out)
    pi8 = next(v for v in record["variants"] if v["name"] == "prune+int8")
    assert pi8["details"]["steps"][0]["cached"] is True  # the fine-tuning of the killed runs was kept
    for v in record["variants"][1:]:  # ratios from the baseline re-timed beside each variant
        vs, paired = v["vs_baseline"], v["vs_baseline"]["paired_latency"]
        assert vs["speed_basis"] == "paired"
        assert vs["speedup"] == round(paired["baseline_us"] / paired["variant_us"], 3)
        assert paired["loadavg_1m_before"] is not None and v["metrics"]["loadavg_1m"] is not None
    assert any("took over the run-directory lock" in n for n in record["notes"])
    assert all(isinstance(v["over_budget"], bool) for v in record["variants"])
    assert record["budget"]["points"] == 1.0 and record["budget"]["summary"]
