"""NIfTI-family inputs: nibabel's shipped files read against their raw bytes, .hdr/.img pairs opened by either
half or from a .zip, FreeSurfer MGH/MGZ, 2D NIfTI, 4D volume choice, and quiet readers."""

from __future__ import annotations

import gzip
import logging
import shutil
import struct
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from explain.errors import InputError
from explain.io.load import load_volume
from explain.io.probe import probe_volume

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


def shipped(name: str) -> Path:
    path = NIBABEL_DATA / name
    if not path.is_file():
        pytest.skip(f"nibabel's test file {name} is not in this installation")
    return path


# ----------------------------------------------------------------------------- real files


def test_freesurfer_mgz_against_its_raw_header_and_voxels():
    path = shipped("test.mgz")
    raw = gzip.decompress(path.read_bytes())
    version, *dims, kind, _dof = struct.unpack(">7i", raw[:28])
    delta = np.array(struct.unpack(">3f", raw[30:42]))
    mdc = np.array(struct.unpack(">9f", raw[42:78])).reshape(3, 3).T  # columns: x, y, z directions
    c_ras = np.array(struct.unpack(">3f", raw[78:90]))
    assert (version, kind) == (1, 3)  # float32 voxels
    # FreeSurfer's vox2ras: directions scaled by voxel size, centred on c_ras at voxel dims/2.
    expected = np.eye(4)
    expected[:3, :3] = mdc * delta
    expected[:3, 3] = c_ras - expected[:3, :3] @ (np.array(dims[:3]) / 2)
    voxels = np.frombuffer(raw[284 : 284 + 4 * int(np.prod(dims))], ">f4").reshape(dims, order="F")
    first = load_volume(path)
    assert first.shape == tuple(dims[:3]) and "holds 2 volumes" in first.warnings[0]
    np.testing.assert_allclose(first.affine, expected, atol=1e-6)
    np.testing.assert_array_equal(first.data, voxels[..., 0])
    np.testing.assert_array_equal(load_volume(path, volume_index=1).data, voxels[..., 1])
    info = probe_volume(path)
    assert (info.kind, info.ndim, info.shape, info.n_volumes) == ("FreeSurfer MGH", 3, tuple(dims[:3]), 2)


def test_mgh_by_content_uncompressed_and_renamed(tmp_path):
    raw = gzip.decompress(shipped("test.mgz").read_bytes())
    (tmp_path / "scan.bin").write_bytes(raw)
    (tmp_path / "scan.data").write_bytes(shipped("test.mgz").read_bytes())
    a, b = load_volume(tmp_path / "scan.bin", volume_index=1), load_volume(tmp_path / "scan.data", volume_index=1)
    assert a.content_hash == b.content_hash


