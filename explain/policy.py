"""Every choice camviewer makes on the user's behalf, stated once.

The app, the command line and batch runs ask here: which methods a model
supports, its default target, how a class score is worded, and how a user's earlier choices carry over when the model, the method
or the image changes (`reconcile`). Nothing here draws anything.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from explain.cam.attention import is_vit
from explain.cam.hooks import LayerInfo
from explain.cam.layers import default_layer_for
from explain.cam.methods import ALL_METHODS, ATTENTION_METHODS, GRADIENT_METHODS, LABELS
from explain.models.loaded import LoadedModel

# Where a model comes from on the page, besides the bundled samples (the page lists these, tests pick them).
UPLOAD_MODEL = "Upload a model (.pt2, or a .zip of an nnU-Net folder or a MONAI bundle)"
UPLOAD_WEIGHTS = "Upload weights + MONAI network"
SERVER_MODELS = "A model on the server (CAMVIEWER_MODEL_DIR)"


def is_attention(method: str) -> bool:
    """Attention methods read a ViT's attention weights, not a layer's gradients."""
    return method in ATTENTION_METHODS


def valid_methods(model: LoadedModel) -> list[str]:
    """Gradient methods always; attention methods for ViT classifiers only. The first is the default.

    Segmentation starts with HiResCAM: Grad-CAM averages the gradient over the whole grid, which for a dense
    output mixes every voxel's evidence (on the sample UNet its map is zero everywhere; docs/decisions.md).
    """
    vit = is_vit(model.module) and model.card.task == "classification"
    methods = [m for m in ALL_METHODS if m in GRADIENT_METHODS or vit]
    if model.card.task == "segmentation" and "hirescam" in methods:
        methods.remove("hirescam")
        methods.insert(0, "hirescam")
    return methods


def method_label(method: str) -> str:
    return LABELS.get(method, method)


def gradient_layers(layers: list[LayerInfo]) -> list[str]:
    """Layers a gradient method can explain: spatial feature maps and ViT blocks."""
    return [info.name for info in layers if info.kind in ("grid", "tokens")]


def attention_blocks(layers: list[LayerInfo]) -> int:
    """How many transformer blocks a ViT has (0 for other models)."""
    return sum(1 for info in layers if info.kind == "tokens")


def default_target(model: LoadedModel, probabilities: np.ndarray) -> int:
    """Classification: the predicted class. Segmentation: the foreground class covering most voxels. Classes the
    card says have no map are passed over (the most likely class with a map is shown) unless every class is one."""
    scores = np.asarray(probabilities, dtype=float).copy()
    if model.card.task == "segmentation" and len(scores) > 1:
        scores[0] = -np.inf
    names = model.card.class_names or []
    mapped = [k for k in range(len(scores)) if not (k < len(names) and has_no_map(model, names[k]))]
    if mapped and len(mapped) < len(scores):
        scores[[k for k in range(len(scores)) if k not in mapped]] = -np.inf
    return int(np.argmax(scores))


def score_word(model: LoadedModel) -> str:
    """What the per-class number means: a softmax probability, or the share of voxels a segmentation labels."""
    return "fraction of voxels" if model.card.task == "segmentation" else "probability"


def target_label(name: str, value: float, model: LoadedModel) -> str:
    """'bright lesion (45%)' for a classifier; 'bright lesion (0.31% of voxels)' for a segmentation net; a class
    the card says has no map says so: 'no lesion (12%, no map)'."""
    score = f"{value:.2%} of voxels" if model.card.task == "segmentation" else f"{value:.0%}"
    return f"{name} ({score}{', no map' if has_no_map(model, name) else ''})"


def has_no_map(model: LoadedModel, name: str | None) -> bool:
    """The card lists this class among those without a map (its score is a constant of the model)."""
    return name is not None and name in (model.card.no_map_classes or [])


def no_map_sentence(name: str) -> str:
    return (
        f"The model's card says {name!r} has no map: its score is a constant of the model, not something it finds "
        "in the image. Pick another class to see where the model looked."
    )


def suited_methods(model: LoadedModel) -> list[str]:
    """The methods that say something about this model. On a segmentation model Grad-CAM and Grad-CAM++ pool their
    weights over every output voxel, so their maps wash over the whole image (the sample UNet's Grad-CAM is zero
    everywhere; docs/decisions.md): valid to ask for, not a method to carry over to it unasked."""
    methods = valid_methods(model)
    if model.card.task == "segmentation":
        return [m for m in methods if m not in ("gradcam", "gradcampp")]
    return methods


@dataclass(frozen=True)
class Choices:
    """What the user picked: plain values only (the app keeps this, never arrays or models)."""

    method: str | None = None
    layer: str | None = None
    target_name: str | None = None  # by name, so a class survives a change of model with the same names
    block: int | None = None
    head: int | None = None
    model: str | None = None  # identity of the model these choices were made for


def reconcile(
    choices: Choices, model: LoadedModel, layers: list[LayerInfo], names: list[str], probabilities: np.ndarray
) -> tuple[Choices, list[str]]:
    """Make `choices` valid for this model; each change comes with a sentence saying why.

    A choice that is still valid is never changed, except a method carried over from another model that does not
    suit this one (it falls back to this model's default). Missing choices take the defaults silently (that is a
    first visit, not a change). A class without a map is never chosen on the user's behalf.
    """
    notes: list[str] = []
    methods = valid_methods(model)
    method = choices.method
    switched = choices.model is not None and choices.model != model.identity
    if method not in methods:
        if method is not None:
            notes.append(f"{method_label(method)} does not apply to this model; showing {method_label(methods[0])}.")
        method = methods[0]
    elif switched and method not in suited_methods(model):
        notes.append(
            f"{method_label(method)} pools its weights over every output voxel, so on a segmentation model its map "
            f"washes over the whole image; showing {method_label(methods[0])}, this model's default. You can still "
            f"choose {method_label(method)}."
        )
        method = methods[0]
    layer = choices.layer
    candidates = gradient_layers(layers)
    if not is_attention(method) and layer not in candidates:
        fallback = default_layer_for(model, layers)
        if layer is not None:
            notes.append(f"layer {layer!r} does not exist in this model; showing {fallback!r}.")
        layer = fallback
    blocks = attention_blocks(layers)
    block = choices.block
    if method == "vit-attention" and (block is None or not 0 <= block < blocks):
        if block is not None:
            notes.append(f"block {block} does not exist (the ViT has {blocks}); showing the last block.")
        block = blocks - 1
    target = choices.target_name
    if target not in names:
        fallback = names[default_target(model, probabilities)]
        if target is not None:
            notes.append(f"class {target!r} does not exist in this model; showing {fallback!r}.")
        target = fallback
    out = replace(choices, method=method, layer=layer, target_name=target, block=block, model=model.identity)
    return out, notes


def request_title(
    method: str, layers: tuple[str, ...], block: int | None, target_name: str, window: tuple[int, ...] | None = None
) -> str:
    """'Grad-CAM · features.block3 · bright lesion': what a map is, known before it is computed.

    A map stitched from windows says so: 'Grad-CAM (weights per 96³ window) · ...', because Grad-CAM and Grad-CAM++
    pool their weights over one window, which makes them window-local quantities.
    """
    if method == "vit-attention":
        where = f"block {block}"
    elif method == "vit-rollout":
        where = "all blocks"
    else:
        where = ", ".join(layers)
    note = window_note(method, window)
    return f"{method_label(method)}{f' ({note})' if note else ''} · {where} · {target_name}"


def window_note(method: str, window: tuple[int, ...] | None) -> str:
    """'weights per 96³ window' (pooling methods) or 'stitched from 96³ windows'; '' for a one-pass map."""
    if not window:
        return ""
    size = f"{window[0]}{'³' if len(window) == 3 else '²'}" if len(set(window)) == 1 else "×".join(map(str, window))
    return f"weights per {size} window" if method in ("gradcam", "gradcampp") else f"stitched from {size} windows"


def montage_layers(layers: list[LayerInfo], layer: str, limit: int = 8) -> list[str]:
    """Every gradient layer at the depth (dotted-name depth) of `layer`, in forward order: one engine pass."""
    depth = layer.count(".")
    return [name for name in gradient_layers(layers) if name.count(".") == depth][:limit]


@dataclass(frozen=True)
class Shown:
    """A map the user saw: enough to offer it again for comparison, and to say what it is and what it was of."""

    key: str  # its request key
    title: str  # method · layer · class
    volume: str  # content hash of its image
    model_name: str  # the model as the page names it

    @property
    def label(self) -> str:
        return f"{self.title} — {self.model_name}"


def remember(history: list[Shown], shown: Shown, keep: int = 12) -> list[Shown]:
    """The last `keep` maps shown, newest last, each once."""
    return [h for h in history if h.key != shown.key][-(keep - 1) :] + [shown]


def comparable(history: list[Shown], volume: str, current: str) -> list[Shown]:
    """The earlier maps that can sit beside the one on screen: those of the same image, newest first."""
    return [h for h in reversed(history) if h.volume == volume and h.key != current]
