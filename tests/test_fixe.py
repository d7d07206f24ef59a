"""Tester-found defects of `edgeopt search` / `edgeopt worker` (fixe): per-target spaces without
the precisions a device cannot run, and the worker's storage check."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_synthetic  # noqa: E402
from edgeopt.errors import UserError  # noqa: E402
from edgeopt.tuner import DeviceCheck, Heartbeat, default_space, run_search  # noqa: E402

HB = Heartbeat(**search_synthetic.HEARTBEAT_FOR_TESTS)


def test_a_target_space_leaves_out_the_precisions_the_device_cannot_run(tmp_path):
    from edgeopt.hardware.catalogue import load_devices

    devices = load_devices()
    nano = devices["arduino-nano-33-ble-sense"]  # TFLite Micro: no dynamic-range or float16 model (it has an FPU)
    unsupported = DeviceCheck(nano, baseline=None).unsupported()
    assert {"dynamic", "float16"} <= set(unsupported) and "int8" not in unsupported
    full = default_space(training=False)
    small = full.without(unsupported)
    assert "dynamic" not in small.slots[0].names() and small.size() == full.size() - len(unsupported)
    assert "training" not in [s.name for s in default_space().without({"int8"}).slots]  # qat closes with int8
    with pytest.raises(UserError, match="no precision step is left"):
        full.without({"int8", "mixed", "dynamic", "float16"})
    t = run_search({"nano": small}, search_synthetic.evaluate, ["nano"], run_dir=tmp_path, baseline_accuracy=0.9,
                   n_trials=6, seeds=[], heartbeat=HB).targets["nano"]
    assert t.trials and not any(r.recipe in unsupported for r in t.trials)
    assert t.accounting.rejected == 0


@pytest.mark.parametrize("make", ["missing", "empty", "other"])
def test_worker_on_a_storage_without_the_search_creates_nothing(tmp_path, make):
    import subprocess

    db = tmp_path / "new.db"
    if make == "empty":
        db.touch()
    elif make == "other":
        run_search(default_space(training=False), search_synthetic.evaluate, ["h"], run_dir=tmp_path / "r",
                   storage=f"sqlite:///{db}", name="other", baseline_accuracy=0.9, n_trials=1, heartbeat=HB)
    before = db.read_bytes() if db.exists() else None
    proc = subprocess.run([sys.executable, "-m", "edgeopt.cli", "worker", "--storage", f"sqlite:///{db}",
                           "--study", "nosuch", "--work-dir", str(tmp_path / "w")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1
    assert "run_search" not in proc.stderr and "Traceback" not in proc.stderr
    assert (db.read_bytes() if db.exists() else None) == before


def _result(met: bool, violations=(), accuracy_excess=0.0):
    from edgeopt.tuner.types import Accounting, TargetResult, TrialRecord

    pick = TrialRecord(3, "done", "int8", "int8", [], {}, accuracy=0.8, violations=list(violations),
                       constraints={"accuracy": accuracy_excess, "device": float(len(violations))})
    return TargetResult("dev", "s:dev", [], met, pick if met else None, None if met else pick, [], "", Accounting(),
                        [pick]), pick


def test_an_export_that_misses_the_budget_or_is_for_another_engine_says_so():
    from edgeopt.hardware.catalogue import load_devices
    from edgeopt.tuner.searching import _export_notes, _tflm_bundle

    devices = load_devices()
    nano, stm = devices["arduino-nano-33-ble-sense"], devices["stm32u575"]
    tr, pick = _result(False, [{"kind": "flash", "reason": "model 2 MB > 1 MB flash"}], 0.5)
    (note,) = _export_notes(tr, pick, nano)
    assert "does NOT meet the budget" in note and "0.50 points beyond" in note and "2 MB > 1 MB flash" in note
    tr, pick = _result(True)
    assert _export_notes(tr, pick, nano) == [] and _tflm_bundle(nano)
    (note,) = _export_notes(tr, pick, stm)  # an X-CUBE-AI-only board: the .tflite alone
    assert not _tflm_bundle(stm) and "x-cube-ai estimates" in note and "no TFLite Micro sketch" in note
    assert tr.to_dict()["export_notes"] == []


def test_a_time_budget_alone_says_until_it_ends(tmp_path):
    lines = []
    result = run_search(default_space(training=False), search_synthetic.evaluate, ["h"], run_dir=tmp_path,
                        baseline_accuracy=0.9, n_trials=None, time_budget_s=0.5, heartbeat=HB, log=lines.append)
    assert "trials until the time budget ends" in lines[0] and "1000 trials each" not in lines[0]
    assert result.targets["h"].accounting.counted >= 1
    with pytest.raises(UserError, match="needs a budget"):
        run_search(default_space(), search_synthetic.evaluate, ["h"], run_dir=tmp_path / "b",
                   baseline_accuracy=0.9, n_trials=None, heartbeat=HB)


def test_ctrl_c_says_how_to_resume(capsys):
    import typer

    from edgeopt.commands.search import _interrupted_says_resume

    with pytest.raises(typer.Exit) as exc:
        with _interrupted_says_resume():
            raise KeyboardInterrupt
    assert exc.value.exit_code == 130
    assert capsys.readouterr().err == "interrupted; re-run the same command to resume\n"


MY_BOARD = """devices:
  - name: my-board
    class: mcu
    core: cortex-m7
    clock_mhz: 480
    ram_kb: 1024
    flash_kb: 2048
    active_power_w: 0.25
"""


def test_a_user_yaml_device_can_be_a_search_target(tmp_path):
    import subprocess

    from edgeopt.tuner.evaluate import make_precheck
    from edgeopt.tuner.options import check_targets

    yaml = tmp_path / "mine.yaml"
    yaml.write_text(MY_BOARD)
    assert check_targets(["my-board"], ["latency_ms"], yaml)["my-board"].ram_kb == 1024
    with pytest.raises(UserError, match="my-board"):
        check_targets(["my-board"], ["latency_ms"])
    with pytest.raises(UserError, match="device file not found"):
        check_targets(["my-board"], ["latency_ms"], tmp_path / "nope.yaml")
    check = make_precheck({"devices_file": str(yaml), "baseline_graph": {"params": 10}}, "my-board")
    assert check.device.name == "my-board"  # a worker rebuilds the user's device from the stored settings
    proc = subprocess.run([sys.executable, "-m", "edgeopt.cli", "search", "m.keras", "-d", "blobs2d", "--trials", "1",
                           "--target", "my-board", "--devices-file", str(tmp_path / "nope.yaml"),
                           "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --devices-file: device file not found")
    assert not (tmp_path / "run").exists()
