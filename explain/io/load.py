"""`load_volume`: read any supported image from a path or an upload's bytes, dispatching on its content.

The top of `explain.io`: it sniffs (`explain.io.sniff`) and hands over to one reader per format; the readers
share `explain.io.volume` and never import this module.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from pathlib import Path

from explain import limits
from explain.errors import InputError
from explain.io.sniff import HEAD_BYTES, sniff
from explain.io.volume import Volume, make_channels, safe_name, single_volume


def load_volume(
    path: str | os.PathLike,
    *,
    max_bytes: int | None = None,
    max_voxels: int | None = None,
    volume_index: int | None = None,
) -> Volume:
    """Load a 3D volume or a 2D image from a file, a DICOM folder, or a .zip.

    Files: NIfTI (.nii, .nii.gz), either half of a .hdr/.img pair (NIfTI or Analyze
    7.5), FreeSurfer .mgh/.mgz, NRRD, DICOM (a multi-frame file is a volume, a
    single image is 2D), PNG and JPEG (2D). A folder holds one DICOM series; a .zip
    holds one DICOM series or one .hdr/.img pair. The type is read from the content,
    not the extension. A 4D file gives volume `volume_index` (the first by default,
    with a warning). Every failure is an `InputError` naming the file and the problem,
    and third-party readers print nothing (see `explain.quiet`).
    """
    from explain.quiet import meaningful, reader_messages

    path = Path(path)
    max_bytes = limits.max_bytes() if max_bytes is None else max_bytes
    max_voxels = limits.max_voxels() if max_voxels is None else max_voxels
    if not path.exists():
        raise InputError(f"{path.name}: no such file or folder")
    head = b""
    if path.is_file():
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(f"{path.name}: file is {size / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB limit")
        if size == 0:
            raise InputError(f"{path.name}: file is empty")
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    try:
        with reader_messages() as notes:
            volume = _load_file(path, head, max_bytes=max_bytes, max_voxels=max_voxels, volume_index=volume_index)
    except InputError:
        raise
    except MemoryError as e:
        raise InputError(f"{path.name}: not enough memory to load this volume") from e
    except Exception as e:  # noqa: BLE001 - third-party readers raise anything on corrupt input
        raise InputError(f"{path.name}: cannot read the file ({type(e).__name__}: {e})") from e
    volume = _with_notes(volume, meaningful(notes, path.name))
    return dataclasses.replace(volume, n_volumes=_count_volumes(path))


def _count_volumes(path: Path) -> int:
    """How many volumes the file offers (headers only), so a page can offer the choice."""
    if path.is_dir():
        return 1
    from explain.io.probe import probe_volume

    try:
        return max(int(probe_volume(path).n_volumes), 1)
    except InputError:
        return 1


def _load_file(path: Path, head: bytes, *, max_bytes: int, max_voxels: int, volume_index: int | None) -> Volume:
    """Dispatch on content (see `explain.io.sniff`); a folder is a DICOM series."""
    if path.is_dir():
        from explain.io.dicom import load_dicom_folder

        single_volume(path.name, volume_index)
        return load_dicom_folder(path, max_bytes=max_bytes, max_voxels=max_voxels)
    kind = sniff(path, head)
    if kind == "zip":
        from explain.io.archives import load_zip

        return load_zip(path, max_bytes=max_bytes, max_voxels=max_voxels, volume_index=volume_index)
    if kind == "nrrd":
        from explain.io.nrrd import load_nrrd

        return load_nrrd(path, volume_index=volume_index)
    if kind == "dicom":
        from explain.io.dicom import load_dicom_file

        single_volume(path.name, volume_index)
        return load_dicom_file(path, max_voxels=max_voxels)
    if kind in ("png", "jpeg"):
        from explain.io.images2d import load_image_2d

        single_volume(path.name, volume_index)
        return load_image_2d(path, kind=kind, max_voxels=max_voxels)
    if kind in ("nifti", "nifti.gz"):
        return _load_nifti(
            path, compressed=kind == "nifti.gz", max_bytes=max_bytes, max_voxels=max_voxels, volume_index=volume_index
        )
    if kind in ("mgh", "mgh.gz"):
        from explain.io.neuro import image_to_volume, open_mgh

        img = open_mgh(path, compressed=kind == "mgh.gz", max_bytes=max_bytes, max_voxels=max_voxels)
        return image_to_volume(img, path.name, max_voxels=max_voxels, volume_index=volume_index)
    if kind == "pair":
        from explain.io.neuro import load_pair

        return load_pair(path, max_bytes=max_bytes, max_voxels=max_voxels, volume_index=volume_index)
    if kind == "gzip":
        raise InputError(f"{path.name}: a gzip file that holds neither NIfTI nor FreeSurfer MGH data")
    raise InputError(
        f"{path.name}: not a recognised volume or image; expected NIfTI (.nii, .nii.gz), an Analyze/NIfTI .hdr/.img pair, "
        "FreeSurfer .mgh/.mgz, NRRD, DICOM, PNG or JPEG, or a DICOM series as a folder or .zip"
    )


def _with_notes(volume: Volume, notes: tuple[str, ...]) -> Volume:
    return dataclasses.replace(volume, warnings=volume.warnings + notes) if notes else volume


def _load_nifti(path: Path, *, compressed: bool, max_bytes: int, max_voxels: int, volume_index: int | None) -> Volume:
    from explain.io.neuro import image_to_volume, open_nifti

    img = open_nifti(path, compressed=compressed, max_bytes=max_bytes)
    return image_to_volume(img, path.name, max_voxels=max_voxels, volume_index=volume_index)


_KNOWN_SUFFIXES = (".nii.gz", ".nii", ".gz", ".nrrd", ".nhdr", ".zip", ".dcm", ".png", ".jpg", ".jpeg", ".mgz", ".mgh")


def load_volume_bytes(raw: bytes, name: str, **limit_kwargs: int) -> Volume:
    """Load an uploaded file's bytes (any supported type) via a private temp file with a fixed name."""
    shown = safe_name(name)
    suffix = next((s for s in _KNOWN_SUFFIXES if shown.lower().endswith(s)), "")
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / f"upload{suffix}"
        target.write_bytes(raw)
        try:
            vol = load_volume(target, **limit_kwargs)
        except InputError as e:  # name the user's file, not our temporary one
            raise InputError(str(e).replace(target.name, shown)) from None
    warnings = tuple(w.replace(target.name, shown) for w in vol.warnings)
    return dataclasses.replace(vol, source=shown, warnings=warnings)


