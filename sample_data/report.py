"""Markdown tables from the measured JSON files (training report, evaluation); nothing is typed in.

`write_docs` replaces the text between `<!-- sample-models:start -->` and `<!-- sample-models:end -->`
in README.md and docs/benchmarks.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from explain.cam.methods import LABELS

TITLES = {
    "cnn": "3D CNN classifier (EvidenceNet, 64^3)",
    "vit": "3D ViT classifier (MONAI ViT)",
    "unet": "3D segmentation (MONAI UNet, 64^3)",
    "chest": "2D CNN nodule classifier (EvidenceNet, 256x256)",
}
METHODS = LABELS  # method -> label, in the order the tables list them


def _score(r: dict) -> str:
    if "accuracy" in r:
        return f"{r['accuracy']:.1%} (n={r['n']})"
    d = r["dice"]
    return f"Dice bright {d['bright lesion']:.2f}, dark {d['dark lesion']:.2f} (n={r['n']})"


def _hits(r: dict | None) -> str:
    return "n/a" if r is None else f"{r['hit_rate']:.0%} ({r['hits']}/{r['cases']})"


def _set_tables(sets: dict, models: list[str], lines: list[str], methods: dict[str, str]) -> None:
    names = list(sets)
    lines += ["| model | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for model in models:
        if all(model in sets[s]["results"] for s in names):
            lines.append(f"| {TITLES[model]} | " + " | ".join(_score(sets[s]["results"][model]) for s in names) + " |")
    lines += ["", "Localisation (map peak inside the target lesion), per set:", ""]
    lines += ["| model | method | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for model in models:
        if not all(model in sets[s]["results"] for s in names):
            continue
        local = [sets[s]["results"][model]["localisation"] for s in names]
        if any("skipped" in entry for entry in local):
            lines.append(f"| {TITLES[model]} | all | " + " | ".join("not run" for _ in names) + " |")
            continue
        for method, label in methods.items():
            if method in local[0]:
                lines.append(f"| {TITLES[model]} | {label} | " + " | ".join(_hits(e.get(method)) for e in local) + " |")


def _training_table(training: dict) -> list[str]:
    lines = [
        "",
        "Training (seeded, CPU; wall and process-CPU seconds on a shared 2-core machine, so wall time varies "
        "with what else ran):",
        "",
        "| model | steps x batch | training cases | wall s | CPU s | threads |",
        "|---|---|---|---|---|---|",
    ]
    for name, title in TITLES.items():
        t = training.get(name)
        if t:
            lines.append(
                f"| {title} | {t['steps']} x {t['batch']} | {t['train_cases']} | {t['train_seconds']:.0f} | "
                f"{t['train_cpu_seconds']:.0f} | {t['torch_threads']} |"
            )
    return lines


def _gradient_scale(scale: dict) -> list[str]:
    g = scale["d_logit_d_activation"]
    return [
        "",
        f"3D CNN on the bundled case, at `{scale['layer']}`: logits "
        + ", ".join(f"{k} {v:.2f}" for k, v in scale["logits"].items())
        + "; max |d logit / d activation| "
        + ", ".join(f"{k} {v['max_abs']:.2e}" for k, v in g.items())
        + "; raw Grad-CAM peak "
        + ", ".join(f"{k} {v:.2e}" for k, v in scale["gradcam_raw_peak"].items())
        + ".",
    ]


def markdown(models_dir: Path, full: bool = True) -> str:
    """The sample-model section: training cost, held-out scores and localisation per set, CNN gradient scale.

    `full=False` (for the README): scores, and localisation by Grad-CAM, HiResCAM (the segmentation default) and
    the ViT's own maps only.
    """
    training = json.loads((models_dir / "training_report.json").read_text())
    evaluation = json.loads((models_dir / "evaluation.json").read_text())
    methods = METHODS if full else {m: METHODS[m] for m in ("gradcam", "hirescam", "vit-attention", "vit-rollout")}
    lines = ["Measured by `make samples` (`python -m sample_data.generate`, then `python -m sample_data.evaluate`)."]
    if full:
        lines += _training_table(training)
    brain = evaluation.get("brain")
    if brain:
        lines += ["", "3D held-out sets: " + "; ".join(f"**{s}** ({v['description']})" for s, v in brain.items()), ""]
        _set_tables(brain, ["cnn", "vit", "unet"], lines, methods)
    chest = evaluation.get("chest")
    if chest:
        lines += ["", "2D held-out sets: " + "; ".join(f"**{s}** ({v['description']})" for s, v in chest.items()), ""]
        _set_tables({s: {"results": {"chest": v["results"]}} for s, v in chest.items()}, ["chest"], lines, methods)
        skipped = [v["results"]["localisation"].get("skipped") for v in chest.values()]
        if any(skipped):
            lines += ["", f"2D localisation was not run: {next(s for s in skipped if s)}"]
    if full and evaluation.get("cnn_gradient_scale"):
        lines += _gradient_scale(evaluation["cnn_gradient_scale"])
    return "\n".join(lines) + "\n"


def write_docs(sample_dir: Path) -> None:
    """Refresh the sample-model sections of README.md (short) and docs/benchmarks.md (full)."""
    pattern = re.compile(r"(<!-- sample-models:start -->\n).*?(<!-- sample-models:end -->)", re.S)
    for path, full in ((sample_dir.parent / "README.md", False), (sample_dir.parent / "docs" / "benchmarks.md", True)):
        body = markdown(sample_dir / "models", full)
        text = path.read_text()
        path.write_text(pattern.sub(lambda m, body=body: m.group(1) + body + m.group(2), text))
