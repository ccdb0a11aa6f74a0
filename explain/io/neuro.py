"""NIfTI-family images through nibabel: single-file NIfTI, .hdr/.img pairs (NIfTI-1, NIfTI-2,
Analyze 7.5) and FreeSurfer .mgh/.mgz, and the one step that turns any of them into a `Volume`.

Images are built from explicit file maps, never from `nib.load(path)`, so nibabel neither
guesses the type from the extension nor opens any file we did not choose. The two halves of
a pair are the header and the `.img` with the same stem in the same folder (or the same
folder of a .zip); nothing inside a header can point elsewhere.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.fileholders import FileHolder

from explain import limits
from explain.errors import InputError
from explain.io.sniff import HEAD_BYTES, is_nifti2, pair_header_kind
from explain.io.volume import Volume, choose_volume, make_volume
from explain.limits import check_voxels

_PAIR_CLASSES = {"nifti1": nib.Nifti1Pair, "nifti2": nib.Nifti2Pair, "analyze": nib.Spm2AnalyzeImage}
_PAIR_NAMES = {"nifti1": "NIfTI-1 pair", "nifti2": "NIfTI-2 pair", "analyze": "Analyze 7.5"}


# ----------------------------------------------------------------------------- single files


def open_nifti(path: Path, *, compressed: bool, max_bytes: int):
    """A NIfTI-1 or NIfTI-2 image from a .nii or .nii.gz file, chosen by content (voxels are read lazily).

    A .nii.gz is decompressed once, to exactly the size its header declares, into one
    buffer that the voxels are then read from in place (nibabel's `from_bytes` would
    copy it twice more).
    """
    if compressed:
        raw = bounded_gunzip(path, max_bytes)  # a small .gz can expand without bound
        return BufferImage(*_nifti_from_buffer(raw, path.name))
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    cls = nib.Nifti2Image if is_nifti2(head) else nib.Nifti1Image
    return cls.from_file_map({"image": FileHolder(filename=str(path))})


def open_mgh(path: Path, *, compressed: bool, max_bytes: int, max_voxels: int) -> nib.MGHImage:
    """A FreeSurfer image from .mgh, or .mgz (gzip, decompressed under the `max_bytes` ceiling)."""
    if compressed:
        from explain.io.sniff import gunzip_head

        # Refuse an oversized volume from its header, before decompressing the voxels.
        header = nib.freesurfer.mghformat.MGHHeader.from_fileobj(io.BytesIO(gunzip_head(path, 284)))
        check_voxels(header.get_data_shape(), path.name, max_voxels)
        return nib.MGHImage.from_bytes(bounded_gunzip(path, max_bytes))
    return nib.MGHImage.from_file_map({"image": FileHolder(filename=str(path))})


# ----------------------------------------------------------------------------- pairs


def find_pair(path: Path) -> tuple[Path, Path]:
    """(header, data) of the .hdr/.img pair that `path` is either half of, both in `path`'s folder."""
    from explain.io.sniff import sibling_header

    with open(path, "rb") as f:
        is_header = pair_header_kind(f.read(HEAD_BYTES)) is not None
    if not is_header:
        header = sibling_header(path)
        if header is None:
            raise InputError(f"{path.name}: raw image data with no .hdr header beside it; open the .hdr/.img pair")
        return header, path
    for suffix in (".img", ".IMG"):
        data = path.with_suffix(suffix)
        if data != path and data.is_file():
            return path, data
    raise InputError(
        f"{path.name}: this is the header of a .hdr/.img pair, but {path.with_suffix('.img').name} is not beside it; "
        "open both files from one folder, or upload them together in one .zip"
    )


