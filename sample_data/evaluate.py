"""Held-out evaluation of the sample models, per set, on the exported files, through the app's own engine.

    python -m sample_data.evaluate                  # writes models/evaluation.json, README and benchmarks tables
    python -m sample_data.evaluate --models chest   # re-measure some models; keep the others' last results

Sets (sample_data/synth.py and chest.py): new draws from the training distribution and
draws outside it (lesion size, contrast), each with its own seed; positions vary over the
white matter (3D) or both lungs (2D) in every set. Scores come from the exported `.pt2`
programs on the engine's own input grid (`GridMap`): accuracy for classifiers, Dice per
lesion class for the UNet. Localisation: each method through `explain.engine.explain` on
the full-resolution image with the true class as the target; a hit is a map whose maximum
lies inside that lesion (the UNet's target is its class summed over its own predicted mask).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from explain.errors import InputError
from explain.io.volume import make_volume
from explain.models.load import load_model
from explain.models.loaded import LoadedModel
from explain.policy import valid_methods
from sample_data import report
from sample_data.chest import CHEST_CLASSES, CHEST_EVAL_SETS, PIXEL_MM, radiograph
from sample_data.synth import CLASS_NAMES, EVAL_SETS, SEG_NAMES, case_kinds, grid_map, make_case, template
from sample_data.train import accuracy, dice, outputs

HERE = Path(__file__).resolve().parent
BRAIN_MODELS = ("cnn", "vit", "unet")
CHEST_AFFINE = np.diag([-PIXEL_MM, -PIXEL_MM, 1.0, 1.0])  # as a PNG is placed (explain/io/images2d.py), at 1.4 mm


def _hit(cam: np.ndarray, lesion: np.ndarray) -> bool:
    return bool(cam.max() > 0 and lesion[np.unravel_index(int(np.argmax(cam)), cam.shape)])


def _localise(model: LoadedModel, volume: object, lesion: np.ndarray, target: int, hits: dict) -> None:
    """One case: every valid method's map for `target`; record whether its peak is in `lesion`."""
    from explain.request import explain

    for method in valid_methods(model):
        cam = explain(model, volume, method, target=target).get(target=target).cam
        hits.setdefault(method, []).append(_hit(cam, lesion))


def _summary(hits: dict[str, list[bool]]) -> dict:
    return {m: {"hits": int(np.sum(v)), "cases": len(v), "hit_rate": float(np.mean(v))} for m, v in hits.items()}


def evaluate_brain(models: dict[str, LoadedModel], n: int, n_local: int) -> dict:
    """Per set: accuracy / Dice on n cases, localisation on the first n_local lesion cases."""
    base, placement, affine = template()
    out = {}
    for index, (set_name, dist) in enumerate(EVAL_SETS.items()):
        rng = np.random.default_rng(100 + index)
        grids = {name: grid_map(base, affine, tuple(m.input_shape[1:])) for name, m in models.items()}
        inputs = {name: [] for name in models}
        maps, labels = {name: [] for name in models}, []
        hits: dict[str, dict[str, list[bool]]] = {name: {} for name in models}
        t0, lesion_cases = time.time(), 0
        for i in range(n):
            kinds = case_kinds(i)
            image, label_map, _ = make_case(rng, base, placement, kinds, dist=dist)
            labels.append(kinds[0] if kinds else 0)
            for name, grid in grids.items():
                inputs[name].append(grid.to_model(image)[0])
                model_map = torch.zeros(grid.model_shape, dtype=torch.long)
                for k in kinds:
                    model_map[grid.region_to_model(label_map == k)] = k
                maps[name].append(model_map)
            if kinds and lesion_cases < n_local:
                lesion_cases += 1
                volume = make_volume(image * 255.0, affine, f"{set_name}-{i}")
                for name, model in models.items():
                    _localise(model, volume, label_map == kinds[0], kinds[0], hits[name])
            print(f"  {set_name}: case {i + 1}/{n} {time.time() - t0:.0f}s", flush=True)
        y = torch.tensor(labels)
        result = {}
        for name, model in models.items():
            logits = _run(model, torch.stack(inputs[name]))
            segmentation = model.card.task == "segmentation"
            scores = (
                dice(logits, torch.stack(maps[name]), SEG_NAMES) if segmentation else accuracy(logits, y, CLASS_NAMES)
            )
            result[name] = {**scores, "localisation": _summary(hits[name])}
        out[set_name] = {"description": dist.description, "seed": 100 + index, "results": result}
    return out


