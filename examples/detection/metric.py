"""mAP of the shapes detector with pycocotools (the COCO evaluation code).

``metric(y_true, y_pred) -> dict`` takes the target grids and the model's output grids, both
(N, 8, 8, 8), so it can be handed to edgeopt as a custom metric once edgeopt accepts one
(``--metric module:function``); until then the example calls it on the LiteRT outputs itself.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np

from shapes import CLASSES, SIZE, decode


def _coco(y_true: np.ndarray, y_pred: np.ndarray):
    from pycocotools.coco import COCO

    images, annotations, results = [], [], []
    for i, (gt, pred) in enumerate(zip(y_true, y_pred)):
        images.append({"id": i, "width": SIZE, "height": SIZE})
        for kind, _, box in decode(gt, threshold=0.5):
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": kind, "bbox": box,
                                "area": box[2] * box[3], "iscrowd": 0})
        results += [{"image_id": i, "category_id": kind, "bbox": box, "score": score}
                    for kind, score, box in decode(pred)]
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations,
                  "categories": [{"id": k, "name": n} for k, n in enumerate(CLASSES)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(results) if results else None
    return gt, dt


def metric(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """COCO mAP@0.5 and mAP@[0.5:0.95] (all areas, up to 100 detections per image).

    y_true: (N, 8, 8, 8) target grids; y_pred: (N, 8, 8, 8) model outputs (objectness, box, class
    probabilities per cell). Returns {"map50": float, "map50_95": float, "detections": int}.
    """
    from pycocotools.cocoeval import COCOeval

    gt, dt = _coco(np.asarray(y_true), np.asarray(y_pred, np.float32))
    if dt is None:
        return {"map50": 0.0, "map50_95": 0.0, "detections": 0}
    ev = COCOeval(gt, dt, "bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"map50": float(ev.stats[1]), "map50_95": float(ev.stats[0]), "detections": len(dt.anns)}
