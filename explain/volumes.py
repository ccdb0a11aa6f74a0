"""Volumes in and out: NIfTI, DICOM series (folder or .zip) and NRRD.

Axis convention (said once, here): a `Volume` holds `data[i, j, k]` in the file's
own voxel order, and `affine` maps the voxel index (i, j, k, 1) to world
coordinates in millimetres, RAS+ as in NIfTI: x grows towards the patient's
Right, y towards Anterior, z towards Superior. DICOM and NRRD store LPS+, and are
converted on load by negating x and y. `to_ras` reorders a volume to the closest
canonical voxel order (i grows to the patient's right, j to the front, k to the
head); the viewer shows that canonical copy, while exports keep the original
`affine` and voxel order.

No torch here: importing this module must stay cheap.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations

from explain.errors import InputError

# Limits are generous for real CT (512 x 512 x 600 is 157 M voxels) and small
# enough that a hostile file cannot exhaust memory; both can be overridden per
# call or with environment variables.
DEFAULT_MAX_BYTES = int(os.environ.get("CAMVIEWER_MAX_BYTES", 2 * 1024**3))
DEFAULT_MAX_VOXELS = int(os.environ.get("CAMVIEWER_MAX_VOXELS", 200_000_000))
MAX_ZIP_MEMBERS = 5000

_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image: float32 `data[i, j, k]`, a 4x4 voxel-to-RAS-mm `affine`, provenance."""

    data: np.ndarray
    affine: np.ndarray
    source: str
    content_hash: str
    warnings: tuple[str, ...] = field(default=())

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k (column norms of the affine)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def orientation(self) -> str:
        """Closest axis codes of i, j, k, e.g. 'RAS' or 'LPS'."""
        return "".join(nib.aff2axcodes(self.affine))


def make_volume(data: np.ndarray, affine: np.ndarray, source: str = "array", warnings: tuple[str, ...] = ()) -> Volume:
    """Validate a 3D array and affine and wrap them as a `Volume` (data cast to float32)."""
    data = np.asarray(data)
    if data.ndim != 3:
        raise InputError(f"volume must be 3D; got shape {tuple(data.shape)}")
    if min(data.shape) == 0:
        raise InputError(f"volume has an empty axis; got shape {tuple(data.shape)}")
    if min(data.shape) == 1:
        raise InputError(f"volume is a single 2D slice (shape {tuple(data.shape)}); a 3D volume is needed")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise InputError(f"volume voxels must be real numbers; got dtype {data.dtype}")
    data = np.ascontiguousarray(data, dtype=np.float32)
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise InputError(f"volume has {bad} NaN or infinite voxels; fix or mask them before loading")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError("volume affine must be a finite 4x4 matrix")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError("volume affine is singular (zero voxel size or collinear axes)")
    return Volume(data, affine, source, content_hash(data, affine), tuple(warnings))


def content_hash(data: np.ndarray, affine: np.ndarray) -> str:
    """A stable hash of voxel values, shape and geometry (hex, 32 chars)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(data.shape).encode())
    h.update(np.ascontiguousarray(affine, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(data, dtype=np.float32).tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- loading


def load_volume(
    path: str | os.PathLike,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    volume_index: int | None = None,
) -> Volume:
    """Load a NIfTI file, NRRD file, DICOM folder or .zip of one DICOM series.

    The type is read from the content, not the extension. A 4D file gives volume
    `volume_index` (the first by default, with a warning). Every failure is an
    `InputError` naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        return _load_dicom_folder(path, max_bytes=max_bytes, max_voxels=max_voxels)
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(f"{path.name}: file is {size / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB limit")
    if size == 0:
        raise InputError(f"{path.name}: file is empty")
    with open(path, "rb") as f:
        head = f.read(352)
    try:
        if head.startswith(_ZIP_MAGIC):
            return _load_dicom_zip(path, max_bytes=max_bytes, max_voxels=max_voxels)
        if head.startswith(b"NRRD"):
            return _load_nrrd(path, max_voxels=max_voxels, volume_index=volume_index)
        if head[128:132] == b"DICM":
            raise InputError(
                f"{path.name}: a single DICOM file is one slice; open the whole series as a folder or a .zip"
            )
        if head.startswith(_GZIP_MAGIC) or _looks_like_nifti(head):
            return _load_nifti(
                path,
                compressed=head.startswith(_GZIP_MAGIC),
                max_bytes=max_bytes,
                max_voxels=max_voxels,
                volume_index=volume_index,
            )
    except InputError:
        raise
    except MemoryError as e:
        raise InputError(f"{path.name}: not enough memory to load this volume") from e
    except Exception as e:  # noqa: BLE001 - third-party readers raise anything on corrupt input
        raise InputError(f"{path.name}: cannot read the file ({type(e).__name__}: {e})") from e
    raise InputError(
        f"{path.name}: not a recognised volume; expected NIfTI (.nii, .nii.gz), "
        "NRRD, or a DICOM series as a folder or .zip"
    )


