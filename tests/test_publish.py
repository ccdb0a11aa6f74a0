"""viewer.publish / viewer.nifti / viewer.status: what the browser is given, checked against nibabel and numpy."""

from __future__ import annotations

import gzip
import json

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import SAMPLE
from viewer.nifti import read_layout
from viewer.publish import (
    gunzip_published,
    map_uint8,
    prune,
    publish_labels,
    publish_map,
    publish_nifti,
    publish_volume,
)
from viewer.status import pending_map, read_status, status_url, write_status


def _voxels(static_root, published) -> np.ndarray:
    raw = gunzip_published(static_root, published)
    dtype = np.dtype(published.dtype).newbyteorder(published.endian)
    count = int(np.prod(published.shape))
    return np.frombuffer(raw, dtype, count=count, offset=published.offset).reshape(published.shape, order="F")


def test_sample_nifti_header_matches_nibabel():
    raw = (SAMPLE / "case_brain" / "t1_lesions.nii.gz").read_bytes()
    layout = read_layout(raw)
    image = nib.load(SAMPLE / "case_brain" / "t1_lesions.nii.gz")
    assert (layout.dtype, layout.shape, layout.offset, layout.gzipped) == ("float32", image.shape, 352, True)
    np.testing.assert_allclose(layout.affine, image.affine)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("gz", [True, False])
def test_qform_scaling_big_endian_and_2d(tmp_path, version, gz):
    rng = np.random.default_rng(version)
    data = rng.integers(-1000, 2000, (5, 6, 7)).astype(">i2")
    cls = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    angle = np.deg2rad(25)
    affine = np.array(
        [[np.cos(angle), -np.sin(angle), 0, 10], [np.sin(angle), np.cos(angle), 0, -5], [0, 0, 2.5, 3], [0, 0, 0, 1]]
    )
    image = cls(data, affine, header=cls.header_class(endianness=">"))
    image.header.set_sform(None, code=0)
    image.header.set_qform(affine, code=1)
    image.set_data_dtype(np.int16)
    image.header.set_slope_inter(0.5, -10)
    raw = image.to_bytes()
    if gz:
        raw = gzip.compress(raw)
    layout = read_layout(raw)
    reread = cls.from_bytes(image.to_bytes())
    np.testing.assert_allclose(layout.affine, reread.affine, atol=1e-5)
    assert (layout.endian, layout.dtype, layout.scale, layout.inter) == (">", "int16", 0.5, -10.0)
    published = publish_nifti(raw, tmp_path, f"case-{version}-{gz}")
    stored = _voxels(tmp_path, published)
    np.testing.assert_array_equal(stored, reread.dataobj.get_unscaled())
    np.testing.assert_allclose(stored * layout.scale + layout.inter, np.asarray(reread.dataobj))
    flat = cls(rng.integers(0, 9, (4, 3, 1)).astype(np.uint8), np.eye(4))
    assert read_layout(flat.to_bytes()).shape == (4, 3)


def test_files_streamlit_would_not_serve_are_refused(tmp_path, monkeypatch):
    import viewer.publish as publish

    monkeypatch.setattr(publish, "MAX_STATIC_BYTES", 1000)
    big = nib.Nifti1Image(np.random.default_rng(0).random((20, 20, 20)).astype(np.float32), np.eye(4))
    assert publish_nifti(big.to_bytes(), tmp_path, "big") is None  # the caller makes a compact copy instead
    with pytest.raises(publish.FileTooLarge, match="200 MB"):
        publish_volume(np.random.default_rng(1).random((20, 20, 20)), np.eye(4), tmp_path, "big-copy")
    assert not list((tmp_path / "cv").glob("*.gz"))


def test_unreadable_types_fall_back(tmp_path):
    wide = nib.Nifti1Image(np.zeros((3, 3, 3), np.int64), np.eye(4), dtype=np.int64)
    assert publish_nifti(wide.to_bytes(), tmp_path, "int64") is None
    with pytest.raises(ValueError, match="not a NIfTI"):
        read_layout(b"\x00" * 400)


def test_compact_copies_are_exact_or_within_half_a_step(tmp_path):
    ct = np.random.default_rng(0).integers(-1024, 3000, (8, 9, 10)).astype(np.float32)
    p = publish_volume(ct, np.eye(4), tmp_path, "ct")
    assert p.dtype == "int16" and (p.scale, p.inter) == (1.0, 0.0)
    np.testing.assert_array_equal(_voxels(tmp_path, p), ct)
    labels = np.random.default_rng(1).integers(0, 200, (8, 9))  # a 2D image fits uint8
    p2 = publish_volume(labels, np.eye(4), tmp_path, "2d")
    assert p2.dtype == "uint8" and p2.shape == (8, 9)
    np.testing.assert_array_equal(_voxels(tmp_path, p2), labels)
    mr = np.random.default_rng(2).uniform(0, 1, (8, 9, 10)).astype(np.float32)
    p3 = publish_volume(mr, np.eye(4), tmp_path, "mr")
    np.testing.assert_allclose(_voxels(tmp_path, p3) * p3.scale + p3.inter, mr, atol=p3.scale / 2 + 1e-7)
    with pytest.raises(ValueError, match="2D or 3D"):
        publish_volume(np.zeros((2, 2, 2, 2)), np.eye(4), tmp_path, "4d")
    with pytest.raises(ValueError, match="singular"):
        publish_volume(mr, np.diag([1, 0, 1, 1.0]), tmp_path, "bad")


