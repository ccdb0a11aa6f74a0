"""Training loop, losses, metrics and a clean `.pt2` export for the sample models (2D and 3D alike).

`train` is one seeded loop for every sample model: the model-specific part is a loss
function `(model, x, y, label_map) -> loss`. It reports wall and process-CPU seconds,
because the machines these run on are shared and wall time alone would mislead.

`export` writes a program that a loader can check without running anything: static
shapes, only `torch.ops.aten.*` calls, no pickled weights, constants or sample inputs,
and no source locations (the per-node `stack_trace` metadata holds absolute paths of
the machine that exported it). `archive_problems` checks a saved archive for all of that.
"""

from __future__ import annotations

import json
import re
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from explain.models.cards import ModelCard
from explain.models.load import CARD_FILE

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser schedule: AdamW with a one-cycle learning rate."""

    steps: int
    lr: float
    batch: int = 8
    weight_decay: float = 1e-4
    warmup: float = 0.15
    crop: int | None = None  # train on random crops of this size (fully convolutional nets only)
    crop_lesion: float = 0.5  # of crops from a case with a lesion, this fraction contains it
    log_every: int = 100


def outputs(out: object) -> torch.Tensor:
    """The logits of a model output; MONAI's ViT returns (logits, hidden_states)."""
    return out[0] if isinstance(out, (tuple, list)) else out


def dense_loss(logits: torch.Tensor, labels: torch.Tensor, lesion_weight: float = 30.0) -> torch.Tensor:
    """Lesion-weighted cross-entropy, plus soft Dice where the case has that lesion.

    Lesions are ~0.1% of voxels: plain cross-entropy, or Dice averaged over cases
    without the lesion, let every head settle on "background everywhere" (measured).
    """
    classes = logits.shape[1]
    weight = torch.tensor([1.0] + [lesion_weight] * (classes - 1), device=logits.device)
    loss = F.cross_entropy(logits, labels, weight=weight)
    probs = logits.softmax(1)[:, 1:]
    target = F.one_hot(labels, classes).movedim(-1, 1)[:, 1:].float()
    dims = tuple(range(2, logits.ndim))
    present = target.sum(dims) > 0
    if present.any():
        dice = (2 * (probs * target).sum(dims) + 1) / (probs.sum(dims) + target.sum(dims) + 1)
        loss = loss + (1 - dice[present]).mean()
    return loss


