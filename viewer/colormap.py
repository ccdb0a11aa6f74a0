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