def test_maps_are_uint8_of_their_peak_and_small(tmp_path):
    values = np.array([[[-1.0, 0.0], [0.5, 2.0]]])
    stored, peak = map_uint8(values)
    assert peak == 2.0 and stored.tolist() == [[[0, 0], [64, 255]]]
    assert map_uint8(np.zeros((2, 2, 2)))[1] == 0.0
    # A realistic map on a 96^3 model grid: smooth, one peak. Must stay well under 1 MB on the wire.
    grid = np.indices((96, 96, 96)).astype(np.float32)
    smooth = np.exp(-(((grid - 40) ** 2).sum(0)) / 400) + 0.3 * np.exp(-(((grid - 70) ** 2).sum(0)) / 900)
    p = publish_map(smooth, np.diag([2, 2, 2, 1.0]), tmp_path, "m96")
    assert p.shape == (96, 96, 96) and p.nbytes < 1_000_000 and p.peak == pytest.approx(float(smooth.max()))
    assert p.to_dict()["peak"] == p.peak


def test_labels_and_pruning(tmp_path):
    with pytest.raises(ValueError, match="0..255"):
        publish_labels(np.full((2, 2, 2), 300), np.eye(4), tmp_path, "big")
    p = publish_labels(np.ones((4, 4, 4), np.uint8), np.eye(4), tmp_path, "ok")
    assert _voxels(tmp_path, p).sum() == 64
    for n in range(5):
        publish_volume(np.random.default_rng(n).integers(0, 30000, (20, 20, 20)), np.eye(4), tmp_path, f"v{n}")
    folder = tmp_path / "cv"
    prune(folder, budget=40_000)
    assert sum(f.stat().st_size for f in folder.glob("*.gz")) <= 40_000


def test_status_protocol(tmp_path):
    entry = pending_map(tmp_path, "k1", "Grad-CAM")
    assert (
        entry == {"title": "Grad-CAM", "key": "k1", "status_url": status_url("k1")}
        and read_status(tmp_path, "k1")["stage"] == "queued"
    )
    write_status(tmp_path, "k1", "gradients", "layer 3 of 4")
    pending_map(tmp_path, "k1", "Grad-CAM")  # does not reset a running computation
    assert read_status(tmp_path, "k1") == {"stage": "gradients", "message": "layer 3 of 4"}
    with pytest.raises(ValueError, match="stage"):
        write_status(tmp_path, "k1", "thinking")
    with pytest.raises(ValueError, match="published map"):
        write_status(tmp_path, "k1", "done")
    published = publish_map(np.ones((2, 2, 2)), np.eye(4), tmp_path, "k1")
    write_status(tmp_path, "k1", "done", map=published)
    done = json.loads((tmp_path / "cv" / status_url("k1").rsplit("/", 1)[1]).read_text())
    assert done["stage"] == "done" and done["map"]["url"] == published.url and done["map"]["peak"] == 1.0
    assert not list((tmp_path / "cv").glob(".*tmp"))


def test_payload_is_small_and_names_every_array(tmp_path):
    from viewer.component import camviewer_payload

    anatomy = publish_nifti((SAMPLE / "case_brain" / "t1_lesions.nii.gz").read_bytes(), tmp_path, "s")
    maps = [
        (f"map {n}", publish_map(np.random.default_rng(n).random((8, 8, 8)), np.eye(4), tmp_path, f"m{n}"))
        for n in range(4)
    ]
    mask = publish_labels(np.zeros((4, 4, 4), np.uint8), np.eye(4), tmp_path, "mask")
    payload = camviewer_payload(
        tmp_path, anatomy, maps=maps + [pending_map(tmp_path, "p", "pending")], mask=mask, mask_names={1: "lesion"}
    )
    assert len(json.dumps(payload)) < 10_000
    assert payload["anatomy"]["url"].startswith("app/static/cv/") and payload["mask"]["names"] == {"1": "lesion"}
    assets = tmp_path / "cv" / payload["assets"].rsplit("/", 1)[1]
    assert (assets / "camviewer.js").exists() and (assets / "render3d.js").exists()
    assert (assets / "colourmaps.json").exists()
    with pytest.raises(ValueError, match="colour map"):
        camviewer_payload(tmp_path, anatomy, colourmap="rainbow")


def test_bundle_keeps_lazy_modules_out_and_refuses_what_it_cannot_join(tmp_path):
    from viewer.component.assets import LAZY_MODULES, bundle

    text = bundle()
    assert text.rstrip().endswith("= __cv_main;") and "export const { mount }" in text
    assert not any(f"__cv_{name.removesuffix('.js')} =" in text for name in LAZY_MODULES)
    (tmp_path / "main.js").write_text('import { a } from "./a.js";\nexport function mount() { return a; }\n')
    (tmp_path / "a.js").write_text("export default 1;\n")
    with pytest.raises(ValueError, match="does not understand"):
        bundle(tmp_path)
