"""Synthetic chest radiographs (2D) with lung nodules: the bundled 2D case and the 2D model's data.

A frontal (PA) radiograph drawn from simple shapes, deterministic for a seed, nothing
downloaded: air outside the body, a soft-tissue outline brighter towards the midline,
two darker lungs with vessel texture and domed diaphragms, the mediastinum and spine,
a heart shadow bulging into the left lung, ribs and clavicles, a slight blur and noise.
The anatomy moves, scales and changes contrast a little from case to case. A nodule is
a round soft-edged brightening inside a lung.

Conventions (see explain/io/volume.py): the image array here is (rows, columns); a 2D
`Volume` holds data[i, j] with i = column and j = row, so `Volume.data = image.T`;
a 2D model takes (1, C, H = rows, W = columns), so model input = image[None, None].
Patient's right is on the image's left, as radiographs are shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

CHEST_CLASSES = ["no nodule", "nodule"]
CHEST_SHAPE = (256, 256)  # rows, columns
PIXEL_MM = 1.4  # a 358 mm field of view, as an adult PA chest film
CHEST_INTENSITY = {"kind": "zscore"}


@dataclass(frozen=True)
class NoduleSet:
    """How nodules are drawn: radius range in mm and contrast (added brightness, image units 0..1)."""

    name: str
    radius_mm: tuple[float, float]
    contrast: tuple[float, float]
    description: str


CHEST_TRAIN_SET = NoduleSet("in-distribution", (5.0, 12.0), (0.12, 0.25), "radius 5-12 mm, contrast 0.12-0.25")
CHEST_EVAL_SETS = {
    "in-distribution": CHEST_TRAIN_SET,
    "ood-small": NoduleSet("ood-small", (3.0, 5.0), (0.12, 0.25), "radius 3-5 mm (training: 5-12), training contrast"),
    "ood-contrast": NoduleSet(
        "ood-contrast", (5.0, 12.0), (0.06, 0.12), "contrast 0.06-0.12 (training: 0.12-0.25), training radii"
    ),
}


def _soft(distance: np.ndarray, width: float) -> np.ndarray:
    """1 well inside (distance < 0), 0 well outside, a logistic edge of about `width`."""
    return 1.0 / (1.0 + np.exp(np.clip(distance / width, -30, 30)))


def _superellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float, p: float) -> np.ndarray:
    """Signed-ish distance: < 0 inside the superellipse |dx/ax|^p + |dy/ay|^p = 1."""
    return (np.abs((x - cx) / ax) ** p + np.abs((y - cy) / ay) ** p) ** (1.0 / p) - 1.0


def anatomy(rng: np.random.Generator, shape: tuple[int, int] = CHEST_SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """A nodule-free radiograph (rows, cols) in about 0..1, and a lung mask (where a nodule may sit)."""
    rows, cols = shape
    scale, dx, dy = rng.uniform(0.93, 1.06), rng.uniform(-0.04, 0.04), rng.uniform(-0.04, 0.04)
    axes = (np.linspace(-1, 1, n, dtype=np.float32) for n in (rows, cols))
    y, x = np.meshgrid(*axes, indexing="ij")
    x, y = (x - dx) / scale, (y - dy) / scale
    px = 2.0 / (scale * rows)  # one pixel in these coordinates: edge widths are set in pixels
    body = _soft(_superellipse(x, y, 0, 0.28, 0.95, 1.12, 3.2), 2 * px)
    neck = _soft(np.maximum(np.abs(x) - 0.22, y + 0.72), 2 * px)
    body = np.maximum(body, neck)
    image = 0.03 + body * (0.36 + 0.14 * np.clip(1 - (x / 0.95) ** 2, 0, 1))
    lungs = np.zeros(shape, np.float32)
    heart_x, heart_y = rng.uniform(0.08, 0.14), rng.uniform(0.26, 0.32)
    heart = _soft(_superellipse(x, y, heart_x, heart_y, rng.uniform(0.3, 0.36), rng.uniform(0.22, 0.26), 2.0), 2 * px)
    for side in (-1.0, 1.0):  # -1: image left = patient's right lung
        cx, cy = side * rng.uniform(0.36, 0.4), rng.uniform(-0.08, -0.02)
        ax, ay = rng.uniform(0.26, 0.3), rng.uniform(0.56, 0.64)
        dome = cy + ay * 0.75 - (0.04 if side < 0 else 0.0) - 0.12 * np.clip(1 - ((x - cx) / ax) ** 2, 0, 1)
        lung = _soft(np.maximum(_superellipse(x, y, cx, cy, ax, ay, 2.2), (y - dome) / 0.1), 1.5 * px)
        lung *= _soft(0.09 - side * x, 1.5 * px)  # the medial edge: the mediastinum
        lungs = np.maximum(lungs, lung)
    lungs *= 1 - heart  # the heart is in front of (and hides) the lung behind it
    texture = gaussian_filter(rng.standard_normal(shape), 2.5) * 0.35
    hila = sum(np.exp(-np.hypot(x - s * 0.17, y - 0.02) / 0.22) for s in (-1, 1))
    image -= lungs * (0.28 - 0.07 * hila - texture * 0.1)
    mediastinum = _soft(np.maximum(np.abs(x) - 0.1 - 0.04 * (y + 1), np.abs(y + 0.2) - 0.75), 2 * px)
    image += 0.13 * np.maximum(mediastinum, heart) * body
    spine = _soft(np.abs(x) - 0.055, px) * (0.09 + 0.03 * np.cos(2 * np.pi * y / 0.11)) * body
    image += spine
    ribs = np.zeros(shape, np.float32)
    first, gap = rng.uniform(-0.76, -0.7), rng.uniform(0.125, 0.14)
    lateral = np.clip((np.abs(x) - 0.06) / 0.8, 0, 1)
    for k in range(10):
        centre = first + gap * k + 0.3 * lateral**1.5 - 0.08 * lateral
        ribs = np.maximum(ribs, np.exp(-(((y - centre) / 0.022) ** 2)))
    image += 0.09 * ribs * (np.abs(x) > 0.06) * _soft(np.abs(x) - 0.86, 2 * px) * body
    for side in (-1.0, 1.0):
        t = np.clip((side * x - 0.08) / 0.55, 0, 1)
        clavicle = np.exp(-(((y - (-0.74 - 0.07 * t)) / 0.025) ** 2)) * (side * x > 0.08) * (side * x < 0.63)
        image += 0.12 * clavicle
    return image.astype(np.float32), (lungs > 0.9) & (body > 0.9)


def add_nodule(
    rng: np.random.Generator, image: np.ndarray, lungs: np.ndarray, dist: NoduleSet
) -> tuple[np.ndarray, dict]:
    """Paint one nodule inside a lung (in place); return its mask (rows, cols) and description."""
    radius_px = rng.uniform(*dist.radius_mm) / PIXEL_MM
    margin = int(np.ceil(radius_px)) + 2
    inside = lungs.copy()
    inside[:margin], inside[-margin:], inside[:, :margin], inside[:, -margin:] = False, False, False, False
    # Keep the whole nodule in the lung: its centre at least a radius from the lung's edge.
    candidates = np.argwhere(inside & (gaussian_filter(lungs.astype(np.float32), radius_px / 2) > 0.97))
    row, col = candidates[rng.integers(len(candidates))] + rng.uniform(-0.5, 0.5, size=2)
    contrast = float(rng.uniform(*dist.contrast))
    r_idx, c_idx = np.indices(image.shape)
    rho = np.hypot(r_idx - row, c_idx - col) / radius_px
    image += contrast * np.clip((1.25 - rho) / 0.5, 0, 1)  # full inside rho < 0.75, none beyond 1.25
    info = {
        "kind": "nodule",
        "label": 1,
        "center_row_col": [round(float(row), 1), round(float(col), 1)],
        "center_ij": [round(float(col), 1), round(float(row), 1)],
        "radius_mm": round(radius_px * PIXEL_MM, 1),
        "contrast": round(contrast, 3),
    }
    return (rho <= 1.0).astype(np.uint8), info


def radiograph(
    rng: np.random.Generator, nodule: bool, dist: NoduleSet = CHEST_TRAIN_SET
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """One case: image (rows, cols) in 0..1, nodule mask (rows, cols), nodule descriptions."""
    image, lungs = anatomy(rng)
    mask, found = np.zeros(image.shape, np.uint8), []
    if nodule:
        mask, info = add_nodule(rng, image, lungs, dist)
        found.append(info)
    image = gaussian_filter(image, 0.7) * rng.uniform(0.85, 1.15)
    image = np.clip(image, 0, None) ** rng.uniform(0.9, 1.1)
    image += rng.standard_normal(image.shape) * rng.uniform(0.004, 0.015)
    return np.clip(image, 0, 1).astype(np.float32), mask, found


def chest_dataset(
    rng: np.random.Generator, n: int, dist: NoduleSet = CHEST_TRAIN_SET
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n cases alternating no nodule / nodule: inputs (n, 1, H, W) z-scored, labels (n,), masks (n, H, W)."""
    xs, ys, maps = [], [], []
    for i in range(n):
        image, mask, _ = radiograph(rng, nodule=i % 2 == 1, dist=dist)
        x = torch.from_numpy(image)
        xs.append(((x - x.mean()) / x.std(unbiased=False).clamp_min(1e-8))[None])  # as the engine's zscore
        ys.append(torch.tensor(i % 2))
        maps.append(torch.from_numpy(mask))
    return torch.stack(xs), torch.stack(ys), torch.stack(maps)


