"""The one orchestrator: volume + model -> CAMs on the volume's own grid.

    from explain.engine import explain
    result = explain(model, volume, method="gradcam", target="all")

One forward pass for any number of layers and classes; per class one
`torch.autograd.grad` from the score to the captured activations only. Parameters
are frozen for the call, so neither parameter gradients nor a backward pass
below the layer are computed. Everything stays on the device until the end.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from explain import __version__
from explain.attention import (
    attention_layers,
    block_to_feature_map,
    cls_attention,
    is_vit,
    require_attention,
    rollout,
    token_grid,
    tokens_to_grid,
)
from explain.errors import InputError
from explain.hooks import LayerInfo, capture, default_layer, list_layers
from explain.methods import ALL_METHODS, ATTENTION_METHODS, GRADIENT_METHODS, display_map
from explain.models import LoadedModel
from explain.preprocess import GridMap, plan_grid
from explain.targets import predict, resolve_targets, score
from explain.volumes import Volume, make_volume


@dataclass
class CamResult:
    """One map: raw signed values on the layer grid, and 0..1 values on the volume grid."""

    method: str
    layer: str
    target: int
    target_name: str
    raw_map: np.ndarray  # (d, h, w) on the layer (or token) grid, signed, before ReLU
    cam: np.ndarray  # (I, J, K) on the volume's voxel grid: ReLU, then / raw peak; 1 = most important
    raw_peak: float  # the raw value that maps to 1.0
    warnings: list[str] = field(default_factory=list)


@dataclass
class Explanation:
    """All maps of one engine call, with the prediction and timings (seconds)."""

    results: list[CamResult]
    task: str
    class_names: list[str]
    scores: np.ndarray
    probabilities: np.ndarray
    predicted: int
    model_grid: tuple[int, int, int]
    device: str
    timings: dict[str, float]
    volume_hash: str
    model_hash: str
    engine_version: str = __version__
    warnings: list[str] = field(default_factory=list)

    def get(self, layer: str | None = None, target: int | None = None) -> CamResult:
        """The result for (layer, target); either may be omitted when unambiguous."""
        for r in self.results:
            if (layer is None or r.layer == layer) and (target is None or r.target == target):
                return r
        raise KeyError(f"no result for layer={layer!r}, target={target!r}")

    def summary(self) -> dict:
        """JSON-ready description (no arrays)."""
        return {
            "task": self.task,
            "class_names": self.class_names,
            "scores": [float(s) for s in self.scores],
            "probabilities": [float(p) for p in self.probabilities],
            "predicted": self.predicted,
            "maps": [
                {
                    "method": r.method,
                    "layer": r.layer,
                    "target": r.target,
                    "target_name": r.target_name,
                    "raw_shape": list(r.raw_map.shape),
                    "shape": list(r.cam.shape),
                    "raw_peak": r.raw_peak,
                    "warnings": r.warnings,
                }
                for r in self.results
            ],
            "model_grid": list(self.model_grid),
            "device": self.device,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "volume_hash": self.volume_hash,
            "model_hash": self.model_hash,
            "engine_version": self.engine_version,
            "warnings": self.warnings,
        }


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an input error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was asked for but no GPU is available; use --device cpu or auto")
    return device


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """eval() and requires_grad=False for the call; the previous state is restored afterwards."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def _as_volume(volume: Volume | np.ndarray) -> Volume:
    if isinstance(volume, Volume):
        return volume
    return make_volume(np.asarray(volume), np.eye(4), "array")


def _example(model: LoadedModel, device: torch.device) -> torch.Tensor:
    if model.input_shape is None:
        raise InputError("the model's input shape is unknown; give it in the model card (input_shape)")
    return torch.zeros((1, *model.input_shape), device=device)


_LAYER_CACHE: dict[tuple[str, str], tuple[list[LayerInfo], tuple[int, int, int] | None]] = {}


def model_layers(
    model: LoadedModel, device: str | torch.device = "auto"
) -> tuple[list[LayerInfo], tuple[int, int, int] | None]:
    """Candidate layers (cached per model hash) and the ViT token grid, if a ViT."""
    dev = resolve_device(device)
    key = (model.content_hash, str(dev))
    if key not in _LAYER_CACHE:
        module = model.module.to(dev)
        example = _example(model, dev)
        with frozen(module):
            try:
                grid = token_grid(module, example) if is_vit(module) else None
                layers = list_layers(module, example, grid)
            except InputError:
                raise
            except Exception as e:  # noqa: BLE001 - the model's own errors, reported plainly
                raise InputError(
                    f"the model does not run on an input of shape {tuple(example.shape)}: {type(e).__name__}: {e}"
                ) from e
        _LAYER_CACHE[key] = (layers, grid)
    return _LAYER_CACHE[key]


