"""The volume's voxel grid <-> the model's input grid, forward and exactly inverse.

A `GridMap` is fixed by the image (shape, affine) and the model card. Forward
(`to_model`): an exact reordering of axes (3D with `orientation: RAS`: to RAS
order; 2D: from the image's (column, row) order to the model's (row, column)),
a per-axis affine resampling `v = scale * m + offset` from model voxel m to image
voxel v (trilinear or bilinear, on the device), then the card's intensity
transform. Inverse (`to_volume`): the same affine solved for m, sampled at every
image voxel, then the reordering undone. Since both directions use one affine, a
point maps back to where it came from, up to interpolation; `model_affine` places
the model grid in world space with the same algebra.

- Resize only (no spacing in the card): `scale = N / S`, `offset = scale/2 - 1/2`
  (voxel centres aligned, as `F.interpolate(align_corners=False)`).
- Fixed spacing: `scale = model_spacing / volume_spacing`, centred, so the model
  sees a centred crop or padded field of view of the given size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from explain.errors import InputError
from explain.io.volume import ras_orientation
from explain.models.cards import ModelCard

# A 2D image is data[i = column, j = row]; 2D models take (H = rows, W = columns).
_IMAGE_TO_MODEL_2D = ((1, 1), (0, 1))


@dataclass(frozen=True)
class GridMap:
    """Geometry from an image's voxel grid to a model's input grid (D, H, W) or (H, W)."""

    volume_shape: tuple[int, ...]
    model_shape: tuple[int, ...]
    scale: tuple[float, ...]
    offset: tuple[float, ...]
    ornt: tuple[tuple[int, int], ...] | None  # nibabel-style ornt applied first, or None to keep voxel order
    intensity: dict

    @property
    def ndim(self) -> int:
        return len(self.volume_shape)

    @property
    def reoriented_shape(self) -> tuple[int, ...]:
        if self.ornt is None:
            return self.volume_shape
        shape = [0] * self.ndim
        for axis, (target, _flip) in enumerate(self.ornt):
            shape[target] = self.volume_shape[axis]
        return tuple(shape)

    @property
    def is_identity(self) -> bool:
        n = self.ndim
        return self.reoriented_shape == self.model_shape and self.scale == (1.0,) * n and self.offset == (0.0,) * n

    def to_dict(self) -> dict:
        """JSON-ready (for the disk cache)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GridMap:
        ornt = tuple(tuple(int(v) for v in pair) for pair in d["ornt"]) if d.get("ornt") is not None else None
        return cls(
            tuple(d["volume_shape"]),
            tuple(d["model_shape"]),
            tuple(d["scale"]),
            tuple(d["offset"]),
            ornt,
            dict(d["intensity"]),
        )

    def model_affine(self, volume_affine: np.ndarray) -> np.ndarray:
        """4x4 map from a model-grid index (m0, m1[, m2], 1) to world mm: where the model's voxels lie."""
        n = self.ndim
        reorder = np.eye(n + 1)  # reoriented index -> original voxel index
        if self.ornt is not None:
            reorder = np.zeros((n + 1, n + 1))
            reorder[n, n] = 1.0
            for axis, (target, flip) in enumerate(self.ornt):
                reorder[axis, target] = flip
                if flip == -1:
                    reorder[axis, n] = self.volume_shape[axis] - 1
        resample = np.diag([*self.scale, 1.0])
        resample[:n, n] = self.offset
        to_voxel = reorder @ resample
        full = np.eye(4)  # embed (n+1)x(n+1) into 4x4: a 2D image's third axis is its normal
        full[:n, :n] = to_voxel[:n, :n]
        full[:n, 3] = to_voxel[:n, n]
        return np.asarray(volume_affine, dtype=float) @ full

    # -- orientation (torch, batch-first: axes 2.. are spatial) ------------------------
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
        """Sample x (B, C, *in_shape) at source voxel `scale * out_index + offset` (linear interpolation)."""
        in_shape = x.shape[2:]
        axes = []
        for size_out, size_in, s, o in zip(out_shape, in_shape, scale, offset):
            idx = torch.arange(size_out, device=x.device, dtype=torch.float32) * float(s) + float(o)
            # align_corners=True normalisation: -1 and +1 are the centres of the end voxels.
            axes.append(idx * (2.0 / max(size_in - 1, 1)) - 1.0)
        mesh = torch.meshgrid(*axes, indexing="ij")
        grid = torch.stack(mesh[::-1], dim=-1)[None]  # grid_sample wants (x, y[, z]) = last axis first
        grid = grid.expand(x.shape[0], *grid.shape[1:])
        return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode=padding, align_corners=True)

    def to_model(self, data: np.ndarray, device: torch.device | str = "cpu", channels: int = 1) -> torch.Tensor:
        """Image data (I, J[, K]) or channels (C, I, J[, K]) -> model input (1, C, *model_shape), float32.

        Every channel goes through the same geometry; the intensity transform is applied to each channel on its own
        (the statistics of a T1 and a FLAIR have nothing to do with each other).
        """
        data = np.asarray(data)
        given = data.shape[0] if data.ndim == self.ndim + 1 else 1
        if channels != given:
            raise InputError(
                f"channel mismatch: the model expects {channels} input channel(s) and the image has {given}; give "
                f"{channels} co-registered images (or one 4D file with {channels} volumes)"
            )
        x = torch.as_tensor(np.ascontiguousarray(data), dtype=torch.float32, device=device)
        x = x[None] if given > 1 else x[None, None]
        x = self._reorient(x)
        if not self.is_identity:
            x = self._sample(x, self.model_shape, np.asarray(self.scale), np.asarray(self.offset), "border")
        if given == 1:
            return apply_intensity(x, self.intensity)
        return torch.cat([apply_intensity(x[:, c : c + 1], self.intensity) for c in range(given)], dim=1)

    def to_volume(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps on the model grid (B, *model_shape) -> (B, *volume_shape) on the image's own voxel grid."""
        x = maps[:, None].float()
        if not self.is_identity:
            scale = 1.0 / np.asarray(self.scale)
            offset = -np.asarray(self.offset) * scale
            x = self._sample(x, self.reoriented_shape, scale, offset, "zeros")
        return self._unreorient(x)[:, 0]

    def logits_to_volume(self, logits: np.ndarray, output: str = "softmax") -> tuple[np.ndarray, np.ndarray]:
        """(labels, probabilities) on the image grid: the logits resampled (linear), then the nonlinearity and the
        argmax (or > 0.5 for sigmoid); outside the model's field of view, background."""
        logits = torch.as_tensor(np.asarray(logits, dtype=np.float32))
        on_volume = self.to_volume(logits)
        inside = self.to_volume(torch.ones((1, *self.model_shape)))[0] > 0.5
        if output == "sigmoid":
            probs = torch.sigmoid(on_volume) * inside
            return (probs > 0.5).numpy().astype(np.uint16), probs.numpy()
        probs = torch.softmax(on_volume, 0)
        probs[:, ~inside] = 0
        probs[0, ~inside] = 1
        return (on_volume.argmax(0) * inside).numpy().astype(np.uint16), probs.numpy()

    def region_to_model(self, region: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """A boolean mask on the image grid -> a boolean mask on the model grid."""
        x = torch.as_tensor(np.asarray(region, dtype=np.float32), device=device)[None, None]
        x = self._reorient(x)
        if not self.is_identity:
            x = self._sample(x, self.model_shape, np.asarray(self.scale), np.asarray(self.offset), "zeros")
        return x[0, 0] >= 0.5


def plan_grid(
    volume_shape: tuple[int, ...], affine: np.ndarray, card: ModelCard, model_shape: tuple[int, ...] | None
) -> GridMap:
    """Build the map from an image to the model grid described by `card` and `model_shape`."""
    n = len(volume_shape)
    if n not in (2, 3):
        raise InputError(f"an image must be 2D or 3D; got shape {tuple(volume_shape)}")
    ornt = None
    if n == 2:
        ornt = _IMAGE_TO_MODEL_2D
    elif (card.orientation or "").upper() == "RAS":
        ornt = tuple((int(t), int(f)) for t, f in ras_orientation(affine))
    reoriented = GridMap(tuple(volume_shape), (1,) * n, (1.0,) * n, (0.0,) * n, ornt, {}).reoriented_shape
    spacing = np.linalg.norm(np.asarray(affine)[:3, :n], axis=0)
    if ornt is not None:
        spacing = spacing[np.argsort([t for t, _ in ornt])]
    if card.patch_size:  # trained on patches: the whole image at the card's spacing, run window by window
        along = np.asarray(card.spacing, dtype=float) if card.spacing is not None else spacing
        target = tuple(max(int(round(r * v / m)), 1) for r, v, m in zip(reoriented, spacing, along))
    else:
        target = tuple(model_shape) if model_shape is not None else reoriented
    if len(target) != n or min(target) < 1:
        raise InputError(f"the model's input grid {target} does not match a {n}D image")
    if card.spacing is not None:
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


def preprocess_bytes(grid: GridMap, channels: int, volume_bytes: int) -> int:
    """What preparing the model's input takes at its worst: a reordered copy of the image, the sampling grid
    (3 or 2 coordinates per model voxel) and its output, and the intensity transform's temporaries (fp32)."""
    voxels = int(np.prod(grid.model_shape))
    return int(volume_bytes + 4 * voxels * (grid.ndim + 1 + 2 + channels))


def apply_intensity(x: torch.Tensor, spec: dict) -> torch.Tensor:
    """The card's intensity transform, on the model grid (so statistics match training).

    kinds: none; ct_window {level, width} -> [0, 1]; percentile {lower, upper} -> [0, 1]
    (clipped, as MONAI ScaleIntensityRangePercentiles(b_min=0, b_max=1, clip=True));
    zscore (as MONAI NormalizeIntensity: population standard deviation, unbiased=False);
    minmax -> [0, 1].
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
        std = x.std(unbiased=False)
        # MONAI leaves a constant image centred but unscaled (it divides by 1 when std is 0).
        return (x - x.mean()) / torch.where(std > 0, std, torch.ones_like(std))
    if kind == "minmax":
        lo, hi = x.min(), x.max()
        return (x - lo) / (hi - lo).clamp_min(1e-8)
    raise InputError(f"unknown intensity transform {kind!r}")


def grid_from_dict(d: dict):
    """A stored grid (the disk cache): a card's `GridMap`, or a framework's grid by its `kind`."""
    if d.get("kind") == "nnunet":
        from explain.models.nnunet_prep import NnunetGrid

        return NnunetGrid.from_dict(d)
    return GridMap.from_dict(d)
