"""edgeopt int8 (with and without its accuracy fixes) against peers' int8 defaults, in one run:
`python benchmarks/peers.py`.

Same models, same calibration samples, same eval data for every row. Rows per model:
- float32 (LiteRT), the reference;
- TFLite converter default full int8 (ops without an int8 kernel stay float); edgeopt's `int8`
  step with fixes=none writes the same values, its size after `tflite_ptq.compact_tflite` (as
  every edgeopt int8 row here);
- ONNX Runtime `quantize_static` with its defaults (QDQ, S8S8, per-tensor, MinMax);
- NNCF `nncf.quantize` with its defaults, on the OpenVINO IR;
- edgeopt int8 with each fix alone (ablation: cle, cle_relu, bias_correction, adaround, act_range);
- edgeopt int8 with the fixes `choose_fixes` picked on the validation split (reported on eval);
- with --structured: budget-aware structured pruning + int8 of the MobileNetV2 wrapped as a layer.
Columns: top-1 agreement with the float model, task accuracy, file size, batch-1 latency ratio
int8 / float32 in the same runtime (LiteRT, ONNX Runtime, OpenVINO; 1 thread).
Writes benchmarks/results/peers.md and peers.json; prints the done-when checks.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("mobilenet_v2", "mini_xception", "fashion_cnn", "sensor_conv1d", "slide_mlp")
FIX_ROWS = ("cle", "cle_relu", "bias_correction", "adaround", "act_range")


# ---------------------------------------------------------------- data and models

def fashion(limit_train: int, n_eval: int, size: int | None = None, rgb: bool = False, n_val: int = 2000):
    """Fashion-MNIST: the first ``limit_train`` training images, ``n_val`` of the validation split
    (training images held out from training), ``n_eval`` test images."""
    from edgeopt.data import fashion_mnist

    ds = fashion_mnist(val_fraction=0.1, seed=0)
    tr = slice(0, limit_train)

    def prep(x):
        if size is not None and size != x.shape[1]:
            import tensorflow as tf
            x = tf.image.resize(x, (size, size)).numpy()
        return np.repeat(x, 3, axis=-1) if rgb else x
    return {"x_train": prep(ds.x_train[tr]), "y_train": ds.y_train[tr], "x_val": prep(ds.x_val[:n_val]),
            "y_val": ds.y_val[:n_val], "x_eval": prep(ds.x_eval[:n_eval]), "y_eval": ds.y_eval[:n_eval]}


def sensor_data(n: int = 6000, length: int = 128, seed: int = 0):
    """Synthetic 3-axis 'accelerometer' windows (50 Hz, 2.56 s): 4 activities that differ in
    dominant frequency, amplitude and axis, with noise, random phase and gravity offset."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 50.0
    freqs, amps = [0.0, 1.0, 2.2, 3.5], [0.05, 0.6, 1.2, 0.9]
    y = rng.integers(0, 4, n)
    x = np.empty((n, length, 3), np.float32)
    for i, c in enumerate(y):
        f = freqs[c] * rng.uniform(0.85, 1.15)
        a = amps[c] * rng.uniform(0.7, 1.3)
        ph = rng.uniform(0, 2 * np.pi, 3)
        axes = np.array([1.0, 0.5, 0.3])[rng.permutation(3)] if c == 3 else np.array([1.0, 0.4, 0.2])
        x[i] = (a * axes * np.sin(2 * np.pi * f * t[:, None] + ph) + np.array([0, 0, 1.0])
                + rng.normal(0, 0.15, (length, 3)))
    cut = [int(0.7 * n), int(0.8 * n)]
    return {"x_train": x[:cut[0]], "y_train": y[:cut[0]], "x_val": x[cut[0]:cut[1]], "y_val": y[cut[0]:cut[1]],
            "x_eval": x[cut[1]:], "y_eval": y[cut[1]:]}


