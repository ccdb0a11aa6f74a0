"""DICOM to a `Volume`: a series (a folder, or a .zip via `explain.io.archives`), one multi-frame file
(a volume), or one single-frame file (a 2D image).

Read with pydicom. Where frames keep their geometry is `explain.io.dicom_frames`; how frames become a
volume is `explain.io.dicom_geometry`; a single image is `explain.io.dicom_image`. Series are named in
messages by SeriesNumber and SeriesDescription; patient fields are never read into a `Volume` or
a message.
"""

from __future__ import annotations

import io
from pathlib import Path

from explain.errors import InputError
from explain.io.dicom_frames import decode, frame_of_single, frames_of_multiframe, has_pixels, is_multiframe, n_frames
from explain.io.dicom_geometry import stack_frames
from explain.io.dicom_image import image_to_volume
from explain.io.sniff import looks_like_bare_dicom
from explain.io.volume import MAX_ZIP_MEMBERS, Volume, make_volume
from explain.limits import check_voxels


def load_dicom_folder(folder: Path, *, max_bytes: int, max_voxels: int) -> Volume:
    """The DICOM series in a folder (searched recursively); other files are skipped with a warning."""
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    if total > max_bytes:
        raise InputError(
            f"{folder.name}: folder holds {total / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB limit"
        )
    if len(files) > MAX_ZIP_MEMBERS:
        raise InputError(f"{folder.name}: {len(files)} files is over the {MAX_ZIP_MEMBERS} limit")
    return load_dicom_items([(p.name, p.read_bytes()) for p in files], folder.name, max_voxels=max_voxels)


def load_dicom_file(path: Path, *, max_voxels: int) -> Volume:
    """One DICOM file: a multi-frame file is a volume, a single-frame file a 2D image."""
    return load_dicom_items([(path.name, path.read_bytes())], path.name, max_voxels=max_voxels)


def load_dicom_items(items: list[tuple[str, bytes]], name: str, *, max_voxels: int) -> Volume:
    """One DICOM series from (file name, bytes) pairs; `name` (the folder, .zip or file) leads every message."""
    images, no_image, unreadable = _read(items)
    if not images:
        if len(items) == 1 and unreadable:
            raise InputError(f"{name}: a damaged DICOM file that cannot be parsed; export it again")
        if len(items) == 1:
            raise InputError(f"{name}: a DICOM file without an image (a report, structure set or plan?)")
        raise InputError(f"{name}: no DICOM images found (files with pixel data)")
    skipped = unreadable + no_image
    series: dict[str, list] = {}
    for fname, ds in images:
        series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((fname, ds))
    if len(series) > 1:
        labels = ", ".join(series_label(group[0][1]) for group in list(series.values())[:4])
        raise InputError(f"{name}: holds {len(series)} DICOM series ({labels}); open one series at a time")
    what = f"{name}: {series_label(images[0][1])}"
    warnings = []
    if skipped:
        listed = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        files = (
            "1 file that is not a DICOM image"
            if len(skipped) == 1
            else f"{len(skipped)} files that are not DICOM images"
        )
        warnings.append(f"{name}: skipped {files} ({listed})")
    multi = [(f, ds) for f, ds in images if is_multiframe(ds)]
    if multi and len(images) > 1:
        raise InputError(
            f"{what}: holds {len(images)} files of which {len(multi)} are multi-frame; open one multi-frame file, "
            "or a series of single-frame files"
        )
    fname, ds = images[0]
    if multi:
        label = name if len(items) == 1 else f"{name}: {fname}"
        return _multiframe(ds, name, label, what, max_voxels, warnings)
    if len(images) == 1:
        vol = image_to_volume(ds, frame_of_single(ds, fname, lambda: None), name, max_voxels=max_voxels)
        return make_volume(vol.data, vol.affine, vol.source, (*warnings, *vol.warnings))
    _refuse_colour(images[0][1], what)
    frames = [frame_of_single(d, f, _decoder(d, f"{name}: {f}")) for f, d in images]
    for f, d in images:
        if str(d.get("PhotometricInterpretation", "")).strip() != str(ds.get("PhotometricInterpretation", "")).strip():
            raise InputError(f"{what}: the slices mix photometric interpretations ({f}); the series is inconsistent")
    check_voxels((frames[0].cols, frames[0].rows, len(frames)), what, max_voxels)
    data, affine, notes = stack_frames(frames, what, max_voxels)
    return make_volume(data, affine, name, (*warnings, *notes, *_monochrome1_note(ds, what)))


def series_label(ds) -> str:
    """'series 3 'AX T1'' from SeriesNumber and SeriesDescription (never patient fields)."""
    number = str(ds.get("SeriesNumber", "") or "").strip()
    text = "".join(c for c in str(ds.get("SeriesDescription", "") or "") if c.isprintable()).strip()[:64]
    if number and text:
        return f"series {number} '{text}'"
    if number:
        return f"series {number}"
    return f"series '{text}'" if text else "the series"


def _read(items: list[tuple[str, bytes]]) -> tuple[list, list[str], list[str]]:
    """(file name, dataset) of every image; names of DICOM files without pixels; names of unreadable files."""
    import pydicom

    images, no_image, unreadable = [], [], []
    for fname, raw in items:
        try:
            # force only for data sets without the 'DICM' prefix that look like DICOM (see sniff)
            force = raw[128:132] != b"DICM" and looks_like_bare_dicom(raw[:16])
            ds = pydicom.dcmread(io.BytesIO(raw), force=force)
        except Exception:  # noqa: BLE001 - not DICOM, or too damaged to parse: reported by the caller
            unreadable.append(fname)
            continue
        if has_pixels(ds):
            images.append((fname, ds))
        elif fname != "DICOMDIR":
            no_image.append(fname)
    return images, no_image, unreadable


def _decoder(ds, label: str):
    def pixels():
        stored = decode(ds, label)
        if stored.ndim != 2:
            raise InputError(f"{label}: expected one greyscale frame; the pixel data has shape {stored.shape}")
        return stored

    return pixels


def _multiframe(ds, name: str, label: str, what: str, max_voxels: int, warnings: list[str]) -> Volume:
    _refuse_colour(ds, what)
    check_voxels((int(ds.Columns), int(ds.Rows), n_frames(ds)), what, max_voxels)
    stored = decode(ds, label)
    frames = frames_of_multiframe(ds, what, stored)
    if len(frames) == 1:
        vol = image_to_volume(ds, frames[0], name, max_voxels=max_voxels, pixels=frames[0].pixels())
        return make_volume(vol.data, vol.affine, name, (*warnings, *vol.warnings))
    data, affine, notes = stack_frames(frames, what, max_voxels)
    return make_volume(data, affine, name, (*warnings, *notes, *_monochrome1_note(ds, what)))


def _refuse_colour(ds, what: str) -> None:
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1 or str(ds.get("PhotometricInterpretation", "")).strip().upper().startswith("PALETTE"):
        photometric = str(ds.get("PhotometricInterpretation", "colour")).strip()
        raise InputError(f"{what}: a colour ({photometric}) volume; camviewer reads greyscale volumes")


def _monochrome1_note(ds, what: str) -> tuple[str, ...]:
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() != "MONOCHROME1":
        return ()
    return (
        f"{what}: stored as MONOCHROME1 (low values shown bright); the values are kept in their units, "
        "so the display shows them the other way round from the scanner",
    )
