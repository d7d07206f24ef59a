"""Gesture recognition from an IMU (accelerometer + gyroscope) on a Cortex-M4 board, end to end.

    python examples/gesture/run.py [--small] --out runs/examples/gesture

The data are generated from parametric gesture shapes (50 Hz, 2 s windows, 6 channels) with
per-subject variation (amplitude, tempo, how the board is held) and sensor noise and bias; the
test set is made of subjects never seen in training. A small Conv1D network is trained, quantized to
int8 and measured by edgeopt, estimated on an STM32L4R5 (Cortex-M4F, 120 MHz) and exported as a
C array and sketch.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import common  # noqa: E402

GESTURES = ["idle", "wave", "circle", "punch", "lift", "shake"]
CHANNELS = ["ax", "ay", "az", "gx", "gy", "gz"]  # g and (deg/s) / 100
RATE_HZ, STEPS = 50, 100
DEVICE = "stm32l4r5"
INFERENCES_PER_HOUR = 1800
BATTERY_MAH = 500


def _rotation(rng, max_deg: float) -> np.ndarray:
    """A random rotation (how the subject holds the board) within max_deg about each axis."""
    ax, ay, az = np.radians(rng.uniform(-max_deg, max_deg, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def gesture_shape(kind: int, t: np.ndarray, freq: float, amp: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Linear acceleration (g) and angular rate ((deg/s)/100), each (3, T), of one gesture."""
    acc, gyro = np.zeros((3, len(t))), np.zeros((3, len(t)))
    onset = rng.uniform(0, 0.4)
    w = 2 * np.pi * freq
    tt = np.clip(t - onset, 0, None)
    envelope = np.sin(np.pi * np.clip(tt / 1.5, 0, 1)) ** 2  # the movement lasts ~1.5 s
    name = GESTURES[kind]
    if name == "wave":
        acc[0] = amp * np.sin(w * tt) * envelope
        gyro[2] = 1.5 * amp * np.cos(w * tt) * envelope
    elif name == "circle":
        acc[0], acc[1] = amp * np.cos(w * tt) * envelope, amp * np.sin(w * tt) * envelope
        gyro[0], gyro[1] = 0.8 * amp * np.sin(w * tt) * envelope, -0.8 * amp * np.cos(w * tt) * envelope
    elif name == "punch":
        peak = onset + rng.uniform(0.3, 0.8)
        pulse = np.exp(-((t - peak) / (0.06 / freq)) ** 2)
        acc[1] = 2.5 * amp * (pulse - np.exp(-((t - peak - 0.15) / (0.08 / freq)) ** 2))
        gyro[0] = 0.5 * amp * pulse
    elif name == "lift":
        acc[2] = amp * np.sin(0.5 * w * tt) * envelope
        gyro[1] = 0.6 * amp * np.cos(0.5 * w * tt) * envelope
    elif name == "shake":
        acc[0] = 0.8 * amp * np.sign(np.sin(3 * w * tt)) * envelope
        acc[1] = 0.3 * amp * np.sin(3 * w * tt + 1) * envelope
        gyro[2] = 2.0 * amp * np.sin(3 * w * tt + 0.5) * envelope
    return acc, gyro


