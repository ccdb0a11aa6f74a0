"""Pending maps: the server says how far a computation has come in a small JSON file the browser polls.

Protocol (the browser side is viewer/component/js/pending.js):
1. The app puts `pending_map(static_root, key, title)` in the payload's `maps` list as soon as it starts a
   computation. The browser keeps showing the slot's previous map, and polls the status URL every 400 ms with
   a cache-buster. A missing file reads as "queued".
2. The computation calls `write_status(static_root, key, stage)` as it goes: "forward", "gradients",
   "windows" (with "3 of 27" as its message), "mapping" (any message may be added). The browser shows a progress line naming the stage.
3. When the map is published (`viewer.publish.publish_map`), `write_status(..., "done", map=published)` puts
   the map's descriptor in the status, with the map's facts (shown beside it once drawn, never before); the
   browser fetches the map and shows it. On an error, `write_status(..., "failed", message=...)` shows that
   sentence instead; "stopped" says the user stopped it (the slot keeps its previous map).
Writes are atomic (a temporary file renamed over the old one), so the browser never reads half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from viewer.publish import STATIC_URL, Published, digest, static_folder

STAGES = ("queued", "forward", "gradients", "windows", "mapping", "done", "failed", "stopped")


def status_name(content_key: str) -> str:
    return f"{digest('status', content_key)}.status.json"


def status_url(content_key: str) -> str:
    """The URL (relative to the page) the browser polls for this map."""
    return f"{STATIC_URL}/{status_name(content_key)}"


def write_status(
    static_root: Path,
    content_key: str,
    stage: str,
    message: str = "",
    map: Published | None = None,
    facts: list[str] | None = None,
    warnings: list[str] | None = None,
) -> Path:
    """Atomically write the status of the map computed under `content_key` (a done map with its facts)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}; got {stage!r}")
    if stage == "done" and map is None:
        raise ValueError("a 'done' status needs the published map")
    body = {"stage": stage, "message": message}
    if map is not None:
        body["map"] = map.to_dict()
        body["facts"], body["warnings"] = list(facts or []), list(warnings or [])
    path = static_folder(static_root) / status_name(content_key)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(body))
    os.replace(tmp, path)
    return path


def read_status(static_root: Path, content_key: str) -> dict | None:
    """The last status written for `content_key`, or None."""
    path = static_folder(static_root) / status_name(content_key)
    return json.loads(path.read_text()) if path.exists() else None


def pending_map(static_root: Path, content_key: str, title: str, key: str | None = None) -> dict:
    """A payload map entry for a map still being computed (writes a "queued" status if there is none).

    `key` is the map's own key, which the viewer exposes once it is drawn (default: the status's key)."""
    if read_status(static_root, content_key) is None:
        write_status(static_root, content_key, "queued")
    return {"title": title, "key": key or content_key, "status_url": status_url(content_key)}
