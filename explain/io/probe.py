"""What a file holds, from its headers only: enough for the page to offer a volume choice before loading.

`probe_volume(path)` reads no pixel data (for a .zip, only the member list and a pair's header),
so it is cheap to call on every upload. It never raises for a file `load_volume` would refuse on
its pixels; it raises `InputError` only when even the header cannot be read.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from explain.errors import InputError
from explain.io.sniff import HEAD_BYTES, gunzip_head, pair_header_kind, sniff


@dataclass(frozen=True)
class VolumeInfo:
    """kind: the format; ndim: 2 or 3 as it will load (None if unknown without reading pixels);
    shape: one volume's spatial shape (None if unknown); n_volumes: how many `volume_index` can pick."""

    kind: str
    ndim: int | None
    shape: tuple[int, ...] | None
    n_volumes: int


def probe_volume(path: str | os.PathLike) -> VolumeInfo:
    """Describe `path` from its headers: format, dimensionality, shape and the number of volumes."""
    from explain.quiet import reader_messages

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path.name}: no such file or folder")
    if path.is_dir():
        return VolumeInfo("DICOM series", None, None, 1)
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    try:
        with reader_messages():
            return _probe_file(path, head)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - third-party header readers raise anything on corrupt input
        raise InputError(f"{path.name}: cannot read the file's header ({type(e).__name__}: {e})") from e


def _probe_file(path: Path, head: bytes) -> VolumeInfo:
    import nibabel as nib

    kind = sniff(path, head)
    if kind in ("nifti", "nifti.gz"):
        raw = gunzip_head(path, 544) if kind == "nifti.gz" else _head(path, 544)
        header_class = nib.Nifti2Header if raw[4:8] == b"n+2\x00" else nib.Nifti1Header
        return _from_shape("NIfTI", header_class.from_fileobj(io.BytesIO(raw)).get_data_shape())
    if kind in ("mgh", "mgh.gz"):
        raw = gunzip_head(path, 284) if kind == "mgh.gz" else head
        return _from_shape(
            "FreeSurfer MGH", nib.freesurfer.mghformat.MGHHeader.from_fileobj(io.BytesIO(raw)).get_data_shape()
        )
    if kind == "pair":
        from explain.io.neuro import find_pair

        header, _ = find_pair(path)
        with open(header, "rb") as f:
            return _pair_info(f.read(1024))
    if kind == "zip":
        return _probe_zip(path)
    if kind == "nrrd":
        import nrrd

        header = nrrd.read_header(str(path))  # the header only: a detached data file is not opened
        sizes = [int(s) for s in header.get("sizes", [])]
        kinds = header.get("kinds")
        if len(sizes) == 4:
            listed_first = kinds is not None and kinds[0] not in ("domain", "space")
            return VolumeInfo(
                "NRRD", 3, tuple(sizes[1:] if listed_first else sizes[:3]), sizes[0 if listed_first else 3]
            )
        return VolumeInfo("NRRD", len(sizes), tuple(sizes), 1)
    if kind == "dicom":
        import pydicom

        from explain.io.dicom_frames import n_frames

        ds = pydicom.dcmread(path, stop_before_pixels=True, force=head[128:132] != b"DICM")
        rows, cols, frames = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0), n_frames(ds)
        return VolumeInfo("DICOM", 3 if frames > 1 else 2, (cols, rows, frames) if frames > 1 else (cols, rows), 1)
    if kind in ("png", "jpeg"):
        from explain.io.images2d import declared_size

        width, height, _ = declared_size(path, kind)
        return VolumeInfo(kind.upper(), 2, (width, height), 1)
    raise InputError(f"{path.name}: not a recognised volume or image")


def _head(path: Path, n: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _from_shape(kind: str, shape) -> VolumeInfo:
    from explain.io.neuro import image_shape

    spatial, n = image_shape(tuple(shape), kind)
    kept = tuple(s for s in spatial if s > 1)
    return VolumeInfo(kind, len(kept), kept, n)


def _pair_info(header: bytes) -> VolumeInfo:
    import nibabel as nib

    kind = pair_header_kind(header)
    cls = {"nifti1": nib.Nifti1Header, "nifti2": nib.Nifti2Header}.get(kind or "", nib.AnalyzeHeader)
    name = "Analyze 7.5" if kind == "analyze" else "NIfTI pair"
    return _from_shape(name, cls.from_fileobj(io.BytesIO(header)).get_data_shape())


def _probe_zip(path: Path) -> VolumeInfo:
    from explain.io.archives import is_clutter

    with zipfile.ZipFile(path) as archive:
        infos = [m for m in archive.infolist() if not m.is_dir() and not is_clutter(PurePosixPath(m.filename))]
        for m in infos:
            if m.file_size <= 1024:  # a pair header is 348 to 544 bytes; nothing larger is read
                with archive.open(m) as f:
                    header = f.read(1025)
                if len(header) <= 1024 and pair_header_kind(header):
                    return _pair_info(header)
    return VolumeInfo("DICOM series", None, None, 1)
