"""DICOM series (a folder or a .zip of one series) to a `Volume`.

Read with pydicom; slices are sorted along the slice normal, rescaled to stored
units (Hounsfield for CT), and converted from DICOM's LPS+ to RAS+ (see the axis
convention in `explain.volumes`). Patient fields are never copied into a `Volume`.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from explain.errors import InputError
from explain.volumes import MAX_ZIP_MEMBERS, Volume, _check_voxels, make_volume


def load_dicom_folder(folder: Path, *, max_bytes: int, max_voxels: int) -> Volume:
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    if total > max_bytes:
        raise InputError(
            f"{folder.name}: folder holds {total / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB limit"
        )
    if len(files) > MAX_ZIP_MEMBERS:
        raise InputError(f"{folder.name}: {len(files)} files is over the {MAX_ZIP_MEMBERS} limit")
    return _series_to_volume([(p.name, p.read_bytes()) for p in files], folder.name, max_voxels)


def load_dicom_zip(path: Path, *, max_bytes: int, max_voxels: int) -> Volume:
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
