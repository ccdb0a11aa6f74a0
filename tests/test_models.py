"""Model loading: .pt2 with a card, weights + MONAI name, and refusal of everything that would run code."""

from __future__ import annotations

import json

import pytest
import torch
from monai.networks.nets import DenseNet121

from explain.errors import InputError
from explain.models.load import CARD_FILE, load_model


def _small_net() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv3d(1, 2, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(2),
        torch.nn.Linear(512, 1),
        torch.nn.Flatten(1),
    ).eval()


def test_pt2_with_embedded_card(tmp_path):
    net = _small_net()
    program = torch.export.export(net, (torch.zeros(1, 1, 8, 8, 8),))
    card = {"task": "classification", "class_names": ["a", "b"], "default_layer": "0"}
    torch.export.save(program, str(tmp_path / "m.pt2"), extra_files={CARD_FILE: json.dumps(card)})
    model = load_model(tmp_path / "m.pt2")
    assert model.kind == "pt2" and model.input_shape == (1, 8, 8, 8)
    assert model.card.class_names == ["a", "b"] and model.card.input_shape == (1, 8, 8, 8)
    x = torch.randn(1, 1, 8, 8, 8)
    torch.testing.assert_close(model.module(x), net(x))


def test_pt2_sidecar_card_and_bad_card(tmp_path):
    program = torch.export.export(_small_net(), (torch.zeros(1, 1, 8, 8, 8),))
    torch.export.save(program, str(tmp_path / "m.pt2"))
    (tmp_path / "MODEL.json").write_text(json.dumps({"task": "segmentation"}))
    assert load_model(tmp_path / "m.pt2").card.task == "segmentation"
    (tmp_path / "MODEL.json").write_text(json.dumps({"task": "regression"}))
    with pytest.raises(InputError, match="`task` must be one of"):
        load_model(tmp_path / "m.pt2")
    (tmp_path / "MODEL.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_model(tmp_path / "m.pt2")


def test_weights_with_monai_name(tmp_path):
    kwargs = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3}
    net = DenseNet121(**kwargs)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    model = load_model(tmp_path / "w.pt", arch="DenseNet121", arch_kwargs=kwargs)
    assert model.kind == "weights"
    for a, b in zip(model.module.state_dict().values(), net.state_dict().values()):
        torch.testing.assert_close(a, b)
    from safetensors.torch import save_file

    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    assert load_model(tmp_path / "w.safetensors", arch="DenseNet121", arch_kwargs=kwargs).kind == "weights"
    with pytest.raises(InputError, match="do not fit"):
        load_model(tmp_path / "w.pt", arch="DenseNet121", arch_kwargs={**kwargs, "out_channels": 5})
    with pytest.raises(InputError, match="not one camviewer builds"):
        load_model(tmp_path / "w.pt", arch="os.system", arch_kwargs={})
    with pytest.raises(InputError, match="needs the MONAI network name"):
        load_model(tmp_path / "w.pt")


def test_pickled_module_is_refused_without_running_it(tmp_path):
    torch.save(_small_net(), tmp_path / "whole.pt")
    with pytest.raises(InputError, match="pickled Python object.*run code"):
        load_model(
            tmp_path / "whole.pt",
            arch="DenseNet121",
            arch_kwargs={"spatial_dims": 3, "in_channels": 1, "out_channels": 3},
        )


def test_torchscript_is_refused_with_export_advice(tmp_path):
    torch.jit.save(torch.jit.script(_small_net()), str(tmp_path / "ts.pt"))
    with pytest.raises(InputError, match="TorchScript.*torch.export"):
        load_model(tmp_path / "ts.pt")


def test_garbage_and_missing_files(tmp_path):
    (tmp_path / "junk.pt2").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputError):
        load_model(tmp_path / "junk.pt2", arch="DenseNet121", arch_kwargs={})
    with pytest.raises(InputError, match="no such model file"):
        load_model(tmp_path / "missing.pt2")
