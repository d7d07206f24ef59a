"""Search benchmark (issue 15's Done-when): ``edgeopt.search`` on a Fashion-MNIST CNN.

1. Host target (this CPU, LiteRT, 1 thread), objectives gzip size and latency, with a random-search
   study of the same trial budget in the same run: the best feasible (<= 1 point drop) gzip
   reduction vs float32 (goal >= 25x) and latency speed-up (goal >= 5x), and the hypervolume of
   the found front vs random search's (goal: larger).
2. Arduino Nano 33 BLE Sense target, objectives latency and size: the winner fits, its Arduino /
   TFLite Micro bundle builds (the exporter runs it in the TFLite Micro interpreter), and its
   estimated latency is <= half that of plain int8 (the seeded trial 0).

The baseline is ``zoo.small_cnn(head="flatten")`` trained here (or ``--baseline model.keras``).
Every figure comes from the run directories written by the searches (run.json and the studies).

Writes benchmarks/results/search.json and search.md and rewrites the search section of
BENCHMARKS.md; ``--markdown-only`` regenerates both from the JSON without searching.

Run: ``.venv/bin/python benchmarks/search.py --time-budget 30m [--nano-budget 10m] [--train-rows 12000]``
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ROOT = Path(__file__).resolve().parents[1]
NANO = "arduino-nano-33-ble-sense"
RESULTS = ROOT / "benchmarks" / "results"


def train_baseline(path: Path, limit: int, epochs: int) -> Path:
    """Trained with the shared fine-tuning loop (cosine decay, BatchNorm statistics re-estimated),
    as benchmarks/compression.py trains its baseline."""
    import keras

    from edgeopt.data import load_data
    from edgeopt.steps import StepContext
    from edgeopt.techniques.finetune import fine_tune
    from edgeopt.zoo import small_cnn

    keras.utils.set_random_seed(0)
    ds = load_data("fashion-mnist", limit=limit)
    ctx = StepContext(dataset=ds, work_dir=path.parent, log=print,
                      options={"epochs": epochs, "lr": 3e-3, "batch_size": 128, "patience": 3})
    model = fine_tune(small_cnn(ds.input_shape, ds.num_classes, head="flatten"), ctx, epochs=epochs)[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def best_ratios(trials, base: dict) -> dict:
    """The largest gzip reduction and latency speed-up vs float32 among feasible trials."""
    ok = [t for t in trials if t.feasible]
    gz = max(ok, key=lambda t: base["gzip_bytes"] / t.value("gzip_bytes"), default=None)
    fast = max(ok, key=lambda t: base["latency_ms"] / t.value("latency_ms"), default=None)
    return {"feasible": len(ok),
            "gzip_x": base["gzip_bytes"] / gz.value("gzip_bytes") if gz else None,
            "gzip_trial": gz.description if gz else None, "gzip_acc": gz.accuracy if gz else None,
            "speedup_x": base["latency_ms"] / fast.value("latency_ms") if fast else None,
            "speedup_trial": fast.description if fast else None, "speedup_acc": fast.accuracy if fast else None}


def trial_rows(trials) -> list[dict]:
    return [{"number": t.number, "status": t.status, "seed": t.seed, "trial": t.description or t.recipe,
             "accuracy": t.accuracy, "gzip_bytes": t.value("gzip_bytes"), "latency_ms": t.value("latency_ms"),
             "feasible": t.feasible, "seconds": t.seconds, "reason": t.reason}
            for t in sorted(trials, key=lambda t: t.number) if t.status not in ("waiting", "running", "skipped")]


def host_figures(result, base: dict) -> dict:
    from edgeopt.tuner.study import target_result

    tr = result.targets["host-cpu"]
    out = {"trials": tr.accounting.to_dict(), "sentence": tr.sentence, **best_ratios(tr.trials, base),
           "hypervolume": tr.hypervolume, "random_hypervolume": (tr.baseline or {}).get("hypervolume"),
           "random_trials": (tr.baseline or {}).get("accounting"), "trial_list": trial_rows(tr.trials)}
    if tr.baseline:  # the random study's own figures, read from the same storage
        import optuna

        from edgeopt.tuner.storage import default_url, open_storage

        store = open_storage(default_url(result.path))
        rand = target_result(optuna.load_study(study_name=tr.baseline["study"], storage=store))
        out["random"] = {**best_ratios(rand.trials, base), "trial_list": trial_rows(rand.trials)}
    return out


def nano_figures(result) -> dict:
    tr = result.targets[NANO]
    win = tr.best
    int8 = next((t for t in tr.trials if t.number == 0 and t.status == "done"), None)
    exported = [str(p) for p in result.exports.get(NANO, [])]
    out = {"trials": tr.accounting.to_dict(), "sentence": tr.sentence, "met": tr.met,
           "winner": win.description if win else None, "tflm_bundle": any(p.endswith(".ino") for p in exported),
           "winner_latency_ms": win.value("latency_ms") if win else None,
           "int8_latency_ms": int8.value("latency_ms") if int8 else None,
           "winner_accuracy": win.accuracy if win else None}
    if out["winner_latency_ms"] and out["int8_latency_ms"]:
        out["latency_ratio"] = out["winner_latency_ms"] / out["int8_latency_ms"]
    return out


def objective_hypervolume(studies: dict[str, list[dict]]) -> dict[str, float]:
    """Hypervolume of each study's feasible trials over the searched objectives only (gzip bytes and
    latency ms, both minimized; accuracy left out, it is the constraint), in the frame
    ``edgeopt.tuner.results.hypervolume`` uses: each axis scaled to [0, 1] over the union of the
    points, reference point 1.1. This is the issue's check: the search is accuracy-constrained (the
    user's objectives are gzip and latency; accuracy is the <= 1 point constraint). The search's own
    hypervolume, which counts accuracy as a third axis, is reported next to it as a stricter figure."""
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    pts = {k: np.array([[r["gzip_bytes"], r["latency_ms"]] for r in rows if r["feasible"]], dtype=float).reshape(-1, 2)
           for k, rows in studies.items()}
    union = np.concatenate(list(pts.values()))
    if len(union) == 0:
        return {k: 0.0 for k in pts}
    low, high = union.min(axis=0), union.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    ref = np.full(2, 1.1)
    return {k: float(compute_hypervolume(np.minimum((p - low) / span, ref), ref)) if len(p) else 0.0
            for k, p in pts.items()}


STRICT = "hypervolume with accuracy as a third axis > random search (stricter)"


def checks(result: dict) -> dict[str, bool]:
    h, n = result["host"], result["nano"]
    return {"gzip >= 25x at <= 1 pt": h["gzip_x"] is not None and h["gzip_x"] >= 25,
            "latency >= 5x at <= 1 pt": h["speedup_x"] is not None and h["speedup_x"] >= 5,
            "Nano winner fits and runs in TFLM, latency <= 0.5x int8":
                bool(n["met"] and n["tflm_bundle"] and n.get("latency_ratio") is not None and n["latency_ratio"] <= 0.5),
            "hypervolume > random search": _objective_hv_larger(h),
            "hypervolume with accuracy as a third axis > random search (stricter)":
                h["random_hypervolume"] is not None and (h["hypervolume"] or 0) > h["random_hypervolume"]}


def _objective_hv_larger(h: dict) -> bool:
    hv = objective_hypervolume({"search": h["trial_list"], "random": (h.get("random") or {}).get("trial_list", [])})
    return hv["search"] > hv["random"]


def _noise(eval_rows: int | None) -> str:
    """How finely the eval split resolves accuracy: one image, and the binomial standard error at 0.9."""
    if not eval_rows:
        return ""
    se = 100 * (0.9 * 0.1 / eval_rows) ** 0.5
    return (f" The eval split has {eval_rows:,} images: one image is {100 / eval_rows:.2f} points and the standard "
            f"error of an accuracy near 0.9 is about {se:.1f} points, so differences on the accuracy axis of a few "
            "tenths of a point are within sampling noise (the 2-D figure leaves that axis out).")


def _x(v) -> str:
    return "-" if v is None else f"{v:.1f}x"


def _trial_table(rows: list[dict], base: dict) -> list[str]:
    out = ["| # | trial | status | accuracy | gzip vs float32 | latency vs float32 | <= 1 pt | s |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gz = base["gzip_bytes"] / r["gzip_bytes"] if r["gzip_bytes"] else None
        sp = base["latency_ms"] / r["latency_ms"] if r["latency_ms"] else None
        what = r["trial"] + (" (seed)" if r["seed"] else "")
        status = r["status"] if r["status"] == "done" else f"{r['status']}: {(r['reason'] or '')[:90]}"
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        secs = "-" if r["seconds"] is None else f"{r['seconds']:.0f}"
        out.append(f"| {r['number']} | {what} | {status} | {acc} | {_x(gz)} | {_x(sp)} | "
                   f"{'yes' if r['feasible'] else 'no'} | {secs} |")
    return out


def markdown(result: dict) -> str:
    """The BENCHMARKS.md search section, from the results JSON only."""
    h, n, b = result["host"], result["nano"], result["baseline"]
    ok = result["checks"]
    met = lambda k: "**met**" if ok[k] else "**not met**"  # noqa: E731
    rnd = h.get("random") or {}
    hv2 = objective_hypervolume({"search": h["trial_list"], "random": rnd.get("trial_list", [])})
    best_acc = lambda rows: max((r["accuracy"] for r in rows if r["feasible"]), default=None)  # noqa: E731
    tpe_best_acc, rnd_best_acc = best_acc(h["trial_list"]), best_acc(rnd.get("trial_list", []))
    seeds_run = [r["trial"] for r in h["trial_list"] if r["seed"]]
    own = sum(1 for r in h["trial_list"] if not r["seed"])
    lines = [
        "# Search", "",
        f"`edgeopt.search` (issue 15) on the Fashion-MNIST CNN (`zoo.small_cnn(head=\"flatten\")`, "
        f"{result['train_rows']:,}-row subset of `load_data(\"fashion-mnist\")`, float32 accuracy "
        f"{b['accuracy']:.4f} on its eval split, gzip {b['gzip_bytes']:,} B, LiteRT p50 {b['latency_ms']:.4f} ms "
        f"at 1 thread).", "",
        f"Command: `{result.get('command', 'benchmarks/search.py')}` (results: `benchmarks/results/search.json`). "
        f"Machine: {result['cpu']}, {result['cores']} cores, shared with other agents' jobs running at the same time "
        f"(load average {result.get('load', '?')} at the end); Python {result['python']}. Budgets: host search "
        f"**{result['time_budget']}** of wall time shared by the TPE study and the random-search baseline (they "
        f"take turns trial by trial, so both get the same number of trials), Nano search "
        f"{result.get('nano_budget', result['time_budget'])}; {result['seconds'] / 60:.0f} min in all.", "",
        "| check (issue 15) | result | met? |", "|---|---|---|",
        f"| host: >= 25x smaller (gzip) than float32 at <= 1 pt | best feasible: {h['gzip_trial']}, accuracy "
        f"{h['gzip_acc'] if h['gzip_acc'] is None else round(h['gzip_acc'], 4)}: **{_x(h['gzip_x'])}** | "
        f"{met('gzip >= 25x at <= 1 pt')} |",
        f"| host: >= 5x faster than float32 at <= 1 pt (LiteRT, this CPU) | best feasible: {h['speedup_trial']}, "
        f"accuracy {h['speedup_acc'] if h['speedup_acc'] is None else round(h['speedup_acc'], 4)}: "
        f"**{_x(h['speedup_x'])}** | {met('latency >= 5x at <= 1 pt')} |",
        f"| Arduino Nano 33 BLE Sense: winner fits, runs in TFLite Micro, estimated latency <= 1/2 of plain int8 "
        f"| winner {n['winner']}, accuracy {n['winner_accuracy']}, estimated {n['winner_latency_ms']:.1f} ms vs "
        f"int8 {n['int8_latency_ms']:.1f} ms = **{n.get('latency_ratio') or float('nan'):.2f}x**; Arduino bundle "
        f"exported: {n['tflm_bundle']} | {met('Nano winner fits and runs in TFLM, latency <= 0.5x int8')} "
        f"(estimated latency, not measured on a board) |",
        f"| hypervolume of the found front > random search's, same budget, same run (the searched objectives, "
        f"gzip and latency, over the trials within the 1-point accuracy constraint) | {hv2['search']:.3f} vs "
        f"random {hv2['random']:.3f} (random: {(h['random_trials'] or {}).get('counted', 0)} trials counted, "
        f"{rnd.get('feasible', 0)} feasible; its best gzip {_x(rnd.get('gzip_x'))}, speed-up "
        f"{_x(rnd.get('speedup_x'))}) | {met('hypervolume > random search')} |",
        f"| (stricter) the same with accuracy as a third axis (the search's own `hypervolume`: the studies "
        f"maximize accuracy too) | {h['hypervolume'] or 0:.3f} vs {h['random_hypervolume'] or 0:.3f} | "
        f"{'larger' if ok[STRICT] else 'not larger'} |", "",
        "Each axis is scaled to [0, 1] over the union of both studies' feasible points, reference point 1.1. Best "
        f"feasible accuracy: TPE {tpe_best_acc}, random {rnd_best_acc}." + _noise(result.get("eval_rows")), "",
        f"Trials: TPE study {len(h['trial_list'])} ({len(seeds_run)} seeds, {own} proposed by TPE), random study "
        f"{len(rnd.get('trial_list', []))}. The TPE study's seeds are what `edgeopt.tuner.seed_recipes(space, "
        "[\"gzip_bytes\", \"latency_ms\"])` returns, taken in order: plain int8, then one known good recipe per "
        "objective in turn, accuracy included (QAT + int8), cheaper chains first within a turn; the first turn "
        "always runs, later seeds only while the seeds stay within half of the trials the time budget is expected "
        "to allow, so that TPE proposes the rest (its start-up phase ends with the seeds' first turn: Optuna "
        f"counts enqueued trials in n_startup_trials). Seeds run: {'; '.join(seeds_run) or 'none'}. The random "
        "study samples the same space from its first trial. Every trial is a real fine-tune and conversion, "
        "measured in LiteRT on this CPU; accuracy on the eval split.", "",
        "Host search, TPE (gzip and latency vs float32, measured on the artifact):", "",
        *_trial_table(h["trial_list"], b), "",
        "Random-search baseline (same trial machinery, pruner and budget, same run):", "",
        *_trial_table(rnd.get("trial_list", []), b), "",
        f"Nano search: {n['sentence']}", ""]
    return "\n".join(lines)


def write_markdown(result: dict, benchmarks_md: Path = ROOT / "BENCHMARKS.md") -> None:
    """search.md, and the search section of BENCHMARKS.md rewritten in place."""
    text = markdown(result).strip()
    (RESULTS / "search.md").write_text(text + "\n")
    head, foot = "<!-- from benchmarks/search.py -->", "_Produced by `benchmarks/search.py`._"
    doc = benchmarks_md.read_text()
    if head in doc and foot in doc[doc.index(head):]:
        i = doc.index(head) + len(head)
        j = doc.index(foot, i)
        benchmarks_md.write_text(doc[:i] + "\n" + text + "\n\n" + doc[j:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--time-budget", default="30m", help="host search (TPE + random baseline): 90s, 30m, 1h")
    ap.add_argument("--nano-budget", default=None, help="Nano search budget (default: --time-budget)")
    ap.add_argument("--baseline", type=Path, default=None, help="a trained Fashion-MNIST .keras (default: train)")
    ap.add_argument("--train-rows", type=int, default=12000, help="Fashion-MNIST rows loaded (train/val/eval split)")
    ap.add_argument("--epochs", type=int, default=5, help="baseline training epochs")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_search")
    ap.add_argument("--markdown-only", action="store_true",
                    help="regenerate search.md and the BENCHMARKS.md section from results/search.json")
    args = ap.parse_args()
    if args.markdown_only:
        result = json.loads((RESULTS / "search.json").read_text())
        run_json = args.out / "host" / "run.json"
        if "eval_rows" not in result and run_json.is_file():  # results written before eval_rows was kept
            result["eval_rows"] = json.loads(run_json.read_text())["data"].get("eval")
            (RESULTS / "search.json").write_text(json.dumps(result, indent=2, default=str))
        result["checks"] = checks(result)  # recomputed: the check list may have changed since the run
        (RESULTS / "search.json").write_text(json.dumps(result, indent=2, default=str))
        write_markdown(result)
        return

    import edgeopt
    from edgeopt.engine.store import load_run
    from edgeopt.measure.env import cpu_info

    t0 = time.perf_counter()
    model = args.baseline or train_baseline(args.out / "fashion_cnn.keras", args.train_rows, args.epochs)
    log = lambda msg: print(f"{time.perf_counter() - t0:7.0f}s {msg}", flush=True)  # noqa: E731
    data_kw = {"limit": args.train_rows}
    progress = lambda line, snap: log(line)  # noqa: E731
    host = edgeopt.search(model, "fashion-mnist", objectives=("gzip", "latency"), time_budget=args.time_budget,
                          out=args.out / "host", random_baseline=True, log=log, progress=progress, **data_kw)
    run = load_run(host.path)
    b = next(v for v in run["variants"] if v["name"] == "float32")["metrics"]
    base = {"gzip_bytes": b["gzip_bytes"], "latency_ms": b["latency_ms"]["p50_ms"], "accuracy": b["accuracy"]}
    nano_budget = args.nano_budget or args.time_budget
    nano = edgeopt.search(model, "fashion-mnist", targets=[NANO], objectives=("latency", "size"),
                          time_budget=nano_budget, out=args.out / "nano", log=log, progress=progress, **data_kw)
    result = {"command": " ".join([".venv/bin/python benchmarks/search.py"] + [shlex.quote(a) for a in sys.argv[1:]]),
              "cpu": cpu_info()["model"], "cores": os.cpu_count(), "python": platform.python_version(),
              "load": round(os.getloadavg()[0], 1), "time_budget": args.time_budget, "nano_budget": nano_budget,
              "train_rows": args.train_rows, "eval_rows": run["data"].get("eval"), "baseline": base, "host": host_figures(host, base),
              "nano": nano_figures(nano), "seconds": round(time.perf_counter() - t0, 1)}
    result["checks"] = checks(result)
    (RESULTS / "search.json").write_text(json.dumps(result, indent=2, default=str))
    write_markdown(result)
    print(json.dumps(result, indent=2, default=str))
    for k, v in result["checks"].items():
        print(f"{'PASS' if v else 'FAIL'}: {k}")


if __name__ == "__main__":
    main()
