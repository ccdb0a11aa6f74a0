"""Publish arrays for the browser viewer: each written once per content key under the app's static folder.

Streamlit serves `<app dir>/static/` at `app/static/` (`server.enableStaticServing`). A component's arguments
are re-sent on every rerun, so arrays never travel that way: the payload carries a small descriptor (URL,
encoding, dtype, shape, affine, scaling) and the browser fetches each URL once and keeps the decoded array.
File names are a 128-bit digest of a content key, so a URL names one content forever (and is unguessable).

- `publish_nifti`: an uploaded NIfTI file as it is (no re-encoding: the browser skips the header); the
  fastest path, no work on the server but one file write.
- `publish_volume`: a compact copy of any array (DICOM, NRRD, float data, 2D images): int16 or uint8
  exact when the values allow it, else linearly quantised to int16; gzip.
- `publish_map`: a map at its own (model) grid as uint8, 0..255 = 0..1 of its peak, with its own affine.
- `publish_labels`: a uint8 label mask with its own affine.
Geometry is always voxel -> RAS+ world mm (4x4). Voxel order in every file is i fastest (Fortran order).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from viewer.nifti import read_layout

STATIC_SUBDIR = "cv"
STATIC_URL = f"app/static/{STATIC_SUBDIR}"
DEFAULT_STATIC_BUDGET = int(os.environ.get("CAMVIEWER_STATIC_BYTES", 2 * 1024**3))
# gzip level of the copies we write: 1 is about 3x faster than 6 for nearly the same size on images.
GZIP_LEVEL = int(os.environ.get("CAMVIEWER_GZIP_LEVEL", 1))
# Streamlit's static route answers 404 for files above 200 MB (MAX_APP_STATIC_FILE_SIZE in Streamlit 1.67).
MAX_STATIC_BYTES = 200 * 1024 * 1024


class FileTooLarge(ValueError):
    """A published file would exceed what Streamlit's static serving delivers."""


@dataclass(frozen=True)
class Published:
    """How the browser reads one array: a descriptor sent in the component payload (a few hundred bytes)."""

    url: str
    encoding: str  # "gzip" | "identity"
    offset: int  # decoded bytes to skip before the first voxel (a NIfTI header), else 0
    dtype: str  # uint8 | int8 | int16 | uint16 | int32 | uint32 | float32 | float64
    endian: str  # "<" | ">"
    shape: tuple[int, ...]  # (nx, ny) or (nx, ny, nz), i fastest in the file
    affine: tuple  # 4x4 rows, voxel -> RAS+ mm
    scale: float = 1.0  # value = stored * scale + inter
    inter: float = 0.0
    nbytes: int = 0  # bytes on the wire
    peak: float | None = None  # maps: the raw value shown as 1.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["shape"] = list(self.shape)
        out["affine"] = [list(row) for row in self.affine]
        if out["peak"] is None:
            del out["peak"]
        return out


