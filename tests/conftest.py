"""Shared tiny nets and paths. Tiny nets have hand-set weights, so expected maps can be computed by hand."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT / "sample_data"
warnings.filterwarnings("ignore", message=".*TorchScript.*")


class LinearHeadNet(nn.Module):
    """x (1,1,2,1,1) -> `layer` = 1x1 conv with weights (1, 2) -> score_k = sum_cp U[k,c,p] A_c(p) + Q/2 sum A^2.

    With Q = 0 the gradients are U: acts A_0 = x, A_1 = 2x.
    """

    def __init__(self, u: torch.Tensor, q: float = 0.0):
        super().__init__()
        self.layer = nn.Conv3d(1, 2, 1, bias=False)
        with torch.no_grad():
            self.layer.weight.copy_(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1, 1))
        self.register_buffer("u", u)  # (K, C, *spatial)
        self.q = q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.layer(x)
        linear = (self.u[None] * a[:, None]).flatten(2).sum(-1)
        return linear + 0.5 * self.q * a.pow(2).flatten(1).sum(-1, keepdim=True)


class BlobNet(nn.Module):
    """Detects bright voxels: conv(1->1, mean of its 3^d window, b=-0.5) -> ReLU -> GAP -> class 1 = +10 f,
    class 0 = -10 f. `spatial_dims=2` is the same net on images."""

    def __init__(self, spatial_dims: int = 3):
        super().__init__()
        self.detect = (nn.Conv2d if spatial_dims == 2 else nn.Conv3d)(1, 1, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(1, 2)
        with torch.no_grad():
            self.detect.weight.fill_(1.0 / 3**spatial_dims)
            self.detect.bias.fill_(-0.5)
            self.head.weight.copy_(torch.tensor([[-10.0], [10.0]]))
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.detect(x)).flatten(2).mean(-1))


class TupleLayerNet(nn.Module):
    """A layer returning (features, aux): the hooks must pick the feature map."""

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv3d(1, 2, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return y, y.mean()

    def __init__(self):
        super().__init__()
        self.pair = self.Pair()
        self.head = nn.Linear(2, 3)

    def forward(self, x):
        y, _ = self.pair(x)
        return self.head(y.mean(dim=(2, 3, 4)))


def loaded(module: nn.Module, input_shape: tuple[int, ...], **card):
    from explain.models.cards import ModelCard
    from explain.models.loaded import LoadedModel

    return LoadedModel(module.eval(), ModelCard(**card), f"test-{id(module)}", "test", "weights", input_shape)


def blob_volume(shape=(24, 24, 24), center=(6, 16, 10), radius=3.0) -> tuple[np.ndarray, np.ndarray]:
    grid = np.indices(shape).astype(np.float32)
    dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, center)))
    mask = dist <= radius
    return mask.astype(np.float32), mask


@pytest.fixture(scope="session")
def sample_case():
    from explain.io.load import load_volume

    return load_volume(SAMPLE / "case_brain" / "t1_lesions.nii.gz")


@pytest.fixture(scope="session")
def sample_mask():
    import nibabel as nib

    return np.asarray(nib.load(SAMPLE / "case_brain" / "lesion_mask.nii.gz").dataobj)


@pytest.fixture(scope="session")
def sample_models():
    from explain.models.load import load_model

    return {name: load_model(SAMPLE / "models" / f"{name}.pt2") for name in ("cnn", "vit", "unet")}
