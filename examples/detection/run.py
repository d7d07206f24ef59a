"""Object detection: a small single-shot detector on generated shapes, full int8, Edge TPU readiness
and a Raspberry Pi-class CPU target.

    python examples/detection/run.py [--small] --out runs/examples/detection

A YOLO-style grid detector (one box per 8x8-pixel cell; Redmon et al. 2016, arXiv:1506.02640) is
trained on 64x64 images of circles, squares and triangles on textured backgrounds. edgeopt quantizes
it to full int8 (int8 inputs and outputs too, as the Edge TPU needs) and measures it; mAP@0.5 comes
from pycocotools on the LiteRT outputs of the float32 and int8 .tflite files (metric.py). edgeopt's
op tables and estimator then say which ops the Edge TPU takes and what a Raspberry Pi 4 would do.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


import common  # noqa: E402
from shapes import CHANNELS, CLASSES, GRID, SIZE, decode, make_set  # noqa: E402

EDGE_TPU, PI = "coral-usb-accelerator", "raspberry-pi-4"


def detector(width: int):
    import keras
    from keras import layers

    def block(x, filters, stride):
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        return layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))

    inp = keras.Input((SIZE, SIZE, 3))
    x = block(inp, width, 2)
    x = block(x, 2 * width, 2)
    x = block(x, 2 * width, 1)
    x = block(x, 4 * width, 2)
    x = block(x, 4 * width, 1)
    box = layers.Conv2D(5, 1, activation="sigmoid", name="objectness_box")(x)
    cls = layers.Conv2D(len(CLASSES), 1, activation="softmax", name="class_probs")(x)
    out = layers.Concatenate(name="detections")([box, cls])
    return keras.Model(inp, out, name="shapes_ssd")


def detection_loss(y_true, y_pred):
    """Objectness BCE on every cell; box MSE and class cross-entropy on cells holding an object."""
    from keras import ops

    eps = 1e-6
    obj = y_true[..., 0]
    p = ops.clip(y_pred[..., 0], eps, 1 - eps)
    bce = -(3.0 * obj * ops.log(p) + (1 - obj) * ops.log(1 - p))
    box = ops.sum(ops.square(y_true[..., 1:5] - y_pred[..., 1:5]), axis=-1) * 10.0
    cls = -ops.sum(y_true[..., 5:] * ops.log(ops.clip(y_pred[..., 5:], eps, 1.0)), axis=-1)
    return ops.mean(ops.sum(bce + obj * (box + cls), axis=(1, 2)))


def edge_tpu_ops(artifact: Path) -> list[dict]:
    """Each op of the .tflite: its precision and whether edgeopt's Edge TPU op table lists it."""
    from edgeopt.hardware.catalogue import op_list
    from edgeopt.measure.graph import profile_path

    table = op_list("edgetpu")
    rows = {}
    for op in profile_path(Path(artifact), measure_arena=False).ops:
        row = rows.setdefault(op.op_type, {"op": op.op_type, "count": 0, "dtypes": set(),
                                           "edge_tpu": op.op_type in table})
        row["count"] += 1
        row["dtypes"].add(op.dtype)
    return [{**r, "dtypes": sorted(r["dtypes"])} for r in rows.values()]


def picture(out: Path, images, y_true, y_pred) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(10, 2.9))
    colors = ["tab:red", "tab:blue", "tab:orange"]
    for ax, img, gt, pred in zip(axes, images, y_true, y_pred):
        ax.imshow(img)
        for _, _, (x, y, w, h) in decode(gt, 0.5):
            ax.add_patch(patches.Rectangle((x, y), w, h, fill=False, ec="lime", lw=2.5, ls="--"))
        for kind, score, (x, y, w, h) in decode(pred, 0.3):
            ax.add_patch(patches.Rectangle((x, y), w, h, fill=False, ec=colors[kind], lw=1.5))
            ax.text(x, y - 1, f"{CLASSES[kind]} {score:.2f}", color="w", fontsize=7,
                    bbox={"fc": colors[kind], "pad": 1, "ec": "none"})
        ax.axis("off")
    fig.suptitle("int8 detections (LiteRT); dashed green = ground truth", fontsize=9)
    fig.tight_layout()
    path = out / "detection_examples.png"
    fig.savefig(path, dpi=64)
    plt.close(fig)
    return path


