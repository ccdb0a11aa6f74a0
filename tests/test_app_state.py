"""What the screen shows is what the user asked for: replays of the sequences that used to drift.

Driven headlessly with AppTest. The oracle for each map is the engine called directly with
the same file, card and choices; the oracle for each percentage is `classify` on the model
that is on screen.
"""

from __future__ import annotations

import io
import json
import os
import re

import nibabel as nib
import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from explain.policy import UPLOAD_MODEL
from tests.conftest import ROOT, SAMPLE
from tests.test_app import _app

pytestmark = pytest.mark.filterwarnings("ignore")
NIB_DATA = os.path.join(os.path.dirname(nib.__file__), "tests", "data")


def _shown(markdown: str) -> str:
    return re.sub(r"\\(.)", r"\1", markdown)


def _title(at: AppTest) -> str:
    """The title of the map the viewer was given: 'method · layer · class' (the viewer writes it above the map
    once the map is drawn; nothing else on the page names a map)."""
    maps = _payload(at)["maps"]
    assert maps, "no map in the viewer's payload"
    return maps[0]["title"]


def _payload(at: AppTest) -> dict:
    component = [x for x in at.main if getattr(x, "type", None) == "bidi_component"]
    assert component, "the slice viewer is not on the page"
    return json.loads(component[0].proto.json)


def _facts(at: AppTest) -> list[str]:
    """The facts that travel with the first map (in its status file while it was pending)."""
    entry = _payload(at)["maps"][0]
    if "status_url" in entry:
        return json.loads((ROOT / entry["status_url"].removeprefix("app/")).read_text())["facts"]
    return entry["facts"]


def _map_url(payload: dict) -> str:
    """Where the first map of the viewer's payload is (pending maps say so in their status file)."""
    entry = payload["maps"][0]
    if "status_url" in entry:
        return json.loads((ROOT / entry["status_url"].removeprefix("app/")).read_text())["map"]["url"]
    return entry["url"]


def _engine_calls(at: AppTest) -> int:
    return int(re.search(r"engine calls this server: (\d+)", " ".join(c.value for c in at.caption)).group(1))


def _errors(at: AppTest) -> str:
    assert not at.exception, at.exception
    return " ".join(_shown(e.value) for e in at.error)


def _upload(at: AppTest, widget: str, radio: str, choice: str, name: str, raw: bytes) -> AppTest:
    at.sidebar.radio(key=radio).set_value(choice).run()
    at.sidebar.file_uploader(key=widget).set_value((name, raw, "application/octet-stream"))
    return at.run()


def _upload_model(at, name, raw):
    return _upload(at, "model_upload", "model_source", UPLOAD_MODEL, name, raw)


def _upload_volume(at, name, raw):
    return _upload(at, "volume_upload", "volume_source", "Upload an image", name, raw)


def _sidebar_state(at: AppTest) -> dict:
    out = {"method": at.sidebar.selectbox(key="w_method").value, "target": at.sidebar.selectbox(key="w_target").value}
    layer = [s for s in at.sidebar.selectbox if s.key == "w_layer"]
    out["layer"] = layer[0].value if layer else None
    return out


def _agree(at: AppTest) -> None:
    """The sidebar and the map title name the same method, layer and class."""
    from explain.policy import method_label

    state, title = _sidebar_state(at), _title(at)
    method, layer, target = title.split(" · ")
    assert method == method_label(state["method"]) and target == state["target"], (state, title)
    if state["layer"] is not None:
        assert layer == state["layer"], (state, title)


def test_uploaded_cnn_pt2_is_the_bundled_sample(tmp_path, monkeypatch):
    at = _app(tmp_path, monkeypatch)
    sample_title, sample_payload = _title(at), _payload(at)
    sample_targets = at.sidebar.selectbox(key="w_target").options
    at = _upload_model(at, "my model.pt2", (SAMPLE / "models" / "cnn.pt2").read_bytes())
    assert not _errors(at)
    assert _title(at) == sample_title == "Grad-CAM · features.block3 · bright lesion"
    assert at.sidebar.selectbox(key="w_target").options == sample_targets  # same classes and percentages
    assert _map_url(_payload(at)) == _map_url(sample_payload)  # the same request, so the same published map
    assert any("inside the file" in _shown(c.value) for c in at.sidebar.caption)


def test_uploaded_unet_pt2_runs_gradcampp_as_segmentation(tmp_path, monkeypatch):
    at = _upload_model(_app(tmp_path, monkeypatch), "unet.pt2", (SAMPLE / "models" / "unet.pt2").read_bytes())
    at.sidebar.selectbox(key="w_method").set_value("gradcampp").run()
    assert not _errors(at)
    assert _title(at).startswith("Grad-CAM++ · ")
    labels = at.sidebar.selectbox(key="w_target").options
    assert all("of voxels" in label for label in labels), labels  # a fraction of voxels, not a probability


