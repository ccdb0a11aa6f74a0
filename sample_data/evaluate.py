"""Localisation of each method on held-out cases: how often the CAM peak lands inside the target lesion.

    python -m sample_data.evaluate            # writes sample_data/models/localisation.json

Cases are new draws (seed 200, never seen in training) at the template's full 1 mm
grid, pushed through the same engine the app uses, with the true lesion class as
the target. A hit: the voxel of the map's maximum is inside that lesion's mask.
The UNet target is its lesion class summed over its own predicted mask.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from explain.engine import explain, valid_methods
from explain.models import load_model
from explain.volumes import make_volume
from sample_data.generate import CLASS_NAMES, HERE, make_case, template


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=40, help="lesion cases (half bright, half dark)")
    parser.add_argument("--out", type=Path, default=HERE / "models" / "localisation.json")
    parser.add_argument("--models", nargs="*", default=["cnn", "vit", "unet"], help="evaluate these; keep others")
    args = parser.parse_args(argv)
    base, placement, affine = template()
    rng = np.random.default_rng(200)
    models = {name: load_model(HERE / "models" / f"{name}.pt2") for name in args.models}
    hits: dict[str, dict[str, list[bool]]] = {name: {} for name in models}
    t0 = time.time()
    for n in range(args.cases):
        kind = 1 + n % 2
        image, labels, _ = make_case(rng, base, placement, [kind])
        volume = make_volume(image * 255.0, affine, f"heldout-{n}")
        lesion = labels == kind
        for name, model in models.items():
            for method in valid_methods(model):
                cam = explain(model, volume, method, target=kind).get(target=kind).cam
                peak = np.unravel_index(int(np.argmax(cam)), cam.shape)
                hits[name].setdefault(method, []).append(bool(lesion[peak]) and float(cam.max()) > 0)
        print(f"case {n + 1}/{args.cases} ({CLASS_NAMES[kind]}) {time.time() - t0:.0f}s", flush=True)
    summary = {
        name: {
            method: {"hit_rate": float(np.mean(v)), "hits": int(np.sum(v)), "cases": len(v)} for method, v in m.items()
        }
        for name, m in hits.items()
    }
    previous = json.loads(args.out.read_text())["results"] if args.out.exists() else {}
    out = {
        "cases": args.cases,
        "seed": 200,
        "criterion": "CAM argmax inside the target lesion",
        "results": {**previous, **summary},
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    if set(out["results"]) >= {"cnn", "vit", "unet"}:
        write_docs()
    return out


def markdown() -> str:
    """The sample-model table from the two measured JSON files (training report, localisation)."""
    training = json.loads((HERE / "models" / "training_report.json").read_text())
    local = json.loads((HERE / "models" / "localisation.json").read_text())
    titles = {
        "cnn": "3D CNN classifier (LesionNet)",
        "vit": "3D ViT classifier (MONAI ViT, patch 8)",
        "unet": "3D segmentation (MONAI UNet)",
    }
    lines = [
        f"Held-out data: {training['cnn']['n']} cases for accuracy / Dice; {local['cases']} lesion cases "
        f"(half bright, half dark, seed {local['seed']}, full 1 mm grid) for localisation. "
        f"Localisation = how often the CAM peak lands inside the target lesion.",
        "",
        "| model | held-out score | "
        + " | ".join(["Grad-CAM", "Grad-CAM++", "HiResCAM", "LayerCAM", "ViT attention", "ViT rollout"])
        + " |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("cnn", "vit", "unet"):
        t = training[name]
        score = (
            f"accuracy {t['accuracy']:.1%}"
            if "accuracy" in t
            else f"Dice bright {t['dice']['bright lesion']:.2f}, dark {t['dice']['dark lesion']:.2f}"
        )
        cells = []
        for method in ("gradcam", "gradcampp", "hirescam", "layercam", "vit-attention", "vit-rollout"):
            r = local["results"][name].get(method)
            cells.append("n/a" if r is None else f"{r['hit_rate']:.0%} ({r['hits']}/{r['cases']})")
        lines.append(f"| {titles[name]} | {score} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_docs() -> None:
    """Refresh the sample-model sections of README.md and docs/benchmarks.md."""
    import re

    body = markdown()
    for path in (HERE.parent / "README.md", HERE.parent / "docs" / "benchmarks.md"):
        text = path.read_text()
        pattern = re.compile(r"(<!-- sample-models:start -->\n).*?(<!-- sample-models:end -->)", re.S)
        path.write_text(pattern.sub(lambda m: m.group(1) + body + m.group(2), text))


if __name__ == "__main__":
    main()
