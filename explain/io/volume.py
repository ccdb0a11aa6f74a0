"""The `Volume` type at the bottom of `explain.io`, and the helpers every reader shares.

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

No torch here, and no reader: every reader imports this module, never the other way round.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
from nibabel import orientations

from explain.errors import InputError

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
    # Several co-registered channels (T1c, T1, T2, FLAIR): (C, *spatial); `data` is the one shown as anatomy.
    channels: np.ndarray | None = None
    channel_names: tuple[str, ...] = ()
    shown_channel: int = 0

    @property
    def n_channels(self) -> int:
        return 1 if self.channels is None else int(self.channels.shape[0])

    def stack(self) -> np.ndarray:
        """Every channel as (C, *spatial) float32: the model's input before its preprocessing."""
        return self.channels if self.channels is not None else self.data[None]

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


GRID_TOLERANCE_MM = 1e-3


def make_channels(volumes: list[Volume], names: list[str] | None = None, shown: int = 0) -> Volume:
    """Co-registered volumes as one multi-channel `Volume`, in the order given (the model's channel order).

    "Same grid" means equal shape and affines equal within 1e-3 mm; anything else is refused in one sentence,
    since a model reads channel c at voxel v as the same point in space. `shown` picks the anatomy on screen.
    """
    if not volumes:
        raise InputError("no image was given")
    if len(volumes) == 1:
        return volumes[0]
    first = volumes[0]
    for other in volumes[1:]:
        if other.shape != first.shape:
            raise InputError(
                f"{other.source} has shape {other.shape} but {first.source} has {first.shape}; the channels of one "
                "case must be on the same grid"
            )
        if not np.allclose(other.affine, first.affine, atol=GRID_TOLERANCE_MM):
            raise InputError(
                f"{other.source} and {first.source} are not on the same grid (their affines differ by more than "
                f"{GRID_TOLERANCE_MM} mm); co-register them first"
            )
    names = list(names or [v.source for v in volumes])
    if len(names) != len(volumes):
        raise InputError(f"{len(names)} channel names for {len(volumes)} images")
    if not 0 <= shown < len(volumes):
        raise InputError(
            f"channel {shown} does not exist; the case has {len(volumes)} channels (0 to {len(volumes) - 1})"
        )
    stack = np.stack([v.data for v in volumes])
    h = hashlib.blake2b(digest_size=16)
    for v in volumes:
        h.update(v.content_hash.encode())
    warnings = tuple(w for v in volumes for w in v.warnings)
    source = " + ".join(v.source for v in volumes)
    return Volume(stack[shown], first.affine, source, h.hexdigest(), warnings, 1, stack, tuple(names), shown)


def show_channel(volume: Volume, index: int) -> Volume:
    """The same case with another channel shown as anatomy (same content hash: the case has not changed)."""
    if volume.channels is None or index == volume.shown_channel:
        return volume
    if not 0 <= index < volume.n_channels:
        raise InputError(f"channel {index} does not exist; the case has {volume.n_channels} channels")
    return dataclasses.replace(volume, data=volume.channels[index], shown_channel=index)


def as_volume(volume: Volume | np.ndarray) -> Volume:
    """A `Volume` as it is; a bare array as a volume with 1 mm voxels and an identity affine."""
    if isinstance(volume, Volume):
        return volume
    return make_volume(np.asarray(volume), np.eye(4), "array")


def content_hash(data: np.ndarray, affine: np.ndarray) -> str:
    """A stable hash of voxel values, shape and geometry (hex, 32 chars)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(data.shape).encode())
    h.update(np.ascontiguousarray(affine, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(data, dtype=np.float32).tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- choosing one volume


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


def pick_3d(data: np.ndarray, name: str, volume_index: int | None) -> tuple[np.ndarray, list[str]]:
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


# ----------------------------------------------------------------------------- names


def safe_name(name: object, fallback: str = "upload") -> str:
    """An upload's name made safe to show and log: the last path part, printable, at most 80 characters.

    It is only ever shown; files are never created under a name a user chose.
    """
    text = str(name or "").replace("\\", "/").split("/")[-1]
    text = "".join(c for c in text if c.isprintable() and c not in "\x00")
    text = text.strip().strip(".") or fallback
    return text if len(text) <= 80 else text[:60] + "..." + text[-17:]
