"""DEPRECATED (replaced by viewer/publish.py; kept while app.py and the legacy component use it).

Compact display copies, published once per content hash for the browser to fetch and cache.

Why files and not component arguments: a component's arguments are re-sent on
every Streamlit rerun (NiiVue's component moves every volume again on each
slider step). Here each array is written once, gzip-compressed, to the app's
static folder under a name derived from its content hash; the component gets
only the URL (a few hundred bytes per rerun) and keeps the decoded array in the
browser for as long as the page lives. Display controls then act in the browser.

Layouts: anatomy as int16 (value = stored * scale + offset; CT in HU fits exactly),
CAM as uint8 (0..255 for 0..1 of the peak). Voxel order is RAS with i fastest
(Fortran order), so an axial slice is one contiguous block. Never float32.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

STATIC_SUBDIR = "cv"
DEFAULT_STATIC_BUDGET = int(os.environ.get("CAMVIEWER_STATIC_BYTES", 2 * 1024**3))


@dataclass(frozen=True)
class Published:
    """What the component needs to fetch and decode one array."""

    url: str
    dtype: str  # "int16" | "uint8"
    shape: tuple[int, int, int]
    scale: float
    offset: float
    nbytes: int  # compressed bytes on the wire

    def to_dict(self) -> dict:
        out = asdict(self)
        out["shape"] = list(self.shape)
        return out


def anatomy_int16(data: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Quantise anatomy to int16: exact for integer data in range (CT, most MR), else linear."""
    data = np.asarray(data)
    lo, hi = float(data.min()), float(data.max())
    if lo >= -32768 and hi <= 32767 and np.array_equal(data, np.round(data)):
        return data.astype(np.int16), 1.0, 0.0
    scale = (hi - lo) / 65534.0 if hi > lo else 1.0
    offset = lo + 32767 * scale
    return np.round((data - offset) / scale).astype(np.int16), scale, offset


def cam_uint8(cam: np.ndarray) -> np.ndarray:
    """CAM in [0, 1] -> uint8 0..255 (rounded)."""
    return np.clip(np.round(np.asarray(cam, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def _write_once(static_root: Path, name: str, array: np.ndarray) -> int:
    folder = static_root / STATIC_SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if not path.exists():
        payload = gzip.compress(np.asfortranarray(array).tobytes(order="F"), compresslevel=1)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(payload)
        os.replace(tmp, path)
        _prune(folder, keep=path)
    else:
        os.utime(path)
    return path.stat().st_size


def _prune(folder: Path, keep: Path, budget: int = DEFAULT_STATIC_BUDGET) -> None:
    files = sorted((p for p in folder.glob("*.gz") if p != keep), key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in files) + keep.stat().st_size
    while files and total > budget:
        oldest = files.pop(0)
        total -= oldest.stat().st_size
        oldest.unlink(missing_ok=True)


def _digest(*parts: bytes | str) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
    return h.hexdigest()


def publish_anatomy(data_ras: np.ndarray, content_key: str, static_root: Path) -> Published:
    """Write the int16 display copy of a RAS-ordered volume (once per key); return its descriptor."""
    stored, scale, offset = anatomy_int16(data_ras)
    name = f"{_digest('anatomy', content_key)}.i16.gz"
    nbytes = _write_once(static_root, name, stored)
    return Published(f"app/static/{STATIC_SUBDIR}/{name}", "int16", tuple(data_ras.shape), scale, offset, nbytes)


def publish_cam(cam_ras: np.ndarray, content_key: str, static_root: Path) -> Published:
    """Write the uint8 display copy of a RAS-ordered CAM in [0, 1] (once per key)."""
    name = f"{_digest('cam', content_key)}.u8.gz"
    nbytes = _write_once(static_root, name, cam_uint8(cam_ras))
    return Published(f"app/static/{STATIC_SUBDIR}/{name}", "uint8", tuple(cam_ras.shape), 1 / 255, 0.0, nbytes)


def peak_voxel(cam_ras: np.ndarray) -> list[int]:
    """Where to put the crosshair first: the CAM's maximum."""
    return [int(i) for i in np.unravel_index(int(np.argmax(cam_ras)), cam_ras.shape)]


def spacing_of(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (mm) along each array axis of `affine` (column norms)."""
    return tuple(float(s) for s in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))  # type: ignore[return-value]
