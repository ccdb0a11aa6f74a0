"""Writing maps and images as NIfTI: the input's own affine as both qform and sform, so other viewers agree."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np


def save_nifti(data: np.ndarray, affine: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a float32 NIfTI with this affine as both qform and sform (code 1, scanner)."""
    path = Path(path)
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.asarray(affine, dtype=np.float64))
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_data_dtype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def nifti_bytes(data: np.ndarray, affine: np.ndarray) -> bytes:
    """The same file as `save_nifti`, gzipped, as bytes (for downloads)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = save_nifti(data, affine, Path(tmp) / "cam.nii.gz")
        return out.read_bytes()
