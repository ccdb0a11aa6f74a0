"""Build the bundled sample case and train the three sample models (seeded, CPU, minutes).

    python -m sample_data.generate            # everything (about 10 minutes on 2 cores)
    python -m sample_data.generate --quick    # a smoke run: tiny data, few steps, to a temp folder

Anatomy: the MNI152 2009a T1 template shipped inside nilearn (see MNI152_NOTICE.txt).
Each case is the template with synthetic lesions (ellipsoids with soft edges in
white matter, bright = intensity x(1+c), dark = x(1-c)), a smooth multiplicative
bias field, a random global gain and Gaussian noise. Classes: 0 no lesion,
1 bright lesion, 2 dark lesion. Every case goes through the same `GridMap` the
engine uses, so models see exactly what the app feeds them.

Outputs in sample_data/: case_brain/{t1_lesions.nii.gz, lesion_mask.nii.gz,
lesions.json}, models/{cnn,vit,unet}.pt2 (each with its model card inside), and
models/training_report.json (held-out accuracy / Dice).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from explain.models import CARD_FILE, ModelCard
from explain.preprocess import plan_grid
from explain.volumes import save_nifti

HERE = Path(__file__).resolve().parent
CLASS_NAMES = ["no lesion", "bright lesion", "dark lesion"]
MODEL_SHAPE = (64, 64, 64)
# z-score, not clipped percentiles: clipping put bright lesions at the same 1.0 as the scalp,
# and a small net then could not tell them apart (it stayed at chance).
INTENSITY = {"kind": "zscore"}
SEG_NAMES = ["background", "bright lesion", "dark lesion"]


def template() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """T1 template scaled to [0, 1], a white-matter placement mask, and the affine."""
    import nilearn.datasets

    data_dir = Path(nilearn.datasets.__file__).parent / "data"
    t1 = nib.load(data_dir / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    wm = nib.load(data_dir / "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz")
    if not np.allclose(t1.affine, wm.affine):
        raise RuntimeError("nilearn's T1 and WM templates are not on the same grid")
    wm_prob = np.asarray(wm.dataobj, dtype=np.float32)
    wm_prob = wm_prob / max(float(wm_prob.max()), 1e-6)
    return np.asarray(t1.dataobj, dtype=np.float32) / 255.0, wm_prob > 0.9, t1.affine


class Lesion:
    """An axis-aligned ellipsoid with a soft edge; `kind` 1 = bright, 2 = dark."""

    def __init__(self, center: np.ndarray, radii: np.ndarray, kind: int, contrast: float):
        self.center, self.radii, self.kind, self.contrast = center, radii, kind, contrast

    def paint(self, image: np.ndarray, labels: np.ndarray) -> None:
        lo = np.maximum(np.floor(self.center - self.radii - 2).astype(int), 0)
        hi = np.minimum(np.ceil(self.center + self.radii + 3).astype(int), image.shape)
        grids = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij")
        r = np.sqrt(sum(((g - c) / rad) ** 2 for g, c, rad in zip(grids, self.center, self.radii)))
        profile = np.clip((1.25 - r) / 0.5, 0, 1)  # 1 inside r<0.75, 0 beyond r=1.25
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        sign = 1.0 if self.kind == 1 else -1.0
        image[box] *= 1 + sign * self.contrast * profile
        labels[box][r <= 1.0] = self.kind

    def describe(self, affine: np.ndarray) -> dict:
        world = affine @ np.append(self.center, 1.0)
        return {
            "kind": CLASS_NAMES[self.kind],
            "label": self.kind,
            "center_voxel": [round(float(c), 1) for c in self.center],
            "center_world_mm": [round(float(w), 1) for w in world[:3]],
            "radii_mm": [round(float(r), 1) for r in self.radii],
            "contrast": round(self.contrast, 2),
        }


def random_lesion(rng: np.random.Generator, placement: np.ndarray, kind: int) -> Lesion:
    candidates = np.argwhere(placement)
    center = candidates[rng.integers(len(candidates))].astype(float)
    radii = rng.uniform(7.0, 13.0, size=3)
    contrast = rng.uniform(0.6, 1.0) if kind == 1 else rng.uniform(0.55, 0.8)
    return Lesion(center, radii, kind, float(contrast))


def bias_field(rng: np.random.Generator, shape: tuple[int, ...], strength: float) -> np.ndarray:
    """A smooth multiplicative field: 1 + a separable random quadratic, about +-strength."""
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    terms = [1 + strength * (rng.uniform(-1, 1) * a + 0.5 * rng.uniform(-1, 1) * a**2) for a in axes]
    return terms[0][:, None, None] * terms[1][None, :, None] * terms[2][None, None, :]


def make_case(
    rng: np.random.Generator, base: np.ndarray, placement: np.ndarray, kinds: list[int], noise: bool = True
) -> tuple[np.ndarray, np.ndarray, list[Lesion]]:
    image = base.copy()
    labels = np.zeros(base.shape, dtype=np.uint8)
    lesions = [random_lesion(rng, placement, k) for k in kinds]
    for lesion in lesions:
        lesion.paint(image, labels)
    image *= bias_field(rng, image.shape, rng.uniform(0.0, 0.15)) * rng.uniform(0.8, 1.2)
    if noise:
        image += rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(0.0, 0.03)
    return image, labels, lesions


def build_dataset(
    rng: np.random.Generator, base: np.ndarray, placement: np.ndarray, affine: np.ndarray, n: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n cases on the model grid: inputs (n, 1, 64, 64, 64), class labels (n,), label maps (n, 64, 64, 64).

    Cases cycle through no lesion, one bright lesion, one dark lesion.
    """
    card = ModelCard(input_shape=(1, *MODEL_SHAPE), intensity=INTENSITY, orientation="RAS")
    grid = plan_grid(base.shape, affine, card, MODEL_SHAPE)
    xs, ys, maps = [], [], []
    for i in range(n):
        kinds = [] if i % 3 == 0 else [1 + (i % 3 == 2)]
        image, labels, _ = make_case(rng, base, placement, kinds)
        xs.append(grid.to_model(image)[0])
        onehot = np.stack([labels == k for k in range(3)]).astype(np.float32)
        maps.append(torch.stack([grid.region_to_model(m).float() for m in onehot]).argmax(0).to(torch.uint8))
        ys.append(torch.tensor(kinds[0] if kinds else 0))
    return torch.stack(xs), torch.stack(ys), torch.stack(maps)


