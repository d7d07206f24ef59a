"""Search infrastructure on a cheap synthetic objective (tests/search_synthetic.py): the space
model, seeds, constraints, always-hands-back, the pruner hook, device prechecks, hypervolume
against random search, and kill-and-resume on SQLite."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import search_synthetic
from edgeopt.errors import UserError
from edgeopt.tuner import (AccuracyPruner, DeviceCheck, Heartbeat, Objective, Param, SearchSpace, Slot,
                            StepChoice, TrialSpec, collect, default_space, export_artifact, run_search,
                            seed_recipes)
from edgeopt.tuner import results as res
from edgeopt.tuner.space import OBJECTIVE_SEEDS, first_round, recipe_name
from edgeopt.tuner.study import expected_trials, seed_quota, startup_trials
from edgeopt.tuner.types import TrialRecord

HB = Heartbeat(**search_synthetic.HEARTBEAT_FOR_TESTS)
TESTS = Path(__file__).resolve().parent


def _env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS.parent / "src"), str(TESTS), env.get("PYTHONPATH", "")])
    env.update({k: str(v) for k, v in extra.items()})
    return env


class FakeTrial:
    """Enough of optuna.Trial for SearchSpace.sample: fixed answers, else the first choice / low."""

    def __init__(self, answers):
        self.answers, self.params, self.user_attrs = answers, {}, {}

    def suggest_categorical(self, key, choices):
        self.params[key] = self.answers.get(key, choices[0])
        assert self.params[key] in choices
        return self.params[key]

    def suggest_float(self, key, low, high, log=False):
        self.params[key] = self.answers.get(key, low)
        return self.params[key]

    suggest_int = suggest_float

    def set_user_attr(self, key, value):
        self.user_attrs[key] = value


# ---------------------------------------------------------------- space
def test_default_space_orders_chains_and_qat_forces_int8():
    space = default_space()
    chain = space.sample(FakeTrial({"distill": "distill", "training": "qat", "precision": "float16",
                                    "int8.calibration": "percentile"}))
    assert [s.step for s in chain] == ["distill", "qat", "int8"]
    assert chain[-1].config == {"calibration": "percentile"}
    assert space.sample(FakeTrial({"precision": "mixed"}))[-1].config["max_accuracy_drop"] == 1.0


def _recipes(space, objectives) -> list[str]:
    return [f"{'+'.join(r)}" for r in seed_recipes(space, objectives)]


def test_seeds_are_chosen_per_objective_and_fit_the_space():
    space = default_space()
    gzip = seed_recipes(space, ["gzip_bytes"])
    # plain int8, then the accuracy anchor (QAT), then Deep Compression: high sparsity, few clusters, 8-bit
    assert gzip[:2] == [{"int8": {}}, {"qat": {}, "int8": {}}]
    assert gzip[2]["prune"]["sparsity"] >= 0.9 and gzip[2]["cluster"]["clusters"] <= 16
    latency = seed_recipes(space, ["latency_ms"])
    # structured pruning first (same speed-up as the student, half the time), then a narrower student,
    # once with each precision (which is faster is measured, not assumed)
    assert latency[2] == {"prune-structured": {"ratio": 0.5}, "int8": {}}
    i = latency.index({"distill": {"width": 0.5}, "int8": {}})
    assert latency[i + 1] == {"distill": {"width": 0.5}, "float16": {}}
    assert latency[3] == {"mixed": {}}  # the second round's cheapest: accuracy's second seed
    both = _recipes(space, ["gzip_bytes", "latency_ms"])
    full = seed_recipes(space, ["gzip_bytes", "latency_ms"])
    assert len(full) == len({str(r) for r in full})  # no duplicates
    assert "mixed" in both and "prune-structured+int8" in both  # the generic seeds are kept
    # a post-training space keeps only the seeds it can express; mixed is its accuracy seed
    assert _recipes(default_space(training=False), ["gzip_bytes", "latency_ms"]) == ["int8", "mixed"]
    for recipe in seed_recipes(space, ["gzip_bytes", "latency_ms", "size_bytes"]):
        assert recipe_name(space.sample(FakeTrial(space.params_for(recipe)))) == "+".join(recipe)


@pytest.mark.parametrize("objectives", [[], ["gzip_bytes"], ["latency_ms", "size_bytes"],
                                        ["gzip_bytes", "latency_ms"], ["energy_mj", "latency_ms"]])
@pytest.mark.parametrize("training", [True, False])
def test_first_round_covers_every_objective_accuracy_included_cheap_first(objectives, training):
    space = default_space(training=training)
    seeds = seed_recipes(space, objectives)
    n = first_round(space, objectives)
    head = seeds[:n]
    assert head[0] == {"int8": {}}
    for objective in ["accuracy", *objectives]:  # each one's first fitting known good recipe runs early
        first = next((r for r in OBJECTIVE_SEEDS.get(objective, []) if space_fits(space, r)), None)
        assert first is None or first in head, (objective, first, head)
    assert n <= 2 + len(objectives)
    assert [len(r) for r in head[1:]] == sorted(len(r) for r in head[1:])  # shorter (cheaper) chains first
    assert seed_recipes(space, ["accuracy", *objectives]) == seeds  # accuracy is always there, once


def space_fits(space, recipe) -> bool:
    try:
        space.params_for(recipe)
        return True
    except UserError:
        return False


def test_seed_quota_leaves_room_for_the_sampler():
    assert seed_quota(9, 4, expected=8) == 4  # half of 8
    assert seed_quota(9, 4, expected=5) == 4  # the first round always runs
    assert seed_quota(9, 4, expected=30) == 9 and seed_quota(3, 3, expected=2) == 3
    assert expected_trials(1000, 0, None, None) == 1000  # no time budget: the trial budget
    assert expected_trials(1000, 0, 1800.0, None) == 1000  # nothing measured yet
    assert expected_trials(1000, 2, 1500.0, 200.0) == 2 + 1 + 7  # two studies of 100 s trials
    assert expected_trials(5, 2, 1500.0, 200.0) == 5 and expected_trials(50, 3, -1.0, 10.0) == 4
    assert startup_trials(1000) == 10 and startup_trials(6) == 3
    assert startup_trials(1000, seed_floor=4) == 4  # the seeds' first round is the start-up phase


def test_seed_params_and_round_trip():
    space = default_space()
    params = space.params_for({"prune-structured": {"ratio": 0.5}, "int8": {}})
    assert params["structure"] == "prune-structured" and params["prune-structured.ratio"] == 0.5
    assert params["precision"] == "int8" and params["int8.calibration"] == "minmax"
    assert params["distill"] == "none" and "distill.width" not in params
    chain = space.sample(FakeTrial(params))
    assert [s.step for s in chain] == ["prune-structured", "int8"]
    assert SearchSpace.from_dict(space.to_dict()) == space
    for bad in ({"int9": {}}, {"int8": {"sparsity": 0.5}}, {"prune": {}}):
        with pytest.raises(UserError):
            space.params_for(bad)


def test_param_from_step_config_search_range():
    """The typed step configs' search ranges ({low, high, log} / {choices}) adapt in one call."""
    from typing import ClassVar, Literal

    from pydantic import BaseModel, Field

    class Cluster(BaseModel):
        step: ClassVar[str] = "cluster"
        clusters: int = Field(16, json_schema_extra={"search": {"low": 4, "high": 64, "log": True}})
        init: Literal["linear", "density"] = Field("linear", json_schema_extra={"search": {"choices": ["linear", "density"]}})

        @classmethod
        def search_space(cls):
            return {k: f.json_schema_extra["search"] for k, f in cls.model_fields.items()}

    choice = StepChoice.from_config(Cluster)
    assert choice.params == (Param("clusters", "int", 4, 64, log=True, default=16),
                             Param("init", "categorical", choices=("linear", "density"), default="linear"))
    with pytest.raises(ValueError):
        Param("x", "float", low=0.0, high=1.0, log=True)
    with pytest.raises(ValueError):  # 'then' must name a later slot's choice
        SearchSpace((Slot("a", (StepChoice("qat", then={"b": "int9"}),)), Slot("b", (StepChoice("int8"),))))


