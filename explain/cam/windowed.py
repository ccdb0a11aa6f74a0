"""Maps and predictions window by window, stitched over the whole model grid.

For each batch of windows: one forward pass with the layers hooked; per target, the score is the class's logit
summed over that window's own predicted region of it (or over the caller's region inside the window), and
`autograd.grad` goes back to the layers only. Each window's raw map is upsampled to the window, then added with
the window weights the prediction uses (Gaussian or constant), in fp32, beside the weighted logits. Nothing is
normalised per window: the stitched map is scaled to its peak once, at the end (`explain.cam.engine`).

Grad-CAM and Grad-CAM++ pool their weights over one window, so a stitched Grad-CAM is a window-local quantity
("weights per 96³ window"); HiResCAM and LayerCAM keep the per-voxel product (docs/decisions.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from explain.cam.hooks import capture, expand, members
from explain.cam.methods import GRADIENT_METHODS
from explain.cam.targets import pick_logits, region_of
from explain.cam.windows import WindowPlan
from explain.errors import Cancelled, InputError

Report = Callable[..., None]


@dataclass
class Stitched:
    """Sums over the padded model grid, divided by the weight sum and cropped on the way out."""

    plan: WindowPlan
    logits: torch.Tensor | None = None  # (K, *padded)
    weight: torch.Tensor | None = None  # (*padded)
    maps: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)  # ReLU'd, upsampled, weighted
    signed: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)  # the same before ReLU

    def add_logits(self, logits: torch.Tensor, starts: list[tuple[int, ...]], w: torch.Tensor) -> None:
        if self.logits is None:
            self.logits = torch.zeros((logits.shape[1], *self.plan.padded), device=logits.device)
            self.weight = torch.zeros(self.plan.padded, device=logits.device)
        for j, start in enumerate(starts):
            where = self.plan.slices(start)
            self.logits[(slice(None), *where)] += logits[j].detach().float() * w
            self.weight[where] += w

    def add_map(self, key: tuple[str, int], up: torch.Tensor, up_signed: torch.Tensor, starts, w) -> None:
        for store, values in ((self.maps, up), (self.signed, up_signed)):
            if key not in store:
                store[key] = torch.zeros(self.plan.padded, device=values.device)
            for j, start in enumerate(starts):
                store[key][self.plan.slices(start)] += values[j] * w

    def mean(self, total: torch.Tensor) -> torch.Tensor:
        """A weighted sum as the weighted mean, on the model grid."""
        return self.plan.crop(total / self.weight)


def _batches(plan: WindowPlan, size: int) -> list[list[tuple[int, ...]]]:
    return [list(plan.starts[i : i + size]) for i in range(0, len(plan.starts), size)]


def _windows_of(x: torch.Tensor, plan: WindowPlan, starts: list[tuple[int, ...]]) -> torch.Tensor:
    return torch.cat([x[(slice(None), slice(None), *plan.slices(s))] for s in starts])


def _step(done: int, total: int, report: Report, cancel: Callable[[], bool] | None) -> None:
    report("windows", done, total)
    if cancel is not None and cancel():
        raise Cancelled("the computation was cancelled; nothing was kept")


def predict_windows(
    module: nn.Module, x: torch.Tensor, plan: WindowPlan, batch: int, run, report: Report, cancel=None
) -> torch.Tensor:
    """The stitched logits (1, K, *grid) of a forward pass over every window, without gradients."""
    xp = plan.pad_input(x)
    w = plan.weights(x.device)
    out = Stitched(plan)
    done = 0
    with torch.no_grad():
        for starts in _batches(plan, batch):
            out.add_logits(pick_logits(run(module, _windows_of(xp, plan, starts))), starts, w)
            done += len(starts)
            _step(done, len(plan), report, cancel)
    return out.mean(out.logits)[None]


def gradient_windows(
    module: nn.Module,
    x: torch.Tensor,
    plan: WindowPlan,
    batch: int,
    *,
    method: str,
    layers: list[str],
    targets: list[int],
    region: torch.Tensor | None,
    run,
    report: Report,
    cancel=None,
    timings: dict[str, float],
    output: str = "softmax",
) -> tuple[torch.Tensor, dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]]]:
    """Stitched logits (1, K, *grid) and, per (layer, target), the stitched (map, signed map) on the model grid."""
    fn = GRADIENT_METHODS[method]
    flat = expand(module, layers)
    xp = plan.pad_input(x)
    region_p = plan.pad_input(region[None, None].float())[0, 0] > 0.5 if region is not None else None
    w = plan.weights(x.device)
    mode = "trilinear" if x.ndim == 5 else "bilinear"
    out = Stitched(plan)
    done = 0
    timings.setdefault("forward", 0.0)
    timings.setdefault("backward", 0.0)
    for starts in _batches(plan, batch):
        t0 = time.perf_counter()
        with capture(module, flat, track_grads=True) as cap, torch.enable_grad():
            logits = pick_logits(run(module, _windows_of(xp, plan, starts)))
            missing = [name for name in flat if name not in cap.acts]
            if missing:
                raise InputError(f"layer(s) {missing} did not run in the forward pass; pick another layer")
            out.add_logits(logits, starts, w)
            detached = logits.detach()
            acts = [cap.acts[name] for name in flat]
            t1 = time.perf_counter()
            timings["forward"] += t1 - t0
            for i, t in enumerate(targets):
                if region_p is None:  # the window's own prediction of the class
                    inside = region_of(detached, t, output)
                else:
                    inside = _windows_of(region_p[None, None], plan, starts)[:, 0]
                score = (logits[:, t] * inside.to(logits.dtype)).sum()
                grads = (
                    torch.autograd.grad(score, acts, retain_graph=i < len(targets) - 1, allow_unused=True)
                    if score.requires_grad
                    else [None] * len(acts)
                )
                by_member = dict(zip(flat, zip(acts, grads)))
                for name in layers:
                    raws = []
                    for member in members(module, name):
                        a, g = by_member[member]
                        if a.ndim != x.ndim:
                            raise InputError(
                                f"layer {name!r} outputs shape {tuple(a.shape)}, not a feature map with "
                                f"{x.ndim - 2} spatial axes; pick a layer from the list"
                            )
                        raws.append(fn(a.detach(), g if g is not None else torch.zeros_like(a)))
                    raw = torch.stack(raws).sum(0)[:, None]
                    size = plan.patch
                    up_signed = F.interpolate(raw, size=size, mode=mode, align_corners=False)[:, 0]
                    up = F.interpolate(F.relu(raw), size=size, mode=mode, align_corners=False)[:, 0]
                    out.add_map((name, t), up, up_signed, starts, w)
            timings["backward"] += time.perf_counter() - t1
        done += len(starts)
        _step(done, len(plan), report, cancel)
    maps = {key: (out.mean(out.maps[key]), out.mean(out.signed[key])) for key in out.maps}
    return out.mean(out.logits)[None], maps
