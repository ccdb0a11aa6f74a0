"""To the model grid and back: a marker at a known world position returns to its voxel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain.cam.preprocess import apply_intensity, plan_grid
from explain.io.load import load_volume
from explain.io.write import save_nifti
from explain.models.cards import ModelCard

# Anisotropic (0.9 x 1.3 x 3 mm) and oblique, with axes in LIP-like order.
AFFINE = np.array([[0.0, 0.0, -3.0, 60.0], [-0.88, 0.2, 0.0, 40.0], [0.19, 1.27, 0.0, -50.0], [0, 0, 0, 1]])
SHAPE = (70, 50, 24)


@pytest.mark.parametrize(
    "card, model_shape",
    [
        (ModelCard(orientation="RAS"), (32, 40, 48)),  # resize only, with reorientation
        (ModelCard(), (64, 48, 20)),  # resize only, file order
        (ModelCard(orientation="RAS", spacing=(2.0, 2.0, 2.0)), (48, 48, 48)),  # fixed spacing, crop/pad
    ],
)
def test_marker_returns_within_one_voxel(tmp_path, card, model_shape):
    marker = (41, 17, 13)
    world = AFFINE @ np.array([*marker, 1.0])
    data = np.zeros(SHAPE, np.float32)
    data[marker[0] - 1 : marker[0] + 2, marker[1] - 1 : marker[1] + 2, marker[2] - 1 : marker[2] + 2] = 0.5
    data[marker] = 1.0
    grid = plan_grid(SHAPE, AFFINE, card, model_shape)
    on_model = grid.to_model(data)[0, 0]
    assert tuple(on_model.shape) == model_shape
    back = grid.to_volume(on_model[None])[0].numpy()
    assert back.shape == SHAPE
    peak = np.array(np.unravel_index(np.argmax(back), SHAPE))
    assert np.all(np.abs(peak - marker) <= 1), f"marker {marker} came back at {tuple(peak)}"
    back_world = AFFINE @ np.array([*peak, 1.0])
    assert np.linalg.norm(back_world[:3] - world[:3]) <= np.linalg.norm(AFFINE[:3, :3], axis=0).max() * 1.8
    # The exported map reopens on the input's grid.
    out = load_volume(save_nifti(back, AFFINE, tmp_path / "cam.nii.gz"))
    assert out.shape == SHAPE
    np.testing.assert_allclose(out.affine, AFFINE, atol=1e-5)


def test_ras_model_grid_is_anatomically_ordered():
    """With orientation RAS, model axis 0 grows to the patient's right whatever the file order."""
    grid = plan_grid(SHAPE, AFFINE, ModelCard(orientation="RAS"), (24, 50, 70))
    data = np.zeros(SHAPE, np.float32)
    data[:, :, :4] = 1.0  # file axis k runs along -x (affine column 2 is (-3, 0, 0)): k small = patient right
    x = grid.to_model(data)[0, 0]
    assert float(x[-3:].mean()) > 0.9 and float(x[:5].mean()) == 0.0


def test_identity_when_shapes_match():
    card = ModelCard()
    grid = plan_grid((8, 9, 10), np.eye(4), card, (8, 9, 10))
    assert grid.is_identity
    data = np.random.default_rng(0).random((8, 9, 10)).astype(np.float32)
    np.testing.assert_array_equal(grid.to_model(data)[0, 0].numpy(), data)


def test_intensity_transforms_match_monai():
    from monai.transforms import NormalizeIntensity, ScaleIntensityRange, ScaleIntensityRangePercentiles

    x = torch.as_tensor(np.random.default_rng(0).normal(50, 200, (1, 1, 20, 20, 20)).astype(np.float32))
    ours = apply_intensity(x, {"kind": "ct_window", "level": 40, "width": 400})
    ref = ScaleIntensityRange(-160, 240, 0, 1, clip=True)(x[0])
    torch.testing.assert_close(ours[0], torch.as_tensor(ref), rtol=1e-5, atol=1e-6)
    ours = apply_intensity(x, {"kind": "percentile", "lower": 1, "upper": 99})
    ref = ScaleIntensityRangePercentiles(1, 99, 0, 1, clip=True)(x[0])
    torch.testing.assert_close(ours[0], torch.as_tensor(ref), rtol=1e-4, atol=1e-5)
    ours = apply_intensity(x, {"kind": "zscore"})
    ref = NormalizeIntensity()(x[0])
    torch.testing.assert_close(ours[0], torch.as_tensor(ref), rtol=1e-6, atol=1e-6)


def test_zscore_uses_the_population_standard_deviation_like_monai():
    """On 8 voxels the sample std differs from the population std by 7%: only the latter matches MONAI."""
    from monai.transforms import NormalizeIntensity

    x = torch.arange(8, dtype=torch.float32).reshape(1, 1, 2, 2, 2)
    ours = apply_intensity(x, {"kind": "zscore"})
    by_hand = (x - 3.5) / np.sqrt(np.mean((np.arange(8) - 3.5) ** 2))
    torch.testing.assert_close(ours, by_hand.float(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours[0], torch.as_tensor(NormalizeIntensity()(x[0])), rtol=1e-6, atol=1e-6)
    flat = apply_intensity(torch.full((1, 1, 2, 2, 2), 5.0), {"kind": "zscore"})
    assert float(flat.abs().max()) == 0.0  # a constant image: centred, not divided by zero
