"""Voice activation (keyword spotting) on an Arduino Nano 33 BLE Sense, end to end.

    python examples/kws/run.py [--small] --out runs/examples/kws

espeak-ng + sox make the audio, librosa the MFCCs, Keras trains a DS-CNN ("Hello Edge", Zhang et al.
2017, arXiv:1711.07128), edgeopt quantizes it to int8 and measures it (LiteRT accuracy and TFLite
Micro arena), estimates it on the board, and exports the C array and sketch; feature_params.h beside
the sketch holds the MFCC parameters the model was trained on.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import common  # noqa: E402

DEVICE = "arduino-nano-33-ble-sense"
POWER_FILE = Path(__file__).with_name("nano33_power.yaml")
INFERENCES_PER_HOUR = 3600  # one keyword check a second
BATTERY_MAH = 500


def ds_cnn(input_shape, num_classes: int, width: int, blocks: int):
    """DS-CNN: a strided conv, then depthwise-separable blocks, average pooling and a classifier."""
    import keras
    from keras import layers

    inp = keras.Input(input_shape)
    x = layers.Conv2D(width, (10, 4), strides=(2, 2), padding="same", use_bias=False)(inp)
    x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
    for _ in range(blocks):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
        x = layers.Conv2D(width, 1, use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inp, out, name="ds_cnn")


def pictures(out: Path, clip, cm, classes) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from features import PARAMS, log_mel

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3))
    a.plot(np.arange(len(clip)) / PARAMS["sample_rate"], clip, lw=0.5)
    a.set(title='"yes" (espeak-ng + sox noise)', xlabel="s")
    b.imshow(log_mel(clip), origin="lower", aspect="auto", cmap="magma",
             extent=[0, 1, 0, PARAMS["n_mels"]])
    b.set(title="log-mel spectrogram (dB)", xlabel="s", ylabel="mel band")
    fig.tight_layout()
    paths = [out / "kws_spectrogram.png"]
    fig.savefig(paths[0], dpi=80)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(cm, cmap="Blues")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted", ylabel="true",
           title="int8 model, test set (LiteRT)")
    ax.set_xticklabels(classes, rotation=60, fontsize=7)
    ax.set_yticklabels(classes, fontsize=7)
    for (i, j), v in np.ndenumerate(cm):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=6, color="w" if v > cm.max() / 2 else "k")
    fig.tight_layout()
    paths.append(out / "kws_confusion.png")
    fig.savefig(paths[1], dpi=80)
    plt.close("all")
    return paths


def main(argv=None) -> dict:
    args = common.parse_args(argv, __doc__.splitlines()[0], "runs/examples/kws")
    sys.path.insert(0, str(Path(__file__).parent))
    import features
    import synth

    common.seed_everything(args.seed)
    clips, labels, info = synth.synthesize(args.small, args.seed)
    x = features.mfcc(clips)
    idx = common.split(len(x), args.seed)
    mean, std = float(x[idx[0]].mean()), float(x[idx[0]].std())
    x = (x - mean) / std
    model = ds_cnn(x.shape[1:], len(synth.CLASSES), width=32 if args.small else 64, blocks=2 if args.small else 4)
    tr, va, te = idx
    common.train(model, x[tr], labels[tr], x[va], labels[va], epochs=30, batch=16 if args.small else 32)
    data = common.edgeopt_dataset("espeak-kws", x, labels, idx, class_names=synth.CLASSES)
    record = common.optimize(model, data, args.out, ["int8"], runs=30 if args.small else 200)
    f32, i8 = common.variant(record, "float32"), common.variant(record, "int8")
    est = common.estimate(i8["path"], DEVICE, devices_file=POWER_FILE, battery_mah=BATTERY_MAH,
                          inferences_per_hour=INFERENCES_PER_HOUR)
    deploy = args.out / "deploy"
    files = common.export_mcu(i8["path"], deploy, "kws_model")
    files.append(features.write_header(deploy / "feature_params.h", mean, std, synth.CLASSES))
    pred = common.litert_predict(i8["path"], x[te]).argmax(1)
    cm = np.zeros((len(synth.CLASSES),) * 2, int)
    np.add.at(cm, (labels[te], pred), 1)
    first_yes = int(np.flatnonzero(labels == 0)[0])
    pics = pictures(args.out, clips[first_yes], cm, synth.CLASSES)
    results = {
        "example": "kws", "small": args.small, "data": info, "classes": synth.CLASSES,
        "train/val/test": [len(tr), len(va), len(te)], "feature_params": features.PARAMS,
        "float32_accuracy": f32["metrics"]["accuracy"], "int8_accuracy": i8["metrics"]["accuracy"],
        "chance": 1 / len(synth.CLASSES), "int8_size_bytes": i8["metrics"]["size_bytes"],
        "tflm_arena_bytes": i8["metrics"].get("tflm_arena_bytes"), "macs": i8["metrics"].get("macs"),
        "device": DEVICE, "estimate": est, "fits": est["fits"] and est["runnable"],
        "inferences_per_hour": INFERENCES_PER_HOUR, "battery_mah": BATTERY_MAH,
        "deploy_files": [str(p) for p in files], "pictures": [str(p) for p in pics], "run": record["_dir"],
    }
    write_results(args.out, results)
    return results


def write_results(out: Path, r: dict) -> None:
    table = common.mcu_table(r, "accuracy (test, LiteRT)")
    n = r["train/val/test"]
    table += (f"\n\n{len(r['classes'])} classes (chance {r['chance']:.0%}), {r['data']['clips']} clips "
              f"(train/val/test {n[0]}/{n[1]}/{n[2]}), {len(r['data']['voices'])} espeak-ng voice variants x "
              f"{len(r['data']['speeds_wpm'])} speeds; DS-CNN {r['macs']:,} MACs. Estimates are edgeopt's "
              f"(not measured on the board); battery life counts inference energy only (idle power "
              f"unknown), so it is an upper bound.")
    common.write_results(out, r, table)


if __name__ == "__main__":
    main()