def digest(*parts: bytes | str) -> str:
    """128-bit hex digest of the parts (names files by content key)."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\x00")
    return h.hexdigest()


def static_folder(static_root: Path) -> Path:
    folder = Path(static_root) / STATIC_SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _affine_rows(affine: np.ndarray) -> tuple:
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ValueError(f"affine must be a finite 4x4 matrix; got shape {affine.shape}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError("affine is singular: its 3x3 part has zero determinant")
    return tuple(tuple(float(round(v, 9)) for v in row) for row in affine)


def _gzip(payload: bytes | memoryview, level: int = GZIP_LEVEL) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: a gzip member
    return compressor.compress(payload) + compressor.flush()


def write_once(static_root: Path, name: str, produce) -> int:
    """Write `produce()` (bytes) to static/cv/name unless it exists; atomic; returns the file size."""
    folder = static_folder(static_root)
    path = folder / name
    if path.exists():
        os.utime(path)  # recently used: pruned last
        return path.stat().st_size
    payload = produce()
    if len(payload) > MAX_STATIC_BYTES:
        raise FileTooLarge(f"{len(payload) / 2**20:.0f} MiB is more than Streamlit serves as a static file (200 MB)")
    tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)
    prune(folder, keep=path)
    return path.stat().st_size


def prune(folder: Path, keep: Path | None = None, budget: int = DEFAULT_STATIC_BUDGET) -> None:
    """Drop the least recently used published arrays beyond `budget` bytes (status files are tiny: kept)."""
    files = sorted((p for p in folder.glob("*.gz") if p != keep), key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in files) + (keep.stat().st_size if keep else 0)
    while files and total > budget:
        oldest = files.pop(0)
        total -= oldest.stat().st_size
        oldest.unlink(missing_ok=True)


def _check_spatial(array: np.ndarray, what: str) -> None:
    if array.ndim not in (2, 3) or min(array.shape) < 1:
        raise ValueError(f"{what} must be 2D or 3D; got shape {array.shape}")


def publish_nifti(raw: bytes, static_root: Path, content_key: str) -> Published | None:
    """Serve an uploaded NIfTI file (bytes, .nii or .nii.gz) as it is; None if the browser cannot read it.

    A gzip file is written unchanged. An uncompressed one is gzipped once (Streamlit would otherwise
    recompress it on every request). Returns None for data types a browser has no typed array for
    (RGB, complex, 64-bit integers) and for files above Streamlit's 200 MB static limit: use
    `publish_volume` on the loaded array instead (a compact copy is often several times smaller).
    """
    layout = read_layout(raw)
    if layout.dtype is None:
        return None
    name = f"{digest('nifti', content_key)}.nii.gz"
    try:
        nbytes = write_once(static_root, name, lambda: raw if layout.gzipped else _gzip(raw))
    except FileTooLarge:
        return None
    return Published(
        url=f"{STATIC_URL}/{name}",
        encoding="gzip",
        offset=layout.offset,
        dtype=layout.dtype,
        endian=layout.endian,
        shape=layout.shape,
        affine=_affine_rows(layout.affine),
        scale=layout.scale,
        inter=layout.inter,
        nbytes=nbytes,
    )


def publish_anatomy(
    data: np.ndarray, affine: np.ndarray, static_root: Path, content_key: str, source: bytes | None = None
) -> Published:
    """The image for the viewer: the user's own NIfTI bytes as they are when the browser can read them and they
    hold exactly the grid that was loaded (not a 4D file's other volume, not a squeezed axis), else a compact copy.
    """
    if source is not None:
        published = publish_nifti(source, static_root, content_key)
        if (
            published is not None
            and tuple(published.shape) == tuple(np.shape(data))
            and np.allclose(np.asarray(published.affine), np.asarray(affine)[: len(published.affine)], atol=1e-3)
        ):
            return published
    return publish_volume(data, affine, static_root, content_key)


def compact(data: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(stored, scale, inter) with value = stored * scale + inter: uint8 or int16 exact if possible, else int16."""
    data = np.asarray(data)
    if data.dtype.kind == "b":
        return data.astype(np.uint8), 1.0, 0.0
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        raise ValueError("image contains NaN or Inf values")
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    integral = data.dtype.kind in "iu" or bool(np.array_equal(data, np.round(data)))
    if integral and lo >= 0 and hi <= 255:
        return data.astype(np.uint8), 1.0, 0.0
    if integral and lo >= -32768 and hi <= 32767:
        return data.astype(np.int16), 1.0, 0.0
    scale = (hi - lo) / 65534.0 if hi > lo else 1.0
    inter = lo + 32767 * scale
    return np.round((data - inter) / scale).astype(np.int16), scale, inter


def publish_volume(data: np.ndarray, affine: np.ndarray, static_root: Path, content_key: str) -> Published:
    """A compact gzip copy of an image (2D [nx, ny] or 3D [nx, ny, nz], voxel order as stored)."""
    data = np.asarray(data)
    _check_spatial(data, "image")
    rows = _affine_rows(affine)
    stored, scale, inter = compact(data)
    name = f"{digest('volume', content_key)}.{stored.dtype.name}.gz"
    nbytes = write_once(static_root, name, lambda: _gzip(np.asfortranarray(stored).tobytes(order="F")))
    return Published(f"{STATIC_URL}/{name}", "gzip", 0, stored.dtype.name, "<", data.shape, rows, scale, inter, nbytes)


def map_uint8(values: np.ndarray, peak: float | None = None) -> tuple[np.ndarray, float]:
    """(uint8 0..255 = 0..1 of the peak, peak). Negative values show as 0; an all-zero map has peak 0."""
    values = np.asarray(values, dtype=np.float32)
    if not np.all(np.isfinite(values)):
        raise ValueError("map contains NaN or Inf values")
    peak = float(values.max()) if peak is None and values.size else float(peak or 0.0)
    if peak <= 0:
        return np.zeros(values.shape, np.uint8), 0.0
    return np.clip(np.round(values / peak * 255.0), 0, 255).astype(np.uint8), peak


def publish_map(
    values: np.ndarray, affine: np.ndarray, static_root: Path, content_key: str, *, peak: float | None = None
) -> Published:
    """A map on its own grid (e.g. the model's 64^3), with the affine placing that grid in world mm.

    `values` are raw map values (the browser shows 0..peak as 0..1; negative values as 0); `peak` defaults
    to the maximum. The browser resamples the map trilinearly onto each displayed anatomy pixel.
    """
    values = np.asarray(values)
    _check_spatial(values, "map")
    rows = _affine_rows(affine)
    stored, peak = map_uint8(values, peak)
    name = f"{digest('map', content_key)}.uint8.gz"
    nbytes = write_once(static_root, name, lambda: _gzip(np.asfortranarray(stored).tobytes(order="F"), 6))
    return Published(f"{STATIC_URL}/{name}", "gzip", 0, "uint8", "<", values.shape, rows, 1 / 255, 0.0, nbytes, peak)


def publish_cam(cam, static_root: Path, content_key: str) -> Published:
    """A computed map on its model grid, in raw units so the readout shows raw values.

    `cam` is any object with `model_map` (0..1 of the peak), `raw_peak` and `model_affine` (a CamResult).
    """
    values = np.asarray(cam.model_map, dtype=np.float32) * float(cam.raw_peak)
    return publish_map(values, cam.model_affine, static_root, content_key, peak=cam.raw_peak)


def publish_labels(labels: np.ndarray, affine: np.ndarray, static_root: Path, content_key: str) -> Published:
    """A label mask (integers 0..255; 0 = nothing) on its own grid. Values are checked when first written."""
    labels = np.asarray(labels)
    _check_spatial(labels, "mask")
    if labels.dtype.kind not in "iub":
        raise ValueError(f"mask labels must be integers; got {labels.dtype}")
    rows = _affine_rows(affine)

    def produce() -> bytes:
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise ValueError("mask labels must be integers in 0..255")
        return _gzip(np.asfortranarray(labels.astype(np.uint8)).tobytes(order="F"), 6)

    name = f"{digest('labels', content_key)}.uint8.gz"
    nbytes = write_once(static_root, name, produce)
    return Published(f"{STATIC_URL}/{name}", "gzip", 0, "uint8", "<", labels.shape, rows, 1.0, 0.0, nbytes)


def gunzip_published(static_root: Path, published: Published) -> bytes:
    """The decoded bytes of a published file (for tests and checks)."""
    return gzip.decompress((Path(static_root) / STATIC_SUBDIR / published.url.rsplit("/", 1)[1]).read_bytes())
