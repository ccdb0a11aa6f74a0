"""The JSON report of one computation and the append-only JSONL audit log.

Neither contains patient identity: only content hashes, file names as uploaded,
and the computation's parameters and results. DICOM patient fields are never
read into a `Volume`, so they cannot leak here.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
from pathlib import Path

from explain import __version__

_AUDIT_LOCK = threading.Lock()


def report(
    summary: dict,
    *,
    volume_name: str,
    model_name: str,
    method: str,
    layer: str,
    target: int,
    target_name: str,
    user_settings: dict | None = None,
) -> dict:
    """A self-contained record of one map: inputs by hash, choices, scores and timings."""
    return {
        "camviewer_version": __version__,
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "input": {"volume_name": volume_name, "volume_hash": summary["volume_hash"]},
        "model": {"name": model_name, "model_hash": summary["model_hash"]},
        "method": method,
        "layer": layer,
        "target": {"index": target, "name": target_name},
        "prediction": {
            "class_names": summary["class_names"],
            "scores": summary["scores"],
            "probabilities": summary["probabilities"],
            "predicted": summary["predicted"],
        },
        "engine_version": summary["engine_version"],
        "device": summary["device"],
        "timings_s": summary["timings_s"],
        "warnings": summary["warnings"],
        "settings": user_settings or {},
    }


def append_audit(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line; safe across the app's threads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True)
    with _AUDIT_LOCK, open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