def _flip_lr(x: torch.Tensor, maps: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each case left-right with probability 1/2 (axis i: lesions occur on both sides)."""
    flip = torch.rand(len(x), generator=gen) < 0.5
    if flip.any():
        x, maps = x.clone(), maps.clone()
        x[flip] = x[flip].flip(2)
        maps[flip] = maps[flip].flip(1)
    return x, maps


def _crop(
    x: torch.Tensor, maps: torch.Tensor, size: int, lesion: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crops of `size` per spatial axis; for cases with a lesion, a fraction `lesion` contain it."""
    spatial = x.shape[2:]
    xs, ms = [], []
    for i in range(len(x)):
        voxels = torch.nonzero(maps[i])
        if len(voxels) and torch.rand(1, generator=gen) < lesion:
            centre = voxels[torch.randint(len(voxels), (1,), generator=gen)][0]
            start = [
                int(c) - size // 2 + int(torch.randint(-size // 4, size // 4 + 1, (1,), generator=gen)) for c in centre
            ]
        else:
            start = [int(torch.randint(n - size + 1, (1,), generator=gen)) for n in spatial]
        box = tuple(slice(min(max(s, 0), n - size), min(max(s, 0), n - size) + size) for s, n in zip(start, spatial))
        xs.append(x[(i, slice(None), *box)])
        ms.append(maps[(i, *box)])
    return torch.stack(xs), torch.stack(ms)


def train(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    loss_fn: LossFn,
    cfg: TrainConfig,
    seed: int = 0,
) -> dict:
    """Train in place (then eval mode); returns steps, last loss, wall and process-CPU seconds."""
    x, y, maps = data
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=cfg.warmup)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    model.train()
    recent: list[float] = []
    for step in range(cfg.steps):
        idx = torch.randint(len(x), (cfg.batch,), generator=gen)
        xb, yb, mb = x[idx], y[idx], maps[idx].long()
        xb, mb = _flip_lr(xb, mb, gen)
        if cfg.crop:
            xb, mb = _crop(xb, mb, cfg.crop, cfg.crop_lesion, gen)
        loss = loss_fn(model, xb, yb, mb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        recent = (recent + [loss.item()])[-cfg.log_every :]
        if (step + 1) % cfg.log_every == 0 or step == cfg.steps - 1:
            print(f"  step {step + 1:5d}  loss {np.mean(recent):.4f}  {time.perf_counter() - wall0:.0f}s", flush=True)
    model.eval()
    return {
        "steps": cfg.steps,
        "batch": cfg.batch,
        "final_loss": round(float(np.mean(recent)), 4),
        "train_seconds": round(time.perf_counter() - wall0, 1),
        "train_cpu_seconds": round(time.process_time() - cpu0, 1),
    }


@torch.no_grad()
def predict_batches(model: nn.Module, x: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """Logits for every case, in batches, eval mode."""
    model.eval()
    return torch.cat([outputs(model(x[i : i + batch])) for i in range(0, len(x), batch)])


def accuracy(logits: torch.Tensor, y: torch.Tensor, class_names: list[str]) -> dict:
    """Overall and per-class accuracy."""
    preds = logits.argmax(1)
    per_class = {
        name: float((preds[y == k] == k).float().mean()) for k, name in enumerate(class_names) if (y == k).any()
    }
    return {"accuracy": float((preds == y).float().mean()), "per_class": per_class, "n": len(y)}


def dice(logits: torch.Tensor, maps: torch.Tensor, class_names: list[str]) -> dict:
    """Mean Dice per lesion class over the cases that contain that class."""
    preds = logits.argmax(1)
    dims = tuple(range(1, preds.ndim))
    out = {}
    for k in range(1, len(class_names)):
        p, t = preds == k, maps == k
        valid = t.sum(dims) > 0
        inter = (p & t).sum(dims).float()
        denom = (p.sum(dims) + t.sum(dims)).float()
        out[class_names[k]] = float((2 * inter[valid] / denom[valid].clamp_min(1)).mean())
    return {"dice": out, "mean_dice": float(np.mean(list(out.values()))), "n": len(maps)}


# Source locations: a stack-trace line, a .py file, an installed-package folder, or any absolute path.
_MACHINE_PATH = re.compile(
    r'site-packages|dist-packages|File \\?"|\.py\b|[A-Za-z]:\\\\|(?<![\w.])/(?:[\w.-]+/)+[\w.-]+'
)


def export(model: nn.Module, card: ModelCard, path: Path) -> None:
    """Export at the card's static input shape, without source locations or pickled sample inputs."""
    example = torch.zeros(1, *card.input_shape)
    program = torch.export.export(model.eval(), (example,))
    for module in program.graph_module.modules():
        if isinstance(module, torch.fx.GraphModule):
            for node in module.graph.nodes:
                node.meta.pop("stack_trace", None)  # absolute paths of this machine's source files
    program.example_inputs = None  # otherwise saved with torch.save (a pickle)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path), extra_files={CARD_FILE: json.dumps(card.to_dict())})
    problems = archive_problems(path)
    if problems:
        raise RuntimeError(f"{path.name}: exported archive is not clean: {problems}")


def archive_problems(path: Path) -> list[str]:
    """What in a saved `.pt2` a safe loader would refuse or a user should not see (empty = clean)."""
    problems = []
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            data = z.read(name)
            if name.endswith(".json") or name.endswith("model.pt"):
                text = data.decode("utf-8", errors="replace")
                if _MACHINE_PATH.search(text):
                    problems.append(
                        f"{name} names a machine path or source file: {_MACHINE_PATH.search(text).group(0)}"
                    )
            if name.endswith("sample_inputs/model.pt") and data:
                problems.append(f"{name} holds pickled sample inputs")
            if name.endswith("model_weights_config.json") or name.endswith("model_constants_config.json"):
                config = json.loads(data)["config"]
                if "weights" not in name and config:
                    problems.append(f"{name}: constants {sorted(config)}")
                problems += [f"{name}: {k} needs pickle" for k, v in config.items() if v.get("use_pickle")]
            if name.endswith("models/model.json"):
                program = json.loads(data)
                graph = program["graph_module"]["graph"]
                ops = {n["target"] for n in graph["nodes"]}
                problems += [f"operator {op} is not aten" for op in sorted(ops) if not op.startswith("torch.ops.aten.")]
                if graph.get("custom_obj_values"):
                    problems.append("custom objects in the graph")
                if graph.get("sym_int_values") or program.get("range_constraints"):
                    problems.append("dynamic shapes")
    return problems
