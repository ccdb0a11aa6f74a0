"""The Streamlit app, driven headlessly with AppTest: sample flow, controls, bad uploads, caching."""

from __future__ import annotations

import gzip
import io
import json
import re

import nibabel as nib
import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from explain.policy import UPLOAD_MODEL, UPLOAD_WEIGHTS
from tests.conftest import ROOT, SAMPLE

pytestmark = pytest.mark.filterwarnings("ignore")


def _app(tmp_path, monkeypatch, timeout: int = 300, **env) -> AppTest:
    """The app after its first run, with its state under `tmp_path` and `env` set (deadline per run: `timeout`)."""
    monkeypatch.setenv("CAMVIEWER_STATE_DIR", str(tmp_path / "state"))
    for k, v in env.items():
        monkeypatch.setenv(k, str(v))
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout).run()


def _component(at: AppTest):
    component = [x for x in at.main if getattr(x, "type", None) == "bidi_component"]
    assert component, "the slice viewer is not on the page"
    return component[0]


def _payload(at: AppTest) -> dict:
    return json.loads(_component(at).proto.json)


def _engine_calls(at: AppTest) -> int:
    text = " ".join(c.value for c in at.caption)
    return int(re.search(r"engine calls this server: (\d+)", text).group(1))


def _decode(url: str, dtype) -> np.ndarray:
    raw = gzip.decompress((ROOT / url.removeprefix("app/")).read_bytes())
    return np.frombuffer(raw, dtype=dtype)


def _shown_map(at: AppTest) -> dict:
    """The first map in the viewer's payload: published, or pending (then its status file says where it went)."""
    entry = _payload(at)["maps"][0]
    if "status_url" in entry:
        key = entry["status_url"]
        status = json.loads((ROOT / key.removeprefix("app/")).read_text())
        assert status["stage"] == "done", status
        return {"title": entry["title"], **status["map"]}
    return entry


def test_sample_case_shows_a_map_over_the_lesion(tmp_path, monkeypatch, sample_case, sample_mask):
    at = _app(tmp_path, monkeypatch)
    assert not at.exception and not at.error
    shown = _shown_map(at)
    # The map travels at the model grid (64^3 uint8, well under 1 MB) with the affine placing it in the world.
    assert shown["shape"] == [64, 64, 64] and shown["dtype"] == "uint8" and shown["nbytes"] < 1_000_000
    values = _decode(shown["url"], np.uint8).reshape(shown["shape"][::-1]).transpose(2, 1, 0)  # i fastest
    assert values.max() == 255
    peak = np.array([*np.unravel_index(int(np.argmax(values)), values.shape), 1.0])
    world = np.asarray(shown["affine"]) @ peak if len(shown["affine"]) == 4 else None
    voxel = np.round(np.linalg.inv(sample_case.affine) @ world).astype(int)[:3]
    target = {"bright lesion": 1, "dark lesion": 2}[at.sidebar.selectbox(key="w_target").value]
    assert sample_mask[tuple(voxel)] == target, f"the map's peak lands at voxel {voxel}, not in lesion {target}"
    # The page sends only metadata per rerun: no array is inlined in the payload.
    assert len(_component(at).proto.json) < 40_000


def test_chest_radiograph_opens_with_its_2d_model_and_the_map_is_on_the_nodule(tmp_path, monkeypatch):
    """Opening the 2D sample switches a bundled 3D model to the 2D one; the map's peak is in the nodule mask."""
    from PIL import Image

    at = _app(tmp_path, monkeypatch)
    at.sidebar.radio(key="volume_source").set_value("Sample chest radiograph").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.sidebar.radio(key="model_source").value.startswith("Sample 2D CNN")
    assert any("not a medical device" in c.value for c in at.sidebar.caption)  # the card's description
    shown = _shown_map(at)
    assert shown["title"].endswith("· nodule") and len(shown["shape"]) == 2
    values = _decode(shown["url"], np.uint8).reshape(shown["shape"][::-1]).T  # i (column) fastest
    peak = np.array([*np.unravel_index(int(np.argmax(values)), values.shape), 0.0, 1.0])
    affine = np.asarray(shown["affine"])
    world = affine @ peak if affine.shape == (4, 4) else np.r_[affine[:2, :2] @ peak[:2] + affine[:2, 2], 0.0, 1]
    column, row = np.round(np.linalg.inv(np.diag([-1.0, -1.0, 1.0, 1.0])) @ world).astype(int)[:2]
    mask = np.asarray(Image.open(SAMPLE / "case_chest" / "nodule_mask.png"))  # rows x columns
    assert mask[row, column] == 1, f"the map's peak lands at column {column}, row {row}, outside the nodule"
    at.sidebar.checkbox(key="sample_mask").check().run()
    assert not at.exception and _payload(at)["mask"]["names"] == {"1": "nodule"}
    # The other way round: a 3D model on the radiograph is refused in one sentence, and nothing breaks.
    at.sidebar.radio(key="model_source").set_value("Sample 3D CNN (lesion classifier)").run()
    assert not at.exception and len(at.error) == 1 and "2D" in at.error[0].value


def test_change_method_and_layer(tmp_path, monkeypatch):
    at = _app(tmp_path, monkeypatch)
    methods = at.sidebar.selectbox(key="w_method").options
    assert "Grad-CAM++" in methods and "ViT attention" not in methods  # only valid methods for a CNN
    at.sidebar.selectbox(key="w_method").set_value("gradcampp").run()
    assert not at.exception
    assert "Grad-CAM++" in _shown_map(at)["title"]
    layers = at.sidebar.selectbox(key="w_layer").options
    other = next(option for option in layers if option.startswith("features.block2 "))
    at.sidebar.selectbox(key="w_layer").set_value(other.split()[0]).run()
    assert not at.exception and "features.block2" in _shown_map(at)["title"]


