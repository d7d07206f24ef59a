"""The search loop: one Optuna study per target, any number of workers on one storage.

``run_search`` creates (or resumes) the studies of a search, seeds them with known good recipes,
works on them until the trial budget or the time budget is spent and reads the results back.
``run_worker`` joins the same studies from another process or machine. Both go through
``_work``, which runs one trial at a time so that the budget holds across workers:

* a trial counts when it ends with a result (done, stopped by the pruner, rejected by a device
  check, failed with an error); a trial lost with a killed worker does not count, its retry does;
* before starting a trial a worker checks that the counted plus running trials leave room; right
  after Optuna hands it a trial it checks again against the trials numbered before it, so two
  workers starting at the same instant cannot overrun the budget (the later one is marked
  ``skipped``, not counted), and so does the later copy of a seed two workers queued at once;
* a trial whose worker stops sending heartbeats is failed after the grace period and re-queued
  (Optuna's heartbeat + RetryHeartbeatStaleTrialCallback); everything finished stays in storage.

Trials are multi-objective (accuracy maximized, then each objective as directed) with two
constraints set per trial (Optuna ``Trial.set_constraint``): ``accuracy`` (points lost beyond the
allowed drop) and ``device`` (number of device violations); TPE (default) or NSGA-II sample with
them; ``random`` is the baseline sampler.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
import warnings
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

from edgeopt.errors import UserError
from edgeopt.tuner import results as res
from edgeopt.tuner.pruning import AccuracyPruner
from edgeopt.tuner.space import SearchSpace, describe, first_round, recipe_name, seed_recipes
from edgeopt.tuner.storage import (ARTIFACT_DIR, Heartbeat, default_url, open_artifact_store, open_storage,
                                   redact, sqlite_study_names)
from edgeopt.tuner.types import (Objective, SearchResult, TargetResult, TrialOutcome, TrialSpec,
                                  TrialStopped)

Evaluate = Callable[[TrialSpec], TrialOutcome]
Precheck = Callable[[TrialSpec, str, "Path | None"], "str | None"]
Log = Callable[[str], None]

SETTINGS_KEY = "edgeopt.search"  # study user attr holding everything a worker needs
SAMPLERS = ("tpe", "nsga2", "random")
DEFAULT_OBJECTIVES = (Objective("latency_ms"), Objective("size_bytes"))
# Of the trials a study is expected to run, at most this share goes to the default seeds (beyond
# their first round, which always runs): the rest is left to the sampler's own proposals.
SEED_SHARE = 0.5
MAX_TRIALS = 1000  # trials per target when only a time budget is given
COUNTED = ("done", "stopped", "rejected", "failed")  # statuses the trial budget counts (Accounting.counted)
# A study ends when its sampler proposes only already-measured points this many times in a row.
REPEAT_LIMIT = 50


class _TrialFailed(Exception):
    """The objective ended with an error (recorded on the trial); the worker goes on."""


def study_name(name: str, target: str, random: bool = False) -> str:
    return f"{name}:{target}" + (":random" if random else "")


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --------------------------------------------------------------------------- public entry points
def run_search(space: "SearchSpace | dict[str, SearchSpace]", evaluate: Evaluate, targets: Sequence[str], *, run_dir: str | Path,
               baseline_accuracy: float, max_accuracy_drop: float = 1.0, name: str = "search",
               objectives: Sequence[Objective] = DEFAULT_OBJECTIVES, n_trials: int | None = 30,
               time_budget_s: float | None = None, storage: str | None = None,
               artifacts: str | Path | None = None, precheck: dict[str, Precheck] | None = None,
               seeds: Sequence[dict] | None = None, sampler: str = "tpe",
               random_baseline: bool = False, settings: dict | None = None, seed: int = 0,
               heartbeat: Heartbeat = Heartbeat(), pruner: AccuracyPruner | None = None,
               log: Log | None = None) -> SearchResult:
    """Search ``space`` for each target; return per target the best variant and the Pareto front.

    space: one space for every target, or target -> its space (e.g. without the precisions the
    device cannot run: ``SearchSpace.without(DeviceCheck.unsupported())``).
    evaluate: builds and measures one trial (see TrialSpec / TrialOutcome).
    targets: device names; one study each (``<name>:<target>``), ``n_trials`` trials each (None: until
    ``time_budget_s`` ends, at most ``MAX_TRIALS``).
    baseline_accuracy: float32 accuracy (fraction); a variant may lose ``max_accuracy_drop`` points.
    storage: an RDB URL (default: SQLite in ``run_dir``); artifacts: a path or s3://bucket
    (default: ``run_dir/.artifacts``). Re-running with the same arguments resumes.
    seeds: recipes tried first, ``{step: {field: value}}`` each, all of them (up to ``n_trials``).
    Default: ``seed_recipes(space, objectives)`` (int8, then the known good recipes of accuracy and of
    each objective in turn), of which the first round always runs and the rest while the seeds stay
    within ``SEED_SHARE`` of the trials the study is expected to run (``expected_trials``).
    precheck: target -> hook ``(spec, target, artifact|None) -> reason|None`` (e.g. DeviceCheck).
    time_budget_s: no new trial starts after this many seconds (a running trial finishes).
    random_baseline: also run a RandomSampler study per target with the same trial budget.
    settings: JSON-able facts a remote worker needs to rebuild ``evaluate`` (model, data...).
    Raises UserError on bad arguments (before any storage is opened).
    """
    run_dir = Path(run_dir)
    url = storage or default_url(run_dir)
    log = log or (lambda msg: None)
    each = (f"{n_trials} trials each" if n_trials is not None else
            f"trials until the time budget ends (at most {MAX_TRIALS} each)")
    store, studies = _create_all(space, targets, url=url, run_dir=run_dir, baseline_accuracy=baseline_accuracy,
                                 max_accuracy_drop=max_accuracy_drop, name=name, objectives=objectives,
                                 n_trials=n_trials, time_budget_s=time_budget_s, artifacts=artifacts,
                                 seeds=seeds, sampler=sampler, random_baseline=random_baseline,
                                 settings=settings, seed=seed, heartbeat=heartbeat)
    log(f"search {name}: {len(targets)} target(s), {each}, storage {redact(url)}")
    _work(store, studies, lambda s: evaluate, run_dir / "trials", precheck or {}, time_budget_s, pruner, log)
    return collect(store, name, url)


def create_search(space: SearchSpace, targets: Sequence[str], *, storage: str, baseline_accuracy: float,
                  run_dir: str | Path = ".", **kw) -> list[str]:
    """Create (or check and reuse) the studies of a search without running a trial, so that
    workers (``run_worker``) can start on them; returns the study names. Keyword arguments as
    for ``run_search``."""
    _, studies = _create_all(space, targets, url=storage, run_dir=Path(run_dir),
                             baseline_accuracy=baseline_accuracy, **kw)
    return [s.study_name for s in studies]


def _create_all(space, targets, *, url, run_dir, baseline_accuracy, max_accuracy_drop=1.0, name="search",
                objectives=DEFAULT_OBJECTIVES, n_trials=30, time_budget_s=None, artifacts=None,
                seeds=None, sampler="tpe", random_baseline=False, settings=None, seed=0,
                heartbeat=Heartbeat()):
    if n_trials is None:
        if time_budget_s is None:
            raise UserError("give --trials or --time-budget (or both): a search needs a budget")
        n_trials = MAX_TRIALS
    _check_args(targets, n_trials, max_accuracy_drop, sampler, objectives, time_budget_s)
    if not 0 <= baseline_accuracy <= 1:
        raise UserError(f"baseline accuracy must be a fraction in [0, 1] (got {baseline_accuracy})")
    if ":" in name or not name:
        raise UserError(f"--study name {name!r} must be non-empty and without ':'")
    spaces = space if isinstance(space, dict) else {t: space for t in targets}
    missing = [t for t in targets if t not in spaces]
    if missing:
        raise UserError(f"no search space given for target(s) {', '.join(missing)}")
    per_target = {}
    for target in targets:
        if seeds is None:
            target_seeds = seed_recipes(spaces[target], [o.name for o in objectives])
            floor = first_round(spaces[target], [o.name for o in objectives])
        else:
            target_seeds, floor = seeds, len(seeds)  # the caller's seeds all run
        # a seed outside the space is an error, before anything is created
        per_target[target] = ([spaces[target].params_for(recipe) for recipe in target_seeds][:n_trials], floor)
    run_dir.mkdir(parents=True, exist_ok=True)
    store = open_storage(url, heartbeat)
    common = {"name": name, "baseline_accuracy": float(baseline_accuracy),
              "max_accuracy_drop": float(max_accuracy_drop), "objectives": [asdict(o) for o in objectives],
              "n_trials": int(n_trials),
              "artifacts": str(artifacts or (run_dir / ARTIFACT_DIR).resolve()),
              "settings": settings or {}, "seed": int(seed), "heartbeat": asdict(heartbeat)}
    studies = []
    for target in targets:
        seed_params, floor = per_target[target]
        here = {**common, "target": target, "space": spaces[target].to_dict()}
        studies.append(_create(store, {**here, "sampler": sampler, "seeds": seed_params,
                                       "seed_floor": min(floor, len(seed_params))}))
        if random_baseline:
            studies.append(_create(store, {**here, "sampler": "random", "seeds": [], "seed_floor": 0}))
    return store, studies


def run_worker(storage: str, name: str, *, evaluate: Evaluate | None = None,
               make_evaluate: Callable[[dict], Evaluate] | None = None, work_dir: str | Path | None = None,
               precheck: dict[str, Precheck] | None = None,
               make_precheck: Callable[[dict, str], Precheck | None] | None = None,
               time_budget_s: float | None = None, heartbeat: Heartbeat | None = None, pruner: AccuracyPruner | None = None,
               log: Log | None = None) -> SearchResult:
    """Join the studies of search ``name`` on ``storage`` and work until their budgets are spent.

    evaluate: the objective; or make_evaluate(settings) builds it from the settings the search
    stored (``run_search(settings=...)``), once per study. precheck: target -> hook; or
    make_precheck(settings, target) builds it from the stored settings. heartbeat: default, the one the search
    was created with (every worker should use the same). Raises UserError when no study of that
    name exists.
    """
    if (evaluate is None) == (make_evaluate is None):
        raise UserError("run_worker needs exactly one of evaluate or make_evaluate")
    import optuna

    missing = (f"no search named {name!r} in {redact(storage)}; start one with: edgeopt search MODEL "
               f"--data DATA --storage URL --study {name}")
    if storage.startswith("sqlite") and not any(n.startswith(f"{name}:") for n in sqlite_study_names(storage)):
        raise UserError(missing)  # checked read-only: a wrong name or path creates nothing
    store = open_storage(storage, heartbeat or Heartbeat())
    names = [n for n in optuna.get_all_study_names(store) if n.startswith(f"{name}:")]
    if not names:
        raise UserError(missing)
    if heartbeat is None:
        stored = _load(store, names[0]).user_attrs[SETTINGS_KEY].get("heartbeat")
        if stored:
            store = open_storage(storage, Heartbeat(**stored))
    studies = [_load(store, n, salt=worker_id()) for n in names]
    cache: dict[str, Evaluate] = {}  # one evaluate per distinct settings (main and random studies share)

    def factory(study) -> Evaluate:
        if evaluate is not None:
            return evaluate
        settings = study.user_attrs[SETTINGS_KEY]["settings"]
        key = json.dumps(settings, sort_keys=True, default=str)
        if key not in cache:
            cache[key] = make_evaluate(settings)
        return cache[key]

    prechecks = dict(precheck or {})
    if make_precheck is not None:
        for study in studies:
            cfg = study.user_attrs[SETTINGS_KEY]
            if cfg["target"] not in prechecks:
                prechecks[cfg["target"]] = make_precheck(cfg["settings"], cfg["target"])
    log = log or (lambda msg: None)
    work = Path(work_dir) if work_dir else Path.cwd() / "edgeopt-worker"
    _work(store, studies, factory, work, {k: v for k, v in prechecks.items() if v}, time_budget_s, pruner, log)
    return collect(store, name, storage)


def collect(storage, name: str, url: str = "") -> SearchResult:
    """Read every study of search ``name`` back into typed results (no trial runs)."""
    import optuna

    store = open_storage(storage) if isinstance(storage, str) else storage
    targets: dict[str, TargetResult] = {}
    names = [n for n in optuna.get_all_study_names(store) if n.startswith(f"{name}:")]
    main = [n for n in names if not n.endswith(":random")]
    for n in main:
        study = _load(store, n)
        result = target_result(study)
        if f"{n}:random" in names:
            rand = target_result(_load(store, f"{n}:random"))
            hv = res.hypervolume({"search": result.front, "random": rand.front}, result.objectives)
            result.hypervolume = hv["search"]
            result.baseline = {"study": rand.study, "sampler": "random", "hypervolume": hv["random"],
                               "front": [t.number for t in rand.front],
                               "accounting": rand.accounting.to_dict()}
        else:
            result.hypervolume = res.hypervolume({"search": result.front}, result.objectives)["search"]
        targets[result.target] = result
    return SearchResult(name=name, storage=redact(url or str(getattr(store, "url", ""))), targets=targets)


def target_result(study) -> TargetResult:
    cfg = study.user_attrs[SETTINGS_KEY]
    objectives = [Objective(**o) for o in cfg["objectives"]]
    trials = [res.record(t) for t in study.get_trials(deepcopy=False)]
    best = res.pick_best(trials, objectives)
    closest = None if best else res.pick_closest(trials)
    return TargetResult(
        target=cfg["target"], study=study.study_name, objectives=objectives, met=best is not None,
        best=best, closest=closest, front=res.pareto_front(trials, objectives),
        sentence=res.sentence(cfg["target"], best, closest, trials, cfg["max_accuracy_drop"], objectives),
        accounting=res.account(trials), trials=trials)


def export_artifact(storage, result: TargetResult, dest_dir: str | Path, artifacts: str | Path | None = None) -> Path | None:
    """Download the winner's (or, when none met the constraints, the closest's) artifact into
    ``dest_dir``; returns its path, or None when no trial finished."""
    from optuna.artifacts import download_artifact

    pick = result.best or result.closest
    if pick is None or not pick.artifact_id:
        return None
    store = open_storage(storage) if isinstance(storage, str) else storage
    where = artifacts or _load(store, result.study).user_attrs[SETTINGS_KEY]["artifacts"]
    dest = Path(dest_dir) / (pick.artifact_name or f"trial{pick.number}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        dest.unlink()
    download_artifact(artifact_store=open_artifact_store(where), file_path=str(dest),
                      artifact_id=pick.artifact_id)
    return dest


# --------------------------------------------------------------------------- studies
def _check_args(targets, n_trials, max_drop, sampler, objectives, time_budget_s) -> None:
    if not targets:
        raise UserError("give at least one target device")
    if len(set(targets)) != len(targets):
        raise UserError(f"a target is named twice: {list(targets)}")
    if n_trials < 1:
        raise UserError(f"--trials must be at least 1 (got {n_trials})")
    if max_drop < 0:
        raise UserError(f"--max-accuracy-drop must be 0 or more points (got {max_drop})")
    if sampler not in SAMPLERS:
        raise UserError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
    if time_budget_s is not None and time_budget_s <= 0:
        raise UserError(f"--time-budget must be positive (got {time_budget_s} s)")
    bad = [o.direction for o in objectives if o.direction not in ("minimize", "maximize")]
    if bad:
        raise UserError(f"objective direction must be minimize or maximize (got {bad[0]!r})")
    names = [o.name for o in objectives]
    if not names or len(set(names)) != len(names) or "accuracy" in names:
        raise UserError(f"objectives must be distinct metric names other than accuracy (got {names})")


def _sampler(cfg: dict, salt: str = ""):
    """The study's sampler for this process. run_search samples with the search's seed (a
    single-process search repeats exactly); each joining worker salts it with its id, since two
    workers seeded alike would propose the same start-up trials."""
    import optuna

    seed = (cfg.get("seed", 0) * 1_000_003 + (zlib.crc32(salt.encode()) if salt else 0)) % 2**31
    kind = cfg["sampler"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if kind == "random":  # its own stream: TPE's start-up trials are random draws too
            return optuna.samplers.RandomSampler(seed=(seed + 7919) % 2**31)
        if kind == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(20, cfg["n_trials"] // 4)))
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                          n_startup_trials=startup_trials(cfg["n_trials"], cfg.get("seed_floor", 0)))


def startup_trials(n_trials: int, seed_floor: int = 0) -> int:
    """TPE's ``n_startup_trials``: random proposals until this many trials have finished. Optuna
    counts every complete or pruned trial, enqueued seeds included, so with seeds the start-up
    phase ends once the seeds' first round (plain int8 and one known good recipe per objective: a
    spread over every objective, which is what start-up trials are for) has run, and TPE models
    from then on; without seeds, a third of the trials, between 3 and 10 (Optuna's default: 10)."""
    plain = max(3, min(10, n_trials // 3))
    return min(plain, max(2, seed_floor)) if seed_floor else plain


def expected_trials(n_trials: int, counted: int, remaining_s: float | None, round_s: float | None) -> int:
    """How many trials a study is expected to count in all: its budget ``n_trials``, or fewer when
    the time left (``remaining_s``, None = no time budget) allows only so many more rounds of
    ``round_s`` seconds (one trial of each study taking turns; None = no trial has finished yet)."""
    if remaining_s is None or not round_s:
        return n_trials
    return min(n_trials, counted + 1 + int(max(0.0, remaining_s) / round_s))


def seed_quota(n_seeds: int, floor: int, expected: int) -> int:
    """How many seeds a study runs: its first ``floor`` ones, then more while they stay within
    ``SEED_SHARE`` of the ``expected`` trials; never more than it has."""
    return min(n_seeds, max(floor, math.ceil(SEED_SHARE * expected)))


def _create(store, cfg: dict):
    import optuna

    name = study_name(cfg["name"], cfg["target"], cfg["sampler"] == "random")
    directions = ["maximize"] + [o["direction"] for o in cfg["objectives"]]
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our progress line reports trials
    study = optuna.create_study(study_name=name, storage=store, directions=directions,
                                sampler=_sampler(cfg), load_if_exists=True)
    old = study.user_attrs.get(SETTINGS_KEY)
    if old is None:  # the seeds are enqueued one at a time as the study runs (_enqueue_seed)
        study.set_user_attr(SETTINGS_KEY, cfg)
    else:
        changed = [k for k in ("space", "objectives", "baseline_accuracy", "max_accuracy_drop", "sampler")
                   if old.get(k) != cfg.get(k)]
        if changed:
            raise UserError(f"study {name} exists with other {', '.join(changed)}; resume it with the same "
                            f"settings or choose another --study name")
        if old.get("n_trials") != cfg["n_trials"]:  # resuming with a new budget is allowed
            study.set_user_attr(SETTINGS_KEY, {**old, "n_trials": cfg["n_trials"]})
    return study


def _load(store, name: str, salt: str = ""):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our progress line reports trials
    study = optuna.load_study(study_name=name, storage=store)
    if SETTINGS_KEY not in study.user_attrs:
        raise UserError(f"study {name} was not created by edgeopt search")
    study.sampler = _sampler(study.user_attrs[SETTINGS_KEY], salt)
    return study


# --------------------------------------------------------------------------- working
def _work(store, studies: list, factory: Callable[[Any], Evaluate], work_root: Path,
          precheck: dict[str, Precheck], time_budget_s: float | None, pruner: AccuracyPruner | None,
          log: Log, poll_s: float = 1.0) -> None:
    """Run trials on the studies until each has its budget of counted trials (or time is up).

    Studies take turns: the one with the fewest counted trials runs next, so the main and the
    random-baseline study of a target spend the same budget even when time runs out first."""
    deadline = None if time_budget_s is None else time.monotonic() + time_budget_s
    objectives = {s.study_name: _Objective(s, factory(s), work_root, precheck, pruner, log) for s in studies}
    ended: set[str] = set()  # studies whose space is exhausted
    while deadline is None or time.monotonic() < deadline:
        records = {s.study_name: [res.record(t) for t in s.get_trials(deepcopy=False)] for s in studies}
        state = [(s, res.account(records[s.study_name])) for s in studies]
        open_ = [(s, a) for s, a in state if a.counted < _budget(s) and s.study_name not in ended]
        for s, _ in open_:
            if (why := _exhausted(s, records[s.study_name])) is not None:
                ended.add(s.study_name)
                log(f"[{s.study_name}] search ended after {res.account(records[s.study_name]).counted} of "
                    f"{_budget(s)} trials: {why}")
        open_ = [(s, a) for s, a in open_ if s.study_name not in ended]
        if not open_:
            return
        startable = [(s, a) for s, a in open_ if a.counted + a.running < _budget(s)]
        if not startable:  # the rest is running elsewhere: wait, and fail trials whose worker died
            for s, _ in open_:
                _fail_stale(s)
            time.sleep(poll_s)
            continue
        study, acc = min(startable, key=lambda sa: sa[1].counted)
        remaining = None if deadline is None else deadline - time.monotonic()
        expected = expected_trials(_budget(study), acc.counted, remaining, _round_seconds(records, len(open_)))
        _enqueue_seed(study, expected)
        study.optimize(objectives[study.study_name], n_trials=1, catch=(_TrialFailed,),
                       callbacks=[_progress(log)])
    log("time budget spent: no new trials started")


def _round_seconds(records: dict[str, list], n_open: int) -> float | None:
    """Seconds one round of turns takes: the mean time of the counted trials so far, times the
    number of studies still taking turns; None before any trial is counted."""
    secs = [t.seconds for rs in records.values() for t in rs
            if t.seconds is not None and t.status in ("done", "stopped", "rejected", "failed")]
    return n_open * sum(secs) / len(secs) if secs else None


def _enqueue_seed(study, expected: int) -> None:
    """Queue the study's next seed when its quota (``seed_quota``) leaves room for one. Seeds are
    matched by their parameters, read afresh from the storage: a retry of a lost seed is not a new
    seed, and a seed two workers queued at once counts once (``_skip_duplicate_seed`` runs it once)."""
    cfg = study.user_attrs[SETTINGS_KEY]
    seeds = cfg.get("seeds") or []
    taken = [_seed_params(t) for t in study.get_trials(deepcopy=False) if t.user_attrs.get("seed")]
    pending = [s for s in seeds if s not in taken]
    started = len(seeds) - len(pending)
    if pending and started < seed_quota(len(seeds), int(cfg.get("seed_floor", 0)), expected):
        study.enqueue_trial(pending[0], user_attrs={"seed": True}, skip_if_exists=True)


def _seed_params(frozen) -> dict:
    """The parameters a queued trial was given (``enqueue_trial``'s fixed params), else its own."""
    return frozen.system_attrs.get("fixed_params", frozen.params)


def _budget(study) -> int:
    return int(study.user_attrs[SETTINGS_KEY]["n_trials"])


def _fail_stale(study) -> None:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


class _Objective:
    """The Optuna objective of one study: sample a chain, check the device, evaluate, record."""

    def __init__(self, study, evaluate: Evaluate, work_root: Path, precheck: dict[str, Precheck],
                 pruner: AccuracyPruner | None, log: Log):
        self.cfg = study.user_attrs[SETTINGS_KEY]
        self.space = SearchSpace.from_dict(self.cfg["space"])
        self.objectives = [Objective(**o) for o in self.cfg["objectives"]]
        self.target = self.cfg["target"]
        self.evaluate = evaluate
        self.work_root = Path(work_root)
        self.precheck = precheck.get(self.target)
        self.min_accuracy = self.cfg["baseline_accuracy"] - self.cfg["max_accuracy_drop"] / 100
        self.pruner = pruner or AccuracyPruner(self.min_accuracy)
        self.log = log
        self._store = None

    def __call__(self, trial) -> list[float]:
        earlier = trial.study.get_trials(deepcopy=False)  # one read for both checks
        self._skip_when_over_budget(trial, earlier)
        _skip_duplicate_seed(trial, earlier)
        chain = self.space.sample(trial)
        for key, value in {"recipe": recipe_name(chain), "description": describe(chain),
                           "steps": [s.to_record() for s in chain], "worker": worker_id()}.items():
            trial.set_user_attr(key, value)
        work = self.work_root / f"{trial.study.study_name.replace(':', '_')}-trial{trial.number}"
        spec = TrialSpec(number=trial.number, target=self.target, steps=chain, params=dict(trial.params),
                         work_dir=work, report=lambda step, acc: self._report(trial, chain, step, acc),
                         check_artifact=lambda path: self._check_artifact(trial, spec, path))
        prior = _measured_before(trial)
        if prior is not None:
            return _reuse(trial, prior)
        try:
            if self.precheck and (reason := self.precheck(spec, self.target, None)):
                raise TrialStopped(reason, "rejected")
            work.mkdir(parents=True, exist_ok=True)
            outcome = self.evaluate(spec)
            return self._finish(trial, spec, outcome)
        except TrialStopped as stop:
            import optuna

            trial.set_user_attr(res.STATUS, stop.status)
            trial.set_user_attr(res.REASON, stop.reason)
            raise optuna.TrialPruned(stop.reason) from None
        except (KeyboardInterrupt, _TrialFailed):
            raise
        except Exception as err:  # one failing trial must not stop the search
            message = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
            trial.set_user_attr(res.STATUS, "failed")
            trial.set_user_attr(res.REASON, " ".join(message.split())[:500])
            raise _TrialFailed(message) from err
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _skip_when_over_budget(self, trial, trials) -> None:
        """Two workers that start at the same instant may both get a trial; the later one yields.
        ``trials``: the study's trials as read when this one started."""
        before = [res.record(t) for t in trials if t.number < trial.number]
        acc = res.account(before)
        claimed = sum(1 for t in before if t.status in ("running", "waiting"))  # waiting: a queued retry
        if acc.counted + claimed >= _budget(trial.study):
            trial.set_user_attr(res.STATUS, "skipped")
            trial.set_user_attr(res.REASON, "budget already taken by earlier trials")
            raise _TrialFailed("budget reached")

    def _report(self, trial, chain, step: int, accuracy: float) -> None:
        curve = dict(trial.user_attrs.get("curve", {}))
        curve[str(int(step))] = float(accuracy)
        trial.set_user_attr("curve", curve)
        reason = self.pruner.check(int(step), float(accuracy), self._history(trial, recipe_name(chain)))
        if reason:
            raise TrialStopped(reason, "stopped")

    def _history(self, trial, recipe: str) -> list[tuple[dict[int, float], float]]:
        from optuna.trial import TrialState

        out = []
        for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get("recipe") == recipe and t.user_attrs.get("curve"):
                out.append(({int(k): v for k, v in t.user_attrs["curve"].items()}, t.user_attrs["accuracy"]))
        return out

    def _check_artifact(self, trial, spec: TrialSpec, path: Path) -> None:
        if self.precheck and (reason := self.precheck(spec, self.target, Path(path))):
            raise TrialStopped(reason, "rejected")

    def _finish(self, trial, spec: TrialSpec, outcome: TrialOutcome) -> list[float]:
        missing = [o.name for o in self.objectives if o.name not in outcome.metrics]
        if missing:
            raise UserError(f"the evaluation returned no {', '.join(missing)} (metrics: "
                            f"{', '.join(outcome.metrics) or 'none'})")
        drop_points = (self.cfg["baseline_accuracy"] - outcome.accuracy) * 100
        trial.set_constraint("accuracy", drop_points - self.cfg["max_accuracy_drop"])
        trial.set_constraint("device", float(len(outcome.violations)))
        if outcome.artifact is not None:
            self._upload(trial, Path(outcome.artifact))
        trial.set_user_attr("accuracy", float(outcome.accuracy))
        trial.set_user_attr("metrics", {k: asdict(m) for k, m in outcome.metrics.items()})
        trial.set_user_attr("violations", [asdict(v) for v in outcome.violations])
        if outcome.details:
            trial.set_user_attr("details", outcome.details)
        trial.set_user_attr(res.STATUS, "done")
        return [float(outcome.accuracy)] + [float(outcome.metrics[o.name].value) for o in self.objectives]

    def _upload(self, trial, path: Path) -> None:
        from optuna.artifacts import upload_artifact

        if not path.is_file():
            raise UserError(f"artifact {path} is not a file (the artifact store keeps single files)")
        if self._store is None:
            self._store = open_artifact_store(self.cfg["artifacts"])
        artifact_id = upload_artifact(artifact_store=self._store, file_path=str(path), study_or_trial=trial)
        trial.set_user_attr("artifact_id", artifact_id)
        trial.set_user_attr("artifact_name", path.name)


def _skip_duplicate_seed(trial, trials) -> None:
    """Two workers that read the study at the same instant may both queue the same seed (Optuna's
    ``skip_if_exists`` is a check, then an insert); the later copy yields, not counted. ``trials``:
    the study's trials as read when this one started."""
    me = next(t for t in trials if t.number == trial.number)
    if not _first_seed(me):
        return
    for t in trials:
        if t.number < me.number and _first_seed(t) and _seed_params(t) == _seed_params(me):
            trial.set_user_attr(res.STATUS, "skipped")
            trial.set_user_attr(res.REASON, f"seed already queued as trial {t.number} by another worker")
            raise _TrialFailed("duplicate seed")


def _first_seed(frozen) -> bool:
    """A queued seed, not the retry of a lost one."""
    return bool(frozen.user_attrs.get("seed")) and "failed_trial" not in frozen.system_attrs


def _measured_before(trial):
    """An earlier trial of the study that ended with a result (done, stopped, rejected, failed) for
    exactly these parameters, or None. A sampler may propose a point again (above all in a small
    post-training space); re-measuring it would spend the budget on a result the study already holds."""
    for t in trial.study.get_trials(deepcopy=False):
        if t.number != trial.number and t.params == trial.params and res.record(t).status in COUNTED:
            return t
    return None


def _reuse(trial, prior) -> list[float]:
    """Mark ``trial`` as a repeat of ``prior`` (not counted, never on the front or best). A repeat of
    a done trial carries its measurement (Optuna's sampler sees the point as complete); a repeat of
    a stopped/rejected/failed one ends as failed."""
    from optuna.trial import TrialState

    trial.set_user_attr("repeat_of", prior.number)
    trial.set_user_attr(res.STATUS, "repeat")
    trial.set_user_attr(res.REASON, f"same recipe and settings as trial {prior.number}: not measured again")
    if prior.state != TrialState.COMPLETE:
        raise _TrialFailed("repeat")
    for name, value in prior.constraints.items():
        trial.set_constraint(name, value)
    for key in ("accuracy", "metrics", "violations", "details", "artifact_id", "artifact_name"):
        if key in prior.user_attrs:
            trial.set_user_attr(key, prior.user_attrs[key])
    return list(prior.values)


def _exhausted(study, records: list) -> str | None:
    """Why the study can start no new point, or None: every point of a finite space has a result,
    or the sampler has proposed only repeats for ``REPEAT_LIMIT`` proposals in a row."""
    size = SearchSpace.from_dict(study.user_attrs[SETTINGS_KEY]["space"]).size()
    points = {json.dumps(t.params, sort_keys=True, default=str) for t in records if t.status in COUNTED}
    if len(points) >= size:
        return f"all {int(size)} points of the search space have been measured"
    tail = 0
    for t in reversed(records):
        if t.status != "repeat":
            break
        tail += 1
    if tail >= REPEAT_LIMIT:
        return f"the sampler proposed only already-measured points {tail} times in a row"
    return None


def _progress(log: Log) -> Callable:
    """Optuna callback: one line per finished trial, then the best so far of its study."""

    def callback(study, frozen) -> None:
        cfg = study.user_attrs[SETTINGS_KEY]
        objectives = [Objective(**o) for o in cfg["objectives"]]
        t = res.record(frozen)
        trials = [res.record(x) for x in study.get_trials(deepcopy=False)]
        acc = res.account(trials)
        head = f"[{study.study_name}] trial {t.number} ({acc.counted}/{cfg['n_trials']}) {t.status}"
        if t.status == "done":
            figures = ", ".join(res.fmt_metric(o.name, t) for o in objectives)
            line = f"{head}: {t.description}: accuracy {t.accuracy:.4f}, {figures}"
        else:
            line = f"{head}: {t.description or '-'}: {t.reason or ''}"
        best = res.pick_best(trials, objectives)
        line += (f" | best so far: trial {best.number} ({best.description})" if best
                 else " | best so far: none meets the constraints yet")
        log(line)

    return callback
