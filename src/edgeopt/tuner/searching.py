"""``edgeopt.search`` after its arguments are checked: the run directory, the float32 baseline,
the studies (with worker processes), the winners' deployables and the search history in run.json.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from edgeopt.errors import UserError
from edgeopt.tuner.evaluate import HOST, make_evaluate
from edgeopt.tuner.types import Objective, SearchResult, TargetResult

_STATE = {"done": "complete", "stopped": "pruned", "rejected": "pruned", "failed": "failed", "lost": "failed"}


def run(model, data, *, devices: dict, metrics: list[str], max_accuracy_drop: float, budget_s, trials, storage,
        study, workers: int, out, random_baseline: bool, training: bool, threads: int, runs: int, unsafe: bool,
        log, progress, data_kwargs: dict, devices_file=None) -> SearchResult:
    from edgeopt import api
    from edgeopt.engine import store
    from edgeopt.measure.env import environment

    log = log or (lambda msg: None)
    if storage is not None:  # a storage that cannot be opened fails before anything is loaded or written
        check_storage(storage)
    m, ds, warnings = api.prepare(model, data, unsafe=unsafe, **data_kwargs)
    if m.kind != "keras":
        raise UserError(f"search needs a Keras model; {m.path.name} is a .{m.kind} file")
    out = Path(out) if out else Path("runs") / f"{m.path.stem}-search"
    name = study or _study_name(out)
    header = {"name": out.name,
              "model": {"path": str(m.path), "kind": m.kind, "name": m.name, "input_shape": list(m.input_shape),
                        "sha256": store.file_digest(m.path), **m.info},
              "data": {"source": ds.name, **ds.summary(), "fingerprint": ds.fingerprint()},
              "settings": {"threads": threads, "runs": runs, "recipes": [], "options": {}},
              "environment": environment(), "warnings": warnings}
    with store.RunDir.open(out, header) as rundir:  # the lock is released however the search ends
        return _search(rundir, m, ds, data, name=name, storage=storage, devices=devices, metrics=metrics,
                       max_accuracy_drop=max_accuracy_drop, budget_s=budget_s, trials=trials, workers=workers,
                       random_baseline=random_baseline, training=training, threads=threads, runs=runs,
                       unsafe=unsafe, log=log, progress=progress, data_kwargs=data_kwargs,
                       devices_file=devices_file)


def check_storage(url: str) -> None:
    """Open (then close) the search storage at ``url``; UserError in one line when it cannot be
    opened (unreachable server, missing folder, bad credentials)."""
    from edgeopt.tuner.storage import open_storage

    open_storage(url).engine.dispose()


def _search(rundir, m, ds, data, *, name: str, storage, devices: dict, metrics: list[str], max_accuracy_drop: float,
            budget_s, trials, workers: int, random_baseline: bool, training: bool, threads: int, runs: int,
            unsafe: bool, log, progress, data_kwargs: dict, devices_file=None) -> SearchResult:
    from edgeopt.engine.runner import BASELINE
    from edgeopt.recipes import Chain, Float32
    from edgeopt.tuner.device import DeviceCheck
    from edgeopt.tuner.space import default_space
    from edgeopt.tuner.storage import default_url, redact
    from edgeopt.tuner.study import create_search, run_search

    url = storage or default_url(rundir.path)
    settings = {"model": str(m.path.resolve()), "data": str(data) if isinstance(data, (str, Path)) else ds.name,
                "data_kwargs": {k: v for k, v in data_kwargs.items() if _jsonable(v)},
                "run_dir": str(rundir.path.resolve()), "threads": threads, "runs": runs, "unsafe": unsafe,
                "devices_file": str(Path(devices_file).resolve()) if devices_file else None}
    evaluate = make_evaluate(settings, model=m, dataset=ds, log=lambda msg: None)
    base = _baseline(rundir, evaluate, Chain(BASELINE, [Float32()]), threads, runs, log)
    settings["baseline_accuracy"] = evaluate.base_ctx.baseline_accuracy = float(base["metrics"]["accuracy"])
    settings["baseline_graph"] = {k: base["graph"].get(k) for k in ("params", "peak_activation_bytes")}
    prof = _profile(rundir.path / base["artifact"])
    precheck = {t: DeviceCheck(d, prof) for t, d in devices.items() if t != HOST}
    objectives = [Objective(x) for x in metrics]
    kw = dict(run_dir=rundir.path, baseline_accuracy=settings["baseline_accuracy"],
              max_accuracy_drop=max_accuracy_drop, name=name, objectives=objectives,
              n_trials=trials, time_budget_s=budget_s, random_baseline=random_baseline,
              settings=settings)
    space = _spaces(default_space(max_accuracy_drop, training=training), precheck, list(devices), log)
    spawned = []
    if workers > 1:
        create_search(space, list(devices), storage=url, **{k: v for k, v in kw.items() if k != "run_dir"},
                      run_dir=rundir.path)
        spawned = [_spawn_worker(url, name, rundir.path / "workers" / str(i), budget_s) for i in range(workers - 1)]
    line = _progress_line(progress, url, name)
    try:
        result = run_search(space, evaluate, list(devices), storage=url, precheck=precheck, log=line, **kw)
    finally:
        for p in spawned:
            _wait(p)
    if spawned:  # the workers may have finished trials after this process stopped
        from edgeopt.tuner.study import collect

        result = collect(url, name, url)
    result.path = rundir.path
    result.storage = redact(url)
    for target, tr in result.targets.items():
        result.exports[target] = _export_winner(rundir, url, tr, devices[target], evaluate, base, ds, log)
    rundir.record["search"] = history(result)
    rundir.save()
    return result


def _spaces(space, precheck: dict, targets: list[str], log) -> dict:
    """target -> the space less the precisions the device cannot run (the precheck stays as the
    safety net for what only shows after conversion)."""
    out = {}
    for t in targets:
        left_out = precheck[t].unsupported() if t in precheck else {}
        out[t] = space.without(left_out) if left_out else space
        if left_out:
            log(f"{t}: not searched: " + "; ".join(f"{k} ({r})" for k, r in left_out.items()))
    return out


def _study_name(out: Path) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in out.resolve().name) or "search"


def _jsonable(v) -> bool:
    return isinstance(v, (str, int, float, bool, type(None), list, tuple))


def _profile(path: Path):
    from edgeopt.measure.graph import profile_path

    return profile_path(path)


def _baseline(rundir, evaluate, chain, threads: int, runs: int, log) -> dict:
    """The float32 variant of the run (kept from an earlier run when it is there)."""
    from edgeopt.engine.driver import make_variant
    from edgeopt.engine.runner import BASELINE, closed

    if rundir.is_done(BASELINE, closed(chain).records()):
        return rundir.get(BASELINE)
    log("float32 baseline")
    variant = make_variant(rundir, evaluate.runner(), evaluate.model, evaluate.dataset, chain, threads, runs, log)
    if variant.get("status") != "done":
        raise UserError(f"the float32 baseline failed: {variant.get('error')}")
    rundir.put(variant)
    return variant


def _spawn_worker(url: str, name: str, work: Path, budget_s: float | None) -> subprocess.Popen:
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "edgeopt.cli", "worker", "--storage", url, "--study", name,
           "--work-dir", str(work)]
    if budget_s is not None:
        cmd += ["--time-budget", str(budget_s)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(work / "worker.log", "w"), env=os.environ)


def _wait(proc: subprocess.Popen) -> None:
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        raise


def _progress_line(progress, url: str, name: str) -> Callable[[str], None]:
    def line(msg: str) -> None:
        if progress is None:
            return
        snapshot = None
        if msg.startswith("["):  # a finished trial: hand the results so far too
            from edgeopt.tuner.study import collect

            snapshot = collect(url, name, url)
        progress(msg, snapshot)
    return line


def _export_winner(rundir, url: str, tr: TargetResult, device, evaluate, base: dict, ds, log) -> list[Path]:
    """Download the winner's (else the closest's) artifact, record it as a run variant and write its
    deployables: the C array and Arduino sketch for a microcontroller, else the artifact."""
    from edgeopt.engine.driver import graph_summary
    from edgeopt.engine import store
    from edgeopt.engine.analysis import compare_to_baseline
    from edgeopt.export.bundles import export_bundle
    from edgeopt.measure.bench import bench_artifact
    from edgeopt.tuner.study import export_artifact

    pick = tr.best or tr.closest
    if pick is None:
        return []
    vname = f"search-{tr.target}"
    folder = rundir.variant_dir(vname)
    artifact = export_artifact(url, tr, folder)
    if artifact is None:
        return []
    from edgeopt.api import _runtime_for

    metrics = bench_artifact(artifact, ds, runtime=_runtime_for(artifact), threads=evaluate.threads,
                             runs=evaluate.runs)
    metrics["provenance"] = store.provenance(metrics.get("how") or {})
    tr.export_notes = _export_notes(tr, pick, device)  # printed with the result, kept in run.json
    variant = {"name": vname, "recipe": [s["step"] for s in pick.steps] or ["float32"], "steps": pick.steps,
               "status": "done", "artifact": str(artifact.relative_to(rundir.path)), "metrics": metrics,
               "graph": graph_summary(artifact),
               "details": {"search": {"target": tr.target, "trial": pick.number, "met": tr.met,
                                      "sentence": tr.sentence, "objectives": pick.metrics,
                                      "notes": tr.export_notes}},
               "vs_baseline": compare_to_baseline(metrics, base["metrics"], ds.task)}
    rundir.put(variant)
    written = [artifact]
    deploy = rundir.path / "deploy" / tr.target
    if _tflm_bundle(device) and artifact.suffix == ".tflite":
        try:
            sample = ds.x_eval[:1]
            written += export_bundle(artifact, "arduino", deploy, name="model", sample=sample[0])
        except UserError as e:  # e.g. an op TFLite Micro lacks: the artifact is still exported
            log(f"{tr.target}: no Arduino bundle: {e}")
    else:
        import shutil

        deploy.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifact, deploy / artifact.name)
        written.append(deploy / artifact.name)
    return written


def _tflm_bundle(device) -> bool:
    """Whether the deployable is a TFLite Micro Arduino sketch: a microcontroller that runs TFLite
    Micro. A board whose only engine is another one (X-CUBE-AI, ...) gets the .tflite alone, which
    that engine's tools import, because the search's latency/energy are that engine's estimates."""
    return device.device_class == "mcu" and (not device.runtimes or "tflm" in device.runtimes)