def _cardless_cnn() -> bytes:
    """The sample CNN's program without its card (the oracle: a model with no card at all)."""
    from explain.models.load import load_model

    module = load_model(SAMPLE / "models" / "cnn.pt2").module
    program = torch.export.export(module, (torch.zeros(1, 1, 64, 64, 64),))
    buf = io.BytesIO()
    torch.export.save(program, buf)
    return buf.getvalue()


def test_changing_the_intensity_of_a_cardless_model_recomputes(tmp_path, monkeypatch):
    at = _upload_model(_app(tmp_path, monkeypatch), "bare.pt2", _cardless_cnn())
    assert not _errors(at)
    assert any("lacks" in _shown(c.value) for c in at.sidebar.caption)  # the page says the form fills in
    before = _engine_calls(at)
    at.sidebar.selectbox(key="pre_intensity").set_value("z-score").run()
    assert not _errors(at)
    assert _engine_calls(at) == before + 1
    assert [m.value for m in at.metric if m.label == "Compute"] != ["cached"]
    at.sidebar.selectbox(key="pre_intensity").set_value("CT soft tissue").run()
    assert _engine_calls(at) == before + 2


def test_a_card_inside_the_file_wins_over_the_form_unless_overridden(tmp_path, monkeypatch):
    at = _upload_model(_app(tmp_path, monkeypatch), "cnn.pt2", (SAMPLE / "models" / "cnn.pt2").read_bytes())
    calls = _engine_calls(at)
    at.sidebar.selectbox(key="pre_intensity").set_value("CT soft tissue").run()
    assert _engine_calls(at) == calls  # the card's z-score wins: same model, same map
    at.sidebar.checkbox(key="pre_override").check().run()
    assert not at.exception
    assert any("Overriding" in _shown(w.value) for w in at.sidebar.warning)
    assert _engine_calls(at) == calls + 1  # the override is part of the model's identity


def test_after_three_uploads_sidebar_and_title_agree(tmp_path, monkeypatch):
    at = _app(tmp_path, monkeypatch)
    for name in ("anatomical.nii", "example4d.nii.gz"):
        at = _upload_volume(at, name, open(os.path.join(NIB_DATA, name), "rb").read())
        assert not at.exception
        _agree(at)
    at = _upload_volume(at, "t1.nii.gz", (SAMPLE / "case_brain" / "t1_lesions.nii.gz").read_bytes())
    assert not _errors(at)
    _agree(at)


def test_the_4d_warning_names_a_control_that_exists(tmp_path, monkeypatch):
    raw = open(os.path.join(NIB_DATA, "example4d.nii.gz"), "rb").read()
    at = _upload_volume(_app(tmp_path, monkeypatch), "example4d.nii.gz", raw)
    assert any("'Volume in file' control" in _shown(w.value) for w in at.warning)
    control = [n for n in at.sidebar.number_input if n.key == "volume_index"]
    assert control and control[0].max == 1
    control[0].set_value(1).run()
    assert not _errors(at) and not any("holds 2 volumes" in _shown(w.value) for w in at.warning)


def test_the_target_survives_method_changes(tmp_path, monkeypatch):
    at = _app(tmp_path, monkeypatch)
    at.sidebar.selectbox(key="w_target").set_value("dark lesion").run()
    for method in ("layercam", "gradcampp", "gradcam"):
        at.sidebar.selectbox(key="w_method").set_value(method).run()
        assert at.sidebar.selectbox(key="w_target").value == "dark lesion"
        assert _title(at).endswith("dark lesion")
    at.sidebar.radio(key="model_source").set_value("Sample 3D ViT (lesion classifier)").run()
    assert at.sidebar.selectbox(key="w_target").value == "dark lesion"  # same class names: kept
    at.sidebar.selectbox(key="w_method").set_value("vit-attention").run()
    assert not _errors(at)
    assert at.sidebar.selectbox(key="w_target").value == "dark lesion"
    _agree(at)


def test_percentages_belong_to_the_model_on_screen(tmp_path, monkeypatch, sample_case, sample_models):
    from explain.cam.engine import classify
    from explain.policy import target_label

    at = _app(tmp_path, monkeypatch)
    for source, name in (("Sample 3D ViT (lesion classifier)", "vit"), ("Sample 3D CNN (lesion classifier)", "cnn")):
        at.sidebar.radio(key="model_source").set_value(source).run()
        model = sample_models[name]
        probabilities = classify(model, sample_case)[1]
        names = model.card.class_names
        expected = [target_label(n, p, model) for n, p in zip(names, probabilities)]
        assert at.sidebar.selectbox(key="w_target").options == expected


# ----------------------------------------------------------------------------- hostile uploads (issue 11)


