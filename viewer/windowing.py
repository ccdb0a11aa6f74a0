"""Window/level for anatomy: CT presets (as 3D Slicer / OHIF) and MR percentile auto-windowing."""

from __future__ import annotations

import numpy as np

# (width, level) in Hounsfield units
CT_PRESETS: dict[str, tuple[float, float]] = {
    "CT brain": (80.0, 40.0),
    "CT soft tissue": (400.0, 40.0),
    "CT lung": (1500.0, -600.0),
    "CT bone": (2500.0, 480.0),
}


def auto_window(data: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> tuple[float, float]:
    """(width, level) spanning the given percentiles of the non-background voxels (MR default)."""
    flat = np.asarray(data).ravel()
    if flat.size > 2_000_000:  # a regular subsample is plenty for percentiles
        flat = flat[:: flat.size // 2_000_000 + 1]
    foreground = flat[flat > flat.min()]
    if foreground.size == 0:
        foreground = flat
    lo, hi = np.percentile(foreground, [lower, upper])
    if hi <= lo:  # a constant foreground (a few bright dots on a flat background): span the whole range instead
        lo, hi = float(flat.min()), float(flat.max())
    width = float(hi - lo) if hi > lo else 1.0
    return width, float(lo + width / 2)


def looks_like_ct(data: np.ndarray) -> bool:
    """CT in Hounsfield units has air near -1000; MR has no negative background."""
    flat = np.asarray(data).ravel()[:: max(np.asarray(data).size // 500_000, 1)]
    return float(np.percentile(flat, 1)) < -500


def default_window(data: np.ndarray) -> tuple[str, float, float]:
    """A sensible first window: CT soft tissue for CT, percentile auto for anything else."""
    if looks_like_ct(data):
        width, level = CT_PRESETS["CT soft tissue"]
        return "CT soft tissue", width, level
    width, level = auto_window(data)
    return "Auto (percentiles)", width, level


def apply_window(data: np.ndarray, width: float, level: float) -> np.ndarray:
    """Map values to uint8 grey levels: level - width/2 -> 0, level + width/2 -> 255."""
    lo = level - width / 2
    scaled = (np.asarray(data, dtype=np.float32) - lo) * (255.0 / max(width, 1e-6))
    return np.clip(scaled, 0, 255).astype(np.uint8)