def sample_chest_case(out: Path, seed: int = 7) -> None:
    """The bundled 2D case: a radiograph with one nodule in the right lung (image left), 16-bit PNG + mask."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    image, lungs = anatomy(rng)
    right_lung = lungs & (np.arange(image.shape[1])[None, :] < image.shape[1] // 2)
    mask, info = add_nodule(rng, image, right_lung, NoduleSet("case", (9.0, 9.0), (0.2, 0.2), "bundled case"))
    image = gaussian_filter(image, 0.7)
    image += rng.standard_normal(image.shape) * 0.008
    out.mkdir(parents=True, exist_ok=True)
    pixels = np.round(np.clip(image, 0, 1) * 65535).astype(np.uint16)
    Image.fromarray(pixels).save(out / "chest_xray.png")  # 16-bit greyscale ("I;16")
    Image.fromarray(mask).save(out / "nodule_mask.png")  # 8-bit, 1 = nodule
    (out / "lesions.json").write_text(
        json.dumps(
            {
                "source": "synthetic frontal chest radiograph (sample_data/chest.py), no patient data",
                "image": "chest_xray.png: 16-bit greyscale, rows x columns "
                f"{image.shape[0]} x {image.shape[1]}, nominal pixel {PIXEL_MM} mm (a PNG stores no pixel size)",
                "orientation": "patient's right on the image's left, head at the top (PA view as usually shown)",
                "mask_labels": {"1": "nodule"},
                "lesions": [info],
            },
            indent=2,
        )
        + "\n"
    )