@pytest.mark.parametrize(
    "name", ["..", "é" * 150 + ".nii.gz", "scan\x00.nii.gz", "../../etc/passwd", "![x](http://127.0.0.1:9/a.png)"]
)
def test_odd_upload_names_never_break_the_page(tmp_path, monkeypatch, name):
    raw = (SAMPLE / "case_brain" / "t1_lesions.nii.gz").read_bytes()
    at = _upload_volume(_app(tmp_path, monkeypatch), name, raw)
    assert not at.exception and not at.error
    assert at.sidebar.radio(key="model_source") is not None  # the model section is still there
    _agree(at)


def test_odd_model_cards_get_a_sentence_not_a_traceback(tmp_path, monkeypatch):
    from tests.hostile import tiny_pt2

    at = _app(tmp_path, monkeypatch)
    for card in ({"intensity": ["zscore"]}, {"input_shape": ["1", "8"]}, {"class_names": 5}, {"spacing": [0, 1, 1]}):
        at = _upload_model(at, "odd.pt2", tiny_pt2({"task": "classification", **card}))
        message = _errors(at)
        assert "This model could not be used" in message and next(iter(card)) in message
        assert "Traceback" not in message and "/" not in message.split("odd.pt2")[-1][:0]


def test_uploaded_models_are_never_written_to_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    at = _upload_model(_app(tmp_path, monkeypatch), "cnn.pt2", (SAMPLE / "models" / "cnn.pt2").read_bytes())
    assert not _errors(at)
    assert list((tmp_path / "tmp").rglob("*.pt2")) == []


def test_user_text_is_escaped_before_markdown(tmp_path, monkeypatch):
    """An NRRD `space:` value with an image link shows literally; the browser would fetch nothing."""
    from tests.hostile import nrrd_header

    header = nrrd_header(
        {
            "type": "uint8",
            "dimension": "3",
            "sizes": "4 4 4",
            "encoding": "raw",
            "space": "![x](http://127.0.0.1:9/a.png)",
        }
    )
    at = _upload_volume(_app(tmp_path, monkeypatch), "scan.nrrd", header + bytes(64))
    raw = " ".join(e.value for e in at.error)
    assert "![x](http" not in raw and r"\!\[x\]\(http" in raw
    assert "![x](http://127.0.0.1:9/a.png)" in _errors(at)  # what the reader sees, literally
    assert np is not None


# ----------------------------------------------------------------------------- checks and the worklist (issue 10)


def test_sanity_check_and_localisation_on_the_page(tmp_path, monkeypatch):
    at = _app(tmp_path, monkeypatch)
    at.sidebar.checkbox(key="sample_mask").check().run()
    assert not _errors(at)
    facts = _facts(at)  # the viewer writes them beside the map they score, once it is drawn
    assert any(f.startswith("pointing game: hit") for f in facts), facts  # the CNN's peak is in the bright lesion
    at.button(key="sanity_run").click().run()
    assert not _errors(at)
    verdicts = [_shown(x.value) for x in (*at.success, *at.warning) if "learned weights" in _shown(x.value)]
    assert verdicts, "no sanity verdict on the page"
    assert any("Tested: Grad-CAM · features.block3 · bright lesion" in _shown(c.value) for c in at.caption)


@pytest.fixture(scope="module")
def cohort_run(tmp_path_factory):
    """A finished cohort run written by the batch code (in process: same worker, no Ray), with one failed case."""
    import shutil

    from explain.cohort.batch import CaseWorker, Choices, _append, case_key, read_cases

    root = tmp_path_factory.mktemp("runs")
    cases = root / "cases"
    cases.mkdir()
    shutil.copy(SAMPLE / "case_brain" / "t1_lesions.nii.gz", cases / "brain.nii.gz")
    (cases / "broken.nii.gz").write_bytes(b"\x1f\x8b not a volume")
    spec = {"path": str(SAMPLE / "models" / "cnn.pt2"), "options": {}}
    choices = Choices(("gradcam", "layercam"), (), "2")
    out = root / "runs" / "first run"
    worker = CaseWorker(spec, str(out), "cpu", 2)
    for case in read_cases(cases):
        _append(out, worker.run(case, case_key(case, worker.model.identity, choices), choices))
    (out / "batch.json").write_text(json.dumps({"model": spec, "choices": {}}))
    return root / "runs"


def test_worklist_opens_a_case_with_its_maps(tmp_path, monkeypatch, cohort_run):
    at = _app(tmp_path, monkeypatch, CAMVIEWER_BATCH_DIR=cohort_run)
    at.sidebar.radio(key="volume_source").set_value("Worklist (cohort run)").run()
    assert not at.exception
    at.sidebar.selectbox(key="worklist_sort").set_value("status").run()
    options = at.selectbox(key="worklist_open").options
    assert len(options) == 3 and "broken" in options[0] and "(failed)" in options[0]  # sorted: failed before ok
    at.selectbox(key="worklist_open").select_index(2).run()  # brain · layercam · dark lesion
    assert not _errors(at)
    assert _title(at) == "LayerCAM · features.block3 · dark lesion"
    _agree(at)
    at.selectbox(key="worklist_open").select_index(0).run()
    assert "failed in the cohort run" in _errors(at)
