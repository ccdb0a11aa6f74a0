"""MONAI bundles against MONAI's own pipeline built from the same config by `ConfigParser` (trusted here): the
preprocessed tensor and the logits equal it to 1e-5, and the labels on the image's own grid agree on >= 99%."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from explain.cam.engine import predict_on_grid
from explain.io.load import load_case, load_volume
from explain.models.load import load_model
from explain.predict import predict_case
from tests.bundles import write_bundle

pytestmark = pytest.mark.filterwarnings("ignore")


def _ct(path, shape=(48, 40, 36), spacing=(0.8, 0.8, 1.5), seed=0):
    """A CT-like volume stored LPS-first (x flipped), so Orientation has work to do; an organ of 90 HU."""
    rng = np.random.default_rng(seed)
    data = rng.normal(-50, 40, shape).astype(np.float32)
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    data[((zz - 20) ** 2 + (yy - 18) ** 2 + (xx - 16) ** 2) < 100] = 90.0
    affine = np.diag([-spacing[0], spacing[1], spacing[2], 1.0])
    affine[:3, 3] = (20.0, -10.0, 5.0)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _theirs(bundle, image, weights="model.pt"):
    """MONAI's own pipeline from the bundle's config: (preprocessed image, logits, post-processed prediction)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(next((bundle / "configs").glob("inference.*"))))
    parser["bundle_root"] = str(bundle)
    parser["device"] = "$torch.device('cpu')"
    if parser.get("inferer", {}).get("device"):
        parser["inferer"]["device"] = "$torch.device('cpu')"
    post = parser.get("postprocessing")
    post["transforms"] = [t for t in post["transforms"] if t["_target_"] not in ("SaveImaged", "Lambdad")]
    parser["postprocessing"] = post
    network = parser.get_parsed_content("network_def").eval()
    state = torch.load(bundle / "models" / weights, weights_only=True)
    network.load_state_dict(state.get("model", state))
    data = parser.get_parsed_content("preprocessing")({"image": image})
    with torch.no_grad():
        logits = parser.get_parsed_content("inferer")(data["image"][None], network)
    out = parser.get_parsed_content("postprocessing")({"pred": logits[0], "image": data["image"]})
    return data["image"], logits, out["pred"]


def _compare(model, volume, theirs, classifier=False):
    pre, logits, pred = theirs
    ours_pre = model.framework.preprocess(volume)[0]
    torch.testing.assert_close(ours_pre.as_tensor().float(), pre.as_tensor().float(), rtol=1e-5, atol=1e-5)
    ours_logits = predict_on_grid(model, volume, "cpu")[1].logits
    torch.testing.assert_close(ours_logits, logits.as_tensor() if hasattr(logits, "as_tensor") else logits,
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    outcome = predict_case(model, volume, device="cpu")
    if classifier:
        np.testing.assert_allclose(outcome.probabilities, np.asarray(pred).ravel(), rtol=1e-5, atol=1e-6)
        return outcome
    theirs_labels = np.asarray(pred)
    theirs_labels = theirs_labels[0] if model.card.output == "softmax" else theirs_labels
    assert theirs_labels.shape[-3:] == volume.shape
    agreement = float((outcome.labels == theirs_labels).mean())
    assert agreement >= 0.99, agreement
    return outcome


def test_spleen_ct_unet_bundle(tmp_path):
    bundle = write_bundle(tmp_path, "spleen")
    image = _ct(tmp_path / "ct.nii.gz")
    model = load_model(bundle)
    assert model.kind == "bundle" and model.card.class_names == ["background", "spleen"]
    assert model.card.patch_size == (32, 32, 32) and model.card.window_layout == "monai"
    outcome = _compare(model, load_volume(image), _theirs(bundle, str(image)))
    assert set(np.unique(outcome.labels)) <= {0, 1}


def test_wholebody_bundle_with_expressions_and_the_argmax_before_inverting(tmp_path):
    bundle = write_bundle(tmp_path, "wholebody", yaml_config=True)  # its config as YAML, read with safe_load
    image = _ct(tmp_path / "ct.nii.gz", seed=1)
    model = load_model(bundle)
    assert model.card.class_names == ["background", "liver", "kidney", "spleen"]  # channel_def null: config labels
    assert model.framework.spec.argmax_before_invert
    assert dict(model.framework.spec.transforms)["Spacing"]["pixdim"] == [3.0, 3.0, 3.0]  # the $ conditional
    _compare(model, load_volume(image), _theirs(bundle, str(image), "model_lowres.pt"))


def test_brats_four_channel_sigmoid_bundle(tmp_path):
    bundle = write_bundle(tmp_path, "brats")
    rng = np.random.default_rng(2)
    files = []
    for c in range(4):
        data = np.zeros((40, 40, 30), np.float32)
        data[4:36, 5:35, 3:27] = rng.normal(100 * (c + 1), 20, (32, 30, 24))
        files.append(tmp_path / f"channel{c}.nii.gz")
        nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 1.0, 1.0])), str(files[-1]))
    model = load_model(bundle)
    assert model.card.channel_names == ["T1c", "T1", "T2", "FLAIR"] and model.card.output == "sigmoid"
    assert model.card.class_names == ["Tumor core", "Whole tumor", "Enhancing tumor"]
    volume = load_case(files, channels=4, names=model.card.channel_names)
    outcome = _compare(model, volume, _theirs(bundle, [str(f) for f in files]))
    assert outcome.labels.shape == (3, 40, 40, 30)  # one binary volume per output


def test_2d_classifier_bundle(tmp_path):
    from PIL import Image

    bundle = write_bundle(tmp_path, "classifier")
    rng = np.random.default_rng(3)
    pixels = (rng.random((90, 70)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "frame.png")
    model = load_model(bundle)
    assert model.card.task == "classification" and model.card.input_shape == (1, 64, 64)
    outcome = _compare(model, load_volume(tmp_path / "frame.png"), _theirs(bundle, str(tmp_path / "frame.png")),
                       classifier=True)  # fmt: skip
    assert outcome.class_names == ["outside", "inside"]


def test_a_bundle_zip_and_a_map_through_the_preprocessings_inverse(tmp_path):
    import shutil

    from explain.request import explain

    write_bundle(tmp_path, "spleen")
    archive = shutil.make_archive(str(tmp_path / "spleen_bundle"), "zip", tmp_path, "spleen")
    model = load_model(open(archive, "rb").read(), name="spleen_bundle.zip")
    volume = load_volume(_ct(tmp_path / "ct.nii.gz", shape=(96, 80, 40)))  # 51 x 43 x 30 at 1.5 mm: 2 windows
    cam = explain(model, volume, "hirescam", target=1, device="cpu").get()
    assert cam.windows > 1 and cam.cam.shape == volume.shape
    assert json.loads(json.dumps(cam.model_affine.tolist()))  # a plain 4x4 placing the model grid
