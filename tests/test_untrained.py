"""Untrained weights are flagged before anything is computed: a freshly initialised MONAI DenseNet121 and UNet,
and torch's default initialisation, are; every bundled sample model, and a net after a few training steps, is not."""

from __future__ import annotations

import torch
from monai.networks.nets import DenseNet121, UNet
from torch import nn

from explain.models.load import load_model
from explain.trust.untrained import untrained_reason, untrained_warning
from tests.conftest import SAMPLE


def test_fresh_monai_networks_are_flagged():
    torch.manual_seed(0)
    dense = DenseNet121(spatial_dims=3, in_channels=1, out_channels=3)
    assert "normalisation layers hold exactly their initial values" in untrained_reason(dense)
    unet = UNet(3, 1, 2, channels=(8, 16, 32), strides=(2, 2), num_res_units=1)
    assert untrained_reason(unet) is not None
    assert untrained_warning(dense).startswith("This model's weights look untrained: its ")


def test_default_initialisation_without_norms_is_flagged_by_the_spread():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 8, 3), nn.ReLU(), nn.Conv3d(8, 8, 3), nn.Flatten(), nn.LazyLinear(2))
    net(torch.zeros(1, 1, 8, 8, 8))
    assert "spread that PyTorch's default initialisation gives" in untrained_reason(net)


def test_a_few_training_steps_clear_the_flag():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 8, 3), nn.BatchNorm3d(8), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                        nn.Linear(8, 2))  # fmt: skip
    assert untrained_reason(net) is not None
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, y = torch.randn(16, 1, 8, 8, 8), torch.randint(0, 2, (16,))
    for _ in range(5):
        optimiser.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimiser.step()
    assert untrained_reason(net) is None


def test_no_bundled_sample_is_flagged(sample_models):
    chest = load_model(SAMPLE / "models" / "chest.pt2")
    nnunet = load_model(SAMPLE / "models" / "nnunet_lesions")
    for name, model in {**sample_models, "chest": chest, "nnunet": nnunet}.items():
        assert untrained_reason(model.module) is None, name
