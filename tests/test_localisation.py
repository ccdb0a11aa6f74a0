"""Localisation scores against values worked out by hand on tiny maps and masks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from explain.errors import InputError
from explain.trust.localisation import localise, target_mask


def test_scores_by_hand():
    cam = np.array([[0.0, 0.2, 0.9], [0.1, 1.0, 0.4], [0.0, 0.0, 0.4]])
    mask = np.array([[0, 0, 1], [0, 1, 1], [0, 0, 0]], bool)
    s = localise(cam, mask, threshold=0.5)
    # peak 1.0 at (1, 1), inside; energy inside = 0.9 + 1.0 + 0.4 = 2.3 of 3.0; above 0.5: (0,2), (1,1) -> IoU 2/3
    assert s.pointing_hit and s.mask_voxels == 3
    assert s.energy_in_mask == pytest.approx(2.3 / 3.0)
    assert s.iou == pytest.approx(2 / 3)


def test_a_miss_and_a_tolerance():
    cam = np.zeros((5, 5))
    cam[0, 0] = 1.0
    mask = np.zeros((5, 5), bool)
    mask[1:3, 1:3] = True
    assert not localise(cam, mask).pointing_hit
    assert localise(cam, mask, tolerance=1).pointing_hit  # (1, 1) is one voxel away
    assert localise(cam, mask).energy_in_mask == 0.0 and localise(cam, mask, threshold=0.5).iou == 0.0


def test_empty_map_or_mask_is_undefined_not_zero():
    s = localise(np.zeros((3, 3)), np.ones((3, 3), bool))
    assert not s.pointing_hit and math.isnan(s.energy_in_mask) and math.isnan(s.iou)


def test_label_masks_pick_the_target_label():
    labels = np.array([[0, 1], [2, 2]], np.uint8)
    np.testing.assert_array_equal(target_mask(labels, 2), [[False, False], [True, True]])
    np.testing.assert_array_equal(target_mask(labels > 0, 2), [[False, True], [True, True]])


def test_shape_mismatch_is_a_sentence():
    with pytest.raises(InputError, match="mask has shape"):
        localise(np.zeros((3, 3)), np.zeros((3, 4), bool))
