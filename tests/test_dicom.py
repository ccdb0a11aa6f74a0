"""DICOM from real scanners: pydicom's and nibabel's shipped files, and written series with the structures
they lack (localisers, radial series, gantry tilt, Enhanced MR with per-frame groups, radiographs).

Geometry oracle for written series: pixel values are a linear function of the LPS position of the pixel's
centre, computed from the slice's own ImagePositionPatient/ImageOrientationPatient. A correct volume then
satisfies data[i, j, k] == f(world(i, j, k)) at every voxel, whatever the sorting, rescale or resampling.
"""

from __future__ import annotations

import gzip
import io
import logging
import math
import warnings
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from explain.errors import InputError
from explain.io.load import load_volume
from explain.io.probe import probe_volume

PYDICOM_DATA = Path(pydicom.__file__).parent / "data" / "test_files"
NIBABEL_DICOM = Path(nib.__file__).parent / "nicom" / "tests" / "data"
SCALE = 64  # stored = round(f * SCALE), RescaleSlope = 1 / SCALE: exact in binary
AXIAL = (1, 0, 0, 0, 1, 0)


def shipped(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        pytest.skip(f"the test file {name} is not in this installation")
    return path


def f_lps(p: np.ndarray) -> np.ndarray:
    """The phantom: a linear function of LPS position (mm), small enough for int16 at 1/64 steps."""
    return 0.5 * p[..., 0] + 0.3 * p[..., 1] + 0.7 * p[..., 2] + 100.0


def _dataset(rows: int, cols: int, **fields) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = fields.pop("sop_class", "1.2.840.10008.5.1.4.1.1.2")
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SeriesInstanceUID = fields.pop("series_uid", "1.2.3.4")
    ds.SeriesNumber = fields.pop("number", 3)
    ds.SeriesDescription = fields.pop("description", "AX")
    ds.PatientName = "Doe^Jane"
    ds.Modality = fields.pop("modality", "CT")
    ds.Rows, ds.Columns = rows, cols
    bits = fields.pop("bits", 16)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
    ds.PixelRepresentation = fields.pop("signed", 1)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = fields.pop("photometric", "MONOCHROME2")
    for key, value in fields.items():
        setattr(ds, key, value)
    return ds


def _bytes(ds: FileDataset, pixels: np.ndarray) -> bytes:
    ds.PixelData = pixels.astype("<i2" if ds.PixelRepresentation else "<u2").tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _phantom_plane(position, orientation, spacing, rows, cols) -> np.ndarray:
    """Stored values [row, column] of the phantom on one slice."""
    row_dir, col_dir = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    j, i = np.mgrid[0:rows, 0:cols]
    centres = np.asarray(position) + i[..., None] * spacing[1] * row_dir + j[..., None] * spacing[0] * col_dir
    return np.round(f_lps(centres) * SCALE)


def _slice(position, orientation=AXIAL, spacing=(0.8, 0.6), rows=6, cols=4, **fields) -> bytes:
    ds = _dataset(rows, cols, **fields)
    ds.ImagePositionPatient = [float(x) for x in position]
    ds.ImageOrientationPatient = [float(x) for x in orientation]
    ds.PixelSpacing = list(spacing)
    ds.RescaleSlope, ds.RescaleIntercept = 1 / SCALE, 0
    return _bytes(ds, _phantom_plane(position, orientation, spacing, rows, cols))


def _write(folder: Path, slices: list[bytes], order=None) -> Path:
    folder.mkdir(exist_ok=True)
    for n, k in enumerate(order if order is not None else range(len(slices))):
        (folder / f"file{n:03d}.dcm").write_bytes(slices[k])
    return folder


def assert_phantom(vol, valid=None, atol=1.0 / SCALE):
    """Every voxel (or those in `valid`) holds the phantom's value at its world position."""
    idx = np.indices(vol.shape).reshape(vol.ndim, -1).T
    homog = np.concatenate([idx, np.zeros((len(idx), 3 - vol.ndim)), np.ones((len(idx), 1))], axis=1)
    ras = homog @ vol.affine.T
    lps = ras[:, :3] * np.array([-1.0, -1.0, 1.0])
    expected = f_lps(lps).reshape(vol.shape)
    mask = np.ones(vol.shape, bool) if valid is None else valid
    np.testing.assert_allclose(vol.data[mask], expected[mask], atol=atol)


def rotation(axis, degrees) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = math.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * k @ k


# ----------------------------------------------------------------------------- written series


def test_oblique_series_in_shuffled_files_matches_the_phantom(tmp_path):
    r = rotation((1, 2, 3), 25)
    orientation = (*r[:, 0], *r[:, 1])
    normal = r[:, 2]
    start = np.array([-10.0, 5.0, 20.0])
    slices = [_slice(start + 1.5 * k * normal, orientation) for k in range(7)]
    vol = load_volume(_write(tmp_path / "obl", slices, order=[3, 0, 6, 1, 5, 2, 4]))
    assert vol.shape == (4, 6, 7) and vol.warnings == ()
    np.testing.assert_allclose(vol.spacing, (0.6, 0.8, 1.5))
    assert_phantom(vol)


def test_gantry_tilt_is_corrected_onto_an_orthogonal_grid(tmp_path):
    tilt = 20.0
    c, s = math.cos(math.radians(tilt)), math.sin(math.radians(tilt))
    orientation = (1, 0, 0, 0, c, -s)  # the gantry tilts about the patient's left-right axis
    rows, cols, spacing, dz = 8, 10, (1.0, 1.0), 2.5
    positions = [np.array([-4.0, -6.0, -5.0 + k * dz]) for k in range(6)]  # the table moves along z
    slices = [_slice(p, orientation, spacing, rows, cols) for p in positions]
    vol = load_volume(_write(tmp_path / "tilt", slices, order=[5, 4, 3, 2, 1, 0]))
    (warning,) = vol.warnings
    assert "tilted 20.0\N{DEGREE SIGN}" in warning and "orthogonal" in warning
    columns = vol.affine[:3, :3] / np.linalg.norm(vol.affine[:3, :3], axis=0)
    np.testing.assert_allclose(columns.T @ columns, np.eye(3), atol=1e-9)  # orthogonal grid
    np.testing.assert_allclose(vol.spacing[2], dz * c)  # slice distance along the normal
    # Where a voxel's world point lies inside its original slice, it holds the phantom exactly.
    idx = np.indices(vol.shape).reshape(3, -1).T
    lps = (np.c_[idx, np.ones(len(idx))] @ vol.affine.T)[:, :3] * [-1, -1, 1]
    rel = lps - np.array([positions[k] for k in idx[:, 2]])
    src_i, src_j = rel @ np.array([1.0, 0, 0]), rel @ np.array([0, c, -s])
    inside = (src_i >= -1e-6) & (src_i <= cols - 1 + 1e-6) & (src_j >= -1e-6) & (src_j <= rows - 1 + 1e-6)
    outside = (src_i < -1) | (src_i > cols) | (src_j < -1) | (src_j > rows)
    assert inside.sum() >= rows * cols * len(positions) * 0.7 and outside.any()
    assert_phantom(vol, inside.reshape(vol.shape))
    np.testing.assert_array_equal(vol.data[outside.reshape(vol.shape)], vol.data.min())


def _loc_slice(normal_axis: int, offset: float, **fields) -> bytes:
    orientation = {0: (0, 1, 0, 0, 0, -1), 1: (1, 0, 0, 0, 0, -1), 2: AXIAL}[normal_axis]
    position = np.zeros(3)
    position[normal_axis] = offset
    return _slice(position, orientation, **fields)


@pytest.mark.parametrize(
    "planes, expected",
    [((2, 2, 0, 0), "2 different planes"), ((2, 1, 0), "3 different planes")],
)
def test_localiser_is_refused_naming_the_series(tmp_path, planes, expected):
    slices = [_loc_slice(axis, 3.0 * n, number=3, description="LOC") for n, axis in enumerate(planes)]
    upload = tmp_path / "loc.zip"
    with zipfile.ZipFile(upload, "w") as z:
        for n, raw in enumerate(slices):
            z.writestr(f"IM{n}", raw)
    with pytest.raises(InputError) as err:
        load_volume(upload)
    message = str(err.value)
    assert (
        message
        == f"loc.zip: series 3 'LOC': the slices lie in {expected} (a localiser?); open a series of parallel slices"
    )
    assert "Doe" not in message


def test_radial_series_is_refused(tmp_path):
    slices = []
    for angle in range(0, 180, 30):  # six planes turned about the patient's head-foot axis
        a = math.radians(angle)
        slices.append(_slice((0, 0, 0), (math.cos(a), math.sin(a), 0, 0, 0, -1), number=7, description="RADIAL"))
    with pytest.raises(InputError, match=r"series 7 'RADIAL': the slices lie in 6 planes turned about one axis"):
        load_volume(_write(tmp_path / "radial", slices))


def test_parallel_slices_turned_within_their_plane_are_refused(tmp_path):
    slices = [_slice((0, 0, 2.0 * k), AXIAL if k % 2 else (0, 1, 0, -1, 0, 0)) for k in range(4)]
    with pytest.raises(InputError, match="parallel but turned differently within their plane"):
        load_volume(_write(tmp_path / "turned", slices))


def test_mismatched_slice_sizes_and_two_series(tmp_path):
    slices = [_slice((0, 0, 0)), _slice((0, 0, 2.0), rows=5)]
    with pytest.raises(InputError, match=r"^sizes: series 3 'AX': the slices differ in size \(6 x 4 in file000"):
        load_volume(_write(tmp_path / "sizes", slices))
    two = [_slice((0, 0, 0)), _slice((0, 0, 2.0)), _slice((0, 0, 0), series_uid="9.9", number=4, description="COR")]
    with pytest.raises(InputError, match=r"^two: holds 2 DICOM series \(series 3 'AX', series 4 'COR'\)"):
        load_volume(_write(tmp_path / "two", two))


@pytest.mark.parametrize(
    "zs, message",
    [
        ([0, 0, 2, 2, 4, 4], "duplicated positions: 2 images at each of 3 positions"),
        ([0, 2, 4, 4.5, 6.5, 8.5], r"unevenly spaced \(steps from 0.50 to 2.00 mm\)"),
    ],
)
def test_bad_spacing_is_refused(tmp_path, zs, message):
    with pytest.raises(InputError, match=message):
        load_volume(_write(tmp_path / "s", [_slice((0, 0, z)) for z in zs]))


def test_slightly_uneven_spacing_is_a_warning(tmp_path):
    vol = load_volume(_write(tmp_path / "s", [_slice((0, 0, z)) for z in (0, 2, 4.1, 6, 8)]))
    (warning,) = vol.warnings
    assert "spacing varies" in warning and "regular 2.000 mm grid" in warning
    np.testing.assert_allclose(vol.spacing[2], 2.0)


def test_non_image_files_in_a_series_are_reported(tmp_path):
    folder = _write(tmp_path / "s", [_slice((0, 0, 2.0 * k)) for k in range(3)])
    (folder / "notes.txt").write_text("scanner notes")
    vol = load_volume(folder)
    assert vol.warnings == ("s: skipped 1 file that is not a DICOM image (notes.txt)",)


# ----------------------------------------------------------------------------- enhanced multi-frame


def _enhanced(positions, orientation, spacing=(0.7, 0.9), rows=5, cols=6, slopes=None, per_spacing=None, **fields):
    """An Enhanced MR file: orientation and spacing shared, position and rescale per frame."""
    ds = _dataset(rows, cols, sop_class="1.2.840.10008.5.1.4.1.1.4.1", modality="MR", **fields)
    ds.NumberOfFrames = len(positions)
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = list(spacing)
    measures.SliceThickness = 1.0
    plane = Dataset()
    plane.ImageOrientationPatient = [float(x) for x in orientation]
    shared.PlaneOrientationSequence = Sequence([plane])
    if per_spacing is None:
        shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per, planes = [], []
    slopes = slopes or [1 / SCALE] * len(positions)
    for k, p in enumerate(positions):
        item, pos, value = Dataset(), Dataset(), Dataset()
        pos.ImagePositionPatient = [float(x) for x in p]
        item.PlanePositionSequence = Sequence([pos])
        value.RescaleSlope, value.RescaleIntercept, value.RescaleType = slopes[k], 0, "US"
        item.PixelValueTransformationSequence = Sequence([value])
        if per_spacing is not None:
            m = Dataset()
            m.PixelSpacing = list(per_spacing[k])
            item.PixelMeasuresSequence = Sequence([m])
        per.append(item)
        f = _phantom_plane(p, orientation, spacing, rows, cols) / SCALE
        planes.append(np.round(f / slopes[k]))
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    return _bytes(ds, np.stack(planes))


def test_enhanced_mr_per_frame_positions_order_and_rescale(tmp_path):
    r = rotation((0.2, 1, 0.1), 70)  # near-sagittal
    orientation, normal = (*r[:, 0], *r[:, 1]), r[:, 2]
    start = np.array([3.0, -8.0, 12.0])
    order = [4, 1, 7, 0, 3, 6, 2, 5]  # frames stored out of order
    positions = [start + 1.2 * k * normal for k in order]
    slopes = [1 / SCALE if k % 2 else 2 / SCALE for k in range(len(order))]  # per-frame rescale
    (tmp_path / "emr.dcm").write_bytes(_enhanced(positions, orientation, slopes=slopes))
    vol = load_volume(tmp_path / "emr.dcm")
    assert vol.shape == (6, 5, 8) and vol.warnings == ()
    np.testing.assert_allclose(vol.spacing, (0.9, 0.7, 1.2))
    assert_phantom(vol, atol=2 / SCALE)
    info = probe_volume(tmp_path / "emr.dcm")
    assert (info.ndim, info.shape, info.n_volumes) == (3, (6, 5, 8), 1)


def test_enhanced_localiser_and_corrupt_enhanced_files(tmp_path):
    positions = [(0, 0, 0), (0, 0, 2), (0, 0, 4)]
    raw = _enhanced(positions, AXIAL, number=9, description="3PLANE")
    ds = pydicom.dcmread(io.BytesIO(raw))
    sagittal = Dataset()
    sagittal.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.PerFrameFunctionalGroupsSequence[2].PlaneOrientationSequence = Sequence([sagittal])
    ds.save_as(tmp_path / "loc.dcm")
    with pytest.raises(InputError, match=r"^loc\.dcm: series 9 '3PLANE': the slices lie in 2 different planes"):
        load_volume(tmp_path / "loc.dcm")
    (tmp_path / "spacing.dcm").write_bytes(
        _enhanced(positions, AXIAL, per_spacing=[(0.7, 0.9), (0.7, 0.9), (0.5, 0.5)])
    )
    with pytest.raises(InputError, match=r"the slices differ in pixel spacing \(0.7 x 0.9 mm in frame 1, 0.5 x 0.5"):
        load_volume(tmp_path / "spacing.dcm")
    ds = pydicom.dcmread(io.BytesIO(raw))
    ds.NumberOfFrames = 4
    ds.PixelData = ds.PixelData + ds.PixelData[: len(ds.PixelData) // 3]
    ds.save_as(tmp_path / "count.dcm")
    with pytest.raises(
        InputError, match=r"^count\.dcm: series 9 '3PLANE': the file says it has 4 frames but describes 3"
    ):
        load_volume(tmp_path / "count.dcm")


# ----------------------------------------------------------------------------- real files


def test_rt_dose_is_a_volume_spaced_by_grid_frame_offsets():
    path = shipped(PYDICOM_DATA, "rtdose.dcm")
    vol = load_volume(path)
    assert vol.shape == (10, 10, 15)
    # By hand from the header: IPP (189.43125, 199.43125, -761.87) LPS, 10 mm pixels, offsets 0, 5, ..., 70.
    expected = np.diag([-10.0, -10.0, 5.0, 1.0])
    expected[:3, 3] = (-189.43125, -199.43125, -761.87)
    np.testing.assert_allclose(vol.affine, expected)
    stored = np.frombuffer(pydicom.dcmread(path).PixelData, "<u4").reshape(15, 10, 10)
    np.testing.assert_allclose(vol.data, stored.transpose(2, 1, 0) * 1e-6, rtol=1e-6)  # DoseGridScaling, Gy


def test_rt_dose_with_absolute_offsets_and_its_corruptions(tmp_path):
    ds = pydicom.dcmread(shipped(PYDICOM_DATA, "rtdose.dcm"))
    ds.GridFrameOffsetVector = [-761.87 + 5 * k for k in range(15)]  # the z-coordinate form
    ds.save_as(tmp_path / "absolute.dcm")
    np.testing.assert_allclose(load_volume(tmp_path / "absolute.dcm").affine[:3, 3], (-189.43125, -199.43125, -761.87))
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.save_as(tmp_path / "coronal.dcm")
    with pytest.raises(InputError, match="allows only for axial dose grids"):
        load_volume(tmp_path / "coronal.dcm")
    ds = pydicom.dcmread(shipped(PYDICOM_DATA, "rtdose.dcm"))
    ds.PixelData = ds.PixelData[:4000]
    ds.save_as(tmp_path / "cut.dcm")
    with pytest.raises(InputError) as err:
        load_volume(tmp_path / "cut.dcm")
    assert str(err.value) == (
        "cut.dcm: the pixel data holds 4,000 bytes, but 15 frames of 10 x 10 need 6,000; the file is truncated or corrupt"
    )


def test_philips_enhanced_mprage_geometry_matches_nibabel_and_each_frame_position(tmp_path):
    raw = gzip.decompress(shipped(NIBABEL_DICOM, "philips_mprage.dcm.gz").read_bytes())
    (tmp_path / "mprage.dcm").write_bytes(raw)
    vol = load_volume(tmp_path / "mprage.dcm")
    assert vol.shape == (256, 256, 176)
    np.testing.assert_allclose(vol.spacing, (1.0, 1.0, 1.0), atol=1e-5)
    ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)
    lps_to_ras = np.array([-1.0, -1.0, 1.0])
    frame_positions = np.array(
        [
            [float(x) for x in f.PlanePositionSequence[0].ImagePositionPatient]
            for f in ds.PerFrameFunctionalGroupsSequence
        ]
    )
    corners = vol.affine @ np.array([[0, 0, k, 1.0] for k in range(176)]).T
    # Every frame's own ImagePositionPatient is the first pixel of exactly one slice.
    distances = np.linalg.norm(corners[:3].T[:, None] - frame_positions[None] * lps_to_ras, axis=2)
    assert np.all(distances.min(axis=1) < 1e-3) and len(set(distances.argmin(axis=1))) == 176
    # nibabel's own multi-frame reader (LPS, voxel order row, column, slice) places the same 8 corners.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel calls its DICOM readers experimental
        from nibabel.nicom import dicomwrappers

        theirs = dicomwrappers.wrapper_from_data(pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)).affine
    ours = [vol.affine @ [i, j, k, 1.0] for i in (0, 255) for j in (0, 255) for k in (0, 175)]
    nib_corners = [
        np.r_[(theirs @ [j, i, k, 1.0])[:3] * lps_to_ras, 1] for i in (0, 255) for j in (0, 255) for k in (0, 175)
    ]
    assert max(min(np.linalg.norm(a - b) for b in nib_corners) for a in ours) < 0.01  # mm, 255 voxels out


