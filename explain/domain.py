"""Does the image suit the model? Warnings from what the model's card says it was trained on.

Two checks, both stated here once, both cheap (a strided sample of the voxels):
- spacing: the image's voxel sizes against the card's `spacing`, more than 2x apart on any axis (sorted, so that a
  card written in another axis order still compares like with like);
- modality: intensities that contradict the card's `modality`. More than 5% of voxels below -500 is air in
  Hounsfield units, which only CT has: an MR model shown a CT is told so. A CT model shown an image with no voxel
  below -200 (no air, no fat) is told it does not look like CT.
A warning never stops a map: the user may know better (a cropped CT has little air). It names both sides.
"""

from __future__ import annotations

import numpy as np

from explain.io.volume import Volume
from explain.models.cards import ModelCard

SPACING_RATIO = 2.0
AIR_HU = -500.0
CT_AIR_SHARE = 0.05
SAMPLE_VOXELS = 200_000


def _modality_code(card: ModelCard) -> str:
    return (card.modality or "").split(" ")[0].upper()


def _trained_on(card: ModelCard) -> str:
    words = {"MR": "MRI", "CT": "CT", "CR": "radiographs", "DX": "radiographs", "PT": "PET", "US": "ultrasound"}
    code = _modality_code(card)
    detail = (card.modality or "")[len(code) :].strip()
    what = f"{detail} {words.get(code, code)}".strip()
    if card.spacing:
        sizes = sorted(set(card.spacing))
        what += f" at {'x'.join(f'{s:g}' for s in card.spacing)} mm" if len(sizes) > 1 else f" at {sizes[0]:g} mm"
    return what


def air_share(data: np.ndarray) -> float:
    """Fraction of voxels below -500 (on a strided sample: a few hundred thousand voxels are plenty)."""
    flat = np.asarray(data).reshape(-1)
    step = max(1, flat.size // SAMPLE_VOXELS)
    return float(np.mean(flat[::step] < AIR_HU)) if flat.size else 0.0


def domain_warnings(card: ModelCard, volume: Volume) -> list[str]:
    """Sentences for the page when the image does not look like what the model was trained on."""
    out: list[str] = []
    code = _modality_code(card)
    if card.spacing and len(card.spacing) == volume.ndim:
        mine, theirs = sorted(volume.spacing), sorted(card.spacing)
        ratios = [max(a / b, b / a) for a, b in zip(mine, theirs)]
        if max(ratios) > SPACING_RATIO:
            shown = "x".join(f"{s:.3g}" for s in volume.spacing)
            out.append(
                f"This model was trained on {_trained_on(card)}; this image's voxels are {shown} mm, more than "
                f"{SPACING_RATIO:g} times different on one axis, so the map may not mean what it would on its own data."
            )
    if code in ("MR", "PT", "CR", "DX", "MG", "US", "NM"):
        share = air_share(volume.data)
        if share > CT_AIR_SHARE:
            out.append(
                f"This model was trained on {_trained_on(card)}; this looks like CT: {share:.0%} of its voxels are "
                f"below {AIR_HU:g} (air in Hounsfield units). Its predictions and maps may mean nothing here."
            )
    elif code == "CT" and volume.data.size and float(np.min(volume.data)) > -200.0:
        out.append(
            f"This model was trained on {_trained_on(card)}; this does not look like CT: no voxel is below -200, so "
            "the image holds no air or fat in Hounsfield units. Its predictions and maps may mean nothing here."
        )
    return out
