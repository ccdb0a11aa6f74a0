"""One pass or sliding windows, and how many windows at a time: decided from measured costs, before anything runs.

The rule (docs/decisions.md, "Clinical-size maps"):
- a model whose card has `patch_size` is run window by window over the whole model grid;
- any other model runs in one pass when that fits the budget;
- when it does not, a segmentation network (fully convolutional, not a `.pt2` with its fixed input) is run in the
  largest cube of windows that fits; a classifier is refused, since it only makes sense on its whole input;
- refused, in one sentence with the figure, only when not even one window fits.
The window batch is as many windows as fit beside the stitching buffers.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch

from explain.cam.attention import attention_layers
from explain.cam.cost import bound_from_layers, finish_bytes, peak_bytes, stitch_bytes
from explain.cam.device import budget
from explain.cam.windows import WindowPlan, plan_windows, stride_quantum
from explain.errors import InputError
from explain.limits import mib
from explain.models.loaded import LoadedModel

MAX_BATCH = 16


@dataclass(frozen=True)
class RunPlan:
    """How a computation runs: its model grid, windows (None: one pass), windows per batch, estimated peak."""

    grid: tuple[int, ...]
    windows: WindowPlan | None
    batch: int
    peak: int  # estimated bytes, stitching included
    budget: int
    n_classes: int  # output channels of the model (from the measuring pass; 1 when it gave none)

    def to_dict(self) -> dict:
        """How a computation ran, for its result and reports: grid, windows, batch, estimated and allowed bytes."""
        return {
            "grid": list(self.grid),
            "windows": len(self.windows) if self.windows else 1,
            "window": list(self.windows.patch) if self.windows else None,
            "batch": self.batch,
            "planned_peak_bytes": self.peak,
            "budget_bytes": self.budget,
        }

    def describe(self) -> str:
        if self.windows is None:
            return f"one pass over {'x'.join(map(str, self.grid))}, about {mib(self.peak)}"
        return f"{self.windows.describe()}, {self.batch} at a time, about {mib(self.peak)}"


def plan_run(
    model: LoadedModel,
    grid: tuple[int, ...],
    *,
    method: str,
    layers: tuple[str, ...] = (),
    targets: tuple[int, ...] | str | None = None,
    device: torch.device,
    gradients: bool = True,
) -> RunPlan:
    """Decide one pass or windows for a model grid `grid` (the whole volume at the model's spacing).

    `targets` as in a request (indices, "all", or None for the predicted class) sizes the stitching buffers.
    """
    allowed = budget(device)
    channels = model.input_shape[0] if model.input_shape else 1
    kind = method if gradients else "predict"
    card = model.card

    def n_maps(n_classes: int) -> int:
        per_layer = n_classes if targets == "all" else len(targets) if isinstance(targets, tuple) else 1
        return max(len(layers), 1) * per_layer if gradients else 0

    if card.patch_size:
        return _windows(model, grid, tuple(card.patch_size), kind, layers, n_maps, allowed, channels)
    whole, n_classes = _cost(model, (channels, *grid), kind, layers, 1)
    if whole <= allowed:
        return RunPlan(tuple(grid), None, 1, whole, allowed, n_classes)
    if card.task != "segmentation" or model.kind == "pt2":
        why = "a classifier sees its whole input" if card.task != "segmentation" else "a .pt2 takes one fixed input"
        raise InputError(
            f"{model.source}: one pass over {'x'.join(map(str, grid))} would need about {mib(whole)}, over the "
            f"{mib(allowed)} this computation may use (CAMVIEWER_MAX_BYTES); it cannot run in windows, since {why}"
        )
    side = _fitting_side(model, grid, whole, kind, layers, n_maps(n_classes), n_classes, allowed, channels)
    patch = tuple(min(side, g) for g in grid)
    return _windows(model, grid, patch, kind, layers, n_maps, allowed, channels)


def _windows(model, grid, patch, kind, layers, n_maps, allowed, channels) -> RunPlan:
    card = model.card
    plan = plan_windows(grid, patch, overlap=card.overlap, blend=card.blend, layout=card.window_layout)
    one, n_classes = _cost(model, (channels, *patch), kind, layers, 1)
    buffers = stitch_bytes(plan.padded, n_classes, n_maps(n_classes)) + 4 * math.prod(plan.padded) * channels
    if max(one, finish_bytes(plan.padded)) + buffers > allowed:
        raise InputError(
            f"{model.source}: one window of {'x'.join(map(str, patch))} over a grid of {'x'.join(map(str, grid))} "
            f"would need about {mib(max(one, finish_bytes(plan.padded)) + buffers)}, over the {mib(allowed)} this "
            "computation may use "
            "(CAMVIEWER_MAX_BYTES)"
        )
    # A first guess from batches of one and two, then the guess itself measured (workspaces grow faster than
    # linearly with the batch), smaller until it fits.
    two, _ = _cost(model, (channels, *patch), kind, layers, 2) if len(plan) > 1 else (2 * one, n_classes)
    per_window = max(two - one, 1)
    batch = max(int(min(len(plan), MAX_BATCH, 1 + (allowed - buffers - one) // per_window)), 1)
    cost = {1: one, 2: two}
    while batch > 1:
        cost.setdefault(batch, _cost(model, (channels, *patch), kind, layers, batch)[0])
        if cost[batch] + buffers <= allowed:
            break
        batch -= 1
    # After the windows, the accumulators stay while the prediction and the maps are finished.
    peak = max(cost[batch], finish_bytes(plan.padded)) + buffers
    return RunPlan(tuple(grid), plan, batch, peak, allowed, n_classes)


def _fitting_side(model, grid, whole, kind, layers, n_maps, n_classes, allowed, channels) -> int:
    """The largest cube side (a multiple of the network's stride) whose window and buffers fit."""
    quantum = stride_quantum((model.input_shape or (1, 32))[1:])
    buffers = stitch_bytes(grid, n_classes, n_maps) + 4 * math.prod(grid) * channels
    per_voxel = whole / math.prod(grid)
    side = int(((allowed - buffers) / max(per_voxel, 1e-9)) ** (1 / len(grid)))
    side = max(quantum, side // quantum * quantum)
    while side >= quantum:
        patch = tuple(min(side, g) for g in grid)
        if _cost(model, (channels, *patch), kind, layers, 1)[0] + buffers <= allowed:
            return side
        side -= quantum
    return quantum  # refused by _windows with the figure


_COSTS: OrderedDict[tuple, tuple[int, int]] = OrderedDict()


def _cost(model: LoadedModel, shape: tuple[int, ...], kind: str, layers: tuple[str, ...], batch: int):
    """(estimated peak bytes, output classes) of one pass (explain.cam.cost), remembered per model and shape."""
    key = (model.identity, shape, kind, layers, batch)
    if key not in _COSTS:
        attention = tuple(attention_layers(model.module)) if kind.startswith("vit") else ()
        cost = peak_bytes(
            model.module, shape, task=model.card.task, method=kind, layers=layers, attention=attention, batch=batch
        )
        names = len(model.card.class_names or ()) or 1
        if cost is not None:
            _COSTS[key] = (cost.peak, cost.classes or names)
        else:
            _COSTS[key] = (_fallback(model, shape, batch), names)
        while len(_COSTS) > 256:
            _COSTS.popitem(last=False)
    return _COSTS[key]


def _fallback(model: LoadedModel, shape: tuple[int, ...], batch: int) -> int:
    """For a model that cannot run on fake tensors: a bound from its layer listing, scaled to this shape."""
    from explain.cam.layers import model_layers

    infos, _ = model_layers(model, "cpu")
    return batch * bound_from_layers([i.shape for i in infos], model.input_shape or shape, shape)