def default_layer_for(model: LoadedModel, device: str | torch.device = "auto") -> str:
    """The card's default layer if set, else the engine's choice (see hooks.default_layer)."""
    layers, _ = model_layers(model, device)
    if model.card.default_layer and model.card.default_layer in {info.name for info in layers}:
        return model.card.default_layer
    return default_layer(layers)


def valid_methods(model: LoadedModel) -> list[str]:
    """Methods this model supports: gradient methods always, attention ones only for ViTs."""
    vit = is_vit(model.module) and model.card.task == "classification"
    return [m for m in ALL_METHODS if m in GRADIENT_METHODS or vit]


def _model_input(model: LoadedModel, volume: Volume, device: torch.device) -> tuple[nn.Module, GridMap, torch.Tensor]:
    """The module on `device`, the volume-to-model grid map, and the model's input tensor."""
    module = model.module.to(device)
    if model.input_shape is not None and len(model.input_shape) - 1 != volume.ndim:
        raise InputError(
            f"{volume.source}: a {volume.ndim}D image cannot go into a model that takes "
            f"{len(model.input_shape) - 1}D input {tuple(model.input_shape)}"
        )
    model_shape = tuple(model.input_shape[1:]) if model.input_shape else None
    grid = plan_grid(volume.shape, volume.affine, model.card, model_shape)
    channels = model.input_shape[0] if model.input_shape else 1
    return module, grid, grid.to_model(volume.data, device, channels)


def classify(
    model: LoadedModel, volume: Volume | np.ndarray, device: str | torch.device = "auto"
) -> tuple[np.ndarray, np.ndarray, int]:
    """One forward pass without gradients: (scores, probabilities, predicted class)."""
    module, _, x = _model_input(model, _as_volume(volume), resolve_device(device))
    with frozen(module), torch.no_grad():
        prediction = predict(_run(module, x), model.card.task)
    scores = prediction.scores.float().cpu().numpy()
    return scores, prediction.probabilities.float().cpu().numpy(), prediction.predicted


def explain(
    model: LoadedModel,
    volume: Volume | np.ndarray,
    method: str = "gradcam",
    layers: Sequence[str] | str | None = None,
    target: int | str | Sequence[int] | None = None,
    device: str | torch.device = "auto",
    region: np.ndarray | None = None,
    head: int | None = None,
    block: int | None = None,
) -> Explanation:
    """Compute CAMs for every (layer, target) pair in one forward pass.

    - method: one of `ALL_METHODS`.
    - layers: dotted module names (default: the card's or the engine's choice).
      Ignored by attention methods, which use `block` (vit-attention; default the
      last block) and `head` (default: mean over heads).
    - target: a class index, a list, 'all', or None for the predicted class.
    - region: segmentation only; a mask on the volume's (or the model's) grid.
    Returns maps on the volume's own voxel grid, ready to save with its affine.
    """
    if method not in ALL_METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(ALL_METHODS)}")
    t_start = time.perf_counter()
    volume = _as_volume(volume)
    dev = resolve_device(device)
    card = model.card
    module, grid, x = _model_input(model, volume, dev)
    timings = {"preprocess": time.perf_counter() - t_start}

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if method in ATTENTION_METHODS:
            results, prediction = _attention_maps(model, module, x, grid, method, head, block, target)
        else:
            layer_names = [layers] if isinstance(layers, str) else list(layers or [])
            if not layer_names:
                layer_names = [default_layer_for(model, dev)]
            results, prediction = _gradient_maps(model, module, x, grid, method, layer_names, target, region, timings)
    notes = [str(w.message) for w in caught]
    class_names = _class_names(card.class_names, prediction.logits.shape[1])
    for r in results:
        r.target_name = class_names[r.target]
    timings["total"] = time.perf_counter() - t_start
    return Explanation(
        results,
        card.task,
        class_names,
        prediction.scores.float().cpu().numpy(),
        prediction.probabilities.float().cpu().numpy(),
        prediction.predicted,
        tuple(x.shape[2:]),
        str(dev),
        timings,
        volume.content_hash,
        model.content_hash,
        warnings=notes,
    )


def _class_names(names: list[str] | None, k: int) -> list[str]:
    if names and len(names) == k:
        return list(names)
    return [f"class {i}" for i in range(k)]


def _run(module: nn.Module, x: torch.Tensor) -> object:
    try:
        return module(x)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - the model's own errors, reported plainly
        raise InputError(f"the model failed on an input of shape {tuple(x.shape)}: {type(e).__name__}: {e}") from e


