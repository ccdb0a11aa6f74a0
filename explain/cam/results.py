"""What one computation returns: maps, prediction, timings. No computation happens here.

A map is kept at three resolutions, each for a reason:
- `raw_map`: signed values on the layer (or token) grid, before ReLU: the method's
  own output, for export and comparison;
- `model_map`: ReLU'd, upsampled to the model's input grid and divided by its peak
  (1 = most important): small, with `model_affine` placing it in world space, so
  the browser can resample it onto the anatomy;
- `cam`: the same on the image's own voxel grid, computed on first use only (for
  the NIfTI export and for analysis); a 512x512x300 CT would otherwise carry a
  300 MB float map per class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from explain import __version__
from explain.cam.preprocess import GridMap


@dataclass(eq=False)
class CamResult:
    """One map of one (method, layer, target)."""

    method: str
    layer: str
    target: int
    target_name: str
    raw_map: np.ndarray  # signed: on the layer/token grid; for windowed maps, stitched on the model grid
    model_map: np.ndarray  # on the model grid, 0..1 of `raw_peak`
    raw_peak: float  # the positive raw value (upsampled to the model grid) that maps to 1.0
    grid: GridMap
    volume_affine: np.ndarray
    warnings: list[str] = field(default_factory=list)
    window: tuple[int, ...] | None = None  # the window shape when stitched from sliding windows
    windows: int = 1  # how many windows were stitched

    @property
    def pooled_per_window(self) -> bool:
        """True when the method pools its weights over one window (Grad-CAM, Grad-CAM++ on windows)."""
        return self.window is not None and self.method in ("gradcam", "gradcampp")

    @property
    def model_affine(self) -> np.ndarray:
        """4x4: model-grid index -> world mm (RAS)."""
        return self.grid.model_affine(self.volume_affine)

    @cached_property
    def cam(self) -> np.ndarray:
        """The map on the image's own voxel grid (0..1 of the peak; zero outside the model's field of view)."""
        import torch

        on_volume = self.grid.to_volume(torch.as_tensor(self.model_map)[None])[0]
        return on_volume.clamp(0, 1).numpy().astype(np.float32, copy=False)


@dataclass(eq=False)
class Explanation:
    """All maps of one engine call, with the prediction and timings (seconds)."""

    results: list[CamResult]
    task: str
    class_names: list[str]
    scores: np.ndarray
    probabilities: np.ndarray
    predicted: int
    model_grid: tuple[int, ...]
    device: str
    timings: dict[str, float]
    volume_hash: str
    model_hash: str  # the model's identity: file + effective card
    engine_version: str = __version__
    warnings: list[str] = field(default_factory=list)
    run: dict = field(default_factory=dict)  # how it ran: one pass or windows, batch, planned and allowed bytes

    def get(self, layer: str | None = None, target: int | None = None) -> CamResult:
        """The result for (layer, target); either may be omitted when unambiguous."""
        for r in self.results:
            if (layer is None or r.layer == layer) and (target is None or r.target == target):
                return r
        raise KeyError(f"no result for layer={layer!r}, target={target!r}")

    @property
    def nbytes(self) -> int:
        return sum(r.model_map.nbytes + r.raw_map.nbytes for r in self.results)

    def summary(self) -> dict:
        """JSON-ready description (no arrays)."""
        return {
            "task": self.task,
            "class_names": self.class_names,
            "scores": [float(s) for s in self.scores],
            "probabilities": [float(p) for p in self.probabilities],
            "predicted": self.predicted,
            "maps": [
                {
                    "method": r.method,
                    "layer": r.layer,
                    "target": r.target,
                    "target_name": r.target_name,
                    "raw_shape": list(r.raw_map.shape),
                    "model_shape": list(r.model_map.shape),
                    "raw_peak": r.raw_peak,
                    "warnings": r.warnings,
                    "window": list(r.window) if r.window else None,
                    "windows": r.windows,
                }
                for r in self.results
            ],
            "model_grid": list(self.model_grid),
            "device": self.device,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "volume_hash": self.volume_hash,
            "model_hash": self.model_hash,
            "engine_version": self.engine_version,
            "warnings": self.warnings,
            "run": self.run,
        }
