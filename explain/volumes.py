"""Volumes in and out: NIfTI, Analyze/NIfTI pairs, FreeSurfer MGH, DICOM (series, multi-frame,
single images), NRRD, and PNG/JPEG images.

Axis convention (said once, here): a `Volume` holds `data[i, j, k]` in the file's
own voxel order, and `affine` maps the voxel index (i, j, k, 1) to world
coordinates in millimetres, RAS+ as in NIfTI: x grows towards the patient's
Right, y towards Anterior, z towards Superior. A 2D image (a radiograph) is a
`Volume` with `data[i, j]`: i runs along a row (the column index, left to right as
stored), j down the rows (top to bottom as stored), and `affine` maps (i, j, 0, 1);
its third column is the image normal, so the same 4x4 algebra serves both. DICOM and NRRD store LPS+, and are
converted on load by negating x and y. `to_ras` reorders a volume to the closest
canonical voxel order (i grows to the patient's right, j to the front, k to the
head); the viewer shows that canonical copy, while exports keep the original
`affine` and voxel order.

No torch here: importing this module must stay cheap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations

from explain import limits
from explain.errors import InputError
from explain.sniff import HEAD_BYTES, sniff

# The memory budget lives in explain.limits (CAMVIEWER_MAX_BYTES, CAMVIEWER_MAX_VOXELS);
# these defaults are read when a load starts, so a test or server can change them.
DEFAULT_MAX_BYTES = None
DEFAULT_MAX_VOXELS = None
MAX_ZIP_MEMBERS = 5000


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D volume `data[i, j, k]` or a 2D image `data[i, j]` (float32), a 4x4 voxel-to-RAS-mm `affine`, provenance."""

    data: np.ndarray
    affine: np.ndarray
    source: str
    content_hash: str
    warnings: tuple[str, ...] = field(default=())
    n_volumes: int = 1  # volumes in the file (4D); `volume_index` picks one

    @property
    def ndim(self) -> int:
        """2 for an image, 3 for a volume."""
        return int(self.data.ndim)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel (or pixel) size in mm along each data axis (column norms of the affine)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, : self.ndim], axis=0))

    @property
    def orientation(self) -> str:
        """Closest axis codes of i, j, k, e.g. 'RAS' or 'LPS'."""
        return "".join(nib.aff2axcodes(self.affine))


def make_volume(data: np.ndarray, affine: np.ndarray, source: str = "array", warnings: tuple[str, ...] = ()) -> Volume:
    """Validate a 3D volume or 2D image and its affine, and wrap them as a `Volume` (data cast to float32).

    A 3D array with one singleton axis is a 2D image in disguise; it is refused here
    (the loaders squeeze it deliberately, where they know which axis is which).
    """
    data = np.asarray(data)
    name = source or "array"
    if data.ndim not in (2, 3):
        raise InputError(f"{name}: an image must be 2D or 3D; got shape {tuple(data.shape)}")
    if min(data.shape) == 0:
        raise InputError(f"{name}: the image has an empty axis; got shape {tuple(data.shape)}")
    if min(data.shape) == 1:
        raise InputError(f"{name}: shape {tuple(data.shape)} has a singleton axis; load it as a 2D image")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise InputError(f"{name}: voxels must be real numbers; got dtype {data.dtype}")
    data = np.ascontiguousarray(data, dtype=np.float32)
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise InputError(f"{name}: {bad} voxels are NaN or infinite; fix or mask them before loading")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(f"{name}: the affine must be a finite 4x4 matrix")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(f"{name}: the affine is singular (zero voxel size or collinear axes)")
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
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    max_voxels: int | None = DEFAULT_MAX_VOXELS,
    volume_index: int | None = None,
) -> Volume:
    """Load a 3D volume or a 2D image from a file, a DICOM folder, or a .zip.

    Files: NIfTI (.nii, .nii.gz), either half of a .hdr/.img pair (NIfTI or Analyze
    7.5), FreeSurfer .mgh/.mgz, NRRD, DICOM (a multi-frame file is a volume, a
    single image is 2D), PNG and JPEG (2D). A folder holds one DICOM series; a .zip
    holds one DICOM series or one .hdr/.img pair. The type is read from the content,
    not the extension. A 4D file gives volume `volume_index` (the first by default,
    with a warning). Every failure is an `InputError` naming the file and the problem,
    and third-party readers print nothing (see `explain.quiet`).
    """
    from explain.quiet import meaningful, reader_messages

    path = Path(path)
    max_bytes = limits.max_bytes() if max_bytes is None else max_bytes
    max_voxels = limits.max_voxels() if max_voxels is None else max_voxels
    if not path.exists():
        raise InputError(f"{path.name}: no such file or folder")
    head = b""
    if path.is_file():
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(f"{path.name}: file is {size / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB limit")
        if size == 0:
            raise InputError(f"{path.name}: file is empty")
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    try:
        with reader_messages() as notes:
            volume = _load_file(path, head, max_bytes=max_bytes, max_voxels=max_voxels, volume_index=volume_index)
    except InputError:
        raise
    except MemoryError as e:
        raise InputError(f"{path.name}: not enough memory to load this volume") from e
    except Exception as e:  # noqa: BLE001 - third-party readers raise anything on corrupt input
        raise InputError(f"{path.name}: cannot read the file ({type(e).__name__}: {e})") from e
    volume = _with_notes(volume, meaningful(notes, path.name))
    return dataclasses.replace(volume, n_volumes=_count_volumes(path))