def test_mgz_voxel_limit_is_checked_on_the_header_before_decompressing(tmp_path):
    img = nib.MGHImage(np.zeros((4, 4, 4), np.float32), np.eye(4))
    raw = bytearray(img.to_bytes())
    raw[4:16] = struct.pack(">3i", 2000, 2000, 2000)  # header now declares 8e9 voxels
    (tmp_path / "big.mgz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(InputError, match=r"^big\.mgz: 8,000,000,000 voxels"):
        load_volume(tmp_path / "big.mgz")
    bomb = nib.MGHImage(np.zeros((300, 300, 300), np.float32), np.eye(4))
    (tmp_path / "bomb.mgz").write_bytes(gzip.compress(bomb.to_bytes()))
    with pytest.raises(InputError, match=r"^bomb\.mgz: decompresses past"):
        load_volume(tmp_path / "bomb.mgz", max_bytes=20_000_000)


def _nifti_fields(raw: bytes) -> dict:
    """The few NIfTI-1 header fields we need, read with struct (little-endian file)."""
    dims = struct.unpack("<8h", raw[40:56])
    return {
        "shape": dims[1 : 1 + dims[0]],
        "datatype": struct.unpack("<h", raw[70:72])[0],
        "vox_offset": int(struct.unpack("<f", raw[108:112])[0]),
        "slope_inter": struct.unpack("<2f", raw[112:120]),
        "sform_code": struct.unpack("<h", raw[254:256])[0],
        "srow": np.array(struct.unpack("<12f", raw[280:328])).reshape(3, 4),
    }


def test_example4d_picks_the_requested_volume_from_raw_bytes():
    path = shipped("example4d.nii.gz")
    raw = gzip.decompress(path.read_bytes())
    h = _nifti_fields(raw)
    assert h["datatype"] == 4 and h["sform_code"] > 0  # int16, sform present
    n = int(np.prod(h["shape"]))
    voxels = np.frombuffer(raw[h["vox_offset"] : h["vox_offset"] + 2 * n], "<i2").reshape(h["shape"], order="F")
    slope, inter = h["slope_inter"]
    slope, inter = (slope, inter) if slope not in (0, 1) or inter else (1.0, 0.0)
    vol = load_volume(path, volume_index=1)
    np.testing.assert_allclose(vol.data, voxels[..., 1] * slope + inter)
    np.testing.assert_allclose(vol.affine[:3], h["srow"], atol=1e-5)
    default = load_volume(path)
    np.testing.assert_allclose(default.data, voxels[..., 0] * slope + inter)
    assert default.warnings == (
        "example4d.nii.gz holds 2 volumes (4D); showing volume 0. Pick another with --volume-index N on the "
        "command line, or the 'Volume in file' control in the page.",
    )
    with pytest.raises(
        InputError, match=r"^example4d\.nii\.gz: volume index 2 is out of range; .* 2 volumes \(0 to 1\)"
    ):
        load_volume(path, volume_index=2)
    info = probe_volume(path)
    assert (info.ndim, info.shape, info.n_volumes) == (3, tuple(h["shape"][:3]), 2)


def _analyze_pair(folder: Path, stem: str = "brain") -> tuple[Path, Path, np.ndarray]:
    """nibabel's shipped Analyze header (big-endian, 91 x 109 x 91 uint8) with a data file we write."""
    header = folder / f"{stem}.hdr"
    shutil.copy(shipped("analyze.hdr"), header)
    voxels = (np.arange(91 * 109 * 91) % 251).astype(np.uint8)
    (folder / f"{stem}.img").write_bytes(voxels.tobytes())
    return header, folder / f"{stem}.img", voxels.reshape((91, 109, 91), order="F")


def test_analyze_pair_opened_by_either_half(tmp_path):
    header, data, voxels = _analyze_pair(tmp_path)
    raw = header.read_bytes()
    pixdim = struct.unpack(">3f", raw[80:92])
    scale = struct.unpack(">f", raw[112:116])[0]
    origin = np.array(struct.unpack(">3h", raw[253:259]))  # SPM's originator field, 1-based voxel
    # SPM's reading: x flipped (radiological), the origin voxel at world 0.
    expected = np.diag([-pixdim[0], pixdim[1], pixdim[2], 1.0])
    expected[:3, 3] = -expected[:3, :3] @ (origin - 1)
    for path in (header, data):
        vol = load_volume(path)
        assert vol.source == "brain.hdr"
        np.testing.assert_allclose(vol.affine, expected)
        np.testing.assert_allclose(vol.data, voxels * np.float32(scale), rtol=1e-6)
        assert "Analyze 7.5 stores no orientation" in vol.warnings[0]


def test_pair_half_missing_or_short(tmp_path):
    header, data, _ = _analyze_pair(tmp_path)
    data.unlink()
    with pytest.raises(InputError, match=r"^brain\.hdr: this is the header of a \.hdr/\.img pair, but brain\.img"):
        load_volume(header)
    data.write_bytes(b"\0" * 1000)
    with pytest.raises(InputError, match=r"^brain\.img: holds 1,000 bytes, but its header brain\.hdr declares"):
        load_volume(header)
    header.unlink()
    with pytest.raises(InputError, match=r"^brain\.img: not a recognised"):
        load_volume(data)


def test_nifti_pair_and_its_zip(tmp_path):
    data = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    affine = np.array([[0, 0, -2.5, 40], [-0.9, 0.2, 0, 10], [0.2, 0.9, 0, -30], [0, 0, 0, 1.0]])
    nib.save(nib.Nifti1Pair(data, affine), str(tmp_path / "pair.img"))
    assert (tmp_path / "pair.hdr").read_bytes()[344:348] == b"ni1\x00"
    for path in (tmp_path / "pair.hdr", tmp_path / "pair.img"):
        vol = load_volume(path)
        np.testing.assert_array_equal(vol.data, data)
        np.testing.assert_allclose(vol.affine, affine, atol=1e-6)
    upload = tmp_path / "upload.zip"
    with zipfile.ZipFile(upload, "w") as z:
        z.writestr("scans/pair.hdr", (tmp_path / "pair.hdr").read_bytes())
        z.writestr("scans/pair.img", (tmp_path / "pair.img").read_bytes())
        z.writestr("__MACOSX/scans/._pair.hdr", b"resource fork")
    vol = load_volume(upload)
    np.testing.assert_array_equal(vol.data, data)
    info = probe_volume(upload)
    assert (info.ndim, info.shape, info.n_volumes) == (3, (5, 6, 7), 1)


def test_zip_pair_problems_are_named(tmp_path):
    hdr = nib.Nifti1Pair(np.zeros((3, 3, 3), np.float32), np.eye(4))
    nib.save(hdr, str(tmp_path / "a.img"))
    only_header = tmp_path / "only.zip"
    with zipfile.ZipFile(only_header, "w") as z:
        z.writestr("a.hdr", (tmp_path / "a.hdr").read_bytes())
        z.writestr("other/a.img", (tmp_path / "a.img").read_bytes())  # same stem, another folder
    with pytest.raises(InputError, match=r"^only\.zip: holds the header a\.hdr but not a\.img beside it"):
        load_volume(only_header)
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as z:
        for stem in ("a", "b"):
            z.writestr(f"{stem}.hdr", (tmp_path / "a.hdr").read_bytes())
            z.writestr(f"{stem}.img", (tmp_path / "a.img").read_bytes())
    with pytest.raises(InputError, match=r"^two\.zip: holds 2 image headers"):
        load_volume(two)
    neither = tmp_path / "neither.zip"
    with zipfile.ZipFile(neither, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(
        InputError,
        match=r"^neither\.zip: holds neither DICOM files, an Analyze/NIfTI .hdr/.img pair nor an NRRD header",
    ):
        load_volume(neither)


# ----------------------------------------------------------------------------- 2D and shapes


@pytest.mark.parametrize("shape", [(6, 5), (6, 5, 1), (6, 1, 5), (1, 6, 5), (6, 5, 1, 1)])
def test_2d_nifti_is_a_2d_volume_at_the_same_world_points(tmp_path, shape):
    affine = np.array([[0.7, 0.1, 0, -20], [0, 0.8, 0.3, 10], [0.1, 0, 3.0, 5], [0, 0, 0, 1.0]])
    data = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "slice.nii"))
    vol = load_volume(tmp_path / "slice.nii")
    full = data.reshape(data.shape[:3] if data.ndim >= 3 else (*data.shape, 1))
    kept = [a for a in range(3) if full.shape[a] > 1]
    assert vol.ndim == 2 and vol.shape == tuple(full.shape[a] for a in kept)
    for ijk in np.ndindex(full.shape):
        i, j = (ijk[a] for a in kept)
        assert vol.data[i, j] == full[ijk]
        np.testing.assert_allclose(vol.affine @ [i, j, 0, 1.0], affine @ [*ijk, 1.0], atol=1e-5)


