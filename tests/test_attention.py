"""ViT: token order, rollout by hand, hooks on .pt2 programs, and a clear error for fused attention."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.networks.nets import ViT

from explain.cam.attention import block_to_feature_map, cls_attention, rollout, tokens_to_grid
from explain.cam.layers import model_layers
from explain.cam.preprocess import plan_grid
from explain.errors import InputError
from explain.request import explain
from tests.conftest import loaded

IMG, PATCH = (32, 16, 24), (8, 8, 8)  # grid (4, 2, 3): unequal sides catch axis mix-ups


def _vit(**kw) -> ViT:
    torch.manual_seed(0)
    return ViT(
        in_channels=1,
        img_size=IMG,
        patch_size=PATCH,
        hidden_size=32,
        mlp_dim=64,
        num_layers=3,
        num_heads=4,
        classification=True,
        num_classes=3,
        **kw,
    ).eval()


def test_token_grid_comes_from_the_model_and_blocks_are_token_layers():
    model = loaded(_vit(), (1, *IMG))
    layers, grid = model_layers(model, "cpu")
    assert grid == (4, 2, 3)
    tokens = [info for info in layers if info.kind == "tokens"]
    assert [info.name for info in tokens] == ["blocks.0", "blocks.1", "blocks.2"]
    assert tokens[0].shape == (32, 4, 2, 3)


def test_token_order_matches_patch_positions():
    """A bright patch at grid cell (2, 1, 0) is the token that lands at that cell's voxels."""
    net = _vit()
    x = torch.zeros(1, 1, *IMG)
    cell = (2, 1, 0)
    x[0, 0, 16:24, 8:16, 0:8] = 1.0
    conv_out = net.patch_embedding.patch_embeddings(x)  # (1, C, 4, 2, 3)
    tokens = conv_out.flatten(2).transpose(1, 2)  # MONAI's own flattening
    with_cls = torch.cat([torch.zeros(1, 1, tokens.shape[2]), tokens], dim=1)
    torch.testing.assert_close(block_to_feature_map(with_cls, (4, 2, 3)), conv_out)
    # A one-hot token score at the bright patch's index, mapped to the volume, peaks in that patch.
    index = np.ravel_multi_index(cell, (4, 2, 3))
    scores = torch.zeros(1, 24)
    scores[0, index] = 1.0
    on_grid = tokens_to_grid(scores, (4, 2, 3))
    assert tuple(int(i) for i in torch.nonzero(on_grid[0])[0]) == cell
    from explain.cam.engine import _finish
    from explain.models.cards import ModelCard

    grid_map = plan_grid(IMG, np.eye(4), ModelCard(), IMG)
    cam = _finish("vit-attention", "test", 0, on_grid[0], grid_map, np.eye(4)).cam
    peak = np.unravel_index(np.argmax(cam), cam.shape)
    assert 16 <= peak[0] < 24 and 8 <= peak[1] < 16 and 0 <= peak[2] < 8


def test_cls_attention_and_rollout_by_hand():
    # 2 blocks, 1 head, 1 CLS + 2 tokens
    a1 = torch.tensor([[[0.5, 0.25, 0.25], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])[None]
    a2 = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])[None]
    torch.testing.assert_close(cls_attention(a1), torch.tensor([[0.25, 0.25]]))
    # (A + I) / rowsum: b1 CLS row -> (0.75, 0.125, 0.125); b2 CLS row -> (0.5, 0.5, 0); b2 rows 1,2 -> e1, e2
    # rollout = b2 @ b1: CLS row = 0.5*(0.75,0.125,0.125) + 0.5*(0,1,0) = (0.375, 0.5625, 0.0625)
    torch.testing.assert_close(rollout([a1, a2]), torch.tensor([[0.5625, 0.0625]]))


def test_attention_hooks_work_without_save_attn_and_on_pt2(tmp_path):
    net = _vit()
    volume = np.random.default_rng(0).random(IMG).astype(np.float32)
    eager = explain(loaded(net, (1, *IMG)), volume, "vit-attention", device="cpu")
    path = tmp_path / "vit.pt2"
    torch.export.save(torch.export.export(net, (torch.zeros(1, 1, *IMG),)), str(path))
    from explain.models.load import load_model

    exported = load_model(path)
    assert exported.input_shape == (1, *IMG)
    from_pt2 = explain(exported, volume, "vit-attention", device="cpu")
    np.testing.assert_allclose(from_pt2.get().raw_map, eager.get().raw_map, rtol=1e-5, atol=1e-7)
    g_eager = explain(loaded(net, (1, *IMG)), volume, "gradcam", ["blocks.1"], target="all", device="cpu")
    g_pt2 = explain(exported, volume, "gradcam", ["blocks.1"], target="all", device="cpu")
    for k in range(3):
        np.testing.assert_allclose(g_pt2.get(target=k).raw_map, g_eager.get(target=k).raw_map, rtol=1e-4, atol=1e-7)
    rolled = explain(exported, volume, "vit-rollout", device="cpu").get()
    # Independent oracle: MONAI's own stored attention (save_attn=True), rolled out by hand in numpy.
    oracle_net = _vit(save_attn=True)
    with torch.no_grad():
        oracle_net(torch.as_tensor(volume)[None, None])
    product = None
    for block in oracle_net.blocks:
        a = block.attn.att_mat[0].numpy().astype(np.float64).mean(axis=0)
        a = a + np.eye(a.shape[0])
        a = a / a.sum(axis=1, keepdims=True)
        product = a if product is None else a @ product
    expected = product[0, 1:].reshape(4, 2, 3)
    np.testing.assert_allclose(rolled.raw_map, expected, rtol=1e-4, atol=1e-6)


def test_default_vit_layer_is_not_the_last_block_whose_tokens_get_no_gradient():
    from explain.cam.layers import default_layer_for, model_layers

    model = loaded(_vit(), (1, *IMG))
    assert default_layer_for(model, model_layers(model, "cpu")[0]) == "blocks.1"
    volume = np.random.default_rng(0).random(IMG).astype(np.float32)
    last = explain(model, volume, "hirescam", ["blocks.2"], target=0, device="cpu").get()
    assert np.abs(last.raw_map).max() == 0.0  # why the default is one block earlier


def test_flash_attention_gives_a_clear_error():
    net = _vit()
    for block in net.blocks:
        block.attn.use_flash_attention = True  # SABlock then calls scaled_dot_product_attention
    model = loaded(net, (1, *IMG))
    with pytest.raises(InputError, match="flash"):
        explain(model, np.zeros(IMG, np.float32), "vit-attention", device="cpu")
