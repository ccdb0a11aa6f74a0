"""Does a map depend on the model at all? Cascading model-parameter randomisation (Adebayo et al., NeurIPS 2018).

From the output side down, each block's parameters are re-drawn at random, cumulatively,
on a copy of the model (the user's model is never touched), and the map is recomputed with
the same method, layer and target. Each step is compared with the original map by:
- Spearman rank correlation of absolute raw values (on the layer or token grid), and
- SSIM of the displayed maps (on the model grid, 0..1), with a 7-voxel uniform window.
A map that survives randomising the top block is not explaining the learned decision.

Blocks are parameters grouped by their first two name parts (`features.block3`,
`blocks.7`, `class_layers.out`), in definition order, leaving out blocks that never run;
parameters owned by the model itself (`cls_token`) are the last group randomised.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from explain.errors import Cancelled
from explain.io.volume import Volume
from explain.models.loaded import LoadedModel

# Below this Spearman correlation after the top block is randomised, the map depends on the learned weights.
DEPENDS_BELOW = 0.3
# Why the two measures can disagree, in one line for the page.
SSIM_VS_RANKS = (
    "SSIM compares the maps as pictures (local brightness, contrast and structure), so two mostly empty or smooth "
    "maps score high; rank correlation compares the order of every voxel's importance, so it falls when what is "
    "ranked most important changes. The verdict reads the rank correlation."
)


@dataclass(frozen=True)
class SanityStep:
    block: str  # the block randomised at this step (all blocks above it already are)
    spearman: float  # of absolute values, as Adebayo et al. report and the verdict reads
    ssim: float
    signed_spearman: float  # of the signed maps: negative when randomising flipped the map's sign


@dataclass
class SanityReport:
    method: str
    layer: str
    target: int
    steps: list[SanityStep] = field(default_factory=list)

    @property
    def depends_on_weights(self) -> bool:
        return bool(self.steps) and self.steps[0].spearman < DEPENDS_BELOW

    @property
    def verdict(self) -> str:
        """Whole sentences: what was done, what happened, what it means."""
        if not self.steps:
            return "The model has no parameters to randomise, so the check cannot say anything."
        first = self.steps[0]
        done = f"With the top block ({first.block}) replaced by random weights,"
        if self.depends_on_weights:
            return (
                f"The map depends on the learned weights. {done} it changed: its rank correlation with the original "
                f"fell to {first.spearman:.2f} (below {DEPENDS_BELOW})."
            )
        flipped = (
            f" Its sign flipped (signed rank correlation {first.signed_spearman:.2f}): the parts it shows as important "
            "moved, but the pattern of magnitudes stayed."
            if first.signed_spearman < 0
            else ""
        )
        return (
            f"The map barely depends on the learned weights. {done} it still ranks the voxels much as before (rank "
            f"correlation {first.spearman:.2f}; a map that reflects what the model learned falls below "
            f"{DEPENDS_BELOW}).{flipped} Read it as showing the architecture more than the training."
        )

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "layer": self.layer,
            "target": self.target,
            "steps": [asdict(s) for s in self.steps],
            "depends_on_weights": self.depends_on_weights,
            "verdict": self.verdict,
        }


def parameter_blocks(module: torch.nn.Module, example: torch.Tensor | None = None) -> list[tuple[str, list[str]]]:
    """(block name, parameter names) in definition order, the model's own parameters last.

    With `example`, blocks whose modules never run in a forward pass (a training-only head)
    are left out: randomising them cannot change anything.
    """
    ran = _modules_that_run(module, example) if example is not None else None
    blocks: dict[str, list[str]] = {}
    own: list[str] = []
    for name, _ in module.named_parameters():
        parts = name.split(".")[:-1]
        if not parts:
            own.append(name)
            continue
        if ran is not None and ".".join(parts) not in ran:
            continue
        blocks.setdefault(".".join(parts[:2]), []).append(name)
    out = list(blocks.items())
    if own:
        out.append(("model", own))
    return out


def _modules_that_run(module: torch.nn.Module, example: torch.Tensor) -> set[str]:
    ran: set[str] = set()
    handles = [
        m.register_forward_hook(lambda _m, _i, _o, name=name: ran.add(name))
        for name, m in module.named_modules()
        if name
    ]
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in handles:
            h.remove()
    # A module runs if it or any module inside it ran (a parameter may sit on a container).
    return ran | {".".join(n.split(".")[:k]) for n in ran for k in range(1, n.count(".") + 1)}


def _randomise(module: torch.nn.Module, names: list[str], generator: torch.Generator) -> None:
    params = dict(module.named_parameters())
    with torch.no_grad():
        for name in names:
            p = params[name]
            scale = float(p.float().std()) if p.numel() > 1 else float(p.float().abs().mean())
            scale = scale if scale > 0 else 0.05
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p) * scale)


def cascade(
    model: LoadedModel,
    volume: Volume,
    method: str = "gradcam",
    layer: str | None = None,
    target: int | None = None,
    *,
    block: int | None = None,
    seed: int = 0,
    max_steps: int | None = None,
    device: str = "auto",
    progress: Callable[..., None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> SanityReport:
    """Randomise blocks from the top down and report, per step, how much the map changed.

    progress("sanity", done, total) after the original map and after each block; cancel() is asked before each
    block and stops with `Cancelled`.
    """
    report_step = progress or (lambda *_a: None)
    from explain.policy import is_attention
    from explain.request import explain

    layers = None if is_attention(method) or layer is None else [layer]
    original = explain(model, volume, method, layers, target, device=device, block=block).get()
    twin = copy.deepcopy(model.module)
    # Same architecture and card: the layer list cached under this identity still applies.
    copy_model = LoadedModel(twin, model.card, model.identity, model.source, model.kind, model.input_shape)
    generator = torch.Generator().manual_seed(seed)
    report = SanityReport(original.method, original.layer, original.target)
    from explain.cam.device import resolve_device
    from explain.cam.layers import example_input

    found = parameter_blocks(twin, example_input(model, resolve_device(device)).to(next(twin.parameters()).device))
    own = [b for b in found if b[0] == "model"]
    blocks = ([b for b in found if b[0] != "model"][::-1] + own)[:max_steps]  # top down; the model's own last
    report_step("sanity", 0, len(blocks))
    for step, (name, params) in enumerate(blocks, 1):
        if cancel is not None and cancel():
            raise Cancelled("the sanity check was cancelled; nothing was kept")
        _randomise(twin, params, generator)
        changed = explain(copy_model, volume, method, layers, original.target, device=device, block=block).get()
        report.steps.append(
            SanityStep(
                name,
                spearman(np.abs(original.raw_map), np.abs(changed.raw_map)),
                ssim(original.model_map, changed.model_map),
                spearman(original.raw_map, changed.raw_map),
            )
        )
        report_step("sanity", step, len(blocks))
    return report


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (vectorised: whole stitched maps hold millions of voxels)."""
    _values, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # rank of the last member of each group of equal values
    average = ends - (counts - 1) / 2.0
    return average[inverse.ravel()].astype(np.float64)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two equally shaped arrays (NaN if either is constant)."""
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(np.sqrt((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def ssim(a: np.ndarray, b: np.ndarray, window: int = 7, data_range: float = 1.0) -> float:
    """Mean structural similarity (Wang et al., IEEE TIP 2004) of two 2D or 3D maps, uniform window."""
    x = torch.as_tensor(np.asarray(a, dtype=np.float64))[None, None]
    y = torch.as_tensor(np.asarray(b, dtype=np.float64))[None, None]
    if x.shape != y.shape or x.ndim not in (4, 5):
        raise ValueError(f"SSIM needs two 2D or 3D maps of one shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    pool = F.avg_pool2d if x.ndim == 4 else F.avg_pool3d
    k = min(window, *x.shape[2:])
    k -= 1 - k % 2  # odd, so the window is centred

    def mean(t: torch.Tensor) -> torch.Tensor:
        return pool(t, k, stride=1, padding=k // 2, count_include_pad=False)

    mx, my = mean(x), mean(y)
    vx, vy, cxy = mean(x * x) - mx**2, mean(y * y) - my**2, mean(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    value = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(value.mean())