def test_a_line_and_5d_are_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((8, 1, 1), np.float32), np.eye(4)), str(tmp_path / "line.nii"))
    with pytest.raises(InputError, match=r"^line\.nii: shape \(8, 1, 1\) is a line"):
        load_volume(tmp_path / "line.nii")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2, 2), np.float32), np.eye(4)), str(tmp_path / "five.nii"))
    with pytest.raises(InputError, match=r"^five\.nii: 5D image .* not supported"):
        load_volume(tmp_path / "five.nii")


def test_nifti_by_content_whatever_its_name(tmp_path):
    data = np.random.default_rng(1).random((4, 5, 6)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "v.nii"))
    (tmp_path / "v.nii").rename(tmp_path / "export.dat")
    np.testing.assert_array_equal(load_volume(tmp_path / "export.dat").data, data)


def test_nan_refusal_names_the_file(tmp_path):
    nib.save(nib.Nifti1Image(np.full((3, 3, 3), np.nan, np.float32), np.eye(4)), str(tmp_path / "holes.nii.gz"))
    with pytest.raises(InputError, match=r"^holes\.nii\.gz: 27 voxels are NaN or infinite"):
        load_volume(tmp_path / "holes.nii.gz")


# ----------------------------------------------------------------------------- quiet readers


def test_nibabel_header_repairs_become_warnings_not_log_lines(tmp_path, capfd, caplog):
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4))
    raw = bytearray(img.to_bytes())
    raw[80:84] = struct.pack("<f", 0.0)  # pixdim[1] = 0: nibabel repairs it and logs a line
    path = tmp_path / "zero_pixdim.nii"
    path.write_bytes(bytes(raw))
    # Positive control: read directly, nibabel does log this.
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append
    logger = logging.getLogger("nibabel.global")
    logger.addHandler(handler)
    try:
        with caplog.at_level(logging.DEBUG):
            nib.Nifti1Image.from_bytes(bytes(raw))
        assert any("pixdim" in r.getMessage() for r in seen)
        seen.clear()
        capfd.readouterr()
        caplog.clear()
        vol = load_volume(path)
    finally:
        logger.removeHandler(handler)
    assert seen == [] and caplog.records == []
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert any("the reader noted: pixdim[1,2,3] should be non-zero" in w for w in vol.warnings)


def test_probe_of_a_4d_stack_of_2d_images(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 1, 3), np.float32), np.eye(4)), str(tmp_path / "cine.nii.gz"))
    info = probe_volume(tmp_path / "cine.nii.gz")
    assert (info.kind, info.ndim, info.shape, info.n_volumes) == ("NIfTI", 2, (6, 5), 3)
    vol = load_volume(tmp_path / "cine.nii.gz", volume_index=2)
    assert vol.ndim == 2 and vol.shape == (6, 5) and vol.warnings == ()


def test_img_whose_first_voxels_look_like_a_dicom_tag_is_still_the_pair(tmp_path):
    data = np.zeros((4, 4, 4), np.int16)
    data[:, 0, 0] = (
        8,
        5,
        4,
        0,
    )  # written first (Fortran order): bytes 08 00 05 00 04 00 00 00: tag (0008,0005), length 4
    nib.save(nib.Nifti1Pair(data, np.eye(4)), str(tmp_path / "tricky.img"))
    assert (tmp_path / "tricky.img").read_bytes()[:8] == b"\x08\x00\x05\x00\x04\x00\x00\x00"
    np.testing.assert_array_equal(load_volume(tmp_path / "tricky.img").data, data)