def open_pair(header: bytes, data: io.IOBase | Path, *, header_name: str, data_name: str, data_size: int):
    """The nibabel image of a .hdr/.img pair; checks the data is long enough for the declared shape first."""
    kind = pair_header_kind(header)
    if kind is None:
        raise InputError(f"{header_name}: not an Analyze or NIfTI header; open the .hdr/.img pair")
    cls = _PAIR_CLASSES[kind]
    hdr = cls.header_class.from_fileobj(io.BytesIO(header))
    shape = tuple(int(s) for s in hdr.get_data_shape())
    needed = int(hdr.get_data_offset()) + int(np.prod(shape, dtype=np.int64)) * hdr.get_data_dtype().itemsize
    if data_size < needed:
        raise InputError(
            f"{data_name}: holds {data_size:,} bytes, but its header {header_name} declares "
            f"{' x '.join(map(str, shape))} voxels needing {needed:,}; the pair is incomplete or mismatched"
        )
    holder = FileHolder(filename=str(data)) if isinstance(data, Path) else FileHolder(fileobj=data)
    file_map = {"header": FileHolder(fileobj=io.BytesIO(header)), "image": holder}
    if kind == "analyze":
        file_map["mat"] = FileHolder(fileobj=io.BytesIO(b""))  # SPM's .mat sidecar is not read (see decisions)
    return cls.from_file_map(file_map), kind


def pair_to_volume(
    header: bytes, data: io.IOBase | Path, *, header_name: str, data_name: str, data_size: int, **kw
) -> Volume:
    """A `Volume` from the two halves of a pair (bytes of the header; the data as a path or a file object)."""
    img, kind = open_pair(header, data, header_name=header_name, data_name=data_name, data_size=data_size)
    notes = []
    if kind == "analyze":
        notes.append(
            f"{header_name}: Analyze 7.5 stores no orientation; it is read as SPM does (left-right flipped, "
            "origin from the header), so check which side is left before trusting left and right"
        )
    return image_to_volume(img, header_name, notes=notes, **kw)


def load_pair(path: Path, *, max_bytes: int, max_voxels: int, volume_index: int | None) -> Volume:
    """Open a .hdr/.img pair given either half."""
    header, data = find_pair(path)
    size = data.stat().st_size
    if size > max_bytes:
        raise InputError(f"{data.name}: file is {size / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB limit")
    with open(header, "rb") as f:
        head = f.read(1024)  # a header is 348 to 544 bytes; never read an oversized one whole
    return pair_to_volume(
        head,
        data,
        header_name=header.name,
        data_name=data.name,
        data_size=size,
        max_voxels=max_voxels,
        volume_index=volume_index,
    )


# ----------------------------------------------------------------------------- to a Volume


def image_shape(shape: tuple[int, ...], name: str) -> tuple[tuple[int, int, int], int]:
    """(spatial shape padded to 3, number of volumes) for a nibabel image shape; refuses 5D+ and empty axes."""
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or min(shape) < 1:
        raise InputError(f"{name}: holds no image (shape {shape}); a 2D image or 3D volume is needed")
    if len(shape) > 4 and any(s > 1 for s in shape[4:]):
        raise InputError(f"{name}: {len(shape)}D image with shape {shape} is not supported; save one 3D volume")
    spatial = (*shape[:3], 1, 1)[:3]
    return spatial, (shape[3] if len(shape) > 3 else 1)


def image_to_volume(
    img, name: str, *, max_voxels: int, volume_index: int | None, notes: list[str] | tuple[str, ...] = ()
) -> Volume:
    """One volume of a nibabel image as a 2D or 3D `Volume`; only the chosen volume of a 4D file is read."""
    spatial, n = image_shape(img.shape, name)
    check_voxels(spatial, name, max_voxels)
    index, warnings = choose_volume(n, name, volume_index)
    if len(img.shape) > 3:
        data = np.asanyarray(img.dataobj[(slice(None),) * 3 + (index,) + (0,) * (len(img.shape) - 4)])
    else:
        data = np.asanyarray(img.dataobj)
    data, affine = squeeze_to_image(data.reshape(spatial), np.asarray(img.affine, dtype=float), name)
    return make_volume(data, affine, name, (*notes, *warnings))


