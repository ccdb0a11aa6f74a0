"""viewer/: windowing, colour maps, display copies, slice orientation, figures. numpy only, no torch."""

from __future__ import annotations

import gzip
import subprocess
import sys

import numpy as np

from tests.conftest import ROOT
from viewer.colormap import NAMES, blend, lut
from viewer.display import anatomy_int16, cam_uint8, publish_anatomy, publish_cam
from viewer.figures import cam_3d, montage, plane_slice, probability_bars, views_png
from viewer.windowing import CT_PRESETS, apply_window, auto_window, default_window


def test_viewer_never_imports_torch_or_explain():
    code = (
        "import sys, viewer.windowing, viewer.colormap, viewer.display, viewer.figures, viewer.publish, "
        "viewer.status, viewer.nifti, viewer.component; "
        "print(any(m == 'torch' or m.startswith(('torch.', 'explain')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ct_presets_and_window_mapping():
    assert CT_PRESETS["CT brain"] == (80.0, 40.0) and CT_PRESETS["CT lung"] == (1500.0, -600.0)
    grey = apply_window(np.array([0.0, 40.0, 80.0, -1000.0, 3000.0]), 80.0, 40.0)
    np.testing.assert_array_equal(grey, [0, 127, 255, 0, 255])
    ct = np.full((20, 20, 20), -1000.0)
    ct[5:15, 5:15, 5:15] = 40
    assert default_window(ct)[0] == "CT soft tissue"
    mr = np.random.default_rng(0).uniform(0, 500, (20, 20, 20))
    preset, width, level = default_window(mr)
    assert preset == "MR auto" and (width, level) == auto_window(mr) and 0 < level < 500


def test_colour_maps_put_high_importance_at_the_hot_end():
    for name in NAMES:
        table = lut(name).astype(float)
        luminance = table @ [0.299, 0.587, 0.114]
        assert table.shape == (256, 3) and luminance[-1] > luminance[0] + 100, name
    rgb = blend(np.full((2, 2), 100, np.uint8), np.array([[0.0, 0.1], [0.5, 1.0]]), "hot", 1.0, 0.2)
    assert tuple(rgb[0, 0]) == (100, 100, 100) and tuple(rgb[0, 1]) == (100, 100, 100)  # below threshold
    assert tuple(rgb[1, 1]) == (255, 255, 255)


def test_display_copies_are_compact_and_exact(tmp_path):
    ct = np.random.default_rng(0).integers(-1024, 3000, (8, 9, 10)).astype(np.float32)
    stored, scale, offset = anatomy_int16(ct)
    assert stored.dtype == np.int16 and (scale, offset) == (1.0, 0.0)
    np.testing.assert_array_equal(stored, ct)
    mr = np.random.default_rng(1).uniform(0, 1, (8, 9, 10)).astype(np.float32)
    stored, scale, offset = anatomy_int16(mr)
    np.testing.assert_allclose(stored * scale + offset, mr, atol=scale)
    published = publish_anatomy(ct, "k1", tmp_path)
    raw = gzip.decompress((tmp_path / "cv" / published.url.rsplit("/", 1)[1]).read_bytes())
    back = np.frombuffer(raw, np.int16).reshape(10, 9, 8).transpose(2, 1, 0)  # i fastest in the file
    np.testing.assert_array_equal(back, ct)
    again = publish_anatomy(ct, "k1", tmp_path)
    assert again.url == published.url  # once per content key
    cam = np.linspace(0, 1, 8 * 9 * 10).reshape(8, 9, 10)
    assert cam_uint8(cam).max() == 255 and publish_cam(cam, "c1", tmp_path).dtype == "uint8"


def test_plane_slices_follow_radiological_convention():
    vol = np.zeros((4, 5, 6))
    vol[0, 4, 5] = 1  # i=0 is the patient's left-most column (RAS: +x = right); j=4 anterior; k=5 superior
    axial = plane_slice(vol, "axial", 5, radiological=True)
    assert axial.shape == (5, 4) and axial[0, -1] == 1  # anterior row on top; patient's left on screen right
    assert plane_slice(vol, "axial", 5, radiological=False)[0, 0] == 1
    coronal = plane_slice(vol, "coronal", 4, radiological=True)
    assert coronal[0, -1] == 1  # superior on top
    sagittal = plane_slice(vol, "sagittal", 0)
    assert sagittal[0, 0] == 1  # superior on top, anterior on the left


def test_figures_build():
    anatomy = np.random.default_rng(0).uniform(0, 100, (12, 14, 10))
    cam = np.zeros_like(anatomy)
    cam[4:8, 4:8, 3:6] = 1.0
    assert len(probability_bars(["a", "b"], np.array([0.3, 0.7]), 1).data) == 1
    assert len(montage(anatomy, [("l1", cam), ("l2", cam * 0.5)], "axial", 4, (100, 50)).data) == 2
    fig = cam_3d(anatomy, cam, (1.0, 1.0, 2.0), threshold=0.5)
    assert [t.name for t in fig.data] == ["outline", "CAM"]
    png = views_png(anatomy, cam, [5, 6, 4], (1.0, 1.0, 2.0), (100, 50), title="t")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