# ---------------------------------------------------------------- results
def _rec(n, acc, lat, size, excess=0.0, status="done"):
    return TrialRecord(number=n, status=status, recipe="r", description=f"r{n}", steps=[], params={},
                       accuracy=acc, metrics={"latency_ms": {"value": lat, "provenance": "measured"},
                                              "size_bytes": {"value": size, "provenance": "measured"}},
                       constraints={"accuracy": excess, "device": 0.0})


def test_front_best_closest_and_hypervolume():
    objs = [Objective("latency_ms"), Objective("size_bytes")]
    a, b, c, d = _rec(0, 0.9, 2, 100), _rec(1, 0.89, 1, 100), _rec(2, 0.88, 3, 300), _rec(3, 0.8, 0.1, 1, excess=5)
    assert [t.number for t in res.pareto_front([a, b, c, d], objs)] == [0, 1]  # c dominated, d infeasible
    assert res.pick_best([a, b, c, d], objs).number == 1
    assert res.pick_best([d], objs) is None and res.pick_closest([d, _rec(4, 0.7, 1, 1, excess=9)]).number == 3
    text = res.sentence("mcu", None, d, [d], 1.0, objs)
    assert "no variant met the constraints" in text and "loses 6.00 accuracy points where 1 are allowed" in text
    hv = res.hypervolume({"one": [a], "two": [a, b], "none": []}, objs)
    assert hv["none"] == 0.0 and hv["two"] > hv["one"] > 0
    # in the shared frame a = (-0.9, 2, 100) scales to (0, 1, 0), b to (1, 0, 0): one 0.1x1.1x1.1 box each
    assert hv["one"] == pytest.approx(0.1 * 1.1 * 1.1)