def squeeze_to_image(data: np.ndarray, affine: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Drop one singleton axis of a 3D array, making a 2D image; the affine's columns follow.

    The two kept axes become (i, j) in their original order, and the dropped axis's
    column becomes the third (the image normal, scaled by the slice thickness), so
    every kept voxel maps to the same world point as before.
    """
    single = [a for a in range(3) if data.shape[a] == 1]
    if not single:
        return data, affine
    if len(single) > 1:
        raise InputError(f"{name}: shape {tuple(data.shape)} is a line, not an image; a 2D or 3D image is needed")
    keep = [a for a in range(3) if a != single[0]]
    out = np.eye(4)
    out[:, :3] = affine[:, [*keep, single[0]]]
    out[:, 3] = affine[:, 3]
    return data.reshape([data.shape[a] for a in keep]), out


# ----------------------------------------------------------------------------- in-memory NIfTI


class BufferImage:
    """The parts of a nibabel image that `image_to_volume` reads, over a buffer already in memory."""

    def __init__(self, dataobj, affine: np.ndarray) -> None:
        self.dataobj, self.affine, self.shape = dataobj, affine, tuple(dataobj.shape)


def nifti_header_class(head: bytes):
    """The NIfTI-1 or NIfTI-2 header class for these first bytes, or None."""
    if is_nifti2(head):
        return nib.Nifti2Header
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return nib.Nifti1Header
    return None


def _nifti_from_buffer(buf: bytearray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The (scaled) data array and affine of a single-file NIfTI held in memory, without copying the voxels."""
    kind = nifti_header_class(bytes(buf[:544]))
    if kind is None:
        raise InputError(f"{name}: not a NIfTI file after decompression")
    header = kind.from_fileobj(io.BytesIO(bytes(buf[:544])))
    shape = tuple(int(s) for s in header.get_data_shape())
    dtype = header.get_data_dtype()
    offset = int(header.get_data_offset())
    count = limits.count(shape)
    if offset + count * dtype.itemsize > len(buf):
        raise InputError(f"{name}: the file is shorter than its header declares (truncated?)")
    data = np.frombuffer(buf, dtype=dtype, count=count, offset=offset).reshape(shape, order="F")
    slope, inter = header.get_slope_inter()
    if slope is not None and (slope != 1 or (inter or 0) != 0):
        data = _Scaled(data, float(slope), float(inter or 0.0))
    return data, header.get_best_affine()


class _Scaled:
    """Applies scl_slope/scl_inter lazily, to the one volume that is kept (like nibabel's array proxy)."""

    def __init__(self, data: np.ndarray, slope: float, inter: float) -> None:
        self.data, self.slope, self.inter = data, slope, inter
        self.shape, self.ndim = data.shape, data.ndim

    def __getitem__(self, index) -> _Scaled:
        return _Scaled(self.data[index], self.slope, self.inter)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.asarray(self.data, dtype=np.float32) * np.float32(self.slope) + np.float32(self.inter)
        return out if dtype is None else out.astype(dtype)


def bounded_gunzip(path: Path, max_bytes: int) -> bytearray:
    """Decompress a .gz into one buffer. A NIfTI stream is read exactly to the size its header declares
    (checked against the budget first); anything else stops at the budget."""
    with gzip.open(path, "rb") as f:
        head = f.read(544)
        kind = nifti_header_class(head)
        if kind is not None:
            try:
                header = kind.from_fileobj(io.BytesIO(head))
                shape = [int(s) for s in header.get_data_shape()]
                itemsize = header.get_data_dtype().itemsize
                total = int(header.get_data_offset()) + limits.count(shape) * itemsize
            except Exception as e:  # noqa: BLE001 - nibabel raises several types for corrupt headers
                raise InputError(f"{path.name}: the NIfTI header is corrupt ({type(e).__name__})") from e
            one_volume = limits.count(shape[:3]) * 4  # the float32 copy that is kept
            limits.check_bytes(total + one_volume, "decompressing and converting this image", path.name, max_bytes)
            buf = bytearray(total)
            buf[: len(head)] = head[:total]
            view, filled = memoryview(buf), min(len(head), total)
            while filled < total and (got := f.readinto(view[filled : min(total, filled + (1 << 22))])):
                filled += got
            return buf[:filled] if filled < total else buf
        out = bytearray(head)
        while chunk := f.read(1 << 22):
            out += chunk
            if len(out) > max_bytes // 2:  # the decoded copy needs room too
                raise InputError(f"{path.name}: decompresses past the {limits.mib(max_bytes // 2)} limit")
    if len(out) < 348:
        raise InputError(f"{path.name}: too short to be an image after decompression")
    return out