def _count_volumes(path: Path) -> int:
    """How many volumes the file offers (headers only), so a page can offer the choice."""
    if path.is_dir():
        return 1
    from explain.probe import probe_volume

    try:
        return max(int(probe_volume(path).n_volumes), 1)
    except InputError:
        return 1


def _load_file(path: Path, head: bytes, *, max_bytes: int, max_voxels: int, volume_index: int | None) -> Volume:
    """Dispatch on content (see `explain.sniff`); a folder is a DICOM series."""
    if path.is_dir():
        from explain.dicom import load_dicom_folder

        single_volume(path.name, volume_index)
        return load_dicom_folder(path, max_bytes=max_bytes, max_voxels=max_voxels)
    kind = sniff(path, head)
    if kind == "zip":
        from explain.archives import load_zip

        return load_zip(path, max_bytes=max_bytes, max_voxels=max_voxels, volume_index=volume_index)
    if kind == "nrrd":
        return _load_nrrd(path, max_voxels=max_voxels, volume_index=volume_index)
    if kind == "dicom":
        from explain.dicom import load_dicom_file

        single_volume(path.name, volume_index)
        return load_dicom_file(path, max_voxels=max_voxels)
    if kind in ("png", "jpeg"):
        from explain.images2d import load_image_2d

        single_volume(path.name, volume_index)
        return load_image_2d(path, kind=kind, max_voxels=max_voxels)
    if kind in ("nifti", "nifti.gz"):
        return _load_nifti(
            path, compressed=kind == "nifti.gz", max_bytes=max_bytes, max_voxels=max_voxels, volume_index=volume_index
        )
    if kind in ("mgh", "mgh.gz"):
        from explain.neuro import image_to_volume, open_mgh

        img = open_mgh(path, compressed=kind == "mgh.gz", max_bytes=max_bytes, max_voxels=max_voxels)
        return image_to_volume(img, path.name, max_voxels=max_voxels, volume_index=volume_index)
    if kind == "pair":
        from explain.neuro import load_pair

        return load_pair(path, max_bytes=max_bytes, max_voxels=max_voxels, volume_index=volume_index)
    if kind == "gzip":
        raise InputError(f"{path.name}: a gzip file that holds neither NIfTI nor FreeSurfer MGH data")
    raise InputError(
        f"{path.name}: not a recognised volume or image; expected NIfTI (.nii, .nii.gz), an Analyze/NIfTI .hdr/.img pair, "
        "FreeSurfer .mgh/.mgz, NRRD, DICOM, PNG or JPEG, or a DICOM series as a folder or .zip"
    )


def _with_notes(volume: Volume, notes: tuple[str, ...]) -> Volume:
    return dataclasses.replace(volume, warnings=volume.warnings + notes) if notes else volume


