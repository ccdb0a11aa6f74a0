"""Choices the page makes on the user's behalf, on the bundled sample models: what a model switch keeps and what
it changes (with a sentence), classes without a map, and which earlier maps can be compared."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from explain.cam.layers import model_layers
from explain.models.loaded import class_names
from explain.policy import (
    Choices,
    Shown,
    comparable,
    default_target,
    has_no_map,
    reconcile,
    remember,
    target_label,
)


def _reconcile(model, choices, probabilities):
    layers, _ = model_layers(model, "cpu")
    return reconcile(choices, model, layers, class_names(model, len(probabilities)), np.asarray(probabilities))


def test_a_pooling_method_carried_to_a_segmentation_model_falls_back_with_a_note(sample_models):
    cnn, unet = sample_models["cnn"], sample_models["unet"]
    chosen, _ = _reconcile(cnn, Choices(method="gradcampp"), [0.2, 0.5, 0.3])
    assert chosen.method == "gradcampp" and chosen.model == cnn.identity
    switched, notes = _reconcile(unet, chosen, [0.9, 0.06, 0.04])
    assert switched.method == "hirescam"
    assert notes[0].startswith("Grad-CAM++ pools its weights over every output voxel")
    assert "showing HiResCAM, this model's default" in notes[0]
    # asked for on this model itself, it stays: the user may want it
    kept, notes = _reconcile(unet, replace(switched, method="gradcampp"), [0.9, 0.1, 0])
    assert kept.method == "gradcampp" and notes == []


def test_a_class_without_a_map_is_labelled_and_never_the_default(sample_models):
    cnn = sample_models["cnn"]
    assert cnn.card.no_map_classes == ["no lesion"] and has_no_map(cnn, "no lesion")
    assert not has_no_map(cnn, "bright lesion")
    names = class_names(cnn, 3)
    most_likely_without = names.index("no lesion")
    probabilities = np.full(3, 0.1)
    probabilities[most_likely_without] = 0.8  # the predicted class has no map
    chosen = default_target(cnn, probabilities)
    assert names[chosen] != "no lesion" and probabilities[chosen] == max(np.delete(probabilities, most_likely_without))
    assert target_label("no lesion", 0.8, cnn) == "no lesion (80%, no map)"
    assert target_label("bright lesion", 0.1, cnn) == "bright lesion (10%)"


def test_compare_offers_only_earlier_maps_of_the_same_image_newest_first():
    history: list[Shown] = []
    for key, volume in (("a", "brain"), ("b", "ct"), ("c", "brain"), ("a", "brain"), ("d", "brain")):
        history = remember(history, Shown(key, f"map {key}", volume, "Sample CNN"))
    assert [h.key for h in history] == ["b", "c", "a", "d"]  # each once, newest last
    assert [h.key for h in comparable(history, "brain", current="d")] == ["a", "c"]
    assert comparable(history, "brain", current="d")[0].label == "map a — Sample CNN"
