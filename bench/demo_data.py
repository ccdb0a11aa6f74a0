"""Generated data for the viewer's demo page and benchmarks: a CT-like volume and maps on a model grid."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

MODEL_GRID = (64, 64, 64)


def synthetic_ct(shape: tuple[int, int, int] = (512, 512, 300), seed: int = 0) -> np.ndarray:
    """A CT-like int16 volume in HU: air, a body ellipse of soft tissue, lungs, a bony ring, and noise."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    body = (x / 0.85) ** 2 + (y / 0.65) ** 2 <= 1
    ring = body & ((x / 0.78) ** 2 + (y / 0.58) ** 2 > 1)
    lungs = (((x - 0.35) / 0.25) ** 2 + (y / 0.35) ** 2 <= 1) | (((x + 0.35) / 0.25) ** 2 + (y / 0.35) ** 2 <= 1)
    plane = np.full(shape[:2], -1000, np.int16)
    plane[body] = 40
    plane[lungs] = -820
    plane[ring] = 700
    volume = np.repeat(plane[:, :, None], shape[2], axis=2)
    volume += rng.integers(-20, 21, size=shape, dtype=np.int16)
    return volume


CT_AFFINE = np.diag([0.7, 0.7, 1.0, 1.0])


def write_ct(folder: Path) -> Path:
    """The synthetic CT as a .nii.gz (gzip level 1), as a user would upload it."""
    import nibabel as nib

    path = Path(folder) / "synthetic_ct.nii.gz"
    raw = nib.Nifti1Image(synthetic_ct(), CT_AFFINE).to_bytes()
    path.write_bytes(gzip.compress(raw, compresslevel=1))
    return path


def model_grid_affine(anatomy_affine: np.ndarray, shape: tuple[int, ...], grid: tuple[int, ...]) -> np.ndarray:
    """Affine of a model grid resized onto the image with align_corners=False (as explain/preprocess.py)."""
    scale = np.array(shape[:3], float) / np.array(grid, float)
    voxel = np.eye(4)
    voxel[:3, :3] = np.diag(scale)
    voxel[:3, 3] = (scale - 1) / 2
    return np.asarray(anatomy_affine, float) @ voxel


def blob_map(affine: np.ndarray, grid: tuple[int, ...], centres_mm: list, sigma_mm: float) -> np.ndarray:
    """A map on a grid: Gaussian blobs at world positions (weight, centre), in raw units of about 1e-3."""
    dims = len(grid)
    index = np.indices(grid).reshape(dims, -1).astype(float)
    world = affine[:dims, :dims] @ index + affine[:dims, 3:4]
    out = np.zeros(index.shape[1])
    for weight, centre in centres_mm:
        d2 = ((world - np.asarray(centre, float)[:dims, None]) ** 2).sum(0)
        out += weight * np.exp(-d2 / (2 * sigma_mm**2))
    return (out * 2e-3).reshape(grid)


def ct_map() -> tuple[np.ndarray, np.ndarray]:
    """The CT's demo map on the 64^3 model grid: one broad blob in the right lung field; (values, affine)."""
    shape = (512, 512, 300)
    affine = model_grid_affine(CT_AFFINE, shape, MODEL_GRID)
    centre = (CT_AFFINE @ [shape[0] * 0.3, shape[1] * 0.5, shape[2] * 0.5, 1])[:3]
    return blob_map(affine, MODEL_GRID, [(1.0, centre)], 25.0), affine
