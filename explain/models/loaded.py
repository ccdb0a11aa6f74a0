"""What a loaded model is: the module, its effective card and its identity; and what it can take.

The bottom of `explain.models.load`: every model format builds a `ModelFile`, and `explain.models.load.apply_card`
turns it into a `LoadedModel`. Nothing here reads a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from explain.errors import InputError
from explain.models.cards import ModelCard


@dataclass(frozen=True, eq=False)
class ModelFile:
    """What a model file holds, before any card from a form is applied."""

    module: nn.Module
    file_hash: str  # the bytes (and, for weights, the network name and arguments)
    source: str  # a display name, never a server path
    kind: str  # "pt2" | "weights" | "nnunet" | "bundle"
    input_shape: tuple[int, ...] | None  # (C, *spatial) as the program declares it
    card: dict[str, Any] | None  # the validated fields of the card found in or beside the file
    card_origin: str  # "inside the file", "sidecar <name>", or "none"
    framework: Any = None  # a framework's own preprocessing (nnU-Net, a MONAI bundle), or None: the card's


@dataclass(eq=False)
class LoadedModel:
    """A hookable module in eval mode, its effective card, and its identity (file + card)."""

    module: nn.Module
    card: ModelCard
    identity: str
    source: str
    kind: str  # "pt2" | "weights" | "nnunet" | "bundle"
    input_shape: tuple[int, ...] | None = None  # (C, *spatial)
    file_hash: str = ""
    card_origin: str = "none"
    filled: tuple[str, ...] = ()  # card fields taken from the form because the model's card lacks them
    overridden: tuple[str, ...] = ()  # card fields the user overrode on purpose
    framework: Any = None  # prepares inputs as the model's framework does (`prepare(volume, device)`), or None

    @property
    def spatial_dims(self) -> int | None:
        return len(self.input_shape) - 1 if self.input_shape else None


def check_fit(model: LoadedModel, ndim: int, source: str, channels: int = 1) -> None:
    """Refuse an image the model cannot take: 2D into a 3D model or the reverse, or another number of channels."""
    if model.input_shape is None:
        return
    if len(model.input_shape) - 1 != ndim:
        raise InputError(
            f"{source}: a {ndim}D image cannot go into {model.source}, which takes "
            f"{len(model.input_shape) - 1}D input {tuple(model.input_shape)}"
        )
    if model.input_shape[0] != channels:
        wanted = model.input_shape[0]
        names = f" ({', '.join(model.card.channel_names)})" if model.card.channel_names else ""
        raise InputError(
            f"channel mismatch: {model.source} expects {wanted} input channel{'s' if wanted != 1 else ''}{names} and "
            f"{source} has {channels}; give {wanted} co-registered images in that order, or one 4D file with "
            f"{wanted} volumes"
        )


def class_names(model: LoadedModel, n_classes: int) -> list[str]:
    """The card's names when they fit the model's output; otherwise 'class 0', 'class 1', ..."""
    names = model.card.class_names
    if names and len(names) == n_classes:
        return list(names)
    return [f"class {i}" for i in range(n_classes)]
