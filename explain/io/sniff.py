"""What kind of file is this? Decided from its first bytes, never from its name.

Only the standard library here: `explain.io.volume` imports this at start-up. The
one exception to "content, not name" is the data half of an Analyze/NIfTI pair
(`.img`), which is raw voxels with no signature: it is recognised by a header with
the same stem beside it (see `explain.neuro.find_pair`).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

HEAD_BYTES = 352  # enough for every signature below (a NIfTI-1 header is 348 bytes)

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
_MGH_TYPES = {0, 1, 3, 4}  # uchar, int32, float32, int16 (FreeSurfer's MRI_* codes)


def is_nifti2(head: bytes) -> bool:
    """A NIfTI-2 single file (magic 'n+2' right after sizeof_hdr)."""
    return head[4:8] == b"n+2\x00" or head[344:348] == b"n+2\x00"


def looks_like_nifti(head: bytes) -> bool:
    """A single-file NIfTI-1 or NIfTI-2 image (.nii): header and voxels in one file."""
    return (len(head) >= 348 and head[344:348] == b"n+1\x00") or head[4:8] == b"n+2\x00"


def pair_header_kind(head: bytes) -> str | None:
    """'nifti1', 'nifti2' or 'analyze' if `head` is the header half of a .hdr/.img pair, else None.

    Analyze 7.5 has no magic string: we require sizeof_hdr = 348 (either byte
    order) and a plausible dim[0], the same test nibabel and SPM rely on.
    """
    if len(head) >= 348 and head[344:348] == b"ni1\x00":
        return "nifti1"
    if len(head) >= 8 and head[4:8] == b"ni2\x00":
        return "nifti2"
    if len(head) < 348 or head[344:348] in (b"n+1\x00", b"n+2\x00"):
        return None
    for order in "<>":
        (sizeof_hdr,) = struct.unpack(order + "i", head[:4])
        (ndim,) = struct.unpack(order + "h", head[40:42])
        if sizeof_hdr == 348 and 1 <= ndim <= 7:
            return "analyze"
    return None


def looks_like_mgh(head: bytes) -> bool:
    """A FreeSurfer .mgh header: big-endian version 1, four positive sizes, a known voxel type."""
    if len(head) < 28:
        return False
    version, *sizes, kind = struct.unpack(">6i", head[:24])
    return version == 1 and all(1 <= s < 1 << 24 for s in sizes) and kind in _MGH_TYPES


def looks_like_bare_dicom(head: bytes) -> bool:
    """A DICOM data set without the 128-byte preamble and 'DICM' prefix (older exports).

    It starts with one of the first tags a data set holds, little-endian: (0002,0000-0001) or
    (0008,0000-0018), followed by an explicit VR (two capital letters) or a short even length.
    Tried last, after every format with a signature.
    """
    if len(head) < 8:
        return False
    group, element = struct.unpack("<HH", head[:4])
    if not ((group == 0x0002 and element <= 0x0001) or (group == 0x0008 and element <= 0x0018)):
        return False
    if head[4:6].isalpha() and head[4:6].isupper():
        return True
    length = struct.unpack("<I", head[4:8])[0]
    return length % 2 == 0 and length < 1024


def gunzip_head(path: Path, n: int = HEAD_BYTES) -> bytes:
    """The first `n` decompressed bytes of a gzip file (b'' if it is corrupt): bounded, unlike a full read."""
    try:
        with gzip.open(path, "rb") as f:
            return f.read(n)
    except (OSError, EOFError, zlib.error):
        return b""


def sniff(path: Path, head: bytes) -> str | None:
    """The kind of a single file from its first bytes.

    One of 'zip', 'nrrd', 'dicom', 'png', 'jpeg', 'nifti', 'nifti.gz', 'mgh',
    'mgh.gz', 'pair' (either half of a .hdr/.img pair), 'gzip' (a gzip file that
    holds none of these) or None. Raw data (an .img, a DICOM without its prefix)
    comes last, after every signature.
    """
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head.startswith(b"NRRD"):
        return "nrrd"
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head.startswith(GZIP_MAGIC):
        inner = gunzip_head(path)
        if looks_like_nifti(inner):
            return "nifti.gz"
        if looks_like_mgh(inner):
            return "mgh.gz"
        return "gzip"
    if looks_like_nifti(head):
        return "nifti"
    if pair_header_kind(head):
        return "pair"
    if looks_like_mgh(head):
        return "mgh"
    if path.suffix.lower() == ".img" and sibling_header(path) is not None:
        return "pair"
    if looks_like_bare_dicom(head):
        return "dicom"
    return None


def sibling_header(path: Path) -> Path | None:
    """The .hdr beside an .img with the same stem, if it is a pair header; else None.

    Only that one sibling is ever considered: never a path written inside a file.
    """
    for suffix in (".hdr", ".HDR"):
        candidate = path.with_suffix(suffix)
        if candidate != path and candidate.is_file():
            with open(candidate, "rb") as f:
                if pair_header_kind(f.read(HEAD_BYTES)):
                    return candidate
    return None
