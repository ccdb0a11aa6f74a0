"""Cascading randomisation: the statistics by hand, a net whose answer is known, and the sample CNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain.io.volume import make_volume
from explain.trust.sanity import cascade, parameter_blocks, spearman, ssim
from tests.conftest import BlobNet, blob_volume, loaded


def test_spearman_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties share their average rank: x ranks (1.5, 1.5, 3, 4); r = 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / np.sqrt(4.5 * 5))
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_ssim_by_hand():
    a = np.random.default_rng(0).random((9, 9, 9))
    assert ssim(a, a) == pytest.approx(1.0)
    # two constant images: no variance, so SSIM = (2 mx my + C1) / (mx^2 + my^2 + C1)
    c1 = 0.01**2
    assert ssim(np.ones((8, 8)), np.full((8, 8), 0.5)) == pytest.approx((1.0 + c1) / (1.25 + c1))


def test_randomising_the_head_cannot_move_gradcam_with_one_channel():
    """BlobNet: Grad-CAM at `act` is (w_head[k] / N) * act, so a new head rescales it and |map| keeps its ranks.

    Randomising the detector underneath changes `act` itself, and then the ranks move.
    """
    volume, _ = blob_volume()
    model = loaded(BlobNet(), (1, 24, 24, 24))
    before = [p.detach().clone() for p in model.module.parameters()]
    report = cascade(model, make_volume(volume, np.eye(4), "blob"), "gradcam", "act", 1, device="cpu")
    assert [s.block for s in report.steps] == ["head", "detect"]
    assert report.steps[0].spearman == pytest.approx(1.0)
    assert report.steps[1].spearman < 0.9
    assert not report.depends_on_weights and "barely depends" in report.verdict
    for p, q in zip(before, model.module.parameters()):  # the user's model is never touched
        torch.testing.assert_close(p, q.detach(), rtol=0, atol=0)


def test_blocks_that_never_run_are_left_out():
    class WithUnusedHead(BlobNet):
        def __init__(self):
            super().__init__()
            self.aux = torch.nn.Linear(3, 3)  # trained once, never called

    net = WithUnusedHead()
    assert [b for b, _ in parameter_blocks(net)] == ["detect", "head", "aux"]
    assert [b for b, _ in parameter_blocks(net, torch.zeros(1, 1, 8, 8, 8))] == ["detect", "head"]