@torch.no_grad()
def _run(model: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    """Logits for each case, one at a time (the exported programs have a static batch of one)."""
    module = model.module.eval()
    return torch.cat([outputs(module(x[i : i + 1])) for i in range(len(x))])


def evaluate_chest(model: LoadedModel, n: int, n_local: int) -> dict:
    """The 2D model per set: accuracy from the program itself; localisation through the engine if it takes 2D."""
    out, engine_error = {}, None
    for index, (set_name, dist) in enumerate(CHEST_EVAL_SETS.items()):
        rng = np.random.default_rng(300 + index)
        xs, ys, hits, lesion_cases = [], [], {}, 0
        for i in range(n):
            image, mask, _ = radiograph(rng, nodule=i % 2 == 1, dist=dist)
            x = torch.from_numpy(image)
            xs.append(((x - x.mean()) / x.std(unbiased=False).clamp_min(1e-8))[None])  # the card's zscore
            ys.append(i % 2)
            if i % 2 == 1 and lesion_cases < n_local and engine_error is None:
                lesion_cases += 1
                volume = make_volume(image.T, CHEST_AFFINE, f"chest-{set_name}-{i}")  # data[i = column, j = row]
                try:
                    _localise(model, volume, mask.T.astype(bool), 1, hits)
                except InputError as e:  # the engine does not take 2D images (yet): say so, keep accuracy
                    engine_error = str(e)
        scores = accuracy(_run(model, torch.stack(xs)), torch.tensor(ys), CHEST_CLASSES)
        local = {"skipped": f"the engine refused the 2D case: {engine_error}"} if engine_error else _summary(hits)
        out[set_name] = {
            "description": dist.description,
            "seed": 300 + index,
            "results": {**scores, "localisation": local},
        }
        print(f"  chest {set_name}: accuracy {scores['accuracy']:.3f}", flush=True)
    if engine_error:
        print(f"2D localisation skipped: {engine_error}", flush=True)
    return out


def cnn_gradient_scale(model: LoadedModel, case: Path) -> dict:
    """On the bundled case: logit range, |d logit / d activation| at the default layer, raw Grad-CAM peaks."""
    from explain.io.load import load_volume
    from explain.request import explain

    volume = load_volume(case)
    grid = grid_map(volume.data, volume.affine, tuple(model.input_shape[1:]))
    module, layer = model.module.eval(), model.card.default_layer
    seen = {}
    handle = dict(module.named_modules())[layer].register_forward_hook(lambda _m, _i, out: seen.update(act=out))
    try:
        logits = outputs(module(grid.to_model(volume.data).requires_grad_()))[0]
    finally:
        handle.remove()
    grads = {}
    for k in (1, 2):
        (g,) = torch.autograd.grad(logits[k], seen["act"], retain_graph=True)
        grads[CLASS_NAMES[k]] = {"max_abs": float(g.abs().max()), "mean_abs": float(g.abs().mean())}
    result = explain(model, volume, "gradcam", target=[1, 2])
    peaks = {CLASS_NAMES[r.target]: float(r.raw_peak) for r in result.results}
    raw = {CLASS_NAMES[r.target]: [float(r.raw_map.min()), float(r.raw_map.max())] for r in result.results}
    return {
        "case": "case_brain/t1_lesions.nii.gz",
        "layer": layer,
        "logits": {name: float(v) for name, v in zip(CLASS_NAMES, logits.detach())},
        "d_logit_d_activation": grads,
        "gradcam_raw_peak": peaks,
        "gradcam_raw_range": raw,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=[*BRAIN_MODELS, "chest"])
    parser.add_argument("--cases", type=int, default=90, help="3D cases per set (a third each: none, bright, dark)")
    parser.add_argument("--local", type=int, default=24, help="3D lesion cases per set for localisation")
    parser.add_argument("--chest-cases", type=int, default=200, help="2D cases per set (half with a nodule)")
    parser.add_argument("--chest-local", type=int, default=40, help="2D nodule cases per set for localisation")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--dir", type=Path, default=HERE, help="sample folder: models/ in, models/evaluation.json out")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = {name: load_model(args.dir / "models" / f"{name}.pt2") for name in args.models}
    out = args.dir / "models" / "evaluation.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    t0 = time.time()
    brain = {name: m for name, m in models.items() if name in BRAIN_MODELS}
    result = dict(previous)
    if brain:
        fresh = evaluate_brain(brain, args.cases, args.local)
        old = previous.get("brain", {})
        result["brain"] = {  # merge per set and model: models not re-measured keep their last figures
            s: {**fresh[s], "results": {**old.get(s, {}).get("results", {}), **fresh[s]["results"]}} for s in fresh
        }
    if "cnn" in models:
        result["cnn_gradient_scale"] = cnn_gradient_scale(models["cnn"], args.dir / "case_brain" / "t1_lesions.nii.gz")
    if "chest" in models:
        result["chest"] = evaluate_chest(models["chest"], args.chest_cases, args.chest_local)
    result["criterion"] = "localisation hit: the map's maximum (full-resolution image) lies inside the target lesion"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"evaluated in {time.time() - t0:.0f}s", flush=True)
    if args.dir.resolve() == HERE:  # the repository's own samples: refresh the tables in the docs
        report.write_docs(HERE)
    else:
        print(report.markdown(args.dir / "models"))
    return result


if __name__ == "__main__":
    main()
