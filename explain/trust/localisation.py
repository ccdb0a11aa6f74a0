"""How well a map localises, when the true region (a mask) is known.

Three scores, each on the image's own voxel grid, on the map as shown (ReLU'd, 0..1 of its peak):
- pointing game (Zhang et al., ECCV 2016): is the map's maximum inside the mask? With a
  tolerance in voxels, a hit is a maximum within that distance of the mask.
- energy in mask (Wang et al., Score-CAM, CVPR-W 2020, "energy-based pointing game"): the
  share of the map's total positive value that lies inside the mask.
- IoU at a threshold: the map at or above `threshold` (as the viewer's threshold) against the mask.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from explain.errors import InputError


@dataclass(frozen=True)
class Localisation:
    """Scores of one map against one mask; NaN where a score is undefined (an empty map or mask)."""

    pointing_hit: bool
    energy_in_mask: float
    iou: float
    threshold: float
    mask_voxels: int
    ndim: int = 3  # of the image: a 2D mask counts pixels

    def to_dict(self) -> dict:
        return asdict(self)

    def sentences(self) -> list[str]:
        """The scores as the page writes them, beside the map they score."""
        unit = "pixels" if self.ndim == 2 else "voxels"
        energy = "n/a" if np.isnan(self.energy_in_mask) else f"{self.energy_in_mask:.0%}"
        iou = "n/a" if np.isnan(self.iou) else f"{self.iou:.2f}"
        return [
            f"pointing game: {'hit' if self.pointing_hit else 'miss'} (is the map's maximum inside the mask?)",
            f"energy in mask {energy}",
            f"IoU at {self.threshold:.2f}: {iou}",
            f"against a mask of {self.mask_voxels:,} {unit} on the image's own grid",
        ]


def target_mask(mask: np.ndarray, target: int | None = None) -> np.ndarray:
    """A boolean mask from a binary or label mask; with labels, the target class's label if present."""
    mask = np.asarray(mask)
    if target is not None and mask.dtype.kind in "iu" and mask.max() > 1 and np.any(mask == target):
        return mask == target
    return mask > 0


def localise(cam: np.ndarray, mask: np.ndarray, threshold: float = 0.5, tolerance: int = 0) -> Localisation:
    """Score a map (0..1, on the image grid) against a boolean mask of the same shape."""
    cam = np.asarray(cam, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if cam.shape != mask.shape:
        raise InputError(f"the mask has shape {mask.shape}, but the map is on a grid of {cam.shape}")
    if not 0 <= threshold <= 1:
        raise InputError(f"the threshold must lie in 0..1; got {threshold}")
    positive = np.maximum(cam, 0)
    total = float(positive.sum())
    n_mask = int(mask.sum())
    if total <= 0 or n_mask == 0:
        return Localisation(False, float("nan"), float("nan"), threshold, n_mask, cam.ndim)
    peak = np.unravel_index(int(np.argmax(positive)), positive.shape)
    hit = bool(mask[peak])
    if not hit and tolerance > 0:
        window = tuple(slice(max(p - tolerance, 0), p + tolerance + 1) for p in peak)
        hit = bool(mask[window].any())
    above = positive >= threshold
    union = int(np.logical_or(above, mask).sum())
    iou = float(np.logical_and(above, mask).sum()) / union if union else float("nan")
    return Localisation(hit, float(positive[mask].sum()) / total, iou, threshold, n_mask, cam.ndim)
