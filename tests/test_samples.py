"""The committed sample case and models: known lesion positions are the oracle. No retraining here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from explain.engine import classify, explain
from tests.conftest import SAMPLE


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


@pytest.mark.parametrize("target", [1, 2])
def test_cnn_gradcam_peaks_inside_the_right_lesion_and_not_the_other(sample_models, sample_case, sample_mask, target):
    cam = explain(sample_models["cnn"], sample_case, "gradcam", target=target).get(target=target).cam
    peak = np.unravel_index(int(np.argmax(cam)), cam.shape)
    assert sample_mask[peak] == target, f"peak {peak} is in label {sample_mask[peak]}, not {target}"
    assert cam[sample_mask == target].mean() > 100 * cam[sample_mask == 0].mean()
    if target == 2:  # the dark-lesion map ignores the bright lesion entirely
        assert cam[sample_mask == 1].max() < 0.05


@pytest.mark.parametrize("method", ["gradcampp", "hirescam", "layercam"])
def test_cnn_other_methods_concentrate_on_the_lesions(sample_models, sample_case, sample_mask, method):
    """Measured behaviour, kept honest: the mass is on the lesions (the peak cell can sit on a lesion's rim)."""
    result = explain(sample_models["cnn"], sample_case, method, target="all")
    for target in (1, 2):
        cam = result.get(target=target).cam
        assert cam[sample_mask > 0].mean() > 10 * cam[sample_mask == 0].mean()
    bright = result.get(target=1).cam
    assert sample_mask[np.unravel_index(int(np.argmax(bright)), bright.shape)] == 1


def test_unet_segmentation_target_peaks_in_its_lesion(sample_models, sample_case, sample_mask):
    """Bright: the class logit summed over its predicted mask points at the bright lesion.

    The sample UNet never predicts the dark class (held-out Dice 0, see the training report); then the
    engine says so and falls back to the whole volume instead of returning an empty map.
    """
    result = explain(sample_models["unet"], sample_case, "gradcam", target="all")
    assert result.task == "segmentation" and result.probabilities[1] > 0
    bright = result.get(target=1).cam
    assert sample_mask[np.unravel_index(int(np.argmax(bright)), bright.shape)] == 1
    if result.probabilities[2] == 0:
        assert any("class 2 is predicted nowhere" in w for w in result.warnings)


def test_sample_models_carry_cards(sample_models):
    for model in sample_models.values():
        assert model.card.input_shape == (1, 64, 64, 64) and model.card.orientation == "RAS"
        assert model.card.class_names and model.card.default_layer
    scores, probabilities, _ = classify(sample_models["vit"], np.zeros((64, 64, 64), np.float32) + 1.0)
    assert scores.shape == (3,) and abs(float(probabilities.sum()) - 1) < 1e-5


@pytest.mark.slow
def test_generator_still_runs(tmp_path):
    from explain.models import load_model
    from sample_data.generate import main

    main(["--quick", "--out", str(tmp_path)])
    for name in ("cnn", "vit", "unet"):
        assert load_model(tmp_path / "models" / f"{name}.pt2").card.input_shape == (1, 64, 64, 64)
    assert (tmp_path / "case_brain" / "lesion_mask.nii.gz").exists()