def test_vit_offers_attention_methods(tmp_path, monkeypatch):
    at = _app(tmp_path, monkeypatch)
    at.sidebar.radio(key="model_source").set_value("Sample 3D ViT (lesion classifier)").run()
    assert "ViT rollout" in at.sidebar.selectbox(key="w_method").options
    at.sidebar.selectbox(key="w_method").set_value("vit-rollout").run()
    assert not at.exception and not at.error
    assert "ViT rollout" in _shown_map(at)["title"]


def test_returning_to_an_earlier_choice_does_not_recompute(tmp_path, monkeypatch):
    at = _app(tmp_path, monkeypatch)
    audit_path = tmp_path / "state" / "audit.jsonl"

    def audit_lines() -> list[dict]:
        return [json.loads(line) for line in audit_path.read_text().splitlines()] if audit_path.exists() else []

    first, lines_first = _engine_calls(at), len(audit_lines())
    at.sidebar.selectbox(key="w_method").set_value("layercam").run()
    assert _engine_calls(at) == first + 1
    assert len(audit_lines()) == lines_first + 1  # one line per computation
    at.sidebar.selectbox(key="w_method").set_value("gradcam").run()
    assert _engine_calls(at) == first + 1  # served from the cache
    at.sidebar.selectbox(key="w_method").set_value("layercam").run()
    assert _engine_calls(at) == first + 1
    audit = audit_lines()
    assert len(audit) == lines_first + 1  # cache hits write nothing
    assert {"volume_hash", "model_hash", "method", "layer", "target", "timings_s", "request_key"} <= set(audit[-1])
    assert audit[-1]["method"] == "layercam"
    assert not any("patient" in key.lower() for record in audit for key in record)
    # No file names in the audit log (an upload's name can carry a patient's name): hashes only.
    text = audit_path.read_text()
    assert "t1_lesions" not in text and "cnn.pt2" not in text and ".nii" not in text


def _upload_volume(at: AppTest, name: str, raw: bytes) -> AppTest:
    at.sidebar.radio(key="volume_source").set_value("Upload an image").run()
    at.sidebar.file_uploader(key="volume_upload").set_value((name, raw, "application/octet-stream"))
    return at.run()


def _upload_model(at: AppTest, name: str, raw: bytes, weights: bool = False) -> AppTest:
    source = UPLOAD_WEIGHTS if weights else UPLOAD_MODEL
    at.sidebar.radio(key="model_source").set_value(source).run()
    at.sidebar.file_uploader(key="model_upload").set_value((name, raw, "application/octet-stream"))
    return at.run()


def _shown(markdown: str) -> str:
    """What a reader sees: the page escapes user text for markdown (viewer.text.plain); undo that here."""
    return re.sub(r"\\(.)", r"\1", markdown)


def _errors(at: AppTest) -> str:
    assert not at.exception, at.exception
    return " ".join(_shown(e.value) for e in at.error)


def test_corrupt_volume_upload(tmp_path, monkeypatch):
    at = _app(tmp_path, monkeypatch)
    raw = (SAMPLE / "case_brain" / "t1_lesions.nii.gz").read_bytes()[:5000]
    message = _errors(_upload_volume(at, "scan.nii.gz", raw))
    assert "This image could not be opened" in message and "scan.nii.gz" in message
    assert "Showing the last successful result" in " ".join(i.value for i in at.info)


def test_volume_over_the_limit(tmp_path, monkeypatch):
    at = _app(tmp_path, monkeypatch, CAMVIEWER_MAX_VOXELS=1000)
    buf = io.BytesIO()
    img = nib.Nifti1Image(np.zeros((20, 20, 20), np.float32), np.eye(4))
    buf.write(img.to_bytes())
    message = _errors(_upload_volume(at, "big.nii", buf.getvalue()))
    assert "voxel limit" in message


def test_pickled_model_upload(tmp_path, monkeypatch):
    at = _app(tmp_path, monkeypatch)
    buf = io.BytesIO()
    torch.save(torch.nn.Conv3d(1, 1, 1), buf)
    message = _errors(_upload_model(at, "model.pt", buf.getvalue(), weights=True))
    assert "This model could not be used" in message and "pickled" in message


def test_torchscript_model_upload(tmp_path, monkeypatch):
    at = _app(tmp_path, monkeypatch)
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(torch.nn.Conv3d(1, 1, 1)), buf)
    message = _errors(_upload_model(at, "model.pt2", buf.getvalue()))
    assert "TorchScript" in message and "torch.export" in message


def test_wrong_channel_count(tmp_path, monkeypatch):
    from tests.hostile import TinyNet

    path = tmp_path / "two.pt2"
    torch.export.save(
        torch.export.export(TinyNet(in_channels=2, features=4).eval(), (torch.zeros(1, 2, 16, 16, 16),)), str(path)
    )
    at = _app(tmp_path, monkeypatch)
    message = _errors(_upload_model(at, "two.pt2", path.read_bytes()))
    assert "channel mismatch" in message and "2 input channels" in message


def test_attention_method_on_a_cnn_is_refused_by_the_engine():
    """The app offers only valid methods; the engine itself also refuses, with a sentence."""
    from explain.errors import InputError
    from explain.models.load import load_model
    from explain.request import explain

    model = load_model(SAMPLE / "models" / "cnn.pt2")
    with pytest.raises(InputError, match="needs a ViT"):
        explain(model, np.zeros((20, 20, 20), np.float32), "vit-attention")
