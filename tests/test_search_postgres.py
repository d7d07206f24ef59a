"""Two workers on one PostgreSQL study, one killed with SIGKILL mid-trial: every trial is
accounted for, the killed worker's trial is retried by the other, nothing finished is lost and
the study completes its budget exactly.

The server: $EDGEOPT_TEST_POSTGRES_URL, else the one scripts/start_postgres.sh starts (CI runs it
in .ci/run). Skipped only when no server can be started here; under CI (CI=true) that fails.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import search_synthetic
from edgeopt.tuner import Heartbeat, collect, create_search, default_space, run_worker

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"


def _can_connect(url: str) -> bool:
    try:
        import psycopg

        psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=5).close()
        return True
    except Exception:
        return False


def _last_url(text: str | None) -> str | None:
    """The last postgresql:// line of `text` (the start script may print notes before it)."""
    urls = [line.strip() for line in (text or "").splitlines() if line.strip().startswith("postgresql")]
    return urls[-1] if urls else None


def _start_server() -> tuple[str | None, str]:
    try:
        out = subprocess.run(["bash", str(ROOT / "scripts" / "start_postgres.sh")], capture_output=True,
                             text=True, timeout=300, env={**os.environ, "EDGEOPT_PG_DB": "edgeopt_test"})
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, str(err)
    url = _last_url(out.stdout) if out.returncode == 0 else None
    return url, out.stderr.strip()[-300:] or out.stdout.strip()[-300:]


@pytest.fixture(scope="module")
def pg_url():
    given = os.environ.get("EDGEOPT_TEST_POSTGRES_URL")
    url, why = _last_url(given), f"cannot connect to {given!r}"
    if not url or not _can_connect(url):
        url, started_why = _start_server()
        why = f"{why}; start_postgres.sh: {started_why}" if given else started_why
    if not url or not _can_connect(url):
        if os.environ.get("CI"):
            pytest.fail(f"no PostgreSQL server could be started (CI must run one): {why}")
        pytest.skip(f"no PostgreSQL server could be started here: {why}")
    return url


def _env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(TESTS), env.get("PYTHONPATH", "")])
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.mark.slow
def test_two_workers_one_killed_mid_trial(pg_url, tmp_path):
    name = f"t{uuid.uuid4().hex[:10]}"
    budget = 8
    create_search(default_space(), ["host-cpu"], storage=pg_url, baseline_accuracy=0.9, name=name,
                  n_trials=budget, run_dir=tmp_path, heartbeat=Heartbeat(**search_synthetic.HEARTBEAT_FOR_TESTS))
    marks = tmp_path / "marks"
    marks.mkdir()
    env = _env(SEARCH_TEST_SLEEP=0.7, SEARCH_TEST_MARKS=marks)

    def start():
        return subprocess.Popen([sys.executable, str(TESTS / "search_synthetic.py"), "worker", pg_url, name,
                                 str(tmp_path / "work")], env=env, stderr=subprocess.PIPE, text=True)

    victim, survivor = start(), start()
    deadline = time.monotonic() + 90
    while len(list(marks.glob(f"{victim.pid}-*.started"))) < 2:  # the victim is in its second trial
        assert victim.poll() is None and time.monotonic() < deadline, victim.stderr.read()
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    try:
        survivor.wait(timeout=120)
    except subprocess.TimeoutExpired:
        survivor.kill()
        pytest.fail("the surviving worker did not finish the study")
    log = survivor.stderr.read()
    assert survivor.returncode == 0, log

    t = collect(pg_url, name).targets["host-cpu"]
    acc = t.accounting
    assert (acc.counted, acc.done, acc.running, acc.waiting) == (budget, budget, 0, 0), acc
    assert acc.lost == 1 and acc.retried == 1, acc  # the killed trial, and its one retry
    lost = next(r for r in t.trials if r.status == "lost")
    retry = next(r for r in t.trials if r.retry_of is not None)
    assert retry.retry_of == lost.number and retry.params == lost.params and retry.status == "done"
    assert lost.worker is None or lost.worker.endswith(f":{victim.pid}")
    assert retry.worker.endswith(f":{survivor.pid}")
    started = {int(p.name.split("-")[1].split(".")[0]) for p in marks.glob("*.started")}
    ran = {r.number for r in t.trials if r.status not in ("skipped", "repeat")}  # a repeat reuses a result
    assert started == ran  # every trial that ran is in the study
    victim_done = [r for r in t.trials if r.status == "done" and r.worker.endswith(f":{victim.pid}")]
    assert victim_done, "the victim's first trial finished before the kill and must be kept"
    assert t.met and t.front


def test_run_worker_refuses_an_unknown_search(pg_url):
    from edgeopt.errors import UserError

    with pytest.raises(UserError, match="no search named"):
        run_worker(pg_url, f"missing{uuid.uuid4().hex[:6]}", evaluate=search_synthetic.evaluate)
