"""ViT token maps: CLS attention per block, attention rollout, and tokens -> 3D grid.

Attention weights are captured by a forward *pre*-hook on each block's
`attn.drop_weights` module (MONAI's SABlock applies it to the post-softmax
weights), so this works without `save_attn=True` and on unflattened `.pt2`
programs. Fused / flash attention never materialises the weights: then nothing
is captured and we say so instead of returning an empty map.

Token order: MONAI's patch embedding flattens its conv output (B, C, d, h, w) with
`flatten(2)`, i.e. C-order over (d, h, w), and prepends one CLS token. The grid
(d, h, w) is read from the patch-embedding output itself, never assumed.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from explain.errors import InputError

_ATTN_WEIGHTS = re.compile(r"^(?:.*\.)?blocks\.(\d+)\.attn\.drop_weights$")


def attention_layers(model: nn.Module) -> list[str]:
    """Names of each block's attention-dropout module, in block order."""
    found = []
    for name, _ in model.named_modules():
        match = _ATTN_WEIGHTS.match(name)
        if match:
            found.append((int(match.group(1)), name))
    return [name for _, name in sorted(found)]


def is_vit(model: nn.Module) -> bool:
    return bool(attention_layers(model))


def token_grid(model: nn.Module, example: torch.Tensor) -> tuple[int, ...]:
    """The (d, h, w) or (h, w) patch grid, from the patch embedding's own output on `example`."""
    modules = dict(model.named_modules())
    embed = next((modules[n] for n in ("patch_embedding.patch_embeddings", "patch_embedding") if n in modules), None)
    if embed is None:
        raise InputError("this model has no patch_embedding; ViT methods need a MONAI-style ViT")
    seen: dict[str, tuple[int, ...]] = {}

    def record(_m: nn.Module, _i: object, out: object) -> None:
        if isinstance(out, torch.Tensor):
            seen["shape"] = tuple(out.shape)

    handle = embed.register_forward_hook(record)
    try:
        with torch.no_grad():
            model(example)
    finally:
        handle.remove()
    shape = seen.get("shape")
    if shape is None:
        raise InputError("the patch embedding did not run; cannot find the token grid")
    if len(shape) in (4, 5):  # a convolutional embedding: (B, C, h, w) or (B, C, d, h, w)
        return tuple(int(s) for s in shape[2:])
    # Perceptron embedding gives (B, N, C): derive the grid from a cubic split if possible.
    n_tokens = shape[1]
    spatial = example.shape[2:]
    side = round(n_tokens ** (1 / 3))
    if side**3 == n_tokens and spatial[0] == spatial[1] == spatial[2]:
        return side, side, side
    raise InputError(f"cannot derive the token grid from {n_tokens} tokens and input {tuple(spatial)}")


def require_attention(captured: dict[str, torch.Tensor], layers: list[str]) -> list[torch.Tensor]:
    """The captured weights in block order, or a clear error when fused attention hid them."""
    missing = [name for name in layers if name not in captured]
    if missing:
        raise InputError(
            "no attention weights were captured: this ViT uses fused/flash attention "
            "(use_flash_attention=True), which never forms the weights. Rebuild or re-export "
            "it with use_flash_attention=False to use attention methods."
        )
    return [captured[name] for name in layers]


def cls_attention(weights: torch.Tensor, head: int | None = None) -> torch.Tensor:
    """CLS row of one block's attention, (B, heads, 1+N, 1+N) -> (B, N), heads averaged or one head."""
    if weights.ndim != 4:
        raise InputError(f"attention weights must be (B, heads, T, T); got {tuple(weights.shape)}")
    if head is not None:
        if not 0 <= head < weights.shape[1]:
            raise InputError(f"head {head} does not exist; the block has {weights.shape[1]} heads")
        return weights[:, head, 0, 1:]
    return weights[:, :, 0, 1:].mean(dim=1)


def rollout(weights: list[torch.Tensor]) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, ACL 2020) -> CLS row over patch tokens, (B, N).

    Per block: average heads, add the identity (the residual path), renormalise rows;
    multiply from the first block to the last, and read the CLS row.
    """
    result = None
    for w in weights:
        a = w.mean(dim=1)
        a = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a / a.sum(dim=-1, keepdim=True)
        result = a if result is None else a @ result
    if result is None:
        raise InputError("no attention blocks to roll out")
    return result[:, 0, 1:]


def tokens_to_grid(tokens: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """(B, N) token scores -> (B, *grid), in patch-embedding (C) order."""
    b, n = tokens.shape
    if n != math.prod(grid):
        raise InputError(f"{n} tokens do not fill a {grid} grid")
    return tokens.reshape(b, *grid)


def block_to_feature_map(block_out: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """A block's output (B, 1+N, C) -> (B, C, *grid), dropping the CLS token."""
    b, t, c = block_out.shape
    if t != math.prod(grid) + 1:
        raise InputError(f"block output has {t} tokens; expected 1 + {math.prod(grid)} for grid {grid}")
    return block_out[:, 1:, :].transpose(1, 2).reshape(b, c, *grid)
