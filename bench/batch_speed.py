"""Cohort runs against a shell loop of the CLI, and a cohort table of the sample CNN.

    python -m bench.batch_speed            # or: python -m bench --batch

1. Writes N held-out lesion cases (seed 300, half bright, half dark, sample-sized: the
   197 x 233 x 189 template grid) with masks and labels, as a CSV of cases.
2. Times, whole process each: a shell loop of `python -m explain cam` over the cases
   (one Grad-CAM per case, the true class), and `python -m explain batch` over the same
   cases with 1 and with 2 Ray workers (Ray's start included). Throughput = cases / s.
3. A cohort run of the sample CNN with every gradient method, with masks: pointing game
   and energy in mask per method, the table docs/benchmarks.md shows.
"""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "sample_data" / "models" / "cnn.pt2"
METHODS = ("gradcam", "gradcampp", "hirescam", "layercam")


def write_cases(folder: Path, n: int, seed: int = 300) -> Path:
    """n cases with masks and labels (1 bright, 2 dark) on the template grid; returns the CSV."""
    from explain.io.write import save_nifti
    from sample_data.synth import make_case, template

    base, placement, affine = template()
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        kind = 1 + i % 2
        image, labels, _ = make_case(rng, base, placement, [kind])
        save_nifti(image * 255.0, affine, folder / f"case{i:02d}.nii.gz")
        save_nifti((labels == kind).astype(np.float32), affine, folder / f"mask{i:02d}.nii.gz")
        rows.append({"path": f"case{i:02d}.nii.gz", "mask": f"mask{i:02d}.nii.gz", "label": str(kind)})
    table = folder / "cases.csv"
    with open(table, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "mask", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return table


def _run(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(cmd[:4])} failed: {proc.stderr[-500:]}")
    return time.perf_counter() - t0


def cli_loop(folder: Path, rows: list[dict], out: Path) -> float:
    """A shell loop: one `python -m explain cam` process per case, one after the other."""
    t0 = time.perf_counter()
    for i, row in enumerate(rows):
        _run([sys.executable, "-m", "explain", "cam", str(MODEL), str(folder / row["path"]), "--target", row["label"],
              "--out", str(out / f"loop{i:02d}.nii.gz")])  # fmt: skip
    return time.perf_counter() - t0


def batch(table: Path, out: Path, workers: int, methods: tuple[str, ...] = ("gradcam",)) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "explain", "batch", str(table), "--model", str(MODEL), "--out", str(out),
           "--target", "label", "--workers", str(workers)]  # fmt: skip
    for method in methods:
        cmd += ["--method", method]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"batch failed: {proc.stderr[-800:]}")
    return seconds, json.loads(proc.stdout.strip().splitlines()[-1])


def cohort_table(out: Path) -> str:
    from explain.cohort.worklist import worklist

    rows = [r for r in worklist(out) if r["status"] == "ok"]
    lines = ["| method | pointing game | energy in mask (mean) | IoU at 0.5 (mean) | cases |", "|---|---|---|---|---|"]
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        hits = sum(r["pointing_hit"] == "True" for r in mine)
        energy = statistics.fmean(r["energy_in_mask"] for r in mine if r["energy_in_mask"] is not None)
        iou = statistics.fmean(r["iou"] for r in mine if r["iou"] is not None)
        lines.append(
            f"| {method} | {hits / len(mine):.0%} ({hits}/{len(mine)}) | {energy:.2f} | {iou:.2f} | {len(mine)} |"
        )
    return "\n".join(lines)


def main(n: int = 24) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        table = write_cases(folder, n)
        with open(table) as f:
            rows = list(csv.DictReader(f))
        loop = cli_loop(folder, rows, folder / "loop")
        one, one_summary = batch(table, folder / "batch1", 1)
        two, two_summary = batch(table, folder / "batch2", 2)
        cohort_seconds, _ = batch(table, folder / "cohort", 2, METHODS)
        cohort = cohort_table(folder / "cohort")
    peaks = ", ".join(f"{mb:.0f}" for mb in two_summary["peak_mb_per_worker"].values())
    text = (
        f"{n} held-out lesion cases (197 x 233 x 189, seed 300), sample CNN, Grad-CAM for the true class; each "
        f"figure is a whole process (interpreter, imports, Ray start, model loading), one run.\n\n"
        "| how | seconds | cases / s | vs the CLI loop |\n|---|---|---|---|\n"
        f"| shell loop of `python -m explain cam` | {loop:.1f} | {n / loop:.2f} | 1.0x |\n"
        f"| `python -m explain batch`, 1 worker | {one:.1f} | {n / one:.2f} | {loop / one:.1f}x |\n"
        f"| `python -m explain batch`, 2 workers | {two:.1f} | {n / two:.2f} | {loop / two:.1f}x |\n\n"
        f"2 workers against 1: {one / two:.2f}x. Peak memory per worker (VmHWM, 2 workers): {peaks} MB.\n\n"
        f"Cohort table: the sample CNN over the same {n} cases with every gradient method "
        f"({cohort_seconds:.0f} s with 2 workers); the target is each case's true lesion, scored against its mask.\n\n"
        f"{cohort}\n"
    )
    print(text)
    return text


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 24)