def _is_nifti2(head: bytes) -> bool:
    return head[4:8] == b"n+2\x00" or head[344:348] == b"n+2\x00"


def _looks_like_nifti(head: bytes) -> bool:
    return len(head) >= 348 and (head[344:348] in (b"n+1\x00", b"ni1\x00") or _is_nifti2(head))


def _check_voxels(shape: tuple[int, ...], max_voxels: int, name: str) -> None:
    n = int(np.prod([max(int(s), 0) for s in shape[:3]], dtype=np.int64))
    if n > max_voxels:
        raise InputError(
            f"{name}: {n:,} voxels ({' x '.join(map(str, shape[:3]))}) is over the {max_voxels:,} voxel limit"
        )


def _pick_3d(data: np.ndarray, name: str, volume_index: int | None) -> tuple[np.ndarray, list[str]]:
    """Reduce a 3D/4D array to 3D, squeezing trailing singleton axes."""
    warnings: list[str] = []
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 4:
        n = data.shape[3]
        index = 0 if volume_index is None else volume_index
        if not 0 <= index < n:
            raise InputError(f"{name}: volume index {index} is out of range; the file holds {n} volumes")
        if volume_index is None:
            warnings.append(f"{name} holds {n} volumes (4D); showing volume 0. Pick another with volume_index.")
        data = data[..., index]
    if data.ndim != 3:
        raise InputError(f"{name}: volume must be 3D; got shape {tuple(data.shape)}")
    return data, warnings


def _load_nifti(path: Path, *, compressed: bool, max_bytes: int, max_voxels: int, volume_index: int | None) -> Volume:
    if compressed:
        # Decompress with a ceiling ourselves: a small .gz can expand without bound.
        raw = _bounded_gunzip(path, max_bytes)
        img = nib.Nifti2Image.from_bytes(raw) if _is_nifti2(raw) else nib.Nifti1Image.from_bytes(raw)
    else:
        img = nib.load(str(path))
    shape = img.shape
    if len(shape) < 3 or min(shape) == 0:
        raise InputError(f"{path.name}: volume must be 3D; got shape {tuple(shape)}")
    _check_voxels(shape, max_voxels, path.name)
    if sum(s > 1 for s in shape[3:]) > 1:  # 4D is fine (one volume is taken); 5D+ with data is not
        raise InputError(f"{path.name}: {len(shape)}D image with shape {tuple(shape)} is not supported")
    data, warnings = _pick_3d(np.asanyarray(img.dataobj), path.name, volume_index)
    return make_volume(data, img.affine, path.name, tuple(warnings))


def _bounded_gunzip(path: Path, max_bytes: int) -> bytes:
    out = io.BytesIO()
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            out.write(chunk)
            if out.tell() > max_bytes:
                raise InputError(f"{path.name}: decompresses past the {max_bytes / 2**20:.0f} MiB limit")
    raw = out.getvalue()
    if len(raw) < 348:
        raise InputError(f"{path.name}: too short to be a NIfTI file after decompression")
    return raw