def main(argv=None) -> dict:
    args = common.parse_args(argv, __doc__.splitlines()[0], "runs/examples/detection")
    from metric import metric

    common.seed_everything(args.seed)
    n = 600 if args.small else 3000
    x, y = make_set(n, args.seed)
    tr, va, te = common.split(n, args.seed)
    model = detector(width=12 if args.small else 16)
    common.train(model, x[tr], y[tr], x[va], y[va], epochs=25 if args.small else 40, batch=32,
                 loss=detection_loss, metrics=())
    # edgeopt scores every variant with mAP@0.5 through the custom metric (metric.py, pycocotools;
    # the same function `edgeopt optimize --metric examples/detection/metric.py:metric` loads).
    data = common.edgeopt_dataset("shapes-detection", x, y, (tr, va, te), task="regression")
    record = common.optimize(model, data, args.out, ["int8"], runs=30 if args.small else 200,
                             metric=f"{Path(__file__).with_name('metric.py')}:metric",
                             options={"int8_io": True})
    f32, i8 = common.variant(record, "float32"), common.variant(record, "int8")
    pred_f32 = common.litert_predict(f32["path"], x[te]).reshape(-1, GRID, GRID, CHANNELS)
    pred_i8 = common.litert_predict(i8["path"], x[te]).reshape(-1, GRID, GRID, CHANNELS)
    estimates = {f"{name}@{dev}": common.estimate(v["path"], dev)
                 for name, v in (("float32", f32), ("int8", i8)) for dev in (PI, EDGE_TPU)}
    results = {
        "example": "detection", "small": args.small, "classes": CLASSES, "images": n,
        "train/val/test": [len(tr), len(va), len(te)],
        "float32": metric(y[te], pred_f32), "int8": metric(y[te], pred_i8),
        "size_bytes": {"float32": f32["metrics"]["size_bytes"], "int8": i8["metrics"]["size_bytes"]},
        "host_p50_ms": {"float32": f32["metrics"]["latency_ms"]["p50_ms"],
                        "int8": i8["metrics"]["latency_ms"]["p50_ms"]},
        "host_cpu": i8["metrics"]["how"]["cpu"], "macs": i8["metrics"].get("macs"),
        "edge_tpu_ops": edge_tpu_ops(i8["path"]), "estimates": estimates,
        "pictures": [str(picture(args.out, x[te][:4], y[te][:4], pred_i8[:4]))], "run": record["_dir"],
    }
    write_results(args.out, results)
    return results


def write_results(out: Path, r: dict) -> None:
    rows = []
    for name in ("float32", "int8"):
        pi, tpu = r["estimates"][f"{name}@{PI}"], r["estimates"][f"{name}@{EDGE_TPU}"]
        tpu_note = "; ".join(tpu["blockers"] + tpu["warnings"]) or "all ops on the Edge TPU"
        rows.append([name, f"{r[name]['map50']:.3f}", f"{r[name]['map50_95']:.3f}", common.fmt_bytes(r["size_bytes"][name]),
                     f"{r['host_p50_ms'][name]:.3f}", common.fmt_latency(pi),
                     common.fmt_latency(tpu) if tpu["runnable"] else "-",
                     ("yes" if tpu["runnable"] and tpu["fits"] else "NO") + f" ({tpu_note})"])
    table = common.markdown_table(["model", "mAP@0.5", "mAP@[.5:.95]", "size", "host p50 ms (LiteRT, 1 thread)",
                                   f"est. ms {PI}", f"est. ms {EDGE_TPU}", "runs on the Edge TPU?"], rows)
    ops = common.markdown_table(["op (int8 model)", "count", "precision", "in edgeopt's Edge TPU op table"],
                                [[o["op"], o["count"], ", ".join(o["dtypes"]), "yes" if o["edge_tpu"] else "no"]
                                 for o in r["edge_tpu_ops"]])
    n = r["train/val/test"]
    table += (f"\n\n{r['images']} generated images (train/val/test {n[0]}/{n[1]}/{n[2]}), 3 classes, "
              f"{r['macs']:,} MACs; mAP by pycocotools on the LiteRT outputs; host CPU: {r['host_cpu']}. "
              f"Pi and Edge TPU figures are edgeopt estimates.\n\n" + ops)
    common.write_results(out, r, table)


if __name__ == "__main__":
    main()
