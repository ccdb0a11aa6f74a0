"""A view in the URL: what the page's query parameters mean, read back safely.

The page writes `case`, `model`, `method`, `layer`, `target` (names as the page lists them: a bundled sample,
a file in CAMVIEWER_CASE_DIR / CAMVIEWER_MODEL_DIR by its name, or `upload:<content hash>` for an upload the
server still holds); the viewer writes `cross`, `window` and `opacity` (viewer/component/js/urlstate.js).
A URL is user input like any other: every value is checked here, and a name is only ever looked up among the
names the page offers, never used as a path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

PAGE_KEYS = ("case", "model", "method", "layer", "target")
VIEW_KEYS = ("cross", "window", "opacity")
UPLOAD = "upload:"
_HASH = re.compile(r"^[0-9a-f]{16,128}$")
MAX_TEXT = 300


def _one(params: Mapping, key: str) -> str | None:
    value = params.get(key)
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else None
    if value is None:
        return None
    value = str(value)
    return value if 0 < len(value) <= MAX_TEXT and value.isprintable() else None


def page_choices(params: Mapping) -> dict[str, str]:
    """The page's parameters present in a URL (each a short printable string; unknown keys are ignored)."""
    out = {key: _one(params, key) for key in PAGE_KEYS}
    return {k: v for k, v in out.items() if v is not None}


def upload_hash(name: str | None) -> str | None:
    """The content hash an `upload:<hash>` name carries, or None for any other name (or a malformed hash)."""
    if not name or not name.startswith(UPLOAD):
        return None
    value = name[len(UPLOAD) :]
    return value if _HASH.match(value) else None


def upload_name(content_hash: str) -> str:
    return f"{UPLOAD}{content_hash}"


def view_of(params: Mapping) -> dict:
    """The viewer's parameters, checked: crosshair voxel (2 or 3 whole numbers), window (width > 0, level),
    opacity (0..1). A bad value is dropped, never guessed; the viewer clamps the crosshair into the image."""
    out: dict = {}
    cross = _one(params, "cross")
    if cross:
        parts = cross.split(",")
        if 2 <= len(parts) <= 3 and all(re.fullmatch(r"\d{1,6}", p) for p in parts):
            out["cross"] = [int(p) for p in parts] + [0] * (3 - len(parts))
    window = _one(params, "window")
    if window:
        try:
            width, level = (float(p) for p in window.split(","))
        except ValueError:
            width = level = float("nan")
        if math.isfinite(width) and math.isfinite(level) and 0 < width < 1e7 and abs(level) < 1e7:
            out["window"] = [width, level]
    opacity = _one(params, "opacity")
    if opacity:
        try:
            value = float(opacity)
        except ValueError:
            value = float("nan")
        if 0 <= value <= 1:
            out["opacity"] = value
    return out


def with_page(current: Mapping, page: Mapping[str, str | None]) -> dict[str, str]:
    """The URL's parameters after the page's own are set to `page` (None drops one); the viewer's are kept."""
    out = {k: _one(current, k) for k in current if k not in PAGE_KEYS}
    out = {k: v for k, v in out.items() if v is not None}
    out.update({k: v for k, v in page.items() if v is not None and k in PAGE_KEYS})
    return out
