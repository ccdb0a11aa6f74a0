"""The sample networks: a lesion-evidence CNN, MONAI's ViT (CLS-token classifier) and MONAI's UNet.

Each exported network is a plain `nn.Module` (or a MONAI net) whose forward uses only
standard layers, so `torch.export` turns it into `torch.ops.aten.*` calls with static
shapes. Training-only heads live in wrappers (`TokenSupervisedViT`) that are never exported.
"""

from __future__ import annotations

import torch
from torch import nn


def reference_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The mean lesion-free training input (class 0), made left-right symmetric as training flips cases.

    x: (n, 1, D, H, W) on the model grid; returns (1, 1, D, H, W).
    """
    mean = x[y == 0].mean(0, keepdim=True)
    return 0.5 * (mean + mean.flip(2))


def conv_block(cin: int, cout: int, stride: int, dilation: int = 1, dims: int = 3) -> nn.Sequential:
    """conv(stride) -> BN -> ReLU -> conv -> BN -> ReLU, in 2D or 3D."""
    conv = nn.Conv3d if dims == 3 else nn.Conv2d
    norm = nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d
    return nn.Sequential(
        conv(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation),
        norm(cout),
        nn.ReLU(),
        conv(cout, cout, 3, padding=1),
        norm(cout),
        nn.ReLU(),
    )


class EvidenceNet(nn.Module):
    """A small CNN whose class logits read a per-cell lesion-evidence map (3D: 64^3 in, 16^3 cells).

    A 1x1 convolution gives per-cell evidence e (background + one channel per lesion class).
    logit(lesion k) = max over cells of the log-odds of k against all other channels,
    e_k - logsumexp(e_j, j != k); logit(class 0, "no lesion") is a learned constant.

    Why log-odds against *all* others: against background alone, the dark score was also high
    inside a bright lesion (background evidence is low there). Why log-odds and not log p_k:
    log p_k saturates at 0 once a cell is confident, so d(logit)/d(activation) fell to ~1e-12
    and Grad-CAM worked on rounding noise; the log-odds has gradient exactly 1 in e_k, however
    confident the cell.
    BatchNorm, not InstanceNorm: pooling instance-normalised maps sees only their bias.
    """

    def __init__(self, classes: int = 3, dims: int = 3, widths: tuple[int, int, int] = (8, 16, 32)):
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("block1", conv_block(1, widths[0], 2, dims=dims))
        self.features.add_module("block2", conv_block(widths[0], widths[1], 2, dims=dims))
        self.features.add_module("block3", conv_block(widths[1], widths[2], 1, dilation=2, dims=dims))
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        self.evidence = conv(widths[2], classes, 1)  # channel 0: background, one channel per lesion class
        self.no_lesion = nn.Parameter(torch.zeros(1))

    @staticmethod
    def log_odds(evidence: torch.Tensor) -> torch.Tensor:
        """(B, K, *cells) -> (B, K-1, *cells): for each lesion class k >= 1, e_k - logsumexp(e_j, j != k)."""
        channels = evidence.shape[1]
        odds = []
        for k in range(1, channels):
            others = torch.cat([evidence[:, :k], evidence[:, k + 1 :]], dim=1)
            odds.append(evidence[:, k] - torch.logsumexp(others, dim=1))
        return torch.stack(odds, dim=1)

    def logits(self, evidence: torch.Tensor) -> torch.Tensor:
        lesion = self.log_odds(evidence).flatten(2).amax(dim=-1)
        return torch.cat([self.no_lesion.expand(evidence.shape[0], 1), lesion], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.evidence(self.features(x)))

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits and the dense evidence (deep supervision on the cell grid)."""
        evidence = self.evidence(self.features(x))
        return self.logits(evidence), evidence


