"""Read what the browser needs from a NIfTI-1/NIfTI-2 header, with numpy only (the viewer never imports nibabel).

The viewer can then serve an uploaded NIfTI file as it is: the browser decodes it (gzip or not), skips
`offset` bytes and reads `shape` voxels of `dtype`, scaled by `scale` and `inter`, placed by `affine`.
The affine follows nibabel's choice: the sform if its code is set, else the qform, else the scanner-less
default (voxel sizes, x flipped, centred).
"""

from __future__ import annotations

import gzip
import io
import struct
from dataclasses import dataclass

import numpy as np

# NIfTI datatype codes the browser reads directly (typed arrays). Others (RGB, complex, 64-bit integers)
# go through a compact copy instead.
BROWSER_DTYPES = {
    2: "uint8",
    4: "int16",
    8: "int32",
    16: "float32",
    64: "float64",
    256: "int8",
    512: "uint16",
    768: "uint32",
}
HEADER_BYTES = 540  # NIfTI-2; NIfTI-1 is 348


@dataclass(frozen=True)
class NiftiLayout:
    """Where and how the voxels of volume 0 lie in the (decompressed) file."""

    dtype: str | None  # a BROWSER_DTYPES name, or None if the browser cannot read it directly
    datatype_code: int
    endian: str  # "<" or ">"
    shape: tuple[int, ...]  # spatial dims only: (nx, ny) or (nx, ny, nz)
    offset: int  # bytes before the first voxel
    scale: float
    inter: float
    affine: np.ndarray  # 4x4, voxel -> RAS+ mm
    gzipped: bool


def _decompressed_prefix(raw: bytes, size: int = HEADER_BYTES) -> tuple[bytes, bool]:
    if raw[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
            return f.read(size), True
    return raw[:size], False


def _qform_affine(b: float, c: float, d: float, qfac: float, zooms, offsets) -> np.ndarray:
    a = float(np.sqrt(max(0.0, 1.0 - (b * b + c * c + d * d))))
    rotation = np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
        ]
    )
    zooms = np.array(zooms, float)
    zooms[2] *= -1 if qfac < 0 else 1
    out = np.eye(4)
    out[:3, :3] = rotation * zooms
    out[:3, 3] = offsets
    return out


def _default_affine(shape: tuple[int, ...], zooms) -> np.ndarray:
    dims = np.array((tuple(shape) + (1, 1, 1))[:3], float)
    zooms = np.array(zooms, float)
    out = np.diag([-zooms[0], zooms[1], zooms[2], 1.0])
    out[:3, 3] = -(dims - 1) / 2 * np.diag(out)[:3]
    return out


def read_layout(raw: bytes) -> NiftiLayout:
    """Parse a NIfTI-1 or NIfTI-2 file (its first bytes suffice, gzip or not). ValueError if it is not NIfTI."""
    head, gzipped = _decompressed_prefix(raw)
    if len(head) < 348:
        raise ValueError(f"not a NIfTI file: only {len(head)} header bytes")
    for endian in "<>":
        (sizeof_hdr,) = struct.unpack(endian + "i", head[:4])
        if sizeof_hdr in (348, 540):
            break
    else:
        raise ValueError("not a NIfTI file: sizeof_hdr is neither 348 nor 540")
    e = endian
    if sizeof_hdr == 348:
        if head[344:347] not in (b"n+1", b"ni1"):
            raise ValueError("not a NIfTI-1 file (bad magic)")
        if head[344:347] == b"ni1":
            raise ValueError("a NIfTI .hdr/.img pair cannot be served as one file")
        dim = struct.unpack(e + "8h", head[40:56])
        datatype = struct.unpack(e + "h", head[70:72])[0]
        pixdim = struct.unpack(e + "8f", head[76:108])
        vox_offset = struct.unpack(e + "f", head[108:112])[0]
        slope, inter = struct.unpack(e + "2f", head[112:120])
        qform_code, sform_code = struct.unpack(e + "2h", head[252:256])
        quatern = struct.unpack(e + "6f", head[256:280])
        srows = struct.unpack(e + "12f", head[280:328])
    else:
        if head[4:7] not in (b"n+2",):
            raise ValueError("not a single-file NIfTI-2 file (bad magic)")
        datatype = struct.unpack(e + "h", head[12:14])[0]
        dim = struct.unpack(e + "8q", head[16:80])
        pixdim = struct.unpack(e + "8d", head[104:168])
        vox_offset = struct.unpack(e + "q", head[168:176])[0]
        slope, inter = struct.unpack(e + "2d", head[176:192])
        qform_code, sform_code = struct.unpack(e + "2i", head[344:352])
        quatern = struct.unpack(e + "6d", head[352:400])
        srows = struct.unpack(e + "12d", head[400:496])
    ndim = int(dim[0])
    if not 2 <= ndim <= 7:
        raise ValueError(f"NIfTI dim[0] must be 2..7; got {ndim}")
    shape = tuple(int(n) for n in dim[1 : min(ndim, 3) + 1])
    if any(n < 1 for n in shape):
        raise ValueError(f"NIfTI dimensions must be positive; got {shape}")
    if ndim >= 3 and shape[2] == 1 and all(int(n) <= 1 for n in dim[4 : ndim + 1]):
        shape = shape[:2]  # a 2D image stored as nx x ny x 1
    zooms = [abs(float(z)) or 1.0 for z in pixdim[1:4]]
    if sform_code > 0:
        affine = np.vstack([np.array(srows, float).reshape(3, 4), [0, 0, 0, 1]])
    elif qform_code > 0:
        affine = _qform_affine(*quatern[:3], float(pixdim[0]) or 1.0, zooms, quatern[3:])
    else:
        affine = _default_affine(shape, zooms)
    if not np.isfinite(slope) or slope == 0:
        slope, inter = 1.0, 0.0
    if not np.isfinite(inter):
        inter = 0.0
    return NiftiLayout(
        dtype=BROWSER_DTYPES.get(int(datatype)),
        datatype_code=int(datatype),
        endian=endian,
        shape=shape,
        offset=max(int(vox_offset), sizeof_hdr + 4),
        scale=float(slope),
        inter=float(inter),
        affine=affine,
        gzipped=gzipped,
    )
