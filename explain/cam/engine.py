"""The engine: image + model + a resolved `MapSpec` -> maps on the model grid (and, on demand, the image's grid).

    from explain.cam.engine import MapSpec, run
    result = run(MapSpec("gradcam", ("features.block3",), "all"), model, volume)

It knows nothing of requests, caches or defaults: `explain.request` resolves those and calls `run`.

One forward pass for any number of layers and classes; per class one
`torch.autograd.grad` from the score to the captured activations only. Parameters
are frozen for the call, so neither parameter gradients nor a backward pass
below the layer are computed. Everything stays on the device until the end.
Every forward pass holds the device (`explain.cam.device.on_device`).
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from explain.cam.attention import attention_layers, block_to_feature_map, cls_attention, require_attention, rollout
from explain.cam.attention import tokens_to_grid as _tokens_to_grid
from explain.cam.device import frozen, on_device, resolve_device
from explain.cam.hooks import capture, expand, members
from explain.cam.layers import model_layers
from explain.cam.methods import GRADIENT_METHODS, display_map
from explain.cam.plan import RunPlan, budget, plan_run
from explain.cam.preprocess import GridMap, plan_grid, preprocess_bytes
from explain.cam.results import CamResult, Explanation
from explain.cam.targets import Prediction, pick_logits, predict, resolve_targets, score
from explain.cam.windowed import gradient_windows, predict_windows
from explain.errors import Cancelled, InputError
from explain.io.volume import Volume, as_volume
from explain.limits import check_bytes
from explain.models.loaded import LoadedModel, check_fit, class_names

# progress(stage) for the stages "preprocess", "forward", "gradients", "mapping"; progress("windows", done, total)
# after each batch of windows. cancel() is asked between stages and windows: True stops with `Cancelled`.
Progress = Callable[..., None] | None
Cancel = Callable[[], bool] | None


def _model_input(model: LoadedModel, volume: Volume, device: torch.device) -> tuple[nn.Module, GridMap, torch.Tensor]:
    """The module on `device`, the image-to-model grid map, and the model's input tensor (its cost checked first)."""
    check_fit(model, volume.ndim, volume.source, volume.n_channels)
    module = model.module.to(device)
    if model.framework is not None:  # the framework's own preprocessing (nnU-Net, a MONAI bundle)
        check_bytes(model.framework.prepare_bytes(volume), "preparing the model's input", volume.source, budget(device))
        grid, x = model.framework.prepare(volume, device)
        return module, grid, x
    model_shape = tuple(model.input_shape[1:]) if model.input_shape else None
    grid = plan_grid(volume.shape, volume.affine, model.card, model_shape)
    channels = model.input_shape[0] if model.input_shape else 1
    need = preprocess_bytes(grid, channels, volume.stack().nbytes)
    check_bytes(need, "preparing the model's input", volume.source, budget(device))
    return module, grid, grid.to_model(volume.stack() if channels > 1 else volume.data, device, channels)


def _stop_if(cancel: Cancel) -> None:
    if cancel is not None and cancel():
        raise Cancelled("the computation was cancelled; nothing was kept")