def test_ct_slice_alone_is_a_2d_image_in_hounsfield_units():
    path = shipped(PYDICOM_DATA, "CT_small.dcm")
    ds = pydicom.dcmread(path)
    vol = load_volume(path)
    assert vol.ndim == 2 and vol.shape == (128, 128)
    stored = np.frombuffer(ds.PixelData, "<i2").reshape(128, 128)
    np.testing.assert_allclose(vol.data, stored.T * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    ipp = [float(x) for x in ds.ImagePositionPatient]
    np.testing.assert_allclose(vol.affine[:3, 3], (-ipp[0], -ipp[1], ipp[2]))
    np.testing.assert_allclose(vol.spacing, [float(s) for s in ds.PixelSpacing][::-1])


@pytest.mark.parametrize(
    "name, message",
    [
        ("examples_palette.dcm", "PALETTE COLOR image holds colour-table indices"),
        ("examples_ybr_color.dcm", r"a colour \(YBR_FULL_422\) volume"),
        ("MR_small_jpeg_ls_lossless.dcm", r"cannot decode the pixel data \(transfer syntax JPEG-LS Lossless"),
        ("MR_truncated.dcm", "the pixel data holds 8,130 bytes, but 1 frame of 64 x 64 need 8,192"),
        ("rtstruct.dcm", "a DICOM file without an image"),
    ],
)
def test_real_files_that_cannot_be_shown_give_one_sentence(name, message):
    with pytest.raises(InputError, match=f"^{name.replace('.', '[.]')}: .*{message}") as err:
        load_volume(shipped(PYDICOM_DATA, name))
    assert "\n" not in str(err.value)


def test_real_rgb_ultrasound_becomes_luminance():
    path = shipped(PYDICOM_DATA, "examples_rgb_color.dcm")
    rgb = np.frombuffer(pydicom.dcmread(path).PixelData, np.uint8).reshape(240, 320, 3).astype(np.float64)
    vol = load_volume(path)
    np.testing.assert_allclose(vol.data, (rgb @ [0.299, 0.587, 0.114]).T, rtol=1e-5)
    assert any("converted to luminance" in w for w in vol.warnings)


# ----------------------------------------------------------------------------- radiographs


def _radiograph(photometric="MONOCHROME2", **fields) -> bytes:
    ds = _dataset(2, 3, sop_class="1.2.840.10008.5.1.4.1.1.1", modality="CR", bits=12, signed=0, **fields)
    ds.PhotometricInterpretation = photometric
    return _bytes(ds, np.array([[0, 100, 4095], [7, 2048, 1]]))


def test_monochrome1_is_inverted_over_the_rescaled_stored_range(tmp_path):
    stored = np.array([[0, 100, 4095], [7, 2048, 1]], dtype=float)
    (tmp_path / "m2.dcm").write_bytes(_radiograph("MONOCHROME2", RescaleSlope=2, RescaleIntercept=-100))
    (tmp_path / "m1.dcm").write_bytes(_radiograph("MONOCHROME1", RescaleSlope=2, RescaleIntercept=-100))
    m2, m1 = load_volume(tmp_path / "m2.dcm"), load_volume(tmp_path / "m1.dcm")
    np.testing.assert_array_equal(m2.data, (2 * stored - 100).T)
    # 12-bit unsigned range [0, 4095] rescales to [-100, 8090]; v' = -100 + 8090 - v = 8090 - 2 s.
    np.testing.assert_array_equal(m1.data, (8090 - 2 * stored).T)
    assert m1.data[2, 0] == -100 and m1.data[0, 0] == 8090  # stored maximum -> darkest, stored 0 -> brightest
    assert any("MONOCHROME1" in w for w in m1.warnings) and not any("MONOCHROME1" in w for w in m2.warnings)


def test_radiograph_pixel_spacing_and_patient_orientation(tmp_path):
    (tmp_path / "cal.dcm").write_bytes(
        _radiograph(PixelSpacing=[0.18, 0.14], ImagerPixelSpacing=[0.2, 0.15], PatientOrientation=["L", "F"])
    )
    vol = load_volume(tmp_path / "cal.dcm")
    assert vol.shape == (3, 2)
    # i along a row goes to the patient's left (RAS -x) by the column spacing; j down the rows to the feet.
    np.testing.assert_allclose(vol.affine[:3, :2], [[-0.14, 0], [0, 0], [0, -0.18]])
    assert not any("spacing" in w.lower() or "orientation" in w for w in vol.warnings)
    (tmp_path / "det.dcm").write_bytes(_radiograph(ImagerPixelSpacing=[0.2, 0.15]))
    vol = load_volume(tmp_path / "det.dcm")
    np.testing.assert_allclose(vol.spacing, (0.15, 0.2))
    assert any("detector's ImagerPixelSpacing" in w and "overstated" in w for w in vol.warnings)
    assert any("no patient orientation" in w for w in vol.warnings)
    (tmp_path / "mag.dcm").write_bytes(
        _radiograph(ImagerPixelSpacing=[0.2, 0.15], EstimatedRadiographicMagnificationFactor=1.25)
    )
    vol = load_volume(tmp_path / "mag.dcm")
    np.testing.assert_allclose(vol.spacing, (0.12, 0.16))
    assert any("magnification factor 1.25" in w for w in vol.warnings)


# ----------------------------------------------------------------------------- quiet readers


def test_pydicom_messages_become_warnings_not_log_lines(capfd, caplog):
    path = shipped(PYDICOM_DATA, "MR_small_padded.dcm")
    with pytest.warns(UserWarning, match="excess padding"):  # positive control: pydicom does warn
        assert pydicom.dcmread(path).pixel_array.shape == (64, 64)
    capfd.readouterr()
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            vol = load_volume(path)
    assert caught == [] and caplog.records == []
    assert capfd.readouterr() == ("", "")
    assert vol.ndim == 2 and any("excess padding" in w for w in vol.warnings)
