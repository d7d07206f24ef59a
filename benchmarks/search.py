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

Run: ``.venv/bin/python benchmarks/search.py --time-budget 30m [--train-rows 12000]``
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ROOT = Path(__file__).resolve().parents[1]
NANO = "arduino-nano-33-ble-sense"


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


def feasible(tr):
    return [t for t in tr.trials if t.feasible]


def host_figures(result, base: dict) -> dict:
    tr = result.targets["host-cpu"]
    ok = feasible(tr)
    gz = max(ok, key=lambda t: base["gzip_bytes"] / t.value("gzip_bytes"), default=None)
    fast = max(ok, key=lambda t: base["latency_ms"] / t.value("latency_ms"), default=None)
    return {"trials": tr.accounting.to_dict(), "feasible": len(ok), "sentence": tr.sentence,
            "gzip_x": base["gzip_bytes"] / gz.value("gzip_bytes") if gz else None,
            "gzip_trial": gz.description if gz else None, "gzip_acc": gz.accuracy if gz else None,
            "speedup_x": base["latency_ms"] / fast.value("latency_ms") if fast else None,
            "speedup_trial": fast.description if fast else None, "speedup_acc": fast.accuracy if fast else None,
            "hypervolume": tr.hypervolume, "random_hypervolume": (tr.baseline or {}).get("hypervolume"),
            "random_trials": (tr.baseline or {}).get("accounting")}


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--time-budget", default="30m", help="per search (host, then Nano): 90s, 30m, 1h")
    ap.add_argument("--baseline", type=Path, default=None, help="a trained Fashion-MNIST .keras (default: train)")
    ap.add_argument("--train-rows", type=int, default=12000, help="Fashion-MNIST rows loaded (train/val/eval split)")
    ap.add_argument("--epochs", type=int, default=4, help="baseline training epochs")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_search")
    args = ap.parse_args()

    import edgeopt
    from edgeopt.engine.store import load_run
    from edgeopt.measure.env import cpu_info

    t0 = time.perf_counter()
    model = args.baseline or train_baseline(args.out / "fashion_cnn.keras", args.train_rows, args.epochs)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    data_kw = {"limit": args.train_rows}
    progress = lambda line, snap: print(line, flush=True)  # noqa: E731
    host = edgeopt.search(model, "fashion-mnist", objectives=("gzip", "latency"), time_budget=args.time_budget,
                          out=args.out / "host", random_baseline=True, log=log, progress=progress, **data_kw)
    run = load_run(host.path)
    b = next(v for v in run["variants"] if v["name"] == "float32")["metrics"]
    base = {"gzip_bytes": b["gzip_bytes"], "latency_ms": b["latency_ms"]["p50_ms"], "accuracy": b["accuracy"]}
    nano = edgeopt.search(model, "fashion-mnist", targets=[NANO], objectives=("latency", "size"),
                          time_budget=args.time_budget, out=args.out / "nano", log=log, progress=progress, **data_kw)
    result = {"cpu": cpu_info()["model"], "cores": os.cpu_count(), "python": platform.python_version(),
              "time_budget": args.time_budget, "train_rows": args.train_rows, "baseline": base,
              "host": host_figures(host, base), "nano": nano_figures(nano),
              "seconds": round(time.perf_counter() - t0, 1)}
    h, n = result["host"], result["nano"]
    checks = [("gzip >= 25x at <= 1 pt", h["gzip_x"] is not None and h["gzip_x"] >= 25),
              ("latency >= 5x at <= 1 pt", h["speedup_x"] is not None and h["speedup_x"] >= 5),
              ("Nano winner fits and runs in TFLM, latency <= 0.5x int8",
               bool(n["met"] and n["tflm_bundle"] and n.get("latency_ratio") is not None and n["latency_ratio"] <= 0.5)),
              ("hypervolume > random search",
               h["random_hypervolume"] is not None and (h["hypervolume"] or 0) > h["random_hypervolume"])]
    result["checks"] = {k: v for k, v in checks}
    out = ROOT / "benchmarks" / "results" / "search.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))
    for k, v in checks:
        print(f"{'PASS' if v else 'FAIL'}: {k}")


if __name__ == "__main__":
    main()
