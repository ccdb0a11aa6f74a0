"""DICOM frames: the position, orientation, pixel spacing and rescale of every frame, wherever
the file keeps them, and the decoding of pixel data.

A frame is one 2D image: a single-frame file of a series, or one frame of a multi-frame file.
- Single-frame files keep everything at the top level of the dataset.
- Enhanced multi-frame files (Enhanced CT/MR/PET, and others with functional groups) keep it
  per frame in PerFrameFunctionalGroupsSequence, or once for all frames in
  SharedFunctionalGroupsSequence; a per-frame value wins.
- RT dose keeps one ImagePositionPatient and a GridFrameOffsetVector of offsets along the slice
  normal (or, when its first value is not 0, the frames' z coordinates, for axial grids only),
  and scales stored values to Gy with DoseGridScaling.
Every multi-frame file is then checked as a stack like any series (`explain.io.dicom_geometry`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from explain.errors import InputError

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True)
class Frame:
    """One 2D frame: where it lies (LPS mm; None when the file does not say) and how to read its pixels."""

    label: str  # for messages: a file name or "frame 12"
    rows: int
    cols: int
    position: np.ndarray | None  # ImagePositionPatient: the centre of the first pixel
    orientation: np.ndarray | None  # ImageOrientationPatient: row direction, then column direction
    spacing: np.ndarray | None  # PixelSpacing: (between rows, between columns)
    slope: float
    intercept: float
    pixels: Callable[[], np.ndarray]  # stored values, indexed [row, column]


def has_pixels(ds) -> bool:
    """True for a dataset that holds an image (integer or float pixel data)."""
    return any(k in ds for k in _PIXEL_KEYWORDS)


def n_frames(ds) -> int:
    """NumberOfFrames, or 1 when absent."""
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def is_multiframe(ds) -> bool:
    """A multi-frame image: more than one frame, or an enhanced file whose frames are described in groups."""
    return n_frames(ds) > 1 or "PerFrameFunctionalGroupsSequence" in ds


def decode(ds, name: str) -> np.ndarray:
    """The stored pixel values: [row, column], [frame, row, column], or with a trailing colour axis.

    Uncompressed data is checked against the size the header declares, so a truncated
    file gives numbers rather than a reader's exception.
    """
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    keyword = next(k for k in _PIXEL_KEYWORDS if k in ds)
    if keyword == "PixelData" and syntax is not None and not syntax.is_compressed:
        rows, cols, frames = int(ds.Rows), int(ds.Columns), n_frames(ds)
        bits = int(ds.get("BitsAllocated", 16) or 16)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        needed = (rows * cols * frames * samples * bits + 7) // 8
        got = len(ds.PixelData)
        if got < needed:
            plural = "frame" if frames == 1 else "frames"
            raise InputError(
                f"{name}: the pixel data holds {got:,} bytes, but {frames} {plural} of {rows} x {cols} need "
                f"{needed:,}; the file is truncated or corrupt"
            )
    try:
        return np.asarray(ds.pixel_array)
    except Exception as e:  # noqa: BLE001 - pydicom's codecs raise many types
        syntax_name = getattr(syntax, "name", None) or str(syntax or "unknown")
        reason = str(e).splitlines()[0].rstrip(":") if str(e) else type(e).__name__
        if "missing dependencies" in reason:
            reason = "no decoder for it is installed here"
        raise InputError(
            f"{name}: cannot decode the pixel data (transfer syntax {syntax_name}); export it uncompressed "
            f"(Explicit VR Little Endian) and open it again ({reason})"
        ) from e


def _vector(value, length: int) -> np.ndarray | None:
    """A finite float vector of the given length, or None if the value is missing or malformed."""
    try:
        v = np.asarray([float(x) for x in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return v if v.shape == (length,) and np.all(np.isfinite(v)) else None


def _number(value, default: float) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return default
    return x if np.isfinite(x) else default


def top_level_rescale(ds) -> tuple[float, float]:
    """(slope, intercept) of a single-frame dataset: RescaleSlope/Intercept, or DoseGridScaling for RT dose."""
    if "DoseGridScaling" in ds:
        return _number(ds.DoseGridScaling, 1.0), 0.0
    return _number(ds.get("RescaleSlope", 1.0), 1.0) or 1.0, _number(ds.get("RescaleIntercept", 0.0), 0.0)


def frame_of_single(ds, label: str, pixels: Callable[[], np.ndarray]) -> Frame:
    """The frame of a single-frame dataset (a slice file of a series, or a lone image)."""
    slope, intercept = top_level_rescale(ds)
    return Frame(
        label,
        int(ds.Rows),
        int(ds.Columns),
        _vector(ds.get("ImagePositionPatient"), 3),
        _vector(ds.get("ImageOrientationPatient"), 6),
        _vector(ds.get("PixelSpacing"), 2),
        slope,
        intercept,
        pixels,
    )


def frames_of_multiframe(ds, name: str, stored: np.ndarray) -> list[Frame]:
    """The frames of a multi-frame dataset whose pixels are already decoded as `stored` [frame, row, column]."""
    n = n_frames(ds)
    stored = stored.reshape((n, int(ds.Rows), int(ds.Columns)))

    def plane(k: int) -> Callable[[], np.ndarray]:
        return lambda: stored[k]

    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        return _enhanced(ds, name, n, plane)
    if "GridFrameOffsetVector" in ds:
        return _rt_dose(ds, name, n, plane)
    modality = str(ds.get("Modality", "") or "").strip() or "DICOM"
    raise InputError(
        f"{name}: a multi-frame {modality} file with no position for its frames (a cine loop or a projection "
        "series?); camviewer reads multi-frame files that place every frame: Enhanced CT/MR/PET and RT dose"
    )


def _enhanced(ds, name: str, n: int, plane) -> list[Frame]:
    per = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
    shared_seq = ds.get("SharedFunctionalGroupsSequence") or []
    shared = shared_seq[0] if len(shared_seq) else None
    if per and len(per) != n:
        raise InputError(
            f"{name}: the file says it has {n} frames but describes {len(per)}; the multi-frame file is corrupt"
        )

    def lookup(k: int, sequence: str, attribute: str):
        for item in (per[k] if per else None, shared):
            group = item.get(sequence) if item is not None else None
            if group and attribute in group[0]:
                return group[0].get(attribute)
        return ds.get(attribute)  # some converters keep a value at the top level

    top_slope, top_intercept = top_level_rescale(ds)
    frames = []
    for k in range(n):
        slope = _number(lookup(k, "PixelValueTransformationSequence", "RescaleSlope"), top_slope) or 1.0
        intercept = _number(lookup(k, "PixelValueTransformationSequence", "RescaleIntercept"), top_intercept)
        frames.append(
            Frame(
                f"frame {k + 1}",
                int(ds.Rows),
                int(ds.Columns),
                _vector(lookup(k, "PlanePositionSequence", "ImagePositionPatient"), 3),
                _vector(lookup(k, "PlaneOrientationSequence", "ImageOrientationPatient"), 6),
                _vector(lookup(k, "PixelMeasuresSequence", "PixelSpacing"), 2),
                slope,
                intercept,
                plane(k),
            )
        )
    return frames


def _rt_dose(ds, name: str, n: int, plane) -> list[Frame]:
    offsets = _vector(ds.get("GridFrameOffsetVector"), n)
    position = _vector(ds.get("ImagePositionPatient"), 3)
    orientation = _vector(ds.get("ImageOrientationPatient"), 6)
    if offsets is None:
        raise InputError(f"{name}: GridFrameOffsetVector does not give one offset per frame ({n} frames)")
    if position is None or orientation is None:
        raise InputError(f"{name}: the dose grid has no ImagePositionPatient or ImageOrientationPatient")
    normal = np.cross(orientation[:3], orientation[3:])
    if offsets[0] == 0:
        positions = [position + off * normal for off in offsets]
    elif np.allclose(orientation, [1, 0, 0, 0, 1, 0], atol=1e-6):
        positions = [np.array([position[0], position[1], off]) for off in offsets]  # offsets are z coordinates
    else:
        raise InputError(
            f"{name}: GridFrameOffsetVector holds z coordinates, which DICOM allows only for axial dose grids, "
            "but this grid is not axial; the frames cannot be placed"
        )
    slope, intercept = top_level_rescale(ds)
    spacing = _vector(ds.get("PixelSpacing"), 2)
    return [
        Frame(f"frame {k + 1}", int(ds.Rows), int(ds.Columns), p, orientation, spacing, slope, intercept, plane(k))
        for k, p in enumerate(positions)
    ]