def build_vit(shape: tuple[int, ...], patch: int, hidden: int, layers: int, heads: int, classes: int = 3) -> nn.Module:
    """MONAI's ViT as a CLS-token classifier with linear logits (no Tanh: it capped logits at +-1)."""
    from monai.networks.nets import ViT

    return ViT(
        in_channels=1,
        img_size=shape,
        patch_size=patch,
        hidden_size=hidden,
        mlp_dim=2 * hidden,
        num_layers=layers,
        num_heads=heads,
        classification=True,
        num_classes=classes,
        dropout_rate=0.0,
        spatial_dims=len(shape),
        post_activation="none",
        qkv_bias=True,
    )


class TokenSupervisedViT(nn.Module):
    """Training wrapper: the ViT on the deviation from a reference image, plus a token head.

    Reference: the mean lesion-free training input (left-right symmetrised). Every case is the same
    template, so a patch token is dominated by the anatomy at that position and the lesion is a small
    change on top; a plain ViT stayed at chance (measured), because its position embedding had to
    learn to cancel the anatomy while the patch projection kept moving. Training on x - reference
    removes that constant. It is a reparametrisation, not a new input: the patch projection is linear
    and non-overlapping, so W(x - r) + b + p = Wx + b + (p - Wr), and `fold` moves the reference into
    the position embedding. The exported network is a plain MONAI ViT that reads the raw input.

    The token head (deep supervision) teaches patch tokens of one block where the lesion is, so that
    the CLS token's attention above can find it. Only the folded ViT is exported.
    """

    def __init__(self, vit: nn.Module, block: int, reference: torch.Tensor, classes: int = 3):
        super().__init__()
        self.vit, self.block = vit, block
        patch = vit.patch_embedding.patch_embeddings.kernel_size
        self.register_buffer("reference", reference.reshape(1, 1, *reference.shape[-len(patch) :]))
        self.head = nn.Linear(vit.norm.normalized_shape[0], classes)
        self.grid = tuple(s // k for s, k in zip(self.reference.shape[2:], patch))

    def forward(self, x: torch.Tensor) -> object:
        return self.vit(x - self.reference)

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (CLS token) and per-token lesion logits (B, classes, *token grid)."""
        logits, hidden = self.vit(x - self.reference)
        tokens = hidden[self.block][:, 1:]
        return logits, self.head(tokens).transpose(1, 2).reshape(tokens.shape[0], -1, *self.grid)

    @torch.no_grad()
    def fold(self) -> nn.Module:
        """The trained ViT with the reference folded into its position embedding (same outputs)."""
        embed = self.vit.patch_embedding
        conv = embed.patch_embeddings
        offset = conv(self.reference) - conv.bias.view(1, -1, *[1] * len(conv.kernel_size))
        embed.position_embeddings -= offset.flatten(2).transpose(1, 2)
        self.reference.zero_()
        return self.vit


def build_unet(reference: torch.Tensor, channels: tuple[int, ...] = (16, 32, 64), res_units: int = 1) -> nn.Module:
    """MONAI's 3D UNet (background, bright, dark) that reads the image minus a stored reference image.

    Every sample case is the same template, so a dark lesion looks like grey matter or CSF
    *somewhere else*: trained on the raw image, the UNet never learned the dark class (Dice 0.00
    on full volumes; 0.42-0.46 with many false positives on crops; measured). On the deviation
    from the reference (the mean lesion-free training input) both kinds stand out. Unlike the
    ViT's patch projection, a convolution followed by normalisation cannot absorb the reference,
    so it stays in the network as a buffer: the model is for images in the template's space.
    """
    from monai.networks.nets import UNet

    class ReferenceUNet(UNet):
        """MONAI UNet whose forward subtracts `reference` first; submodule names are UNet's own."""

        def __init__(self) -> None:
            strides = (2,) * (len(channels) - 1)
            super().__init__(3, 1, 3, channels=channels, strides=strides, num_res_units=res_units)
            self.register_buffer("reference", reference.reshape(1, 1, *reference.shape[-3:]).clone())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x - self.reference)

    return ReferenceUNet()
