"""A single DICOM image (a radiograph, or any one frame) as a 2D `Volume`.

Geometry: ImagePositionPatient/ImageOrientationPatient when the file has them (a CT or MR
slice); else PatientOrientation's letters (projection radiographs: e.g. "L\\F"); else DICOM's
default orientation (rows to the patient's left, columns to the back), with a warning that
left and right are unknown. The affine's third column is the unit image normal.

Pixel size: PixelSpacing (calibrated at the patient); else ImagerPixelSpacing (at the detector),
divided by EstimatedRadiographicMagnificationFactor when given; else 1 mm. Each fallback is
said in a warning.
"""

from __future__ import annotations

import numpy as np

from explain.errors import InputError
from explain.io.dicom_frames import Frame, _number, _vector, decode
from explain.io.dicom_geometry import LPS_TO_RAS, unit_orientation
from explain.io.volume import Volume, make_volume
from explain.limits import check_voxels

_LETTERS = {"L": (1, 0, 0), "R": (-1, 0, 0), "P": (0, 1, 0), "A": (0, -1, 0), "H": (0, 0, 1), "F": (0, 0, -1)}
_BT601 = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # luma weights (ITU-R BT.601)


def image_to_volume(ds, frame: Frame, name: str, *, max_voxels: int, pixels: np.ndarray | None = None) -> Volume:
    """A 2D `Volume` from one frame of `ds` (decoded here unless `pixels` is given)."""
    check_voxels((frame.cols, frame.rows), name, max_voxels)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip().upper()
    if photometric.startswith("PALETTE"):
        raise InputError(
            f"{name}: a PALETTE COLOR image holds colour-table indices, not intensities; export it as greyscale"
        )
    warnings: list[str] = []
    stored = decode(ds, name) if pixels is None else pixels
    if stored.ndim == 3 and stored.shape[-1] in (3, 4):
        values = _luminance(stored[..., :3], name, warnings)  # pydicom has already turned YBR into RGB
    else:
        values = _modality(ds, frame, stored.astype(np.float32))
        if photometric == "MONOCHROME1":
            values = invert_monochrome1(ds, frame, values)
            warnings.append(f"{name}: stored as MONOCHROME1 (low values bright); inverted so that bright is high")
    if values.shape != (frame.rows, frame.cols):
        raise InputError(f"{name}: the pixel data has shape {values.shape}, not {frame.rows} x {frame.cols}")
    spacing = _pixel_spacing(ds, frame, name, warnings)  # (between rows, between columns)
    row, col, origin = _orientation(ds, frame, name, warnings)
    lps = np.eye(4)
    lps[:3, 0] = row * spacing[1]
    lps[:3, 1] = col * spacing[0]
    lps[:3, 2] = np.cross(row, col)
    lps[:3, 3] = origin
    # pixels are [row, column]; i runs along a row (the column index), j down the rows.
    return make_volume(values.T, LPS_TO_RAS @ lps, name, tuple(warnings))


def _modality(ds, frame: Frame, stored: np.ndarray) -> np.ndarray:
    """Stored values to the modality's units: a Modality LUT if the file has one, else slope and intercept."""
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(stored.astype(np.int64), ds), dtype=np.float32)
    return stored * np.float32(frame.slope) + np.float32(frame.intercept)


def invert_monochrome1(ds, frame: Frame, values: np.ndarray) -> np.ndarray:
    """Turn a MONOCHROME1 image (low values shown bright) into the higher-is-brighter convention.

    v' = lo + hi - v, where [lo, hi] is the image of the stored range (from BitsStored and
    PixelRepresentation: [0, 2^b - 1] or [-2^(b-1), 2^(b-1) - 1]) under the modality
    transform. The brightest possible value becomes the darkest and vice versa, values stay
    in the same range, and the result does not depend on the image's content.
    """
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    smin, smax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    ends = _modality(ds, frame, np.array([smin, smax], dtype=np.float32))
    return np.float32(ends.min() + ends.max()) - values


def _luminance(rgb: np.ndarray, name: str, warnings: list[str]) -> np.ndarray:
    rgb = rgb.astype(np.float32)
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[..., 0]  # grey stored as colour: exact
    warnings.append(f"{name}: a colour image, converted to luminance (0.299 R + 0.587 G + 0.114 B)")
    return rgb @ _BT601


def _pixel_spacing(ds, frame: Frame, name: str, warnings: list[str]) -> np.ndarray:
    if frame.spacing is not None and np.all(frame.spacing > 0):
        return frame.spacing
    imager = _vector(ds.get("ImagerPixelSpacing"), 2)
    if imager is not None and np.all(imager > 0):
        factor = _number(ds.get("EstimatedRadiographicMagnificationFactor"), 0.0)
        if factor > 0:
            warnings.append(
                f"{name}: no PixelSpacing; the pixel size is the detector's ImagerPixelSpacing divided by the "
                f"estimated magnification factor {factor:g}"
            )
            return imager / factor
        warnings.append(
            f"{name}: no PixelSpacing; the pixel size is the detector's ImagerPixelSpacing, so sizes at the patient "
            "are overstated by the X-ray magnification (often 5-15%)"
        )
        return imager
    warnings.append(f"{name}: the file gives no pixel size; 1 mm pixels are assumed")
    return np.array([1.0, 1.0])


def _orientation(ds, frame: Frame, name: str, warnings: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row direction, column direction, origin), in LPS."""
    if frame.orientation is not None:
        row, col = unit_orientation(frame.orientation, name)
        origin = frame.position if frame.position is not None else np.zeros(3)
        return row, col, origin
    letters = ds.get("PatientOrientation")
    if letters is not None and not isinstance(letters, str) and len(letters) == 2:
        dirs = [_direction(str(v)) for v in letters]
        if all(d is not None for d in dirs) and abs(float(dirs[0] @ dirs[1])) < 1e-6:
            return dirs[0], dirs[1], np.zeros(3)
    warnings.append(f"{name}: the file gives no patient orientation; shown as stored, left and right are unknown")
    return np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.zeros(3)


def _direction(code: str) -> np.ndarray | None:
    """A PatientOrientation value (e.g. 'L', 'F', 'AF') as a unit LPS vector; None if unreadable."""
    code = code.strip().upper()
    if not code or any(c not in _LETTERS for c in code):
        return None
    v = np.sum([_LETTERS[c] for c in code], axis=0).astype(float)
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else None
