"""NRRD files (attached or detached data) read with every size known before anything is allocated.

pynrrd parses the header; we read the data ourselves, because pynrrd follows
`data file:` to any path (absolute or `../`) and decompresses without bound. Here:
- detached data must be a plain file beside the header, inside the header's own
  folder (an upload's private folder): no absolute path, no `..`, no link, no
  device, no list or pattern of files;
- every axis counts against the voxel budget, and the decoded bytes against the
  memory budget; a compressed stream is decompressed only up to the bytes the
  header declares.
`byte skip`, `line skip` and the encodings follow pynrrd's reading of the spec.
"""

from __future__ import annotations

import bz2
import os
import stat
import zlib
from pathlib import Path

import numpy as np

from explain.errors import InputError
from explain.io.volume import Volume, make_volume, pick_3d
from explain.limits import check_bytes, check_voxels

MAX_HEADER_BYTES = 1024 * 1024
_CHUNK = 1 << 20
_SPACES = {
    "left-posterior-superior": (-1, -1, 1),
    "lps": (-1, -1, 1),
    "right-anterior-superior": (1, 1, 1),
    "ras": (1, 1, 1),
    "left-anterior-superior": (-1, 1, 1),
    "las": (-1, 1, 1),
}


def load_nrrd(path: Path, *, volume_index: int | None = None) -> Volume:
    """An NRRD file as a `Volume` (every axis is counted against the voxel budget by `read_nrrd`)."""
    data, affine, header = read_nrrd(path, path.name)
    kinds = header.get("kinds")
    if data.ndim == 4 and kinds is not None and kinds[0] not in ("domain", "space"):
        data = np.moveaxis(data, 0, -1)  # NRRD puts the list axis first
    data, warnings = pick_3d(data, path.name, volume_index)
    return make_volume(data, affine, path.name, tuple(warnings))