def test_pruner_rule():
    p = AccuracyPruner(min_accuracy=0.85, default_headroom=0.05, warmup_steps=1)
    assert p.check(0, 0.1, []) is None  # warm-up
    assert p.check(1, 0.81, []) is None  # 0.81 + 0.05 >= 0.85
    assert "stopped at step 1" in p.check(1, 0.79, [])
    history = [({1: 0.70, 2: 0.80}, 0.86)]  # a finished trial gained 0.16 from step 1
    assert p.check(1, 0.70, history) is None
    assert p.check(2, 0.70, history) is not None  # from step 2 it gained 0.06 at most
    assert p.check(3, 0.80, [({3: 0.85}, 0.86)]) is None  # a curve never narrows the default 0.05


# ---------------------------------------------------------------- searches
def test_search_seeds_constraints_front_and_export(tmp_path, monkeypatch):
    monkeypatch.setenv("SEARCH_TEST_SLEEP", "0")
    lines = []
    result = run_search(default_space(), search_synthetic.evaluate, ["host-cpu"], run_dir=tmp_path,
                        baseline_accuracy=0.9, max_accuracy_drop=1.0, n_trials=8, random_baseline=True,
                        heartbeat=HB, log=lines.append)
    t = result.targets["host-cpu"]
    trials = sorted(t.trials, key=lambda r: r.number)
    first = trials[:3]  # int8 and the first seed of accuracy and of the default objectives first
    assert [r.recipe for r in first] == ["int8", "qat+int8", "prune-structured+int8"] and all(r.seed for r in first)
    assert first[2].params["prune-structured.ratio"] == 0.5
    # seeds take half of the 8 trials (more than the first round), TPE proposes the rest
    assert [r.seed for r in trials] == [True] * 4 + [False] * 4 and trials[3].recipe == "mixed"
    assert t.accounting.done == 8 and t.accounting.counted == 8 and len(t.trials) == 8
    assert t.met and t.best.feasible and t.best in t.front and "meets the constraints" in t.sentence
    for r in t.trials:  # the constraint follows the measured accuracy
        assert (r.constraints["accuracy"] <= 0) == ((0.9 - r.accuracy) * 100 <= 1.0 + 1e-9)
        assert r.metrics["latency_ms"]["provenance"] == "measured"
    assert t.baseline["sampler"] == "random" and t.baseline["accounting"]["counted"] == 8
    assert t.hypervolume > 0 and t.baseline["hypervolume"] >= 0
    assert any("best so far: trial" in line for line in lines)
    out = export_artifact(f"sqlite:///{tmp_path / 'search.db'}", t, tmp_path / "winner")
    assert out.name == "model.tflite" and out.stat().st_size > 0
    assert not (tmp_path / "trials").exists() or not any((tmp_path / "trials").iterdir())  # work dirs cleaned
    # resuming a finished search runs nothing and reads the same result
    again = collect(f"sqlite:///{tmp_path / 'search.db'}", "search")
    assert [r.number for r in again.targets["host-cpu"].front] == [r.number for r in t.front]


def test_none_meets_the_constraint_hands_back_the_closest(tmp_path):
    result = run_search(default_space(), search_synthetic.evaluate, ["mcu"], run_dir=tmp_path,
                        baseline_accuracy=0.99, max_accuracy_drop=0.5, n_trials=4, heartbeat=HB)
    t = result.targets["mcu"]
    assert not t.met and t.best is None and t.front == []
    assert t.closest is not None and t.closest.accuracy == max(r.accuracy for r in t.trials if r.status == "done")
    assert t.sentence.startswith("mcu: no variant met the constraints; the closest is trial")


