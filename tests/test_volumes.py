"""Volume loading: geometry of NIfTI, DICOM and NRRD, and a specific error for every kind of bad input."""

from __future__ import annotations

import gzip
import io
import zipfile

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explain.errors import InputError
from explain.io.load import load_volume
from explain.io.volume import from_ras, make_volume, to_ras
from explain.io.write import save_nifti

OBLIQUE = np.array([[0.0, 0.0, -2.5, 40.0], [-0.9, 0.2, 0.0, 10.0], [0.2, 0.9, 0.0, -30.0], [0, 0, 0, 1]])


def _nifti(tmp_path, data, affine=OBLIQUE, name="v.nii.gz"):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return path


def test_nifti_roundtrip_keeps_data_affine_and_reports_geometry(tmp_path):
    data = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    vol = load_volume(_nifti(tmp_path, data))
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine, OBLIQUE)
    np.testing.assert_allclose(vol.spacing, (np.hypot(0.9, 0.2), np.hypot(0.2, 0.9), 2.5))
    out = save_nifti(vol.data, vol.affine, tmp_path / "out.nii.gz")
    again = load_volume(out)
    np.testing.assert_allclose(again.affine, OBLIQUE, atol=1e-6)
    assert again.content_hash == vol.content_hash


def test_ras_reorientation_is_exact_and_invertible():
    data = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    ras, ras_affine = to_ras(data, OBLIQUE)
    assert "".join(nib.aff2axcodes(ras_affine)) == "RAS"
    np.testing.assert_array_equal(from_ras(ras, OBLIQUE), data)
    for ijk in [(0, 0, 0), (4, 2, 6), (1, 5, 3)]:  # same world point, same value
        world = OBLIQUE @ np.array([*ijk, 1.0])
        back = np.round(np.linalg.inv(ras_affine) @ world).astype(int)[:3]
        assert ras[tuple(back)] == data[ijk]


def test_four_d_takes_first_volume_with_warning(tmp_path):
    data = np.stack([np.full((4, 4, 4), i, np.float32) for i in range(3)], axis=-1)
    vol = load_volume(_nifti(tmp_path, data))
    assert vol.data.max() == 0 and "holds 3 volumes" in vol.warnings[0]
    assert load_volume(_nifti(tmp_path, data), volume_index=2).data.min() == 2
    with pytest.raises(InputError, match="out of range"):
        load_volume(_nifti(tmp_path, data), volume_index=5)


@pytest.mark.parametrize(
    "data, message",
    [
        (np.zeros((8, 1, 1), np.float32), "is a line"),
        (np.full((4, 4, 4), np.nan, np.float32), "NaN or infinite"),
        (np.zeros((4, 4, 4, 2, 2), np.float32), "not supported"),
    ],
)
def test_bad_shapes_and_values(tmp_path, data, message):
    with pytest.raises(InputError, match=message):
        load_volume(_nifti(tmp_path, data))


def test_zero_size_axis():
    with pytest.raises(InputError, match="empty axis"):
        make_volume(np.zeros((4, 0, 4)), np.eye(4))


def test_truncated_and_corrupt_files(tmp_path):
    good = _nifti(tmp_path, np.random.default_rng(0).random((20, 20, 20)).astype(np.float32))
    raw = good.read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="cut.nii.gz"):
        load_volume(tmp_path / "cut.nii.gz")
    (tmp_path / "junk.nii").write_bytes(b"hello world" * 10)
    with pytest.raises(InputError, match="not a recognised volume"):
        load_volume(tmp_path / "junk.nii")
    (tmp_path / "empty.nii").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_volume(tmp_path / "empty.nii")


def test_size_and_voxel_limits(tmp_path):
    path = _nifti(tmp_path, np.zeros((40, 40, 40), np.float32))
    with pytest.raises(InputError, match="voxel limit"):
        load_volume(path, max_voxels=1000)
    with pytest.raises(InputError, match="limit"):
        load_volume(path, max_bytes=100)
    # A gzip bomb: tiny on disk, large when expanded.
    header = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4))
    header.header.set_data_shape((400, 400, 400))
    bomb = tmp_path / "bomb.nii.gz"
    bomb.write_bytes(gzip.compress(header.header.binaryblock + b"\0" * 4 + b"\0" * 50_000_000))
    assert bomb.stat().st_size < 200_000
    with pytest.raises(InputError, match="limit"):
        load_volume(bomb, max_bytes=10_000_000)


# ----------------------------------------------------------------------------- DICOM


def _dicom_slice(z: float, pixels: np.ndarray, series: str = "1.2.3") -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("slice", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SeriesInstanceUID = series
    ds.PatientName = "Doe^Jane"
    ds.Modality = "CT"
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [0.8, 0.6]  # row spacing, column spacing
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-100.0, -120.0, z]
    ds.SliceThickness = 2.0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _series(n=5, rows=6, cols=4, zs=None):
    zs = zs if zs is not None else [2.0 * k for k in range(n)]
    planes = [np.full((rows, cols), 1000 + 10 * k) for k in range(len(zs))]
    planes[0][1, 2] = 3000  # marker: row 1, column 2 of the lowest slice
    return [(f"img{k:03d}.dcm", _dicom_slice(z, p)) for k, (z, p) in enumerate(zip(zs, planes))]