def classify(
    model: LoadedModel,
    volume: Volume | np.ndarray,
    device: str | torch.device = "auto",
    on_wait: Callable[[], None] | None = None,
    progress: Progress = None,
    cancel: Cancel = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """A prediction without gradients (window by window for patch models): (scores, probabilities, class)."""
    prediction = predict_only(model, volume, device, on_wait, progress, cancel)
    scores = prediction.scores.float().cpu().numpy()
    return scores, prediction.probabilities.float().cpu().numpy(), prediction.predicted


def predict_only(
    model: LoadedModel,
    volume: Volume | np.ndarray,
    device: str | torch.device = "auto",
    on_wait: Callable[[], None] | None = None,
    progress: Progress = None,
    cancel: Cancel = None,
) -> Prediction:
    """The model's prediction on the whole model grid, its memory measured first (see `explain.cam.plan`)."""
    return predict_on_grid(model, volume, device, on_wait=on_wait, progress=progress, cancel=cancel)[1]


def predict_on_grid(
    model: LoadedModel,
    volume: Volume | np.ndarray,
    device: str | torch.device = "auto",
    *,
    mirror_axes: tuple[int, ...] | None = None,
    on_wait: Callable[[], None] | None = None,
    progress: Progress = None,
    cancel: Cancel = None,
) -> tuple[object, Prediction]:
    """(the image-to-model grid, the prediction on it). `mirror_axes`: model-grid axes to mirror, nnU-Net's way:
    every combination of flips is predicted and the logits averaged, window by window."""
    report = progress or (lambda *_a: None)
    dev = resolve_device(device)
    with on_device(on_wait):
        module, grid, x = _model_input(model, as_volume(volume), dev)
        plan = plan_run(model, grid.model_shape, method="predict", device=dev, gradients=False)
        _stop_if(cancel)
        run = _mirrored(_runner(model), mirror_axes)
        with frozen(module), torch.no_grad():
            if plan.windows is None:
                output = run(module, x)
            else:
                output = predict_windows(module, x, plan.windows, plan.batch, run, report, cancel)
            return grid, predict(output, model.card.task, model.card.output)


def _mirrored(run, axes: tuple[int, ...] | None):
    """`run` averaged over every combination of flips along `axes` (spatial axes of the model grid)."""
    if not axes:
        return run
    dims = [a + 2 for a in axes]
    combos = [c for n in range(len(dims)) for c in itertools.combinations(dims, n + 1)]

    def run_mirrored(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        out = pick_logits(run(module, x)).clone()
        for flip in combos:
            out += torch.flip(pick_logits(run(module, torch.flip(x, flip))), flip)
        return out / (len(combos) + 1)

    return run_mirrored


@dataclass(frozen=True)
class MapSpec:
    """What to compute, every default already resolved (`explain.request.make_request` resolves them)."""

    method: str
    layers: tuple[str, ...] = ()  # gradient methods: dotted module names
    targets: tuple[int, ...] | str | None = None  # class indices, "all", or None for the predicted class
    block: int | None = None  # vit-attention: the block
    head: int | None = None  # vit-attention: one head instead of the mean


def run(
    spec: MapSpec,
    model: LoadedModel,
    volume: Volume,
    *,
    region: np.ndarray | None = None,
    device: str | torch.device = "auto",
    progress: Progress = None,
    on_wait: Callable[[], None] | None = None,
    cancel: Cancel = None,
) -> Explanation:
    """Compute maps for every (layer, target) pair of `spec` (uncached), in one pass or window by window.

    - region: segmentation only; a mask on the image's (or the model's) grid.
    - progress: see `Progress`; cancel: see `Cancel`. Its cost is measured and checked before anything runs.
    """
    report = progress or (lambda *_a: None)
    dev = resolve_device(device)
    with on_device(on_wait):
        t_start = time.perf_counter()
        report("preprocess")
        _stop_if(cancel)
        module, grid, x = _model_input(model, volume, dev)
        timings = {"preprocess": time.perf_counter() - t_start}
        gradient = spec.method in GRADIENT_METHODS
        plan = plan_run(
            model, grid.model_shape, method=spec.method, layers=spec.layers if gradient else (),
            targets=spec.targets, device=dev,
        )  # fmt: skip
        _stop_if(cancel)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if gradient and plan.windows is not None:
                results, prediction = _windowed_maps(model, module, x, grid, volume, spec, region, plan, timings,
                                                      report, cancel, dev)  # fmt: skip
            elif gradient:
                results, prediction = _gradient_maps(model, module, x, grid, volume, spec, region, timings, report)
            else:
                results, prediction = _attention_maps(model, module, x, grid, volume, spec, timings, report)
        notes = [str(w.message) for w in caught]

    names = class_names(model, prediction.logits.shape[1])
    for r in results:
        r.target_name = names[r.target]
    timings["total"] = time.perf_counter() - t_start
    return Explanation(
        results,
        model.card.task,
        names,
        prediction.scores.float().cpu().numpy(),
        prediction.probabilities.float().cpu().numpy(),
        prediction.predicted,
        tuple(x.shape[2:]),
        str(dev),
        timings,
        volume.content_hash,
        model.identity,
        warnings=notes,
        run=plan.to_dict(),
    )


def _runner(model: LoadedModel):
    return lambda module, x: _run(module, x, model.source)


def _windowed_maps(model, module, x, grid, volume, spec, region, plan: RunPlan, timings, report, cancel, dev):
    """Maps window by window (explain.cam.windowed); the prediction comes from the same windows."""
    wanted_arg = _target_arg(spec)
    if wanted_arg is None:  # the predicted class needs the whole prediction first: one pass without gradients
        with frozen(module), torch.no_grad():
            logits = predict_windows(module, x, plan.windows, plan.batch, _runner(model), report, cancel)
        wanted_arg = [predict(logits, model.card.task, model.card.output).predicted]
    region_t = None
    if region is not None:
        region_t = _region_on_model_grid(region, grid, torch.empty((1, 1, *grid.model_shape)), x.device)
    targets = resolve_targets(wanted_arg, _shape_only(plan.n_classes))  # checked before any window runs
    report("forward")
    with frozen(module):
        logits, maps = gradient_windows(
            module, x, plan.windows, plan.batch, method=spec.method, layers=list(spec.layers), targets=targets,
            region=region_t, run=_runner(model), report=report, cancel=cancel, timings=timings,
            output=model.card.output,
        )  # fmt: skip
    prediction = predict(logits, model.card.task, model.card.output)
    report("mapping")
    t2 = time.perf_counter()
    results = []
    for (name, t), (stitched, signed) in maps.items():
        results.append(_finish_stitched(spec.method, name, t, stitched, signed, grid, volume.affine, plan))
    _sync(dev)
    timings["upsample"] = time.perf_counter() - t2
    return results, prediction


def _shape_only(n_classes: int) -> Prediction:
    """A stand-in prediction that only knows the number of classes (for resolving targets before the run)."""
    logits = torch.empty((1, n_classes, 1))
    return Prediction(logits, "segmentation", torch.zeros(n_classes), torch.zeros(n_classes), 0)


def _run(module: nn.Module, x: torch.Tensor, source: str = "the model") -> object:
    try:
        return module(x)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - the model's own errors, reported plainly
        raise InputError(
            f"{source}: the model failed on an input of shape {tuple(x.shape)}: {type(e).__name__}: {str(e)[:200]}"
        ) from e


def _gradient_maps(model, module, x, grid, volume, spec, region, timings, report):
    fn = GRADIENT_METHODS[spec.method]
    layer_names = list(spec.layers)
    layer_infos, token_shape = model_layers(model, x.device)
    tokens = {info.name: token_shape for info in layer_infos if info.kind == "tokens"}
    t0 = time.perf_counter()
    report("forward")
    flat = expand(module, layer_names)
    with frozen(module), capture(module, flat, track_grads=True) as cap, torch.enable_grad():
        output = _run(module, x, model.source)
        prediction = predict(output, model.card.task, model.card.output)
        missing = [name for name in flat if name not in cap.acts]
        if missing:
            raise InputError(f"layer(s) {missing} did not run in the forward pass; pick another layer")
        _sync(x.device)
        timings["forward"] = time.perf_counter() - t0
        region_t = _region_on_model_grid(region, grid, prediction.logits, x.device)
        wanted = resolve_targets(_target_arg(spec), prediction)
        acts = [cap.acts[name] for name in flat]
        t1 = time.perf_counter()
        report("gradients")
        pending = []
        for i, t in enumerate(wanted):
            s = score(prediction, t, region_t)
            if s.requires_grad:
                grads = torch.autograd.grad(s, acts, retain_graph=i < len(wanted) - 1, allow_unused=True)
            else:  # this class's score does not depend on the layer at all (e.g. a constant logit)
                grads = [None] * len(acts)
            by_member = dict(zip(flat, zip(acts, grads)))
            for name in layer_names:
                raws = []
                for member in members(module, name):
                    a, g = by_member[member]
                    a_map, g_map = a.detach(), g if g is not None else torch.zeros_like(a)
                    if name in tokens:
                        a_map = block_to_feature_map(a_map, tokens[name])
                        g_map = block_to_feature_map(g_map, tokens[name])
                    elif a_map.ndim != x.ndim:
                        raise InputError(
                            f"layer {name!r} outputs shape {tuple(a_map.shape)}, not a feature map with "
                            f"{x.ndim - 2} spatial axes; pick a layer from the list"
                        )
                    raws.append(fn(a_map, g_map))
                pending.append((name, t, torch.stack(raws).sum(0)))
        _sync(x.device)
        timings["backward"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    report("mapping")
    results = [_finish(spec.method, name, t, raw, grid, volume.affine) for name, t, raw in pending]
    _sync(x.device)
    timings["upsample"] = time.perf_counter() - t2
    return results, prediction


def _target_arg(spec: MapSpec):
    return list(spec.targets) if isinstance(spec.targets, tuple) else spec.targets


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
        f"region shape {region.shape} matches neither the image {grid.volume_shape} "
        f"nor the model grid {tuple(logits.shape[2:])}"
    )


def _attention_maps(model, module, x, grid, volume, spec, timings, report):
    names = attention_layers(module)
    if not names or model.card.task != "classification":
        raise InputError(
            f"{spec.method} needs a ViT classifier with attention blocks; this model has none. "
            "Use gradcam, gradcampp, hirescam or layercam"
        )
    _, shape = model_layers(model, x.device)
    t0 = time.perf_counter()
    report("forward")
    with frozen(module), capture(module, attention=names) as cap, torch.no_grad():
        output = _run(module, x, model.source)
    timings["forward"] = time.perf_counter() - t0
    prediction = predict(output, model.card.task, model.card.output)
    weights = require_attention(cap.attention, names)
    wanted = resolve_targets(_target_arg(spec), prediction)
    if spec.method == "vit-attention":
        index = spec.block if spec.block is not None else len(weights) - 1
        if not 0 <= index < len(weights):
            raise InputError(f"block {index} does not exist; the ViT has {len(weights)} blocks")
        token_scores = cls_attention(weights[index], spec.head)
        layer = names[index].rsplit(".attn.drop_weights", 1)[0]
    else:
        token_scores = rollout(weights)
        layer = "rollout"
    report("mapping")
    raw = _tokens_to_grid(token_scores, shape)[0]
    # Attention is class-agnostic: one map, reported once per requested class.
    return [_finish(spec.method, layer, t, raw, grid, volume.affine) for t in wanted], prediction


ALL_ZERO = "This map is all zero: nothing at this layer raises the class's score (no positive evidence)."


def _finish(method: str, layer: str, target: int, raw: torch.Tensor, grid: GridMap, affine: np.ndarray) -> CamResult:
    """Layer-grid raw map -> ReLU -> (tri/bi)linear to the model grid -> / peak. The image grid comes later."""
    n = len(grid.model_shape)
    raw = raw.squeeze(0) if raw.ndim == n + 1 else raw
    positive = F.relu(raw)[None, None]
    mode = "trilinear" if n == 3 else "bilinear"
    on_model = F.interpolate(positive, size=grid.model_shape, mode=mode, align_corners=False)[0, 0]
    model_map, peak = display_map(on_model)
    notes = []
    if peak == 0.0:
        notes.append(ALL_ZERO)
        warnings.warn(notes[-1], stacklevel=2)
    return CamResult(
        method,
        layer,
        target,
        "",
        raw.detach().float().cpu().numpy(),
        model_map.float().cpu().numpy(),
        peak,
        grid,
        np.asarray(affine, dtype=float),
        notes,
    )


def _finish_stitched(
    method: str, layer: str, target: int, stitched: torch.Tensor, signed: torch.Tensor, grid: GridMap,
    affine: np.ndarray, plan: RunPlan,
) -> CamResult:  # fmt: skip
    """A stitched map (already ReLU'd and on the model grid) scaled to its peak once, for all windows together."""
    model_map, peak = display_map(stitched)
    notes = []
    if peak == 0.0:
        notes.append(ALL_ZERO)
        warnings.warn(notes[-1], stacklevel=2)
    return CamResult(
        method, layer, target, "", signed.float().cpu().numpy(), model_map.float().cpu().numpy(), peak, grid,
        np.asarray(affine, dtype=float), notes, plan.windows.patch, len(plan.windows),
    )  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