def test_prechecks_reject_before_fine_tuning_and_after_conversion(tmp_path):
    def precheck(spec, target, artifact):
        if artifact is None and spec.has("float16"):
            return "float16 does not run here"
        if artifact is not None and spec.has("dynamic"):
            assert artifact.name == "model.tflite" and artifact.exists()
            return "dynamic rejected after conversion"
        return None

    space = SearchSpace((Slot("precision", (StepChoice("int8"), StepChoice("float16"), StepChoice("dynamic")),
                              optional=False),))
    result = run_search(space, search_synthetic.evaluate, ["dev"], run_dir=tmp_path, baseline_accuracy=0.9,
                        n_trials=3, seeds=[{"float16": {}}, {"dynamic": {}}, {"int8": {}}],
                        precheck={"dev": precheck}, heartbeat=HB)
    t = result.targets["dev"]
    by = {r.recipe: r for r in t.trials}
    assert by["float16"].status == "rejected" and by["float16"].reason == "float16 does not run here"
    assert by["dynamic"].status == "rejected" and by["dynamic"].reason == "dynamic rejected after conversion"
    assert by["int8"].status == "done" and t.best.recipe == "int8"
    assert (t.accounting.counted, t.accounting.rejected) == (3, 2)


def test_pruner_stops_a_fine_tune_that_cannot_reach_the_constraint(tmp_path, monkeypatch):
    monkeypatch.setenv("SEARCH_TEST_EPOCHS", "8")  # curve: final - 0.14, -0.12, ..., -0.02, final
    # two points of one recipe (a repeated point is not measured again)
    space = SearchSpace((Slot("precision", (StepChoice("int8", (Param("x", "categorical", choices=(1, 2)),)),),
                              optional=False),))
    # 0.94 needed; at step 1 the trial has 0.775 and may gain 0.15 by default: stopped
    stopped = run_search(space, search_synthetic.evaluate, ["dev"], run_dir=tmp_path / "a",
                         baseline_accuracy=0.95, n_trials=1, heartbeat=HB).targets["dev"]
    assert stopped.trials[0].status == "stopped" and "stopped at step 1" in stopped.trials[0].reason
    assert "none finished" in stopped.sentence
    # 0.886 needed: it goes on, its curve is kept, and the next trial's headroom comes from it
    ok = run_search(space, search_synthetic.evaluate, ["dev"], run_dir=tmp_path / "b", baseline_accuracy=0.896,
                    n_trials=2, heartbeat=HB).targets["dev"]
    assert [r.status for r in ok.trials if r.status != "repeat"] == ["done", "done"]


def test_failing_evaluation_is_recorded_and_the_search_goes_on(tmp_path):
    def evaluate(spec: TrialSpec):
        if spec.has("mixed"):
            raise RuntimeError("converter crashed")
        return search_synthetic.evaluate(spec)

    result = run_search(default_space(), evaluate, ["host-cpu"], run_dir=tmp_path, baseline_accuracy=0.9,
                        n_trials=3, heartbeat=HB, seeds=[{"int8": {}}, {"mixed": {}}, {"float16": {}}])
    t = result.targets["host-cpu"]
    mixed = next(r for r in t.trials if r.recipe == "mixed")
    assert mixed.status == "failed" and "converter crashed" in mixed.reason
    assert t.accounting.done == 2 and t.accounting.failed == 1 and t.met


def test_bad_arguments_fail_before_any_storage(tmp_path):
    for kw, words in ((dict(n_trials=0), "--trials"), (dict(max_accuracy_drop=-1), "accuracy-drop"),
                      (dict(sampler="cmaes"), "unknown sampler"), (dict(storage="mysql.example"), "not a database URL"),
                      (dict(objectives=[Objective("accuracy")]), "objectives")):
        with pytest.raises(UserError, match=words):
            run_search(default_space(), search_synthetic.evaluate, ["host-cpu"], run_dir=tmp_path / "x",
                       baseline_accuracy=0.9, **kw)
    assert not (tmp_path / "x" / "search.db").exists()


def test_resume_refuses_other_settings(tmp_path):
    run_search(default_space(), search_synthetic.evaluate, ["t"], run_dir=tmp_path, baseline_accuracy=0.9,
               n_trials=1, seeds=[], heartbeat=HB)
    with pytest.raises(UserError, match="exists with other max_accuracy_drop"):
        run_search(default_space(), search_synthetic.evaluate, ["t"], run_dir=tmp_path, baseline_accuracy=0.9,
                   max_accuracy_drop=2.0, n_trials=1, heartbeat=HB)