def test_dicom_folder_sorted_by_position_in_hounsfield_units(tmp_path):
    items = _series()
    for name, raw in reversed(items):  # file names in reverse order of position
        (tmp_path / name.replace("img", "x" + str(9 - int(name[3:6])))).write_bytes(raw)
    vol = load_volume(tmp_path)
    assert vol.shape == (4, 6, 5)  # (columns, rows, slices)
    np.testing.assert_allclose(vol.data[0, 0, :], [1000 + 10 * k - 1024 for k in range(5)])
    assert vol.data[2, 1, 0] == 3000 - 1024
    # LPS (-100, -120, 0) -> RAS (100, 120, 0); i runs along +x(L) -> RAS -x, spacing 0.6
    world = vol.affine @ np.array([2, 1, 0, 1.0])
    np.testing.assert_allclose(world[:3], [100 - 2 * 0.6, 120 - 1 * 0.8, 0.0])
    np.testing.assert_allclose(vol.spacing, (0.6, 0.8, 2.0))


def test_dicom_zip_and_its_attacks(tmp_path):
    good = tmp_path / "series.zip"
    with zipfile.ZipFile(good, "w") as z:
        for name, raw in _series():
            z.writestr(f"series/{name}", raw)
    assert load_volume(good).shape == (4, 6, 5)
    climb = tmp_path / "climb.zip"
    with zipfile.ZipFile(climb, "w") as z:
        z.writestr("../../etc/evil.dcm", b"x")
    with pytest.raises(InputError, match="outside the archive"):
        load_volume(climb)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.dcm", b"\0" * 30_000_000)
    with pytest.raises(InputError, match="limit"):
        load_volume(bomb, max_bytes=5_000_000)


@pytest.mark.parametrize(
    "zs, message",
    [([0.0, 2.0, 2.0, 4.0], "duplicated"), ([0.0, 2.0, 6.0, 8.0, 10.0], "missing slices")],
)
def test_dicom_series_with_bad_slices(tmp_path, zs, message):
    for name, raw in _series(zs=zs):
        (tmp_path / name).write_bytes(raw)
    with pytest.raises(InputError, match=message):
        load_volume(tmp_path)


def test_single_dicom_file_is_a_2d_image(tmp_path):
    (tmp_path / "one.dcm").write_bytes(_series()[0][1])
    vol = load_volume(tmp_path / "one.dcm")
    assert vol.ndim == 2 and vol.shape == (4, 6)  # (columns, rows)
    assert vol.data[2, 1] == 3000 - 1024 and vol.data[0, 0] == 1000 - 1024
    np.testing.assert_allclose(vol.affine @ np.array([2, 1, 0, 1.0]), [100 - 2 * 0.6, 120 - 1 * 0.8, 0.0, 1.0])


# ----------------------------------------------------------------------------- NRRD


def test_nrrd_lps_to_ras(tmp_path):
    import nrrd

    data = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    header = {
        "space": "left-posterior-superior",
        "space directions": np.diag([0.5, 0.7, 2.0]),
        "space origin": np.array([10.0, 20.0, 30.0]),
    }
    nrrd.write(str(tmp_path / "v.nrrd"), data, header)
    vol = load_volume(tmp_path / "v.nrrd")
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine[:3, 3], [-10.0, -20.0, 30.0])
    np.testing.assert_allclose(np.diag(vol.affine)[:3], [-0.5, -0.7, 2.0])
    assert vol.orientation == "LPS"


# ----------------------------------------------------------------------------- fuzzing


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=2048))
def test_random_bytes_give_a_clear_error(tmp_path, blob):
    path = tmp_path / "fuzz.bin"
    path.write_bytes(blob)
    with pytest.raises(InputError):
        load_volume(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 347), st.integers(0, 255)), min_size=1, max_size=12), st.booleans())
def test_mutated_nifti_headers_never_crash(tmp_path, edits, compress):
    img = nib.Nifti1Image(np.random.default_rng(0).random((6, 5, 4)).astype(np.float32), OBLIQUE)
    raw = bytearray(img.to_bytes())
    for offset, value in edits:
        raw[offset] = value
    path = tmp_path / ("m.nii.gz" if compress else "m.nii")
    path.write_bytes(gzip.compress(bytes(raw)) if compress else bytes(raw))
    try:
        vol = load_volume(path, max_voxels=1_000_000, max_bytes=50_000_000)
    except InputError:
        return
    assert vol.data.ndim in (2, 3) and np.all(np.isfinite(vol.data))


def test_exported_cam_bytes_reopen_on_the_input_grid(tmp_path):
    from explain.io.write import nifti_bytes

    cam = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    path = tmp_path / "cam.nii.gz"
    path.write_bytes(nifti_bytes(cam, OBLIQUE))
    img = nib.load(str(path))
    assert img.get_data_dtype() == np.float32 and img.header["sform_code"] == 1 and img.header["qform_code"] == 1
    np.testing.assert_allclose(img.affine, OBLIQUE, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(img.dataobj), cam)
