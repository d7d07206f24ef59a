"""Waste sorter: train the classifier, optimize it with edgeopt, and set up the app.

    python examples/waste_sorter/run.py [--small] --out runs/examples/waste_sorter
    python examples/waste_sorter/app.py serve --config runs/examples/waste_sorter/config.yaml

Trains a small CNN on generated photos of six waste subclasses (three biodegradable, three not),
quantizes it to int8 with edgeopt (measured in LiteRT), estimates it on a Raspberry Pi 4 (the app's
host) and an ESP32-S3 (an embedded camera board), copies the .tflite files and the config next to a
few sample photos, classifies them with the app, and screenshots the app's page in headless Chromium.
"""
from __future__ import annotations

import shutil
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import common  # noqa: E402
from images import SUBCLASSES, make_set  # noqa: E402

DEVICES = ["raspberry-pi-4", "esp32-s3"]


def cnn(input_shape, num_classes: int, width: int):
    import keras
    from keras import layers

    inp = keras.Input(input_shape)
    x = inp
    for i, f in enumerate((width, 2 * width, 4 * width)):
        x = layers.Conv2D(f, 3, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
        x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(4 * width, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inp, out, name="waste_cnn")


def install_app(out: Path, f32: dict, i8: dict, x_test, y_test) -> tuple[Path, list[Path]]:
    """Copy the models, write config.yaml (model = the int8 file) and one sample photo per subclass."""
    import yaml
    from PIL import Image

    shutil.copyfile(i8["path"], out / "model_int8.tflite")
    shutil.copyfile(f32["path"], out / "model_float32.tflite")
    cfg = yaml.safe_load((HERE / "config.yaml").read_text())
    cfg["model"] = "model_int8.tflite"
    config = out / "config.yaml"
    config.write_text("# Copied from examples/waste_sorter/config.yaml by run.py; edit freely.\n"
                      + yaml.safe_dump(cfg, sort_keys=False))
    samples = out / "samples"
    samples.mkdir(exist_ok=True)
    paths = []
    for k, name in enumerate(SUBCLASSES):
        img = x_test[np.flatnonzero(y_test == k)[0]]
        paths.append(samples / f"{name}.png")
        Image.fromarray((img * 255).round().astype(np.uint8)).save(paths[-1])
    return config, paths


def try_app(config: Path, samples: list[Path], out: Path) -> dict:
    """Classify the samples with the app, serve its page on 127.0.0.1 and screenshot it."""
    import app
    import browser

    sorter = app.Sorter(app.load_config(config))
    answers = {p.stem: sorter.classify(p.read_bytes()) for p in samples}
    shot = None
    if browser.chromium():
        server = app.make_server(sorter, 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/?sample=leaf.png"
            shot = str(browser.screenshot(url, out / "waste_sorter_page.png"))
        finally:
            server.shutdown()
            server.server_close()
    return {"answers": answers, "screenshot": shot}


def main(argv=None) -> dict:
    args = common.parse_args(argv, __doc__.splitlines()[0], "runs/examples/waste_sorter")
    common.seed_everything(args.seed)
    x, y = make_set(60 if args.small else 300, args.seed)
    tr, va, te = common.split(len(x), args.seed)
    model = cnn(x.shape[1:], len(SUBCLASSES), width=8 if args.small else 16)
    common.train(model, x[tr], y[tr], x[va], y[va], epochs=25 if args.small else 30, batch=32)
    data = common.edgeopt_dataset("generated-waste", x, y, (tr, va, te), class_names=SUBCLASSES)
    record = common.optimize(model, data, args.out, ["int8"], runs=30 if args.small else 200)
    f32, i8 = common.variant(record, "float32"), common.variant(record, "int8")
    config, samples = install_app(args.out, f32, i8, x[te], y[te])
    app_check = try_app(config, samples, args.out)
    pred = common.litert_predict(i8["path"], x[te]).argmax(1)
    bio = np.arange(len(SUBCLASSES)) < 3  # the first three subclasses are biodegradable
    results = {
        "example": "waste_sorter", "small": args.small, "subclasses": SUBCLASSES, "images": len(x),
        "train/val/test": [len(tr), len(va), len(te)], "chance": 1 / len(SUBCLASSES),
        "float32_accuracy": f32["metrics"]["accuracy"], "int8_accuracy": i8["metrics"]["accuracy"],
        "int8_type_accuracy": float((bio[pred] == bio[y[te]]).mean()),
        "size_bytes": {"float32": f32["metrics"]["size_bytes"], "int8": i8["metrics"]["size_bytes"]},
        "host_p50_ms": {"float32": f32["metrics"]["latency_ms"]["p50_ms"],
                        "int8": i8["metrics"]["latency_ms"]["p50_ms"]},
        "host_cpu": i8["metrics"]["how"]["cpu"], "tflm_arena_bytes": i8["metrics"].get("tflm_arena_bytes"),
        "estimates": {d: common.estimate(i8["path"], d) for d in DEVICES},
        "config": str(config), "app": app_check, "run": record["_dir"],
        "pictures": [app_check["screenshot"]] if app_check["screenshot"] else [],
    }
    write_results(args.out, results)
    return results


def write_results(out: Path, r: dict) -> None:
    rows = [[name, f"{r[f'{name}_accuracy']:.2%}", common.fmt_bytes(r["size_bytes"][name]),
             f"{r['host_p50_ms'][name]:.3f}"] for name in ("float32", "int8")]
    for row in rows:
        for d in DEVICES:
            e = r["estimates"][d]
            row.append("-" if row[0] == "float32" else
                       f"{common.fmt_latency(e)} ms; fits: {common.fmt_fits(e)}")
    table = common.markdown_table(["model", "subclass accuracy (test, LiteRT)", "size", "host p50 ms (LiteRT)"]
                                  + [f"est. {d} (int8)" for d in DEVICES], rows)
    n = r["train/val/test"]
    app_lines = [f"- `{name}.png`: {_describe(a)}" for name, a in r["app"]["answers"].items()]
    table += (f"\n\n6 subclasses (chance {r['chance']:.0%}), {r['images']} generated photos (train/val/test "
              f"{n[0]}/{n[1]}/{n[2]}); int8 waste-type (biodegradable or not) accuracy "
              f"{r['int8_type_accuracy']:.2%}; TFLM arena {common.fmt_bytes(r['tflm_arena_bytes'])}; host CPU: "
              f"{r['host_cpu']}. The app on the sample photos (int8 model):\n\n" + "\n".join(app_lines))
    common.write_results(out, r, table)


def _describe(result: dict) -> str:
    import app

    return app.describe(result)


if __name__ == "__main__":
    main()