def blobs(n_train: int = 1050, n_val: int = 3000, n_eval: int = 3000):
    """The slide MLP's generated blobs (``data.blobs2d``), with validation and eval splits large
    enough that one sample (1/3000 = 0.033 points) is well under the 0.3-point accuracy check."""
    from edgeopt.data import blobs2d

    x, y = blobs2d(n=n_train + n_val + n_eval, seed=0)
    a, b = n_train, n_train + n_val
    return {"x_train": x[:a], "y_train": y[:a], "x_val": x[a:b], "y_val": y[a:b], "x_eval": x[b:], "y_eval": y[b:]}


def mobilenet_v2(shape, classes):
    import keras

    base = keras.applications.MobileNetV2(input_shape=shape, alpha=0.35, weights=None, classes=classes,
                                          classifier_activation="softmax")
    for layer in base.layers:  # default momentum 0.999 needs thousands of steps to converge
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return base


def mini_xception(shape, classes):
    import keras
    from keras import layers

    inp = keras.Input(shape)
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inp)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for i, f in enumerate((16, 32, 64)):
        res = layers.Conv2D(f, 1, strides=2, padding="same", use_bias=False, name=f"b{i}_res")(x)
        res = layers.BatchNormalization(name=f"b{i}_res_bn")(res)
        y = layers.SeparableConv2D(f, 3, padding="same", use_bias=False, name=f"b{i}_sep1")(x)
        y = layers.BatchNormalization(name=f"b{i}_bn1")(y)
        y = layers.ReLU(name=f"b{i}_relu1")(y)
        y = layers.SeparableConv2D(f, 3, padding="same", use_bias=False, name=f"b{i}_sep2")(y)
        y = layers.BatchNormalization(name=f"b{i}_bn2")(y)
        y = layers.MaxPooling2D(3, strides=2, padding="same", name=f"b{i}_pool")(y)
        x = layers.Add(name=f"b{i}_add")([y, res])
    x = layers.SeparableConv2D(classes, 3, padding="same", name="head")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Activation("softmax", name="softmax")(x)
    return keras.Model(inp, out, name="mini_xception")