VOLUME_CHOICE_HINT = "--volume-index N on the command line, or the 'Volume in file' control in the page"


def choose_volume(n: int, name: str, volume_index: int | None) -> tuple[int, list[str]]:
    """The index of the volume to read from a file holding `n`, and the warning when none was chosen."""
    index = 0 if volume_index is None else int(volume_index)
    if not 0 <= index < n:
        held = "one volume (index 0)" if n == 1 else f"{n} volumes (0 to {n - 1})"
        raise InputError(f"{name}: volume index {index} is out of range; the file holds {held}")
    if volume_index is None and n > 1:
        return 0, [f"{name} holds {n} volumes (4D); showing volume 0. Pick another with {VOLUME_CHOICE_HINT}."]
    return index, []


def single_volume(name: str, volume_index: int | None) -> None:
    """Refuse a volume index other than 0 for inputs that hold one volume (DICOM, PNG, JPEG)."""
    choose_volume(1, name, volume_index)


def _check_voxels(shape: tuple[int, ...], max_voxels: int, name: str) -> None:
    """Every axis counts: a 4D file with 100 volumes is 100 times the voxels of one."""
    limits.check_voxels(shape, name, max_voxels)


def _pick_3d(data: np.ndarray, name: str, volume_index: int | None) -> tuple[np.ndarray, list[str]]:
    """Reduce a 3D/4D array to 3D, squeezing trailing singleton axes."""
    warnings: list[str] = []
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 4:
        index, warnings = choose_volume(data.shape[3], name, volume_index)
        data = data[..., index]
    else:
        single_volume(name, volume_index)
    if data.ndim != 3:
        raise InputError(f"{name}: volume must be 3D; got shape {tuple(data.shape)}")
    return data, warnings


def _load_nifti(path: Path, *, compressed: bool, max_bytes: int, max_voxels: int, volume_index: int | None) -> Volume:
    from explain.neuro import image_to_volume, open_nifti

    img = open_nifti(path, compressed=compressed, max_bytes=max_bytes)
    return image_to_volume(img, path.name, max_voxels=max_voxels, volume_index=volume_index)


def _load_nrrd(path: Path, *, max_voxels: int, volume_index: int | None) -> Volume:
    from explain.nrrd_io import read_nrrd

    del max_voxels  # read_nrrd counts every axis against the voxel budget itself
    data, affine, header = read_nrrd(path, path.name)
    kinds = header.get("kinds")
    if data.ndim == 4 and kinds is not None and kinds[0] not in ("domain", "space"):
        data = np.moveaxis(data, 0, -1)  # NRRD puts the list axis first
    data, warnings = _pick_3d(data, path.name, volume_index)
    return make_volume(data, affine, path.name, tuple(warnings))


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


_KNOWN_SUFFIXES = (".nii.gz", ".nii", ".gz", ".nrrd", ".nhdr", ".zip", ".dcm", ".png", ".jpg", ".jpeg", ".mgz", ".mgh")


def safe_name(name: object, fallback: str = "upload") -> str:
    """An upload's name made safe to show and log: the last path part, printable, at most 80 characters.

    It is only ever shown; files are never created under a name a user chose.
    """
    text = str(name or "").replace("\\", "/").split("/")[-1]
    text = "".join(c for c in text if c.isprintable() and c not in "\x00")
    text = text.strip().strip(".") or fallback
    return text if len(text) <= 80 else text[:60] + "..." + text[-17:]


def load_volume_bytes(raw: bytes, name: str, **limit_kwargs: int) -> Volume:
    """Load an uploaded file's bytes (any supported type) via a private temp file with a fixed name."""
    shown = safe_name(name)
    suffix = next((s for s in _KNOWN_SUFFIXES if shown.lower().endswith(s)), "")
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / f"upload{suffix}"
        target.write_bytes(raw)
        try:
            vol = load_volume(target, **limit_kwargs)
        except InputError as e:  # name the user's file, not our temporary one
            raise InputError(str(e).replace(target.name, shown)) from None
    warnings = tuple(w.replace(target.name, shown) for w in vol.warnings)
    return dataclasses.replace(vol, source=shown, warnings=warnings)