def read_nrrd(path: Path, name: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """(data in Fortran order with all axes, 4x4 RAS affine for the first three spatial axes, header)."""
    import nrrd

    header, data_offset = _read_header(path, name)
    try:
        sizes = [int(s) for s in header["sizes"]]
        dtype = nrrd.reader._determine_datatype(header)  # type, endian: pynrrd's own reading
    except Exception as e:  # noqa: BLE001 - pynrrd raises several types for bad fields
        raise InputError(f"{name}: the NRRD header has no usable sizes or type ({type(e).__name__})") from e
    if int(header.get("dimension", len(sizes))) != len(sizes) or not sizes or min(sizes) < 1:
        raise InputError(f"{name}: the NRRD sizes {sizes} do not match its dimension")
    check_voxels(sizes, name)
    n_bytes = int(np.prod(sizes, dtype=object)) * dtype.itemsize
    check_bytes(n_bytes + int(np.prod(sizes, dtype=object)) * 4, "the NRRD data and its float copy", name)
    source, offset = _data_source(path, header, data_offset, name)
    raw = _read_payload(source, offset, header, n_bytes, dtype, name)
    data = np.frombuffer(raw, dtype=dtype).reshape(sizes[::-1]).T  # file order is x fastest
    return data, _affine(header, name), header


def _read_header(path: Path, name: str) -> tuple[dict, int]:
    import nrrd

    with open(path, "rb") as f:
        head = f.read(MAX_HEADER_BYTES)
    if not head.startswith(b"NRRD"):
        raise InputError(f"{name}: not an NRRD file")
    end = _header_end(head)
    if end is None:
        if len(head) >= MAX_HEADER_BYTES:
            raise InputError(f"{name}: the NRRD header is longer than {MAX_HEADER_BYTES // 1024} kB")
        end = len(head)  # a detached header: the file is all header
    lines = head[:end].decode("ascii", "replace").splitlines(keepends=True)
    try:
        header = nrrd.read_header(lines)
    except Exception as e:  # noqa: BLE001 - pynrrd raises NRRDError, ValueError, ... on bad headers
        raise InputError(f"{name}: the NRRD header cannot be read ({type(e).__name__}: {str(e)[:120]})") from e
    return header, end


def _header_end(head: bytes) -> int | None:
    """Offset of the first data byte: after the first empty line."""
    best = None
    for sep in (b"\n\n", b"\r\n\r\n"):
        at = head.find(sep)
        if at >= 0 and (best is None or at + len(sep) < best):
            best = at + len(sep)
    return best


def _data_source(path: Path, header: dict, data_offset: int, name: str) -> tuple[Path, int]:
    """The file holding the data and where it starts; detached data only beside the header."""
    detached = header.get("data file", header.get("datafile"))
    if detached is None:
        return path, data_offset
    text = str(detached).strip()
    shown = text[:60]
    if not text or text.upper().startswith("LIST") or " " in text or "%" in text:
        raise InputError(
            f"{name}: refused, the data file {shown!r} is a list or pattern; give one file beside the header"
        )
    relative = Path(text.replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts or text.startswith(("/", "~")) or ":" in text:
        raise InputError(f"{name}: refused, the data file {shown!r} points outside the header's folder")
    folder = path.parent.resolve()
    target = folder / relative
    try:
        info = os.lstat(target)
    except OSError as e:
        raise InputError(
            f"{name}: its data file {shown!r} is missing; upload the header and its data together in a .zip"
        ) from e
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        raise InputError(f"{name}: refused, the data file {shown!r} is not a plain file")
    if folder not in target.resolve().parents:
        raise InputError(f"{name}: refused, the data file {shown!r} points outside the header's folder")
    return target, 0


def _read_payload(source: Path, offset: int, header: dict, n_bytes: int, dtype: np.dtype, name: str) -> bytearray:
    encoding = str(header.get("encoding", "raw")).lower()
    line_skip = int(header.get("line skip", header.get("lineskip", 0)))
    byte_skip = int(header.get("byte skip", header.get("byteskip", 0)))
    if line_skip < 0 or byte_skip < -1:
        raise InputError(f"{name}: the NRRD line skip or byte skip is negative")
    with open(source, "rb") as f:
        f.seek(offset)
        for _ in range(min(line_skip, 1_000_000)):
            if not f.readline(MAX_HEADER_BYTES):
                break
        if encoding == "raw":
            if byte_skip == -1:
                f.seek(0, os.SEEK_END)
                if f.tell() - offset < n_bytes:
                    raise InputError(f"{name}: the NRRD data is shorter than its sizes declare")
                f.seek(-n_bytes, os.SEEK_END)
            else:
                f.seek(byte_skip, os.SEEK_CUR)
            out = bytearray(n_bytes)
            got = f.readinto(out)
        elif encoding in ("gzip", "gz", "bzip2", "bz2"):
            if byte_skip > 0:
                f.seek(byte_skip, os.SEEK_CUR)
            out, got = _decompress(f, encoding, n_bytes, tail=byte_skip == -1, name=name)
        elif encoding in ("ascii", "text", "txt"):
            count = n_bytes // dtype.itemsize
            check_bytes(count * 40 * 3, "parsing the NRRD text data", name)  # ~40 characters a number, parsed
            try:
                values = np.array(f.read(count * 40 + 1024).split()[: count + 1], dtype=float)
            except ValueError as e:
                raise InputError(f"{name}: the NRRD text data holds something that is not a number") from e
            out = bytearray(values.astype(dtype).tobytes())
            got = len(values) * dtype.itemsize
        else:
            raise InputError(f"{name}: NRRD encoding {encoding[:20]!r} is not supported (raw, gzip, bzip2, ascii)")
    if got != n_bytes:
        raise InputError(f"{name}: the NRRD data holds {got} bytes where its sizes declare {n_bytes}")
    return out


def _decompress(f, encoding: str, n_bytes: int, tail: bool, name: str) -> tuple[bytearray, int]:
    """At most `n_bytes` out (or the last `n_bytes` of a stream no longer than the budget, for byte skip -1)."""
    decomp = zlib.decompressobj(zlib.MAX_WBITS | 32) if encoding.startswith("g") else bz2.BZ2Decompressor()
    out = bytearray()
    limit = n_bytes if not tail else n_bytes * 2
    while len(out) < limit and (chunk := f.read(_CHUNK)):
        try:
            if isinstance(decomp, bz2.BZ2Decompressor):
                out += decomp.decompress(chunk, max_length=limit - len(out))
            else:
                out += decomp.decompress(chunk, limit - len(out))
        except (OSError, EOFError, zlib.error) as e:
            raise InputError(f"{name}: the compressed NRRD data is corrupt ({e})") from e
    if tail:
        if len(out) >= limit:
            raise InputError(f"{name}: the compressed NRRD data is far longer than its sizes declare")
        out = out[-n_bytes:] if len(out) >= n_bytes else out
    return out, len(out)


def _affine(header: dict, name: str) -> np.ndarray:
    affine = np.eye(4)
    directions = header.get("space directions")
    if directions is not None:
        rows = [np.asarray(d, dtype=float) for d in directions if d is not None and not np.any(np.isnan(d))]
        if len(rows) >= 2 and all(r.shape == (len(rows[0]),) for r in rows):
            block = np.stack(rows, axis=1)[:3, :3]
            affine[: block.shape[0], : block.shape[1]] = block
    elif "spacings" in header:
        spacings = np.asarray(header["spacings"], dtype=float)[:3]
        affine[: len(spacings), : len(spacings)] = np.diag(np.nan_to_num(spacings, nan=1.0))
    if "space origin" in header:
        origin = np.asarray(header["space origin"], dtype=float)[:3]
        affine[: len(origin), 3] = origin
    space = str(header.get("space", "left-posterior-superior")).lower()
    if space not in _SPACES:
        raise InputError(f"{name}: NRRD space {space[:40]!r} is not supported (use LPS, RAS or LAS)")
    affine[:3] *= np.asarray(_SPACES[space], dtype=float)[:, None]
    return affine
