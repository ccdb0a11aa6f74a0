"""Capture layer activations (and attention weights) with hooks that never outlive the call.

Use it as a `with` block; hooks are removed in `finally`, so an exception inside
the block (or in the model) leaves the model exactly as it was:

    with capture(model, ["features.denseblock4"]) as cap:
        logits = model(x)
    acts = cap.acts["features.denseblock4"]

With `track_grads=True` each captured activation is made a gradient *leaf* when
nothing upstream needs gradients (parameters frozen), so autograd later goes from
the score back to the layer and no further: no backward pass below the layer.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from explain.errors import InputError


@dataclass
class Captured:
    """What one forward pass left behind: activations and post-softmax attention, by layer."""

    acts: dict[str, torch.Tensor] = field(default_factory=dict)
    attention: dict[str, torch.Tensor] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)


def resolve_layers(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    """Map dotted layer names to modules, or fail listing the closest existing names."""
    modules = dict(model.named_modules())
    out = {}
    for name in names:
        if name not in modules:
            close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.4)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise InputError(f"layer {name!r} does not exist in the model{hint}")
        out[name] = modules[name]
    return out


def members(model: nn.Module, name: str) -> list[str]:
    """The modules one layer name stands for: itself, or the same layer in every network of an ensemble (a module
    with `layer_members`, such as an nnU-Net fold ensemble), whose maps are summed."""
    fn = getattr(model, "layer_members", None)
    return list(fn(name)) if callable(fn) else [name]


def expand(model: nn.Module, layers: Sequence[str]) -> list[str]:
    """Every module name the layers stand for, in order."""
    return [m for name in layers for m in members(model, name)]


def pick_tensor(output: object, layer: str) -> tuple[torch.Tensor, int | None]:
    """The tensor a layer produced, and its position if the layer returned a tuple/list."""
    if isinstance(output, torch.Tensor):
        return output, None
    if isinstance(output, (tuple, list)):
        for i, item in enumerate(output):
            if isinstance(item, torch.Tensor) and item.is_floating_point() and item.ndim >= 3:
                return item, i
    raise InputError(
        f"layer {layer!r} returns {type(output).__name__}, with no feature-map tensor in it; pick another layer"
    )


def _replace(output: object, index: int | None, tensor: torch.Tensor) -> object:
    if index is None:
        return tensor
    items = list(output)  # type: ignore[arg-type]
    items[index] = tensor
    return type(output)(items) if isinstance(output, tuple) else items


@contextmanager
def capture(
    model: nn.Module, layers: Sequence[str] = (), attention: Sequence[str] = (), track_grads: bool = False
) -> Iterator[Captured]:
    """Hook `layers` (forward outputs) and `attention` (inputs of dropout-on-weights modules).

    The hooks are removed when the block exits, normally or by an exception.
    """
    targets = resolve_layers(model, list(layers))
    attn_targets = resolve_layers(model, list(attention))
    cap = Captured()
    handles = []

    def layer_hook(name: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> object:
            tensor, index = pick_tensor(output, name)
            cap.calls[name] = cap.calls.get(name, 0) + 1
            if not track_grads:
                cap.acts[name] = tensor.detach()
                return None
            if not tensor.requires_grad:
                tensor = tensor.detach().requires_grad_(True)  # the leaf: backward stops here
            cap.acts[name] = tensor
            # Downstream gets a copy, so an in-place op after this layer (ReLU(inplace=True))
            # can neither alter the captured values nor trip autograd on the leaf.
            return _replace(output, index, tensor.clone())

        return hook

    def attention_hook(name: str):
        def hook(_module: nn.Module, inputs: tuple) -> None:
            cap.attention[name] = inputs[0].detach()
            cap.calls[name] = cap.calls.get(name, 0) + 1

        return hook

    try:
        for name, module in targets.items():
            handles.append(module.register_forward_hook(layer_hook(name)))
        for name, module in attn_targets.items():
            handles.append(module.register_forward_pre_hook(attention_hook(name)))
        yield cap
    finally:
        for handle in handles:
            handle.remove()
    for name, count in cap.calls.items():
        if count > 1:
            raise InputError(
                f"layer {name!r} runs {count} times in one forward pass (shared weights); pick a layer that runs once"
            )


@dataclass(frozen=True)
class LayerInfo:
    """A candidate layer: its name, output shape without batch, and kind ('grid' or 'tokens')."""

    name: str
    shape: tuple[int, ...]
    kind: str = "grid"


@contextmanager
def _all_output_shapes(model: nn.Module) -> Iterator[dict[str, tuple[int, ...]]]:
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []

    def hook(name: str):
        def record(_m: nn.Module, _i: object, output: object) -> None:
            try:
                tensor, _ = pick_tensor(output, name)
            except InputError:
                return
            shapes.setdefault(name, tuple(int(s) for s in tensor.shape))

        return record

    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(hook(name)))
        yield shapes
    finally:
        for handle in handles:
            handle.remove()


def list_layers(model: nn.Module, example: torch.Tensor, token_grid: tuple[int, ...] | None = None) -> list[LayerInfo]:
    """Every module whose output has spatial extent, in forward order, with its shape.

    One dry forward pass (no gradients). Feature maps with the input's number of
    spatial axes ((B, C, D, H, W) or (B, C, H, W)) are 'grid' layers. With
    `token_grid` (a ViT), outputs of transformer blocks (B, 1+N, C) with N tokens
    are 'tokens' layers, reported as (C, *token_grid).
    """
    with _all_output_shapes(model) as shapes, torch.no_grad():
        model(example)
    spatial_dims = example.ndim - 2
    out = []
    n_tokens = None if token_grid is None else math.prod(token_grid)
    for name, shape in shapes.items():
        if len(shape) == 2 + spatial_dims and all(s >= 1 for s in shape[2:]):
            out.append(LayerInfo(name, shape[1:], "grid"))
        elif n_tokens and len(shape) == 3 and shape[1] == n_tokens + 1 and _is_block(name):
            out.append(LayerInfo(name, (shape[2], *token_grid), "tokens"))
    return out


def _is_block(name: str) -> bool:
    parts = name.split(".")
    return len(parts) == 2 and parts[0] == "blocks" and parts[1].isdigit()


def default_layer(layers: Sequence[LayerInfo]) -> str:
    """The deepest grid layer at least 2 voxels on each side; for ViTs the second-last block.

    Why not the last ViT block: with CLS-token classification only the CLS token of
    the last block reaches the head (LayerNorm is per token), so its patch tokens get
    exactly zero gradient and Grad-CAM there is blank. One block earlier, patch
    tokens still feed the CLS token through the last block's attention.
    """
    blocks = [info for info in layers if info.kind == "tokens"]
    if len(blocks) >= 2:
        return blocks[-2].name
    grid = [info for info in layers if info.kind == "grid" and min(info.shape[1:]) >= 2]
    if not grid:
        raise InputError("the model has no layer with a spatial feature map of at least 2 voxels a side")
    # Deepest = smallest grid; among equals, the last in forward order.
    smallest = min(math.prod(info.shape[1:]) for info in grid)
    return [info for info in grid if math.prod(info.shape[1:]) == smallest][-1].name
