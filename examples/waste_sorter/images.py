"""Generated photos of waste items on a conveyor belt: three biodegradable subclasses (food, leaf,
paper) and three non-biodegradable ones (plastic bottle, can, glass bottle), drawn with Pillow in
random sizes, positions, angles, colours and lighting."""
from __future__ import annotations

import numpy as np

SUBCLASSES = ["food", "leaf", "paper", "plastic_bottle", "can", "glass_bottle"]
SIZE = 48


def _bottle(draw, rng, s, body, cap, neck: float) -> None:
    c = s / 2
    w, h = rng.uniform(0.22, 0.3) * s, rng.uniform(0.55, 0.7) * s
    top = c - h / 2
    draw.rounded_rectangle([c - w / 2, top + neck * h, c + w / 2, c + h / 2], radius=w / 3, fill=body)
    draw.rectangle([c - w / 5, top, c + w / 5, top + neck * h + 2], fill=body)
    draw.rectangle([c - w / 4, top - 3, c + w / 4, top + 2], fill=cap)
    draw.line([c - w / 4, top + neck * h + 4, c - w / 4, c + h / 2 - 4], fill=(255, 255, 255, 150), width=2)


def _item(kind: str, rng, s: int):
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    c, jitter = s / 2, lambda: tuple(int(v) for v in rng.integers(-25, 26, 3))
    shade = lambda rgb, a=255: tuple(int(np.clip(v + j, 0, 255)) for v, j in zip(rgb, jitter())) + (a,)
    if kind == "food":  # a fruit or peel: round, warm colour, a stem
        r = rng.uniform(0.25, 0.38) * s
        base = [(230, 120, 30), (200, 40, 40), (230, 200, 50), (120, 180, 60)][rng.integers(4)]
        d.ellipse([c - r, c - r * rng.uniform(0.7, 1), c + r, c + r], fill=shade(base))
        d.line([c, c - r, c + 3, c - r - 5], fill=(90, 60, 20, 255), width=2)
        d.ellipse([c - r / 2, c - r / 2, c - r / 4, c - r / 4], fill=(255, 255, 255, 90))
    elif kind == "leaf":
        w, h = rng.uniform(0.18, 0.26) * s, rng.uniform(0.38, 0.46) * s
        d.ellipse([c - w, c - h, c + w, c + h], fill=shade((60, 150, 50)))
        d.line([c, c - h, c, c + h + 4], fill=shade((40, 90, 30)), width=2)
        for k in (-0.5, 0, 0.5):
            d.line([c, c + k * h, c + w * 0.8, c + k * h - h * 0.3], fill=shade((40, 100, 30)), width=1)
            d.line([c, c + k * h, c - w * 0.8, c + k * h - h * 0.3], fill=shade((40, 100, 30)), width=1)
    elif kind == "paper":
        w, h = rng.uniform(0.3, 0.4) * s, rng.uniform(0.38, 0.46) * s
        d.rectangle([c - w, c - h, c + w, c + h], fill=shade((235, 230, 215)))
        for y in np.arange(c - h + 5, c + h - 3, 4):
            d.line([c - w + 4, y, c + w * rng.uniform(0.2, 0.8), y], fill=(110, 110, 110, 255), width=1)
    elif kind == "plastic_bottle":
        _bottle(d, rng, s, shade((150, 200, 235), 190), shade((30, 90, 200)), neck=0.25)
    elif kind == "can":
        w, h = rng.uniform(0.2, 0.26) * s, rng.uniform(0.32, 0.4) * s
        body = shade([(200, 200, 205), (190, 30, 30), (30, 60, 170)][rng.integers(3)])
        d.rectangle([c - w, c - h, c + w, c + h], fill=body)
        d.ellipse([c - w, c - h - 4, c + w, c - h + 4], fill=(215, 215, 220, 255))
        d.ellipse([c - w, c + h - 4, c + w, c + h + 4], fill=body)
        d.rectangle([c - w / 2, c - h, c - w / 4, c + h], fill=(255, 255, 255, 110))
    else:  # glass bottle: dark green or brown, long neck
        _bottle(d, rng, s, shade([(40, 110, 50), (110, 60, 20), (200, 215, 210)][rng.integers(3)], 230),
                shade((170, 170, 60)), neck=0.45)
    return img.rotate(rng.uniform(0, 360), resample=Image.BILINEAR)


def make_image(kind: str, rng) -> np.ndarray:
    """(48, 48, 3) float32 in [0, 1]: a belt background, the item, lighting and sensor noise."""
    from PIL import Image

    belt = np.clip(rng.uniform(0.15, 0.5) + rng.normal(0, 0.05, (SIZE, SIZE, 1)), 0, 1)
    belt = belt * rng.uniform(0.85, 1.0, 3)
    if rng.random() < 0.5:  # belt seams
        belt[:, int(rng.integers(SIZE)), :] *= 0.6
    bg = Image.fromarray((belt * 255).astype(np.uint8))
    s = int(rng.integers(34, 46))
    item = _item(kind, rng, s)
    bg.paste(item, (int(rng.integers(0, SIZE - s + 1)), int(rng.integers(0, SIZE - s + 1))), item)
    img = np.asarray(bg, np.float32) / 255 * rng.uniform(0.75, 1.2)
    return np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1).astype(np.float32)


def make_set(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(SUBCLASSES)), per_class)
    return np.stack([make_image(SUBCLASSES[k], rng) for k in labels]), labels
