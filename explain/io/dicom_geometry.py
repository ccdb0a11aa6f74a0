"""Stacking DICOM frames into a volume: the geometry rules (see docs/decisions.md, "DICOM geometry rules").

1. Every frame must say where it lies (ImagePositionPatient, ImageOrientationPatient, PixelSpacing)
   and have the same size and pixel spacing.
2. Orientation is checked on every frame. Frames in several planes (a localiser) or rotated about
   a common axis (a radial series) are refused; so are parallel frames turned within their plane.
3. Frames are sorted by position along the slice normal, never by file name or instance number.
   Two frames at one position are refused, as are gaps (a step over 1.5x the median) and uneven
   steps (off a regular grid by over 20% of a step); smaller unevenness gives a warning.
4. The slice spacing comes from the positions, never from SliceThickness or SpacingBetweenSlices.
5. Gantry tilt (positions that step off the normal) is corrected: each slice is shifted within its
   plane onto a grid orthogonal to the slices, with a warning that gives the angle.
6. Each frame's rescale (slope, intercept) is applied to that frame: values are in the modality's
   units (Hounsfield units for CT, Gy for RT dose).

The result is converted from DICOM's LPS+ to RAS+ (see `explain.io.volume`).
"""

from __future__ import annotations

import math

import numpy as np

from explain.errors import InputError
from explain.io.dicom_frames import Frame
from explain.limits import check_voxels

