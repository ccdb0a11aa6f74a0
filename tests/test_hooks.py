"""Hooks never outlive their `with` block, tuple outputs are handled, bad names get close matches."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import DenseNet121

from explain.cam.hooks import capture, default_layer, list_layers
from explain.errors import InputError
from tests.conftest import TupleLayerNet


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_hooks_removed_after_normal_exit_and_after_exception():
    net = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2).eval()
    with capture(net, ["features.denseblock2"], track_grads=True) as cap, torch.enable_grad():
        net(torch.randn(1, 1, 32, 32, 32))
    assert cap.acts["features.denseblock2"].shape[1:] == (512, 4, 4, 4)
    assert _hook_count(net) == 0
    with pytest.raises(RuntimeError), capture(net, ["features.denseblock2", "features.denseblock3"]):
        net(torch.randn(1, 3, 32, 32, 32))  # wrong channel count: the model itself raises
    assert _hook_count(net) == 0


def test_engine_failure_leaves_no_hooks_and_restores_state():
    from explain.request import explain
    from tests.conftest import loaded

    net = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)
    net.train()
    flags_before = [p.requires_grad for p in net.parameters()]
    model = loaded(net, (1, 32, 32, 32))
    net.train()  # loaded() sets eval; the engine must restore whatever the caller had
    with pytest.raises(InputError, match="target class 7 does not exist"):
        explain(model, torch.rand(32, 32, 32).numpy(), "gradcam", ["features.denseblock2"], target=7, device="cpu")
    assert _hook_count(net) == 0
    assert net.training
    assert [p.requires_grad for p in net.parameters()] == flags_before
    assert all(p.grad is None for p in net.parameters())


def test_unknown_layer_lists_closest_names():
    net = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)
    with pytest.raises(InputError, match=r"'features.denseblok4' does not exist.*features.denseblock4"):
        with capture(net, ["features.denseblok4"]):
            pass
    assert _hook_count(net) == 0


def test_tuple_output_layer_picks_the_feature_map():
    net = TupleLayerNet().eval()
    with capture(net, ["pair"], track_grads=True) as cap, torch.enable_grad():
        out = net(torch.randn(1, 1, 6, 6, 6))
        (g,) = torch.autograd.grad(out[0, 0], [cap.acts["pair"]])
    assert cap.acts["pair"].shape == (1, 2, 6, 6, 6) and g.shape == (1, 2, 6, 6, 6)


def test_layer_with_no_tensor_fails_with_its_name():
    class Bad(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.meta = torch.nn.Identity()

        def forward(self, x):
            self.meta(None)
            return x.mean(dim=(2, 3, 4))

    net = Bad()
    with pytest.raises(InputError, match="layer 'meta' returns NoneType"), capture(net, ["meta"]):
        net(torch.randn(1, 1, 4, 4, 4))
    assert _hook_count(net) == 0


def test_list_layers_and_default_layer():
    net = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2).eval()
    layers = list_layers(net, torch.zeros(1, 1, 64, 64, 64))
    names = {info.name: info.shape for info in layers}
    assert names["features.denseblock4"] == (1024, 2, 2, 2)
    assert names["features.conv0"] == (64, 32, 32, 32)
    assert "class_layers.out" not in names  # (B, 2) has no spatial extent
    chosen = default_layer(layers)
    assert names[chosen][1:] == (2, 2, 2)
    assert _hook_count(net) == 0
