"""What to differentiate: a class logit, or a segmentation class summed over a region.

Classification: the score is the logit of the class (pre-softmax, so one class's
evidence is not mixed with the others'). Segmentation nets have no single score:
the target is the class's logit summed over that class's predicted mask (the
default), or over a region the caller gives.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from explain.errors import InputError


@dataclass
class Prediction:
    """Per-class scores and probabilities of one forward pass (batch of one)."""

    logits: torch.Tensor  # (1, K) or (1, K, D, H, W)
    task: str
    scores: torch.Tensor  # (K,)  classification: logits; segmentation: mean logit over the class mask
    probabilities: torch.Tensor  # (K,)  classification: softmax; segmentation: fraction of voxels
    predicted: int
    output: str = "softmax"  # segmentation: "softmax" (one label per voxel) or "sigmoid" (independent channels)

    def region(self, target: int) -> torch.Tensor:
        """Where a segmentation net predicts `target`: its argmax label, or its logit > 0 for a sigmoid output."""
        return region_of(self.logits, target, self.output)


def region_of(logits: torch.Tensor, target: int, output: str = "softmax") -> torch.Tensor:
    """(B, K, *spatial) logits -> (B, *spatial) mask of `target`: argmax, or logit > 0 for sigmoid outputs."""
    if output == "sigmoid":
        return logits[:, target] > 0
    return logits.argmax(dim=1) == target


def pick_logits(output: object) -> torch.Tensor:
    """The logits tensor from a model output (MONAI's ViT returns (logits, hidden_states))."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if isinstance(output, dict) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    raise InputError(f"the model returned {type(output).__name__}; expected a logits tensor")


def predict(output: object, task: str, kind: str = "softmax") -> Prediction:
    """Scores, probabilities and the predicted class from the model's output.

    Segmentation, `kind` "softmax": each voxel has one label (the argmax); "sigmoid": each class is its own
    binary map (logit > 0), as BraTS's overlapping tumour regions are. Probabilities are fractions of voxels.
    """
    logits = pick_logits(output)
    with torch.no_grad():
        if task == "classification":
            if logits.ndim != 2:
                raise InputError(
                    f"a classifier must output (batch, classes); got {tuple(logits.shape)}. "
                    "If this is a segmentation net, set task='segmentation' in its model card"
                )
            scores = logits[0].detach()
            probs = torch.softmax(scores.float(), dim=0)
            return Prediction(logits, task, scores, probs, int(scores.argmax()))
        if logits.ndim < 4:
            raise InputError(f"a segmentation net must output (batch, classes, *spatial); got {tuple(logits.shape)}")
        k = logits.shape[1]
        if kind == "sigmoid":  # every class on its own: its voxels are where its logit is above 0
            inside = logits[0] > 0
            counts = inside.flatten(1).sum(1).float()
            sums = (logits[0] * inside).flatten(1).sum(1)
            probs = counts / inside[0].numel()
            scores = sums / counts.clamp_min(1)
            return Prediction(logits, task, scores, probs, int(counts.argmax()), kind)
        top, labels = logits[0].max(dim=0)  # the predicted class's logit and the class, per voxel
        counts = torch.bincount(labels.flatten(), minlength=k).float()
        # Summed per class without a one-hot copy of the logits (K times the grid: gigabytes for a whole CT).
        sums = torch.zeros(k, dtype=top.dtype, device=top.device).index_add_(0, labels.flatten(), top.flatten())
        scores = sums / counts.clamp_min(1)
        probs = counts / labels.numel()
        foreground = counts[1:] if k > 1 else counts
        predicted = int(foreground.argmax()) + (1 if k > 1 else 0)
        return Prediction(logits, task, scores, probs, predicted, kind)


def resolve_targets(target: int | str | list[int] | None, prediction: Prediction) -> list[int]:
    """None -> the predicted class; 'all' -> every class; an int or list -> checked indices."""
    k = prediction.logits.shape[1]
    if target is None:
        return [prediction.predicted]
    if isinstance(target, str):
        if target == "all":
            return list(range(k))
        if target.isdigit():
            target = int(target)
        else:
            raise InputError(f"target must be a class index or 'all'; got {target!r}")
    wanted = [target] if isinstance(target, int) else list(target)
    for t in wanted:
        if not isinstance(t, int) or not 0 <= t < k:
            raise InputError(f"target class {t!r} does not exist; the model has {k} classes (0..{k - 1})")
    return wanted


def score(prediction: Prediction, target: int, region: torch.Tensor | None = None) -> torch.Tensor:
    """The scalar to differentiate for `target`."""
    logits = prediction.logits
    if prediction.task == "classification":
        return logits[:, target].sum()
    if region is None:
        region = prediction.region(target)[0]
        if not bool(region.any()):
            warnings.warn(f"class {target} is predicted nowhere; using its logit over the whole volume", stacklevel=2)
            region = torch.ones_like(region)
    if tuple(region.shape) != tuple(logits.shape[2:]):
        raise InputError(f"region shape {tuple(region.shape)} does not match the model grid {tuple(logits.shape[2:])}")
    return (logits[:, target] * region.to(logits.dtype)).sum()
