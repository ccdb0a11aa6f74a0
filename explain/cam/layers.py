"""What a model's layers look like: candidate layers, their shapes, the ViT token grid, the default layer."""

from __future__ import annotations

from collections import OrderedDict

import torch

from explain.cam.attention import is_vit, token_grid
from explain.cam.cost import peak_bytes
from explain.cam.device import budget, frozen, on_device, resolve_device
from explain.cam.hooks import LayerInfo, default_layer, list_layers
from explain.cam.windows import stride_quantum
from explain.errors import InputError
from explain.limits import check_bytes
from explain.models.loaded import LoadedModel


def example_shape(model: LoadedModel) -> tuple[int, ...]:
    """(C, *spatial) of one input as the model was built for: one window for a patch model, else its input."""
    if model.input_shape is None:
        raise InputError("the model's input shape is unknown; give it in the model card (input_shape)")
    if model.card.patch_size:
        return (model.input_shape[0], *model.card.patch_size)
    return tuple(model.input_shape)


def example_input(model: LoadedModel, device: torch.device) -> torch.Tensor:
    """A zero input of `example_shape` (batch of one), its forward pass measured against the budget first.

    A segmentation network that is run in windows anyway (not a `.pt2`) is listed at a smaller cube when its
    card's shape does not fit: its layers are the same, their shapes scale with the input.
    """
    shape, allowed = example_shape(model), budget(device)
    windowable = model.card.task == "segmentation" and model.kind != "pt2"
    quantum = stride_quantum(shape[1:])
    while True:
        cost = peak_bytes(model.module, shape, task=model.card.task, method="predict")
        if cost is None or cost.peak <= allowed or not windowable or max(shape[1:]) <= quantum:
            break
        shape = (shape[0], *(max(quantum, s // 2 // quantum * quantum) for s in shape[1:]))
    if cost is not None:
        check_bytes(cost.peak, f"a forward pass at {'x'.join(map(str, shape[1:]))}", model.source, allowed)
    return torch.zeros((1, *shape), device=device)


_LAYER_CACHE: OrderedDict[tuple[str, str], tuple[list[LayerInfo], tuple[int, ...] | None]] = OrderedDict()


def model_layers(
    model: LoadedModel, device: str | torch.device = "auto"
) -> tuple[list[LayerInfo], tuple[int, ...] | None]:
    """Candidate layers and the ViT token grid (None for other models), cached per model identity."""
    dev = resolve_device(device)
    key = (model.identity, str(dev))
    if key in _LAYER_CACHE:
        _LAYER_CACHE.move_to_end(key)
        return _LAYER_CACHE[key]
    with on_device():
        module = model.module.to(dev)
        # An ensemble lists the layers of one of its networks; each name stands for that layer in all of them.
        listed = module.representative() if hasattr(module, "representative") else module
        example = example_input(model, dev)
        with frozen(module):
            try:
                grid = token_grid(listed, example) if is_vit(listed) else None
                layers = list_layers(listed, example, grid)
            except InputError:
                raise
            except Exception as e:  # noqa: BLE001 - the model's own errors, reported plainly
                raise InputError(
                    f"{model.source}: the model does not run on an input of shape {tuple(example.shape)}: "
                    f"{type(e).__name__}: {str(e)[:200]}"
                ) from e
    _LAYER_CACHE[key] = (layers, grid)
    while len(_LAYER_CACHE) > 64:
        _LAYER_CACHE.popitem(last=False)
    return layers, grid


def default_layer_for(model: LoadedModel, layers: list[LayerInfo]) -> str:
    """The card's default layer if it exists in the model, else the engine's choice (see hooks.default_layer)."""
    names = {info.name for info in layers}
    if model.card.default_layer and model.card.default_layer in names:
        return model.card.default_layer
    return default_layer(layers)
