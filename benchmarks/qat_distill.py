"""QAT vs PTQ int8, and distillation vs plain training: `python benchmarks/qat_distill.py`.

Fashion-MNIST CNN (`zoo.small_cnn()`, width 32). The teacher trains on a stratified subset of
the 54k training rows (or loads from --work); every accuracy below is measured in LiteRT on the
full 10k Fashion-MNIST test set, on the artifact that ships:
- PTQ int8 (the `int8` step: TFLite converter, global min/max calibration on 500 rows) vs QAT int8
  (the `qat` step, then the same `int8` step, which converts with the learned ranges), plus the
  simulated (Keras, fake-quant) accuracy of the QAT model on the same 10k images. As a control,
  the float model fine-tuned exactly like QAT (same rows, epochs, lr) then PTQ'd separates the
  effect of quantization-aware training from the effect of more training.
- A half-width student distilled from the teacher vs the same student (same initial weights,
  rows, epochs, seed) trained on labels only, both converted to float32 .tflite.
Writes benchmarks/results/qat_distill.md and .json. `--smoke` checks in seconds that the script runs
(1,000 teacher rows, 1 epoch everywhere, 1,000 test images) and writes under --work instead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import command, describe  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def log(msg: str) -> None:
    print(msg, flush=True)


def train_teacher(ds, work: Path, rows: int, epochs: int) -> tuple[Path, str]:
    """The teacher's path and how it was obtained (trained now, or loaded from --work)."""
    path = work / f"fashion_cnn_{rows}x{epochs}_cosine.keras"
    if path.exists():
        return path, f"loaded from {path}"
    import keras

    from edgeopt.data import stratified_indices
    from edgeopt.techniques.finetune import recalibrate_batchnorm
    from edgeopt.zoo import small_cnn

    keras.utils.set_random_seed(0)
    idx = stratified_indices(ds.y_train, rows, 0)
    model = small_cnn()
    # cosine decay to a small rate: the last epoch's weights (and BN statistics) are settled
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=epochs * -(-rows // 128), alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    t0 = time.perf_counter()
    hist = model.fit(ds.x_train[idx], ds.y_train[idx], epochs=epochs, batch_size=128, verbose=0,
                     validation_data=(ds.x_val, ds.y_val))
    # In a short run (a few hundred steps) BatchNorm's moving statistics lag the weights (momentum
    # 0.99): validation accuracy 0.18 for 10k rows x 4 epochs. Re-estimate them on the training rows.
    recalibrate_batchnorm(model, ds.x_train[idx])
    val = model.evaluate(ds.x_val, ds.y_val, verbose=0, batch_size=500)[1]
    seconds = time.perf_counter() - t0
    log(f"teacher: {rows} rows x {epochs} epochs in {seconds:.0f} s, val accuracy "
        + ", ".join(f"{v:.4f}" for v in hist.history["val_accuracy"]) + f", {val:.4f} after re-estimating BatchNorm")
    work.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path, (f"trained in {seconds:.0f} s (validation accuracy {hist.history['val_accuracy'][-1]:.4f} with "
                  f"the moving BatchNorm statistics from fit, {val:.4f} after re-estimating them on the "
                  f"training rows)")


def litert_accuracy(path: Path, ds) -> float:
    from edgeopt.core.metrics import task_metrics
    from edgeopt.runtimes.litert import LiteRT

    return task_metrics(LiteRT().load(path).predict(ds.x_eval), ds.y_eval, ds.task)["accuracy"]


def keras_accuracy(model, ds) -> float:
    from edgeopt.core.metrics import task_metrics

    return task_metrics(model.predict(ds.x_eval, batch_size=500, verbose=0), ds.y_eval, ds.task)["accuracy"]


def step_ctx(ds, work: Path, name: str, **options):
    from edgeopt.steps import StepContext

    wd = work / name
    wd.mkdir(parents=True, exist_ok=True)
    return StepContext(dataset=ds, work_dir=wd, options={"calibration_samples": 500, **options},
                       log=lambda m: log(f"  [{name}] {m}"))


def convert(step_name: str, model, ds, work: Path, name: str) -> tuple[float, dict]:
    from edgeopt.steps import get_step

    res = get_step(step_name).run(step_ctx(ds, work, name), model)
    return litert_accuracy(Path(res.artifact), ds), res.details


def quantization(teacher_path: Path, ds, work: Path, args) -> dict:
    from edgeopt.model_io import load_keras
    from edgeopt.steps import get_step
    from edgeopt.techniques.finetune import fine_tune

    out: dict = {}
    teacher = load_keras(teacher_path)
    out["float32"], _ = convert("float32", teacher, ds, work, "float32")
    out["ptq_int8"], out["ptq_details"] = convert("int8", teacher, ds, work, "ptq_int8")
    log(f"float32 {out['float32']:.4f}  PTQ int8 {out['ptq_int8']:.4f}")

    tune = {"epochs": args.qat_epochs, "train_samples": args.rows, "lr": args.qat_lr}
    t0 = time.perf_counter()
    qat = get_step("qat").run(step_ctx(ds, work, "qat", **tune), load_keras(teacher_path))
    out["qat_seconds"] = round(time.perf_counter() - t0, 1)
    out["qat_simulated"] = keras_accuracy(qat.model, ds)
    out["qat_int8"], conv_details = convert("int8", qat.model, ds, work, "qat_int8")
    out["qat_details"] = {k: v for k, v in qat.details.items() if k != "fine_tune"}
    out["qat_details"]["fine_tune"] = {k: qat.details["fine_tune"].get(k)
                                       for k in ("epochs_run", "best", "diagnosis", "seconds")}
    out["qat_float_ops"] = conv_details.get("float_ops")
    log(f"QAT simulated {out['qat_simulated']:.4f}  QAT int8 {out['qat_int8']:.4f}")

    control = load_keras(teacher_path)  # the same extra training, no fake-quant
    fine_tune(control, step_ctx(ds, work, "control", **tune), epochs=args.qat_epochs, lr=args.qat_lr)
    out["control_float32"], _ = convert("float32", control, ds, work, "control_float32")
    out["control_ptq_int8"], _ = convert("int8", control, ds, work, "control_ptq_int8")
    log(f"control: fine-tuned float {out['control_float32']:.4f}, its PTQ int8 {out['control_ptq_int8']:.4f}")
    return out


def distillation(teacher_path: Path, ds, work: Path, args) -> dict:
    from edgeopt.model_io import load_keras
    from edgeopt.techniques.distill import distill

    teacher = load_keras(teacher_path)
    ctx = step_ctx(ds, work, "distill", width=0.5, temperature=args.temperature, alpha=args.alpha,
                   epochs=args.distill_epochs, lr=args.distill_lr, train_samples=args.distill_rows,
                   patience=args.distill_epochs)
    t0 = time.perf_counter()
    student, baseline, details = distill(teacher, ctx)
    seconds = round(time.perf_counter() - t0, 1)
    out = {"seconds": seconds, "student_params": details["student_params"],
           "teacher_params": details["teacher_params"], "val": details["distilled_val"]["accuracy"],
           "baseline_val": details["baseline"]["val"]["accuracy"]}
    out["distilled"], _ = convert("float32", student, ds, work, "student_distilled")
    out["baseline"], _ = convert("float32", baseline, ds, work, "student_plain")
    log(f"student distilled {out['distilled']:.4f} vs without teacher {out['baseline']:.4f} ({seconds} s)")
    return out


def fixes_kept(details: dict) -> str:
    """The int8 step's fixes choice (fixes=auto by default) in a few words."""
    fixes = details.get("fixes") or {}
    if fixes.get("skipped"):
        return "int8 fixes skipped"
    return f"int8 fixes kept: {', '.join(fixes.get('fixes') or []) or 'none'}"


def markdown(q: dict, d: dict, args, env: str, teacher_note: str) -> str:
    pts = lambda a, b: f"{100 * (a - b):+.2f}"  # noqa: E731
    rows = [
        ("float32 (teacher)", q["float32"], ""),
        (f"PTQ int8 (int8 step, min/max on 500 rows, {fixes_kept(q['ptq_details'])})", q["ptq_int8"],
         pts(q["ptq_int8"], q["float32"])),
        (f"QAT int8 ({args.qat_epochs} epochs on {args.rows} rows), simulated in Keras", q["qat_simulated"],
         pts(q["qat_simulated"], q["float32"])),
        ("QAT int8, converted .tflite", q["qat_int8"], pts(q["qat_int8"], q["float32"])),
        ("control: float fine-tuned the same way", q["control_float32"], pts(q["control_float32"], q["float32"])),
        ("control: its PTQ int8", q["control_ptq_int8"], pts(q["control_ptq_int8"], q["float32"])),
    ]
    checks = [
        ("QAT int8 >= PTQ int8", q["qat_int8"] >= q["ptq_int8"], f"{pts(q['qat_int8'], q['ptq_int8'])} points"),
        ("converted QAT within 0.2 points of simulated", abs(q["qat_int8"] - q["qat_simulated"]) <= 0.002,
         f"{pts(q['qat_int8'], q['qat_simulated'])} points"),
        ("QAT int8 has no float ops", not q["qat_float_ops"], str(q["qat_float_ops"])),
        ("distilled student beats the same student trained without the teacher",
         d["distilled"] > d["baseline"], f"{pts(d['distilled'], d['baseline'])} points"),
    ]
    lines = ["# QAT and knowledge distillation (Fashion-MNIST CNN)", "",
             f"Generated by `{args.command}` ({env}). Accuracies measured in LiteRT on the "
             f"first {args.eval:,} Fashion-MNIST test images (QAT simulated: Keras on the same images). Teacher: "
             f"`zoo.small_cnn()` trained on {args.teacher_rows} stratified training rows for "
             f"{args.teacher_epochs} epochs (cosine-decayed Adam from 2e-3, batch 128), {teacher_note}.", "",
             "## PTQ vs QAT int8", "",
             "| variant | accuracy | vs float32 (points) |", "|---|---|---|"]
    lines += [f"| {name} | {acc:.4f} | {delta} |" for name, acc, delta in rows]
    ft = q["qat_details"]["fine_tune"]
    lines += ["", f"QAT folded {', '.join(q['qat_details']['folded_batchnorm'])} into their convolutions, "
              f"fake-quantized {len(q['qat_details']['quantized_layers'])} layers and learned "
              f"{len(q['qat_details']['activation_ranges'])} activation ranges; fine-tuning ran "
              f"{ft['epochs_run']} epochs ({q['qat_seconds']} s for the whole step). The control rows separate the "
              f"two effects: QAT int8 minus the control's PTQ int8 is {pts(q['qat_int8'], q['control_ptq_int8'])} "
              f"points (what fake-quant training adds beyond the extra training); PTQ itself changed the teacher's "
              f"accuracy by {pts(q['ptq_int8'], q['float32'])} points"
              + (", so there was little for QAT to recover on this model." if q["float32"] - q["ptq_int8"] < 0.003
                 else "."), "",
             f"## Distillation (student at width 0.5, T={args.temperature}, alpha={args.alpha})", "",
             f"Both students: same derived architecture ({d['student_params']} params vs {d['teacher_params']} for "
             f"the teacher), same initial weights, {args.distill_epochs} epochs on {args.distill_rows} rows, "
             f"same seed. Distillation + plain training took {d['seconds']} s.", "",
             "| student | test accuracy (LiteRT float32) | validation accuracy (Keras) |", "|---|---|---|",
             f"| distilled from the teacher | {d['distilled']:.4f} | {d['val']:.4f} |",
             f"| trained on labels only | {d['baseline']:.4f} | {d['baseline_val']:.4f} |", "",
             "## Checks", ""]
    lines += [f"- {'PASS' if ok else 'FAIL'}: {what} ({detail})" for what, ok, detail in checks]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/bench_qat_distill"))
    ap.add_argument("--teacher-rows", type=int, default=20000)
    ap.add_argument("--teacher-epochs", type=int, default=8)
    ap.add_argument("--rows", type=int, default=10000, help="training rows for QAT fine-tuning")
    ap.add_argument("--qat-epochs", type=int, default=2)
    ap.add_argument("--qat-lr", type=float, default=2e-4)
    ap.add_argument("--distill-rows", type=int, default=10000)
    ap.add_argument("--distill-epochs", type=int, default=6)
    ap.add_argument("--distill-lr", type=float, default=4e-3)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--eval", type=int, default=10000, help="test images (first N of 10,000)")
    ap.add_argument("--out", type=Path, default=None,
                    help="folder for qat_distill.md/.json (default benchmarks/results; <work>/results with --smoke)")
    ap.add_argument("--smoke", action="store_true",
                    help="check in seconds that the script runs: 1,000 teacher rows, 500 QAT/distillation rows, "
                         "1 epoch everywhere, 1,000 test images")
    args = ap.parse_args(argv)
    args.command = command("qat_distill.py", argv)
    if args.smoke:
        args.teacher_rows, args.rows, args.distill_rows, args.eval = 1000, 500, 500, 1000
        args.teacher_epochs = args.qat_epochs = args.distill_epochs = 1
        if args.work == ap.get_default("work"):
            args.work = Path("runs/bench_qat_distill_smoke")
    out = args.out or (args.work / "results" if args.smoke else RESULTS)

    import dataclasses

    from edgeopt.data import fashion_mnist

    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    ds = fashion_mnist()
    ds = dataclasses.replace(ds, x_eval=ds.x_eval[:args.eval], y_eval=ds.y_eval[:args.eval])
    args.eval = len(ds.y_eval)
    teacher, teacher_note = train_teacher(ds, args.work, args.teacher_rows, args.teacher_epochs)
    q = quantization(teacher, ds, args.work, args)
    d = distillation(teacher, ds, args.work, args)
    env = f"{describe(load0)}; total {time.perf_counter() - t0:.0f} s"
    from edgeopt.fsutil import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "qat_distill.md", markdown(q, d, args, env, teacher_note))
    atomic_write_text(out / "qat_distill.json", json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                            "teacher": teacher_note, "quantization": q,
                                                            "distillation": d},
                                                           indent=1, default=str))
    log((out / "qat_distill.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
