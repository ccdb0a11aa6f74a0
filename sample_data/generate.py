"""Build the bundled sample cases and train the sample models (seeded, CPU; see docs/decisions.md).

    python -m sample_data.generate                # everything, then `python -m sample_data.evaluate`
    python -m sample_data.generate --only vit     # one part: case, chest_case, cnn, vit, unet, chest
    python -m sample_data.generate --quick --out /tmp/s   # a smoke run: tiny data, few steps

Outputs in sample_data/: case_brain/ (3D MNI152 case, see synth.py), case_chest/ (2D
radiograph, see chest.py), models/{cnn,vit,unet,chest}.pt2 (each with its model card
inside) and models/training_report.json (steps, loss, wall and process-CPU seconds).
Held-out accuracy, Dice and localisation are measured by sample_data/evaluate.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from explain.models.cards import ModelCard
from explain.models.load import CARD_FILE
from sample_data.brain_case import sample_case
from sample_data.chest import (
    CHEST_CLASSES,
    CHEST_INTENSITY,
    CHEST_SHAPE,
    CHEST_TRAIN_SET,
    chest_dataset,
    sample_chest_case,
)
from sample_data.nets import EvidenceNet, TokenSupervisedViT, build_unet, build_vit, reference_image
from sample_data.synth import CLASS_NAMES, INTENSITY, SEG_NAMES, build_dataset, coarse_labels, template
from sample_data.train import TrainConfig, dense_loss, export, train

HERE = Path(__file__).resolve().parent
DISCLAIMER = "A demo model trained on synthetic lesions, not a medical device."
# Crops hold ~8x more lesion than whole volumes; with the dense loss's usual weight of 30 on top,
# the UNet marked lesions all over (measured: 8.8k false vs 2.5k true bright voxels on 60 cases).
UNET_LESION_WEIGHT = 3.0
SMOOTHING = 0.1  # label smoothing of the class loss: keeps the class logits a few units apart
Data = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Spec:
    """One sample model: its input grid, schedule, card text and how to train it."""

    shape: tuple[int, ...]
    cases: int  # training cases
    cfg: TrainConfig
    layer: str
    task: str
    title: str
    trained_on: str
    fit: Callable[[Data, TrainConfig], tuple[nn.Module, dict]]
    note: str = ""  # what a user should know about how it decides


def fit_cnn(data: Data, cfg: TrainConfig) -> tuple[nn.Module, dict]:
    """EvidenceNet: class loss on its logits plus the dense loss on its evidence cells (deep supervision)."""
    model = EvidenceNet()

    def loss(m: nn.Module, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        logits, evidence = m.forward_train(x)
        cells = coarse_labels(maps, tuple(evidence.shape[2:]))
        return F.cross_entropy(logits, y, label_smoothing=SMOOTHING) + dense_loss(evidence, cells)

    return model, train(model, data, loss, cfg)


def fit_vit(data: Data, cfg: TrainConfig) -> tuple[nn.Module, dict]:
    """MONAI ViT trained on x - reference with token supervision on block -2; exported folded (plain ViT)."""
    x, y, _ = data
    layers = 4
    vit = build_vit(tuple(x.shape[2:]), patch=8, hidden=96, layers=layers, heads=4)
    model = TokenSupervisedViT(vit, block=layers - 2, reference=reference_image(x, y))

    def loss(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        logits, tokens = m.forward_train(xb)
        return F.cross_entropy(logits, yb) + dense_loss(tokens, coarse_labels(maps, tuple(tokens.shape[2:])))

    report = train(model, data, loss, cfg)
    return model.fold(), report


def fit_unet(data: Data, cfg: TrainConfig) -> tuple[nn.Module, dict]:
    """MONAI UNet on image - reference, with the dense loss, on random crops (it is fully convolutional).

    The reference is subtracted once for the whole training set, so crops of the difference go
    straight into the UNet body (`model.model`); the exported network subtracts it itself.
    """
    x, y, maps = data
    reference = reference_image(x, y)
    model = build_unet(reference)

    def loss(m: nn.Module, xb: torch.Tensor, _y: torch.Tensor, mb: torch.Tensor) -> torch.Tensor:
        return dense_loss(m.model(xb), mb, lesion_weight=UNET_LESION_WEIGHT)

    return model, train(model, (x - reference, y, maps), loss, cfg)


def fit_chest(data: Data, cfg: TrainConfig) -> tuple[nn.Module, dict]:
    """A 2D EvidenceNet: nodule logit = the strongest cell's log-odds of nodule against background."""
    model = EvidenceNet(classes=2, dims=2, widths=(8, 16, 32))

    def loss(m: nn.Module, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        logits, evidence = m.forward_train(x)
        cells = coarse_labels(maps, tuple(evidence.shape[2:]), classes=2)
        return F.cross_entropy(logits, y, label_smoothing=SMOOTHING) + dense_loss(evidence, cells)

    return model, train(model, data, loss, cfg)


BRAIN = "synthetic bright and dark lesions (7-13 mm radius) in the white matter of the MNI152 T1 template"
SPECS = {
    "cnn": Spec(
        (64, 64, 64), 480, TrainConfig(1500, 3e-3), "features.block3", "classification",
        "3D CNN lesion classifier (EvidenceNet)", BRAIN, fit_cnn,
        "A lesion class's logit is its strongest cell's log-odds; 'no lesion' is a constant (no map).",
    ),
    "vit": Spec(
        (48, 48, 48), 1440, TrainConfig(1200, 1e-3, batch=16, weight_decay=0.05), "blocks.2", "classification",
        "3D ViT lesion classifier (MONAI ViT, 48^3, patch 8)", BRAIN, fit_vit,
        "The CLS token classifies; the position embedding holds the template, so it expects MNI152-space images.",
    ),
    "unet": Spec(
        (64, 64, 64), 480, TrainConfig(800, 3e-3, crop=32, crop_lesion=0.5), "model.0", "segmentation",
        "3D lesion segmentation (MONAI UNet)", BRAIN, fit_unet,
        "It subtracts a stored reference (the mean lesion-free training input), so it expects MNI152-space images.",
    ),
    "chest": Spec(
        (*CHEST_SHAPE,), 1200, TrainConfig(800, 3e-3, batch=16), "features.block3", "classification",
        "2D CNN nodule classifier (chest radiograph)",
        "synthetic frontal chest radiographs with and without one lung nodule (5-12 mm radius)", fit_chest,
    ),
}  # fmt: skip


def card_for(name: str, spec: Spec) -> ModelCard:
    """The model card embedded in the exported program."""
    chest = name == "chest"
    return ModelCard(
        task=spec.task,
        class_names=CHEST_CLASSES if chest else SEG_NAMES if spec.task == "segmentation" else CLASS_NAMES,
        input_shape=(1, *spec.shape),
        intensity=CHEST_INTENSITY if chest else INTENSITY,
        orientation=None if chest else "RAS",
        default_layer=spec.layer,
        name=spec.title,
        description=f"{DISCLAIMER} Trained on {spec.trained_on}. {spec.note}".strip(),
        # EvidenceNet's class 0 ("no lesion", "no nodule") is a learned constant: it has no map.
        no_map_classes=[CHEST_CLASSES[0]] if chest else [CLASS_NAMES[0]] if name == "cnn" else None,
        modality="DX" if chest else "MR T1",
    )


def rewrite_cards(out: Path) -> None:
    """Write the current card into each exported sample without retraining (the weights are loaded and saved
    unchanged; tests/test_samples.py checks the models still do what they did)."""
    for name, spec in SPECS.items():
        path = out / "models" / f"{name}.pt2"
        if path.exists():
            program = torch.export.load(str(path))
            torch.export.save(program, str(path), extra_files={CARD_FILE: json.dumps(card_for(name, spec).to_dict())})
            print(f"{name}: card rewritten", flush=True)


def brain_data(out: Path, counts: dict[tuple[int, ...], int]) -> dict[tuple[int, ...], Data]:
    """Training cases (seed 0) on each model grid, as many as `counts` says, cached in out/_training/."""
    key = "_".join(f"{s[0]}x{n}" for s, n in sorted(counts.items()))
    cached = out / "_training" / f"brain_{key}.pt"
    if cached.exists():
        return torch.load(cached, weights_only=True)
    base, placement, affine = template()
    data = build_dataset(np.random.default_rng(0), base, placement, affine, counts)
    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, cached)
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (few cases, few steps)")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--only", choices=["case", "chest_case", *SPECS], action="append")
    # One thread by default: results then do not depend on the core count, and on a shared 2-core machine it
    # was 4x faster than two (measured: 56 s against 222 s per 100 CNN steps while other jobs ran).
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--cards-only", action="store_true", help="rewrite the cards of the exported samples")
    args = parser.parse_args(argv)
    if args.cards_only:
        return rewrite_cards(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    only = set(args.only or ["case", "chest_case", *SPECS])
    if "case" in only:
        base, _, affine = template()
        sample_case(base, affine, args.out / "case_brain")
    if "chest_case" in only:
        sample_chest_case(args.out / "case_chest")
    wanted = [name for name in SPECS if name in only]
    cases = {name: min(SPECS[name].cases, 16) if args.quick else SPECS[name].cases for name in wanted}
    counts: dict[tuple[int, ...], int] = {}
    for name in wanted:
        if name != "chest":
            counts[SPECS[name].shape] = max(counts.get(SPECS[name].shape, 0), cases[name])
    t0 = time.time()
    brain = brain_data(args.out, counts) if counts else {}
    chest = chest_dataset(np.random.default_rng(0), cases["chest"], CHEST_TRAIN_SET) if "chest" in wanted else None
    print(f"data ready in {time.time() - t0:.0f}s", flush=True)
    report = {}
    for name in wanted:
        spec = SPECS[name]
        cfg = spec.cfg
        if args.quick:
            cfg = TrainConfig(3, cfg.lr, 2, cfg.weight_decay, cfg.warmup, cfg.crop, 1)
        torch.manual_seed(0)
        print(f"training {name} ({cfg.steps} steps)", flush=True)
        data = chest if name == "chest" else tuple(t[: cases[name]] for t in brain[spec.shape])
        model, stats = spec.fit(data, cfg)
        export(model, card_for(name, spec), args.out / "models" / f"{name}.pt2")
        report[name] = {
            **stats,
            "train_cases": len(data[0]),
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "torch": torch.__version__,
        }
        print(f"{name}: {report[name]}", flush=True)
    if report:
        path = args.out / "models" / "training_report.json"
        latest = json.loads(path.read_text()) if path.exists() else {}  # keep models not retrained now
        path.write_text(json.dumps({**latest, **report}, indent=2) + "\n")


if __name__ == "__main__":
    main()
