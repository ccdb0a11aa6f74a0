"""What cascading randomisation (Adebayo et al., 2018) does to each method on the bundled sample models.

    python -m bench --sanity-only      # or: python -m bench.sanity_methods

For each sample model and valid method, on the bundled brain case and one target (bright lesion), the blocks are
randomised from the top down and the map recomputed; the table gives the rank correlation of |map| (the verdict's
statistic), the signed one and SSIM, after the top block and after the second, and the verdict.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASE = ROOT / "sample_data" / "case_brain" / "t1_lesions.nii.gz"
TARGET = 1  # bright lesion


def rows() -> list[dict]:
    from explain.cam.layers import default_layer_for, model_layers
    from explain.io.load import load_volume
    from explain.models.load import load_model
    from explain.policy import is_attention, valid_methods
    from explain.trust.sanity import cascade

    volume = load_volume(CASE)
    out = []
    for name in ("cnn", "unet", "vit"):
        model = load_model(ROOT / "sample_data" / "models" / f"{name}.pt2")
        layer = default_layer_for(model, model_layers(model)[0])
        for method in valid_methods(model):
            report = cascade(model, volume, method, None if is_attention(method) else layer, TARGET, max_steps=2)
            out.append({"model": name, "method": method, "layer": report.layer, "steps": report.steps,
                        "verdict": report.verdict, "depends": report.depends_on_weights})  # fmt: skip
    return out


def table(found: list[dict]) -> str:
    from explain.policy import method_label

    lines = [
        "| model | method | layer | top block | after top: Spearman \\|map\\| / signed / SSIM | second block | "
        "after both: Spearman \\|map\\| / signed / SSIM | verdict (< 0.3 after the top block) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in found:
        cells = []
        for step in r["steps"][:2]:
            cells += [f"`{step.block}`", f"{step.spearman:.2f} / {step.signed_spearman:.2f} / {step.ssim:.2f}"]
        cells += ["", ""] * (2 - len(r["steps"][:2]))
        verdict = "depends on the weights" if r["depends"] else "does not"
        lines.append(
            f"| {r['model']} | {method_label(r['method'])} | `{r['layer']}` | " + " | ".join(cells) + f" | {verdict} |"
        )
    return "\n".join(lines)


def main() -> str:
    import datetime
    import os

    body = (
        f"Measured {datetime.date.today().isoformat()} on the bundled brain case, target bright lesion, seed 0 "
        f"(load average {os.getloadavg()[0]:.1f}).\n\n{table(rows())}\n"
    )
    print(body)
    return body


if __name__ == "__main__":
    main()
