"""A model's prediction on an image's own grid, as its framework writes it: `python -m explain predict`.

Segmentation: a label map (softmax outputs) or one binary map per output (sigmoid outputs), and the class
probabilities, each on the first image's grid. Classification: the class probabilities. nnU-Net models predict as
nnU-Net's own predictor does (Gaussian windows, optional mirroring, folds averaged, the logits resampled back
before the argmax); other models through their preprocessing's inverse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from explain.cam.engine import predict_on_grid
from explain.errors import InputError
from explain.io.volume import Volume
from explain.models.loaded import LoadedModel, check_fit, class_names


@dataclass
class Outcome:
    """What `predict_case` returns; arrays are on the image's own voxel grid."""

    task: str
    output: str  # "softmax" or "sigmoid" (segmentation); "softmax" for a classifier
    class_names: list[str]
    probabilities: np.ndarray  # classification: (K,); segmentation: (K, *spatial)
    labels: np.ndarray | None = None  # softmax: (*spatial) uint16; sigmoid: (K, *spatial) 0/1; classifier: None
    mirrored: bool = False

    def voxel_counts(self) -> dict[str, int]:
        """Voxels per label (softmax) or per output channel (sigmoid)."""
        if self.labels is None:
            return {}
        if self.output == "sigmoid":
            return {name: int(self.labels[k].sum()) for k, name in enumerate(self.class_names)}
        counts = np.bincount(self.labels.ravel(), minlength=len(self.class_names))
        return {name: int(counts[k]) for k, name in enumerate(self.class_names)}


def predict_case(
    model: LoadedModel,
    volume: Volume,
    *,
    mirroring: bool | None = None,
    device: str = "auto",
    progress: Callable[..., None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Outcome:
    """The prediction for one case; `mirroring` None: on when the model allows it (nnU-Net's mirror axes)."""
    check_fit(model, volume.ndim, volume.source, volume.n_channels)
    allowed = getattr(model.framework, "mirror_axes", None)
    if mirroring and allowed is None:
        raise InputError(f"{model.source}: mirroring is off for this model (its trainer allows none)")
    axes = allowed if mirroring or (mirroring is None and allowed is not None) else None
    grid, prediction = predict_on_grid(model, volume, device, mirror_axes=axes, progress=progress, cancel=cancel)
    names = class_names(model, prediction.logits.shape[1])
    if model.card.task == "classification":
        return Outcome("classification", "softmax", names, prediction.probabilities.float().cpu().numpy())
    labels, probabilities = grid.logits_to_volume(prediction.logits[0].float().cpu().numpy(), model.card.output)
    return Outcome("segmentation", model.card.output, names, probabilities, labels, axes is not None)
