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


def save_like(data: np.ndarray, reference: Path | None, affine: np.ndarray, path: str | os.PathLike, dtype) -> Path:
    """Write `data` ((*spatial) or (*spatial, C)) as NIfTI on a reference image's grid: when the reference is a NIfTI
    file, its own sform and qform (with their codes) are kept, so the output overlays exactly; else `affine` for both.
    """
    path = Path(path)
    data = np.asarray(data).astype(dtype, copy=False)
    img = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    if reference is not None and str(reference).endswith((".nii", ".nii.gz")):
        try:
            ref = nib.load(str(reference))
            sform, s_code = ref.header.get_sform(coded=True)
            qform, q_code = ref.header.get_qform(coded=True)
            if sform is not None:
                img.set_sform(sform, code=int(s_code))
            if qform is not None:
                img.set_qform(qform, code=int(q_code))
        except (OSError, ValueError, nib.filebasedimages.ImageFileError):
            pass  # the affine we loaded is the same grid; only the header codes are lost
    img.header.set_data_dtype(dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path
