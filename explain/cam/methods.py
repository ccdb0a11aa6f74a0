"""Gradient CAM methods: one pure function each, `(acts, grads) -> raw map`.

Shapes: `acts` and `grads` are (B, C, *spatial) for any number of spatial axes;
the raw map is (B, *spatial) and keeps its sign. ReLU and scaling to 0..1 are
separate, named steps done by the engine (`display_map`), so the raw values stay
available for export and comparison.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Method = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _spatial_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over spatial axes, keeping them as singleton axes for broadcasting."""
    return x.sum(dim=tuple(range(2, x.ndim)), keepdim=True)


def gradcam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., ICCV 2017): sum_c mean(dS/dA_c) * A_c."""
    weights = grads.mean(dim=tuple(range(2, grads.ndim)), keepdim=True)
    return (weights * acts).sum(dim=1)


def gradcampp_core(acts: torch.Tensor, grads: torch.Tensor, denominator: str = "paper") -> torch.Tensor:
    """Grad-CAM++ with a choice of alpha denominator; see `gradcampp`.

    "paper": 2 g^2 + (sum_ab A_ab) g^3   (Chattopadhay et al., WACV 2018, eq. 19)
    "monai": 2 g^2 + sum_ab (A_ab g^3) + 1e-7   (monai.visualize.GradCAMpp, epsilon included)
    Kept public only so tests can check the shared parts against MONAI. MONAI's
    1e-7 is not negligible: gradients of deep layers are often ~1e-4, so g^2 ~ 1e-8
    and the epsilon shifts alpha by several percent. The paper form has none.
    """
    g2 = grads.pow(2)
    g3 = grads.pow(3)
    if denominator == "paper":
        spatial = _spatial_sum(acts) * g3
    elif denominator == "monai":
        spatial = _spatial_sum(acts * g3)
    else:
        raise ValueError(f"denominator must be 'paper' or 'monai'; got {denominator!r}")
    denom = 2 * g2 + spatial
    denom = torch.where(denom != 0, denom, torch.ones_like(denom))
    alpha = g2 / (denom + 1e-7) if denominator == "monai" else g2 / denom
    weights = _spatial_sum(alpha * F.relu(grads))
    return (weights * acts).sum(dim=1)


def gradcampp(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al., WACV 2018), alpha from the paper's eq. 19.

    alpha = g^2 / (2 g^2 + sum_ab(A_ab) g^3), w_c = sum_ab alpha * relu(g), map = sum_c w_c A_c,
    with g = dS/dA for the class score S. The paper writes the derivatives of exp(S);
    that multiplies every weight by the same positive exp(S), so after scaling the map
    is identical and we leave the factor out (it overflows for large logits).
    This is the paper's form (also pytorch-grad-cam's); MONAI sums A*g^3 instead.
    """
    return gradcampp_core(acts, grads, "paper")


def hirescam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """HiResCAM (Draelos & Carin, 2020): sum_c dS/dA_c * A_c, element-wise, no averaging."""
    return (grads * acts).sum(dim=1)


def layercam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """LayerCAM (Jiang et al., IEEE TIP 2021): sum_c relu(dS/dA_c) * A_c, element-wise."""
    return (F.relu(grads) * acts).sum(dim=1)


GRADIENT_METHODS: dict[str, Method] = {
    "gradcam": gradcam,
    "gradcampp": gradcampp,
    "hirescam": hirescam,
    "layercam": layercam,
}
ATTENTION_METHODS = ("vit-attention", "vit-rollout")
ALL_METHODS = (*GRADIENT_METHODS, *ATTENTION_METHODS)

LABELS = {
    "gradcam": "Grad-CAM",
    "gradcampp": "Grad-CAM++",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "vit-attention": "ViT attention",
    "vit-rollout": "ViT rollout",
}


def display_map(raw: torch.Tensor) -> tuple[torch.Tensor, float]:
    """ReLU, then scale so the highest value is 1: high importance stays high.

    Returns the scaled map and the scale (the raw maximum). An all-zero or
    all-negative map stays zero; the caller warns.
    """
    positive = F.relu(raw)
    peak = float(positive.max()) if positive.numel() else 0.0
    if peak <= 0 or not torch.isfinite(torch.tensor(peak)):
        return torch.zeros_like(positive), 0.0
    return positive / peak, peak
