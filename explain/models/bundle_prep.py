"""A MONAI bundle's preprocessing, run as MONAI's own array transforms, and its own inverse on the way back.

The image camviewer loaded becomes the MetaTensor MONAI's `LoadImaged` + `EnsureChannelFirstd` would give (the
file's voxel order, channel first, its RAS affine), the bundle's transforms run in a `Compose(map_items=False)`
(so several channels stay one image), and maps and predictions go back through the same Compose's `inverse()`,
as the bundle's `Invertd` does. Post-processing follows the bundle's order: softmax or sigmoid, then the argmax
before the inversion (nearest) or after it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from explain.errors import InputError
from explain.io.volume import Volume
from explain.models.bundle import BundleSpec


class BundleGrid:
    """An image's grid <-> a bundle's model grid, through the bundle's own transforms and their inverse.

    It holds the transforms' trace, which is not plain data, so maps on such a grid are cached in memory only.
    """

    kind = "bundle"
    persistent = False

    def __init__(self, volume_shape, model_shape, compose, preprocessed, argmax_first: bool = False) -> None:
        self.volume_shape, self.model_shape = tuple(volume_shape), tuple(model_shape)
        self.argmax_first = argmax_first
        self._compose = compose
        self._meta = copy.deepcopy(preprocessed.meta)
        self._ops = copy.deepcopy(preprocessed.applied_operations)
        self._affine = preprocessed.affine.clone()

    @property
    def ndim(self) -> int:
        return len(self.volume_shape)

    def model_affine(self, volume_affine: np.ndarray) -> np.ndarray:
        """Where the model grid lies in the world: the affine MONAI's transforms left on the image."""
        affine = np.asarray(self._affine.detach().cpu(), dtype=np.float64)
        if affine.shape == (4, 4):
            return affine
        out = np.eye(4)  # a 2D image: the 3x3 affine embedded, the image normal from the volume
        out[:2, :2], out[:2, 3] = affine[:2, :2], affine[:2, 2]
        out[:3, 2] = np.asarray(volume_affine, float)[:3, 2]
        return out

    def _back(self, values: torch.Tensor, nearest: bool = False) -> torch.Tensor:
        from monai.data import MetaTensor
        from monai.transforms.utils import convert_applied_interp_mode

        tensor = MetaTensor(values.detach().float().cpu(), affine=self._affine.clone(), meta=copy.deepcopy(self._meta))
        ops = copy.deepcopy(self._ops)
        tensor.applied_operations = (
            convert_applied_interp_mode(ops, mode="nearest", align_corners=None) if nearest else ops
        )
        back = self._compose.inverse(tensor)
        return torch.as_tensor(back.as_tensor() if hasattr(back, "as_tensor") else back)

    def to_volume(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, *model_shape) -> (B, *volume_shape) through the preprocessing's own inverse (linear)."""
        return self._back(maps)

    def logits_to_volume(self, logits: np.ndarray, output: str = "softmax"):
        """(labels, probabilities) on the image grid, in the bundle's own post-processing order."""
        t = torch.as_tensor(np.asarray(logits, dtype=np.float32))
        probs = torch.sigmoid(t) if output == "sigmoid" else torch.softmax(t, 0)
        probabilities = self._back(probs).numpy()
        if output == "sigmoid":
            return (probabilities > 0.5).astype(np.uint16), probabilities
        if self.argmax_first:
            labels = self._back(probs.argmax(0)[None].float(), nearest=True)[0].round()
            return labels.numpy().astype(np.uint16), probabilities
        return probabilities.argmax(0).astype(np.uint16), probabilities

    def region_to_model(self, region: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        raise InputError("a region mask is not supported for MONAI bundles; the class's own prediction is the region")

    def to_dict(self) -> dict:
        raise TypeError("a bundle grid is not plain data")


@dataclass(frozen=True)
class BundleFramework:
    """How a bundle's inputs are made and its outputs go back (what the engine asks of a framework)."""

    spec: BundleSpec
    name: str = "MONAI bundle"
    mirror_axes: tuple[int, ...] | None = None

    def compose(self):
        import monai.transforms as mt

        return mt.Compose([getattr(mt, name)(**args) for name, args in self.spec.transforms], map_items=False)

    def preprocess(self, volume: Volume):
        """The MetaTensor after the bundle's preprocessing (channel first), and the Compose that made it."""
        from monai.data import MetaTensor

        affine = torch.as_tensor(volume.affine, dtype=torch.float64)
        if volume.ndim == 2:  # MONAI's 2D images carry a 3x3 affine
            affine = affine[[0, 1, 3]][:, [0, 1, 3]]
        meta = {"original_affine": affine.clone(), "space": "RAS", "spatial_shape": np.asarray(volume.shape),
                "original_channel_dim": "no_channel" if volume.n_channels == 1 else 0, "filename_or_obj": volume.source}  # fmt: skip
        image = MetaTensor(torch.as_tensor(np.ascontiguousarray(volume.stack())), affine=affine, meta=meta)
        compose = self.compose()
        try:
            return compose(image), compose
        except Exception as e:  # noqa: BLE001 - MONAI's transforms raise many types on odd input
            raise InputError(
                f"the bundle's preprocessing failed on {volume.source}: {type(e).__name__}: {str(e)[:160]}"
            ) from e

    def prepare(self, volume: Volume, device: torch.device | str = "cpu") -> tuple[BundleGrid, torch.Tensor]:
        out, compose = self.preprocess(volume)
        grid = BundleGrid(volume.shape, tuple(out.shape[1:]), compose, out, self.spec.argmax_before_invert)
        return grid, torch.as_tensor(out.as_tensor(), dtype=torch.float32, device=device)[None]

    def prepare_bytes(self, volume: Volume) -> int:
        """A float copy of every channel and the resampled one (up to four times the image again, bound)."""
        return int(volume.stack().size * 4 * 6)
