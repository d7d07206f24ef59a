"""What the four case studies share: training, handing the model to edgeopt, reading the run back,
estimating and exporting for a device, and writing the result table.

Each example is one command (``python examples/<name>/run.py [--small] --out DIR``) and also a
function, ``main(argv) -> dict``, so the tests call it in one process.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # run from a checkout without installing edgeopt
    sys.path.insert(0, str(ROOT / "src"))


def parse_args(argv, description: str, default_out: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--small", action="store_true", help="reduced size (seconds; what CI runs)")
    parser.add_argument("--out", type=Path, default=Path(default_out), help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def seed_everything(seed: int) -> None:
    quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)


def train(model, x, y, x_val, y_val, *, epochs: int, batch: int = 64, lr: float = 3e-3, loss=None,
          metrics=("accuracy",)) -> None:
    """Adam with cosine decay (BatchNorm statistics settle as the rate falls; see MEASURED.md)."""
    import keras

    steps = epochs * int(np.ceil(len(x) / batch))
    schedule = keras.optimizers.schedules.CosineDecay(lr, steps, alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss or "sparse_categorical_crossentropy",
                  metrics=list(metrics))
    model.fit(x, y, validation_data=(x_val, y_val), epochs=epochs, batch_size=batch, verbose=0, shuffle=True)


def split(n: int, seed: int, val: float = 0.15, test: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffled train / validation / test indices."""
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = int(n * test), int(n * val)
    return order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]


def edgeopt_dataset(name: str, x, y, idx, *, task: str = "classification", class_names=()):
    """An edgeopt Dataset with our own splits, so edgeopt's eval split is the example's test set."""
    from edgeopt.data import Dataset

    tr, va, te = idx
    y = np.asarray(y)
    y = y.astype(np.int64) if task == "classification" else y.astype(np.float32)
    x = np.asarray(x, np.float32)
    classes = int(y.max()) + 1 if task == "classification" else 0
    return Dataset(name, x[tr], y[tr], x[va], y[va], x[te], y[te], task, classes, list(class_names))


def optimize(model, dataset, out: Path, recipes: list[str], *, runs: int, options: dict | None = None,
             metric: str | None = None) -> dict:
    """Save the Keras model, run ``edgeopt.optimize`` (baseline float32 + one variant per recipe) and
    return the run record (run.json). ``metric``: a custom metric ``file.py:function`` (``--metric``)."""
    import edgeopt

    out.mkdir(parents=True, exist_ok=True)
    model_path = out / f"{model.name}.keras"
    model.save(model_path)
    run = edgeopt.optimize(str(model_path), dataset, recipes=recipes, out=out / "run", runs=runs,
                           options=options or {}, fresh=True, metric=metric)
    run_dir = run.path
    record = json.loads((Path(run_dir) / "run.json").read_text())
    record["_dir"] = str(run_dir)
    return record


def variant(record: dict, name: str) -> dict:
    """One finished variant of a run record; its graph facts merged into ``metrics`` (run.json v1 and v2)."""
    for v in record["variants"]:
        if v["name"] == name:
            if v.get("status") != "done":
                raise RuntimeError(f"edgeopt variant {name} failed: {v.get('error')}")
            merged = dict(v)
            merged["metrics"] = {**v.get("metrics", {}), **v.get("graph", {})}
            merged["path"] = Path(record["_dir"]) / v["artifact"]
            return merged
    raise KeyError(f"no variant {name} in the run")


def estimate(artifact: Path, device: str, *, devices_file: Path | None = None, battery_mah=None,
             inferences_per_hour=None, battery_v: float = 3.7) -> dict:
    """edgeopt's per-device estimate (what ``edgeopt estimate --json`` prints) for one artifact."""
    from edgeopt.hardware.catalogue import get_device, load_devices
    from edgeopt.hardware.estimator import estimate as estimate_one
    from edgeopt.measure.graph import profile_path

    dev = get_device(device, load_devices(devices_file))
    est = estimate_one(profile_path(Path(artifact)), dev, battery_mah=battery_mah,
                       inferences_per_hour=inferences_per_hour, battery_v=battery_v)
    out = est.to_dict()
    out["runnable"] = est.runnable
    return out


