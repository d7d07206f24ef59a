"""Compression benchmark: structured pruning and prune + cluster + int8 on Fashion-MNIST.

Models: ``zoo.small_cnn()`` (28x28x1) and ``zoo.mobilenet_v2_style(alpha=0.35)`` (Fashion-MNIST
padded 28 -> 32). Baselines are trained here on a training subset; every variant is converted
to .tflite and measured in LiteRT with 1 thread in this same run: accuracy on the full 10k test
set, median batch-1 latency, .tflite bytes and gzip bytes. Results go to
``benchmarks/results/compression.md``.

Run: ``.venv/bin/python benchmarks/compression.py [--train 20000] [--models small_cnn,mobilenet]``
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "compression.md"


def pad32(ds):
    """Fashion-MNIST 28x28 -> 32x32 by zero padding (2 pixels each side)."""
    import dataclasses

    p = ((0, 0), (2, 2), (2, 2), (0, 0))
    return dataclasses.replace(ds, x_train=np.pad(ds.x_train, p), x_val=np.pad(ds.x_val, p),
                               x_eval=np.pad(ds.x_eval, p))


def subset(ds, n_train: int, n_val: int, seed: int = 0):
    import dataclasses

    from edgeopt.data import stratified_indices

    tr = stratified_indices(ds.y_train, n_train, seed)
    va = stratified_indices(ds.y_val, n_val, seed)
    return dataclasses.replace(ds, x_train=ds.x_train[tr], y_train=ds.y_train[tr],
                               x_val=ds.x_val[va], y_val=ds.y_val[va])


def measure(tflite: bytes, ds, work: Path, name: str) -> dict:
    from edgeopt.measure.latency import measure_latency
    from edgeopt.runtimes.litert import LiteRT

    path = work / f"{name}.tflite"
    path.write_bytes(tflite)
    session = LiteRT().load(path, threads=1)
    pred = session.predict(ds.x_eval)
    acc = float((pred.argmax(axis=1) == ds.y_eval).mean())
    lat = measure_latency(session, ds.x_eval[:1], runs=400, warmup=30, max_seconds=20)
    return {"variant": name, "accuracy": acc, "latency_ms": lat.p50_ms, "bytes": len(tflite),
            "gzip_bytes": len(gzip.compress(tflite, 9))}


def train_baseline(model, ds, epochs: int, seed: int, batch: int, log):
    """Train with the shared fine-tuning loop (cosine decay, early stopping on validation accuracy
    measured after re-estimating BatchNorm statistics)."""
    from edgeopt.steps import StepContext
    from edgeopt.techniques.finetune import fine_tune

    ctx = StepContext(dataset=ds, work_dir=Path("."), log=log, seed=seed,
                      options={"epochs": epochs, "lr": 3e-3, "batch_size": batch, "patience": 3})
    return fine_tune(model, ctx, epochs=epochs)[0]


def run_step(name, ctx_base, model, **options):
    import dataclasses

    from edgeopt.steps import get_step

    ctx = dataclasses.replace(ctx_base, options=dict(options))
    t0 = time.perf_counter()
    result = get_step(name).run(ctx, model)
    return result, time.perf_counter() - t0


def bench_model(label, model, ds, work: Path, args, log, ratio: float) -> dict:
    from edgeopt.convert import keras_to_tflite
    from edgeopt.steps import StepContext

    t0 = time.perf_counter()
    train_baseline(model, ds, args.epochs, args.seed, args.batch, log)
    log(f"[{label}] baseline trained in {time.perf_counter() - t0:.0f}s")
    rows = [measure(keras_to_tflite(model), ds, work, f"{label}-float32")]
    base = rows[0]
    log(f"[{label}] float32: {json.dumps(base)}")
    ctx = StepContext(dataset=ds, work_dir=work, baseline_accuracy=base["accuracy"], log=log, seed=args.seed)
    notes = {}

    # structured pruning (ratio per group; the output layer is never pruned), then fine-tuning
    res, secs = run_step("prune-structured", ctx, model, ratio=ratio, epochs=args.ft_epochs,
                         iterations=args.iterations, criterion="l1", round_to=8,
                         batch_size=args.batch, lr=args.ft_lr)
    row = measure(keras_to_tflite(res.model), ds, work, f"{label}-structured{ratio:g}")
    row.update(step_seconds=round(secs, 1), macs=res.details["macs"], params=res.details["params"])
    rows.append(row)
    log(f"[{label}] structured: {json.dumps(row)}")

    # prune (>= 75%) -> cluster (16) -> int8
    pr, s1 = run_step("prune", ctx, model, sparsity=args.sparsity, scope=args.scope,
                      epochs=args.prune_epochs, report_size=False, batch_size=args.batch, lr=args.ft_lr)
    cl, s2 = run_step("cluster", ctx, pr.model, clusters=16, epochs=args.cluster_epochs,
                      report_size=False, batch_size=args.batch, lr=args.ft_lr)
    rows.append(measure(keras_to_tflite(cl.model), ds, work, f"{label}-prune{args.sparsity:g}+cluster16-float32"))
    cctx = StepContext(dataset=ds, work_dir=work / f"{label}-int8", baseline_accuracy=base["accuracy"],
                       log=log, seed=args.seed)
    cctx.work_dir.mkdir(parents=True, exist_ok=True)
    try:
        q, s3 = run_step("int8", cctx, cl.model)
        tfl = Path(q.artifact).read_bytes()
        notes["int8"] = "edgeopt int8 step (TFLite converter full-int8, representative dataset)"
    except Exception as e:  # the int8 step is another helper's; fall back to the converter itself
        import tensorflow as tf

        calib = ds.calibration(300, args.seed)
        tfl = keras_to_tflite(cl.model, optimizations=[tf.lite.Optimize.DEFAULT],
                              representative_dataset=lambda: ([calib[i:i + 1]] for i in range(len(calib))))
        s3 = 0.0
        notes["int8"] = f"int8 step unavailable ({type(e).__name__}: {e}); tf.lite.TFLiteConverter full-int8"
    row = measure(tfl, ds, work, f"{label}-prune{args.sparsity:g}+cluster16+int8")
    row.update(step_seconds=round(s1 + s2 + s3, 1), sparsity=pr.details["overall_sparsity"],
               unique_values=cl.details["unique_values"], layer_sparsity=cl.details["layer_sparsity"])
    rows.append(row)
    log(f"[{label}] prune+cluster+int8: {json.dumps({k: v for k, v in row.items() if 'layer' not in k})}")
    return {"label": label, "rows": rows, "notes": notes}


def render(results, args, seconds) -> str:
    lines = ["# Compression benchmark (structured pruning; prune + cluster + int8)", "",
             f"Measured in one run by `.venv/bin/python benchmarks/compression.py "
             f"--train {args.train} --epochs {args.epochs} --ft-epochs {args.ft_epochs} --ft-lr {args.ft_lr} "
             f"--iterations {args.iterations} --prune-epochs {args.prune_epochs} --scope {args.scope} "
             f"--cluster-epochs {args.cluster_epochs} "
             f"--batch {args.batch} --ratio {args.ratio} --mobilenet-ratio {args.mobilenet_ratio} "
             f"--sparsity {args.sparsity} --models {args.models}` "
             f"on {platform.machine()} ({os.cpu_count()} cores, shared), total {seconds / 60:.1f} min.",
             "LiteRT (ai-edge-litert) with 1 thread; accuracy on the full 10,000-image Fashion-MNIST "
             "test set; latency = median of batch-1 invokes; gzip = `gzip -9` of the .tflite. "
             f"Baselines and fine-tuning use a stratified {args.train}-image training subset.", ""]
    for res in results:
        base = res["rows"][0]
        lines += [f"## {res['label']}", "",
                  "| variant | accuracy | drop (pts) | latency ms | speed-up | .tflite bytes | gzip bytes | gzip x smaller |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in res["rows"]:
            lines.append(
                f"| {r['variant']} | {r['accuracy']:.4f} | {100 * (base['accuracy'] - r['accuracy']):+.2f} | "
                f"{r['latency_ms']:.3f} | {base['latency_ms'] / r['latency_ms']:.2f}x | {r['bytes']:,} | "
                f"{r['gzip_bytes']:,} | {base['gzip_bytes'] / r['gzip_bytes']:.1f}x |")
        lines.append("")
        for r in res["rows"]:
            if "macs" in r:
                lines.append(f"- {r['variant']}: MACs {r['macs']['before']:,} -> {r['macs']['after']:,}, "
                             f"params {r['params']['before']:,} -> {r['params']['after']:,} "
                             f"(step incl. fine-tuning {r['step_seconds']} s)")
            if "unique_values" in r:
                lines.append(f"- {r['variant']}: overall kernel sparsity {r['sparsity']:.2%}; "
                             f"unique kernel values per layer (float model, before int8) "
                             f"{json.dumps(r['unique_values'])}")
        for k, v in res["notes"].items():
            lines.append(f"- {k}: {v}")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=10000, help="training subset size")
    ap.add_argument("--epochs", type=int, default=10, help="baseline epochs (early stopping)")
    ap.add_argument("--ft-epochs", type=int, default=2, help="structured: fine-tuning epochs per iteration")
    ap.add_argument("--iterations", type=int, default=2, help="structured: prune/fine-tune rounds")
    ap.add_argument("--prune-epochs", type=int, default=6, help="magnitude pruning fine-tuning epochs")
    ap.add_argument("--scope", default="global", help="magnitude pruning scope (layer | global)")
    ap.add_argument("--cluster-epochs", type=int, default=3, help="clustering fine-tuning epochs")
    ap.add_argument("--ft-lr", type=float, default=1e-3, help="fine-tuning learning rate (cosine decay)")
    ap.add_argument("--batch", type=int, default=128, help="batch size for training and fine-tuning")
    ap.add_argument("--ratio", type=float, default=0.5, help="structured pruning ratio (small_cnn)")
    ap.add_argument("--mobilenet-ratio", type=float, default=0.7,
                    help="structured pruning ratio for the MobileNetV2-style net (its latency is "
                         "dominated by per-op overhead, so it needs a higher ratio for the same speed-up)")
    ap.add_argument("--sparsity", type=float, default=0.8, help="magnitude pruning sparsity")
    ap.add_argument("--models", default="small_cnn,mobilenet")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    from edgeopt.data import fashion_mnist
    from edgeopt.zoo import mobilenet_v2_style, small_cnn

    def log(msg):
        print(msg, flush=True)

    t0 = time.perf_counter()
    full = fashion_mnist(seed=args.seed)
    ds = subset(full, args.train, 3000, args.seed)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.models.split(","):
            if name == "small_cnn":
                results.append(bench_model("small_cnn", small_cnn(), ds, work, args, log, args.ratio))
            elif name == "mobilenet":
                results.append(bench_model("mobilenet_v2_style-a0.35-32x32",
                                           mobilenet_v2_style((32, 32, 1), 10, 0.35), pad32(ds), work, args, log,
                                           args.mobilenet_ratio))
            else:
                raise SystemExit(f"unknown model {name!r}")
    text = render(results, args, time.perf_counter() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".md.tmp")
    tmp_out.write_text(text)
    os.replace(tmp_out, args.out)
    (args.out.with_suffix(".json")).write_text(json.dumps(results, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