def _load_nrrd(path: Path, *, max_voxels: int, volume_index: int | None) -> Volume:
    import nrrd  # pynrrd: a small pure-Python reader

    header = nrrd.read_header(str(path))
    sizes = [int(s) for s in header.get("sizes", [])]
    _check_voxels(tuple(sizes), max_voxels, path.name)
    data, header = nrrd.read(str(path))
    directions = header.get("space directions")
    kinds = header.get("kinds")
    if data.ndim == 4 and kinds is not None and kinds[0] not in ("domain", "space"):
        data = np.moveaxis(data, 0, -1)  # NRRD puts the list axis first
    data, warnings = _pick_3d(data, path.name, volume_index)
    affine = np.eye(4)
    if directions is not None:
        rows = [np.asarray(d, dtype=float) for d in directions if d is not None and not np.any(np.isnan(d))]
        if len(rows) == 3:
            affine[:3, :3] = np.stack(rows, axis=1)
    elif "spacings" in header:
        affine[:3, :3] = np.diag(np.asarray(header["spacings"], dtype=float)[:3])
    if "space origin" in header:
        affine[:3, 3] = np.asarray(header["space origin"], dtype=float)
    space = str(header.get("space", "left-posterior-superior")).lower()
    flips = {
        "left-posterior-superior": (-1, -1, 1),
        "lps": (-1, -1, 1),
        "right-anterior-superior": (1, 1, 1),
        "ras": (1, 1, 1),
        "left-anterior-superior": (-1, 1, 1),
        "las": (-1, 1, 1),
    }
    if space not in flips:
        raise InputError(f"{path.name}: NRRD space '{space}' is not supported")
    affine[:3] *= np.asarray(flips[space], dtype=float)[:, None]
    return make_volume(data, affine, path.name, tuple(warnings))


# ----------------------------------------------------------------------------- DICOM


def _load_dicom_folder(folder: Path, *, max_bytes: int, max_voxels: int) -> Volume:
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    if total > max_bytes:
        raise InputError(
            f"{folder.name}: folder holds {total / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB limit"
        )
    if len(files) > MAX_ZIP_MEMBERS:
        raise InputError(f"{folder.name}: {len(files)} files is over the {MAX_ZIP_MEMBERS} limit")
    return _series_to_volume([(p.name, p.read_bytes()) for p in files], folder.name, max_voxels)


def _load_dicom_zip(path: Path, *, max_bytes: int, max_voxels: int) -> Volume:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise InputError(f"{path.name}: corrupt .zip ({e})") from e
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > MAX_ZIP_MEMBERS:
            raise InputError(f"{path.name}: {len(members)} files is over the {MAX_ZIP_MEMBERS} limit")
        for m in members:
            parts = Path(m.filename.replace("\\", "/")).parts
            if m.filename.startswith(("/", "\\")) or ".." in parts or ":" in m.filename:
                raise InputError(f"{path.name}: refused, member '{m.filename}' points outside the archive")
        declared = sum(m.file_size for m in members)
        if declared > max_bytes:
            raise InputError(
                f"{path.name}: expands to {declared / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB limit"
            )
        items: list[tuple[str, bytes]] = []
        read_so_far = 0
        for m in members:
            # Read in bounded chunks: the declared size in a zip can lie.
            with archive.open(m) as f:
                buf = io.BytesIO()
                while chunk := f.read(1 << 20):
                    read_so_far += len(chunk)
                    if read_so_far > max_bytes:
                        raise InputError(f"{path.name}: expands past the {max_bytes / 2**20:.0f} MiB limit")
                    buf.write(chunk)
            items.append((m.filename, buf.getvalue()))
    return _series_to_volume(items, path.name, max_voxels)