def make_data(small: bool, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 100, 6) windows, (N,) labels, (N,) subject ids."""
    rng = np.random.default_rng(seed)
    subjects = 12 if small else 30
    reps = 6 if small else 14
    t = np.arange(STEPS) / RATE_HZ
    xs, ys, subj = [], [], []
    for s in range(subjects):  # a subject: own amplitude, tempo, grip and sensor bias
        amp_s, tempo_s, grip = rng.uniform(0.6, 1.4), rng.uniform(0.7, 1.3), _rotation(rng, 25)
        bias = rng.normal(0, 0.03, 6)
        for kind in range(len(GESTURES)):
            for _ in range(reps):
                acc, gyro = gesture_shape(kind, t, 1.2 * tempo_s * rng.uniform(0.85, 1.15),
                                          amp_s * rng.uniform(0.8, 1.2), rng)
                acc = grip @ (acc + np.array([[0.0], [0.0], [1.0]]))  # gravity, then the grip
                gyro = grip @ gyro
                window = np.concatenate([acc, gyro]).T + bias + rng.normal(0, 0.05, (STEPS, 6))
                xs.append(window)
                ys.append(kind)
                subj.append(s)
    return np.asarray(xs, np.float32), np.asarray(ys, np.int64), np.asarray(subj)


def conv1d_net(num_classes: int, width: int):
    import keras
    from keras import layers

    inp = keras.Input((STEPS, len(CHANNELS)))
    x = layers.Conv1D(width, 5, padding="same", activation="relu")(inp)
    x = layers.MaxPooling1D(2)(x)
    x = layers.Conv1D(2 * width, 5, padding="same", activation="relu")(x)
    x = layers.MaxPooling1D(2)(x)
    x = layers.Conv1D(2 * width, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling1D()(x)
    out = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inp, out, name="gesture_conv1d")


def picture(out: Path, x, y) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(GESTURES), figsize=(13, 4), sharex=True)
    t = np.arange(STEPS) / RATE_HZ
    for k, name in enumerate(GESTURES):
        sample = x[np.flatnonzero(y == k)[0]]
        for c in range(3):
            axes[0, k].plot(t, sample[:, c], lw=0.8, label=CHANNELS[c])
            axes[1, k].plot(t, sample[:, 3 + c], lw=0.8, label=CHANNELS[3 + c])
        axes[0, k].set_title(name)
        axes[1, k].set_xlabel("s")
    axes[0, 0].set_ylabel("acceleration (g)")
    axes[1, 0].set_ylabel("gyro (deg/s / 100)")
    axes[0, -1].legend(fontsize=7)
    axes[1, -1].legend(fontsize=7)
    fig.tight_layout()
    path = out / "gesture_traces.png"
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path


def main(argv=None) -> dict:
    args = common.parse_args(argv, __doc__.splitlines()[0], "runs/examples/gesture")
    common.seed_everything(args.seed)
    x, y, subj = make_data(args.small, args.seed)
    ids = np.random.default_rng(args.seed).permutation(subj.max() + 1)
    n_test, n_val = max(2, len(ids) // 5), max(1, len(ids) // 8)
    test_s, val_s = ids[:n_test], ids[n_test:n_test + n_val]
    te, va = np.flatnonzero(np.isin(subj, test_s)), np.flatnonzero(np.isin(subj, val_s))
    tr = np.flatnonzero(~np.isin(subj, np.concatenate([test_s, val_s])))
    model = conv1d_net(len(GESTURES), width=16)
    common.train(model, x[tr], y[tr], x[va], y[va], epochs=40, batch=32)
    data = common.edgeopt_dataset("imu-gestures", x, y, (tr, va, te), class_names=GESTURES)
    record = common.optimize(model, data, args.out, ["int8"], runs=30 if args.small else 200)
    f32, i8 = common.variant(record, "float32"), common.variant(record, "int8")
    est = common.estimate(i8["path"], DEVICE, battery_mah=BATTERY_MAH, inferences_per_hour=INFERENCES_PER_HOUR)
    files = common.export_mcu(i8["path"], args.out / "deploy", "gesture_model")
    results = {
        "example": "gesture", "small": args.small, "gestures": GESTURES, "channels": CHANNELS,
        "subjects": int(subj.max() + 1), "test_subjects": sorted(int(s) for s in test_s),
        "train/val/test": [len(tr), len(va), len(te)], "chance": 1 / len(GESTURES),
        "float32_accuracy": f32["metrics"]["accuracy"], "int8_accuracy": i8["metrics"]["accuracy"],
        "int8_size_bytes": i8["metrics"]["size_bytes"], "tflm_arena_bytes": i8["metrics"].get("tflm_arena_bytes"),
        "macs": i8["metrics"].get("macs"), "ops": sorted({op for op in _op_types(i8["path"])}),
        "device": DEVICE, "estimate": est, "fits": est["fits"] and est["runnable"],
        "inferences_per_hour": INFERENCES_PER_HOUR, "battery_mah": BATTERY_MAH,
        "deploy_files": [str(p) for p in files], "pictures": [str(picture(args.out, x, y))], "run": record["_dir"],
    }
    write_results(args.out, results)
    return results


def _op_types(path: Path) -> list[str]:
    from edgeopt.measure.graph import profile_path

    return [op.op_type for op in profile_path(Path(path), measure_arena=False).ops]


def write_results(out: Path, r: dict) -> None:
    table = common.mcu_table(r, "accuracy (unseen subjects, LiteRT)")
    n = r["train/val/test"]
    table += (f"\n\n{len(r['gestures'])} gestures (chance {r['chance']:.0%}), {r['subjects']} generated subjects, "
              f"windows train/val/test {n[0]}/{n[1]}/{n[2]} (test subjects unseen); Conv1D {r['macs']:,} MACs, "
              f"int8 ops: {', '.join(r['ops'])}. Estimates are edgeopt's, not board measurements.")
    common.write_results(out, r, table)


if __name__ == "__main__":
    main()
