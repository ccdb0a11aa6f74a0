"""The bundled 3D case (sample_data/case_brain/): the MNI152 T1 template with two known lesions."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from explain.io.write import save_nifti
from sample_data.synth import Lesion


def sample_case(base: np.ndarray, affine: np.ndarray, out: Path) -> None:
    """The bundled case: one bright lesion (left hemisphere) and one smaller dark one (right).

    Both sizes lie inside the training range (7-13 mm radii): a case outside it would
    test the sample models out of distribution rather than show the viewer.
    """
    image = base.copy()
    labels = np.zeros(base.shape, dtype=np.uint8)
    inv = np.linalg.inv(affine)
    lesions = [
        Lesion((inv @ [-26.0, -10.0, 28.0, 1.0])[:3], np.array([11.0, 10.0, 10.0]), 1, 0.7),  # left
        Lesion((inv @ [28.0, 12.0, 20.0, 1.0])[:3], np.array([8.0, 7.5, 7.5]), 2, 0.7),  # right
    ]
    for lesion in lesions:
        lesion.paint(image, labels)
    out.mkdir(parents=True, exist_ok=True)
    save_nifti(np.round(image * 255.0).astype(np.float32), affine, out / "t1_lesions.nii.gz")
    img = nib.Nifti1Image(labels, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    nib.save(img, str(out / "lesion_mask.nii.gz"))
    (out / "lesions.json").write_text(
        json.dumps(
            {
                "source": "MNI152 2009a symmetric T1 template (nilearn) with synthetic lesions; see MNI152_NOTICE.txt",
                "mask_labels": {"1": "bright lesion", "2": "dark lesion"},
                "lesions": [lesion.describe(affine) for lesion in lesions],
            },
            indent=2,
        )
        + "\n"
    )