def coarse_labels(label_map: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Label maps (n, 64, 64, 64) -> (n, *grid): a cell takes a lesion's label if any lesion voxel is in it."""
    onehot = F.one_hot(label_map.long(), 3).movedim(-1, 1).float()
    pooled = F.adaptive_max_pool3d(onehot[:, 1:], grid)
    lesion = pooled.amax(1) > 0
    return torch.where(lesion, pooled.argmax(1) + 1, torch.zeros_like(lesion, dtype=torch.long))


class LesionNet(nn.Module):
    """A small 3D CNN whose class logits read a per-cell lesion-evidence map (64^3 in, 16^3 grid).

    logit(bright) = the maximum over cells of log p(bright) (softmax over background,
    bright, dark), likewise dark; logit(no lesion) is a learned constant. (A logsumexp over the 4096 cells was
    dominated by the background mass and did not move with the lesion: measured.) So "bright lesion" means "somewhere
    there is strong bright-lesion evidence", and Grad-CAM for that class points at the
    cells that carry it. BatchNorm, not InstanceNorm: pooling instance-normalised maps sees only
    their bias.
    """

    def __init__(self, classes: int = 3):
        super().__init__()

        def block(cin: int, cout: int, stride: int, dilation: int = 1) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv3d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation),
                nn.BatchNorm3d(cout),
                nn.ReLU(),
                nn.Conv3d(cout, cout, 3, padding=1),
                nn.BatchNorm3d(cout),
                nn.ReLU(),
            )

        self.features = nn.Sequential()
        self.features.add_module("block1", block(1, 8, 2))
        self.features.add_module("block2", block(8, 16, 2))
        self.features.add_module("block3", block(16, 32, 1, dilation=2))
        self.evidence = nn.Conv3d(32, classes, 1)  # channel 0 (background) is trained but unused by the logits
        self.no_lesion = nn.Parameter(torch.zeros(1))

    def logits(self, evidence: torch.Tensor) -> torch.Tensor:
        # Per cell, log p(class) over all three channels: a dark-lesion score against background
        # alone was also high inside a bright lesion (background evidence is low there).
        log_p = evidence.log_softmax(dim=1)[:, 1:]
        lesion = log_p.flatten(2).amax(dim=-1)
        return torch.cat([self.no_lesion.expand(evidence.shape[0], 1), lesion], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.evidence(self.features(x)))

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        evidence = self.evidence(self.features(x))
        return self.logits(evidence), evidence


