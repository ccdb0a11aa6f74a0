"""The committed sample cases and models: known lesion positions are the oracle. No retraining here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from explain.cam.engine import classify
from explain.policy import UPLOAD_MODEL
from explain.request import explain
from tests.conftest import SAMPLE

MODELS = ("cnn", "vit", "unet", "chest")
CHEST_AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])  # how a PNG is placed: 1 mm pixels, stored order


@pytest.fixture(scope="session")
def chest_case():
    """The bundled radiograph as a 2D Volume (data[i = column, j = row]) and its nodule mask, same order."""
    from PIL import Image

    from explain.io.volume import make_volume

    pixels = np.asarray(Image.open(SAMPLE / "case_chest" / "chest_xray.png"))
    mask = np.asarray(Image.open(SAMPLE / "case_chest" / "nodule_mask.png"))
    return make_volume(pixels.T.astype(np.float32), CHEST_AFFINE, "chest_xray.png"), mask.T


@pytest.fixture(scope="session")
def chest_model():
    from explain.models.load import load_model

    return load_model(SAMPLE / "models" / "chest.pt2")


def test_sample_case_geometry_and_masks(sample_case, sample_mask):
    lesions = json.loads((SAMPLE / "case_brain" / "lesions.json").read_text())["lesions"]
    assert sample_case.shape == sample_mask.shape == (197, 233, 189)
    assert sample_case.orientation == "RAS"
    for lesion in lesions:
        center = tuple(int(round(c)) for c in lesion["center_voxel"])
        assert sample_mask[center] == lesion["label"]
        world = sample_case.affine @ np.array([*center, 1.0])
        np.testing.assert_allclose(world[:3], lesion["center_world_mm"], atol=1.0)
    bright = sample_case.data[sample_mask == 1].mean()
    dark = sample_case.data[sample_mask == 2].mean()
    assert bright > np.percentile(sample_case.data[sample_mask == 0], 99) and dark < bright / 2
    by_kind = {lesion["label"]: lesion for lesion in lesions}
    assert by_kind[1]["center_world_mm"][0] < 0 < by_kind[2]["center_world_mm"][0]  # RAS: x < 0 is the left


def test_chest_case_is_a_16_bit_radiograph_with_its_nodule(chest_case):
    from PIL import Image

    volume, mask = chest_case
    info = json.loads((SAMPLE / "case_chest" / "lesions.json").read_text())["lesions"][0]
    assert Image.open(SAMPLE / "case_chest" / "chest_xray.png").mode.startswith("I;16")
    assert volume.ndim == 2 and volume.shape == mask.shape
    i, j = (int(round(c)) for c in info["center_ij"])
    assert mask[i, j] == 1 and i < volume.shape[0] // 2  # the patient's right lung is on the image's left
    nodule, lung_ring = volume.data[mask == 1].mean(), np.median(volume.data[i - 25 : i + 25, j - 25 : j + 25])
    assert nodule > lung_ring  # a nodule is denser (brighter) than the lung around it


@pytest.mark.parametrize("target", [1, 2])
def test_cnn_gradcam_peaks_inside_the_right_lesion_and_not_the_other(sample_models, sample_case, sample_mask, target):
    result = explain(sample_models["cnn"], sample_case, "gradcam", target=target).get(target=target)
    cam = result.cam
    peak = np.unravel_index(int(np.argmax(cam)), cam.shape)
    assert sample_mask[peak] == target, f"peak {peak} is in label {sample_mask[peak]}, not {target}"
    assert cam[sample_mask == target].mean() > 100 * cam[sample_mask == 0].mean()
    if (
        target == 2
    ):  # the dark-lesion map stays low on the bright lesion (measured: at most about a quarter of its peak)
        assert cam[sample_mask == 1].max() < 0.5
    # Saturated logits (the previous model) gave peaks of 2e-12 and 5e-8; one hot cell of 4096 gives about 1e-3.
    assert 1e-5 < result.raw_peak < 1e2, f"raw Grad-CAM peak {result.raw_peak:.3g}: logits saturated?"


@pytest.mark.parametrize("method", ["gradcampp", "hirescam", "layercam"])
def test_cnn_other_methods_find_the_bright_lesion(sample_models, sample_case, sample_mask, method):
    """Measured behaviour, kept honest. The bright map peaks in the bright lesion for every method. A lesion
    logit is the maximum over cells, so its gradient reaches one cell: HiResCAM and LayerCAM (gradient times
    activation, cell by cell) show that one cell, which for the dark lesion sits beside it (measured: mean 0.000
    inside); the held-out hit rates are in docs/benchmarks.md."""
    result = explain(sample_models["cnn"], sample_case, method, target="all")
    bright = result.get(target=1).cam
    assert sample_mask[np.unravel_index(int(np.argmax(bright)), bright.shape)] == 1
    assert bright[sample_mask == 1].mean() > 3 * bright[sample_mask == 0].mean()
    if method == "gradcampp":  # weights from the whole grid: both lesions' maps carry their lesion
        dark = result.get(target=2).cam
        assert dark[sample_mask == 2].mean() > 3 * dark[sample_mask == 0].mean()


@pytest.mark.parametrize("target", [1, 2])
def test_unet_segmentation_target_peaks_in_its_lesion(sample_models, sample_case, sample_mask, target):
    """The class logit summed over its own predicted mask points at that lesion, bright and dark alike, with the
    page's defaults for a segmentation model (HiResCAM at the card's layer)."""
    from explain.policy import valid_methods

    unet = sample_models["unet"]
    method = valid_methods(unet)[0]
    result = explain(unet, sample_case, method, target=target)
    assert method == "hirescam" and result.task == "segmentation" and result.probabilities[target] > 0
    cam = result.get(target=target).cam
    assert sample_mask[np.unravel_index(int(np.argmax(cam)), cam.shape)] == target
    assert cam[sample_mask == target].mean() > 100 * cam[sample_mask == 0].mean()


def test_chest_gradcam_peaks_inside_the_nodule(chest_model, chest_case):
    volume, mask = chest_case
    scores, probabilities, predicted = classify(chest_model, volume)
    assert predicted == 1 and probabilities[1] > 0.9
    cam = explain(chest_model, volume, "gradcam", target=1).get(target=1).cam
    assert cam.shape == volume.shape
    assert mask[np.unravel_index(int(np.argmax(cam)), cam.shape)] == 1


def test_sample_models_carry_cards(sample_models, chest_model):
    models = {**sample_models, "chest": chest_model}
    for name, model in models.items():
        card = model.card
        assert card.class_names and card.default_layer and "not a medical device" in card.description, name
        assert len(card.input_shape) == (3 if name == "chest" else 4) and card.input_shape[0] == 1
        assert card.orientation == (None if name == "chest" else "RAS")
    vit_grid = sample_models["vit"].card.input_shape[1:]
    scores, probabilities, _ = classify(sample_models["vit"], np.zeros(vit_grid, np.float32) + 1.0)
    assert scores.shape == (3,) and abs(float(probabilities.sum()) - 1) < 1e-5


@pytest.mark.parametrize("name", MODELS)
def test_exported_archives_are_clean(name):
    """Static shapes, aten operators only, nothing pickled, no source paths of the exporting machine."""
    from sample_data.train import archive_problems

    assert archive_problems(SAMPLE / "models" / f"{name}.pt2") == []


@pytest.mark.slow
def test_generator_still_runs(tmp_path):
    from explain.models.load import load_model
    from sample_data.generate import SPECS, main
    from sample_data.train import archive_problems

    main(["--quick", "--out", str(tmp_path)])
    for name, spec in SPECS.items():
        path = tmp_path / "models" / f"{name}.pt2"
        assert load_model(path).card.input_shape == (1, *spec.shape) and archive_problems(path) == []
    assert (tmp_path / "case_brain" / "lesion_mask.nii.gz").exists()
    assert (tmp_path / "case_chest" / "chest_xray.png").exists()


def test_sample_cnn_maps_under_cascading_randomisation(sample_models, sample_case):
    """Adebayo et al.'s check on the bundled CNN, bright-lesion target (figures in docs/benchmarks.md).

    Grad-CAM at `features.block3` is a linear mix of that block's features weighted by the head's gradient, so a
    random head mostly flips its sign: the magnitude ranks survive (the issue's bar of 0.3 is not met) while the
    signed ranks and the structure do not; randomising block3 as well leaves nothing. Grad-CAM++ drops at once.
    """
    from explain.trust.sanity import cascade

    cnn = sample_models["cnn"]
    gradcam = cascade(cnn, sample_case, "gradcam", "features.block3", 1, max_steps=2, device="cpu")
    head, block3 = gradcam.steps
    assert head.block == "evidence" and head.signed_spearman < 0 and head.ssim < 0.3
    assert abs(block3.spearman) < 0.3
    assert (
        not gradcam.depends_on_weights and "sign flipped" in gradcam.verdict.lower()
    )  # as measured; see the docstring
    plus = cascade(cnn, sample_case, "gradcampp", "features.block3", 1, max_steps=1, device="cpu")
    assert plus.steps[0].spearman < 0.3 and plus.depends_on_weights


def test_sample_catalogue_matches_the_files():
    """explain/samples.py states each bundled model's dimension; the card inside the file must agree."""
    from explain.models.load import load_model
    from explain.samples import SAMPLE_CASES, SAMPLE_MODELS, sample_model_for

    for name, sample in SAMPLE_MODELS.items():
        assert len(load_model(sample.path).card.input_shape) - 1 == sample.spatial_dims, name
    for case in SAMPLE_CASES.values():
        assert case.image.exists() and case.mask.exists() and case.model in SAMPLE_MODELS
    vit, chest = "Sample 3D ViT (lesion classifier)", "Sample 2D CNN (chest radiograph nodule classifier)"
    assert sample_model_for("Sample chest radiograph", vit) == chest  # a 3D sample model is swapped
    assert sample_model_for("Sample brain MRI", vit) is None  # a fitting choice is kept
    assert sample_model_for("Sample chest radiograph", UPLOAD_MODEL) is None  # the user's own model stays