def _gradient_maps(
    model: LoadedModel,
    module: nn.Module,
    x: torch.Tensor,
    grid: GridMap,
    method: str,
    layer_names: list[str],
    target: object,
    region: np.ndarray | None,
    timings: dict[str, float],
) -> tuple[list[CamResult], object]:
    fn = GRADIENT_METHODS[method]
    tokens = {}
    if is_vit(module):
        layer_infos, token_shape = model_layers(model, x.device)
        tokens = {info.name: token_shape for info in layer_infos if info.kind == "tokens"}
    t0 = time.perf_counter()
    with frozen(module), capture(module, layer_names, track_grads=True) as cap, torch.enable_grad():
        output = _run(module, x)
        prediction = predict(output, model.card.task)
        missing = [name for name in layer_names if name not in cap.acts]
        if missing:
            raise InputError(f"layer(s) {missing} did not run in the forward pass; pick another layer")
        _sync(x.device)
        timings["forward"] = time.perf_counter() - t0
        region_t = _region_on_model_grid(region, grid, prediction.logits, x.device)
        wanted = resolve_targets(target, prediction)
        acts = [cap.acts[name] for name in layer_names]
        t1 = time.perf_counter()
        pending = []
        for i, t in enumerate(wanted):
            s = score(prediction, t, region_t)
            if s.requires_grad:
                grads = torch.autograd.grad(s, acts, retain_graph=i < len(wanted) - 1, allow_unused=True)
            else:  # this class's score does not depend on the layer at all (e.g. a constant logit)
                grads = [None] * len(acts)
            for name, a, g in zip(layer_names, acts, grads):
                if g is None:
                    g = torch.zeros_like(a)
                a_map, g_map = a.detach(), g
                if name in tokens:
                    a_map = block_to_feature_map(a_map, tokens[name])
                    g_map = block_to_feature_map(g_map, tokens[name])
                elif a_map.ndim != 5:
                    raise InputError(
                        f"layer {name!r} outputs shape {tuple(a_map.shape)}, not a 3D feature "
                        "map (batch, channels, D, H, W); pick a layer from list_layers"
                    )
                pending.append((name, t, fn(a_map, g_map)))
        _sync(x.device)
        timings["backward"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    results = [_finish(method, name, t, raw, grid) for name, t, raw in pending]
    _sync(x.device)
    timings["upsample"] = time.perf_counter() - t2
    return results, prediction


def _region_on_model_grid(
    region: np.ndarray | None, grid: GridMap, logits: torch.Tensor, device: torch.device
) -> torch.Tensor | None:
    if region is None:
        return None
    region = np.asarray(region).astype(bool)
    if region.shape == tuple(logits.shape[2:]):
        return torch.as_tensor(region, device=device)
    if region.shape == grid.volume_shape:
        return grid.region_to_model(region, device)
    raise InputError(
        f"region shape {region.shape} matches neither the volume {grid.volume_shape} "
        f"nor the model grid {tuple(logits.shape[2:])}"
    )


def _attention_maps(
    model: LoadedModel,
    module: nn.Module,
    x: torch.Tensor,
    grid: GridMap,
    method: str,
    head: int | None,
    block: int | None,
    target: object,
) -> tuple[list[CamResult], object]:
    names = attention_layers(module)
    if not names or model.card.task != "classification":
        raise InputError(
            f"{method} needs a ViT classifier with attention blocks; this model has none. "
            "Use gradcam, gradcampp, hirescam or layercam"
        )
    _, shape = model_layers(model, x.device)
    with frozen(module), capture(module, attention=names) as cap, torch.no_grad():
        output = _run(module, x)
    prediction = predict(output, model.card.task)
    weights = require_attention(cap.attention, names)
    wanted = resolve_targets(target, prediction)
    if method == "vit-attention":
        index = len(weights) - 1 if block is None else block
        if not 0 <= index < len(weights):
            raise InputError(f"block {index} does not exist; the ViT has {len(weights)} blocks")
        token_scores = cls_attention(weights[index], head)
        layer = names[index].rsplit(".drop_weights", 1)[0]
    else:
        token_scores = rollout(weights)
        layer = "rollout"
    raw = tokens_to_grid(token_scores, shape)[0]
    # Attention is class-agnostic: one map, reported once per requested class.
    return [_finish(method, layer, t, raw, grid) for t in wanted], prediction


def _finish(method: str, layer: str, target: int, raw: torch.Tensor, grid: GridMap) -> CamResult:
    """Layer-grid raw map -> ReLU -> trilinear to the model grid -> volume grid -> / peak."""
    raw = raw.squeeze(0) if raw.ndim == 4 else raw
    positive = F.relu(raw)[None, None]
    on_model = F.interpolate(positive, size=grid.model_shape, mode="trilinear", align_corners=False)[0]
    on_volume = grid.to_volume(on_model)[0]
    cam, peak = display_map(on_volume)
    notes = []
    if peak == 0.0:
        notes.append(f"{method} map for target {target} at {layer} is all zero (no positive evidence)")
        warnings.warn(notes[-1], stacklevel=2)
    return CamResult(
        method, layer, target, "", raw.detach().float().cpu().numpy(), cam.float().cpu().numpy(), peak, notes
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
