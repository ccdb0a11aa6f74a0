"""Sliding windows over the model grid: where they go and how they are weighted, as each framework does it.

A map and its framework's own prediction must come from the same windows with the same weights, so both
layouts are those of the frameworks:
- "nnunet": nnU-Net's `compute_steps_for_sliding_window` (steps of `step` x patch, spread evenly so the last
  window ends flush) and its Gaussian (sigma = patch / 8, peak 1, zeros raised to the smallest non-zero value);
- "monai": MONAI's `SlidingWindowInferer` (scan interval int(patch x (1 - overlap)), last window pushed back to
  end flush; constant or Gaussian importance map from `monai.data.utils.compute_importance_map`).
A grid smaller than the patch along an axis is padded with zeros, half before and half after, as both do.
Windows are given on the padded grid; `crop` takes a stitched result back to the model grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from explain.errors import InputError

LAYOUTS = ("nnunet", "monai")
BLENDS = ("gaussian", "constant")


@dataclass(frozen=True)
class WindowPlan:
    """The windows of one model grid."""

    grid: tuple[int, ...]  # the model grid (D, H, W) or (H, W), before padding
    patch: tuple[int, ...]
    pad: tuple[tuple[int, int], ...]  # zeros (before, after) per axis
    starts: tuple[tuple[int, ...], ...]  # window corners on the padded grid
    blend: str
    layout: str
    sigma_scale: float = 0.125

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def padded(self) -> tuple[int, ...]:
        return tuple(g + a + b for g, (a, b) in zip(self.grid, self.pad))

    def slices(self, start: tuple[int, ...]) -> tuple[slice, ...]:
        return tuple(slice(s, s + p) for s, p in zip(start, self.patch))

    def weights(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The patch-shaped fp32 weight of every voxel of a window (the prediction's own weights)."""
        return _weights(self.patch, self.blend, self.layout, self.sigma_scale).to(device)

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *grid) -> (B, C, *padded) with zeros."""
        if not any(a or b for a, b in self.pad):
            return x
        flat = [v for a, b in reversed(self.pad) for v in (a, b)]  # F.pad wants the last axis first
        return torch.nn.functional.pad(x, flat, mode="constant", value=0.0)

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """(..., *padded) -> (..., *grid)."""
        n = len(self.grid)
        index = (Ellipsis, *(slice(a, a + g) for g, (a, _b) in zip(self.grid, self.pad)))
        return x[index] if x.shape[-n:] != self.grid else x

    def describe(self) -> str:
        """'96x96x96 windows, 27 of them' for titles and reports."""
        return f"{'x'.join(map(str, self.patch))} windows, {len(self)} of them"


def plan_windows(
    grid: tuple[int, ...], patch: tuple[int, ...], *, overlap: float = 0.5, blend: str = "gaussian",
    layout: str = "nnunet",
) -> WindowPlan:  # fmt: skip
    """Windows of `patch` over `grid` with the framework's own layout; `overlap` is 1 - nnU-Net's step."""
    grid, patch = tuple(int(g) for g in grid), tuple(int(p) for p in patch)
    if len(grid) != len(patch) or min(patch) < 1:
        raise InputError(f"a window of {list(patch)} does not fit a {len(grid)}D grid {list(grid)}")
    if layout not in LAYOUTS or blend not in BLENDS or not 0 <= overlap < 1:
        raise InputError(f"windows need a layout in {LAYOUTS}, a blend in {BLENDS} and an overlap in [0, 1)")
    pad = tuple(((p - g) // 2, (p - g) - (p - g) // 2) if p > g else (0, 0) for g, p in zip(grid, patch))
    padded = tuple(g + a + b for g, (a, b) in zip(grid, pad))
    if layout == "nnunet":
        per_axis = nnunet_steps(padded, patch, 1.0 - overlap)
    else:
        per_axis = monai_starts(padded, patch, overlap)
    starts = tuple(
        tuple(int(v) for v in corner)
        for corner in np.stack(np.meshgrid(*per_axis, indexing="ij"), -1).reshape(-1, len(grid))
    )
    return WindowPlan(grid, patch, pad, starts, blend, layout)


def stride_quantum(sides: tuple[int, ...]) -> int:
    """Window sides are multiples of the largest power of two (at most 32) that divides every side of the card's
    input shape: the shape the network was built for, so its strides divide it."""
    power = 32
    while power > 1 and any(int(s) % power for s in sides):
        power //= 2
    return power


def nnunet_steps(image: tuple[int, ...], patch: tuple[int, ...], step: float) -> list[list[int]]:
    """nnU-Net's window starts per axis (nnunetv2.inference.sliding_window_prediction.compute_steps_for_sliding_window)."""
    if not 0 < step <= 1:
        raise InputError(f"the window step must be in (0, 1]; got {step}")
    out = []
    for size, tile in zip(image, patch):
        n = int(np.ceil((size - tile) / (tile * step))) + 1
        actual = (size - tile) / (n - 1) if n > 1 else 99999999999
        out.append([int(np.round(actual * i)) for i in range(n)])
    return out


def monai_starts(image: tuple[int, ...], patch: tuple[int, ...], overlap: float) -> list[list[int]]:
    """MONAI's window starts per axis (monai.inferers.utils._get_scan_interval, monai.data.utils.dense_patch_slices)."""
    out = []
    for size, tile in zip(image, patch):
        interval = tile if tile == size else max(int(tile * (1 - overlap)), 1)
        n = next((d for d in range(math.ceil(size / interval)) if d * interval + tile >= size), 0) + 1
        out.append([i * interval - max(i * interval + tile - size, 0) for i in range(n)])
    return out


@lru_cache(maxsize=8)
def _weights(patch: tuple[int, ...], blend: str, layout: str, sigma_scale: float) -> torch.Tensor:
    if blend == "constant":
        return torch.ones(patch, dtype=torch.float32)
    if layout == "monai":
        from monai.data.utils import compute_importance_map

        return compute_importance_map(patch, mode="gaussian", sigma_scale=sigma_scale, device="cpu").float()
    return nnunet_gaussian(patch, sigma_scale)


def nnunet_gaussian(patch: tuple[int, ...], sigma_scale: float = 0.125) -> torch.Tensor:
    """nnU-Net's `compute_gaussian`: a unit impulse at the patch centre (index // 2) smoothed by scipy's
    `gaussian_filter` (sigma = patch x sigma_scale, truncated at 4 sigma, zero outside), divided by its peak;
    zeros are raised to the smallest non-zero value so that no voxel's weight sum is 0. Written out axis by axis
    (the filter is separable), so scipy is not needed at run time; tests check it against nnU-Net's own."""
    axes = []
    for size in patch:
        sigma = size * sigma_scale
        radius = int(4.0 * sigma + 0.5)
        x = np.arange(-radius, radius + 1, dtype=np.float64)
        kernel = np.exp(-0.5 * x**2 / sigma**2)
        kernel /= kernel.sum()
        axis = np.zeros(size, dtype=np.float64)
        centre = size // 2
        for offset, value in zip(range(-radius, radius + 1), kernel):
            if 0 <= centre + offset < size:
                axis[centre + offset] = value
        axes.append(axis)
    weights = axes[0]
    for axis in axes[1:]:
        weights = np.multiply.outer(weights, axis)
    weights = weights / weights.max()
    weights[weights == 0] = weights[weights > 0].min()
    return torch.from_numpy(weights.astype(np.float32))
