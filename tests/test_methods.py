"""Each method against hand-computed values on a tiny net, and against MONAI on real architectures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain.cam.methods import GRADIENT_METHODS, display_map, gradcampp_core
from explain.request import explain
from tests.conftest import LinearHeadNet, loaded

X = np.array([1.0, 2.0], dtype=np.float32).reshape(2, 1, 1)
# One class; gradients dS/dA are U: channel 0 -> (1, 0), channel 1 -> (0, -1).
U = torch.tensor([[[1.0, 0.0], [0.0, -1.0]]]).view(1, 2, 2, 1, 1)


def _raw(method: str, u=U, q=0.0) -> np.ndarray:
    model = loaded(LinearHeadNet(u, q), (1, 2, 1, 1))
    # The engine needs a 3D volume; (2, 1, 1) would be refused as 2D, so call the pieces directly.
    net = model.module
    x = torch.as_tensor(X)[None, None]
    from explain.cam.hooks import capture

    with capture(net, ["layer"], track_grads=True) as cap, torch.enable_grad():
        out = net(x)
        (g,) = torch.autograd.grad(out[:, 0].sum(), [cap.acts["layer"]])
    return GRADIENT_METHODS[method](cap.acts["layer"].detach(), g)[0, :, 0, 0].numpy()


@pytest.mark.parametrize(
    "method, expected",
    [
        # acts A0 = (1, 2), A1 = (2, 4); grads g0 = (1, 0), g1 = (0, -1)
        ("gradcam", [-0.5, -1.0]),  # mean g = (0.5, -0.5): 0.5*A0 - 0.5*A1
        ("hirescam", [1.0, -4.0]),  # (1*1 + 0*2, 0*2 + -1*4)
        ("layercam", [1.0, 0.0]),  # relu(g0)*A0 + relu(g1)*A1
        # Grad-CAM++ eq. 19: ch0 alpha = (1/(2+3*1), 0) -> w0 = 0.2; ch1 relu(g1) = 0 -> w1 = 0
        ("gradcampp", [0.2, 0.4]),
    ],
)
def test_hand_computed_values(method, expected):
    np.testing.assert_allclose(_raw(method), expected, rtol=1e-6, atol=1e-7)


def _numpy_reference(method: str, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Independent loop implementations written from the papers, for (C, P) arrays."""
    c_count, p_count = a.shape
    out = np.zeros(p_count)
    for c in range(c_count):
        if method == "gradcam":
            w = g[c].mean()
            out += w * a[c]
        elif method == "hirescam":
            out += g[c] * a[c]
        elif method == "layercam":
            out += np.maximum(g[c], 0) * a[c]
        elif method == "gradcampp":
            w = 0.0
            for p in range(p_count):
                den = 2 * g[c, p] ** 2 + a[c].sum() * g[c, p] ** 3
                alpha = g[c, p] ** 2 / (den if den != 0 else 1.0)
                w += alpha * max(g[c, p], 0)
            out += w * a[c]
    return out


@pytest.mark.parametrize("method", sorted(GRADIENT_METHODS))
def test_nonlinear_head_matches_loop_reference(method):
    """With a quadratic head the gradient varies in space: all four methods differ."""
    torch.manual_seed(3)
    u = torch.randn(1, 2, 2, 1, 1)
    q = 0.7
    a = np.stack([X[:, 0, 0], 2 * X[:, 0, 0]])
    g = u[0, :, :, 0, 0].numpy() + q * a
    np.testing.assert_allclose(_raw(method, u, q), _numpy_reference(method, a, g), rtol=1e-5)


def test_display_map_keeps_high_as_high():
    raw = torch.tensor([-3.0, 0.0, 1.0, 4.0])
    scaled, peak = display_map(raw)
    assert peak == 4.0
    np.testing.assert_allclose(scaled.numpy(), [0, 0, 0.25, 1.0])
    zeros, peak0 = display_map(torch.tensor([-1.0, -2.0]))
    assert peak0 == 0.0 and float(zeros.abs().sum()) == 0.0


def _monai_archs():
    from monai.networks.nets import DenseNet121, SEResNet50, resnet10

    return [
        ("DenseNet121", lambda: DenseNet121(spatial_dims=3, in_channels=1, out_channels=3), "features.denseblock3", 48),
        ("resnet10", lambda: resnet10(spatial_dims=3, n_input_channels=1, num_classes=3), "layer3", 48),
        ("SEResNet50", lambda: SEResNet50(spatial_dims=3, in_channels=1, num_classes=3), "layer3", 48),
    ]


@pytest.mark.parametrize("name, build, layer, size", _monai_archs(), ids=lambda v: v if isinstance(v, str) else "")
def test_gradcam_matches_monai(name, build, layer, size):
    from monai.visualize import GradCAM

    torch.manual_seed(0)
    net = build().eval()
    volume = np.random.default_rng(1).standard_normal((size, size, size)).astype(np.float32)
    ours = explain(loaded(net, (1, size, size, size)), volume, "gradcam", [layer], target=2, device="cpu").get()
    ref = GradCAM(nn_module=net, target_layers=layer).compute_map(torch.as_tensor(volume)[None, None], class_idx=2)
    ref = ref[0, 0].detach().numpy()
    assert ref.max() > 0
    np.testing.assert_allclose(np.maximum(ours.raw_map, 0), ref, rtol=1e-5, atol=1e-5 * ref.max())


def test_gradcampp_shared_parts_match_monai():
    """MONAI sums A*g^3 in alpha's denominator and multiplies by exp(S); with those two changes we match it."""
    from monai.networks.nets import DenseNet121
    from monai.visualize import GradCAMpp

    from explain.cam.hooks import capture

    torch.manual_seed(0)
    net = DenseNet121(spatial_dims=3, in_channels=1, out_channels=3).eval()
    x = torch.randn(1, 1, 48, 48, 48)
    layer = "features.denseblock3"
    with capture(net, [layer], track_grads=True) as cap, torch.enable_grad():
        logits = net(x)
        (g,) = torch.autograd.grad(logits[0, 1], [cap.acts[layer]])
    ours = gradcampp_core(cap.acts[layer].detach(), g, "monai") * logits[0, 1].exp().detach()
    ref = GradCAMpp(nn_module=net, target_layers=layer).compute_map(x, class_idx=1)[0, 0].detach()
    np.testing.assert_allclose(torch.relu(ours[0]).numpy(), ref.numpy(), rtol=1e-4, atol=1e-5 * float(ref.max()))