ORIENTATION_TOL = 1e-3  # per direction-cosine component (about 0.06 degrees): far above printed precision
DUPLICATE_MM = 1e-3  # two frames closer than this along the normal are at the same position
TILT_MIN_PIXELS = 0.1  # an accumulated in-plane drift below a tenth of a pixel is no tilt
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def unit_orientation(orientation: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Row and column direction cosines, normalised; refuses zero, non-unit or non-orthogonal ones."""
    row, col = orientation[:3], orientation[3:]
    nr, nc = np.linalg.norm(row), np.linalg.norm(col)
    if not (abs(nr - 1) < 0.01 and abs(nc - 1) < 0.01 and abs(row @ col) < 0.01):
        raise InputError(f"{where}: ImageOrientationPatient is not two perpendicular unit vectors")
    return row / nr, col / nc


def stack_frames(frames: list[Frame], what: str, max_voxels: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Check that `frames` form one regular stack of parallel slices, and build it.

    `what` names the input and series in messages (e.g. "head.zip: series 3 'AX T1'").
    Returns `data[i, j, k]` (float32, rescaled; i along a row, j down the rows, k along the
    normal), the voxel-to-RAS affine, and warnings.
    """
    for attribute, label in (("position", "ImagePositionPatient"), ("orientation", "ImageOrientationPatient")):
        missing = [f.label for f in frames if getattr(f, attribute) is None]
        if missing:
            raise InputError(f"{what}: {missing[0]} has no valid {label}, so the slices cannot be placed")
    row, col = _common_orientation(frames, what)
    rows, cols, spacing = _common_grid(frames, what)
    normal = np.cross(row, col)
    positions = np.array([f.position for f in frames])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    step, warnings = _regular_step(along[order], what)
    # In-plane drift of each slice from the first, in pixels along i (row direction) and j (column direction).
    offsets = positions[order] - positions[order[0]]
    drift = offsets - np.outer(offsets @ normal, normal)
    di, dj = drift @ row / spacing[1], drift @ col / spacing[0]
    tilted = max(np.abs(di).max(), np.abs(dj).max()) >= TILT_MIN_PIXELS
    u0 = math.floor(min(0.0, di.min())) if tilted else 0
    v0 = math.floor(min(0.0, dj.min())) if tilted else 0
    nu = math.ceil(max(0.0, di.max())) - u0 + cols if tilted else cols
    nv = math.ceil(max(0.0, dj.max())) - v0 + rows if tilted else rows
    check_voxels((nu, nv, len(frames)), what, max_voxels)
    data = np.empty((cols, rows, len(frames)), dtype=np.float32)
    for k, idx in enumerate(order):
        f = frames[idx]
        # pixels are [row, column]; our i runs along a row (the column index), j down the rows.
        data[:, :, k] = (np.asarray(f.pixels(), dtype=np.float32) * np.float32(f.slope) + np.float32(f.intercept)).T
    if tilted:
        n = len(frames)
        angle = math.degrees(math.atan2(float(np.linalg.norm(drift[-1])) / (n - 1), step))
        data = _untilt(data, di, dj, u0, v0, (nu, nv))
        warnings.append(
            f"{what}: the slices are tilted {angle:.1f}\N{DEGREE SIGN} from their normal (gantry tilt); they were "
            f"resampled onto a grid orthogonal to the slices ({cols} x {rows} grew to {nu} x {nv} pixels to keep "
            "every pixel; linear interpolation within each slice)"
        )
    lps = np.eye(4)
    lps[:3, 0] = row * spacing[1]
    lps[:3, 1] = col * spacing[0]
    lps[:3, 2] = normal * step
    lps[:3, 3] = positions[order[0]] + u0 * lps[:3, 0] + v0 * lps[:3, 1]
    return data, LPS_TO_RAS @ lps, warnings


def _common_orientation(frames: list[Frame], what: str) -> tuple[np.ndarray, np.ndarray]:
    dirs = np.array([np.concatenate(unit_orientation(f.orientation, f"{what}: {f.label}")) for f in frames])
    normals = np.cross(dirs[:, :3], dirs[:, 3:])
    planes: list[np.ndarray] = []  # one normal per distinct plane orientation (up to sign)
    for n in normals:
        if not any(abs(n @ p) > 1 - ORIENTATION_TOL**2 for p in planes):
            planes.append(n)
    if len(planes) > 1:
        radial = len(planes) >= 3 and np.linalg.svd(np.array(planes), compute_uv=False)[-1] < 0.05 * len(planes) ** 0.5
        if radial:
            raise InputError(
                f"{what}: the slices lie in {len(planes)} planes turned about one axis (a radial series); "
                "open a series of parallel slices"
            )
        raise InputError(
            f"{what}: the slices lie in {len(planes)} different planes (a localiser?); open a series of parallel slices"
        )
    if np.abs(dirs - dirs[0]).max() > ORIENTATION_TOL:
        raise InputError(
            f"{what}: the slices are parallel but turned differently within their plane; "
            "open a series whose slices share one orientation"
        )
    return dirs[0, :3], dirs[0, 3:]


def _common_grid(frames: list[Frame], what: str) -> tuple[int, int, np.ndarray]:
    first = frames[0]
    for f in frames[1:]:
        if (f.rows, f.cols) != (first.rows, first.cols):
            raise InputError(
                f"{what}: the slices differ in size ({first.rows} x {first.cols} in {first.label}, "
                f"{f.rows} x {f.cols} in {f.label}); the series is inconsistent"
            )
    if first.spacing is None or np.any(first.spacing <= 0):
        raise InputError(f"{what}: {first.label} has no valid PixelSpacing, so the slices cannot be placed")
    for f in frames[1:]:
        if f.spacing is None or np.abs(f.spacing - first.spacing).max() > 1e-3 * first.spacing.max():
            found = "none" if f.spacing is None else " x ".join(f"{s:g}" for s in f.spacing)
            raise InputError(
                f"{what}: the slices differ in pixel spacing ({' x '.join(f'{s:g}' for s in first.spacing)} mm in "
                f"{first.label}, {found} in {f.label}); the series is inconsistent"
            )
    return first.rows, first.cols, np.asarray(first.spacing, dtype=float)


def _regular_step(along: np.ndarray, what: str) -> tuple[float, list[str]]:
    """The slice spacing from sorted positions along the normal; refuses duplicates, gaps and uneven steps."""
    steps = np.diff(along)
    if np.any(steps < DUPLICATE_MM):
        starts = np.flatnonzero(np.concatenate([[True], steps >= DUPLICATE_MM]))
        counts = np.diff(np.concatenate([starts, [len(along)]]))
        if counts.min() == counts.max():
            raise InputError(
                f"{what}: duplicated positions: {counts[0]} images at each of {len(counts)} positions (echoes, "
                "phases or time points?); export each of them as its own series"
            )
        at = float(along[1:][steps < DUPLICATE_MM][0])
        raise InputError(
            f"{what}: the series has duplicated slices (two slices at {at:.2f} mm along the slice normal); "
            "remove the duplicates"
        )
    median = float(np.median(steps))
    if np.any(steps > 1.5 * median):
        gap = int(np.argmax(steps))
        raise InputError(
            f"{what}: the series has missing slices (a gap of {steps[gap]:.2f} mm where the spacing is {median:.2f} mm)"
        )
    step = float(along[-1] - along[0]) / (len(along) - 1)
    off_grid = float(np.abs(along - (along[0] + step * np.arange(len(along)))).max())
    if off_grid > 0.2 * step:
        raise InputError(
            f"{what}: the slices are unevenly spaced (steps from {steps.min():.2f} to {steps.max():.2f} mm); "
            "open a series with regular spacing"
        )
    warnings = []
    if off_grid > max(0.01 * step, DUPLICATE_MM):
        warnings.append(
            f"{what}: the slice spacing varies (steps from {steps.min():.3f} to {steps.max():.3f} mm); "
            f"the slices are placed on a regular {step:.3f} mm grid, up to {off_grid:.3f} mm from their positions"
        )
    return step, warnings


def _untilt(data: np.ndarray, di: np.ndarray, dj: np.ndarray, u0: int, v0: int, size: tuple[int, int]) -> np.ndarray:
    """Shift slice k by (di[k], dj[k]) pixels onto the grid starting at (u0, v0); outside: the volume's minimum.

    Output voxel (u, v, k) takes slice k at i = u + u0 - di[k], j = v + v0 - dj[k] (bilinear).
    """
    fill = float(data.min())
    out = np.empty((*size, data.shape[2]), dtype=np.float32)
    for k in range(data.shape[2]):
        plane = _shift_axis(data[:, :, k], u0 - di[k], size[0], 0, fill)
        out[:, :, k] = _shift_axis(plane, v0 - dj[k], size[1], 1, fill)
    return out


def _shift_axis(a: np.ndarray, shift: float, n_out: int, axis: int, fill: float) -> np.ndarray:
    """out[u] = a[u + shift] along `axis`, linearly interpolated; `fill` outside `a`."""
    base = math.floor(shift)
    frac = np.float32(shift - base)
    n_in = a.shape[axis]
    if frac == 0 and base == 0 and n_out == n_in:
        return a  # no shift along this axis (e.g. a gantry tilted about the rows' direction)
    padded = np.concatenate(
        [np.full_like(np.take(a, [0], axis=axis), fill), a, np.full_like(np.take(a, [0], axis=axis), fill)], axis=axis
    )
    # Index into `padded` (offset by one); anything outside the input reads a fill cell.
    lo = np.clip(np.arange(n_out) + base + 1, 0, n_in + 1)
    hi = np.clip(np.arange(n_out) + base + 2, 0, n_in + 1)
    return (1 - frac) * np.take(padded, lo, axis=axis) + frac * np.take(padded, hi, axis=axis)
