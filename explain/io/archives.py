"""A .zip upload: one DICOM series, one .hdr/.img pair, or one NRRD header with its data (browser uploads are single files).

Members are read into memory with a byte ceiling counted on the decompressed stream (declared
sizes can lie), and a member path that climbs out (`..`, absolute, a drive letter) refuses the
whole archive. Nothing is extracted to disk.

What the archive holds is decided by recognisers, tried in order. Each takes the members and
returns a loader (a function of no arguments returning the `Volume`), or None if the archive is
not its kind. To add a kind (e.g. an NRRD header with detached data), write one and list it in
`_KINDS`; a recogniser may also raise `InputError` when the archive is its kind but incomplete.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from explain.errors import InputError
from explain.io.sniff import HEAD_BYTES, looks_like_bare_dicom, pair_header_kind
from explain.io.volume import MAX_ZIP_MEMBERS, Volume

_CLUTTER = {"thumbs.db", "desktop.ini", ".ds_store"}


@dataclass(frozen=True)
class Member:
    """One file of the archive: its path inside the archive (POSIX) and its bytes."""

    path: PurePosixPath
    data: bytes


Loader = Callable[[], Volume]
Recogniser = Callable[[list[Member], str, int, "int | None"], "Loader | None"]


def read_zip(path: Path, max_bytes: int) -> list[Member]:
    """Every file in the archive, refusing climbing paths and expansion past `max_bytes`."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise InputError(f"{path.name}: corrupt .zip ({e})") from e
    with archive:
        infos = [m for m in archive.infolist() if not m.is_dir()]
        if len(infos) > MAX_ZIP_MEMBERS:
            raise InputError(f"{path.name}: {len(infos)} files is over the {MAX_ZIP_MEMBERS} limit")
        for m in infos:
            parts = Path(m.filename.replace("\\", "/")).parts
            if m.filename.startswith(("/", "\\")) or ".." in parts or ":" in m.filename:
                raise InputError(f"{path.name}: refused, member '{m.filename}' points outside the archive")
        declared = sum(m.file_size for m in infos)
        if declared > max_bytes:
            raise InputError(
                f"{path.name}: expands to {declared / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB limit"
            )
        members: list[Member] = []
        read_so_far = 0
        for m in infos:
            # Read in bounded chunks: the declared size in a zip can lie.
            with archive.open(m) as f:
                buf = io.BytesIO()
                while chunk := f.read(1 << 20):
                    read_so_far += len(chunk)
                    if read_so_far > max_bytes:
                        raise InputError(f"{path.name}: expands past the {max_bytes / 2**20:.0f} MiB limit")
                    buf.write(chunk)
            members.append(Member(PurePosixPath(m.filename.replace("\\", "/")), buf.getvalue()))
    return members


def is_clutter(p: PurePosixPath) -> bool:
    """Files that archivers and desktops add on their own (macOS resource forks, thumbnails)."""
    return "__MACOSX" in p.parts or p.name.lower() in _CLUTTER or p.name.startswith("._")


def _dicom_series(members: list[Member], name: str, max_voxels: int, volume_index: int | None) -> Loader | None:
    if not any(m.data[128:132] == b"DICM" or looks_like_bare_dicom(m.data[:16]) for m in members):
        return None
    from explain.io.dicom import load_dicom_items
    from explain.io.volume import single_volume

    single_volume(name, volume_index)
    items = [(m.path.name, m.data) for m in members]
    return lambda: load_dicom_items(items, name, max_voxels=max_voxels)


def _image_pair(members: list[Member], name: str, max_voxels: int, volume_index: int | None) -> Loader | None:
    headers = [m for m in members if pair_header_kind(m.data[:HEAD_BYTES])]
    if not headers:
        return None
    if len(headers) > 1:
        listed = ", ".join(m.path.name for m in headers[:4])
        raise InputError(f"{name}: holds {len(headers)} image headers ({listed}); put one .hdr/.img pair in the .zip")
    header = headers[0]
    stem = header.path.with_suffix("")
    data = [m for m in members if m.path.with_suffix("") == stem and m.path.suffix.lower() == ".img"]
    if not data:
        raise InputError(
            f"{name}: holds the header {header.path.name} but not {stem.name}.img beside it; put both files in the .zip"
        )
    from explain.io.neuro import pair_to_volume

    image = data[0]
    return lambda: pair_to_volume(
        header.data[:1024],
        io.BytesIO(image.data),
        header_name=header.path.name,
        data_name=image.path.name,
        data_size=len(image.data),
        max_voxels=max_voxels,
        volume_index=volume_index,
    )


def _nrrd_bundle(members: list[Member], name: str, max_voxels: int, volume_index: int | None) -> Loader | None:
    """An NRRD header with its detached data: written, by base name only, to a private folder and read there."""
    headers = [m for m in members if m.data.startswith(b"NRRD")]
    if not headers:
        return None
    if len(headers) > 1:
        raise InputError(f"{name}: holds {len(headers)} NRRD headers; put one header and its data file in the .zip")
    header = headers[0]
    beside = [m for m in members if m.path.parent == header.path.parent]

    def load() -> Volume:
        import tempfile

        from explain.io.nrrd import load_nrrd
        from explain.io.volume import safe_name

        with tempfile.TemporaryDirectory() as tmp:
            for m in beside:
                target = Path(tmp) / safe_name(m.path.name, "member")
                target.write_bytes(m.data)
            path = Path(tmp) / safe_name(header.path.name, "member")
            try:
                volume = load_nrrd(path, volume_index=volume_index)
            except InputError as e:
                raise InputError(f"{name}: {e}") from None
        return volume

    return load


# Tried in order; the first that recognises the archive loads it.
_KINDS: tuple[Recogniser, ...] = (_dicom_series, _image_pair, _nrrd_bundle)


def load_zip(path: Path, *, max_bytes: int, max_voxels: int, volume_index: int | None) -> Volume:
    """The volume or image held in a .zip: one DICOM series, one .hdr/.img pair, or an NRRD header and its data."""
    members = [m for m in read_zip(path, max_bytes) if not is_clutter(m.path)]
    if not members:
        raise InputError(f"{path.name}: the .zip holds no files")
    for recognise in _KINDS:
        loader = recognise(members, path.name, max_voxels, volume_index)
        if loader is not None:
            return loader()
    raise InputError(
        f"{path.name}: holds neither DICOM files, an Analyze/NIfTI .hdr/.img pair nor an NRRD header; "
        "a .zip must hold one DICOM series, one such pair, or one NRRD header with its data file"
    )
