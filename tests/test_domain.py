"""Does the image suit the model: real files written by other software (pydicom's CT and MR test files, the
sample MRI) against cards that say MR or CT."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from explain.domain import domain_warnings
from explain.io.load import load_volume
from explain.io.volume import Volume
from explain.models.cards import ModelCard


@pytest.fixture(scope="module")
def ct_slice():
    return load_volume(get_testdata_file("CT_small.dcm"))  # a real CT slice, in Hounsfield units


@pytest.fixture(scope="module")
def mr_slice():
    return load_volume(get_testdata_file("MR_small.dcm"))


def test_an_mr_model_on_a_ct_says_so_with_the_share_of_air(ct_slice):
    card = ModelCard(modality="MR T1", spacing=[0.66, 0.66])
    (sentence,) = domain_warnings(card, ct_slice)
    air = float(np.mean(ct_slice.data < -500))  # counted here on every pixel, not the check's strided sample
    assert sentence.startswith("This model was trained on T1 MRI at 0.66 mm; this looks like CT: ")
    assert f"{air:.0%} of its voxels are below -500" in sentence


def test_an_mr_model_on_mr_and_a_ct_model_on_ct_are_quiet(mr_slice, ct_slice, sample_case):
    assert domain_warnings(ModelCard(modality="MR"), mr_slice) == []
    assert domain_warnings(ModelCard(modality="MR T1", spacing=[1.0, 1.0, 1.0]), sample_case) == []
    assert domain_warnings(ModelCard(modality="CT"), ct_slice) == []


def test_a_ct_model_on_mr_says_it_does_not_look_like_ct(mr_slice):
    (sentence,) = domain_warnings(ModelCard(modality="CT"), mr_slice)
    assert "this does not look like CT: no voxel is below -200" in sentence


def test_spacing_more_than_twice_apart_on_one_axis_is_flagged_in_any_axis_order():
    affine = np.diag([0.8, 0.8, 5.0, 1.0])
    volume = Volume(np.zeros((8, 8, 8), np.float32), affine, "test", "h")
    (sentence,) = domain_warnings(ModelCard(spacing=[1.0, 1.0, 1.0]), volume)
    assert "this image's voxels are 0.8x0.8x5 mm, more than 2 times different on one axis" in sentence
    assert domain_warnings(ModelCard(spacing=[5.0, 1.0, 1.0]), volume) == []  # the same sizes, another order
    assert domain_warnings(ModelCard(spacing=[1.0, 1.0, 2.6]), volume) == []  # 5 / 2.6 < 2
