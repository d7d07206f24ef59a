"""A generated detection set: circles, squares and triangles in random colours on textured
backgrounds (stripes, checks, smooth noise), 1-3 objects per 64x64 image, with their boxes; and the
single-shot target grid (one object per cell)."""
from __future__ import annotations

import numpy as np

CLASSES = ["circle", "square", "triangle"]
SIZE, GRID = 64, 8
CELL = SIZE // GRID
CHANNELS = 5 + len(CLASSES)  # objectness, x/y in the cell, w/h of the image, class one-hot


def _background(rng) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    base, other = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    kind = rng.integers(3)
    if kind == 0:  # stripes at a random angle
        a, f = rng.uniform(0, np.pi), rng.uniform(4, 12)
        mix = (np.sin(2 * np.pi * f * (x * np.cos(a) + y * np.sin(a))) > 0).astype(float)
    elif kind == 1:  # checks
        f = rng.integers(3, 9)
        mix = ((np.floor(x * f) + np.floor(y * f)) % 2).astype(float)
    else:  # smooth noise
        coarse = rng.uniform(0, 1, (5, 5))
        mix = np.kron(coarse, np.ones((SIZE // 4, SIZE // 4)))[:SIZE, :SIZE]
    mix = 0.35 * mix
    img = base[None, None] * (1 - mix[..., None]) + other[None, None] * mix[..., None]
    return img + rng.normal(0, 0.04, img.shape)


def _draw(img: np.ndarray, kind: int, box, color) -> None:
    from PIL import Image, ImageDraw

    mask = Image.new("L", (SIZE, SIZE), 0)
    draw = ImageDraw.Draw(mask)
    x0, y0, x1, y1 = box
    if kind == 0:
        draw.ellipse([x0, y0, x1, y1], fill=255)
    elif kind == 1:
        draw.rectangle([x0, y0, x1, y1], fill=255)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=255)
    m = np.asarray(mask, np.float32)[..., None] / 255.0
    img[:] = img * (1 - m) + np.asarray(color)[None, None] * m


def make_image(rng) -> tuple[np.ndarray, list[tuple[int, float, float, float, float]]]:
    """(64, 64, 3) float32 in [0, 1] and its objects as (class, x0, y0, x1, y1) in pixels."""
    img = _background(rng)
    objects, used = [], set()
    for _ in range(rng.integers(1, 4)):
        for _try in range(20):
            s = rng.uniform(12, 26)
            x0, y0 = rng.uniform(0, SIZE - s), rng.uniform(0, SIZE - s)
            cell = (int((y0 + s / 2) // CELL), int((x0 + s / 2) // CELL))
            overlap = any(not (x0 + s < a or a2 < x0 or y0 + s < b or b2 < y0) for _, a, b, a2, b2 in objects)
            if cell not in used and not overlap:
                break
        else:
            continue
        kind = int(rng.integers(len(CLASSES)))
        color = rng.uniform(0, 1, 3)
        while np.abs(color - img[int(y0 + s / 2), int(x0 + s / 2)]).sum() < 0.8:  # keep it visible
            color = rng.uniform(0, 1, 3)
        _draw(img, kind, (x0, y0, x0 + s, y0 + s), color)
        used.add(cell)
        objects.append((kind, x0, y0, x0 + s, y0 + s))
    return np.clip(img, 0, 1).astype(np.float32), objects


def target_grid(objects) -> np.ndarray:
    """(GRID, GRID, CHANNELS) training target: each object in the cell holding its centre."""
    grid = np.zeros((GRID, GRID, CHANNELS), np.float32)
    for kind, x0, y0, x1, y1 in objects:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        r, c = int(cy // CELL), int(cx // CELL)
        grid[r, c, :5] = [1.0, cx / CELL - c, cy / CELL - r, (x1 - x0) / SIZE, (y1 - y0) / SIZE]
        grid[r, c, 5 + kind] = 1.0
    return grid


def make_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images, grids = zip(*[(img, target_grid(objs)) for img, objs in (make_image(rng) for _ in range(n))])
    return np.stack(images), np.stack(grids)


def decode(grid: np.ndarray, threshold: float = 0.05) -> list[tuple[int, float, list[float]]]:
    """Detections of one output grid: (class, score, [x, y, w, h] in pixels), after per-class NMS."""
    dets = []
    for r, c in zip(*np.nonzero(grid[..., 0] >= threshold)):
        obj, dx, dy, w, h = grid[r, c, :5]
        probs = grid[r, c, 5:]
        kind = int(probs.argmax())
        cx, cy, bw, bh = (c + dx) * CELL, (r + dy) * CELL, w * SIZE, h * SIZE
        dets.append((kind, float(obj * probs[kind]), [cx - bw / 2, cy - bh / 2, bw, bh]))
    return nms(dets)


def _iou(a, b) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw, ih = max(0.0, min(ax1, bx1) - max(a[0], b[0])), max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter + 1e-9)


def nms(dets, iou: float = 0.5):
    keep = []
    for d in sorted(dets, key=lambda d: -d[1]):
        if all(k[0] != d[0] or _iou(k[2], d[2]) < iou for k in keep):
            keep.append(d)
    return keep