def export_mcu(artifact: Path, out_dir: Path, name: str) -> list[Path]:
    """The C array and Arduino/TFLite Micro sketch (what ``edgeopt export`` writes)."""
    from edgeopt.export.c_array import export_mcu as export

    return export(Path(artifact), out_dir, name)


def litert_predict(path: Path, x: np.ndarray, batch: int = 64) -> np.ndarray:
    """Run a .tflite in LiteRT (float or quantized I/O) and return float outputs."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    outs = []
    for i in range(0, len(x), batch):
        xb = np.asarray(x[i:i + batch], np.float32)
        interp.resize_tensor_input(inp["index"], [len(xb), *inp["shape"][1:]])
        interp.allocate_tensors()
        if inp["dtype"] != np.float32:
            scale, zp = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            xb = np.clip(np.round(xb / scale + zp), info.min, info.max).astype(inp["dtype"])
        interp.set_tensor(inp["index"], xb)
        interp.invoke()
        yb = interp.get_tensor(out["index"])
        if out["dtype"] != np.float32:
            scale, zp = out["quantization"]
            yb = (yb.astype(np.float32) - zp) * scale
        outs.append(yb)
    return np.concatenate(outs)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_bytes(n) -> str:
    return "-" if n is None else f"{n / 1024:.1f} KiB"


def fmt(x, spec: str = ".3g", none: str = "-") -> str:
    return none if x is None else format(x, spec)


def fmt_fits(est: dict) -> str:
    """yes / NO (why) / unknown (which figure is missing), from an estimate dict."""
    if not est["runnable"] or est["fits"] is False:
        return "NO" + (f" ({'; '.join(est['blockers'])})" if est["blockers"] else "")
    if est["fits"] is None:
        return "unknown (missing " + "; ".join(m.split(" (")[0] for m in est["missing"]) + ")"
    return "yes"


def fmt_latency(est: dict) -> str:
    """Estimated latency in ms; '≥' marks a lower bound from peak throughput."""
    if est.get("latency_ms") is None:
        return "-"
    return ("≥" if est.get("latency_is_lower_bound") else "") + format(est["latency_ms"], ".3g")


def _fmt_hours(hours) -> str:
    if hours is None:
        return "?"
    return f"{hours:.3g} h" if hours < 48 else f"{hours / 24:,.0f} days"


def fmt_battery(est: dict) -> str:
    """Battery life; a range when the estimate rests on a missing figure (e.g. unknown sleep power)."""
    hours = est.get("battery_life_h")
    if hours is not None:
        return _fmt_hours(hours)
    rng = est.get("battery_life_range_h") or {}
    if rng.get("low") is None and rng.get("high") is None:
        return "-"
    return f"{_fmt_hours(rng.get('low'))}–{_fmt_hours(rng.get('high'))}"


def write_results(out: Path, results: dict, table: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "results.md").write_text(table + "\n")
    print(table)


def mcu_table(r: dict, accuracy_header: str) -> str:
    """Markdown table of the float32 and int8 rows of an MCU case study: accuracy, size, the
    measured TFLM arena and the device estimate (fits, latency, energy / battery life)."""
    e = r["estimate"]
    rows = [["float32", f"{r['float32_accuracy']:.2%}", "-", "-", "-", "-", "-"],
            ["int8", f"{r['int8_accuracy']:.2%}", fmt_bytes(r["int8_size_bytes"]), fmt_bytes(r["tflm_arena_bytes"]),
             fmt_fits(e), fmt_latency(e), f"{fmt(e.get('energy_mj'))} / {fmt_battery(e)}"]]
    return markdown_table(
        ["model", accuracy_header, "size", "TFLM arena (measured)", f"fits {r['device']}", "est. latency ms",
         f"est. energy mJ / battery ({r['battery_mah']} mAh, {r['inferences_per_hour']}/h)"], rows)
