"""The JSON report of one map and the append-only JSONL audit log, built from one record.

Neither holds patient identity. DICOM patient fields are never read into a
`Volume`. The audit log keeps content hashes and choices only, never file names
(an uploaded file's name can carry a patient's name or ID); the downloadable
report, which goes to the user who chose the files, also names them.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
from pathlib import Path

from explain import __version__
from explain.cam.results import Explanation
from explain.request import CamRequest

_AUDIT_LOCK = threading.Lock()


def record(request: CamRequest, explanation: Explanation, layer: str, target: int) -> dict:
    """What was computed and what came out: hashes, choices, prediction, timings. No names."""
    summary = explanation.summary()
    chosen = explanation.get(layer or None, target)
    return {
        "camviewer_version": __version__,
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "request": request.to_dict(),
        "request_key": request.key(),
        "volume_hash": request.volume,
        "model_hash": request.model,
        "method": chosen.method,
        "layer": chosen.layer,
        "target": {"index": chosen.target, "name": chosen.target_name},
        "raw_peak": chosen.raw_peak,
        "prediction": {
            "task": summary["task"],
            "class_names": summary["class_names"],
            "scores": summary["scores"],
            "probabilities": summary["probabilities"],
            "predicted": summary["predicted"],
        },
        "model_grid": summary["model_grid"],
        "engine_version": summary["engine_version"],
        "device": summary["device"],
        "timings_s": summary["timings_s"],
        "warnings": summary["warnings"] + chosen.warnings,
    }


def report(
    request: CamRequest,
    explanation: Explanation,
    layer: str,
    target: int,
    *,
    volume_name: str,
    model_name: str,
    model_card: dict | None = None,
    settings: dict | None = None,
) -> dict:
    """A self-contained record of one map for the user: the audit record plus file names, card and display settings."""
    out = record(request, explanation, layer, target)
    out["input"] = {"volume_name": volume_name, "volume_hash": request.volume}
    out["model"] = {"name": model_name, "model_hash": request.model, "card": model_card or {}}
    out["settings"] = settings or {}
    return out


def settings_of(request: CamRequest, target_name: str, *, overlay: str | None = None) -> dict:
    """What the user chose for this map, as the report states it (the request holds the rest: grid, windows)."""
    return {
        "method": request.method,
        "layers": list(request.layers or []),
        "target": target_name,
        "block": request.block,
        "head": request.head,
        "overlay": overlay,
    }


def map_facts(
    explanation: Explanation, cam, score_word: str, scores: dict | None = None
) -> tuple[list[str], list[str]]:
    """What the viewer writes beside a map once it is drawn: (facts, warnings), every one of them about this map."""
    from explain.trust.localisation import Localisation

    k = cam.target
    value = explanation.probabilities[k] if k < len(explanation.probabilities) else float("nan")
    share = f"{value:.2%} of voxels" if score_word != "probability" else f"{value:.1%}"
    facts = [
        f"{cam.target_name}: {score_word} {share}",
        f"raw peak {cam.raw_peak:.3g}",
        f"computed in {explanation.timings.get('total', 0.0):.2f} s on {explanation.device}",
        f"model grid {'×'.join(map(str, explanation.model_grid))}",
    ]
    if cam.window:
        facts.append(f"{cam.windows} windows of {'×'.join(map(str, cam.window))}")
    if scores is not None:
        facts += Localisation(**scores).sentences()
    warnings = list(dict.fromkeys([*explanation.warnings, *cam.warnings]))  # each said once
    return facts, warnings


def file_stem(method: str, layer: str, target: int) -> str:
    """The name exports of one map share: `cam_<method>_<layer>_<target>` (dots in the layer become dashes)."""
    return f"cam_{method}_{layer.replace('.', '-')}_{target}"


def append_audit(path: str | os.PathLike, entry: dict) -> None:
    """Append one JSON line; safe across the app's threads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"event": "compute", **entry}, sort_keys=True)
    with _AUDIT_LOCK, open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
