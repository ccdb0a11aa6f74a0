"""The bundled samples: which cases and models ship, their masks' label names, and which model suits which case.

Stated once here so that the page, the tests and the docs agree; nothing in this module reads an upload.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"


@dataclass(frozen=True)
class SampleCase:
    image: Path
    mask: Path
    mask_names: dict[int, str]  # label value -> name, as the mask's legend shows it
    model: str  # the sample model (a key of SAMPLE_MODELS) made for this case


@dataclass(frozen=True)
class SampleModel:
    path: Path  # a file, or a model folder (nnU-Net)
    spatial_dims: int  # what its card's input shape says: 3 for volumes, 2 for images

    def stamp(self) -> str:
        """Changes when the model's files change (a folder: its checkpoint), so the page reloads it."""
        target = next(self.path.rglob("checkpoint_final.pth"), self.path) if self.path.is_dir() else self.path
        return f"{self.path}:{target.stat().st_mtime}"


SAMPLE_MODELS = {
    "Sample 3D CNN (lesion classifier)": SampleModel(SAMPLE_DIR / "models" / "cnn.pt2", 3),
    "Sample 3D ViT (lesion classifier)": SampleModel(SAMPLE_DIR / "models" / "vit.pt2", 3),
    "Sample 3D UNet (lesion segmentation)": SampleModel(SAMPLE_DIR / "models" / "unet.pt2", 3),
    "Sample 2D CNN (chest radiograph nodule classifier)": SampleModel(SAMPLE_DIR / "models" / "chest.pt2", 2),
    # An nnU-Net v2 results folder trained by nnU-Net's own trainer (sample_data/nnunet_sample.py).
    "Sample nnU-Net (lesion segmentation)": SampleModel(SAMPLE_DIR / "models" / "nnunet_lesions", 3),
}

SAMPLE_CASES = {
    "Sample brain MRI": SampleCase(
        SAMPLE_DIR / "case_brain" / "t1_lesions.nii.gz",
        SAMPLE_DIR / "case_brain" / "lesion_mask.nii.gz",
        {1: "bright lesion", 2: "dark lesion"},
        "Sample 3D CNN (lesion classifier)",
    ),
    "Sample chest radiograph": SampleCase(
        SAMPLE_DIR / "case_chest" / "chest_xray.png",
        SAMPLE_DIR / "case_chest" / "nodule_mask.png",
        {1: "nodule"},
        "Sample 2D CNN (chest radiograph nodule classifier)",
    ),
}


def sample_model_for(case_name: str, current_model_source: str | None) -> str | None:
    """The model source to switch to when a sample case is opened, or None to keep the user's choice.

    An uploaded model stays; a bundled model of the wrong dimension is swapped for the one made for the case, so
    opening the radiograph never starts with a 3D model refusing a 2D image.
    """
    current = current_model_source or next(iter(SAMPLE_MODELS))  # the page's first choice until one is made
    case = SAMPLE_CASES.get(case_name)
    if case is None or current not in SAMPLE_MODELS:
        return None
    same = SAMPLE_MODELS[current].spatial_dims == SAMPLE_MODELS[case.model].spatial_dims
    return None if same else case.model
