"""2D images through the same engine: captum's hand-computed LayerGradCam cases, MONAI's 2D GradCAM, geometry.

A 2D `Volume` holds data[i = column, j = row]; a 2D model takes (1, C, H = rows, W = columns).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from explain.errors import InputError
from explain.io.volume import make_volume
from explain.request import explain
from tests.conftest import BlobNet, loaded


class CaptumOneConv(nn.Module):
    """captum's BasicModel_ConvNet_One_Conv (tests/helpers/basic_models.py), weights as captum sets them."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, 1)
        self.relu1 = nn.ReLU()
        self.fc1 = nn.Linear(8, 4)
        self.conv1.weight = nn.Parameter(torch.ones(2, 1, 3, 3))
        self.conv1.bias = nn.Parameter(torch.tensor([-50.0, -75.0]))
        self.fc1.weight = nn.Parameter(torch.cat([torch.ones(4, 5), -1 * torch.ones(4, 3)], dim=1))
        self.fc1.bias = nn.Parameter(torch.zeros(4))
        self.relu2 = nn.ReLU()

    def forward(self, x):
        x = self.relu1(self.conv1(x))
        return self.relu2(self.fc1(x.reshape(-1, 8)))


def _image(rows_by_cols: np.ndarray) -> object:
    """A 2D Volume from an array laid out as rows x columns (how captum and torchvision hold images)."""
    return make_volume(np.ascontiguousarray(rows_by_cols.T), np.eye(4), "image")


@pytest.mark.parametrize(
    "layer, expected",
    [("conv1", [[11.25, 13.5], [20.25, 22.5]]), ("relu1", [[0.0, 4.0], [28.0, 32.5]])],
)
def test_captum_layer_gradcam_cases_pass_unchanged(layer, expected):
    """captum's test_grad_cam.py: input arange(16) as 4x4, target 0; their values, computed by hand."""
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    model = loaded(CaptumOneConv(), (1, 4, 4))
    result = explain(model, _image(image), "gradcam", [layer], target=0, device="cpu").get()
    np.testing.assert_allclose(result.raw_map, expected, rtol=0, atol=1e-5)


def test_gradcam_2d_equals_monai_compute_map():
    from monai.networks.nets import DenseNet121
    from monai.visualize import GradCAM

    torch.manual_seed(0)
    net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=3).eval()
    image = np.random.default_rng(0).standard_normal((96, 80)).astype(np.float32)  # rows x columns
    layer = "features.denseblock2"
    ours = explain(loaded(net, (1, 96, 80)), _image(image), "gradcam", [layer], target=1, device="cpu").get()
    ref = GradCAM(nn_module=net, target_layers=layer).compute_map(torch.as_tensor(image)[None, None], class_idx=1)
    ref = ref[0, 0].detach().numpy()
    assert ref.shape == ours.raw_map.shape == (12, 10) and ref.max() > 0
    np.testing.assert_allclose(np.maximum(ours.raw_map, 0), ref, rtol=1e-5, atol=1e-5 * ref.max())


def test_a_resized_non_square_image_maps_back_in_the_right_orientation():
    """A blob at row 30, column 70 of a 48 x 100 image; the model sees 32 x 32; the map peaks on the blob."""
    rows, cols = np.mgrid[0:48, 0:100]
    blob = (np.hypot(rows - 30, cols - 70) <= 5).astype(np.float32)
    result = explain(
        loaded(BlobNet(spatial_dims=2), (1, 32, 32)), _image(blob), "gradcam", ["act"], target=1, device="cpu"
    ).get()
    cam = result.cam  # on the image's own grid: (i = column, j = row)
    assert cam.shape == (100, 48)
    col, row = np.unravel_index(int(np.argmax(cam)), cam.shape)
    assert blob[row, col] == 1.0, f"peak at row {row}, column {col}"
    # The model-grid map sits in world space where the image does: its peak maps near the blob's centre.
    peak = np.array(np.unravel_index(int(np.argmax(result.model_map)), result.model_map.shape))  # (r, c) on 32x32
    world = result.model_affine @ np.array([peak[0], peak[1], 0.0, 1.0])
    assert abs(world[0] - 70) <= 100 / 32 * 1.5 and abs(world[1] - 30) <= 48 / 32 * 1.5


def test_a_2d_image_and_a_3d_model_are_refused_with_a_sentence():
    with pytest.raises(InputError, match="2D image cannot go into"):
        explain(loaded(BlobNet(), (1, 8, 8, 8)), _image(np.zeros((8, 8), np.float32)), device="cpu")
    with pytest.raises(InputError, match="3D image cannot go into"):
        explain(loaded(BlobNet(spatial_dims=2), (1, 8, 8)), np.zeros((8, 8, 8), np.float32), device="cpu")