def _export_notes(tr: TargetResult, pick, device) -> list[str]:
    """Plain lines about the exported variant: it misses the budget (by how much), or its figures
    are estimates for an engine other than the one the deployable is for."""
    notes = []
    if not tr.met:
        drop = pick.constraints.get("accuracy", 0.0)
        misses = ([f"accuracy {drop:.2f} points beyond the allowed drop"] if drop > 0 else [])
        misses += [v["reason"] for v in pick.violations]
        notes.append(f"{tr.target}: the exported variant (trial {pick.number}, {pick.description}) does NOT meet "
                     f"the budget: {'; '.join(misses) or 'see its constraints'}")
    if device.device_class == "mcu" and not _tflm_bundle(device) and device.runtimes:
        engine = device.runtimes[0]
        notes.append(f"{tr.target}: latency/energy are {engine} estimates; exported the .tflite alone (import it "
                     f"with {engine}'s tools), no TFLite Micro sketch")
    return notes


def history(result: SearchResult) -> dict:
    """The run.json ``search`` record: objectives and every trial of every target's study
    (format read by ``edgeopt.report.view.search_history``), plus each target's outcome."""
    objectives: list[dict] = [{"name": "accuracy", "direction": "max"}]
    trials: list[dict] = []
    targets: dict[str, Any] = {}
    multi = len(result.targets) > 1
    for target, tr in result.targets.items():
        for o in tr.objectives:
            entry = {"name": o.name, "direction": "min" if o.direction == "minimize" else "max"}
            if entry not in objectives:
                objectives.append(entry)
        for t in tr.trials:
            if t.status not in _STATE:
                continue
            values = {k: t.value(k) for k in ["accuracy"] + [o.name for o in tr.objectives]}
            row = {"number": t.number, "state": _STATE[t.status], "params": t.params,
                   "values": {k: float(v) for k, v in values.items() if v is not None},
                   "variant": (f"{target}: " if multi else "") + (t.description or t.recipe), "target": target,
                   "status": t.status, "feasible": t.feasible}
            if t.reason:
                row["error"] = t.reason
            trials.append(row)
        pick = tr.best or tr.closest
        targets[target] = {"study": tr.study, "met": tr.met, "sentence": tr.sentence,
                           "winner": pick.number if pick else None, "front": [t.number for t in tr.front],
                           "hypervolume": tr.hypervolume, "baseline": tr.baseline,
                           "accounting": tr.accounting.to_dict(), "export_notes": list(tr.export_notes)}
    return {"objectives": objectives, "trials": trials, "storage": result.storage, "study": result.name,
            "targets": targets}