def sensor_conv1d(shape, classes):
    import keras
    from keras import layers

    inp = keras.Input(shape)
    x = inp
    for i, f in enumerate((16, 32, 32)):
        x = layers.Conv1D(f, 5, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
        x = layers.MaxPooling1D(2, name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    x = layers.Dense(32, activation="relu", name="fc")(x)
    out = layers.Dense(classes, activation="softmax", name="logits")(x)
    return keras.Model(inp, out, name="sensor_conv1d")


def build(name: str, args):
    """(model, data, training note): trained here, cosine-decayed Adam, BN statistics re-estimated."""
    import keras

    from edgeopt.zoo import compile_classifier, slide_mlp, small_cnn

    keras.utils.set_random_seed(0)
    if name == "mobilenet_v2":
        data = fashion(args.train_limit, args.eval_samples, size=args.mnv2_size, rgb=True, n_val=args.val_samples)
        model, epochs, batch = mobilenet_v2(data["x_train"].shape[1:], 10), args.epochs, 64
    elif name == "mini_xception":
        data = fashion(args.train_limit, args.eval_samples, n_val=args.val_samples)
        model, epochs, batch = mini_xception((28, 28, 1), 10), args.epochs, 64
    elif name == "fashion_cnn":
        data = fashion(args.train_limit, args.eval_samples, n_val=args.val_samples)
        model, epochs, batch = small_cnn(head="flatten"), args.epochs, 128
    elif name == "sensor_conv1d":
        data = sensor_data()
        model, epochs, batch = sensor_conv1d((128, 3), 4), 8, 64
    elif name == "slide_mlp":
        data = blobs()
        model, epochs, batch = slide_mlp(), 40, 64
    else:
        raise SystemExit(f"error: unknown model {name!r}; choose from {', '.join(MODELS)}")
    cached = Path(args.model_cache) / f"{name}.keras" if args.model_cache else None
    if cached is not None and cached.exists() and cached.with_suffix(".note").exists():
        return keras.models.load_model(cached), data, cached.with_suffix(".note").read_text().strip()
    steps = epochs * -(-len(data["x_train"]) // batch)
    lr = 1e-2 if name == "slide_mlp" else 3e-3
    compile_classifier(model, lr=keras.optimizers.schedules.CosineDecay(lr, steps))
    t0 = time.perf_counter()
    model.fit(data["x_train"], data["y_train"], epochs=epochs, batch_size=batch, verbose=0)
    if any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from ptq import reestimate_batchnorm

        reestimate_batchnorm(model, data["x_train"][:1000])
    note = (f"{model.count_params():,} parameters, input {tuple(data['x_train'].shape[1:])}, trained "
            f"{epochs} epochs on {len(data['x_train'])} samples ({time.perf_counter() - t0:.0f} s)")
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        model.save(cached)
        cached.with_suffix(".note").write_text(note)
    return model, data, note


# ---------------------------------------------------------------- rows

def top1(p):
    return np.asarray(p).reshape(len(p), -1).argmax(1)


def latency_ratio(runtime, float_path: Path, int8_path: Path, x1: np.ndarray, rounds: int) -> float:
    """Median int8/float32 batch-1 latency ratio, the two measured alternately (1 thread)."""
    from edgeopt.measure.latency import measure_latency

    sessions = [runtime.load(float_path, threads=1), runtime.load(int8_path, threads=1)]
    ratios = []
    for _ in range(rounds):
        t = [measure_latency(s, x1, runs=100, warmup=10, max_seconds=1.0).p50_ms for s in sessions]
        ratios.append(t[1] / t[0])
    return float(np.median(ratios))


def run_model(name: str, args, work: Path) -> dict:
    from edgeopt.export.onnx import keras_to_onnx
    from edgeopt.export.openvino import onnx_to_openvino
    from edgeopt.runtimes.litert import LiteRT
    from edgeopt.runtimes.onnxruntime import OnnxRuntime
    from edgeopt.runtimes.openvino import OpenVINO
    from edgeopt.engine.oracles import predict
    from edgeopt.techniques.int8_fixes import AUTO, choose_fixes, float_tflite, not_applicable, run_trial

    model, data, note = build(name, args)
    print(f"{name}: {note}", flush=True)
    rng = np.random.default_rng(0)
    calib = data["x_train"][rng.choice(len(data["x_train"]), args.calib_samples, replace=False)]
    x_val, x_eval, y_eval = data["x_val"][:args.val_samples], data["x_eval"], data["y_eval"]
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    ref = top1(model.predict(x_eval, verbose=0, batch_size=256))
    rows: list[dict] = []
    x1 = x_eval[:1]

    def add(label, runtime, path, float_path, files, seconds, extra=None):
        pred = top1(runtime.load(path).predict(x_eval))
        size = sum(Path(f).stat().st_size for f in files)
        lat = latency_ratio(runtime, float_path, path, x1, args.latency_rounds) if float_path else 1.0
        rows.append({"row": label, "runtime": type(runtime).__name__, "agreement": float((pred == ref).mean()),
                     "accuracy": float((pred == y_eval).mean()), "size": int(size), "latency_ratio": lat,
                     "seconds": round(seconds, 1), **(extra or {})})
        r = rows[-1]
        print(f"  {label:28s} agree {r['agreement']:.4f} acc {r['accuracy']:.4f} size {size:9d} "
              f"lat x{lat:.2f} ({seconds:.0f} s)", flush=True)

    # float32 references, one per runtime
    f_tfl = d / "float32.tflite"
    f_tfl.write_bytes(float_tflite(model))
    if args.structured_only:  # merged into an earlier run's results with --from-json
        return {"model": name, "structured": structured_row(model, data, args, d, f_tfl, x1)}
    f_onnx = keras_to_onnx(model, d / "float32.onnx")
    f_xml = onnx_to_openvino(f_onnx, d / "float32.xml")
    add("float32 (LiteRT)", LiteRT(), f_tfl, None, [f_tfl], 0)
    float_size = f_tfl.stat().st_size

    # ONNX Runtime defaults
    t0 = time.perf_counter()
    ort_path = d / "ort_default.onnx"
    _ort_default(f_onnx, ort_path, calib)
    add("ONNX Runtime quantize_static defaults", OnnxRuntime(), ort_path, f_onnx, [ort_path], time.perf_counter() - t0)

    # NNCF defaults
    t0 = time.perf_counter()
    nncf_xml = d / "nncf_default.xml"
    _nncf_default(f_xml, nncf_xml, calib)
    add("NNCF defaults", OpenVINO(), nncf_xml, f_xml, [nncf_xml, nncf_xml.with_suffix(".bin")],
        time.perf_counter() - t0)

    # edgeopt: converter default (= int8 fixes=none), each fix alone and the combinations tried,
    # then what the int8 step's fixes=auto chooses; fixes outside auto (adaround) as ablation rows
    t0 = time.perf_counter()
    log = lambda m: print(f"  [{name}] {m}", flush=True)  # noqa: E731
    chosen = choose_fixes(model, calib, x_val, predict=predict, candidates=[f for f in AUTO if f in args.fixes],
                          adaround_iterations=args.adaround_iterations, log=log)
    choose_s = time.perf_counter() - t0
    trials, ref_val = list(chosen.trials), model.predict(x_val, verbose=0, batch_size=256)
    for f in [f for f in args.fixes if f not in AUTO]:
        if not_applicable(model, f):
            chosen.skipped[f] = not_applicable(model, f)
            continue
        trials.append(run_trial(model, [f], calib, x_val, ref_val, predict=predict,
                                adaround_iterations=args.adaround_iterations))
        log(f"ablation (not in auto): {f} alone -> validation agreement {trials[-1].agreement}")
    for trial in sorted(trials, key=lambda t: len(t.fixes)):
        label = ("TFLite converter default (= edgeopt int8 fixes=none)" if not trial.fixes
                 else f"edgeopt int8 + {'+'.join(trial.fixes)}" + (" only" if len(trial.fixes) == 1 else ""))
        p = d / (("+".join(trial.fixes) or "default") + ".tflite")
        p.write_bytes(trial.tflite)
        gain, lost = trial.discordant(trials[0])
        add(label, LiteRT(), p, f_tfl, [p], trial.seconds,
            {"val_agreement": trial.agreement, "val_gained": gain, "val_lost": lost})
    p = d / "chosen.tflite"
    p.write_bytes(chosen.tflite)
    add(f"edgeopt int8 (fixes=auto), chosen: {'+'.join(chosen.fixes) or 'none'}", LiteRT(), p, f_tfl, [p], choose_s,
        {"fixes": chosen.fixes, "val_agreement": next(t.agreement for t in chosen.trials
                                                      if t.fixes == chosen.fixes)})
    out = {"model": name, "note": note, "params": int(model.count_params()), "float_size": float_size,
           "n_calib": len(calib), "n_val": len(x_val), "n_eval": len(x_eval),
           "rows": rows, "choice": chosen.details()}
    if args.structured and name == "mobilenet_v2":
        out["structured"] = structured_row(model, data, args, d, f_tfl, x1)
    return out


def structured_row(model, data, args, work: Path, float_path: Path, x1: np.ndarray) -> dict:
    """Budget-aware structured pruning, then the int8 step (its default fixes=auto), on the model
    wrapped as a layer of a Functional model (the transfer-learning shape): accuracy drop on the
    eval split and LiteRT batch-1 latency against the unwrapped float32 file, measured alternately."""
    import keras

    from edgeopt.data import Dataset
    from edgeopt.engine.oracles import paired_latency_us
    from edgeopt.steps import StepContext, get_step

    inp = keras.Input(data["x_train"].shape[1:])
    wrapped = keras.Model(inp, model(inp), name="wrapped")
    ds = Dataset("fashion_mnist_rgb", data["x_train"], data["y_train"], data["x_val"][:args.val_samples],
                 data["y_val"][:args.val_samples], data["x_eval"], data["y_eval"], num_classes=10)
    log = lambda m: print(f"  [structured] {m}", flush=True)  # noqa: E731
    t0 = time.perf_counter()
    (work / "prune").mkdir(exist_ok=True)
    (work / "int8").mkdir(exist_ok=True)
    pruned = get_step("prune-structured").run(StepContext(dataset=ds, work_dir=work / "prune", log=log, options={
        "max_accuracy_drop": args.structured_budget, "epochs": args.structured_epochs,
        "budget_trials": args.structured_trials}), wrapped)
    q = get_step("int8").run(StepContext(dataset=ds, work_dir=work / "int8", log=log, options={
        "calibration_samples": args.calib_samples, "fix_validation_samples": args.val_samples,
        "adaround_iterations": args.adaround_iterations}), pruned.model)
    from edgeopt.runtimes.litert import LiteRT

    ref = top1(model.predict(data["x_eval"], verbose=0, batch_size=256))
    pred = top1(LiteRT().load(q.artifact).predict(data["x_eval"]))
    float_acc = float((ref == data["y_eval"]).mean())
    base_us, var_us = paired_latency_us(float_path, q.artifact, x1)
    det = pruned.details
    row = {"chosen_ratio": det.get("chosen_ratio"), "budget_met": det.get("met"), "flattened": det.get("flattened"),
           "budget_trials": det.get("budget_trials"), "macs": det.get("macs"), "params": det.get("params"),
           "sensitivity_scan": det.get("sensitivity_scan"),
           "pruned_groups": [g for g in det.get("groups") or [] if g["kept"] < g["channels"]],
           "int8_fixes": (q.details.get("fixes") or {}).get("fixes"), "size": q.artifact.stat().st_size,
           "float_accuracy": float_acc, "accuracy": float((pred == data["y_eval"]).mean()),
           "agreement": float((pred == ref).mean()), "float32_us": base_us, "pruned_int8_us": var_us,
           "speedup": base_us / var_us, "seconds": round(time.perf_counter() - t0, 1)}
    print(f"  structured + int8: {json.dumps(row, default=str)}", flush=True)
    return row


def _ort_default(src: Path, dst: Path, calib: np.ndarray) -> None:
    import onnx
    from onnxruntime.quantization import quantize_static

    from edgeopt.convert import quiet_fds
    from edgeopt.export.onnx import _Reader

    name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    with quiet_fds():
        quantize_static(str(src), str(dst), _Reader([name], calib, 1))


def _nncf_default(src_xml: Path, dst_xml: Path, calib: np.ndarray) -> None:
    import nncf
    import openvino as ov

    from edgeopt.export.openvino import _quiet_nncf, save_ir

    model = ov.Core().read_model(str(src_xml))
    with _quiet_nncf():
        q = nncf.quantize(model, nncf.Dataset([calib[i:i + 1] for i in range(len(calib))]),
                          subset_size=len(calib))
    save_ir(q, dst_xml)


# ---------------------------------------------------------------- report

def markdown(results: list[dict], env: str, args) -> str:
    lines = ["## Peers: int8 defaults vs edgeopt int8 fixes", "",
             f"Generated by `python benchmarks/peers.py {' '.join(sys.argv[1:])}` on {env}. "
             f"Per model: the same {args.calib_samples} calibration samples (training split) for every tool, "
             "fixes chosen on the validation split (up to "
             f"{args.val_samples} samples; sizes per model below), everything reported on the eval split "
             "(Fashion-MNIST test images, held-out sensor/blob samples). Agreement = top-1 of the int8 file "
             "equals top-1 of the float Keras model. Latency = batch-1 p50 of int8 / float32 in the same "
             "runtime, 1 thread, measured alternately on a shared, loaded 2-core CPU (ratios only).", ""]
    for r in [r for r in results if "rows" in r]:
        base = r["rows"][0]
        splits = (f" Calibration {r['n_calib']}, validation {r['n_val']}, eval {r['n_eval']} samples."
                  if "n_val" in r else "")
        lines += [f"### {r['model']}", "", f"Model: {r['note']}.{splits} Fix choice: "
                  f"{', '.join(r['choice']['fixes']) or 'none (no fix beat the converter default)'}."
                  + "".join(f" Not applicable: {f} ({why})." for f, why in
                            (r['choice'].get('not_applicable') or {}).items())
                  + (f" Why: {r['choice']['reason']}." if r['choice'].get('reason') else ""), "",
                  "| row | runtime | agreement | accuracy | drop (points) | size (bytes) | float32 / size "
                  "| latency vs float32 | validation agreement (inputs gained/lost vs default) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for row in r["rows"]:
            drop = (base["accuracy"] - row["accuracy"]) * 100
            lines.append(f"| {row['row']} | {row['runtime']} | {row['agreement']:.2%} | {row['accuracy']:.2%} "
                         f"| {drop:+.2f} | {row['size']:,} | {r['float_size'] / row['size']:.2f}x "
                         f"| {row['latency_ratio']:.2f}x | {_val_cell(row)} |")
        lines.append("")
        st = r.get("structured")
        if st:
            drop = (st["float_accuracy"] - st["accuracy"]) * 100
            lines += [f"Budget-aware structured pruning + int8 (`prune-structured` max_accuracy_drop="
                      f"{args.structured_budget} on validation, {args.structured_epochs} distilled fine-tuning "
                      f"epoch(s) per trial, {args.structured_trials} trials; then `int8` with its default fixes), "
                      f"run on this model wrapped as a layer of a Functional model (flattened: "
                      f"{', '.join(st['flattened'] or []) or 'none'}): ratio {st['chosen_ratio']} "
                      f"(budget met: {st['budget_met']}), MACs {st['macs']['before']:,} -> {st['macs']['after']:,}, "
                      f"int8 fixes {', '.join(st['int8_fixes'] or []) or 'none'}; eval accuracy "
                      f"{st['float_accuracy']:.2%} -> {st['accuracy']:.2%} ({drop:+.2f} points), LiteRT batch-1 "
                      f"p50 {st['float32_us']:.0f} us (float32) vs {st['pruned_int8_us']:.0f} us: "
                      f"{st['speedup']:.2f}x faster.", ""]
            if st.get("budget_trials"):
                lines += ["Budget search (validation drop after fine-tuning, points): " + ", ".join(
                    f"ratio {t['ratio']} -> {t['drop']:+.2f} ({'met' if t['met'] else 'over'})"
                    for t in st["budget_trials"]) + ". One-shot sensitivity scan: " + ", ".join(
                    f"{e['ratio']} -> {e['one_shot_drop']:+.1f}" for e in st.get("sensitivity_scan") or []) + ".", ""]
            if st.get("pruned_groups"):
                lines += ["Channels kept per pruned group (global ranking; kept / channels, first layer of each "
                          "group): " + ", ".join(f"{g['layers'][0]} {g['kept']}/{g['channels']}"
                                                 for g in st["pruned_groups"]) + ".", ""]
    return "\n".join(lines)


def _val_cell(row: dict) -> str:
    if row.get("val_agreement") is None:
        return ""
    counts = f" (+{row['val_gained']}/-{row['val_lost']})" if row.get("val_gained") is not None else ""
    return f"{row['val_agreement']:.2%}{counts}"


def checks(results: list[dict]) -> list[tuple[str, bool, str]]:
    out = []
    for r in [r for r in results if "rows" in r]:
        ours = r["rows"][-1]
        base = r["rows"][0]
        peers = [row for row in r["rows"] if row["row"].startswith(("TFLite", "ONNX", "NNCF"))]
        if r["model"] in ("mobilenet_v2", "mini_xception"):
            out.append((f"{r['model']}: agreement >= 97%", ours["agreement"] >= 0.97, f"{ours['agreement']:.2%}"))
        best_peer = max(peers, key=lambda p: p["agreement"])
        out.append((f"{r['model']}: agreement >= every peer default", ours["agreement"] >= best_peer["agreement"],
                    f"{ours['agreement']:.2%} vs best peer {best_peer['row']} {best_peer['agreement']:.2%}"))
        drop = (base["accuracy"] - ours["accuracy"]) * 100
        out.append((f"{r['model']}: accuracy drop <= 0.3 points", drop <= 0.3, f"{drop:+.2f} points"))
        st = r.get("structured")
        if st:
            drop = (st["float_accuracy"] - st["accuracy"]) * 100
            out.append((f"{r['model']}: structured pruning + int8 >= 1.5x faster than float32 at <= 1 point drop",
                        bool(st["budget_met"]) and st["speedup"] >= 1.5 and drop <= 1.0,
                        f"{st['speedup']:.2f}x, {drop:+.2f} points, pruning ratio {st['chosen_ratio']} "
                        f"(budget met: {st['budget_met']})"))
        if r["params"] >= 50_000:
            ratio = r["float_size"] / ours["size"]
            out.append((f"{r['model']}: int8 >= 3.5x smaller", ratio >= 3.5, f"{ratio:.2f}x"))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--epochs", type=int, default=3, help="epochs for the Fashion-MNIST models")
    ap.add_argument("--train-limit", type=int, default=20000, help="Fashion-MNIST training images used")
    ap.add_argument("--eval-samples", type=int, default=2000)
    ap.add_argument("--calib-samples", type=int, default=200)
    ap.add_argument("--val-samples", type=int, default=2000,
                    help="validation rows the fixes (and the pruning budget) are chosen on")
    ap.add_argument("--mnv2-size", type=int, default=32, help="MobileNetV2 input side (Fashion-MNIST resized)")
    ap.add_argument("--adaround-iterations", type=int, default=150)
    ap.add_argument("--fixes", default=",".join(FIX_ROWS))
    ap.add_argument("--latency-rounds", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS / "peers"))
    ap.add_argument("--structured", action="store_true", help="mobilenet_v2: also budget-aware structured "
                    "pruning + int8 of the model wrapped as a layer, against float32 in LiteRT")
    ap.add_argument("--structured-only", action="store_true", help="only the structured pruning row "
                    "(combine with an earlier run's JSON by --from-json)")
    ap.add_argument("--structured-budget", type=float, default=0.7,
                    help="prune-structured max_accuracy_drop (points, validation; int8 then adds its own)")
    ap.add_argument("--structured-epochs", type=int, default=1, help="fine-tuning epochs per budget trial")
    ap.add_argument("--structured-trials", type=int, default=3, help="fine-tuned ratios the budget search measures")
    ap.add_argument("--model-cache", default="", help="folder for the trained models: a model trained by an "
                    "earlier run with the same settings is loaded instead of trained again")
    ap.add_argument("--benchmarks-md", default="", help="append the table to this BENCHMARKS.md")
    ap.add_argument("--from-json", default="", help="comma-separated peers.json files of earlier runs "
                    "(e.g. models run in parallel processes): combine them instead of measuring")
    args = ap.parse_args(argv)
    args.fixes = tuple(f for f in args.fixes.split(",") if f)
    args.structured = args.structured or args.structured_only
    from edgeopt.measure.env import cpu_info

    env = f"{cpu_info().get('model', 'unknown CPU')} ({os.cpu_count()} cores)"
    results = []
    if args.from_json:
        for f in args.from_json.split(","):
            saved = json.loads(Path(f).read_text())
            env = saved["env"]
            for r in saved["results"]:  # a --structured-only result adds its row to the model's result
                same = next((old for old in results if old["model"] == r["model"]), None)
                if same is None:
                    results.append(r)
                else:
                    same.update(r)
    with tempfile.TemporaryDirectory() as tmp:
        for name in [m for m in args.models.split(",") if m and not args.from_json]:
            t0 = time.perf_counter()
            try:
                results.append(run_model(name, args, Path(tmp)))
            except Exception as e:  # keep the other models' rows; say what failed
                import traceback

                traceback.print_exc()
                print(f"error: {name} failed: {type(e).__name__}: {e}", flush=True)
                continue
            print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    md = markdown(results, env, args)
    cks = checks(results)
    md += "\n#### Done-when checks\n\n" + "\n".join(
        f"- [{'x' if ok else ' '}] {what}: {detail}" for what, ok, detail in cks) + "\n"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(md)
    out.with_suffix(".json").write_text(json.dumps({"env": env, "results": results}, indent=1, default=str))
    if args.benchmarks_md:
        with open(args.benchmarks_md, "a") as f:
            f.write("\n" + md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