def build_vit() -> nn.Module:
    from monai.networks.nets import ViT

    class LesionViT(ViT):
        """MONAI's ViT plus a training-only token head (deep supervision on patch tokens)."""

        def __init__(self):
            super().__init__(
                in_channels=1,
                img_size=MODEL_SHAPE,
                patch_size=(8, 8, 8),
                hidden_size=96,
                mlp_dim=192,
                num_layers=4,
                num_heads=4,
                classification=True,
                num_classes=3,
                dropout_rate=0.0,
            )
            self.aux = nn.Linear(96, 3)

        def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits, hidden = self(x)
            tokens = hidden[-2][:, 1:]  # the block Grad-CAM uses by default
            b = tokens.shape[0]
            return logits, self.aux(tokens).transpose(1, 2).reshape(b, 3, 8, 8, 8)

    return LesionViT()


def build_unet() -> nn.Module:
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=(8, 16, 32), strides=(2, 2), num_res_units=1)


def _logits(out: object) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def dense_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Lesion-weighted cross-entropy, plus soft Dice where the case has that lesion.

    Lesions are ~0.1% of voxels: plain cross-entropy, or Dice averaged over cases
    without the lesion, let every head settle on "background everywhere" (measured).
    """
    weight = torch.tensor([1.0, 30.0, 30.0], device=logits.device)
    loss = F.cross_entropy(logits, labels, weight=weight)
    probs = logits.softmax(1)[:, 1:]
    target = F.one_hot(labels, logits.shape[1]).movedim(-1, 1)[:, 1:].float()
    dims = tuple(range(2, logits.ndim))
    present = target.sum(dims) > 0
    if present.any():
        dice = (2 * (probs * target).sum(dims) + 1) / (probs.sum(dims) + target.sum(dims) + 1)
        loss = loss + (1 - dice[present]).mean()
    return loss


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    maps: torch.Tensor,
    steps: int,
    lr: float,
    segmentation: bool,
    seed: int,
) -> None:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.train()
    for step in range(steps):
        idx = torch.randint(len(x), (8,), generator=gen)
        xb, yb, mb = x[idx], y[idx], maps[idx].long()
        if torch.rand(1, generator=gen) < 0.5:  # left-right flip: lesions occur on both sides
            xb, mb = xb.flip(2), mb.flip(1)
        if segmentation:
            loss = dense_loss(_logits(model(xb)), mb)
        else:
            logits, aux = model.forward_train(xb)
            loss = F.cross_entropy(logits, yb) + dense_loss(aux, coarse_labels(mb, tuple(aux.shape[2:])))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"  step {step:4d}  loss {loss.item():.4f}", flush=True)
    model.eval()


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, segmentation: bool) -> dict:
    preds = torch.cat([_logits(model(x[i : i + 8])).argmax(1) for i in range(0, len(x), 8)])
    if not segmentation:
        return {"accuracy": float((preds == y).float().mean()), "n": len(y)}
    dices = {}
    for k in (1, 2):
        p, t = preds == k, y == k
        inter = (p & t).sum((1, 2, 3)).float()
        denom = (p.sum((1, 2, 3)) + t.sum((1, 2, 3))).float()
        valid = t.sum((1, 2, 3)) > 0
        dices[SEG_NAMES[k]] = float((2 * inter[valid] / denom[valid].clamp_min(1)).mean())
    return {"dice": dices, "mean_dice": float(np.mean(list(dices.values()))), "n": len(y)}


def export(model: nn.Module, card: ModelCard, path: Path) -> None:
    example = torch.zeros(1, *card.input_shape)
    program = torch.export.export(model.eval(), (example,))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path), extra_files={CARD_FILE: json.dumps(card.to_dict())})


def sample_case(base: np.ndarray, affine: np.ndarray, out: Path) -> None:
    """The bundled case: one bright lesion (left hemisphere) and one smaller dark one (right).

    Both sizes lie inside the training range (7-13 mm radii): a case outside it would
    test the sample models out of distribution rather than show the viewer.
    """
    image = base.copy()
    labels = np.zeros(base.shape, dtype=np.uint8)
    inv = np.linalg.inv(affine)
    lesions = [
        Lesion((inv @ [-26.0, -10.0, 28.0, 1.0])[:3], np.array([11.0, 10.0, 10.0]), 1, 0.7),  # left
        Lesion((inv @ [28.0, 12.0, 20.0, 1.0])[:3], np.array([8.0, 7.5, 7.5]), 2, 0.7),  # right
    ]
    for lesion in lesions:
        lesion.paint(image, labels)
    out.mkdir(parents=True, exist_ok=True)
    save_nifti(np.round(image * 255.0).astype(np.float32), affine, out / "t1_lesions.nii.gz")
    img = nib.Nifti1Image(labels, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    nib.save(img, str(out / "lesion_mask.nii.gz"))
    (out / "lesions.json").write_text(
        json.dumps(
            {
                "source": "MNI152 2009a symmetric T1 template (nilearn) with synthetic lesions; see MNI152_NOTICE.txt",
                "mask_labels": {"1": "bright lesion", "2": "dark lesion"},
                "lesions": [lesion.describe(affine) for lesion in lesions],
            },
            indent=2,
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--only", choices=["case", "cnn", "vit", "unet"], action="append")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    base, placement, affine = template()
    only = set(args.only or ["case", "cnn", "vit", "unet"])
    if "case" in only:
        sample_case(base, affine, args.out / "case_brain")
    n_train, n_test, scale = (12, 6, 0.02) if args.quick else (480, 120, 1.0)
    report_path = args.out / "models" / "training_report.json"
    report: dict[str, dict] = {}
    specs = {
        "cnn": (LesionNet, 1500, 3e-3, False, "features.block3", "LesionNet (3D CNN)"),
        "vit": (build_vit, 700, 1e-3, False, "blocks.2", "MONAI ViT 3D, patch 8"),
        "unet": (build_unet, 250, 5e-3, True, "model.1.submodule.1", "MONAI UNet 3D"),
    }
    t0 = time.time()
    cached = args.out / "_training" / f"data_{n_train}_{n_test}.pt"
    if cached.exists():
        (x, y, maps), (xt, yt, mt) = torch.load(cached, weights_only=True)
    else:
        x, y, maps = build_dataset(np.random.default_rng(0), base, placement, affine, n_train)
        xt, yt, mt = build_dataset(np.random.default_rng(100), base, placement, affine, n_test)
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.save(((x, y, maps), (xt, yt, mt)), cached)
    print(f"data: {n_train} training + {n_test} held-out cases in {time.time() - t0:.0f}s", flush=True)
    for name, (build, steps, lr, seg, layer, title) in specs.items():
        if name not in only:
            continue
        torch.manual_seed(0)
        model = build()
        t0 = time.time()
        steps = max(int(steps * scale), 2)
        print(f"training {name}", flush=True)
        train(model, x, y, maps, steps, lr, seg, seed=0)
        metrics = evaluate(model, xt, mt.long() if seg else yt, seg)
        metrics.update(train_seconds=round(time.time() - t0, 1), train_cases=n_train, steps=steps)
        print(f"{name}: {metrics}", flush=True)
        card = ModelCard(
            task="segmentation" if seg else "classification",
            class_names=SEG_NAMES if seg else CLASS_NAMES,
            input_shape=(1, *MODEL_SHAPE),
            intensity=INTENSITY,
            orientation="RAS",
            default_layer=layer,
            name=title,
            description="Sample model trained on synthetic lesions in the MNI152 template; "
            "a demo, not a medical device.",
        )
        export(model, card, args.out / "models" / f"{name}.pt2")
        report[name] = metrics
    if not args.quick or args.out != HERE:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        # Re-read just before writing: another run may have updated other models meanwhile.
        latest = json.loads(report_path.read_text()) if report_path.exists() else {}
        latest.update({name: report[name] for name in only if name in report})
        report_path.write_text(json.dumps(latest, indent=2) + "\n")


if __name__ == "__main__":
    main()