def _series_to_volume(items: list[tuple[str, bytes]], name: str, max_voxels: int) -> Volume:
    """Sort DICOM slices by position along the slice normal and build the RAS affine."""
    import pydicom

    slices = []
    for fname, raw in items:
        try:
            ds = pydicom.dcmread(io.BytesIO(raw), force=False)
        except Exception:  # noqa: BLE001 - non-DICOM files in a series folder are skipped
            continue
        if "PixelData" in ds and "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds:
            slices.append((fname, ds))
    if not slices:
        raise InputError(f"{name}: no DICOM image slices with position and orientation found")
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for _, ds in slices}
    if len(series) > 1:
        raise InputError(f"{name}: holds {len(series)} DICOM series; open one series at a time")
    if len(slices) < 2:
        raise InputError(f"{name}: a single DICOM slice is 2D; a 3D series is needed")
    orient = np.asarray(slices[0][1].ImageOrientationPatient, dtype=float)
    row_dir, col_dir = orient[:3], orient[3:]
    normal = np.cross(row_dir, col_dir)
    positions = np.array([np.asarray(ds.ImagePositionPatient, dtype=float) for _, ds in slices])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along = along[order]
    steps = np.diff(along)
    if np.any(steps < 1e-3):
        raise InputError(f"{name}: the series has duplicated slices (two slices at the same position)")
    median = float(np.median(steps))
    if np.any(steps > 1.5 * median):
        gap = int(np.argmax(steps))
        raise InputError(
            f"{name}: the series has missing slices (a gap of {steps[gap]:.2f} mm where the spacing is {median:.2f} mm)"
        )
    rows, cols = int(slices[0][1].Rows), int(slices[0][1].Columns)
    _check_voxels((cols, rows, len(slices)), max_voxels, name)
    planes = []
    for idx in order:
        ds = slices[idx][1]
        if (int(ds.Rows), int(ds.Columns)) != (rows, cols):
            raise InputError(f"{name}: slices differ in size; the series is inconsistent")
        try:
            pixels = ds.pixel_array.astype(np.float32)
        except Exception as e:  # noqa: BLE001 - pydicom raises many types for codecs
            syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
            raise InputError(
                f"{name}: cannot decode pixel data (transfer syntax {syntax}); export the series uncompressed ({e})"
            ) from e
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
        planes.append(pixels * slope + intercept)  # CT: stored values -> Hounsfield units
    # pixel_array is [row, column]; our i runs along a row (column index), j down rows.
    data = np.stack([p.T for p in planes], axis=2)
    row_spacing, col_spacing = (float(s) for s in slices[0][1].PixelSpacing)
    first = positions[order[0]]
    slice_step = (positions[order[-1]] - first) / (len(slices) - 1)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing
    lps[:3, 1] = col_dir * row_spacing
    lps[:3, 2] = slice_step
    lps[:3, 3] = first
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # LPS -> RAS
    return make_volume(data, affine, name)


# ----------------------------------------------------------------------------- orientation


def ras_orientation(affine: np.ndarray) -> np.ndarray:
    """The axis permutation/flips (nibabel ornt) taking voxel axes to the closest RAS order."""
    return orientations.io_orientation(np.asarray(affine, dtype=float))


def ras_orientation_codes(affine: np.ndarray) -> np.ndarray:
    """The original axes as a nibabel ornt, relative to RAS."""
    return orientations.axcodes2ornt(nib.aff2axcodes(np.asarray(affine, dtype=float)))


def to_ras(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder a 3D array to canonical RAS voxel order (exact: only flips and axis swaps).

    Returns the reordered array and its affine, which maps to the same world points.
    """
    ornt = ras_orientation(affine)
    out = orientations.apply_orientation(data, ornt)
    new_affine = affine @ orientations.inv_ornt_aff(ornt, data.shape)
    return np.ascontiguousarray(out), new_affine


def from_ras(ras_data: np.ndarray, original_affine: np.ndarray) -> np.ndarray:
    """Put an array in canonical RAS order back into the original voxel order."""
    back = orientations.ornt_transform(orientations.axcodes2ornt("RAS"), ras_orientation_codes(original_affine))
    return np.ascontiguousarray(orientations.apply_orientation(ras_data, back))


# ----------------------------------------------------------------------------- writing


def save_nifti(data: np.ndarray, affine: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a float32 NIfTI with this affine as both qform and sform (code 1, scanner)."""
    path = Path(path)
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.asarray(affine, dtype=np.float64))
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_data_dtype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def nifti_bytes(data: np.ndarray, affine: np.ndarray) -> bytes:
    """The same file as `save_nifti`, gzipped, as bytes (for downloads)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = save_nifti(data, affine, Path(tmp) / "cam.nii.gz")
        return out.read_bytes()


def load_volume_bytes(raw: bytes, name: str, **limits: int) -> Volume:
    """Load an uploaded file's bytes (any supported type) via a private temp file."""
    safe = Path(name).name or "upload"
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / safe
        target.write_bytes(raw)
        vol = load_volume(target, **limits)
    return Volume(vol.data, vol.affine, safe, vol.content_hash, vol.warnings)
