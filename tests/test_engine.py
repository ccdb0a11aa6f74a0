"""The engine end to end: localisation on a known blob, 'all' targets, segmentation, gradients only to the layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from explain.errors import InputError
from explain.request import explain
from tests.conftest import BlobNet, blob_volume, loaded


def test_blob_peak_inside_blob_and_other_class_zero_there():
    volume, mask = blob_volume()
    model = loaded(BlobNet(), (1, 24, 24, 24), class_names=["background", "blob"])
    result = explain(model, volume, "gradcam", ["act"], target="all", device="cpu")
    assert result.predicted == 1
    blob_map = result.get(target=1).cam
    peak = np.unravel_index(np.argmax(blob_map), blob_map.shape)
    assert mask[peak], f"peak {peak} is outside the blob"
    assert blob_map[mask].mean() > 5 * blob_map[~mask].mean()
    other = result.get(target=0).cam
    assert other[mask].max() < 1e-6  # class 0 has negative weight on the detector: no positive evidence


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "hirescam", "layercam"])
def test_all_targets_equal_per_class_calls(method):
    from monai.networks.nets import DenseNet121

    torch.manual_seed(0)
    model = loaded(DenseNet121(spatial_dims=3, in_channels=1, out_channels=3), (1, 32, 32, 32))
    volume = np.random.default_rng(0).random((32, 32, 32)).astype(np.float32)
    layers = ["features.denseblock2", "features.denseblock3"]
    together = explain(model, volume, method, layers, target="all", device="cpu")
    assert len(together.results) == 6
    for k in range(3):
        single = explain(model, volume, method, layers, target=k, device="cpu")
        for layer in layers:
            np.testing.assert_allclose(
                together.get(layer, k).raw_map, single.get(layer, k).raw_map, rtol=1e-5, atol=1e-8
            )
            np.testing.assert_allclose(together.get(layer, k).cam, single.get(layer, k).cam, atol=1e-5)
    np.testing.assert_allclose(together.probabilities.sum(), 1.0, rtol=1e-5)


def test_no_parameter_gradients_and_no_backward_below_the_layer():
    calls = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.early = nn.Conv3d(1, 4, 3, padding=1)
            self.late = nn.Conv3d(4, 4, 3, padding=1)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.late(self.early(x)).mean(dim=(2, 3, 4)))

    net = Spy()
    net.early.weight.register_hook(lambda g: calls.append("early"))
    explain(loaded(net, (1, 8, 8, 8)), np.random.rand(8, 8, 8).astype(np.float32), "gradcam", ["late"], 1, "cpu")
    assert calls == []  # no gradient reached the layer below
    assert all(p.grad is None for p in net.parameters())
    assert all(p.requires_grad for p in net.parameters())  # restored


def _seg_net() -> nn.Module:
    """Two classes: logit_1 = conv(x) with a known kernel, logit_0 = -logit_1."""

    class Seg(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Conv3d(1, 2, 1)
            with torch.no_grad():
                self.body.weight.copy_(torch.tensor([1.0, 1.0]).view(2, 1, 1, 1, 1))
                self.body.bias.copy_(torch.tensor([0.0, -0.5]))
            self.out = nn.Conv3d(2, 2, 1)
            with torch.no_grad():
                self.out.weight.copy_(torch.tensor([[-1.0, 0.0], [0.0, 1.0]]).view(2, 2, 1, 1, 1))
                self.out.bias.zero_()

        def forward(self, x):
            return self.out(self.body(x))

    return Seg()


def test_segmentation_target_sums_the_predicted_mask():
    volume, mask = blob_volume((16, 16, 16), (8, 8, 8), 3)
    model = loaded(_seg_net(), (1, 16, 16, 16), task="segmentation")
    result = explain(model, volume, "hirescam", ["body"], target=1, device="cpu")
    # logit_1 = x - 0.5 >0 exactly on the blob; score = sum over mask of (A_1); HiResCAM = g*A = A_1 on the mask.
    raw = result.get().raw_map
    np.testing.assert_allclose(raw[mask], 0.5, rtol=1e-6)
    np.testing.assert_allclose(raw[~mask], 0.0, atol=1e-7)
    np.testing.assert_allclose(result.probabilities[1], mask.mean(), rtol=1e-6)
    # A caller's region: one voxel outside the blob -> its value -0.5 there, zero elsewhere.
    region = np.zeros_like(mask)
    region[0, 0, 0] = True
    raw_region = explain(model, volume, "hirescam", ["body"], 1, "cpu", region=region).get().raw_map
    assert raw_region[0, 0, 0] == pytest.approx(-0.5) and np.count_nonzero(raw_region) == 1


def test_bad_inputs_give_input_errors():
    model = loaded(BlobNet(), (1, 24, 24, 24))
    volume, _ = blob_volume()
    with pytest.raises(InputError, match="unknown method 'gradcam\\+\\+'"):
        explain(model, volume, "gradcam++", device="cpu")
    with pytest.raises(InputError, match="needs a ViT"):
        explain(model, volume, "vit-attention", device="cpu")
    with pytest.raises(InputError, match="does not exist"):
        explain(model, volume, "gradcam", ["nope"], device="cpu")
    with pytest.raises(InputError, match="channel mismatch"):
        explain(loaded(BlobNet(), (3, 24, 24, 24)), volume, device="cpu")
    with pytest.raises(InputError, match="2D or 3D"):
        explain(model, np.zeros((4, 4, 4, 4), np.float32), device="cpu")


def test_resized_input_maps_back_to_volume_grid():
    volume, mask = blob_volume((40, 30, 36), (28, 10, 18), 4)
    model = loaded(BlobNet(), (1, 24, 24, 24))
    result = explain(model, volume, "gradcam", ["act"], target=1, device="cpu")
    cam = result.get().cam
    assert cam.shape == (40, 30, 36)
    assert mask[np.unravel_index(np.argmax(cam), cam.shape)]


def test_class_whose_score_ignores_the_layer_gives_a_zero_map_with_a_warning():
    class ConstantClass(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv3d(1, 2, 3, padding=1)
            self.bias = nn.Parameter(torch.tensor([1.0]))

        def forward(self, x):
            lesion = self.conv(x).amax(dim=(2, 3, 4))
            return torch.cat([self.bias.expand(x.shape[0], 1), lesion], dim=1)

    volume, _ = blob_volume((12, 12, 12), (6, 6, 6), 2)
    result = explain(loaded(ConstantClass(), (1, 12, 12, 12)), volume, "gradcam", ["conv"], "all", "cpu")
    assert float(result.get(target=0).cam.max()) == 0.0
    assert any("all zero" in w for w in result.warnings)
    assert result.get(target=1).raw_map.shape == (12, 12, 12)
