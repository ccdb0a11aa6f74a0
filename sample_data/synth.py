"""Synthetic 3D lesion cases on the MNI152 template, and the datasets the sample models learn from.

Anatomy: the MNI152 2009a T1 template shipped inside nilearn (see MNI152_NOTICE.txt).
Each case is the template with synthetic lesions (ellipsoids with soft edges in
white matter, bright = intensity x(1+c), dark = x(1-c)), a smooth multiplicative
bias field, a random global gain and Gaussian noise. Classes: 0 no lesion,
1 bright lesion, 2 dark lesion. Every case goes through the same `GridMap` the
engine uses, so models see exactly what the app feeds them.

Lesion draws come from a named `LesionSet`: the training distribution, and
held-out sets outside it (smaller and larger lesions, lower contrast), so that
evaluation says how far the sample models generalise rather than only how well
they fit what they were trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from explain.cam.preprocess import GridMap, plan_grid
from explain.models.cards import ModelCard

CLASS_NAMES = ["no lesion", "bright lesion", "dark lesion"]
SEG_NAMES = ["background", "bright lesion", "dark lesion"]
# z-score, not clipped percentiles: clipping put bright lesions at the same 1.0 as the scalp,
# and a small net then could not tell them apart (it stayed at chance).
INTENSITY = {"kind": "zscore"}


@dataclass(frozen=True)
class LesionSet:
    """How lesions are drawn: radius bands in mm (one band per case, radii uniform in it) and contrasts."""

    name: str
    radius_bands: tuple[tuple[float, float], ...]
    bright_contrast: tuple[float, float]
    dark_contrast: tuple[float, float]
    description: str


TRAIN_SET = LesionSet(
    "in-distribution", ((7.0, 13.0),), (0.6, 1.0), (0.55, 0.8), "radii 7-13 mm, contrast 0.6-1.0 / 0.55-0.8"
)
# Held-out sets: new draws (own seeds) from the training distribution and from outside it.
EVAL_SETS = {
    "in-distribution": TRAIN_SET,
    "ood-size": LesionSet(
        "ood-size",
        ((4.0, 7.0), (13.0, 17.0)),
        TRAIN_SET.bright_contrast,
        TRAIN_SET.dark_contrast,
        "radii 4-7 or 13-17 mm (training: 7-13), training contrast",
    ),
    "ood-contrast": LesionSet(
        "ood-contrast",
        TRAIN_SET.radius_bands,
        (0.3, 0.5),
        (0.3, 0.5),
        "contrast 0.3-0.5 (training: 0.6-1.0 bright, 0.55-0.8 dark), training radii",
    ),
}


def template() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """T1 template scaled to [0, 1], a white-matter placement mask, and the affine."""
    import nilearn.datasets

    data_dir = Path(nilearn.datasets.__file__).parent / "data"
    t1 = nib.load(data_dir / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    wm = nib.load(data_dir / "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz")
    if not np.allclose(t1.affine, wm.affine):
        raise RuntimeError("nilearn's T1 and WM templates are not on the same grid")
    wm_prob = np.asarray(wm.dataobj, dtype=np.float32)
    wm_prob = wm_prob / max(float(wm_prob.max()), 1e-6)
    return np.asarray(t1.dataobj, dtype=np.float32) / 255.0, wm_prob > 0.9, t1.affine


class Lesion:
    """An axis-aligned ellipsoid with a soft edge; `kind` 1 = bright, 2 = dark."""

    def __init__(self, center: np.ndarray, radii: np.ndarray, kind: int, contrast: float):
        self.center, self.radii, self.kind, self.contrast = center, radii, kind, contrast

    def paint(self, image: np.ndarray, labels: np.ndarray) -> None:
        """Multiply the image by the lesion profile in place; label voxels inside the ellipsoid."""
        lo = np.maximum(np.floor(self.center - self.radii - 2).astype(int), 0)
        hi = np.minimum(np.ceil(self.center + self.radii + 3).astype(int), image.shape)
        grids = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij")
        r = np.sqrt(sum(((g - c) / rad) ** 2 for g, c, rad in zip(grids, self.center, self.radii)))
        profile = np.clip((1.25 - r) / 0.5, 0, 1)  # 1 inside r<0.75, 0 beyond r=1.25
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        sign = 1.0 if self.kind == 1 else -1.0
        image[box] *= 1 + sign * self.contrast * profile
        labels[box][r <= 1.0] = self.kind

    def describe(self, affine: np.ndarray) -> dict:
        """JSON-ready position (voxel and world mm), size and contrast."""
        world = affine @ np.append(self.center, 1.0)
        return {
            "kind": CLASS_NAMES[self.kind],
            "label": self.kind,
            "center_voxel": [round(float(c), 1) for c in self.center],
            "center_world_mm": [round(float(w), 1) for w in world[:3]],
            "radii_mm": [round(float(r), 1) for r in self.radii],
            "contrast": round(self.contrast, 2),
        }


def random_lesion(rng: np.random.Generator, placement: np.ndarray, kind: int, dist: LesionSet = TRAIN_SET) -> Lesion:
    """A lesion centred on a random placement voxel, with size and contrast drawn from `dist`."""
    candidates = np.argwhere(placement)
    center = candidates[rng.integers(len(candidates))].astype(float)
    band = (
        dist.radius_bands[rng.integers(len(dist.radius_bands))] if len(dist.radius_bands) > 1 else dist.radius_bands[0]
    )
    radii = rng.uniform(*band, size=3)
    contrast = rng.uniform(*(dist.bright_contrast if kind == 1 else dist.dark_contrast))
    return Lesion(center, radii, kind, float(contrast))


def bias_field(rng: np.random.Generator, shape: tuple[int, ...], strength: float) -> np.ndarray:
    """A smooth multiplicative field: 1 + a separable random quadratic, about +-strength."""
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    terms = [1 + strength * (rng.uniform(-1, 1) * a + 0.5 * rng.uniform(-1, 1) * a**2) for a in axes]
    return terms[0][:, None, None] * terms[1][None, :, None] * terms[2][None, None, :]


def make_case(
    rng: np.random.Generator,
    base: np.ndarray,
    placement: np.ndarray,
    kinds: list[int],
    noise: bool = True,
    dist: LesionSet = TRAIN_SET,
) -> tuple[np.ndarray, np.ndarray, list[Lesion]]:
    """One case on the template grid: image (0..~2), label map (0/1/2), and its lesions."""
    image = base.copy()
    labels = np.zeros(base.shape, dtype=np.uint8)
    lesions = [random_lesion(rng, placement, k, dist) for k in kinds]
    for lesion in lesions:
        lesion.paint(image, labels)
    image *= bias_field(rng, image.shape, rng.uniform(0.0, 0.15)) * rng.uniform(0.8, 1.2)
    if noise:
        image += rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(0.0, 0.03)
    return image, labels, lesions


def case_kinds(i: int) -> list[int]:
    """Case i of a dataset: cycle through no lesion, one bright lesion, one dark lesion."""
    return [] if i % 3 == 0 else [1 + (i % 3 == 2)]


def grid_map(base: np.ndarray, affine: np.ndarray, shape: tuple[int, int, int]) -> GridMap:
    """The engine's map from the template grid to a sample model's input grid."""
    card = ModelCard(input_shape=(1, *shape), intensity=INTENSITY, orientation="RAS")
    return plan_grid(base.shape, affine, card, shape)


def build_dataset(
    rng: np.random.Generator,
    base: np.ndarray,
    placement: np.ndarray,
    affine: np.ndarray,
    counts: dict[tuple[int, int, int], int],
    dist: LesionSet = TRAIN_SET,
) -> dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Cases drawn once and mapped onto several model grids: the first `counts[shape]` cases go to `shape`.

    So models on different grids share their first cases, and a model that needs more data (the ViT)
    gets more without drawing the others' again. Returns per shape: inputs (n, 1, *shape),
    class labels (n,), label maps (n, *shape) uint8.
    """
    grids = {shape: grid_map(base, affine, shape) for shape in counts}
    out: dict[tuple[int, int, int], tuple[list, list, list]] = {shape: ([], [], []) for shape in counts}
    for i in range(max(counts.values())):
        kinds = case_kinds(i)
        image, labels, _ = make_case(rng, base, placement, kinds, dist=dist)
        for shape, grid in grids.items():
            if i >= counts[shape]:
                continue
            xs, ys, maps = out[shape]
            xs.append(grid.to_model(image)[0])
            label_map = torch.zeros(shape, dtype=torch.uint8)
            for k in kinds:  # one resampling per lesion kind present, not per class
                label_map[grid.region_to_model(labels == k)] = k
            maps.append(label_map)
            ys.append(torch.tensor(kinds[0] if kinds else 0))
    return {shape: (torch.stack(xs), torch.stack(ys), torch.stack(maps)) for shape, (xs, ys, maps) in out.items()}


def coarse_labels(label_map: torch.Tensor, grid: tuple[int, ...], classes: int = 3) -> torch.Tensor:
    """Label maps (n, *fine) -> (n, *grid): a cell takes a lesion's label if any lesion voxel is in it."""
    onehot = F.one_hot(label_map.long(), classes).movedim(-1, 1).float()
    pool = F.adaptive_max_pool3d if label_map.ndim == 4 else F.adaptive_max_pool2d
    pooled = pool(onehot[:, 1:], grid)
    lesion = pooled.amax(1) > 0
    return torch.where(lesion, pooled.argmax(1) + 1, torch.zeros_like(lesion, dtype=torch.long))
