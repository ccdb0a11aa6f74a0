"""Colour maps for CAM overlays. The hot end always means *high importance*."""

from __future__ import annotations

import numpy as np
from plotly import colors as plotly_colors

NAMES = ("inferno", "hot", "magma", "viridis")


def _from_plotly(scale: list[str]) -> np.ndarray:
    rgb = np.array(
        [plotly_colors.hex_to_rgb(c) if c.startswith("#") else plotly_colors.unlabel_rgb(c) for c in scale],
        dtype=np.float64,
    )
    x = np.linspace(0, 1, len(rgb))
    t = np.linspace(0, 1, 256)
    return np.stack([np.interp(t, x, rgb[:, i]) for i in range(3)], axis=1).round().astype(np.uint8)


def lut(name: str) -> np.ndarray:
    """A (256, 3) uint8 table; index 0 = lowest importance, 255 = highest."""
    if name == "hot":  # black -> red -> yellow -> white
        t = np.linspace(0, 1, 256)
        rgb = np.stack([np.clip(t * 3, 0, 1), np.clip(t * 3 - 1, 0, 1), np.clip(t * 3 - 2, 0, 1)], axis=1)
        return (rgb * 255).round().astype(np.uint8)
    scales = {
        "inferno": plotly_colors.sequential.Inferno,
        "magma": plotly_colors.sequential.Magma,
        "viridis": plotly_colors.sequential.Viridis,
    }
    if name not in scales:
        raise ValueError(f"unknown colour map {name!r}; choose one of {NAMES}")
    return _from_plotly(scales[name])


def plotly_scale(name: str) -> list[list]:
    """The same table as a plotly colorscale (for figures)."""
    table = lut(name)
    return [[i / 255, f"rgb({r},{g},{b})"] for i, (r, g, b) in enumerate(table) if i % 15 == 0 or i == 255]


def blend(
    grey: np.ndarray, cam: np.ndarray, name: str = "inferno", opacity: float = 0.5, threshold: float = 0.2
) -> np.ndarray:
    """Grey uint8 (H, W) + CAM in [0, 1] (H, W) -> RGB uint8 (H, W, 3); below threshold shows anatomy only."""
    table = lut(name)
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    colour = table[np.clip((cam * 255).round(), 0, 255).astype(np.uint8)].astype(np.float32)
    alpha = np.where(cam >= max(threshold, 1e-6), opacity, 0.0)[..., None]
    return (rgb * (1 - alpha) + colour * alpha).round().astype(np.uint8)