_CHANNEL_SUFFIX = re.compile(r"_(\d{4})(?:\.nii\.gz|\.nii|\.nrrd|\.mha|\.mgz|\.png)?$", re.IGNORECASE)


def channel_order(names: list[str]) -> list[int]:
    """The order of images as channels: nnU-Net's `_0000`, `_0001`... suffixes decide when every name carries one
    (and they are 0..C-1 once each); otherwise the order given."""
    found = [_CHANNEL_SUFFIX.search(Path(n).name) for n in names]
    if len(names) > 1 and all(found):
        numbers = [int(m.group(1)) for m in found]
        if sorted(numbers) == list(range(len(names))):
            return sorted(range(len(names)), key=lambda i: numbers[i])
    return list(range(len(names)))


def load_case(
    paths: list[str | os.PathLike], *, channels: int | None = None, names: list[str] | None = None, **limit_kwargs
) -> Volume:
    """The images of one case as a (multi-channel) `Volume`, in the model's channel order.

    Several files: each is one channel (see `channel_order`), all on the same grid. One 4D file whose volumes are
    as many as the model's `channels` is read as those channels. One file otherwise: as `load_volume` reads it.
    """
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and channels and channels > 1:
        from explain.io.probe import probe_volume

        held = max(int(probe_volume(paths[0]).n_volumes), 1) if paths[0].is_file() else 1
        if held != channels:
            raise InputError(
                f"{paths[0].name}: the model takes {channels} channels and this file holds {held} volume(s); give "
                f"{channels} images (one per channel, in the model's order) or one 4D file with {channels} volumes"
            )
        volumes = [load_volume(paths[0], volume_index=i, **limit_kwargs) for i in range(held)]
        return make_channels(volumes, names or [f"channel {i}" for i in range(held)])
    if channels and len(paths) != channels and len(paths) > 1:
        raise InputError(f"the model takes {channels} channels; {len(paths)} images were given")
    order = channel_order([p.name for p in paths])
    volumes = [load_volume(paths[i], **limit_kwargs) for i in order]
    return make_channels(volumes, names if names and len(names) == len(volumes) else None)