def test_device_check_rejects_before_fine_tuning_only_what_is_certain():
    from edgeopt.hardware.catalogue import load_devices
    from edgeopt.measure.graph_types import GraphProfile

    nano = load_devices()["arduino-nano-33-ble-sense"]  # 256 KB RAM, 1 MB flash, TFLite Micro
    base = GraphProfile(source="tflite", path="m.tflite", ops=[], total_params=2_000_000,
                        peak_activation_bytes=4 * 100_000)
    check = DeviceCheck(nano, base)

    def spec(*steps):
        from edgeopt.tuner.space import StepSpec
        return TrialSpec(0, nano.name, [StepSpec(s, c) for s, c in steps], {}, Path("."))

    assert "TFLite Micro" in check(spec(("dynamic", {})), nano.name)
    assert "flash" in check(spec(("int8", {})), nano.name)  # 2 M int8 weights > 1 MB
    assert check(spec(("prune-structured", {"ratio": 0.5}), ("int8", {})), nano.name) is None  # >= 500 KB: may fit
    assert check(spec(("prune", {"sparsity": 0.9}), ("int8", {})), nano.name) is not None  # zeros still stored


# ---------------------------------------------------------------- kill and resume (SQLite)
@pytest.mark.slow
def test_sqlite_search_killed_mid_trial_resumes_without_losing_or_double_counting(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    env = _env(SEARCH_TEST_SLEEP=0.8, SEARCH_TEST_MARKS=marks)
    proc = subprocess.Popen([sys.executable, str(TESTS / "search_synthetic.py"), "search", str(tmp_path), "5"],
                            env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(marks.glob(f"{proc.pid}-2.started")):  # trial 2 has begun: trials 0, 1 are done
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = collect(f"sqlite:///{tmp_path / 'search.db'}", "search").targets["host-cpu"]
    assert before.accounting.done == 2 and before.accounting.running == 1

    os.environ["SEARCH_TEST_SLEEP"] = "0"
    try:
        result = run_search(default_space(), search_synthetic.evaluate, ["host-cpu"], run_dir=tmp_path,
                            baseline_accuracy=0.9, n_trials=5, heartbeat=HB)
    finally:
        del os.environ["SEARCH_TEST_SLEEP"]
    t = result.targets["host-cpu"]
    acc = t.accounting
    assert (acc.done, acc.counted, acc.lost, acc.retried, acc.running, acc.waiting) == (5, 5, 1, 1, 0, 0)
    lost = next(r for r in t.trials if r.status == "lost")
    retry = next(r for r in t.trials if r.retry_of is not None)
    assert lost.number == 2 and retry.retry_of == 2 and retry.params == lost.params and retry.status == "done"
    kept = {r.number: r for r in t.trials}
    assert all(kept[n].accuracy == r.accuracy for n, r in ((r.number, r) for r in before.trials if r.status == "done"))


def test_device_check_after_conversion_uses_the_estimator_on_the_artifact():
    from conftest import MLPERF_DIR
    from edgeopt.hardware.catalogue import load_devices
    from edgeopt.tuner import estimated_metrics
    from edgeopt.tuner.space import StepSpec

    kws = MLPERF_DIR / "kws_ref_model.tflite"  # int8 keyword spotting, ~22 KB arena, ~50 KB flash
    if not kws.exists():
        pytest.skip("shared MLPerf Tiny models not present")
    nano = load_devices()["arduino-nano-33-ble-sense"]
    spec = TrialSpec(0, nano.name, [StepSpec("int8", {})], {}, Path("."))
    check = DeviceCheck(nano, baseline=None)
    assert check(spec, nano.name, kws) is None
    metrics = estimated_metrics(check.estimate(kws))
    assert metrics["latency_ms"].provenance == "estimated" and metrics["latency_ms"].value > 0
    tiny = nano.model_copy(update={"ram_kb": 8})
    assert "does not fit" in DeviceCheck(tiny, baseline=None)(spec, tiny.name, kws)


def test_worker_rebuilds_evaluate_and_precheck_from_the_stored_settings(tmp_path):
    from edgeopt.tuner import create_search, run_worker

    url = f"sqlite:///{tmp_path / 'search.db'}"
    names = create_search(default_space(), ["a", "b"], storage=url, baseline_accuracy=0.9, n_trials=2,
                          settings={"model": "m.keras"}, random_baseline=True, run_dir=tmp_path, heartbeat=HB)
    assert names == ["search:a", "search:a:random", "search:b", "search:b:random"]
    built, checked = [], []

    def make_evaluate(settings):
        built.append(settings)
        return search_synthetic.evaluate

    def make_precheck(settings, target):
        return lambda spec, t, artifact: checked.append((t, artifact is None)) or None

    result = run_worker(url, "search", make_evaluate=make_evaluate, make_precheck=make_precheck,
                        work_dir=tmp_path / "w")
    assert built == [{"model": "m.keras"}]  # one evaluate for the four studies with the same settings
    assert {t for t, _ in checked} == {"a", "b"} and {before for _, before in checked} == {True, False}
    for target in ("a", "b"):
        t = result.targets[target]
        assert t.accounting.counted == 2 and t.baseline["accounting"]["counted"] == 2
    with pytest.raises(UserError, match="exactly one of evaluate or make_evaluate"):
        run_worker(url, "search")


def test_time_budget_stops_starting_trials(tmp_path, monkeypatch):
    monkeypatch.setenv("SEARCH_TEST_SLEEP", "0.3")
    lines = []
    t0 = time.monotonic()
    result = run_search(default_space(), search_synthetic.evaluate, ["h"], run_dir=tmp_path, baseline_accuracy=0.9,
                        n_trials=100, time_budget_s=1.0, heartbeat=HB, log=lines.append)
    assert time.monotonic() - t0 < 30
    assert 1 <= result.targets["h"].accounting.counted < 100 and result.targets["h"].accounting.running == 0
    assert lines[-1] == "time budget spent: no new trials started"


def test_importing_the_package_stays_light():
    code = ("import sys, edgeopt.tuner; heavy = [m for m in ('optuna', 'sqlalchemy', 'tensorflow', 'psycopg') "
            "if m in sys.modules]; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], env=_env(), check=True)


def test_a_repeated_proposal_reuses_the_measurement(tmp_path):
    calls = []

    def evaluate(spec: TrialSpec):
        calls.append(spec.number)
        return search_synthetic.evaluate(spec)

    space = SearchSpace((Slot("precision", (StepChoice("int8"), StepChoice("float16")), optional=False),))
    lines = []
    t = run_search(space, evaluate, ["dev"], run_dir=tmp_path, baseline_accuracy=0.9, n_trials=5, heartbeat=HB,
                   seeds=[], seed=3, log=lines.append).targets["dev"]
    assert calls == [0, 2]  # with this seed TPE proposes trial 0's point again: not measured again
    assert [r.status for r in t.trials] == ["done", "repeat", "done"]
    assert t.accounting.counted == 2 and t.accounting.repeat == 1  # a repeat does not count
    first, again = t.trials[0], t.trials[1]
    assert again.repeat_of == 0 and again.reason == "same recipe and settings as trial 0: not measured again"
    assert (again.accuracy, again.metrics, again.constraints) == (first.accuracy, first.metrics, first.constraints)
    assert 1 not in [r.number for r in t.front] and t.best.number != 1  # the front lists each point once
    assert "search ended after 2 of 5 trials: all 2 points of the search space have been measured" in lines[-1]


def test_a_seed_two_workers_queued_at_once_runs_once_and_no_seed_is_skipped(tmp_path):
    import optuna

    from edgeopt.tuner import create_search, run_worker

    url = f"sqlite:///{tmp_path / 'search.db'}"
    create_search(default_space(), ["h"], storage=url, baseline_accuracy=0.9, n_trials=4, run_dir=tmp_path,
                  heartbeat=HB, seeds=[{"int8": {}}, {"mixed": {}}, {"prune-structured": {"ratio": 0.5}, "int8": {}}])
    study = optuna.load_study(study_name="search:h", storage=url)
    seeds = study.user_attrs["edgeopt.search"]["seeds"]
    for _ in range(2):  # what two workers reading the study at the same instant do (a check, then an insert)
        study.enqueue_trial(seeds[0], user_attrs={"seed": True})
    t = run_worker(url, "search", evaluate=search_synthetic.evaluate, work_dir=tmp_path / "w").targets["h"]
    assert [r.status for r in t.trials[:2]] == ["done", "skipped"]
    assert t.trials[1].reason == "seed already queued as trial 0 by another worker"
    done = [r.recipe for r in t.trials if r.status == "done"]
    assert done[:3] == ["int8", "mixed", "prune-structured+int8"] and len(done) == 4  # each seed once, in order
