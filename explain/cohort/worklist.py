"""A finished cohort run, read back for the page's worklist (see `explain.cohort.batch` for writing one).

The worklist folder is chosen by the server (CAMVIEWER_BATCH_DIR), never by a user, so
the case and model paths recorded in a run's table and batch.json are trusted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from explain.cohort.batch import read_table
from explain.errors import InputError

NUMERIC = ("target", "predicted", "raw_peak", "energy_in_mask", "iou", "sanity_spearman_top", "sanity_ssim_top",
           "seconds_load", "seconds_compute", "worker_peak_mb")  # fmt: skip
WORKLIST_COLUMNS = ("case", "status", "method", "layer", "target_name", "label", "predicted_name", "pointing_hit",
                    "energy_in_mask", "iou", "sanity_spearman_top", "raw_peak", "error")  # fmt: skip


def list_batches(root: str | Path) -> list[Path]:
    """Run folders (holding results.csv and batch.json) at or one level below `root`, a folder the server chose."""
    root = Path(root)
    found = [root] if (root / "results.csv").is_file() else []
    if root.is_dir():
        found += sorted(p for p in root.iterdir() if p.is_dir() and (p / "results.csv").is_file())
    return found


def batch_model(folder: Path) -> dict:
    """The model spec a run used (from its batch.json)."""
    try:
        return json.loads((folder / "batch.json").read_text())["model"]
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{folder.name}: no readable batch.json beside results.csv; rerun the batch") from e


def worklist(folder: Path, sort_by: str = "case", descending: bool = False) -> list[dict[str, Any]]:
    """The run's rows with numbers as numbers, sorted by any column (empty values last)."""
    rows = read_table(folder)
    for row in rows:
        for key in NUMERIC:
            try:
                row[key] = float(row[key]) if row.get(key) not in (None, "") else None
            except ValueError:
                row[key] = None
    present = [r for r in rows if r.get(sort_by) not in (None, "")]
    missing = [r for r in rows if r.get(sort_by) in (None, "")]
    present.sort(key=lambda r: r[sort_by], reverse=descending)
    return present + missing
