"""The page with the models people have: a MONAI bundle uploaded as a .zip, an nnU-Net folder on the server, and the
bundled nnU-Net sample, whose map lands in the lesion (AppTest)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from scipy.ndimage import binary_dilation
from streamlit.testing.v1 import AppTest

from explain.policy import SERVER_MODELS, UPLOAD_MODEL
from tests.bundles import write_bundle
from tests.test_app import _app as app_after_first_run
from tests.test_app import _decode, _payload, _shown_map
from tests.test_hostile_models import nnunet_folder

pytestmark = pytest.mark.filterwarnings("ignore")


def _app(tmp_path, monkeypatch, **env) -> AppTest:
    return app_after_first_run(tmp_path, monkeypatch, timeout=600, **env)  # nnU-Net's preprocessing takes longer


def _overlay_names(at: AppTest) -> dict:
    at.sidebar.checkbox(key="predicted_overlay").check().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    return _payload(at)["mask"]["names"]


def test_a_bundle_upload_shows_its_classes_and_its_segmentation(tmp_path, monkeypatch):
    from tests.test_bundles import _ct

    write_bundle(tmp_path, "spleen")
    archive = shutil.make_archive(str(tmp_path / "spleen_bundle"), "zip", tmp_path, "spleen")
    at = _app(tmp_path, monkeypatch)
    at.sidebar.radio(key="volume_source").set_value("Upload an image").run()
    ct = _ct(tmp_path / "ct.nii.gz", shape=(96, 80, 40)).read_bytes()
    at.sidebar.file_uploader(key="volume_upload").set_value(("ct.nii.gz", ct, "application/octet-stream")).run()
    at.sidebar.radio(key="model_source").set_value(UPLOAD_MODEL).run()
    raw = open(archive, "rb").read()
    at.sidebar.file_uploader(key="model_upload").set_value(("spleen_bundle.zip", raw, "application/zip")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [o.split(" (")[0] for o in at.sidebar.selectbox(key="w_target").options] == ["background", "spleen"]
    assert any("Spleen CT segmentation" in c.value for c in at.sidebar.caption)  # the bundle's metadata
    assert _overlay_names(at) == {"1": "spleen"}


def test_an_nnunet_folder_on_the_server_shows_its_classes_and_its_segmentation(tmp_path, monkeypatch):
    models = tmp_path / "models"
    folder = nnunet_folder(models)
    at = _app(tmp_path, monkeypatch, CAMVIEWER_MODEL_DIR=models)
    at.sidebar.radio(key="model_source").set_value(SERVER_MODELS).run()
    assert at.sidebar.selectbox(key="server_model").options == [folder.name]  # offered by name, never by path
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [o.split(" (")[0] for o in at.sidebar.selectbox(key="w_target").options] == ["background", "lesion"]
    assert _overlay_names(at) == {"1": "lesion"}


def test_the_nnunet_sample_puts_its_map_in_the_lesion(tmp_path, monkeypatch, sample_case, sample_mask):
    at = _app(tmp_path, monkeypatch)
    at.sidebar.radio(key="model_source").set_value("Sample nnU-Net (lesion segmentation)").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.sidebar.selectbox(key="w_method").value == "hirescam"
    for target, name in ((1, "bright lesion"), (2, "dark lesion")):
        at.sidebar.selectbox(key="w_target").set_value(name).run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        shown = _shown_map(at)
        assert shown["title"].endswith(f"· {name}")
        values = _decode(shown["url"], np.uint8).reshape(shown["shape"][::-1]).transpose(2, 1, 0)
        peak = np.array([*np.unravel_index(int(np.argmax(values)), values.shape), 1.0])
        voxel = np.round(np.linalg.inv(sample_case.affine) @ np.asarray(shown["affine"]) @ peak).astype(int)[:3]
        near = binary_dilation(sample_mask == target, iterations=2)
        assert near[tuple(voxel)], f"{name}: the map's peak is at voxel {voxel}, outside the lesion"
    assert _overlay_names(at) == {"1": "bright lesion", "2": "dark lesion"}
