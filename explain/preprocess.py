"""The volume's voxel grid <-> the model's input grid, forward and exactly inverse.

A `GridMap` is fixed by the volume (shape, affine) and the model card. Forward
(`to_model`): optional reorientation to RAS (exact axis flips/swaps), a per-axis
affine resampling `v = scale * m + offset` from model voxel m to volume voxel v
(trilinear, on the device), then the card's intensity transform. Inverse
(`to_volume`): the same affine solved for m, sampled at every volume voxel, then
the reorientation undone. Since both directions use one affine, a point maps
back to where it came from, up to interpolation.

- Resize only (no spacing in the card): `scale = N / S`, `offset = scale/2 - 1/2`
  (voxel centres aligned, as `F.interpolate(align_corners=False)`).
- Fixed spacing: `scale = model_spacing / volume_spacing`, centred, so the model
  sees a centred crop or padded field of view of the given size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from explain.errors import InputError
from explain.models import ModelCard
from explain.volumes import ras_orientation


@dataclass(frozen=True)
class GridMap:
    """Geometry from a volume's voxel grid to a model's input grid (D, H, W)."""

    volume_shape: tuple[int, int, int]
    model_shape: tuple[int, int, int]
    scale: tuple[float, float, float]
    offset: tuple[float, float, float]
    ornt: tuple[tuple[int, int], ...] | None  # nibabel ornt to RAS, or None to keep voxel order
    intensity: dict

    @property
    def reoriented_shape(self) -> tuple[int, int, int]:
        if self.ornt is None:
            return self.volume_shape
        shape = [0, 0, 0]
        for axis, (target, _flip) in enumerate(self.ornt):
            shape[target] = self.volume_shape[axis]
        return tuple(shape)  # type: ignore[return-value]

    @property
    def is_identity(self) -> bool:
        return (
            self.reoriented_shape == self.model_shape
            and self.scale == (1.0, 1.0, 1.0)
            and self.offset == (0.0, 0.0, 0.0)
        )

    # -- orientation (torch, batch-first: axes 2, 3, 4 are spatial) -------------------
    def _reorient(self, x: torch.Tensor) -> torch.Tensor:
        if self.ornt is None:
            return x
        flips = [2 + axis for axis, (_t, flip) in enumerate(self.ornt) if flip == -1]
        if flips:
            x = torch.flip(x, dims=flips)
        order = np.argsort([t for t, _ in self.ornt])
        return x.permute(0, 1, *(2 + int(a) for a in order))

    def _unreorient(self, x: torch.Tensor) -> torch.Tensor:
        if self.ornt is None:
            return x
        x = x.permute(0, 1, *(2 + int(t) for t, _ in self.ornt))
        flips = [2 + axis for axis, (_t, flip) in enumerate(self.ornt) if flip == -1]
        return torch.flip(x, dims=flips) if flips else x

    # -- resampling --------------------------------------------------------------------
    def _sample(
        self, x: torch.Tensor, out_shape: tuple[int, ...], scale: np.ndarray, offset: np.ndarray, padding: str
    ) -> torch.Tensor:
        """Sample x (B, C, *in_shape) at source voxel `scale * out_index + offset`."""
        in_shape = x.shape[2:]
        axes = []
        for size_out, size_in, s, o in zip(out_shape, in_shape, scale, offset):
            idx = torch.arange(size_out, device=x.device, dtype=torch.float32) * float(s) + float(o)
            # align_corners=True normalisation: -1 and +1 are the centres of the end voxels.
            axes.append(idx * (2.0 / max(size_in - 1, 1)) - 1.0)
        d, h, w = torch.meshgrid(*axes, indexing="ij")
        grid = torch.stack((w, h, d), dim=-1)[None].expand(x.shape[0], -1, -1, -1, -1)
        return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode=padding, align_corners=True)

    def to_model(self, data: np.ndarray, device: torch.device | str = "cpu", channels: int = 1) -> torch.Tensor:
        """Volume data (I, J, K) -> model input (1, channels, D, H, W), float32 on `device`."""
        if channels != 1:
            raise InputError(
                f"channel mismatch: the model expects {channels} input channels and the "
                "volume has 1; load a single-channel model or a matching multi-channel input"
            )
        x = torch.as_tensor(np.ascontiguousarray(data), dtype=torch.float32, device=device)[None, None]
        x = self._reorient(x)
        if not self.is_identity:
            x = self._sample(x, self.model_shape, np.asarray(self.scale), np.asarray(self.offset), "border")
        return apply_intensity(x, self.intensity)

    def to_volume(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps on the model grid (B, D, H, W) -> (B, I, J, K) on the volume's own voxel grid."""
        x = maps[:, None].float()
        if not self.is_identity:
            scale = 1.0 / np.asarray(self.scale)
            offset = -np.asarray(self.offset) * scale
            x = self._sample(x, self.reoriented_shape, scale, offset, "zeros")
        return self._unreorient(x)[:, 0]

    def region_to_model(self, region: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """A boolean mask on the volume grid -> a boolean mask on the model grid."""
        x = torch.as_tensor(np.asarray(region, dtype=np.float32), device=device)[None, None]
        x = self._reorient(x)
        if not self.is_identity:
            x = self._sample(x, self.model_shape, np.asarray(self.scale), np.asarray(self.offset), "zeros")
        return x[0, 0] >= 0.5


def plan_grid(
    volume_shape: tuple[int, int, int], affine: np.ndarray, card: ModelCard, model_shape: tuple[int, int, int] | None
) -> GridMap:
    """Build the map from a volume to the model grid described by `card` and `model_shape`."""
    ornt = None
    if (card.orientation or "").upper() == "RAS":
        ornt = tuple((int(t), int(f)) for t, f in ras_orientation(affine))
    reoriented = GridMap(tuple(volume_shape), (1, 1, 1), (1.0,) * 3, (0.0,) * 3, ornt, {}).reoriented_shape
    target = tuple(model_shape) if model_shape is not None else reoriented
    if len(target) != 3 or min(target) < 1:
        raise InputError(f"model input grid must be 3D; got {target}")
    if card.spacing is not None:
        spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
        if ornt is not None:
            spacing = spacing[np.argsort([t for t, _ in ornt])]
        scale = np.asarray(card.spacing, dtype=float) / spacing
        offset = (np.asarray(reoriented) - 1) / 2 - scale * (np.asarray(target) - 1) / 2
    else:
        scale = np.asarray(reoriented, dtype=float) / np.asarray(target, dtype=float)
        offset = scale / 2 - 0.5
    return GridMap(
        tuple(int(s) for s in volume_shape),
        tuple(int(s) for s in target),
        tuple(float(s) for s in scale),
        tuple(float(o) for o in offset),
        ornt,
        dict(card.intensity or {"kind": "none"}),
    )


def apply_intensity(x: torch.Tensor, spec: dict) -> torch.Tensor:
    """The card's intensity transform, on the model grid (so statistics match training).

    kinds: none; ct_window {level, width} -> [0, 1]; percentile {lower, upper} -> [0, 1]
    (clipped, as MONAI ScaleIntensityRangePercientiles(b_min=0, b_max=1, clip=True));
    zscore (as NormalizeIntensity); minmax -> [0, 1].
    """
    kind = spec.get("kind", "none")
    if kind == "none":
        return x
    if kind == "ct_window":
        level, width = float(spec["level"]), float(spec["width"])
        return ((x - (level - width / 2)) / width).clamp(0, 1)
    if kind == "percentile":
        flat = x.flatten()
        if flat.numel() > 8_000_000:  # torch.quantile's size limit: use a regular subsample
            flat = flat[:: flat.numel() // 8_000_000 + 1]
        lo = torch.quantile(flat, float(spec.get("lower", 0.5)) / 100)
        hi = torch.quantile(flat, float(spec.get("upper", 99.5)) / 100)
        return ((x - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
    if kind == "zscore":
        return (x - x.mean()) / x.std().clamp_min(1e-8)
    if kind == "minmax":
        lo, hi = x.min(), x.max()
        return (x - lo) / (hi - lo).clamp_min(1e-8)
    raise InputError(f"unknown intensity transform {kind!r}")
